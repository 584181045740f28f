/**
 * Variables the user gives every function (`--env-from`), held to Lambda's rules for a function's
 * environment ("Working with Lambda environment variables"): a key starts with a letter, has at
 * least two characters, and holds only letters, digits and underscores; the runtime's own keys are
 * reserved; all of a function's variables together take at most 4 KB. Lambda refuses a
 * configuration that breaks them only when the stack is deployed, so the build checks them first
 * and names each problem with its fix.
 */

/** A key Lambda takes. */
const LAMBDA_KEY = /^[A-Za-z][A-Za-z0-9_]+$/;

/** The keys Lambda's runtime sets itself: a function's configuration may not set them. */
const RESERVED = new Set([
  "_HANDLER",
  "_X_AMZN_TRACE_ID",
  "AWS_DEFAULT_REGION",
  "AWS_REGION",
  "AWS_EXECUTION_ENV",
  "AWS_LAMBDA_FUNCTION_NAME",
  "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
  "AWS_LAMBDA_FUNCTION_VERSION",
  "AWS_LAMBDA_INITIALIZATION_TYPE",
  "AWS_LAMBDA_LOG_GROUP_NAME",
  "AWS_LAMBDA_LOG_STREAM_NAME",
  "AWS_ACCESS_KEY",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_LAMBDA_RUNTIME_API",
  "LAMBDA_TASK_ROOT",
  "LAMBDA_RUNTIME_DIR",
  "TZ",
]);

/** What Lambda allows all of a function's variables to take together, keys and values. */
export const MAX_FUNCTION_VARIABLES_BYTES = 4096;

/** The problems of the user's variable names, one line each (empty when none). */
export function variableNameProblems(variables: Readonly<Record<string, string>>): string[] {
  const problems: string[] = [];
  for (const name of Object.keys(variables)) {
    const shown = JSON.stringify(name);
    if (!LAMBDA_KEY.test(name)) {
      problems.push(
        `--env-from: ${shown} cannot be a Lambda environment variable: a name starts with a letter, has at least two characters, and holds only letters, digits and _; rename it`,
      );
    } else if (RESERVED.has(name)) {
      problems.push(`--env-from: ${shown} is set by Lambda's runtime itself, which a function may not set; rename it`);
    } else if (name.startsWith("NITRIC_")) {
      problems.push(`--env-from: ${shown} is a name nitric-like and Nitric keep for themselves (NITRIC_*); rename it`);
    }
  }
  return problems;
}

/**
 * The bytes a function's variables take as Lambda counts them (UTF-8, keys and values). A value
 * that CloudFormation fills in at deploy time (`Fn::Sub`, `Ref`) counts each reference as
 * `referenceBytes(name)` bytes, the most what it names can take (by default 96, for any id or ARN).
 */
export function variablesBytes(
  variables: Record<string, unknown>,
  referenceBytes: (name: string) => number = () => 96,
): number {
  let bytes = 0;
  for (const [key, value] of Object.entries(variables)) {
    bytes += Buffer.byteLength(key);
    if (typeof value === "string") bytes += Buffer.byteLength(value);
    else if (value && typeof value === "object" && "Fn::Sub" in value) {
      // Either form: a text, or a text and its variables (whose names count as references).
      const sub = (value as { "Fn::Sub": unknown })["Fn::Sub"];
      const text = String(Array.isArray(sub) ? sub[0] : sub);
      const references = text.match(/\$\{[^}]*\}/g) ?? [];
      bytes += Buffer.byteLength(text.replace(/\$\{[^}]*\}/g, ""));
      for (const reference of references) bytes += referenceBytes(reference.slice(2, -1));
    } else if (value && typeof value === "object" && "Ref" in value) {
      bytes += referenceBytes(String((value as { Ref: unknown }).Ref));
    } else bytes += referenceBytes("");
  }
  return bytes;
}
