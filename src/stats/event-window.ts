/**
 * A FIFO of (ts, value) samples bounded by an event-time span AND a maximum count, on a ring buffer (no
 * Array.shift on the hot path). Samples older than the span, or beyond the count, are evicted through a
 * callback so owners can remove them from their RollingMoments / SortedWindow in O(1) amortized.
 *
 * Window semantics: after `push(ts, …)` / `expire(now)`, it holds the samples with ts > horizon − spanMs,
 * where horizon is the largest time seen, and at most maxCount of them (the newest). Timestamps are
 * expected to be non-decreasing; an older sample is still accepted (appended at the back) and evicts in
 * FIFO order, so owners that care about order must filter late data themselves.
 */

export type EvictFn<T> = (value: T, ts: number) => void;

export interface TimeWindowJSON<T> {
  spanMs: number;
  maxCount: number;
  horizon: number | null;
  ts: number[];
  values: T[];
}

const INITIAL_ALLOC = 16;

export class TimeWindow<T> {
  readonly spanMs: number;
  readonly maxCount: number;
  private ts: Float64Array;
  private vals: (T | undefined)[];
  private head = 0;
  private n = 0;
  private horizonTs = Number.NEGATIVE_INFINITY;

  constructor(spanMs: number, maxCount: number) {
    if (!(spanMs > 0)) throw new RangeError(`TimeWindow: spanMs must be > 0 (got ${spanMs})`);
    if (!Number.isInteger(maxCount) || maxCount < 1) throw new RangeError(`TimeWindow: maxCount must be a positive integer (got ${maxCount})`);
    this.spanMs = spanMs;
    this.maxCount = maxCount;
    const alloc = Math.min(maxCount, INITIAL_ALLOC);
    this.ts = new Float64Array(alloc);
    this.vals = new Array<T | undefined>(alloc);
  }

  get size(): number {
    return this.n;
  }
  /** Largest time seen (−Infinity before the first push/expire). */
  get horizon(): number {
    return this.horizonTs;
  }
  /** Oldest sample's time, or undefined when empty. */
  get oldestTs(): number | undefined {
    return this.n === 0 ? undefined : this.ts[this.head];
  }
  get newestTs(): number | undefined {
    return this.n === 0 ? undefined : this.ts[(this.head + this.n - 1) % this.ts.length];
  }
  oldest(): T | undefined {
    return this.n === 0 ? undefined : this.vals[this.head];
  }
  newest(): T | undefined {
    return this.n === 0 ? undefined : this.vals[(this.head + this.n - 1) % this.ts.length];
  }
  /** i-th sample from the oldest (0) to the newest (size − 1). */
  at(i: number): { ts: number; value: T } {
    if (i < 0 || i >= this.n) throw new RangeError(`TimeWindow.at: index ${i} out of range [0, ${this.n})`);
    const k = (this.head + i) % this.ts.length;
    return { ts: this.ts[k] as number, value: this.vals[k] as T };
  }

  /**
   * Appends a sample and evicts what fell out of the window (by time, then by count), calling onEvict for
   * each evicted sample, oldest first. Returns the number evicted.
   */
  push(ts: number, value: T, onEvict?: EvictFn<T>): number {
    if (!Number.isFinite(ts)) throw new RangeError(`TimeWindow.push: non-finite ts ${ts}`);
    let evicted = this.expire(ts, onEvict);
    if (this.n === this.maxCount) {
      this.shiftOne(onEvict);
      evicted += 1;
    }
    if (this.n === this.ts.length) this.grow();
    const k = (this.head + this.n) % this.ts.length;
    this.ts[k] = ts;
    this.vals[k] = value;
    this.n += 1;
    return evicted;
  }

  /** Advances the horizon to `now` (if later) and evicts samples with ts <= horizon − spanMs. */
  expire(now: number, onEvict?: EvictFn<T>): number {
    if (now > this.horizonTs) this.horizonTs = now;
    const cutoff = this.horizonTs - this.spanMs;
    let evicted = 0;
    while (this.n > 0 && (this.ts[this.head] as number) <= cutoff) {
      this.shiftOne(onEvict);
      evicted += 1;
    }
    return evicted;
  }

  clear(onEvict?: EvictFn<T>): void {
    while (this.n > 0) this.shiftOne(onEvict);
  }

  *entries(): IterableIterator<{ ts: number; value: T }> {
    for (let i = 0; i < this.n; i++) yield this.at(i);
  }

  private shiftOne(onEvict?: EvictFn<T>): void {
    const h = this.head;
    const t = this.ts[h] as number;
    const v = this.vals[h] as T;
    this.vals[h] = undefined; // drop the reference
    this.head = (h + 1) % this.ts.length;
    this.n -= 1;
    if (onEvict) onEvict(v, t);
  }

  private grow(): void {
    const cap = Math.min(this.maxCount, this.ts.length * 2);
    const ts = new Float64Array(cap);
    const vals = new Array<T | undefined>(cap);
    for (let i = 0; i < this.n; i++) {
      const k = (this.head + i) % this.ts.length;
      ts[i] = this.ts[k] as number;
      vals[i] = this.vals[k];
    }
    this.ts = ts;
    this.vals = vals;
    this.head = 0;
  }

  toJSON(): TimeWindowJSON<T> {
    const ts: number[] = [];
    const values: T[] = [];
    for (let i = 0; i < this.n; i++) {
      const k = (this.head + i) % this.ts.length;
      ts.push(this.ts[k] as number);
      values.push(this.vals[k] as T);
    }
    return {
      spanMs: this.spanMs,
      maxCount: this.maxCount,
      horizon: Number.isFinite(this.horizonTs) ? this.horizonTs : null,
      ts,
      values,
    };
  }

  /** `reviveValue` rebuilds values that are not plain JSON (default: taken as they are). */
  static fromJSON<T>(json: unknown, reviveValue: (v: unknown) => T = (v) => v as T): TimeWindow<T> {
    const j = json as Partial<TimeWindowJSON<unknown>> | null;
    if (!j || typeof j.spanMs !== 'number' || typeof j.maxCount !== 'number' || !Array.isArray(j.ts) || !Array.isArray(j.values) || j.ts.length !== j.values.length) {
      throw new TypeError('TimeWindow.fromJSON: expected { spanMs, maxCount, horizon, ts[], values[] }');
    }
    const w = new TimeWindow<T>(j.spanMs, j.maxCount);
    if (j.ts.length > w.maxCount) throw new TypeError('TimeWindow.fromJSON: more samples than maxCount');
    for (let i = 0; i < j.ts.length; i++) {
      const t = j.ts[i];
      if (typeof t !== 'number' || !Number.isFinite(t)) throw new TypeError('TimeWindow.fromJSON: ts must be finite numbers');
      if (w.n === w.ts.length) w.grow();
      w.ts[w.n] = t;
      w.vals[w.n] = reviveValue(j.values[i]);
      w.n += 1;
    }
    w.horizonTs = typeof j.horizon === 'number' ? j.horizon : Number.NEGATIVE_INFINITY;
    return w;
  }
}
