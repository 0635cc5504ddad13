/**
 * Market-pattern detectors on public market data: quote_stuffing, pump_and_dump, disorderly_trading,
 * wash_trade_public. Every positive is a constructed pattern embedded in realistic noise (random-walk prices
 * in ticks, log-normal sizes, random aggressor sides, Poisson arrivals) and checked against an oracle
 * computed here from the raw events (simple-statistics); every negative is the same noise, several seeds.
 */
import * as ss from 'simple-statistics';
import { describe, expect, it } from 'vitest';
import { eventRef, type CanonicalEvent, type FeedStatus, type Order, type Quote, type Trade } from '../../src/core/events.ts';
import { disorderlyTradingParams, disorderlyTradingSpec } from '../../src/detectors/disorderly-trading.ts';
import { pumpAndDumpParams, pumpAndDumpSpec } from '../../src/detectors/pump-and-dump.ts';
import { quoteStuffingParams, quoteStuffingSpec } from '../../src/detectors/quote-stuffing.ts';
import type { FindingDraft } from '../../src/detectors/types.ts';
import { isRoundQty, washTradePublicParams, washTradePublicSpec } from '../../src/detectors/wash-trade-public.ts';
import { detector, expectRestorable, expectWellFormed, runDetector } from '../helpers/detector-harness.ts';
import { mulberry32 } from '../helpers/random.ts';

const T0 = Date.UTC(2024, 7, 8, 12, 0, 0);
const VENUE = 'binance';
const SYMBOL = 'XYZ-USDT';
const KEY = `${VENUE}:${SYMBOL}`;
const MIN = 60_000;

// ------------------------------------------------------------------ random helpers

function gauss(rng: () => number): number {
  let u = 0;
  while (u === 0) u = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}
/** Exponential gap (Poisson arrivals), whole ms, at least 1. */
function expGap(rng: () => number, meanMs: number): number {
  return Math.max(1, Math.round(-Math.log(1 - rng()) * meanMs));
}
function roundTo(x: number, step: number): number {
  const decimals = Math.max(0, Math.ceil(-Math.log10(step) - 1e-9));
  return Number((Math.round(x / step) * step).toFixed(decimals));
}
function byTs<T extends { ts: number }>(events: T[]): T[] {
  return events.map((e, i) => [e, i] as const).sort((a, b) => a[0].ts - b[0].ts || a[1] - b[1]).map(([e]) => e);
}
const severityOf = (x: number, threshold: number): string => (x >= 4 * threshold ? 'critical' : x >= 2 * threshold ? 'high' : 'medium');

// ------------------------------------------------------------------ trades

interface TradeNoise {
  start: number;
  durationMs: number;
  price0: number;
  tick: number;
  /** Mean time between trades (Poisson); may depend on time. */
  meanGapMs: number | ((ts: number) => number);
  /** Chance that a trade moves the walk one tick (half up, half down). */
  pMove: number;
  /** Log-normal sizes: median and σ of ln(size), rounded to lot. */
  sizeMedian: number;
  sizeSigma: number;
  lot: number;
  /** Chance of a minimum-lot print, and of a round print (whole multiple of roundUnit, 1–3 units). */
  pMinLot?: number;
  pRound?: number;
  roundUnit?: number;
  /** Multiplies the walk's price (a constructed pattern on top of the noise). */
  priceFactor?: (ts: number) => number;
  /** Multiplies sizes. */
  sizeFactor?: (ts: number) => number;
  idPrefix?: string;
}

function tradeNoise(seed: number, o: TradeNoise): Trade[] {
  const rng = mulberry32(seed);
  const out: Trade[] = [];
  let ts = o.start;
  let k = 0; // walk position in ticks
  let n = 0;
  const gap = typeof o.meanGapMs === 'number' ? () => o.meanGapMs as number : o.meanGapMs;
  while (ts < o.start + o.durationMs) {
    const u = rng();
    if (u < o.pMove / 2) k -= 1;
    else if (u < o.pMove) k += 1;
    const f = o.priceFactor ? o.priceFactor(ts) : 1;
    const price = roundTo((o.price0 + k * o.tick) * f, o.tick);
    const v = rng();
    let qty: number;
    if (v < (o.pMinLot ?? 0)) qty = o.lot;
    else if (v < (o.pMinLot ?? 0) + (o.pRound ?? 0)) qty = (1 + Math.floor(rng() * 3)) * (o.roundUnit ?? 1);
    else qty = Math.max(o.lot, roundTo(o.sizeMedian * Math.exp(o.sizeSigma * gauss(rng)) * (o.sizeFactor ? o.sizeFactor(ts) : 1), o.lot));
    out.push({
      kind: 'trade',
      venue: VENUE,
      symbol: SYMBOL,
      ts,
      recvTs: ts + 2,
      price,
      qty,
      side: rng() < 0.5 ? 'buy' : 'sell',
      tradeId: `${o.idPrefix ?? 't'}${++n}`,
    });
    ts += expGap(rng, gap(ts));
  }
  return out;
}

function mkTrade(ts: number, price: number, qty: number, side: 'buy' | 'sell', id: string): Trade {
  return { kind: 'trade', venue: VENUE, symbol: SYMBOL, ts, recvTs: ts + 2, price, qty, side, tradeId: id };
}

// ------------------------------------------------------------------ quotes and orders

/** Top-of-book updates at a time-varying Poisson rate (per s): size changes, 1-tick moves, spread changes. */
function quoteNoise(seed: number, start: number, durationMs: number, baseRatePerSec = 20): Quote[] {
  const rng = mulberry32(seed);
  const out: Quote[] = [];
  let ts = start;
  let bidT = 10_000; // ticks of 0.01
  let spread = 1;
  let seq = 1;
  let rate = baseRatePerSec;
  let nextRegime = start;
  while (ts < start + durationMs) {
    if (ts >= nextRegime) {
      rate = baseRatePerSec * (0.5 + 1.5 * rng()); // activity varies by the minute: 0.5× … 2×
      nextRegime += MIN;
    }
    const u = rng();
    if (u < 0.3) bidT += rng() < 0.5 ? 1 : -1;
    else if (u < 0.4) spread = spread === 1 ? 2 : 1;
    out.push({
      kind: 'quote',
      venue: VENUE,
      symbol: SYMBOL,
      ts,
      recvTs: ts + 1,
      bidPx: bidT / 100,
      bidQty: roundTo(Math.exp(gauss(rng)), 0.001),
      askPx: (bidT + spread) / 100,
      askQty: roundTo(Math.exp(gauss(rng)), 0.001),
      seq: seq++,
    });
    ts += expGap(rng, 1000 / rate);
  }
  return out;
}

