/**
 * Market-quote detectors: spread_blowout, feed_gap, crossed_book, cross_venue_divergence.
 * Generated data at realistic rates (BTC-USDT quotes every 10–200 ms, spreads 1–3 bps), each positive
 * scenario checked against an oracle computed here with simple-statistics, and the same noise without the
 * anomaly (several seeds) staying silent.
 */
import * as ss from 'simple-statistics';
import { describe, expect, it } from 'vitest';
import type { CanonicalEvent, FeedStatus, Quote, Trade } from '../../src/core/events.ts';
import { crossVenueDivergenceSpec, type CrossVenueDivergenceState } from '../../src/detectors/cross-venue-divergence.ts';
import { crossedBookSpec } from '../../src/detectors/crossed-book.ts';
import { feedGapSpec } from '../../src/detectors/feed-gap.ts';
import { spreadBlowoutSpec } from '../../src/detectors/spread-blowout.ts';
import type { FindingDraft } from '../../src/detectors/types.ts';
import { detector, expectRestorable, expectWellFormed, runDetector } from '../helpers/detector-harness.ts';
import { mulberry32 } from '../helpers/random.ts';

const T0 = Date.UTC(2024, 7, 8, 12, 0, 0);
const MIN = 60_000;
const SYM = 'BTC-USDT';
const cents = (p: number): number => Math.round(p * 100) / 100;

// ------------------------------------------------------------------ generators

interface QuoteGen {
  seed: number;
  venue?: string;
  start?: number;
  durationMs: number;
  /** Mid at ts (default: the generator's own random walk around 60,000). */
  mid?: (ts: number, rng: () => number) => number;
  /** Spread in bps (default uniform 1–3). */
  spread?: (ts: number, rng: () => number) => number;
  gapLo?: number;
  gapHi?: number;
}

/** Quotes every gapLo–gapHi ms (default 10–200), prices on a 0.01 tick. */
function genQuotes(o: QuoteGen): Quote[] {
  const rng = mulberry32(o.seed);
  const venue = o.venue ?? 'binance';
  const start = o.start ?? T0;
  const end = start + o.durationMs;
  const lo = o.gapLo ?? 10;
  const hi = o.gapHi ?? 200;
  const out: Quote[] = [];
  let walk = 60_000;
  let seq = 1;
  for (let ts = start; ts < end; ts += lo + Math.floor(rng() * (hi - lo + 1))) {
    walk *= 1 + (rng() - 0.5) * 0.4e-4;
    const mid = o.mid ? o.mid(ts, rng) : walk;
    const sp = o.spread ? o.spread(ts, rng) : 1 + 2 * rng();
    out.push({
      kind: 'quote', venue, symbol: SYM, ts, recvTs: ts + 3,
      bidPx: cents(mid * (1 - sp / 2e4)), bidQty: cents(0.1 + rng()), askPx: cents(mid * (1 + sp / 2e4)), askQty: cents(0.1 + rng()),
      seq: seq++,
    });
  }
  return out;
}

/** Trades: exponential gaps (mean meanMs) with a pauseP chance of a 1–2.5 s pause. */
function genTrades(seed: number, durationMs: number, meanMs = 250, pauseP = 0.02, venue = 'binance'): Trade[] {
  const rng = mulberry32(seed);
  const out: Trade[] = [];
  let price = 60_000;
  let id = 1;
  for (let ts = T0; ts < T0 + durationMs; ) {
    price = cents(price + (rng() < 0.5 ? -0.5 : 0.5));
    out.push({ kind: 'trade', venue, symbol: SYM, ts, recvTs: ts + 3, price, qty: 0.01, side: rng() < 0.5 ? 'buy' : 'sell', tradeId: String(id++) });
    ts += rng() < pauseP ? 1000 + Math.floor(rng() * 1500) : Math.floor(-Math.log(1 - rng()) * meanMs);
  }
  return out;
}

const midOf = (q: Quote): number => (q.bidPx + q.askPx) / 2;
const spreadOf = (q: Quote): number => ((q.askPx - q.bidPx) / midOf(q)) * 1e4;

/** The same quote around the same mid with another spread (negative: crossed by that much). */
function withSpread(q: Quote, bps: number): Quote {
  const m = midOf(q);
  return { ...q, bidPx: cents(m * (1 - bps / 2e4)), askPx: cents(m * (1 + bps / 2e4)) };
}

function status(ts: number, st: FeedStatus['status'], reason = 'test', venue = 'binance'): FeedStatus {
  return { kind: 'status', venue, symbol: SYM, ts, recvTs: ts, status: st, reason };
}

/** Merges event lists by ts (stable: on equal ts, earlier lists first). */
function merge(...lists: CanonicalEvent[][]): CanonicalEvent[] {
  return lists.flat().sort((a, b) => a.ts - b.ts);
}

const quotesOf = (evs: readonly CanonicalEvent[]): Quote[] => evs.filter((e): e is Quote => e.kind === 'quote');
const refOf = (q: Quote): string => `quote:${q.venue}:${q.symbol}:${q.seq}`;

function expectParamsContract(spec: { params: { parse(x: unknown): unknown } }, defaults: Record<string, unknown>, bad: Record<string, unknown>[]): void {
  expect(spec.params.parse({})).toEqual(defaults);
  for (const b of bad) expect(() => spec.params.parse(b), JSON.stringify(b)).toThrow();
  expect(() => spec.params.parse({ noSuchParam: 1 })).toThrow();
}

