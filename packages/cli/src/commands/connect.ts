/**
 * `nitric-like connect [dir]`: a WebSocket client in the terminal, to try a socket of the
 * project's running `nitric-like run` (found by name in `.nitric-like/sockets.json`, see
 * run-sockets.ts) or any URL (`--url`, a deployed socket). Each line of input is sent as a text
 * message; each message that arrives is printed on stdout, one per line (binary ones as
 * `[binary N bytes] <base64>`), so it works in a pipe too; what happens to the connection goes to
 * stderr.
 */
import { createInterface } from "node:readline";
import { didYouMean } from "@nitric-like/spec";
import WebSocket from "ws";
import { type Output, UserError } from "../lib/log.js";
import { loadProjectFile } from "../lib/prepare.js";
import { readRunSockets, runSocketsFile } from "../lib/run-sockets.js";
import { deployedOutputs } from "./up.js";

/** Help for `connect`. */
export const CONNECT_HELP = `Usage: nitric-like connect [dir] [options]

Connects to a socket as a client: one of the running "nitric-like run" of the project
in dir (default: the current folder), or with --provider aws one of its deployed stack
(its URL read as nitric-like outputs reads it), or any --url. --socket names the socket,
and may be left out when there is one.

Each line you type is sent as a text message, such as {"action":"join","room":"lobby"};
each message that arrives is printed on a line of its own (a binary one as
[binary N bytes] and its base64). The end of input (Ctrl-D, or the end of a pipe)
closes the connection once no message has arrived for half a second. Exits 0 after a
normal close (1000 or 1001), 1 when the connection is refused or closed with another
code.

Options:
  --socket <name>        The socket (needed when the run has several)
  --query <name=value>   Add a query parameter (repeatable): --query name=ann
  --header <name:value>  Add a request header (repeatable)
  --protocol <name>      Offer a subprotocol (repeatable)
  --provider aws         A socket of the deployed stack instead of the running run's
  --stack <name>         (aws) Stack name (default: the project's name)
  --region <region>      (aws) AWS region (default: from the AWS configuration)
  --url <url>            Connect to this ws:// or wss:// URL instead
  --plain                No colours.
  -h, --help             Show this help.
`;

/** What connect was asked. */
export interface ConnectOptions {
  socket: string | undefined;
  dir: string;
  url: string | undefined;
  /** A provider whose deployment has the socket (`aws`); undefined: the running run's. */
  provider: string | undefined;
  stack: string | undefined;
  region: string | undefined;
  query: string[];
  headers: string[];
  protocols: string[];
}

/** How long input's end waits for the messages still on their way before closing. */
const QUIET_MS = 500;
/** The longest it waits so. */
const MAX_WAIT_MS = 5000;

/** The URL to connect to: --url, or the running run's socket or a deployed one, with the query added. */
async function target(options: ConnectOptions, output: Output): Promise<string> {
  let base = options.url;
  if (base === undefined) {
    let sockets: { name: string; url: string }[];
    let where: string;
    if (options.provider !== undefined && options.provider !== "local") {
      const { stack, found } = await deployedOutputs(
        { dir: options.dir, provider: options.provider, stack: options.stack, region: options.region },
        output,
        "connect",
      );
      sockets = found.sockets;
      where = `the deployed stack "${stack}"`;
      if (sockets.length === 0)
        throw new UserError(
          `connect: ${where} has no socket${found.status ? ` (${found.status})` : ""}; deploy one with nitric-like up`,
        );
    } else {
      const project = loadProjectFile(options.dir);
      const running = readRunSockets(project.dir);
      if (!running || running.sockets.length === 0) {
        throw new UserError(
          `connect: no nitric-like run of "${project.name}" is running (no live ${runSocketsFile(project.dir)}); start one with nitric-like run ${options.dir === "." ? "" : options.dir}`.trimEnd() +
            ", or give --provider aws or --url",
        );
      }
      sockets = running.sockets;
      where = `the running "${project.name}"`;
    }
    const names = sockets.map((s) => s.name);
    let socket = options.socket === undefined ? undefined : sockets.find((s) => s.name === options.socket);
    if (options.socket === undefined) {
      if (sockets.length > 1)
        throw new UserError(`connect: which socket? ${where} has ${names.join(", ")}: give --socket <name>`);
      socket = sockets[0];
    }
    if (!socket) {
      const close = didYouMean(options.socket ?? "", names);
      throw new UserError(
        `connect: no socket ${JSON.stringify(options.socket)} in ${where}${close ? `; did you mean "${close}"?` : ""} (its sockets: ${names.join(", ")})`,
      );
    }
    base = socket.url;
  }
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new UserError(`connect: ${JSON.stringify(base)} is not a URL; give one such as ws://127.0.0.1:4000`);
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:")
    throw new UserError(`connect: ${JSON.stringify(base)} is not a ws:// or wss:// URL`);
  for (const pair of options.query) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new UserError(`connect: --query ${JSON.stringify(pair)} is not name=value`);
    url.searchParams.append(pair.slice(0, at), pair.slice(at + 1));
  }
  return url.toString();
}

/** An HTTP token (RFC 9110): what a header name and a subprotocol are made of. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const TOKEN_RULE = "letters, digits and ! # $ % & ' * + - . ^ _ ` | ~ (no spaces, commas or quotes)";
/** What Node refuses in a header value: control characters other than tab. */
const BAD_VALUE = /[^\t\u0020-\u007e\u0080-\u00ff]/;

