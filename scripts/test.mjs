#!/usr/bin/env node
// The one test command (`pnpm test`): build, type-check the examples, run every test (unit,
// conformance, end to end), then print the closing line CI reads: `N passed, N failed`.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const report = join(root, ".vitest-report.json");
let failedSteps = 0;

function step(title, command, args) {
  process.stderr.write(`\n== ${title}: ${command} ${args.join(" ")}\n`);
  const result = spawnSync(command, args, { cwd: root, stdio: "inherit" });
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
if (built) {
  rmSync(report, { force: true });
  step("tests", join(root, "node_modules", ".bin", "vitest"), [
    "run",
    "--reporter=default",
    "--reporter=json",
    `--outputFile.json=${report}`,
    ...process.argv.slice(2),
  ]);
  if (existsSync(report)) {
    const r = JSON.parse(readFileSync(report, "utf8"));
    passed = r.numPassedTests;
    failed = r.numFailedTests + (r.numTotalTestSuites > 0 && r.success === false && r.numFailedTests === 0 ? 1 : 0);
    rmSync(report, { force: true });
  } else {
    failed++;
  }
}
failed += failedSteps > 0 && failed === 0 ? failedSteps : 0;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || failedSteps > 0 ? 1 : 0);
