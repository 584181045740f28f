import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "packages/*/src/**/*.test.ts",
      "packages/*/test/**/*.test.ts",
      "providers/*/src/**/*.test.ts",
      "providers/*/test/**/*.test.ts",
      "examples/*/test/**/*.test.ts",
    ],
    // End-to-end tests start real processes and servers, and wait on them: with two files at a time
    // a quarter of the machine's 2 cores sat idle (the whole suite 1,436 s; three at a time 1,142 s).
    pool: "forks",
    maxWorkers: 3,
    testTimeout: 20000,
    hookTimeout: 30000,
  },
});
