import { describe, expect, it } from 'vitest';
import * as ss from 'simple-statistics';
import { Ewma, RollingMoments, SlidingExtremum, SlidingMinMax, SortedWindow, TimeWindow } from '../src/stats/index.ts';
import { mulberry32 } from './helpers/random.ts';

/** Values with many duplicates and negatives: small integer grid, occasionally scaled / offset. */
function valueGen(rng: () => number, style: number): () => number {
  switch (style % 4) {
    case 0:
      return () => Math.floor(rng() * 11) - 5; // heavy duplicates, negatives
    case 1:
      return () => (rng() - 0.5) * 2e-3; // log-return sized
    case 2:
      return () => 60_000 + Math.floor(rng() * 200) / 100; // prices with cents, large offset
    default:
      return () => (rng() < 0.6 ? 0 : (rng() - 0.5) * 10); // mostly zeros (MAD 0 regime)
  }
}

function relClose(actual: number, expected: number, rel = 1e-9, abs = 1e-12): void {
  const tol = Math.max(abs, rel * Math.abs(expected));
  expect(Math.abs(actual - expected), `actual ${actual} vs expected ${expected}`).toBeLessThanOrEqual(tol);
}

/** Random add/remove interleaving; `check` runs against the oracle on the current multiset. */
function randomWalkOverMultiset(seed: number, steps: number, maxSize: number, onStep: (op: 'add' | 'remove', x: number, contents: number[]) => void): void {
  const rng = mulberry32(seed);
  const gen = valueGen(rng, seed);
  const contents: number[] = [];
  for (let s = 0; s < steps; s++) {
    const doAdd = contents.length === 0 || (contents.length < maxSize && rng() < 0.55);
    if (doAdd) {
      const x = gen();
      contents.push(x);
      onStep('add', x, contents);
    } else {
      const i = Math.floor(rng() * contents.length);
      const [x] = contents.splice(i, 1);
      onStep('remove', x as number, contents);
    }
  }
}

describe('RollingMoments', () => {
  it('matches simple-statistics mean / variance / sampleVariance under random add/remove', () => {
    let checks = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const rm = new RollingMoments();
      let scale = 0; // largest |x| seen in this run: removal leaves rounding residue of that order
      randomWalkOverMultiset(seed, 600, 80, (op, x, contents) => {
        scale = Math.max(scale, Math.abs(x));
        if (op === 'add') rm.add(x);
        else rm.remove(x);
        expect(rm.count).toBe(contents.length);
        if (contents.length === 0) {
          expect(rm.mean).toBeNaN();
          return;
        }
        // Tolerances relative to the data's magnitude (prices near 60,000 have variance near 0).
        relClose(rm.mean, ss.mean(contents), 1e-12, scale * 1e-12);
        relClose(rm.variance, ss.variance(contents), 1e-7, scale * scale * 1e-12);
        if (contents.length >= 2) relClose(rm.sampleVariance, ss.sampleVariance(contents), 1e-7, scale * scale * 1e-12);
        else expect(rm.sampleVariance).toBeNaN();
        checks++;
      });
    }
    expect(checks).toBeGreaterThan(10_000);
  });

  it('resets exactly when emptied and round-trips through JSON', () => {
    const rm = new RollingMoments();
    for (const x of [1e9 + 0.1, 1e9 + 0.2, 1e9 + 0.3]) rm.add(x);
    for (const x of [1e9 + 0.1, 1e9 + 0.2, 1e9 + 0.3]) rm.remove(x);
    expect(rm.toJSON()).toEqual({ n: 0, mean: 0, m2: 0 });
    rm.add(2);
    rm.add(4);
    rm.add(9);
    const back = RollingMoments.fromJSON(JSON.parse(JSON.stringify(rm)));
    back.add(1);
    rm.add(1);
    expect(back.toJSON()).toEqual(rm.toJSON());
    expect(back.mean).toBe(4);
    expect(() => rm.add(Number.NaN)).toThrow(RangeError);
    expect(() => new RollingMoments().remove(1)).toThrow(RangeError);
  });
});

