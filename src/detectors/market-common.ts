/**
 * Shared pieces of the market-quote detectors (spread_blowout, feed_gap, crossed_book,
 * cross_venue_divergence): quote arithmetic, bps formatting and a robust rolling baseline.
 */
import type { Quote } from '../core/events.ts';
import { TimeWindow } from '../stats/event-window.ts';
import { SortedWindow, quantileOfSorted } from '../stats/sorted-window.ts';
import { formatFixed } from './format.ts';

/** Scales MAD to a standard deviation for normally distributed data. */
export const MAD_TO_SIGMA = 1.4826;

/** Both sides present (bid > 0 and ask > 0, finite). Quotes with an empty or negative side are ignored. */
export function hasBothSides(q: Quote): boolean {
  return q.bidPx > 0 && q.askPx > 0 && Number.isFinite(q.bidPx) && Number.isFinite(q.askPx);
}

export function midOf(q: Quote): number {
  return (q.bidPx + q.askPx) / 2;
}

/** (ask − bid) / mid in basis points; negative when the book is crossed. */
export function spreadBpsOf(q: Quote): number {
  return ((q.askPx - q.bidPx) / midOf(q)) * 1e4;
}

/** Basis points with as many decimals as the size needs: 152 bps, 15.2 bps, 1.52 bps, 0.0016 bps. */
export function formatBps(x: number): string {
  const a = Math.abs(x);
  const d = a >= 100 ? 0 : a >= 10 ? 1 : a >= 0.1 ? 2 : 4;
  return `${formatFixed(x, d)} bps`;
}

/** Signed basis points: "+12.3 bps", "-4.10 bps". */
export function formatSignedBps(x: number): string {
  return `${x > 0 ? '+' : ''}${formatBps(x)}`;
}

export interface RobustWindowJSON {
  horizon: number | null;
  ts: number[];
  values: number[];
}

/**
 * Samples of the last `windowMs` of event time (at most `maxSamples`, the newest), kept both in arrival
 * order (TimeWindow, for eviction) and sorted (SortedWindow, for median, MAD and quantiles in O(1)/O(log n)).
 * Median and MAD are cached and refreshed by `refresh()` (after pushes), so reads on the hot path are O(1).
 */
export class RobustWindow {
  readonly window: TimeWindow<number>;
  readonly sorted: SortedWindow;
  median = Number.NaN;
  mad = Number.NaN;
  private readonly evict = (v: number): void => {
    this.sorted.remove(v);
  };

  constructor(windowMs: number, maxSamples: number) {
    this.window = new TimeWindow<number>(windowMs, maxSamples);
    this.sorted = new SortedWindow(maxSamples);
  }

  get size(): number {
    return this.sorted.size;
  }
  get oldestTs(): number | undefined {
    return this.window.oldestTs;
  }

  /** Adds a sample at event time ts, evicting what falls out of the window. Call refresh() afterwards. */
  push(ts: number, v: number): void {
    this.window.push(ts, v, this.evict);
    this.sorted.insert(v);
  }

  /** Evicts samples older than now − windowMs. */
  expire(now: number): void {
    this.window.expire(now, this.evict);
  }

  /** Recomputes the cached median and MAD: O(log n). */
  refresh(): void {
    this.median = this.sorted.median();
    this.mad = this.sorted.mad();
  }

  quantile(p: number): number {
    return this.sorted.quantile(p);
  }

  clear(): void {
    this.window.clear(this.evict);
    this.refresh();
  }

  toJSON(): RobustWindowJSON {
    const w = this.window.toJSON();
    return { horizon: w.horizon, ts: w.ts, values: w.values };
  }

  /**
   * Rebuilds from JSON under this window's own span and bound (which may differ from the writer's): the
   * samples are pushed again in order and expired against the saved horizon, so the result is exactly what
   * this window would hold had it seen the same samples. Throws TypeError on garbage.
   */
  static restore(json: unknown, windowMs: number, maxSamples: number, what: string): RobustWindow {
    const w = new RobustWindow(windowMs, maxSamples);
    replayWindowJSON(json, what, w);
    w.refresh();
    return w;
  }
}

