/**
 * API Gateway's rules for WebSocket traffic, where AWS documents them ("Quotas for configuring and
 * running a WebSocket API", "Binary media types for WebSocket APIs"): the AWS emulator keeps them,
 * and so does the local gateway under `compat: aws`, so that a client meets them before deploying.
 *
 * - A client's binary frame closes its connection with 1003: clients send bytes as text (base64).
 * - A frame over 32 KB closes the connection with 1009; a message may be up to 128 KB in fragments
 *   of at most 32 KB each (over 128 KB: 1009, the ws library's maxPayload).
 * - A PostToConnection over 128 KB is refused: 413 PayloadTooLargeException.
 * - Server-to-client binary works: PostToConnection data that is not UTF-8 reaches the client as a
 *   binary message.
 * - API Gateway waits at most 29 s for an integration's answer (the integration timeout): a
 *   `$connect` still running then is refused with 504, a message's client is told "Endpoint
 *   request timed out"; the function runs on, but what it answers is dropped.
 */
import { Code, RpcError } from "@nitric-like/rpc";

/** API Gateway's largest WebSocket frame, either way. */
export const AWS_MAX_FRAME_BYTES = 32 * 1024;
/** API Gateway's largest message: from a client (in fragments) or through PostToConnection. */
export const AWS_MAX_MESSAGE_BYTES = 128 * 1024;
export { AWS_INTEGRATION_TIMEOUT_MS, AWS_MAX_HANDLER_TIMEOUT_MS } from "./aws-timeouts.js";

/** A client's frame that breaks one of API Gateway's rules: the close code and reason to send. */
export interface FrameRuleBreak {
  code: 1003 | 1009;
  reason: string;
}

/** The close of a client's binary frame (1003, as API Gateway closes it). */
export const BINARY_FRAME_CLOSE: Readonly<FrameRuleBreak> = Object.freeze({
  code: 1003,
  reason: "binary frames are not accepted (as on API Gateway); send bytes as text, such as base64",
});

/** The close of a client's frame over 32 KB (1009, as API Gateway closes it). */
export const LARGE_FRAME_CLOSE: Readonly<FrameRuleBreak> = Object.freeze({
  code: 1009,
  reason: `frame too big: at most ${AWS_MAX_FRAME_BYTES} bytes a frame (as on API Gateway); send larger messages in fragments`,
});

/**
 * Reads the frame headers (RFC 6455 section 5.2) of the bytes a client sends, without copying
 * payloads, and calls `broken` once, at the header of the first frame that breaks a rule: a binary
 * frame, or a data frame over `maxFrameBytes`. Feed it every chunk before the ws library parses it
 * (`socket.prependListener("data", watcher)`), so the rule is kept before the frame is buffered.
 * After `broken` it reads nothing more.
 *
 * `before` is how many whole messages end in that chunk ahead of the breaking frame: the ws
 * library, which parses the chunk next, delivers them after `broken` was called. They came before
 * the frame that broke the rule, as API Gateway would have routed them, so they are the
 * connection's still; only what follows the breaking frame is not.
 */
export function awsFrameWatcher(
  broken: (rule: FrameRuleBreak, before: number) => void,
  maxFrameBytes = AWS_MAX_FRAME_BYTES,
): (chunk: Buffer) => void {
  // A header is 2 to 14 bytes: kept here while it arrives across chunks.
  const header = Buffer.alloc(14);
  let have = 0;
  let skip = 0;
  // Whether the frame being skipped is the last of a text message (FIN set, text or continuation).
  let last = false;
  let done = false;
  return (chunk: Buffer) => {
    let i = 0;
    // Messages whose last byte is in this chunk: the ws library delivers them as it parses it.
    let ended = 0;
    while (!done && i < chunk.length) {
      if (skip > 0) {
        const n = Math.min(skip, chunk.length - i);
        skip -= n;
        i += n;
        if (skip === 0 && last) ended++;
        continue;
      }
      header[have++] = chunk[i++] as number;
      if (have < 2) continue;
      const len7 = (header[1] as number) & 0x7f;
      const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + ((header[1] as number) & 0x80 ? 4 : 0);
      if (have < need) continue;
      const opcode = (header[0] as number) & 0x0f;
      const length =
        len7 === 126
          ? header.readUInt16BE(2)
          : len7 === 127
            ? header.readUInt32BE(2) * 2 ** 32 + header.readUInt32BE(6)
            : len7;
      have = 0;
      skip = length;
      if (opcode === 0x2) {
        done = true;
        broken(BINARY_FRAME_CLOSE, ended);
      } else if (opcode < 0x8 && length > maxFrameBytes) {
        done = true;
        broken(LARGE_FRAME_CLOSE, ended);
      } else {
        last = opcode < 0x8 && ((header[0] as number) & 0x80) !== 0;
        if (skip === 0 && last) ended++;
      }
    }
  };
}

