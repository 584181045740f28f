/**
 * The origin check both providers make before any handler runs: only browsers send Origin, so a
 * request without one (wscat, servers) is not subject to it; `*` allows every origin.
 */

/** Why `origin` may not connect to `socket`, or undefined when it may. */
export function originProblem(
  socket: string,
  origin: string | undefined,
  allowed: ReadonlySet<string>,
): string | undefined {
  if (origin === undefined || allowed.size === 0 || allowed.has("*") || allowed.has(origin)) return undefined;
  return `origin ${origin} may not connect to websocket "${socket}"; allowed: ${[...allowed].join(", ")} (allowedOrigins in websocket("${socket}", ...))`;
}