/** Order flow of many accounts: new 45%, cancel 40%, replace 5%, fill 10%, ~5 messages/s. */
function orderNoise(seed: number, start: number, durationMs: number): Order[] {
  const rng = mulberry32(seed);
  const out: Order[] = [];
  let ts = start;
  let n = 0;
  while (ts < start + durationMs) {
    const u = rng();
    const action = u < 0.45 ? 'new' : u < 0.85 ? 'cancel' : u < 0.9 ? 'replace' : 'fill';
    out.push({
      kind: 'order',
      venue: VENUE,
      symbol: SYMBOL,
      ts,
      recvTs: ts + 1,
      orderId: `o${++n}`,
      account: `ACC-${1 + Math.floor(rng() * 40)}`,
      side: rng() < 0.5 ? 'buy' : 'sell',
      price: 100 + Math.floor(rng() * 10) / 100,
      qty: roundTo(Math.exp(gauss(rng)), 0.001),
      action,
    });
    ts += expGap(rng, 200);
  }
  return out;
}

function status(ts: number, s: FeedStatus['status']): FeedStatus {
  return { kind: 'status', venue: VENUE, symbol: SYMBOL, ts, recvTs: ts, status: s, reason: 'test' };
}

// =================================================================== quote_stuffing

/** A stuffing burst in the bucket starting at `at`: `n` updates flickering size and prices A → B → A. */
function stuffingBurst(at: number, n: number, bidPx: number): Quote[] {
  const out: Quote[] = [];
  for (let i = 0; i < n; i++) {
    const flip = i % 4 === 1; // every 4th update moves the bid one tick, the next one moves it back
    const ts = at + Math.floor((i * 900) / n) + 50;
    out.push({
      kind: 'quote', venue: VENUE, symbol: SYMBOL, ts, recvTs: ts, bidPx: flip ? roundTo(bidPx + 0.01, 0.01) : bidPx,
      bidQty: 1 + (i % 7), askPx: roundTo(bidPx + 0.02, 0.01), askQty: 2, seq: 1_000_000 + i,
    });
  }
  return out;
}

/** Oracle for the quote path: the first quote at which the burst bucket crosses every threshold. */
function quoteOracle(quotes: Quote[], p: { bucketMs: number; windowMs: number; rateMultiple: number; minUpdatesPerSec: number; minChurnShare: number; minSamples: number }) {
  const counts = new Map<number, number>();
  let bid: number | null = null;
  let ask: number | null = null;
  let pb: number | null = null;
  let pa: number | null = null;
  let bucket = Number.NaN;
  let count = 0;
  let churn = 0;
  for (const q of quotes) {
    const b = Math.floor(q.ts / p.bucketMs);
    if (b !== bucket) {
      bucket = b;
      count = 0;
      churn = 0;
    }
    let isChurn = false;
    if (bid === q.bidPx && ask === q.askPx) isChurn = true;
    else {
      isChurn = pb === q.bidPx && pa === q.askPx;
      pb = bid;
      pa = ask;
      bid = q.bidPx;
      ask = q.askPx;
    }
    count++;
    if (isChurn) churn++;
    counts.set(b, count);
    // Baseline: every bucket in the window before b (empty ones as 0).
    const first = Math.floor(quotes[0]!.ts / p.bucketMs);
    const lo = Math.max(first, b - Math.ceil(p.windowMs / p.bucketMs) + 1);
    if (b - lo < p.minSamples) continue;
    if (count < (p.minUpdatesPerSec * p.bucketMs) / 1000) continue;
    const base: number[] = [];
    for (let j = lo; j < b; j++) base.push(counts.get(j) ?? 0);
    const median = ss.median(base);
    if (count / Math.max(median, 1) < p.rateMultiple || churn / count < p.minChurnShare) continue;
    return { quote: q, count, churn, median, mad: ss.medianAbsoluteDeviation(base), samples: base.length };
  }
  return undefined;
}

/** Oracle for the order path. */
function orderOracle(orders: Order[], p: { orderBucketMs: number; orderWindowMs: number; otrMultiple: number; minOtr: number; minOrderMessages: number; orderMinSamples: number }) {
  const buckets = new Map<number, { msgs: number; fills: number }>();
  for (const o of orders) {
    const b = Math.floor(o.ts / p.orderBucketMs);
    let c = buckets.get(b);
    if (!c) buckets.set(b, (c = { msgs: 0, fills: 0 }));
    if (o.action === 'fill') c.fills++;
    else c.msgs++;
    if (o.action === 'fill' || c.msgs < p.minOrderMessages) continue;
    const base: number[] = [];
    for (const [j, x] of buckets) {
      if (j < b && j * p.orderBucketMs > b * p.orderBucketMs - p.orderWindowMs && x.msgs > 0) base.push(x.msgs / Math.max(x.fills, 1));
    }
    if (base.length < p.orderMinSamples) continue;
    const median = ss.median(base);
    const otr = c.msgs / Math.max(c.fills, 1);
    if (otr < p.minOtr || otr / Math.max(median, 1) < p.otrMultiple) continue;
    return { order: o, msgs: c.msgs, fills: c.fills, otr, median, samples: base.length };
  }
  return undefined;
}

