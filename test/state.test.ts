import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERR, VigilError } from '../src/core/errors.ts';
import type { StateRef, StateStore } from '../src/detectors/types.ts';
import { MemoryStateStore } from '../src/state/memory.ts';
import { openStateStore } from '../src/state/index.ts';
import { RedisStateStore } from '../src/state/redis.ts';
import { inspector, PrivateRedis } from './helpers/redis-server.ts';

const REDIS_URL = 'redis://127.0.0.1:6379';
const uniq = (name: string): string => `t-${name}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ref = (runId: string, key: string, detector = 'price_jump', ruleId = 'price_jump.default'): StateRef => ({ runId, detector, ruleId, key });

/** The same contract for every store. */
function storeSuite(name: string, open: () => Promise<StateStore>): void {
  describe(`${name} state store`, () => {
    let store: StateStore;
    beforeAll(async () => {
      store = await open();
    });
    afterAll(async () => {
      await store.close();
    });

    it('saves many and loads many, in order, with undefined where nothing is stored', async () => {
      const run = uniq('rt');
      const a = { v: 1, key: 'binance:BTC-USDT', samples: [0.5, -0.25, 1e-9], prev: null, nested: { n: 3 } };
      const b = { v: 1, key: 'binance:ETH-USDT', samples: [], prev: 2.5, nested: { n: 0 } };
      const c = { v: 2, other: 'rule' };
      await store.save([
        { ref: ref(run, 'binance:BTC-USDT'), state: a },
        { ref: ref(run, 'binance:ETH-USDT'), state: b },
        { ref: ref(run, 'binance:BTC-USDT', 'price_jump', 'price_jump.tight'), state: c },
      ]);
      const got = await store.load([
        ref(run, 'binance:ETH-USDT'),
        ref(run, 'nope:X-Y'),
        ref(run, 'binance:BTC-USDT'),
        ref(run, 'binance:BTC-USDT', 'price_jump', 'price_jump.tight'),
        ref(run, 'binance:BTC-USDT', 'other_detector', 'price_jump.default'),
      ]);
      expect(got).toEqual([b, undefined, a, c, undefined]);
      expect(await store.load([])).toEqual([]);
      await store.save([]); // no-op

      // Overwrite one, delete another.
      const a2 = { ...a, samples: [1, 2, 3] };
      await store.save([{ ref: ref(run, 'binance:BTC-USDT'), state: a2 }]);
      await store.delete([ref(run, 'binance:ETH-USDT'), ref(run, 'never:SAVED')]);
      expect(await store.load([ref(run, 'binance:BTC-USDT'), ref(run, 'binance:ETH-USDT')])).toEqual([a2, undefined]);
      await store.clear(run);
    });

    it('keeps runs apart; clear(run) removes that run only (not one whose id it prefixes)', async () => {
      const run = uniq('ns');
      const longer = `${run}:state:x`; // a run id that starts with the other's namespace
      const other = uniq('ns-other');
      await store.save([
        { ref: ref(run, 'k:A-B'), state: { run: 1 } },
        { ref: ref(longer, 'k:A-B'), state: { run: 2 } },
        { ref: ref(other, 'k:A-B'), state: { run: 3 } },
      ]);
      expect(await store.claim(run, 'cooldown:k:A-B', 60_000)).toBe(true);
      expect(await store.load([ref(run, 'k:A-B'), ref(longer, 'k:A-B'), ref(other, 'k:A-B')])).toEqual([{ run: 1 }, { run: 2 }, { run: 3 }]);
      expect(await store.clear(run)).toBe(2); // its state and its claim
      expect(await store.load([ref(run, 'k:A-B'), ref(longer, 'k:A-B'), ref(other, 'k:A-B')])).toEqual([undefined, { run: 2 }, { run: 3 }]);
      expect(await store.claim(run, 'cooldown:k:A-B', 60_000)).toBe(true); // the claim went with the run
      await store.clear(longer);
      await store.clear(other);
      await store.clear(run);
    });

    it('claims: one holder per name and run until the TTL expires', async () => {
      const run = uniq('claim');
      const other = uniq('claim-other');
      expect(await store.claim(run, 'dedupe:f1', 300)).toBe(true);
      expect(await store.claim(run, 'dedupe:f1', 300)).toBe(false);
      expect(await store.claim(run, 'dedupe:f2', 300)).toBe(true); // another name
      expect(await store.claim(other, 'dedupe:f1', 300)).toBe(true); // another run
      const [first, second] = await Promise.all([store.claim(run, 'race', 5_000), store.claim(run, 'race', 5_000)]);
      expect([first, second].sort()).toEqual([false, true]);
      await sleep(450);
      expect(await store.claim(run, 'dedupe:f1', 300)).toBe(true); // expired: free again
      expect(await store.claim(run, 'dedupe:f1', 300)).toBe(false);
      await expect(store.claim(run, 'bad', 0)).rejects.toThrow(/ttlMs/);
      await store.clear(run);
      await store.clear(other);
    });
  });
}

storeSuite('memory', async () => new MemoryStateStore());
storeSuite('Redis', () => RedisStateStore.connect({ url: REDIS_URL }));

describe('memory state store specifics', () => {
  it('holds states by reference (no serialization) and expires claims on its clock', async () => {
    let now = 1_000;
    const store = new MemoryStateStore({ now: () => now });
    expect(store.byReference).toBe(true);
    const state = { live: [1, 2] };
    await store.save([{ ref: ref('r', 'k'), state }]);
    const [got] = await store.load([ref('r', 'k')]);
    expect(got).toBe(state);
    expect(await store.claim('r', 'c', 100)).toBe(true);
    now += 99;
    expect(await store.claim('r', 'c', 100)).toBe(false);
    now += 1;
    expect(await store.claim('r', 'c', 100)).toBe(true);
    // Expired claims don't accumulate.
    for (let i = 0; i < 5_000; i++) {
      await store.claim('r', `many-${i}`, 10);
      now += 1;
    }
    expect((store as unknown as { claims: Map<string, number> }).claims.size).toBeLessThan(2_100);
  });

  it('openStateStore picks memory without REDIS_URL and Redis with it', async () => {
    const m = await openStateStore({});
    expect(m.kind).toBe('memory');
    const r = await openStateStore({ redisUrl: REDIS_URL });
    expect(r.kind).toBe('redis');
    expect(r.byReference).toBe(false);
    await Promise.all([m.close(), r.close()]);
  });
});

describe('Redis state store specifics', () => {
  it('writes vigil:<runId>:state:<detector>:<ruleId>:<key> as JSON with a TTL, and claims as SET NX PX', async () => {
    const store = await RedisStateStore.connect({ url: REDIS_URL, stateTtlMs: 3_600_000 });
    const raw = await inspector(REDIS_URL);
    const run = uniq('layout');
    try {
      await store.save([{ ref: ref(run, 'binance:BTC-USDT'), state: { a: [1, 2.5], b: null } }]);
      const key = `vigil:${run}:state:price_jump:price_jump.default:binance:BTC-USDT`;
      expect(JSON.parse((await raw.get(key)) as string)).toEqual({ a: [1, 2.5], b: null });
      const ttl = await raw.pTTL(key);
      expect(ttl).toBeGreaterThan(3_500_000);
      expect(ttl).toBeLessThanOrEqual(3_600_000);
      expect(await store.claim(run, 'cooldown:up', 10_000)).toBe(true);
      const pttl = await raw.pTTL(`vigil:${run}:claim:cooldown:up`);
      expect(pttl).toBeGreaterThan(9_000);
      expect(pttl).toBeLessThanOrEqual(10_000);
      // A claim taken by another worker (here: written directly) is respected.
      await raw.set(`vigil:${run}:claim:taken`, 'someone-else', { expiration: { type: 'PX', value: 10_000 } });
      expect(await store.claim(run, 'taken', 10_000)).toBe(false);
      // Another store instance (another worker) sees the same state.
      const other = await RedisStateStore.connect({ url: REDIS_URL });
      expect(await other.load([ref(run, 'binance:BTC-USDT')])).toEqual([{ a: [1, 2.5], b: null }]);
      expect(await other.claim(run, 'cooldown:up', 10_000)).toBe(false);
      await other.close();
      await store.clear(run);
      expect(await raw.exists([key, `vigil:${run}:claim:cooldown:up`, `vigil:${run}:claim:taken`])).toBe(0);
    } finally {
      await store.close();
      raw.destroy();
    }
  });

  it('fails fast with VIGIL_ERR_STORE when Redis is not there at all (after maxWaitMs)', async () => {
    const { freePort } = await import('./helpers/redis-server.ts');
    const port = await freePort(); // nothing listens here
    const started = Date.now();
    const err = await RedisStateStore.connect({ url: `redis://127.0.0.1:${port}`, maxWaitMs: 600 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VigilError);
    expect((err as VigilError).code).toBe(ERR.STORE);
    expect((err as VigilError).message).toMatch(/not reachable within 600 ms/);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  describe('across a real Redis restart (a private redis-server, so other tests keep theirs)', () => {
    let server: PrivateRedis;
    beforeAll(async () => {
      server = await PrivateRedis.start();
    });
    afterAll(async () => {
      await server.stop();
    });

    it('operations issued while Redis is down wait and complete once it is back; reconnect reports the lost dataset', async () => {
      const store = await RedisStateStore.connect({ url: server.url, maxWaitMs: 20_000, backoffBaseMs: 20, backoffCapMs: 200 });
      const events: boolean[] = [];
      store.onReconnect((i) => events.push(i.dataLost));
      const run = uniq('restart');
      await store.save([{ ref: ref(run, 'k1'), state: { n: 1 } }]);
      expect(await store.claim(run, 'held', 60_000)).toBe(true);

      await server.shutdown();
      expect(server.cli('ping').stdout.trim()).not.toBe('PONG');
      // Issued while Redis is down: they must neither fail nor be lost.
      const saving = store.save([{ ref: ref(run, 'k2'), state: { n: 2 } }]);
      const loading = store.load([ref(run, 'k2')]);
      let settled = false;
      void Promise.allSettled([saving, loading]).then(() => {
        settled = true;
      });
      await sleep(700);
      expect(settled).toBe(false); // still waiting for Redis
      await server.up();
      await saving;
      // The load may run before or after the save reached Redis; both are fine, but it must resolve.
      expect([[undefined], [{ n: 2 }]]).toContainEqual(await loading);
      expect(await store.load([ref(run, 'k2')])).toEqual([{ n: 2 }]);
      // Redis kept nothing on disk: k1 is gone, and the store says so.
      expect(await store.load([ref(run, 'k1')])).toEqual([undefined]);
      await waitFor(() => events.length > 0);
      expect(events).toEqual([true]);
      expect(store.counters.reconnects).toBe(1);
      expect(store.counters.dataLosses).toBe(1);
      // The claim this process held was re-asserted on the new dataset.
      expect(await store.claim(run, 'held', 60_000)).toBe(false);
      await store.close();
    });

    it('a blip without data loss is reported as such', async () => {
      const store = await RedisStateStore.connect({ url: server.url, backoffBaseMs: 20, backoffCapMs: 200 });
      const events: boolean[] = [];
      store.onReconnect((i) => events.push(i.dataLost));
      server.cli('client', 'kill', 'type', 'normal'); // drops the connection, keeps the data
      await waitFor(() => events.length > 0);
      expect(events).toEqual([false]);
      await store.close();
    });

    it('gives up with VIGIL_ERR_STORE when Redis stays down longer than maxWaitMs', async () => {
      const store = await RedisStateStore.connect({ url: server.url, maxWaitMs: 500, backoffBaseMs: 20, backoffCapMs: 100 });
      await server.shutdown();
      try {
        const err = await store.save([{ ref: ref('r', 'k'), state: {} }]).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(VigilError);
        expect((err as VigilError).code).toBe(ERR.STORE);
        expect((err as VigilError).message).toMatch(/save: Redis unavailable for 500 ms/);
      } finally {
        await store.close();
        await server.up();
      }
    });
  });
});

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(20);
  }
}
