/**
 * The client side of our contracts, written once for every transport: typed calls of generated
 * methods, their messages encoded and decoded with the method's codecs, deadlines, and the
 * errors a caller sees (RpcError, with the status the server or the transport ended the call with).
 */
import { EventEmitter } from "node:events";
import type { MessageCodec, Method } from "@nitric-like/contracts/codec";
import { type InInit, methodPath, type Out } from "./router.js";
import { Code, RpcError } from "./status.js";
import type { Transport, WireCall, WireEvents } from "./wire.js";

/** Options for one call. */
export interface CallOptions {
  /** Milliseconds until the call fails with DEADLINE_EXCEEDED. @default none */
  timeoutMs?: number;
}

type Unary = Method<"unary">;
type ServerStreaming = Method<"server_streaming">;
type Bidi = Method<"bidi_streaming">;

/** A bidirectional call as a client drives it. Events: "data", "error", "end", "status". */
export interface DuplexCall<I, O> {
  write(message: I): boolean;
  /** Half-closes: no more messages from this side. */
  end(): void;
  cancel(): void;
  on(event: "data", listener: (message: O) => void): this;
  on(event: "status", listener: (status: { code: number; details: string }) => void): this;
  on(event: "error", listener: (error: RpcError) => void): this;
  on(event: "end", listener: () => void): this;
}

/** What a method needs at every call, made once per method. */
interface MethodInfo {
  path: string;
  input: MessageCodec;
  output: MessageCodec;
}
const infos = new WeakMap<Method, MethodInfo>();
function info(method: Method): MethodInfo {
  let found = infos.get(method);
  if (!found) {
    found = { path: methodPath(method), input: method.input, output: method.output };
    infos.set(method, found);
  }
  return found;
}

/** Starts a deadline: on expiry the call is cancelled and `fail` hears DEADLINE_EXCEEDED. */
function deadline(options: CallOptions | undefined, call: () => WireCall | undefined, fail: (e: RpcError) => void) {
  if (options?.timeoutMs === undefined) return undefined;
  return setTimeout(() => {
    call()?.cancel();
    fail(RpcError.received(Code.DEADLINE_EXCEEDED, "Deadline exceeded"));
  }, options.timeoutMs);
}

/** A bidirectional call: an EventEmitter, as the SDK's handler streams listen to it. */
class Duplex<I, O> extends EventEmitter implements DuplexCall<I, O> {
  wire!: WireCall;
  timer: ReturnType<typeof setTimeout> | undefined;
  ended = false;

  constructor(
    private readonly encode: (value: I) => Uint8Array,
    private readonly decode: (bytes: Uint8Array) => O,
  ) {
    super();
  }

  write(message: I): boolean {
    if (this.ended) return false;
    this.wire.write(this.encode(message));
    return true;
  }

  end(): void {
    if (!this.ended) this.wire.halfClose();
  }

  cancel(): void {
    if (this.ended) return;
    this.wire.cancel();
    this.status(Code.CANCELLED, "Cancelled on client");
  }

  message(bytes: Uint8Array): void {
    if (this.ended) return;
    let message: O;
    try {
      message = this.decode(bytes);
    } catch (error) {
      this.wire.cancel();
      this.status(Code.INTERNAL, `the response could not be decoded (${(error as Error).message})`);
      return;
    }
    this.emit("data", message);
  }

  status(code: number, details: string): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    // "end" after OK, "error" otherwise, then "status" either way.
    if (code === Code.OK) this.emit("end");
    else this.emit("error", RpcError.received(code, details));
    this.emit("status", { code, details });
  }
}

/**
 * A unary call in flight: the transport's events settle the caller's promise. A class rather than
 * closures made for each call: a service's bundle keeps function names (esbuild's keepNames), which
 * costs a call of its __name helper for every named closure, and this is every `socket.send`'s path.
 */
class PendingUnary implements WireEvents {
  wire: WireCall | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  private done = false;

  constructor(
    private readonly resolve: (value: unknown) => void,
    private readonly reject: (error: RpcError) => void,
    private readonly output: MessageCodec,
  ) {}

