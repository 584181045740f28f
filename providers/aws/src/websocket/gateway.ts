/**
 * A websocket on AWS: API Gateway holds the connections; this backend reaches them through the
 * Management API (`POST`/`GET`/`DELETE /@connections/{id}`) and keeps the managed connections table.
 * A 410 Gone means the connection has closed: it becomes "not connected" (NOT_FOUND naming the id,
 * where Nitric reports INTERNAL) and the record is pruned, unless it connected within
 * OPENING_GRACE_MS (it may be opening still).
 */
import { randomUUID } from "node:crypto";
import {
  AWS_MAX_MESSAGE_BYTES,
  addRoom,
  awsOpeningSendProblem,
  awsPayloadTooLarge,
  type ConnectionInfo,
  Opening as KitOpening,
  type SocketBackend,
} from "@nitric-like/provider-kit";
import { Code, RpcError } from "@nitric-like/rpc";
import type { Logger } from "@nitric-like/spec";
import type { Item } from "../aws/dynamodb.js";
import type { ManagementApi } from "../aws/management.js";
import { ConnectionsTable } from "./connections-table.js";
import { type BroadcastEvent, INLINE_MAX, PAGE_SIZE, type PageOutcome, postPage } from "./fanout.js";

/**
 * How long after it connected a connection found gone (410) is kept rather than pruned: its
 * $connect records it before answering, and it is gone to the Management API until API Gateway
 * has opened it, which may take up to $connect's 29 s integration timeout. One that never opens
 * gets its $disconnect, which forgets it.
 */
export const OPENING_GRACE_MS = 35_000;
/** How many PostToConnection calls a broadcast posted by the calling function keeps in flight. */
export const BROADCAST_CONCURRENCY = 32;
/** How many pages of a broadcast are being handed over (Lambda Invoke calls) at once. */
const HAND_OVERS_IN_FLIGHT = 4;
/**
 * Pages the calling function reads and hands over itself (5,000 connections, ~5 Queries and 5
 * Invokes: ~0.1 s); a continuation reads the rest, CONTINUATION_PAGES pages at a time.
 */
export const CALLER_PAGES = 5;
export const CONTINUATION_PAGES = 100;
/** Except lists longer than this are not carried in a continuation's event (it must fit 256 KB). */
const EXCEPT_MAX_IN_EVENT = 1000;

/** A broadcast being handed over. */
interface Broadcast {
  id: string;
  frame: string;
  binary: boolean;
  except: string[];
  /** The number of the last page handed over. */
  page: number;
  /** The room, for a room broadcast. */
  room: string | undefined;
}

/** How a socket fans broadcasts out (fanout.ts). */
export interface FanoutOptions {
  /** Hands a page to an asynchronous invocation; absent when this function cannot invoke itself. */
  fanout?: (event: BroadcastEvent) => Promise<void>;
  /** Broadcasts to at most this many connections are posted by the calling function. */
  inlineMax: number;
  /** Connection ids per asynchronous invocation. @default PAGE_SIZE */
  pageSize?: number;
}

/** A socket's place in a deployment, from NITRIC_LIKE_WEBSOCKETS. */
export interface SocketBinding {
  /** The API Gateway API id. */
  apiId: string;
  /** The URL clients connect to (`wss://…/stage`). */
  url: string;
  /** The Management API endpoint (`https://…/stage`). */
  endpoint: string;
}

/**
 * A connection whose connect handler is running in this invocation: what it is sent waits here,
 * as much as the delivery invocation's one event carries (a send past it is refused; the connect
 * handler's replies, added last, can still take the event over, which is then not handed over,
 * and that is logged). There is no record of the
 * connection yet, so the rooms it joins and the state it is given wait here too, and are recorded
 * with it once it is accepted.
 */
export class Opening extends KitOpening {
  rooms: Set<string> | undefined = undefined;
  state: string | undefined = undefined;
}

/**
 * Longest connection id that can name a connection, in UTF-8 bytes: the connections table's sort
 * key limit (DynamoDB's 1,024 bytes). API Gateway's own ids are 16 characters.
 */
const MAX_ID_BYTES = 1024;

