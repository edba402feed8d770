import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Starts (or finds) the real MongoDB-protocol server of the integration tests; see scripts/lib/test-server.mjs,
    // and a real Docker engine for test/docker (found or started, then stopped); see test/docker-global-setup.ts.
    globalSetup: ['test/global-setup.ts', 'test/docker-global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Skips are part of the report: every skipped test prints why.
    reporters: ['default', './test/support/summary-reporter.ts'],
    pool: 'forks',
  },
});