describe('SortedWindow', () => {
  const ps = [0, 0.01, 0.1, 0.25, 0.333, 0.5, 0.75, 0.9, 0.99, 1];

  it('median / quantiles / MAD equal simple-statistics on the current contents', () => {
    let checks = 0;
    let evenChecks = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const cap = 64;
      const w = new SortedWindow(cap);
      randomWalkOverMultiset(seed, 400, cap, (op, x, contents) => {
        if (op === 'add') w.insert(x);
        else expect(w.remove(x)).toBe(true);
        expect(w.size).toBe(contents.length);
        if (contents.length === 0) {
          expect(w.median()).toBeNaN();
          expect(w.mad()).toBeNaN();
          return;
        }
        // Same arithmetic as the oracle, so equality is exact, not approximate.
        expect(w.median()).toBe(ss.median(contents));
        expect(w.mad()).toBe(ss.medianAbsoluteDeviation(contents));
        for (const p of ps) expect(w.quantile(p)).toBe(ss.quantile(contents, p));
        checks++;
        if (contents.length % 2 === 0) evenChecks++;
      });
    }
    expect(checks).toBeGreaterThan(10_000);
    expect(evenChecks).toBeGreaterThan(3_000);
  });

  it('MAD matches on hand-made edge cases (ties straddling the median, all equal, size 1 and 2)', () => {
    const cases: number[][] = [
      [5],
      [1, 2],
      [3, 3, 3, 3],
      [1, 1, 2, 2, 4, 6, 9],
      [-10, -1, 0, 0, 0, 1, 50],
      [0, 0, 0, 0, 0, 7, 7, 7],
      [-3, -3, -3, 4, 4, 4],
      [1, 2, 3, 100, 101, 102, 103, 104],
    ];
    for (const c of cases) {
      const w = new SortedWindow(16);
      for (const x of [...c].reverse()) w.insert(x);
      expect(w.toArray()).toEqual([...c].sort((a, b) => a - b));
      expect(w.mad()).toBe(ss.medianAbsoluteDeviation(c));
      expect(w.median()).toBe(ss.median(c));
    }
  });

  it('is bounded, rejects NaN, reports missing removals, and round-trips through JSON', () => {
    const w = new SortedWindow(3);
    w.insert(3);
    w.insert(1);
    w.insert(2);
    expect(w.isFull).toBe(true);
    expect(() => w.insert(4)).toThrow(/full/);
    expect(() => w.insert(Number.NaN)).toThrow(RangeError);
    expect(w.remove(7)).toBe(false);
    expect(w.remove(2)).toBe(true);
    const back = SortedWindow.fromJSON(JSON.parse(JSON.stringify(w)));
    expect(back.toArray()).toEqual([1, 3]);
    expect(back.capacity).toBe(3);
    back.insert(0);
    expect(back.median()).toBe(1);
    expect(() => SortedWindow.fromJSON({ capacity: 3, values: [2, 1] })).toThrow(/sorted/);
  });
});

describe('TimeWindow', () => {
  it('evicts by time (ts <= horizon − span) and by count, oldest first, via the callback', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const rng = mulberry32(seed * 7919);
      const span = 50 + Math.floor(rng() * 500);
      const maxCount = 1 + Math.floor(rng() * 40);
      const w = new TimeWindow<number>(span, maxCount);
      const all: { ts: number; v: number }[] = [];
      const evicted: number[] = [];
      let ts = 1_000_000;
      for (let i = 0; i < 800; i++) {
        ts += rng() < 0.3 ? 0 : Math.floor(rng() * 40);
        all.push({ ts, v: i });
        w.push(ts, i, (v) => evicted.push(v));
        // Reference: the newest maxCount samples with ts > ts − span.
        const inTime = all.filter((s) => s.ts > ts - span);
        const expected = inTime.slice(Math.max(0, inTime.length - maxCount)).map((s) => s.v);
        const actual = [...w.entries()].map((e) => e.value);
        expect(actual).toEqual(expected);
        // Everything ever pushed is either still inside or was evicted exactly once, in FIFO order.
        expect(evicted.length + w.size).toBe(i + 1);
      }
      expect(evicted).toEqual([...evicted].sort((a, b) => a - b));
    }
  });

  it('expire() advances time without a push; JSON round trip keeps contents and horizon', () => {
    const w = new TimeWindow<string>(100, 10);
    w.push(0, 'a');
    w.push(50, 'b');
    w.push(99, 'c');
    const out: string[] = [];
    expect(w.expire(150, (v) => out.push(v))).toBe(2);
    expect(out).toEqual(['a', 'b']);
    expect(w.oldestTs).toBe(99);
    const back = TimeWindow.fromJSON<string>(JSON.parse(JSON.stringify(w)));
    expect(back.horizon).toBe(150);
    expect([...back.entries()]).toEqual([{ ts: 99, value: 'c' }]);
    back.push(199, 'd', (v) => out.push(v));
    expect(out).toEqual(['a', 'b', 'c']);
    expect(back.newest()).toBe('d');
  });
});

