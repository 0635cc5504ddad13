import * as ss from 'simple-statistics';
import { describe, expect, it } from 'vitest';
import { ERR, VigilError } from '../src/core/errors.ts';
import { findingSchema, type Trade } from '../src/core/events.ts';
import { findingId } from '../src/core/ids.ts';
import { priceJumpSpec, type PriceJumpState } from '../src/detectors/price-jump.ts';
import { createDetector, detectorSpecs } from '../src/detectors/registry.ts';
import type { DetectorInstance, FindingDraft } from '../src/detectors/types.ts';
import { captureTrades } from './helpers/capture-trades.ts';
import { mulberry32 } from './helpers/random.ts';

const T0 = Date.UTC(2024, 7, 8, 12, 0, 0); // 2024-08-08T12:00:00Z
const cents = (p: number): number => Math.round(p * 100) / 100;

/** A calm market: a trade every 20–180 ms, each moving ±1 tick (0.5 at ~50,000 = 0.1 bps) 30% of the time. */
function calmTrades(seed: number, durationMs: number, startPrice = 50_000): Trade[] {
  const rng = mulberry32(seed);
  const out: Trade[] = [];
  let ts = T0;
  let price = startPrice;
  let id = 1;
  while (ts < T0 + durationMs) {
    const u = rng();
    if (u < 0.15) price -= 0.5;
    else if (u < 0.3) price += 0.5;
    out.push({
      kind: 'trade',
      venue: 'binance',
      symbol: 'BTC-USDT',
      ts,
      recvTs: ts + 3,
      price: cents(price),
      qty: 0.01,
      side: rng() < 0.5 ? 'buy' : 'sell',
      tradeId: String(id++),
    });
    ts += 20 + Math.floor(rng() * 160);
  }
  return out;
}

/** Multiplies every price from `atTs` on by exp(bps/1e4): a step of `bps` basis points (log) that persists. */
function withStep(trades: Trade[], atTs: number, bps: number): Trade[] {
  const f = Math.exp(bps / 1e4);
  return trades.map((t) => (t.ts >= atTs ? { ...t, price: cents(t.price * f) } : t));
}

function run(det: DetectorInstance<PriceJumpState>, trades: readonly Trade[], state = det.newState('binance:BTC-USDT')): { findings: FindingDraft[]; state: PriceJumpState } {
  const findings: FindingDraft[] = [];
  for (const t of trades) det.onEvent(state, t, findings);
  return { findings, state };
}

function priceJump(params: Record<string, unknown> = {}, ruleId?: string): DetectorInstance<PriceJumpState> {
  return createDetector('price_jump', params, ruleId) as DetectorInstance<PriceJumpState>;
}

const TEN_MIN = 10 * 60_000;

describe('price_jump parameters and registry', () => {
  it('parse({}) gives the documented defaults', () => {
    expect(priceJumpSpec.params.parse({})).toEqual({
      intervalMs: 1000,
      windowMs: 300_000,
      maxSamples: 600,
      minSamples: 20,
      zThreshold: 6,
      minMoveBps: 5,
      minScaleBps: 0.5,
      cooldownMs: 10_000,
    });
    expect(detectorSpecs.price_jump).toBe(priceJumpSpec);
  });

  it('createDetector validates, defaults the rule id, and names the detector and parameter on error', () => {
    const det = createDetector('price_jump');
    expect(det.ruleId).toBe('price_jump.default');
    expect(det.name).toBe('price_jump');
    expect(createDetector('price_jump', { zThreshold: 8 }, 'pj.strict').ruleId).toBe('pj.strict');

    const bad = (params: unknown): VigilError => {
      try {
        createDetector('price_jump', params, 'r1');
      } catch (e) {
        return e as VigilError;
      }
      throw new Error('expected createDetector to throw');
    };
    const e1 = bad({ zThreshold: -1 });
    expect(e1).toBeInstanceOf(VigilError);
    expect(e1.code).toBe(ERR.CONFIG);
    expect(e1.message).toMatch(/price_jump/);
    expect(e1.message).toMatch(/zThreshold/);
    expect(bad({ windowMs: 'long' }).message).toMatch(/windowMs/);
    expect(bad({ zThreshhold: 7 }).message).toMatch(/zThreshhold/); // typo'd key is not silently ignored
    expect(bad({ minSamples: 700 }).message).toMatch(/minSamples/); // more than maxSamples: could never evaluate
    expect(() => createDetector('no_such_detector')).toThrow(/unknown detector "no_such_detector"/);
  });
});

