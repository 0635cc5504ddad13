/**
 * wash_trade_public's PriceIndex (open addressing on a price's bits) against the Map it replaces: the same
 * answers under random inserts, lookups and deletes (clusters that wrap around the table, growth), with
 * Map's key semantics for −0 and NaN.
 */
import { describe, expect, it } from 'vitest';
import { PriceIndex, type PriceRuns } from '../../src/detectors/wash-trade-public.ts';
import { mulberry32 } from '../helpers/random.ts';

const entry = (price: number): PriceRuns => ({ price, list: [], prev: null, next: null });

describe('PriceIndex', () => {
  it('answers as a Map<number, …> under random set / get / delete', () => {
    for (let seed = 1; seed <= 6; seed++) {
      const rng = mulberry32(seed);
      const idx = new PriceIndex();
      const ref = new Map<number, PriceRuns>();
      // Few distinct prices (many collisions and long clusters), as cents near a level, plus odd keys.
      const pool = Array.from({ length: 40 + Math.floor(rng() * 400) }, () => Math.round((60_000 + rng() * 50) * 100) / 100);
      pool.push(0, 1e-300, 2 ** 53, 0.1 + 0.2);
      for (let i = 0; i < 20_000; i++) {
        const x = pool[Math.floor(rng() * pool.length)] as number;
        const u = rng();
        if (u < 0.45) {
          if (ref.has(x)) continue;
          const e = entry(x);
          idx.set(x, e);
          ref.set(x, e);
        } else if (u < 0.75) {
          idx.delete(x);
          ref.delete(x);
        } else {
          expect(idx.get(x), `seed ${seed} step ${i} get ${x}`).toBe(ref.get(x));
        }
        expect(idx.size).toBe(ref.size);
      }
      for (const x of pool) expect(idx.get(x), `seed ${seed} final ${x}`).toBe(ref.get(x));
    }
  });

  it('takes −0 as +0 and every NaN as one key, as Map does', () => {
    const idx = new PriceIndex();
    const z = entry(0);
    idx.set(-0, z);
    expect(idx.get(0)).toBe(z);
    const n = entry(Number.NaN);
    idx.set(Number.NaN, n);
    expect(idx.get(0 / 0)).toBe(n);
    idx.delete(0);
    expect(idx.get(-0)).toBeUndefined();
    expect(idx.get(Number.NaN)).toBe(n);
    expect(idx.size).toBe(1);
  });
});
