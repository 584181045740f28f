/**
 * A service's error message as a failure shows it, on the local provider (`run`'s cause of a failed
 * service) and in the AWS emulator (a function's failed init) alike: bounded, its further lines
 * indented below the entry that names it.
 */

/** Most lines of an error's message a failure shows: a service's error may be any size. */
export const MAX_MESSAGE_LINES = 20;
/** Most characters of an error's message a failure shows. */
export const MAX_MESSAGE_CHARS = 2000;

/**
 * A message cut to MAX_MESSAGE_LINES lines and MAX_MESSAGE_CHARS characters, with a last line
 * saying it was cut and where: a service's error message is its own, and may be huge.
 */
export function boundedMessage(message: string): string {
  const lines = message.split("\n");
  let shown = lines.slice(0, MAX_MESSAGE_LINES).join("\n");
  let cut = lines.length > MAX_MESSAGE_LINES;
  if (shown.length > MAX_MESSAGE_CHARS) {
    shown = shown.slice(0, MAX_MESSAGE_CHARS);
    cut = true;
  }
  if (!cut) return message;
  return `${shown}\n... (the message is cut here: a failure shows at most ${MAX_MESSAGE_LINES} lines, ${MAX_MESSAGE_CHARS} characters of it)`;
}

/**
 * A message of several lines, as a failure shows it: its lines' trailing spaces and its trailing
 * blank lines dropped, and the common indentation of the lines after the first taken off (a
 * message written as "bad config:\n  PORT must be a number" is shown indented as a failure
 * indents it, not further).
 */
export function unindentedMessage(lines: readonly string[]): string {
  const [first = "", ...rest] = lines.map((l) => l.trimEnd());
  while (rest.length > 0 && rest[rest.length - 1] === "") rest.pop();
  const indent = Math.min(...rest.filter((l) => l !== "").map((l) => /^\s*/.exec(l)?.[0].length ?? 0));
  return [first, ...rest.map((l) => l.slice(Number.isFinite(indent) ? indent : 0))].join("\n");
}

/**
 * A thrown error's `message` as a failure shows it (unindentedMessage, boundedMessage), its lines
 * after the first indented by 4, so that none of them reads as an entry of its own in a log of
 * one entry a line.
 */
export function indentedMessage(message: string): string {
  return boundedMessage(unindentedMessage(message.split(/\r?\n/)))
    .split("\n")
    .join("\n    ");
}

/**
 * `said` followed by `more`: after `separator` on its last line, or, when `said` holds a message of
 * several lines (indentedMessage), on a line of its own below it, indented by 2.
 */
export function followedBy(said: string, more: string, separator = "; "): string {
  return said.includes("\n") ? `${said}\n  ${more}` : `${said}${separator}${more}`;
}
