/**
 * Sliding minimum / maximum over an event-time window with a monotonic deque: O(1) amortized per push,
 * O(1) query. The window holds the samples with ts > horizon − spanMs (horizon = largest time seen) and,
 * when maxCount is given, only the newest maxCount of them; so memory is bounded by maxCount + 1 entries.
 */

export type ExtremumMode = 'min' | 'max';

export interface SlidingExtremumJSON {
  mode: ExtremumMode;
  spanMs: number;
  maxCount: number | null;
  pushed: number;
  horizon: number | null;
  /** Deque entries front → back as [ts, value, seq]. */
  entries: [number, number, number][];
}

const INITIAL_ALLOC = 16;

export class SlidingExtremum {
  readonly mode: ExtremumMode;
  readonly spanMs: number;
  readonly maxCount: number;
  private ts: Float64Array;
  private vals: Float64Array;
  private seqs: Float64Array;
  private head = 0;
  private n = 0;
  private pushed = 0;
  private horizonTs = Number.NEGATIVE_INFINITY;

  constructor(mode: ExtremumMode, spanMs: number, maxCount: number = Number.POSITIVE_INFINITY) {
    if (!(spanMs > 0)) throw new RangeError(`SlidingExtremum: spanMs must be > 0 (got ${spanMs})`);
    if (!(maxCount === Number.POSITIVE_INFINITY || (Number.isInteger(maxCount) && maxCount >= 1))) {
      throw new RangeError(`SlidingExtremum: maxCount must be a positive integer (got ${maxCount})`);
    }
    this.mode = mode;
    this.spanMs = spanMs;
    this.maxCount = maxCount;
    const alloc = Math.min(maxCount + 1, INITIAL_ALLOC);
    this.ts = new Float64Array(alloc);
    this.vals = new Float64Array(alloc);
    this.seqs = new Float64Array(alloc);
  }

  /** The window's min (or max); NaN when the window is empty. */
  get value(): number {
    return this.n === 0 ? Number.NaN : (this.vals[this.head] as number);
  }
  /** Time of the sample holding the extremum. */
  get valueTs(): number | undefined {
    return this.n === 0 ? undefined : this.ts[this.head];
  }
  /** Entries in the deque (≤ samples in the window). */
  get dequeSize(): number {
    return this.n;
  }
  get isEmpty(): boolean {
    return this.n === 0;
  }

  push(ts: number, v: number): void {
    if (!Number.isFinite(ts) || Number.isNaN(v)) throw new RangeError(`SlidingExtremum.push: bad sample (${ts}, ${v})`);
    const seq = this.pushed++;
    // Drop from the back every entry the new sample dominates (it is newer and at least as extreme).
    const cap = this.ts.length;
    while (this.n > 0) {
      const back = this.vals[(this.head + this.n - 1) % cap] as number;
      if (this.mode === 'min' ? back >= v : back <= v) this.n -= 1;
      else break;
    }
    if (this.n === this.ts.length) this.grow();
    const k = (this.head + this.n) % this.ts.length;
    this.ts[k] = ts;
    this.vals[k] = v;
    this.seqs[k] = seq;
    this.n += 1;
    this.expire(ts);
  }

  /** Advances the horizon to `now` (if later) and drops entries that left the window. */
  expire(now: number): void {
    if (now > this.horizonTs) this.horizonTs = now;
    const cutoff = this.horizonTs - this.spanMs;
    const minSeq = this.pushed - this.maxCount; // seq < minSeq is beyond the count bound
    const cap = this.ts.length;
    while (this.n > 0 && ((this.ts[this.head] as number) <= cutoff || (this.seqs[this.head] as number) < minSeq)) {
      this.head = (this.head + 1) % cap;
      this.n -= 1;
    }
  }

  private grow(): void {
    const cap = Math.min(this.maxCount + 1, this.ts.length * 2);
    const ts = new Float64Array(cap);
    const vals = new Float64Array(cap);
    const seqs = new Float64Array(cap);
    for (let i = 0; i < this.n; i++) {
      const k = (this.head + i) % this.ts.length;
      ts[i] = this.ts[k] as number;
      vals[i] = this.vals[k] as number;
      seqs[i] = this.seqs[k] as number;
    }
    this.ts = ts;
    this.vals = vals;
    this.seqs = seqs;
    this.head = 0;
  }

  toJSON(): SlidingExtremumJSON {
    const entries: [number, number, number][] = [];
    for (let i = 0; i < this.n; i++) {
      const k = (this.head + i) % this.ts.length;
      entries.push([this.ts[k] as number, this.vals[k] as number, this.seqs[k] as number]);
    }
    return {
      mode: this.mode,
      spanMs: this.spanMs,
      maxCount: Number.isFinite(this.maxCount) ? this.maxCount : null,
      pushed: this.pushed,
      horizon: Number.isFinite(this.horizonTs) ? this.horizonTs : null,
      entries,
    };
  }

  static fromJSON(json: unknown): SlidingExtremum {
    const j = json as Partial<SlidingExtremumJSON> | null;
    if (!j || (j.mode !== 'min' && j.mode !== 'max') || typeof j.spanMs !== 'number' || typeof j.pushed !== 'number' || !Array.isArray(j.entries)) {
      throw new TypeError('SlidingExtremum.fromJSON: expected { mode, spanMs, maxCount, pushed, horizon, entries }');
    }
    const d = new SlidingExtremum(j.mode, j.spanMs, typeof j.maxCount === 'number' ? j.maxCount : Number.POSITIVE_INFINITY);
    for (const e of j.entries) {
      if (d.n === d.ts.length) d.grow();
      d.ts[d.n] = e[0];
      d.vals[d.n] = e[1];
      d.seqs[d.n] = e[2];
      d.n += 1;
    }
    d.pushed = j.pushed;
    d.horizonTs = typeof j.horizon === 'number' ? j.horizon : Number.NEGATIVE_INFINITY;
    return d;
  }
}

export interface SlidingMinMaxJSON {
  min: SlidingExtremumJSON;
  max: SlidingExtremumJSON;
}

/** Min and max over the same window. */
export class SlidingMinMax {
  private lo: SlidingExtremum;
  private hi: SlidingExtremum;

  constructor(spanMs: number, maxCount: number = Number.POSITIVE_INFINITY) {
    this.lo = new SlidingExtremum('min', spanMs, maxCount);
    this.hi = new SlidingExtremum('max', spanMs, maxCount);
  }

  push(ts: number, v: number): void {
    this.lo.push(ts, v);
    this.hi.push(ts, v);
  }
  expire(now: number): void {
    this.lo.expire(now);
    this.hi.expire(now);
  }
  /** NaN when empty. */
  get min(): number {
    return this.lo.value;
  }
  get max(): number {
    return this.hi.value;
  }
  /** max − min; NaN when empty. */
  get range(): number {
    return this.hi.value - this.lo.value;
  }

  toJSON(): SlidingMinMaxJSON {
    return { min: this.lo.toJSON(), max: this.hi.toJSON() };
  }
  static fromJSON(json: unknown): SlidingMinMax {
    const j = json as Partial<SlidingMinMaxJSON> | null;
    if (!j || !j.min || !j.max) throw new TypeError('SlidingMinMax.fromJSON: expected { min, max }');
    const lo = SlidingExtremum.fromJSON(j.min);
    const s = new SlidingMinMax(lo.spanMs, lo.maxCount);
    s.lo = lo;
    s.hi = SlidingExtremum.fromJSON(j.max);
    return s;
  }
}
