/**
 * The local provider's inspector (the dashboard's view): connections and traffic from the
 * gateways, values from lmdb. Traffic is observed only while someone listens: with no listener no
 * gateway has an observer, so the message path does nothing extra.
 */
import type { JsonObject } from "@bufbuild/protobuf";
import { closedNotReading, dict } from "@nitric-like/provider-kit";
import type { SecretStore } from "@nitric-like/provider-kit/secret-store";
import { Code, RpcError } from "@nitric-like/rpc";
import {
  type AppLimits,
  type InspectedConnection,
  kvKeyProblem,
  kvPrefixProblem,
  kvValueProblem,
  type ProviderInspector,
  type TrafficEvent,
} from "@nitric-like/spec";
import type { KvStores } from "./kv/store.js";
import type { Gateway } from "./websocket/gateway.js";

function values(map: Record<string, { value: string[] }>): Record<string, string[]> {
  // Query keys and header names are a client's: a record that inherits nothing, so "__proto__" stays an own key.
  const out = dict<string[]>();
  for (const [k, v] of Object.entries(map)) out[k] = v.value;
  return out;
}

/** The inspector over one provider's gateways and stores. */
export class LocalInspector implements ProviderInspector {
  private readonly listeners = new Set<(event: TrafficEvent) => void>();
  private readonly fanOut = (event: TrafficEvent) => {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // A broken listener must not break the gateway that reported the event.
      }
    }
  };

  constructor(
    private readonly gateways: ReadonlyMap<string, Gateway>,
    private readonly stores: KvStores,
    private readonly handlerTimeoutMs: number,
    /** run's secret store, once a service declared a secret. */
    private readonly secrets: () => SecretStore | undefined,
    /** Why a socket has no running gateway (starting, failed to start, not declared yet). */
    private readonly whyNotRunning: (socket: string) => string = () => "its gateway has not started",
  ) {}

  async secretVersions(): Promise<{ name: string; version: string }[]> {
    return [...(this.secrets()?.list() ?? [])];
  }

  async limits(): Promise<Record<string, AppLimits>> {
    const out: Record<string, AppLimits> = {};
    for (const g of this.gateways.values()) {
      const { maxPendingBytesTotal, maxQueuedBytesTotal } = g.flow;
      out[g.name] = { ...g.limits, handlerTimeoutMs: this.handlerTimeoutMs, maxPendingBytesTotal, maxQueuedBytesTotal };
    }
    return out;
  }

  /** Gives a gateway started after the first listener its observer. */
  attach(gateway: Gateway): void {
    gateway.observer = this.listeners.size > 0 ? this.fanOut : undefined;
  }

  private gateway(socket: string): Gateway {
    const gateway = this.gateways.get(socket);
    // UNAVAILABLE: the dashboard answers 503 with the reason, not a 500 (a bug).
    if (!gateway)
      throw new RpcError(Code.UNAVAILABLE, `websocket "${socket}" is not running: ${this.whyNotRunning(socket)}`);
    return gateway;
  }

  async connections(socket?: string): Promise<InspectedConnection[]> {
    const gateways = socket === undefined ? [...this.gateways.values()] : [this.gateway(socket)];
    return gateways.flatMap((g) =>
      g.list().map((c) => ({
        socket: g.name,
        id: c.connectionId,
        connectedAt: c.connectedAt,
        query: values(c.query),
        headers: values(c.headers),
        remoteAddress: c.remoteAddress,
        auth: c.auth ?? "",
        rooms: g.roomsOf(c.connectionId),
        state: g.getState(c.connectionId) ?? "",
      })),
    );
  }

  async send(socket: string, connectionId: string, data: Uint8Array, binary: boolean): Promise<boolean> {
    const gateway = this.gateway(socket);
    const open = gateway.has(connectionId);
    if (gateway.send(connectionId, data, binary)) return true;
    // Open (or opening) before the send, so closed by it: its client did not read (1008).
    if (open) throw closedNotReading(socket, connectionId);
    return false;
  }

  async broadcast(socket: string, data: Uint8Array, binary: boolean): Promise<number> {
    return this.gateway(socket).broadcast(data, binary, new Set());
  }

  async close(socket: string, connectionId: string, code: number, reason: string): Promise<boolean> {
    return this.gateway(socket).close(connectionId, code, reason);
  }

  async kvKeys(store: string, prefix: string, limit: number): Promise<string[]> {
    refuse(kvPrefixProblem(store, prefix));
    const keys: string[] = [];
    for (const key of this.stores.keys(store, prefix)) {
      if (keys.length >= limit) break;
      keys.push(key);
    }
    return keys;
  }

  async kvGet(store: string, key: string): Promise<Record<string, unknown> | undefined> {
    // A key no kv get() takes (too long for lmdb, say) is refused with the words get() has.
    refuse(kvKeyProblem(store, "get", key));
    return this.stores.get(store, key);
  }

  async kvSet(store: string, key: string, value: Record<string, unknown>): Promise<void> {
    // Held to the rules of every kv set(): the store keeps nothing AWS would refuse or change.
    const problem = kvValueProblem(store, key, value);
    if (problem !== undefined) throw new Error(problem);
    await this.stores.set(store, key, value as JsonObject);
  }

  async kvDelete(store: string, key: string): Promise<void> {
    refuse(kvKeyProblem(store, "delete", key));
    await this.stores.delete(store, key);
  }

  onTraffic(listener: (event: TrafficEvent) => void): () => void {
    this.listeners.add(listener);
    for (const g of this.gateways.values()) this.attach(g);
    return () => {
      this.listeners.delete(listener);
      for (const g of this.gateways.values()) this.attach(g);
    };
  }
}

/** Throws a kv rule's refusal (@nitric-like/spec), if there is one. */
function refuse(problem: string | undefined): void {
  if (problem !== undefined) throw new Error(problem);
}
