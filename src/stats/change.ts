/**
 * Sequential change detectors, O(1) per value and O(1) memory, both reset after an alarm.
 *
 * Cusum — two-sided tabular CUSUM (Page 1954; Montgomery's form) on standardized values z (the caller
 * standardizes: z = (x − μ₀)/σ₀), reference k and decision interval h in the same σ units:
 *     S⁺ ← max(0, S⁺ + z − k),   S⁻ ← max(0, S⁻ − z − kDown)
 *   alarm 'up' when S⁺ > h, 'down' when S⁻ > hDown (kDown, hDown default to k, h). After an alarm both sums
 *   restart at 0. `upLength` / `downLength` count the values since the sum last stood at 0: the excursion,
 *   whose start estimates the change point.
 *
 * PageHinkley — the Page–Hinkley test (Page 1954, Hinkley 1971; as in Gama et al. / River) on raw values,
 * with the running mean x̄ₜ of the values since the last reset, tolerance δ and threshold λ:
 *     up:    mₜ = α·mₜ₋₁ + (xₜ − x̄ₜ − δ),   PH⁺ = mₜ − min(0, m₁ … mₜ)      alarm when PH⁺ > λ
 *     down:  m'ₜ = α·m'ₜ₋₁ + (xₜ − x̄ₜ + δ),  PH⁻ = max(0, m'₁ … m'ₜ) − m'ₜ    alarm when PH⁻ > λ
 *   α ∈ (0, 1] is the optional forgetting factor (1 = the classic test). No alarm before `minSamples` values.
 *   After an alarm the mean, sums and extremes restart.
 */

export type ChangeDirection = 'up' | 'down' | 'both';
export type ChangeAlarm = 'up' | 'down' | null;

export interface CusumOptions {
  /** Reference value (allowance), σ units, ≥ 0: typically half the shift to detect. */
  k: number;
  /** Decision interval, σ units, > 0. */
  h: number;
  /** Reference and decision interval of the lower side (default k, h). */
  kDown?: number;
  hDown?: number;
  /** Sides watched (default both). */
  direction?: ChangeDirection;
}

export interface CusumJSON {
  k: number;
  h: number;
  kDown: number;
  hDown: number;
  direction: ChangeDirection;
  pos: number;
  neg: number;
  upLength: number;
  downLength: number;
  n: number;
  alarms: number;
}

function checkNonNeg(name: string, x: number): void {
  if (!(x >= 0) || !Number.isFinite(x)) throw new RangeError(`${name} must be finite and >= 0 (got ${x})`);
}
function checkPos(name: string, x: number): void {
  if (!(x > 0) || !Number.isFinite(x)) throw new RangeError(`${name} must be finite and > 0 (got ${x})`);
}
function checkDirection(d: unknown): ChangeDirection {
  if (d !== 'up' && d !== 'down' && d !== 'both') throw new RangeError(`direction must be up, down or both (got ${String(d)})`);
  return d;
}

export class Cusum {
  readonly k: number;
  readonly h: number;
  readonly kDown: number;
  readonly hDown: number;
  readonly direction: ChangeDirection;
  private sPos = 0;
  private sNeg = 0;
  private lenPos = 0;
  private lenNeg = 0;
  private n = 0;
  private alarmCount = 0;
  private lastStat = Number.NaN;
  private lastLen = 0;

  constructor(opts: CusumOptions) {
    checkNonNeg('Cusum: k', opts.k);
    checkPos('Cusum: h', opts.h);
    this.k = opts.k;
    this.h = opts.h;
    this.kDown = opts.kDown ?? opts.k;
    this.hDown = opts.hDown ?? opts.h;
    checkNonNeg('Cusum: kDown', this.kDown);
    checkPos('Cusum: hDown', this.hDown);
    this.direction = checkDirection(opts.direction ?? 'both');
  }

