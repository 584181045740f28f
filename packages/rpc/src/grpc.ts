/**
 * The gRPC transport: the only code of ours that imports @grpc/grpc-js (besides the compat
 * adapter for @nitric/sdk). A GrpcServer serves a router over HTTP/2 for services in other
 * processes and other languages; createGrpcTransport calls one. grpc-js moves the bytes only:
 * messages are encoded and decoded by the router and the client, as on every transport.
 */
import { createServer, type Server as NetServer, type Socket } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { ArrivingBudget, type CallRefusal, processArriving } from "./arriving.js";
import { type ConnectionBudget, type ConnectionHolder, processConnections } from "./connections.js";
import { canCheckTcpPeers, listsListener, tcpPeerUid } from "./peer-user.js";
import type { Router } from "./router.js";
import { Code } from "./status.js";
import { MAX_UNARY_IN_FLIGHT, WaitingCalls } from "./waiting.js";
import type { MethodKind, Transport, WireCall, WireEvents } from "./wire.js";

/** Messages up to this size cross a gRPC endpoint (kv values; frames are limited by the gateway). */
export const MAX_GRPC_MESSAGE_BYTES = 64 * 1024 * 1024;

const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
const same = (bytes: Buffer) => bytes;

/**
 * Most bytes of a status's details as sent over gRPC. They travel in an HTTP/2 trailer,
 * percent-encoded by grpc-js (encodeURI: a space takes 3 bytes, a CJK character 9, an emoji 12),
 * and a client refuses trailers over its metadata limit (grpc-java's default is 8 KiB; grpc-js's
 * own fails the call and leaves the connection stalled for every later call): a message that
 * quotes what a client sent (a 100 KB name) would not reach it. Longer details are cut at a
 * character's end, saying so.
 */
export const MAX_STATUS_DETAILS_BYTES = 4096;

