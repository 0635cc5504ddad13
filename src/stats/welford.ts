/**
 * Running count / mean / variance with add AND remove (Welford's algorithm, with the inverse update for
 * removal). O(1) per update, O(1) memory. Sliding-window owners add a sample when it enters the window
 * and remove the very same value when it leaves.
 *
 * Numerics: the mean is updated by increments (no running sum of x, so no catastrophic cancellation of a
 * large sum), M2 (sum of squared deviations) is clamped at 0 after a removal, and the state resets to
 * exact zeros when the window empties so rounding errors cannot outlive the samples that caused them.
 */

export interface RollingMomentsJSON {
  n: number;
  mean: number;
  m2: number;
}

export class RollingMoments {
  private n = 0;
  private mu = 0;
  private m2 = 0;

  /** Adds one sample. Non-finite values are rejected (they would poison the moments forever). */
  add(x: number): void {
    if (!Number.isFinite(x)) throw new RangeError(`RollingMoments.add: non-finite value ${x}`);
    this.n += 1;
    const d = x - this.mu;
    this.mu += d / this.n;
    this.m2 += d * (x - this.mu);
  }

  /** Removes one sample previously added (the caller guarantees it is in the set). */
  remove(x: number): void {
    if (!Number.isFinite(x)) throw new RangeError(`RollingMoments.remove: non-finite value ${x}`);
    if (this.n <= 0) throw new RangeError('RollingMoments.remove: empty');
    if (this.n === 1) {
      this.reset();
      return;
    }
    const d = x - this.mu;
    this.n -= 1;
    this.mu -= d / this.n;
    this.m2 -= d * (x - this.mu);
    if (this.m2 < 0) this.m2 = 0;
  }

  reset(): void {
    this.n = 0;
    this.mu = 0;
    this.m2 = 0;
  }

  get count(): number {
    return this.n;
  }
  /** NaN when empty. */
  get mean(): number {
    return this.n === 0 ? Number.NaN : this.mu;
  }
  /** Population variance (divides by n), as simple-statistics `variance`; NaN when empty. */
  get variance(): number {
    return this.n === 0 ? Number.NaN : this.m2 / this.n;
  }
  /** Sample variance (divides by n − 1), as simple-statistics `sampleVariance`; NaN below 2 samples. */
  get sampleVariance(): number {
    return this.n < 2 ? Number.NaN : this.m2 / (this.n - 1);
  }
  /** Population standard deviation. */
  get std(): number {
    return Math.sqrt(this.variance);
  }
  /** Sample standard deviation. */
  get sampleStd(): number {
    return Math.sqrt(this.sampleVariance);
  }

  toJSON(): RollingMomentsJSON {
    return { n: this.n, mean: this.mu, m2: this.m2 };
  }

  static fromJSON(json: unknown): RollingMoments {
    const j = json as Partial<RollingMomentsJSON> | null;
    if (!j || !Number.isInteger(j.n) || (j.n as number) < 0 || !Number.isFinite(j.mean) || !Number.isFinite(j.m2)) {
      throw new TypeError('RollingMoments.fromJSON: expected { n, mean, m2 }');
    }
    const r = new RollingMoments();
    r.n = j.n as number;
    r.mu = j.mean as number;
    r.m2 = Math.max(0, j.m2 as number);
    return r;
  }
}
