/**
 * The provider interface: what a provider implements so that the CLI can run an app with it.
 * `local` is built in; any other `--provider NAME` loads the installed package NAME and uses its
 * default export (or its export `provider`). A provider implements what it supports: `run`
 * (local development), `build` (write deployable artifacts), `up` and `down` (deploy and remove).
 * The CLI runs the collect pass and the spec checks first, so a provider only ever gets an app
 * that passed them. An error a provider throws with `userFacing: true` is shown to the user as
 * its message alone (say what went wrong and how to fix it); any other error is a bug, shown with
 * its stack.
 */
import type { Project, ServiceEntry } from "./project.js";
import type { Spec, WebsocketEvent } from "./spec.js";

/** Where a provider writes what users read: the CLI prefixes and colours it. */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** What the CLI gives a provider to run an app. */
export interface RunOptions {
  /** The project. */
  project: Project;
  /** The spec from the collect pass, so gateways can start before the services do. */
  spec: Spec;
  /** Where to log. */
  logger: Logger;
  /** Ignore the ports pinned in the project file and use ephemeral ones (tests, parallel runs). */
  randomPorts?: boolean;
}

/** One live handler registration. */
export interface HandlerRegistration {
  service: string;
  socket: string;
  event: WebsocketEvent;
}

/** A running provider. */
export interface RunningProvider {
  /**
   * True when the provider starts the services itself (an emulated cloud runs each in its own
   * function); the CLI then starts none and only reports.
   */
  readonly hostsServices?: boolean;
  /**
   * The gRPC endpoint (`127.0.0.1:port`) of a service. Each service has its own endpoint, which is
   * how the provider knows which service makes a call; it stays the same across restarts.
   */
  endpoint(service: string): Promise<string>;
  /** Tells the provider a service's process is (re)starting: its old handler streams are gone. */
  serviceStarting(service: string): void;
  /** Tells the provider a service's process has exited. */
  serviceExited(service: string, code: number | null, signal: string | null): void;
  /** The handler registrations live now. */
  registrations(): HandlerRegistration[];
  /** Calls back whenever registrations change. */
  onRegistrationsChanged(listener: () => void): void;
  /** Each socket's name and the URL clients connect to. */
  sockets(): { name: string; url: string }[];
  /** Closes client connections (1001, going away), ends handler streams, closes stores. */
  stop(): Promise<void>;
}

/** What the CLI gives a provider to build an app. */
export interface BuildOptions {
  /** The project. */
  project: Project;
  /** The checked spec. */
  spec: Spec;
  /** Every service with its entry file. */
  services: ServiceEntry[];
  /** Where to write, absolute; the provider creates it. */
  outDir: string;
  /** Where to log progress. */
  logger: Logger;
}

/** What a build wrote. */
export interface BuildResult {
  /** Absolute paths of the files written, the main one first. */
  files: string[];
}

/** What the CLI gives a provider to deploy an app (it builds first, into `outDir`). */
export interface DeployOptions extends BuildOptions {
  /** The stack (deployment) name. */
  stack: string;
  /** The region, when given on the command line. */
  region?: string;
}

/** A finished deployment. */
export interface DeployResult {
  /** Each socket's name and the URL clients connect to. */
  sockets: { name: string; url: string }[];
  /** False when the deployment was already up to date. */
  changed: boolean;
}

/** What the CLI gives a provider to remove a deployment. */
export interface DestroyOptions {
  /** The project. */
  project: Project;
  /** The stack (deployment) name. */
  stack: string;
  /** The region, when given on the command line. */
  region?: string;
  /** Where to log progress. */
  logger: Logger;
}

/** A provider package's export. */
export interface Provider {
  /** The provider's name, as given to `--provider`. */
  readonly name: string;
  /** Starts the provider for `nitric-like run`. */
  run?(options: RunOptions): Promise<RunningProvider>;
  /** Writes deployable artifacts for `nitric-like build`. */
  build?(options: BuildOptions): Promise<BuildResult>;
  /** Deploys for `nitric-like up`. */
  up?(options: DeployOptions): Promise<DeployResult>;
  /** Removes a deployment for `nitric-like down`. */
  down?(options: DestroyOptions): Promise<void>;
}
