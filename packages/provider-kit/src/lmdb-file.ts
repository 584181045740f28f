/**
 * A look at an lmdb environment's data file before lmdb maps it. lmdb trusts the file: one that is
 * not an lmdb file, or one cut short (a full disk, an interrupted copy, a sync tool that kept part
 * of it), ends the whole process with SIGSEGV or SIGBUS as lmdb reads it, with no message. This
 * reads what lmdb reads first and says what is wrong, so `run` and `secret put` can name the file
 * and the way out instead of dying.
 *
 * The layout is lmdb-js's (LMDB 1.0, data version 2): a page starts with a 24-byte header (its
 * number, a transaction id, a pad, its flags, then the bounds of its free space), and a meta page's
 * MDB_meta follows it: the magic 0xBEEFC0DE, the format version, the map's address and size, the
 * free and main databases (MDB_db: the first one's md_pad holds the page size; md_root at 40), the
 * last page used and the transaction id. lmdb uses the meta page with the higher transaction id.
 *
 * Checked always: both meta pages (magic, page size). Checked when no process has the environment
 * open (Linux's /proc/locks tells; elsewhere never): the trees of the newer meta, breadth first
 * from the free and main databases' roots through named databases and overflow values, each page
 * inside the file and holding its own page number: what lmdb reads and writes through, so a file
 * that fails this crashes it, and one that passes it does not (a test holds lmdb to that on every
 * cut of a real file). A writer in another process rewrites free pages as they are read, so with
 * one at work only the meta pages are checked. The meta's "last page used" is not held against the
 * file's size: LMDB notes that the file may be shorter when the free database lists the final
 * pages, and it is.
 */
import { type BigIntStats, closeSync, fstatSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { join } from "node:path";

const MAGIC = 0xbeefc0de;
/** The page header of data version 2 (LMDB 1.0); version 1 files (LMDB 0.9) have 16 bytes. */
const PAGE_HEADER = 24;
const V1_PAGE_HEADER = 16;
/** Offsets in MDB_meta. */
const PAGE_SIZE_AT = 24;
const FREE_ROOT_AT = 24 + 40;
const MAIN_ROOT_AT = 24 + 48 + 40;
const TXNID_AT = 128;
/** The bytes of a meta page that are read. */
const META_BYTES = PAGE_HEADER + TXNID_AT + 8;
/** Page flags and node flags. */
const P_BRANCH = 0x01;
const P_LEAF = 0x02;
const F_BIGDATA = 0x01;
const F_SUBDATA = 0x02;
/** The offset of md_root in an MDB_db. */
const ROOT_IN_DB = 40;
/** No page (an empty database's root). */
const NO_PAGE = 0xffffffffffffffffn;
/** The most pages read (20 MB of 4 KB pages, some 100 ms): past them, pages are only checked to be in the file. */
const MAX_PAGES_READ = 5000;
/** How often a problem must be seen again, unchanged, to be said; in at most ATTEMPTS passes. */
const CONFIRMATIONS = 2;
const ATTEMPTS = 8;
/** The pause between passes that found a problem. */
const PAUSE_MS = 30;

function readAt(fd: number, length: number, position: number): Buffer {
  const buffer = Buffer.alloc(length);
  const n = readSync(fd, buffer, 0, length, position);
  return buffer.subarray(0, n);
}

/** What one pass found: a problem (none when undefined), with the meta and size it read. */
interface Pass {
  problem?: string;
  txnid?: bigint;
  size: number;
}

function pass(fd: number, walk: boolean): Pass {
  const size = fstatSync(fd).size;
  if (size === 0) return { size };
  const first = readAt(fd, META_BYTES, 0);
  // A version 1 file (an older lmdb): lmdb itself says what it makes of it.
  if (first.length >= V1_PAGE_HEADER + 4 && first.readUInt32LE(V1_PAGE_HEADER) === MAGIC) return { size };
  if (first.length < META_BYTES || first.readUInt32LE(PAGE_HEADER) !== MAGIC) {
    return { problem: `it is not an lmdb data file (${size} bytes, without lmdb's header)`, size };
  }
  const pageSize = first.readUInt32LE(PAGE_HEADER + PAGE_SIZE_AT);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    return { problem: `its header is damaged (a page size of ${pageSize} bytes)`, size };
  }
  const second = readAt(fd, META_BYTES, pageSize);
  if (second.length < META_BYTES || second.readUInt32LE(PAGE_HEADER) !== MAGIC) {
    return {
      problem: `it is cut short or damaged: it is ${size} bytes and its second header page is ${second.length < META_BYTES ? "missing" : "not lmdb's"}`,
      size,
    };
  }
  const txnid = (page: Buffer) => page.readBigUInt64LE(PAGE_HEADER + TXNID_AT);
  if (!walk) return { size };
  // lmdb opens the newer meta (the older only with lmdb-js's usePreviousSnapshot, not used here).
  const newer = txnid(first) >= txnid(second) ? first : second;
  const problem = treeProblem(fd, size, pageSize, newer);
  if (problem === undefined) return { size };
  return { problem, txnid: txnid(newer), size };
}

