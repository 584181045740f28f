// building() with real esbuild builds: its service process lives while a build is in flight, is
// gone once the last one ends, and comes back for the next build.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { build, stop } from "esbuild";
import { expect, it } from "vitest";
import { building } from "./esbuild-service.js";

/** The pids of this process's esbuild service children (every thread's children, zombies left out). */
function esbuildServices(): number[] {
  const pids: number[] = [];
  for (const task of readdirSync("/proc/self/task")) {
    const file = `/proc/self/task/${task}/children`;
    if (!existsSync(file)) continue;
    for (const pid of readFileSync(file, "utf8").trim().split(/\s+/).filter(Boolean)) {
      try {
        const state = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0];
        if (state !== "Z" && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("--service="))
          pids.push(Number(pid));
      } catch {
        // Exited while being read.
      }
    }
  }
  return pids;
}

async function until(check: () => boolean, what: string) {
  for (const started = Date.now(); !check(); ) {
    if (Date.now() - started > 5000) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const source = (text: string) => ({
  stdin: { contents: `export const text = ${JSON.stringify(text)};`, loader: "js" as const },
  write: false,
  format: "esm" as const,
  logLevel: "silent" as const,
});

it("keeps esbuild's service while any build is in flight and stops it once the last one ends", async () => {
  let release = () => {};
  const gate = new Promise<void>((r) => {
    release = r;
  });
  let loading = () => {};
  const loadingStarted = new Promise<void>((r) => {
    loading = r;
  });
  // A build held in its plugin until released, so that a second build starts and ends inside it.
  const held = building(stop, () =>
    build({
      ...source("held"),
      plugins: [
        {
          name: "gate",
          setup(b) {
            b.onLoad({ filter: /.*/, namespace: "file" }, () => undefined);
            b.onStart(async () => {
              loading();
              await gate;
            });
          },
        },
      ],
    }),
  );
  await loadingStarted;
  const quick = await building(stop, () => build(source("quick")));
  expect(quick.outputFiles?.[0]?.text).toContain('"quick"');
  // The held build is still in flight: its service must stay (stopping it would fail that build).
  expect(esbuildServices()).toHaveLength(1);
  release();
  const result = await held;
  expect(result.outputFiles?.[0]?.text).toContain('"held"');
  await until(() => esbuildServices().length === 0, "esbuild's service has stopped");
});

it("starts esbuild's service again for a build after it was stopped, and stops it after", async () => {
  await building(stop, () => build(source("first")));
  await until(() => esbuildServices().length === 0, "esbuild's service has stopped");
  const again = await building(stop, () => build(source("again")));
  expect(again.outputFiles?.[0]?.text).toContain('"again"');
  await until(() => esbuildServices().length === 0, "esbuild's service has stopped again");
});

it("stops esbuild's service after a build that fails, and passes the failure on", async () => {
  await expect(
    building(stop, () => build({ ...source("x"), stdin: { contents: "export const = ;", loader: "js" } })),
  ).rejects.toThrow(/Build failed/);
  await until(() => esbuildServices().length === 0, "esbuild's service has stopped");
});
