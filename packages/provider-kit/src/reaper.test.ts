import { type ChildProcess, spawn } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { endLineageWithThisProcess, lineageCarriers, lineageScanPasses, newLineage, withLineage } from "./reaper.js";

const linux = process.platform === "linux";

/** Processes a test started, killed after it if still there. */
const started: ChildProcess[] = [];

afterEach(() => {
  for (const child of started.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
});

/** A `sleep` in a session of its own (as a daemon would be) whose environment carries `lineage`. */
function carrier(lineage: string): ChildProcess {
  const child = spawn("sleep", ["1000"], {
    env: withLineage(process.env, lineage),
    stdio: "ignore",
    detached: true,
  });
  started.push(child);
  return child;
}

/** Resolves with the signal `child` ended by. */
function ended(child: ChildProcess): Promise<NodeJS.Signals | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.signalCode);
  return new Promise((resolve) => child.once("exit", (_code, signal) => resolve(signal)));
}

/** Resolves after `n` turns of the event loop. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

describe.runIf(linux)("lineage scans: one pass over /proc answers every lineage asked for meanwhile", () => {
  it("20 lineages with no process ended at once cost one pass over /proc", async () => {
    const ends = Array.from({ length: 20 }, () => endLineageWithThisProcess(newLineage()));
    const before = lineageScanPasses();
    await Promise.all(ends.map((end) => end()));
    expect(lineageScanPasses() - before).toBe(1);
  });

  it("20 lineages ended at once share their scans, and each one's process still ends", async () => {
    const lineages = Array.from({ length: 20 }, () => newLineage());
    const children = lineages.map(carrier);
    const ends = lineages.map((lineage) => endLineageWithThisProcess(lineage));
    const before = lineageScanPasses();
    await Promise.all(ends.map((end) => end()));
    // Each ended by the SIGTERM sent to it, none left for the SIGKILL.
    expect(await Promise.all(children.map(ended))).toEqual(children.map(() => "SIGTERM"));
    // One lineage's end makes at most 10 passes (one, one every 250 ms of its 2 s grace, one
    // before SIGKILL); 20 ended apart make at least 40 (a first pass each, and one that finds none).
    expect(lineageScanPasses() - before).toBeLessThanOrEqual(10);
  });

  it("a lineage asked for while a pass is under way finds its process, wherever the pass has got to", async () => {
    const lineages = Array.from({ length: 8 }, () => newLineage());
    const children = lineages.map(carrier);
    // Processes listed after the carriers (pids are given in order), so that the pass has read
    // the carriers' environments for others some time before it ends.
    for (let i = 0; i < 64; i++) carrier(newLineage());
    let passed = false;
    const first = lineageCarriers([newLineage()]).then((pids) => {
      passed = true;
      return pids;
    });
    // A lineage asked for every few turns of the event loop until that pass has ended (400 at most).
    const answers: Promise<number[]>[] = [];
    const asked: (number | undefined)[] = [];
    while (!passed && answers.length < 400) {
      await turns(4);
      const at = answers.length % lineages.length;
      answers.push(lineageCarriers([lineages[at] as string]));
      asked.push(children[at]?.pid);
    }
    expect(await first).toEqual([]);
    expect(await Promise.all(answers)).toEqual(asked.map((pid) => [pid]));
  });

  it("a scan asked for several lineages finds the processes of each, and leaves out this process", async () => {
    const [a, b] = [newLineage(), newLineage()];
    const children = [carrier(a), carrier(b)];
    const found = await lineageCarriers([a, b]);
    expect(found.sort((x, y) => x - y)).toEqual(children.map((child) => child.pid).sort((x, y) => (x ?? 0) - (y ?? 0)));
  });
});
