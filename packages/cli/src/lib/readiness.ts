/**
 * What makes `run` honest about its state: it refuses what `spec` refuses and cannot serve (one
 * socket event handled by two services), it reports a service that failed in the collect pass
 * once and keeps it waiting for a file change, and it is ready only when every service has started
 * (registered every handler the spec expects of it).
 */
import {
  buildSpec,
  type CollectedService,
  handlerConflict,
  importedServiceConflict,
  routeConflict,
  SERVED_KINDS,
  type Spec,
  type SpecResult,
  specRegistrations,
  type WebsocketEvent,
} from "@nitric-like/spec";
import { collect } from "./collect.js";
import { type FailureCause, failureCause } from "./failure.js";
import { type Output, UserError } from "./log.js";
import { importedServices, type PreparedProject, type PreparedService } from "./prepare.js";
import type { ServiceSupervisor } from "./supervisor.js";

/** Refuses handler conflicts as `spec` does: each on a line of its own, then exit 1. */
export function refuseConflicts(spec: Spec, conflicts: string[], output: Output): void {
  if (conflicts.length === 0) return;
  for (const c of conflicts) output.error(c);
  throw new UserError(
    `the spec of "${spec.name}" has ${conflicts.length} problem${conflicts.length === 1 ? "" : "s"} (listed above)`,
  );
}

/** The errors `run` only warns about: those that are not conflicts (refused) or failures (reported by their supervisor). */
export function warnedErrors(errors: string[], conflicts: string[], failures: SpecResult["failures"]): string[] {
  const failed = failures.map((f) => `service ${JSON.stringify(f.service)} (${f.file}): ${f.message}`);
  return errors.filter((e) => !conflicts.includes(e) && !failed.some((f) => e.startsWith(f)));
}

/** The handlers the spec expects of one service. */
export function expectedOf(spec: Spec, service: string): ServiceSupervisor["expected"] {
  return specRegistrations(spec)
    .filter((r) => r.service === service)
    .map(({ socket, event, route }) => (route === undefined ? { socket, event } : { socket, event, route }));
}

const COLLECT_FAILED = "while its resources were being collected";

/**
 * How a collect-pass failure is said: when it happened (with the exit code or signal) and its
 * cause, read from the output the service left (`inputs`: its files, to name the line); when
 * Node printed no error there, how it ended, with what the pass said that means (exit code 13),
 * then its last output; for a service the collect pass stopped (it blocked, or declared nothing
 * in time), the pass's own message, which says what happened, whatever the service logged
 * meanwhile.
 */
export function collectFailure(
  failure: { message: string; output: string; stopped?: boolean },
  projectDir: string,
  inputs: Iterable<string>,
): { when: string; cause: FailureCause } {
  const how = /^(exited with code \d+|was killed by \w+)/.exec(failure.message)?.[1];
  // What the pass said that exit means, after its words of when it happened (": Node's code...").
  const said = how === undefined ? undefined : `${how} ${COLLECT_FAILED}`;
  const meaning =
    said !== undefined && failure.message.startsWith(said) ? failure.message.slice(said.length) : undefined;
  const fix = "fix it and save: run collects it again when one of its files changes";
  const cause: FailureCause =
    failure.stopped === true
      ? { message: failure.message, fix }
      : failure.output.trim()
        ? failureCause(failure.output, projectDir, inputs, undefined, how && `${how}${meaning ?? ""}`)
        : meaning !== undefined
          ? { message: `it ${how}, printing nothing${meaning}`, fix, lastOutput: true }
          : { message: failure.message, fix };
  // With no error printed, the cause says how it ended itself.
  return { when: how && !("lastOutput" in cause) ? `${COLLECT_FAILED} (${how})` : COLLECT_FAILED, cause };
}

/** Reports a service's collect-pass failure once and leaves it waiting for a file change. */
export function failCollected(
  supervisor: ServiceSupervisor,
  failure: { message: string; output: string; stopped?: boolean },
  projectDir: string,
): void {
  const { when, cause } = collectFailure(
    failure,
    projectDir,
    supervisor.service.bundle?.inputs ?? [supervisor.service.entry.path],
  );
  supervisor.fail(when, cause);
}

