/**
 * A websocket on AWS: API Gateway holds the connections; this backend reaches them through the
 * Management API (`POST`/`GET`/`DELETE /@connections/{id}`) and keeps the managed connections table.
 * A 410 Gone means the connection has closed: it becomes "not connected" (NOT_FOUND naming the id,
 * where Nitric reports INTERNAL) and the record is pruned.
 */
import { GrpcStatus, grpcError } from "@nitric-like/contracts/grpc";
import type { ConnectionInfo, SocketBackend } from "@nitric-like/provider-kit";
import type { Logger } from "@nitric-like/spec";
import type { ManagementApi } from "../aws/management.js";
import type { ConnectionsTable } from "./connections-table.js";

/** How many PostToConnection calls a broadcast keeps in flight. */
export const BROADCAST_CONCURRENCY = 32;

/** A socket's place in a deployment, from NITRIC_LIKE_WEBSOCKETS. */
export interface SocketBinding {
  /** The API Gateway API id. */
  apiId: string;
  /** The URL clients connect to (`wss://…/stage`). */
  url: string;
  /** The Management API endpoint (`https://…/stage`). */
  endpoint: string;
}

/** A connection whose connect handler is running in this invocation: what it is sent waits here. */
export interface Opening {
  info: ConnectionInfo;
  frames: { data: Uint8Array; binary: boolean }[];
  close?: { code: number; reason: string };
}

function isGone(error: unknown): boolean {
  const e = error as { name?: string; statusCode?: number };
  return e.name === "GoneException" || e.statusCode === 410;
}

/** Turns a Management API failure other than 410 into a gRPC status that says what to fix. */
export function managementError(socket: string, what: string, error: unknown): Error {
  const e = error as { name?: string; message?: string; statusCode?: number };
  const where = `websocket "${socket}"`;
  const status = e.statusCode;
  const detail = `${e.name ?? "Error"}: ${e.message ?? String(error)}`;
  if (e.name === "ForbiddenException" || e.name === "AccessDeniedException" || status === 403) {
    return grpcError(
      GrpcStatus.PERMISSION_DENIED,
      `${where}: AWS refused to ${what} (${detail}); declare websocket(${JSON.stringify(socket)}) in this service so its role may manage connections, and deploy again`,
    );
  }
  if (e.name === "PayloadTooLargeException" || status === 413) {
    return grpcError(
      GrpcStatus.INVALID_ARGUMENT,
      `${where}: the message is too large for API Gateway (at most 128 KB); send less`,
    );
  }
  if (e.name === "LimitExceededException" || status === 429) {
    return grpcError(GrpcStatus.RESOURCE_EXHAUSTED, `${where}: API Gateway throttled ${what}; retry later (${detail})`);
  }
  return grpcError(GrpcStatus.UNAVAILABLE, `${where}: could not ${what}: ${detail}`);
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
  ) {}

  get url(): string {
    return this.binding.url;
  }

  private prune(id: string): void {
    this.table?.remove(this.name, id).catch((error: unknown) => {
      this.logger.warn(`websocket "${this.name}": could not prune gone connection ${id}: ${(error as Error).message}`);
    });
  }

  async has(id: string): Promise<boolean> {
    if (this.opening.has(id)) return true;
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
      opening.frames.push({ data, binary });
      return true;
    }
    return this.post(id, data);
  }

  /** PostToConnection; false (and the record pruned) when the connection is gone. */
  async post(id: string, data: Uint8Array): Promise<boolean> {
    try {
      await this.management.postToConnection(id, data);
      return true;
    } catch (error) {
      if (isGone(error)) {
        this.prune(id);
        return false;
      }
      throw managementError(this.name, `send to connection ${id}`, error);
    }
  }

  /**
   * PostToConnection to a connection that may not be open yet (its connect answer is on its way to
   * API Gateway): retries on 410 until `deadline`. False when it never opened.
   */
  async postWhenOpen(id: string, data: Uint8Array, deadline: number): Promise<boolean> {
    let wait = 10;
    for (;;) {
      try {
        await this.management.postToConnection(id, data);
        return true;
      } catch (error) {
        if (!isGone(error)) throw managementError(this.name, `send to connection ${id}`, error);
        if (Date.now() + wait > deadline) return false;
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(wait * 2, 250);
      }
    }
  }

  async close(id: string, code: number, reason: string): Promise<boolean> {
    const opening = this.opening.get(id);
    if (opening) {
      opening.close = { code, reason };
      return true;
    }
    try {
      // API Gateway closes with its own code and reason: DeleteConnection takes neither.
      await this.management.deleteConnection(id);
      return true;
    } catch (error) {
      if (isGone(error)) {
        this.prune(id);
        return false;
      }
      throw managementError(this.name, `close connection ${id}`, error);
    }
  }

  async info(id: string): Promise<ConnectionInfo | undefined> {
    const opening = this.opening.get(id);
    if (opening) return opening.info;
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
        if (recorded) this.prune(id);
        return undefined;
      }
      throw managementError(this.name, `look up connection ${id}`, error);
    }
  }

  async list(): Promise<ConnectionInfo[]> {
    if (!this.table) {
      throw grpcError(
        GrpcStatus.FAILED_PRECONDITION,
        `websocket "${this.name}": listing connections needs the managed connections table (NITRIC_LIKE_CONNECTIONS_TABLE); deploy with nitric-like up --provider aws`,
      );
    }
    return this.table.list(this.name);
  }

  /** Posts to every recorded connection, BROADCAST_CONCURRENCY at a time; gone ones are pruned. */
  async broadcast(data: Uint8Array, _binary: boolean, except: ReadonlySet<string>): Promise<number> {
    const targets = (await this.list()).map((c) => c.connectionId).filter((id) => !except.has(id));
    let sent = 0;
    let next = 0;
    const worker = async () => {
      while (next < targets.length) {
        const id = targets[next++] as string;
        if (await this.post(id, data)) sent++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(BROADCAST_CONCURRENCY, targets.length) }, worker));
    return sent;
  }
}
