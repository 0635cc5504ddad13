/**
 * The distributed roles as real processes (`node bin/vigil.js api|detect|feeds|run|replay`) on Kafka and
 * Redis, under failure: a worker killed mid-stream, Redis and the Kafka broker restarted mid-stream,
 * the findings store down for a while, SIGTERM to every role. Every scenario ends with the findings
 * the store holds (read with FINAL) equal to those of the uninterrupted embedded run of the same file.
 *
 * Each test has its own topic prefix (so its own topics and groups), run ids and data directories;
 * Kafka and Redis are the local services test/global-setup.ts starts, except where a test restarts
 * them: then a private broker instance (scripts/services.mjs) or a private redis-server.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';
import WebSocket from 'ws';
import { eventKey, type CanonicalEvent, type Finding } from '../src/core/events.ts';
import { createDetector } from '../src/detectors/registry.ts';
import { DetectorRunner } from '../src/pipeline/detect.ts';
import { RedisStateStore } from '../src/state/redis.ts';
import { BatchWriter } from '../src/storage/batch-writer.ts';
import { DeadLetterWriter } from '../src/storage/finding-writer.ts';
import type { DeadLetter } from '../src/storage/types.ts';
import { EVENT_TOPICS, TOPICS, type Batch, type OutgoingMessage, type SubscribeOptions, type Subscription, type Transport } from '../src/transport/types.ts';
import { BinanceTestServer } from './helpers/binance-server.ts';
import { HFT_CAPTURE, tempDir, vigil } from './helpers/cli.ts';
import { BrokerProbe, captureTrades, kafkaPartition, MULTI_KEYS, Roles, storedFindings, writeMultiKeyEvents, type FindingRow, type RoleProcess } from './helpers/distributed.ts';
import { inspector, PrivateRedis } from './helpers/redis-server.ts';

const BROKERS = '127.0.0.1:9092';
const REDIS_URL = 'redis://127.0.0.1:6379';
const RUN = `vigil-dist.${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
let seq = 0;
/** A topic/group prefix of its own per test. */
const nextPrefix = (): string => `${RUN}.${++seq}.`;
const dir = tempDir('vigil-distributed-');
const MULTI = join(dir, 'multi-key.jsonl');
/** A more sensitive price_jump than the default: many more findings to compare. */
const DETECTORS = join(dir, 'detectors.json');
/** Paced replays of the multi-key file: its 346 s of event time take ~14 s, so failures land mid-stream. */
const PACE = '25x';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const roles = new Roles();
const probe = new BrokerProbe(BROKERS);
const runIds: string[] = [];
let multi: { events: number; perKey: number };
let refRaw: FindingRow[];
let refRawSummary: { events: Record<string, number>; findings: Record<string, number> };
let refMulti: FindingRow[];

/** Never a skip: without the services every test here fails with the reason. */
function requireServices(): void {
  const error = inject('servicesError');
  if (error) throw new Error(`local services are not running: ${error}`);
}

/** The roles' output as afterEach found it, before it killed them (failure handlers may run after it). */
let lastOutputs = '';

/** Shows every role's output when the test fails. */
function track(): void {
  onTestFailed(() => {
    console.error(roles.outputs() || lastOutputs);
  });
}

function env(prefix: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    KAFKA_BROKERS: BROKERS,
    VIGIL_TOPIC_PREFIX: prefix,
    // A killed worker's partitions move after 6 s (the broker's minimum session timeout).
    VIGIL_KAFKA_SESSION_TIMEOUT_MS: '6000',
    REDIS_URL,
    VIGIL_CONFIG: DETECTORS,
    VIGIL_LOG_LEVEL: 'info',
    ...extra,
  };
}

function runId(name: string): string {
  const id = `${name}-${randomBytes(3).toString('hex')}`;
  runIds.push(id);
  return id;
}

async function startApi(name: string, prefix: string, dataDir: string, extra: Record<string, string> = {}): Promise<RoleProcess> {
  const api = roles.start(name, ['api'], env(prefix, { VIGIL_DATA_DIR: dataDir, PORT: '0', ...extra }));
  await api.waitFor(/ready: API http/);
  return api;
}

async function startDetect(name: string, prefix: string, extra: Record<string, string> = {}): Promise<RoleProcess> {
  // The client id tells the workers apart in the group's member list.
  const d = roles.start(name, ['detect'], env(prefix, { KAFKA_CLIENT_ID: name, ...extra }));
  await d.waitFor(/ready: consuming/);
  return d;
}

