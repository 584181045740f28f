/**
 * What the CLI writes for people: diagnostics to stderr, results to stdout. Colour only on a
 * terminal and never when NO_COLOR is set (https://no-color.org) or `--plain` is given.
 */
import type { Logger } from "@nitric-like/spec";

/** A writable text sink; process.stdout and process.stderr fit. */
export interface Sink {
  write(text: string): unknown;
  isTTY?: boolean;
}

const CODES = { red: 31, yellow: 33, cyan: 36, dim: 2, bold: 1, green: 32, magenta: 35, blue: 34 } as const;
/** A colour the CLI uses. */
export type Colour = keyof typeof CODES;

/** Whether to colour output written to a sink. */
export function useColour(sink: Sink, plain = false): boolean {
  return !plain && sink.isTTY === true && !("NO_COLOR" in process.env) && process.env.TERM !== "dumb";
}

/** The CLI's output. */
export class Output implements Logger {
  private readonly colour: boolean;

  constructor(
    readonly out: Sink = process.stdout,
    readonly err: Sink = process.stderr,
    plain = false,
  ) {
    this.colour = useColour(err, plain);
  }

  /** Paints text in a colour when colour is on. */
  paint(colour: Colour, text: string): string {
    return this.colour ? `\u001b[${CODES[colour]}m${text}\u001b[0m` : text;
  }

  /** A result line, to stdout. */
  result(line: string): void {
    this.out.write(`${line}\n`);
  }

  info(message: string): void {
    this.err.write(`${message}\n`);
  }

  warn(message: string): void {
    this.err.write(`${this.paint("yellow", "warning:")} ${message}\n`);
  }

  error(message: string): void {
    this.err.write(`${this.paint("red", "error:")} ${message}\n`);
  }
}

/** A mistake the user can fix: printed as its message alone, then the CLI exits with `exitCode`. */
export class UserError extends Error {
  override readonly name = "UserError";
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}
