// Stored market and transaction context (migration 7, src/storage/context-writer.ts, context-query.ts) and
// its routes: the events fed through a Pipeline come back around a finding, thinned quotes exactly as the
// rule says, OHLC buckets equal to a brute-force computation, transactions once whatever their views.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { AlertHub } from '../src/api/alert-hub.ts';
import { loadConfig } from '../src/core/config.ts';
import { buildApi } from '../src/api/server.ts';
import type { CanonicalEvent, Finding, Label, Quote, Trade, Transaction } from '../src/core/events.ts';
import { buildDetectors } from '../src/detectors/configure.ts';
import { binanceAdapter } from '../src/feeds/binance.ts';
import { Ingestor } from '../src/pipeline/ingest.ts';
import { Pipeline } from '../src/pipeline/pipeline.ts';
import { RunHeaderTransport, startApiSide, transportFor } from '../src/pipeline/roles.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import { ContextStore } from '../src/storage/context-query.ts';
import { ContextRows } from '../src/storage/context-rows.ts';
import type { ContextEvent, FindingContext, PriceSeries } from '../src/storage/context-types.ts';
import { ContextWriter, MAX_THINNING_KEYS, QUOTE_THINNING_MS } from '../src/storage/context-writer.ts';
import { Db } from '../src/storage/db.ts';
import { openEngine, type Engine } from '../src/storage/engine.ts';
import type { Store } from '../src/storage/types.ts';
import { HFT_CAPTURE, tempDir } from './helpers/cli.ts';

const dir = tempDir('vigil-context-');
const MARKET_RUN = 'ctx-market';
const TX_RUN = 'ctx-tx';
const QUOTES_RUN = 'ctx-quotes-only';
let store: Store;
let app: FastifyInstance;
let rulesFile: string;

/** The capture's canonical events, normalized here, independently of the pipeline that stores them. */
const fed: CanonicalEvent[] = [];
const trades = () => fed.filter((e): e is Trade => e.kind === 'trade');
const quotes = () => fed.filter((e): e is Quote => e.kind === 'quote');

async function runPipeline(runId: string, events: readonly CanonicalEvent[], opts: { storeContext?: boolean } = {}): Promise<Pipeline> {
  const detectors = buildDetectors({ detectors: {}, VIGIL_RULES: rulesFile });
  const pipeline = await new Pipeline({ runId, detectors, store, partitions: 3, queueCapacity: 256, ...opts }).start();
  for (const ev of events) await pipeline.ingestor.pushEvent(ev);
  await pipeline.close();
  return pipeline;
}

async function get<T>(url: string): Promise<{ status: number; body: T }> {
  const res = await app.inject({ url });
  return { status: res.statusCode, body: res.json() as T };
}

async function countRows(table: string, runId: string, final = true): Promise<number> {
  const text = await store.sql(`SELECT count() AS n FROM ${table} ${final ? 'FINAL' : ''} WHERE run_id = '${runId}'`, 'JSONEachRow');
  return Number((JSON.parse(text) as { n: string | number }).n);
}

/** Trade order within one millisecond: numeric trade id (Binance's ids are numbers). */
const tradeOrder = (a: Trade, b: Trade) => a.ts - b.ts || Number(a.tradeId) - Number(b.tradeId);

/** The thinning rule, applied here on its own: the first quote of each later 100 ms bucket, per venue and symbol. */
function thinned(qs: readonly Quote[]): Quote[] {
  const last = new Map<string, number>();
  const kept: Quote[] = [];
  for (const q of qs) {
    const key = `${q.venue}|${q.symbol}`;
    const bucket = Math.floor(q.ts / 100);
    const prev = last.get(key);
    if (prev !== undefined && bucket <= prev) continue;
    last.set(key, bucket);
    kept.push(q);
  }
  return kept;
}

beforeAll(async () => {
  rulesFile = join(dir, 'rules.yaml');
  writeFileSync(
    rulesFile,
    toYaml({
      description: 'context test rules',
      rules: [
        { id: 'pj', detector: 'price_jump' },
        { id: 'vel', detector: 'velocity', params: { mode: 'absolute', maxCount: 10, maxAmount: 0 } },
      ],
    }),
  );
  const normalizer = binanceAdapter.createNormalizer();
  for (const line of gunzipSync(readFileSync(HFT_CAPTURE)).toString('utf8').split('\n')) {
    if (line.length === 0) continue;
    const sp = line.indexOf(' ');
    normalizer.normalize({ recvTs: Number(line.slice(0, sp).slice(0, -6)), source: 'binance', data: line.slice(sp + 1) }, fed as never[]);
  }
  store = await openStore({ dataDir: dir });
  app = await buildApi({ store, hub: new AlertHub() });
  await runPipeline(MARKET_RUN, fed);
}, 180_000);

afterAll(async () => {
  await app?.close();
  await store?.close();
});

