/**
 * Collections: the document API of Nitric's earlier SDK (seed 002), kept so that code written for
 * it runs. A collection is a kv store of the same name: `doc(id)` is a key, a document's content
 * its value, and queries read the store in key order and filter in the service.
 */
import { Readable } from "node:stream";
import { resourceNameProblem } from "@nitric-like/spec";
import { isNitricLikeError, NitricLikeError } from "../errors.js";
import type { JsonObject, JsonObjectOf, JsonValue } from "../internal/data.js";
import { declaredAfterLoad, quotedList } from "../internal/runtime.js";
import { kv } from "./kv.js";

/** What `.for()` takes: reading (get, query), writing (set), deleting (delete). */
export type CollectionPermission = "reading" | "writing" | "deleting";

/** The comparisons `where()` takes. */
export type WhereOperator = "==" | "!=" | "<" | "<=" | ">" | ">=" | "startsWith";

const OPERATORS: readonly WhereOperator[] = ["==", "!=", "<", "<=", ">", ">=", "startsWith"];
const PERMISSIONS = { reading: "get", writing: "set", deleting: "delete" } as const;
/** The `.for()` that grants each kv permission. */
const FOR: Readonly<Record<string, CollectionPermission>> = { get: "reading", set: "writing", delete: "deleting" };

/** A JSON string literal, as the kv messages quote names and keys. */
const QUOTED = String.raw`"(?:[^"\\]|\\.)*"`;

/**
 * A kv error as the collection's user wrote it: the store's calls and errors speak of
 * `kv("c").allow("get")` and keys, which this service never wrote; it wrote `collection("c")`,
 * `.for("reading")` and `doc(id)`. The code, details and cause are kept.
 */
function asCollectionError(name: string, error: unknown): unknown {
  if (!isNitricLikeError(error)) return error;
  const store = `kv(${JSON.stringify(name)})`;
  const where = `collection(${JSON.stringify(name)})`;
  const message = error.message
    .replace(new RegExp(`${literal(store)}\\.(get|set|delete)\\((${QUOTED})?\\)`, "g"), (_, op: string, id?: string) =>
      id === undefined ? `${where}.doc().${op}()` : `${where}.doc(${id}).${op}()`,
    )
    .replaceAll(store, where)
    .replace(/\.allow\("(get|set|delete)"\)/g, (_, p: string) => `.for(${JSON.stringify(FOR[p])})`)
    .replace(new RegExp(`: key (${QUOTED}) not found$`), ": document $1 not found")
    .replace(/ may not (get|set|delete) keys;/, (_, p: string) => ` may not ${p === "get" ? "read" : p} documents;`);
  if (message === error.message) return error;
  return new NitricLikeError(error.code, message, { details: error.details, cause: error });
}

/** `text` as a regular expression that matches it literally. */
function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** The store's calls, their errors said as the collection's. */
function collectionStore<T extends object>(name: string, store: Store<T>): Store<T> {
  const said = (error: unknown) => {
    throw asCollectionError(name, error);
  };
  return {
    get: (key) => store.get(key).catch(said),
    set: (key, value) => store.set(key, value).catch(said),
    delete: (key) => store.delete(key).catch(said),
    async *keys(prefix) {
      try {
        yield* store.keys(prefix);
      } catch (error) {
        said(error);
      }
    },
  };
}

/** A document: its id and content. */
export interface Document<T extends object> {
  readonly id: string;
  readonly content: T;
}

/** What `fetch()` resolves with. */
export interface QueryResult<T extends object> {
  documents: Document<T>[];
}

/** Reading a document: `.for("reading")`. */
export interface DocumentReader<T extends object> {
  /** Its content; a missing document throws `not_found`. */
  get(): Promise<T>;
}

/** Writing a document: `.for("writing")`. */
export interface DocumentWriter<T extends object> {
  /** Writes its content. */
  set(content: T): Promise<void>;
}

/** Deleting a document: `.for("deleting")`. */
export interface DocumentDeleter {
  /** Deletes it; deleting a missing document succeeds. */
  delete(): Promise<void>;
}

// biome-ignore lint/complexity/noBannedTypes: an empty capability when a permission is absent
type Nothing = {};

/**
 * One document of a collection, whose type has exactly the methods the collection's `.for()`
 * granted (as kv's `.allow()` does): `.for("reading")` gives get() but no set().
 */
export type DocumentRef<T extends object, P extends CollectionPermission = CollectionPermission> = {
  readonly id: string;
} & ("reading" extends P ? DocumentReader<T> : Nothing) &
  ("writing" extends P ? DocumentWriter<T> : Nothing) &
  ("deleting" extends P ? DocumentDeleter : Nothing);

interface Store<T extends object> {
  get(key: string): Promise<T>;
  set(key: string, value: T): Promise<void>;
  delete(key: string): Promise<void>;
  keys(prefix?: string): AsyncGenerator<string>;
}

/**
 * The fields `where()` takes for documents of type `T`: each property name, and a dotted path into
 * a property that is an object ("user.name"; arrays are compared whole, not entered). Any string
 * for a type with an index signature (`JsonObject`, the default), and past 8 levels of nesting
 * (a type that refers to itself goes on that deep).
 */
