/**
 * Event-time rate counter: event counts and value sums per fixed bucket (floor(ts / bucketMs)) over a
 * window of the last `buckets` buckets — the current (open) one and up to buckets − 1 completed ones —
 * with a baseline over the completed buckets of the window.
 *
 * - add(ts, amount): O(1) into the current bucket; a later bucket rolls the window forward over the empty
 *   buckets in between in O(min(gap, buckets)), each completed bucket entering the baseline (empty ones as
 *   zeros) and each bucket leaving the window leaving it. A late event still inside the window updates its
 *   (completed) bucket and the baseline in O(log n); an event older than the window is refused.
 * - The baseline: mean and variance of the completed buckets' counts and of their sums (RollingMoments:
 *   Welford with removal), and optionally the completed buckets' counts or sums in a SortedWindow
 *   (`sorted`) for median / MAD / quantiles.
 * - markGap(): the input lost data (a disconnect): the current bucket and every bucket the next roll
 *   forward passes over are kept out of the baseline (their counts are unknown, not zero); they still
 *   count in the window totals.
 * - Only buckets since the first event count: a fresh counter's baseline starts empty, not as zeros.
 *
 * Memory: three arrays of at most `buckets` entries (grown by doubling) and the SortedWindow.
 */
import { RollingMoments, type RollingMomentsJSON } from './welford.ts';
import { SortedWindow } from './sorted-window.ts';

export type RateSorted = 'count' | 'sum' | 'none';

export interface RateCounterOptions {
  /** Bucket length, ms (> 0). */
  bucketMs: number;
  /** Buckets in the window, the current one included (≥ 2). */
  buckets: number;
  /** Which per-bucket quantity the SortedWindow holds (default 'none'). */
  sorted?: RateSorted;
}

export interface RateCounterJSON {
  bucketMs: number;
  buckets: number;
  sorted: RateSorted;
  /** Index (floor(ts / bucketMs)) of the current bucket; null before the first event. */
  cur: number | null;
  counts: number[];
  sums: number[];
  /** Oldest first, as counts/sums: 1 = counts in the baseline, 0 = kept out (gap). */
  valid: number[];
  gapOpen: boolean;
  countMoments: RollingMomentsJSON;
  sumMoments: RollingMomentsJSON;
  windowCount: number;
  windowSum: number;
}

/** What add() did with the event. */
export type RateAddResult = 'current' | 'past' | 'late';

const INITIAL_ALLOC = 8;

export class RateCounter {
  readonly bucketMs: number;
  readonly buckets: number;
  readonly sortedBy: RateSorted;
  private cnt: Float64Array;
  private sm: Float64Array;
  private ok: Uint8Array;
  /** Deque position of the oldest bucket, and number of buckets (the newest is the current one). */
  private head = 0;
  private len = 0;
  private cur: number | null = null;
  private gapOpen = false;
  private cm = new RollingMoments();
  private smm = new RollingMoments();
  private srt: SortedWindow | null;
  private wCount = 0;
  private wSum = 0;

  constructor(opts: RateCounterOptions) {
    if (!(opts.bucketMs > 0) || !Number.isFinite(opts.bucketMs)) throw new RangeError(`RateCounter: bucketMs must be > 0 (got ${opts.bucketMs})`);
    if (!Number.isInteger(opts.buckets) || opts.buckets < 2) throw new RangeError(`RateCounter: buckets must be an integer >= 2 (got ${opts.buckets})`);
    this.bucketMs = opts.bucketMs;
    this.buckets = opts.buckets;
    this.sortedBy = opts.sorted ?? 'none';
    if (this.sortedBy !== 'count' && this.sortedBy !== 'sum' && this.sortedBy !== 'none') throw new RangeError(`RateCounter: sorted must be count, sum or none`);
    const alloc = Math.min(this.buckets, INITIAL_ALLOC);
    this.cnt = new Float64Array(alloc);
    this.sm = new Float64Array(alloc);
    this.ok = new Uint8Array(alloc);
    this.srt = this.sortedBy === 'none' ? null : new SortedWindow(this.buckets - 1);
  }

  indexOf(ts: number): number {
    return Math.floor(ts / this.bucketMs);
  }

