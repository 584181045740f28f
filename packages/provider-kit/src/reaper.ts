/**
 * Ends the child processes this process started when this process ends, however it ends: a normal
 * exit, an uncaught error, a signal Node's default ends it on (spec's, build's and up's Ctrl-C), a
 * stdout whose reader left, or SIGKILL, which runs none of this process's code.
 *
 * A child cannot be trusted to notice alone: one busy in a synchronous loop (a service's top
 * level, a Lambda init) runs none of its JavaScript, so a watch inside it never fires, and a
 * service in a process group of its own gets no terminal signal. So the watch is outside both: a
 * small shell (the reaper) started once, in a session of its own (a terminal's Ctrl-C and hangup
 * reach only this process, which stops its children in its own time), reads the pids to end on
 * its stdin, a pipe whose only writer is this process. When this process ends, however it ends,
 * the kernel closes that pipe, the reaper reads its end, sends SIGTERM to every child still
 * listed (a whole process group for a service), and SIGKILL to those still there 2 s later. A
 * child that exits is taken off the list first (a group once nothing is left in it: what its
 * leader started is ended with it), so a normal stop leaves it nothing to do.
 *
 * Not on Windows (no process groups, no /bin/sh); there the children's own watches remain.
 */
import { type ChildProcess, spawn } from "node:child_process";
import type { Writable } from "node:stream";

/**
 * The reaper: `+<id>` lists an id, `-<id>` takes it off; an id is a pid, or `-<pgid>` for a
 * process group. At the end of its input, what is listed is ended. Signals are ignored: only the
 * end of its input ends it.
 */
const REAPER = `trap '' INT TERM HUP PIPE
live=' '
while IFS= read -r line; do
  case $line in
    +*) live="$live\${line#+} " ;;
    -*) p=\${line#-}; case $live in *" $p "*) live="\${live%% $p *} \${live#* $p }" ;; esac ;;
  esac
done
[ "$live" = ' ' ] && exit 0
for p in $live; do kill -s TERM -- "$p" 2>/dev/null; done
i=0
while [ $i -lt 20 ]; do
  left=''
  for p in $live; do kill -s 0 -- "$p" 2>/dev/null && left="$left $p"; done
  [ -z "$left" ] && exit 0
  live=$left
  sleep 0.1
  i=$((i + 1))
done
for p in $live; do kill -s KILL -- "$p" 2>/dev/null; done
`;

/**
 * The reaper's name in a process list. It lives as long as the process that started it (a test
 * process using @nitric-like/testing too): a test that counts its children leaves it out by this.
 */
export const REAPER_NAME = "nitric-like-reaper";

let input: Writable | undefined;
let unavailable = false;

/** The reaper's stdin, started on first use; undefined where it cannot run. */
function reaperInput(): Writable | undefined {
  if (input !== undefined || unavailable) return input;
  if (process.platform === "win32") {
    unavailable = true;
    return undefined;
  }
  try {
    // REAPER_NAME is the shell's $0: what `ps` shows it as, beside the script.
    const reaper = spawn("/bin/sh", ["-c", REAPER, REAPER_NAME], {
      stdio: ["pipe", "ignore", "ignore"],
      detached: true,
    });
    // Started, it must not keep this process alive: it ends when this process does.
    reaper.unref();
    reaper.on("error", () => {
      unavailable = true;
      input = undefined;
    });
    const stdin = reaper.stdin;
    if (stdin === null) throw new Error("no stdin");
    stdin.on("error", () => {});
    (stdin as Writable & { unref?(): void }).unref?.();
    input = stdin;
  } catch {
    unavailable = true;
  }
  return input;
}

/**
 * Starts the reaper now, if it has not started: before a child is spawned, so that the child is
 * listed as soon as spawn() returns, not after the reaper's own start (a few milliseconds in which
 * this process could be killed).
 */
export function startReaper(): void {
  reaperInput();
}

/** How long what is left of a process group once its leader has exited has after SIGTERM, before SIGKILL. */
const GROUP_GRACE_MS = 2000;

/**
 * Ends `child` (its whole process group with `group`, for a child spawned `detached`) when this
 * process ends, if it has not exited by then (see above). With `group`, what is left of the group
 * once `child`, its leader, has exited (processes it started: a `sleep` a service spawned, a
 * server of its own) is ended too, however the leader ended: a stop, a restart, a crash. They get
 * SIGTERM, and SIGKILL GROUP_GRACE_MS later; the group stays listed here until it is gone.
 */
export function endWithThisProcess(child: ChildProcess, group: boolean): void {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const to = reaperInput();
  const id = group ? `-${pid}` : `${pid}`;
  if (to !== undefined) to.write(`+${id}\n`);
  const unlist = () => {
    if (to !== undefined && !to.destroyed) to.write(`-${id}\n`);
  };
  child.once("exit", () => {
    if (group && process.platform !== "win32") endLeftGroup(pid, unlist);
    else unlist();
  });
}

/** Sends `signal` to process group `pgid`; false when no process is left in it. */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Ends what is left of group `pgid`, whose leader has exited, then calls `gone`. */
function endLeftGroup(pgid: number, gone: () => void): void {
  if (!signalGroup(pgid, "SIGTERM")) {
    gone();
    return;
  }
  const until = Date.now() + GROUP_GRACE_MS;
  const check = setInterval(() => {
    if (signalGroup(pgid, 0) && Date.now() < until) return;
    clearInterval(check);
    signalGroup(pgid, "SIGKILL");
    gone();
  }, 50);
  // Nothing here keeps this process alive: the reaper ends the group if this process ends first.
  check.unref();
}
