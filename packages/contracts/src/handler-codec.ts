/**
 * Hand-written protobuf encoding for the two messages of the hot path, the handler stream's
 * ServerMessage (events) and ClientMessage (answers), when they carry events (message, connect,
 * disconnect) and their answers, alone or in batches. protobuf-es walks each message by
 * reflection; these write and read the same bytes directly, several times faster, which matters
 * because every client message crosses both once in each process, and every connection a connect
 * and a disconnect event. Anything else (registrations, fields we do not know, negative close
 * codes) goes through protobuf-es, so the wire format is exactly the contract's:
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
// WebsocketEventRequest { socket_name = 1; connection_id = 2; oneof { connection = 10; disconnection = 11; message = 12 };
//                         auth = 1100 }
// WebsocketMessageEvent { body = 1; binary = 1000 }
// WebsocketConnectionEvent { map<string, QueryValue> query_params = 1; map<string, QueryValue> headers = 1000;
//                            remote_address = 1001; double connected_at = 1002 }
// WebsocketDisconnectionEvent { int32 code = 1000; reason = 1001 }
// WebsocketEventRequest.extras = 2000: nitriclike.rooms.v1.ConnectionExtras { state_json = 1 }
// QueryValue { repeated string value = 1 }

type QueryMap = Record<string, { value?: string[] }>;

/** A map<string, QueryValue> field, measured: every key and value's UTF-8 size, and each entry's. */
interface MapPlan {
  keys: string[];
  keySizes: number[];
  values: string[][];
  valueSizes: number[][];
  /** Each QueryValue message's size. */
  listSizes: number[];
  /** Each map entry's size. */
  entrySizes: number[];
  /** The field's size, every entry with its tag and length. */
  size: number;
}

/** A repeated string or map key: written even when empty. */
const alwaysLen = (n: number) => 1 + varintSize(n) + n;

function planMap(field: number, map: QueryMap | undefined): MapPlan | undefined {
  const plan: MapPlan = { keys: [], keySizes: [], values: [], valueSizes: [], listSizes: [], entrySizes: [], size: 0 };
  if (map === undefined) return plan;
  for (const key of Object.keys(map)) {
    const entry = map[key];
    if (typeof entry !== "object" || entry === null) return undefined;
    const values = entry.value ?? [];
    const keySize = utf8Size(key);
    const valueSizes: number[] = [];
    let listSize = 0;
    for (const v of values) {
      if (typeof v !== "string") return undefined;
      const n = utf8Size(v);
      valueSizes.push(n);
      listSize += alwaysLen(n);
    }
    const entrySize = alwaysLen(keySize) + msgField(2, listSize);
    plan.keys.push(key);
    plan.keySizes.push(keySize);
    plan.values.push(values);
    plan.valueSizes.push(valueSizes);
    plan.listSizes.push(listSize);
    plan.entrySizes.push(entrySize);
    plan.size += msgField(field, entrySize);
  }
  return plan;
}

function writeMap(w: Writer, field: number, p: MapPlan): void {
  for (let i = 0; i < p.keys.length; i++) {
    w.header(field, p.entrySizes[i] as number);
    w.header(1, p.keySizes[i] as number);
    w.utf8(p.keys[i] as string, p.keySizes[i] as number);
    w.header(2, p.listSizes[i] as number);
    const values = p.values[i] as string[];
    const sizes = p.valueSizes[i] as number[];
    for (let j = 0; j < values.length; j++) {
      w.header(1, sizes[j] as number);
      w.utf8(values[j] as string, sizes[j] as number);
    }
  }
}

/** What a connection event adds to its plan. */
interface ConnectionPlan {
  query: MapPlan;
  headers: MapPlan;
  remote: string;
  remoteSize: number;
  connectedAt: number;
}

/** What a disconnection event adds to its plan. */
interface DisconnectionPlan {
  code: number;
  reason: string;
  reasonSize: number;
}

interface EventPlan {
  idSize: number;
  socketSize: number;
  connSize: number;
  /** The oneof's field: 10 connection, 11 disconnection, 12 message. */
  eventField: number;
  body: Uint8Array;
  binary: boolean;
  connection: ConnectionPlan | undefined;
  disconnection: DisconnectionPlan | undefined;
  eventSize: number; // the event's message
  /** WebsocketEventRequest.auth (1100), the connection's identity. */
  auth: string;
  authSize: number;
  /** The connection's state (extras, field 2000); undefined when the request has no extras. */
  state: string | undefined;
  stateSize: number;
  requestSize: number; // WebsocketEventRequest
  size: number; // ServerMessage
}

