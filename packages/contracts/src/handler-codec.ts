/**
 * Hand-written protobuf encoding for the two messages of the hot path, the handler stream's
 * ServerMessage (events) and ClientMessage (answers), when they carry message events and their
 * answers, alone or in batches. protobuf-es walks each message by reflection; these write and read
 * the same bytes directly, several times faster, which matters because every client message
 * crosses both once in each process. Anything else (registrations, connect and disconnect events,
 * fields we do not know) goes through protobuf-es, so the wire format is exactly the contract's:
 * `handler-codec.test.ts` checks both against protobuf-es on thousands of random messages.
 */
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import {
  type ClientMessage,
  ClientMessageSchema,
  type ServerMessage,
  ServerMessageSchema,
} from "./gen/nitric/proto/websockets/v1/websockets_pb.js";
import { boolField, LEN, lenField, msgField, Reader, SLOW, tag, utf8Size, varintSize, Writer } from "./wire.js";

type ServerInit = MessageInitShape<typeof ServerMessageSchema>;
type ClientInit = MessageInitShape<typeof ClientMessageSchema>;

// ServerMessage { id = 1; oneof { websocket_event_request = 3; event_batch = 1000 } }
// WebsocketEventRequest { socket_name = 1; connection_id = 2; oneof { message = 12; ... } }
// WebsocketMessageEvent { body = 1; binary = 1000 }

interface EventPlan {
  idSize: number;
  socketSize: number;
  connSize: number;
  body: Uint8Array;
  binary: boolean;
  eventSize: number; // WebsocketMessageEvent
  requestSize: number; // WebsocketEventRequest
  size: number; // ServerMessage
}

function planEvent(m: ServerInit): EventPlan | undefined {
  const content = m.content;
  if (content?.case !== "websocketEventRequest") return undefined;
  const r = content.value;
  const event = r.websocketEvent;
  if (event?.case !== "message") return undefined;
  const body = event.value.body ?? new Uint8Array(0);
  const binary = event.value.binary ?? false;
  const idSize = utf8Size(m.id ?? "");
  const socketSize = utf8Size(r.socketName ?? "");
  const connSize = utf8Size(r.connectionId ?? "");
  const eventSize = lenField(1, body.length) + boolField(1000, binary);
  const requestSize = lenField(1, socketSize) + lenField(2, connSize) + msgField(12, eventSize);
  const size = lenField(1, idSize) + msgField(3, requestSize);
  return { idSize, socketSize, connSize, body, binary, eventSize, requestSize, size };
}

function writeEvent(w: Writer, m: ServerInit, p: EventPlan): void {
  const r = (m.content as { value: { socketName?: string; connectionId?: string } }).value;
  w.string(1, m.id ?? "", p.idSize);
  w.header(3, p.requestSize);
  w.string(1, r.socketName ?? "", p.socketSize);
  w.string(2, r.connectionId ?? "", p.connSize);
  w.header(12, p.eventSize);
  w.bytes(1, p.body);
  w.bool(1000, p.binary);
}

/** Encodes a ServerMessage: directly for message events and batches of them, else by protobuf-es. */
export function encodeServerMessage(m: ServerInit): Buffer {
  const content = m.content;
  if (content?.case === "websocketEventRequest") {
    const p = planEvent(m);
    if (p) {
      const w = new Writer(Buffer.allocUnsafe(p.size));
      writeEvent(w, m, p);
      return w.buf;
    }
  } else if (content?.case === "eventBatch" && !m.id) {
    const events = content.value.events ?? [];
    const plans: EventPlan[] = [];
    let batchSize = 0;
    for (const e of events) {
      const p = planEvent(e as ServerInit);
      if (!p) return slowServer(m);
      plans.push(p);
      batchSize += msgField(1, p.size);
    }
    const w = new Writer(Buffer.allocUnsafe(msgField(1000, batchSize)));
    w.header(1000, batchSize);
    for (let i = 0; i < plans.length; i++) {
      const p = plans[i] as EventPlan;
      w.header(1, p.size);
      writeEvent(w, events[i] as ServerInit, p);
    }
    return w.buf;
  }
  return slowServer(m);
}

