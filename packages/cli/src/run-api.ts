/**
 * `nitric-like run` as a library, for tools that start a project inside their own process (the test
 * kit, @nitric-like/testing): the run itself, the output it writes to, the types of what its
 * provider's inspector gives (connections, kv stores), and the store of secret values it serves;
 * and the marks that tell a folder whose owning process died (the kit's copies of a project).
 */

export { currentUid, ownerAlive, processMark } from "@nitric-like/provider-kit";
export { type InspectedConnection, loadProject, type ProviderInspector } from "@nitric-like/spec";
export { type RunCommandOptions, type RunControl, type RunService, runCommand } from "./commands/run.js";
export { putRunSecret } from "./commands/secret.js";
export { Output, type Sink } from "./lib/log.js";
export { loadProvider } from "./lib/providers.js";