describe('price_jump on synthetic trades', () => {
  it('a calm random walk gives no finding (after the baseline is well established)', () => {
    for (const seed of [1, 2, 3]) {
      const { findings, state } = run(priceJump(), calmTrades(seed, TEN_MIN));
      expect(findings).toEqual([]);
      expect(state.sorted.size).toBeGreaterThan(250); // it was evaluating: ~300 s of 1-s returns
      expect(state.late).toBe(0);
    }
  });

  it('a 30 bps step gives exactly one finding with the right direction, severity and evidence', () => {
    const jumpAt = T0 + 4 * 60_000 + 500;
    const trades = withStep(calmTrades(11, TEN_MIN), jumpAt, 30);
    const { findings } = run(priceJump(), trades);
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;
    const trigger = trades.find((t) => t.ts >= jumpAt) as Trade;
    expect(f.ts).toBe(trigger.ts);
    expect(f.trigger).toBe(`trade:binance:BTC-USDT:${trigger.tradeId}`);
    expect(f.evidence.triggers).toEqual([f.trigger]);
    expect(f.key).toBe('binance:BTC-USDT');
    expect(f.venue).toBe('binance');
    expect(f.symbol).toBe('BTC-USDT');
    expect(f.windowEnd).toBe(trigger.ts);
    expect(f.windowStart).toBeLessThan(f.windowEnd);
    expect(f.windowStart).toBeGreaterThanOrEqual(trigger.ts - 300_000 - 1000);

    const { observed, baseline, threshold } = f.evidence;
    expect(observed.direction).toBe('up');
    expect(observed.price).toBe(trigger.price);
    expect(observed.moveBps as number).toBeGreaterThan(29);
    expect(observed.moveBps as number).toBeLessThan(31);
    expect(observed.logReturn as number).toBeCloseTo(Math.log(trigger.price / (observed.refPrice as number)), 15);
    // z is recomputable from the evidence.
    expect(observed.z as number).toBeCloseTo(((observed.logReturn as number) - (baseline.median as number)) / (baseline.scale as number), 3);
    expect(baseline.scale).toBe(Math.max(1.4826 * (baseline.mad as number), 0.5e-4));
    expect(baseline.samples as number).toBeGreaterThanOrEqual(200);
    expect(threshold).toEqual({ z: 6, minMoveBps: 5 });
    // Calm market: 1.4826·MAD is below the 0.5 bps floor, so z ≈ 30 / 0.5 = 60 ≥ 4 × 6: critical.
    expect(baseline.scaleFloored).toBe(true);
    expect(f.score).toBeGreaterThan(55);
    expect(f.severity).toBe('critical');
    expect(f.summary).toMatch(/^BTC-USDT on binance rose 30\.\d bps within \d+ ms \(\d\d,\d{3}\.\d\d → \d\d,\d{3}\.\d\d\), \d+\.\d× its usual 1-second move$/);
  });

  it('severity follows |z| / zThreshold (medium, high, critical) and the direction of a fall', () => {
    const jumpAt = T0 + 4 * 60_000 + 500;
    const trades = withStep(calmTrades(12, 5 * 60_000), jumpAt, -30);
    const cases: [Record<string, unknown>, string][] = [
      [{ minScaleBps: 4 }, 'medium'], // z ≈ 7.5
      [{ minScaleBps: 2 }, 'high'], // z ≈ 15
      [{ minScaleBps: 1 }, 'critical'], // z ≈ 30
      [{ minScaleBps: 6 }, 'none'], // z ≈ 5 < 6
    ];
    for (const [params, severity] of cases) {
      const { findings } = run(priceJump(params), trades);
      if (severity === 'none') {
        expect(findings).toEqual([]);
        continue;
      }
      expect(findings, JSON.stringify(params)).toHaveLength(1);
      expect(findings[0]?.severity).toBe(severity);
      expect(findings[0]?.evidence.observed.direction).toBe('down');
      expect(findings[0]?.summary).toMatch(/ fell 30\.\d bps /);
    }
  });

  it('minMoveBps gates a statistically large but tiny move', () => {
    const jumpAt = T0 + 4 * 60_000 + 500;
    const trades = withStep(calmTrades(13, 5 * 60_000), jumpAt, 4); // z ≈ 8 with the floor, but < 5 bps
    expect(run(priceJump(), trades).findings).toEqual([]);
    expect(run(priceJump({ minMoveBps: 3 }), trades).findings).toHaveLength(1);
  });

  it('cooldown suppresses repeats per direction', () => {
    const base = T0 + 3 * 60_000;
    let trades = calmTrades(21, 5 * 60_000);
    trades = withStep(trades, base, 30); // up: fires
    trades = withStep(trades, base + 3_000, 30); // up again within 10 s: suppressed
    trades = withStep(trades, base + 15_000, 30); // up after the cooldown: fires
    trades = withStep(trades, base + 16_000, -30); // down: its own cooldown, fires
    const firstAtOrAfter = (ts: number): number => (trades.find((t) => t.ts >= ts) as Trade).ts;

    const { findings } = run(priceJump(), trades);
    expect(findings.map((f) => [f.ts, f.evidence.observed.direction])).toEqual([
      [firstAtOrAfter(base), 'up'],
      [firstAtOrAfter(base + 15_000), 'up'],
      [firstAtOrAfter(base + 16_000), 'down'],
    ]);
    const noCooldown = run(priceJump({ cooldownMs: 0 }), trades).findings;
    // Without a cooldown the suppressed step fires, and so does every further trade of each jump interval.
    expect(noCooldown.some((f) => f.ts === firstAtOrAfter(base + 3_000))).toBe(true);
    expect(noCooldown.length).toBeGreaterThan(4);
  });

  it('minSamples is respected', () => {
    const jumpAt = T0 + 10_500; // ~9 baseline returns by then
    const trades = withStep(calmTrades(31, 60_000), jumpAt, 30);
    expect(run(priceJump(), trades).findings).toEqual([]);
    const loose = run(priceJump({ minSamples: 5 }), trades).findings;
    expect(loose).toHaveLength(1);
    expect(loose[0]?.evidence.baseline.samples as number).toBeGreaterThanOrEqual(5);
    expect(loose[0]?.evidence.baseline.samples as number).toBeLessThan(20);
  });

  it('the baseline is bounded by maxSamples and by windowMs', () => {
    const trades = calmTrades(41, TEN_MIN);
    expect(run(priceJump({ maxSamples: 50, minSamples: 10 }), trades).state.sorted.size).toBe(50);
    const { state } = run(priceJump({ windowMs: 60_000 }), trades);
    expect(state.sorted.size).toBeLessThanOrEqual(60);
    expect(state.sorted.size).toBeGreaterThan(50);
    expect(state.returns.size).toBe(state.sorted.size);
    expect(state.returns.oldestTs as number).toBeGreaterThan((state.curIdx as number) * 1000 - 60_000);
  });

  it('out-of-order trades are counted as late and change nothing else', () => {
    const jumpAt = T0 + 4 * 60_000 + 500;
    const clean = withStep(calmTrades(51, 6 * 60_000), jumpAt, -30);
    const messy: Trade[] = [];
    let injected = 0;
    clean.forEach((t, i) => {
      messy.push(t);
      if (i > 0 && i % 97 === 0) {
        // A trade 5 s in the past at an absurd price.
        messy.push({ ...t, ts: t.ts - 5_000, price: t.price * 1.5, tradeId: `late-${i}` });
        injected++;
      }
    });
    const a = run(priceJump(), clean);
    const b = run(priceJump(), messy);
    expect(injected).toBeGreaterThan(20);
    expect(b.state.late).toBe(injected);
    expect(b.findings).toEqual(a.findings);
    expect(b.findings).toHaveLength(1);
    const det = priceJump();
    const { toJSON } = det;
    expect({ ...(toJSON(b.state) as object), late: 0 }).toEqual({ ...(toJSON(a.state) as object), late: 0 });
  });

  it('a run split by a JSON checkpoint equals an uninterrupted run', () => {
    const base = T0 + 2 * 60_000;
    let trades = calmTrades(61, 8 * 60_000);
    for (const [dt, bps] of [[0, 30], [4_000, -25], [30_000, 60], [31_000, -60], [95_000, 18], [200_000, -40]] as const) {
      trades = withStep(trades, base + dt, bps);
    }
    const whole = run(priceJump({}, 'r'), trades).findings;
    expect(whole.length).toBeGreaterThanOrEqual(5);
    const rng = mulberry32(99);
    const cuts = [1, 2, trades.length - 1, ...Array.from({ length: 12 }, () => Math.floor(rng() * trades.length))];
    // Also cut right at each trigger and right after it (mid-interval, inside a cooldown).
    for (const f of whole) {
      const i = trades.findIndex((t) => t.ts === f.ts);
      cuts.push(i, i + 1);
    }
    for (const cut of cuts) {
      const det1 = priceJump({}, 'r');
      const first = run(det1, trades.slice(0, cut));
      const saved = JSON.parse(JSON.stringify(det1.toJSON(first.state)));
      const det2 = priceJump({}, 'r'); // a fresh instance, as on another worker
      const second = run(det2, trades.slice(cut), det2.fromJSON(saved));
      expect([...first.findings, ...second.findings], `cut at ${cut}`).toEqual(whole);
      expect(det2.toJSON(second.state)).toEqual(det1.toJSON(run(det1, trades).state));
    }
  });

  it('formats the summary deterministically', () => {
    const mk = (ts: number, price: number, id: number): Trade => ({
      kind: 'trade', venue: 'binance', symbol: 'BTC-USDT', ts, recvTs: ts, price, qty: 1, side: 'sell', tradeId: String(id),
    });
    const trades: Trade[] = [];
    for (let i = 0; i < 30; i++) trades.push(mk(T0 + i * 1000 + 100, i % 2 === 0 ? 61850 : 61850.5, i));
    trades.push(mk(T0 + 30_000 + 50, 61850, 100));
    trades.push(mk(T0 + 31_000 + 50, 61796, 101));
    const { findings } = run(priceJump(), trades);
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;
    // Baseline: alternating ±0.08 bps returns → 1.4826·MAD < 0.5 bps, so the scale is the floor; ln(61796/61850) = −8.73 bps.
    expect(f.summary).toBe('BTC-USDT on binance fell 8.7 bps within 1 s (61,850.00 → 61,796.00), 17.5× its usual 1-second move');
    expect(f.severity).toBe('high'); // 17.5 ≥ 2 × 6
    // Independent oracle: the 30 closed-interval returns before the trigger, through simple-statistics.
    const closes = trades.slice(0, 31).map((t) => t.price);
    const rets = closes.slice(1).map((p, i) => Math.log(p / (closes[i] as number)));
    expect(f.evidence.baseline.samples).toBe(rets.length);
    expect(f.evidence.baseline.median).toBe(ss.median(rets));
    expect(f.evidence.baseline.mad).toBe(ss.medianAbsoluteDeviation(rets));
    const z = (Math.log(61796 / 61850) - ss.median(rets)) / Math.max(1.4826 * ss.medianAbsoluteDeviation(rets), 0.5e-4);
    expect(f.evidence.observed.z).toBeCloseTo(z, 4);
    expect(f.score).toBeCloseTo(Math.abs(z), 4);
  });
});

