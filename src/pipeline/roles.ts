/**
 * The building blocks the CLI roles compose: `vigil feeds` (live feeds → transport), `vigil detect`
 * (event topics → detectors → vigil.findings), `vigil api` (vigil.findings → store + alerts, the API),
 * and `vigil run`, which puts all of them in one process on one transport.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { AlertHub } from '../api/alert-hub.ts';
import type { Config } from '../core/config.ts';
import { ERR, VigilError } from '../core/errors.ts';
import { buildDetectors, rulesPath } from '../detectors/configure.ts';
import { RulesController } from '../detectors/rules-watch.ts';
import { diffRules, type RulesFile } from '../detectors/rules.ts';
import type { StateStore } from '../detectors/types.ts';
import { getAdapter } from '../feeds/registry.ts';
import { MemoryStateStore } from '../state/memory.ts';
import { RedisStateStore } from '../state/redis.ts';
import type { SpillConfig } from '../storage/finding-writer.ts';
import type { Store } from '../storage/types.ts';
import type { KafkaLogLevel, KafkaTransportOptions } from '../transport/kafka.ts';
import { createTransport } from '../transport/index.ts';
import type { OutgoingMessage, Subscription, Transport, TransportStats, SubscribeOptions } from '../transport/types.ts';
import { DetectorRunner, allDetectorTopics } from './detect.ts';
import type { Ingestor } from './ingest.ts';
import { KafkaGroups } from './kafka-groups.ts';
import { processObservability, type VigilMetrics } from '../observability/metrics.ts';
import type { Readiness } from '../observability/readiness.ts';
import { StoreSide, subscribeAlerts } from './store-side.ts';

/** Consumer groups of the roles (the deployment's VIGIL_TOPIC_PREFIX is prepended on the broker). */
export const GROUPS = {
  detect: 'vigil-detect',
  store: 'vigil-store',
  /** Webhook notifications: shared by every API process, so each finding is notified once. */
  notify: 'vigil-notify',
} as const;

/** The API's live-alert group: one per process, so every API process sees every finding. */
export function alertsGroup(): string {
  return `vigil-alerts-${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9._-]/g, '_');
}

export interface RoleLog {
  info(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
  error(message: string, extra?: Record<string, unknown>): void;
}

const RANK: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: 100 };

/** Plain log lines on stderr for the roles without an HTTP server (feeds, detect). */
export function roleLog(role: string, level: Config['VIGIL_LOG_LEVEL']): RoleLog {
  const min = RANK[level] ?? 30;
  const line = (lvl: 'info' | 'warn' | 'error', message: string, extra?: Record<string, unknown>) => {
    if ((RANK[lvl] ?? 30) < min) return;
    const detail = extra && Object.keys(extra).length > 0 ? ` ${JSON.stringify(extra)}` : '';
    process.stderr.write(`${new Date().toISOString()} vigil ${role} ${lvl}: ${message}${detail}\n`);
  };
  return { info: (m, e) => line('info', m, e), warn: (m, e) => line('warn', m, e), error: (m, e) => line('error', m, e) };
}

/** The roles that only exist on Kafka fail at start without it. */
export function requireKafka(config: Config, role: string): void {
  if (!config.KAFKA_BROKERS) {
    throw new VigilError(
      ERR.CONFIG,
      `invalid configuration: KAFKA_BROKERS: expected host:port[,host:port…] — \`vigil ${role}\` is one role of a distributed deployment and talks to the others through Kafka (use \`vigil run\` for everything in one process)`,
      500,
      { key: 'KAFKA_BROKERS' },
    );
  }
}

function kafkaLogLevel(level: Config['VIGIL_LOG_LEVEL']): KafkaLogLevel {
  if (level === 'silent') return 'nothing';
  if (level === 'fatal' || level === 'error') return 'error';
  if (level === 'debug') return 'info';
  if (level === 'trace') return 'debug';
  return 'warn';
}

