/**
 * DDSketch (Masson, Rim & Lee, VLDB 2019): a mergeable quantile sketch with RELATIVE accuracy α. Every
 * value x ≠ 0 goes into the bucket i = ⌈ln|x| / ln γ⌉ with γ = (1 + α)/(1 − α), bucket i covering
 * (γ^(i−1), γ^i]; the bucket's representative 2γ^i/(γ + 1) is within α·|x| of every value in it.
 * Positive and negative values have a store each (negatives by |x|), exact zeros (and values too small to
 * index) a counter of their own.
 *
 * Bounded memory: each store keeps at most `maxBuckets` buckets. When values span more than that, the
 * LOWEST buckets (smallest |x|) are collapsed into the lowest bucket kept, so the accuracy guarantee holds
 * for the values whose bucket index is ≥ (largest index seen − maxBuckets + 1), i.e. for the large
 * magnitudes, and the small magnitudes lose resolution. The collapse is canonical — a value of index i
 * ends up in bucket max(i, hi − maxBuckets + 1), hi the largest index ever added — so the sketch depends
 * only on the multiset of values, whatever the order, and merge(a, b) is exactly the sketch of the union.
 *
 * `quantile(q)` follows simple-statistics / numpy type 7: with r = q·(n − 1), the result interpolates
 * between the representatives of the order statistics ⌊r⌋ and ⌈r⌉ (each clamped to the exact [min, max]),
 * so it is within α of the exact type-7 quantile whenever those two have the same sign (within
 * α·((1−f)|x⌊r⌋| + f|x⌈r⌉|) when they straddle zero). add: O(1) amortized; quantile: O(buckets).
 */

export interface DDSketchOptions {
  /** Relative accuracy α in (0, 1); default 0.01 (1%). */
  relativeAccuracy?: number;
  /** Bucket bound per store (positive / negative); default 2048. */
  maxBuckets?: number;
}

interface StoreJSON {
  /** Index of counts[0]; counts run up to the highest index seen. */
  lo: number;
  counts: number[];
}

export interface DDSketchJSON {
  alpha: number;
  maxBuckets: number;
  count: number;
  zero: number;
  min: number | null;
  max: number | null;
  sum: number;
  pos: StoreJSON | null;
  neg: StoreJSON | null;
}

/** Smallest magnitude with a bucket; anything smaller counts as zero (below the normal range of doubles). */
const MIN_INDEXABLE = 2.2250738585072014e-308;

/** Dense counts over a contiguous index range with slack, collapsing the lowest indices beyond maxBuckets. */
class Store {
  private buf = new Float64Array(0);
  /** Index held by buf[0]. */
  private base = 0;
  /** Non-empty range [lo, hi] (counts[lo] > 0 and counts[hi] > 0); lo > hi when empty. */
  lo = 0;
  hi = -1;
  total = 0;

  constructor(readonly maxBuckets: number) {}

  get isEmpty(): boolean {
    return this.total === 0;
  }
  get bucketCount(): number {
    return this.isEmpty ? 0 : this.hi - this.lo + 1;
  }
  /** Allocated slots (≤ 2·maxBuckets). */
  get allocated(): number {
    return this.buf.length;
  }

  countAt(i: number): number {
    return this.buf[i - this.base] as number;
  }

  add(i: number, w: number): void {
    if (this.isEmpty) {
      this.ensure(i, i);
      this.lo = i;
      this.hi = i;
    } else if (i > this.hi) {
      const newLo = Math.max(this.lo, i - this.maxBuckets + 1);
      let moved = 0;
      if (newLo > this.lo) {
        // Collapse [lo, newLo − 1] into newLo.
        const end = Math.min(newLo - 1, this.hi);
        for (let k = this.lo; k <= end; k++) {
          moved += this.buf[k - this.base] as number;
          this.buf[k - this.base] = 0;
        }
      }
      this.ensure(newLo, i);
      this.lo = newLo;
      this.hi = i;
      if (moved > 0) this.buf[newLo - this.base] = (this.buf[newLo - this.base] as number) + moved;
    } else if (i < this.lo) {
      const floor = this.hi - this.maxBuckets + 1;
      if (i < floor) i = floor;
      if (i < this.lo) {
        this.ensure(i, this.hi);
        this.lo = i;
      }
    }
    this.buf[i - this.base] = (this.buf[i - this.base] as number) + w;
    this.total += w;
  }