/**
 * The service that handles a socket event (or, with `route`, a message route) now (a live
 * registration, or a service expected to register it), if any.
 */
export type HandlerOwner = (
  socket: string,
  event: WebsocketEvent,
  except: string,
  route?: string,
) => string | undefined;

/**
 * What refuses a service's declarations while `run` runs, as `run` refuses them at start: the
 * resources nobody serves, and each event another service handles (`owner`).
 */
export function declarationRefusals(
  projectName: string,
  collected: CollectedService,
  owner: HandlerOwner,
): { unsupported: string[]; conflicts: string[] } {
  const conflicts: string[] = [];
  // Handlers another service registers because this one imports its entry file: said as that.
  const imported = new Map((collected.imports ?? []).map((i) => [i.service, i]));
  const viaImport = new Map<
    string,
    ({ socket: string; event: WebsocketEvent } | { socket: string; route: string })[]
  >();
  for (const h of collected.handlers) {
    const by = owner(h.socket, h.event, collected.name, h.route);
    if (by === undefined) continue;
    if (imported.has(by)) {
      const list = viaImport.get(by) ?? [];
      list.push(h.route === undefined ? { socket: h.socket, event: h.event } : { socket: h.socket, route: h.route });
      viaImport.set(by, list);
      continue;
    }
    conflicts.push(
      h.route === undefined
        ? handlerConflict(h.socket, h.event, [by, collected.name])
        : routeConflict(h.socket, h.route, [by, collected.name]),
    );
  }
  for (const [by, registrations] of viaImport) {
    const file = imported.get(by)?.file ?? by;
    conflicts.unshift(importedServiceConflict(collected, { name: by, file }, registrations));
  }
  return { unsupported: buildSpec(projectName, [collected]).unsupported, conflicts };
}

/**
 * Runs the collect pass for a service that has not started from it: one that failed in it (after
 * a file change), or a service file that appeared while `run` runs. On success, the handlers it
 * registers become what it is expected to register and it starts. A failure, a resource nobody
 * serves, or an event another service handles (`owner`) is reported and it waits for a file
 * change. Resolves to what it declared once it starts, else undefined.
 */
export async function recollectAndStart(
  prepared: PreparedProject,
  owner: HandlerOwner,
  supervisor: ServiceSupervisor,
  service: PreparedService,
  output: Output,
  dotenv?: ReadonlyMap<string, string>,
  /**
   * Collect it as a worker thread, from its thread bundle (when it has one), as at start: a
   * service that runs as a thread needs no other bundle. @default false (a process)
   */
  threads = false,
): Promise<CollectedService | undefined> {
  supervisor.service = service;
  const [found] = await collect(prepared.project, [service], { ...(dotenv ? { dotenv } : {}), threads });
  if (!found) return undefined;
  const imports = importedServices(prepared.services, service);
  const collected: CollectedService = imports.length > 0 ? { ...found, imports } : found;
  if (collected.failure) {
    failCollected(supervisor, collected.failure, prepared.project.dir);
    return undefined;
  }
  // As at start, where a resource nobody serves stops run: refused, and it waits for a fix.
  const { unsupported, conflicts } = declarationRefusals(prepared.project.name, collected, owner);
  if (unsupported.length > 0) {
    for (const u of unsupported) output.error(u);
    output.error(
      `service "${supervisor.name}" is not started: it declares what nitric-like does not serve (listed above), it serves ${SERVED_KINDS}; save a fix and it starts`,
    );
    supervisor.waitForChange(unsupported.join("; "));
    return undefined;
  }
  const [conflict] = conflicts;
  if (conflict !== undefined) {
    output.error(conflict);
    output.info(`  service "${supervisor.name}" waits for a file change`);
    supervisor.waitForChange(conflict);
    return undefined;
  }
  supervisor.expected = collected.handlers.map((h) =>
    h.route === undefined ? { socket: h.socket, event: h.event } : { socket: h.socket, event: h.event, route: h.route },
  );
  await supervisor.restart(service);
  return collected;
}

