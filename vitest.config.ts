import { defineConfig } from 'vitest/config';

// chdb allows one data directory per process, so every test file runs in its own forked process.
export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    // Starts Kafka and Redis (scripts/services.mjs start, idempotent) before any test file runs.
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