  /** Feeds one standardized value; returns the alarm it raises (and then resets), or null. */
  update(z: number): ChangeAlarm {
    if (!Number.isFinite(z)) throw new RangeError(`Cusum.update: non-finite value ${z}`);
    this.n += 1;
    if (this.direction !== 'down') {
      const s = this.sPos + z - this.k;
      if (s > 0) {
        this.sPos = s;
        this.lenPos += 1;
      } else {
        this.sPos = 0;
        this.lenPos = 0;
      }
    }
    if (this.direction !== 'up') {
      const s = this.sNeg - z - this.kDown;
      if (s > 0) {
        this.sNeg = s;
        this.lenNeg += 1;
      } else {
        this.sNeg = 0;
        this.lenNeg = 0;
      }
    }
    let alarm: ChangeAlarm = null;
    if (this.sPos > this.h) alarm = 'up';
    else if (this.sNeg > this.hDown) alarm = 'down';
    if (alarm !== null) {
      this.alarmCount += 1;
      this.lastStat = alarm === 'up' ? this.sPos : this.sNeg;
      this.lastLen = alarm === 'up' ? this.lenPos : this.lenNeg;
      this.reset();
    }
    return alarm;
  }

  /** The sum that crossed its decision interval at the last alarm, and its excursion length (not serialized). */
  get alarmStatistic(): number {
    return this.lastStat;
  }
  get alarmLength(): number {
    return this.lastLen;
  }

  /** Restarts both sums (the alarm count is kept). */
  reset(): void {
    this.sPos = 0;
    this.sNeg = 0;
    this.lenPos = 0;
    this.lenNeg = 0;
    this.n = 0;
  }

  /** S⁺ and S⁻ now (0 right after an alarm). */
  get pos(): number {
    return this.sPos;
  }
  get neg(): number {
    return this.sNeg;
  }
  /** Values since S⁺ (S⁻) last stood at 0. */
  get upLength(): number {
    return this.lenPos;
  }
  get downLength(): number {
    return this.lenNeg;
  }
  /** Values since the last reset. */
  get count(): number {
    return this.n;
  }
  get alarms(): number {
    return this.alarmCount;
  }

  toJSON(): CusumJSON {
    return {
      k: this.k,
      h: this.h,
      kDown: this.kDown,
      hDown: this.hDown,
      direction: this.direction,
      pos: this.sPos,
      neg: this.sNeg,
      upLength: this.lenPos,
      downLength: this.lenNeg,
      n: this.n,
      alarms: this.alarmCount,
    };
  }

  /** Restores the sums; `opts` (when given) replaces the thresholds, keeping the sums (hot reload). */
  static fromJSON(json: unknown, opts?: CusumOptions): Cusum {
    const j = json as Partial<CusumJSON> | null;
    if (!j || ![j.k, j.h, j.pos, j.neg, j.upLength, j.downLength, j.n].every((x) => typeof x === 'number' && Number.isFinite(x)) || (j.pos as number) < 0 || (j.neg as number) < 0) {
      throw new TypeError('Cusum.fromJSON: expected { k, h, kDown, hDown, direction, pos, neg, upLength, downLength, n }');
    }
    const c = new Cusum(opts ?? { k: j.k as number, h: j.h as number, kDown: j.kDown ?? (j.k as number), hDown: j.hDown ?? (j.h as number), direction: j.direction ?? 'both' });
    c.sPos = c.direction === 'down' ? 0 : (j.pos as number);
    c.sNeg = c.direction === 'up' ? 0 : (j.neg as number);
    c.lenPos = c.sPos > 0 ? (j.upLength as number) : 0;
    c.lenNeg = c.sNeg > 0 ? (j.downLength as number) : 0;
    c.n = j.n as number;
    c.alarmCount = typeof j.alarms === 'number' ? j.alarms : 0;
    return c;
  }
}

export interface PageHinkleyOptions {
  /** Magnitude of change tolerated (same units as the values), ≥ 0. */
  delta: number;
  /** Alarm threshold, > 0. */
  lambda: number;
  /** Forgetting factor in (0, 1]; default 1 (none). */
  alpha?: number;
  /** No alarm before this many values since the last reset (default 1). */
  minSamples?: number;
  /** Sides watched (default both). */
  direction?: ChangeDirection;
}

export interface PageHinkleyJSON {
  delta: number;
  lambda: number;
  alpha: number;
  minSamples: number;
  direction: ChangeDirection;
  n: number;
  mean: number;
  up: number;
  upMin: number;
  down: number;
  downMax: number;
  alarms: number;
}

