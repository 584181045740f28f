/** How a service that does not compile is reported, the same by `run` and by every provider's build. */
import { relative, resolve } from "node:path";

/** An esbuild message, as much of it as the report uses. */
export interface CompileMessage {
  text: string;
  location?: { file: string; line: number; column: number } | null;
}

/**
 * `service "<name>" (<file>) does not compile:` and one `file:line:column: text` line per error,
 * or undefined when `error` is not an esbuild failure.
 */
export function compileErrorMessage(
  error: unknown,
  projectDir: string,
  service: { name: string; file: string },
): string | undefined {
  const errors = (error as { errors?: CompileMessage[] }).errors;
  if (!errors) return undefined;
  const lines = errors.map((e) => {
    const at = e.location
      ? `${relative(projectDir, resolve(projectDir, e.location.file))}:${e.location.line}:${e.location.column + 1}: `
      : "";
    return `  ${at}${e.text}`;
  });
  return `service "${service.name}" (${service.file}) does not compile:\n${lines.join("\n")}`;
}
