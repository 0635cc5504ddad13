// Detector state in Redis: a run split between workers, idle eviction, a Redis restart mid-stream and
// run-id namespaces all give exactly the findings of one uninterrupted in-memory run.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Finding, Trade } from '../src/core/events.ts';
import { buildDetectors } from '../src/detectors/configure.ts';
import { priceJumpSpec } from '../src/detectors/price-jump.ts';
import { createDetector } from '../src/detectors/registry.ts';
import type { StateRef, StateStore } from '../src/detectors/types.ts';
import { DetectorRunner } from '../src/pipeline/detect.ts';
import { Pipeline } from '../src/pipeline/pipeline.ts';
import { replayFiles } from '../src/replay/replay.ts';
import { MemoryStateStore } from '../src/state/memory.ts';
import { RedisStateStore, stateRedisKey } from '../src/state/redis.ts';
import { MemoryTransport } from '../src/transport/memory.ts';
import { TOPICS } from '../src/transport/types.ts';
import { captureTrades, HFT_CAPTURE } from './helpers/capture-trades.ts';
import { inspector, PrivateRedis } from './helpers/redis-server.ts';

const REDIS_URL = 'redis://127.0.0.1:6379';
const RULE = 'price_jump.default';
const uniq = (name: string): string => `t-${name}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const btc = captureTrades();
// The gappy key is silent over [GAP_FROM, GAP_TO): 90 s of event time, while the other keys go on.
const GAP_FROM = Date.UTC(2024, 7, 8, 23, 56, 0);
const GAP_TO = Date.UTC(2024, 7, 8, 23, 57, 30);
/** Three keys: the capture, its mirror image (every move reversed) and the capture with a 90 s hole. */
const trades: Trade[] = [
  ...btc,
  ...btc.map((t) => ({ ...t, venue: 'mirror', price: Math.round((1e9 / t.price) * 100) / 100 })),
  ...btc.filter((t) => t.ts < GAP_FROM || t.ts >= GAP_TO).map((t) => ({ ...t, venue: 'gappy' })),
].sort((a, b) => a.ts - b.ts); // stable: per key, capture order
const KEYS = ['binance:BTC-USDT', 'mirror:BTC-USDT', 'gappy:BTC-USDT'];
const keyOf = (t: Trade): string => `${t.venue}:${t.symbol}`;
const firstAt = (ts: number): number => trades.findIndex((t) => t.ts >= ts);

/** One worker: its own transport (so its own partitions' consumer), detector instance and runner. */
class Worker {
  readonly findings: Finding[] = [];
  private constructor(
    readonly transport: MemoryTransport,
    readonly runner: DetectorRunner,
  ) {}

  static async start(store: StateStore, runId: string, options: { idleMs?: number; partitions?: number } = {}): Promise<Worker> {
    const transport = new MemoryTransport({ partitions: options.partitions ?? 4, maxBatch: 200 });
    const runner = new DetectorRunner(transport, [createDetector('price_jump', {}, RULE)], runId, { store, idleMs: options.idleMs });
    const w = new Worker(transport, runner);
    await transport.subscribe<Finding>({
      group: 'collect',
      topics: [TOPICS.findings],
      eachBatch: (b) => {
        for (const m of b.messages) w.findings.push(m.value);
      },
    });
    await runner.start();
    return w;
  }

  /** Sends the trades in chunks (a `run` header when given) and waits until the runner is through them. */
  async feed(list: readonly Trade[], run?: string): Promise<void> {
    for (let i = 0; i < list.length; i += 300) {
      await this.transport.send(
        TOPICS.trade,
        list.slice(i, i + 300).map((t) => (run ? { key: keyOf(t), value: t, headers: { run } } : { key: keyOf(t), value: t })),
      );
    }
    await this.transport.drain();
  }

  async stop(): Promise<void> {
    await this.runner.stop();
    await this.transport.close();
  }
}

/** Findings of one run, in a canonical order (per key the order is the stream's), run id checked and set aside. */
function ofRun(findings: readonly Finding[], runId: string): Omit<Finding, 'runId'>[] {
  for (const f of findings) expect(f.runId).toBe(runId);
  return findings
    .map(({ runId: _r, ...rest }) => rest)
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.ts - b.ts || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)));
}

const ref = (runId: string, key: string): StateRef => ({ runId, detector: 'price_jump', ruleId: RULE, key });
const det = createDetector('price_jump', {}, RULE);
/** A state as plain JSON (what Redis holds), from a live object or from JSON. */
const asJSON = (state: unknown, live: boolean): unknown => JSON.parse(JSON.stringify(live ? det.toJSON(state) : state));

/** The uninterrupted run: one worker, state in memory, never evicted. */
let reference: { findings: Omit<Finding, 'runId'>[]; states: unknown[] };
beforeAll(async () => {
  const store = new MemoryStateStore();
  const w = await Worker.start(store, 'ref', { idleMs: 365 * 86_400_000 });
  await w.feed(trades);
  await w.stop();
  const states = await store.load(KEYS.map((k) => ref('ref', k)));
  reference = { findings: ofRun(w.findings, 'ref'), states: states.map((s) => asJSON(s, true)) };
  expect(w.runner.counters.evicted).toBe(0);
});

describe('the reference run', () => {
  it('has findings on every key, some after the gappy key returns', () => {
    expect(reference.findings.length).toBeGreaterThanOrEqual(10);
    for (const k of KEYS) expect(reference.findings.some((f) => f.key === k), k).toBe(true);
    expect(reference.findings.some((f) => f.key === 'gappy:BTC-USDT' && f.ts >= GAP_TO)).toBe(true);
    // It agrees with the detector run directly (no runner) on the capture key.
    const direct: string[] = [];
    const d = priceJumpSpec.create(priceJumpSpec.params.parse({}), RULE);
    const s = d.newState('binance:BTC-USDT');
    const drafts: Parameters<typeof d.onEvent>[2] = [];
    for (const t of btc) d.onEvent(s, t, drafts);
    for (const f of drafts) direct.push(`${f.ts}:${f.summary}`);
    expect(reference.findings.filter((f) => f.key === 'binance:BTC-USDT').map((f) => `${f.ts}:${f.summary}`)).toEqual(direct);
  });
});

describe('takeover through Redis', () => {
  const cuts = (): number[] => {
    const at = reference.findings.map((f) => trades.findIndex((t) => t.ts === f.ts && keyOf(t) === f.key));
    return [
      Math.floor(trades.length / 2),
      firstAt(GAP_FROM + 30_000), // while the gappy key is silent
      at[0] as number, // right at a trigger (the trigger is the first trade B sees)
      (at[at.length - 1] as number) + 1, // right after the last trigger, inside its cooldown
      1,
    ];
  };

  it('worker B, with empty memory and its own connection, continues exactly where worker A stopped', async () => {
    for (const cut of cuts()) {
      const runId = uniq('takeover');
      const storeA = await RedisStateStore.connect({ url: REDIS_URL });
      const a = await Worker.start(storeA, runId);
      await a.feed(trades.slice(0, cut));
      await a.stop();
      await storeA.close(); // A is gone: only Redis remembers

      const storeB = await RedisStateStore.connect({ url: REDIS_URL });
      const b = await Worker.start(storeB, runId);
      expect(b.runner.keyCount()).toBe(0);
      await b.feed(trades.slice(cut));
      const keysBefore = new Set(trades.slice(0, cut).map(keyOf));
      const keysAfter = new Set(trades.slice(cut).map(keyOf));
      expect(b.runner.counters.statesLoaded, `cut ${cut}`).toBe([...keysAfter].filter((k) => keysBefore.has(k)).length);
      expect(b.runner.counters.loadCalls).toBeLessThanOrEqual(4 * 2); // at most a load or two per partition, never one per event
      await b.stop();

      expect(ofRun([...a.findings, ...b.findings], runId), `cut at ${cut}`).toEqual(reference.findings);
      const saved = await storeB.load(KEYS.map((k) => ref(runId, k)));
      expect(saved.map((s) => asJSON(s, false))).toEqual(reference.states);
      await storeB.clear(runId);
      await storeB.close();
    }
  });

  it('a worker takes over a partition revoked mid-run (final save on revoke), both sharing one Redis', async () => {
    const runId = uniq('revoke');
    const storeA = await RedisStateStore.connect({ url: REDIS_URL });
    const storeB = await RedisStateStore.connect({ url: REDIS_URL });
    const a = await Worker.start(storeA, runId);
    const b = await Worker.start(storeB, runId);
    const third = Math.floor(trades.length / 3);
    await a.feed(trades.slice(0, third));
    expect(a.runner.keyCount()).toBe(3);
    await a.runner.stop(); // the transport revokes every partition: final save, keys leave memory
    expect(a.runner.keyCount()).toBe(0);
    expect(a.runner.counters.revoked).toBe(3);
    await b.feed(trades.slice(third, 2 * third));
    await b.runner.stop();
    // And back to a fresh runner on A's side.
    const a2 = await Worker.start(storeA, runId);
    await a2.feed(trades.slice(2 * third));
    await a2.stop();
    await a.transport.close();
    await b.transport.close();
    expect(ofRun([...a.findings, ...b.findings, ...a2.findings], runId)).toEqual(reference.findings);
    await storeA.clear(runId);
    await Promise.all([storeA.close(), storeB.close()]);
  });
});

describe('idle eviction', () => {
  for (const kind of ['memory', 'redis'] as const) {
    it(`${kind}: keys idle for VIGIL_STATE_IDLE_MS of event time leave memory and come back with their state`, async () => {
      const runId = uniq(`idle-${kind}`);
      const store: StateStore = kind === 'memory' ? new MemoryStateStore() : await RedisStateStore.connect({ url: REDIS_URL });
      // One partition, so the busy keys move the gappy key's partition clock through its silence.
      const w = await Worker.start(store, runId, { idleMs: 30_000, partitions: 1 });
      const resumeAt = firstAt(GAP_TO);
      await w.feed(trades.slice(0, resumeAt));
      expect(w.runner.counters.evicted).toBe(1); // the gappy key, during its 90 s of silence
      expect(w.runner.keyCount()).toBe(2);
      await w.feed(trades.slice(resumeAt));
      expect(w.runner.counters.statesLoaded).toBe(1); // it came back from the store
      expect(w.runner.keyCount()).toBe(3);
      await w.stop();
      expect(ofRun(w.findings, runId)).toEqual(reference.findings);
      const saved = await store.load(KEYS.map((k) => ref(runId, k)));
      expect(saved.map((s) => asJSON(s, kind === 'memory'))).toEqual(reference.states);
      await store.clear(runId);
      await store.close();
    });
  }

  it('with a tiny idle time every key is evicted and restored over and over, and nothing changes', async () => {
    const runId = uniq('idle-churn');
    const store = await RedisStateStore.connect({ url: REDIS_URL });
    // 1 ms: a key not seen in a batch's last millisecond of event time is evicted when the batch ends.
    const w = await Worker.start(store, runId, { idleMs: 1, partitions: 2 });
    await w.feed(trades);
    await w.stop();
    expect(w.runner.counters.evicted).toBeGreaterThan(20);
    expect(w.runner.counters.statesLoaded).toBeGreaterThan(20);
    expect(ofRun(w.findings, runId)).toEqual(reference.findings);
    await store.clear(runId);
    await store.close();
  });
});

describe('a Redis restart mid-stream (the real server shut down and started again)', () => {
  let server: PrivateRedis;
  beforeAll(async () => {
    server = await PrivateRedis.start();
  });
  afterAll(async () => {
    await server.stop();
  });

  it('the worker reconnects, saves its in-memory states again, and both it and a later taker-over find exactly the reference', async () => {
    const runId = uniq('restart');
    const storeA = await RedisStateStore.connect({ url: server.url, backoffBaseMs: 20, backoffCapMs: 250 });
    const a = await Worker.start(storeA, runId);
    const c1 = firstAt(GAP_FROM + 10_000); // the gappy key fell silent 10 s ago
    const c2 = firstAt(GAP_TO - 10_000); // …and is still silent here
    expect(trades.slice(c1, c2).some((t) => t.venue === 'gappy')).toBe(false);
    await a.feed(trades.slice(0, c1));
    const raw = await inspector(server.url);
    const gappyKey = stateRedisKey(ref(runId, 'gappy:BTC-USDT'));
    expect(await raw.exists(gappyKey)).toBe(1);
    raw.destroy();

    await server.shutdown(); // redis-cli shutdown nosave: everything Redis held is gone
    expect(server.cli('ping').stdout.trim()).not.toBe('PONG');
    const feeding = a.feed(trades.slice(c1, c2)); // batches wait for Redis to save their states
    await sleep(800);
    expect(a.runner.counters.events).toBeLessThan(c2); // held up: the first batch after the shutdown waits for its save
    await server.up();
    await feeding;

    expect(storeA.counters.dataLosses).toBe(1);
    expect(a.runner.counters.recheckpoints).toBe(1);
    // The gappy key saw no event since the restart, yet its state is back in Redis (the re-checkpoint).
    const raw2 = await inspector(server.url);
    expect(await raw2.exists(gappyKey)).toBe(1);
    raw2.destroy();

    // B takes the rest over from Redis alone, with empty memory.
    const storeB = await RedisStateStore.connect({ url: server.url });
    const b = await Worker.start(storeB, runId);
    await b.feed(trades.slice(c2));
    expect(b.runner.counters.statesLoaded).toBe(3);
    await b.stop();
    expect(ofRun([...a.findings, ...b.findings], runId)).toEqual(reference.findings);

    // A, which kept its memory across the restart, finishes the run on its own: the same findings again.
    const aFindingsBefore = a.findings.length;
    await a.feed(trades.slice(c2));
    expect(a.runner.counters.statesLoaded).toBe(0); // it never needed the store
    await a.stop();
    expect(ofRun(a.findings, runId)).toEqual(reference.findings);
    expect(a.findings.length).toBeGreaterThan(aFindingsBefore);
    await Promise.all([storeA.close(), storeB.close()]);
  });
});

describe('run-id namespaces', () => {
  it('two runs over the same key, interleaved on one runner (run header) and on Redis, never mix', async () => {
    const live = uniq('live');
    const replay = uniq('replay');
    // The replay run: the mirror stream, but under the very same key as the live one.
    const mirrored = trades.filter((t) => t.venue === 'mirror').map((t) => ({ ...t, venue: 'binance' }));
    const direct = trades.filter((t) => t.venue === 'binance');
    const expectedReplay = ofRun(
      (await runAlone(mirrored)).map((f) => ({ ...f, runId: 'x' })),
      'x',
    );
    const expectedLive = reference.findings.filter((f) => f.key === 'binance:BTC-USDT');

    const store = await RedisStateStore.connect({ url: REDIS_URL });
    const w = await Worker.start(store, live); // default run: live; the replay comes with `run` headers
    for (let i = 0; i < direct.length; i += 1000) {
      await w.feed(direct.slice(i, i + 1000));
      await w.feed(mirrored.slice(i, i + 1000), replay);
    }
    expect(w.runner.keyCount()).toBe(2); // one key, two runs
    await w.stop();
    expect(ofRun(w.findings.filter((f) => f.runId === live), live)).toEqual(expectedLive);
    expect(ofRun(w.findings.filter((f) => f.runId === replay), replay)).toEqual(expectedReplay);
    expect(w.findings.length).toBe(expectedLive.length + expectedReplay.length);

    const raw = await inspector(REDIS_URL);
    const liveKey = `vigil:${live}:state:price_jump:${RULE}:binance:BTC-USDT`;
    const replayKey = `vigil:${replay}:state:price_jump:${RULE}:binance:BTC-USDT`;
    expect(await raw.exists([liveKey, replayKey])).toBe(2);
    expect(JSON.parse((await raw.get(liveKey)) as string)).toEqual(reference.states[0]);
    expect(await raw.get(liveKey)).not.toEqual(await raw.get(replayKey));

    // A fresh run on the same data starts from nothing, whatever the other runs left in Redis.
    const third = uniq('third');
    const w3 = await Worker.start(store, third);
    await w3.feed(direct);
    await w3.stop();
    expect(w3.runner.counters.statesLoaded).toBe(0);
    expect(ofRun(w3.findings, third)).toEqual(expectedLive);

    // Clearing one run leaves the others alone.
    await store.clear(replay);
    expect(await raw.exists([liveKey, replayKey])).toBe(1);
    raw.destroy();
    await store.clear(live);
    await store.clear(third);
    await store.close();
  });

  async function runAlone(list: Trade[]): Promise<Finding[]> {
    const w = await Worker.start(new MemoryStateStore(), 'alone');
    await w.feed(list);
    await w.stop();
    return w.findings;
  }
});

describe('the pipeline with REDIS_URL', () => {
  it('replays the raw capture with state in Redis under the run id; a replay (ephemeral state) re-run starts fresh', async () => {
    const runId = uniq('pipeline');
    const detectors = () => buildDetectors({ detectors: {} });
    const inMemory = await new Pipeline({ runId, detectors: detectors() }).start();
    const m = await replayFiles(inMemory, { files: [HFT_CAPTURE], speed: { mode: 'max' } });
    await inMemory.close();
    expect(inMemory.detectors.store.kind).toBe('memory');
    expect(m.findings.price_jump).toBe(5);

    const replay = async (ephemeralState: boolean) => {
      const p = await new Pipeline({ runId, detectors: detectors(), redisUrl: REDIS_URL, stateIdleMs: 60_000, ephemeralState }).start();
      expect(p.detectors.store.kind).toBe('redis');
      const summary = await replayFiles(p, { files: [HFT_CAPTURE], speed: { mode: 'max' } });
      await p.close();
      return summary;
    };
    const raw = await inspector(REDIS_URL);
    const key = `vigil:${runId}:state:price_jump:${RULE}:binance:BTC-USDT`;
    try {
      expect((await replay(false)).findings).toEqual(m.findings);
      // The rule's state (watermark, late events) around the detector's own (d).
      expect(JSON.parse((await raw.get(key)) as string)).toMatchObject({ v: 1, late: 0, d: { v: 1, key: 'binance:BTC-USDT', trades: btc.length, late: 0 } });
      // The state outlived the pipeline: a second pipeline of the run continues from it, so the same
      // trades again are all in the past for the detector.
      expect((await replay(false)).findings.price_jump).toBe(0);
      // Every trade is accounted for: used, late for the detector (within the rule's allowed lateness),
      // or late for the rule (further behind the key's newest event than the allowance).
      const again = JSON.parse((await raw.get(key)) as string) as { late: number; d: { trades: number; late: number } };
      expect(again.d.trades + again.d.late + again.late).toBe(2 * btc.length);
      expect(again.d.late + again.late).toBeGreaterThan(btc.length - 100); // all but the last second's trades
      expect(again.late).toBeGreaterThan(0);
      // What `vigil replay` does: the run's state is cleared at start (and at close).
      expect((await replay(true)).findings).toEqual(m.findings);
      expect(await raw.exists(key)).toBe(0);
    } finally {
      await raw.del(key);
      raw.destroy();
    }
  });
});