/**
 * RobustWindow's samples and JSON (TimeWindow semantics: after push(ts, …) / expire(now) it holds the
 * samples with ts > horizon − windowMs, at most maxSamples, the newest) for a baseline pushed on every
 * event and read only through quantiles (feed_gap's inter-arrival times). Once full, each push evicts one
 * sample and inserts one: `replace` moves only the sorted values strictly between the two (a sorted
 * window's remove + insert would move everything above each, twice per event; with inter-arrival times,
 * mostly small and tied, that memmove was most of feed_gap's cost). Quantiles use SortedWindow's exact
 * arithmetic (simple-statistics quantileSorted), so results are bit-identical to RobustWindow's.
 *
 * The sorted copy is only kept up to date while quantiles are being read: after maxSamples pushes without
 * a read it is dropped (pushes then cost a ring write), and the next read sorts the ring's values again —
 * O(n log n) once per ≥ maxSamples pushes, so O(log n) amortized per push. feed_gap reads its cadence only
 * for a gap past its floor, which on a busy stream is almost never. A sorted multiset is the same whichever
 * way it was built (up to the order of −0 and +0, which compare equal).
 */
export class QuantileWindow {
  private readonly windowMs: number;
  private readonly maxSamples: number;
  /** Ring of (ts, value), oldest at head; grown by doubling up to maxSamples. */
  private tss: Float64Array;
  private vals: Float64Array;
  private head = 0;
  private n = 0;
  private horizonTs = Number.NEGATIVE_INFINITY;
  /**
   * The values, ascending, while `synced`: the ring's n, plus during a push the evicted one(s) not yet
   * taken out. Not synced: stale, rebuilt from the ring by the next quantile read.
   */
  private sorted: Float64Array;
  private sn = 0;
  private synced = false;
  /** Pushes since the last quantile read (while synced). */
  private unread = 0;

  constructor(windowMs: number, maxSamples: number) {
    if (!(windowMs > 0)) throw new RangeError(`QuantileWindow: windowMs must be > 0 (got ${windowMs})`);
    if (!Number.isInteger(maxSamples) || maxSamples < 1) throw new RangeError(`QuantileWindow: maxSamples must be a positive integer (got ${maxSamples})`);
    this.windowMs = windowMs;
    this.maxSamples = maxSamples;
    const alloc = Math.min(maxSamples, 16);
    this.tss = new Float64Array(alloc);
    this.vals = new Float64Array(alloc);
    this.sorted = new Float64Array(alloc);
  }

  get size(): number {
    return this.n;
  }

  /** Adds a sample at event time ts, evicting what falls out of the window (by time, then by count). */
  push(ts: number, v: number): void {
    if (!Number.isFinite(ts)) throw new RangeError(`QuantileWindow.push: non-finite ts ${ts}`);
    if (Number.isNaN(v)) throw new RangeError('QuantileWindow.push: NaN');
    if (ts > this.horizonTs) this.horizonTs = ts;
    const cutoff = this.horizonTs - this.windowMs;
    // Unread for maxSamples pushes: stop keeping the sorted copy (the next read rebuilds it).
    if (this.synced && ++this.unread > this.maxSamples) this.synced = false;
    if (!this.synced) {
      while (this.n > 0 && (this.tss[this.head] as number) <= cutoff) this.shiftOne();
      if (this.n === this.maxSamples) this.shiftOne();
      this.append(ts, v);
      return;
    }
    // The first value evicted is replaced by v in one move; any others are removed.
    let out = Number.NaN;
    while (this.n > 0 && (this.tss[this.head] as number) <= cutoff) {
      const x = this.shiftOne();
      if (Number.isNaN(out)) out = x;
      else this.removeSorted(x);
    }
    if (this.n === this.maxSamples) {
      const x = this.shiftOne();
      if (Number.isNaN(out)) out = x;
      else this.removeSorted(x);
    }
    this.append(ts, v);
    if (Number.isNaN(out)) this.insertSorted(v);
    else this.replaceSorted(out, v);
  }

