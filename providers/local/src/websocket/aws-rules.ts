/**
 * `compat: aws` in the project file: the local gateway keeps API Gateway's rules for what clients
 * send and what is sent to them, as the AWS emulator does (see @nitric-like/provider-kit's
 * aws-rules), so a client meets them before the app is deployed. Its message limit (128 KB) is
 * the provider's to apply through the gateway's maxMessageBytes; the rest is here, kept apart from
 * the gateway's message path, which calls these two functions only when the switch is on.
 */
import type { Duplex } from "node:stream";
import { AWS_MAX_MESSAGE_BYTES, awsFrameWatcher, awsPayloadTooLarge } from "@nitric-like/provider-kit";
import type { WebSocket } from "ws";

/**
 * Reads a connection's frames before the ws library does: `close` is called once, with 1003 for
 * a binary frame and 1009 for a frame over 32 KB, before that frame is buffered or delivered, and
 * with how many messages ahead of it ws is still to deliver (awsFrameWatcher's `before`).
 */
export function keepAwsFrameRules(ws: WebSocket, close: (code: number, reason: string, before: number) => void): void {
  // The ws library keeps the upgraded TCP socket as `_socket` (ws 8); its own "data" listener is
  // attached already, so this one goes in front of it.
  const socket = (ws as unknown as { _socket?: Duplex })._socket;
  socket?.prependListener(
    "data",
    awsFrameWatcher((rule, before) => close(rule.code, rule.reason, before)),
  );
}

/** Refuses a send over 128 KB as the AWS runtime does (PostToConnection answers 413): INVALID_ARGUMENT. */
export function checkAwsSend(socket: string, data: Uint8Array): void {
  if (data.byteLength > AWS_MAX_MESSAGE_BYTES) throw awsPayloadTooLarge(socket);
}
