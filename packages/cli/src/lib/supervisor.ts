/**
 * Keeps one service running under `nitric-like run`: forwards its output with its name, restarts it
 * with backoff when it crashes, and restarts it on demand when its files change.
 *
 * A service has started once every handler the spec expects of it is registered (one that handles
 * nothing: once it has stayed up a second). One that ends before that has failed to start: its
 * output is held back meanwhile, and instead of it and a restart loop, its cause is printed once
 * (file:line, message, fix) and the service waits for a file change. One that started and then
 * crashes CRASH_LOOP_COUNT times within CRASH_LOOP_WINDOW_MS with no event in flight is in a crash
 * loop: it stops being restarted, says so once, and waits for a file change too. A copy restarted
 * after a crash that ends before it registers is one more crash, not a failed start: it ran before,
 * so what failed it (a database restarting) may pass by itself. A death with
 * events in flight does not count: the provider's poison rule already bounds those (each event is
 * dropped after it killed the service twice), and a client must not be able to stop a service for
 * everyone by sending a few bad messages.
 */
import inspector from "node:inspector";
import { forEachLine } from "@nitric-like/provider-kit";
import {
  functionTimeoutSeconds,
  type HandlerRegistration,
  type Project,
  type RunningProvider,
  registrationKey,
} from "@nitric-like/spec";
import {
  exitCodeMeaning,
  type FailureCause,
  failureCause,
  formatFailure,
  lambdaHandlerFix,
  RecentOutput,
} from "./failure.js";
import type { Output } from "./log.js";
import type { PreparedService } from "./prepare.js";
import {
  type EarlyThread,
  endEarlyThread,
  processHandle,
  type ServiceHandle,
  type ServiceLaunch,
  spawnService,
  startServiceHere,
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
/** Crashes (with no event in flight, after the service had started) that make a crash loop... */
export const CRASH_LOOP_COUNT = 5;
/** ...within this long. */
export const CRASH_LOOP_WINDOW_MS = 30_000;
/** A service the spec expects no handlers of has started once it stayed up this long. */
const NO_HANDLERS_STARTED_MS = 1000;
/** Output lines held back while a service starts (the last ones are kept), and kept for its cause. */
const HELD_LINES = 200;
/** Most a failed thread's stderr is waited for (it ends with the thread: this only guards against a bug). */
const THREAD_DRAIN_MS = 30_000;
/**
 * How long a copy stopped on purpose (a code change, its file gone) has to answer the events it
 * was sent before it is ended; what it has not answered by then goes to the next copy.
 */
const STOP_GRACE_MS = 2000;
/**
 * Held-back output is printed after this long even if the service has not started (a slow start,
 * or a changed service that no longer registers a handler the spec expects): never swallowed.
 */
const HOLD_MAX_MS = 3000;
/**
 * How long a copy restarted after a crash holds its output back instead: the same code started
 * before, its load output was seen then, and a failure at load that comes slowly (a connection
 * that times out after 10 s, say) is said by its cause once rather than by its stack on every
 * restart. Printed after this long all the same, never swallowed.
 */
const AFTER_CRASH_HOLD_MAX_MS = 30_000;
/**
 * What @nitric/sdk prints on stdout as each of its handler streams ends (its startStreamHandler),
 * which is how `run` stops a copy of it (Ctrl-C, a save): not shown for a copy stopped on purpose,
 * shown as any other line at any other time (the provider ending its streams unasked is news).
 */
const NITRIC_STREAM_ENDED = "Membrane has terminated the trigger stream";

/**
 * Where a supervised service is: starting, started (serving), restarting after a crash (waiting out
 * its backoff, or its new copy loading), or waiting for a file change.
 */
export type ServiceState = "starting" | "started" | "restarting" | "waiting";

/** One supervised service. */
export class ServiceSupervisor {
  private child: ServiceHandle | undefined;
  private backoffMs = FIRST_BACKOFF_MS;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  /** Set once `run` is stopping, before the provider ends this service's streams (see stopComes). */
  private stopComing = false;
  private startedAt = 0;
  /** What every start adds to the launch: the `.env` values (replaced when they change), the inspector's port. */
  launchExtras: Pick<ServiceLaunch, "dotenv" | "inspectPort"> = {};
  /**
   * How long a started service may leave its event loop without a turn before it is ended
   * and restarted (see watchAlive): the timeout a deployed function gets (functionTimeoutSeconds),
   * after which Lambda ends it too.
   */
  blockedAfterMs: number;
  /** Set when the current child was ended while starting because its event loop did not turn: its failure's cause. */
  private blockedStarting: string | undefined;
  private state_: ServiceState = "starting";
  /**
   * True once the current copy of this version has started (registered what the spec expects).
   * A copy restarted after a crash starts out false again: one that then ends before registering
   * is one more crash (see afterCrash).
   */
  private everStarted = false;
  /**
   * Set while the current copy is one restarted after a crash. One that then ends before it has
   * registered its handlers (its top level throws, exits with code 0 or blocks: a database it
   * connects to is restarting, say) counts as one more crash (loadFailedAfterCrash): restarted
   * with backoff, toward the crash loop, as it ran before and may well start once what it needs is
   * back.
   */
  private afterCrash = false;
  /**
   * The failure at load of the copies restarted after a crash, as said (in full once), and how many
   * copies in a row failed so; forgotten once a copy starts, or a file change restarts it.
   */
  private loadFailure: { said: string; summary: string; times: number } | undefined;
  /** Set when it stopped in a crash loop; a file change then starts it on probation (see crashLoop). */
  private looped = false;
  /**
   * When a file change started it after a crash loop: a crash within CRASH_LOOP_WINDOW_MS of that
   * (the change did not fix it) is the loop again, said once, with no new round of restarts.
   */
  private probationFrom: number | undefined;
  private readonly crashes: number[] = [];
  /** The stderr lines of the current process held back while it starts; flushed once it has started. */
  private held: string[] = [];
  /** The last lines of output of the current process, for the cause of a failure. */
  private recent = new RecentOutput(HELD_LINES);
  /** Whether the current process has printed anything but blank lines on stderr. */
  private stderrPrinted = false;
  private holdTimer: NodeJS.Timeout | undefined;
  private stderrEnded: Promise<void> = Promise.resolve();
  private startedTimer: NodeJS.Timeout | undefined;
  private readonly stateListeners: ((state: ServiceState) => void)[] = [];
  /** False under `run --no-watch`: nothing restarts a service that waits, so say to restart run. */
  watching = true;
  /**
   * True under `run --single-thread`: a service that would run as a worker thread runs on this
   * process's own thread instead (startServiceHere).
   */
  singleThread = false;
  /**
   * True while it waits after ending by itself (code 0, no output) with no handler expected of
   * it: it lacks nothing the spec expects, so it does not hold "ready" back.
   */
  idle = false;
  /** The handlers the spec expects this service to register. */
  expected: Pick<HandlerRegistration, "socket" | "event" | "route">[] = [];
  /**
   * The service's thread when `run` started it before the provider was up (EarlyThread): the first
   * start serves its port instead of starting a thread.
   */
  early: EarlyThread | undefined;

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
  ) {
    this.blockedAfterMs = functionTimeoutSeconds(provider.handlerTimeoutMs) * 1000;
    provider.onRegistrationsChanged(() => this.checkStarted());
  }

  /** Where the service is. */
  get state(): ServiceState {
    return this.state_;
  }

  /** Calls back on each change of state. */
  onStateChange(listener: (state: ServiceState) => void): void {
    this.stateListeners.push(listener);
  }

  /**
   * Why it waits (its failure, a crash loop) or restarts (the crash), in one line, while it does;
   * for the dashboard.
   */
  get reason(): string | undefined {
    return this.state_ === "waiting" || this.state_ === "restarting" ? this.reason_ : undefined;
  }
  private reason_: string | undefined;

  /** While it restarts after a crash: when its new copy starts (ms since the epoch). */
  get restartAt(): number | undefined {
    return this.state_ === "restarting" ? this.restartAt_ : undefined;
  }
  private restartAt_: number | undefined;

  /** True while it waits for a file change because it crashed in a loop. */
  get inCrashLoop(): boolean {
    return this.state_ === "waiting" && this.looped;
  }

  private setState(state: ServiceState, reason?: string, restartAt?: number): void {
    if (state === "waiting") {
      // Its clients are told at once rather than after waiting for a copy not coming; not why: the
      // failure (a file:line, a message that may hold a password) is for this log, not for them.
      this.provider.serviceWaiting?.(this.name, this.watching);
    }
    // Each crash of a restarting service is news too (a new cause, a new time to restart at).
    const changed = this.state_ !== state || this.reason_ !== reason || this.restartAt_ !== restartAt;
    this.reason_ = reason;
    this.restartAt_ = restartAt;
    if (!changed) return;
    this.state_ = state;
    for (const l of this.stateListeners) l(state);
  }

  /** True when every handler the spec expects of this service is registered. */
  private registered(): boolean {
    const live = new Set(
      this.provider
        .registrations()
        .filter((r) => r.service === this.name)
        .map(registrationKey),
    );
    return this.expected.every((e) => live.has(registrationKey(e)));
  }

  private checkStarted(): void {
    if (!this.child || this.state_ === "waiting" || this.everStarted) return;
    if (this.expected.length === 0 || !this.registered()) return;
    this.markStarted();
  }

  private markStarted(): void {
    this.everStarted = true;
    this.loadFailure = undefined;
    clearTimeout(this.startedTimer);
    this.flushHeld();
    this.setState("started");
  }

  /**
   * Ends a service (a thread, a process of our bundle, or a process of its own start
   * command whose program answers the check, as our SDK does) that leaves its event loop
   * without a turn for blockedAfterMs (a loop that never yields, a synchronous wait), as Lambda
   * ends a function at its timeout: every event of the service waits behind it, and nothing else
   * would end it. Its exit is a death like any other: the events it held fail or are retried, and
   * it restarts; one that had not started yet (its top level blocks) fails instead, saying so,
   * and waits for a file change, unless it is a copy restarted after a crash: one more crash.
   */
  private watchAlive(child: ServiceHandle): void {
    // A debugger attached to run (`node --inspect`) may hold a thread at a breakpoint for as long as it likes.
    if (inspector.url() !== undefined) return;
    child.watchAlive?.(this.blockedAfterMs, (silentMs) => {
      if (this.child !== child || this.stopping) return;
      if (!this.everStarted) {
        // Still loading (a save that made its top level loop, say): a restart would block again,
        // so its failure says why, once, and it waits for a file change (exited()).
        // The limit, not how long it was silent: the same cause in copies restarted after a crash
        // reads the same, and is counted as such (loadFailedAfterCrash).
        this.blockedStarting = `its event loop did not turn for ${(this.blockedAfterMs / 1000).toFixed(1)} s while it started (a loop at its top level that never yields, or a synchronous wait), so it never registered its handlers`;
        return;
      }
      this.output.error(
        `service "${this.name}" has not let its event loop turn for ${(silentMs / 1000).toFixed(1)} s (a loop that never yields, or a synchronous wait), so none of its events can run; ending its ${child.kind === "process" ? "process" : "thread"} to restart it. Yield in long work (await between steps) or move it to a worker`,
      );
    });
  }

  /** Prints what it printed while starting (now that it is no failure's noise) and stops holding. */
  private flushHeld(): void {
    clearTimeout(this.holdTimer);
    const label = this.output.paint("cyan", `${this.name.padEnd(this.prefixWidth)} |`);
    for (const line of this.held) {
      this.output.err.write(`${label} ${this.output.shown(this.output.err, line)}\n`);
      this.onLine?.(this.name, "stderr", line);
    }
    this.held = [];
  }

  /**
   * Does not start the service: prints why it failed (in the collect pass), in two lines, and
   * waits for restart() (a file change).
   */
  fail(when: string, cause: FailureCause): void {
    const [what, fix] = formatFailure(this.name, this.service.entry.file, when, cause);
    this.output.error(what);
    this.sayFix(fix);
    this.waitForChange(what);
  }

  /** Prints a failure's fix on the line after it; under --no-watch, to start run again. */
  private sayFix(fix: string): void {
    this.output.info(
      `  ${this.watching ? fix : `${fix.replace(/^fix it and save: .*/, "fix it")}, then start run again (--no-watch: it does not watch files)`}`,
    );
  }

  /** Does not start the service, having said why elsewhere (`reason`, in a line): it waits for restart() (a file change). */
  waitForChange(reason: string): void {
    clearTimeout(this.restartTimer);
    this.setState("waiting", reason);
  }

  get name(): string {
    return this.service.entry.name;
  }

  /**
   * Whether the service runs as a worker thread of this process, reaching its endpoint over a
   * port (the booted thread when there is one, else a new one); otherwise it is a process, over
   * gRPC. start() branches on it, and run's --tcp note reads it.
   */
  get runsAsThread(): boolean {
    if (!this.threads) return false;
    if (this.early !== undefined && this.provider.servePort !== undefined) return true;
    return this.service.bundle?.threadOutfile !== undefined && this.provider.openPort !== undefined;
  }

  /** Starts the process. */
  async start(): Promise<void> {
    const { bundle } = this.service;
    const { early } = this;
    // Only a process needs the gRPC endpoint's address: a run of threads alone never starts one.
    const thread = this.runsAsThread;
    const endpoint = thread ? "" : await this.provider.endpoint(this.name);
    const address = thread ? undefined : await this.provider.localAddress?.(this.name);
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
    this.early = undefined;
    let child: ServiceHandle;
    if (thread && early && this.provider.servePort) {
      try {
        await this.provider.servePort(this.name, early.port);
      } catch (error) {
        await endEarlyThread(early);
        throw error;
      }
      if (this.stopping) {
        await endEarlyThread(early);
        return;
      }
      child = early.handle;
    } else if (thread && bundle && this.singleThread && this.provider.openLocalPort) {
      const port = await this.provider.openLocalPort(this.name);
      if (this.stopping) {
        port.close();
        return;
      }
      child = startServiceHere({ ...launch, bundle }, port);
    } else if (thread && bundle && this.provider.openPort) {
      // One port for both SDKs: a transport's call ids are its own, however many clients share it.
      const port = await this.provider.openPort(this.name);
      if (this.stopping) {
        port.close();
        return;
      }
      child = startServiceThread({ ...launch, bundle }, port);
    } else
      child = processHandle(spawnService(bundle ? { ...launch, bundle } : launch), launch.service.start !== undefined);
    this.child = child;
    this.startedAt = Date.now();
    const label = this.output.paint("cyan", `${this.name.padEnd(this.prefixWidth)} |`);
    const onLine = this.onLine;
    // Its last lines of output, on either stream, for the cause of a failure to start: kept until
    // it has started (exited() reads them only then; a crash after it is said as a restart).
    const recent = new RecentOutput(HELD_LINES);
    if (child.stdout)
      forEachLine(child.stdout, (line) => {
        if (line === NITRIC_STREAM_ENDED && (this.stopping || this.stopComing || this.child !== child)) return;
        if (!this.everStarted) recent.push(line);
        this.output.out.write(`${label} ${this.output.shown(this.output.out, line)}\n`);
        onLine?.(this.name, "stdout", line);
      });
    // Until it has started, its stderr is held back (a failure prints its cause instead).
    const held: string[] = [];
    this.held = held;
    this.recent = recent;
    this.stderrPrinted = false;
    clearTimeout(this.holdTimer);
    if (!this.everStarted) {
      this.holdTimer = setTimeout(
        () => {
          if (this.held === held) this.flushHeld();
        },
        this.afterCrash ? AFTER_CRASH_HOLD_MAX_MS : HOLD_MAX_MS,
      );
    }
    let stderrEnded: () => void = () => {};
    this.stderrEnded = new Promise<void>((resolve) => {
      stderrEnded = resolve;
    });
    if (child.stderr) {
      child.stderr.once("end", () => stderrEnded());
      child.stderr.once("close", () => stderrEnded());
      forEachLine(child.stderr, (line) => {
        // run --inspect: the inspector's address, on stdout as a result (its id changes with each start).
        const inspector =
          this.launchExtras.inspectPort !== undefined &&
          /^Debugger listening on (ws:\/\/127\.0\.0\.1:\d+\/\S+)$/.exec(line)?.[1];
        if (inspector) this.output.result(`service ${this.name} inspector ${inspector}`);
        if (!this.everStarted) {
          recent.push(line);
          if (line.trim() !== "" && this.recent === recent) this.stderrPrinted = true;
        }
        if (this.everStarted || this.held !== held) {
          this.output.err.write(`${label} ${this.output.shown(this.output.err, line)}\n`);
          onLine?.(this.name, "stderr", line);
          return;
        }
        held.push(line);
        if (held.length > HELD_LINES) held.shift();
      });
    } else stderrEnded();
    if (!this.everStarted && this.expected.length === 0) {
      this.startedTimer = setTimeout(() => {
        if (this.child === child && !child.exited()) this.markStarted();
      }, NO_HANDLERS_STARTED_MS);
    }
    this.checkStarted();
    // Watched from the start: a top level that never lets its event loop turn would otherwise
    // hold its events, and "ready", with nothing said.
    this.blockedStarting = undefined;
    this.watchAlive(child);
    child.onError((error) => this.output.error(`service "${this.name}" could not start: ${error.message}`));
    child.onExit((code, signal) => this.exited(child, code, signal));
  }

  private exited(child: ServiceHandle, code: number | null, signal: NodeJS.Signals | null): void {
    // Not a death when we stopped it (a code change replaced it, or run is stopping).
    const died = this.child === child && !this.stopping;
    const inFlight = this.provider.serviceExited(this.name, code, signal, died) ?? 0;
    if (!died) return;
    this.child = undefined;
    clearTimeout(this.startedTimer);
    const how = code === null ? `was killed by ${signal}` : `exited with code ${code}`;
    if (!this.everStarted && inFlight === 0) {
      // Its stderr was held back (for 3 s at most): the cause is in it. Read it once the stream has
      // drained. A thread's ends with it, its last words after 8 MB of output included (boundOutput
      // writes them as it exits): waited for, however long it takes to read them all; a process's
      // pipe may be held open by a process it started, so that is waited for up to 1 s.
      const recent = this.recent;
      const drainMs = child.kind === "thread" ? THREAD_DRAIN_MS : 1000;
      let drainTimer: NodeJS.Timeout | undefined;
      const drained = new Promise((r) => (drainTimer = setTimeout(r, drainMs)));
      void Promise.race([this.stderrEnded, drained]).then(() => {
        clearTimeout(drainTimer);
        if (this.child !== undefined || this.stopping || this.recent !== recent) return;
        const output = recent.text();
        clearTimeout(this.holdTimer);
        this.held = [];
        this.recent = new RecentOutput(HELD_LINES);
        const said = this.stderrPrinted;
        this.stderrPrinted = false;
        if (code === 0 && !said && this.afterCrash) {
          // A copy restarted after a crash that ends quietly before it registers (it gives up when
          // what it needs is not there yet): one more crash, as a throw at load is.
          this.loadFailedAfterCrash(how, {
            message: "it ended by itself (exit code 0) before registering its handlers",
            fix: "fix it and save: run starts it again when one of its files changes",
            lastOutput: true,
          });
          return;
        }
        if (code === 0 && !said) {
          // Ended by itself with nothing to say (on stderr: what it logs on stdout is no failure's
          // cause): nothing keeps it up (a helper module the services' match takes for a service, say). Nothing the spec expects of it is missing when it
          // expects nothing, so it does not hold "ready" back.
          this.idle = this.expected.length === 0;
          const lambda = this.idle ? lambdaHandlerFix(this.service.entry.path, this.service.entry.file) : undefined;
          this.fail("to stay up", {
            message: `it ended by itself (exit code 0) ${this.expected.length === 0 ? "and registers no handler" : "before registering its handlers"}`,
            fix:
              lambda ??
              `a service runs until stopped, serving its handlers; if ${this.service.entry.file} is not a service (a helper module, say), keep it out of the services' match in the project file`,
          });
          return;
        }
        const blocked = this.blockedStarting;
        if (blocked !== undefined && this.afterCrash) {
          // Ended by run for blocking as it loaded, after it crashed: one more crash (its top level
          // may wait, synchronously, on what the crash took away), not a change that broke it.
          this.loadFailedAfterCrash("was ended for blocking its event loop", {
            message: blocked,
            fix: "fix it and save: run starts it again when one of its files changes",
            lastOutput: true,
          });
          return;
        }
        if (blocked !== undefined) {
          this.fail("to start", {
            message: blocked,
            fix: "fix it and save: run starts it again when one of its files changes",
          });
          return;
        }
        const cause = failureCause(
          output,
          this.project.dir,
          this.service.bundle?.inputs ?? [this.service.entry.path],
          undefined,
          how,
          // Node says nothing of its code 13 (a top-level await left unsettled): said here, as the
          // collect pass says it of one that ends so while collected.
          exitCodeMeaning(code, this.service.entry.file),
        );
        const hint = /^nitric-like: (.*)$/m.exec(output)?.[1];
        if (this.afterCrash) {
          this.loadFailedAfterCrash(how, hint ? { ...cause, fix: hint } : cause);
          return;
        }
        // With no error printed, the cause says how it ended itself.
        this.fail(cause.lastOutput ? "to start" : `to start (${how})`, hint ? { ...cause, fix: hint } : cause);
      });
      return;
    }
    // Node says nothing of its code 13: a copy restarted after a crash (a started service) whose top
    // level now waits on what never settles is told what that means, as a first start is.
    const meaning = exitCodeMeaning(code, this.service.entry.file);
    const said = meaning === undefined ? how : `${how}: ${meaning}`;
    if (inFlight === 0 && this.crashLoop(how, said, meaning === undefined ? undefined : `the last ${said}`)) return;
    // A service that died while handling events is restarted after the first delay and the delay
    // does not grow: events that kill it are dropped after a few tries (the provider's poison
    // limit), so this is no crash loop, and the other clients' events wait only that long. The
    // backoff is for a service that dies with nothing in flight (at startup, say).
    const delay = this.restartDelay(inFlight);
    this.output.warn(`service "${this.name}" ${said}; restarting in ${(delay / 1000).toFixed(2)} s`);
    this.setState("restarting", `service "${this.name}" ${said}`, Date.now() + delay);
    this.restartAfter(delay);
  }

  /** How long to wait before restarting a copy that died with `inFlight` events in flight; grows the backoff. */
  private restartDelay(inFlight: number): number {
    if (Date.now() - this.startedAt > HEALTHY_AFTER_MS) this.backoffMs = FIRST_BACKOFF_MS;
    const delay = inFlight > 0 ? FIRST_BACKOFF_MS : this.backoffMs;
    if (inFlight === 0) this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    return delay;
  }

  /**
   * A copy restarted after a crash ended before it registered its handlers: a crash like the one
   * before it, not a failed start. It ran before, so what failed it may pass by itself (a database
   * it connects to at load restarting, say): it is restarted with backoff, and 5 such crashes in
   * 30 s make a crash loop, whose line names this cause. The cause is said in full once; the same
   * cause again is counted in one line each, with no stack.
   */
  private loadFailedAfterCrash(how: string, cause: FailureCause): void {
    const [what, fix] = formatFailure(
      this.name,
      this.service.entry.file,
      cause.lastOutput ? "at load after it crashed" : `at load after it crashed (${how})`,
      cause,
    );
    const same = this.loadFailure?.said === what;
    const times = same ? (this.loadFailure?.times ?? 0) + 1 : 1;
    const ended = cause.lastOutput ? "" : `${how}: `;
    const summary = `${cause.location ?? this.service.entry.file}: ${ended}${cause.message.split("\n")[0]}`;
    this.loadFailure = { said: what, summary, times };
    if (!same) this.output.warn(what);
    const last = `the last ${times > 1 ? `${times} ` : ""}failing at load: ${summary}`;
    if (this.crashLoop(how, `failed at load (${summary})`, last)) {
      // As a failed start says it: what to do (install a missing package, say), then save.
      this.sayFix(fix);
      return;
    }
    const delay = this.restartDelay(0);
    const when = `restarting in ${(delay / 1000).toFixed(2)} s`;
    if (same) this.output.warn(`service "${this.name}" failed again at load, same cause (${times} times); ${when}`);
    else
      this.output.info(
        `  ${when}, as after a crash: it ran before, so this may pass (a database it connects to restarting, say); ${CRASH_LOOP_COUNT} crashes in ${CRASH_LOOP_WINDOW_MS / 1000} s stop it until a file changes`,
      );
    this.setState(
      "restarting",
      `service "${this.name}" failed at load after it crashed${times > 1 ? ` (${times} times in a row)` : ""}: ${summary}`,
      Date.now() + delay,
    );
    this.restartAfter(delay);
  }

  /** Starts a new copy after a crash, in `delay` ms. */
  private restartAfter(delay: number): void {
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      // The new copy has started once it registers again: until then its stderr is held back, and
      // an end before that is said by its cause, once (loadFailedAfterCrash), not by its stack.
      this.everStarted = false;
      this.afterCrash = true;
      void this.start();
    }, delay);
  }

  /**
   * Counts a crash of a started service with nothing in flight; true (and said once) when it makes
   * a crash loop: the service then waits for a file change. `how` this crash ended; `said`, how
   * it is said (with what its exit code means, or its failure at load); `last`, what the loop's
   * line says of the last crashes when a restart line did not (that meaning, that failure).
   */
  private crashLoop(how: string, said: string, last: string | undefined): boolean {
    const now = Date.now();
    if (this.probationFrom !== undefined && now - this.probationFrom <= CRASH_LOOP_WINDOW_MS) {
      this.crashes.length = 0;
      this.looped = true;
      this.output.error(
        `service "${this.name}" ${said} again, ${((now - this.probationFrom) / 1000).toFixed(1)} s after the change that restarted it from a crash loop; ${this.watching ? "waiting for a file change" : "not restarting it (--no-watch: fix it, then start run again)"}`,
      );
      this.setState("waiting", `service "${this.name}" ${how} again after a change, in a crash loop`);
      return true;
    }
    this.probationFrom = undefined;
    this.crashes.push(now);
    while (this.crashes.length > 0 && now - (this.crashes[0] as number) > CRASH_LOOP_WINDOW_MS) this.crashes.shift();
    if (this.crashes.length < CRASH_LOOP_COUNT) return false;
    this.crashes.length = 0;
    this.looped = true;
    this.output.error(
      `service "${this.name}" crashed ${CRASH_LOOP_COUNT} times in ${CRASH_LOOP_WINDOW_MS / 1000} s${last === undefined ? "" : ` (${last})`}; ${this.watching ? "waiting for a file change" : "not restarting it (--no-watch: fix it, then start run again)"}`,
    );
    this.setState(
      "waiting",
      `service "${this.name}" crashed ${CRASH_LOOP_COUNT} times in ${CRASH_LOOP_WINDOW_MS / 1000} s`,
    );
    return true;
  }

  /** Replaces the process with a fresh one (after a code change, or a retry of a failed service). */
  async restart(service: PreparedService): Promise<void> {
    this.service = service;
    // A thread started early runs the code as it was: the new code gets a thread of its own.
    await this.dropEarly();
    clearTimeout(this.restartTimer);
    clearTimeout(this.startedTimer);
    const old = this.child;
    this.child = undefined;
    if (old) await this.retireCopy(old);
    this.backoffMs = FIRST_BACKOFF_MS;
    this.everStarted = false;
    this.afterCrash = false;
    this.loadFailure = undefined;
    this.idle = false;
    clearTimeout(this.holdTimer);
    this.held = [];
    this.recent = new RecentOutput(HELD_LINES);
    this.crashes.length = 0;
    this.probationFrom = this.looped ? Date.now() : undefined;
    this.looped = false;
    this.setState("starting");
    await this.start();
  }

  /** Ends the thread started early (see `early`) if no start has taken it. */
  private async dropEarly(): Promise<void> {
    const { early } = this;
    this.early = undefined;
    if (early) await endEarlyThread(early);
  }

  /**
   * Ends the service for good (its file is gone), as a code change ends its old version: its
   * handlers get up to 2 s to answer.
   */
  async end(): Promise<void> {
    const child = await this.halt();
    if (child) await this.retireCopy(child);
  }

  /**
   * Stops a copy of the service on purpose: its handlers first answer the events they were sent
   * (up to STOP_GRACE_MS; new events wait for the next copy), so a save does not end a handler
   * halfway and run it again in the new copy.
   */
  private async retireCopy(child: ServiceHandle): Promise<void> {
    if (!child.exited()) await this.provider.serviceStopping?.(this.name, STOP_GRACE_MS);
    await child.stop(STOP_GRACE_MS);
  }

  /** Stops restarting and starting; the process or thread, if it still runs. */
  private async halt(): Promise<ServiceHandle | undefined> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    clearTimeout(this.startedTimer);
    await this.dropEarly();
    this.flushHeld();
    const child = this.child;
    return child && !child.exited() ? child : undefined;
  }

  /**
   * `run` is stopping: the provider is about to end this service's streams, ahead of stop(). What
   * the service says of that (NITRIC_STREAM_ENDED) is the stop, not news.
   */
  stopComes(): void {
    this.stopComing = true;
  }

  /** Waits up to `graceMs` for the process to exit by itself, then stops it. */
  async stop(graceMs: number): Promise<void> {
    const child = await this.halt();
    if (!child) return;
    // On run's own thread nothing ends by itself: its calls end, and the handle closes its port.
    if (child.kind === "main-thread") return await child.stop(graceMs);
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
