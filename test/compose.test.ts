// No Docker engine runs here: this keeps docker-compose.yml honest by reading it against the code.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CONFIG_KEYS, loadConfig } from '../src/core/config.ts';

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
}
const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as { services: Record<string, Service> };
const vigilServices = Object.entries(compose.services).filter(([, s]) => s.build !== undefined);

describe('docker-compose.yml', () => {
  it('has Vigil services built from this repository', () => {
    expect(vigilServices.length).toBeGreaterThan(0);
  });

  it.each(vigilServices)('%s uses only configuration keys the code knows, with valid values', (_name, svc) => {
    const env = svc.environment ?? {};
    for (const key of Object.keys(env)) expect(Object.keys(CONFIG_KEYS), `unknown key ${key}`).toContain(key);
    expect(() => loadConfig(env)).not.toThrow();
  });

  it.each(vigilServices)('%s runs a real vigil command and waits for healthy dependencies', (_name, svc) => {
    expect(['run', 'replay', 'sql']).toContain(svc.command?.[0]);
    expect(svc.healthcheck?.test.join(' ')).toContain('/healthz');
    for (const [dep, cond] of Object.entries(svc.depends_on ?? {})) {
      expect(compose.services[dep], dep).toBeDefined();
      expect(compose.services[dep]!.healthcheck, `${dep} needs a healthcheck`).toBeDefined();
      expect(cond.condition).toBe('service_healthy');
    }
  });

  it('points Vigil at the ClickHouse service with matching credentials', () => {
    const ch = compose.services.clickhouse!;
    for (const [, svc] of vigilServices) {
      const env = svc.environment ?? {};
      expect(env.CLICKHOUSE_URL).toBe('http://clickhouse:8123');
      expect(env.CLICKHOUSE_USER).toBe(ch.environment?.CLICKHOUSE_USER);
      expect(env.CLICKHOUSE_PASSWORD).toBe(ch.environment?.CLICKHOUSE_PASSWORD);
      expect(env.CLICKHOUSE_DATABASE).toBe(ch.environment?.CLICKHOUSE_DB);
      expect(env.HOST).toBe('0.0.0.0');
    }
  });

  it('the Dockerfile starts the CLI the services use', () => {
    const dockerfile = readFileSync('Dockerfile', 'utf8');
    expect(dockerfile).toMatch(/ENTRYPOINT \["node", "bin\/vigil.js"\]/);
    expect(dockerfile).toMatch(/npm ci/);
  });
});