/** INVALID_ARGUMENT for a send over 128 KB: what the AWS runtime makes of PostToConnection's 413. */
export function awsPayloadTooLarge(socket: string) {
  return new RpcError(
    Code.INVALID_ARGUMENT,
    `websocket "${socket}": the message is too large for API Gateway (at most 128 KB); send less`,
  );
}

/**
 * Lambda's largest payload for an asynchronous invocation (InvocationType Event), 1 MB: a larger
 * one is refused with 413 RequestEntityTooLargeException and nothing is queued.
 */
export const AWS_MAX_ASYNC_PAYLOAD_BYTES = 1024 * 1024;

/**
 * On AWS what is sent to a connection while its connect handler runs is delivered, once it is
 * open, by one asynchronous invocation of the function, the frames in its event. This is what the
 * event holds besides them (its type, the socket, the connection id, a close), with room to spare;
 * `awsDeliveryCost` is what one frame adds: its bytes in base64 and its JSON.
 */
export const AWS_DELIVERY_ENVELOPE_BYTES = 2048;

/** What a frame of `bytes` adds to the AWS runtime's delivery event (base64, `{"data":"","binary":false},`). */
export function awsDeliveryCost(bytes: number): number {
  return 4 * Math.ceil(bytes / 3) + 32;
}

/**
 * Why a frame cannot be sent to an opening connection on AWS, or undefined: over 128 KB
 * (INVALID_ARGUMENT, as PostToConnection's 413 after connect), or past what the delivery event
 * carries after the `deliveryBytes` already kept (RESOURCE_EXHAUSTED).
 */
export function awsOpeningSendProblem(
  socket: string,
  connectionId: string,
  deliveryBytes: number,
  data: Uint8Array,
): RpcError | undefined {
  if (data.byteLength > AWS_MAX_MESSAGE_BYTES) return awsPayloadTooLarge(socket);
  if (deliveryBytes + awsDeliveryCost(data.byteLength) <= AWS_MAX_ASYNC_PAYLOAD_BYTES) return undefined;
  return new RpcError(
    Code.RESOURCE_EXHAUSTED,
    `websocket "${socket}": what is sent to connection ${connectionId} during connect is delivered in one asynchronous Lambda invocation, whose event is at most 1 MB (about 750 KB of messages), and this send would not fit; send the rest once the connection is open`,
  );
}

/**
 * The log line of a connect handler's reply over 128 KB, which the AWS runtime leaves out of the
 * delivery (PostToConnection would refuse it) while the frames after it still go.
 */
export function awsConnectReplyTooLarge(socket: string, connectionId: string, bytes: number): string {
  return `websocket "${socket}": a message of ${bytes} bytes sent during connect to ${connectionId} is over API Gateway's limit (128 KB) and was not delivered; send less`;
}

/**
 * The connect handler's replies that go, on AWS, into the one event delivering what was sent
 * during connect (`deliveryBytes` of it taken by the sends it kept), in order; and the log line of
 * each left out: one over 128 KB (PostToConnection would refuse it), or one past the event's 1 MB.
 * Replies are added only as the handler answers, after its sends were accepted; an event over
 * 1 MB would be refused whole (Lambda's 413), losing those sends too, so such a reply is dropped.
 */
export function awsConnectReplies<T extends { data: Uint8Array }>(
  socket: string,
  connectionId: string,
  deliveryBytes: number,
  replies: readonly T[],
): { kept: T[]; dropped: string[] } {
  const kept: T[] = [];
  const dropped: string[] = [];
  let bytes = deliveryBytes;
  for (const r of replies) {
    const size = r.data.byteLength;
    if (size > AWS_MAX_MESSAGE_BYTES) {
      dropped.push(awsConnectReplyTooLarge(socket, connectionId, size));
      continue;
    }
    if (bytes + awsDeliveryCost(size) > AWS_MAX_ASYNC_PAYLOAD_BYTES) {
      dropped.push(
        `websocket "${socket}": a reply of ${size} bytes from the connect handler of ${connectionId} did not fit in the one asynchronous Lambda invocation (its event at most 1 MB) that delivers what is sent during connect, after the messages sent then, and was not delivered; send less during connect, or the rest once the connection is open`,
      );
      continue;
    }
    bytes += awsDeliveryCost(size);
    kept.push(r);
  }
  return { kept, dropped };
}

/**
 * The log line of a message handler's reply over 128 KB (API Gateway's message limit), which the
 * AWS runtime does not send (a handler's reply cannot throw); its other replies still go.
 */
export function awsReplyTooLarge(socket: string, connectionId: string, bytes: number): string {
  return `websocket "${socket}": a reply of ${bytes} bytes to connection ${connectionId} is over API Gateway's limit (128 KB) and was not sent; send less`;
}