/**
 * Whether `id` could name a connection: an id a service took from a client (a chat's "to" field,
 * say) may be anything, and one that is empty, a dot segment (`.`, `..`, which a URL resolves away,
 * so the request would reach another path of the Management API) or longer than the table's key
 * is refused by API Gateway or DynamoDB with an error of their own. Such an id is answered as a
 * connection that is not open, as the local provider answers it, and never reaches AWS.
 */
function possibleId(id: string): boolean {
  return id !== "" && id !== "." && id !== ".." && Buffer.byteLength(id, "utf8") <= MAX_ID_BYTES;
}

function isGone(error: unknown): boolean {
  const e = error as { name?: string; statusCode?: number };
  return e.name === "GoneException" || e.statusCode === 410;
}

/** True when Lambda answered an Invoke with a 4xx or it never left: nothing was queued. */
function refused(error: unknown): boolean {
  const e = error as { name?: string; statusCode?: number };
  if (e.statusCode === undefined) return e.name === "ConfigurationError" || e.name === "CredentialsError";
  return e.statusCode >= 400 && e.statusCode < 500;
}

/** Hands one page over, retrying (up to 5 attempts, jittered waits) while Lambda answers 429: such an Invoke was not queued. */
async function handOverPage(fanout: (event: BroadcastEvent) => Promise<void>, event: BroadcastEvent): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await fanout(event);
      return;
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode !== 429 || attempt >= 5) throw error;
      await new Promise((r) => setTimeout(r, Math.random() * 50 * 2 ** attempt));
    }
  }
}

/**
 * Refuses a message PostToConnection would refuse (413 PayloadTooLargeException over API Gateway's
 * 128 KB), before the request: the same error the 413 gives, without a round trip (a broadcast
 * would make one per connection).
 */
function refuseOversized(socket: string, data: Uint8Array): void {
  if (data.byteLength > AWS_MAX_MESSAGE_BYTES) throw awsPayloadTooLarge(socket);
}

/** Turns a Management API failure other than 410 into a gRPC status that says what to fix. */
export function managementError(socket: string, what: string, error: unknown): Error {
  const e = error as { name?: string; message?: string; statusCode?: number };
  const where = `websocket "${socket}"`;
  const status = e.statusCode;
  const detail = `${e.name ?? "Error"}: ${e.message ?? String(error)}`;
  if (e.name === "ForbiddenException" || e.name === "AccessDeniedException" || status === 403) {
    return new RpcError(
      Code.PERMISSION_DENIED,
      `${where}: AWS refused to ${what} (${detail}); declare websocket(${JSON.stringify(socket)}) in this service so its role may manage connections, and deploy again`,
    );
  }
  if (e.name === "PayloadTooLargeException" || status === 413) return awsPayloadTooLarge(socket);
  if (e.name === "LimitExceededException" || status === 429) {
    return new RpcError(Code.RESOURCE_EXHAUSTED, `${where}: API Gateway throttled ${what}; retry later (${detail})`);
  }
  return new RpcError(Code.UNAVAILABLE, `${where}: could not ${what}: ${detail}`);
}

/** The connections of one socket, through API Gateway's Management API. */
export class ApiGateway implements SocketBackend {
  /** Connections whose connect handler runs now, in this invocation. */
  readonly opening = new Map<string, Opening>();

  constructor(
    readonly name: string,
    readonly binding: SocketBinding,
    private readonly management: ManagementApi,
    private readonly table: ConnectionsTable | undefined,
    private readonly logger: Logger,
    private readonly fanoutOptions: FanoutOptions = { inlineMax: INLINE_MAX },
  ) {}

  get url(): string {
    return this.binding.url;
  }

  /**
   * Deletes a gone connection's record. Awaited by the call that met the 410, so the event's
   * answer waits for it: Lambda freezes the function once it has answered, and a DeleteItem left
   * in flight would wait, frozen, for the next event (or never happen).
   */
  private async prune(id: string): Promise<boolean> {
    if (!this.table) return true;
    return await this.table.forgetGone(this.name, id, Date.now() - OPENING_GRACE_MS).catch((error: unknown) => {
      this.logger.warn(`websocket "${this.name}": could not prune gone connection ${id}: ${(error as Error).message}`);
      return false;
    });
  }