  /** Index of the current bucket; null before the first event. */
  get currentIndex(): number | null {
    return this.cur;
  }
  /** Start time of the current bucket (NaN before the first event). */
  get currentStart(): number {
    return this.cur === null ? Number.NaN : this.cur * this.bucketMs;
  }
  get currentCount(): number {
    return this.len === 0 ? 0 : (this.cnt[this.pos(this.len - 1)] as number);
  }
  get currentSum(): number {
    return this.len === 0 ? 0 : (this.sm[this.pos(this.len - 1)] as number);
  }
  /** Whether the current bucket will enter the baseline when it completes. */
  get currentValid(): boolean {
    return this.len > 0 && this.ok[this.pos(this.len - 1)] === 1;
  }
  /** Buckets in the window since the first event (current included). */
  get windowBuckets(): number {
    return this.len;
  }
  /** Start time of the oldest bucket in the window (NaN when empty). */
  get windowStart(): number {
    return this.cur === null ? Number.NaN : (this.cur - this.len + 1) * this.bucketMs;
  }
  /** Events / sum over the whole window (current bucket included, gap buckets included). */
  get windowCount(): number {
    return this.wCount;
  }
  get windowSum(): number {
    return this.wSum;
  }
  /** Completed buckets in the baseline. */
  get baselineBuckets(): number {
    return this.cm.count;
  }
  /** Moments of the completed buckets' counts / sums (NaN when the baseline is empty). */
  get countMean(): number {
    return this.cm.mean;
  }
  get countVariance(): number {
    return this.cm.variance;
  }
  get sumMean(): number {
    return this.smm.mean;
  }
  get sumVariance(): number {
    return this.smm.variance;
  }
  /** Median / MAD / quantile of the sorted quantity over the baseline (NaN when empty or sorted = 'none'). */
  median(): number {
    return this.srt ? this.srt.median() : Number.NaN;
  }
  mad(): number {
    return this.srt ? this.srt.mad() : Number.NaN;
  }
  quantile(p: number): number {
    return this.srt ? this.srt.quantile(p) : Number.NaN;
  }

  /** Counts, sums and validity of the window's buckets, oldest first (O(n): for evidence and tests). */
  bucketsInWindow(): Array<{ index: number; count: number; sum: number; valid: boolean }> {
    const out: Array<{ index: number; count: number; sum: number; valid: boolean }> = [];
    if (this.cur === null) return out;
    for (let i = 0; i < this.len; i++) {
      const p = this.pos(i);
      out.push({ index: this.cur - this.len + 1 + i, count: this.cnt[p] as number, sum: this.sm[p] as number, valid: this.ok[p] === 1 });
    }
    return out;
  }

  /**
   * Counts one event of value `amount` (default 0) at `ts`, `count` times (default 1). Returns where it went:
   * the current bucket, a completed bucket of the window, or nowhere ('late': older than the window).
   */
  add(ts: number, amount = 0, count = 1): RateAddResult {
    if (!Number.isFinite(ts) || !Number.isFinite(amount) || !Number.isFinite(count)) throw new RangeError(`RateCounter.add: non-finite input (${ts}, ${amount}, ${count})`);
    const idx = Math.floor(ts / this.bucketMs);
    if (this.cur === null || idx > this.cur) this.rollTo(idx);
    const cur = this.cur as number;
    const back = cur - idx; // 0 = current
    if (back >= this.len) return 'late';
    const p = this.pos(this.len - 1 - back);
    const oldC = this.cnt[p] as number;
    const oldS = this.sm[p] as number;
    const newC = oldC + count;
    const newS = oldS + amount;
    this.cnt[p] = newC;
    this.sm[p] = newS;
    this.wCount += count;
    this.wSum += amount;
    if (back === 0) return 'current';
    if (this.ok[p] === 1) {
      this.cm.remove(oldC);
      this.cm.add(newC);
      this.smm.remove(oldS);
      this.smm.add(newS);
      if (this.srt) {
        this.srt.remove(this.sortedBy === 'count' ? oldC : oldS);
        this.srt.insert(this.sortedBy === 'count' ? newC : newS);
      }
    }
    return 'past';
  }