/**
 * Calls `onReady` once, when every supervisor has started (or ended cleanly with nothing expected
 * of it: ServiceSupervisor.idle); warns once when, after `timeoutMs`,
 * some are still starting (naming the handlers not registered yet). Call what it returns after
 * adding a supervisor to `supervisors` (with it) or taking one out.
 */
export function whenAllStarted(
  supervisors: ServiceSupervisor[],
  timeoutMs: number,
  output: Output,
  onReady: () => void,
): (added?: ServiceSupervisor) => void {
  let ready = false;
  const check = () => {
    if (ready || !supervisors.every((s) => s.state === "started" || (s.state === "waiting" && s.idle))) return;
    ready = true;
    clearTimeout(timer);
    onReady();
  };
  const timer = setTimeout(() => {
    const starting = supervisors.filter((s) => s.state === "starting").map((s) => `"${s.name}"`);
    if (ready || starting.length === 0) return;
    output.warn(
      `still waiting after ${timeoutMs / 1000} s for service${starting.length === 1 ? "" : "s"} ${starting.join(", ")} to register ${starting.length === 1 ? "its" : "their"} handlers; ready once ${starting.length === 1 ? "it does" : "they do"}`,
    );
  }, timeoutMs);
  timer.unref();
  for (const s of supervisors) s.onStateChange(check);
  check();
  // A service added to `supervisors` since (or one taken out): checked from now on.
  return (added) => {
    added?.onStateChange(check);
    check();
  };
}

/**
 * What `run --no-watch` says as it exits 1 because the services `names` did not start and nothing
 * will start them again, so `ready` can never come (stopWhenAllWait; under a provider that hosts
 * the services, those that failed their collect pass).
 */
export function cannotBeReady(names: readonly string[]): string {
  const one = names.length === 1;
  return `service${one ? "" : "s"} ${names.map((n) => JSON.stringify(n)).join(", ")} did not start, and with --no-watch ${one ? "it does" : "they do"} not start again, so run cannot be ready: fix the problems above and start run again (without --no-watch, run serves the other services while you fix ${one ? "it" : "them"})`;
}

/**
 * Under `run --no-watch` nothing starts a service that waits again, so `run` says so and calls
 * `stop` (exit 1) once it has nothing left to wait for:
 * - before `ready`, once every service has either started or failed and one of them failed:
 *   `ready` promises that every service started (a script, CI or the test kit waits for it), and
 *   the failed one never will. With watching, the others serve while a save fixes it; without,
 *   nothing will, so serving the rest with no `ready` would leave whoever waits for it hanging, and
 *   a `ready` for part of the app would break its promise. Every service settles first, so each
 *   failure's cause is printed, not only the first one's;
 * - after `ready` (a service that crashed in a loop since), once every service waits: the others
 *   keep serving their clients meanwhile, as with watching.
 */
export function stopWhenAllWait(supervisors: ServiceSupervisor[], output: Output, stop: () => void): void {
  let stopped = false;
  let wasReady = false;
  const failed = (s: ServiceSupervisor) => s.state === "waiting" && !s.idle;
  const check = () => {
    if (stopped || supervisors.length === 0) return;
    if (supervisors.every((s) => s.state === "started" || (s.state === "waiting" && s.idle))) wasReady = true;
    const settled = supervisors.every((s) => s.state !== "starting");
    const notStarted = supervisors.filter(failed);
    if (supervisors.every((s) => s.state === "waiting")) {
      output.error(
        "no service is running, and with --no-watch none starts again: fix the problems above and start run again",
      );
    } else if (!wasReady && settled && notStarted.length > 0) {
      output.error(cannotBeReady(notStarted.map((s) => s.name)));
    } else return;
    stopped = true;
    stop();
  };
  for (const s of supervisors) s.onStateChange(check);
}