  async has(id: string): Promise<boolean> {
    if (this.opening.has(id)) return true;
    if (!possibleId(id)) return false;
    try {
      await this.management.getConnection(id);
      return true;
    } catch (error) {
      if (isGone(error)) return false;
      throw managementError(this.name, `look up connection ${id}`, error);
    }
  }

  async send(id: string, data: Uint8Array, binary: boolean): Promise<boolean> {
    const opening = this.opening.get(id);
    if (opening) {
      // PostToConnection would refuse a frame over 128 KB once the connection is open, and Lambda
      // an event over 1 MB for the invocation that delivers them: refused now, while the app can
      // still be told (as a send after connect is, and as the local gateway under compat: aws).
      const problem = awsOpeningSendProblem(this.name, id, opening.deliveryBytes, data);
      if (problem) throw problem;
      opening.keep(data, binary);
      return true;
    }
    refuseOversized(this.name, data);
    return this.post(id, data);
  }

  /** PostToConnection; false (and the record pruned) when the connection is gone. */
  async post(id: string, data: Uint8Array): Promise<boolean> {
    return (await this.deliver(id, data)) === "sent";
  }

  /** PostToConnection: sent, or gone and its record forgotten, or gone and kept as maybe opening (prune). */
  private async deliver(id: string, data: Uint8Array): Promise<"sent" | "forgotten" | "kept"> {
    if (!possibleId(id)) return "forgotten";
    try {
      await this.management.postToConnection(id, data);
      return "sent";
    } catch (error) {
      if (isGone(error)) return (await this.prune(id)) ? "forgotten" : "kept";
      throw managementError(this.name, `send to connection ${id}`, error);
    }
  }

  /**
   * PostToConnection to a connection that may not be open yet (its connect answer is on its way to
   * API Gateway): retries on 410 (and 429) until `deadline`. False when it never opened.
   */
  async postWhenOpen(
    id: string,
    data: Uint8Array,
    deadline: number,
    management: ManagementApi = this.management,
  ): Promise<boolean> {
    let wait = 10;
    for (;;) {
      try {
        await management.postToConnection(id, data);
        return true;
      } catch (error) {
        // Gone (not open yet) and throttled: API Gateway did not take the frame, so it may go again.
        const e = error as { name?: string; statusCode?: number };
        const throttled = e.statusCode === 429 || e.name === "LimitExceededException";
        if (!isGone(error) && !throttled) throw managementError(this.name, `send to connection ${id}`, error);
        if (Date.now() + wait > deadline) return false;
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(wait * 2, 250);
      }
    }
  }

  async close(id: string, code: number, reason: string): Promise<boolean> {
    const opening = this.opening.get(id);
    if (opening) {
      opening.requestClose(code, reason);
      return true;
    }
    if (!possibleId(id)) return false;
    try {
      // API Gateway closes with its own code and reason: DeleteConnection takes neither.
      await this.management.deleteConnection(id);
      return true;
    } catch (error) {
      if (isGone(error)) {
        await this.prune(id);
        return false;
      }
      throw managementError(this.name, `close connection ${id}`, error);
    }
  }

  async info(id: string): Promise<ConnectionInfo | undefined> {
    const opening = this.opening.get(id);
    if (opening) return opening.info;
    if (!possibleId(id)) return undefined;
    const recorded = await this.table?.get(this.name, id);
    try {
      const live = await this.management.getConnection(id);
      if (recorded) return recorded;
      const userAgent = live.userAgent;
      return {
        connectionId: id,
        connectedAt: live.connectedAt?.getTime() ?? 0,
        query: {},
        headers: userAgent ? { "user-agent": { value: [userAgent] } } : {},
        remoteAddress: live.sourceIp ?? "",
      };
    } catch (error) {
      if (isGone(error)) {
        if (recorded) await this.prune(id);
        return undefined;
      }
      throw managementError(this.name, `look up connection ${id}`, error);
    }
  }

  async list(): Promise<ConnectionInfo[]> {
    if (!this.table) {
      throw new RpcError(
        Code.FAILED_PRECONDITION,
        `websocket "${this.name}": listing connections needs the managed connections table (NITRIC_LIKE_CONNECTIONS_TABLE); deploy with nitric-like up --provider aws`,
      );
    }
    return this.table.list(this.name);
  }

