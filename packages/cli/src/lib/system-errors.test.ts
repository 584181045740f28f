import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { systemErrorMessage } from "./system-errors.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function temp(): string {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-syserr-"));
  dirs.push(dir);
  return dir;
}

/** The error `f` throws. */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (error) {
    return error;
  }
  throw new Error("expected an error");
}

describe("systemErrorMessage", () => {
  it("names a port in use, from a real listen, and the fix", async () => {
    const first = createServer();
    await new Promise<void>((r) => first.listen(0, "127.0.0.1", r));
    const port = (first.address() as { port: number }).port;
    const second = createServer();
    const error = await new Promise((r) => {
      second.once("error", r);
      second.listen(port, "127.0.0.1");
    });
    first.close();
    expect(systemErrorMessage(error)).toBe(
      `port ${port} (127.0.0.1:${port}) is already in use; stop what uses it, pick another port, or run with --random-ports`,
    );
  });

  it("names the file that stands where .nitric-like should be a folder", () => {
    const project = temp();
    writeFileSync(join(project, ".nitric-like"), "");
    const error = thrown(() => mkdirSync(join(project, ".nitric-like", "build"), { recursive: true }));
    expect(systemErrorMessage(error)).toBe(
      `"${project}/.nitric-like" is a file, not a folder; nitric-like keeps its build and kv data in "${project}/.nitric-like": move that file away and run again`,
    );
  });

  it("names a file that stands where a folder inside .nitric-like should be (mkdir's EEXIST)", () => {
    const state = join(temp(), ".nitric-like");
    mkdirSync(state);
    writeFileSync(join(state, "kv"), "");
    const error = thrown(() => mkdirSync(join(state, "kv"), { recursive: true }));
    expect(systemErrorMessage(error)).toBe(
      `${JSON.stringify(join(state, "kv"))} is a file, not a folder; nitric-like keeps its build and kv data in ${JSON.stringify(state)}: move that file away and run again`,
    );
    // A folder that is there already is no error of the user's (mkdir without recursive): a bug.
    expect(systemErrorMessage(thrown(() => mkdirSync(state)))).toBeUndefined();
  });

  it("names a missing file, also as the cause of another error", () => {
    const missing = join(temp(), "services", "gone.ts");
    const error = thrown(() => readFileSync(missing));
    const line = `"${missing}": no such file or folder (open); check the path, or create it`;
    expect(systemErrorMessage(error)).toBe(line);
    expect(systemErrorMessage(new Error("bundling failed", { cause: error }))).toBe(line);
  });

  it("says nothing of errors that are bugs, so they are reported as such", () => {
    expect(systemErrorMessage(new TypeError("x is not a function"))).toBeUndefined();
    expect(systemErrorMessage(Object.assign(new Error("odd"), { code: "ERR_ASSERTION" }))).toBeUndefined();
    expect(systemErrorMessage("a string")).toBeUndefined();
    expect(systemErrorMessage(undefined)).toBeUndefined();
  });
});
