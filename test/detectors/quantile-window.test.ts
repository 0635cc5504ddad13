/**
 * QuantileWindow (feed_gap's baseline) against what it replaces, RobustWindow (TimeWindow + SortedWindow):
 * on random streams with many ties, evictions by count and by time, and restores, the quantiles, median
 * and JSON must be bit-identical. And the rule wrapper's per-kind watermarks: lateness per data kind and
 * the JSON's `wk` (keys in the order first seen) as before they became flat arrays.
 */
import { describe, expect, it } from 'vitest';
import type { CanonicalEvent, Quote, Trade } from '../../src/core/events.ts';
import { QuantileWindow, RobustWindow } from '../../src/detectors/market-common.ts';
import { applyRule } from '../../src/detectors/rule.ts';
import type { DetectorInstance, FindingDraft } from '../../src/detectors/types.ts';
import { mulberry32 } from '../helpers/random.ts';

const PS = [0, 0.01, 0.25, 0.5, 0.9, 0.99, 1];

function expectSame(q: QuantileWindow, r: RobustWindow, where: string): void {
  expect(q.size, where).toBe(r.size);
  for (const p of PS) expect(Object.is(q.quantile(p), r.quantile(p)), `${where} p=${p}: ${q.quantile(p)} vs ${r.quantile(p)}`).toBe(true);
  expect(Object.is(q.median(), r.sorted.median()), where).toBe(true);
}

describe('QuantileWindow', () => {
  it('matches RobustWindow exactly on random streams (ties, count and time eviction, expire, restore)', () => {
    for (let seed = 1; seed <= 12; seed++) {
      const rng = mulberry32(seed);
      const windowMs = 50 + Math.floor(rng() * 2000);
      const maxSamples = 1 + Math.floor(rng() * 300);
      // Gaps like inter-arrival times: mostly a few small integers (ties), some fractional, a long tail.
      const value = (): number => {
        const u = rng();
        if (u < 0.4) return 0;
        if (u < 0.8) return Math.floor(rng() * 10);
        if (u < 0.9) return rng() * 100;
        return Math.floor(-Math.log(1 - rng()) * 500);
      };
      let q = new QuantileWindow(windowMs, maxSamples);
      let r = new RobustWindow(windowMs, maxSamples);
      let ts = 1_000;
      for (let i = 0; i < 3_000; i++) {
        ts += rng() < 0.3 ? 0 : Math.floor(rng() * (rng() < 0.02 ? 5 * windowMs : 20));
        const v = value();
        q.push(ts, v);
        r.push(ts, v);
        if (rng() < 0.02) {
          const now = ts + Math.floor(rng() * windowMs);
          q.expire(now);
          r.expire(now);
        }
        expectSame(q, r, `seed ${seed} step ${i}`);
        if (i % 500 === 250) {
          expect(q.toJSON(), `seed ${seed} step ${i}`).toEqual(r.toJSON());
          // Restore from each other's JSON, also under other bounds (a hot reload).
          const w2 = Math.max(1, Math.floor(windowMs / 2));
          const m2 = Math.max(1, maxSamples - 7);
          expectSame(QuantileWindow.restore(r.toJSON(), w2, m2, 'x'), RobustWindow.restore(q.toJSON(), w2, m2, 'x'), `restore seed ${seed}`);
          q = QuantileWindow.restore(JSON.parse(JSON.stringify(q.toJSON())), windowMs, maxSamples, 'x');
          r = RobustWindow.restore(JSON.parse(JSON.stringify(r.toJSON())), windowMs, maxSamples, 'x');
          expectSame(q, r, `restored seed ${seed}`);
        }
      }
      expect(q.toJSON()).toEqual(r.toJSON());
    }
  });

  it('matches RobustWindow when read rarely (sorted copy dropped after maxSamples unread pushes, rebuilt on read)', () => {
    for (let seed = 101; seed <= 108; seed++) {
      const rng = mulberry32(seed);
      const windowMs = 200 + Math.floor(rng() * 3000);
      const maxSamples = 2 + Math.floor(rng() * 200);
      let q = new QuantileWindow(windowMs, maxSamples);
      const r = new RobustWindow(windowMs, maxSamples);
      let ts = 1_000;
      // Reads come in bursts (kept in sync) and after long silences (rebuilt), across growth and evictions.
      let nextRead = 0;
      for (let i = 0; i < 4_000; i++) {
        ts += rng() < 0.3 ? 0 : Math.floor(rng() * (rng() < 0.01 ? 3 * windowMs : 15));
        const v = rng() < 0.5 ? Math.floor(rng() * 6) : rng() * 50;
        q.push(ts, v);
        r.push(ts, v);
        if (rng() < 0.01) {
          const now = ts + Math.floor(rng() * windowMs);
          q.expire(now);
          r.expire(now);
        }
        if (i === nextRead) {
          expectSame(q, r, `seed ${seed} step ${i}`);
          const u = rng();
          nextRead = i + (u < 0.5 ? 1 + Math.floor(rng() * 3) : u < 0.8 ? maxSamples + Math.floor(rng() * 3 * maxSamples) : Math.floor(rng() * maxSamples));
        }
        if (i % 997 === 500) {
          // A restored window starts unsorted; read it only later.
          q = QuantileWindow.restore(JSON.parse(JSON.stringify(q.toJSON())), windowMs, maxSamples, 'x');
          expect(q.toJSON()).toEqual(r.toJSON());
        }
      }
      expectSame(q, r, `seed ${seed} end`);
      expect(q.toJSON()).toEqual(r.toJSON());
    }
  });

  it('rejects bad JSON as RobustWindow does', () => {
    expect(() => QuantileWindow.restore({ horizon: null, ts: [1], values: [] }, 100, 10, 'feed_gap: trade')).toThrow('feed_gap: trade: baseline JSON must be');
    expect(() => QuantileWindow.restore({ horizon: null, ts: [1], values: [Number.NaN] }, 100, 10, 'w')).toThrow('finite numbers');
    expect(() => QuantileWindow.restore({ horizon: 'x', ts: [], values: [] }, 100, 10, 'w')).toThrow('horizon');
  });
});