describe('quote_stuffing', () => {
  const defaults = quoteStuffingParams.parse({});

  it('parameters: defaults parse, bad values throw', () => {
    expect(defaults).toEqual({
      bucketMs: 1000, windowMs: 300_000, maxSamples: 600, minSamples: 60, rateMultiple: 10, minUpdatesPerSec: 100, minChurnShare: 0.5,
      orderBucketMs: 10_000, orderWindowMs: 1_800_000, orderMinSamples: 30, otrMultiple: 5, minOtr: 20, minOrderMessages: 200, cooldownMs: 60_000,
    });
    expect(quoteStuffingSpec.name).toBe('quote_stuffing');
    expect(quoteStuffingSpec.kinds).toEqual(['quote', 'order', 'status']);
    expect(() => quoteStuffingParams.parse({ rateMultiple: 0.5 })).toThrow();
    expect(() => quoteStuffingParams.parse({ minChurnShare: 1.5 })).toThrow();
    expect(() => quoteStuffingParams.parse({ minSamples: 700 })).toThrow(/maxSamples/);
    expect(() => quoteStuffingParams.parse({ windowMs: 500 })).toThrow(/bucketMs/);
    expect(() => quoteStuffingParams.parse({ rateMultipel: 3 })).toThrow();
  });

  it('a churning burst of quotes fires once, at the oracle quote, with the oracle baseline', () => {
    const noise = quoteNoise(7, T0, 10 * MIN);
    const burstAt = T0 + 7 * MIN;
    const bidAtBurst = [...noise].reverse().find((q) => q.ts < burstAt)!.bidPx;
    const quotes = byTs([...noise, ...stuffingBurst(burstAt, 700, bidAtBurst)]);
    const run = runDetector(detector(quoteStuffingSpec), quotes);
    expect(run.findings).toHaveLength(1);
    const f = run.findings[0] as FindingDraft;
    const o = quoteOracle(quotes, defaults)!;
    expect(o).toBeDefined();
    expect(Math.floor(o.quote.ts / 1000) * 1000).toBe(burstAt);
    expect(f.trigger).toBe(eventRef(o.quote));
    expect(f.evidence.triggers).toEqual([f.trigger]);
    expect(f.ts).toBe(o.quote.ts);
    expect(f.key).toBe(KEY);
    expect([f.venue, f.symbol]).toEqual([VENUE, SYMBOL]);
    expect(f.windowStart).toBe(burstAt);
    const { observed, baseline, threshold } = f.evidence;
    expect(observed.path).toBe('quotes');
    expect(observed.updates).toBe(o.count);
    expect(observed.churn).toBe(o.churn);
    expect(observed.churnShare as number).toBeCloseTo(o.churn / o.count, 6);
    expect(baseline.median).toBe(o.median);
    expect(baseline.mad).toBe(o.mad);
    expect(baseline.samples).toBe(o.samples);
    expect(f.score).toBeCloseTo(o.count / Math.max(o.median, 1), 4);
    expect(f.severity).toBe(severityOf(o.count / Math.max(o.median, 1), 10));
    expect(threshold).toMatchObject({ rateMultiple: 10, minUpdatesPerSec: 100, minChurnShare: 0.5 });
    expect(f.summary).toMatch(/^XYZ-USDT on binance had \d+ top-of-book updates within 1 s, [\d.]+× its usual [\d.]+ per 1 s, [\d.]+% of them churn/);
    // Checkpointing at every event (and others): the last 100 s before the burst keep the run short.
    expect(expectRestorable(detector(quoteStuffingSpec), quotes.filter((q) => q.ts >= burstAt - 100_000)).findings).toHaveLength(1);
  });

  it('ordinary quote traffic stays silent (several seeds), and so does a fast-moving burst without churn', () => {
    for (const seed of [1, 2, 3, 4]) {
      const run = runDetector(detector(quoteStuffingSpec), quoteNoise(seed, T0, 12 * MIN));
      expect(run.findings, `seed ${seed}`).toEqual([]);
    }
    // A news burst: 400 updates in a second, every one a new price (a fast market, not churn).
    const noise = quoteNoise(9, T0, 10 * MIN);
    const at = T0 + 7 * MIN;
    const trend: Quote[] = Array.from({ length: 400 }, (_, i) => ({
      kind: 'quote', venue: VENUE, symbol: SYMBOL, ts: at + 50 + Math.floor(i * 2), recvTs: at, bidPx: roundTo(101 + i * 0.01, 0.01),
      bidQty: 1, askPx: roundTo(101.01 + i * 0.01, 0.01), askQty: 1, seq: 2_000_000 + i,
    }));
    const quotes = byTs([...noise, ...trend]);
    expect(runDetector(detector(quoteStuffingSpec), quotes).findings).toEqual([]);
    const loose = runDetector(detector(quoteStuffingSpec, { minChurnShare: 0 }), quotes).findings;
    expect(loose).toHaveLength(1);
    expect(loose[0]!.evidence.observed.churnShare as number).toBeLessThan(0.1);
  });

  it('a status marker before a resync burst keeps it out: the bucket after a break is neither judged nor learnt', () => {
    const noise = quoteNoise(11, T0, 10 * MIN);
    const at = T0 + 7 * MIN;
    const bid = [...noise].reverse().find((q) => q.ts < at)!.bidPx;
    const burst = stuffingBurst(at, 700, bid);
    const withStatus = byTs([...noise, status(at + 10, 'book_reset'), ...burst]);
    expect(runDetector(detector(quoteStuffingSpec), withStatus).findings).toEqual([]);
    expect(runDetector(detector(quoteStuffingSpec), byTs([...noise, ...burst])).findings).toHaveLength(1);
    const st = runDetector(detector(quoteStuffingSpec), withStatus).states.get(KEY) as { quotes: { breaks: number; baseline: { sorted: { max: number } } } };
    expect(st.quotes.breaks).toBe(1);
    expect(st.quotes.baseline.sorted.max).toBeLessThan(200); // the burst bucket never entered the baseline
  });

  it('order path: an order-to-trade burst fires on its own, at the oracle message', () => {
    const noise = orderNoise(21, T0, 15 * MIN);
    const at = T0 + 10 * MIN;
    const burst: Order[] = [];
    for (let i = 0; i < 400; i++) {
      const ts = at + 100 + i * 20;
      const base = { kind: 'order', venue: VENUE, symbol: SYMBOL, recvTs: ts, account: 'ACC-STUFF', side: 'buy', price: 99.5, qty: 1 } as const;
      burst.push({ ...base, ts, orderId: `s${i}`, action: 'new' }, { ...base, ts: ts + 5, orderId: `s${i}`, action: 'cancel' });
    }
    const orders = byTs([...noise, ...burst]);
    const det = detector(quoteStuffingSpec);
    const run = runDetector(det, orders);
    expect(run.findings).toHaveLength(1);
    const f = run.findings[0]!;
    const o = orderOracle(orders, defaults)!;
    expect(o).toBeDefined();
    expect(f.trigger).toBe(eventRef(o.order));
    expect(f.ts).toBe(o.order.ts);
    expect(f.evidence.observed.path).toBe('orders');
    expect(f.evidence.observed.messages).toBe(o.msgs);
    expect(f.evidence.observed.fills).toBe(o.fills);
    expect(f.evidence.observed.otr as number).toBeCloseTo(o.otr, 4);
    expect(f.evidence.baseline.medianOtr).toBe(o.median);
    expect(f.evidence.baseline.samples).toBe(o.samples);
    expect(f.score).toBeCloseTo(o.otr / Math.max(o.median, 1), 4);
    expect(f.severity).toBe(severityOf(o.otr / Math.max(o.median, 1), 5));
    expect(f.summary).toMatch(/order messages \(new, replace, cancel\) against \d+ fills within 10 s, an order-to-trade ratio of/);
    expectRestorable(det, orders);
    // Ordinary order flow: silent.
    for (const seed of [22, 23, 24]) expect(runDetector(detector(quoteStuffingSpec), orderNoise(seed, T0, 20 * MIN)).findings).toEqual([]);
  });

  it('the two paths do not depend on how the quote and order streams interleave', () => {
    const quotesNoise = quoteNoise(31, T0, 10 * MIN);
    const at = T0 + 7 * MIN;
    const quotes = byTs([...quotesNoise, ...stuffingBurst(at, 700, [...quotesNoise].reverse().find((q) => q.ts < at)!.bidPx)]);
    const orders = byTs([
      ...orderNoise(32, T0, 10 * MIN),
      ...Array.from({ length: 600 }, (_, i): Order => ({
        kind: 'order', venue: VENUE, symbol: SYMBOL, ts: T0 + 8 * MIN + 100 + i * 10, recvTs: 0, orderId: `z${i}`, account: 'A', side: 'sell', price: 100, qty: 1, action: i % 2 ? 'cancel' : 'new',
      })),
    ]);
    const sortF = (fs: FindingDraft[]) => [...fs].sort((a, b) => a.trigger.localeCompare(b.trigger));
    const merged = runDetector(detector(quoteStuffingSpec), byTs<CanonicalEvent>([...quotes, ...orders])).findings;
    expect(merged.map((f) => f.evidence.observed.path).sort()).toEqual(['orders', 'quotes']);
    const ordersFirst = runDetector(detector(quoteStuffingSpec), [...orders, ...quotes]).findings;
    const rng = mulberry32(5);
    const shuffled: CanonicalEvent[] = [];
    let i = 0;
    let j = 0;
    while (i < quotes.length || j < orders.length) {
      if (j >= orders.length || (i < quotes.length && rng() < 0.5)) shuffled.push(quotes[i++]!);
      else shuffled.push(orders[j++]!);
    }
    const random = runDetector(detector(quoteStuffingSpec), shuffled).findings;
    expect(sortF(ordersFirst)).toEqual(sortF(merged));
    expect(sortF(random)).toEqual(sortF(merged));
  });

  it('state JSON: garbage is rejected, another instance\'s state (other parameters) is accepted', () => {
    const det = detector(quoteStuffingSpec);
    expect(() => det.fromJSON(null)).toThrow(TypeError);
    expect(() => det.fromJSON({ v: 2 })).toThrow(TypeError);
    expect(() => det.fromJSON({ v: 1, key: KEY, quotes: {}, orders: {} })).toThrow(TypeError);
    const quotes = quoteNoise(41, T0, 6 * MIN);
    const a = runDetector(det, quotes.slice(0, 5000));
    const saved = JSON.parse(JSON.stringify(det.toJSON(a.states.get(KEY))));
    for (const params of [{ rateMultiple: 4 }, { bucketMs: 500, windowMs: 120_000, maxSamples: 100, minSamples: 20 }, { orderBucketMs: 5000 }]) {
      const other = detector(quoteStuffingSpec, params);
      const s = other.fromJSON(saved);
      const out: FindingDraft[] = [];
      for (const q of quotes.slice(5000)) other.onEvent(s, q, out);
      expect(JSON.parse(JSON.stringify(other.toJSON(s))).v).toBe(1);
    }
  });
});

