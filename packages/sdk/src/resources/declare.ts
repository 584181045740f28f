/** Declaring resources with the provider, as both SDKs do: the resource, then a policy for the caller. */
import { type Action, Resources, ResourceType } from "@nitric-like/contracts/resources";
import { type ResourceKind, resourceNameProblem } from "@nitric-like/spec";
import { NitricLikeError } from "../errors.js";
import { declaredAfterLoad, fatal, rpc } from "../internal/runtime.js";

type DeclaredType = ResourceType.Websocket | ResourceType.KeyValueStore | ResourceType.Secret;

function label(type: DeclaredType, name: string): string {
  const kind = type === ResourceType.Websocket ? "websocket" : type === ResourceType.Secret ? "secret" : "kv";
  return `${kind}(${JSON.stringify(name)})`;
}

/** Declares a resource and a policy granting `actions` on it to the calling service. A refusal is fatal. */
export async function declare(
  type: DeclaredType,
  name: string,
  actions: Action[],
  websocket?: { allowedOrigins: string[]; routeBy: string },
): Promise<void> {
  const client = rpc;
  const id = { type, name };
  try {
    if (type === ResourceType.KeyValueStore) {
      await client.unary(Resources.method.declare, { id, config: { case: "keyValueStore", value: {} } });
    } else if (type === ResourceType.Secret) {
      await client.unary(Resources.method.declare, { id, config: { case: "secret", value: {} } });
    } else if (websocket && (websocket.allowedOrigins.length > 0 || websocket.routeBy !== "")) {
      await client.unary(Resources.method.declare, { id, config: { case: "websocket", value: websocket } });
    } else {
      await client.unary(Resources.method.declare, { id });
    }
  } catch (error) {
    fatal(`${label(type, name)} could not be declared: ${NitricLikeError.from(error).message}`);
  }
  await declarePolicy(type, name, actions);
}

/** Declares a policy granting `actions` on a declared resource to the calling service. A refusal is fatal. */
export async function declarePolicy(type: DeclaredType, name: string, actions: Action[]): Promise<void> {
  if (actions.length === 0) return;
  try {
    await rpc.unary(Resources.method.declare, {
      id: { type: ResourceType.Policy, name: "" },
      config: {
        case: "policy",
        // A blank Service principal is "the calling service": the provider knows it by endpoint.
        value: { principals: [{ type: ResourceType.Service, name: "" }], actions, resources: [{ type, name }] },
      },
    });
  } catch (error) {
    fatal(`${label(type, name)} could not be granted its permissions: ${NitricLikeError.from(error).message}`);
  }
}

/**
 * The handle of a declared resource: an invalid name throws at once with the fix, and declaring
 * the same name again returns the same handle (so a resource is declared once per process). A new
 * name once the service's module has loaded throws `failed_precondition` (see declaredAfterLoad);
 * one declared as it loaded is returned as before, wherever it is declared again. `call` is the
 * declaration as written, for that message.
 */
export function declaredOnce<T>(
  kind: ResourceKind,
  name: string,
  handles: Map<string, T>,
  make: () => T,
  call = `${kind}(${JSON.stringify(name)})`,
): T {
  const problem = resourceNameProblem(kind, name);
  if (problem) throw new NitricLikeError("invalid_argument", problem);
  let handle = handles.get(name);
  if (!handle) {
    const late = declaredAfterLoad(call, call);
    if (late !== undefined) throw new NitricLikeError("failed_precondition", late);
    handle = make();
    handles.set(name, handle);
  }
  return handle;
}
