// The committed generated code must be exactly what `buf generate` makes from proto/: a change to
// a .proto file without regenerating (pnpm gen) fails here.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

const contracts = fileURLToPath(new URL("..", import.meta.url));
const proto = fileURLToPath(new URL("../../../proto", import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

it("committed generated code matches a fresh buf generate", () => {
  const out = mkdtempSync(join(tmpdir(), "nitric-like-gen-"));
  try {
    const bin = join(contracts, "node_modules", ".bin");
    // buf.gen.yaml writes to ../packages/contracts/src/gen relative to the output base.
    const result = spawnSync(join(bin, "buf"), ["generate", "--output", join(out, "base")], {
      cwd: proto,
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
      encoding: "utf8",
    });
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    const fresh = join(out, "packages", "contracts", "src", "gen");
    const committed = join(contracts, "src", "gen");
    const list = (d: string) =>
      files(d)
        .map((f) => relative(d, f))
        .sort();
    expect(list(fresh)).toEqual(list(committed));
    for (const f of list(fresh)) {
      expect(readFileSync(join(fresh, f), "utf8"), `${f} differs: run pnpm gen`).toBe(
        readFileSync(join(committed, f), "utf8"),
      );
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
