/**
 * The connections a process's gRPC endpoints hold, counted together. Each is a file descriptor,
 * and those are the process's: `run` has one endpoint per service, and a bound of each endpoint's
 * alone (MAX_GRPC_CONNECTIONS) lets 20 services' endpoints take 20,000 of them, past the open-file
 * limit of many machines, where every socket of the process fails to open (the websocket
 * gateway's clients among them). A connection counts from the moment it is accepted, while the
 * kernel is still asked whose it is (GrpcServer.bindLoopback), until it closes.
 */
import { openFilesLimit } from "./open-files.js";

/**
 * Connections a process's gRPC endpoints serve at once, all of them together: twice an endpoint's
 * own bound (MAX_GRPC_CONNECTIONS), so one service that opens connections in a loop and keeps them
 * leaves room for every other's, and far under the files the websocket gateway may use besides
 * (openFilesProblem). A service opens one or a few. Under a low open-file limit, less
 * (processConnectionLimit).
 */
export const MAX_PROCESS_GRPC_CONNECTIONS = 2000;

/**
 * The share of the process's open files (ulimit -n) its gRPC endpoints' connections may take at
 * most: one in this many. Under a low limit (1,024 is a common default) 2,000 connections would
 * take every file the process may open, and then the websocket gateway could not accept its
 * clients nor a store open its files; a quarter leaves the rest to them.
 */
export const OPEN_FILES_PER_GRPC_CONNECTION = 4;

/**
 * The most connections a process's gRPC endpoints serve together under an open-file limit of
 * `openFiles` (undefined: not known): MAX_PROCESS_GRPC_CONNECTIONS, or a quarter of the limit when
 * that is less, with the limit then, for the log to say why and how to raise it.
 */
export function processConnectionLimit(openFiles: number | undefined): { limit: number; openFiles?: number } {
  if (openFiles === undefined) return { limit: MAX_PROCESS_GRPC_CONNECTIONS };
  const share = Math.max(1, Math.floor(openFiles / OPEN_FILES_PER_GRPC_CONNECTION));
  return share < MAX_PROCESS_GRPC_CONNECTIONS ? { limit: share, openFiles } : { limit: MAX_PROCESS_GRPC_CONNECTIONS };
}

/**
 * TCP connections a process asks the kernel about at once (whose process made each, the check
 * of GrpcServer.bindLoopback): any user of the machine can open them, faster than the kernel's
 * tables can be read, so without a bound of their own another user's flood would hold all of
 * MAX_PROCESS_GRPC_CONNECTIONS, and this user's services could not connect even over their
 * owner-only Unix sockets. A service connects once or a few times, so a burst of every service
 * of a large app starting at once stays far under it.
 */
export const MAX_PEER_CHECKS = 500;

/** One server's share of a budget: its name for logs, and the connections it holds. */
export interface ConnectionHolder {
  /** How a log names it (a service), if it has a name. */
  readonly name: string | undefined;
  /** Connections it holds now, checks waiting included. */
  connections: number;
}

/** A bound on the connections of the servers that share it, and on their checks waiting. */
export class ConnectionBudget {
  /** Connections held now, by all the servers sharing the budget. */
  held = 0;
  /** Connections whose check is waiting for the kernel's answer now. */
  checking = 0;
  /** The servers that hold any connection now. */
  private readonly holders = new Set<ConnectionHolder>();

  /**
   * @param openFiles the process's open-file limit when `limit` was lowered to fit it
   *   (processConnectionLimit), for the log to name it and how to raise it
   */
  constructor(
    readonly limit: number,
    readonly maxChecking = MAX_PEER_CHECKS,
    readonly openFiles: number | undefined = undefined,
  ) {}

  /** Counts a connection for `holder`; false, counting nothing, when the budget is full. */
  take(holder: ConnectionHolder): boolean {
    if (this.held >= this.limit) return false;
    this.held++;
    if (holder.connections++ === 0) this.holders.add(holder);
    return true;
  }

  /** Lets go of a connection `holder` took. */
  give(holder: ConnectionHolder): void {
    this.held--;
    if (--holder.connections === 0) this.holders.delete(holder);
  }

  /** Counts a check about to be asked; false when MAX_PEER_CHECKS wait already. */
  startCheck(): boolean {
    if (this.checking >= this.maxChecking) return false;
    this.checking++;
    return true;
  }

  /** A check answered. */
  endCheck(): void {
    this.checking--;
  }

  /** The server holding the most connections now, with how many: a full budget's likeliest cause. */
  busiest(): { name: string | undefined; connections: number } | undefined {
    let most: ConnectionHolder | undefined;
    for (const holder of this.holders) if (most === undefined || holder.connections > most.connections) most = holder;
    return most && { name: most.name, connections: most.connections };
  }
}

/**
 * The budget every GrpcServer of this process shares unless given its own: at most
 * MAX_PROCESS_GRPC_CONNECTIONS, less under a low open-file limit (processConnectionLimit).
 */
export const processConnections = (() => {
  const { limit, openFiles } = processConnectionLimit(openFilesLimit());
  return new ConnectionBudget(limit, MAX_PEER_CHECKS, openFiles);
})();