describe('market context', () => {
  it('stores every trade once, and the quotes the thinning rule keeps — exactly', async () => {
    expect(trades().length).toBe(9757); // the capture, as pipeline-e2e counts it
    expect(await countRows('trades', MARKET_RUN, false)).toBe(trades().length);
    const expected = thinned(quotes());
    expect(QUOTE_THINNING_MS).toBe(100);
    expect(expected.length).toBeLessThan(quotes().length); // the rule did thin
    expect(await countRows('quotes', MARKET_RUN, false)).toBe(expected.length);
    const { body } = await get<{ items: Array<{ venue: string; symbol: string; trades: number; lastTs: number }> }>(`/api/instruments?run=${MARKET_RUN}`);
    expect(body.items).toEqual([{ venue: 'binance', symbol: 'BTC-USDT', trades: trades().length, lastTs: Math.max(...trades().map((t) => t.ts)) }]);
  });

  it("the context of a price_jump finding holds the instrument's trades and kept quotes in its window", async () => {
    const page = await store.searchFindings({ runId: MARKET_RUN, detector: ['price_jump'], limit: 100, order: 'asc' });
    expect(page.items.length).toBeGreaterThan(0);
    const f = page.items[0]!;
    // Default margins: max(60 s, the window's length) on each side; at most 2000 rows by default.
    const dflt = await get<FindingContext>(`/api/findings/${f.id}/context`);
    expect(dflt.status).toBe(200);
    const margin = Math.max(60_000, f.windowEnd - f.windowStart);
    expect(dflt.body.window).toEqual({ from: f.windowStart - margin, to: f.windowEnd + margin });
    const inDefault = trades().filter((t) => t.ts >= f.windowStart - margin && t.ts <= f.windowEnd + margin).length;
    expect(dflt.body.trades).toHaveLength(Math.min(2000, inDefault));
    expect(dflt.body.truncated.trades).toBe(inDefault > 2000);
    // Every row of a window that fits the limit (the widest margin that does), compared one by one.
    const fits = (m: number) => trades().filter((t) => t.ts >= f.windowStart - m && t.ts <= f.windowEnd + m).length <= 5000;
    const m = [5_000, 2_000, 1_000, 500, 0].find(fits)!;
    const { status, body } = await get<FindingContext>(`/api/findings/${f.id}/context?run=${MARKET_RUN}&before=${m}&after=${m}&limit=5000`);
    expect(status).toBe(200);
    const from = f.windowStart - m;
    const to = f.windowEnd + m;
    expect(body.window).toEqual({ from, to });
    expect(body.kind).toBe('market');
    expect(body.finding).toEqual(f);
    const inWindow = (e: { ts: number }) => e.ts >= from && e.ts <= to;
    const expectedTrades = trades().filter(inWindow).sort(tradeOrder);
    expect(expectedTrades.length).toBeGreaterThan(100);
    expect(expectedTrades.length).toBeLessThanOrEqual(5000);
    expect(body.trades).toEqual(expectedTrades.map((t) => ({ ts: t.ts, venue: t.venue, symbol: t.symbol, price: t.price, size: t.qty, side: t.side })));
    // The trigger is among them.
    const trigger = f.evidence.triggers.find((r) => r.startsWith('trade:'))!;
    expect(body.trades.some((t, i) => t.ts === f.ts && `trade:binance:BTC-USDT:${expectedTrades[i]!.tradeId}` === trigger)).toBe(true);
    const expectedQuotes = thinned(quotes()).filter(inWindow);
    expect(body.quotes).toEqual(expectedQuotes.map((q) => ({ ts: q.ts, venue: q.venue, symbol: q.symbol, bid: q.bidPx, ask: q.askPx, bidSize: q.bidQty, askSize: q.askQty })));
    expect(body.transactions).toEqual([]);
    expect(body.truncated).toEqual({ trades: false, quotes: false, transactions: false });
  });

  it('before/after set the window; a limit keeps the rows nearest the finding', async () => {
    const f = (await store.searchFindings({ runId: MARKET_RUN, detector: ['price_jump'], limit: 1, order: 'asc' })).items[0]!;
    const narrow = (await get<FindingContext>(`/api/findings/${f.id}/context?before=0&after=0&limit=5000`)).body;
    expect(narrow.window).toEqual({ from: f.windowStart, to: f.windowEnd });
    expect(narrow.trades.length).toBe(trades().filter((t) => t.ts >= f.windowStart && t.ts <= f.windowEnd).length);
    const few = (await get<FindingContext>(`/api/findings/${f.id}/context?limit=7`)).body;
    expect(few.trades).toHaveLength(7);
    expect(few.truncated.trades).toBe(true);
    // The 7 nearest in time to the finding's ts (ties broken by time, then trade id), back in time order.
    const nearest = trades()
      .filter((t) => t.ts >= few.window.from && t.ts <= few.window.to)
      .sort((a, b) => Math.abs(a.ts - f.ts) - Math.abs(b.ts - f.ts) || tradeOrder(a, b))
      .slice(0, 7)
      .sort(tradeOrder);
    expect(few.trades.map((t) => [t.ts, t.price, t.size])).toEqual(nearest.map((t) => [t.ts, t.price, t.qty]));
  });

  it('a finding without a venue gets every venue of its symbol; an unknown finding is a 404', async () => {
    const f = (await store.searchFindings({ runId: MARKET_RUN, detector: ['price_jump'], limit: 1, order: 'asc' })).items[0]!;
    const { venue: _venue, ...noVenue } = f;
    const ctx = await store.getFindingContext({ ...noVenue, id: 'f'.repeat(32) }, { before: 0, after: 0, limit: 5000 });
    expect(ctx.trades.length).toBe(trades().filter((t) => t.ts >= f.windowStart && t.ts <= f.windowEnd).length);
    const missing = await get<{ error: { code: string } }>(`/api/findings/${'0'.repeat(32)}/context`);
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('VIGIL_ERR_NOT_FOUND');
  });
});