/** The ASCII characters encodeURI leaves as they are: each takes 1 byte; any other, 3 a UTF-8 byte. */
const URI_AS_IS = /^[A-Za-z0-9;,/?:@&=+$\-_.!~*'()#]$/;

/** How many bytes code point `c` takes once grpc-js has percent-encoded it (encodeURI). */
function encodedBytes(c: number): number {
  if (c < 0x80) return URI_AS_IS.test(String.fromCharCode(c)) ? 1 : 3;
  return 3 * (c < 0x800 ? 2 : c < 0x10000 ? 3 : 4);
}

/**
 * `details` as the gRPC transport sends them: a lone surrogate (which encodeURI refuses, failing
 * the status) becomes U+FFFD, and past MAX_STATUS_DETAILS_BYTES encoded they are cut, never inside
 * a character, with a note of how long the message was.
 */
function statusDetails(details: string): string {
  let whole = "";
  let bytes = 0;
  // Where the cut falls: the note must fit after it.
  let cutAt = -1;
  const note = `... (cut: the message has ${details.length} characters)`;
  const room = MAX_STATUS_DETAILS_BYTES - encodeURI(note).length;
  for (const char of details) {
    const c = char.codePointAt(0) ?? 0;
    const wellFormed = c >= 0xd800 && c <= 0xdfff ? "\ufffd" : char;
    bytes += encodedBytes(wellFormed.codePointAt(0) ?? 0);
    if (cutAt === -1 && bytes > room) cutAt = whole.length;
    if (bytes > MAX_STATUS_DETAILS_BYTES) return `${whole.slice(0, cutAt)}${note}`;
    whole += wellFormed;
  }
  return whole;
}

/** grpc-js's error for a status a router ended a call with. */
function serviceError(code: number, details: string): Partial<grpc.ServiceError> {
  return { code, details: statusDetails(details), metadata: new grpc.Metadata() };
}

/**
 * Most bytes a server stream may have waiting to be sent to its client: HTTP/2 flow control holds
 * them in this process while the client does not read (a service whose SDK stopped reading its
 * handler stream, a scan nobody reads). Past it the call says it is not writable (WireEvents), so
 * a kv scan waits and a handler stream's new events fail instead of piling up, as a ws client
 * that stops reading is closed past the gateway's MAX_BUFFERED_BYTES.
 */
export const MAX_UNSENT_STREAM_BYTES = 8 * 1024 * 1024;

/** The events that carry a router's answers back onto a grpc-js server call. */
function streamEvents(call: grpc.ServerWritableStream<Buffer, Buffer>): WireEvents {
  // grpc-js calls back each write once HTTP/2 has sent it, in order: the sizes of the writes not
  // yet sent, oldest first from `head` (a queue without shift(), which copies a long array), and
  // their total.
  let sizes: number[] = [];
  let head = 0;
  let unsent = 0;
  let drained: (() => void)[] | undefined;
  const sent = () => {
    unsent -= sizes[head++] ?? 0;
    if (head === sizes.length) {
      sizes = [];
      head = 0;
    } else if (head >= 1024 && head * 2 >= sizes.length) {
      sizes = sizes.slice(head);
      head = 0;
    }
    if (drained !== undefined && unsent < MAX_UNSENT_STREAM_BYTES) {
      const listeners = drained;
      drained = undefined;
      for (const listener of listeners) listener();
    }
  };
  return {
    message: (bytes) => {
      sizes.push(bytes.length);
      unsent += bytes.length;
      call.write(asBuffer(bytes), sent);
    },
    writable: () => unsent < MAX_UNSENT_STREAM_BYTES,
    onDrain: (listener) => {
      if (drained) drained.push(listener);
      else drained = [listener];
    },
    status: (code, details) => {
      // grpc-js sends an "error" event's status to the client; end() sends OK.
      if (code === Code.OK) call.end();
      else call.emit("error", serviceError(code, details));
    },
  };
}

/** The grpc-js handler of one of a router's methods. */
function handlerFor(router: Router, path: string, kind: MethodKind): grpc.UntypedHandleCall {
  const peer = (call: { getPeer(): string }) => `grpc ${call.getPeer()}`;
  if (kind === "unary") {
    return ((call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      const wire = router.open(
        path,
        call.request,
        {
          message: () => {},
          status: (code, details, response) => {
            if (code === Code.OK) callback(null, asBuffer(response ?? new Uint8Array(0)));
            else callback(serviceError(code, details));
          },
        },
        peer(call),
      );
      // The client cancelled or its deadline passed: the answer, when it comes, is dropped.
      call.on("cancelled", () => wire.cancel());
    }) as grpc.UntypedHandleCall;
  }
  if (kind === "server_streaming") {
    return ((call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const wire = router.open(path, call.request, streamEvents(call), peer(call));
      call.on("cancelled", () => wire.cancel());
    }) as grpc.UntypedHandleCall;
  }
  return ((call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    const wire: WireCall = router.open(
      path,
      undefined,
      streamEvents(call as unknown as grpc.ServerWritableStream<Buffer, Buffer>),
      peer(call),
    );
    call.on("data", (bytes: Buffer) => wire.write(bytes));
    // A Node client's cancel (grpc-js's, ours among them) ends its half of the HTTP/2 stream
    // before it resets it, so such a call hears onEnd and then its cancel, a turn of the event
    // loop later; nothing on the wire tells that half-close from a client's last word. A handler
    // that ends a call on onEnd has then ended it before the cancel came.
    call.on("end", () => wire.halfClose());
    call.on("cancelled", () => wire.cancel());
    // A stream error (the client went away) is the end of the call; the router heard "cancelled".
    call.on("error", () => {});
  }) as grpc.UntypedHandleCall;
}

/**
 * Calls one client connection may have open at once on a GrpcServer: HTTP/2's
 * SETTINGS_MAX_CONCURRENT_STREAMS, so a client that starts more (a service process's SDK, ours or
 * another language's) holds them on its side, and `run` holds at most this many per connection.
 * It also keeps @nitric/sdk's grpc-js 1.10 going on Node 20: with no limit, about 16,000 calls
 * started at once over a unix socket stalled both ends for good (not over TCP, not with grpc-js
 * 1.14 as the client, not on Node 22). Our own transport holds calls back at the same number
 * (waiting.ts).
 */
export const MAX_CONCURRENT_STREAMS = 1024;

/**
 * Connections a GrpcServer serves at once, across its addresses, those whose check still waits
 * (bindLoopback) included: past it a new connection is cut as it comes. All of a process's
 * servers together serve at most MAX_PROCESS_GRPC_CONNECTIONS (connections.ts). A service's SDK opens one (grpc-js shares one connection among its clients of an
 * address) or a few (an SDK of another language may open one per client), so a service never
 * meets it unless it opens connections in a loop and keeps them. Each idle HTTP/2 connection
 * costs `run` about 27 KB and a file descriptor (5,000 took `run --processes --tcp` from 66 MB
 * to 199 MB of resident memory); at this bound a service's connections cost it 20 to 40 MB.
 */
export const MAX_GRPC_CONNECTIONS = 1000;

/**
 * How long a new connection has to send HTTP/2's whole client preface (its 24 bytes, then a
 * SETTINGS frame) before it is cut. Until then it holds one of the server's connections (and a
 * file descriptor) without being a session grpc-js could ever time out: one that sends nothing, or
 * stops halfway, would hold it for good, and a loop of them every slot. A gRPC client sends the
 * preface as soon as it connects, so 10 s leaves a slow or loaded one ample room; once sent, the
 * connection may stay idle for as long as it likes (a service keeps one open for its life).
 */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** The first bytes of HTTP/2's client preface (RFC 9113 §3.4); a SETTINGS frame follows. */
const PREFACE_MAGIC = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const FRAME_HEADER_BYTES = 9;
const SETTINGS_FRAME = 0x4;
/** HTTP/2's largest frame until the server says otherwise: a larger SETTINGS is refused by HTTP/2 itself. */
const INITIAL_MAX_FRAME_BYTES = 16_384;

/**
 * How far `head` (a connection's first bytes) is in HTTP/2's client preface: "more" while it needs
 * more bytes, with how many in all once the SETTINGS frame's length is known; "done" once whole;
 * "other" when it is not one (HTTP/2 answers that with its own error).
 */
function prefaceState(head: Buffer, received: number): "more" | "done" | "other" {
  const magic = Math.min(head.length, PREFACE_MAGIC.length);
  if (!head.subarray(0, magic).equals(PREFACE_MAGIC.subarray(0, magic))) return "other";
  const header = PREFACE_MAGIC.length + FRAME_HEADER_BYTES;
  if (head.length < header) return "more";
  const length = head.readUIntBE(PREFACE_MAGIC.length, 3);
  if (head[PREFACE_MAGIC.length + 3] !== SETTINGS_FRAME || length > INITIAL_MAX_FRAME_BYTES) return "other";
  return received >= header + length ? "done" : "more";
}

/**
 * Why a GrpcServer ended a call before its request had come, or cut a connection as it came:
 * the server served its most connections ("endpoint"), the process's servers together theirs
 * ("process", with the server holding the most, and the open-file limit the bound was lowered to
 * fit, if it was), or the process asked the kernel whose MAX_PEER_CHECKS connections were already
 * ("checks", with the TCP port the connection came to); or it cut a connection that had not sent
 * HTTP/2's client preface within `ms` ("handshake", with the bytes it had sent and its TCP port,
 * undefined for a Unix socket).
 */
export type GrpcRefusal =
  | CallRefusal
  | { kind: "connections"; scope: "endpoint"; limit: number }
  | {
      kind: "connections";
      scope: "process";
      limit: number;
      busiest: { name: string | undefined; connections: number } | undefined;
      openFiles: number | undefined;
    }
  | { kind: "connections"; scope: "checks"; limit: number; port: number }
  | { kind: "connections"; scope: "handshake"; ms: number; received: number; port: number | undefined };

/** Options of a GrpcServer. */
export interface GrpcServerOptions {
  /**
   * Internal, for tests: the most bytes of requests still arriving this server holds at once, in
   * a budget of its own. @default MAX_ARRIVING_BYTES, shared by every GrpcServer of the process
   */
  maxArrivingBytes?: number;
  /**
   * Internal, for tests: a budget of requests still arriving this server shares with the others
   * given it, in place of the process's. Wins over maxArrivingBytes.
   */
  arrivingBudget?: ArrivingBudget;
  /** Internal, for tests: the most connections this server serves at once. @default MAX_GRPC_CONNECTIONS */
  maxConnections?: number;
  /**
   * Internal, for tests: a bound on connections this server shares with the others given it, in
   * place of the process's. @default processConnections (MAX_PROCESS_GRPC_CONNECTIONS)
   */
  connectionBudget?: ConnectionBudget;
  /** Internal, for tests: how long a new connection has to send HTTP/2's preface. @default HANDSHAKE_TIMEOUT_MS */
  handshakeTimeoutMs?: number;
  /** How a refusal of another server sharing its connection budget names this one (a service's name). */
  name?: string;
  /**
   * Hears each call this server ends before its request has come (the client was sent why) and
   * each connection it cuts as it comes, for a log: many may come at once.
   */
  refused?: (refusal: GrpcRefusal) => void;
}

/** A grpc-js server serving one router on any number of addresses. */
export class GrpcServer {
  private readonly server: grpc.Server;

  /** The bytes of requests still arriving that this server's calls hold, with its budget. */
  readonly arriving: ArrivingBudget;

  /** The listeners of bind() and bindLoopback(), which hand connections to the server. */
  private readonly listeners: NetServer[] = [];

  /** Hands a connection to grpc-js; made on the first. */
  private injector: grpc.ConnectionInjector | undefined;

  /** The connections this server holds (served, or waiting for their check), with its name. */
  private readonly holder: ConnectionHolder;

  /** The bound on connections this server shares with the process's others. */
  readonly connectionBudget: ConnectionBudget;

  private readonly maxConnections: number;

  private readonly handshakeTimeoutMs: number;

  /** Connections whose preface has not all come yet (not grpc-js's yet): cut when the server stops. */
  private readonly handshaking = new Set<Socket>();

  private readonly refused: (refusal: GrpcRefusal) => void;

  constructor(router: Router, options: GrpcServerOptions = {}) {
    this.arriving =
      options.arrivingBudget ??
      (options.maxArrivingBytes === undefined ? processArriving : new ArrivingBudget(options.maxArrivingBytes));
    this.maxConnections = options.maxConnections ?? MAX_GRPC_CONNECTIONS;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    this.connectionBudget = options.connectionBudget ?? processConnections;
    this.holder = { name: options.name, connections: 0 };
    this.refused = options.refused ?? (() => {});
    this.server = new grpc.Server({
      "grpc.max_receive_message_length": MAX_GRPC_MESSAGE_BYTES,
      "grpc.max_send_message_length": MAX_GRPC_MESSAGE_BYTES,
      "grpc.max_concurrent_streams": MAX_CONCURRENT_STREAMS,
      // First, so that it sees the call grpc-js made (arriving.ts).
      interceptors: [this.arriving.interceptor({ maxMessageBytes: MAX_GRPC_MESSAGE_BYTES, refused: this.refused })],
    });
    for (const { path, kind } of router.methods()) {
      const name = path.slice(path.lastIndexOf("/") + 1);
      const definition: grpc.MethodDefinition<Buffer, Buffer> = {
        path,
        requestStream: kind === "client_streaming" || kind === "bidi_streaming",
        responseStream: kind === "server_streaming" || kind === "bidi_streaming",
        requestSerialize: same,
        requestDeserialize: same,
        responseSerialize: same,
        responseDeserialize: same,
      };
      this.server.addService({ [name]: definition } as grpc.ServiceDefinition, {
        [name]: handlerFor(router, path, kind),
      });
    }
  }

  /**
   * Listens on `<host>:<port>` (port 0: any free port) or `unix:<path>`; resolves with the port
   * (0 for a Unix socket). The listener is ours, not grpc-js's, so that it counts connections.
   */
  async bind(address: string): Promise<number> {
    const listener = createServer({ noDelay: true }, (socket) => {
      socket.on("error", () => {});
      const release = this.admit(socket);
      if (release === undefined) return;
      socket.once("close", release);
      const where = listener.address();
      void this.prefaced(socket, typeof where === "object" && where !== null ? where.port : undefined).then(
        (prefaced) => {
          if (prefaced) this.serve(listener, socket);
        },
      );
    });
    if (address.startsWith("unix:")) {
      await this.listen(listener, { path: address.slice("unix:".length) });
      return 0;
    }
    const colon = address.lastIndexOf(":");
    const port = Number(address.slice(colon + 1));
    if (colon <= 0 || !/^\d+$/.test(address.slice(colon + 1)) || port > 65535)
      throw new Error(
        `grpc: cannot listen on ${JSON.stringify(address)}; give the address as <host>:<port> or unix:<path>`,
      );
    const host = address.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
    await this.listen(listener, { port, host });
    return (listener.address() as { port: number }).port;
  }

  /** Starts `listener` listening, as one of this server's. */
  private async listen(listener: NetServer, where: { path: string } | { port: number; host: string }): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(where, () => {
        listener.off("error", reject);
        resolve();
      });
    });
    this.listeners.push(listener);
  }

  /**
   * Counts a connection as it comes, against this server's bound (MAX_GRPC_CONNECTIONS) and the
   * process's (MAX_PROCESS_GRPC_CONNECTIONS), and gives what lets go of it (once, whenever
   * called again); past either bound it is cut at once, and said.
   */
  private admit(socket: Socket): (() => void) | undefined {
    if (this.holder.connections >= this.maxConnections) {
      socket.destroy();
      this.refused({ kind: "connections", scope: "endpoint", limit: this.maxConnections });
      return undefined;
    }
    const budget = this.connectionBudget;
    if (!budget.take(this.holder)) {
      socket.destroy();
      this.refused({
        kind: "connections",
        scope: "process",
        limit: budget.limit,
        busiest: budget.busiest(),
        openFiles: budget.openFiles,
      });
      return undefined;
    }
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      budget.give(this.holder);
    };
  }

  /**
   * Reads a new connection's first bytes until HTTP/2's client preface has all come: resolves true
   * then, the bytes put back for HTTP/2 to read, and the socket paused (what comes next waits in
   * it); true at once for bytes that are no preface (HTTP/2 refuses them itself). False when the
   * connection closes first, or is cut for not sending it within handshakeTimeoutMs (said).
   * `port`: the TCP port it came to, for the log; undefined for a Unix socket.
   */
  private prefaced(socket: Socket, port: number | undefined): Promise<boolean> {
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let received = 0;
      // The first bytes, up to the preface's SETTINGS frame's header, in one buffer.
      let head = Buffer.alloc(0);
      const headBytes = PREFACE_MAGIC.length + FRAME_HEADER_BYTES;
      const finish = (prefaced: boolean) => {
        clearTimeout(timer);
        this.handshaking.delete(socket);
        socket.off("data", data);
        socket.off("close", closed);
        if (prefaced) {
          socket.pause();
          if (received > 0) socket.unshift(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
        }
        resolve(prefaced);
      };
      const data = (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        if (head.length < headBytes) head = Buffer.concat([head, chunk.subarray(0, headBytes - head.length)]);
        if (prefaceState(head, received) !== "more") finish(true);
      };
      const closed = () => finish(false);
      const timer = setTimeout(() => {
        finish(false);
        socket.destroy();
        this.refused({ kind: "connections", scope: "handshake", ms: this.handshakeTimeoutMs, received, port });
      }, this.handshakeTimeoutMs);
      // The socket keeps the process alive as long as it is open; its deadline need not.
      timer.unref();
      this.handshaking.add(socket);
      socket.on("data", data);
      socket.once("close", closed);
    });
  }

  /**
   * Hands a connection that came to `listener`, counted already (admit), to grpc-js, unless the
   * listener has stopped (a session on a stopped server would stay open): then it is cut.
   */
  private serve(listener: NetServer, socket: Socket): void {
    if (!this.listeners.includes(listener)) {
      socket.destroy();
      return;
    }
    this.injector ??= this.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    this.injector.injectConnection(socket);
  }

  /**
   * Listens on `127.0.0.1:<port>` (0: any free port) and serves only connections whose client
   * process is of this user, where the kernel says whose a connection is (Linux); elsewhere every
   * connection. Nitric's SDKs send no credential, so this is what keeps another user of the machine
   * from acting as a service. Each refused connection is cut (its calls fail with UNAVAILABLE) and
   * `refused` hears the uid it came from (undefined: not found in the kernel's tables). Resolves
   * with the port, and whether the check is made.
   */
  async bindLoopback(
    port = 0,
    refused: (uid: number | undefined) => void = () => {},
  ): Promise<{ port: number; sameUserOnly: boolean }> {
    const uid = process.getuid?.();
    let bound = port;
    if (!canCheckTcpPeers()) return { port: await this.bind(`127.0.0.1:${port}`), sameUserOnly: false };
    // Whether the kernel's tables list this listener (listsListener): a /proc that does not show
    // this process's own socket (a sandbox's) cannot show whose a connection is either, and then
    // every connection is served, as where there is no /proc. A connection that comes before that
    // is known waits for it.
    let knowIfChecked: (checked: boolean) => void = () => {};
    const checked = new Promise<boolean>((resolve) => {
      knowIfChecked = resolve;
    });
    // The client's preface is read meanwhile (prefaced), so a connection that sends none is cut
    // at its deadline whatever the check; what comes after it waits in the socket, and HTTP/2
    // reads it from there. A connection counts against the bounds from the moment it comes (admit): one waiting
    // for its check holds a socket as a served one does, and any user can open them faster than
    // the kernel's tables are read. Its check counts too (MAX_PEER_CHECKS), until answered: a
    // client that closes a connection it opened does not take its lookup back.
    const budget = this.connectionBudget;
    const listener = createServer({ noDelay: true }, (socket) => {
      socket.on("error", () => {});
      if (!budget.startCheck()) {
        socket.destroy();
        this.refused({ kind: "connections", scope: "checks", limit: budget.maxChecking, port: bound });
        return;
      }
      const release = this.admit(socket);
      if (release === undefined) {
        budget.endCheck();
        return;
      }
      // Let go once the check has answered and the socket has closed, whichever comes last.
      let checking = true;
      let closed = false;
      socket.once("close", () => {
        closed = true;
        if (!checking) release();
      });
      const answered = () => {
        checking = false;
        budget.endCheck();
        if (closed) release();
      };
      const prefaced = this.prefaced(socket, bound);
      checked
        .then(async (check) => {
          const peer = check ? await tcpPeerUid(socket) : uid;
          answered();
          if (socket.destroyed) return;
          if (check && (peer === undefined || peer !== uid)) {
            socket.destroy();
            refused(peer);
            return;
          }
          if (await prefaced) this.serve(listener, socket);
        })
        .catch(() => {
          if (checking) answered();
          socket.destroy();
        });
    });
    await this.listen(listener, { port, host: "127.0.0.1" });
    bound = (listener.address() as { port: number }).port;
    const sameUserOnly = await listsListener(bound).catch(() => false);
    knowIfChecked(sameUserOnly);
    return { port: bound, sameUserOnly };
  }

  private closeListeners(): void {
    for (const listener of this.listeners.splice(0)) listener.close();
    // Not yet grpc-js's: it would not cut them.
    for (const socket of [...this.handshaking]) socket.destroy();
  }

  /** Lets calls finish for up to `graceMs`, then cuts them. */
  stop(graceMs = 1000): Promise<void> {
    this.closeListeners();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Cuts every call and stops listening at once. */
  forceStop(): void {
    this.closeListeners();
    this.server.forceShutdown();
  }
}

