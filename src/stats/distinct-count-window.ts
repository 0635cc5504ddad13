/**
 * Distinct ids in an event-time sliding window, O(1) amortized per push: a ring of (ts, id, value)
 * samples plus a count map id → occurrences in the window. A pushed id whose count goes
 * 0 → 1 is new; an evicted sample whose count goes 1 → 0 removes the id. `distinct` is the map's size.
 *
 * Window semantics are the TimeWindow's: samples with ts > horizon − spanMs (horizon = largest time seen),
 * at most maxCount of them (the newest), so memory is bounded by maxCount samples and maxCount ids.
 * Timestamps are expected to be non-decreasing; an older one is accepted and evicts in FIFO order.
 */

export interface DistinctCountWindowJSON<T> {
  spanMs: number;
  maxCount: number;
  horizon: number | null;
  ts: number[];
  ids: string[];
  values: T[];
}

const INITIAL_ALLOC = 4;

export class DistinctCountWindow<T = null> {
  readonly spanMs: number;
  readonly maxCount: number;
  // The samples on a ring of parallel plain arrays (TimeWindow's semantics, without an object per
  // sample), from 4 slots grown by doubling up to maxCount: most keys hold a handful of samples, and a
  // typed array of more than 64 bytes costs ~0.6 µs to allocate outside the V8 heap.
  private tss: number[];
  private idv: string[];
  private vals: (T | undefined)[];
  private head = 0;
  private n = 0;
  private horizonTs = Number.NEGATIVE_INFINITY;
  private readonly counts = new Map<string, number>();

  constructor(spanMs: number, maxCount: number) {
    if (!(spanMs > 0)) throw new RangeError(`TimeWindow: spanMs must be > 0 (got ${spanMs})`);
    if (!Number.isInteger(maxCount) || maxCount < 1) throw new RangeError(`TimeWindow: maxCount must be a positive integer (got ${maxCount})`);
    this.spanMs = spanMs;
    this.maxCount = maxCount;
    const alloc = Math.min(maxCount, INITIAL_ALLOC);
    this.tss = new Array<number>(alloc);
    this.idv = new Array<string>(alloc);
    this.vals = new Array<T | undefined>(alloc);
  }

  /** Distinct ids in the window. */
  get distinct(): number {
    return this.counts.size;
  }
  /** Samples in the window. */
  get size(): number {
    return this.n;
  }
  /** Largest time seen (−Infinity before the first push/expire). */
  get horizon(): number {
    return this.horizonTs;
  }
  get oldestTs(): number | undefined {
    return this.n === 0 ? undefined : this.tss[this.head];
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
    if (!Number.isFinite(ts)) throw new RangeError(`TimeWindow.push: non-finite ts ${ts}`);
    this.expire(ts);
    if (this.n === this.maxCount) this.shiftOne();
    let cap = this.tss.length;
    if (this.n === cap) {
      this.grow();
      cap = this.tss.length;
    }
    let k = this.head + this.n;
    if (k >= cap) k -= cap;
    this.tss[k] = ts;
    this.idv[k] = id;
    this.vals[k] = value;
    this.n += 1;
    const c = this.counts.get(id) ?? 0;
    this.counts.set(id, c + 1);
    return c === 0;
  }

  /** Advances the horizon to `now` and evicts samples with ts <= horizon − spanMs. */
  expire(now: number): void {
    if (now > this.horizonTs) this.horizonTs = now;
    const cutoff = this.horizonTs - this.spanMs;
    while (this.n > 0 && (this.tss[this.head] as number) <= cutoff) this.shiftOne();
  }

  /** Samples oldest → newest (O(n): for building evidence, not for the hot path). */
  *entries(): IterableIterator<{ ts: number; id: string; value: T }> {
    const cap = this.tss.length;
    for (let i = 0, k = this.head; i < this.n; i++, k = k + 1 === cap ? 0 : k + 1) {
      yield { ts: this.tss[k] as number, id: this.idv[k] as string, value: this.vals[k] as T };
    }
  }

  private shiftOne(): void {
    const h = this.head;
    const id = this.idv[h] as string;
    this.vals[h] = undefined; // drop the reference
    this.head = h + 1 === this.tss.length ? 0 : h + 1;
    this.n -= 1;
    const c = this.counts.get(id) ?? 0;
    if (c <= 1) this.counts.delete(id);
    else this.counts.set(id, c - 1);
  }

  private grow(): void {
    const cap = this.tss.length;
    const next = Math.min(this.maxCount, cap * 2);
    // Allocated at their length (holey: the unused tail is never read), filled in ring order.
    const tss = new Array<number>(next);
    const idv = new Array<string>(next);
    const vals = new Array<T | undefined>(next);
    for (let i = 0, k = this.head; i < this.n; i++, k = k + 1 === cap ? 0 : k + 1) {
      tss[i] = this.tss[k] as number;
      idv[i] = this.idv[k] as string;
      vals[i] = this.vals[k];
    }
    this.tss = tss;
    this.idv = idv;
    this.vals = vals;
    this.head = 0;
  }

  toJSON(): DistinctCountWindowJSON<T> {
    const ts: number[] = [];
    const ids: string[] = [];
    const values: T[] = [];
    const cap = this.tss.length;
    for (let i = 0, k = this.head; i < this.n; i++, k = k + 1 === cap ? 0 : k + 1) {
      ts.push(this.tss[k] as number);
      ids.push(this.idv[k] as string);
      values.push(this.vals[k] as T);
    }
    return {
      spanMs: this.spanMs,
      maxCount: this.maxCount,
      horizon: Number.isFinite(this.horizonTs) ? this.horizonTs : null,
      ts,
      ids,
      values,
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