describe('SlidingExtremum / SlidingMinMax', () => {
  it('equal Math.min / Math.max over the window (time and count bounds)', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const rng = mulberry32(seed * 104729);
      const span = 20 + Math.floor(rng() * 300);
      const maxCount = seed % 3 === 0 ? Number.POSITIVE_INFINITY : 1 + Math.floor(rng() * 50);
      const mm = new SlidingMinMax(span, maxCount);
      const all: { ts: number; v: number }[] = [];
      let ts = 0;
      let maxDeque = 0;
      for (let i = 0; i < 1000; i++) {
        ts += Math.floor(rng() * 10);
        const v = seed % 2 === 0 ? Math.floor(rng() * 7) - 3 : rng() * 100 - 50;
        all.push({ ts, v });
        mm.push(ts, v);
        const inTime = all.filter((s) => s.ts > ts - span);
        const win = inTime.slice(Number.isFinite(maxCount) ? Math.max(0, inTime.length - maxCount) : 0).map((s) => s.v);
        expect(mm.min).toBe(Math.min(...win));
        expect(mm.max).toBe(Math.max(...win));
        maxDeque = Math.max(maxDeque, (mm.toJSON().max.entries.length));
      }
      if (Number.isFinite(maxCount)) expect(maxDeque).toBeLessThanOrEqual(maxCount);
    }
  });

  it('expires on time alone and survives a JSON round trip', () => {
    const mx = new SlidingExtremum('max', 10);
    mx.push(0, 5);
    mx.push(5, 3);
    expect(mx.value).toBe(5);
    mx.expire(10);
    expect(mx.value).toBe(3);
    mx.expire(100);
    expect(mx.value).toBeNaN();
    const mm = new SlidingMinMax(100, 3);
    for (const [t, v] of [[1, 4], [2, 9], [3, 1], [4, 6]] as const) mm.push(t, v);
    const back = SlidingMinMax.fromJSON(JSON.parse(JSON.stringify(mm)));
    expect([back.min, back.max]).toEqual([1, 9]);
    back.push(5, 2);
    mm.push(5, 2);
    expect([back.min, back.max]).toEqual([1, 6]);
    expect(back.toJSON()).toEqual(mm.toJSON());
  });
});

describe('Ewma', () => {
  it('alpha mode equals the direct weighted formula', () => {
    const rng = mulberry32(42);
    for (const alpha of [0.01, 0.1, 0.5, 1]) {
      const e = new Ewma({ alpha });
      const xs: number[] = [];
      for (let n = 1; n <= 200; n++) {
        const x = rng() * 10 - 3;
        xs.push(x);
        e.update(x);
        // Weights: first sample (1−α)^(n−1), sample i>1: α(1−α)^(n−i); they sum to 1.
        const w = xs.map((_, i) => (i === 0 ? (1 - alpha) ** (n - 1) : alpha * (1 - alpha) ** (n - 1 - i)));
        const mean = xs.reduce((acc, x2, i) => acc + (w[i] as number) * x2, 0);
        const variance = xs.reduce((acc, x2, i) => acc + (w[i] as number) * (x2 - mean) ** 2, 0);
        relClose(e.mean, mean, 1e-9, 1e-9);
        relClose(e.variance, variance, 1e-7, 1e-9);
      }
    }
  });

  it('alpha mode follows the textbook recurrence', () => {
    const e = new Ewma({ alpha: 0.2 });
    let m = 0;
    let v = 0;
    const xs = [3, 5, 4, 10, -2, 7];
    xs.forEach((x, i) => {
      e.update(x);
      if (i === 0) {
        m = x;
        v = 0;
      } else {
        const d = x - m;
        m += 0.2 * d;
        v = 0.8 * (v + 0.2 * d * d);
      }
      relClose(e.mean, m, 1e-12);
      relClose(e.variance, v, 1e-12);
    });
  });

  it('half-life mode equals normalized weights 2^(−age/h) in event time', () => {
    const rng = mulberry32(7);
    const h = 1000;
    const e = new Ewma({ halfLifeMs: h });
    const xs: number[] = [];
    const ts: number[] = [];
    let t = 0;
    for (let n = 0; n < 300; n++) {
      t += rng() < 0.2 ? 0 : Math.floor(rng() * 400);
      const x = rng() * 4 - 2;
      xs.push(x);
      ts.push(t);
      e.update(x, t);
      const w = ts.map((ti) => 2 ** (-(t - ti) / h));
      const W = w.reduce((a, b) => a + b, 0);
      const mean = xs.reduce((acc, xi, i) => acc + (w[i] as number) * xi, 0) / W;
      const variance = xs.reduce((acc, xi, i) => acc + (w[i] as number) * (xi - mean) ** 2, 0) / W;
      relClose(e.mean, mean, 1e-9, 1e-12);
      relClose(e.variance, variance, 1e-7, 1e-12);
      relClose(e.weight, W, 1e-9);
    }
    const back = Ewma.fromJSON(JSON.parse(JSON.stringify(e)));
    back.update(1, t + 500);
    e.update(1, t + 500);
    expect(back.toJSON()).toEqual(e.toJSON());
    expect(() => new Ewma({ halfLifeMs: 10 }).update(1)).toThrow(/ts/);
    expect(() => new Ewma({ alpha: 0 })).toThrow(RangeError);
  });
});
