/**
 * Property tests of the incremental primitives added for the statistical detectors (DDSketch, Cusum,
 * PageHinkley, RateCounter) against simple-statistics on the exact data: seeded random operation
 * sequences, thousands of steps each.
 */
import * as ss from 'simple-statistics';
import { describe, expect, it } from 'vitest';
import { Cusum, PageHinkley } from '../src/stats/change.ts';
import { DDSketch } from '../src/stats/ddsketch.ts';
import { RateCounter } from '../src/stats/rate.ts';
import { mulberry32 } from './helpers/random.ts';

function gauss(rng: () => number): number {
  let u = 0;
  while (u === 0) u = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

function relClose(actual: number, expected: number, rel = 1e-9, abs = 1e-12): void {
  const tol = Math.max(abs, rel * Math.abs(expected));
  expect(Math.abs(actual - expected), `actual ${actual} vs expected ${expected}`).toBeLessThanOrEqual(tol);
}

// ------------------------------------------------------------------ DDSketch

/** Data styles: lognormal prices/volumes, mixed sign returns with exact zeros, integer grid, huge range. */
function sketchGen(rng: () => number, style: number): () => number {
  switch (style % 5) {
    case 0:
      return () => Math.exp(gauss(rng) * 1.5 + 3); // lognormal, positive
    case 1:
      return () => (rng() < 0.3 ? 0 : gauss(rng) * 1e-3); // returns: mixed sign, many zeros
    case 2:
      return () => Math.floor(rng() * 21) - 10; // integer grid, duplicates, negatives, zeros
    case 3:
      return () => (rng() < 0.5 ? -1 : 1) * 10 ** (rng() * 12 - 6); // 12 orders of magnitude, both signs
    default:
      return () => 60_000 + gauss(rng) * 50; // prices near 60,000
  }
}

const QS = [0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.333, 0.5, 0.667, 0.75, 0.9, 0.95, 0.99, 0.999, 1];

/**
 * The sketch's type-7 quantile against simple-statistics': within α·((1−f)|x⌊r⌋| + f|x⌈r⌉|), which is
 * α·|exact| whenever the two order statistics around the rank have the same sign.
 */
function expectQuantilesWithin(sk: DDSketch, data: number[], alpha: number): number {
  const sorted = [...data].sort((a, b) => a - b);
  let checks = 0;
  for (const q of QS) {
    const exact = ss.quantile(data, q);
    const r = q * (sorted.length - 1);
    const lo = Math.floor(r);
    const f = r - lo;
    const xl = sorted[lo] as number;
    const xh = sorted[Math.min(lo + 1, sorted.length - 1)] as number;
    const bound = alpha * ((1 - f) * Math.abs(xl) + f * Math.abs(xh));
    const got = sk.quantile(q);
    expect(Math.abs(got - exact), `q=${q}: sketch ${got} vs exact ${exact} (n=${data.length})`).toBeLessThanOrEqual(bound * (1 + 1e-9) + 1e-300);
    if (Math.sign(xl) === Math.sign(xh) || xl === 0 || xh === 0) {
      expect(Math.abs(got - exact)).toBeLessThanOrEqual(alpha * Math.abs(exact) * (1 + 1e-9) + 1e-300);
    }
    checks++;
  }
  return checks;
}

describe('DDSketch', () => {
  it('quantiles stay within the relative accuracy α of simple-statistics on the exact data', () => {
    let checks = 0;
    for (let seed = 1; seed <= 20; seed++) {
      const rng = mulberry32(seed);
      const alpha = [0.01, 0.02, 0.05, 0.001][seed % 4] as number;
      // Enough buckets for 12 decades at α = 0.001 (13,800): no collapsing here (see the next test).
      const sk = new DDSketch({ relativeAccuracy: alpha, maxBuckets: 16_384 });
      const gen = sketchGen(rng, seed);
      const data: number[] = [];
      for (let i = 1; i <= 3000; i++) {
        const x = gen();
        data.push(x);
        sk.add(x);
        if (i % 250 === 0 || i < 10) {
          checks += expectQuantilesWithin(sk, data, alpha);
          expect(sk.count).toBe(data.length);
          expect(sk.min).toBe(ss.min(data));
          expect(sk.max).toBe(ss.max(data));
          relClose(sk.sum, ss.sum(data), 1e-9, 1e-9 * ss.max(data.map(Math.abs)));
          expect(sk.zeroCount).toBe(data.filter((v) => v === 0).length);
        }
      }
      expect(sk.bucketCount).toBeLessThanOrEqual(2 * sk.maxBuckets);
    }
    expect(checks).toBeGreaterThan(3000);
  });

  it('is empty-safe and rejects bad input', () => {
    const sk = new DDSketch();
    expect(sk.quantile(0.5)).toBeNaN();
    expect(sk.min).toBeNaN();
    expect(() => sk.add(Number.NaN)).toThrow(RangeError);
    expect(() => sk.add(Number.POSITIVE_INFINITY)).toThrow(RangeError);
    expect(() => sk.add(1, 0)).toThrow(RangeError);
    expect(() => sk.quantile(1.5)).toThrow(RangeError);
    expect(() => new DDSketch({ relativeAccuracy: 0 })).toThrow(RangeError);
    expect(() => new DDSketch({ maxBuckets: 0 })).toThrow(RangeError);
    sk.add(0);
    expect(sk.quantile(0.5)).toBe(0);
    sk.add(-5);
    sk.add(5);
    expect(sk.median()).toBe(0);
    expect(Math.abs(sk.quantile(1) - 5)).toBe(0); // exact max
  });

  it('bounded buckets: collapsing the lowest keeps the high quantiles within α', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const rng = mulberry32(100 + seed);
      const alpha = 0.01;
      const maxBuckets = 64 + seed * 16;
      const sk = new DDSketch({ relativeAccuracy: alpha, maxBuckets });
      const data: number[] = [];
      for (let i = 0; i < 4000; i++) {
        const x = (rng() < 0.2 ? -1 : 1) * 10 ** (rng() * 4 - 2); // 4 decades: ~460 buckets > maxBuckets
        data.push(x);
        sk.add(x);
      }
      // Memory is bounded whatever the data.
      const j = sk.toJSON();
      expect(j.pos?.counts.length ?? 0).toBeLessThanOrEqual(maxBuckets);
      expect(j.neg?.counts.length ?? 0).toBeLessThanOrEqual(maxBuckets);
      expect(sk.allocatedSlots).toBeLessThanOrEqual(4 * maxBuckets);
      // Magnitudes with index ≥ hi − maxBuckets + 1 keep their accuracy; check the quantiles made of them.
      const gamma = (1 + alpha) / (1 - alpha);
      const posFloor = gamma ** ((j.pos as { lo: number }).lo); // magnitudes above the collapsed bucket's upper edge
      const negFloor = gamma ** ((j.neg as { lo: number }).lo);
      const sorted = [...data].sort((a, b) => a - b);
      let checked = 0;
      let collapsed = 0;
      for (let k = 0; k <= 1000; k++) {
        const q = k / 1000;
        const r = q * (sorted.length - 1);
        const xl = sorted[Math.floor(r)] as number;
        const xh = sorted[Math.ceil(r)] as number;
        const ok = (x: number) => (x > 0 ? x > posFloor : -x > negFloor);
        const exact = ss.quantile(data, q);
        const got = sk.quantile(q);
        if (ok(xl) && ok(xh) && Math.sign(xl) === Math.sign(xh)) {
          expect(Math.abs(got - exact), `q=${q}`).toBeLessThanOrEqual(alpha * Math.abs(exact) * (1 + 1e-9));
          checked++;
        } else if (xl > 0 && xh > 0 && xh <= posFloor / gamma) {
          // Collapsed small magnitudes (below the lowest bucket's range): reported as that bucket, above them.
          expect(got).toBeLessThanOrEqual(posFloor * (1 + 1e-9));
          expect(got).toBeGreaterThanOrEqual(exact);
          collapsed++;
        }
      }
      expect(checked).toBeGreaterThan(100);
      expect(collapsed).toBeGreaterThan(50);
    }
  });

  it('merge(a, b) equals the sketch of the union, in any order, collapsing included', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const rng = mulberry32(200 + seed);
      const gen = sketchGen(rng, seed);
      const opts = { relativeAccuracy: 0.02, maxBuckets: seed % 2 === 0 ? 2048 : 40 };
      const a = new DDSketch(opts);
      const b = new DDSketch(opts);
      const union = new DDSketch(opts);
      const data: number[] = [];
      for (let i = 0; i < 2000; i++) {
        const x = gen();
        data.push(x);
        (rng() < 0.4 ? a : b).add(x);
        union.add(x);
      }
      const merged = DDSketch.fromJSON(JSON.parse(JSON.stringify(a.toJSON())));
      merged.merge(b);
      const { sum: s1, ...m } = merged.toJSON();
      const { sum: s2, ...u } = union.toJSON();
      expect(m).toEqual(u);
      relClose(s1, s2, 1e-9, 1e-9 * ss.max(data.map(Math.abs)));
      for (const q of QS) expect(merged.quantile(q)).toBe(union.quantile(q));
      // Insertion order does not matter either.
      const shuffled = new DDSketch(opts);
      for (const x of ss.shuffle(data, mulberry32(seed))) shuffled.add(x);
      const { sum: _s3, ...sh } = shuffled.toJSON();
      expect(sh).toEqual(u);
      if (opts.maxBuckets === 2048) expectQuantilesWithin(merged, data, opts.relativeAccuracy);
    }
    expect(() => new DDSketch({ relativeAccuracy: 0.01 }).merge(new DDSketch({ relativeAccuracy: 0.02 }))).toThrow(RangeError);
  });

  it('round-trips through JSON exactly, re-collapses under a smaller bound, and rejects garbage', () => {
    const rng = mulberry32(7);
    const gen = sketchGen(rng, 3);
    const sk = new DDSketch({ relativeAccuracy: 0.01, maxBuckets: 300 });
    const direct = new DDSketch({ relativeAccuracy: 0.01, maxBuckets: 100 });
    for (let i = 0; i < 3000; i++) {
      const x = gen();
      sk.add(x);
      direct.add(x);
    }
    const back = DDSketch.fromJSON(JSON.parse(JSON.stringify(sk)));
    expect(back.toJSON()).toEqual(sk.toJSON());
    for (let i = 0; i < 500; i++) {
      const x = gen();
      sk.add(x);
      back.add(x);
      direct.add(x);
    }
    expect(back.toJSON()).toEqual(sk.toJSON());
    // A smaller maxBuckets on restore gives exactly the sketch built with it from the start.
    const smaller = DDSketch.fromJSON(sk.toJSON(), { maxBuckets: 100 });
    const { sum: _a, ...x1 } = smaller.toJSON();
    const { sum: _b, ...x2 } = direct.toJSON();
    expect(x1).toEqual(x2);
    expect(() => DDSketch.fromJSON(null)).toThrow(TypeError);
    expect(() => DDSketch.fromJSON({ alpha: 0.01 })).toThrow(TypeError);
    expect(() => DDSketch.fromJSON({ ...sk.toJSON(), count: 5 })).toThrow(TypeError);
    expect(() => DDSketch.fromJSON({ ...sk.toJSON(), pos: { lo: 1, counts: ['x'] } })).toThrow(TypeError);
  });
});

