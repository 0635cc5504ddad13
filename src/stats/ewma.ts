/**
 * Exponentially weighted mean and variance, incremental, O(1).
 *
 * Two weightings, both kept as one weighted-moments recurrence (total weight W, mean, S = Σ w·(x − mean)²):
 *  - `{ alpha }`: per-sample smoothing, the classic recurrence (pandas `ewm(alpha, adjust=False)`):
 *      mean ← mean + α·d,  var ← (1 − α)·(var + α·d²),  with d = x − mean; the first sample sets the mean.
 *  - `{ halfLifeMs }`: event-time decay for irregular samples: the sample at time tᵢ weighs 2^(−(t − tᵢ)/h)
 *      at time t, mean = Σw·x / Σw and var = Σw·(x − mean)² / Σw. Samples at the same time weigh the same,
 *      and a gap of h halves the weight of everything before it.
 * `variance` is the weighted population variance (no bias correction).
 */

export type EwmaOptions = { alpha: number; halfLifeMs?: undefined } | { halfLifeMs: number; alpha?: undefined };

export interface EwmaJSON {
  alpha: number | null;
  halfLifeMs: number | null;
  n: number;
  w: number;
  mean: number;
  s: number;
  lastTs: number | null;
}

export class Ewma {
  readonly alpha: number | undefined;
  readonly halfLifeMs: number | undefined;
  private n = 0;
  private w = 0;
  private mu = 0;
  private s = 0;
  private last: number | undefined;

  constructor(opts: EwmaOptions) {
    if (opts.alpha !== undefined) {
      if (!(opts.alpha > 0 && opts.alpha <= 1)) throw new RangeError(`Ewma: alpha must be in (0, 1] (got ${opts.alpha})`);
      this.alpha = opts.alpha;
    } else {
      if (!(opts.halfLifeMs > 0) || !Number.isFinite(opts.halfLifeMs)) throw new RangeError(`Ewma: halfLifeMs must be > 0 (got ${opts.halfLifeMs})`);
      this.halfLifeMs = opts.halfLifeMs;
    }
  }

  /** Adds a sample. `ts` (event time, ms) is required in half-life mode; time going backwards counts as no time passing. */
  update(x: number, ts?: number): void {
    if (!Number.isFinite(x)) throw new RangeError(`Ewma.update: non-finite value ${x}`);
    let decay: number;
    let weight: number;
    if (this.alpha !== undefined) {
      decay = 1 - this.alpha;
      weight = this.n === 0 ? 1 : this.alpha;
    } else {
      if (ts === undefined || !Number.isFinite(ts)) throw new RangeError('Ewma.update: half-life mode needs a finite ts');
      const dt = this.last === undefined ? 0 : Math.max(0, ts - this.last);
      decay = Math.pow(2, -dt / (this.halfLifeMs as number));
      weight = 1;
    }
    if (ts !== undefined && (this.last === undefined || ts > this.last)) this.last = ts;
    this.n += 1;
    this.w = this.w * decay + weight;
    this.s *= decay;
    const d = x - this.mu;
    this.mu += (weight / this.w) * d;
    this.s += weight * d * (x - this.mu);
    if (this.s < 0) this.s = 0;
  }

  get count(): number {
    return this.n;
  }
  /** NaN before the first sample. */
  get mean(): number {
    return this.n === 0 ? Number.NaN : this.mu;
  }
  get variance(): number {
    return this.n === 0 ? Number.NaN : this.s / this.w;
  }
  get std(): number {
    return Math.sqrt(this.variance);
  }
  /** Total weight (alpha mode: 1 after the first sample; half-life mode: the effective sample count). */
  get weight(): number {
    return this.w;
  }
  get lastTs(): number | undefined {
    return this.last;
  }

  toJSON(): EwmaJSON {
    return {
      alpha: this.alpha ?? null,
      halfLifeMs: this.halfLifeMs ?? null,
      n: this.n,
      w: this.w,
      mean: this.mu,
      s: this.s,
      lastTs: this.last ?? null,
    };
  }

  static fromJSON(json: unknown): Ewma {
    const j = json as Partial<EwmaJSON> | null;
    if (!j || typeof j.n !== 'number' || typeof j.w !== 'number' || typeof j.mean !== 'number' || typeof j.s !== 'number') {
      throw new TypeError('Ewma.fromJSON: expected { alpha, halfLifeMs, n, w, mean, s, lastTs }');
    }
    const e = typeof j.alpha === 'number' ? new Ewma({ alpha: j.alpha }) : new Ewma({ halfLifeMs: j.halfLifeMs as number });
    e.n = j.n;
    e.w = j.w;
    e.mu = j.mean;
    e.s = j.s;
    e.last = typeof j.lastTs === 'number' ? j.lastTs : undefined;
    return e;
  }
}