// ================================================================== spread_blowout

describe('spread_blowout', () => {
  const blowoutAt = T0 + 6 * MIN;
  /** 10 min of quotes; from blowoutAt for `lenMs` the spread is 15–20 bps. */
  const scenario = (seed: number, lenMs = 3000, durationMs = 10 * MIN, at = blowoutAt): Quote[] =>
    genQuotes({ seed, durationMs, spread: (ts, rng) => (ts >= at && ts < at + lenMs ? 15 + 5 * rng() : 1 + 2 * rng()) });

  it('fires once on a 3-second blowout, with evidence matching an independent baseline', () => {
    const quotes = scenario(7);
    const { findings } = runDetector(detector(spreadBlowoutSpec), quotes);
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;

    const wide = quotes.filter((q) => q.ts >= blowoutAt && q.ts < blowoutAt + 3000);
    const start = wide[0] as Quote;
    const trigger = quotes.find((q) => q.ts >= start.ts + 1000) as Quote;
    expect(trigger.ts).toBeLessThan(blowoutAt + 3000); // still inside the blowout
    // Oracle baseline: the last quote's spread of each 1-s bucket before the trigger's bucket.
    const byBucket = new Map<number, number>();
    for (const q of quotes) if (Math.floor(q.ts / 1000) < Math.floor(trigger.ts / 1000)) byBucket.set(Math.floor(q.ts / 1000), spreadOf(q));
    const samples = [...byBucket.values()];
    const median = ss.median(samples);
    const mad = ss.medianAbsoluteDeviation(samples);
    const effective = Math.max(3 * median, median + 5 * Math.max(1.4826 * mad, 0.5), 5);
    expect(effective).toBeLessThan(15); // the blowout quotes are all wide, the normal ones all narrow
    expect(Math.max(...quotes.filter((q) => q.ts < blowoutAt).map(spreadOf))).toBeLessThan(effective);

    const inEpisode = quotes.filter((q) => q.ts >= start.ts && q.ts <= trigger.ts);
    const peak = Math.max(...inEpisode.map(spreadOf));
    expect(f.trigger).toBe(refOf(trigger));
    expect(f.ts).toBe(trigger.ts);
    expect(f.key).toBe('binance:BTC-USDT');
    expect(f.venue).toBe('binance');
    expect(f.symbol).toBe(SYM);
    expect(f.windowStart).toBe(start.ts);
    expect(f.windowEnd).toBe(trigger.ts);
    const { observed, baseline, threshold, triggers } = f.evidence;
    expect(triggers[0]).toBe(refOf(start));
    expect(triggers).toContain(f.trigger);
    expect(baseline.samples).toBe(samples.length);
    expect(baseline.medianBps as number).toBeCloseTo(median, 5);
    expect(baseline.madBps as number).toBeCloseTo(mad, 5);
    expect(observed.peakBps as number).toBeCloseTo(peak, 5);
    expect(observed.spreadBps as number).toBeCloseTo(spreadOf(trigger), 5);
    expect(observed.durationMs).toBe(trigger.ts - start.ts);
    expect(observed.wideQuotes).toBe(inEpisode.length);
    expect(observed.ended).toBe(false);
    expect(observed.ratio as number).toBeCloseTo(peak / median, 3);
    expect(f.score).toBeCloseTo(peak / median, 3);
    expect(threshold.effectiveBps as number).toBeCloseTo(effective, 5);
    // Severity: peak / effective threshold (≥ 2 high, ≥ 4 critical).
    const x = peak / effective;
    expect(f.severity).toBe(x >= 4 ? 'critical' : x >= 2 ? 'high' : 'medium');
    expect(f.summary).toMatch(/^BTC-USDT on binance: the bid-ask spread widened to \d+\.\d bps for \d(\.\d)? s \(\d+ quotes\), \d+\.\d× its usual \d\.\d\d bps$/);
    expectWellFormed(f);
  });

  it('stays silent on ordinary quotes at the same rates (several seeds)', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const run = runDetector(detector(spreadBlowoutSpec), scenario(seed, 0));
      expect(run.findings, `seed ${seed}`).toEqual([]);
      const st = run.states.get('binance:BTC-USDT') as { baseline: { size: number } };
      expect(st.baseline.size).toBeGreaterThan(500); // it was evaluating
    }
  });

  it('a single flickering wide quote does not fire (it would without minDurationMs)', () => {
    // Every ~7 s one quote at 25 bps, the next quote (10–200 ms later) back to normal.
    const quotes = genQuotes({ seed: 21, durationMs: 10 * MIN }).map((q, i) => (i > 600 && i % 67 === 0 ? withSpread(q, 25) : q));
    expect(runDetector(detector(spreadBlowoutSpec), quotes).findings).toEqual([]);
    const loose = runDetector(detector(spreadBlowoutSpec, { minDurationMs: 0, cooldownMs: 0 }), quotes).findings;
    expect(loose.length).toBeGreaterThan(10);
  });

  it('the quote that ends a long-enough blowout fires it; a disconnect in between resets the episode', () => {
    // 700 ms of blowout, then (no markers) 700 ms more: 1.4 s in force → fires.
    const base = scenario(31, 1400);
    expect(runDetector(detector(spreadBlowoutSpec), base).findings).toHaveLength(1);
    // A disconnect/connect in the middle: two 700 ms episodes, neither long enough.
    const mid = blowoutAt + 700;
    const withMarkers = merge(base, [status(mid, 'disconnected'), status(mid + 1, 'connected')]);
    expect(runDetector(detector(spreadBlowoutSpec), withMarkers).findings).toEqual([]);
    // A book_reset makes derived quotes skipped until book_synced.
    const derived = base.map((q) => ({ ...q, derived: true }));
    const resync = merge(derived, [status(blowoutAt - 50, 'book_reset'), status(blowoutAt + 1500, 'book_synced')]);
    expect(runDetector(detector(spreadBlowoutSpec), resync).findings).toEqual([]);
    expect(runDetector(detector(spreadBlowoutSpec), derived).findings).toHaveLength(1);

    // A blowout ending at a quote that arrives ≥ minDurationMs after a single wide quote: the spread was in force.
    const q = genQuotes({ seed: 32, durationMs: 7 * MIN });
    const i = q.findIndex((x) => x.ts >= blowoutAt);
    const lone = [...q.slice(0, i), withSpread(q[i] as Quote, 20), ...q.slice(i + 1).map((x) => ({ ...x, ts: x.ts + 1500, recvTs: x.recvTs + 1500 }))];
    const r = runDetector(detector(spreadBlowoutSpec), lone).findings;
    expect(r).toHaveLength(1);
    expect(r[0]?.evidence.observed.ended).toBe(true);
    expect(r[0]?.evidence.observed.durationMs).toBe((lone[i + 1] as Quote).ts - (lone[i] as Quote).ts);
    expect(r[0]?.trigger).toBe(refOf(lone[i + 1] as Quote));
  });

  it('ignores quotes with an empty side or a crossed book, and late quotes', () => {
    const quotes = scenario(41, 0);
    const noisy: Quote[] = [];
    quotes.forEach((q, i) => {
      noisy.push(q);
      if (i % 50 === 0) noisy.push({ ...q, bidPx: 0, seq: 1e6 + i });
      if (i % 77 === 0) noisy.push(withSpread({ ...q, seq: 2e6 + i }, -3));
      if (i % 91 === 0 && i > 0) noisy.push({ ...withSpread(q, 40), ts: q.ts - 500, seq: 3e6 + i });
    });
    expect(runDetector(detector(spreadBlowoutSpec), noisy).findings).toEqual([]);
  });

  it('survives checkpoints at any point, and a reload with other parameters', () => {
    const quotes = scenario(51, 3000, 3 * MIN, T0 + 2.5 * MIN);
    const run = expectRestorable(detector(spreadBlowoutSpec), quotes);
    expect(run.findings).toHaveLength(1);
    const a = detector(spreadBlowoutSpec);
    const half = quotes.slice(0, 1000);
    const st = runDetector(a, half).states.get('binance:BTC-USDT');
    const json = JSON.parse(JSON.stringify(a.toJSON(st)));
    const b = detector(spreadBlowoutSpec, { windowMs: 30_000, maxSamples: 20, minSamples: 10 });
    const restored = b.fromJSON(json) as { baseline: { size: number } };
    expect(restored.baseline.size).toBeLessThanOrEqual(20);
    expect(() => b.fromJSON({ v: 2 })).toThrow(TypeError);
    expect(() => b.fromJSON({ ...json, baseline: 'x' })).toThrow(TypeError);
  });

  it('parameters: defaults and validation', () => {
    expectParamsContract(
      spreadBlowoutSpec,
      { sampleMs: 1000, windowMs: 900_000, maxSamples: 900, minSamples: 60, ratio: 3, zThreshold: 5, minScaleBps: 0.5, minSpreadBps: 5, minDurationMs: 1000, cooldownMs: 60_000 },
      [{ ratio: 0.5 }, { zThreshold: 0 }, { minSamples: 1000 }, { windowMs: 500 }, { minDurationMs: -1 }],
    );
  });
});

