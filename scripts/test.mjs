#!/usr/bin/env node
// The one test command (`pnpm test`): build, type-check the examples, run every test (unit,
// conformance, end to end) on this Node, some again on Node 22, then print the closing line CI
// reads: `N passed, N failed`.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const report = join(root, ".vitest-report.json");
let failedSteps = 0;

function step(title, command, args, env = process.env) {
  process.stderr.write(`\n== ${title}: ${command} ${args.join(" ")}\n`);
  const result = spawnSync(command, args, { cwd: root, stdio: "inherit", env });
  if (result.status !== 0) {
    process.stderr.write(`== ${title} failed (exit ${result.status ?? result.signal})\n`);
    failedSteps++;
  }
  return result.status === 0;
}

const tsc = join(root, "node_modules", ".bin", "tsc");
step("lint and format (biome)", join(root, "node_modules", ".bin", "biome"), ["check", "."]);
const built =
  step("build", tsc, ["-b"]) &&
  step("bundle the CLI", process.execPath, [join(root, "packages", "cli", "scripts", "bundle.mjs")]);
// vitest does not type-check: tsc checks the tests (and their @ts-expect-error lines), fixtures,
// examples and benchmark apps.
step("type-check tests, fixtures, examples", tsc, ["-p", "tsconfig.test.json"]);

let passed = 0;
let failed = 0;
/** Runs vitest with `args` and adds its counts to passed and failed. */
function tests(title, args, env) {
  rmSync(report, { force: true });
  step(
    title,
    join(root, "node_modules", ".bin", "vitest"),
    ["run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`, ...args],
    env,
  );
  if (existsSync(report)) {
    const r = JSON.parse(readFileSync(report, "utf8"));
    passed += r.numPassedTests;
    failed += r.numFailedTests + (r.numTotalTestSuites > 0 && r.success === false && r.numFailedTests === 0 ? 1 : 0);
    rmSync(report, { force: true });
  } else {
    failed++;
  }
}

// Node 22, which Lambda runs, from the npm registry's `node` package (a Node binary, about 7 s to
// install): the new-project and chat tests run on it too (NODE22_TESTS=some, the default unless
// test files are named), or the whole suite (NODE22_TESTS=all), or none (NODE22_TESTS=none).
const NODE22_TESTS = [
  "packages/conformance/test/new-project.test.ts",
  "packages/conformance/test/chat.test.ts",
  "examples/chat/test/chat.test.ts",
];
function node22Bin() {
  const prefix = join(root, "node_modules", ".cache", "node22");
  const ok = step("install Node 22 from the npm registry", "npm", [
    "install",
    "--no-save",
    "--no-package-lock",
    "--prefer-offline",
    "--no-audit",
    "--no-fund",
    "--prefix",
    prefix,
    "node@22",
  ]);
  const bin = join(prefix, "node_modules", "node", "bin");
  const version = spawnSync(join(bin, "node"), ["--version"], { encoding: "utf8" }).stdout?.trim() ?? "";
  if (ok && version.startsWith("v22.")) return { bin, version };
  process.stderr.write(`== no Node 22 from the npm registry (got "${version}")\n`);
  failedSteps++;
  return undefined;
}

if (built) {
  tests("tests", process.argv.slice(2), process.env);
  const which = process.env.NODE22_TESTS ?? (process.argv.length > 2 ? "none" : "some");
  const node22 = which === "none" ? undefined : node22Bin();
  if (node22) {
    const env = { ...process.env, PATH: `${node22.bin}:${process.env.PATH}` };
    tests(`tests on Node ${node22.version}`, which === "all" ? [] : NODE22_TESTS, env);
  }
}
failed += failedSteps > 0 && failed === 0 ? failedSteps : 0;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || failedSteps > 0 ? 1 : 0);