  /**
   * Posts to every recorded connection but the excepted ones. Up to `inlineMax` targets: posted
   * here, BROADCAST_CONCURRENCY at a time, gone ones pruned; resolves with how many got the frame.
   * More: the ids are read a page at a time and each page handed to `fanout` (an asynchronous
   * invocation that posts it, fanout.ts) as soon as it is read, for at most CALLER_PAGES pages;
   * the rest of the table is read and handed over by an asynchronous invocation too (a
   * continuation, continueBroadcast). Resolves with how many connections this call handed over,
   * before any of them is posted to: every target up to CALLER_PAGES pages. Without `fanout`, or
   * when its first hand-over is refused, everything is posted here.
   */
  async broadcast(data: Uint8Array, binary: boolean, except: ReadonlySet<string>): Promise<number> {
    return this.broadcastIn(undefined, data, binary, except);
  }

  /** The table, or FAILED_PRECONDITION saying how to get one. */
  private requireTable(what: string): ConnectionsTable {
    if (!this.table) {
      throw new RpcError(
        Code.FAILED_PRECONDITION,
        `websocket "${this.name}": ${what} needs the managed connections table (NITRIC_LIKE_CONNECTIONS_TABLE); deploy with nitric-like up --provider aws`,
      );
    }
    return this.table;
  }

  async join(id: string, room: string): Promise<boolean | undefined> {
    const opening = this.opening.get(id);
    if (opening) {
      opening.rooms ??= new Set();
      return addRoom(opening.rooms, this.name, id, room);
    }
    const table = this.requireTable("joining a room");
    return possibleId(id) ? table.join(this.name, id, room) : undefined;
  }

  async leave(id: string, room: string): Promise<boolean> {
    const opening = this.opening.get(id);
    if (opening) return opening.rooms?.delete(room) ?? false;
    const table = this.requireTable("leaving a room");
    return possibleId(id) ? table.leave(this.name, id, room) : false;
  }

  async members(room: string): Promise<string[]> {
    const recorded = await this.requireTable("listing a room").members(this.name, room);
    // Connections whose connect handler joined the room in this invocation, as locally.
    for (const [id, opening] of this.opening) if (opening.rooms?.has(room)) recorded.push(id);
    return recorded;
  }

  async roomsOf(id: string): Promise<string[]> {
    const opening = this.opening.get(id);
    if (opening) return [...(opening.rooms ?? [])];
    const table = this.requireTable("listing a connection's rooms");
    return possibleId(id) ? table.roomsOf(this.name, id) : [];
  }

  async setState(id: string, json: string): Promise<boolean> {
    const opening = this.opening.get(id);
    if (opening) {
      opening.state = json;
      return true;
    }
    const table = this.requireTable("a connection's state");
    return possibleId(id) ? table.setState(this.name, id, json) : false;
  }

  async getState(id: string): Promise<string | undefined> {
    const opening = this.opening.get(id);
    if (opening) return opening.state ?? "";
    const table = this.requireTable("a connection's state");
    return possibleId(id) ? table.getState(this.name, id) : undefined;
  }

  /**
   * Posts to every member of a room but the excepted ones: the socket broadcast's path (inline up
   * to `inlineMax`, else pages handed to asynchronous invocations, 410s pruned), reading the
   * room's membership items instead of the socket's records.
   */
  async broadcastToRoom(room: string, data: Uint8Array, binary: boolean, except: ReadonlySet<string>): Promise<number> {
    this.requireTable("a room broadcast");
    return this.broadcastIn(room, data, binary, except);
  }