// ------------------------------------------------------------------ Cusum / Page–Hinkley

/** A series with regime shifts in mean (and scale), so alarms happen. */
function shiftingSeries(seed: number, n: number): number[] {
  const rng = mulberry32(seed);
  const out: number[] = [];
  let mean = 0;
  let scale = 1;
  for (let i = 0; i < n; i++) {
    if (rng() < 0.004) mean = (rng() - 0.5) * 6;
    if (rng() < 0.003) scale = 0.5 + rng() * 2;
    out.push(mean + scale * gauss(rng));
  }
  return out;
}

describe('Cusum', () => {
  it('equals the naive cumulative-sum definition (S⁺ = Pₙ − min Pⱼ) with resets after alarms', () => {
    let alarms = 0;
    let checks = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const xs = shiftingSeries(seed, 3000);
      const k = [0, 0.25, 0.5, 1][seed % 4] as number;
      const h = [3, 5, 8][seed % 3] as number;
      const kDown = seed % 2 === 0 ? k : k / 2;
      const direction = (['both', 'up', 'down'] as const)[seed % 3];
      const c = new Cusum({ k, h, kDown, direction });
      // Oracle state over the segment since the last alarm: prefix sums Pₙ of (z − k) and of (−z − kDown).
      let pu: number[] = [];
      let pd: number[] = [];
      for (const z of xs) {
        pu.push((pu.at(-1) ?? 0) + (z - k));
        pd.push((pd.at(-1) ?? 0) + (-z - kDown));
        const sPos = direction === 'down' ? 0 : (pu.at(-1) as number) - Math.min(0, ss.min(pu));
        const sNeg = direction === 'up' ? 0 : (pd.at(-1) as number) - Math.min(0, ss.min(pd));
        const expected = sPos > h ? 'up' : sNeg > h ? 'down' : null;
        const got = c.update(z);
        expect(got, `seed ${seed}, step ${pu.length}`).toBe(expected);
        if (got === null) {
          relClose(c.pos, sPos, 1e-9, 1e-9);
          relClose(c.neg, sNeg, 1e-9, 1e-9);
          // Excursion length: values since the prefix last reached a new (inclusive) minimum.
          if (direction !== 'down') {
            let lastMin = -1;
            let min = 0;
            pu.forEach((p, i) => {
              if (p <= min) {
                min = p;
                lastMin = i;
              }
            });
            expect(c.upLength).toBe(pu.length - 1 - lastMin);
          }
          checks++;
        } else {
          relClose(c.alarmStatistic, got === 'up' ? sPos : sNeg, 1e-9, 1e-9);
          expect(c.pos).toBe(0);
          expect(c.neg).toBe(0);
          alarms++;
          pu = [];
          pd = [];
        }
      }
    }
    expect(alarms).toBeGreaterThan(50);
    expect(checks).toBeGreaterThan(20_000);
  });

  it('round-trips through JSON and continues identically; rejects garbage and bad options', () => {
    const xs = shiftingSeries(5, 2000);
    const a = new Cusum({ k: 0.5, h: 5 });
    let b = new Cusum({ k: 0.5, h: 5 });
    const ra: (string | null)[] = [];
    const rb: (string | null)[] = [];
    xs.forEach((z, i) => {
      ra.push(a.update(z));
      if (i % 37 === 0) b = Cusum.fromJSON(JSON.parse(JSON.stringify(b.toJSON())));
      rb.push(b.update(z));
    });
    expect(rb).toEqual(ra);
    expect(b.toJSON()).toEqual(a.toJSON());
    expect(a.alarms).toBeGreaterThan(5);
    expect(() => Cusum.fromJSON({ k: 1 })).toThrow(TypeError);
    expect(() => new Cusum({ k: -1, h: 5 })).toThrow(RangeError);
    expect(() => new Cusum({ k: 1, h: 0 })).toThrow(RangeError);
    expect(() => a.update(Number.NaN)).toThrow(RangeError);
  });
});

