/**
 * API Gateway's Lambda REQUEST authorizer on `$connect`: the event it sends, and the IAM policy the
 * function answers. The identity travels in the policy's context, which API Gateway then gives
 * every later event of the connection as `requestContext.authorizer`. Context values must be flat
 * strings, numbers or booleans, so the identity is one JSON-encoded string under `identity`.
 */
import type { AuthorizeDecision } from "@nitric-like/provider-kit";

/** The context key holding the identity, JSON-encoded. */
export const IDENTITY_KEY = "identity";
/** The context key holding the subprotocol the authorizer accepted ("" for none). */
export const PROTOCOL_KEY = "protocol";

/** The event API Gateway sends a REQUEST authorizer of a WebSocket API. */
export interface AuthorizerEvent {
  type: "REQUEST";
  /** `arn:aws:execute-api:<region>:<account>:<api-id>/<stage>/$connect`. */
  methodArn: string;
  headers?: Record<string, string | undefined>;
  multiValueHeaders?: Record<string, string[] | undefined>;
  queryStringParameters?: Record<string, string | undefined> | null;
  multiValueQueryStringParameters?: Record<string, string[] | undefined> | null;
  requestContext: {
    routeKey?: string;
    connectionId: string;
    apiId?: string;
    identity?: { sourceIp?: string };
    connectedAt?: number;
    requestTimeEpoch?: number;
  };
}

/** What an authorizer answers: an IAM policy for `execute-api:Invoke` on the method, and a context. */
export interface AuthorizerResult {
  principalId: string;
  policyDocument: {
    Version: "2012-10-17";
    Statement: { Action: "execute-api:Invoke"; Effect: "Allow" | "Deny"; Resource: string }[];
  };
  context?: Record<string, string | number | boolean>;
}

/** True when the event is a REQUEST authorizer's. */
export function isAuthorizerEvent(event: unknown): event is AuthorizerEvent {
  if (typeof event !== "object" || event === null) return false;
  const e = event as Partial<AuthorizerEvent>;
  return e.type === "REQUEST" && typeof e.methodArn === "string" && typeof e.requestContext === "object";
}

/**
 * The answer for a decision: Allow with the identity in the context; a 403 as a Deny policy (API
 * Gateway answers the client 403). A 401 is the error "Unauthorized" (API Gateway answers 401);
 * any other refusal (the authorizer failed) is an error, which API Gateway answers with 500.
 */
export function authorizerResult(decision: AuthorizeDecision, event: AuthorizerEvent): AuthorizerResult {
  const principalId = event.requestContext.connectionId || "anonymous";
  const policy = (effect: "Allow" | "Deny") => ({
    Version: "2012-10-17" as const,
    Statement: [{ Action: "execute-api:Invoke" as const, Effect: effect, Resource: event.methodArn }],
  });
  if (decision.allow) {
    return {
      principalId,
      policyDocument: policy("Allow"),
      context: { [IDENTITY_KEY]: decision.identityJson, [PROTOCOL_KEY]: decision.protocol },
    };
  }
  if (decision.status === 403) return { principalId, policyDocument: policy("Deny") };
  // Lambda's documented way for an authorizer to say 401.
  if (decision.status === 401) throw new Error("Unauthorized");
  throw new Error(decision.reason);
}

/**
 * The identity and accepted subprotocol of a later event, from `requestContext.authorizer`: the
 * protocol is "" when the socket's authorizer accepted none, undefined when no authorizer ran.
 */
export function authorizedContext(requestContext: unknown): { identity: string; protocol: string | undefined } {
  const authorizer = (requestContext as { authorizer?: Record<string, unknown> } | undefined)?.authorizer;
  const identity = authorizer?.[IDENTITY_KEY];
  const protocol = authorizer?.[PROTOCOL_KEY];
  return {
    identity: typeof identity === "string" ? identity : "",
    protocol: typeof protocol === "string" ? protocol : undefined,
  };
}