  private async broadcastIn(
    room: string | undefined,
    data: Uint8Array,
    binary: boolean,
    except: ReadonlySet<string>,
  ): Promise<number> {
    // Said once, before any connection is read or posted to: every PostToConnection would get 413.
    refuseOversized(this.name, data);
    if (!this.table) await this.list();
    const reader = this.reader(except, undefined, room);
    const inlineMax = this.fanoutOptions.inlineMax;
    do await reader.read();
    while (!reader.exhausted && reader.pending.length <= inlineMax);
    const fanout = this.fanoutOptions.fanout;
    if (!fanout || (reader.exhausted && reader.pending.length <= inlineMax)) {
      while (!reader.exhausted) await reader.read();
      return this.postAll(reader.pending, data, room);
    }
    while (!reader.exhausted && reader.pending.length < reader.pageSize) await reader.read();
    const state: Broadcast = {
      id: randomUUID(),
      frame: Buffer.from(data).toString("base64"),
      binary,
      except: [...except],
      page: 0,
      room,
    };
    // The first page decides: a hand-over Lambda refused (no grant to invoke itself, say) posts
    // everything here. One that may have been queued (5xx, no answer) is not posted again.
    const first = reader.pending.splice(0, reader.pageSize);
    let lostFirst = 0;
    try {
      await handOverPage(fanout, this.pageEvent(state, first));
    } catch (error) {
      if (!refused(error)) {
        lostFirst = first.length;
        this.logger.error(
          `websocket "${this.name}": broadcast ${state.id}: ${first.length} connection(s) were not handed over for delivery and get nothing: ${(error as Error).message}`,
        );
      } else {
        this.logger.warn(
          `websocket "${this.name}": could not hand broadcast ${state.id} to an asynchronous invocation (${(error as Error).message}); posting it from this invocation instead, ${BROADCAST_CONCURRENCY} at a time; deploy again so the function may invoke itself`,
        );
        const rest = [...first, ...reader.pending];
        reader.pending.length = 0;
        while (!reader.exhausted) await reader.read();
        rest.push(...reader.pending);
        return this.postAll(rest, data, room);
      }
    }
    // Except lists too long for an event keep the whole reading here.
    const budget = state.except.length > EXCEPT_MAX_IN_EVENT ? Number.POSITIVE_INFINITY : CALLER_PAGES - 1;
    return this.handOverPages(fanout, state, reader, budget, first.length - lostFirst);
  }

  /**
   * Continues a broadcast the calling function could not finish reading: reads on from the
   * event's `start`, hands each page over, and after CONTINUATION_PAGES pages hands the rest to
   * the next continuation.
   */
  async continueBroadcast(event: BroadcastEvent): Promise<void> {
    const fanout = this.fanoutOptions.fanout;
    if (!fanout || !this.table) {
      this.logger.error(
        `websocket "${this.name}": broadcast ${event.broadcast} cannot continue past page ${event.page} (this function ${fanout ? "has no connections table" : "cannot invoke itself: AWS_LAMBDA_FUNCTION_NAME is not set"}); the remaining connections get nothing`,
      );
      return;
    }
    const state: Broadcast = {
      id: event.broadcast,
      frame: event.data,
      binary: event.binary,
      except: event.except ?? [],
      page: event.page,
      room: event.room,
    };
    const reader = this.reader(new Set(state.except), event.start, event.room);
    await this.handOverPages(fanout, state, reader, CONTINUATION_PAGES);
  }

  private reader(except: ReadonlySet<string>, start: Item | undefined, room?: string) {
    const table = this.table as ConnectionsTable;
    const pageSize = this.fanoutOptions.pageSize ?? PAGE_SIZE;
    // A room's members are ids under the room's partition, paged the same way.
    const name = room === undefined ? this.name : ConnectionsTable.roomPartition(this.name, room);
    return {
      pageSize,
      pending: [] as string[],
      cursor: start,
      exhausted: false,
      async read() {
        const page = await table.idPage(name, pageSize, this.cursor);
        this.cursor = page.next;
        this.exhausted = !page.next;
        for (const id of page.ids) if (!except.has(id)) this.pending.push(id);
      },
    };
  }

  private pageEvent(state: Broadcast, ids: string[], start?: Item): BroadcastEvent {
    return {
      nitricLike: "broadcast",
      socket: this.name,
      broadcast: state.id,
      // A continuation carries the number of the last page handed over, and posts nothing.
      page: start ? state.page : ++state.page,
      data: state.frame,
      binary: state.binary,
      ids,
      // Every page of a room broadcast names its room: a 410 prunes the membership too.
      ...(state.room === undefined ? {} : { room: state.room }),
      ...(start ? { start, except: state.except } : {}),
    };
  }

