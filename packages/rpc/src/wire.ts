/**
 * The one interface between the RPC layer and its transports. A call is opened by its method's
 * path, carries encoded messages (the bytes gRPC would carry) and ends with one status. A client
 * opens calls on a Transport; a Router (router.ts) opens them on the server side with the same
 * signature, so a transport only moves these few events between the two.
 */

/** How a method streams: what a transport must know to carry it (gRPC frames each kind differently). */
export type MethodKind = "unary" | "server_streaming" | "client_streaming" | "bidi_streaming";

/** What the opener of a call hears. */
export interface WireEvents {
  /** A message from the other side. */
  message(bytes: Uint8Array): void;
  /** The call's end, once. `response` is a unary call's answer, with OK. */
  status(code: number, details: string, response?: Uint8Array): void;
  /**
   * A transport with flow control (gRPC's HTTP/2) gives these to the server side of a call:
   * `writable` is false once more of its messages wait to be sent than the transport will hold
   * (the client reads slowly, or not at all), and `onDrain` calls back once, when enough of them
   * have gone. Without them every message is taken at once.
   */
  writable?(): boolean;
  onDrain?(listener: () => void): void;
}

/** A call in flight, as its opener drives it. */
export interface WireCall {
  /** Sends a message (client- and bidi-streaming calls). */
  write(bytes: Uint8Array): void;
  /** No more messages from this side. */
  halfClose(): void;
  /** Ends the call with CANCELLED on both sides; no status is heard afterwards. */
  cancel(): void;
}

/** A way to reach a router: gRPC, a MessagePort, or the same thread. */
export interface Transport {
  /**
   * Opens a call. `request` is the one request message of a unary or server-streaming call;
   * streaming requests are written on the returned call.
   */
  open(path: string, kind: MethodKind, request: Uint8Array | undefined, events: WireEvents): WireCall;
  /**
   * Ends every call in flight: each one's events hear CANCELLED. The transport stays usable for
   * new calls where it can (a MessagePort that closed cannot be reopened). An idle transport never
   * keeps its process alive.
   */
  close(): void;
}