/**
 * How one client call ends, once: with the server's status; with the caller's own cancel, which
 * nobody hears (grpc-js's CANCELLED answer to it is dropped); or with the transport's close(),
 * heard as CANCELLED. `over` is true from then on.
 */
function endOnce(live: Set<() => void>, events: WireEvents, cancelCall: () => void, ended: () => void) {
  const end = {
    over: false,
    status(code: number, details: string, response?: Uint8Array): void {
      if (end.over) return;
      finish();
      events.status(code, details, response);
    },
    cancel(): void {
      if (end.over) return;
      finish();
      cancelCall();
    },
  };
  const close = () => {
    if (end.over) return;
    end.cancel();
    events.status(Code.CANCELLED, "Cancelled on client");
  };
  const finish = () => {
    end.over = true;
    live.delete(close);
    ended();
  };
  live.add(close);
  return end;
}

/**
 * A transport over gRPC to `address` (`host:port` or `unix:<path>`): one HTTP/2 connection for
 * every call. Past MAX_UNARY_IN_FLIGHT calls open, unary calls wait in this process (waiting.ts).
 */
export function createGrpcTransport(address: string): Transport {
  // Made on first use and again after close(): a closed channel takes no calls, and an open one
  // would keep the process alive.
  let channel: grpc.Client | undefined;
  const client = () =>
    (channel ??= new grpc.Client(address, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": MAX_GRPC_MESSAGE_BYTES,
      "grpc.max_send_message_length": MAX_GRPC_MESSAGE_BYTES,
    }));
  /** close() of each call in flight. */
  const live = new Set<() => void>();
  // Unary calls past MAX_UNARY_IN_FLIGHT.
  const waiting = new WaitingCalls();
  const room = () => live.size < MAX_UNARY_IN_FLIGHT;
  const ended = () => {
    if (waiting.size > 0) waiting.release(room, openUnary);
  };
  const openUnary = (path: string, request: Uint8Array, events: WireEvents): WireCall => {
    const end = endOnce(live, events, () => call.cancel(), ended);
    const call = client().makeUnaryRequest(
      path,
      asBuffer,
      same,
      asBuffer(request),
      new grpc.Metadata(),
      {},
      (error, response) => {
        if (error) end.status(error.code, error.details);
        else end.status(Code.OK, "", response ?? Buffer.alloc(0));
      },
    );
    return { write: () => {}, halfClose: () => {}, cancel: end.cancel };
  };
  return {
    open(path: string, kind: MethodKind, request: Uint8Array | undefined, events: WireEvents): WireCall {
      // grpc-js throws on an address it cannot parse (an empty one): the call fails, as one to
      // an address that does not answer does, a turn later like every status.
      try {
        client();
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        let cancelled = false;
        queueMicrotask(() => {
          if (!cancelled)
            events.status(
              Code.UNAVAILABLE,
              `grpc: cannot call ${JSON.stringify(address)} (${reason}); give the address as host:port or unix:<path>`,
            );
        });
        const nothing = () => {};
        return {
          write: nothing,
          halfClose: nothing,
          cancel: () => {
            cancelled = true;
          },
        };
      }
      if (kind === "unary") {
        const bytes = request ?? new Uint8Array(0);
        return room() ? openUnary(path, bytes, events) : waiting.hold(path, bytes, events);
      }
      const metadata = new grpc.Metadata();
      const call =
        kind === "server_streaming"
          ? client().makeServerStreamRequest(path, asBuffer, same, asBuffer(request ?? new Uint8Array(0)), metadata, {})
          : client().makeBidiStreamRequest(path, asBuffer, same, metadata, {});
      const end = endOnce(live, events, () => call.cancel(), ended);
      call.on("data", (bytes: Buffer) => {
        if (!end.over) events.message(bytes);
      });
      call.on("status", (s: grpc.StatusObject) => end.status(s.code, s.details));
      // The status event carries the error.
      call.on("error", () => {});
      // A server-streaming call sent its one request as it opened: it takes no more.
      const duplex = kind === "server_streaming" ? undefined : (call as grpc.ClientDuplexStream<Buffer, Buffer>);
      return {
        write: (bytes) => {
          if (!end.over) duplex?.write(asBuffer(bytes));
        },
        halfClose: () => {
          if (!end.over) duplex?.end();
        },
        cancel: end.cancel,
      };
    },
    close() {
      waiting.endAll(Code.CANCELLED, "Cancelled on client");
      for (const close of [...live]) close();
      channel?.close();
      channel = undefined;
    },
  };
}

export { ArrivingBudget, type CallRefusal, MAX_ARRIVING_BYTES } from "./arriving.js";
export {
  ConnectionBudget,
  MAX_PEER_CHECKS,
  MAX_PROCESS_GRPC_CONNECTIONS,
  OPEN_FILES_PER_GRPC_CONNECTION,
  processConnectionLimit,
  processConnections,
} from "./connections.js";
export { canCheckTcpPeers } from "./peer-user.js";
