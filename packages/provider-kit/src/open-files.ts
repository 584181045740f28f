/**
 * Whether this process may keep open as many files as a socket may have connections. Past the
 * limit (ulimit -n) the operating system refuses new connections and libuv closes them unanswered,
 * with nothing in any log: both gateways (the local provider's, the AWS emulator's) warn as a
 * socket starts.
 */
import { openFilesLimit } from "@nitric-like/rpc";
import type { SocketLimits } from "@nitric-like/spec";

/** Files `run` keeps open besides its clients' sockets (stores, services, endpoints, watchers), allowed for below. */
const OWN_FILES = 256;

export { openFilesLimit };

/**
 * What to warn when the process may keep fewer files open than a socket may have connections:
 * past the limit, the operating system refuses new connections and libuv closes them unanswered,
 * with nothing in the log. Undefined when there is room (or no limit is known).
 */
export function openFilesProblem(
  name: string,
  limits: Pick<SocketLimits, "maxConnections">,
  openFiles = openFilesLimit(),
): string | undefined {
  if (openFiles === undefined || openFiles >= limits.maxConnections + OWN_FILES) return undefined;
  return `websocket "${name}": this process may keep at most ${openFiles} files open (ulimit -n), fewer than the ${limits.maxConnections} connections limits.maxConnections lets this socket hold and the files run needs; past it, new connections are dropped with no answer. Raise the limit (ulimit -n ${limits.maxConnections + 2 * OWN_FILES}) or lower maxConnections`;
}
