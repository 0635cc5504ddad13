/**
 * The statistical detectors: volume_spike, volatility_shift, metric_anomaly (robust_z, rate, volatility).
 * Each: a constructed positive scenario in realistic noise checked against an independent oracle
 * (simple-statistics on the raw events), negative scenarios of the same noise over several seeds,
 * checkpoint/restore equivalence, and parameter validation.
 */
import * as ss from 'simple-statistics';
import { describe, expect, it } from 'vitest';
import { eventRef, type CanonicalEvent, type FeedStatus, type Metric, type Trade } from '../../src/core/events.ts';
import { metricAnomalySpec } from '../../src/detectors/metric-anomaly.ts';
import type { DetectorInstance, FindingDraft } from '../../src/detectors/types.ts';
import { volatilityShiftSpec, type VolatilityShiftState } from '../../src/detectors/volatility-shift.ts';
import { volumeSpikeSpec, type VolumeSpikeState } from '../../src/detectors/volume-spike.ts';
import { captureTrades } from '../helpers/capture-trades.ts';
import { detector, expectRestorable, expectWellFormed, runDetector } from '../helpers/detector-harness.ts';
import { mulberry32 } from '../helpers/random.ts';

const T0 = Date.UTC(2024, 7, 8, 12, 0, 0);
const MIN = 60_000;
const cents = (p: number): number => Math.round(p * 100) / 100;

function gauss(rng: () => number): number {
  let u = 0;
  while (u === 0) u = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}
/** Student t with df degrees of freedom, scaled to unit variance (fat tails like real returns). */
function studentT(rng: () => number, df: number): number {
  let c = 0;
  for (let i = 0; i < df; i++) c += gauss(rng) ** 2;
  return gauss(rng) / Math.sqrt(c / df) / Math.sqrt(df / (df - 2));
}

interface MarketOpts {
  /** Mean trades per second (Poisson arrivals). */
  rate?: number;
  /** Median trade size (lognormal, σ = 1). */
  qtyMedian?: number;
  /** Per-trade log-return std, bps, as a function of time (regime shifts). */
  volBps?: (ts: number) => number;
  venue?: string;
  symbol?: string;
  start?: number;
}

/**
 * A market: Poisson trade arrivals, lognormal sizes, fat-tailed (t₄) per-trade log returns, prices in
 * cents, ordinary bursts (a few buckets with 2–3× the activity, as real tape has).
 */
function market(seed: number, durationMs: number, o: MarketOpts = {}): Trade[] {
  const rng = mulberry32(seed);
  const rate = o.rate ?? 3;
  const qtyMedian = o.qtyMedian ?? 0.02;
  const volBps = o.volBps ?? (() => 0.3);
  const venue = o.venue ?? 'binance';
  const symbol = o.symbol ?? 'BTC-USDT';
  const start = o.start ?? T0;
  const out: Trade[] = [];
  let ts = start;
  let logP = Math.log(50_000);
  let id = seed * 10_000_000;
  let burstUntil = 0;
  while (ts < start + durationMs) {
    if (ts > burstUntil && rng() < 0.0005) burstUntil = ts + 5_000 + rng() * 10_000; // a short busy spell
    const r = ts < burstUntil ? rate * 2.5 : rate;
    ts += Math.max(1, Math.round((-Math.log(1 - rng()) / r) * 1000));
    logP += (volBps(ts) / 1e4) * studentT(rng, 4);
    out.push({
      kind: 'trade',
      venue,
      symbol,
      ts,
      recvTs: ts + 2,
      price: cents(Math.exp(logP)),
      qty: Math.round(qtyMedian * Math.exp(gauss(rng)) * 1e5) / 1e5,
      side: rng() < 0.5 ? 'buy' : 'sell',
      tradeId: String(id++),
    });
  }
  return out;
}

function byTime<T extends CanonicalEvent>(evs: T[]): T[] {
  return evs.map((e, i) => [e, i] as const).sort((a, b) => a[0].ts - b[0].ts || a[1] - b[1]).map(([e]) => e);
}

function status(ts: number, s: FeedStatus['status'], venue = 'binance', symbol = 'BTC-USDT'): FeedStatus {
  return { kind: 'status', venue, symbol, ts, recvTs: ts, status: s, reason: 'test' };
}

// ================================================================== volume_spike

