#!/usr/bin/env node
// The one test command (`pnpm test`): build, type-check the examples, run every test (unit,
// conformance, end to end) on this Node, some again on Node 22, then print the closing line CI
// reads: `N passed, N failed`.
import { spawn, spawnSync } from "node:child_process";
import { appendFileSync, closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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
const vitest = join(root, "node_modules", ".bin", "vitest");
const vitestArgs = (reportFile, args) => [
  "run",
  "--reporter=default",
  "--reporter=json",
  `--outputFile.json=${reportFile}`,
  ...args,
];
/** Adds the counts of a vitest JSON report to passed and failed (a missing report is a failure). */
function count(reportFile) {
  if (existsSync(reportFile)) {
    const r = JSON.parse(readFileSync(reportFile, "utf8"));
    passed += r.numPassedTests;
    failed += r.numFailedTests + (r.numTotalTestSuites > 0 && r.success === false && r.numFailedTests === 0 ? 1 : 0);
    rmSync(reportFile, { force: true });
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
const node22Prefix = join(root, "node_modules", ".cache", "node22");
const node22Install = [
  "install",
  "--no-save",
  "--no-package-lock",
  "--prefer-offline",
  "--no-audit",
  "--no-fund",
  "--prefix",
  node22Prefix,
  "node@22",
];
/** The installed Node 22's bin folder and version, or undefined (said, and counted as a failed step). */
function node22Bin() {
  const bin = join(node22Prefix, "node_modules", "node", "bin");
  const version = spawnSync(join(bin, "node"), ["--version"], { encoding: "utf8" }).stdout?.trim() ?? "";
  if (version.startsWith("v22.")) return { bin, version };
  process.stderr.write(`== no Node 22 from the npm registry (got "${version}")\n`);
  failedSteps++;
  return undefined;
}

/**
 * A child run to its end with its output kept in a file (printed once the main run is done, so
 * that the two runs' lines never interleave); resolves with its exit status.
 */
function besideMainRun(command, args, env, log) {
  return new Promise((done) => {
    const out = openSync(log, "a");
    const child = spawn(command, args, { cwd: root, env, stdio: ["ignore", out, out] });
    child.on("error", (error) => {
      appendFileSync(log, `${error.message}\n`);
      closeSync(out);
      done(1);
    });
    child.on("exit", (code, signal) => {
      closeSync(out);
      done(code ?? signal);
    });
  });
}

if (built) {
  const which = process.env.NODE22_TESTS ?? (process.argv.length > 2 ? "none" : "some");
  // The Node 22 pass of a few test files runs beside the main run, not after it: the main run
  // leaves a fifth of the 2 cores of the machine CI runs on idle (its end-to-end tests wait on
  // processes), which the Node 22 pass (mostly npm installs) fills; after it, it added about 2
  // minutes to the suite. The whole suite on Node 22 (NODE22_TESTS=all) runs after the main run.
  const node22Log = join(root, ".node22-tests.log");
  const node22Report = join(root, ".vitest-report-node22.json");
  let node22Pass;
  if (which !== "none") {
    rmSync(node22Log, { force: true });
    rmSync(node22Report, { force: true });
    const title = "install Node 22 from the npm registry";
    const installed = besideMainRun("npm", node22Install, process.env, node22Log).then((status) => ({
      status,
      title,
    }));
    node22Pass =
      which === "all"
        ? installed
        : installed.then(async (install) => {
            if (install.status !== 0) return install;
            const node22 = node22Bin();
            if (node22 === undefined) return { status: 0, title: install.title };
            const env = { ...process.env, PATH: `${node22.bin}:${process.env.PATH}` };
            const title = `tests on Node ${node22.version} (beside the main run)`;
            writeFileSync(node22Log, `\n== ${title}: vitest ${vitestArgs(node22Report, NODE22_TESTS).join(" ")}\n`, {
              flag: "a",
            });
            return {
              status: await besideMainRun(vitest, vitestArgs(node22Report, NODE22_TESTS), env, node22Log),
              title,
              ran: true,
            };
          });
    process.stderr.write(
      `\n== ${which === "all" ? "installing Node 22" : `the ${NODE22_TESTS.length} test files on Node 22 run`} beside the main run; output after it\n`,
    );
  }

  rmSync(report, { force: true });
  // Not spawnSync: the Node 22 pass's next command starts while this runs.
  process.stderr.write(`\n== tests: ${vitest} ${vitestArgs(report, process.argv.slice(2)).join(" ")}\n`);
  const status = await new Promise((done) => {
    const child = spawn(vitest, vitestArgs(report, process.argv.slice(2)), { cwd: root, stdio: "inherit" });
    child.on("error", () => done(1));
    child.on("exit", (code, signal) => done(code ?? signal));
  });
  if (status !== 0) {
    process.stderr.write(`== tests failed (exit ${status})\n`);
    failedSteps++;
  }
  count(report);

  if (node22Pass !== undefined) {
    const result = await node22Pass;
    process.stderr.write(`\n== install Node 22 from the npm registry: npm ${node22Install.join(" ")}\n`);
    process.stderr.write(existsSync(node22Log) ? readFileSync(node22Log, "utf8") : "");
    rmSync(node22Log, { force: true });
    if (result.status !== 0) {
      process.stderr.write(`== ${result.title} failed (exit ${result.status})\n`);
      if (!result.ran) failedSteps++;
    }
    if (result.ran) count(node22Report);
    else if (which === "all" && result.status === 0) {
      const node22 = node22Bin();
      if (node22) {
        rmSync(report, { force: true });
        const env = { ...process.env, PATH: `${node22.bin}:${process.env.PATH}` };
        step(`tests on Node ${node22.version}`, vitest, vitestArgs(report, []), env);
        count(report);
      }
    }
  }
}
failed += failedSteps > 0 && failed === 0 ? failedSteps : 0;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || failedSteps > 0 ? 1 : 0);
