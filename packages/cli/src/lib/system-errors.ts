/**
 * Errors of the machine that the user fixes, not us: a port in use, a folder that cannot be
 * written, a file that is not there. Node reports them with an errno code and the path or port;
 * systemErrorMessage() turns them into one line that names it and says what to do, so the CLI can
 * exit 1 instead of printing a stack trace and asking for a bug report.
 */
import { lstatSync } from "node:fs";
import { userInfo } from "node:os";
import { dirname, sep } from "node:path";

/** The parts of Node's system errors (fs, net) used here. */
interface SystemError {
  code?: unknown;
  syscall?: unknown;
  path?: unknown;
  address?: unknown;
  port?: unknown;
  cause?: unknown;
  hostname?: unknown;
}

function userName(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? "you");
  }
}

/** The project's `.nitric-like` folder when `path` is in it. */
function stateDir(path: string): string | undefined {
  const at = path.indexOf(`${sep}.nitric-like`);
  if (at < 0) return undefined;
  return path.slice(0, at + `${sep}.nitric-like`.length);
}

/** The nearest part of `path` that exists, when it is not a folder (what makes ENOTDIR). */
function fileInTheWay(path: string): string | undefined {
  for (let p = path; p !== dirname(p); p = dirname(p)) {
    try {
      return lstatSync(p).isDirectory() ? undefined : p;
    } catch {
      // Not there: look further up.
    }
  }
  return undefined;
}

function forPath(code: string, syscall: string, path: string): string | undefined {
  const where = JSON.stringify(path);
  const state = stateDir(path);
  const kept = state ? `nitric-like keeps its build and kv data in ${JSON.stringify(state)}` : undefined;
  switch (code) {
    case "EACCES":
    case "EPERM":
      return kept
        ? `${where}: permission denied (${syscall}); ${kept}: make that folder (or the project folder, to create it) writable by user "${userName()}", or run as the project's owner`
        : `${where}: permission denied (${syscall}); make it (or its folder) writable by user "${userName()}", or run as its owner`;
    case "EROFS":
      return `${where}: the file system is read-only; ${kept ? `${kept}: ` : ""}run the project from a writable folder`;
    case "ENOTDIR": {
      const file = fileInTheWay(path);
      return file
        ? `${JSON.stringify(file)} is a file, not a folder${file === state ? `; ${kept}` : ""}: move that file away and run again`
        : `${where}: part of this path is a file, not a folder; move that file away and run again`;
    }
    case "EEXIST": {
      // mkdir (recursive) says EEXIST only when what is there is not a folder.
      if (syscall !== "mkdir" || fileInTheWay(path) !== path) return undefined;
      return `${where} is a file, not a folder${kept ? `; ${kept}` : ""}: move that file away and run again`;
    }
    case "EISDIR":
      return `${where}: is a folder, a file was expected; move it away and run again`;
    case "ENOSPC":
    case "EDQUOT":
      return `${where}: no space left on the device; free some space and run again`;
    case "ENOENT":
      return `${where}: no such file or folder (${syscall}); check the path, or create it`;
    case "EMFILE":
    case "ENFILE":
      return `${where}: too many open files; raise the limit (ulimit -n) and run again`;
    default:
      return undefined;
  }
}

function forListen(code: string, address: string | undefined, port: number | undefined): string | undefined {
  const where = `${address ?? "127.0.0.1"}:${port ?? "?"}`;
  switch (code) {
    case "EADDRINUSE":
      return `port ${port ?? "?"} (${where}) is already in use; stop what uses it, pick another port, or run with --random-ports`;
    case "EADDRNOTAVAIL":
      return `${JSON.stringify(address)} is not an address of this machine; give --host one of its addresses, such as 127.0.0.1 or 0.0.0.0`;
    case "EACCES":
    case "EPERM":
      return `port ${port ?? "?"} (${where}): permission denied; ports below 1024 need privileges, pick one above 1023`;
    default:
      return undefined;
  }
}

/**
 * One line for a system error the user can fix (it, or its `cause`): the path or port, what is
 * wrong and the fix; undefined for anything else, which is a bug to report.
 */
export function systemErrorMessage(error: unknown, depth = 0): string | undefined {
  if (typeof error !== "object" || error === null || depth > 3) return undefined;
  const e = error as SystemError;
  if (typeof e.code === "string") {
    const syscall = typeof e.syscall === "string" ? e.syscall : "access";
    if (syscall === "listen" || syscall === "bind" || e.code === "EADDRINUSE" || e.code === "EADDRNOTAVAIL") {
      const message = forListen(
        e.code,
        typeof e.address === "string" ? e.address : undefined,
        typeof e.port === "number" ? e.port : undefined,
      );
      if (message) return message;
    }
    if (e.code === "ENOTFOUND" && typeof e.hostname === "string") {
      return `${JSON.stringify(e.hostname)} is not a host name this machine knows; give --host an address such as 127.0.0.1 or 0.0.0.0`;
    }
    if (typeof e.path === "string") {
      const message = forPath(e.code, syscall, e.path);
      if (message) return message;
    }
  }
  return systemErrorMessage(e.cause, depth + 1);
}
