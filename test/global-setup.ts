/**
 * Starts the local services (Kafka broker, Redis) once before the test run, so `npm test` works on a
 * fresh machine without a manual step: `node scripts/services.mjs start` is idempotent and quick when
 * they already run. Under CI a failure stops the run. Elsewhere the other test files still run, and
 * every test that needs the services fails with the reason (never skips).
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Why `services start` failed; '' when Kafka and Redis run. */
    servicesError: string;
  }
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export default function setup(project: TestProject): void {
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'services.mjs'), 'start'], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'pipe'],
    encoding: 'utf8',
  });
  const error = r.status === 0 ? '' : `npm run services start failed (exit ${r.status ?? r.signal}): ${r.stderr || r.error?.message || ''}`.trim();
  if (error && process.env.CI) throw new Error(error);
  if (error) process.stderr.write(`${error}\n(tests that need Kafka or Redis will fail)\n`);
  project.provide('servicesError', error);
}
