/**
 * A look at an lmdb environment's data file before lmdb maps it. lmdb trusts the file: one that is
 * not an lmdb file, or is shorter than its own header says (a full disk, an interrupted copy, a
 * sync tool that kept part of it), ends the whole process with SIGSEGV or SIGBUS as lmdb reads it,
 * with no message. This reads the two meta pages (what lmdb reads first) and says what is wrong,
 * so `run` and `secret put` can name the file and the way out instead of dying.
 *
 * The layout is lmdb-js's (LMDB 1.0): a page starts with a 24-byte header, and a meta page's
 * MDB_meta follows it: the magic 0xBEEFC0DE, the format version, then the map's address and size,
 * the two core databases (the first one's md_pad holds the page size), the last page used and the
 * transaction id. lmdb uses the meta page with the higher transaction id.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { join } from "node:path";

const MAGIC = 0xbeefc0de;
/** Where MDB_meta starts in a meta page: after the page header. */
const META = 24;
/** Offsets in MDB_meta. */
const MAGIC_AT = 0;
const PAGE_SIZE_AT = 24;
const LAST_PAGE_AT = 120;
const TXNID_AT = 128;
/** The bytes of a meta page that are read. */
const META_BYTES = META + TXNID_AT + 8;

function readAt(fd: number, length: number, position: number): Buffer {
  const buffer = Buffer.alloc(length);
  const n = readSync(fd, buffer, 0, length, position);
  return buffer.subarray(0, n);
}

/**
 * What is wrong with the lmdb data file in `dir` (`data.mdb`), or undefined when lmdb can open it:
 * none there yet, an empty one (lmdb starts it afresh), or one whose meta pages are whole and
 * whose size covers every page they say it holds.
 */
export function lmdbFileProblem(dir: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(join(dir, "data.mdb"), "r");
  } catch {
    return undefined; // none yet, or one lmdb will say it cannot open (permissions): its own error
  }
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return undefined;
    const first = readAt(fd, META_BYTES, 0);
    if (first.length < META_BYTES || first.readUInt32LE(META + MAGIC_AT) !== MAGIC) {
      return `it is not an lmdb data file (${size} bytes, without lmdb's header)`;
    }
    const pageSize = first.readUInt32LE(META + PAGE_SIZE_AT);
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
      return `its header is damaged (a page size of ${pageSize} bytes)`;
    }
    const second = readAt(fd, META_BYTES, pageSize);
    if (second.length < META_BYTES || second.readUInt32LE(META + MAGIC_AT) !== MAGIC) {
      return `it is cut short or damaged: it is ${size} bytes and its second header page is ${second.length < META_BYTES ? "missing" : "not lmdb's"}`;
    }
    const txnid = (page: Buffer) => page.readBigUInt64LE(META + TXNID_AT);
    const current = txnid(first) >= txnid(second) ? first : second;
    const needed = (current.readBigUInt64LE(META + LAST_PAGE_AT) + 1n) * BigInt(pageSize);
    if (BigInt(size) < needed) {
      return `it is cut short: it is ${size} bytes and its header says it holds ${needed}`;
    }
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
