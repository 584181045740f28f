// Under `run` on the local provider, a save restarts only the services whose files it changed:
// through the real CLI, each service keeps a count in memory, which survives only while its copy
// does, so a service restarted is seen counting from 1 again, on a client connected throughout.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  type App,
  type Client,
  cleanTemp,
  connect,
  countingService,
  startApp,
  stopAll,
  writeProject,
} from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

/** Sends one message on a client kept open and gives the answer. */
async function ask(client: Client): Promise<string> {
  client.ws.send("?");
  return (await client.next()).text;
}

/** How many lines of run's output match `pattern` (a multiline, global one). */
const lines = (app: App, pattern: RegExp) => [...`${app.stdout}\n${app.stderr}`.matchAll(pattern)].length;

describe("run, a save", () => {
  it("leaves running the services whose files it saved as they were built from, their clients and counts kept", async () => {
    const project = writeProject({
      "nitric-like.yaml": "name: saves\nservices:\n  - match: services/*.ts\n",
      "lib/only-a.ts": 'export const A = "a1";\n',
      "lib/shared.ts": 'export const SHARED = "s1";\n',
      "services/a.ts": countingService(
        "a",
        ['import { A } from "../lib/only-a.js";', 'import { SHARED } from "../lib/shared.js";'],
        "A + '/' + SHARED",
      ),
      "services/b.ts": countingService("b", ['import { SHARED } from "../lib/shared.js";'], "SHARED"),
    });
    const app = await startApp(project, ["--verbose"], {}, { readyTimeoutMs: 60000 });
    const a = await connect(app.url("a"));
    const b = await connect(app.url("b"));
    expect(await ask(a)).toBe("a1/s1 #1");
    expect(await ask(b)).toBe("s1 #1");

    // The file both import, saved as it was (a touch): neither restarts; both keep their counts.
    const shared = join(project, "lib", "shared.ts");
    writeFileSync(shared, readFileSync(shared));
    await app.waitFor(
      /^saved lib\/shared\.ts: rebuilding no service; not "a", "b" \(saved as it was built from\)$/m,
      20000,
    );
    expect(await ask(a)).toBe("a1/s1 #2");
    expect(await ask(b)).toBe("s1 #2");

    // A file only a imports, changed: a restarts (its client stays), b keeps its count.
    const onlyA = join(project, "lib", "only-a.ts");
    const rebuildsA = /^saved lib\/only-a\.ts: rebuilding "a"; not "b" \(reads none of it\)$/gm;
    writeFileSync(onlyA, 'export const A = "a2";\n');
    await app.waitFor(/lib\/only-a\.ts changed: restarting service "a"/, 30000);
    expect(await ask(a)).toBe("a2/s1 #1");
    expect(await ask(b)).toBe("s1 #3");

    // Saved again as it now is: a runs on, its new count kept.
    writeFileSync(onlyA, 'export const A = "a2";\n');
    await app.waitFor(
      /^saved lib\/only-a\.ts: rebuilding no service; not "a" \(saved as it was built from\), "b" \(reads none of it\)$/m,
      20000,
    );
    expect(await ask(a)).toBe("a2/s1 #2");

    // A change that does not compile keeps a running; the same bytes saved again are built again
    // (it does not run from them), and fail again.
    const broken = "export const A = ;\n";
    writeFileSync(onlyA, broken);
    await app.waitFor(/Unexpected ";"/, 30000);
    expect(lines(app, rebuildsA)).toBe(2);
    writeFileSync(onlyA, broken);
    await expect.poll(() => lines(app, /Unexpected ";"/gm), { timeout: 30000 }).toBe(2);
    expect(lines(app, rebuildsA)).toBe(3);
    expect(await ask(a)).toBe("a2/s1 #3");

    // The broken line undone (the file back as a runs it): said once, so the error is not the last
    // word, and a runs on, its count kept; saved as it is again, nothing more is said.
    const back =
      /^lib\/only-a\.ts changed: service "a" runs these files already \(the save that failed left it running on them\); not restarted$/gm;
    writeFileSync(onlyA, 'export const A = "a2";\n');
    await expect.poll(() => lines(app, back), { timeout: 20000 }).toBe(1);
    expect(await ask(a)).toBe("a2/s1 #4");
    writeFileSync(onlyA, 'export const A = "a2";\n');
    await expect
      .poll(() => lines(app, /^saved lib\/only-a\.ts: rebuilding no service; not "a" \(saved/gm), { timeout: 20000 })
      .toBe(3);
    expect(lines(app, back)).toBe(1);

    expect(lines(app, /restarting service "b"/gm)).toBe(0);
    expect(lines(app, /restarting service "a"/gm)).toBe(1);
    a.close();
    b.close();
    expect((await app.stop()).code).toBe(0);
  }, 120000);
});