// ================================================================== crossed_book

describe('crossed_book', () => {
  /** Normal quotes with transient crosses: every ~80 quotes, 1–3 consecutive quotes crossed by 0.5–2 bps. */
  const noisy = (seed: number, durationMs = 10 * MIN): Quote[] => {
    const rng = mulberry32(seed + 1000);
    const q = genQuotes({ seed, durationMs });
    let left = 0;
    let by = 0;
    return q.map((x, i) => {
      if (left === 0 && i % 80 === 40) {
        left = 1 + Math.floor(rng() * 3);
        by = 0.5 + 1.5 * rng();
      }
      if (left > 0) {
        left--;
        return withSpread(x, -by);
      }
      return x;
    });
  };
  const crossAt = T0 + 5 * MIN;
  /** From crossAt, `n` consecutive quotes crossed by 1–3 bps. */
  const scenario = (seed: number, n = 40, durationMs = 10 * MIN, at = crossAt): Quote[] => {
    const rng = mulberry32(seed + 2000);
    const q = noisy(seed, durationMs);
    const i = q.findIndex((x) => x.ts >= at);
    return q.map((x, j) => (j >= i && j < i + n ? withSpread(x, -(1 + 2 * rng())) : j >= i + n && j < i + n + 3 ? withSpread(x, 2) : x));
  };

  it('fires once when a cross persists minUpdates quotes or minDurationMs, with the cross measured independently', () => {
    for (const seed of [3, 4]) {
      const quotes = scenario(seed);
      const { findings } = runDetector(detector(crossedBookSpec), quotes);
      expect(findings, `seed ${seed}`).toHaveLength(1);
      const f = findings[0] as FindingDraft;
      const i0 = quotes.findIndex((x) => x.ts >= crossAt);
      const start = quotes[i0] as Quote;
      let k = i0;
      while (!(k - i0 + 1 >= 25 || (quotes[k] as Quote).ts - start.ts >= 1000)) k++;
      const trig = quotes[k] as Quote;
      const episode = quotes.slice(i0, k + 1);
      const crossBps = ((trig.bidPx - trig.askPx) / midOf(trig)) * 1e4;
      const peak = Math.max(...episode.map((x) => ((x.bidPx - x.askPx) / midOf(x)) * 1e4));
      expect(f.trigger).toBe(refOf(trig));
      expect(f.key).toBe('binance:BTC-USDT');
      expect(f.windowStart).toBe(start.ts);
      expect(f.evidence.observed.bid).toBe(trig.bidPx);
      expect(f.evidence.observed.ask).toBe(trig.askPx);
      expect(f.evidence.observed.crossBps as number).toBeCloseTo(crossBps, 5);
      expect(f.evidence.observed.peakCrossBps as number).toBeCloseTo(peak, 5);
      expect(f.evidence.observed.updates).toBe(episode.length);
      expect(f.evidence.observed.durationMs).toBe(trig.ts - start.ts);
      expect(f.evidence.observed.locked).toBe(false);
      expect(f.evidence.triggers[0]).toBe(refOf(start));
      expect(f.score).toBeCloseTo(peak, 3);
      expect(f.severity).toBe(peak >= 100 ? 'critical' : peak >= 10 ? 'high' : 'medium');
      expect(f.summary).toMatch(/^BTC-USDT on binance: the book was crossed \(bid [\d,]+\.\d\d > ask [\d,]+\.\d\d, \d\.\d\d bps(, peak \d\.\d\d bps)?\) for [\d.]+ (ms|s) over \d+ consecutive updates$/);
      expectWellFormed(f);
    }
  });

  it('transient crosses at the same rates stay silent (several seeds)', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const run = runDetector(detector(crossedBookSpec), noisy(seed));
      expect(run.findings, `seed ${seed}`).toEqual([]);
      const st = run.states.get('binance:BTC-USDT') as { crossedQuotes: number; episodes: number };
      expect(st.episodes).toBeGreaterThan(50); // the transient crosses were there
    }
  });

  it('locked books count only with includeLocked, as a low finding', () => {
    const q = genQuotes({ seed: 9, durationMs: 3 * MIN });
    const i = q.findIndex((x) => x.ts >= T0 + MIN);
    const locked = q.map((x, j) => (j >= i && j < i + 30 ? { ...x, askPx: x.bidPx } : x));
    expect(runDetector(detector(crossedBookSpec), locked).findings).toEqual([]);
    const f = runDetector(detector(crossedBookSpec, { includeLocked: true }), locked).findings;
    expect(f).toHaveLength(1);
    expect(f[0]?.severity).toBe('low');
    expect(f[0]?.evidence.observed.locked).toBe(true);
    expect(f[0]?.summary).toMatch(/the book was locked \(bid = ask = /);
  });

  it('skips derived quotes during a book resync and resets on disconnect', () => {
    const derived = scenario(5).map((x) => ({ ...x, derived: true }));
    expect(runDetector(detector(crossedBookSpec), derived).findings).toHaveLength(1);
    const resync = merge(derived, [status(crossAt - 20, 'book_reset', 'sequence gap'), status(crossAt + 30_000, 'book_synced')]);
    expect(runDetector(detector(crossedBookSpec), resync).findings).toEqual([]);
    // Non-derived (ticker) quotes are not affected by a book resync.
    const ticker = merge(scenario(5), [status(crossAt - 20, 'book_reset'), status(crossAt + 30_000, 'book_synced')]);
    expect(runDetector(detector(crossedBookSpec), ticker).findings).toHaveLength(1);
    // A disconnect every 4 crossed quotes (≤ 800 ms): never 25 in a row, never 1 s.
    const q = scenario(5);
    const i0 = q.findIndex((x) => x.ts >= crossAt);
    const marks = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) => status((q[i0 + 4 * n + 3] as Quote).ts, 'disconnected'));
    expect(runDetector(detector(crossedBookSpec), merge(q, marks)).findings).toEqual([]);
  });

  it('survives checkpoints; parameters', () => {
    const run = expectRestorable(detector(crossedBookSpec), scenario(6, 40, 2 * MIN, T0 + MIN));
    expect(run.findings).toHaveLength(1);
    expect(() => detector(crossedBookSpec).fromJSON(null)).toThrow(TypeError);
    expect(() => detector(crossedBookSpec).fromJSON({ v: 1, key: 'k', episode: { start: 'x' } })).toThrow(TypeError);
    expectParamsContract(crossedBookSpec, { includeLocked: false, minDurationMs: 1000, minUpdates: 25, cooldownMs: 60_000 }, [
      { minUpdates: 0 },
      { minDurationMs: 1.5 },
      { includeLocked: 'yes' },
    ]);
  });
});

