export { main, MAIN_HELP } from "./main.js";
