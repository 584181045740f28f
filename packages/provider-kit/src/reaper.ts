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
 * A process group does not hold everything a child starts: a process spawned `detached` or run
 * under `setsid` leads a session of its own, and a daemon's parent exits at once (it is then the
 * child of PID 1, so no parent chain leads to it either). What every such process keeps is the
 * environment it inherited: each child gets a lineage, a random mark in its environment
 * (LINEAGE_VAR), and whatever process on this machine carries it (read from /proc/<pid>/environ,
 * the environment a process was started with) is ended with the child, here and by the reaper.
 * Its limits: a process started with an environment of its own that lacks the mark (`env -i`, a
 * spawn given an `env` not built on process.env), or run as another user, is not found; where
 * there is no /proc (macOS) nothing is found, and the group alone is ended.
 *
 * Not on Windows (no process groups, no /bin/sh); there the children's own watches remain.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import type { Writable } from "node:stream";

/**
 * The variable that carries a child's lineage into its environment, and from there into the
 * environment of every process it starts (see above).
 */
export const LINEAGE_VAR = "NITRIC_LIKE_LINEAGE";

/** A new lineage: a mark for one child (a service process or thread, an execution environment). */
export function newLineage(): string {
  return randomBytes(16).toString("hex");
}

/**
 * `env` with `lineage` added to LINEAGE_VAR, after the lineages it has: a `run` that a service of
 * another `run` started keeps that one's too, so what it starts ends with either.
 */
export function withLineage(env: NodeJS.ProcessEnv, lineage: string): NodeJS.ProcessEnv {
  const before = env[LINEAGE_VAR];
  return { ...env, [LINEAGE_VAR]: before ? `${before},${lineage}` : lineage };
}

/** One asking lineageCarriers: its marks, the processes read for it so far, and those that carry one. */
interface Asker {
  readonly marks: readonly Buffer[];
  /** The pids read since it asked: a process's environment does not change, so one read is enough. */
  readonly read: Set<number>;
  readonly found: Set<number>;
  readonly answer: (pids: number[]) => void;
}

/** Those waiting for an answer, served by one scan at a time. */
const askers = new Set<Asker>();
let scanning = false;
let passes = 0;

/**
 * How many passes over /proc lineageCarriers has made in this thread: a pass answers every
 * lineage asked for when it starts, however many they are (for a test).
 */
export function lineageScanPasses(): number {
  return passes;
}

/**
 * The pids of the live processes whose environment carries one of `lineages`, this process left
 * out; none where there is no /proc. A zombie's environment reads empty, so it is not one. Read
 * without blocking this process's thread (the gateways run on it), a few files at a time, on
 * libuv's thread pool, which the gRPC servers' same-user checks use too: so every lineage asked
 * for meanwhile shares one scan (a save that restarts 20 services, a grace's rescans every
 * 250 ms), which reads each process's environment once and looks for all of their marks in it.
 */
export function lineageCarriers(lineages: readonly string[]): Promise<number[]> {
  if (lineages.length === 0 || process.platform !== "linux") return Promise.resolve([]);
  // A lineage is 32 random hex digits: found anywhere in an environment, it is LINEAGE_VAR's.
  const marks = lineages.map((lineage) => Buffer.from(lineage));
  return new Promise((answer) => {
    askers.add({ marks, read: new Set(), found: new Set(), answer });
    if (scanning) return;
    scanning = true;
    // After what else this turn of the event loop asks (services that exited together).
    setImmediate(() => void scan());
  });
}

/**
 * Scans /proc until no one is waiting. A pass lists /proc, then reads each process's environment
 * for those waiting that have not had it read since they asked (one joining mid-pass has the rest
 * of that pass read for it), and answers those that were waiting when it listed /proc: every
 * process there was then has been read for them since they asked, in this pass or the one before
 * (a process started later is a carrier's child, found by the rescans endLeft makes).
 */
async function scan(): Promise<void> {
  try {
    while (askers.size > 0) {
      passes++;
      const answered = [...askers];
      let pids: number[];
      try {
        pids = (await readdir("/proc")).filter((e) => /^\d+$/.test(e)).map(Number);
      } catch {
        pids = [];
      }
      pids = pids.filter((pid) => pid !== process.pid);
      for (let at = 0; at < pids.length; at += 16) {
        await Promise.all(pids.slice(at, at + 16).map(readFor));
      }
      for (const asker of answered) {
        askers.delete(asker);
        asker.answer([...asker.found]);
      }
    }
  } finally {
    scanning = false;
    // Not expected (every read's error is caught), but none is left waiting if it comes.
    for (const asker of askers) asker.answer([...asker.found]);
    askers.clear();
  }
}

/** Reads `pid`'s environment for those waiting now that have not had it read, if any. */
async function readFor(pid: number): Promise<void> {
  // Those that ask while it is read have it read again: the pid may have been another process's.
  const readers = [...askers].filter((asker) => !asker.read.has(pid));
  if (readers.length === 0) return;
  let environ: Buffer | undefined;
  try {
    environ = await readFile(`/proc/${pid}/environ`);
  } catch {
    // Gone, or another user's.
  }
  for (const asker of readers) {
    asker.read.add(pid);
    if (environ !== undefined && asker.marks.some((mark) => environ.includes(mark))) asker.found.add(pid);
  }
}