  settle(error: RpcError | undefined, value?: unknown): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    if (error) this.reject(error);
    else this.resolve(value);
  }

  message(): void {}

  status(code: number, details: string, response?: Uint8Array): void {
    if (code !== Code.OK) {
      this.settle(RpcError.received(code, details));
      return;
    }
    try {
      this.settle(undefined, this.output.decode(response ?? new Uint8Array(0)));
    } catch (error) {
      this.settle(RpcError.received(Code.INTERNAL, `the response could not be decoded (${(error as Error).message})`));
    }
  }
}

/** Typed calls of our contracts over one transport. */
export class Client {
  constructor(readonly transport: Transport) {}

  /** Calls a unary method. */
  unary<M extends Unary>(method: M, request: InInit<M>, options?: CallOptions): Promise<Out<M>> {
    const { path, input, output } = info(method);
    return new Promise((resolve, reject) => {
      const pending = new PendingUnary(resolve as (value: unknown) => void, reject, output);
      let bytes: Uint8Array;
      try {
        bytes = input.encode(request as never);
      } catch (error) {
        pending.settle(
          RpcError.received(Code.INTERNAL, `${path}: the request could not be encoded (${(error as Error).message})`),
        );
        return;
      }
      // Most calls have no deadline: no closures for one.
      if (options?.timeoutMs !== undefined)
        pending.timer = deadline(
          options,
          () => pending.wire,
          (error) => pending.settle(error),
        );
      pending.wire = this.transport.open(path, "unary", bytes, pending);
    });
  }

  /** Calls a server-streaming method and yields each response; leaving the loop early cancels the call. */
  async *serverStream<M extends ServerStreaming>(
    method: M,
    request: InInit<M>,
    options?: CallOptions,
  ): AsyncGenerator<Out<M>> {
    const { path, input, output } = info(method);
    const queue: Out<M>[] = [];
    // undefined: in flight; null: ended with OK; an error: ended with it.
    let end: RpcError | null | undefined;
    let wake: (() => void) | undefined;
    const finish = (error: RpcError | null) => {
      if (end !== undefined) return;
      end = error;
      clearTimeout(timer);
      wake?.();
    };
    let call: WireCall | undefined;
    const timer = deadline(options, () => call, finish);
    call = this.transport.open(path, "server_streaming", input.encode(request as never), {
      message: (bytes) => {
        if (end !== undefined) return;
        try {
          queue.push(output.decode(bytes) as Out<M>);
        } catch (error) {
          call?.cancel();
          finish(RpcError.received(Code.INTERNAL, `the response could not be decoded (${(error as Error).message})`));
        }
        wake?.();
      },
      status: (code, details) => finish(code === Code.OK ? null : RpcError.received(code, details)),
    });
    try {
      for (;;) {
        const item = queue.shift();
        if (item !== undefined) {
          yield item;
          continue;
        }
        if (end === null) return;
        if (end) throw end;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
      }
    } finally {
      if (end === undefined) {
        call.cancel();
        finish(RpcError.received(Code.CANCELLED, "Cancelled on client"));
      }
    }
  }

  /** Opens a bidirectional call; past its deadline it ends with DEADLINE_EXCEEDED. */
  bidi<M extends Bidi>(method: M, options?: CallOptions): DuplexCall<InInit<M>, Out<M>> {
    const { path, input, output } = info(method);
    const call = new Duplex<InInit<M>, Out<M>>(
      input.encode as (value: InInit<M>) => Uint8Array,
      output.decode as (bytes: Uint8Array) => Out<M>,
    );
    call.wire = this.transport.open(path, "bidi_streaming", undefined, call);
    // A transport may end the call as it opens it: no deadline then.
    if (!call.ended)
      call.timer = deadline(
        options,
        () => call.wire,
        (e) => call.status(e.code, e.details),
      );
    return call;
  }

  /** Cancels the calls in flight (they end with CANCELLED); an idle client keeps no process alive. */
  close(): void {
    this.transport.close();
  }
}
