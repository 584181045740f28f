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
    // End-to-end tests start real processes and servers; the machine has 2 cores.
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 20000,
    hookTimeout: 30000,
  },
});