function replay(prefix: string, id: string, file: string, speed: string, extra: Record<string, string> = {}): RoleProcess {
  return roles.start(`replay ${id}`, ['replay', file, '--run-id', id, '--speed', speed, '--json'], env(prefix, extra));
}

/** The `stopped {…}` counters a detect worker logs on its way out. */
function detectStats(p: RoleProcess): { events: number; findings: Record<string, number>; statesLoaded: number; skippedRedelivered: number } {
  const m = /vigil detect info: stopped (\{.*\})/.exec(p.output);
  if (!m) throw new Error(`no stop line in ${p.name}'s output`);
  return JSON.parse(m[1]!) as { events: number; findings: Record<string, number>; statesLoaded: number; skippedRedelivered: number };
}

function lines(path: string): number {
  if (!existsSync(path)) return 0;
  return readFileSync(path, 'utf8').split('\n').filter((l) => l.length > 0).length;
}

beforeAll(async () => {
  requireServices();
  multi = writeMultiKeyEvents(MULTI);
  writeFileSync(DETECTORS, JSON.stringify({ detectors: { price_jump: { zThreshold: 3, minMoveBps: 2, cooldownMs: 2000 } } }));
  // The references: the same files through the embedded pipeline (in-process transport, state in memory).
  const noKafka = { KAFKA_BROKERS: '', REDIS_URL: '' };
  const [raw, mk] = await Promise.all([
    vigil(['replay', HFT_CAPTURE, '--run-id', 'ref-raw', '--json'], { ...noKafka, VIGIL_DATA_DIR: join(dir, 'ref-raw'), VIGIL_CONFIG: '' }),
    vigil(['replay', MULTI, '--run-id', 'ref-multi', '--json'], { ...noKafka, VIGIL_DATA_DIR: join(dir, 'ref-multi'), VIGIL_CONFIG: DETECTORS }),
  ]);
  expect(raw.code, raw.stderr).toBe(0);
  expect(mk.code, mk.stderr).toBe(0);
  refRawSummary = JSON.parse(raw.stdout) as typeof refRawSummary;
  [refRaw, refMulti] = await Promise.all([storedFindings(join(dir, 'ref-raw'), 'ref-raw'), storedFindings(join(dir, 'ref-multi'), 'ref-multi')]);
  // price_jump's 5 on this capture; other shipped rules may add theirs (the runs below compare whole sets).
  expect(refRaw.filter((f) => f.detector === 'price_jump')).toHaveLength(5);
  expect(refMulti.length).toBeGreaterThan(100);
  // Every key has findings, so a worker that loses any key's partition loses findings unless takeover works.
  for (const k of MULTI_KEYS) expect(refMulti.some((f) => f.key === k), k).toBe(true);
}, 120_000);

afterEach(async () => {
  lastOutputs = roles.outputs();
  await roles.killAll();
});

afterAll(async () => {
  await roles.killAll();
  if (inject('servicesError')) return;
  try {
    await probe.deleteTopicsWithPrefix(RUN).catch((e: unknown) => console.error(`could not delete this run's topics: ${(e as Error).message}`));
  } finally {
    await probe.close();
  }
  const redis = await inspector(REDIS_URL);
  try {
    const keys: string[] = [];
    for (const id of runIds) for await (const batch of redis.scanIterator({ MATCH: `vigil:${id}:*`, COUNT: 1000 })) keys.push(...batch);
    for await (const batch of redis.scanIterator({ MATCH: `vigil:@offsets:state:vigil-detect:${RUN}.*`, COUNT: 1000 })) keys.push(...batch);
    if (keys.length > 0) await redis.unlink(keys);
  } finally {
    redis.destroy();
  }
  rmSync(dir, { recursive: true, force: true });
}, 90_000);

describe('the distributed roles need Kafka', () => {
  it('vigil feeds, detect and api fail at start without KAFKA_BROKERS, naming it (VIGIL_ERR_CONFIG, exit 78)', async () => {
    const results = await Promise.all(
      [['feeds', '--feed', 'binance:btcusdt'], ['detect'], ['api']].map((args) => vigil(args, { KAFKA_BROKERS: '', VIGIL_DATA_DIR: join(dir, 'no-kafka') })),
    );
    for (const r of results) {
      expect(r.code, r.stderr).toBe(78);
      expect(r.stderr).toMatch(/VIGIL_ERR_CONFIG: invalid configuration: KAFKA_BROKERS: expected host:port/);
    }
    // Nothing was opened on the way: no store directory.
    expect(existsSync(join(dir, 'no-kafka'))).toBe(false);
  });
});