  /** Rolls the window forward to the bucket of `ts` without an event (no-op when not later). */
  advance(ts: number): void {
    if (!Number.isFinite(ts)) throw new RangeError(`RateCounter.advance: non-finite ts ${ts}`);
    const idx = Math.floor(ts / this.bucketMs);
    if (this.cur !== null && idx > this.cur) this.rollTo(idx);
  }

  /** The input lost data: the current bucket and the buckets until the next event stay out of the baseline. */
  markGap(): void {
    if (this.len > 0) this.ok[this.pos(this.len - 1)] = 0;
    this.gapOpen = true;
  }

  /** Empties the counter (as new). */
  clear(): void {
    this.head = 0;
    this.len = 0;
    this.cur = null;
    this.gapOpen = false;
    this.cm.reset();
    this.smm.reset();
    this.srt?.clear();
    this.wCount = 0;
    this.wSum = 0;
  }

  private pos(i: number): number {
    return (this.head + i) % this.cnt.length;
  }

  private rollTo(idx: number): void {
    if (this.cur === null) {
      this.cur = idx;
      this.pushBucket(!this.gapOpen);
      this.gapOpen = false;
      return;
    }
    // Each step completes the newest bucket (the current one, then each empty bucket skipped) and opens the
    // next; a gap longer than the window only needs `buckets` steps (everything older leaves anyway).
    if (idx - this.cur >= this.buckets) {
      // Everything in the window leaves: start over exactly (no rounding residue from removals).
      this.head = 0;
      this.len = 0;
      this.cm.reset();
      this.smm.reset();
      this.srt?.clear();
      this.wCount = 0;
      this.wSum = 0;
      this.pushBucket(!this.gapOpen);
    }
    const steps = Math.min(idx - this.cur, this.buckets - 1);
    for (let s = 1; s <= steps; s++) {
      if (this.len === this.buckets) this.evictOldest(); // room first: the baseline holds ≤ buckets − 1
      this.enterBaseline(this.len - 1);
      this.pushBucket(!this.gapOpen);
    }
    this.cur = idx;
    this.gapOpen = false;
  }

  private enterBaseline(i: number): void {
    const p = this.pos(i);
    if (this.ok[p] !== 1) return;
    const c = this.cnt[p] as number;
    const s = this.sm[p] as number;
    this.cm.add(c);
    this.smm.add(s);
    if (this.srt) this.srt.insert(this.sortedBy === 'count' ? c : s);
  }

  /** Appends an empty bucket, evicting the oldest when the window is full. */
  private pushBucket(valid: boolean): void {
    if (this.len === this.buckets) this.evictOldest();
    if (this.len === this.cnt.length) this.grow();
    const p = this.pos(this.len);
    this.cnt[p] = 0;
    this.sm[p] = 0;
    this.ok[p] = valid ? 1 : 0;
    this.len += 1;
  }

  private evictOldest(): void {
    const p = this.head;
    const c = this.cnt[p] as number;
    const s = this.sm[p] as number;
    // The oldest bucket is completed (len ≥ 2 here), so it is in the baseline when valid.
    if (this.ok[p] === 1) {
      this.cm.remove(c);
      this.smm.remove(s);
      if (this.srt) this.srt.remove(this.sortedBy === 'count' ? c : s);
    }
    this.wCount -= c;
    this.wSum -= s;
    this.head = (this.head + 1) % this.cnt.length;
    this.len -= 1;
    if (this.len === 0 || this.wCount === 0) {
      // Nothing left to count: no rounding residue survives the events that caused it.
      this.wCount = 0;
      this.wSum = 0;
    }
  }

  private grow(): void {
    const cap = Math.min(this.buckets, this.cnt.length * 2);
    const cnt = new Float64Array(cap);
    const sm = new Float64Array(cap);
    const ok = new Uint8Array(cap);
    for (let i = 0; i < this.len; i++) {
      const p = this.pos(i);
      cnt[i] = this.cnt[p] as number;
      sm[i] = this.sm[p] as number;
      ok[i] = this.ok[p] as number;
    }
    this.cnt = cnt;
    this.sm = sm;
    this.ok = ok;
    this.head = 0;
  }