// =================================================================== pump_and_dump

/** Piecewise-linear factor through (t, f) knots, flat outside. */
function knots(points: Array<[number, number]>): (ts: number) => number {
  return (ts) => {
    if (ts <= points[0]![0]) return points[0]![1];
    for (let i = 1; i < points.length; i++) {
      const [t1, f1] = points[i]!;
      const [t0, f0] = points[i - 1]!;
      if (ts <= t1) return f0 + ((f1 - f0) * (ts - t0)) / (t1 - t0);
    }
    return points[points.length - 1]![1];
  };
}

const PUMP_START = T0 + 2 * 3_600_000;
function pumpTrades(seed: number, opts: { rise?: number; after?: number; volume?: boolean; mirror?: boolean } = {}): Trade[] {
  const rise = opts.rise ?? 0.2;
  const after = opts.after ?? 0.05;
  const peakAt = PUMP_START + 20 * MIN;
  const endAt = peakAt + 10 * MIN;
  const sign = opts.mirror ? -1 : 1;
  const busy = (ts: number): boolean => opts.volume !== false && ts >= PUMP_START && ts < endAt;
  return tradeNoise(seed, {
    start: T0, durationMs: 3 * 3_600_000, price0: 10, tick: 0.001, meanGapMs: (ts) => (busy(ts) ? 700 : 2000), pMove: 0.3,
    sizeMedian: 50, sizeSigma: 1, lot: 1,
    priceFactor: knots([[PUMP_START, 1], [peakAt, 1 + sign * rise], [endAt, 1 + sign * after]]),
    sizeFactor: (ts) => (busy(ts) ? 2 : 1),
  });
}

/** Independent oracle of the baseline snapshots pump_and_dump takes when an interval opens. */
function pumpBaselineAt(trades: Trade[], fromTs: number, I: number, h: number) {
  const first = trades.findIndex((t) => t.ts >= fromTs);
  const tx = trades[first]!.ts;
  const before = trades.slice(0, first);
  const rate = ss.sum(before.map((t) => t.qty * 2 ** (-(tx - t.ts) / h))) / ((h / Math.LN2) * (1 - 2 ** (-(tx - trades[0]!.ts) / h)));
  // Interval closes → normalized squared returns, weighted by 2^(t/h).
  const closes = new Map<number, number>();
  for (const t of before) closes.set(Math.floor(t.ts / I), t.price);
  const idxs = [...closes.keys()];
  const xs: number[] = [];
  const ws: number[] = [];
  const tLast = idxs[idxs.length - 1]! * I;
  for (let i = 1; i < idxs.length; i++) {
    const r = Math.log(closes.get(idxs[i]!)! / closes.get(idxs[i - 1]!)!);
    xs.push((r * r) / (idxs[i]! - idxs[i - 1]!));
    ws.push(2 ** ((idxs[i]! * I - tLast) / h));
  }
  const variance = ss.sum(xs.map((x, i) => x * ws[i]!)) / ss.sum(ws);
  return { rate, sigma: Math.sqrt(variance), cumBefore: ss.sum(before.map((t) => t.qty)), returns: xs.length };
}