describe('vigil replay through Kafka (api + detect + replay)', () => {
  it('1. stores the very findings (ids and content, with FINAL) of the embedded run of the capture', async () => {
    track();
    const p = nextPrefix();
    const apiDir = join(dir, 't1-api');
    const api = await startApi('api', p, apiDir, { VIGIL_CONFIG: '' });
    // Live alerts: the API feeds its hub from vigil.findings in a group of its own.
    const apiUrl = (await api.waitFor(/ready: API (http:\/\/[^,\s]+)/))[1]!;
    const ws = new WebSocket(`${apiUrl.replace('http', 'ws')}/api/alerts`);
    const alerts: string[] = [];
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data)) as { type: string; finding?: { id: string; runId: string } };
      if (msg.type === 'finding') alerts.push(`${msg.finding!.runId}/${msg.finding!.id}`);
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const det = await startDetect('vigil-d1', p, { VIGIL_CONFIG: '', VIGIL_HEALTH_PORT: '0' });
    // The worker's health endpoint (VIGIL_HEALTH_PORT): transport and state store fine.
    const healthUrl = (await det.waitFor(/health on (http:\S+)/))[1]!;
    const health = await fetch(healthUrl);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', role: 'detect', transport: true, stateStore: true });
    const id = runId('t1');
    const r = replay(p, id, HFT_CAPTURE, 'max', { VIGIL_CONFIG: '' });
    expect(await r.done(120_000)).toBe(0);
    const summary = JSON.parse(r.stdout) as typeof refRawSummary & { status: string; runId: string };
    expect(summary).toMatchObject({ status: 'completed', runId: id, events: refRawSummary.events, findings: refRawSummary.findings });

    expect(await storedFindings(apiDir, id)).toEqual(refRaw);
    expect(alerts.sort()).toEqual(refRaw.map((f) => `${id}/${String(f.id)}`).sort());
    ws.close();
    // The run record came over vigil.runs.
    const run = await vigil(['sql', `SELECT status FROM runs FINAL WHERE run_id = '${id}'`, '--format', 'tsv'], { VIGIL_DATA_DIR: apiDir });
    expect(run.stdout.trim().split('\n')[1]).toBe('completed');

    // Malformed lines travel as dead letters (vigil.dlq, with the run header) into the API's dead_letters.
    const broken = join(dir, 't1-broken.jsonl');
    writeFileSync(broken, `{"kind":"trade","venue":"binance"}\nnot json at all\n${JSON.stringify(captureTrades()[0])}\n`);
    const dlId = runId('t1-dl');
    const rb = replay(p, dlId, broken, 'max', { VIGIL_CONFIG: '' });
    expect(await rb.done(60_000)).toBe(0);
    expect(JSON.parse(rb.stdout)).toMatchObject({ deadLetters: 2, malformed: { count: 2 }, totalEvents: 1 });
    const dl = await vigil(['sql', `SELECT origin FROM dead_letters WHERE run_id = '${dlId}' ORDER BY origin`, '--format', 'tsv'], { VIGIL_DATA_DIR: apiDir });
    expect(dl.stdout.trim().split('\n').slice(1)).toEqual([`${broken}:1`, `${broken}:2`]);

    expect(await det.stop()).toBe(0);
    expect(await api.stop()).toBe(0);
  }, 120_000);
});