  /** Writes (ts, v) at the ring's tail (room made by the caller, or by growing). */
  private append(ts: number, v: number): void {
    let cap = this.tss.length;
    if (this.n === cap) {
      this.grow();
      cap = this.tss.length;
    }
    let k = this.head + this.n;
    if (k >= cap) k -= cap;
    this.tss[k] = ts;
    this.vals[k] = v;
    this.n += 1;
  }

  /** Evicts samples older than now − windowMs. */
  expire(now: number): void {
    if (now > this.horizonTs) this.horizonTs = now;
    const cutoff = this.horizonTs - this.windowMs;
    while (this.n > 0 && (this.tss[this.head] as number) <= cutoff) {
      const x = this.shiftOne();
      if (this.synced) this.removeSorted(x);
    }
  }

  /** SortedWindow.quantile: simple-statistics quantileSorted (type 7) over the window; NaN when empty. */
  quantile(p: number): number {
    if (!this.synced) this.resync();
    this.unread = 0;
    return quantileOfSorted(this.sorted, this.n, p, 'QuantileWindow.quantile');
  }

  median(): number {
    return this.quantile(0.5);
  }

  /** RobustWindow's JSON: horizon (null before any time), times and values oldest → newest. */
  toJSON(): RobustWindowJSON {
    const ts: number[] = [];
    const values: number[] = [];
    const cap = this.tss.length;
    for (let i = 0, k = this.head; i < this.n; i++, k = k + 1 === cap ? 0 : k + 1) {
      ts.push(this.tss[k] as number);
      values.push(this.vals[k] as number);
    }
    return { horizon: Number.isFinite(this.horizonTs) ? this.horizonTs : null, ts, values };
  }

  /** RobustWindow.restore's rebuild (same checks and messages) into a QuantileWindow. */
  static restore(json: unknown, windowMs: number, maxSamples: number, what: string): QuantileWindow {
    const w = new QuantileWindow(windowMs, maxSamples);
    replayWindowJSON(json, what, w);
    return w;
  }

  /** Drops the oldest sample from the ring (not from the sorted values); returns its value. */
  private shiftOne(): number {
    const h = this.head;
    const x = this.vals[h] as number;
    this.head = h + 1 === this.tss.length ? 0 : h + 1;
    this.n -= 1;
    return x;
  }

  private grow(): void {
    const cap = this.tss.length;
    const next = Math.min(this.maxSamples, cap * 2);
    const tss = new Float64Array(next);
    const vals = new Float64Array(next);
    for (let i = 0, k = this.head; i < this.n; i++, k = k + 1 === cap ? 0 : k + 1) {
      tss[i] = this.tss[k] as number;
      vals[i] = this.vals[k] as number;
    }
    this.tss = tss;
    this.vals = vals;
    this.head = 0;
    const sorted = new Float64Array(next);
    if (this.synced) sorted.set(this.sorted.subarray(0, this.sn));
    this.sorted = sorted;
  }

  /** The sorted copy rebuilt from the ring (numeric ascending sort of the values). */
  private resync(): void {
    const cap = this.tss.length;
    const b = this.sorted;
    for (let i = 0, k = this.head; i < this.n; i++, k = k + 1 === cap ? 0 : k + 1) b[i] = this.vals[k] as number;
    if (this.n > 1) b.subarray(0, this.n).sort();
    this.sn = this.n;
    this.synced = true;
    this.unread = 0;
  }