// ================================================================== feed_gap

describe('feed_gap', () => {
  const D = 10 * MIN;
  const without = <T extends CanonicalEvent>(evs: T[], from: number, to: number): T[] => evs.filter((e) => e.ts < from || e.ts >= to);
  const gapsOf = (evs: readonly CanonicalEvent[]): number[] => evs.slice(1).map((e, i) => e.ts - (evs[i] as CanonicalEvent).ts);
  /** Oracle cadence limit: max(4 × p99 of the last ≤ 2000 gaps, 5000). */
  const limitFrom = (evs: readonly CanonicalEvent[]): { p99: number; limit: number } => {
    const g = gapsOf(evs).slice(-2000).sort((a, b) => a - b);
    const p99 = ss.quantileSorted(g, 0.99);
    return { p99, limit: Math.max(4 * p99, 5000) };
  };
  const sev = (ratio: number): string => (ratio >= 20 ? 'critical' : ratio >= 4 ? 'high' : 'medium');

  it('reports a 20-s quote silence (trades go on) when quotes resume, against the quote cadence', () => {
    const silence = T0 + 6 * MIN;
    const quotes = without(genQuotes({ seed: 1, durationMs: D }), silence, silence + 20_000);
    const trades = genTrades(2, D);
    const { findings } = runDetector(detector(feedGapSpec), merge(quotes, trades));
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;
    const iResume = quotes.findIndex((q) => q.ts >= silence);
    const last = quotes[iResume - 1] as Quote;
    const resume = quotes[iResume] as Quote;
    const { p99, limit } = limitFrom(quotes.slice(0, iResume));
    const gap = resume.ts - last.ts;
    expect(f.trigger).toBe(refOf(resume));
    expect(f.evidence.triggers).toEqual([refOf(last), refOf(resume)]);
    expect(f.key).toBe('binance:BTC-USDT');
    expect(f.windowStart).toBe(last.ts);
    expect(f.windowEnd).toBe(resume.ts);
    expect(f.evidence.observed.stream).toBe('quote');
    expect(f.evidence.observed.gapMs).toBe(gap);
    expect(f.evidence.observed.cause).toBe('silence');
    expect(f.evidence.baseline.cadenceMs as number).toBeCloseTo(p99, 2);
    expect(f.evidence.baseline.samples).toBe(Math.min(2000, iResume - 1));
    expect(f.evidence.threshold.limitMs as number).toBeCloseTo(limit, 2);
    expect(f.score).toBeCloseTo(gap / limit, 3);
    expect(f.severity).toBe(sev(gap / limit));
    expect(f.summary).toMatch(/^BTC-USDT on binance: no quotes for 20(\.\d)? s \(from 2024-08-08T12:05:59\.\d+Z to 2024-08-08T12:06:20\.\d+Z\) while the feed stayed connected/);
    expectWellFormed(f);
  });

  it('uses the kind’s own cadence: a 6-s trade lull is normal for bursty trades, a 40-s one is not', () => {
    const trades = genTrades(3, D, 300, 0.05);
    const quotes = genQuotes({ seed: 4, durationMs: D });
    const lull = T0 + 5 * MIN;
    const short = without(trades, lull, lull + 6000);
    const iS = short.findIndex((t) => t.ts >= lull);
    const { limit } = limitFrom(short.slice(0, iS));
    const lullGap = (short[iS] as Trade).ts - (short[iS - 1] as Trade).ts;
    // Past the 5-s floor, but within 4 × p99 of these bursty trades: the cadence, not the floor, is the limit.
    expect(lullGap).toBeGreaterThan(5000);
    expect(lullGap).toBeLessThan(limit);
    expect(runDetector(detector(feedGapSpec), merge(short, quotes)).findings).toEqual([]);

    const long = without(trades, lull, lull + 40_000);
    const iL = long.findIndex((t) => t.ts >= lull);
    const f = runDetector(detector(feedGapSpec), merge(long, quotes)).findings;
    expect(f).toHaveLength(1);
    expect(f[0]?.evidence.observed.stream).toBe('trade');
    expect(f[0]?.trigger).toBe(`trade:binance:BTC-USDT:${(long[iL] as Trade).tradeId}`);
    const lim = limitFrom(long.slice(0, iL)).limit;
    expect(f[0]?.evidence.threshold.limitMs as number).toBeCloseTo(lim, 2);
    expect(f[0]?.evidence.observed.gapMs).toBe((long[iL] as Trade).ts - (long[iL - 1] as Trade).ts);
  });

  it('stays silent on ordinary trades and quotes (several seeds)', () => {
    for (const seed of [11, 12, 13, 14]) {
      const evs = merge(genQuotes({ seed, durationMs: D }), genTrades(seed + 100, D));
      expect(runDetector(detector(feedGapSpec), evs).findings, `seed ${seed}`).toEqual([]);
    }
  });

  /** Both streams down 30 s around a disconnect; marker copies from both topics, the second set lagging. */
  const outage = (seed: number, durationMs = D, at = T0 + 6 * MIN): { events: CanonicalEvent[]; single: CanonicalEvent[] } => {
    const quotes = without(genQuotes({ seed, durationMs }), at, at + 30_000);
    const trades = without(genTrades(seed + 1, durationMs), at, at + 30_000);
    const down = status(at + 400, 'disconnected', 'no pong within 10000 ms');
    const up = status(at + 29_700, 'connected', 'reconnect');
    const single = merge(quotes, trades, [down, up]);
    const firstAfter = single.findIndex((e) => e.ts >= at + 30_000);
    const events = [...single.slice(0, firstAfter + 1), { ...down }, { ...up }, ...single.slice(firstAfter + 1)];
    return { events, single };
  };

  it('a silence across a disconnect is one low "feed was down" finding, whichever marker copy comes when', () => {
    const at = T0 + 6 * MIN;
    const { events, single } = outage(21);
    const { findings } = runDetector(detector(feedGapSpec), events);
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;
    const resume = events.find((e) => e.ts >= at + 30_000 && e.kind !== 'status') as Quote | Trade;
    expect(f.ts).toBe(resume.ts);
    expect(f.severity).toBe('low');
    expect(f.evidence.observed.cause).toBe('disconnected');
    expect(f.evidence.observed.causeReason).toBe('no pong within 10000 ms');
    expect(f.evidence.observed.causeTs).toBe(at + 400);
    expect(f.summary).toMatch(/the feed was down, no (quotes|trades) for 30(\.\d)? s .* after a disconnect \(no pong within 10000 ms\)$/);
    // The duplicate markers change nothing.
    expect(runDetector(detector(feedGapSpec), single).findings).toEqual(findings);
    // reportDisconnects: false → nothing, and the outage is not read as venue silence.
    expect(runDetector(detector(feedGapSpec, { reportDisconnects: false }), events).findings).toEqual([]);
    // Without the markers it is an unexplained silence, on both streams.
    const bare = runDetector(detector(feedGapSpec), events.filter((e) => e.kind !== 'status')).findings;
    expect(bare.map((x) => x.evidence.observed.stream).sort()).toEqual(['quote', 'trade']);
    expect(bare.every((x) => x.severity !== 'low' && x.evidence.observed.cause === 'silence')).toBe(true);
  });

  it('a book resync explains a quote pause, not a trade silence', () => {
    const at = T0 + 6 * MIN;
    const quotes = without(genQuotes({ seed: 25, durationMs: D }), at, at + 20_000);
    const trades = without(genTrades(26, D), at, at + 20_000);
    const marks = [status(at + 100, 'book_reset', 'checksum mismatch'), status(at + 19_900, 'book_synced')];
    const f = runDetector(detector(feedGapSpec), merge(quotes, trades, marks, marks.map((m) => ({ ...m })))).findings;
    const byStream = Object.fromEntries(f.map((x) => [x.evidence.observed.stream, x]));
    expect(f).toHaveLength(2);
    expect(byStream.quote?.severity).toBe('low');
    expect(byStream.quote?.evidence.observed.cause).toBe('book_reset');
    expect(byStream.quote?.summary).toMatch(/: no quotes for 20(\.\d)? s .* during a book resync \(checksum mismatch\)$/);
    expect(byStream.trade?.evidence.observed.cause).toBe('silence');
    expect(byStream.trade?.severity).not.toBe('low');
  });

  it('gap and stale markers are reported once each, copies or not', () => {
    const quotes = genQuotes({ seed: 31, durationMs: D });
    const trades = genTrades(32, D);
    const g = status(T0 + 4 * MIN + 3, 'gap', 'missed 12 messages');
    const st = status(T0 + 5 * MIN + 7, 'stale', 'no frame for 30000 ms');
    const events = merge(quotes, trades, [g, { ...g }, st]);
    events.splice(events.findIndex((e) => e.ts > T0 + 5 * MIN + 500), 0, { ...st }); // the lagging copy
    const { findings } = runDetector(detector(feedGapSpec), events);
    expect(findings.map((f) => [f.evidence.observed.status, f.ts, f.trigger])).toEqual([
      ['gap', g.ts, `status:binance:BTC-USDT:gap:${g.ts}`],
      ['stale', st.ts, `status:binance:BTC-USDT:stale:${st.ts}`],
    ]);
    const lastData = Math.max(...[...quotes, ...trades].filter((e) => e.ts <= g.ts).map((e) => e.ts));
    expect(findings[0]?.evidence.observed.silentMs).toBe(g.ts - lastData);
    expect(findings[0]?.windowStart).toBe(lastData);
    expect(findings[0]?.summary).toMatch(/^BTC-USDT on binance: the feed reported a sequence gap \(missed 12 messages\); last data \d+ ms before/);
    expect(runDetector(detector(feedGapSpec, { reportMarkers: false }), events).findings).toEqual([]);
  });

  it('survives checkpoints (outage, silence, markers) and reloads with other parameters', () => {
    const at = T0 + 2 * MIN;
    const { events } = outage(41, 4 * MIN, at);
    const q2 = T0 + 3 * MIN;
    const evs = [...events.filter((e) => !(e.kind === 'quote' && e.ts >= q2 && e.ts < q2 + 15_000)), status(T0 + 3.5 * MIN, 'gap', 'x')].sort((a, b) => a.ts - b.ts);
    const det = detector(feedGapSpec, { maxSamples: 300, minSamples: 50 });
    const run = expectRestorable(det, evs);
    expect(run.findings.map((f) => f.evidence.observed.cause ?? f.evidence.observed.status)).toEqual(['disconnected', 'silence', 'gap']);
    const st = run.states.get('binance:BTC-USDT');
    const json = JSON.parse(JSON.stringify(det.toJSON(st)));
    const other = detector(feedGapSpec, { maxSamples: 40, minSamples: 10 });
    const restored = other.fromJSON(json) as { quote: { gaps: { size: number } } };
    expect(restored.quote.gaps.size).toBe(40);
    expect(() => other.fromJSON({ ...json, markers: [{ ts: 1, status: 'bogus', reason: '' }] })).toThrow(TypeError);
    expect(() => other.fromJSON({ v: 1, key: 'k' })).toThrow(TypeError);
  });

  it('parameters: defaults and validation', () => {
    expectParamsContract(
      feedGapSpec,
      { quantile: 0.99, multiplier: 4, minGapMs: 5000, windowMs: 1_800_000, maxSamples: 2000, minSamples: 100, reportDisconnects: true, reportMarkers: true, cooldownMs: 60_000 },
      [{ quantile: 1.5 }, { multiplier: 0.5 }, { minGapMs: 0 }, { minSamples: 5000 }],
    );
  });
});

