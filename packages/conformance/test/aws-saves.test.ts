// Under `run --provider aws`, a save rebuilds only the functions whose files it changed: through
// the real CLI and emulator, each function keeps a count in memory, which survives only while its
// execution environment does, so a function rebuilt (and restarted) is seen counting from 1 again.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { type App, cleanTemp, connect, countingService, startApp, stopAll, writeProject } from "../src/harness.js";

afterEach(async () => {
  expect(await stopAll()).toEqual([]);
});
afterAll(cleanTemp);

/** Sends one message to socket `name` and gives the answer. */
async function ask(app: App, name: string): Promise<string> {
  const client = await connect(app.url(name));
  try {
    client.ws.send("?");
    return (await client.next()).text;
  } finally {
    client.close();
  }
}

describe("run --provider aws, a save", () => {
  it("rebuilds the functions whose files it changed and no other: one only A imports, one both import, one saved as it was", async () => {
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
    const app = await startApp(project, ["--provider", "aws", "--verbose"], {}, { readyTimeoutMs: 90000 });
    // run's lines, stdout's and stderr's (where it says what a save does).
    const said = () => `${app.stdout}\n${app.stderr}`;
    const saves = () =>
      said()
        .split("\n")
        .filter((l) => l.startsWith("saved ")).length;
    expect(await ask(app, "a")).toBe("a1/s1 #1");
    expect(await ask(app, "b")).toBe("s1 #1");

    // A file only a imports: a's function is rebuilt, b's keeps its environment (its count).
    writeFileSync(join(project, "lib", "only-a.ts"), 'export const A = "a2";\n');
    await app.waitFor(/^saved lib\/only-a\.ts: rebuilding "a"; not "b" \(reads none of it\)$/m, 30000);
    await app.waitFor(/service "a" restarted/, 60000);
    expect(await ask(app, "a")).toBe("a2/s1 #1");
    expect(await ask(app, "b")).toBe("s1 #2");
    expect(said()).not.toMatch(/restarting service "b"|bundled service "b" \(function bundle\)/);

    // The file both import, saved as it was (a touch): neither is rebuilt; both keep their counts.
    const shared = join(project, "lib", "shared.ts");
    writeFileSync(shared, readFileSync(shared));
    await app.waitFor(
      /^saved lib\/shared\.ts: rebuilding no function; not "a", "b" \(saved as it was built from\)$/m,
      30000,
    );
    const before = saves();
    expect(await ask(app, "a")).toBe("a2/s1 #2");
    expect(await ask(app, "b")).toBe("s1 #3");

    // Changed: both are rebuilt.
    writeFileSync(shared, 'export const SHARED = "s2";\n');
    await app.waitFor(/^saved lib\/shared\.ts: rebuilding "a", "b"$/m, 30000);
    await app.waitFor(/service "b" restarted/, 60000);
    expect(saves()).toBe(before + 1);
    expect(await ask(app, "a")).toBe("a2/s2 #1");
    expect(await ask(app, "b")).toBe("s2 #1");

    // A change that does not compile keeps both functions; the broken line undone (the file back as
    // they were built from) is said once for each, so the error is not the last word, and they run on.
    writeFileSync(shared, "export const SHARED = ;\n");
    await expect.poll(() => said().split('Unexpected ";"').length - 1, { timeout: 60000 }).toBe(2);
    writeFileSync(shared, 'export const SHARED = "s2";\n');
    for (const name of ["a", "b"])
      await app.waitFor(
        new RegExp(
          `^lib/shared\\.ts changed: service "${name}" runs these files already \\(the save that failed left it running on them\\); not restarted$`,
          "m",
        ),
        30000,
      );
    expect(await ask(app, "a")).toBe("a2/s2 #2");
    expect(await ask(app, "b")).toBe("s2 #2");
    expect((await app.stop()).code).toBe(0);
  }, 240000);
});