describe('volume_spike', () => {
  const BUCKET = 10_000;
  const SPIKE_AT = T0 + 45 * MIN + 3_000;

  /** 60 min of tape with a burst: 40 trades of ~0.5 BTC within 4 s at SPIKE_AT (~20 BTC; a bucket is ~1 BTC). */
  function spikeScenario(seed: number): Trade[] {
    const tape = market(seed, 60 * MIN);
    const rng = mulberry32(seed + 99);
    const last = tape.filter((t) => t.ts < SPIKE_AT).at(-1) as Trade;
    const burst: Trade[] = [];
    for (let i = 0; i < 40; i++) {
      burst.push({ ...last, ts: SPIKE_AT + i * 100, recvTs: SPIKE_AT + i * 100 + 2, qty: Math.round((0.4 + rng() * 0.2) * 1e5) / 1e5, tradeId: `burst-${i}` });
    }
    return byTime([...tape, ...burst]);
  }

  /** Independent oracle: the baseline buckets of the spike's bucket and the first trade that makes it a spike. */
  function oracle(trades: Trade[], p = volumeSpikeSpec.params.parse({})) {
    const idx = Math.floor(SPIKE_AT / BUCKET);
    const first = Math.floor((trades[0] as Trade).ts / BUCKET);
    const from = Math.max(first, idx - Math.ceil(p.baselineMs / p.bucketMs));
    const sums: number[] = [];
    for (let i = from; i < idx; i++) sums.push(trades.filter((t) => Math.floor(t.ts / BUCKET) === i).reduce((a, t) => a + t.qty, 0));
    const median = ss.median(sums);
    const mad = ss.medianAbsoluteDeviation(sums);
    let vol = 0;
    let notional = 0;
    for (const t of trades.filter((x) => Math.floor(x.ts / BUCKET) === idx)) {
      vol += t.qty;
      notional += t.qty * t.price;
      const z = (vol - median) / Math.max(1.4826 * mad, 0.1 * median);
      if (vol / median >= p.ratio && z >= p.zThreshold && notional >= p.minNotional) return { trigger: t, median, mad, vol, z, buckets: sums.length, notional };
    }
    throw new Error('oracle: the scenario has no spike');
  }

  it('fires once on a burst, at the trade that makes the bucket a spike, with the oracle baseline', () => {
    const trades = spikeScenario(1);
    const o = oracle(trades);
    const { findings } = runDetector(detector(volumeSpikeSpec), trades);
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;
    expectWellFormed(f);
    expect(f.trigger).toBe(eventRef(o.trigger));
    expect(f.ts).toBe(o.trigger.ts);
    expect(f.key).toBe('binance:BTC-USDT');
    expect(f.venue).toBe('binance');
    expect(f.symbol).toBe('BTC-USDT');
    const { observed, baseline, threshold } = f.evidence;
    expect(baseline.buckets).toBe(o.buckets);
    expect(baseline.median as number).toBeCloseTo(o.median, 9);
    expect(baseline.mad as number).toBeCloseTo(o.mad, 9);
    expect(observed.volume as number).toBeCloseTo(o.vol, 9);
    expect(observed.z as number).toBeCloseTo(o.z, 3);
    expect(observed.ratio as number).toBeCloseTo(o.vol / o.median, 3);
    expect(f.score).toBeCloseTo(o.vol / o.median, 3);
    expect(observed.notional as number).toBeCloseTo(o.notional, 4);
    expect(threshold).toMatchObject({ ratio: 5, z: 5, minNotional: 10_000 });
    expect(f.evidence.triggers[0]).toBe(f.trigger);
    expect(f.evidence.triggers.length).toBeLessThanOrEqual(20);
    // The other triggers are the bucket's largest trades: every burst trade before the trigger among them.
    const burstBefore = trades.filter((t) => t.tradeId.startsWith('burst-') && t.ts < o.trigger.ts).map(eventRef);
    expect(burstBefore.length).toBeGreaterThan(3);
    expect(f.evidence.triggers.slice(1)).toEqual(expect.arrayContaining(burstBefore));
    const ratio = o.vol / o.median;
    expect(f.severity).toBe(ratio >= 20 ? 'critical' : ratio >= 10 ? 'high' : 'medium');
    expect(f.summary).toMatch(/^BTC-USDT on binance traded [\d.,]+ BTC \(\d+ trades\) in the 10 s from 2024-08-08T12:45:00Z, [\d.,]+× its usual 10-second volume of [\d.]+ BTC \(median over 30 min\)$/);
    expect(f.windowStart).toBe(Math.floor(SPIKE_AT / BUCKET) * BUCKET - 180 * BUCKET);
  });

  it('stays silent on ordinary tape (several seeds), though it is evaluating', () => {
    for (const seed of [2, 3, 4, 5, 6]) {
      const trades = market(seed, 60 * MIN);
      const { findings, states } = runDetector(detector(volumeSpikeSpec), trades);
      expect(findings, `seed ${seed}`).toEqual([]);
      expect((states.get('binance:BTC-USDT') as VolumeSpikeState).rc.baselineBuckets).toBe(180);
    }
  });

  it('the notional floor, the ratio and the trade-count measure gate as documented', () => {
    const trades = spikeScenario(7);
    expect(runDetector(detector(volumeSpikeSpec, { minNotional: 2e6 }), trades).findings).toEqual([]); // 20 BTC ≈ 1M USDT
    expect(runDetector(detector(volumeSpikeSpec, { ratio: 100 }), trades).findings).toEqual([]);
    // A bot: 150 tiny trades in 5 s — a trade-count spike (~6× the usual ~30 per bucket), not a volume spike.
    const tape = market(10, 60 * MIN);
    const last = tape.filter((t) => t.ts < SPIKE_AT).at(-1) as Trade;
    const bot = Array.from({ length: 150 }, (_, i) => ({ ...last, ts: SPIKE_AT + i * 33, qty: 0.02, tradeId: `bot-${i}` }));
    const botTape = byTime([...tape, ...bot]);
    expect(runDetector(detector(volumeSpikeSpec), botTape).findings).toEqual([]);
    const byCount = runDetector(detector(volumeSpikeSpec, { measure: 'trades' }), botTape).findings;
    expect(byCount).toHaveLength(1);
    expect(byCount[0]?.trigger).toMatch(/:bot-\d+$/);
    expect(byCount[0]?.evidence.observed.measure).toBe('trades');
    expect(byCount[0]?.summary).toMatch(/ had \d+ trades \([\d.,]+ BTC\) in the 10 s /);
    expect(runDetector(detector(volumeSpikeSpec, { measure: 'trades' }), market(10, 60 * MIN)).findings).toEqual([]);
  });

  it('a feed outage keeps the silent buckets out of the baseline', () => {
    const tape = market(8, 60 * MIN);
    const cutFrom = T0 + 30 * MIN;
    const cutTo = T0 + 42 * MIN;
    const kept = tape.filter((t) => t.ts < cutFrom || t.ts >= cutTo);
    const withStatus = byTime<CanonicalEvent>([...kept, status(cutFrom, 'disconnected'), status(cutTo - 1, 'connected')]);
    const det = detector(volumeSpikeSpec);
    const a = runDetector(det, withStatus);
    const b = runDetector(det, kept); // the same silence without the markers: read as 12 min of zero volume
    expect(a.findings).toEqual([]);
    const sa = a.states.get('binance:BTC-USDT') as VolumeSpikeState;
    const sb = b.states.get('binance:BTC-USDT') as VolumeSpikeState;
    expect(sb.rc.baselineBuckets).toBe(180);
    expect(sa.rc.baselineBuckets).toBeLessThanOrEqual(180 - 72);
    // Oracle: the median over the valid buckets of the last 30 min equals the detector's. Kept out: the bucket
    // open at the disconnect, every bucket of the outage, and the (partial) bucket trading resumed in.
    const cur = Math.floor((kept.at(-1) as Trade).ts / BUCKET);
    const lastBefore = Math.floor((kept.filter((t) => t.ts < cutFrom).at(-1) as Trade).ts / BUCKET);
    const firstAfter = Math.floor((kept.find((t) => t.ts >= cutTo) as Trade).ts / BUCKET);
    const sums: number[] = [];
    for (let i = cur - 180; i < cur; i++) {
      if (i >= lastBefore && i <= firstAfter) continue;
      sums.push(kept.filter((t) => Math.floor(t.ts / BUCKET) === i).reduce((x, t) => x + t.qty, 0));
    }
    expect(sa.rc.baselineBuckets).toBe(sums.length);
    expect(sa.rc.median()).toBeCloseTo(ss.median(sums), 9);
    expect(sb.rc.median()).toBeLessThan(sa.rc.median());
  });

  it('survives checkpoints (also under changed parameters) and hands late trades to their bucket', () => {
    const trades = spikeScenario(9);
    const run = expectRestorable(detector(volumeSpikeSpec), trades);
    expect(run.findings).toHaveLength(1);
    // Hot reload before the spike: ratio 4 from then on equals running with ratio 4 all along.
    const cut = trades.findIndex((t) => t.ts >= SPIKE_AT - 5 * MIN);
    const a = detector(volumeSpikeSpec);
    const first = runDetector(a, trades.slice(0, cut));
    const b = detector(volumeSpikeSpec, { ratio: 4 });
    const state = b.fromJSON(JSON.parse(JSON.stringify(a.toJSON(first.states.get('binance:BTC-USDT')))));
    const out: FindingDraft[] = [];
    for (const t of trades.slice(cut)) b.onEvent(state, t, out);
    expect(first.findings).toEqual([]);
    expect(out).toEqual(runDetector(b, trades).findings);
    // Another bucket length restarts the baseline instead of misreading it.
    const c = detector(volumeSpikeSpec, { bucketMs: 5_000 });
    const restarted = c.fromJSON(a.toJSON(first.states.get('binance:BTC-USDT'))) as VolumeSpikeState;
    expect(restarted.rc.baselineBuckets).toBe(0);
    expect(() => a.fromJSON({ v: 2 })).toThrow(TypeError);
    expect(() => a.fromJSON(null)).toThrow(TypeError);
    // Late trades land in their (completed) bucket; older than the window they are counted as late.
    const s = a.newState('binance:BTC-USDT') as VolumeSpikeState;
    const early = trades.slice(0, 2000);
    for (const t of early) a.onEvent(s, t, []);
    const before = s.rc.sumMean;
    a.onEvent(s, { ...(early[1500] as Trade), ts: (early[1500] as Trade).ts - 60_000, qty: 3, tradeId: 'late-1' }, []);
    expect(s.rc.sumMean).toBeGreaterThan(before);
    a.onEvent(s, { ...(early[1500] as Trade), ts: T0 - 3_600_000, tradeId: 'late-2' }, []);
    expect(s.late).toBe(1);
  });

  it('on the Binance BTCUSDT capture (5-min baseline) it flags the bucket of the 23:57:52 sell-off', () => {
    const trades = captureTrades();
    const { findings } = runDetector(detector(volumeSpikeSpec, { baselineMs: 300_000, minBaselineBuckets: 10 }), trades);
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;
    expectWellFormed(f);
    const bucket = Math.floor(f.ts / BUCKET);
    expect(bucket * BUCKET).toBe(Date.UTC(2024, 7, 8, 23, 57, 50)); // price_jump's −8.75 bps move is in it
    const first = Math.floor((trades[0] as Trade).ts / BUCKET);
    const sums: number[] = [];
    for (let i = Math.max(first, bucket - 30); i < bucket; i++) sums.push(trades.filter((t) => Math.floor(t.ts / BUCKET) === i).reduce((a, t) => a + t.qty, 0));
    expect(f.evidence.baseline.median as number).toBeCloseTo(ss.median(sums), 9);
    const at = trades.findIndex((t) => eventRef(t) === f.trigger); // many trades share the trigger's ms: by order
    const upTo = trades.slice(0, at + 1).filter((t) => Math.floor(t.ts / BUCKET) === bucket);
    expect(f.evidence.observed.volume as number).toBeCloseTo(ss.sum(upTo.map((t) => t.qty)), 9);
    expect((f.evidence.observed.volume as number) / ss.median(sums)).toBeGreaterThanOrEqual(5);
  });

  it('parameters: defaults parse, bad values throw', () => {
    expect(volumeSpikeSpec.params.parse({})).toEqual({
      bucketMs: 10_000,
      baselineMs: 1_800_000,
      minBaselineBuckets: 60,
      measure: 'volume',
      ratio: 5,
      zThreshold: 5,
      minScaleFraction: 0.1,
      minNotional: 10_000,
      cooldownMs: 60_000,
    });
    expect(volumeSpikeSpec.name).toBe('volume_spike');
    expect(() => volumeSpikeSpec.params.parse({ ratio: 0.5 })).toThrow();
    expect(() => volumeSpikeSpec.params.parse({ baselineMs: 15_000 })).toThrow(/baselineMs/);
    expect(() => volumeSpikeSpec.params.parse({ minBaselineBuckets: 500 })).toThrow(/minBaselineBuckets/);
    expect(() => volumeSpikeSpec.params.parse({ measure: 'notional' })).toThrow();
    expect(() => volumeSpikeSpec.params.parse({ bucketMS: 1000 })).toThrow();
  });
});