// ================================================================== cross_venue_divergence

describe('cross_venue_divergence', () => {
  const VENUES: Array<[string, number]> = [
    ['binance', 0],
    ['okx', 1.5],
    ['bybit', -1],
    ['kraken', 0.5],
  ];

  /** A common mid path (random walk, 100-ms steps of up to ±0.5 bps) around 60,000. */
  const midPath = (seed: number, durationMs: number): ((ts: number) => number) => {
    const rng = mulberry32(seed);
    const steps = new Float64Array(Math.ceil(durationMs / 100) + 2);
    let m = 60_000;
    for (let i = 0; i < steps.length; i++) {
      m *= 1 + (rng() - 0.5) * 1e-4;
      steps[i] = m;
    }
    return (ts) => steps[Math.max(0, Math.floor((ts - T0) / 100))] as number;
  };

  /** Every venue quotes the common mid × its basis, ±0.3 bps noise, every 10–200 ms; `shift` moves one venue. */
  const market = (
    seed: number,
    durationMs: number,
    venues = VENUES,
    shift?: { venue: string; from: number; to: number; bps: number },
  ): Quote[] => {
    const path = midPath(seed, durationMs);
    const lists = venues.map(([venue, basis], i) =>
      genQuotes({
        seed: seed * 31 + i,
        venue,
        durationMs,
        mid: (ts, rng) => {
          const extra = shift && shift.venue === venue && ts >= shift.from && ts < shift.to ? shift.bps : 0;
          return path(ts) * (1 + (basis + extra + (rng() - 0.5) * 0.6) / 1e4);
        },
      }),
    );
    return merge(...lists) as Quote[];
  };

  /** Independent re-derivation of the venue's basis at quote index `at` and of its baseline samples before it. */
  const oracle = (quotes: readonly Quote[], venue: string, at: number): { basis: number; ref: number; n: number; samples: number[] } => {
    const latest = new Map<string, { mid: number; ts: number }>();
    const samples: number[] = [];
    let lastSample: number | null = null;
    for (let i = 0; i <= at; i++) {
      const q = quotes[i] as Quote;
      latest.set(q.venue, { mid: midOf(q), ts: q.ts });
      if (q.venue !== venue) continue;
      const others = [...latest].filter(([v, x]) => v !== venue && Math.abs(q.ts - x.ts) <= 2000).map(([, x]) => x.mid);
      if (others.length < 2) continue;
      const ref = ss.median(others);
      const basis = ((midOf(q) - ref) / ref) * 1e4;
      if (i === at) return { basis, ref, n: others.length, samples };
      if (lastSample === null || q.ts - lastSample >= 1000) {
        samples.push(basis);
        lastSample = q.ts;
      }
    }
    throw new Error('oracle: no comparison at that index');
  };

  const divAt = T0 + 7 * MIN;

  it('flags the one venue that moves 25 bps away from the others, with an independent oracle', () => {
    const quotes = market(5, 10 * MIN, VENUES, { venue: 'okx', from: divAt, to: divAt + 5000, bps: 25 });
    const { findings } = runDetector(detector(crossVenueDivergenceSpec), quotes);
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;
    const first = quotes.findIndex((q) => q.venue === 'okx' && q.ts >= divAt);
    const start = quotes[first] as Quote;
    const at = quotes.findIndex((q) => q.venue === 'okx' && q.ts >= start.ts + 2000);
    const trig = quotes[at] as Quote;
    const o = oracle(quotes, 'okx', at);
    const usual = ss.median(o.samples);
    const mad = ss.medianAbsoluteDeviation(o.samples);
    const scale = Math.max(1.4826 * mad, 1);
    const dev = o.basis - usual;
    expect(f.trigger).toBe(refOf(trig));
    expect(f.key).toBe(SYM);
    expect(f.venue).toBe('okx');
    expect(f.symbol).toBe(SYM);
    expect(f.windowStart).toBe(start.ts);
    expect(f.evidence.triggers).toEqual([refOf(start), refOf(trig)]);
    const { observed, baseline } = f.evidence;
    expect(observed.refMid as number).toBeCloseTo(o.ref, 6);
    expect(observed.otherVenues).toBe(o.n);
    expect(observed.basisBps as number).toBeCloseTo(o.basis, 5);
    expect(baseline.samples).toBe(o.samples.length);
    expect(baseline.usualBasisBps as number).toBeCloseTo(usual, 5);
    expect(baseline.madBps as number).toBeCloseTo(mad, 5);
    expect(observed.deviationBps as number).toBeCloseTo(dev, 4);
    expect(observed.z as number).toBeCloseTo(dev / scale, 3);
    expect(observed.durationMs).toBe(trig.ts - start.ts);
    expect(observed.direction).toBe('above');
    expect(Math.abs(usual - 1.5)).toBeLessThan(0.5); // okx's structural basis was learnt
    expect(dev).toBeGreaterThan(20);
    const x = Math.abs(dev) / 10;
    expect(f.severity).toBe(x >= 10 ? 'critical' : x >= 3 ? 'high' : 'medium');
    expect(f.summary).toMatch(/^BTC-USDT on okx was quoted 2\d\.\d bps above the other venues for 2(\.\d)? s \(mid [\d,.]+ vs median [\d,.]+ of binance, bybit, kraken\), against a usual basis of \+1\.\d\d bps: \d+\.\d× its usual deviation$/);
    expectWellFormed(f);
  });

  it('stays silent on ordinary cross-venue noise with structural bases (several seeds)', () => {
    for (const seed of [1, 2, 3, 4]) {
      const run = runDetector(detector(crossVenueDivergenceSpec), market(seed, 10 * MIN));
      expect(run.findings, `seed ${seed}`).toEqual([]);
      const st = run.states.get(SYM) as CrossVenueDivergenceState;
      expect(st.venues.size).toBe(4);
      expect(st.venues.get('okx')?.basis.size).toBeGreaterThan(500);
    }
  });

  it('with three venues, blames only the one that moved (the others’ reference moves by half its move)', () => {
    const three = VENUES.slice(0, 3);
    const quotes = market(8, 10 * MIN, three, { venue: 'okx', from: divAt, to: divAt + 5000, bps: 25 });
    const { findings } = runDetector(detector(crossVenueDivergenceSpec), quotes);
    expect(findings.map((f) => f.venue)).toEqual(['okx']);
    // Binance really does look ~12 bps off against the median (= mean) of okx and bybit meanwhile.
    const i = quotes.findIndex((q) => q.venue === 'binance' && q.ts >= divAt + 3000);
    const o = oracle(quotes, 'binance', i);
    expect(o.basis - ss.median(o.samples)).toBeLessThan(-10);
  });

  it('needs minOtherVenues fresh venues', () => {
    // Only binance and okx keep quoting (bybit and kraken stop 10 s before): one fresh other venue.
    const quotes = market(6, 10 * MIN, VENUES, { venue: 'okx', from: divAt, to: divAt + 5000, bps: 25 }).filter(
      (q) => q.venue === 'binance' || q.venue === 'okx' || q.ts < divAt - 10_000,
    );
    expect(runDetector(detector(crossVenueDivergenceSpec), quotes).findings).toEqual([]);
    const loose = runDetector(detector(crossVenueDivergenceSpec, { minOtherVenues: 1 }), quotes).findings;
    expect(loose.some((f) => f.venue === 'okx')).toBe(true);
  });

  it('bounds the venues per symbol', () => {
    const many: Array<[string, number]> = ['v1', 'v2', 'v3', 'v4', 'v5', 'v6'].map((v) => [v, 0]);
    const run = runDetector(detector(crossVenueDivergenceSpec, { maxVenues: 4 }), market(9, MIN, many));
    const st = run.states.get(SYM) as CrossVenueDivergenceState;
    expect(st.venues.size).toBe(4);
    expect(st.evicted).toBeGreaterThan(0);
  });

  it('survives checkpoints and reloads with other parameters', () => {
    const at = T0 + 2.5 * MIN;
    const quotes = market(12, 3 * MIN, VENUES, { venue: 'kraken', from: at, to: at + 4000, bps: -30 });
    const det = detector(crossVenueDivergenceSpec);
    const run = expectRestorable(det, quotes);
    expect(run.findings.map((f) => [f.venue, f.evidence.observed.direction])).toEqual([['kraken', 'below']]);
    const json = JSON.parse(JSON.stringify(det.toJSON(run.states.get(SYM))));
    const other = detector(crossVenueDivergenceSpec, { maxVenues: 2, minOtherVenues: 1, maxSamples: 30, minSamples: 10 });
    const st = other.fromJSON(json) as CrossVenueDivergenceState;
    expect(st.venues.size).toBe(2);
    for (const v of st.venues.values()) expect(v.basis.size).toBeLessThanOrEqual(30);
    expect(() => other.fromJSON({ v: 1, symbol: SYM, venues: [{ venue: 'x', mid: 'a' }] })).toThrow(TypeError);
    expect(det.keyOf?.(quotes[0] as Quote)).toBe(SYM);
  });

  it('parameters: defaults and validation', () => {
    expectParamsContract(
      crossVenueDivergenceSpec,
      {
        maxStaleMs: 2000, minOtherVenues: 2, sampleMs: 1000, windowMs: 1_800_000, maxSamples: 1800, minSamples: 60, k: 6, minScaleBps: 1,
        minBps: 10, minDurationMs: 2000, maxVenues: 16, cooldownMs: 60_000,
      },
      [{ k: 0 }, { minOtherVenues: 16 }, { maxVenues: 1 }, { minSamples: 2000 }, { maxStaleMs: 0 }],
    );
  });
});
