/**
 * End to end through a real Kafka broker: the hftbacktest Binance capture replayed at max speed, as
 * `vigil replay` over Kafka does it (frames normalized here, events produced with a `run` header), into
 * the roles' own code in this process — the detect side (`vigil detect`: DetectorRunner in group
 * vigil-detect, state in Redis, findings to vigil.findings) and the API's store side (`vigil api`:
 * group vigil-store, findings into an embedded ClickHouse in a temporary data directory, committed only
 * once stored). Each role has a KafkaTransport of its own, as separate processes would.
 *
 * Everything lives under a topic prefix of this bench run's own (topics, groups, Redis offset
 * checkpoints), with run ids of its own; all of it is deleted at the end.
 *
 * Latency is per finding: the wall time its insert into ClickHouse resolved (what REST /api/findings
 * and `vigil sql` see from then on) minus the wall time its triggering event was handed to the Kafka
 * transport (the feeds side's send()). The triggering event is the latest produced of the finding's
 * `evidence.triggers` (price_jump has one: triggers[0]). Also shown, to split the path: the wall time
 * the detect side's send() of the finding to vigil.findings was acknowledged (acks=all). One process,
 * one monotonic clock (performance.now()). This is latency under full load: at max speed an event also
 * waits for its producer batch to fill and, in the topic, for the batches ahead of it.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Kafka, logLevel } from 'kafkajs';
import { createClient } from 'redis';
import { quantile } from 'simple-statistics';
import { AlertHub } from '../src/api/alert-hub.ts';
import { loadConfig, type Config } from '../src/core/config.ts';
import { eventRef, type CanonicalEvent, type Finding } from '../src/core/events.ts';
import { Ingestor } from '../src/pipeline/ingest.ts';
import { GROUPS, RunHeaderTransport, startApiSide, startDetectSide, transportFor, type RoleLog } from '../src/pipeline/roles.ts';
import { replayFiles } from '../src/replay/replay.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import { EVENT_TOPICS, TOPICS, type Batch, type OutgoingMessage, type SubscribeOptions, type Subscription, type Transport, type TransportStats } from '../src/transport/types.ts';
import { FEED_CAPTURES } from './feeds.ts';
import { fmtInt, type BenchSection } from './table.ts';

const CAPTURE = FEED_CAPTURES.binance![0]!;
const LOCAL_KAFKA = '127.0.0.1:9092';
const LOCAL_REDIS = 'redis://127.0.0.1:6379';
/**
 * Back-to-back replays of the capture (one run id each), for enough events and findings to measure:
 * up to MAX_PASSES, no new one started after PRODUCE_BUDGET_MS (the section stays under a minute on a
 * busy machine).
 */
const MAX_PASSES = 2;
const PRODUCE_BUDGET_MS = 8_000;
/**
 * The shipped rules, with a more sensitive price_jump (as in test/distributed.test.ts): about 19 of its
 * findings per pass instead of 5, for latency quantiles on more than a handful of samples.
 */
const DETECTORS = { price_jump: { zThreshold: 3, minMoveBps: 2, cooldownMs: 2000 } };
/** No wait for the roles may take longer than this (the section must not hang). */
const WAIT_MS = 90_000;

const EVENT_TOPIC_SET = new Set<string>(EVENT_TOPICS);

/** Forwards to a transport; notes sends (before and after) and handled batches. */
class Observed implements Transport {
  constructor(
    private readonly inner: Transport,
    private readonly hooks: {
      beforeSend?: (topic: string, messages: readonly OutgoingMessage<unknown>[]) => void;
      afterSend?: (topic: string, messages: readonly OutgoingMessage<unknown>[]) => void;
      afterBatch?: (batch: Batch<unknown>) => void;
    },
  ) {}

  get kind(): Transport['kind'] {
    return this.inner.kind;
  }

  async send<T>(topic: string, messages: readonly OutgoingMessage<T>[]): Promise<void> {
    this.hooks.beforeSend?.(topic, messages);
    await this.inner.send(topic, messages);
    this.hooks.afterSend?.(topic, messages);
  }