  /**
   * Reads and hands over pages, HAND_OVERS_IN_FLIGHT Invoke calls at once, `budget` pages at
   * most; what is left goes to a continuation. Resolves with how many connections were handed
   * over (`handedBefore` included).
   */
  private async handOverPages(
    fanout: (event: BroadcastEvent) => Promise<void>,
    state: Broadcast,
    reader: ReturnType<ApiGateway["reader"]>,
    budget: number,
    handedBefore = 0,
  ): Promise<number> {
    const inFlight = new Set<Promise<void>>();
    let handed = handedBefore;
    let pages = 0;
    let lost = 0;
    let lostError: string | undefined;
    const send = async (event: BroadcastEvent) => {
      while (inFlight.size >= HAND_OVERS_IN_FLIGHT) await Promise.race(inFlight);
      const p = handOverPage(fanout, event).then(
        () => {
          handed += event.ids.length;
        },
        (error: unknown) => {
          lost += event.ids.length;
          lostError ??= `${event.start ? "the continuation" : `page ${event.page}`}: ${(error as Error).message}`;
        },
      );
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    };
    let continued = false;
    for (;;) {
      while (
        pages < budget &&
        (reader.pending.length >= reader.pageSize || (reader.exhausted && reader.pending.length > 0))
      ) {
        pages++;
        await send(this.pageEvent(state, reader.pending.splice(0, reader.pageSize)));
      }
      if (reader.exhausted && reader.pending.length === 0) break;
      if (pages >= budget) {
        // The rest: what was read and not handed over is read again by the continuation.
        const leftover = reader.pending.splice(0);
        for (let i = 0; i < leftover.length; i += reader.pageSize)
          await send(this.pageEvent(state, leftover.slice(i, i + reader.pageSize)));
        if (!reader.exhausted) {
          continued = true;
          await send(this.pageEvent(state, [], reader.cursor));
        }
        break;
      }
      await reader.read();
    }
    await Promise.all(inFlight);
    if (lost > 0) {
      this.logger.error(
        `websocket "${this.name}": broadcast ${state.id}: ${lost} connection(s)${continued ? " (and perhaps the rest, after a lost continuation)" : ""} were not handed over for delivery and get nothing; first failure: ${lostError}`,
      );
    }
    this.logger.info(
      `websocket "${this.name}": broadcast ${state.id}: ${handed} connection(s) handed to page invocations up to page ${state.page}${continued ? "; a continuation reads the rest" : ""}; each page logs what it delivered`,
    );
    return handed;
  }

  /** Deletes a gone connection's membership of a room (its record, if any, is pruned by post()). */
  private pruneMembership(room: string, id: string): Promise<void> {
    return (this.table as ConnectionsTable).deleteMembership(this.name, room, id).catch((error: unknown) => {
      this.logger.warn(
        `websocket "${this.name}": could not prune gone connection ${id} from room ${JSON.stringify(room)}: ${(error as Error).message}`,
      );
    });
  }

  /** Posts to each id, BROADCAST_CONCURRENCY at a time; how many got the frame. */
  private async postAll(targets: readonly string[], data: Uint8Array, room?: string): Promise<number> {
    let sent = 0;
    let next = 0;
    const worker = async () => {
      while (next < targets.length) {
        const id = targets[next++] as string;
        const outcome = await this.deliver(id, data);
        if (outcome === "sent") sent++;
        else if (outcome === "forgotten" && room !== undefined) await this.pruneMembership(room, id);
      }
    };
    await Promise.all(Array.from({ length: Math.min(BROADCAST_CONCURRENCY, targets.length) }, worker));
    return sent;
  }

  /** Posts one page of a broadcast (a BroadcastEvent), logging what it delivered. */
  async postPage(event: BroadcastEvent, management: ManagementApi, deadline: number): Promise<PageOutcome> {
    const started = Date.now();
    const outcome = await postPage(event.ids, Buffer.from(event.data, "base64"), {
      management,
      deadline,
      prune: async (id) => {
        if ((await this.prune(id)) && event.room !== undefined) await this.pruneMembership(event.room, id);
      },
    });
    const line = `websocket "${this.name}": broadcast ${event.broadcast} page ${event.page}: delivered ${outcome.delivered} of ${event.ids.length} frame(s), ${outcome.gone} gone (pruned), ${outcome.failed} failed, ${outcome.throttled} throttled answer(s) retried, in ${Date.now() - started} ms`;
    if (outcome.failed > 0) this.logger.warn(`${line}; first failure: ${outcome.firstError}`);
    else this.logger.info(line);
    return outcome;
  }
}
