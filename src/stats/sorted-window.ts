/**
 * A bounded multiset of numbers kept sorted in a Float64Array: binary-search insert/remove with a memmove
 * (copyWithin) bounded by the capacity, O(1) order statistics, and the median absolute deviation in
 * O(log n) without a pass over the window.
 *
 * Semantics follow simple-statistics exactly: `quantile(p)` is `quantileSorted` (type 7, linear
 * interpolation), `median()` is quantile 0.5, `mad()` is `medianAbsoluteDeviation` = median of
 * |x − median(x)| (no 1.4826 consistency factor; multiply yourself for a normal-consistent scale).
 */

export interface SortedWindowJSON {
  capacity: number;
  values: number[];
}

const INITIAL_ALLOC = 16;

export class SortedWindow {
  readonly capacity: number;
  private buf: Float64Array;
  private n = 0;

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`SortedWindow: capacity must be a positive integer (got ${capacity})`);
    this.capacity = capacity;
    // Grown by doubling up to capacity, so thousands of idle keys don't each hold a full buffer.
    this.buf = new Float64Array(Math.min(capacity, INITIAL_ALLOC));
  }

  get size(): number {
    return this.n;
  }
  get isFull(): boolean {
    return this.n >= this.capacity;
  }

  /** Value at sorted position i (0 = smallest). */
  at(i: number): number {
    if (i < 0 || i >= this.n) throw new RangeError(`SortedWindow.at: index ${i} out of range [0, ${this.n})`);
    return this.buf[i] as number;
  }
  get min(): number {
    return this.n === 0 ? Number.NaN : (this.buf[0] as number);
  }
  get max(): number {
    return this.n === 0 ? Number.NaN : (this.buf[this.n - 1] as number);
  }

  /** Inserts x; throws when full (the owner evicts first, e.g. through a TimeWindow with the same bound). */
  insert(x: number): void {
    if (Number.isNaN(x)) throw new RangeError('SortedWindow.insert: NaN');
    if (this.n >= this.capacity) throw new RangeError(`SortedWindow.insert: full (capacity ${this.capacity})`);
    if (this.n === this.buf.length) {
      const grown = new Float64Array(Math.min(this.capacity, this.buf.length * 2));
      grown.set(this.buf.subarray(0, this.n));
      this.buf = grown;
    }
    const i = this.upperBound(x);
    this.buf.copyWithin(i + 1, i, this.n);
    this.buf[i] = x;
    this.n += 1;
  }

  /** Removes one occurrence of x; returns false when x is not present. */
  remove(x: number): boolean {
    const i = this.lowerBound(x);
    if (i >= this.n || this.buf[i] !== x) return false;
    this.buf.copyWithin(i, i + 1, this.n);
    this.n -= 1;
    return true;
  }

  clear(): void {
    this.n = 0;
  }

  /** Number of values < x. */
  lowerBound(x: number): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.buf[mid] as number) < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Number of values <= x. */
  upperBound(x: number): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.buf[mid] as number) <= x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** simple-statistics `quantileSorted` over the current contents (type 7). NaN when empty. */
  quantile(p: number): number {
    return quantileOfSorted(this.buf, this.n, p, 'SortedWindow.quantile');
  }

  /** Median (quantile 0.5, the same arithmetic as simple-statistics). NaN when empty. */
  median(): number {
    return this.quantile(0.5);
  }

  /**
   * Median absolute deviation around the median, in O(log n).
   *
   * With m the median and the window split at the median position, the distances m − x[i] read from the
   * middle leftwards and x[j] − m read from the middle rightwards are each non-decreasing (floating-point
   * subtraction is monotone), and together they are exactly the n values |x − m|. The median of that
   * union needs its k-th (and, for even n, (k+1)-th) smallest element, which the classic "k-th element of
   * two sorted arrays" binary search finds in O(log n).
   */
  mad(): number {
    const n = this.n;
    if (n === 0) return Number.NaN;
    const b = this.buf;
    const m = this.median();
    // Left sequence: indices h, h-1, …, 0 (length h+1); right sequence: h+1, …, n-1 (length n-h-1).
    const h = (n - 1) >> 1;
    const lenA = h + 1;
    const lenB = n - lenA;
    // a(i) = m − b[h − i] and c(j) = b[h + 1 + j] − m are written out inline: closures here cost more
    // than the whole search (measured under tsx).
    // The union's median under quantileSorted: positions k (and k+1 when n is even) of the sorted union.
    const k = (n - 1) >> 1;
    // Find how many elements (i from A, j = t − i from B) make up the t = k+1 smallest of the union.
    const t = k + 1;
    let lo = Math.max(0, t - lenB);
    let hi = Math.min(t, lenA);
    while (lo < hi) {
      const i = (lo + hi) >>> 1;
      const j = t - i;
      // Take more from A when A[i] < B[j-1] (A's next element belongs before B's last taken one).
      if (j > 0 && i < lenA && m - (b[h - i] as number) < (b[h + j] as number) - m) lo = i + 1;
      else hi = i;
    }
    const i = lo;
    const j = t - i;
    const lastA = i > 0 ? m - (b[h - i + 1] as number) : Number.NEGATIVE_INFINITY;
    const lastB = j > 0 ? (b[h + j] as number) - m : Number.NEGATIVE_INFINITY;
    const kth = Math.max(lastA, lastB);
    if (n % 2 === 1) return kth;
    const nextA = i < lenA ? m - (b[h - i] as number) : Number.POSITIVE_INFINITY;
    const nextB = j < lenB ? (b[h + 1 + j] as number) - m : Number.POSITIVE_INFINITY;
    const next = Math.min(nextA, nextB);
    // Same interpolation expression as quantileSorted at idx = k + 0.5.
    return kth + 0.5 * (next - kth);
  }

  /** The current contents, ascending (a copy; O(n), not for the hot path). */
  toArray(): number[] {
    return Array.from(this.buf.subarray(0, this.n));
  }

  toJSON(): SortedWindowJSON {
    return { capacity: this.capacity, values: this.toArray() };
  }

  static fromJSON(json: unknown): SortedWindow {
    const j = json as Partial<SortedWindowJSON> | null;
    if (!j || !Number.isInteger(j.capacity) || !Array.isArray(j.values)) {
      throw new TypeError('SortedWindow.fromJSON: expected { capacity, values }');
    }
    const w = new SortedWindow(j.capacity as number);
    const vals = j.values;
    if (vals.length > w.capacity) throw new TypeError('SortedWindow.fromJSON: more values than capacity');
    let alloc = w.buf.length;
    while (alloc < vals.length) alloc = Math.min(w.capacity, alloc * 2);
    w.buf = new Float64Array(alloc);
    for (let i = 0; i < vals.length; i++) {
      const v = vals[i];
      if (typeof v !== 'number' || Number.isNaN(v) || (i > 0 && v < (vals[i - 1] as number))) {
        throw new TypeError('SortedWindow.fromJSON: values must be sorted numbers');
      }
      w.buf[i] = v;
    }
    w.n = vals.length;
    return w;
  }
}

/**
 * simple-statistics `quantileSorted` (type 7) over the first n values of a sorted buffer, with the very
 * same arithmetic (so results are bit-identical to the oracle); NaN when n is 0.
 */
export function quantileOfSorted(b: ArrayLike<number>, n: number, p: number, what: string): number {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`${what}: p must be in [0, 1] (got ${p})`);
  if (n === 0) return Number.NaN;
  if (p === 1) return b[n - 1] as number;
  if (p === 0) return b[0] as number;
  const idx = (n - 1) * p;
  if (idx % 1 !== 0) {
    const lower = Math.floor(idx);
    const fraction = idx - lower;
    const lo = b[lower] as number;
    return lo + fraction * ((b[Math.ceil(idx)] as number) - lo);
  }
  return b[idx] as number;
}