describe('PageHinkley', () => {
  it('equals the direct definition (running mean, optional forgetting, min/max of the sums) with resets', () => {
    let alarms = 0;
    let checks = 0;
    for (let seed = 1; seed <= 10; seed++) {
      const xs = shiftingSeries(50 + seed, 2500);
      const delta = [0.05, 0.1, 0.5][seed % 3] as number;
      const lambda = [10, 20, 40][seed % 3] as number;
      const alpha = seed % 2 === 0 ? 1 : 0.99;
      const minSamples = seed % 4 === 0 ? 30 : 1;
      const direction = (['both', 'up', 'down'] as const)[seed % 3];
      const ph = new PageHinkley({ delta, lambda, alpha, minSamples, direction });
      let seg: number[] = [];
      let means: number[] = [];
      for (const x of xs) {
        seg.push(x);
        means.push(ss.mean(seg)); // the running mean at each step, by simple-statistics
        // m_t = α·m_{t−1} + (x_t − mean_t ∓ δ); PH⁺ = m_t − min(0, m_1..m_t), PH⁻ = max(0, m'_1..m'_t) − m'_t.
        const mUp: number[] = [];
        const mDn: number[] = [];
        let u = 0;
        let d = 0;
        seg.forEach((v, i) => {
          u = alpha * u + (v - (means[i] as number) - delta);
          d = alpha * d + (v - (means[i] as number) + delta);
          mUp.push(u);
          mDn.push(d);
        });
        const phUp = (mUp.at(-1) as number) - Math.min(0, ss.min(mUp));
        const phDn = Math.max(0, ss.max(mDn)) - (mDn.at(-1) as number);
        let expected: 'up' | 'down' | null = null;
        if (seg.length >= minSamples) {
          if (direction !== 'down' && phUp > lambda) expected = 'up';
          else if (direction !== 'up' && phDn > lambda) expected = 'down';
        }
        const got = ph.update(x);
        expect(got, `seed ${seed} step ${seg.length}`).toBe(expected);
        if (got === null) {
          relClose(ph.upStatistic, phUp, 1e-8, 1e-8);
          relClose(ph.downStatistic, phDn, 1e-8, 1e-8);
          relClose(ph.mean, ss.mean(seg), 1e-9, 1e-12);
          checks++;
        } else {
          alarms++;
          seg = [];
          means = [];
          expect(ph.count).toBe(0);
        }
      }
    }
    expect(alarms).toBeGreaterThan(30);
    expect(checks).toBeGreaterThan(15_000);
  });

  it('round-trips through JSON and validates', () => {
    const xs = shiftingSeries(9, 1500);
    const a = new PageHinkley({ delta: 0.1, lambda: 15, alpha: 0.999 });
    let b = new PageHinkley({ delta: 0.1, lambda: 15, alpha: 0.999 });
    xs.forEach((x, i) => {
      const ra = a.update(x);
      if (i % 41 === 0) b = PageHinkley.fromJSON(JSON.parse(JSON.stringify(b)));
      expect(b.update(x)).toBe(ra);
    });
    expect(b.toJSON()).toEqual(a.toJSON());
    expect(a.alarms).toBeGreaterThan(3);
    expect(() => PageHinkley.fromJSON({})).toThrow(TypeError);
    expect(() => new PageHinkley({ delta: 0, lambda: 1, alpha: 0 })).toThrow(RangeError);
    expect(() => new PageHinkley({ delta: 0, lambda: 1, minSamples: 0 })).toThrow(RangeError);
  });
});

