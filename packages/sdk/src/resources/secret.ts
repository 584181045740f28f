/**
 * Secrets: named values kept out of code, the repository and the functions' configuration, each
 * `put()` a new version. Locally they live in an lmdb environment under the project's
 * `.nitric-like/secrets` (a folder only its user can enter); on AWS each is a Secrets Manager
 * secret. Set one from outside the code with `nitric-like secret put <name>`.
 *
 * The interface is Nitric's: `secret(name).allow("access").latest().access()` gives a value whose
 * `asString()` and `asBytes()` read it; `.allow("put").put(value)` stores a new version and gives
 * its reference. Values are 1 to 65,536 bytes on every provider (Secrets Manager's limit), checked
 * here before any network and again by the provider.
 */
import { Action, ResourceType } from "@nitric-like/contracts/resources";
import { SecretManager } from "@nitric-like/contracts/secrets";
import {
  LATEST_VERSION,
  SECRET_PERMISSIONS,
  type SecretPermission,
  secretValueProblem,
  secretVersionProblem,
} from "@nitric-like/spec";
import { NitricLikeError } from "../errors.js";
import { declaredAfterLoad, lateGrant, quotedList, rpc } from "../internal/runtime.js";
import { declare, declaredOnce, declarePolicy } from "./declare.js";

/** A permission `.allow()` takes: "access" (latest(), version()) or "put". */
export type { SecretPermission };

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder("utf-8", { fatal: true });

/** One version's value, as `access()` read it. */
export class SecretValue {
  /** @internal made by access(). */
  constructor(
    /** The version read, with its id ("latest" resolved). */
    readonly version: SecretVersion,
    private readonly bytes: Uint8Array,
  ) {}

  /** The value as bytes (a copy: changing it changes nothing stored). */
  asBytes(): Uint8Array {
    return new Uint8Array(this.bytes);
  }

  /** The value as text; bytes that are not UTF-8 throw `invalid_argument` (read them with asBytes()). */
  asString(): string {
    try {
      return DECODER.decode(this.bytes);
    } catch (error) {
      throw new NitricLikeError(
        "invalid_argument",
        `secret(${JSON.stringify(this.version.secret)}): version ${JSON.stringify(this.version.id)} is not UTF-8 text; read it with asBytes()`,
        { cause: error, details: { secret: this.version.secret, version: this.version.id } },
      );
    }
  }
}

/** A reference to one version of a secret: "latest", or an id put() returned. */
export class SecretVersion {
  /** @internal use secret(name).allow("access").latest() or .version(id). */
  constructor(
    /** The secret's name. */
    readonly secret: string,
    /** The version's id, or "latest". */
    readonly id: string,
    private readonly ready: Promise<unknown>,
  ) {}

  /**
   * Reads this version's value. A secret with no value yet, or no such version, throws
   * `not_found` saying how to give it one; without `.allow("access")`, `permission_denied`.
   */
  async access(): Promise<SecretValue> {
    await this.ready;
    try {
      const answer = await rpc.unary(SecretManager.method.access, {
        secretVersion: { secret: { name: this.secret }, version: this.id },
      });
      const id = answer.secretVersion?.version || this.id;
      return new SecretValue(new SecretVersion(this.secret, id, this.ready), answer.value ?? new Uint8Array());
    } catch (error) {
      throw NitricLikeError.from(error, { secret: this.secret, version: this.id });
    }
  }
}

/** Reading: `.allow("access")`. */
export interface SecretReader {
  /** The newest version. */
  latest(): SecretVersion;
  /** A version by the id put() returned; an id of the wrong form throws `invalid_argument` at once. */
  version(id: string): SecretVersion;
}

/** Writing: `.allow("put")`. */
export interface SecretWriter {
  /**
   * Stores `value` (text is stored as its UTF-8) as the secret's newest version and resolves,
   * once durable, with that version's reference. An empty value or one over 65,536 bytes throws
   * `invalid_argument` before any network.
   */
  put(value: string | Uint8Array): Promise<SecretVersion>;
}

// biome-ignore lint/complexity/noBannedTypes: an empty capability when a permission is absent
type Nothing = {};

/** A secret reference whose type has exactly the methods its permissions allow. */
export type SecretRef<P extends SecretPermission> = { readonly name: string } & ("access" extends P
  ? SecretReader
  : Nothing) &
  ("put" extends P ? SecretWriter : Nothing);

