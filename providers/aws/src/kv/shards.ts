/**
 * How a kv store's keys spread over partition key values, and the merge that lists them in order.
 * Both are part of the table's format: an item is found only in the shard `shardOf` names, so
 * SHARDS and the hash can never change for a table that holds data.
 */

import { createHash } from "node:crypto";

/**
 * Partition key values per store. DynamoDB gives each partition at most 1,000 WCU and 3,000 RCU
 * per second, and a partition key value lives in one partition until DynamoDB splits it for heat,
 * so a store's ceiling is SHARDS times that (16,000 writes/s, 48,000 strongly consistent reads/s of
 * items up to 1 KB / 4 KB). The price is that keys() makes SHARDS Query calls at least (one RCU
 * each when strongly consistent, even when a shard holds nothing), so 16 keeps listing cheap while
 * putting the ceiling above the default Lambda concurrency of 1,000 calling at ~10 ops/s each.
 */
export const SHARDS = 16;

/** The partition key value every item had before sharding. */
export const LEGACY_PARTITION = "k";

/** The shard of a key: the first 4 bytes of SHA-256 of its UTF-8 bytes, big-endian, modulo SHARDS. */
export function shardOf(key: string): number {
  return createHash("sha256").update(key, "utf8").digest().readUInt32BE(0) % SHARDS;
}

/** The partition key value of a key: `k#<shard>`. */
export function partitionOf(key: string): string {
  return `${LEGACY_PARTITION}#${shardOf(key)}`;
}

/**
 * Orders keys as DynamoDB orders string sort keys: by their UTF-8 bytes, which is code point order.
 * JS compares UTF-16 code units, which puts U+E000–U+FFFF after astral characters; this does not.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      // Surrogates (astral code points) sort after U+E000–U+FFFF.
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

/** One page of a sorted source, and where the next one starts (undefined: none). */
export interface Page<C> {
  keys: string[];
  next: C | undefined;
}

/** Reads the page of a sorted source that starts at `start` (undefined: the first). */
export type PageReader<C> = (start: C | undefined) => Promise<Page<C>>;

interface Cursor<C> {
  read: PageReader<C>;
  keys: string[];
  pos: number;
  /** The next page, asked for as soon as the one before it arrived. */
  pending: Promise<Page<C>> | undefined;
}

/**
 * Merges sources, each sorted by compareKeys, into one sorted stream; a key found in several
 * sources is yielded once. Every source's first page is asked for at once, and each next page as
 * soon as the one before it arrives, so at most two pages per source are held. Stopping early
 * leaves no unhandled rejection behind.
 */
export async function* mergePaged<C>(readers: PageReader<C>[]): AsyncGenerator<string> {
  const ask = (cursor: Cursor<C>, start: C | undefined) => {
    const page = cursor.read(start);
    page.catch(() => {}); // awaited by fill; only an abandoned page would otherwise be unhandled
    cursor.pending = page;
  };
  const fill = async (cursor: Cursor<C>) => {
    while (cursor.pos >= cursor.keys.length && cursor.pending) {
      const page = await cursor.pending;
      cursor.pending = undefined;
      cursor.keys = page.keys;
      cursor.pos = 0;
      if (page.next !== undefined) ask(cursor, page.next);
    }
  };
  const cursors: Cursor<C>[] = readers.map((read) => ({ read, keys: [], pos: 0, pending: undefined }));
  for (const cursor of cursors) ask(cursor, undefined);
  for (;;) {
    const waiting = cursors.filter((c) => c.pos >= c.keys.length && c.pending);
    if (waiting.length > 0) await Promise.all(waiting.map(fill));
    let least: string | undefined;
    for (const c of cursors) {
      if (c.pos >= c.keys.length) continue;
      const head = c.keys[c.pos] as string;
      if (least === undefined || compareKeys(head, least) < 0) least = head;
    }
    if (least === undefined) return;
    for (const c of cursors) if (c.pos < c.keys.length && c.keys[c.pos] === least) c.pos++;
    yield least;
  }
}