  /**
   * Makes buf cover [a, b] (b − a + 1 ≤ maxBuckets); on reallocation (with slack, ≤ 2·maxBuckets slots)
   * the counts of [lo, hi] ∩ [a, b] are kept.
   */
  private ensure(a: number, b: number): void {
    if (this.buf.length > 0 && a >= this.base && b < this.base + this.buf.length) return;
    const need = b - a + 1;
    const cap = Math.min(2 * this.maxBuckets, Math.max(16, 2 * need));
    const next = new Float64Array(cap);
    const base = a - ((cap - need) >> 1);
    if (!this.isEmpty) {
      const from = Math.max(this.lo, a, this.base);
      const to = Math.min(this.hi, b, this.base + this.buf.length - 1);
      for (let k = from; k <= to; k++) next[k - base] = this.buf[k - this.base] as number;
    }
    this.buf = next;
    this.base = base;
  }

  toJSON(): StoreJSON | null {
    if (this.isEmpty) return null;
    return { lo: this.lo, counts: Array.from(this.buf.subarray(this.lo - this.base, this.hi - this.base + 1)) };
  }

  static fromJSON(j: unknown, maxBuckets: number): Store {
    const s = new Store(maxBuckets);
    if (j === null || j === undefined) return s;
    const o = j as Partial<StoreJSON>;
    if (!Number.isInteger(o.lo) || !Array.isArray(o.counts)) throw new TypeError('DDSketch.fromJSON: a store must be { lo, counts[] }');
    const lo = o.lo as number;
    o.counts.forEach((c, k) => {
      if (typeof c !== 'number' || !Number.isFinite(c) || c < 0) throw new TypeError('DDSketch.fromJSON: counts must be finite numbers >= 0');
      if (c > 0) s.add(lo + k, c);
    });
    return s;
  }
}

export class DDSketch {
  readonly alpha: number;
  readonly maxBuckets: number;
  private readonly gamma: number;
  private readonly lnGamma: number;
  private pos: Store;
  private neg: Store;
  private zero = 0;
  private n = 0;
  private lowest = Number.POSITIVE_INFINITY;
  private highest = Number.NEGATIVE_INFINITY;
  private total = 0;

  constructor(opts: DDSketchOptions = {}) {
    const alpha = opts.relativeAccuracy ?? 0.01;
    const maxBuckets = opts.maxBuckets ?? 2048;
    if (!(alpha > 0 && alpha < 1)) throw new RangeError(`DDSketch: relativeAccuracy must be in (0, 1) (got ${alpha})`);
    if (!Number.isInteger(maxBuckets) || maxBuckets < 1) throw new RangeError(`DDSketch: maxBuckets must be a positive integer (got ${maxBuckets})`);
    this.alpha = alpha;
    this.maxBuckets = maxBuckets;
    this.gamma = (1 + alpha) / (1 - alpha);
    this.lnGamma = Math.log(this.gamma);
    this.pos = new Store(maxBuckets);
    this.neg = new Store(maxBuckets);
  }

  /** Bucket index of a magnitude > 0. */
  index(magnitude: number): number {
    return Math.ceil(Math.log(magnitude) / this.lnGamma);
  }
  /** Representative magnitude of bucket i (within α of every magnitude in the bucket). */
  value(i: number): number {
    return (2 * Math.exp(i * this.lnGamma)) / (this.gamma + 1);
  }

  /** Adds x with weight w (> 0; default 1). Non-finite values are rejected. */
  add(x: number, w = 1): void {
    if (!Number.isFinite(x)) throw new RangeError(`DDSketch.add: non-finite value ${x}`);
    if (!(w > 0) || !Number.isFinite(w)) throw new RangeError(`DDSketch.add: weight must be finite and > 0 (got ${w})`);
    if (x > MIN_INDEXABLE) this.pos.add(this.index(x), w);
    else if (x < -MIN_INDEXABLE) this.neg.add(this.index(-x), w);
    else this.zero += w;
    this.n += w;
    this.total += x * w;
    if (x < this.lowest) this.lowest = x;
    if (x > this.highest) this.highest = x;
  }

  /** Adds every value of `other` (same α required); afterwards this equals the sketch of the union. */
  merge(other: DDSketch): void {
    if (other.alpha !== this.alpha) throw new RangeError(`DDSketch.merge: relative accuracies differ (${this.alpha} vs ${other.alpha})`);
    if (other.n === 0) return;
    for (const [mine, theirs] of [
      [this.pos, other.pos],
      [this.neg, other.neg],
    ] as const) {
      if (theirs.isEmpty) continue;
      // Highest first, so the collapse floor is final before the low buckets arrive (same result either way).
      for (let i = theirs.hi; i >= theirs.lo; i--) {
        const c = theirs.countAt(i);
        if (c > 0) mine.add(i, c);
      }
    }
    this.zero += other.zero;
    this.n += other.n;
    this.total += other.total;
    if (other.lowest < this.lowest) this.lowest = other.lowest;
    if (other.highest > this.highest) this.highest = other.highest;
  }

