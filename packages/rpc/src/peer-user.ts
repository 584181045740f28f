/**
 * Whose process is at the other end of a TCP connection on this machine. Nitric's SDKs send no
 * credential, so a gRPC endpoint on 127.0.0.1 cannot ask its caller who it is; the kernel knows,
 * though: Linux lists every TCP socket in /proc/net/tcp (and tcp6) with the uid of the user that
 * made it. A connection from 127.0.0.1:X to our 127.0.0.1:P is the row whose local address is
 * 127.0.0.1:X and whose remote address is 127.0.0.1:P, and that row's uid is the caller's.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { endianness } from "node:os";

const TABLES = ["/proc/net/tcp", "/proc/net/tcp6"];

/** True where the kernel says whose each TCP connection is (Linux, with /proc) and there are users. */
export function canCheckTcpPeers(): boolean {
  return process.getuid !== undefined && existsSync(TABLES[0] as string);
}

/** An IPv4 address as /proc/net/tcp writes it: 8 hex digits, one 32-bit word in host byte order. */
function ipv4(word: string): string {
  const n = Number.parseInt(word, 16);
  const bytes = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  return (endianness() === "LE" ? bytes.reverse() : bytes).join(".");
}

/** "0100007F:1F90" (or an IPv6 row's, of which only IPv4-mapped ones are read) as "127.0.0.1:8080". */
function endpoint(field: string): string | undefined {
  const [address = "", port = ""] = field.split(":");
  let v4: string | undefined;
  if (address.length === 8) v4 = ipv4(address);
  else if (address.length === 32) {
    // ::ffff:a.b.c.d, as four host-order words: 0, 0, 0x0000ffff, the IPv4 word.
    const mapped = endianness() === "LE" ? "0000000000000000FFFF0000" : "00000000000000000000FFFF";
    if (address.slice(0, 24).toUpperCase() === mapped) v4 = ipv4(address.slice(24));
  }
  return v4 === undefined ? undefined : `${v4}:${Number.parseInt(port, 16)}`;
}

/** "::ffff:127.0.0.1" as "127.0.0.1"; other addresses as they are. */
const plain = (address: string | undefined) => (address ?? "").replace(/^::ffff:/i, "");

/** A row of the kernel's TCP tables: its local and remote endpoints (as endpoint() reads them), state and uid. */
interface Row {
  local: string | undefined;
  remote: string | undefined;
  /** "0A" is LISTEN. */
  state: string | undefined;
  uid: string | undefined;
}

/** The first row of /proc/net/tcp, then tcp6, that `wanted` takes, or undefined. */
async function findRow(wanted: (row: Row) => boolean): Promise<Row | undefined> {
  for (const table of TABLES) {
    let text: string;
    try {
      text = await readFile(table, "latin1");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      // sl local rem st tx:rx tr:when retrnsmt uid ...
      const f = line.trim().split(/\s+/);
      if (f[1] === undefined || f[2] === undefined) continue;
      const row = { local: endpoint(f[1]), remote: endpoint(f[2]), state: f[3], uid: f[7] };
      if (wanted(row)) return row;
    }
  }
  return undefined;
}

/**
 * Whether the kernel's tables list the TCP socket listening on 127.0.0.1:`port` (the caller's own):
 * where /proc exists but does not show this process's sockets (a sandbox's partial /proc), no
 * connection could be told apart, and the caller does not check them.
 */
export async function listsListener(port: number): Promise<boolean> {
  const wanted = `127.0.0.1:${port}`;
  return (await findRow((row) => row.state === "0A" && row.local === wanted)) !== undefined;
}

/** A connection whose client's uid is wanted: `<client> <server>`, as endpoint() writes each. */
interface Lookup {
  readonly key: string;
  readonly resolve: (uid: number | undefined) => void;
}

/** Lookups that wait for the next read of the tables. */
let waiting: Lookup[] = [];
/** Whether the tables are being read for lookups (one read at a time, for every lookup waiting). */
let reading = false;

/**
 * The uid of the process that made the client end of `socket` (a connection accepted on this
 * machine over IPv4), or undefined when the kernel's tables do not show it (no /proc, the client
 * already gone, a connection from another machine). Every connection accepted while the tables
 * are read waits for the next read, which answers all of them: a client (any user's) that opens
 * thousands of connections at once costs one read of the tables at a time, not one each (each a
 * copy of a table that those very connections make longer: gigabytes of memory and minutes of CPU).
 */
export function tcpPeerUid(socket: {
  remoteAddress?: string | undefined;
  remotePort?: number | undefined;
  localAddress?: string | undefined;
  localPort?: number | undefined;
}): Promise<number | undefined> {
  const key = `${plain(socket.remoteAddress)}:${socket.remotePort} ${plain(socket.localAddress)}:${socket.localPort}`;
  return new Promise((resolve) => {
    waiting.push({ key, resolve });
    if (!reading) void answerWaiting();
  });
}

/** Reads the tables for the lookups waiting, again while more came during a read, then stops. */
async function answerWaiting(): Promise<void> {
  reading = true;
  try {
    while (waiting.length > 0) {
      const batch = waiting;
      waiting = [];
      const found = new Map<string, number>();
      try {
        const wanted = new Set(batch.map((lookup) => lookup.key));
        await findRow((row) => {
          if (row.uid === undefined) return false;
          const key = `${row.local} ${row.remote}`;
          if (wanted.delete(key)) found.set(key, Number(row.uid));
          return wanted.size === 0;
        });
      } catch {
        // A table that cannot be parsed shows no one: the lookups not found are answered undefined.
      }
      for (const lookup of batch) lookup.resolve(found.get(lookup.key));
    }
  } finally {
    reading = false;
  }
}
