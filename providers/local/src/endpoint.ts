/**
 * One endpoint per service: its router (provider-kit) served over MessagePorts, for services that
 * run as worker threads of this process, and over gRPC, for service processes and other languages.
 * The gRPC server starts on the first ask for its address (serveGrpc): a run whose services are
 * all threads listens on nothing a local user could act as a service through, even with --tcp,
 * and never loads grpc-js (about 2 MB less resident memory for `run` with no connection here).
 * Whoever can reach an endpoint acts as its service, so where it listens decides who that can be:
 * a Unix socket in a private folder (this user only), and TCP on 127.0.0.1 only when asked, where
 * the kernel's table of connections says whose process each client is (Linux) and only this
 * user's are served; elsewhere every user of the machine can connect there.
 */
import { chmodSync, rmSync } from "node:fs";
import { BurstLog, type EndpointContext, serviceRouter } from "@nitric-like/provider-kit";
import {
  Code,
  canCheckTcpPeers,
  MAX_PROCESS_GRPC_CONNECTIONS,
  OPEN_FILES_PER_GRPC_CONNECTION,
  PortServer,
  type Router,
} from "@nitric-like/rpc";
import type { GrpcRefusal, GrpcServer, GrpcServerOptions } from "@nitric-like/rpc/grpc";
import type { Logger } from "@nitric-like/spec";

/** A service's endpoint. */
export interface Endpoint {
  readonly service: string;
  readonly router: Router;
  /** The router for services that run as worker threads of this process. */
  readonly ports: PortServer;
  /** Its gRPC server once asked for (serveGrpc). */
  grpc?: Promise<GrpcEndpoint>;
}

/** An endpoint's gRPC server and where it listens. */
export interface GrpcEndpoint {
  server: GrpcServer;
  /** `127.0.0.1:port`; empty when the endpoint does not serve TCP. */
  address: string;
  /** `unix:<path>` when it also listens on a Unix socket. */
  localAddress?: string;
  socketPath?: string;
}

/** Options of an endpoint's gRPC server. */
export interface GrpcOptions {
  /**
   * Serve gRPC on TCP, 127.0.0.1, for SDKs that cannot dial a Unix socket. The gRPC protocol of
   * Nitric's SDKs carries no credential: where the kernel says whose each connection is (Linux),
   * only this user's processes are served (GrpcServer.bindLoopback); elsewhere any user of this
   * machine can connect there and act as the service. @default true when there is no socketPath, else false
   */
  tcp?: boolean;
  /**
   * Serve gRPC on a Unix socket at this path, which must be in a folder only this user can enter
   * (see the provider's run folder): a gRPC round trip over it takes ~41–50 µs here against
   * ~48–68 µs over TCP on 127.0.0.1. The socket is also made readable and writable by its owner
   * only, and removed when the endpoint stops.
   */
  socketPath?: string;
  /** Internal, for tests: the gRPC server's bounds (GrpcServerOptions). */
  limits?:
    | Pick<GrpcServerOptions, "maxArrivingBytes" | "maxConnections" | "connectionBudget" | "handshakeTimeoutMs">
    | undefined;
}

/** How often at most a kind of refusal by an endpoint is logged: a flood must not flood the log. */
const REFUSAL_LOG_MS = 1000;

/** What a connection cut past one of the gRPC endpoints' bounds is said as in `run`'s log. */
function connectionCut(service: string, refusal: Extract<GrpcRefusal, { kind: "connections" }>): string {
  const reuse =
    "make the service reuse its gRPC clients (one per address) rather than open a connection for each call, and close those it no longer uses";
  const cut = `service "${service}": cut a new connection to its gRPC endpoint`;
  if (refusal.scope === "endpoint")
    return `${cut}: it serves at most ${refusal.limit} connections at once, and a service needs one or a few; ${reuse}`;
  if (refusal.scope === "process") {
    const { busiest } = refusal;
    const most =
      busiest === undefined
        ? ""
        : `, ${busiest.name === undefined ? "one endpoint" : `service "${busiest.name}"`} holding ${busiest.connections} of them`;
    const files =
      refusal.openFiles === undefined
        ? ""
        : `, and they may take a quarter of the ${refusal.openFiles} run may keep open (its ulimit -n), leaving the rest to the websocket gateway's clients and run's own files; raise it with ulimit -n ${MAX_PROCESS_GRPC_CONNECTIONS * OPEN_FILES_PER_GRPC_CONNECTION} before nitric-like run to serve ${MAX_PROCESS_GRPC_CONNECTIONS}`;
    return `${cut}: run's gRPC endpoints serve at most ${refusal.limit} connections at once together (each takes one of run's open files${files})${most}, and a service needs one or a few; ${reuse.replace("the service", "each service")}`;
  }
  if (refusal.scope === "handshake") {
    const on = refusal.port === undefined ? " on its Unix socket" : ` on 127.0.0.1:${refusal.port}`;
    const sent =
      refusal.received === 0
        ? "it sent nothing"
        : `it sent ${refusal.received} bytes but not all of HTTP/2's client preface`;
    const who =
      refusal.port === undefined ? "" : `; find what opens such connections with ss -tnpe 'dport = :${refusal.port}'`;
    return `${cut}${on}: ${sent} within ${refusal.ms / 1000} s of connecting, and a gRPC client sends its preface at once; such a connection holds one of the endpoint's connections and one of run's open files. Point only gRPC clients (HTTP/2 without TLS) at this endpoint${who}`;
  }
  return `${cut} on 127.0.0.1:${refusal.port}: run is asking the kernel whose ${refusal.limit} connections are already, the most it asks about at once, and a service opens one or a few; a process (another user's, or one of yours) is opening connections in a loop: find it with ss -tnpe 'dport = :${refusal.port}'`;
}