describe('prices', () => {
  /** OHLC per epoch-aligned bucket, by brute force over the trades fed. */
  function ohlc(ts: readonly Trade[], size: number, from = -Infinity, to = Infinity) {
    const buckets = new Map<number, Trade[]>();
    for (const t of [...ts].sort(tradeOrder)) {
      if (t.ts < from || t.ts >= to) continue;
      const b = Math.floor(t.ts / size) * size;
      let list = buckets.get(b);
      if (!list) buckets.set(b, (list = []));
      list.push(t);
    }
    return [...buckets.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([t, list]) => ({
        t,
        open: list[0]!.price,
        high: Math.max(...list.map((x) => x.price)),
        low: Math.min(...list.map((x) => x.price)),
        close: list[list.length - 1]!.price,
        volume: list.reduce((s, x) => s + x.qty, 0),
      }));
  }

  function expectSame(got: PriceSeries['items'], want: ReturnType<typeof ohlc>) {
    expect(got.map(({ volume: _v, ...r }) => r)).toEqual(want.map(({ volume: _v, ...r }) => r));
    got.forEach((r, i) => expect(r.volume).toBeCloseTo(want[i]!.volume, 8));
  }

  it('1m buckets over the whole run equal a brute-force computation over the trades', async () => {
    const { status, body } = await get<PriceSeries>(`/api/prices?venue=binance&symbol=BTC-USDT&interval=1m&run=${MARKET_RUN}`);
    expect(status).toBe(200);
    expect(body.source).toBe('trades');
    const want = ohlc(trades(), 60_000);
    expect(want.length).toBeGreaterThanOrEqual(6);
    expectSame(body.items, want);
    expect(body.from).toBe(Math.min(...trades().map((t) => t.ts)));
    expect(body.to).toBe(Math.max(...trades().map((t) => t.ts)) + 1);
  });

  it('1s buckets within from/to (ISO and epoch ms) equal the brute force too', async () => {
    const from = Date.parse('2024-08-08T23:56:00Z');
    const to = from + 45_000;
    const { body } = await get<PriceSeries>(`/api/prices?venue=binance&symbol=BTC-USDT&interval=1s&run=${MARKET_RUN}&from=2024-08-08T23:56:00Z&to=${to}`);
    const want = ohlc(trades(), 1_000, from, to);
    expect(want.length).toBeGreaterThan(10);
    expectSame(body.items, want);
    expect([body.from, body.to]).toEqual([from, to]);
  });

  it('mid quotes when the instrument has no trades; nothing for an unknown one', async () => {
    const t0 = Date.UTC(2024, 0, 1);
    const qs: Quote[] = [0, 150, 20_000, 61_000, 61_050, 61_200].map((dt, i) => ({
      kind: 'quote',
      venue: 'kraken',
      symbol: 'ETH-USD',
      ts: t0 + dt,
      recvTs: t0 + dt,
      bidPx: 100 + i,
      bidQty: 1,
      askPx: 102 + i,
      askQty: 1,
    }));
    await runPipeline(QUOTES_RUN, qs);
    const { body } = await get<PriceSeries>(`/api/prices?venue=kraken&symbol=ETH-USD&interval=1m&run=${QUOTES_RUN}`);
    expect(body.source).toBe('quotes');
    // Stored: 0, 150, 20 000, 61 000, 61 200 (61 050 shares 61 000's 100 ms bucket).
    expect(body.items).toEqual([
      { t: t0, open: 101, high: 103, low: 101, close: 103, volume: 0 },
      { t: t0 + 60_000, open: 104, high: 106, low: 104, close: 106, volume: 0 },
    ]);
    const none = (await get<PriceSeries>(`/api/prices?venue=kraken&symbol=XBT-USD&run=${QUOTES_RUN}`)).body;
    expect(none).toEqual({ interval: '1m', source: null, from: null, to: null, items: [] });
  });

  it('refuses more than 10 000 intervals, naming the parameter', async () => {
    const res = await get<{ error: { code: string; message: string } }>(`/api/prices?venue=binance&symbol=BTC-USDT&interval=1s&from=0&to=${Date.UTC(2024, 7, 9)}&run=${MARKET_RUN}`);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('VIGIL_ERR_BAD_REQUEST');
    expect(res.body.error.message).toContain("'interval'");
  });
});

describe('transaction context', () => {
  const T0 = Date.UTC(2024, 2, 1, 12);
  const txs: Transaction[] = [];
  const base = { kind: 'transaction' as const, source: 'bank', currency: 'EUR', channel: 'card' };
  // acct-1: 14 card payments in 7 minutes (velocity fires at the 10th), each to its own payee at one
  // merchant, so every one travels three times (as sent, for the counterparty view, for the merchant view).
  for (let i = 0; i < 14; i++) {
    txs.push({ ...base, id: `a1-${i}`, ts: T0 + i * 30_000, account: 'acct-1', counterparty: `payee-${i}`, merchant: 'shop-1', amount: 10 + i, direction: 'debit', country: 'FR' });
  }
  // Paid to acct-1 by others (its context as counterparty), inside and outside the window.
  txs.push({ ...base, id: 'in-1', ts: T0 + 60_000, account: 'acct-2', counterparty: 'acct-1', amount: 500, direction: 'debit', channel: 'transfer' });
  txs.push({ ...base, id: 'in-far', ts: T0 + 86_400_000, account: 'acct-2', counterparty: 'acct-1', amount: 7, direction: 'debit', channel: 'transfer' });
  // Unrelated.
  txs.push({ ...base, id: 'other', ts: T0 + 90_000, account: 'acct-3', counterparty: 'payee-1', amount: 3, direction: 'debit' });
  const label: Label = { kind: 'label', source: 'bank', txId: 'a1-0', ts: T0 + 100_000, label: 'fraud', account: 'acct-1', merchant: 'shop-1' };
  const events: CanonicalEvent[] = [...txs, label].sort((a, b) => a.ts - b.ts);

  let finding: Finding;
  beforeAll(async () => {
    await runPipeline(TX_RUN, events);
    const page = await store.searchFindings({ runId: TX_RUN, detector: ['velocity'], limit: 10, order: 'asc' });
    finding = page.items[0]!;
  }, 60_000);

  it('stores each transaction once: not per view, no labels', async () => {
    expect(await countRows('transactions', TX_RUN, false)).toBe(txs.length);
    expect(await countRows('trades', TX_RUN, false)).toBe(0);
  });

  it("a velocity finding's context is its account's transactions, as payer or counterparty, in its window", async () => {
    expect(finding).toBeDefined();
    expect(finding.account).toBe('acct-1');
    const { body } = await get<FindingContext>(`/api/findings/${finding.id}/context`);
    expect(body.kind).toBe('account');
    const margin = Math.max(60_000, finding.windowEnd - finding.windowStart);
    const from = finding.windowStart - margin;
    const to = finding.windowEnd + margin;
    expect(body.window).toEqual({ from, to });
    const want = txs
      .filter((t) => (t.account === 'acct-1' || t.counterparty === 'acct-1') && t.ts >= from && t.ts <= to)
      .sort((a, b) => a.ts - b.ts);
    expect(want.some((t) => t.id === 'in-1')).toBe(true);
    expect(body.transactions).toEqual(
      want.map((t) => ({
        ts: t.ts,
        id: t.id,
        account: t.account,
        counterparty: t.counterparty ?? null,
        merchant: t.merchant ?? null,
        amount: t.amount,
        currency: t.currency,
        direction: t.direction,
        channel: t.channel,
        country: t.country ?? null,
      })),
    );
    expect(body.trades).toEqual([]);
    expect(body.quotes).toEqual([]);
  });

  it('no context at all with storeContext off', async () => {
    const p = await runPipeline('ctx-off', txs, { storeContext: false });
    expect(p.storeSide.contextWriter).toBeUndefined();
    expect(await countRows('transactions', 'ctx-off', false)).toBe(0);
    expect(await store.searchFindings({ runId: 'ctx-off', limit: 10 })).toMatchObject({ total: 1 });
  });
});