  subscribe<T>(options: SubscribeOptions<T>): Promise<Subscription> {
    const after = this.hooks.afterBatch;
    if (!after) return this.inner.subscribe(options);
    return this.inner.subscribe<T>({
      ...options,
      eachBatch: async (batch) => {
        await options.eachBatch(batch);
        after(batch as Batch<unknown>);
      },
    });
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

function within<T>(p: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`bench kafka: ${what} took longer than ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

async function kafkaAnswers(brokers: string): Promise<string | undefined> {
  const admin = new Kafka({ clientId: 'vigil-bench-probe', brokers: brokers.split(','), logLevel: logLevel.NOTHING, connectionTimeout: 1000, requestTimeout: 3000, retry: { retries: 0 } }).admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    return cluster.brokers.length > 0 ? undefined : 'no broker in the cluster metadata';
  } catch (e) {
    return (e as Error).message;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

function redisAnswers(url: string, timeoutMs = 1000): Promise<string | undefined> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port || 6379) });
    let buf = '';
    const done = (reason: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(reason);
    };
    const timer = setTimeout(() => done('no answer'), timeoutMs);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => {
      buf += d.toString('utf8');
      // -NOAUTH and the like: it answers, the client will say what is wrong.
      if (buf.includes('\r\n')) done(undefined);
    });
    socket.on('error', (e) => done(e.message));
  });
}

/** Kafka and Redis answer; the local ones are started (scripts/services.mjs, idempotent) when they don't. */
async function ensureServices(brokers: string, redisUrl: string): Promise<void> {
  let kafka = await kafkaAnswers(brokers);
  let redis = await redisAnswers(redisUrl);
  if (!kafka && !redis) return;
  const local = brokers === LOCAL_KAFKA && redisUrl === LOCAL_REDIS;
  const what = [kafka && `Kafka on ${brokers}: ${kafka}`, redis && `Redis on ${redisUrl}: ${redis}`].filter(Boolean).join('; ');
  if (!local) throw new Error(`bench kafka: ${what}`);
  process.stderr.write(`bench kafka: ${what}; starting the local services (node scripts/services.mjs start)\n`);
  const r = spawnSync(process.execPath, ['scripts/services.mjs', 'start'], { stdio: ['ignore', 2, 2] });
  if (r.status !== 0) throw new Error(`bench kafka: node scripts/services.mjs start failed (exit ${r.status ?? r.signal})`);
  kafka = await kafkaAnswers(brokers);
  redis = await redisAnswers(redisUrl);
  if (kafka || redis) throw new Error(`bench kafka: still not answering after start: ${[kafka, redis].filter(Boolean).join('; ')}`);
}

/** Topics and groups under the prefix, Redis keys of the runs and of the prefix's offset checkpoints. */
async function cleanUp(brokers: string, redisUrl: string, prefix: string, runIds: string[]): Promise<void> {
  const admin = new Kafka({ clientId: 'vigil-bench-cleanup', brokers: brokers.split(','), logLevel: logLevel.NOTHING }).admin();
  try {
    await admin.connect();
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
    if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 30_000 });
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(prefix));
    if (groups.length > 0) await admin.deleteGroups(groups).catch(() => undefined);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  const redis = createClient({ url: redisUrl });
  redis.on('error', () => undefined);
  await redis.connect();
  try {
    const patterns = [...runIds.map((id) => `vigil:${id}:*`), `vigil:@offsets:state:${GROUPS.detect}:${prefix}*`];
    for (const match of patterns) {
      for await (const keys of redis.scanIterator({ MATCH: match, COUNT: 1000 })) if (keys.length > 0) await redis.unlink(keys);
    }
  } finally {
    redis.destroy();
  }
}

const ms = (x: number): string => x.toFixed(1);
const q = (xs: number[], p: number): number => (xs.length > 0 ? quantile(xs, p) : NaN);

export async function kafkaSection(): Promise<BenchSection> {
  const brokers = process.env.KAFKA_BROKERS || LOCAL_KAFKA;
  const redisUrl = process.env.REDIS_URL || LOCAL_REDIS;
  await ensureServices(brokers, redisUrl);

  const stamp = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  const prefix = `vigil-bench.${stamp}.`;
  const runIds = Array.from({ length: MAX_PASSES }, (_, i) => `bench-kafka-${stamp}-${i + 1}`);
  let passes = 0;
  const dataDir = mkdtempSync(join(tmpdir(), 'vigil-bench-kafka-'));
  const config: Config = {
    ...loadConfig({
      KAFKA_BROKERS: brokers,
      REDIS_URL: redisUrl,
      VIGIL_TOPIC_PREFIX: prefix,
      VIGIL_DATA_DIR: dataDir,
      VIGIL_LOG_LEVEL: 'warn',
    }),
    detectors: DETECTORS,
  };
  const log: RoleLog = {
    info: () => undefined,
    warn: (m, extra) => process.stderr.write(`bench kafka warn: ${m}${extra ? ` ${JSON.stringify(extra)}` : ''}\n`),
    error: (m, extra) => process.stderr.write(`bench kafka error: ${m}${extra ? ` ${JSON.stringify(extra)}` : ''}\n`),
  };

  // Wall times (performance.now()): each event handed to Kafka, by run and eventRef.
  const produced = new Map<string, number>();
  let firstProduced = Number.NaN;
  let lastAcked = Number.NEGATIVE_INFINITY;
  let consumed = 0;
  let lastConsumed = Number.NEGATIVE_INFINITY;
  /** run \0 finding id → when its send to vigil.findings was acknowledged; when it was stored. */
  const onTopic = new Map<string, number>();
  const written = new Map<string, { at: number; finding: Finding }>();

  const feedsKafka = transportFor(config);
  const feeds = new Observed(feedsKafka, {
    beforeSend: (topic, messages) => {
      if (!EVENT_TOPIC_SET.has(topic)) return;
      const at = performance.now();
      if (Number.isNaN(firstProduced)) firstProduced = at;
      for (const m of messages) {
        const key = `${m.headers?.run ?? ''}\0${eventRef(m.value as CanonicalEvent)}`;
        if (!produced.has(key)) produced.set(key, at);
      }
    },
    afterSend: (topic) => {
      if (EVENT_TOPIC_SET.has(topic)) lastAcked = performance.now();
    },
  });
  const detectKafka = transportFor(config);
  const detectTransport = new Observed(detectKafka, {
    afterSend: (topic, messages) => {
      if (topic !== TOPICS.findings) return;
      const at = performance.now();
      for (const m of messages) {
        const f = m.value as Finding;
        const key = `${f.runId}\0${f.id}`;
        if (!onTopic.has(key)) onTopic.set(key, at);
      }
    },
    afterBatch: (batch) => {
      consumed += batch.messages.length;
      lastConsumed = performance.now();
    },
  });
  const apiKafka = transportFor(config);

  const store = await openStore({ dataDir });
  const insert = store.insertFindings.bind(store);
  store.insertFindings = async (rows) => {
    await insert(rows);
    const at = performance.now();
    for (const f of rows) {
      const key = `${f.runId}\0${f.id}`;
      if (!written.has(key)) written.set(key, { at, finding: f });
    }
  };

  let api: Awaited<ReturnType<typeof startApiSide>> | undefined;
  let detect: Awaited<ReturnType<typeof startDetectSide>> | undefined;
  let frames = 0;
  let events = 0;
  let stored = NaN;
  try {
    // The consumers join first: a group new to a topic starts at its end.
    api = await within(startApiSide(config, apiKafka, store, new AlertHub(), log), 'starting the store side');
    detect = await within(startDetectSide(config, detectTransport, log), 'starting the detect side');

    for (const runId of runIds) {
      if (passes > 0 && performance.now() - firstProduced > PRODUCE_BUDGET_MS) break;
      passes++;
      const ingestor = new Ingestor(new RunHeaderTransport(feeds, runId));
      const target = { runId, ingestor, deadLetters: 0, detectors: { counters: { findings: {} } }, drain: () => ingestor.flush() };
      const s = await within(replayFiles(target, { files: [CAPTURE], speed: { mode: 'max' } }), `replaying ${CAPTURE}`);
      frames += s.frames;
      events += s.totalEvents;
    }
    // Every event handled by the detect group (committed after its findings were acknowledged)…
    await within(detectKafka.drain(), 'waiting for the detect side');
    // …and every finding stored by the store group (committed after the insert).
    await within(apiKafka.drain(), 'waiting for the store side');
    const rows = await store.sql(`SELECT count() AS n FROM findings FINAL WHERE run_id LIKE 'bench-kafka-${stamp}-%'`, 'JSONEachRow');
    stored = Number((JSON.parse(rows.trim().split('\n')[0] ?? '{}') as { n?: number | string }).n);
  } finally {
    // As `vigil run` stops: detection first, then the store side.
    await detect?.stop().catch((e: unknown) => log.error('stopping the detect side failed', { error: (e as Error).message }));
    await api?.stop().catch((e: unknown) => log.error('stopping the store side failed', { error: (e as Error).message }));
    await Promise.allSettled([feedsKafka.close(), detectKafka.close(), apiKafka.close()]);
    await store.close().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
    await cleanUp(brokers, redisUrl, prefix, runIds).catch((e: unknown) => log.error(`could not delete the bench's topics, groups or Redis keys (prefix ${prefix})`, { error: (e as Error).message }));
  }

  // Latency per finding, from its triggering event's hand-off to Kafka.
  const toStore: number[] = [];
  const toTopic: number[] = [];
  let unmatched = 0;
  let lastWritten = Number.NEGATIVE_INFINITY;
  for (const [key, { at, finding }] of written) {
    lastWritten = Math.max(lastWritten, at);
    let from = Number.NEGATIVE_INFINITY;
    for (const ref of finding.evidence.triggers) from = Math.max(from, produced.get(`${finding.runId}\0${ref}`) ?? Number.NEGATIVE_INFINITY);
    if (from === Number.NEGATIVE_INFINITY) {
      unmatched++;
      continue;
    }
    toStore.push(at - from);
    const sent = onTopic.get(key);
    if (sent !== undefined) toTopic.push(sent - from);
  }
  const rate = (end: number) => events / ((end - firstProduced) / 1000);
  const byDetector: Record<string, number> = {};
  for (const { finding } of written.values()) byDetector[finding.detector] = (byDetector[finding.detector] ?? 0) + 1;
  const figures = {
    capture: CAPTURE,
    passes,
    detectors: DETECTORS,
    partitions: config.VIGIL_KAFKA_PARTITIONS,
    frames,
    events,
    eventsConsumed: consumed,
    findingsWritten: written.size,
    findingsByDetector: byDetector,
    findingsStored: stored,
    findingsUnmatched: unmatched,
    produceEventsPerSec: rate(lastAcked),
    eventsPerSecToLastEventDetected: rate(lastConsumed),
    eventsPerSecToLastFindingWritten: rate(lastWritten),
    secondsToLastEventDetected: (lastConsumed - firstProduced) / 1000,
    secondsToLastFindingWritten: (lastWritten - firstProduced) / 1000,
    latencyMs: {
      written: { p50: q(toStore, 0.5), p99: q(toStore, 0.99), max: toStore.length ? Math.max(...toStore) : NaN, samples: toStore.length },
      onFindingsTopic: { p50: q(toTopic, 0.5), p99: q(toTopic, 0.99), max: toTopic.length ? Math.max(...toTopic) : NaN, samples: toTopic.length },
    },
  };
  if (written.size === 0) throw new Error('bench kafka: no finding was written; nothing to measure');
  const l = figures.latencyMs;
  return {
    id: 'kafka',
    title: `end to end through Kafka: ${passes}× the Binance capture at max speed → event topics → detect side (Redis state) → vigil.findings → store side (embedded ClickHouse)`,
    header: ['measure', 'value'],
    rows: [
      ['events produced (frames normalized here, one run id per pass)', fmtInt(events)],
      ['findings written to ClickHouse (distinct; stored with FINAL)', `${fmtInt(written.size)} (${fmtInt(stored)})`],
      ['events/s, producer alone (first event handed over → last acknowledged)', fmtInt(figures.produceEventsPerSec)],
      ['events/s, first event produced → last event handled by the detectors', fmtInt(figures.eventsPerSecToLastEventDetected)],
      ['events/s, first event produced → last finding written', fmtInt(figures.eventsPerSecToLastFindingWritten)],
      ['event → finding written (ClickHouse insert done), p50 / p99 ms', `${ms(l.written.p50)} / ${ms(l.written.p99)}`],
      ['event → finding on vigil.findings (acks=all), p50 / p99 ms', `${ms(l.onFindingsTopic.p50)} / ${ms(l.onFindingsTopic.p99)}`],
    ],
    notes: [
      `  latency = wall time the finding's ClickHouse insert resolved (or its send to vigil.findings was acknowledged) − wall time its triggering event`,
      `  (the latest of evidence.triggers) was handed to the Kafka transport; ${l.written.samples} findings${unmatched ? `, ${unmatched} without a matching event` : ''}, max ${ms(l.written.max)} ms.`,
      `  Under full load (max speed): an event waits for its producer batch (512 events) and, in the topic, for the batches before it.`,
      `  findings: ${Object.entries(byDetector).map(([d, n]) => `${d} ${n}`).join(', ')} (shipped rules, price_jump ${JSON.stringify(DETECTORS.price_jump)}).`,
      `  One detect worker; ${config.VIGIL_KAFKA_PARTITIONS} partitions per topic (the capture is one symbol: one partition per topic busy); all roles in this process.`,
    ],
    json: figures,
  };
}
