/**
 * Keeps one service running under `nitric-like run`: forwards its output with its name, restarts it
 * with backoff when it crashes, and restarts it on demand when its files change.
 */
import type { Project, RunningProvider } from "@nitric-like/spec";
import type { Output } from "./log.js";
import type { PreparedService } from "./prepare.js";
import {
  forEachLine,
  processHandle,
  type ServiceHandle,
  type ServiceLaunch,
  spawnService,
  startServiceThread,
} from "./service-process.js";

/**
 * First restart delay after a crash; it doubles on each crash in a row with no event in flight, up
 * to MAX_BACKOFF_MS (a crash while handling events always restarts after this delay).
 */
export const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 10_000;
/** A service that stayed up this long is healthy again: the next crash starts from the first delay. */
const HEALTHY_AFTER_MS = 10_000;

/** One supervised service. */
export class ServiceSupervisor {
  private child: ServiceHandle | undefined;
  private backoffMs = FIRST_BACKOFF_MS;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private startedAt = 0;
  /** What every start adds to the launch: the `.env` values (replaced when they change), the inspector's port. */
  launchExtras: Pick<ServiceLaunch, "dotenv" | "inspectPort"> = {};

  constructor(
    private readonly project: Project,
    public service: PreparedService,
    private readonly provider: RunningProvider,
    private readonly output: Output,
    private readonly prefixWidth: number,
    /** Run a service that uses our SDK as a worker thread, when the provider offers ports. */
    private readonly threads = true,
    /** Also hears each line the service prints (the dashboard's log). */
    private readonly onLine?: (service: string, stream: "stdout" | "stderr", line: string) => void,
  ) {}

  get name(): string {
    return this.service.entry.name;
  }

  /** Starts the process. */
  async start(): Promise<void> {
    const endpoint = await this.provider.endpoint(this.name);
    const address = await this.provider.localAddress?.(this.name);
    if (this.stopping) return;
    this.provider.serviceStarting(this.name);
    const launch = {
      project: this.project,
      service: this.service.entry,
      endpoint,
      ...(address === undefined ? {} : { address }),
      environment: "run" as const,
      ...this.launchExtras,
    };
    const { bundle } = this.service;
    let child: ServiceHandle;
    if ((bundle?.threadable || bundle?.threadOutfile) && this.threads && this.provider.openPort) {
      const port = await this.provider.openPort(this.name);
      // @nitric/sdk's grpc-js stand-in calls over a port of its own (call ids are per client).
      const grpcPort = bundle.threadOutfile ? await this.provider.openPort(this.name) : undefined;
      if (this.stopping) {
        port.close();
        grpcPort?.close();
        return;
      }
      child = startServiceThread({ ...launch, bundle }, port, grpcPort);
    } else child = processHandle(spawnService(bundle ? { ...launch, bundle } : launch));
    this.child = child;
    this.startedAt = Date.now();
    const label = this.output.paint("cyan", `${this.name.padEnd(this.prefixWidth)} |`);
    const onLine = this.onLine;
    if (child.stdout)
      forEachLine(child.stdout, (line) => {
        this.output.out.write(`${label} ${line}\n`);
        onLine?.(this.name, "stdout", line);
      });
    if (child.stderr)
      forEachLine(child.stderr, (line) => {
        // run --inspect: the inspector's address, on stdout as a result (its id changes with each start).
        const inspector =
          this.launchExtras.inspectPort !== undefined &&
          /^Debugger listening on (ws:\/\/127\.0\.0\.1:\d+\/\S+)$/.exec(line)?.[1];
        if (inspector) this.output.result(`service ${this.name} inspector ${inspector}`);
        this.output.err.write(`${label} ${line}\n`);
        onLine?.(this.name, "stderr", line);
      });
    child.onError((error) => this.output.error(`service "${this.name}" could not start: ${error.message}`));
    child.onExit((code, signal) => this.exited(child, code, signal));
  }

  private exited(child: ServiceHandle, code: number | null, signal: NodeJS.Signals | null): void {
    // Not a death when we stopped it (a code change replaced it, or run is stopping).
    const died = this.child === child && !this.stopping;
    const inFlight = this.provider.serviceExited(this.name, code, signal, died) ?? 0;
    if (!died) return;
    this.child = undefined;
    if (Date.now() - this.startedAt > HEALTHY_AFTER_MS) this.backoffMs = FIRST_BACKOFF_MS;
    const how = code === null ? `was killed by ${signal}` : `exited with code ${code}`;
    // A service that died while handling events is restarted after the first delay and the delay
    // does not grow: events that kill it are dropped after a few tries (the provider's poison
    // limit), so this is no crash loop, and the other clients' events wait only that long. The
    // backoff is for a service that dies with nothing in flight (at startup, say).
    const delay = inFlight > 0 ? FIRST_BACKOFF_MS : this.backoffMs;
    if (inFlight === 0) this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    this.output.warn(`service "${this.name}" ${how}; restarting in ${(delay / 1000).toFixed(2)} s`);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      void this.start();
    }, delay);
  }

  /** Replaces the process with a fresh one (after a code change). */
  async restart(service: PreparedService): Promise<void> {
    this.service = service;
    clearTimeout(this.restartTimer);
    const old = this.child;
    this.child = undefined;
    if (old) await old.stop(2000);
    this.backoffMs = FIRST_BACKOFF_MS;
    await this.start();
  }

  /** Waits up to `graceMs` for the process to exit by itself, then stops it. */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child || child.exited()) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        void child.stop(1000).then(resolve);
      }, graceMs);
      child.onExit(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
