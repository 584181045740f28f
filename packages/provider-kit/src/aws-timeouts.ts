// API Gateway's timeouts, apart from aws-rules.ts (which loads the gRPC contracts) for the build.

/** How long API Gateway waits for an integration (a route's function) to answer. */
export const AWS_INTEGRATION_TIMEOUT_MS = 29_000;
/**
 * The longest handler timeout on AWS (and under `compat: aws`): a second under the integration
 * timeout, for the invocation's own start, so that the runtime times a handler out itself (a
 * connect handler's client refused with 504 and nothing recorded for it, as under the local
 * provider) before API Gateway gives up on the function and drops whatever it answers later.
 */
export const AWS_MAX_HANDLER_TIMEOUT_MS = AWS_INTEGRATION_TIMEOUT_MS - 1000;