/**
 * Logs what a service's gRPC endpoint refuses (a call it ended before its request had come, a
 * connection it cut), one line per kind (and bound) a second at most, with a count of those since
 * the last.
 */
function refusalLog(service: string, logger: Logger): (refusal: GrpcRefusal) => void {
  const calls = new Map<string, BurstLog>();
  const log = (kind: string, what: string) => {
    let burst = calls.get(kind);
    if (burst === undefined) {
      burst = new BurstLog(logger, "warn", (n) => ` (${n} ${what} since the last report)`, REFUSAL_LOG_MS);
      calls.set(kind, burst);
    }
    return burst;
  };
  return (refusal) => {
    if (refusal.kind === "connections") {
      log(`connections ${refusal.scope}`, "connections cut").note(connectionCut(service, refusal));
      return;
    }
    log(refusal.kind, "calls ended so").note(
      `service "${service}": ended one of its gRPC calls with ${Code[refusal.code]} before its request had come, telling it: ${refusal.details}`,
    );
  };
}

/** Makes the endpoint of one service; it serves ports at once, gRPC once serveGrpc is called. */
export function createEndpoint(service: string, ctx: EndpointContext): Endpoint {
  const router = serviceRouter(service, ctx);
  return { service, router, ports: new PortServer(router) };
}

/** Starts the endpoint's gRPC server, or gives the one already started (or starting). */
export function serveGrpc(endpoint: Endpoint, logger: Logger, options: () => GrpcOptions): Promise<GrpcEndpoint> {
  endpoint.grpc ??= listen(endpoint, logger, options());
  return endpoint.grpc;
}

async function listen(endpoint: Endpoint, logger: Logger, options: GrpcOptions): Promise<GrpcEndpoint> {
  const { GrpcServer } = await import("@nitric-like/rpc/grpc");
  const server = new GrpcServer(endpoint.router, {
    ...options.limits,
    name: endpoint.service,
    refused: refusalLog(endpoint.service, logger),
  });
  const grpc: GrpcEndpoint = { server, address: "" };
  const { socketPath } = options;
  const tcp = options.tcp ?? socketPath === undefined;
  try {
    if (tcp) {
      let said = false;
      const { port, sameUserOnly } = await server.bindLoopback(0, (uid) => {
        // Once per endpoint: another user's connections must not flood run's output.
        if (said) return;
        said = true;
        logger.warn(
          `service "${endpoint.service}": cut a connection to its endpoint on 127.0.0.1:${port} from ${uid === undefined ? "a process whose user the kernel did not show" : `another user (uid ${uid})`}; only processes of your user (uid ${process.getuid?.()}) may act as your services (later ones are cut without a word)`,
        );
      });
      grpc.address = `127.0.0.1:${port}`;
      // A /proc that does not list this run's own listener (a sandbox's): whose a connection is
      // cannot be told there, so any user of the machine can act as the service (`run` said
      // otherwise, from the table being there).
      if (!sameUserOnly && canCheckTcpPeers())
        logger.warn(
          `service "${endpoint.service}": its endpoint on 127.0.0.1:${port} serves every connection: this machine's /proc/net/tcp does not list run's own sockets, so it cannot tell whose a connection is, and any user of this machine can act as the service there; use --tcp only on a machine you do not share`,
        );
    }
  } catch (error) {
    server.forceStop();
    throw error;
  }
  if (socketPath !== undefined) {
    try {
      await server.bind(`unix:${socketPath}`);
      chmodSync(socketPath, 0o600);
      grpc.localAddress = `unix:${socketPath}`;
      grpc.socketPath = socketPath;
    } catch (error) {
      const why = `service "${endpoint.service}": cannot listen on the Unix socket ${JSON.stringify(socketPath)} (${(error as Error).message})`;
      if (!tcp) {
        server.forceStop();
        throw Object.assign(
          new Error(`${why}; set TMPDIR to a short local folder you own, or run with --tcp to serve it on 127.0.0.1`),
          { userFacing: true },
        );
      }
      // TCP alone still serves; say why the faster path is missing.
      logger.warn(`${why}; it talks to the provider over TCP`);
    }
  }
  return grpc;
}

/** Stops an endpoint: lets gRPC calls finish for up to `graceMs`, then cuts them. */
export async function stopEndpoint(endpoint: Endpoint, graceMs = 1000): Promise<void> {
  const grpc = await endpoint.grpc?.catch(() => undefined);
  if (grpc) await grpc.server.stop(graceMs);
  endpoint.ports.stop();
  if (grpc?.socketPath !== undefined) rmSync(grpc.socketPath, { force: true });
}
