/**
 * Distinct ids in an event-time sliding window, O(1) amortized per push: a TimeWindow ring of
 * (ts, id, value) samples plus a count map id → occurrences in the window. A pushed id whose count goes
 * 0 → 1 is new; an evicted sample whose count goes 1 → 0 removes the id. `distinct` is the map's size.
 *
 * Window semantics are the TimeWindow's: samples with ts > horizon − spanMs (horizon = largest time seen),
 * at most maxCount of them (the newest), so memory is bounded by maxCount samples and maxCount ids.
 * Timestamps are expected to be non-decreasing; an older one is accepted and evicts in FIFO order.
 */
import { TimeWindow } from './event-window.ts';

export interface DistinctCountWindowJSON<T> {
  spanMs: number;
  maxCount: number;
  horizon: number | null;
  ts: number[];
  ids: string[];
  values: T[];
}

interface Sample<T> {
  id: string;
  value: T;
}

export class DistinctCountWindow<T = null> {
  readonly spanMs: number;
  readonly maxCount: number;
  private readonly ring: TimeWindow<Sample<T>>;
  private readonly counts = new Map<string, number>();
  private readonly evict = (s: Sample<T>): void => {
    const c = this.counts.get(s.id) ?? 0;
    if (c <= 1) this.counts.delete(s.id);
    else this.counts.set(s.id, c - 1);
  };

  constructor(spanMs: number, maxCount: number) {
    this.ring = new TimeWindow<Sample<T>>(spanMs, maxCount);
    this.spanMs = spanMs;
    this.maxCount = maxCount;
  }

  /** Distinct ids in the window. */
  get distinct(): number {
    return this.counts.size;
  }
  /** Samples in the window. */
  get size(): number {
    return this.ring.size;
  }
  get horizon(): number {
    return this.ring.horizon;
  }
  get oldestTs(): number | undefined {
    return this.ring.oldestTs;
  }
  /** Occurrences of id in the window (0 when absent). */
  count(id: string): number {
    return this.counts.get(id) ?? 0;
  }
  has(id: string): boolean {
    return this.counts.has(id);
  }

  /** Appends a sample (evicting what left the window first); returns true when id is new to the window. */
  push(ts: number, id: string, value: T): boolean {
    this.ring.push(ts, { id, value }, this.evict);
    const c = this.counts.get(id) ?? 0;
    this.counts.set(id, c + 1);
    return c === 0;
  }

  /** Advances the horizon to `now` and evicts samples with ts <= horizon − spanMs. */
  expire(now: number): void {
    this.ring.expire(now, this.evict);
  }

  /** Samples oldest → newest (O(n): for building evidence, not for the hot path). */
  *entries(): IterableIterator<{ ts: number; id: string; value: T }> {
    for (const e of this.ring.entries()) yield { ts: e.ts, id: e.value.id, value: e.value.value };
  }

  toJSON(): DistinctCountWindowJSON<T> {
    const w = this.ring.toJSON();
    return {
      spanMs: w.spanMs,
      maxCount: w.maxCount,
      horizon: w.horizon,
      ts: w.ts,
      ids: w.values.map((s) => s.id),
      values: w.values.map((s) => s.value),
    };
  }

  /**
   * Rebuilds from JSON, under this window's own span and count when given (so a state written with other
   * parameters is trimmed to them); `reviveValue` validates/rebuilds the values.
   */
  static fromJSON<T>(json: unknown, reviveValue: (v: unknown) => T, bounds?: { spanMs: number; maxCount: number }): DistinctCountWindow<T> {
    const j = json as Partial<DistinctCountWindowJSON<unknown>> | null;
    if (
      !j ||
      typeof j.spanMs !== 'number' ||
      typeof j.maxCount !== 'number' ||
      !Array.isArray(j.ts) ||
      !Array.isArray(j.ids) ||
      !Array.isArray(j.values) ||
      j.ts.length !== j.ids.length ||
      j.ts.length !== j.values.length
    ) {
      throw new TypeError('DistinctCountWindow.fromJSON: expected { spanMs, maxCount, horizon, ts[], ids[], values[] }');
    }
    const w = new DistinctCountWindow<T>(bounds?.spanMs ?? j.spanMs, bounds?.maxCount ?? j.maxCount);
    for (let i = 0; i < j.ts.length; i++) {
      const t = j.ts[i];
      const id = j.ids[i];
      if (typeof t !== 'number' || !Number.isFinite(t) || typeof id !== 'string') throw new TypeError('DistinctCountWindow.fromJSON: bad sample');
      w.push(t, id, reviveValue(j.values[i]));
    }
    if (typeof j.horizon === 'number') w.expire(j.horizon);
    return w;
  }
}