  toJSON(): RateCounterJSON {
    const counts: number[] = [];
    const sums: number[] = [];
    const valid: number[] = [];
    for (let i = 0; i < this.len; i++) {
      const p = this.pos(i);
      counts.push(this.cnt[p] as number);
      sums.push(this.sm[p] as number);
      valid.push(this.ok[p] as number);
    }
    return {
      bucketMs: this.bucketMs,
      buckets: this.buckets,
      sorted: this.sortedBy,
      cur: this.cur,
      counts,
      sums,
      valid,
      gapOpen: this.gapOpen,
      countMoments: this.cm.toJSON(),
      sumMoments: this.smm.toJSON(),
      windowCount: this.wCount,
      windowSum: this.wSum,
    };
  }

  /**
   * Restores a counter. With `opts` differing from the saved ones (hot reload): another bucket length
   * cannot be re-bucketed, so the counter starts empty; another window length keeps the newest buckets that
   * fit and rebuilds the baseline from them; another `sorted` rebuilds the SortedWindow. With the same
   * options the restored counter is exactly the saved one (moments included).
   */
  static fromJSON(json: unknown, opts?: RateCounterOptions): RateCounter {
    const j = json as Partial<RateCounterJSON> | null;
    if (
      !j ||
      typeof j.bucketMs !== 'number' ||
      typeof j.buckets !== 'number' ||
      !Array.isArray(j.counts) ||
      !Array.isArray(j.sums) ||
      !Array.isArray(j.valid) ||
      j.counts.length !== j.sums.length ||
      j.counts.length !== j.valid.length ||
      j.counts.length > j.buckets ||
      !(j.cur === null || Number.isInteger(j.cur)) ||
      (j.cur === null && j.counts.length > 0)
    ) {
      throw new TypeError('RateCounter.fromJSON: expected { bucketMs, buckets, sorted, cur, counts[], sums[], valid[], … }');
    }
    for (const arr of [j.counts, j.sums]) {
      for (const x of arr) if (typeof x !== 'number' || !Number.isFinite(x)) throw new TypeError('RateCounter.fromJSON: counts and sums must be finite numbers');
    }
    const o: RateCounterOptions = opts ?? { bucketMs: j.bucketMs, buckets: j.buckets, sorted: j.sorted ?? 'none' };
    const rc = new RateCounter(o);
    if (o.bucketMs !== j.bucketMs || j.cur === null || j.cur === undefined || j.counts.length === 0) return rc;
    const keep = Math.min(j.counts.length, rc.buckets);
    const from = j.counts.length - keep;
    rc.cur = j.cur;
    let alloc = rc.cnt.length;
    while (alloc < keep) alloc = Math.min(rc.buckets, alloc * 2);
    rc.cnt = new Float64Array(alloc);
    rc.sm = new Float64Array(alloc);
    rc.ok = new Uint8Array(alloc);
    for (let i = 0; i < keep; i++) {
      rc.cnt[i] = j.counts[from + i] as number;
      rc.sm[i] = j.sums[from + i] as number;
      rc.ok[i] = j.valid[from + i] ? 1 : 0;
    }
    rc.len = keep;
    rc.gapOpen = j.gapOpen === true;
    const same = keep === j.counts.length && j.countMoments !== undefined && j.sumMoments !== undefined;
    if (same) {
      rc.cm = RollingMoments.fromJSON(j.countMoments);
      rc.smm = RollingMoments.fromJSON(j.sumMoments);
      rc.wCount = typeof j.windowCount === 'number' ? j.windowCount : 0;
      rc.wSum = typeof j.windowSum === 'number' ? j.windowSum : 0;
    } else {
      for (let i = 0; i < keep; i++) {
        rc.wCount += rc.cnt[i] as number;
        rc.wSum += rc.sm[i] as number;
      }
    }
    for (let i = 0; i < keep - 1; i++) {
      if (rc.ok[i] !== 1) continue;
      if (!same) {
        rc.cm.add(rc.cnt[i] as number);
        rc.smm.add(rc.sm[i] as number);
      }
      if (rc.srt) rc.srt.insert(rc.sortedBy === 'count' ? (rc.cnt[i] as number) : (rc.sm[i] as number));
    }
    return rc;
  }
}
