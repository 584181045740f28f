/**
 * `nitric-like run` as a library, for tools that start a project inside their own process (the test
 * kit, @nitric-like/testing): the run itself, and the output it writes to.
 */
export { type RunCommandOptions, type RunService, runCommand } from "./commands/run.js";
export { Output, type Sink } from "./lib/log.js";
