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
  deploy?: { replicas?: number };
}
const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as { services: Record<string, Service> };
const vigilServices = Object.entries(compose.services).filter(([, s]) => s.build !== undefined);
const role = (svc: Service) => svc.command?.[0];
/** The commands that open the findings store (and serve the API). */
const storeRoles = ['run', 'api'];
const storeServices = vigilServices.filter(([, s]) => storeRoles.includes(role(s) ?? ''));
const byRole = (r: string) => vigilServices.filter(([, s]) => role(s) === r);

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
    expect(['run', 'replay', 'sql', 'feeds', 'detect', 'api']).toContain(role(svc));
    expect(svc.healthcheck?.test.join(' ')).toContain('/healthz');
    for (const [dep, cond] of Object.entries(svc.depends_on ?? {})) {
      expect(compose.services[dep], dep).toBeDefined();
      expect(compose.services[dep]!.healthcheck, `${dep} needs a healthcheck`).toBeDefined();
      expect(cond.condition).toBe('service_healthy');
    }
  });

  it('points the services that hold the store at the ClickHouse service with matching credentials', () => {
    expect(storeServices.length).toBeGreaterThan(0);
    const ch = compose.services.clickhouse!;
    for (const [name, svc] of storeServices) {
      const env = svc.environment ?? {};
      expect(env.CLICKHOUSE_URL, name).toBe('http://clickhouse:8123');
      expect(env.CLICKHOUSE_USER).toBe(ch.environment?.CLICKHOUSE_USER);
      expect(env.CLICKHOUSE_PASSWORD).toBe(ch.environment?.CLICKHOUSE_PASSWORD);
      expect(env.CLICKHOUSE_DATABASE).toBe(ch.environment?.CLICKHOUSE_DB);
      expect(svc.depends_on?.clickhouse?.condition, name).toBe('service_healthy');
    }
    for (const [, svc] of vigilServices) expect(svc.environment?.HOST).toBe('0.0.0.0');
  });

  it('keeps ClickHouse settings away from the roles that do not hold the store', () => {
    for (const [name, svc] of vigilServices.filter(([, s]) => !storeRoles.includes(role(s) ?? ''))) {
      for (const key of Object.keys(svc.environment ?? {})) expect(key.startsWith('CLICKHOUSE_'), `${name}: ${key}`).toBe(false);
      expect(svc.depends_on?.clickhouse, name).toBeUndefined();
    }
  });

  it('runs Kafka as one KRaft node, Redis and ClickHouse, each with a healthcheck', () => {
    const kafka = compose.services.kafka!;
    expect(kafka.image).toMatch(/^apache\/kafka:\d/);
    const env = kafka.environment ?? {};
    expect(env.KAFKA_PROCESS_ROLES).toBe('broker,controller');
    expect(env.KAFKA_CONTROLLER_QUORUM_VOTERS).toBe(`${env.KAFKA_NODE_ID}@kafka:9093`);
    expect(env.KAFKA_ADVERTISED_LISTENERS).toBe('PLAINTEXT://kafka:9092');
    expect(env.CLUSTER_ID).toMatch(/^[A-Za-z0-9_-]{22}$/); // a KRaft cluster id: 16 bytes, base64url
    expect(Buffer.from(env.CLUSTER_ID!, 'base64url')).toHaveLength(16);
    // One node: the internal topics cannot have more replicas than brokers.
    expect(env.KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR).toBe(1);
    expect(env.KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR).toBe(1);
    expect(kafka.healthcheck?.test.join(' ')).toMatch(/kafka-broker-api-versions\.sh --bootstrap-server 127\.0\.0\.1:9092/);
    expect(compose.services.redis?.image).toMatch(/^redis:/);
    expect(compose.services.redis?.healthcheck?.test.join(' ')).toContain('redis-cli ping');
    expect(compose.services.clickhouse?.image).toMatch(/^clickhouse\/clickhouse-server:/);
    expect(compose.services.clickhouse?.healthcheck).toBeDefined();
  });

  it('runs the distributed roles: feeds ×1, detect ×N, api ×1, all on the Kafka service', () => {
    expect(byRole('feeds')).toHaveLength(1);
    expect(byRole('api')).toHaveLength(1);
    expect(byRole('detect')).toHaveLength(1);
    const [, detect] = byRole('detect')[0]!;
    expect(detect.deploy?.replicas).toBeGreaterThanOrEqual(2);
    for (const [name, svc] of [...byRole('feeds'), ...byRole('detect'), ...byRole('api')]) {
      expect(svc.environment?.KAFKA_BROKERS, name).toBe('kafka:9092');
      expect(svc.depends_on?.kafka?.condition, name).toBe('service_healthy');
      // Everything shares the default topic prefix (and so the topics and groups).
      expect(svc.environment?.VIGIL_TOPIC_PREFIX ?? '', name).toBe('');
    }
    // The workers keep their state in the Redis service, and wait for it.
    expect(detect.environment?.REDIS_URL).toBe('redis://redis:6379');
    expect(detect.depends_on?.redis?.condition).toBe('service_healthy');
    // The feed has something to connect.
    const [, feeds] = byRole('feeds')[0]!;
    expect(loadConfig(feeds.environment ?? {}).feeds.length).toBeGreaterThan(0);
    // A group new to a topic starts at its end: the consumers are up before anything is produced to them.
    expect(detect.depends_on?.api?.condition).toBe('service_healthy');
    expect(feeds.depends_on?.detect?.condition).toBe('service_healthy');
  });

  it('health checks of the roles without the API ask their VIGIL_HEALTH_PORT', () => {
    for (const [name, svc] of [...byRole('feeds'), ...byRole('detect')]) {
      const port = loadConfig(svc.environment ?? {}).VIGIL_HEALTH_PORT;
      expect(port, name).toBeDefined();
      expect(svc.healthcheck?.test.join(' '), name).toContain(`http://127.0.0.1:${port}/healthz`);
    }
    for (const [name, svc] of storeServices) {
      expect(svc.healthcheck?.test.join(' '), name).toContain(`http://127.0.0.1:${loadConfig(svc.environment ?? {}).PORT}/healthz`);
    }
  });

  it('the Dockerfile starts the CLI the services use', () => {
    const dockerfile = readFileSync('Dockerfile', 'utf8');
    expect(dockerfile).toMatch(/ENTRYPOINT \["node", "--max-semi-space-size=\d+", "bin\/vigil.js"\]/);
    expect(dockerfile).toMatch(/npm ci/);
  });

  it('every way of starting Vigil (bin shebang, npm start, the bench, the image) runs Node with one young-generation size', () => {
    const flag = /--max-semi-space-size=(\d+)/;
    const scripts = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }).scripts;
    const shebang = readFileSync('bin/vigil.js', 'utf8').split('\n')[0]!;
    expect(shebang).toMatch(/^#!\/usr\/bin\/env -S node /);
    const sizes = [shebang, scripts.start!, scripts.bench!, readFileSync('Dockerfile', 'utf8')].map((s) => flag.exec(s)?.[1]);
    expect(sizes[0]).toBeDefined();
    expect(new Set(sizes)).toEqual(new Set([sizes[0]]));
  });
});