describe('pump_and_dump', () => {
  const defaults = pumpAndDumpParams.parse({});

  it('parameters: defaults parse, bad values throw', () => {
    expect(defaults).toEqual({
      intervalMs: 60_000, halfLifeMs: 21_600_000, minIntervals: 60, pumpMs: 1_800_000, riseSigmas: 4, minRisePct: 5, volumeMultiple: 3,
      dumpMs: 1_800_000, giveBackFraction: 0.5, detectBearRaid: false, cooldownMs: 1_800_000,
    });
    expect(pumpAndDumpSpec.name).toBe('pump_and_dump');
    expect(() => pumpAndDumpParams.parse({ giveBackFraction: 0 })).toThrow();
    expect(() => pumpAndDumpParams.parse({ giveBackFraction: 1.5 })).toThrow();
    expect(() => pumpAndDumpParams.parse({ pumpMs: 1000 })).toThrow(/intervalMs/);
    expect(() => pumpAndDumpParams.parse({ detectBearRaid: 'yes' })).toThrow();
  });

  it('a pump on heavy volume then a give-back fires once, at the oracle reversal trade', () => {
    const trades = pumpTrades(101);
    const run = runDetector(detector(pumpAndDumpSpec), trades);
    expect(run.findings).toHaveLength(1);
    const f = run.findings[0]!;
    const o = f.evidence.observed;
    const I = defaults.intervalMs;
    // Start: a trade in the pump window before qualification, the lowest of the trades from it to the peak.
    const start = trades.find((t) => t.ts === o.startTs && t.price === o.startPrice)!;
    expect(start).toBeDefined();
    const qualTs = o.qualifiedTs as number;
    expect(qualTs - start.ts).toBeLessThanOrEqual(defaults.pumpMs);
    // The running minimum is kept per interval: at least as low as every whole interval of the window, and a trade in it.
    const fullIntervals = trades.filter((t) => t.ts >= Math.ceil((qualTs - defaults.pumpMs) / I) * I && t.ts <= qualTs).map((t) => t.price);
    const window = trades.filter((t) => t.ts > qualTs - defaults.pumpMs && t.ts <= qualTs).map((t) => t.price);
    expect(start.price).toBeLessThanOrEqual(ss.min(fullIntervals));
    expect(start.price).toBeGreaterThanOrEqual(ss.min(window));
    expect(start.ts).toBeGreaterThan(PUMP_START - 30 * MIN);
    expect(start.ts).toBeLessThan(PUMP_START + 2 * MIN);
    // Peak: the highest trade from qualification to the trigger; trigger: the first trade after the peak that gives back ≥ 50%.
    const i0 = trades.findIndex((t) => t.ts >= qualTs);
    const triggerIdx = (() => {
      let peak = -Infinity;
      for (let i = i0; i < trades.length; i++) {
        const t = trades[i]!;
        if (t.price > peak) peak = t.price;
        else if ((peak - t.price) / (peak - start.price) >= 0.5) return i;
      }
      return -1;
    })();
    const trig = trades[triggerIdx]!;
    const peak = ss.max(trades.slice(i0, triggerIdx).map((t) => t.price));
    expect(f.trigger).toBe(eventRef(trig));
    expect(f.ts).toBe(trig.ts);
    expect(o.peakPrice).toBe(peak);
    expect(o.price).toBe(trig.price);
    expect(o.giveBackPct as number).toBeCloseTo((100 * (peak - trig.price)) / (peak - start.price), 5);
    expect(o.movePct as number).toBeCloseTo(100 * (peak / start.price - 1), 5);
    expect(o.movePct as number).toBeGreaterThan(17);
    // Baselines, from the raw trades: σ of 1-minute returns (EW) and the volume rate before the pump.
    const fromTs = Math.floor(start.ts / I) * I;
    const b = pumpBaselineAt(trades, fromTs, I, defaults.halfLifeMs);
    expect(f.evidence.baseline.sigmaIntervalBps as number).toBeCloseTo(b.sigma * 1e4, 4);
    expect(f.evidence.baseline.sigmaHorizonBps as number).toBeCloseTo(b.sigma * Math.sqrt(30) * 1e4, 4);
    const peakTrade = trades.slice(i0, triggerIdx).find((t) => t.price === peak)!;
    const volume = ss.sum(trades.filter((t) => t.ts >= fromTs && t.ts <= peakTrade.ts).map((t) => t.qty));
    expect(o.volume as number).toBeCloseTo(volume, 6);
    const ratio = volume / (b.rate * Math.max(peakTrade.ts - fromTs, I));
    expect(o.volumeRatio as number).toBeCloseTo(ratio, 3);
    expect(ratio).toBeGreaterThan(3);
    const sigmas = Math.log(peak / start.price) / (b.sigma * Math.sqrt(30));
    expect(f.score).toBeCloseTo(sigmas, 3);
    expect(f.severity).toBe(severityOf(sigmas, 4));
    expect(f.key).toBe(KEY);
    expect(f.windowStart).toBe(start.ts);
    expect(f.evidence.triggers).toContain(f.trigger);
    expect(f.evidence.triggers).toContain(eventRef(start));
    expect(f.summary).toMatch(/^XYZ-USDT on binance rose [\d.]+% in [\d.]+ min \(\d+\.\d+ → 1\d\.\d+, [\d.]+σ, on [\d.]+× its usual volume\) then gave back [\d.]+% of the rise within [\d.]+ (min|s) \(now 1\d\.\d+\)$/);
    expect(expectRestorable(detector(pumpAndDumpSpec), trades.filter((t) => t.ts >= T0 + 50 * MIN)).findings).toHaveLength(1);
  });

  it('stays silent on noise, on a pump that holds, on a rise without volume, and on a bear raid unless asked', () => {
    for (const seed of [102, 103]) {
      const noise = tradeNoise(seed, { start: T0, durationMs: 4 * 3_600_000, price0: 10, tick: 0.001, meanGapMs: 2000, pMove: 0.3, sizeMedian: 50, sizeSigma: 1, lot: 1 });
      expect(runDetector(detector(pumpAndDumpSpec), noise).findings, `seed ${seed}`).toEqual([]);
    }
    // A volatile market (10-bps ticks, activity changing 0.3×–3× every 10 minutes): big moves and volume swings, no pattern.
    for (const seed of [111, 112]) {
      const rng = mulberry32(seed * 7);
      const regimes = Array.from({ length: 40 }, () => 0.3 + 2.7 * rng());
      const noise = tradeNoise(seed, {
        start: T0, durationMs: 4 * 3_600_000, price0: 10, tick: 0.01, meanGapMs: (ts) => 2000 / regimes[Math.floor((ts - T0) / (10 * MIN))]!, pMove: 0.6,
        sizeMedian: 50, sizeSigma: 1.2, lot: 1,
      });
      const run = runDetector(detector(pumpAndDumpSpec), noise);
      expect(run.findings, `volatile seed ${seed}`).toEqual([]);
      expect((run.states.get(KEY) as { variance: { count: number } }).variance.count).toBeGreaterThan(200); // it was judging
    }
    expect(runDetector(detector(pumpAndDumpSpec), pumpTrades(105, { after: 0.17 })).findings).toEqual([]); // gives back 15% of the rise
    expect(runDetector(detector(pumpAndDumpSpec), pumpTrades(106, { volume: false })).findings).toEqual([]);
    const raid = pumpTrades(107, { mirror: true, rise: 0.15, after: 0.04 });
    expect(runDetector(detector(pumpAndDumpSpec), raid).findings).toEqual([]);
    const found = runDetector(detector(pumpAndDumpSpec, { detectBearRaid: true }), raid).findings;
    expect(found).toHaveLength(1);
    const f = found[0]!;
    expect(f.evidence.observed.direction).toBe('bear_raid');
    expect(f.trigger.endsWith('#bear_raid')).toBe(true);
    const o = f.evidence.observed;
    expect(o.giveBackPct as number).toBeGreaterThanOrEqual(50);
    expect(o.giveBackPct as number).toBeCloseTo((100 * ((o.price as number) - (o.peakPrice as number))) / ((o.startPrice as number) - (o.peakPrice as number)), 6);
    expect(f.summary).toMatch(/ fell [\d.]+% in .* then recovered [\d.]+% of the fall /);
    expect(expectRestorable(detector(pumpAndDumpSpec, { detectBearRaid: true }), raid.filter((t) => t.ts >= T0 + 50 * MIN)).findings).toHaveLength(1);
  });

  it('state JSON: garbage is rejected, another instance\'s state (other parameters) is accepted', () => {
    const det = detector(pumpAndDumpSpec);
    expect(() => det.fromJSON({ v: 1 })).toThrow(TypeError);
    expect(() => det.fromJSON('x')).toThrow(TypeError);
    const trades = pumpTrades(108);
    const cut = trades.findIndex((t) => t.ts >= PUMP_START + 15 * MIN); // mid-pump
    const a = runDetector(det, trades.slice(0, cut));
    const saved = JSON.parse(JSON.stringify(det.toJSON(a.states.get(KEY))));
    expect(saved.up).not.toBeNull(); // an episode under way is part of the state
    for (const params of [{ giveBackFraction: 0.6 }, { pumpMs: 3_600_000 }, { intervalMs: 30_000 }, { detectBearRaid: true }]) {
      const other = detector(pumpAndDumpSpec, params);
      const s = other.fromJSON(saved);
      const out: FindingDraft[] = [];
      for (const t of trades.slice(cut)) other.onEvent(s, t, out);
      if (!('intervalMs' in params)) expect(out, JSON.stringify(params)).toHaveLength(1);
    }
  });
});

