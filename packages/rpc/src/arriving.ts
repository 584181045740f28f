/**
 * The bytes a GrpcServer holds for requests still arriving, across all its connections (and, by
 * default, all GrpcServers of this process: `run` has one per service). grpc-js keeps each
 * message's bytes until the last one has come, and HTTP/2 flow control does not hold a client
 * back while it does: each call may announce a message of up to MAX_GRPC_MESSAGE_BYTES and send
 * all of it but its last byte, and each connection may have 1,024 calls open, so one service's
 * slow large requests could hold gigabytes in `run`. Past the budget, the server (the service)
 * holding the most is the one that pays: its call holding the most is ended with
 * RESOURCE_EXHAUSTED and its bytes let go. A service that keeps hundreds of calls open just
 * under 1 MB each thus loses its own calls, one by one, while another service's 60 MB kv set
 * goes through, and small calls (a kv get, a handler stream's answers) keep working beside
 * whatever fills it.
 */
import type { ServerHttp2Stream } from "node:http2";
import { constants } from "node:http2";
import type * as grpc from "@grpc/grpc-js";
import { Code } from "./status.js";

/**
 * Most bytes of requests still arriving a process's gRPC endpoints hold at once: 4 times the
 * largest message (MAX_GRPC_MESSAGE_BYTES, 64 MB), so four kv sets of the largest values may
 * arrive at once, and a service never meets it unless it sends many large messages at once
 * (a Promise.all of hundreds of MB of kv values) or never finishes them.
 */
export const MAX_ARRIVING_BYTES = 256 * 1024 * 1024;

/** One call's message in the making: where its bytes are in gRPC's framing, and how many it holds. */
interface Arrival {
  /** Bytes of the current (incomplete) message received so far, its 5-byte prefix included. */
  held: number;
  /** Bytes of the prefix read (0-4; 5 completes it). */
  prefix: number;
  /** The message's length, as far as the prefix has given it. */
  length: number;
  /** Bytes of the message's body still to come. */
  body: number;
  /** Most bytes a message of this call may take (its server's MAX_GRPC_MESSAGE_BYTES). */
  max: number;
  /** Ends the call with this status, and tells the call's server why. */
  cut: (refusal: CallRefusal) => void;
  /** The calls of the server this call came to, counted together. */
  server: ServerArrivals;
}

/** The calls of one server (one interceptor) still arriving, and the bytes they hold together. */
interface ServerArrivals {
  held: number;
  arrivals: Set<Arrival>;
}

/** Why a call was ended before its request had arrived, with the status its client was sent. */
export interface CallRefusal {
  /**
   * "arriving": the budget was full, and the call held the most of the server whose calls held
   * the most; "too-large": its message announced more than the server takes; "compressed": its
   * message was compressed.
   */
  kind: "arriving" | "too-large" | "compressed";
  code: Code;
  details: string;
}

/** How a server's calls are counted: the largest message it takes, and who hears each refusal. */
export interface ArrivingOptions {
  maxMessageBytes: number;
  refused?: (refusal: CallRefusal) => void;
}

const mb = (bytes: number) =>
  bytes < 1024 * 1024 ? `${bytes} bytes` : `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MB`;

/** A budget of bytes of requests still arriving, shared by the calls of the servers that use it. */
export class ArrivingBudget {
  /** Bytes held now, for messages not yet whole. */
  held = 0;
  /** Each server's calls still arriving; a server is here while it has any. */
  private readonly servers = new Set<ServerArrivals>();

  constructor(readonly limit: number) {}

  /**
   * A grpc-js server interceptor that counts the bytes of each call's messages as they arrive
   * and lets them go as each message is whole (grpc-js hands it on) or the call ends. It must be
   * the server's first: it reads the HTTP/2 stream of the call grpc-js made, whose data grpc-js
   * reads too (grpc-js 1.14's BaseServerInterceptingCall keeps it as `stream`; grpc.test.ts
   * fails if that changes). Where it finds none, calls go uncounted.
   */
  interceptor(options: ArrivingOptions): grpc.ServerInterceptor {
    const { maxMessageBytes, refused } = options;
    const server: ServerArrivals = { held: 0, arrivals: new Set() };
    // grpc-js's type asks for a ServerInterceptingCall, a wrapper that would cost every call an
    // object; the call as it was given is all grpc-js uses (its interface).
    return ((_method: grpc.ServerMethodDefinition<unknown, unknown>, call: grpc.ServerInterceptingCallInterface) => {
      const stream = (call as unknown as { stream?: ServerHttp2Stream }).stream;
      if (stream === undefined || typeof stream.on !== "function") return call;
      const arrival: Arrival = {
        held: 0,
        prefix: 0,
        length: 0,
        body: 0,
        max: maxMessageBytes,
        cut: (refusal) => {
          call.sendStatus({ code: refusal.code as number, details: refusal.details });
          // The status is on its way: a client still sending is told to stop (RST_STREAM with
          // NO_ERROR, sent once the status has gone, as HTTP/2 lets a server that answered before
          // the request ended), rather than sending the rest for nothing.
          if (!stream.destroyed) stream.close(constants.NGHTTP2_NO_ERROR);
          refused?.(refusal);
        },
        server,
      };
      server.arrivals.add(arrival);
      this.servers.add(server);
      // grpc-js paused the stream and reads it as its handler asks: this listener sees each chunk
      // as grpc-js's own does, and adds none of its own reading. It hears each chunk first, so a
      // call it cuts is over before grpc-js's decoder takes the chunk (and starts inflating it).
      stream.prependListener("data", (chunk: Buffer) => this.take(arrival, chunk));
      stream.once("close", () => this.release(arrival));
      return call;
    }) as unknown as grpc.ServerInterceptor;
  }