const NO_BODY = new Uint8Array(0);

function planEvent(m: ServerInit): EventPlan | undefined {
  const content = m.content;
  if (content?.case !== "websocketEventRequest") return undefined;
  const r = content.value;
  const event = r.websocketEvent;
  let eventField: number;
  let body: Uint8Array = NO_BODY;
  let binary = false;
  let connection: ConnectionPlan | undefined;
  let disconnection: DisconnectionPlan | undefined;
  let eventSize: number;
  if (event?.case === "message") {
    eventField = 12;
    body = event.value.body ?? NO_BODY;
    binary = event.value.binary ?? false;
    eventSize = lenField(1, body.length) + boolField(1000, binary);
  } else if (event?.case === "connection") {
    eventField = 10;
    const v = event.value;
    const query = planMap(1, v.queryParams as QueryMap | undefined);
    const headers = planMap(1000, v.headers as QueryMap | undefined);
    if (!query || !headers) return undefined;
    const remote = v.remoteAddress ?? "";
    const connectedAt = v.connectedAt ?? 0;
    if (typeof connectedAt !== "number") return undefined;
    const remoteSize = utf8Size(remote);
    connection = { query, headers, remote, remoteSize, connectedAt };
    eventSize =
      query.size + headers.size + lenField(1001, remoteSize) + (connectedAt !== 0 ? varintSize(tag(1002, 1)) + 8 : 0);
  } else if (event?.case === "disconnection") {
    eventField = 11;
    const code = event.value.code ?? 0;
    // A negative int32 is a ten-byte varint: protobuf-es writes those.
    if (!Number.isInteger(code) || code < 0 || code > 0x7fffffff) return undefined;
    const reason = event.value.reason ?? "";
    const reasonSize = utf8Size(reason);
    disconnection = { code, reason, reasonSize };
    eventSize = (code === 0 ? 0 : varintSize(tag(1000, 0)) + varintSize(code)) + lenField(1001, reasonSize);
  } else return undefined;
  const idSize = utf8Size(m.id ?? "");
  const socketSize = utf8Size(r.socketName ?? "");
  const connSize = utf8Size(r.connectionId ?? "");
  const auth = r.auth ?? "";
  const authSize = utf8Size(auth);
  // A set message field is written even when empty, as protobuf-es does.
  const state = r.extras === undefined ? undefined : (r.extras.stateJson ?? "");
  const stateSize = state === undefined ? 0 : utf8Size(state);
  const requestSize =
    lenField(1, socketSize) +
    lenField(2, connSize) +
    msgField(eventField, eventSize) +
    lenField(1100, authSize) +
    (state === undefined ? 0 : msgField(2000, lenField(1, stateSize)));
  const size = lenField(1, idSize) + msgField(3, requestSize);
  return {
    idSize,
    socketSize,
    connSize,
    eventField,
    body,
    binary,
    connection,
    disconnection,
    eventSize,
    auth,
    authSize,
    state,
    stateSize,
    requestSize,
    size,
  };
}

function writeEvent(w: Writer, m: ServerInit, p: EventPlan): void {
  const r = (m.content as { value: { socketName?: string; connectionId?: string } }).value;
  w.string(1, m.id ?? "", p.idSize);
  w.header(3, p.requestSize);
  w.string(1, r.socketName ?? "", p.socketSize);
  w.string(2, r.connectionId ?? "", p.connSize);
  w.header(p.eventField, p.eventSize);
  const { connection, disconnection } = p;
  if (connection) {
    writeMap(w, 1, connection.query);
    writeMap(w, 1000, connection.headers);
    w.string(1001, connection.remote, connection.remoteSize);
    if (connection.connectedAt !== 0) {
      w.varint(tag(1002, 1));
      w.double(connection.connectedAt);
    }
  } else if (disconnection) {
    if (disconnection.code !== 0) {
      w.varint(tag(1000, 0));
      w.varint(disconnection.code);
    }
    w.string(1001, disconnection.reason, disconnection.reasonSize);
  } else {
    w.bytes(1, p.body);
    w.bool(1000, p.binary);
  }
  w.string(1100, p.auth, p.authSize);
  if (p.state !== undefined) {
    w.header(2000, lenField(1, p.stateSize));
    w.string(1, p.state, p.stateSize);
  }
}