export type FieldPath<T, Depth extends unknown[] = []> = Depth["length"] extends 8
  ? string
  : T extends readonly unknown[]
    ? never
    : T extends object
      ? {
          [K in keyof T & string]:
            | K
            | (NonNullable<T[K]> extends readonly unknown[]
                ? never
                : NonNullable<T[K]> extends object
                  ? `${K}.${FieldPath<NonNullable<T[K]>, [...Depth, unknown]>}`
                  : never);
        }[keyof T & string]
      : never;

/** A query: every document, narrowed by `where()` clauses, at most `limit()` of them, in id order. */
export class Query<T extends object> {
  private readonly clauses: { path: string[]; op: WhereOperator; value: JsonValue }[] = [];
  private max = Number.POSITIVE_INFINITY;

  /** @internal use collection(name).for(...).query(). */
  constructor(
    private readonly name: string,
    private readonly store: Store<T>,
  ) {}

  /**
   * Keeps the documents whose `field` (dots reach into objects: "user.name") compares true. The
   * field is one of the collection type's (see FieldPath): a misspelt one is a type error, where
   * it would match no document.
   */
  where(field: FieldPath<T>, op: WhereOperator, value: JsonValue): this {
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
      // T passed collection()'s JsonObjectOf check (an interface has no index signature to say so).
      let field: JsonValue | undefined = content as JsonObject;
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

/**
 * A collection this service may use as its `.for()` allowed: `doc(id)`'s type has the methods of
 * the permissions `P` (a query needs "reading", refused by the provider otherwise).
 */
export class CollectionRef<T extends object, P extends CollectionPermission = CollectionPermission> {
  /** @internal use collection(name).for(...). */
  constructor(
    readonly name: string,
    private readonly store: Store<T>,
  ) {}

  /** One document by id. */
  doc(id: string): DocumentRef<T, P> {
    const { store } = this;
    const ref: DocumentRef<T> = {
      id,
      get: () => store.get(id),
      set: (content: T) => store.set(id, content),
      delete: () => store.delete(id),
    };
    return ref as DocumentRef<T, P>;
  }

  /** A query over the whole collection. */
  query(): Query<T> {
    return new Query(this.name, this.store);
  }
}

/** A declared collection; `.for()` says what this service may do with it. */
export class Collection<T extends object = JsonObject> {
  /** @internal use collection(name). */
  constructor(readonly name: string) {}

  /**
   * Grants this service "reading", "writing" and/or "deleting" (kv get, set, delete) and returns
   * a reference whose documents' type has only the granted methods. Once the service's module has
   * loaded (in a timer, a callback or a handler), a collection or permission it did not declare as
   * it loaded throws `failed_precondition`, as kv() and allow() do.
   */
  for<P extends CollectionPermission[]>(...permissions: P): CollectionRef<T, P[number]> {
    const allowed = permissions.map((p) => {
      // Own keys only: "toString" or "constructor" must not find what every object inherits.
      const kvPermission = Object.hasOwn(PERMISSIONS, p) ? PERMISSIONS[p] : undefined;
      if (!kvPermission) {
        throw new NitricLikeError(
          "invalid_argument",
          `collection(${JSON.stringify(this.name)}).for(${JSON.stringify(p)}): unknown permission; use "reading", "writing" or "deleting"`,
        );
      }
      return kvPermission;
    });
    // Refused once the module has loaded as kv() and allow() would refuse it, in this call's words.
    const written = (list: readonly string[]) => `collection(${JSON.stringify(this.name)}).for(${quotedList(list)})`;
    let declared: ReturnType<typeof kv>;
    try {
      declared = kv(this.name);
    } catch (error) {
      const late = isNitricLikeError(error) && error.code === "failed_precondition";
      const refused = late ? declaredAfterLoad(written(permissions), written(permissions)) : undefined;
      if (refused !== undefined) throw new NitricLikeError("failed_precondition", refused, { cause: error });
      throw error;
    }
    const grant = declared.lateGrant(allowed);
    if (grant !== undefined) {
      const said = (list: readonly string[]) => list.map((p) => FOR[p] ?? p);
      const refused = declaredAfterLoad(written(said(grant.asked)), written(said(grant.all)), {
        asked: said(grant.asked),
        granted: said(grant.granted),
      });
      if (refused !== undefined) throw new NitricLikeError("failed_precondition", refused);
    }
    const store = declared.allow(...allowed) as unknown as Store<T>;
    return new CollectionRef(this.name, collectionStore(this.name, store));
  }
}

/**
 * Declares a collection of JSON documents, stored as the kv store of the same name. An invalid name
 * throws at once with the fix, as kv() and websocket() do (the store is declared at .for()).
 */
export function collection<T extends JsonObjectOf<T> = JsonObject>(name: string): Collection<T> {
  const problem = resourceNameProblem("collection", name);
  if (problem) throw new NitricLikeError("invalid_argument", problem);
  return new Collection<T>(name);
}
