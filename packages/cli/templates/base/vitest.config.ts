// The test runner's limits, above the test kit's own waits: a message that never comes fails in
// 5 s with what was expected (expectMessage), a start in 30 s with the run's output (startApp),
// and stopAll() may wait for services to stop. vitest's defaults (5 s a test, 10 s a hook) would
// end the test first with only "Test timed out".
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 30_000,
  },
});