function slowServer(m: ServerInit): Buffer {
  const bytes = toBinary(ServerMessageSchema, create(ServerMessageSchema, m));
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// ClientMessage { id = 1; oneof { registration_request = 2; websocket_event_response = 3; answer_batch = 1000 } }
// WebsocketEventResponse { oneof { connection_response = 10 }; repeated WebsocketReply replies = 1000 }
// WebsocketConnectionResponse { reject = 1; reason = 1000; status = 1001 (int32) }
// WebsocketReply { data = 1; binary = 2 }

interface AnswerPlan {
  idSize: number;
  hasResponse: boolean;
  reject: boolean;
  reasonSize: number;
  status: number;
  connSize: number; // WebsocketConnectionResponse
  replies: { data: Uint8Array; binary: boolean; size: number }[];
  responseSize: number; // WebsocketEventResponse
  size: number; // ClientMessage
}

function planAnswer(m: ClientInit): AnswerPlan | undefined {
  const content = m.content;
  if (content?.case !== "websocketEventResponse") return undefined;
  const r = content.value;
  const wr = r.websocketResponse;
  let hasResponse = false;
  let reject = false;
  let reason = "";
  let status = 0;
  if (wr?.case === "connectionResponse") {
    hasResponse = true;
    reject = wr.value.reject ?? false;
    reason = wr.value.reason ?? "";
    status = wr.value.status ?? 0;
    if (status < 0 || !Number.isInteger(status) || status > 0x7fffffff) return undefined;
  } else if (wr?.case !== undefined) return undefined;
  const reasonSize = utf8Size(reason);
  const connSize =
    boolField(1, reject) +
    lenField(1000, reasonSize) +
    (status === 0 ? 0 : varintSize(tag(1001, 0)) + varintSize(status));
  const replies: AnswerPlan["replies"] = [];
  let responseSize = hasResponse ? msgField(10, connSize) : 0;
  for (const reply of r.replies ?? []) {
    const data = reply.data ?? new Uint8Array(0);
    const binary = reply.binary ?? false;
    const size = lenField(1, data.length) + boolField(2, binary);
    replies.push({ data, binary, size });
    responseSize += msgField(1000, size);
  }
  const idSize = utf8Size(m.id ?? "");
  const size = lenField(1, idSize) + msgField(3, responseSize);
  return { idSize, hasResponse, reject, reasonSize, status, connSize, replies, responseSize, size };
}

function writeAnswer(w: Writer, m: ClientInit, p: AnswerPlan): void {
  w.string(1, m.id ?? "", p.idSize);
  w.header(3, p.responseSize);
  if (p.hasResponse) {
    w.header(10, p.connSize);
    w.bool(1, p.reject);
    if (p.reasonSize > 0) {
      const r = (m.content as { value: { websocketResponse: { value: { reason?: string } } } }).value;
      w.string(1000, r.websocketResponse.value.reason ?? "", p.reasonSize);
    }
    if (p.status !== 0) {
      w.varint(tag(1001, 0));
      w.varint(p.status);
    }
  }
  for (const reply of p.replies) {
    w.header(1000, reply.size);
    w.bytes(1, reply.data);
    w.bool(2, reply.binary);
  }
}

/** Encodes a ClientMessage: directly for answers and batches of them, else by protobuf-es. */
export function encodeClientMessage(m: ClientInit): Buffer {
  const content = m.content;
  if (content?.case === "websocketEventResponse") {
    const p = planAnswer(m);
    if (p) {
      const w = new Writer(Buffer.allocUnsafe(p.size));
      writeAnswer(w, m, p);
      return w.buf;
    }
  } else if (content?.case === "answerBatch" && !m.id) {
    const answers = content.value.answers ?? [];
    const plans: AnswerPlan[] = [];
    let batchSize = 0;
    for (const a of answers) {
      const p = planAnswer(a as ClientInit);
      if (!p) return slowClient(m);
      plans.push(p);
      batchSize += msgField(1, p.size);
    }
    const w = new Writer(Buffer.allocUnsafe(msgField(1000, batchSize)));
    w.header(1000, batchSize);
    for (let i = 0; i < plans.length; i++) {
      const p = plans[i] as AnswerPlan;
      w.header(1, p.size);
      writeAnswer(w, answers[i] as ClientInit, p);
    }
    return w.buf;
  }
  return slowClient(m);
}

function slowClient(m: ClientInit): Buffer {
  const bytes = toBinary(ClientMessageSchema, create(ClientMessageSchema, m));
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// ---- reading -------------------------------------------------------------------------------

/** Thrown inside the fast readers when the bytes hold something they do not handle. */
const T = "nitric.proto.websockets.v1.";
// The messages' type names, made once (not per decoded message).
const TYPE_AnswerBatch = `${T}AnswerBatch`;
const TYPE_ClientMessage = `${T}ClientMessage`;
const TYPE_EventBatch = `${T}EventBatch`;
const TYPE_ServerMessage = `${T}ServerMessage`;
const TYPE_WebsocketConnectionResponse = `${T}WebsocketConnectionResponse`;
const TYPE_WebsocketEventRequest = `${T}WebsocketEventRequest`;
const TYPE_WebsocketEventResponse = `${T}WebsocketEventResponse`;
const TYPE_WebsocketMessageEvent = `${T}WebsocketMessageEvent`;
const TYPE_WebsocketReply = `${T}WebsocketReply`;

function readEvent(r: Reader, end: number): ServerMessage {
  let id = "";
  let request: unknown;
  while (r.pos < end) {
    const t = r.varint();
    if (t === tag(1, LEN)) id = r.string();
    else if (t === tag(3, LEN)) {
      const rend = r.len();
      let socketName = "";
      let connectionId = "";
      let event: unknown;
      while (r.pos < rend) {
        const rt = r.varint();
        if (rt === tag(1, LEN)) socketName = r.string();
        else if (rt === tag(2, LEN)) connectionId = r.string();
        else if (rt === tag(12, LEN)) {
          const eend = r.len();
          let body: Uint8Array = new Uint8Array(0);
          let binary = false;
          while (r.pos < eend) {
            const et = r.varint();
            if (et === tag(1, LEN)) body = r.bytes();
            else if (et === tag(1000, 0)) binary = r.bool();
            else throw SLOW;
          }
          event = { $typeName: TYPE_WebsocketMessageEvent, body, binary };
        } else throw SLOW;
      }
      if (event === undefined) throw SLOW;
      request = {
        $typeName: TYPE_WebsocketEventRequest,
        socketName,
        connectionId,
        websocketEvent: { case: "message", value: event },
      };
    } else throw SLOW;
  }
  if (request === undefined) throw SLOW;
  return {
    $typeName: TYPE_ServerMessage,
    id,
    content: { case: "websocketEventRequest", value: request },
  } as ServerMessage;
}

/** Decodes a ServerMessage: directly for message events and batches of them, else by protobuf-es. */
export function decodeServerMessage(buf: Buffer): ServerMessage {
  try {
    const r = new Reader(buf, 0, buf.length);
    if (buf[0] === 0xc2 && buf[1] === 0x3e) {
      // event_batch (field 1000), alone: the batches our providers write.
      r.pos = 2;
      const bend = r.len();
      if (bend !== buf.length) throw SLOW;
      const events: ServerMessage[] = [];
      while (r.pos < bend) {
        if (r.varint() !== tag(1, LEN)) throw SLOW;
        const end = r.len();
        events.push(readEvent(r, end));
      }
      return {
        $typeName: TYPE_ServerMessage,
        id: "",
        content: { case: "eventBatch", value: { $typeName: TYPE_EventBatch, events } },
      } as ServerMessage;
    }
    return readEvent(r, buf.length);
  } catch (error) {
    if (error !== SLOW) throw error;
    return fromBinary(ServerMessageSchema, buf);
  }
}

function readAnswer(r: Reader, end: number): ClientMessage {
  let id = "";
  let response: unknown;
  while (r.pos < end) {
    const t = r.varint();
    if (t === tag(1, LEN)) id = r.string();
    else if (t === tag(3, LEN)) {
      const rend = r.len();
      let websocketResponse: unknown = { case: undefined };
      const replies: unknown[] = [];
      while (r.pos < rend) {
        const rt = r.varint();
        if (rt === tag(10, LEN)) {
          const cend = r.len();
          let reject = false;
          let reason = "";
          let status = 0;
          while (r.pos < cend) {
            const ct = r.varint();
            if (ct === tag(1, 0)) reject = r.bool();
            else if (ct === tag(1000, LEN)) reason = r.string();
            else if (ct === tag(1001, 0)) {
              status = r.varint();
              if (status > 0x7fffffff) throw SLOW;
            } else throw SLOW;
          }
          websocketResponse = {
            case: "connectionResponse",
            value: { $typeName: TYPE_WebsocketConnectionResponse, reject, reason, status },
          };
        } else if (rt === tag(1000, LEN)) {
          const pend = r.len();
          let data: Uint8Array = new Uint8Array(0);
          let binary = false;
          while (r.pos < pend) {
            const pt = r.varint();
            if (pt === tag(1, LEN)) data = r.bytes();
            else if (pt === tag(2, 0)) binary = r.bool();
            else throw SLOW;
          }
          replies.push({ $typeName: TYPE_WebsocketReply, data, binary });
        } else throw SLOW;
      }
      response = { $typeName: TYPE_WebsocketEventResponse, websocketResponse, replies };
    } else throw SLOW;
  }
  if (response === undefined) throw SLOW;
  return {
    $typeName: TYPE_ClientMessage,
    id,
    content: { case: "websocketEventResponse", value: response },
  } as ClientMessage;
}

/** Decodes a ClientMessage: directly for answers and batches of them, else by protobuf-es. */
export function decodeClientMessage(buf: Buffer): ClientMessage {
  try {
    const r = new Reader(buf, 0, buf.length);
    if (buf[0] === 0xc2 && buf[1] === 0x3e) {
      r.pos = 2;
      const bend = r.len();
      if (bend !== buf.length) throw SLOW;
      const answers: ClientMessage[] = [];
      while (r.pos < bend) {
        if (r.varint() !== tag(1, LEN)) throw SLOW;
        const end = r.len();
        answers.push(readAnswer(r, end));
      }
      return {
        $typeName: TYPE_ClientMessage,
        id: "",
        content: { case: "answerBatch", value: { $typeName: TYPE_AnswerBatch, answers } },
      } as ClientMessage;
    }
    return readAnswer(r, buf.length);
  } catch (error) {
    if (error !== SLOW) throw error;
    return fromBinary(ClientMessageSchema, buf);
  }
}
