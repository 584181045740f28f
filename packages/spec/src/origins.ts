/**
 * What `allowedOrigins` holds: origins as a browser sends them in its Origin header, or "*". The
 * gateways compare the header with each entry as text, so an entry in another form (a trailing
 * slash, a path, no scheme, upper case) would match no browser and refuse every one: such entries
 * are refused where the socket is declared instead.
 */

/** A serialized origin: scheme, "://", host (lower case) and an optional port; nothing after. */
const ORIGIN_PATTERN = /^[a-z][a-z0-9+.-]*:\/\/[^/?#\s@A-Z]+$/;

/** The origin a browser would send for what was written, or undefined when there is none to suggest. */
function suggestOrigin(entry: string): string | undefined {
  const withScheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(entry) ? entry : `https://${entry}`;
  try {
    const origin = new URL(withScheme).origin;
    return origin === "null" ? undefined : origin;
  } catch {
    return undefined;
  }
}

/** For http and https, the form URL gives: no default port, IPv6 and IDN hosts as browsers write them. */
function isSerialized(entry: string): boolean {
  if (!entry.startsWith("http://") && !entry.startsWith("https://")) return true;
  try {
    return new URL(entry).origin === entry;
  } catch {
    return false;
  }
}

/**
 * Why `allowedOrigins` cannot be used, as a full message with the fix, or undefined when it can.
 * `where` begins the message, such as `websocket("chat", { allowedOrigins })`.
 */
export function allowedOriginsProblem(where: string, allowed: unknown): string | undefined {
  if (allowed === undefined) return undefined;
  if (!Array.isArray(allowed)) {
    const got = allowed === null ? "null" : typeof allowed;
    const example = typeof allowed === "string" ? JSON.stringify([allowed]) : '["https://app.example.com"]';
    return `${where}: allowedOrigins is a list of origins, got ${got}; write allowedOrigins: ${example}`;
  }
  for (const entry of allowed) {
    if (typeof entry !== "string")
      return `${where}: allowedOrigins holds origins as strings, got ${entry === null ? "null" : typeof entry}; such as "https://app.example.com", or "*" for any`;
    if (entry === "*" || entry === "null" || (ORIGIN_PATTERN.test(entry) && isSerialized(entry))) continue;
    const suggestion = suggestOrigin(entry);
    return `${where}: allowedOrigins entry ${JSON.stringify(entry)} is not an origin as browsers send it (scheme and host in lower case, a port if any, no path or trailing slash), so no browser would match it; ${suggestion ? `write ${JSON.stringify(suggestion)}` : 'such as "https://app.example.com"'}, or "*" for any`;
  }
  return undefined;
}