describe('failures mid-stream', () => {
  it('2. a worker killed with SIGKILL: the other takes its partitions over with state from Redis; same findings', async () => {
    track();
    const p = nextPrefix();
    const apiDir = join(dir, 't2-api');
    const api = await startApi('api', p, apiDir);
    const workers = new Map([
      ['vigil-d1', await startDetect('vigil-d1', p)],
      ['vigil-d2', await startDetect('vigil-d2', p)],
    ]);
    const trades = `${p}vigil.md.trades`;
    await probe.waitMembers(`${p}vigil-detect`, trades, 2);
    const id = runId('t2');
    const r = replay(p, id, MULTI, PACE);
    await probe.waitCount(trades, Math.floor(multi.events * 0.3));

    // The victim is the worker holding the partitions of most keys (each holds some: six partitions, two members).
    const assignment = await probe.assignment(`${p}vigil-detect`, trades);
    // Market data goes to the partition of its symbol (events.ts partitionKey), whatever the venue.
    const keyParts = MULTI_KEYS.map((k) => kafkaPartition(k.slice(k.indexOf(':') + 1), 6));
    const owned = (client: string) => keyParts.filter((part) => assignment.get(client)?.includes(part)).length;
    const victimName = owned('vigil-d1') >= owned('vigil-d2') ? 'vigil-d1' : 'vigil-d2';
    const survivorName = victimName === 'vigil-d1' ? 'vigil-d2' : 'vigil-d1';
    expect(owned(victimName)).toBeGreaterThan(0);
    const victim = workers.get(victimName)!;
    const survivor = workers.get(survivorName)!;
    await victim.stop('SIGKILL');
    const atKill = await probe.count(trades);
    expect(atKill).toBeLessThan(multi.events); // the stream was still flowing

    expect(await r.done(180_000)).toBe(0);
    expect(await storedFindings(apiDir, id)).toEqual(refMulti);

    expect(await survivor.stop()).toBe(0);
    // It loaded the victim's keys from Redis, and skipped what the victim had applied but not committed.
    // At least one state per key taken over (price_jump's), at most one per detector and key.
    const stats = detectStats(survivor);
    expect(stats.statesLoaded).toBeGreaterThanOrEqual(owned(victimName));
    expect(stats.statesLoaded).toBeLessThanOrEqual(owned(victimName) * Object.keys(stats.findings).length);
    expect(await api.stop()).toBe(0);
  }, 240_000);

  describe('3. Redis restarted mid-stream (a private redis-server, its data lost)', () => {
    let server: PrivateRedis;
    beforeAll(async () => {
      requireServices();
      server = await PrivateRedis.start();
    });
    afterAll(async () => {
      await server?.stop();
    });

    it('the workers reconnect, save their states again and go on; same findings', async () => {
      track();
      const p = nextPrefix();
      const apiDir = join(dir, 't3-api');
      const redis = { REDIS_URL: server.url };
      const api = await startApi('api', p, apiDir, redis);
      const d1 = await startDetect('vigil-d1', p, redis);
      const d2 = await startDetect('vigil-d2', p, redis);
      const trades = `${p}vigil.md.trades`;
      await probe.waitMembers(`${p}vigil-detect`, trades, 2);
      const id = runId('t3');
      const r = replay(p, id, MULTI, PACE, redis);
      await probe.waitCount(trades, Math.floor(multi.events * 0.3));
      await server.shutdown(); // shutdown nosave: everything Redis held is gone
      const downAt = await probe.count(trades);
      await sleep(1500);
      await server.up();
      expect(downAt).toBeLessThan(multi.events);

      expect(await r.done(180_000)).toBe(0);
      expect(await storedFindings(apiDir, id)).toEqual(refMulti);
      for (const d of [d1, d2]) {
        await d.waitFor(/Redis reconnected with a new dataset/, 5_000);
        expect(await d.stop()).toBe(0);
      }
      expect(await api.stop()).toBe(0);
    }, 240_000);
  });

  describe('4. the Kafka broker restarted mid-stream (a private broker instance)', () => {
    interface KafkaInstance {
      name: string;
      brokers: string;
      dir: string;
    }
    interface ServicesApi {
      kafkaInstance(o: { name: string; port: number; controllerPort: number; heapMb?: number }): KafkaInstance;
      startKafka(inst: KafkaInstance): Promise<{ pid?: number; ms: number }>;
      stopKafka(inst: KafkaInstance): Promise<{ stopped: boolean; ms: number }>;
    }
    let services: ServicesApi | undefined;
    let inst: KafkaInstance;
    let privateProbe: BrokerProbe;

    const portFree = (port: number) =>
      new Promise<boolean>((done) => {
        const socket = connect({ host: '127.0.0.1', port });
        socket.once('connect', () => {
          socket.destroy();
          done(false);
        });
        socket.once('error', () => done(true));
      });

    beforeAll(async () => {
      requireServices();
      services = (await import(pathToFileURL(resolve('scripts/services.mjs')).href)) as ServicesApi;
      const deadline = Date.now() + 10_000;
      // Away from the ports test/transport-contract.test.ts's restart broker scans (19092…), from a
      // random start (another checkout may run this file at the same time), under a name of this run's
      // own (an instance's directory and pid file belong to one run; removed at the end).
      let port = 29092 + 100 * Math.floor(Math.random() * 8);
      while (!(await portFree(port)) || !(await portFree(port + 1))) {
        port += 100;
        if (port > 30_000) port = 29092;
        if (Date.now() > deadline) throw new Error('no free port pair for the private broker in 29092-29993');
      }
      inst = services.kafkaInstance({ name: `kafka-distributed-${process.pid}`, port, controllerPort: port + 1, heapMb: 384 });
      expect((await services.startKafka(inst)).pid).toBeDefined();
      privateProbe = new BrokerProbe(inst.brokers);
    }, 180_000);

    afterAll(async () => {
      if (!services) return;
      try {
        await privateProbe.deleteTopicsWithPrefix(RUN).catch(() => undefined);
        await privateProbe.close();
      } finally {
        await services.stopKafka(inst);
        rmSync(inst.dir, { recursive: true, force: true });
      }
    }, 90_000);

    it('producers and consumers of every role recover; same findings', async () => {
      track();
      const p = nextPrefix();
      const apiDir = join(dir, 't4-api');
      const broker = { KAFKA_BROKERS: inst.brokers };
      const api = await startApi('api', p, apiDir, broker);
      const d1 = await startDetect('vigil-d1', p, broker);
      const trades = `${p}vigil.md.trades`;
      await privateProbe.waitMembers(`${p}vigil-detect`, trades, 1);
      const id = runId('t4');
      const r = replay(p, id, MULTI, PACE, broker);
      await privateProbe.waitCount(trades, Math.floor(multi.events * 0.3));
      const atStop = await privateProbe.count(trades);
      await privateProbe.close();
      expect((await services!.stopKafka(inst)).stopped).toBe(true);
      await sleep(1000);
      await services!.startKafka(inst);
      expect(atStop).toBeLessThan(multi.events);

      // Every process here lived through the restart and must end by itself (stop() SIGKILLs after 30 s:
      // exit code null), with no socket left to the broker (src/transport/kafka.ts, "Closing").
      expect(await r.done(240_000)).toBe(0);
      expect(await storedFindings(apiDir, id)).toEqual(refMulti);
      expect(await d1.stop()).toBe(0);
      expect(await api.stop()).toBe(0);
    }, 300_000);
  });
});