// ================================================================== volatility_shift

describe('volatility_shift', () => {
  const SHIFT_AT = T0 + 40 * MIN;
  const INTERVAL = 5_000;

  /** Interval returns (per interval, r/√gap) from trades, as an independent oracle. */
  function intervalReturns(trades: Trade[], from: number, to: number): number[] {
    const closes = new Map<number, number>();
    for (const t of trades) if (t.ts >= from && t.ts < to) closes.set(Math.floor(t.ts / INTERVAL), t.price);
    const idx = [...closes.keys()].sort((a, b) => a - b);
    const out: number[] = [];
    for (let i = 1; i < idx.length; i++) {
      const g = (idx[i] as number) - (idx[i - 1] as number);
      if (g <= 12) out.push(Math.log((closes.get(idx[i] as number) as number) / (closes.get(idx[i - 1] as number) as number)) / Math.sqrt(g));
    }
    return out;
  }

  it('fires once when volatility triples, with before/after realized vol matching the oracle', () => {
    const trades = market(11, 60 * MIN, { volBps: (ts) => (ts >= SHIFT_AT ? 0.9 : 0.3) });
    const { findings } = runDetector(detector(volatilityShiftSpec), trades);
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;
    expectWellFormed(f);
    expect(f.key).toBe('binance:BTC-USDT');
    expect(f.evidence.observed.direction).toBe('up');
    expect(f.ts).toBeGreaterThan(SHIFT_AT);
    expect(f.ts).toBeLessThan(SHIFT_AT + 5 * MIN); // detection delay: minutes, not the baseline's half-life
    // The trigger is the last trade of the interval whose close raised the alarm.
    const i = trades.findIndex((t) => eventRef(t) === f.trigger);
    expect(i).toBeGreaterThan(0);
    expect((trades[i] as Trade).ts).toBe(f.ts);
    expect(Math.floor((trades[i + 1] as Trade).ts / INTERVAL)).toBeGreaterThan(Math.floor(f.ts / INTERVAL));
    // Oracle: realized vol before the shift (std of interval returns) and over the alarm's excursion.
    const before = ss.standardDeviation(intervalReturns(trades, SHIFT_AT - 30 * MIN, SHIFT_AT)) * 1e4;
    const startTs = f.evidence.observed.changeStartTs as number;
    const after = Math.sqrt(ss.mean(intervalReturns(trades, startTs - INTERVAL, f.ts + 1).map((r) => r * r))) * 1e4;
    const { observed, baseline, threshold } = f.evidence;
    expect(baseline.volBps as number).toBeGreaterThan(before * 0.8);
    expect(baseline.volBps as number).toBeLessThan(before * 1.2);
    expect(observed.volBps as number).toBeGreaterThan(after * 0.8);
    expect(observed.volBps as number).toBeLessThan(after * 1.25);
    expect(observed.ratio as number).toBeCloseTo((observed.volBps as number) / (baseline.volBps as number), 4);
    expect(observed.ratio as number).toBeGreaterThan(2);
    // The excursion starts near the change point (within the detection delay).
    expect(startTs).toBeGreaterThanOrEqual(SHIFT_AT - 2 * MIN);
    // Thresholds: k and h of the Gaussian variance-ratio CUSUM for volRatio 2 (ρ = 4), h = 15 nats.
    expect(threshold.k as number).toBeCloseTo((Math.log(4) / 0.75 - 1) / Math.SQRT2, 5);
    expect(threshold.h as number).toBeCloseTo(15 / (0.5 * 0.75 * Math.SQRT2), 5);
    expect(observed.statistic as number).toBeGreaterThan(threshold.h as number);
    expect(f.score).toBeCloseTo(observed.ratio as number, 3);
    expect(f.summary).toMatch(/^BTC-USDT on binance: 5-second volatility rose to [\d.]+ bps from [\d.]+ bps \([\d.]+× higher\) over the last [\d.]+ (s|min)$/);
  });

  it('stays silent on fat-tailed tape of constant volatility, one-off jumps included (several seeds)', () => {
    for (const seed of [12, 13, 14, 15, 16]) {
      let trades = market(seed, 60 * MIN);
      // A single 25 bps jump (price_jump's business): one interval cannot carry the CUSUM.
      const jumpAt = T0 + 35 * MIN;
      trades = trades.map((t) => (t.ts >= jumpAt ? { ...t, price: cents(t.price * Math.exp(25e-4)) } : t));
      const { findings, states } = runDetector(detector(volatilityShiftSpec), trades);
      expect(findings, `seed ${seed}`).toEqual([]);
      expect((states.get('binance:BTC-USDT') as VolatilityShiftState).samples).toBeGreaterThan(600);
    }
  });

  it('a drop in volatility fires only when down is watched', () => {
    const trades = market(17, 60 * MIN, { volBps: (ts) => (ts >= SHIFT_AT ? 0.08 : 0.4) });
    expect(runDetector(detector(volatilityShiftSpec), trades).findings).toEqual([]);
    const { findings } = runDetector(detector(volatilityShiftSpec, { direction: 'both' }), trades);
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;
    expect(f.evidence.observed.direction).toBe('down');
    expect(f.ts).toBeGreaterThan(SHIFT_AT);
    expect(f.evidence.observed.ratio as number).toBeLessThan(0.5);
    expect(f.score).toBeCloseTo(1 / (f.evidence.observed.ratio as number), 3);
    expect(f.summary).toMatch(/volatility fell to .* lower\)/);
  });

  it('survives checkpoints; a feed loss drops the return across the outage', () => {
    const trades = market(18, 55 * MIN, { volBps: (ts) => (ts >= SHIFT_AT ? 1.2 : 0.3) });
    const run = expectRestorable(detector(volatilityShiftSpec), trades);
    expect(run.findings).toHaveLength(1);
    const det = detector(volatilityShiftSpec);
    const s = det.newState('binance:BTC-USDT') as VolatilityShiftState;
    const some = trades.slice(0, 500);
    for (const t of some) det.onEvent(s, t, []);
    const samples = s.samples;
    det.onEvent(s, status((some.at(-1) as Trade).ts + 1, 'disconnected'), []);
    const after = { ...(some.at(-1) as Trade), ts: (some.at(-1) as Trade).ts + 60_000, price: 60_000, tradeId: 'x1' };
    det.onEvent(s, after, []);
    det.onEvent(s, { ...after, ts: after.ts + 6_000, tradeId: 'x2' }, []);
    expect(s.samples).toBe(samples); // neither the open interval nor the 18% gap became a return
    expect(() => det.fromJSON({ v: 1 })).toThrow(TypeError);
    // Another interval length: the reference restarts, the baseline carries over.
    const other = detector(volatilityShiftSpec, { intervalMs: 1000, h: 20 });
    const restored = other.fromJSON(JSON.parse(JSON.stringify(det.toJSON(s)))) as VolatilityShiftState;
    expect(restored.curIdx).toBeNull();
    expect(restored.core.ew.count).toBe(s.core.ew.count);
  });

  it('parameters: defaults parse, bad values throw', () => {
    expect(volatilityShiftSpec.params.parse({})).toEqual({
      intervalMs: 5000,
      halfLifeMs: 1_800_000,
      minSamples: 120,
      volRatio: 2,
      h: 15,
      clipZ: 6,
      direction: 'up',
      minVolBps: 0.1,
      maxGapIntervals: 12,
      cooldownMs: 300_000,
    });
    expect(volatilityShiftSpec.name).toBe('volatility_shift');
    expect(() => volatilityShiftSpec.params.parse({ volRatio: 1 })).toThrow();
    expect(() => volatilityShiftSpec.params.parse({ halfLifeMs: 1000 })).toThrow(/halfLifeMs/);
    expect(() => volatilityShiftSpec.params.parse({ direction: 'sideways' })).toThrow();
    expect(() => volatilityShiftSpec.params.parse({ h: 0 })).toThrow();
  });
});

