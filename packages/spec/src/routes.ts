/**
 * Message routes (`socket.route(action, handler)`): a text message that is a JSON object whose
 * `action` property (or the socket's `routeBy` path, such as `meta.type`) is a route's name goes
 * to that route's handler; every other message goes to the socket's message handler. This is API
 * Gateway's route selection with the expression `$request.body.action` (`$request.body.meta.type`),
 * the one Architect, SST and the Serverless Framework use, and the local provider selects the
 * same way (selectRoute), so a client sees one behaviour everywhere.
 */
import { stringAt } from "./json-scan.js";

/** The JSON property a message's route is read from, unless the socket names another path (`routeBy`). */
export const ROUTE_PROPERTY = "action";

/** API Gateway's route selection expression for a socket's routeBy path (ROUTE_PROPERTY without one). */
export function routeSelectionExpression(routeBy: string | undefined): string {
  return `$request.body.${routeBy ?? ROUTE_PROPERTY}`;
}

/** API Gateway's route selection expression for ROUTE_PROPERTY. */
export const ROUTE_SELECTION_EXPRESSION = routeSelectionExpression(undefined);

/** Most names in a routeBy path (`a.b.c.d` has four). */
export const MAX_ROUTE_BY_DEPTH = 4;

/** Longest routeBy path, dots included. */
export const MAX_ROUTE_BY_LENGTH = 64;

/**
 * A `routeBy` path: 1 to MAX_ROUTE_BY_DEPTH names joined by ".", each a JavaScript-style
 * identifier (a letter or `_`, then letters, digits or `_`), at most MAX_ROUTE_BY_LENGTH
 * characters in all: `type`, `meta.type`. The first name is a property of the message, each next
 * one a property of the object before it. API Gateway's `$request.body.<path>` takes a JSON path;
 * nitric-like takes this plain dotted form (no brackets, quotes or wildcards), which both
 * providers select alike.
 */
export const ROUTE_BY_PATTERN = new RegExp(
  `^(?=.{1,${MAX_ROUTE_BY_LENGTH}}$)[A-Za-z_][A-Za-z0-9_]*(?:\\.[A-Za-z_][A-Za-z0-9_]*){0,${MAX_ROUTE_BY_DEPTH - 1}}$`,
);

/**
 * The routeBy path an API Gateway route selection expression names, or undefined when it is not
 * one nitric-like writes (`$request.body.<path>`, the path as ROUTE_BY_PATTERN).
 */
export function routeByOf(expression: unknown): string | undefined {
  const prefix = routeSelectionExpression("");
  if (typeof expression !== "string" || !expression.startsWith(prefix)) return undefined;
  const name = expression.slice(prefix.length);
  return ROUTE_BY_PATTERN.test(name) ? name : undefined;
}

/** Why a socket's routeBy is invalid, with the fix; undefined when it is valid. */
export function routeByProblem(socket: string, routeBy: unknown): string | undefined {
  if (typeof routeBy === "string" && ROUTE_BY_PATTERN.test(routeBy)) return undefined;
  const shown = typeof routeBy === "string" ? JSON.stringify(routeBy.slice(0, 80)) : String(routeBy);
  return `websocket("${socket}", { routeBy: ${shown} }): routeBy names the JSON property that selects a message's route, "type" for {"type":"join"} or a path such as "meta.type" for {"meta":{"type":"join"}} (default "action"): 1 to ${MAX_ROUTE_BY_DEPTH} names joined by ".", each a letter or "_" then letters, digits or "_", at most ${MAX_ROUTE_BY_LENGTH} characters in all`;
}

/**
 * A route's name: a letter, then letters, digits, `_`, `-`, `.` or `:`, at most 64 characters.
 * Narrower than API Gateway's route keys on purpose: no `$` (its own routes), nothing a client
 * could not type as a plain JSON string, and every name gives a distinct CloudFormation logical id.
 */
export const ROUTE_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.:-]*$/;

/** Longest route name. */
export const MAX_ROUTE_NAME_LENGTH = 64;

/**
 * Names API Gateway would select for a non-string `action` (it selects on the value made a string:
 * `{"action": true}` selects "true"), which the local provider never selects: refused, so no route
 * is reachable on one provider and not the other.
 */
const SCALAR_WORDS = new Set(["true", "false", "null"]);

/** Why a route name is invalid, as a message with the fix; undefined when it is valid. */
export function routeNameProblem(socket: string, action: unknown, routeBy = ROUTE_PROPERTY): string | undefined {
  const call = `websocket("${socket}").route(${typeof action === "string" ? JSON.stringify(action.slice(0, 80)) : String(action)})`;
  if (typeof action !== "string" || action.length === 0) {
    return `${call}: a route needs a name, the "${routeBy}" its messages carry, such as "join"`;
  }
  if (action.length > MAX_ROUTE_NAME_LENGTH) {
    return `${call}: a route name is at most ${MAX_ROUTE_NAME_LENGTH} characters; this one has ${action.length}`;
  }
  if (!ROUTE_NAME_PATTERN.test(action)) {
    return `${call}: a route name starts with a letter and has only letters, digits, "_", "-", "." and ":", such as "join" or "chat.say"`;
  }
  if (SCALAR_WORDS.has(action)) {
    return `${call}: "${action}" is a JSON value, not a name a client sends as a string; choose another name`;
  }
  return undefined;
}

/**
 * The last name of a routeBy path, the key a message must hold to select a route (`type` for
 * `meta.type`): a message without it (and without escapes) is not read.
 */
export function routeByKey(routeBy: string): string {
  return routeBy.slice(routeBy.lastIndexOf(".") + 1);
}

/** Each routeBy's names, split once: selectRoute runs on every message. */
const paths = new Map<string, readonly string[]>();

function pathOf(routeBy: string): readonly string[] {
  let path = paths.get(routeBy);
  if (path === undefined) {
    // A program has a few sockets; the bound only keeps a caller that passes many from growing it.
    if (paths.size >= 64) paths.clear();
    path = routeBy.split(".");
    paths.set(routeBy, path);
  }
  return path;
}

/**
 * The route a text message selects among `routes`, or undefined for the message handler: the
 * message read as JSON, the property at its `routeBy` path (`action` by default; `meta.type`
 * reads `.meta.type`), when a string that names a route. Anything else (not JSON, not an object,
 * no such property, another type, a property on the way that is not an object, an unknown name)
 * selects none.
 */
export function selectRoute(text: string, routes: ReadonlySet<string>, routeBy = ROUTE_PROPERTY): string | undefined {
  if (routes.size === 0) return undefined;
  const path = pathOf(routeBy);
  // No scan for a message that cannot have the property (a key written with escapes, such as
  // "\u0061ction", still names it).
  if (!text.includes(`"${path[path.length - 1]}"`) && !text.includes("\\u")) return undefined;
  // As JSON.parse(text).meta.type would read it (own properties only), without building the
  // message (json-scan.ts).
  const action = stringAt(text, path);
  return action !== undefined && routes.has(action) ? action : undefined;
}