function headersOf(pairs: string[]): Record<string, string> {
  const headers: Record<string, string> = Object.create(null);
  for (const pair of pairs) {
    const at = pair.indexOf(":");
    if (at <= 0) throw new UserError(`connect: --header ${JSON.stringify(pair)} is not name:value`);
    const name = pair.slice(0, at).trim();
    const value = pair.slice(at + 1).trim();
    if (!TOKEN.test(name))
      throw new UserError(
        `connect: --header ${JSON.stringify(pair)}: ${JSON.stringify(name)} is not a header name; use ${TOKEN_RULE}`,
      );
    if (BAD_VALUE.test(value))
      throw new UserError(
        `connect: --header ${JSON.stringify(pair)}: the value has a character a header cannot carry (a control character, or one above U+00FF); remove it`,
      );
    headers[name] = value;
  }
  return headers;
}

function checkProtocols(protocols: string[]): void {
  const seen = new Set<string>();
  for (const protocol of protocols) {
    if (!TOKEN.test(protocol))
      throw new UserError(
        `connect: --protocol ${JSON.stringify(protocol)} is not a subprotocol name; use ${TOKEN_RULE}`,
      );
    if (seen.has(protocol))
      throw new UserError(
        `connect: --protocol ${JSON.stringify(protocol)} is given twice; offer each subprotocol once`,
      );
    seen.add(protocol);
  }
}

/**
 * What the ws library's refusal of a 101 over its subprotocol means, and what to do: a server that
 * accepts none of the offered subprotocols fails the connection in every client that follows
 * RFC 6455 (browsers too), though the server counts it as opened. Undefined for other errors.
 */
export function subprotocolProblem(message: string, offered: readonly string[]): string | undefined {
  const list = offered.map((p) => JSON.stringify(p)).join(", ");
  if (message === "Server sent no subprotocol")
    return `the socket accepted the connection but none of the subprotocols offered (${list}), so a client (a browser too) must fail it; offer one it accepts as well (--protocol <name>, such as the app's own), or, in the app, have authorize return one of req.protocols as its protocol`;
  if (message === "Server sent an invalid subprotocol")
    return `the socket accepted a subprotocol that was not offered (${list}), so a client (a browser too) must fail it; its authorize must return one of req.protocols as its protocol`;
  return undefined;
}

/** Runs connect; resolves with the exit code. */
export async function connectCommand(options: ConnectOptions, output: Output): Promise<number> {
  const headers = headersOf(options.headers);
  checkProtocols(options.protocols);
  const url = await target(options, output);
  const ws = new WebSocket(url, options.protocols, { headers, perMessageDeflate: false });
  let lastMessage = 0;
  ws.on("message", (data: Buffer, binary: boolean) => {
    lastMessage = Date.now();
    output.result(
      // A terminal shows what a server sends without obeying it (Output.shown, terminalSafe); a pipe
      // gets the text as it came.
      binary ? `[binary ${data.byteLength} bytes] ${data.toString("base64")}` : data.toString("utf8"),
    );
  });
  // Until it opens: refused (its status and the body that says why), or not reachable.
  const opened = await new Promise<boolean>((resolve) => {
    let settled = false;
    const settle = (open: boolean, message?: string) => {
      if (settled) return;
      settled = true;
      if (message !== undefined) output.error(message);
      resolve(open);
    };
    ws.once("open", () => settle(true));
    ws.once("unexpected-response", (_req, res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        // The answer's first 4 KB are enough to say why.
        if (size < 4096) chunks.push(c);
        size += c.length;
      });
      const done = () => {
        const body = Buffer.concat(chunks).toString("utf8").slice(0, 4096).trim();
        settle(false, `connect: ${url} refused the connection: HTTP ${res.statusCode}${body ? ` ${body}` : ""}`);
        ws.terminate();
      };
      res.once("end", done);
      res.once("error", done);
    });
    ws.on("error", (error: Error) =>
      settle(
        false,
        `connect: cannot reach ${url}: ${subprotocolProblem(error.message, options.protocols) ?? error.message}`,
      ),
    );
  });
  if (!opened) return 1;
  output.info(
    `connected to ${url}${ws.protocol ? ` (subprotocol ${ws.protocol})` : ""}; type a message and Enter, Ctrl-D to close`,
  );
  const closed = new Promise<number>((resolve) => {
    ws.once("close", (code: number, reason: Buffer) => {
      const why = reason.toString("utf8");
      output.info(`closed ${code}${why ? ` ${why}` : ""}`);
      // 1005: closed with no code, as a client that ends its input does here.
      resolve(code === 1000 || code === 1001 || code === 1005 ? 0 : 1);
    });
  });
  const input = createInterface({ input: process.stdin, terminal: false });
  input.on("line", (line) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(line);
  });
  input.once("close", () => {
    // The replies to the last lines may be on their way: close once none has come for a moment.
    const ended = Date.now();
    lastMessage = Math.max(lastMessage, ended);
    const check = () => {
      if (ws.readyState !== WebSocket.OPEN) return;
      const now = Date.now();
      if (now - lastMessage >= QUIET_MS || now - ended >= MAX_WAIT_MS) ws.close(1000);
      else setTimeout(check, 50);
    };
    check();
  });
  const code = await closed;
  input.close();
  // Closed by the server while input is still open (a terminal): stop reading it, so the command ends.
  process.stdin.destroy();
  return code;
}