  get count(): number {
    return this.n;
  }
  get isEmpty(): boolean {
    return this.n === 0;
  }
  /** Exact minimum / maximum; NaN when empty. */
  get min(): number {
    return this.n === 0 ? Number.NaN : this.lowest;
  }
  get max(): number {
    return this.n === 0 ? Number.NaN : this.highest;
  }
  get sum(): number {
    return this.total;
  }
  get mean(): number {
    return this.n === 0 ? Number.NaN : this.total / this.n;
  }
  get zeroCount(): number {
    return this.zero;
  }
  /** Buckets in use (positive + negative), each store ≤ maxBuckets. */
  get bucketCount(): number {
    return this.pos.bucketCount + this.neg.bucketCount;
  }
  /** Float64 slots allocated (memory bound: ≤ 4·maxBuckets). */
  get allocatedSlots(): number {
    return this.pos.allocated + this.neg.allocated;
  }

  /** Approximate value of the order statistic of rank k (0-based, weights as multiplicities), clamped to [min, max]. */
  private atRank(k: number): number {
    let v: number;
    let cum = 0;
    found: {
      const neg = this.neg;
      if (!neg.isEmpty) {
        for (let i = neg.hi; i >= neg.lo; i--) {
          cum += neg.countAt(i);
          if (cum > k) {
            v = -this.value(i);
            break found;
          }
        }
      }
      cum += this.zero;
      if (cum > k) {
        v = 0;
        break found;
      }
      const pos = this.pos;
      for (let i = pos.lo; i <= pos.hi; i++) {
        cum += pos.countAt(i);
        if (cum > k) {
          v = this.value(i);
          break found;
        }
      }
      v = this.highest; // rounding of fractional weights: the top
    }
    return Math.min(this.highest, Math.max(this.lowest, v));
  }

  /** Type-7 quantile (simple-statistics `quantile` semantics) within relative accuracy α; NaN when empty. */
  quantile(q: number): number {
    if (!(q >= 0 && q <= 1)) throw new RangeError(`DDSketch.quantile: q must be in [0, 1] (got ${q})`);
    if (this.n === 0) return Number.NaN;
    if (q === 0) return this.lowest;
    if (q === 1) return this.highest;
    const r = q * (this.n - 1);
    const lo = Math.floor(r);
    const a = this.atRank(lo);
    const f = r - lo;
    if (f === 0) return a;
    const b = this.atRank(lo + 1);
    return a + f * (b - a);
  }

  median(): number {
    return this.quantile(0.5);
  }

  toJSON(): DDSketchJSON {
    return {
      alpha: this.alpha,
      maxBuckets: this.maxBuckets,
      count: this.n,
      zero: this.zero,
      min: this.n === 0 ? null : this.lowest,
      max: this.n === 0 ? null : this.highest,
      sum: this.total,
      pos: this.pos.toJSON(),
      neg: this.neg.toJSON(),
    };
  }

  /**
   * Restores a sketch. With `opts` giving another maxBuckets, the stores are re-collapsed under it (another
   * relative accuracy cannot be converted: that throws).
   */
  static fromJSON(json: unknown, opts: { maxBuckets?: number } = {}): DDSketch {
    const j = json as Partial<DDSketchJSON> | null;
    if (
      !j ||
      typeof j.alpha !== 'number' ||
      !Number.isInteger(j.maxBuckets) ||
      typeof j.count !== 'number' ||
      typeof j.zero !== 'number' ||
      typeof j.sum !== 'number' ||
      !(j.count >= 0) ||
      !(j.zero >= 0)
    ) {
      throw new TypeError('DDSketch.fromJSON: expected { alpha, maxBuckets, count, zero, min, max, sum, pos, neg }');
    }
    const s = new DDSketch({ relativeAccuracy: j.alpha, maxBuckets: opts.maxBuckets ?? (j.maxBuckets as number) });
    s.pos = Store.fromJSON(j.pos, s.maxBuckets);
    s.neg = Store.fromJSON(j.neg, s.maxBuckets);
    s.zero = j.zero;
    s.n = j.count;
    s.total = j.sum;
    if (j.count > 0) {
      if (typeof j.min !== 'number' || typeof j.max !== 'number' || !(j.min <= j.max)) throw new TypeError('DDSketch.fromJSON: min/max missing');
      s.lowest = j.min;
      s.highest = j.max;
    }
    const stored = s.pos.total + s.neg.total + s.zero;
    if (Math.abs(stored - j.count) > 1e-9 * Math.max(1, j.count)) throw new TypeError('DDSketch.fromJSON: bucket counts do not add up to count');
    return s;
  }
}