/**
 * The reaper: `+<id>` lists an id, `-<id>` takes it off; an id is a pid, `-<pgid>` for a
 * process group, or `~<lineage>` for every process whose environment carries that lineage. At the
 * end of its input, what is listed is ended: a lineage's processes are looked up in /proc once
 * before SIGTERM (none where there is no /proc) and again before SIGKILL. Signals are ignored:
 * only the end of its input ends it.
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
carriers() {
  set --
  for p in $live; do case $p in "~"*) set -- "$@" -e "\${p#"~"}" ;; esac; done
  [ $# -eq 0 ] && return
  for f in $(grep -lsaF "$@" /proc/[0-9]*/environ); do
    f=\${f#/proc/}; echo "\${f%/environ}"
  done
}
ids() { for p in $live; do case $p in "~"*) ;; *) echo "$p" ;; esac; done; carriers; }
for p in $(ids); do kill -s TERM -- "$p" 2>/dev/null; done
i=0
while [ $i -lt 20 ]; do
  left=''
  for p in $(ids); do kill -s 0 -- "$p" 2>/dev/null && left="$left $p"; done
  [ -z "$left" ] && exit 0
  sleep 0.1
  i=$((i + 1))
done
for p in $(ids); do kill -s KILL -- "$p" 2>/dev/null; done
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
 * SIGTERM, and SIGKILL GROUP_GRACE_MS later; the group stays listed here until it is gone. With
 * `lineage` (added to the child's environment with withLineage), every process that carries it
 * is ended with the group, those that left it (a session of their own, a daemon) too.
 */
export function endWithThisProcess(child: ChildProcess, group: boolean, lineage?: string): void {
  const pid = child.pid;
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const to = reaperInput();
  const ids = [group ? `-${pid}` : `${pid}`, ...(lineage !== undefined ? [`~${lineage}`] : [])];
  if (to !== undefined) for (const id of ids) to.write(`+${id}\n`);
  const unlist = () => {
    if (to !== undefined && !to.destroyed) for (const id of ids) to.write(`-${id}\n`);
  };
  child.once("exit", () => {
    if (process.platform === "win32") unlist();
    else endLeft(group ? pid : undefined, lineage, unlist);
  });
}

/** This process's own lineage, once lineageOfThisProcess has given it one. */
let ownLineage: string | undefined;

/**
 * Gives this process a lineage of its own, for code that runs on its own thread (the services of
 * `run --single-thread`), which shares its environment: added to process.env's LINEAGE_VAR (after
 * those it inherited), so every process started from then on with process.env carries it. It is
 * listed with the reaper for good (what starts one moment before this process exits is ended
 * after it), the reaper being started before process.env carries it: the reaper, started once,
 * would end itself with it. The scans here leave this process out. A second call gives the same.
 */
export function lineageOfThisProcess(): string {
  if (ownLineage === undefined) {
    const lineage = newLineage();
    const to = process.platform === "win32" ? undefined : reaperInput();
    if (to !== undefined) to.write(`+~${lineage}\n`);
    ownLineage = lineage;
    process.env[LINEAGE_VAR] = withLineage(process.env, lineage)[LINEAGE_VAR];
  }
  return ownLineage;
}

/**
 * Ends every process but this one that carries this process's own lineage (lineageOfThisProcess):
 * SIGTERM, then SIGKILL GROUP_GRACE_MS later to those left. Resolves once they are gone, at once
 * when this process has no lineage of its own; until then it keeps this process alive (what ends
 * them does not, so that the reaper ends them if this process ends meanwhile).
 */
export async function endLineageOfThisProcess(): Promise<void> {
  const lineage = ownLineage;
  if (lineage === undefined || process.platform === "win32") return;
  const alive = setInterval(() => {}, 1000);
  try {
    await new Promise<void>((resolve) => endLeft(undefined, lineage, resolve));
  } finally {
    clearInterval(alive);
  }
}

/**
 * Ends, when this process ends (the reaper), every process that carries `lineage`: what a worker
 * thread of this process started (its environment is the thread's). Returns what ends them now
 * (SIGTERM, SIGKILL GROUP_GRACE_MS later) and takes them off the reaper's list once they are gone:
 * for when the thread has ended. It resolves once they are gone.
 */
export function endLineageWithThisProcess(lineage: string): () => Promise<void> {
  const to = process.platform === "win32" ? undefined : reaperInput();
  if (to !== undefined) to.write(`+~${lineage}\n`);
  let ended: Promise<void> | undefined;
  return () => {
    ended ??= new Promise<void>((resolve) => {
      endLeft(undefined, lineage, () => {
        if (to !== undefined && !to.destroyed) to.write(`-~${lineage}\n`);
        resolve();
      });
    });
    return ended;
  };
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

/** Sends `signal` to each of `pids` that is still there. */
function signalEach(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Gone meanwhile.
    }
  }
}

/** Resolves after `ms`; the timer keeps nothing alive. */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * Ends what is left of group `pgid`, whose leader has exited, and every process that carries
 * `lineage`, then calls `gone`: SIGTERM, then SIGKILL to those still there GROUP_GRACE_MS later.
 * Nothing here keeps this process alive: the reaper ends them if this process ends first.
 */
function endLeft(pgid: number | undefined, lineage: string | undefined, gone: () => void): void {
  const lineages = lineage !== undefined ? [lineage] : [];
  const groupLeft = (signal: NodeJS.Signals | 0) => pgid !== undefined && signalGroup(pgid, signal);
  const until = Date.now() + GROUP_GRACE_MS;
  const end = async () => {
    const group = groupLeft("SIGTERM");
    let left = await lineageCarriers(lineages);
    signalEach(left, "SIGTERM");
    if (!group && left.length === 0) return;
    // The group every 50 ms; /proc, a read of every process's environment, every 250 ms.
    for (let tick = 1; Date.now() < until; tick++) {
      await pause(50);
      if (tick % 5 === 0) left = await lineageCarriers(lineages);
      if (!groupLeft(0) && left.length === 0) return;
    }
    groupLeft("SIGKILL");
    signalEach(await lineageCarriers(lineages), "SIGKILL");
  };
  void end().then(gone, gone);
}