// ------------------------------------------------------------------ the real capture

describe('price_jump on the Binance BTCUSDT capture (2024-08-08)', () => {
  const trades = captureTrades();

  it('finds the jumps, deterministically, as valid findings', () => {
    expect(trades.length).toBeGreaterThan(9000);
    const a = run(priceJump(), trades);
    const b = run(priceJump(), trades);
    expect(a.findings.length).toBeGreaterThanOrEqual(1);
    expect(b.findings).toEqual(a.findings);

    // The largest 1-s move of the capture (−8.75 bps around 23:57:52 UTC) is among them.
    const t1 = Date.UTC(2024, 7, 8, 23, 57, 52);
    expect(a.findings.some((f) => f.ts >= t1 && f.ts < t1 + 1000 && f.evidence.observed.direction === 'down')).toBe(true);

    for (const f of a.findings) {
      expect(Math.abs(f.evidence.observed.z as number)).toBeGreaterThanOrEqual(6);
      expect(Math.abs(f.evidence.observed.moveBps as number)).toBeGreaterThanOrEqual(5);
      const { trigger, ...rest } = f;
      const finding = findingSchema.parse({
        ...rest,
        id: findingId('price_jump', 'price_jump.default', f.key, trigger),
        runId: 'test',
        detector: 'price_jump',
        ruleId: 'price_jump.default',
      });
      expect(finding.summary).toMatch(/^BTC-USDT on binance (rose|fell) /);
    }
    // Report what it finds (the lead picks the demo sample from this).
    console.log(
      a.findings
        .map((f) => `${new Date(f.ts).toISOString()} ${f.severity} ${f.evidence.observed.moveBps} bps z=${f.evidence.observed.z} — ${f.summary}`)
        .join('\n'),
    );

    // Split runs over the real data equal the uninterrupted one.
    for (const cut of [1000, Math.floor(trades.length / 2), trades.length - 10]) {
      const d1 = priceJump();
      const p1 = run(d1, trades.slice(0, cut));
      const d2 = priceJump();
      const p2 = run(d2, trades.slice(cut), d2.fromJSON(JSON.parse(JSON.stringify(d1.toJSON(p1.state)))));
      expect([...p1.findings, ...p2.findings]).toEqual(a.findings);
    }
  });
});