const ACTIONS: Record<SecretPermission, Action> = {
  access: Action.SecretAccess,
  put: Action.SecretPut,
};

class SecretRefImpl implements SecretReader, SecretWriter {
  constructor(
    readonly name: string,
    private readonly ready: Promise<unknown>,
  ) {}

  latest(): SecretVersion {
    return new SecretVersion(this.name, LATEST_VERSION, this.ready);
  }

  version(id: string): SecretVersion {
    const problem = typeof id === "string" ? secretVersionProblem(this.name, id) : undefined;
    if (typeof id !== "string" || problem !== undefined) {
      throw new NitricLikeError(
        "invalid_argument",
        problem ?? `secret(${JSON.stringify(this.name)}).version(): give a version id as a string, or use latest()`,
        { details: { secret: this.name } },
      );
    }
    return new SecretVersion(this.name, id, this.ready);
  }

  async put(value: string | Uint8Array): Promise<SecretVersion> {
    let bytes: Uint8Array;
    if (typeof value === "string") bytes = ENCODER.encode(value);
    else if (value instanceof Uint8Array) bytes = value;
    else {
      throw new NitricLikeError(
        "invalid_argument",
        `secret(${JSON.stringify(this.name)}).put(): give a string or a Uint8Array, not ${value === null ? "null" : typeof value}`,
        { details: { secret: this.name } },
      );
    }
    const problem = secretValueProblem(this.name, bytes);
    if (problem !== undefined)
      throw new NitricLikeError("invalid_argument", problem, { details: { secret: this.name } });
    await this.ready;
    try {
      const answer = await rpc.unary(SecretManager.method.put, { secret: { name: this.name }, value: bytes });
      return new SecretVersion(this.name, answer.secretVersion?.version ?? "", this.ready);
    } catch (error) {
      throw NitricLikeError.from(error, { secret: this.name });
    }
  }
}

/** A declared secret; `.allow()` says what this service may do with it. */
export class Secret {
  private ready: Promise<unknown>;
  /** What `.allow()` granted before the service's module finished loading: all a later one may ask for. */
  private readonly grantedAtLoad = new Set<SecretPermission>();

  /** @internal use secret(name). */
  constructor(readonly name: string) {
    this.ready = declare(ResourceType.Secret, name, []);
  }

  /**
   * Grants this service permissions on the secret and returns a reference whose type has only the
   * allowed methods: "access" (latest, version), "put" (put). Locally they are enforced by the
   * provider; on AWS they become the service's IAM policy. Once the service's module has loaded
   * (in a timer, a callback or a handler), a permission it did not grant as it loaded throws
   * `failed_precondition`: a deployment would not have it. One it granted is granted again as before.
   */
  allow<P extends SecretPermission[]>(...permissions: P): SecretRef<P[number]> {
    for (const p of permissions) {
      if (!SECRET_PERMISSIONS.includes(p)) {
        throw new NitricLikeError(
          "invalid_argument",
          `secret(${JSON.stringify(this.name)}).allow(${JSON.stringify(p)}): unknown permission; use "access" or "put"`,
        );
      }
    }
    const late = lateGrant(SECRET_PERMISSIONS, this.grantedAtLoad, permissions);
    if (late !== undefined) {
      const name = `secret(${JSON.stringify(this.name)})`;
      const refused = declaredAfterLoad(
        `${name}.allow(${quotedList(late.asked)})`,
        `${name}.allow(${quotedList(late.all)})`,
        late,
      );
      if (refused !== undefined) throw new NitricLikeError("failed_precondition", refused);
    }
    for (const p of permissions) this.grantedAtLoad.add(p);
    const previous = this.ready;
    this.ready = previous.then(() =>
      declarePolicy(
        ResourceType.Secret,
        this.name,
        permissions.map((p) => ACTIONS[p]),
      ),
    );
    return new SecretRefImpl(this.name, this.ready) as unknown as SecretRef<P[number]>;
  }
}

const secrets = new Map<string, Secret>();

/**
 * Declares a secret. Declaring the same name again returns the same secret. An invalid name throws
 * at once with the fix. Declare it at module load: a new name once the service's module has loaded
 * (in a timer, a callback or a handler) throws `failed_precondition`.
 */
export function secret(name: string): Secret {
  return declaredOnce("secret", name, secrets, () => new Secret(name));
}