// ------------------------------------------------------------------ RateCounter

interface RateOracle {
  events: Array<{ idx: number; amount: number }>;
  first: number | null;
  cur: number | null;
  invalid: Set<number>;
  gapOpen: boolean;
}

/** What the window should hold, recomputed from every accepted event (O(events) per check). */
function oracleWindow(o: RateOracle, N: number) {
  if (o.cur === null || o.first === null) return null;
  const lo = Math.max(o.first, o.cur - N + 1);
  const buckets: Array<{ idx: number; count: number; sum: number; valid: boolean }> = [];
  for (let i = lo; i <= o.cur; i++) buckets.push({ idx: i, count: 0, sum: 0, valid: !o.invalid.has(i) });
  for (const e of o.events) {
    if (e.idx < lo || e.idx > o.cur) continue;
    const b = buckets[e.idx - lo] as { count: number; sum: number };
    b.count += 1;
    b.sum += e.amount;
  }
  const completed = buckets.slice(0, -1).filter((b) => b.valid);
  return { lo, buckets, completed };
}

describe('RateCounter', () => {
  it('matches the window recomputed from the events: counts, sums, Welford moments, median/MAD, late events, gaps', () => {
    let checks = 0;
    for (let seed = 1; seed <= 16; seed++) {
      const rng = mulberry32(300 + seed);
      const bucketMs = [1000, 250, 10_000][seed % 3] as number;
      const N = [2, 5, 30, 61][seed % 4] as number;
      const sorted = (['count', 'sum', 'none'] as const)[seed % 3];
      let rc = new RateCounter({ bucketMs, buckets: N, sorted });
      const o: RateOracle = { events: [], first: null, cur: null, invalid: new Set(), gapOpen: false };
      let t = 1_700_000_000_000 + Math.floor(rng() * bucketMs);
      for (let step = 0; step < 2500; step++) {
        const u = rng();
        if (u < 0.02) {
          // Feed loss.
          rc.markGap();
          if (o.cur !== null) o.invalid.add(o.cur);
          o.gapOpen = true;
          continue;
        }
        if (u < 0.04) {
          // Roll forward without an event.
          t += Math.floor(rng() * bucketMs * 3);
          rc.advance(t);
          const idx = Math.floor(t / bucketMs);
          if (o.cur !== null && idx > o.cur) {
            if (o.gapOpen) for (let i = o.cur + 1; i <= idx; i++) o.invalid.add(i);
            o.gapOpen = false;
            o.cur = idx;
          }
          continue;
        }
        // Mostly small steps; sometimes a long silence (beyond the window); sometimes a late event.
        let ts: number;
        const v = rng();
        if (v < 0.1) ts = t - Math.floor(rng() * bucketMs * (N + 3)); // late, maybe too late
        else {
          t += v < 0.13 ? Math.floor(rng() * bucketMs * (N + 5)) : Math.floor(rng() * bucketMs * 0.7);
          ts = t;
        }
        const amount = Math.round(rng() * 1000) / 100;
        const idx = Math.floor(ts / bucketMs);
        // Oracle: roll forward, then accept unless older than the window.
        if (o.cur === null) {
          o.first = idx;
          o.cur = idx;
          if (o.gapOpen) o.invalid.add(idx);
          o.gapOpen = false;
        } else if (idx > o.cur) {
          if (o.gapOpen) for (let i = o.cur + 1; i <= idx; i++) o.invalid.add(i);
          o.gapOpen = false;
          o.cur = idx;
        }
        const lo = Math.max(o.first as number, (o.cur as number) - N + 1);
        const expectedWhere = idx < lo ? 'late' : idx === o.cur ? 'current' : 'past';
        if (expectedWhere !== 'late') o.events.push({ idx, amount });
        expect(rc.add(ts, amount)).toBe(expectedWhere);

        if (step % 5 === 0) {
          const w = oracleWindow(o, N);
          if (!w) continue;
          const cur = w.buckets.at(-1) as { count: number; sum: number; valid: boolean };
          expect(rc.currentIndex).toBe(o.cur);
          expect(rc.windowBuckets).toBe(w.buckets.length);
          expect(rc.currentCount).toBe(cur.count);
          relClose(rc.currentSum, cur.sum, 1e-9, 1e-9);
          expect(rc.currentValid).toBe(cur.valid);
          expect(rc.windowCount).toBe(ss.sum(w.buckets.map((b) => b.count)));
          relClose(rc.windowSum, ss.sum(w.buckets.map((b) => b.sum)), 1e-9, 1e-7);
          expect(rc.baselineBuckets).toBe(w.completed.length);
          expect(rc.windowStart).toBe(w.lo * bucketMs);
          if (w.completed.length === 0) {
            expect(rc.countMean).toBeNaN();
            continue;
          }
          const counts = w.completed.map((b) => b.count);
          const sums = w.completed.map((b) => b.sum);
          relClose(rc.countMean, ss.mean(counts), 1e-9, 1e-9);
          relClose(rc.countVariance, ss.variance(counts), 1e-6, 1e-7);
          relClose(rc.sumMean, ss.mean(sums), 1e-9, 1e-7);
          relClose(rc.sumVariance, ss.variance(sums), 1e-6, 1e-5);
          if (sorted !== 'none') {
            const vals = sorted === 'count' ? counts : sums;
            relClose(rc.median(), ss.median(vals), 1e-9, 1e-9);
            relClose(rc.mad(), ss.medianAbsoluteDeviation(vals), 1e-9, 1e-9);
            relClose(rc.quantile(0.9), ss.quantile(vals, 0.9), 1e-9, 1e-9);
          } else expect(rc.median()).toBeNaN();
          checks++;
        }
        // Checkpoint now and then: the restored counter must continue exactly.
        if (step % 97 === 0) {
          const j = JSON.parse(JSON.stringify(rc.toJSON()));
          expect(j.counts.length).toBeLessThanOrEqual(N);
          rc = RateCounter.fromJSON(j);
          expect(rc.toJSON()).toEqual(j);
        }
      }
    }
    expect(checks).toBeGreaterThan(5000);
  });

  it('rolls over long silences in O(window): the baseline then holds the empty buckets', () => {
    const rc = new RateCounter({ bucketMs: 1000, buckets: 11, sorted: 'count' });
    for (let i = 0; i < 50; i++) rc.add(i * 1000 + 10, 2, 3);
    expect(rc.countMean).toBe(3);
    rc.add(1e12, 1); // 31,000 years of silence: at most `buckets` steps
    expect(rc.baselineBuckets).toBe(10);
    expect(rc.countMean).toBe(0);
    expect(rc.median()).toBe(0);
    expect(rc.windowCount).toBe(1);
    expect(rc.windowSum).toBe(1);
  });

  it('restores under other options: another window keeps the newest buckets, another bucket length starts empty', () => {
    const rng = mulberry32(77);
    const rc = new RateCounter({ bucketMs: 1000, buckets: 40, sorted: 'sum' });
    let t = 0;
    for (let i = 0; i < 2000; i++) {
      t += Math.floor(rng() * 400);
      rc.add(t, Math.floor(rng() * 100));
    }
    const j = JSON.parse(JSON.stringify(rc.toJSON()));
    const smaller = RateCounter.fromJSON(j, { bucketMs: 1000, buckets: 10, sorted: 'count' });
    const all = rc.bucketsInWindow();
    const kept = all.slice(-10);
    expect(smaller.bucketsInWindow()).toEqual(kept);
    const done = kept.slice(0, -1);
    relClose(smaller.countMean, ss.mean(done.map((b) => b.count)), 1e-12);
    relClose(smaller.sumVariance, ss.variance(done.map((b) => b.sum)), 1e-9);
    expect(smaller.median()).toBe(ss.median(done.map((b) => b.count)));
    expect(smaller.windowCount).toBe(ss.sum(kept.map((b) => b.count)));
    const other = RateCounter.fromJSON(j, { bucketMs: 5000, buckets: 40 });
    expect(other.currentIndex).toBeNull();
    expect(other.windowCount).toBe(0);
    expect(() => RateCounter.fromJSON({ bucketMs: 1000 })).toThrow(TypeError);
    expect(() => RateCounter.fromJSON({ ...j, counts: [1], sums: [] })).toThrow(TypeError);
    expect(() => new RateCounter({ bucketMs: 1000, buckets: 1 })).toThrow(RangeError);
  });
});