/** What is wrong with the trees `meta` roots, or undefined when each page they need is whole. */
function treeProblem(fd: number, size: number, pageSize: number, meta: Buffer): string | undefined {
  const pages = BigInt(Math.floor(size / pageSize));
  /** The page `pgno`, or what is wrong with it. */
  const page = (pgno: bigint): Buffer | string => {
    if (pgno >= pages) {
      return `it is cut short: it is ${size} bytes, and its data goes on to page ${pgno} (at least ${(pgno + 1n) * BigInt(pageSize)} bytes)`;
    }
    const bytes = readAt(fd, pageSize, Number(pgno) * pageSize);
    if (bytes.readBigUInt64LE(0) !== pgno) {
      return `it is damaged: page ${pgno}, where its data goes on, holds something else (zeros, or another file's bytes)`;
    }
    return bytes;
  };
  const found = (problem: string) => problem;
  // Every tree, breadth first from the free and main databases' roots: a branch page's children,
  // a leaf's named databases (F_SUBDATA) and values on overflow pages (F_BIGDATA). Pages are read
  // up to a budget; past it, the pages known so far are only checked to be inside the file.
  const queue = [FREE_ROOT_AT, MAIN_ROOT_AT]
    .map((at) => meta.readBigUInt64LE(PAGE_HEADER + at))
    .filter((p) => p !== NO_PAGE);
  let reads = 0;
  for (let head = 0; head < queue.length; head++) {
    const pgno = queue[head] as bigint;
    if (reads >= MAX_PAGES_READ) {
      if (pgno >= pages) return found(page(pgno) as string);
      continue;
    }
    reads++;
    const bytes = page(pgno);
    if (typeof bytes === "string") return found(bytes);
    const flags = bytes.readUInt16LE(18);
    if (!(flags & (P_BRANCH | P_LEAF))) return found(`it is damaged: page ${pgno} is not the lmdb page its data needs`);
    // mp_lower counts from the end of the header, where the nodes' offsets (mp_ptrs) start.
    const nodes = bytes.readUInt16LE(20) >> 1;
    if (PAGE_HEADER + 2 * nodes > pageSize)
      return found(`it is damaged: page ${pgno} is not the lmdb page its data needs`);
    for (let i = 0; i < nodes; i++) {
      const at = PAGE_HEADER + bytes.readUInt16LE(PAGE_HEADER + 2 * i);
      if (at + 8 > pageSize) return found(`it is damaged: page ${pgno} is not the lmdb page its data needs`);
      const lo = bytes.readUInt16LE(at);
      const hi = bytes.readUInt16LE(at + 2);
      const nodeFlags = bytes.readUInt16LE(at + 4);
      const data = at + 8 + bytes.readUInt16LE(at + 6);
      if (flags & P_BRANCH) {
        queue.push(BigInt(lo) | (BigInt(hi) << 16n) | (BigInt(nodeFlags) << 32n));
        continue;
      }
      if (!(nodeFlags & (F_SUBDATA | F_BIGDATA))) continue;
      const pointer = data + (nodeFlags & F_SUBDATA ? ROOT_IN_DB : 0);
      if (pointer + 8 > pageSize) return found(`it is damaged: page ${pgno} is not the lmdb page its data needs`);
      const target = bytes.readBigUInt64LE(pointer);
      if (target === NO_PAGE) continue;
      if (nodeFlags & F_SUBDATA) {
        queue.push(target);
        continue;
      }
      // A value on overflow pages: its first page says how many follow.
      if (reads >= MAX_PAGES_READ) {
        if (target >= pages) return found(page(target) as string);
        continue;
      }
      reads++;
      const first = page(target);
      if (typeof first === "string") return found(first);
      const last = target + BigInt(first.readUInt32LE(20)) - 1n;
      if (last >= pages) return found(page(last) as string);
    }
  }
  return undefined;
}