  /** Counts a chunk of a call's request stream: its messages' bytes, less those now whole. */
  private take(arrival: Arrival, chunk: Buffer): void {
    if (!arrival.server.arrivals.has(arrival)) return;
    const n = chunk.length;
    // Bytes of the message the chunk ends in: those from before it, unless a message ends in it.
    let before = arrival.held;
    let start = 0;
    let i = 0;
    while (i < n) {
      if (arrival.body > 0) {
        const take = Math.min(arrival.body, n - i);
        arrival.body -= take;
        i += take;
      } else {
        // The prefix: a flag byte, then the length in 4 bytes, big-endian.
        if (arrival.prefix > 0) arrival.length = arrival.length * 256 + (chunk[i] as number);
        else if (chunk[i] !== 0) {
          this.refuseCompressed(arrival);
          return;
        }
        i++;
        if (++arrival.prefix < 5) continue;
        if (arrival.length > arrival.max) {
          this.refuseTooLarge(arrival);
          return;
        }
        arrival.body = arrival.length;
        arrival.prefix = 0;
        arrival.length = 0;
      }
      if (arrival.body === 0) {
        // A message is whole at i: grpc-js hands it on, and holds only what follows.
        before = 0;
        start = i;
      }
    }
    const held = before + (n - start);
    this.held += held - arrival.held;
    arrival.server.held += held - arrival.held;
    arrival.held = held;
    if (this.held > this.limit) this.overflow();
  }

  /**
   * Ends calls until what is held fits the budget again: each time, the call holding the most of
   * the server whose calls hold the most together. A server's many calls of a few bytes short of
   * a message count as much as one large call, so the service filling the budget pays for it
   * rather than whichever other service sends the next large message.
   */
  private overflow(): void {
    while (this.held > this.limit) {
      let fullest: ServerArrivals | undefined;
      for (const server of this.servers) if (fullest === undefined || server.held > fullest.held) fullest = server;
      let most: Arrival | undefined;
      for (const arrival of fullest?.arrivals ?? []) if (most === undefined || arrival.held > most.held) most = arrival;
      if (most === undefined || most.held === 0) return;
      const held = most.held;
      const whole = most.body > 0 ? ` of a ${held + most.body - 5}-byte message` : "";
      this.release(most);
      most.cut({
        kind: "arriving",
        code: Code.RESOURCE_EXHAUSTED,
        details:
          `grpc: cut this call at ${held} bytes${whole}: requests still arriving at the provider's gRPC ` +
          `endpoints held over ${mb(this.limit)} together, the most it holds at once, and the calls to this ` +
          "endpoint held the most of them, this call the most of those; send large messages (kv values) one " +
          "after another rather than many at once, make them smaller, and finish or cancel the calls you start",
      });
    }
  }

  /**
   * Ends a call whose message is compressed: grpc-js would inflate it once whole, outside any
   * budget, up to MAX_GRPC_MESSAGE_BYTES from a few kilobytes (64 MB of zeros take 61 KB in
   * gzip, so 20 such calls would take `run` past 1.5 GB), and then hold the result. Neither our SDK nor
   * @nitric/sdk compresses what it sends, nor do gRPC libraries (grpc-js, grpc-go, grpc-java)
   * unless told to.
   */
  private refuseCompressed(arrival: Arrival): void {
    this.release(arrival);
    arrival.cut({
      kind: "compressed",
      code: Code.UNIMPLEMENTED,
      details:
        "grpc: this endpoint takes uncompressed messages only (a compressed one could inflate to far more " +
        "than it sent); turn compression off in the client (no default compression algorithm, grpc-encoding identity)",
    });
  }

  /**
   * Ends a call as soon as its message's prefix announces more than its server takes. grpc-js
   * refuses such a message then too, but leaves the client sending the rest (reading and dropping
   * what may be gigabytes, as fast as loopback carries them), and this budget would count those bytes as held until the
   * announced length had come.
   */
  private refuseTooLarge(arrival: Arrival): void {
    const length = arrival.length;
    this.release(arrival);
    arrival.cut({
      kind: "too-large",
      code: Code.RESOURCE_EXHAUSTED,
      details:
        `grpc: this call's message is ${length} bytes, over the ${arrival.max} (${mb(arrival.max)}) a message ` +
        "to the provider's gRPC endpoint may take; send smaller messages (split a large kv value over several keys)",
    });
  }

  /** Lets go of a call's bytes: it ended, or was cut. */
  private release(arrival: Arrival): void {
    const { server } = arrival;
    if (!server.arrivals.delete(arrival)) return;
    this.held -= arrival.held;
    server.held -= arrival.held;
    arrival.held = 0;
    if (server.arrivals.size === 0) this.servers.delete(server);
  }
}

/** The budget every GrpcServer of this process shares unless given its own. */
export const processArriving = new ArrivingBudget(MAX_ARRIVING_BYTES);