describe('on Kafka: the API role stores the context, in a group of its own', () => {
  const RUN = `vigil-test.ctx${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  const KAFKA_RUN = 'ctx-kafka';

  afterAll(async () => {
    if (inject('servicesError')) return;
    const admin = new Kafka({ clientId: 'vigil-test', brokers: ['127.0.0.1:9092'], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(RUN));
      if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 30_000 });
      const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(RUN));
      if (groups.length > 0) await admin.deleteGroups(groups).catch(() => undefined);
    } finally {
      await admin.disconnect();
    }
  }, 60_000);

  it('trades, thinned quotes and transactions of a replay (run header) reach ClickHouse; views and status copies do not', async () => {
    const error = inject('servicesError');
    if (error) throw new Error(`local services are not running: ${error}`);
    const config = loadConfig({
      KAFKA_BROKERS: '127.0.0.1:9092',
      VIGIL_TOPIC_PREFIX: `${RUN}.`,
      VIGIL_KAFKA_PARTITIONS: '2',
      VIGIL_KAFKA_SESSION_TIMEOUT_MS: '10000',
      VIGIL_DATA_DIR: join(dir, 'api-role'),
    });
    const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
    const consumer = transportFor(config);
    const side = await startApiSide(config, consumer, store, new AlertHub(), quiet);
    const producer = transportFor(config);
    try {
      const ingestor = new Ingestor(new RunHeaderTransport(producer, KAFKA_RUN));
      const t0 = Date.UTC(2024, 7, 8, 12);
      const slice = fed.filter((e) => e.kind === 'trade' || e.kind === 'quote' || e.kind === 'status').slice(0, 3000);
      const txs: Transaction[] = [0, 1, 2].map((i) => ({ kind: 'transaction', source: 'bank', id: `k-${i}`, ts: t0 + i, account: 'acct-k', counterparty: `p-${i}`, merchant: 'shop-k', amount: 5, currency: 'EUR', direction: 'debit', channel: 'card' }));
      for (const ev of [...slice, ...txs]) await ingestor.pushEvent(structuredClone(ev));
      await ingestor.flush();
      const want = {
        trades: slice.filter((e) => e.kind === 'trade').length,
        quotes: thinned(slice.filter((e): e is Quote => e.kind === 'quote')).length,
        transactions: txs.length,
      };
      const deadline = Date.now() + 60_000;
      let got = { trades: -1, quotes: -1, transactions: -1 };
      while (Date.now() < deadline) {
        got = { trades: await countRows('trades', KAFKA_RUN, false), quotes: await countRows('quotes', KAFKA_RUN, false), transactions: await countRows('transactions', KAFKA_RUN, false) };
        if (got.trades >= want.trades && got.quotes >= want.quotes && got.transactions >= want.transactions) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(got).toEqual(want);
      expect(slice.filter((e) => e.kind === 'status')).toHaveLength(1); // its two copies are among the skipped
      expect(side.storeSide.contextWriter?.taken.skipped).toBe(txs.length * 2 + 2 * slice.filter((e) => e.kind === 'status').length);
    } finally {
      await side.stop();
      await producer.close();
      await consumer.close();
    }
  }, 120_000);
});

describe('schema and TTL', () => {
  async function ttls(): Promise<Record<string, string>> {
    const text = await store.sql(`SELECT name, engine_full FROM system.tables WHERE database = 'vigil' AND name IN ('trades', 'quotes', 'transactions')`, 'JSONEachRow');
    const rows = text.trim().split('\n').map((l) => JSON.parse(l) as { name: string; engine_full: string });
    return Object.fromEntries(rows.map((r) => [r.name, /TTL (.*?)( SETTINGS|$)/.exec(r.engine_full)?.[1] ?? 'none']));
  }

  it('is migration 7, market_events, with a 30-day TTL counted from storage', async () => {
    const text = await store.sql(`SELECT version, name FROM schema_migrations WHERE version = 7`, 'JSONEachRow');
    expect(JSON.parse(text)).toMatchObject({ name: 'market_events' });
    const t = await ttls();
    expect(Object.keys(t).sort()).toEqual(['quotes', 'trades', 'transactions']);
    for (const v of Object.values(t)) expect(v).toMatch(/^inserted_at \+ toIntervalDay\(30\)$/);
  });

  it('setContextTtl follows VIGIL_CONTEXT_TTL_DAYS: another number of days, 0 keeps rows for good', async () => {
    await store.setContextTtl(7);
    for (const v of Object.values(await ttls())) expect(v).toMatch(/toIntervalDay\(.*7.*\)/);
    await store.setContextTtl(0);
    expect(Object.values(await ttls())).toEqual(['none', 'none', 'none']);
    await store.setContextTtl(30);
    for (const v of Object.values(await ttls())) expect(v).toMatch(/toIntervalDay\(.*30.*\)/);
    await expect(store.setContextTtl(-1)).rejects.toThrow(/context TTL/);
    // Nothing stored was lost on the way.
    expect(await countRows('trades', MARKET_RUN, false)).toBe(trades().length);
  });

  it('a bad VIGIL_CONTEXT_TTL_DAYS stops start-up naming the key', () => {
    expect(loadConfig({}).VIGIL_CONTEXT_TTL_DAYS).toBe(30);
    expect(loadConfig({ VIGIL_CONTEXT_TTL_DAYS: '0' }).VIGIL_CONTEXT_TTL_DAYS).toBe(0);
    for (const bad of ['-1', '1.5', 'month', '36501']) expect(() => loadConfig({ VIGIL_CONTEXT_TTL_DAYS: bad })).toThrow(/VIGIL_CONTEXT_TTL_DAYS/);
  });
});

describe('validation and injection', () => {
  it.each([
    ['/api/findings/x/context?limit=0', 'limit'],
    ['/api/findings/x/context?limit=5001', 'limit'],
    ['/api/findings/x/context?before=-1', 'before'],
    ['/api/findings/x/context?after=86400001', 'after'],
    ['/api/findings/x/context?bogus=1', 'bogus'],
    ['/api/instruments?limit=abc', 'limit'],
    ['/api/prices?symbol=BTC-USDT', 'venue'],
    ['/api/prices?venue=binance', 'symbol'],
    ['/api/prices?venue=binance&symbol=BTC-USDT&interval=2m', 'interval'],
    ['/api/prices?venue=binance&symbol=BTC-USDT&from=yesterday', 'from'],
    ['/api/prices?venue=binance&symbol=BTC-USDT&from=2000&to=1000', 'to'],
    ['/api/prices?venue=binance&venue=kraken&symbol=BTC-USDT', 'venue'],
  ])('%s → 400 naming %s', async (url, parameter) => {
    const res = await get<{ error: { code: string; message: string } }>(url);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('VIGIL_ERR_BAD_REQUEST');
    expect(res.body.error.message).toContain(`'${parameter}'`);
  });

  it('injection attempts in every parameter are only values that match nothing', async () => {
    const evil = ["x' OR '1'='1", "binance' OR 1=1 --", "'); DROP TABLE trades; --", 'BTC-USDT\\', '{runId:String}', '`vigil`.`trades`'];
    const f = (await store.searchFindings({ runId: MARKET_RUN, detector: ['price_jump'], limit: 1 })).items[0]!;
    for (const e of evil) {
      const v = encodeURIComponent(e);
      expect((await get<{ items: unknown[] }>(`/api/instruments?run=${v}`)).body.items).toEqual([]);
      expect((await get<PriceSeries>(`/api/prices?venue=${v}&symbol=BTC-USDT&run=${MARKET_RUN}`)).body.items).toEqual([]);
      expect((await get<PriceSeries>(`/api/prices?venue=binance&symbol=${v}&run=${MARKET_RUN}`)).body.items).toEqual([]);
      expect((await get<PriceSeries>(`/api/prices?venue=binance&symbol=BTC-USDT&run=${v}`)).body.items).toEqual([]);
      expect((await get<unknown>(`/api/findings/${v}/context`)).status).toBe(404);
      expect((await get<unknown>(`/api/findings/${f.id}/context?run=${v}`)).status).toBe(404);
      // Injected into the stored finding itself: its context is simply empty.
      const ctx = await store.getFindingContext({ ...f, runId: e, venue: e, symbol: e }, { limit: 10 });
      expect([ctx.trades, ctx.quotes]).toEqual([[], []]);
      const acct = await store.getFindingContext({ ...f, symbol: undefined, venue: undefined, account: e }, { limit: 10 });
      expect(acct.transactions).toEqual([]);
    }
    expect(await countRows('trades', MARKET_RUN, false)).toBe(trades().length);
  });
});

describe('context rows go in as RowBinary', () => {
  // A second engine on the store's data directory (as the analyst SQL session is): its Db and ContextStore
  // write the new way; insertAsJson below writes the way the store did before, for comparison.
  let engine: Engine;
  let db: Db;
  beforeAll(async () => {
    engine = await openEngine({ dataDir: dir, database: 'vigil', databaseIdent: '`vigil`' });
    db = new Db(engine.client, '`vigil`', engine.bulkInsert);
  });
  afterAll(async () => {
    await engine?.close();
  });

  /** The JSONEachRow insert ContextStore made before RowBinary: one object per row. */
  async function insertAsJson(events: readonly ContextEvent[]): Promise<void> {
    const trades: object[] = [];
    const quotes: object[] = [];
    const txs: object[] = [];
    for (const { runId, event: e } of events) {
      if (e.kind === 'trade') trades.push({ run_id: runId, venue: e.venue, symbol: e.symbol, ts: Math.round(e.ts), trade_id: e.tradeId, price: e.price, qty: e.qty, side: e.side });
      else if (e.kind === 'quote') quotes.push({ run_id: runId, venue: e.venue, symbol: e.symbol, ts: Math.round(e.ts), bid: e.bidPx, ask: e.askPx, bid_size: e.bidQty, ask_size: e.askQty });
      else {
        txs.push({
          run_id: runId,
          source: e.source,
          tx_id: e.id,
          ts: Math.round(e.ts),
          account: e.account,
          counterparty: e.counterparty ?? '',
          merchant: e.merchant ?? '',
          terminal: e.terminal ?? '',
          amount: e.amount,
          currency: e.currency,
          direction: e.direction,
          channel: e.channel,
          country: e.country ?? '',
        });
      }
    }
    await Promise.all([db.insert('trades', trades), db.insert('quotes', quotes), db.insert('transactions', txs)]);
  }

  /** Every stored row of a run, each value exactly: strings as bytes (hex), floats as their bits, times as ticks. */
  /** The rows of a run as readers see them (FINAL: rows sharing a sorting key collapse), or every row stored. */
  async function stored(runId: string, final = true): Promise<Record<'trades' | 'quotes' | 'transactions', string[][]>> {
    const f = final ? 'FINAL' : '';
    const rows = async (sql: string) => (await db.rows<Record<string, string>>(sql, { runId })).map((r) => Object.values(r));
    const bits = (c: string) => `toString(reinterpretAsUInt64(${c}))`;
    const ticks = 'toString(toUnixTimestamp64Milli(ts))';
    return {
      trades: await rows(
        `SELECT hex(venue), hex(symbol), ${ticks}, hex(trade_id), ${bits('price')}, ${bits('qty')}, hex(side) FROM {db}.trades ${f} WHERE run_id = {runId:String} ORDER BY ALL`,
      ),
      quotes: await rows(
        `SELECT hex(venue), hex(symbol), ${ticks}, ${bits('bid')}, ${bits('ask')}, ${bits('bid_size')}, ${bits('ask_size')} FROM {db}.quotes ${f} WHERE run_id = {runId:String} ORDER BY ALL`,
      ),
      transactions: await rows(
        `SELECT hex(source), hex(tx_id), ${ticks}, hex(account), hex(counterparty), hex(merchant), hex(terminal), ${bits('amount')}, hex(currency), hex(direction),
           hex(channel), hex(country) FROM {db}.transactions ${f} WHERE run_id = {runId:String} ORDER BY ALL`,
      ),
    };
  }

  const hex = (s: string) => Buffer.from(s, 'utf8').toString('hex').toUpperCase();
  // Strings ClickHouse's text formats escape or JSON escapes, multi-byte UTF-8, a length past one varint byte.
  const odd = ['tab\there', 'line\nbreak\r\n', 'back\\slash\\N', `quotes "double" 'single'`, 'nul\u0000byte\b\f', 'ünïcödé € 𝄞 中文', '', 'x'.repeat(127), 'é'.repeat(200)];
  const T = Date.UTC(2024, 7, 8, 12);
  function oddEvents(runId: string): ContextEvent[] {
    const out: ContextEvent[] = [];
    const floats = [0.1 + 0.2, 61837.63, 1e-300, 5e-324, Number.MAX_VALUE, 123456789012345680000, 2 ** 53 + 2, -0, NaN, Infinity, -Infinity, 0];
    const times = [0, 1, 999.5, 1000.4, T + 0.5, T + 123.456, Date.UTC(2100, 0, 1), 9_999, 100_000];
    odd.forEach((s, i) => {
      const ts = times[i % times.length]!;
      const f = floats[i % floats.length]!;
      const trade: Trade = { kind: 'trade', venue: s || 'v', symbol: `${s}-SYM`, ts, recvTs: ts, price: f, qty: floats[(i + 5) % floats.length]!, side: 'buy', tradeId: s || `id-${i}` };
      out.push({ runId, event: trade });
      const quote: Quote = { kind: 'quote', venue: 'binance', symbol: s, ts: ts + i, recvTs: ts, bidPx: f, bidQty: 1 / 3, askPx: floats[(i + 2) % floats.length]!, askQty: i };
      out.push({ runId, event: quote });
      const tx: Transaction = {
        kind: 'transaction',
        source: `bank ${s}`,
        id: `${s}#${i}`,
        ts,
        account: s || 'acct',
        amount: i % 2 ? -f : f,
        currency: 'EUR',
        direction: i % 2 ? 'credit' : 'debit',
        channel: s || 'card',
        ...(i % 3 === 0 ? {} : { counterparty: s, merchant: `m ${s}`, terminal: `t\t${i}`, country: 'FR' }),
      };
      out.push({ runId, event: tx });
    });
    for (const [i, id] of ['18446744073709551615', '3735683259', '00042', '-1'].entries()) {
      out.push({ runId, event: { kind: 'trade', venue: 'binance', symbol: 'BTC-USDT', ts: T + i, recvTs: T, price: 61837.63 + i / 100, qty: 0.00012, side: 'sell', tradeId: id } });
    }
    return out;
  }

  it('stores exactly the rows the JSON insert stored: the capture, and odd strings, numbers and absent fields', async () => {
    const rows = (runId: string): ContextEvent[] => [
      ...oddEvents(runId),
      ...fed.filter((e): e is Trade | Quote => e.kind === 'trade' || e.kind === 'quote').map((event) => ({ runId, event })),
    ];
    await insertAsJson(rows('rb-json'));
    await new ContextStore(db).insert(rows('rb-binary'));
    const [json, binary] = [await stored('rb-json'), await stored('rb-binary')];
    expect(binary).toEqual(json);
    // Bulk inserts leave collapsing rows that share a sorting key to FINAL (optimize_on_insert = 0): every row is stored.
    const all = await stored('rb-binary', false);
    const count = (kind: string) => rows('k').filter((r) => r.event.kind === kind).length;
    expect([all.trades.length, all.quotes.length, all.transactions.length]).toEqual([count('trade'), count('quote'), count('transaction')]);
    // Not vacuous: every row is there (one per sorting key: rows sharing one collapse), odd values included.
    const keys = (kind: string, key: (e: never) => unknown[]) => new Set(rows('k').filter((r) => r.event.kind === kind).map((r) => JSON.stringify(key(r.event as never)))).size;
    expect(binary.trades).toHaveLength(keys('trade', (e: Trade) => [e.venue, e.symbol, Math.round(e.ts), e.tradeId]));
    expect(binary.quotes).toHaveLength(keys('quote', (e: Quote) => [e.venue, e.symbol, Math.round(e.ts)]));
    expect(binary.transactions).toHaveLength(odd.length);
    expect(binary.trades.length).toBeGreaterThan(trades().length);
    expect(binary.quotes.length).toBeGreaterThan(10_000);
    const flat = JSON.stringify(binary);
    for (const s of odd.filter((x) => x !== '')) expect(flat).toContain(hex(s));
    expect(flat).toContain(hex('18446744073709551615'));
    // NaN and ±Infinity were stored as 0 (JSON null → the column default), -0 as 0; 999.5 ms as tick 1000.
    const zeroBits = '0';
    expect(binary.trades.filter((r) => r[1] === hex(`${odd[8]}-SYM`))[0]![4]).toBe(zeroBits);
    expect(binary.trades.some((r) => r[2] === '1000' && r[1] === hex(`${odd[2]}-SYM`))).toBe(true);
    // Absent optional transaction fields are empty strings.
    expect(binary.transactions.filter((r) => r[3] === hex(odd[0]!))[0]!.slice(4, 7)).toEqual(['', '', '']);
  });

  it('reads back through the context query as before', async () => {
    const f = (await store.searchFindings({ runId: MARKET_RUN, detector: ['price_jump'], limit: 1 })).items[0]!;
    const reads = new ContextStore(db);
    const [json, binary] = [await reads.findingContext({ ...f, runId: 'rb-json' }), await reads.findingContext({ ...f, runId: 'rb-binary' })];
    expect(binary.trades.length).toBeGreaterThan(0);
    expect(binary.quotes.length).toBeGreaterThan(0);
    expect(binary).toEqual({ ...json, finding: binary.finding });
  });

  it('a lone surrogate, which the JSON insert refused (the whole batch), is stored as U+FFFD', async () => {
    const ev = (runId: string): ContextEvent[] => [{ runId, event: { kind: 'trade', venue: 'binance', symbol: 'BTC-USDT', ts: T, recvTs: T, price: 1, qty: 1, side: 'buy', tradeId: 'a\ud800b' } }];
    await expect(insertAsJson(ev('rb-surrogate-json'))).rejects.toThrow(/surrogate/);
    await new ContextStore(db).insert(ev('rb-surrogate'));
    expect((await stored('rb-surrogate')).trades.map((r) => r[3])).toEqual([hex('a\ufffdb')]);
  });
});