// =================================================================== disorderly_trading

/** A calm market like price_jump's: a trade every 20–180 ms at ~50,000, ±1 tick (0.5) 30% of the time, log-normal sizes. */
function calmTrades(seed: number, durationMs: number): Trade[] {
  const rng = mulberry32(seed);
  const out: Trade[] = [];
  let ts = T0;
  let price = 50_000;
  let id = 1;
  while (ts < T0 + durationMs) {
    const u = rng();
    if (u < 0.15) price -= 0.5;
    else if (u < 0.3) price += 0.5;
    out.push(mkTrade(ts, price, Math.max(0.0001, roundTo(0.01 * Math.exp(gauss(rng)), 0.0001)), rng() < 0.5 ? 'buy' : 'sell', String(id++)));
    ts += 20 + Math.floor(rng() * 160);
  }
  return out;
}

/** Interval returns and median/MAD as price_jump defines them, from the raw trades before `beforeIdx`. */
function intervalBaseline(trades: Trade[], beforeIdx: number, intervalMs: number, windowMs: number) {
  const closes = new Map<number, number>();
  for (const t of trades.slice(0, beforeIdx)) closes.set(Math.floor(t.ts / intervalMs), t.price);
  const idxs = [...closes.keys()];
  const cur = Math.floor(trades[beforeIdx]!.ts / intervalMs);
  const closed = idxs.filter((i) => i < cur);
  const rets: number[] = [];
  for (let i = 1; i < closed.length; i++) {
    if (closed[i]! * intervalMs > cur * intervalMs - windowMs) rets.push(Math.log(closes.get(closed[i]!)! / closes.get(closed[i - 1]!)!));
  }
  const refIdx = closed[closed.length - 1]!;
  return { median: ss.median(rets), mad: ss.medianAbsoluteDeviation(rets), n: rets.length, ref: closes.get(refIdx)! };
}

describe('disorderly_trading', () => {
  const defaults = disorderlyTradingParams.parse({});

  it('parameters: defaults parse, bad values throw', () => {
    expect(defaults).toEqual({
      intervalMs: 1000, windowMs: 300_000, maxSamples: 600, minSamples: 20, zThreshold: 6, minMoveBps: 10, minScaleBps: 0.5,
      reversalFraction: 0.75, reversalMs: 60_000, cooldownMs: 60_000,
    });
    expect(disorderlyTradingSpec.name).toBe('disorderly_trading');
    expect(() => disorderlyTradingParams.parse({ reversalFraction: 0 })).toThrow();
    expect(() => disorderlyTradingParams.parse({ zThreshold: -2 })).toThrow();
    expect(() => disorderlyTradingParams.parse({ minSamples: 601 })).toThrow(/maxSamples/);
  });

  it('a two-print fat finger that comes back fires at the reverting trade, with the oracle z and prices', () => {
    const noise = calmTrades(201, 6 * MIN);
    const at = T0 + 4 * MIN + 300;
    const i = noise.findIndex((t) => t.ts > at);
    const spike1 = mkTrade(at, 49_880, 0.8, 'sell', 'ff1');
    const spike2 = mkTrade(at + 15, 49_800, 1.2, 'sell', 'ff2');
    const trades = [...noise.slice(0, i), spike1, spike2, ...noise.slice(i)];
    const run = runDetector(detector(disorderlyTradingSpec), trades);
    expect(run.findings).toHaveLength(1);
    const f = run.findings[0]!;
    const b = intervalBaseline(trades, i, 1000, 300_000);
    const trig = trades.slice(i + 2).find((t) => Math.log(49_800 / t.price) / Math.log(49_800 / b.ref) >= 0.75)!;
    expect(f.trigger).toBe(eventRef(trig));
    expect(f.ts).toBe(trig.ts);
    const o = f.evidence.observed;
    expect(o.direction).toBe('down');
    expect(o.refPrice).toBe(b.ref);
    expect(o.extremePrice).toBe(49_800);
    expect(o.revertedPrice).toBe(trig.price);
    const move = Math.log(49_800 / b.ref);
    expect(o.moveBps as number).toBeCloseTo(move * 1e4, 3);
    const scale = Math.max(1.4826 * b.mad, 0.5e-4);
    const z = (move - b.median) / scale;
    expect(o.z as number).toBeCloseTo(z, 3);
    expect(f.evidence.baseline.median).toBe(b.median);
    expect(f.evidence.baseline.mad).toBe(b.mad);
    expect(f.evidence.baseline.samples).toBe(b.n);
    expect(f.score).toBeCloseTo(Math.abs(z), 3);
    expect(f.severity).toBe(severityOf(Math.abs(z), 6));
    expect(o.timeToExtremeMs).toBe(spike2.ts - trades.slice(0, i).filter((t) => Math.floor(t.ts / 1000) < Math.floor(at / 1000)).at(-1)!.ts);
    expect(o.timeToRevertMs).toBe(trig.ts - spike2.ts);
    expect(o.revertedFraction as number).toBeCloseTo(Math.log(49_800 / trig.price) / Math.log(49_800 / b.ref), 6);
    expect(f.evidence.triggers).toEqual([eventRef(spike1), eventRef(spike2), eventRef(trig)]);
    expect(f.summary).toMatch(/^XYZ-USDT on binance spiked down [\d.]+ bps \(\d\d,\d{3}\.\d\d → 49,800\.00, [\d.]+× its usual 1-second move\) and came back [\d.]+% of it to \d\d,\d{3}\.\d\d within \d+ ms$/);
    expect(expectRestorable(detector(disorderlyTradingSpec), trades.filter((t) => t.ts >= at - 2 * MIN)).findings).toHaveLength(1);
  });

  it('stays silent on noise, on a lasting step (a jump, not disorder) and on a reversal slower than reversalMs', () => {
    for (const seed of [202, 203, 204, 205]) expect(runDetector(detector(disorderlyTradingSpec), calmTrades(seed, 6 * MIN)).findings, `seed ${seed}`).toEqual([]);
    const at = T0 + 4 * MIN;
    const step = calmTrades(206, 6 * MIN).map((t) => (t.ts >= at ? { ...t, price: roundTo(t.price * 0.996, 0.5) } : t));
    expect(runDetector(detector(disorderlyTradingSpec), step).findings).toEqual([]);
    // Down 40 bps for 90 s, then back: the revert comes after reversalMs.
    const slow = calmTrades(207, 6 * MIN).map((t) => (t.ts >= at && t.ts < at + 90_000 ? { ...t, price: roundTo(t.price * 0.996, 0.5) } : t));
    expect(runDetector(detector(disorderlyTradingSpec), slow).findings).toEqual([]);
    const found = runDetector(detector(disorderlyTradingSpec, { reversalMs: 120_000 }), slow).findings;
    expect(found).toHaveLength(1);
    expect(found[0]!.evidence.observed.timeToRevertMs as number).toBeGreaterThan(85_000);
  });

  it('state JSON: garbage is rejected, another instance\'s state (other parameters) is accepted', () => {
    const det = detector(disorderlyTradingSpec);
    expect(() => det.fromJSON({ v: 1, key: KEY })).toThrow(TypeError);
    const trades = calmTrades(208, 3 * MIN);
    const a = runDetector(det, trades.slice(0, 600));
    const saved = JSON.parse(JSON.stringify(det.toJSON(a.states.get(KEY))));
    for (const params of [{ zThreshold: 8 }, { windowMs: 60_000, maxSamples: 50 }, { intervalMs: 5000 }]) {
      const other = detector(disorderlyTradingSpec, params);
      const s = other.fromJSON(saved);
      for (const t of trades.slice(600)) other.onEvent(s, t, []);
      expect((s as { late: number }).late).toBe(0);
    }
  });
});