/** Encodes a ServerMessage: directly for events and batches of them, else by protobuf-es. */
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

/** The package of the messages' type names. */
const T = "nitric.proto.websockets.v1.";
// The messages' type names, made once (not per decoded message).
const TYPE_AnswerBatch = `${T}AnswerBatch`;
const TYPE_ClientMessage = `${T}ClientMessage`;
const TYPE_EventBatch = `${T}EventBatch`;
const TYPE_ServerMessage = `${T}ServerMessage`;
const TYPE_QueryValue = `${T}QueryValue`;
const TYPE_WebsocketConnectionEvent = `${T}WebsocketConnectionEvent`;
const TYPE_WebsocketConnectionResponse = `${T}WebsocketConnectionResponse`;
const TYPE_WebsocketDisconnectionEvent = `${T}WebsocketDisconnectionEvent`;
const TYPE_WebsocketEventRequest = `${T}WebsocketEventRequest`;
const TYPE_ConnectionExtras = "nitriclike.rooms.v1.ConnectionExtras";
const TYPE_WebsocketEventResponse = `${T}WebsocketEventResponse`;
const TYPE_WebsocketMessageEvent = `${T}WebsocketMessageEvent`;
const TYPE_WebsocketReply = `${T}WebsocketReply`;

/** A map<string, QueryValue> entry, into `map`. */
function readMapEntry(r: Reader, map: Record<string, unknown>): void {
  const end = r.len();
  if (r.varint() !== tag(1, LEN)) throw SLOW;
  const key = r.string();
  // A "__proto__" key would set the record's prototype: protobuf-es reads that one.
  if (key === "__proto__" || r.varint() !== tag(2, LEN)) throw SLOW;
  const lend = r.len();
  const value: string[] = [];
  while (r.pos < lend) {
    if (r.varint() !== tag(1, LEN)) throw SLOW;
    value.push(r.string());
  }
  if (r.pos !== end) throw SLOW;
  map[key] = { $typeName: TYPE_QueryValue, value };
}

function readConnection(r: Reader): unknown {
  const end = r.len();
  const queryParams: Record<string, unknown> = {};
  const headers: Record<string, unknown> = {};
  let remoteAddress = "";
  let connectedAt = 0;
  while (r.pos < end) {
    const t = r.varint();
    if (t === tag(1, LEN)) readMapEntry(r, queryParams);
    else if (t === tag(1000, LEN)) readMapEntry(r, headers);
    else if (t === tag(1001, LEN)) remoteAddress = r.string();
    else if (t === tag(1002, 1)) connectedAt = r.double();
    else throw SLOW;
  }
  return { $typeName: TYPE_WebsocketConnectionEvent, queryParams, headers, remoteAddress, connectedAt };
}

function readDisconnection(r: Reader): unknown {
  const end = r.len();
  let code = 0;
  let reason = "";
  while (r.pos < end) {
    const t = r.varint();
    if (t === tag(1000, 0)) {
      code = r.varint();
      if (code > 0x7fffffff) throw SLOW;
    } else if (t === tag(1001, LEN)) reason = r.string();
    else throw SLOW;
  }
  return { $typeName: TYPE_WebsocketDisconnectionEvent, code, reason };
}

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
      let auth = "";
      let extras: unknown;
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
          event = { case: "message", value: { $typeName: TYPE_WebsocketMessageEvent, body, binary } };
        } else if (rt === tag(10, LEN)) event = { case: "connection", value: readConnection(r) };
        else if (rt === tag(11, LEN)) event = { case: "disconnection", value: readDisconnection(r) };
        else if (rt === tag(1100, LEN)) auth = r.string();
        else if (rt === tag(2000, LEN)) {
          const xend = r.len();
          let stateJson = "";
          while (r.pos < xend) {
            if (r.varint() === tag(1, LEN)) stateJson = r.string();
            else throw SLOW;
          }
          extras = { $typeName: TYPE_ConnectionExtras, stateJson };
        } else throw SLOW;
      }
      if (event === undefined) throw SLOW;
      request = {
        $typeName: TYPE_WebsocketEventRequest,
        socketName,
        connectionId,
        websocketEvent: event,
        auth,
        ...(extras === undefined ? {} : { extras }),
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

/** Decodes a ServerMessage: directly for events and batches of them, else by protobuf-es. */
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
