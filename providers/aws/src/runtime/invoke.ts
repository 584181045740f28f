/**
 * Lambda's Invoke API (`POST /2015-03-31/functions/{name}/invocations`, InvocationType Event), one
 * signed request (../aws/request.ts). The runtime's deliveries of messages sent during connect, its
 * broadcast pages and a late connect's disconnect handed to another service's function need it,
 * and a full Lambda client would add 112 KB to every bundle and 25 ms to every cold start.
 */
import { AwsError, endpointOf, type RetryPolicy, STANDARD_RETRY, sendSigned } from "../aws/request.js";

/**
 * Invokes a function asynchronously (InvocationType Event); resolves once Lambda queued it. A
 * failure Lambda answered is an AwsError with its status (a 4xx: nothing was queued).
 */
export async function invokeAsync(
  functionName: string,
  payload: unknown,
  env: NodeJS.ProcessEnv,
  retry: RetryPolicy = STANDARD_RETRY,
): Promise<void> {
  const url = new URL(
    `/2015-03-31/functions/${encodeURIComponent(functionName)}/invocations`,
    endpointOf(env, "LAMBDA", "lambda"),
  );
  try {
    await sendSigned(
      env,
      {
        service: "lambda",
        method: "POST",
        url,
        headers: { "content-type": "application/json", "x-amz-invocation-type": "Event" },
        body: JSON.stringify(payload),
      },
      retry,
    );
  } catch (error) {
    if (!(error instanceof AwsError) || error.statusCode === undefined) throw error;
    throw new AwsError(
      error.name,
      `Lambda Invoke answered ${error.statusCode}: ${error.name}: ${error.message}`,
      error.statusCode,
    );
  }
}
