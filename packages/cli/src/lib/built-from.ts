/**
 * What each service's running code was built from, as digests of its files: a save that leaves
 * them as they were (an editor's save of an unchanged buffer, a touch, a checkout of the same
 * contents) cannot change its bundle, so `run` leaves the service running, on either provider.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { relative, sep } from "node:path";

/** A file's contents as a digest; undefined when it cannot be read (gone). */
function contentOf(path: string): string | undefined {
  try {
    return createHash("sha256").update(readFileSync(path)).digest("hex");
  } catch {
    return undefined;
  }
}

/** The files `run` reads of a service's inputs: not those under node_modules (a package's own). */
export function ownFiles(paths: Iterable<string>): string[] {
  return [...paths].filter((p) => !p.includes(`${sep}node_modules${sep}`));
}

/** Each service's files (by name) as digests of what its running code was built from. */
export class BuiltFrom {
  private readonly digests = new Map<string, Map<string, string | undefined>>();
  /** The services whose last build failed (a compile error shown): put back to what runs. */
  private readonly failed = new Set<string>();

  /**
   * Reads `files` now, as what `service` is built from: read before its build, as the build reads
   * them, so a save during the build differs and builds again. Gives back how to put back what it
   * was built from before, for a build that does not run (it failed to compile or collect): the
   * same save again then differs, and retries. A later read is not undone.
   */
  read(service: string, files: Iterable<string>): () => void {
    const before = this.digests.get(service);
    const reading = new Map([...files].map((p) => [p, contentOf(p)]));
    this.digests.set(service, reading);
    this.failed.delete(service);
    return () => {
      if (this.digests.get(service) !== reading) return;
      this.failed.add(service);
      if (before === undefined) this.digests.delete(service);
      else this.digests.set(service, before);
    };
  }

  /**
   * Whether every one of `saved` is a file `service` was built from and holds what it held then:
   * false for a service not read, or a file it does not know (new to it).
   */
  unchanged(service: string, saved: Iterable<string>): boolean {
    const known = this.digests.get(service);
    if (known === undefined) return false;
    for (const p of saved) if (!known.has(p) || known.get(p) !== contentOf(p)) return false;
    return true;
  }

  /**
   * Whether `service`'s last build failed since what it runs was read (its error shown), once:
   * a save that then puts its files back as they were (an editor's undo of the broken line) is
   * said, so the error is not left as the last word, though nothing is rebuilt.
   */
  backAfterFailure(service: string): boolean {
    return this.failed.delete(service);
  }

  forget(service: string): void {
    this.digests.delete(service);
    this.failed.delete(service);
  }
}

/**
 * `run --verbose`, once a save: which services it rebuilds and which it leaves, and why, in the
 * same words under either provider (`saved lib/shared.ts: rebuilding "chat"; not "admin" (reads
 * none of it)`). `others` are the services none of whose files it saved; `what` is what a
 * service runs as, said when it rebuilds none (`function` under --provider aws, else `service`).
 */
export function savedLine(
  projectDir: string,
  changed: Iterable<string>,
  rebuilds: readonly string[],
  unchanged: readonly string[],
  others: readonly string[],
  what: "function" | "service",
): string {
  const shown = [...changed]
    .map((p) => relative(projectDir, p).split(sep).join("/"))
    .sort()
    .join(", ");
  const names = (list: readonly string[]) => list.map((n) => `"${n}"`).join(", ");
  const kept = [
    ...(unchanged.length > 0 ? [`${names(unchanged)} (saved as it was built from)`] : []),
    ...(others.length > 0 ? [`${names(others)} (reads none of it)`] : []),
  ];
  return `saved ${shown}: ${rebuilds.length > 0 ? `rebuilding ${names(rebuilds)}` : `rebuilding no ${what}`}${kept.length > 0 ? `; not ${kept.join(", ")}` : ""}`;
}

/**
 * A save that put a service's files back as its running code was built from, after a save that
 * failed to build: `services/chat.ts changed: service "chat" runs these files already ...`.
 */
export function backLine(projectDir: string, saved: readonly string[], service: string): string {
  const shown = saved.map((p) => relative(projectDir, p).split(sep).join("/")).sort()[0] ?? "a file";
  return `${shown} changed: service "${service}" runs these files already (the save that failed left it running on them); not restarted`;
}
