/**
 * The calls in flight on one transport, by call id: a Map's get, has, delete and size, where the
 * table hands out the ids itself.
 *
 * Why not a Map keyed by a counter: a call's id is a key the Map has never seen, and under load
 * every call adds one key and deletes one. Measured in a service thread echoing through
 * `socket.send` (one unary call per message, 50 in flight): with a Map, each young-generation GC
 * promoted 2-3 MB of finished calls to the old generation (about 30 % of what it scanned; only a
 * full GC freed them), and the thread spent 4-8 ms per young GC against 1-2 ms with this table.
 * V8 replaces a Map's hash table as deleted entries pile up and links the old table to its
 * successor; a dead table that reached the old generation keeps the next one, and the calls it
 * held, alive through young GCs. Slots in plain arrays, reused, leave nothing behind.
 *
 * An id is the slot plus a count of the slot's reuses, so an id is not handed out twice (a late
 * frame for a finished call finds nothing, as with a counter): for a fresh table the ids are 1,
 * 2, 3... `capacity` bounds the calls in flight; past it, add() returns undefined.
 */
export class CallTable<T> {
  /** The value in each slot (undefined: free). */
  private readonly values: (T | undefined)[] = [];
  /** The id in each slot, 0 when free. */
  private readonly ids: number[] = [];
  /** How many times each slot was handed out. */
  private readonly uses: number[] = [];
  private readonly free: number[] = [];
  private count = 0;

  constructor(readonly capacity = 2 ** 20) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`capacity: ${capacity}`);
  }

  /** The calls in the table. */
  get size(): number {
    return this.count;
  }

  /** Adds `value` under a new id, or returns undefined when `capacity` calls are in the table. */
  add(value: T): number | undefined {
    let slot = this.free.pop();
    if (slot === undefined) {
      if (this.values.length >= this.capacity) return undefined;
      slot = this.values.length;
      this.values.push(undefined);
      this.ids.push(0);
      this.uses.push(0);
    }
    const uses = this.uses[slot] as number;
    this.uses[slot] = uses + 1;
    // Unique while uses * capacity stays a safe integer: 2^32 reuses of a slot at the default capacity.
    const id = slot + 1 + uses * this.capacity;
    this.values[slot] = value;
    this.ids[slot] = id;
    this.count++;
    return id;
  }

  private slotOf(id: number): number | undefined {
    if (!Number.isSafeInteger(id) || id < 1) return undefined;
    const slot = (id - 1) % this.capacity;
    return this.ids[slot] === id ? slot : undefined;
  }

  get(id: number): T | undefined {
    const slot = this.slotOf(id);
    return slot === undefined ? undefined : this.values[slot];
  }

  has(id: number): boolean {
    return this.slotOf(id) !== undefined;
  }

  /** Removes the call `id`; false if it was not in the table. */
  delete(id: number): boolean {
    const slot = this.slotOf(id);
    if (slot === undefined) return false;
    this.values[slot] = undefined;
    this.ids[slot] = 0;
    this.free.push(slot);
    this.count--;
    return true;
  }

  /** The calls in the table, as [id, value] (a copy: deleting while iterating it is safe). */
  entries(): [number, T][] {
    const out: [number, T][] = [];
    for (let slot = 0; slot < this.ids.length; slot++) {
      const id = this.ids[slot] as number;
      if (id !== 0) out.push([id, this.values[slot] as T]);
    }
    return out;
  }
}
