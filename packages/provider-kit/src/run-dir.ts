/**
 * The private folder of one run (or one collect pass): it holds the Unix sockets of the services'
 * endpoints, so only this user can reach them. The folder is made by mkdtemp (a fresh random name, created or failing, never
 * an existing path), mode 0700, checked to be ours, and removed when the run stops. A run killed
 * with SIGKILL cannot remove it: the next run removes the folders of this user whose run is dead.
 */
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Run folders are named `<PREFIX><uid>-<random>`. */
export const RUN_DIR_PREFIX = "nitric-like-run-";
/** The file in a run folder that names the process owning it: `<pid> <start time>`. */
const OWNER_FILE = "owner";
/** A folder without an owner file this old is a run that died while starting. */
const UNOWNED_GRACE_MS = 60_000;

/** This user's id; undefined where there are no POSIX users (Windows). */
export function currentUid(): number | undefined {
  return process.getuid?.();
}

/**
 * Where run folders go: $XDG_RUNTIME_DIR when it is this user's private folder (it is meant for
 * exactly this: sockets, removed at logout), else the temp folder (sticky /tmp: other users can
 * neither rename nor remove our folder there).
 */
export function runDirParent(): string {
  const runtime = process.env.XDG_RUNTIME_DIR;
  const uid = currentUid();
  if (runtime?.startsWith("/") && uid !== undefined) {
    try {
      const st = lstatSync(runtime);
      if (st.isDirectory() && st.uid === uid && (st.mode & 0o077) === 0) return runtime;
    } catch {
      // Not there: use the temp folder.
    }
  }
  return tmpdir();
}

/** The kernel's start time of a process (field 22 of /proc/<pid>/stat), which tells a reused pid apart. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    return stat
      .slice(stat.lastIndexOf(")") + 2)
      .split(" ")
      .at(19);
  } catch {
    return undefined;
  }
}

/**
 * What names this process among every process the machine runs, now and later: `<pid> <start
 * time>` (a reused pid has another start time). Written in a folder it owns, so that a later
 * process can tell (ownerAlive) whether the folder's owner died without removing it.
 */
export function processMark(): string {
  return `${process.pid} ${startTimeOf(process.pid) ?? ""}`.trim();
}

/** Whether the process that wrote `owner` (a processMark()) still runs. */
export function ownerAlive(owner: string): boolean {
  const [pidText, start] = owner.trim().split(" ");
  const pid = Number(pidText);
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists, as another user's process (a reused pid): not ours to judge dead by start time.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  const now = startTimeOf(pid);
  return start === undefined || now === undefined || now === start;
}

/**
 * Removes the run folders of this user whose run is dead (killed with SIGKILL, or a crash). Only
 * real folders (not symlinks) named for this uid, owned by it and private are touched; a folder
 * whose owner file names a live process is kept. Returns the folders removed.
 */
export function removeStaleRunDirs(parent = runDirParent()): string[] {
  const uid = currentUid();
  if (uid === undefined) return [];
  const name = new RegExp(`^${RUN_DIR_PREFIX}${uid}-[A-Za-z0-9]{6}$`);
  let entries: string[];
  try {
    entries = readdirSync(parent);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const entry of entries) {
    if (!name.test(entry)) continue;
    const dir = join(parent, entry);
    try {
      const st = lstatSync(dir);
      if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) continue;
      const ownerPath = join(dir, OWNER_FILE);
      let owner: string | undefined;
      try {
        const ost = lstatSync(ownerPath);
        if (ost.isFile() && ost.uid === uid) owner = readFileSync(ownerPath, "utf8");
        else continue;
        // Empty: its run has made the file and not yet written it ("wx"); judged as one with none.
        if (owner.trim() === "") owner = undefined;
      } catch {
        owner = undefined;
      }
      if (owner === undefined ? Date.now() - st.mtimeMs < UNOWNED_GRACE_MS : ownerAlive(owner)) continue;
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      // Gone meanwhile, or not ours to read: leave it.
    }
  }
  return removed;
}

/** An error the CLI shows as its message alone: the fix is the user's (see Provider in @nitric-like/spec). */
function userError(message: string): Error {
  return Object.assign(new Error(message), { userFacing: true });
}

/** A run folder made by createRunDir(). */
export interface RunDir {
  /** Its absolute path. */
  readonly path: string;
  /** Removes it and everything in it. Idempotent. */
  remove(): void;
}

/** Folders to remove if the process exits without stopping its providers (process.exit). */
const live = new Set<string>();
let exitHookInstalled = false;

/**
 * Makes this run's private folder under runDirParent(). Throws when the folder is not what was
 * asked for (another owner, other permissions): nothing of the run may then go there.
 */
export function createRunDir(parent = runDirParent()): RunDir {
  const uid = currentUid();
  // In a folder anyone may write without the sticky bit, another user could move our folder away
  // and put theirs in its place.
  const pst = statSync(parent);
  if ((pst.mode & 0o002) !== 0 && (pst.mode & 0o1000) === 0) {
    throw userError(
      `local provider: ${JSON.stringify(parent)} is writable by every user and not sticky, so a private folder there could be swapped; set TMPDIR to a folder of your own`,
    );
  }
  const path = mkdtempSync(join(parent, `${RUN_DIR_PREFIX}${uid ?? "x"}-`));
  const st = lstatSync(path);
  // mkdtemp makes it 0700 whatever the umask; check, as nothing else protects the sockets.
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o777) !== 0o700) {
    throw userError(
      `local provider: the run folder ${JSON.stringify(path)} is not a private folder of this user (mode ${(st.mode & 0o777).toString(8)}, owner ${st.uid}); check the temp folder (TMPDIR) is a normal local folder`,
    );
  }
  writeFileSync(join(path, OWNER_FILE), processMark(), {
    flag: "wx",
    mode: 0o600,
  });
  live.add(path);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const dir of live) rmSync(dir, { recursive: true, force: true });
    });
  }
  return {
    path,
    remove() {
      if (!live.delete(path)) return;
      rmSync(path, { recursive: true, force: true });
    },
  };
}