describe('rule wrapper: per-kind watermarks', () => {
  /** Records what reaches it; reads trades and quotes (so the rule keeps a watermark per kind). */
  const inner: DetectorInstance<{ seen: number[] }> = {
    name: 'probe',
    ruleId: 'probe.x',
    kinds: ['trade', 'quote', 'status'],
    newState: () => ({ seen: [] }),
    onEvent: (s, ev) => void s.seen.push(ev.ts),
    toJSON: (s) => ({ seen: [...s.seen] }),
    fromJSON: (j) => ({ seen: [...(j as { seen: number[] }).seen] }),
  };
  const trade = (ts: number): Trade => ({ kind: 'trade', venue: 'v', symbol: 's', ts, tradeId: `t${ts}`, price: 1, qty: 1, side: 'buy' }) as Trade;
  const quote = (ts: number): Quote => ({ kind: 'quote', venue: 'v', symbol: 's', ts, bidPx: 1, bidQty: 1, askPx: 2, askQty: 1 }) as Quote;

  it('judges lateness per kind and writes wk in first-seen order, surviving a restore', () => {
    const rule = applyRule(inner, { id: 'probe.x', allowedLatenessMs: 100, cooldownMs: 0, rulesVersion: 'v' });
    const s = rule.newState('v:s');
    const out: FindingDraft[] = [];
    const feed = (evs: CanonicalEvent[]) => evs.forEach((ev) => rule.onEvent(s, ev, out));
    feed([quote(5_000), trade(1_000), trade(950), trade(850), quote(4_950), quote(4_800)]);
    // The trades lag the quotes by far more than the lateness, yet only 850 and 4800 are late (in their own kind).
    expect((s.d as { seen: number[] }).seen).toEqual([5_000, 1_000, 950, 4_950]);
    const json = JSON.parse(JSON.stringify(rule.toJSON(s))) as { wk: Record<string, number>; late: number };
    expect(json.late).toBe(2);
    expect(Object.entries(json.wk)).toEqual([
      ['quote', 5_000],
      ['trade', 1_000],
    ]);
    const back = rule.fromJSON(json);
    expect(JSON.stringify(rule.toJSON(back))).toBe(JSON.stringify(json));
    rule.onEvent(back, trade(899), out); // 899 < 1000 − 100: late
    rule.onEvent(back, trade(901), out);
    expect((back.d as { seen: number[] }).seen).toEqual([5_000, 1_000, 950, 4_950, 901]);
    // A state that has seen no data event has no wk, as before.
    expect('wk' in (rule.toJSON(rule.newState('k')) as object)).toBe(false);
  });
});
