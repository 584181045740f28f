/**
 * Rules of rooms and per-connection state, the same on every provider and in the SDK: a room name
 * is data (a Map key or a DynamoDB attribute value, never an object key), checked here once.
 */

/** Longest room name, in characters. */
export const MAX_ROOM_NAME_LENGTH = 128;
/** The most rooms one connection may be in. */
export const MAX_ROOMS_PER_CONNECTION = 100;
/** Largest connection state, in bytes of UTF-8 JSON (Durable Objects' attachment limit: 16 KiB). */
export const MAX_CONNECTION_STATE_BYTES = 16 * 1024;
/** What a room name is made of: no `#` (the AWS provider's key separator), no spaces, no control characters. */
export const ROOM_NAME_PATTERN = /^[A-Za-z0-9_.:@-]{1,128}$/;

/** Why a room name is refused, or undefined when it is fine; `where` begins the message. */
export function roomNameProblem(where: string, room: unknown): string | undefined {
  if (typeof room !== "string")
    return `${where}: a room name must be a string, got ${typeof room}; name it like "lobby"`;
  if (ROOM_NAME_PATTERN.test(room)) return undefined;
  const shown = JSON.stringify(room.length > 40 ? `${room.slice(0, 40)}…` : room);
  if (room.length === 0) return `${where}: a room name is empty; name it like "lobby"`;
  if (room.length > MAX_ROOM_NAME_LENGTH)
    return `${where}: room name ${shown} is ${room.length} characters, over the limit of ${MAX_ROOM_NAME_LENGTH}; shorten it`;
  return `${where}: invalid room name ${shown}; use 1-${MAX_ROOM_NAME_LENGTH} characters of A-Z a-z 0-9 _ - . : @`;
}

/** The message refusing a 101st room. */
export function tooManyRoomsProblem(where: string, connectionId: string): string {
  return `${where}: connection ${JSON.stringify(connectionId)} is in ${MAX_ROOMS_PER_CONNECTION} rooms, the most allowed; leave one first`;
}

/** Why a state (as JSON text) is refused, or undefined when it is fine. */
export function connectionStateProblem(where: string, json: string): string | undefined {
  const bytes = new TextEncoder().encode(json).byteLength;
  if (bytes > MAX_CONNECTION_STATE_BYTES)
    return `${where}: a connection's state is at most ${MAX_CONNECTION_STATE_BYTES} bytes of JSON (16 KB), got ${bytes}; keep less in it, and the rest in kv`;
  if (json === "") return undefined;
  try {
    JSON.parse(json);
  } catch {
    return `${where}: a connection's state must be JSON; give a value JSON.stringify accepts`;
  }
  return undefined;
}