export class PageHinkley {
  readonly delta: number;
  readonly lambda: number;
  readonly alpha: number;
  readonly minSamples: number;
  readonly direction: ChangeDirection;
  private n = 0;
  private mu = 0;
  private mUp = 0;
  private minUp = 0;
  private mDown = 0;
  private maxDown = 0;
  private alarmCount = 0;

  constructor(opts: PageHinkleyOptions) {
    checkNonNeg('PageHinkley: delta', opts.delta);
    checkPos('PageHinkley: lambda', opts.lambda);
    const alpha = opts.alpha ?? 1;
    if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`PageHinkley: alpha must be in (0, 1] (got ${alpha})`);
    const minSamples = opts.minSamples ?? 1;
    if (!Number.isInteger(minSamples) || minSamples < 1) throw new RangeError(`PageHinkley: minSamples must be a positive integer (got ${minSamples})`);
    this.delta = opts.delta;
    this.lambda = opts.lambda;
    this.alpha = alpha;
    this.minSamples = minSamples;
    this.direction = checkDirection(opts.direction ?? 'both');
  }

  update(x: number): ChangeAlarm {
    if (!Number.isFinite(x)) throw new RangeError(`PageHinkley.update: non-finite value ${x}`);
    this.n += 1;
    this.mu += (x - this.mu) / this.n;
    const d = x - this.mu;
    this.mUp = this.alpha * this.mUp + (d - this.delta);
    if (this.mUp < this.minUp) this.minUp = this.mUp;
    this.mDown = this.alpha * this.mDown + (d + this.delta);
    if (this.mDown > this.maxDown) this.maxDown = this.mDown;
    if (this.n < this.minSamples) return null;
    let alarm: ChangeAlarm = null;
    if (this.direction !== 'down' && this.mUp - this.minUp > this.lambda) alarm = 'up';
    else if (this.direction !== 'up' && this.maxDown - this.mDown > this.lambda) alarm = 'down';
    if (alarm !== null) {
      this.alarmCount += 1;
      this.reset();
    }
    return alarm;
  }

  reset(): void {
    this.n = 0;
    this.mu = 0;
    this.mUp = 0;
    this.minUp = 0;
    this.mDown = 0;
    this.maxDown = 0;
  }

  /** PH⁺ = mₜ − min(0, m₁ … mₜ) and PH⁻ = max(0, m'₁ … m'ₜ) − m'ₜ now. */
  get upStatistic(): number {
    return this.mUp - this.minUp;
  }
  get downStatistic(): number {
    return this.maxDown - this.mDown;
  }
  /** Mean of the values since the last reset (NaN when none). */
  get mean(): number {
    return this.n === 0 ? Number.NaN : this.mu;
  }
  get count(): number {
    return this.n;
  }
  get alarms(): number {
    return this.alarmCount;
  }

  toJSON(): PageHinkleyJSON {
    return {
      delta: this.delta,
      lambda: this.lambda,
      alpha: this.alpha,
      minSamples: this.minSamples,
      direction: this.direction,
      n: this.n,
      mean: this.mu,
      up: this.mUp,
      upMin: this.minUp,
      down: this.mDown,
      downMax: this.maxDown,
      alarms: this.alarmCount,
    };
  }

  static fromJSON(json: unknown, opts?: PageHinkleyOptions): PageHinkley {
    const j = json as Partial<PageHinkleyJSON> | null;
    if (!j || ![j.delta, j.lambda, j.n, j.mean, j.up, j.upMin, j.down, j.downMax].every((x) => typeof x === 'number' && Number.isFinite(x))) {
      throw new TypeError('PageHinkley.fromJSON: expected { delta, lambda, alpha, minSamples, direction, n, mean, up, upMin, down, downMax }');
    }
    const p = new PageHinkley(
      opts ?? { delta: j.delta as number, lambda: j.lambda as number, alpha: j.alpha ?? 1, minSamples: j.minSamples ?? 1, direction: j.direction ?? 'both' },
    );
    p.n = j.n as number;
    p.mu = j.mean as number;
    p.mUp = j.up as number;
    p.minUp = j.upMin as number;
    p.mDown = j.down as number;
    p.maxDown = j.downMax as number;
    p.alarmCount = typeof j.alarms === 'number' ? j.alarms : 0;
    return p;
  }
}