// =================================================================== wash_trade_public

/** A market at ~100 with 1-bp ticks, ~1 trade/s, 10% minimum-lot prints, 8% round whole sizes, log-normal otherwise. */
function washNoise(seed: number, durationMs: number, extra: Partial<TradeNoise> = {}): Trade[] {
  return tradeNoise(seed, {
    start: T0, durationMs, price0: 100, tick: 0.01, meanGapMs: 1000, pMove: 0.3, sizeMedian: 0.3, sizeSigma: 1, lot: 0.001,
    pMinLot: 0.1, pRound: 0.08, roundUnit: 1, ...extra,
  });
}

describe('wash_trade_public', () => {
  const defaults = washTradePublicParams.parse({});

  it('parameters: defaults parse, bad values throw', () => {
    expect(defaults).toEqual({
      runWindowMs: 60_000, minRun: 8, sizeTolerance: 0.001, minRunShare: 0.3, maxRunPrices: 256, runsPerPrice: 4, roundLot: 1,
      roundWindowMs: 300_000, roundBaselineMs: 3_600_000, roundZ: 5, minExcessShare: 0.1, minWindowTrades: 30, minBaselineTrades: 300, cooldownMs: 300_000,
    });
    expect(washTradePublicSpec.name).toBe('wash_trade_public');
    expect(() => washTradePublicParams.parse({ minRun: 1 })).toThrow();
    expect(() => washTradePublicParams.parse({ roundLot: 0 })).toThrow();
    expect(() => washTradePublicParams.parse({ roundWindowMs: 300_005 })).toThrow(/multiple/);
    expect(() => washTradePublicParams.parse({ roundBaselineMs: 1000 })).toThrow(/roundWindowMs/);
    expect(isRoundQty(3, 1)).toBe(true);
    expect(isRoundQty(0.3, 0.1)).toBe(true);
    expect(isRoundQty(0.35, 0.1)).toBe(false);
    expect(isRoundQty(0.5, 1)).toBe(false);
  });

  it('runs: a full price drops the run touched longest ago (the new run last; an older print is dropped at once)', () => {
    const det = detector(washTradePublicSpec, { runsPerPrice: 2 });
    const s = det.newState(KEY);
    const out: FindingDraft[] = [];
    const sizes = (): number[] => ((det.toJSON(s) as { runs: Array<[string, Array<{ q0: number }>]> }).runs[0]![1]).map((r) => r.q0);
    det.onEvent(s, mkTrade(T0 + 1000, 100, 1, 'buy', 'a'), out);
    det.onEvent(s, mkTrade(T0 + 2000, 100, 2, 'buy', 'b'), out);
    expect(sizes()).toEqual([1, 2]);
    det.onEvent(s, mkTrade(T0 + 3000, 100, 3, 'buy', 'c'), out); // drops size 1 (oldest), appends 3
    expect(sizes()).toEqual([2, 3]);
    det.onEvent(s, mkTrade(T0 + 1500, 100, 4, 'buy', 'd'), out); // same slice, older than every run: dropped itself
    expect(sizes()).toEqual([2, 3]);
    det.onEvent(s, mkTrade(T0 + 3000, 100, 5, 'buy', 'e'), out); // drops size 2 (lastTs 2000), appends 5
    expect(sizes()).toEqual([3, 5]);
    expect(out).toEqual([]);
  });

  it('runs: same-size prints at one price with alternating sides fire at the oracle print', () => {
    const noise = washNoise(301, 30 * MIN);
    const at = T0 + 20 * MIN;
    const P = noise.find((t) => t.ts >= at)!.price;
    const wash: Trade[] = Array.from({ length: 12 }, (_, k) => mkTrade(at + 500 + k * 4_000, P, 2.345, k % 2 ? 'sell' : 'buy', `w${k}`));
    const trades = byTs([...noise, ...wash]);
    const run = runDetector(detector(washTradePublicSpec), trades);
    const runs = run.findings.filter((f) => f.evidence.observed.path === 'runs');
    expect(runs).toHaveLength(1);
    expect(run.findings).toHaveLength(1);
    const f = runs[0]!;
    // Oracle: walk the run (the wash prints, plus any noise print that would match) and the volume since its start.
    const first = trades.indexOf(wash[0]!);
    let count = 0;
    let runVol = 0;
    let last: string | undefined;
    let trig: Trade | undefined;
    let share = 0;
    for (let i = first; i < trades.length && !trig; i++) {
      const t = trades[i]!;
      if (t.price !== P || Math.abs(t.qty - 2.345) > 0.001 * 2.345) continue;
      expect(t.side).not.toBe(last);
      last = t.side;
      count++;
      runVol += t.qty;
      share = runVol / ss.sum(trades.slice(first, i + 1).map((x) => x.qty));
      if (count >= 8 && share >= 0.3) trig = t;
    }
    expect(trig).toBeDefined();
    expect(f.trigger).toBe(`${eventRef(trig!)}#run`);
    expect(f.ts).toBe(trig!.ts);
    const o = f.evidence.observed;
    expect(o.runLength).toBe(count);
    expect(o.size).toBe(2.345);
    expect(o.price).toBe(P);
    expect(o.share as number).toBeCloseTo(share, 6);
    expect(o.runVolume as number).toBeCloseTo(runVol, 9);
    expect(o.firstSide).toBe('buy');
    expect(f.windowStart).toBe(wash[0]!.ts);
    expect(f.evidence.triggers).toEqual(wash.slice(0, count).map(eventRef));
    expect(f.score).toBeCloseTo(count * share, 4);
    expect(f.severity).toBe(severityOf(count * share, 8 * 0.3));
    expect(f.summary).toMatch(/^XYZ-USDT on binance printed \d+ trades of 2\.345 at \d+\.\d\d with alternating buy\/sell aggressors within [\d.]+ s, [\d.]+% of the volume traded meanwhile$/);
    expect(expectRestorable(detector(washTradePublicSpec), trades.filter((t) => t.ts >= at - 5 * MIN)).findings).toHaveLength(1);
  });

  it('round sizes: an excess of whole-lot prints fires at the oracle print with the oracle binomial z', () => {
    const start = T0 + 70 * MIN;
    const end = start + 10 * MIN;
    const noise = washNoise(311, 90 * MIN);
    // During [start, end) half of the prints become 1 or 2 whole units.
    const rng = mulberry32(312);
    const trades = noise.map((t) => (t.ts >= start && t.ts < end && rng() < 0.5 ? { ...t, qty: 1 + Math.floor(rng() * 2) } : t));
    const run = runDetector(detector(washTradePublicSpec), trades);
    const rounds = run.findings.filter((f) => f.evidence.observed.path === 'round_sizes');
    expect(rounds).toHaveLength(1);
    expect(run.findings.filter((f) => f.evidence.observed.path === 'runs')).toEqual([]);
    const f = rounds[0]!;
    // Oracle: per 30-s slice counts; window = the trade's slice and the 9 before; baseline = slices of the hour before that.
    const sliceMs = 30_000;
    const slices = new Map<number, [number, number]>();
    let trig: Trade | undefined;
    let oz = 0;
    let on = 0;
    let ox = 0;
    let op0 = 0;
    for (const t of trades) {
      const j = Math.floor(t.ts / sliceMs);
      const c = slices.get(j) ?? [0, 0];
      c[0]++;
      if (Number.isInteger(t.qty) && t.qty >= 1) c[1]++;
      slices.set(j, c);
      if (!(Number.isInteger(t.qty) && t.qty >= 1)) continue;
      let n = 0;
      let x = 0;
      let n0 = 0;
      let x0 = 0;
      for (const [k, [a, b]] of slices) {
        if (k > j - 10) {
          n += a;
          x += b;
        } else if (k * sliceMs > (j - 9) * sliceMs - 3_600_000) {
          n0 += a;
          x0 += b;
        }
      }
      if (n < 30 || n0 < 300) continue;
      const p0 = (x0 + 0.5) / (n0 + 1);
      const z = (x - n * p0) / Math.sqrt(n * p0 * (1 - p0));
      if (z >= 5 && x / n - p0 >= 0.1) {
        trig = t;
        oz = z;
        on = n;
        ox = x;
        op0 = p0;
        break;
      }
    }
    expect(trig).toBeDefined();
    expect(trig!.ts).toBeGreaterThanOrEqual(start);
    expect(f.trigger).toBe(`${eventRef(trig!)}#round`);
    expect(f.ts).toBe(trig!.ts);
    const o = f.evidence.observed;
    expect(o.trades).toBe(on);
    expect(o.roundTrades).toBe(ox);
    expect(o.z as number).toBeCloseTo(oz, 4);
    expect(f.evidence.baseline.share as number).toBeCloseTo(op0, 8);
    expect(f.score).toBeCloseTo(oz, 4);
    expect(f.severity).toBe(severityOf(oz, 5));
    expect(f.evidence.triggers).toContain(eventRef(trig!));
    expect(f.evidence.triggers.length).toBeLessThanOrEqual(20);
    expect(f.summary).toMatch(/^XYZ-USDT on binance had \d+ of \d+ prints \([\d.]+%\) in whole multiples of 1 within 5 min, against its usual [\d.]+% \(z [\d.]+\)$/);
    const restored = expectRestorable(detector(washTradePublicSpec, { roundBaselineMs: 900_000, maxRunPrices: 32 }), trades.filter((t) => t.ts >= T0 + 55 * MIN));
    expect(restored.findings.some((x) => x.evidence.observed.path === 'round_sizes')).toBe(true);
  });

  it('stays silent on ordinary prints (several seeds) and on a same-size alternating run that is a small part of the volume', () => {
    for (const seed of [321, 322, 323]) expect(runDetector(detector(washTradePublicSpec), washNoise(seed, 2 * 3_600_000)).findings, `seed ${seed}`).toEqual([]);
    const noise = washNoise(324, 30 * MIN, { meanGapMs: 300 });
    const at = T0 + 20 * MIN;
    const P = noise.find((t) => t.ts >= at)!.price;
    const small = Array.from({ length: 10 }, (_, k) => mkTrade(at + 500 + k * 4_000, P, 0.05, k % 2 ? 'sell' : 'buy', `s${k}`));
    const trades = byTs([...noise, ...small]);
    expect(runDetector(detector(washTradePublicSpec), trades).findings).toEqual([]);
    const loose = runDetector(detector(washTradePublicSpec, { minRunShare: 0 }), trades).findings.filter((f) => f.evidence.observed.size === 0.05);
    expect(loose).toHaveLength(1);
    expect(loose[0]!.evidence.observed.share as number).toBeLessThan(0.05);
  });

  it('state JSON: garbage is rejected, another instance\'s state (other parameters) is accepted', () => {
    const det = detector(washTradePublicSpec);
    expect(() => det.fromJSON({ v: 1, key: KEY, runs: 'x' })).toThrow(TypeError);
    const trades = washNoise(331, 20 * MIN);
    const a = runDetector(det, trades.slice(0, 600));
    const saved = JSON.parse(JSON.stringify(det.toJSON(a.states.get(KEY))));
    const cases: Array<[Record<string, number>, number]> = [[{ minRun: 4 }, 256], [{ roundWindowMs: 60_000, roundBaselineMs: 600_000 }, 256], [{ maxRunPrices: 3, runsPerPrice: 1 }, 3]];
    for (const [params, maxPrices] of cases) {
      const other = detector(washTradePublicSpec, params);
      const s = other.fromJSON(saved);
      for (const t of trades.slice(600)) other.onEvent(s, t, []);
      const st = s as { runs: Map<string, unknown[]>; late: number };
      expect(st.runs.size).toBeLessThanOrEqual(maxPrices);
      expect(st.late).toBe(0);
    }
    for (const f of runDetector(det, trades).findings) expectWellFormed(f);
  });
});

