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

/**
 * A colour or style (SGR, `ESC [ ... m`), which a terminal shows and nothing more; any other
 * control sequence, and every control character but tab and line feed (C0, DEL, C1), as it is
 * matched by terminalSafe().
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters it escapes
const UNSAFE = /\u001b\[[0-9;:]*m|[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/**
 * Text a terminal shows without obeying it: control characters are written as \u escapes, but
 * for tab, line feed and colours. What a service prints often carries what a client sent (a
 * logged message), and an escape sequence there could retitle the terminal, clear or rewrite what
 * it shows, or, in some terminals, set the clipboard.
 */
export function terminalSafe(text: string): string {
  return text.replace(UNSAFE, (c) => (c.length > 1 ? c : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`));
}

/** A step of long work under way; see Output.progress(). */
export interface Progress {
  /** Ends the step: `line` replaces the spinner on a terminal (with the time taken), and is printed nowhere else. */
  done(line?: string): void;
}

const SPINNER = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/** The CLI's output. */
export class Output implements Logger {
  private readonly colour: boolean;
  private spinner: { label: string; frame: number; started: number; timer?: NodeJS.Timeout } | undefined;

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

  /**
   * Shows that long work (bundling, collecting, deploying) is under way. On a terminal with colour
   * a spinner with the time so far, redrawn below anything printed meanwhile; otherwise (a pipe,
   * NO_COLOR, --plain) the label once, as a line.
   */
  progress(label: string): Progress {
    if (!this.colour) {
      this.err.write(`${this.paint("dim", `${label}...`)}\n`);
      return { done: () => {} };
    }
    this.stopSpinner();
    const spinner: NonNullable<Output["spinner"]> = { label, frame: 0, started: Date.now() };
    this.spin(spinner);
    return {
      done: (line) => {
        if (this.spinner !== spinner) return;
        const seconds = ((Date.now() - spinner.started) / 1000).toFixed(1);
        this.stopSpinner();
        if (line) this.err.write(`${this.paint("green", "✓")} ${line} ${this.paint("dim", `(${seconds} s)`)}\n`);
      },
    };
  }

  /** Makes `spinner` the one shown, and turns it every 80 ms. */
  private spin(spinner: NonNullable<Output["spinner"]>): void {
    spinner.timer = setInterval(() => {
      spinner.frame++;
      this.drawSpinner();
    }, 80);
    spinner.timer.unref();
    this.spinner = spinner;
    this.drawSpinner();
  }

  /**
   * Runs `ask`, a question on the terminal, with the spinner stopped and cleared: drawn on the
   * question's line, it would hide the question. The spinner comes back once it is answered (not
   * when `ask` fails, which leaves its line to the error).
   */
  async aside<T>(ask: () => Promise<T>): Promise<T> {
    const paused = this.spinner;
    if (paused === undefined) return ask();
    this.stopSpinner();
    const answer = await ask();
    if (this.spinner === undefined) this.spin(paused);
    return answer;
  }

  private drawSpinner(): void {
    const s = this.spinner;
    if (!s) return;
    const seconds = Math.floor((Date.now() - s.started) / 1000);
    const frame = SPINNER[s.frame % SPINNER.length] ?? "";
    this.err.write(
      `\r\u001b[K${this.paint("cyan", frame)} ${s.label}${seconds > 0 ? this.paint("dim", ` ${seconds} s`) : ""}`,
    );
  }

  private stopSpinner(): void {
    if (!this.spinner) return;
    clearInterval(this.spinner.timer);
    this.spinner = undefined;
    this.err.write("\r\u001b[K");
  }

  /** Writes a line to a sink, keeping a running spinner below it. */
  private line(sink: Sink, text: string): void {
    if (this.spinner) this.err.write("\r\u001b[K");
    sink.write(`${this.shown(sink, text)}\n`);
    this.drawSpinner();
  }

  /** Text as `sink` is to get it: terminalSafe() on a terminal, as it is on a pipe or a file. */
  shown(sink: Sink, text: string): string {
    return sink.isTTY === true ? terminalSafe(text) : text;
  }

  /**
   * `--json`: the command's result is one JSON document on stdout (json()), and the lines it
   * would print there for people go to stderr with the progress.
   */
  jsonMode = false;

  /** A result line: to stdout, or with `--json` to stderr (stdout then holds only the JSON). */
  result(line: string): void {
    this.line(this.jsonMode ? this.err : this.out, line);
  }

  /**
   * `--json` of a command that streams (logs): each json() is one compact line (JSON Lines), so
   * a reader can take each as it comes.
   */
  jsonLines = false;

  /** With `--json`, writes the command's result (or its failure) as one JSON document to stdout. */
  json(value: unknown): void {
    if (this.jsonMode) this.line(this.out, this.jsonLines ? JSON.stringify(value) : JSON.stringify(value, null, 2));
  }

  info(message: string): void {
    this.line(this.err, message);
  }

  warn(message: string): void {
    this.line(this.err, `${this.paint("yellow", "warning:")} ${message}`);
  }

  error(message: string): void {
    this.line(this.err, `${this.paint("red", "error:")} ${message}`);
  }
}

/**
 * A mistake the user can fix: printed as its message alone, then the CLI exits with `exitCode`.
 * `problems` are the individual problems when there are several (printed before it; with `--json`
 * they are in the JSON error).
 */
export class UserError extends Error {
  override readonly name = "UserError";
  constructor(
    message: string,
    readonly exitCode = 1,
    readonly problems: string[] = [],
  ) {
    super(message);
  }
}

/** Who stops when the reader of stdout or stderr has gone (see watchOutputClosed): `run`, while it runs. */
const outputClosedListeners = new Set<() => void>();

/** Calls `listener` once the reader of stdout or stderr has gone; returns what stops the listening. */
export function onOutputClosed(listener: () => void): () => void {
  outputClosedListeners.add(listener);
  return () => outputClosedListeners.delete(listener);
}

/**
 * The reader of stdout or stderr going away (`nitric-like run | head -1`, a `grep -m1` that found
 * its line, `2>&1 | head -1`) is an EPIPE on the next write there, which Node otherwise throws as
 * an uncaught error, with a stack trace, ending the CLI before it stops what it started. Here it
 * is what SIGPIPE is to a Unix tool, said on stderr while that is open: a command that listens
 * (run) stops as on Ctrl-C; any other ends at once with 141 (128 + SIGPIPE), which is what a
 * shell reports for a writer its pipe ended. What is written there after that is dropped.
 */
export function watchOutputClosed(stdout: NodeJS.WriteStream, stderr: NodeJS.WriteStream): void {
  let closed = false;
  for (const stream of [stdout, stderr]) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code !== "EPIPE" && error.code !== "ERR_STREAM_DESTROYED") throw error;
      if (closed) return;
      closed = true;
      if (outputClosedListeners.size === 0) process.exit(141);
      // Said on stderr, unless that is what was closed.
      if (stream === stdout)
        stderr.write("nitric-like: its stdout was closed (the program reading it has exited): stopping\n");
      for (const listener of [...outputClosedListeners]) listener();
    });
  }
}