/** Kafka options from the configuration (prefix, session timeout, log level). */
export function kafkaOptions(config: Config): Partial<KafkaTransportOptions> {
  const session = config.VIGIL_KAFKA_SESSION_TIMEOUT_MS;
  return {
    topicPrefix: config.VIGIL_TOPIC_PREFIX,
    sessionTimeoutMs: session,
    heartbeatIntervalMs: Math.max(100, Math.min(3000, Math.floor(session / 3))),
    logLevel: kafkaLogLevel(config.VIGIL_LOG_LEVEL),
  };
}

/** The configured transport: Kafka when KAFKA_BROKERS is set, else in-process. */
export function transportFor(config: Config): Transport {
  const transport = createTransport({ ...config, kafka: kafkaOptions(config) });
  // A role's transport lives as long as its process: its figures are exported until then.
  processObservability().metrics.attach({ kind: 'transport', transport });
  return transport;
}

export function kafkaGroups(config: Config): KafkaGroups {
  return new KafkaGroups({
    brokers: (config.KAFKA_BROKERS ?? '').split(',').map((b) => b.trim()).filter(Boolean),
    clientId: config.KAFKA_CLIENT_ID,
    prefix: config.VIGIL_TOPIC_PREFIX,
  });
}

/**
 * Calls onFail once when the transport has failed for good (a handler kept failing: its sends then
 * reject). Probed with an empty send, which checks the transport's state and sends nothing.
 */
export function watchTransport(transport: Transport, onFail: (e: unknown) => void, everyMs = 1000): () => void {
  let stopped = false;
  const timer = setInterval(() => {
    transport.send('vigil.findings', []).catch((e: unknown) => {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      onFail(e);
    });
  }, everyMs);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}