// =================================================================== all four

describe('out-of-order events', () => {
  it('late events (out of order by seconds, absurd values) neither crash nor break the findings\' form', () => {
    const noise = washNoise(401, 20 * MIN);
    const messy: Trade[] = [];
    noise.forEach((t, i) => {
      messy.push(t);
      if (i > 0 && i % 53 === 0) messy.push({ ...t, ts: t.ts - 5_000, price: t.price * 1.3, qty: 3, tradeId: `late-${i}` });
    });
    for (const spec of [pumpAndDumpSpec, disorderlyTradingSpec, washTradePublicSpec]) {
      const run = runDetector(detector(spec, spec === pumpAndDumpSpec ? { minIntervals: 5 } : {}), messy);
      for (const f of run.findings) expectWellFormed(f);
      const st = run.states.get(KEY) as { late: number };
      if (spec !== pumpAndDumpSpec) expect(st.late, spec.name).toBeGreaterThan(0);
    }
    const quotes = quoteNoise(402, T0, 5 * MIN);
    const mq: CanonicalEvent[] = [];
    quotes.forEach((q, i) => {
      mq.push(q);
      if (i > 0 && i % 41 === 0) mq.push({ ...q, ts: q.ts - 3_000, bidPx: 1, seq: undefined });
    });
    const run = runDetector(detector(quoteStuffingSpec, { minSamples: 10 }), mq);
    expect((run.states.get(KEY) as { quotes: { late: number } }).quotes.late).toBeGreaterThan(0);
  });
});