  /** First index in [from, to) of the sorted values whose value is >= x (to when none). */
  private lowerBound(x: number, from: number, to: number): number {
    const b = this.sorted;
    let lo = from;
    let hi = to;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((b[mid] as number) < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** First index in [from, to) of the sorted values whose value is > x (to when none). */
  private upperBound(x: number, from: number, to: number): number {
    const b = this.sorted;
    let lo = from;
    let hi = to;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((b[mid] as number) <= x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private insertSorted(x: number): void {
    const m = this.sn;
    const i = this.upperBound(x, 0, m);
    this.sorted.copyWithin(i + 1, i, m);
    this.sorted[i] = x;
    this.sn = m + 1;
  }

  private removeSorted(x: number): void {
    const m = this.sn;
    const i = this.lowerBound(x, 0, m);
    if (i >= m || this.sorted[i] !== x) return;
    this.sorted.copyWithin(i, i + 1, m);
    this.sn = m - 1;
  }

  /** Removes one x and inserts y, moving only the values strictly between them. */
  private replaceSorted(x: number, y: number): void {
    if (x === y) return;
    const m = this.sn;
    const b = this.sorted;
    if (x < y) {
      // The last x leaves; the values in (x, y) shift down one; y goes just below the first value >= y.
      const i = this.upperBound(x, 0, m) - 1;
      if (i < 0 || b[i] !== x) {
        this.insertSorted(y);
        return;
      }
      const j = this.lowerBound(y, i + 1, m); // b[i] = x < y
      b.copyWithin(i, i + 1, j);
      b[j - 1] = y;
    } else {
      // The first x leaves; the values in (y, x) shift up one; y goes just after the last value <= y.
      const i = this.lowerBound(x, 0, m);
      if (i >= m || b[i] !== x) {
        this.insertSorted(y);
        return;
      }
      const j = this.upperBound(y, 0, i); // b[i] = x > y
      b.copyWithin(j + 1, j, i);
      b[j] = y;
    }
  }
}

/** Validation helpers for fromJSON. */
export function numOrNull(x: unknown, what: string): number | null {
  if (x === null || x === undefined) return null;
  if (typeof x !== 'number' || !Number.isFinite(x)) throw new TypeError(`${what} must be a finite number or null`);
  return x;
}

export function num(x: unknown, what: string, fallback?: number): number {
  if ((x === undefined || x === null) && fallback !== undefined) return fallback;
  if (typeof x !== 'number' || !Number.isFinite(x)) throw new TypeError(`${what} must be a finite number`);
  return x;
}

export function strOrNull(x: unknown, what: string): string | null {
  if (x === null || x === undefined) return null;
  if (typeof x !== 'string') throw new TypeError(`${what} must be a string or null`);
  return x;
}

/**
 * Rebuilds a window from RobustWindowJSON (both RobustWindow and QuantileWindow restore through it): the
 * samples are pushed again in order and expired against the saved horizon. Throws TypeError on garbage.
 */
function replayWindowJSON(json: unknown, what: string, w: { push(ts: number, v: number): void; expire(now: number): void }): void {
  const j = json as Partial<RobustWindowJSON> | null;
  if (!j || typeof j !== 'object' || !Array.isArray(j.ts) || !Array.isArray(j.values) || j.ts.length !== j.values.length) {
    throw new TypeError(`${what}: baseline JSON must be { horizon, ts[], values[] }`);
  }
  for (let i = 0; i < j.ts.length; i++) {
    const t = j.ts[i];
    const v = j.values[i];
    if (typeof t !== 'number' || !Number.isFinite(t) || typeof v !== 'number' || !Number.isFinite(v)) {
      throw new TypeError(`${what}: baseline samples must be finite numbers`);
    }
    w.push(t, v);
  }
  if (j.horizon !== null && j.horizon !== undefined) {
    if (typeof j.horizon !== 'number' || !Number.isFinite(j.horizon)) throw new TypeError(`${what}: baseline horizon must be a number or null`);
    w.expire(j.horizon);
  }
}