/**
 * True when no process has the environment in `dir` open, as far as this system can tell: lmdb
 * holds a POSIX lock on `lock.mdb` for as long as it has it open, and Linux lists those locks in
 * /proc/locks. Elsewhere (no /proc/locks) false: the trees are then not walked, as a writer could
 * be rewriting pages while they are read.
 */
function heldByNobody(dir: string): boolean {
  let locks: string;
  try {
    locks = readFileSync("/proc/locks", "utf8");
  } catch {
    return false;
  }
  let lock: BigIntStats;
  try {
    lock = statSync(join(dir, "lock.mdb"), { bigint: true });
  } catch {
    return true; // no lock file: nobody has it open
  }
  // Linux's dev_t: the major number in bits 8-19 and 32-43, the minor in bits 0-7 and 12-31.
  const major = ((lock.dev >> 8n) & 0xfffn) | ((lock.dev >> 32n) & ~0xfffn);
  const minor = (lock.dev & 0xffn) | ((lock.dev >> 12n) & ~0xffn);
  const hex = (n: bigint) => n.toString(16).padStart(2, "0");
  const id = `${hex(major)}:${hex(minor)}:${lock.ino}`;
  return !locks.split("\n").some((line) => line.split(/\s+/).includes(id));
}

/**
 * What is wrong with the lmdb data file in `dir` (`data.mdb`), or undefined when lmdb can open it:
 * none there yet, an empty one (lmdb starts it afresh), or one whose headers and trees are whole.
 * A problem is said only once seen CONFIRMATIONS more times, some milliseconds apart, with the
 * same meta and size: a process that opens the file meanwhile and writes changes them.
 */
export function lmdbFileProblem(dir: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(join(dir, "data.mdb"), "r");
  } catch {
    return undefined; // none yet, or one lmdb will say it cannot open (permissions): its own error
  }
  try {
    const walk = heldByNobody(dir);
    let last: Pass | undefined;
    let seen = 0;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const found = pass(fd, walk);
      if (found.problem === undefined) return undefined;
      const same =
        last !== undefined && last.problem === found.problem && last.txnid === found.txnid && last.size === found.size;
      seen = same ? seen + 1 : 0;
      if (seen >= CONFIRMATIONS) return found.problem;
      last = found;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, PAUSE_MS);
    }
    // It kept changing: a writer is at work on it, which lmdb could not do with a damaged file.
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Throws a user-facing error naming the file, what is wrong and the way out when the lmdb data
 * file in `dir` cannot be opened safely; `what` says whose data it is (`kv: the stores`).
 */
export function checkLmdbFile(dir: string, what: string): void {
  const problem = lmdbFileProblem(dir);
  if (problem === undefined) return;
  const file = JSON.stringify(join(dir, "data.mdb"));
  throw Object.assign(
    new Error(
      `${what}' file ${file} is damaged: ${problem}; move the folder away to start afresh (mv ${JSON.stringify(dir)} ${JSON.stringify(`${dir}.damaged`)}), or put back a copy from a backup`,
    ),
    { userFacing: true },
  );
}