// ================================================================== metric_anomaly

describe('metric_anomaly', () => {
  /** A metric every ~10 s (jittered) for `durationMs`, value from gen(i, ts). */
  function series(seed: number, durationMs: number, gen: (rng: () => number, ts: number, i: number) => number, key = 'cpu.load', source = 'prom'): Metric[] {
    const rng = mulberry32(seed);
    const out: Metric[] = [];
    let ts = T0;
    for (let i = 0; ts < T0 + durationMs; i++) {
      out.push({ kind: 'metric', source, key, ts, value: Math.round(gen(rng, ts, i) * 1000) / 1000 });
      ts += 8_000 + Math.floor(rng() * 4_000);
    }
    return out;
  }

  describe('robust_z', () => {
    const AT = T0 + 100 * MIN;
    const noisy = (rng: () => number) => 100 + 5 * gauss(rng);
    /** `value` for the first metric at or after `at`, else the generator's. */
    const once = (at: number, value: number, gen: (rng: () => number) => number) => {
      let done = false;
      return (rng: () => number, ts: number) => {
        if (!done && ts >= at) {
          done = true;
          return value;
        }
        return gen(rng);
      };
    };

    it('fires on an outlying value with the median/MAD of the last hour (oracle: simple-statistics)', () => {
      const ms = series(21, 120 * MIN, (rng, ts) => (ts >= AT && ts < AT + 25_000 ? 170 : noisy(rng)));
      const { findings } = runDetector(detector(metricAnomalySpec), ms);
      expect(findings).toHaveLength(1); // the outlier lasts 2–3 values: one episode
      const f = findings[0] as FindingDraft;
      expectWellFormed(f);
      const trig = ms.find((m) => m.ts >= AT) as Metric;
      expect(f.trigger).toBe(eventRef(trig));
      expect(f.key).toBe('prom:cpu.load');
      const base = ms.filter((m) => m.ts < trig.ts && m.ts > trig.ts - 3_600_000).map((m) => m.value);
      const median = ss.median(base);
      const mad = ss.medianAbsoluteDeviation(base);
      const { observed, baseline } = f.evidence;
      expect(baseline.samples).toBe(base.length);
      expect(baseline.median).toBe(median);
      expect(baseline.mad).toBe(mad);
      expect(observed.z as number).toBeCloseTo((170 - median) / (1.4826 * mad), 3);
      expect(observed.direction).toBe('up');
      expect(f.score).toBeCloseTo((170 - median) / (1.4826 * mad), 3);
      expect(f.summary).toBe(`Metric prom:cpu.load rose to 170.00 (median ${median.toFixed(2)} of the last ${base.length} values), robust z ${((170 - median) / (1.4826 * mad)).toFixed(1)}`);
    });

    it('stays silent on Gaussian noise (several seeds); fires on a drop only when down is watched', () => {
      for (const seed of [22, 23, 24, 25]) expect(runDetector(detector(metricAnomalySpec), series(seed, 120 * MIN, noisy)).findings, `seed ${seed}`).toEqual([]);
      const ms = series(26, 120 * MIN, once(AT, 40, noisy));
      expect(runDetector(detector(metricAnomalySpec, { direction: 'up' }), ms).findings).toEqual([]);
      const down = runDetector(detector(metricAnomalySpec), ms).findings;
      expect(down).toHaveLength(1);
      expect(down[0]?.evidence.observed.direction).toBe('down');
    });

    it("on: 'change' judges the step between values, not the level", () => {
      // A random walk: levels wander far (no level anomaly that means anything), one step of +40.
      const walk = (seed: number, jump: boolean) => {
        let v = 1000;
        let done = !jump;
        return series(seed, 120 * MIN, (rng, ts) => {
          v += 2 * gauss(rng);
          if (!done && ts >= AT) {
            done = true;
            v += 40;
          }
          return v;
        });
      };
      const ms = walk(27, true);
      const det = detector(metricAnomalySpec, { on: 'change' });
      const { findings } = runDetector(det, ms);
      expect(findings).toHaveLength(1);
      const f = findings[0] as FindingDraft;
      const i = ms.findIndex((m) => m.ts >= AT);
      expect(f.trigger).toBe(eventRef(ms[i] as Metric));
      const trigTs = (ms[i] as Metric).ts;
      const changes = ms.slice(1, i).map((m, k) => ({ ts: m.ts, d: m.value - (ms[k] as Metric).value })).filter((c) => c.ts > trigTs - 3_600_000).map((c) => c.d);
      expect(f.evidence.baseline.median).toBe(ss.median(changes));
      expect(f.evidence.observed.x as number).toBeCloseTo((ms[i] as Metric).value - (ms[i - 1] as Metric).value, 9);
      for (const seed of [28, 29, 30]) expect(runDetector(det, walk(seed, false)).findings, `seed ${seed}`).toEqual([]);
      expectRestorable(det, ms);
    });

    it('survives checkpoints, also into an instance with another window', () => {
      const ms = series(31, 120 * MIN, once(AT, 170, noisy));
      expect(expectRestorable(detector(metricAnomalySpec), ms).findings).toHaveLength(1);
      const a = detector(metricAnomalySpec);
      const half = runDetector(a, ms.slice(0, 300));
      const b = detector(metricAnomalySpec, { windowMs: 600_000, maxSamples: 50 });
      const s = b.fromJSON(JSON.parse(JSON.stringify(a.toJSON(half.states.get('prom:cpu.load'))))) as { robust: { sorted: { size: number } } };
      expect(s.robust.sorted.size).toBeLessThanOrEqual(50);
      const other = detector(metricAnomalySpec, { method: 'rate' });
      expect((other.fromJSON(a.toJSON(half.states.get('prom:cpu.load'))) as { rc: unknown }).rc).not.toBeNull();
      expect(() => a.fromJSON('garbage')).toThrow(TypeError);
    });
  });

  describe('rate', () => {
    const AT = T0 + 90 * MIN;
    /** Error counts reported every ~10 s: Poisson(3); in one minute a burst of 10× that. */
    function errors(seed: number, burst: boolean): Metric[] {
      const poisson = (rng: () => number, lambda: number) => {
        let k = 0;
        let p = Math.exp(-lambda);
        let s = p;
        const u = rng();
        while (u > s) {
          k++;
          p *= lambda / k;
          s += p;
        }
        return k;
      };
      return series(seed, 120 * MIN, (rng, ts) => poisson(rng, burst && ts >= AT && ts < AT + 60_000 ? 30 : 3), 'http.errors', 'app');
    }

    it('fires when a bucket sums far above its usual total (oracle: bucket sums by simple-statistics)', () => {
      const ms = errors(41, true);
      const det = detector(metricAnomalySpec, { method: 'rate' });
      const { findings } = runDetector(det, ms);
      expect(findings).toHaveLength(1);
      const f = findings[0] as FindingDraft;
      expectWellFormed(f);
      const idx = Math.floor(f.ts / 60_000);
      const first = Math.floor((ms[0] as Metric).ts / 60_000);
      const sums: number[] = [];
      for (let i = Math.max(first, idx - 60); i < idx; i++) sums.push(ss.sum(ms.filter((m) => Math.floor(m.ts / 60_000) === i).map((m) => m.value)));
      const median = ss.median(sums);
      const mad = ss.medianAbsoluteDeviation(sums);
      // The trigger: the first value of the bucket with which both thresholds are met.
      let acc = 0;
      const trig = ms.filter((m) => Math.floor(m.ts / 60_000) === idx).find((m) => {
        acc += m.value;
        return acc / median >= 5 && (acc - median) / Math.max(1.4826 * mad, 0.1 * median) >= 6;
      }) as Metric;
      expect(f.trigger).toBe(eventRef(trig));
      expect(f.evidence.baseline.median).toBe(median);
      expect(f.evidence.baseline.mad).toBe(mad);
      expect(f.evidence.observed.sum).toBe(acc);
      expect(f.score).toBeCloseTo(acc / median, 3);
      expect(f.key).toBe('app:http.errors');
      expect(f.summary).toMatch(/^Metric app:http\.errors summed \d+\.00 over \d+ values in the 1 min from .*, [\d.]+× its usual 1-minute total of [\d.]+ \(median over 60 min\)$/);
      expectRestorable(det, ms);
    });

    it('stays silent at the usual rate (several seeds)', () => {
      for (const seed of [42, 43, 44, 45]) expect(runDetector(detector(metricAnomalySpec, { method: 'rate' }), errors(seed, false)).findings, `seed ${seed}`).toEqual([]);
    });
  });

  describe('volatility', () => {
    const AT = T0 + 150 * MIN;
    function walk(seed: number, shift: boolean): Metric[] {
      let v = 500;
      return series(seed, 200 * MIN, (rng, ts) => (v += (shift && ts >= AT ? 4 : 1) * gauss(rng)), 'queue.depth', 'broker');
    }

    it('fires when the changes grow 4× in size (oracle: std of changes by simple-statistics)', () => {
      const ms = walk(51, true);
      const det = detector(metricAnomalySpec, { method: 'volatility' });
      const { findings } = runDetector(det, ms);
      expect(findings).toHaveLength(1);
      const f = findings[0] as FindingDraft;
      expectWellFormed(f);
      expect(f.ts).toBeGreaterThan(AT);
      expect(f.ts).toBeLessThan(AT + 10 * MIN);
      expect(f.evidence.observed.direction).toBe('up');
      const diffs = (from: number, to: number) =>
        ms.slice(1).map((m, k) => ({ ts: m.ts, d: m.value - (ms[k] as Metric).value })).filter((c) => c.ts >= from && c.ts < to).map((c) => c.d);
      const before = ss.standardDeviation(diffs(AT - 60 * MIN, AT));
      expect(f.evidence.baseline.std as number).toBeGreaterThan(before * 0.8);
      expect(f.evidence.baseline.std as number).toBeLessThan(before * 1.2);
      const excursion = diffs(f.evidence.observed.changeStartTs as number, f.ts + 1);
      expect(f.evidence.observed.std as number).toBeCloseTo(Math.sqrt(ss.mean(excursion.map((d) => d * d))), 1);
      expect(f.evidence.observed.samples).toBe(excursion.length);
      expectRestorable(det, ms);
    });

    it('stays silent at constant volatility (several seeds)', () => {
      for (const seed of [52, 53, 54, 55]) expect(runDetector(detector(metricAnomalySpec, { method: 'volatility' }), walk(seed, false)).findings, `seed ${seed}`).toEqual([]);
    });
  });

  it('parameters: defaults parse, bad values throw; late values are counted', () => {
    const d = metricAnomalySpec.params.parse({});
    expect(d).toMatchObject({ method: 'robust_z', on: 'value', direction: 'both', windowMs: 3_600_000, zThreshold: 6, bucketMs: 60_000, measure: 'sum', h: 15, cooldownMs: 300_000 });
    expect(metricAnomalySpec.name).toBe('metric_anomaly');
    expect(() => metricAnomalySpec.params.parse({ method: 'magic' })).toThrow();
    expect(() => metricAnomalySpec.params.parse({ minSamples: 800 })).toThrow(/minSamples/);
    expect(() => metricAnomalySpec.params.parse({ baselineMs: 60_000 })).toThrow(/baselineMs/);
    expect(() => metricAnomalySpec.params.parse({ zThreshold: -2 })).toThrow();
    const det: DetectorInstance = detector(metricAnomalySpec);
    const s = det.newState('prom:x') as { late: number; events: number };
    det.onEvent(s, { kind: 'metric', source: 'prom', key: 'x', ts: T0 + 1000, value: 1 }, []);
    det.onEvent(s, { kind: 'metric', source: 'prom', key: 'x', ts: T0, value: 1 }, []);
    expect(s.late).toBe(1);
    expect(s.events).toBe(1);
  });
});