/** An AbortSignal for SIGINT/SIGTERM (the first one); dispose() removes the handlers. */
export function shutdownSignal(onSignal?: (sig: string) => void): { signal: AbortSignal; abort: () => void; dispose: () => void } {
  const ctrl = new AbortController();
  const handler = (sig: NodeJS.Signals) => {
    if (ctrl.signal.aborted) return;
    onSignal?.(sig);
    ctrl.abort();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: ctrl.signal,
    abort: () => ctrl.abort(),
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

/**
 * Marks parts of a running pipeline in the readiness checks (GET /readyz): `pipeline` started (set back
 * to not ready by the returned undo, e.g. between two demo loops), the Redis state store connected, the
 * transport not failed (probed as watchTransport does). Returns the undo.
 */
export function markReady(
  parts: { pipeline?: boolean; stateStore?: StateStore; transport?: Transport },
  readiness: Readiness = processObservability().readiness,
): () => void {
  const undo: Array<() => void> = [];
  if (parts.pipeline) {
    readiness.set('pipeline', () => true);
    undo.push(() => readiness.set('pipeline', () => false));
  }
  const store = parts.stateStore;
  if (store instanceof RedisStateStore) undo.push(readiness.set('stateStore', () => store.isReady));
  if (parts.transport) {
    let failed = false;
    const unwatch = watchTransport(parts.transport, () => (failed = true));
    const off = readiness.set('transport', () => !failed);
    undo.push(() => {
      unwatch();
      off();
    });
  }
  return () => {
    for (const u of undo.splice(0)) u();
  };
}

/**
 * The health server of the roles without the API (VIGIL_HEALTH_PORT): GET /healthz and GET /readyz
 * answer 200 while `check` says ok, else 503 (with its details as JSON: which dependency is down);
 * GET /metrics serves the process's Prometheus metrics. Returns undefined when no port is configured.
 */
export async function startHealthServer(
  config: Config,
  role: string,
  check: () => { ok: boolean } & Record<string, unknown>,
  metrics: VigilMetrics = processObservability().metrics,
): Promise<{ url: string; close(): Promise<void> } | undefined> {
  if (config.VIGIL_HEALTH_PORT === undefined) return undefined;
  const { createServer } = await import('node:http');
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'GET' && path === '/metrics') {
      metrics.text().then(
        (body) => res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' }).end(body),
        (e: unknown) => res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: (e as Error).message })),
      );
      return;
    }
    if (req.method !== 'GET' || (path !== '/healthz' && path !== '/readyz')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      return;
    }
    const r = check();
    const down = Object.entries(r).filter(([k, v]) => k !== 'ok' && v === false).map(([k]) => k);
    res.writeHead(r.ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: r.ok ? 'ok' : 'unavailable', role, ...(r.ok ? {} : { down }), ...r }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.VIGIL_HEALTH_PORT, config.HOST, () => resolve());
  });
  const { port } = server.address() as { port: number };
  const host = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/healthz`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Connects the configured live feeds (one connection per venue, all its symbols) into the ingestor until the signal. */
export async function runFeeds(config: Config, ingestor: Ingestor, signal: AbortSignal, log: RoleLog): Promise<void> {
  const detach = processObservability().metrics.attach({ kind: 'ingestor', ingestor });
  try {
    await connectFeeds(config, ingestor, signal, log);
  } finally {
    detach();
  }
}

async function connectFeeds(config: Config, ingestor: Ingestor, signal: AbortSignal, log: RoleLog): Promise<void> {
  const byVenue = new Map<string, string[]>();
  for (const f of config.feeds) byVenue.set(f.venue, [...(byVenue.get(f.venue) ?? []), ...f.symbols]);
  await Promise.all(
    [...byVenue].map(async ([venue, symbols]) => {
      const adapter = getAdapter(venue);
      log.info(`connecting ${venue}: ${symbols.join(', ')}`);
      const feed = adapter.connect!({ symbols, ...config.endpoints[venue], signal, log: (m, extra) => log.info(m, extra) });
      // The live normalizer's resync requests (gap, checksum mismatch) go back to its connection.
      ingestor.setNormalizer(adapter.name, adapter.createNormalizer({ requestResync: (symbol, reason) => feed.resync(symbol, reason) }));
      for await (const frame of feed) await ingestor.push(frame);
    }),
  );
  await ingestor.flush();
}

/**
 * The rules in force for a role, watched for changes: VIGIL_RULES (or the shipped file) with the config
 * file's detector overrides. Invalid rules fail here, at start, naming the rule.
 */
export function rulesController(config: Config, log: RoleLog): RulesController {
  const controller = new RulesController({ path: rulesPath(config), overrides: config.detectors, log: (m, extra) => log.info(m, extra) });
  controller.watch();
  processObservability().metrics.watchRules(controller);
  return controller;
}

/**
 * Records each rules change in the store's rule_changes table. The rules in force at start are recorded
 * only when they differ from the last recorded version (a restart is not a change). A failed write is
 * logged, never fatal: the rules apply either way.
 */
export function recordRuleChanges(rules: RulesController, store: Store, log: (m: string) => void): void {
  rules.onChange(async (change) => {
    try {
      if (change.actor === 'start') {
        const [last] = await store.listRuleChanges({ limit: 1 });
        if (last?.version === change.version) return;
        if (last) change = { ...change, previousVersion: last.version, diff: diffRules(last.rules as RulesFile, rules.current.file) };
      }
      await store.insertRuleChanges([change]);
    } catch (e) {
      log(`recording rules change ${change.version} failed: ${(e as Error).message}`);
    }
  });
}

/** The detect side: detectors over the event topics in group vigil-detect, state in Redis when configured. */
export interface DetectSide {
  readonly runner: DetectorRunner;
  readonly stateStore: StateStore;
  stop(): Promise<void>;
}

export async function startDetectSide(config: Config, transport: Transport, log: RoleLog, rules?: RulesController): Promise<DetectSide> {
  const detectors = rules ? rules.current.instances : buildDetectors(config);
  const stateStore: StateStore = config.REDIS_URL ? new RedisStateStore({ url: config.REDIS_URL, log: (m, extra) => log.warn(m, extra) }) : new MemoryStateStore();
  if (!config.REDIS_URL && transport.kind === 'kafka') {
    log.warn('REDIS_URL is not set: detector state stays in this process; a worker taking over its partitions starts those keys fresh');
  }
  await stateStore.open();
  const runner = new DetectorRunner(transport, detectors, 'live', {
    group: GROUPS.detect,
    store: stateStore,
    idleMs: config.VIGIL_STATE_IDLE_MS,
    topics: allDetectorTopics(),
    log: (m, extra) => log.warn(m, extra),
    offsetCheckpoint: transport.kind === 'kafka' ? { namespace: config.VIGIL_TOPIC_PREFIX } : undefined,
    metrics: processObservability().metrics,
  });
  try {
    await runner.start();
  } catch (e) {
    await stateStore.close().catch(() => undefined);
    throw e;
  }
  rules?.onChange((_change, set) => runner.setDetectors(set.instances));
  return {
    runner,
    stateStore,
    async stop() {
      // Leaves the group (its partitions go to the other workers at once); every batch saved its states already.
      await runner.stop();
      await stateStore.close();
    },
  };
}

/** The store side of the API role: vigil.findings/dlq/runs → ClickHouse (durable), and live alerts. */
export interface ApiSide {
  readonly storeSide: StoreSide;
  stop(): Promise<{ kept: number; lost: number }>;
}

export function spillConfig(config: Config): SpillConfig {
  return { dir: join(config.VIGIL_DATA_DIR, 'spill'), maxBuffered: config.VIGIL_STORE_BUFFER_ROWS };
}

export async function startApiSide(config: Config, transport: Transport, store: Store, hub: AlertHub, log: RoleLog): Promise<ApiSide> {
  const storeSide = new StoreSide({
    transport,
    store,
    group: GROUPS.store,
    runs: true,
    runId: 'live',
    durable: transport.kind === 'kafka',
    flushRows: config.VIGIL_FLUSH_ROWS,
    flushMs: config.VIGIL_FLUSH_MS,
    spill: spillConfig(config),
    stopGraceMs: 5_000,
    metrics: processObservability().metrics,
    log: (m) => log.warn(m),
  });
  let alerts: Subscription | undefined;
  const group = alertsGroup();
  try {
    await storeSide.start();
    alerts = await subscribeAlerts(transport, group, hub);
  } catch (e) {
    await storeSide.stop().catch(() => undefined);
    await storeSide.close({ timeoutMs: 5_000 }).catch(() => undefined);
    throw e;
  }
  return {
    storeSide,
    async stop() {
      await alerts?.stop();
      // Handlers waiting for an unreachable store give up after a grace period (their batches stay
      // uncommitted); what the writers still hold then stays in the spill file.
      await storeSide.stop();
      const result = await storeSide.close({ timeoutMs: 5_000 });
      if (transport.kind === 'kafka') {
        const groups = kafkaGroups(config);
        await groups.deleteGroup(group);
        await groups.close();
      }
      return result;
    },
  };
}

/** Adds the `run` header to everything sent (a replay's events and dead letters over Kafka). */
export class RunHeaderTransport implements Transport {
  constructor(
    private readonly inner: Transport,
    private readonly runId: string,
  ) {}

  get kind(): Transport['kind'] {
    return this.inner.kind;
  }

  send<T>(topic: string, messages: readonly OutgoingMessage<T>[]): Promise<void> {
    return this.inner.send(
      topic,
      messages.map((m) => ({ ...m, headers: { ...m.headers, run: this.runId } })),
    );
  }

  subscribe<T>(options: SubscribeOptions<T>): Promise<Subscription> {
    return this.inner.subscribe(options);
  }

  drain(): Promise<void> {
    return this.inner.drain();
  }

  stats(): TransportStats {
    return this.inner.stats();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
