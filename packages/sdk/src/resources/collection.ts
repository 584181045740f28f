/**
 * Collections: the document API of Nitric's earlier SDK (seed 002), kept so that code written for
 * it runs. A collection is a kv store of the same name: `doc(id)` is a key, a document's content
 * its value, and queries read the store in key order and filter in the service.
 */
import { Readable } from "node:stream";
import { resourceNameProblem } from "@nitric-like/spec";
import { NitricLikeError } from "../errors.js";
import type { JsonObject, JsonValue } from "../internal/data.js";
import { kv } from "./kv.js";

/** What `.for()` takes: reading (get, query), writing (set), deleting (delete). */
export type CollectionPermission = "reading" | "writing" | "deleting";

/** The comparisons `where()` takes. */
export type WhereOperator = "==" | "!=" | "<" | "<=" | ">" | ">=" | "startsWith";

const OPERATORS: readonly WhereOperator[] = ["==", "!=", "<", "<=", ">", ">=", "startsWith"];
const PERMISSIONS = { reading: "get", writing: "set", deleting: "delete" } as const;

/** A document: its id and content. */
export interface Document<T extends JsonObject> {
  readonly id: string;
  readonly content: T;
}

/** What `fetch()` resolves with. */
export interface QueryResult<T extends JsonObject> {
  documents: Document<T>[];
}

/** One document of a collection. */
export interface DocumentRef<T extends JsonObject> {
  readonly id: string;
  /** Its content; a missing document throws `not_found`. */
  get(): Promise<T>;
  /** Writes its content. */
  set(content: T): Promise<void>;
  /** Deletes it; deleting a missing document succeeds. */
  delete(): Promise<void>;
}

interface Store<T extends JsonObject> {
  get(key: string): Promise<T>;
  set(key: string, value: T): Promise<void>;
  delete(key: string): Promise<void>;
  keys(prefix?: string): AsyncGenerator<string>;
}

/** A query: every document, narrowed by `where()` clauses, at most `limit()` of them, in id order. */
export class Query<T extends JsonObject> {
  private readonly clauses: { path: string[]; op: WhereOperator; value: JsonValue }[] = [];
  private max = Number.POSITIVE_INFINITY;

  /** @internal use collection(name).for(...).query(). */
  constructor(
    private readonly name: string,
    private readonly store: Store<T>,
  ) {}

  /** Keeps the documents whose `field` (dots reach into objects: "user.name") compares true. */
  where(field: string, op: WhereOperator, value: JsonValue): this {
    if (!OPERATORS.includes(op)) {
      throw new NitricLikeError(
        "invalid_argument",
        `collection(${JSON.stringify(this.name)}).query().where(${JSON.stringify(field)}, ${JSON.stringify(op)}, ...): unknown operator; use one of ${OPERATORS.join(" ")}`,
      );
    }
    this.clauses.push({ path: field.split("."), op, value });
    return this;
  }

  /** Returns at most `n` documents. */
  limit(n: number): this {
    if (!Number.isInteger(n) || n < 0) {
      throw new NitricLikeError(
        "invalid_argument",
        `collection(${JSON.stringify(this.name)}).query().limit(${n}): use a whole number of 0 or more`,
      );
    }
    this.max = n;
    return this;
  }

  private matches(content: T): boolean {
    return this.clauses.every(({ path, op, value }) => {
      let field: JsonValue | undefined = content;
      // Own properties only: "constructor.name" or "toString" must not reach Object.prototype, which
      // every document has (a where on them matched documents without such a field).
      for (const part of path)
        field =
          field !== null && typeof field === "object" && !Array.isArray(field) && Object.hasOwn(field, part)
            ? field[part]
            : undefined;
      if (op === "==") return JSON.stringify(field) === JSON.stringify(value);
      if (op === "!=") return JSON.stringify(field) !== JSON.stringify(value);
      if (op === "startsWith") return typeof field === "string" && typeof value === "string" && field.startsWith(value);
      const comparable =
        (typeof field === "number" && typeof value === "number") ||
        (typeof field === "string" && typeof value === "string");
      if (!comparable) return false;
      const [a, b] = [field, value] as [number | string, number | string];
      return op === "<" ? a < b : op === "<=" ? a <= b : op === ">" ? a > b : a >= b;
    });
  }

  /** The matching documents, one at a time. */
  async *documents(): AsyncGenerator<Document<T>> {
    if (this.max === 0) return;
    let n = 0;
    for await (const id of this.store.keys()) {
      let content: T;
      try {
        content = await this.store.get(id);
      } catch (error) {
        // Deleted between listing and reading: not part of the result.
        if ((error as NitricLikeError).code === "not_found") continue;
        throw error;
      }
      if (!this.matches(content)) continue;
      yield { id, content };
      if (++n >= this.max) return;
    }
  }

  /** Every matching document at once. */
  async fetch(): Promise<QueryResult<T>> {
    const documents: Document<T>[] = [];
    for await (const d of this.documents()) documents.push(d);
    return { documents };
  }

  /** The matching documents as a Node stream in object mode ("data" per document, then "end"). */
  stream(): Readable {
    return Readable.from(this.documents(), { objectMode: true });
  }
}

/** A collection this service may use as its `.for()` allowed. */
export class CollectionRef<T extends JsonObject> {
  /** @internal use collection(name).for(...). */
  constructor(
    readonly name: string,
    private readonly store: Store<T>,
  ) {}

  /** One document by id. */
  doc(id: string): DocumentRef<T> {
    const { store } = this;
    return {
      id,
      get: () => store.get(id),
      set: (content: T) => store.set(id, content),
      delete: () => store.delete(id),
    };
  }

  /** A query over the whole collection. */
  query(): Query<T> {
    return new Query(this.name, this.store);
  }
}

/** A declared collection; `.for()` says what this service may do with it. */
export class Collection<T extends JsonObject = JsonObject> {
  /** @internal use collection(name). */
  constructor(readonly name: string) {}

  /** Grants this service "reading", "writing" and/or "deleting" (kv get, set, delete). */
  for(...permissions: CollectionPermission[]): CollectionRef<T> {
    const allowed = permissions.map((p) => {
      const kvPermission = PERMISSIONS[p];
      if (!kvPermission) {
        throw new NitricLikeError(
          "invalid_argument",
          `collection(${JSON.stringify(this.name)}).for(${JSON.stringify(p)}): unknown permission; use "reading", "writing" or "deleting"`,
        );
      }
      return kvPermission;
    });
    const store = kv<T>(this.name).allow(...allowed) as unknown as Store<T>;
    return new CollectionRef(this.name, store);
  }
}

/**
 * Declares a collection of JSON documents, stored as the kv store of the same name. An invalid name
 * throws at once with the fix, as kv() and websocket() do (the store is declared at .for()).
 */
export function collection<T extends JsonObject = JsonObject>(name: string): Collection<T> {
  const problem = resourceNameProblem("collection", name);
  if (problem) throw new NitricLikeError("invalid_argument", problem);
  return new Collection<T>(name);
}
