// GET /api/stats (findings per time bucket and key) against counting the findings one by one, and
// GET /api/runs, /api/runs/:id (src/storage/context-query.ts, src/api/routes/stats.ts, runs.ts).
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertHub } from '../src/api/alert-hub.ts';
import { buildApi } from '../src/api/server.ts';
import { severityRank, type Finding, type Severity } from '../src/core/events.ts';
import { findingId } from '../src/core/ids.ts';
import { buildDetectors } from '../src/detectors/configure.ts';
import { Pipeline } from '../src/pipeline/pipeline.ts';
import { replayFiles } from '../src/replay/replay.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import type { FindingStats } from '../src/storage/context-types.ts';
import type { RunRecord, Store } from '../src/storage/types.ts';
import { HFT_CAPTURE, tempDir } from './helpers/cli.ts';

const dir = tempDir('vigil-stats-');
const CAP = 'stats-capture';
const SYN = 'stats-synthetic';
let store: Store;
let app: FastifyInstance;
const capFindings: Finding[] = [];
const synFindings: Finding[] = [];

async function get<T>(url: string): Promise<{ status: number; body: T }> {
  const res = await app.inject({ url });
  return { status: res.statusCode, body: res.json() as T };
}

async function allFindings(runId: string): Promise<Finding[]> {
  const out: Finding[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.searchFindings({ runId, limit: 1000, order: 'asc', ...(cursor ? { cursor } : {}) });
    out.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return out;
}

type Key = (f: Finding) => string | null;
/** ClickHouse orders strings by bytes; null keys are '' there. */
const byBytes = (a: string | null, b: string | null) => ((a ?? '') < (b ?? '') ? -1 : (a ?? '') > (b ?? '') ? 1 : 0);
/** The stats by brute force: count per (bucket start, key), and per key, largest first. */
function count(findings: readonly Finding[], size: number, key: Key) {
  const cells = new Map<string, { t: number; key: string | null; count: number }>();
  const totals = new Map<string | null, number>();
  for (const f of findings) {
    const t = Math.floor(f.ts / size) * size;
    const k = key(f);
    const id = `${t}|${k}`;
    const c = cells.get(id) ?? { t, key: k, count: 0 };
    c.count++;
    cells.set(id, c);
    totals.set(k, (totals.get(k) ?? 0) + 1);
  }
  const items = [...cells.values()].sort((a, b) => a.t - b.t || byBytes(a.key, b.key));
  const tot = [...totals.entries()].map(([k, n]) => ({ key: k, count: n })).sort((a, b) => b.count - a.count || byBytes(a.key, b.key));
  return { items, totals: tot };
}

const T0 = Date.UTC(2024, 5, 3, 10, 0, 0);
function synthetic(i: number, over: Partial<Finding>): Finding {
  const ts = T0 + i * 7 * 60_000;
  return {
    id: findingId('syn', 'syn', String(i), `t${i}`),
    runId: SYN,
    detector: 'velocity',
    ruleId: 'velocity.default',
    severity: 'medium',
    score: 1,
    key: `k${i}`,
    ts,
    windowStart: ts - 1000,
    windowEnd: ts,
    summary: 'synthetic',
    evidence: { observed: {}, baseline: {}, threshold: {}, triggers: [] },
    ...over,
  };
}

beforeAll(async () => {
  store = await openStore({ dataDir: dir });
  app = await buildApi({ store, hub: new AlertHub() });
  // The shared capture through every default rule (no context stored: these tests read findings only).
  const pipeline = await new Pipeline({ runId: CAP, detectors: buildDetectors({ detectors: {} }), store, partitions: 3, queueCapacity: 256, storeContext: false }).start();
  await replayFiles(pipeline, { files: [HFT_CAPTURE], speed: { mode: 'max' } });
  await pipeline.close();
  capFindings.push(...(await allFindings(CAP)));
  // Synthetic findings over a day and a half: venues, symbols, accounts, severities, some with neither symbol nor venue.
  const sev: Severity[] = ['info', 'low', 'medium', 'high', 'critical'];
  for (let i = 0; i < 300; i++) {
    const over: Partial<Finding> =
      i % 3 === 0
        ? { detector: 'velocity', account: `acct-${i % 4}`, severity: sev[i % 5]! }
        : { detector: i % 2 ? 'price_jump' : 'spread_blowout', venue: i % 5 ? 'binance' : 'kraken', symbol: i % 7 ? 'BTC-USDT' : 'ETH-USDT', severity: sev[(i * 3) % 5]! };
    synFindings.push(synthetic(i, over));
  }
  await store.insertFindings(synFindings);
}, 240_000);

afterAll(async () => {
  await app?.close();
  await store?.close();
});

describe('GET /api/stats', () => {
  it('counts the replayed findings per minute and detector exactly', async () => {
    expect(capFindings.length).toBeGreaterThan(5);
    expect(new Set(capFindings.map((f) => f.detector)).size).toBeGreaterThan(1);
    const { status, body } = await get<FindingStats>(`/api/stats?run=${CAP}&bucket=1m&by=detector`);
    expect(status).toBe(200);
    const want = count(capFindings, 60_000, (f) => f.detector);
    expect(body.items).toEqual(want.items);
    expect(body.totals).toEqual(want.totals);
    expect(body.truncated).toBe(false);
    expect(body.from).toBe(Math.min(...capFindings.map((f) => f.ts)));
    expect(body.to).toBe(Math.max(...capFindings.map((f) => f.ts)) + 1);
  });

  it('by severity with minSeverity, by symbol (null for none), by venue with filters', async () => {
    const hour = 3_600_000;
    const sev = (await get<FindingStats>(`/api/stats?run=${SYN}&bucket=1h&by=severity&minSeverity=high`)).body;
    const high = synFindings.filter((f) => severityRank(f.severity) >= severityRank('high'));
    expect(high.length).toBeGreaterThan(0);
    expect(sev.items).toEqual(count(high, hour, (f) => f.severity).items);
    const sym = (await get<FindingStats>(`/api/stats?run=${SYN}&bucket=1d&by=symbol`)).body;
    const bySym = count(synFindings, 86_400_000, (f) => f.symbol ?? null);
    expect(sym.totals.some((t) => t.key === null)).toBe(true);
    expect(sym).toMatchObject({ bucket: '1d', by: 'symbol', items: bySym.items, totals: bySym.totals });
    const ven = (await get<FindingStats>(`/api/stats?run=${SYN}&bucket=5m&by=venue&detector=price_jump,spread_blowout&symbol=BTC-USDT`)).body;
    const market = synFindings.filter((f) => f.symbol === 'BTC-USDT');
    expect(ven.items).toEqual(count(market, 300_000, (f) => f.venue ?? null).items);
    const acct = (await get<FindingStats>(`/api/stats?run=${SYN}&by=detector&account=acct-1&account=acct-2`)).body;
    expect(acct.totals).toEqual([{ key: 'velocity', count: synFindings.filter((f) => f.account === 'acct-1' || f.account === 'acct-2').length }]);
  });

  it('every run without `run`; from/to bound the range; top keeps the largest keys', async () => {
    const all = (await get<FindingStats>('/api/stats?bucket=1d')).body;
    expect(all.totals.reduce((s, t) => s + t.count, 0)).toBe(capFindings.length + synFindings.length);
    const from = T0 + 3 * 3_600_000;
    const to = from + 5 * 3_600_000;
    const ranged = (await get<FindingStats>(`/api/stats?run=${SYN}&bucket=1h&from=${new Date(from).toISOString()}&to=${to}`)).body;
    const inRange = synFindings.filter((f) => f.ts >= from && f.ts < to);
    expect([ranged.from, ranged.to]).toEqual([from, to]);
    expect(ranged.items).toEqual(count(inRange, 3_600_000, (f) => f.detector).items);
    const top = (await get<FindingStats>(`/api/stats?run=${SYN}&by=detector&top=1`)).body;
    const want = count(synFindings, 3_600_000, (f) => f.detector);
    expect(top.truncated).toBe(true);
    expect(top.totals).toEqual(want.totals.slice(0, 1));
    expect(top.items).toEqual(want.items.filter((c) => c.key === want.totals[0]!.key));
    const none = (await get<FindingStats>('/api/stats?run=no-such-run')).body;
    expect(none).toEqual({ bucket: '1h', by: 'detector', from: null, to: null, items: [], totals: [], truncated: false });
  });

  it.each([
    ['bucket=2m', 'bucket'],
    ['by=rule', 'by'],
    ['top=0', 'top'],
    ['top=101', 'top'],
    ['from=2000&to=1000', 'to'],
    ['minSeverity=urgent', 'minSeverity'],
    ['minSeverity=high&severity=low', 'severity'],
    ['from=0&to=1717000000000&bucket=1m', 'bucket'],
    ['interval=1m', 'interval'],
    ['run=a&run=b', 'run'],
  ])('?%s → 400 naming %s', async (query, parameter) => {
    const res = await get<{ error: { code: string; message: string } }>(`/api/stats?${query}`);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('VIGIL_ERR_BAD_REQUEST');
    expect(res.body.error.message).toContain(`'${parameter}'`);
  });

  it('injection attempts in every filter are values that match nothing', async () => {
    for (const evil of ["x' OR '1'='1", "') OR 1=1 --", "'; DROP TABLE findings; --", '{runId:String}']) {
      const v = encodeURIComponent(evil);
      for (const param of ['run', 'detector', 'venue', 'symbol', 'account']) {
        const res = await get<FindingStats>(`/api/stats?${param}=${v}`);
        expect(res.status, `${param}=${evil}`).toBe(200);
        expect(res.body.items).toEqual([]);
      }
    }
    expect((await allFindings(SYN)).length).toBe(synFindings.length);
  });
});

describe('GET /api/runs', () => {
  const base = Date.UTC(2024, 7, 1);
  const runs: RunRecord[] = [
    { runId: 'r-old', startedAt: base, finishedAt: base + 5_000, status: 'completed', inputs: ['a.gz'], summary: { frames: 10 } },
    { runId: 'r-failed', startedAt: base + 1_000, finishedAt: base + 2_000, status: 'failed', inputs: ['b.gz'], summary: { error: 'boom' } },
    { runId: 'r-running', startedAt: base + 2_000, status: 'running', inputs: ['c.gz', 'd.gz'], summary: {} },
    { runId: "r'quote", startedAt: base + 3_000, finishedAt: base + 4_000, status: 'cancelled', inputs: [], summary: {} },
  ];
  beforeAll(async () => {
    for (const r of runs) await store.upsertRun(r);
  });

  it('lists newest first, with limit and a status filter', async () => {
    const { status, body } = await get<{ items: RunRecord[] }>('/api/runs');
    expect(status).toBe(200);
    expect(body.items.map((r) => r.runId)).toEqual(["r'quote", 'r-running', 'r-failed', 'r-old']);
    expect(body.items[3]).toMatchObject(runs[0]!);
    expect(body.items[1]!.finishedAt).toBeUndefined();
    expect((await get<{ items: RunRecord[] }>('/api/runs?limit=2')).body.items.map((r) => r.runId)).toEqual(["r'quote", 'r-running']);
    const filtered = (await get<{ items: RunRecord[] }>('/api/runs?status=failed,running')).body.items;
    expect(filtered.map((r) => [r.runId, r.status])).toEqual([
      ['r-running', 'running'],
      ['r-failed', 'failed'],
    ]);
  });

  it('one run by id (the latest write wins), 404 for an unknown one', async () => {
    await store.upsertRun({ ...runs[2]!, status: 'completed', finishedAt: runs[2]!.startedAt + 9_000, summary: { frames: 3 } });
    const one = await get<RunRecord>('/api/runs/r-running');
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ runId: 'r-running', status: 'completed', finishedAt: runs[2]!.startedAt + 9_000, inputs: ['c.gz', 'd.gz'], summary: { frames: 3 } });
    expect((await get<RunRecord>(`/api/runs/${encodeURIComponent("r'quote")}`)).body.runId).toBe("r'quote");
    for (const id of ['nope', "r' OR '1'='1", 'r-old%27%20--']) {
      const res = await get<{ error: { code: string } }>(`/api/runs/${encodeURIComponent(id)}`);
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('VIGIL_ERR_NOT_FOUND');
    }
  });

  it.each([
    ['/api/runs?limit=0', 'limit'],
    ['/api/runs?limit=1001', 'limit'],
    ['/api/runs?status=done', 'status'],
    ["/api/runs?status=running'%20OR%20'1'='1", 'status'],
    ['/api/runs?order=asc', 'order'],
    ['/api/runs/r-old?x=1', 'x'],
  ])('%s → 400 naming %s', async (url, parameter) => {
    const res = await get<{ error: { code: string; message: string } }>(url);
    expect(res.status).toBe(400);
    expect(res.body.error.message).toContain(`'${parameter}'`);
  });
});