describe('ContextWriter.take', () => {
  type Msg = { value: unknown; headers?: Record<string, string>; offset: number };
  /** The rule on its own: per run, venue and symbol, the first quote of each later bucket; past maxKeys keys, start over. */
  function reference(msgs: readonly Msg[], defaultRun: string, maxKeys: number) {
    const last = new Map<string, number>();
    const kept: ContextEvent[] = [];
    const counts = { trades: 0, quotes: 0, transactions: 0, quotesThinned: 0, skipped: 0, dropped: 0 };
    for (const m of msgs) {
      const e = m.value as CanonicalEvent;
      if (m.headers?.view !== undefined || m.headers?.['status-copy'] !== undefined || !['trade', 'quote', 'transaction'].includes(e.kind)) {
        counts.skipped++;
        continue;
      }
      const runId = m.headers?.run || defaultRun;
      if (e.kind === 'quote') {
        const key = `${runId}|${e.venue}|${e.symbol}`;
        const bucket = Math.floor(e.ts / QUOTE_THINNING_MS);
        const prev = last.get(key);
        if (prev !== undefined && bucket <= prev) {
          counts.quotesThinned++;
          continue;
        }
        if (prev === undefined && last.size >= maxKeys) last.clear();
        last.set(key, bucket);
        counts.quotes++;
      } else if (e.kind === 'trade') counts.trades++;
      else counts.transactions++;
      kept.push({ runId, event: e as Trade | Quote | Transaction });
    }
    return { kept, counts };
  }

  /** The rows inserted, as the bytes of each table, and how many. */
  interface Inserted {
    trades: Buffer;
    quotes: Buffer;
    transactions: Buffer;
    rows: number;
  }
  const inserted = (batches: readonly ContextRows[]): Inserted => ({
    trades: Buffer.concat(batches.map((b) => b.trades)),
    quotes: Buffer.concat(batches.map((b) => b.quotes)),
    transactions: Buffer.concat(batches.map((b) => b.transactions)),
    rows: batches.reduce((n, b) => n + b.count, 0),
  });
  /** What inserting these events should send: each event encoded once, in order, per table. */
  const encoded = (events: readonly ContextEvent[]): Inserted => {
    const rows = new ContextRows();
    for (const e of events) rows.add(e.runId, e.event);
    return inserted([rows]);
  };

  async function take(msgs: readonly Msg[], batch: number) {
    const batches: ContextRows[] = [];
    const w = new ContextWriter({ insertContextRows: async (rows) => void batches.push(rows) }, { maxRows: 10_000_000, maxDelayMs: 3_600_000 });
    for (let i = 0; i < msgs.length; i += batch) w.take(msgs.slice(i, i + batch) as never, 'default-run');
    await w.close();
    return { written: inserted(batches), counts: { ...w.taken }, stored: w.counters.written };
  }

  const quote = (venue: string, symbol: string, ts: number): Quote => ({ kind: 'quote', venue, symbol, ts, recvTs: ts, bidPx: 1, bidQty: 1, askPx: 2, askQty: 1 });

  it('thins quotes per run, venue and symbol when runs and venues interleave, and skips copies and labels', async () => {
    const msgs: Msg[] = [];
    let offset = 0;
    for (let i = 0; i < 3000; i++) {
      const venue = ['binance', 'okx'][i % 2]!;
      const headers = i % 5 === 0 ? undefined : { run: ['r1', 'r2'][(i >> 1) % 2]! };
      msgs.push({ value: quote(venue, ['BTC-USDT', 'ETH-USDT', 'SOL-USDT'][(i >> 2) % 3]!, 1_000 + i * 7 - (i % 11) * 30), headers, offset: offset++ });
      if (i % 50 === 0) msgs.push({ value: trades()[i]!, headers, offset: offset++ });
      if (i % 97 === 0) msgs.push({ value: quote(venue, 'BTC-USDT', i), headers: { view: 'x', run: 'r1' }, offset: offset++ });
      if (i % 89 === 0) msgs.push({ value: { kind: 'label', source: 's', txId: 't', ts: i, label: 'fraud', account: 'a' }, offset: offset++ });
    }
    const want = reference(msgs, 'default-run', MAX_THINNING_KEYS);
    for (const batch of [1, 7, 10_000]) {
      const got = await take(msgs, batch);
      expect(got.counts).toEqual(want.counts);
      expect(got.written).toEqual(encoded(want.kept));
      expect(got.stored).toBe(want.kept.length);
    }
    expect(want.counts.quotesThinned).toBeGreaterThan(100);
    expect(new Set(want.kept.map((r) => r.runId))).toEqual(new Set(['r1', 'r2', 'default-run']));
  });

  it('past MAX_THINNING_KEYS keys the state starts over, for the (run, venue) looked up last too', async () => {
    const msgs: Msg[] = [];
    for (let i = 0; i < MAX_THINNING_KEYS; i++) msgs.push({ value: quote('v', `S${i}-X`, 0), headers: { run: 'r' }, offset: msgs.length });
    const tail: Array<[string, number]> = [
      ['NEW-X', 10], // the key past the limit: the state starts over
      ['S0-X', 20], // same run and venue as the last lookup, known before the reset: kept again
      ['S0-X', 30], // thinned: the bucket kept just now
      ['NEW-X', 40], // thinned
      ['S1-X', 150], // a later bucket: kept
    ];
    for (const [symbol, ts] of tail) msgs.push({ value: quote('v', symbol, ts), headers: { run: 'r' }, offset: msgs.length });
    const want = reference(msgs, 'default-run', MAX_THINNING_KEYS);
    const got = await take(msgs, 1000);
    expect(got.counts).toEqual(want.counts);
    // The last three quotes stored, at the end of the quotes' bytes.
    const lastThree = encoded(([['NEW-X', 10], ['S0-X', 20], ['S1-X', 150]] as const).map(([symbol, ts]) => ({ runId: 'r', event: quote('v', symbol, ts) })));
    expect(got.written.quotes.subarray(got.written.quotes.length - lastThree.quotes.length)).toEqual(lastThree.quotes);
    expect(got.written).toEqual(encoded(want.kept));
    expect(got.written.rows).toBe(want.kept.length);
    expect(want.counts.quotesThinned).toBe(2);
  });

  it('encodes rows as it takes them and stores them in batches of at least maxRows rows, or after maxDelayMs, counting rows', async () => {
    const batches: ContextRows[] = [];
    let failNext = false;
    const w = new ContextWriter(
      {
        insertContextRows: async (rows) => {
          if (failNext) {
            failNext = false;
            throw new Error('store down');
          }
          batches.push(rows);
        },
      },
      { maxRows: 5, maxDelayMs: 30, retryBaseMs: 5 },
    );
    const msgs = trades()
      .slice(0, 12)
      .map((t, offset) => ({ value: t, offset }));
    // Takes of 3 rows: a batch goes out once 5 or more wait (6), nothing waits for a timer meanwhile.
    for (let i = 0; i < 12; i += 3) expect(w.take(msgs.slice(i, i + 3) as never, 'r')).toBe(3);
    await w.flush();
    expect(batches.map((b) => b.count)).toEqual([6, 6]);
    expect(w.counters).toMatchObject({ written: 12, pending: 0 });
    // Fewer than maxRows: stored once the first has waited maxDelayMs, without a flush; a failed insert is retried.
    failNext = true;
    w.take(msgs.slice(0, 2) as never, 'r');
    expect(w.counters).toMatchObject({ written: 12, pending: 2 });
    const t0 = Date.now();
    while (w.counters.written < 14 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 5));
    expect(w.counters).toMatchObject({ written: 14, pending: 0, errors: 1 });
    expect(batches.map((b) => b.count)).toEqual([6, 6, 2]);
    expect(inserted(batches)).toEqual(encoded([...trades().slice(0, 12), ...trades().slice(0, 2)].map((event) => ({ runId: 'r', event }))));
    await w.close();
    expect(() => w.take(msgs.slice(0, 1) as never, 'r')).toThrow(/closed/);
  });
});
