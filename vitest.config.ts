import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Skips are part of the report: every skipped test prints why.
    reporters: ['default'],
    pool: 'forks',
  },
});