describe('5. the findings store down for a while (fault injected at the store)', () => {
  it('offsets stay behind unstored findings, a small memory bound spills to disk, SIGTERM keeps the rest on disk; none lost when it returns', async () => {
    track();
    const p = nextPrefix();
    const apiDir = join(dir, 't5-api');
    const spill = join(apiDir, 'spill', 'findings.jsonl');
    const flag = join(dir, 't5-store-down');
    const fault = { VIGIL_FAULT_STORE_FLAG: flag, VIGIL_STORE_BUFFER_ROWS: '2' };
    // The store group exists (it joined once); then, with no API running, the whole run is detected:
    // the next API meets a backlog, which kafkajs hands over in one fetch (it fetches again only once
    // a fetch is handled), so much more than the memory bound arrives at once.
    const api0 = await startApi('api0', p, apiDir, fault);
    expect(await api0.stop()).toBe(0);
    const d1 = await startDetect('vigil-d1', p);
    const id = runId('t5');
    const r = replay(p, id, MULTI, 'max');
    const findingsTopic = `${p}vigil.findings`;
    await probe.waitCount(findingsTopic, refMulti.length, 120_000);
    const produced = await probe.count(findingsTopic);

    // ClickHouse "down"; an API comes up: it takes the backlog, stores nothing, commits nothing.
    writeFileSync(flag, '');
    const api = await startApi('api', p, apiDir, fault);
    await api.waitFor(/spilling further rows to \S*findings\.jsonl/);
    await api.waitFor(/finding writer: write of \d+ rows failed .*fault injected/);
    await sleep(1000);
    expect(await storedFindings(apiDir, id)).toEqual([]);
    expect(await probe.lag(`${p}vigil-store`, findingsTopic)).toBe(produced);
    expect(lines(spill)).toBeGreaterThan(0);

    // SIGTERM while the store is down: exits 0 after the grace period, keeping what it holds on disk.
    const t0 = Date.now();
    expect(await api.stop()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(api.output).toMatch(/rows the store did not take stay in the spill file/);
    // Everything it consumed is in the file (and, uncommitted, still on Kafka).
    expect(lines(spill)).toBe(produced);
    expect(await probe.lag(`${p}vigil-store`, findingsTopic)).toBe(produced);

    // The store is back; a new API process on the same data directory writes the spill file first,
    // then what Kafka delivers again. Nothing lost, nothing twice (FINAL).
    rmSync(flag);
    const api2 = await startApi('api2', p, apiDir, fault);
    await api2.waitFor(new RegExp(`${produced} rows left in \\S*findings\\.jsonl by an earlier process are written first`));
    expect(await r.done(120_000)).toBe(0);
    expect(await storedFindings(apiDir, id)).toEqual(refMulti);
    await api2.waitFor(/every spilled row is stored/);
    expect(await probe.lag(`${p}vigil-store`, findingsTopic)).toBe(0);

    expect(await d1.stop()).toBe(0);
    expect(await api2.stop()).toBe(0);
    expect(existsSync(spill) ? statSync(spill).size : 0).toBe(0);
  }, 240_000);
});

describe('6. SIGTERM to each role: exits 0 after flushing; the findings are complete', () => {
  it('vigil detect and vigil api, stopped and replaced mid-stream', async () => {
    track();
    const p = nextPrefix();
    const apiDir = join(dir, 't6-api');
    const api = await startApi('api', p, apiDir);
    const d1 = await startDetect('vigil-d1', p);
    const trades = `${p}vigil.md.trades`;
    const findingsTopic = `${p}vigil.findings`;
    const id = runId('t6');
    const r = replay(p, id, MULTI, PACE);

    await probe.waitCount(trades, Math.floor(multi.events * 0.2));
    expect(await d1.stop('SIGTERM')).toBe(0);
    expect(d1.output).toMatch(/SIGTERM: finishing the batch in hand/);
    // It committed what it handled: the next worker neither repeats its work nor loses its state.
    expect(detectStats(d1).events).toBeGreaterThan(0);
    const d2 = await startDetect('vigil-d2', p);

    await probe.waitCount(trades, Math.floor(multi.events * 0.5));
    expect(await api.stop('SIGTERM')).toBe(0);
    expect(api.output).toMatch(/stopped; everything consumed is stored/);
    const api2 = await startApi('api2', p, apiDir);

    expect(await r.done(180_000)).toBe(0);
    expect(await storedFindings(apiDir, id)).toEqual(refMulti);

    expect(await d2.stop('SIGTERM')).toBe(0);
    const d2Stats = detectStats(d2);
    expect(d2Stats.statesLoaded).toBeGreaterThan(0); // d1's keys, from Redis
    expect(d2Stats.skippedRedelivered).toBe(0); // d1 committed everything it had applied
    expect(await probe.lag(`${p}vigil-detect`, trades)).toBe(0);
    expect(await api2.stop('SIGTERM')).toBe(0);
    expect(await probe.lag(`${p}vigil-store`, findingsTopic)).toBe(0);
  }, 240_000);

  it('vigil feeds: every event it normalized is on Kafka when it exits', async () => {
    track();
    const p = nextPrefix();
    const server = await BinanceTestServer.start({ symbols: ['BTCUSDT', 'ETHUSDT'], tickMs: 2, script: () => ({ ticks: 1_000_000 }) });
    try {
      const feeds = roles.start('feeds', ['feeds', '--feed', 'binance:btcusdt,ethusdt'], env(p, { VIGIL_BINANCE_WS_URL: server.wsUrl('f'), VIGIL_BINANCE_REST_URL: server.restUrl('f') }));
      await feeds.waitFor(/ready: producing/);
      await probe.waitCount(`${p}vigil.md.quotes`, 300);
      expect(await feeds.stop('SIGTERM')).toBe(0);
      const m = /vigil feeds info: stopped: \d+ frames, (\d+) events sent (\{.*\})/.exec(feeds.output);
      expect(m, feeds.output).not.toBeNull();
      const sent = Number(m![1]);
      const byKind = (JSON.parse(m![2]!) as { events: Record<string, number> }).events;
      let onKafka = 0;
      for (const t of EVENT_TOPICS) onKafka += await probe.count(`${p}${t}`);
      expect(sent).toBeGreaterThan(300);
      // Each status marker also travels in vigil.md.trades and vigil.md.quotes (ingest.ts status copies).
      expect(onKafka).toBe(sent + 2 * (byKind.status ?? 0));
    } finally {
      await server.close();
    }
  }, 120_000);

  it('vigil run over Kafka (all roles in one process), stopped and started again mid-stream', async () => {
    track();
    const p = nextPrefix();
    const runDir = join(dir, 't6-run');
    const start = (name: string) => roles.start(name, ['run', '--no-demo', '--port', '0'], env(p, { VIGIL_DATA_DIR: runDir }));
    const run1 = start('run');
    await run1.waitFor(/running on Kafka/);
    const trades = `${p}vigil.md.trades`;
    await probe.waitMembers(`${p}vigil-detect`, trades, 1);
    const id = runId('t6-run');
    const r = replay(p, id, MULTI, PACE);
    await probe.waitCount(trades, Math.floor(multi.events * 0.3));
    expect(await run1.stop('SIGTERM')).toBe(0);
    expect(run1.output).toMatch(/stopped; everything consumed is stored/);
    const run2 = start('run2');
    await run2.waitFor(/running on Kafka/);

    expect(await r.done(180_000)).toBe(0);
    expect(await storedFindings(runDir, id)).toEqual(refMulti);
    expect(await run2.stop('SIGTERM')).toBe(0);
    expect(await probe.lag(`${p}vigil-store`, `${p}vigil.findings`)).toBe(0);
  }, 240_000);
});

/** A transport that hands the runner's batches in by hand (offsets as a Kafka partition has them) and keeps its findings. */
class HandTransport implements Transport {
  readonly kind = 'kafka' as const;
  readonly findings: Finding[] = [];
  private options?: SubscribeOptions<CanonicalEvent>;

  async send<T>(topic: string, messages: readonly OutgoingMessage<T>[]): Promise<void> {
    if (topic === TOPICS.findings) for (const m of messages) this.findings.push(m.value as Finding);
  }

  async subscribe<T>(options: SubscribeOptions<T>): Promise<Subscription> {
    this.options = options as unknown as SubscribeOptions<CanonicalEvent>;
    return { group: options.group, stop: async () => undefined };
  }

  /** Delivers messages [from, to) of the stream as batches of `size`, like one partition of vigil.md.trades. */
  async deliver(stream: readonly CanonicalEvent[], from: number, to: number, size = 200): Promise<void> {
    for (let i = from; i < to; i += size) {
      const batch: Batch<CanonicalEvent> = {
        topic: TOPICS.trade,
        partition: 0,
        messages: stream.slice(i, Math.min(to, i + size)).map((value, j) => ({ key: eventKey(value), value, offset: i + j })),
      };
      await this.options!.eachBatch(batch);
    }
  }

  async drain(): Promise<void> {}
  stats() {
    return { sent: 0, delivered: 0, unrouted: 0, waits: 0, queued: 0 };
  }
  async close(): Promise<void> {}
}

describe('offset checkpoints: a crash after the save and before the commit (the takeover window)', () => {
  const RULE = 'price_jump.default';
  const stream: CanonicalEvent[] = captureTrades();
  const byId = (list: readonly Finding[]) => [...new Map(list.map(({ runId: _r, ...f }) => [f.id, f])).values()].sort((a, b) => a.ts - b.ts || a.id.localeCompare(b.id));

  async function worker(run: string, checkpoint: boolean) {
    const store = await RedisStateStore.connect({ url: REDIS_URL });
    const t = new HandTransport();
    const runner = new DetectorRunner(t, [createDetector('price_jump', {}, RULE)], run, {
      store,
      offsetCheckpoint: checkpoint ? { namespace: `${RUN}.hand.${run}` } : undefined,
    });
    await runner.start();
    return { store, t, runner };
  }

  it('the worker taking over skips what the dead one applied but did not commit: the states and findings of an uninterrupted run', async () => {
    requireServices();
    const refRun = runId('hand-ref');
    const ref = await worker(refRun, true);
    await ref.t.deliver(stream, 0, stream.length);
    const refState = await ref.store.load([{ runId: refRun, detector: 'price_jump', ruleId: RULE, key: 'binance:BTC-USDT' }]);
    await ref.store.close();
    const reference = byId(ref.t.findings);
    expect(reference.length).toBeGreaterThan(0);

    for (const cut of [1_000, 4_000, Math.floor(stream.length / 2) + 37, stream.length - 100]) {
      for (const checkpoint of [true, false]) {
        const run = runId(`hand-${cut}-${checkpoint}`);
        const a = await worker(run, checkpoint);
        // A handles up to the cut; its last batch (200 messages) is saved, then A dies before committing it.
        await a.t.deliver(stream, 0, cut);
        await a.store.close();
        // B gets the partition from the last committed offset: that batch is delivered again.
        const b = await worker(run, checkpoint);
        await b.t.deliver(stream, cut - 200, stream.length);
        const [state] = await b.store.load([{ runId: run, detector: 'price_jump', ruleId: RULE, key: 'binance:BTC-USDT' }]);
        await b.store.close();
        if (checkpoint) {
          expect(b.runner.counters.skippedRedelivered, `cut ${cut}`).toBe(200);
          expect(state, `cut ${cut}`).toEqual(refState[0]);
          expect(byId([...a.t.findings, ...b.t.findings]), `cut ${cut}`).toEqual(reference);
        } else {
          // Without the checkpoint the batch is applied twice: the state counts 200 trades more than there were.
          const s = state as { trades: number; late: number };
          const r = refState[0] as { trades: number; late: number };
          expect(s.trades + s.late, `cut ${cut}`).toBe(r.trades + r.late + 200);
        }
      }
    }
  });
});

describe('the spill file of the batch writer', () => {
  const rows = (n: number, from = 0) => Array.from({ length: n }, (_, i) => ({ id: from + i }));

  function flakySink() {
    const got: Array<{ id: number }> = [];
    const sink = { down: true, got, write: async (batch: readonly { id: number }[]) => {
      if (sink.down) throw new Error('store down');
      got.push(...batch);
    } };
    return sink;
  }

  it('holds the bound in memory, spills the rest in order, and writes everything once, in order, when the sink is back', async () => {
    const path = join(dir, 'spill-order', 'rows.jsonl');
    const sink = flakySink();
    const w = new BatchWriter<{ id: number }>('test writer', (b) => sink.write(b), { maxRows: 4, maxDelayMs: 5, retryBaseMs: 5, retryMaxMs: 20, spill: { path, maxBuffered: 3 } });
    for (let i = 0; i < 10; i++) w.write(rows(5, i * 5));
    expect(lines(path)).toBe(50 - 3);
    expect(w.spillCounters).toMatchObject({ spilled: 47, unread: 47 });
    expect(w.counters.pending).toBe(50);
    await sleep(50);
    sink.down = false;
    await w.flush();
    expect(sink.got.map((r) => r.id)).toEqual(rows(50).map((r) => r.id));
    expect(statSync(path).size).toBe(0);
    // Rows written after the file emptied go to memory again.
    w.write(rows(2, 50));
    await w.flush();
    expect(sink.got).toHaveLength(52);
    await w.close();
    expect(existsSync(path)).toBe(false);
  });

  it('a writer closed while the sink is down keeps every row in the file; the next one writes them first', async () => {
    const path = join(dir, 'spill-recover', 'rows.jsonl');
    const sink = flakySink();
    const w1 = new BatchWriter<{ id: number }>('w1', (b) => sink.write(b), { maxRows: 4, maxDelayMs: 5, retryBaseMs: 5, spill: { path, maxBuffered: 5 } });
    w1.write(rows(3));
    w1.write(rows(17, 3));
    expect(await w1.close({ timeoutMs: 100 })).toEqual({ kept: 20, lost: 0 });
    expect(lines(path)).toBe(20);
    // A torn last line (a crash mid-append) is cut off.
    writeFileSync(path, `${readFileSync(path, 'utf8')}{"id":`);
    sink.down = false;
    const w2 = new BatchWriter<{ id: number }>('w2', (b) => sink.write(b), { maxRows: 4, maxDelayMs: 5, spill: { path, maxBuffered: 5 } });
    expect(w2.spillCounters?.recovered).toBe(20);
    w2.write(rows(1, 20));
    await w2.flush();
    expect(sink.got.map((r) => r.id)).toEqual(rows(21).map((r) => r.id));
    await w2.close();
    expect(existsSync(path)).toBe(false);
  });

  it('dead letters keep their raw bytes through the file', async () => {
    const spillDir = join(dir, 'spill-dl');
    const stored: DeadLetter[] = [];
    let down = true;
    const store = { insertDeadLetters: async (l: readonly DeadLetter[]) => {
      if (down) throw new Error('down');
      stored.push(...l);
    } };
    const letters: DeadLetter[] = [0, 1, 2].map((i) => ({ ts: 1_700_000_000_000 + i, source: 's', origin: `o:${i}`, reason: 'r', raw: Buffer.from([i, 0, 255, 0xc3]), runId: 'x' }));
    const w1 = new DeadLetterWriter(store, { maxRows: 10, maxDelayMs: 5, retryBaseMs: 5, spill: { dir: spillDir, maxBuffered: 1 } });
    w1.write(letters);
    expect((await w1.close({ timeoutMs: 50 })).kept).toBe(3);
    down = false;
    const w2 = new DeadLetterWriter(store, { maxRows: 10, maxDelayMs: 5, spill: { dir: spillDir, maxBuffered: 1 } });
    await w2.flush();
    await w2.close();
    expect(stored.map((d) => d.raw.toString('hex'))).toEqual(letters.map((d) => d.raw.toString('hex')));
    expect(stored.map((d) => d.origin)).toEqual(['o:0', 'o:1', 'o:2']);
  });

  it('a spill file in use by another live process is refused', () => {
    const path = join(dir, 'spill-locked', 'rows.jsonl');
    const w = new BatchWriter<{ id: number }>('w', async () => undefined, { spill: { path, maxBuffered: 1 } });
    void w.close();
    // The lock names a live process that is not this one (the test runner's parent).
    writeFileSync(`${path}.lock`, String(process.ppid));
    expect(() => new BatchWriter<{ id: number }>('w', async () => undefined, { spill: { path, maxBuffered: 1 } })).toThrow(/in use by pid \d+/);
    rmSync(`${path}.lock`);
  });
});
