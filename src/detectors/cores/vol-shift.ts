/**
 * Volatility shift core (volatility_shift, metric_anomaly method 'volatility'): a CUSUM on squared
 * changes, standardized by a slow exponentially weighted variance.
 *
 * Per sample x (a per-interval log return, or a metric's change):
 *   - baseline: Ewma (event-time half-life halfLifeMs) of x → mean μ and variance v (floored at minScale²);
 *     the sample is judged against the baseline BEFORE it joins it.
 *   - y = (x − μ)² / v: 1 on average while the variance is unchanged (χ²₁ for Gaussian changes).
 *   - z = (y − 1)/√2 (standardized as χ²₁), capped at clipZ so a single outlier (a jump: price_jump's
 *     business) cannot carry the statistic alone.
 *   - the baseline takes the sample winsorized at that same cap (|x − μ| ≤ √((1 + √2·clipZ)·v)): a robust
 *     EW variance, which heavy tails (fat-tailed returns) cannot inflate.
 *   - a two-sided tabular CUSUM on z (stats/change.ts Cusum) whose reference values are those of the
 *     Gaussian log-likelihood-ratio CUSUM for a variance ratio ρ = volRatio²:
 *       kUp = (ln ρ / (1 − 1/ρ) − 1)/√2,   kDown = (1 − ln ρ / (ρ − 1))/√2,
 *     and whose decision intervals come from one threshold h in nats of log-likelihood ratio
 *     (ARL₀ ≳ e^h samples for Gaussian data): hUp = h / (½(1 − 1/ρ)·√2), hDown = h / ((ρ − 1)/√2).
 *   - on an alarm: CUSUM reset, and the baseline variance is re-based to the variance realized over the
 *     alarm's excursion (the samples since the CUSUM last stood at 0), so a persistent new regime gives one
 *     alarm, not one per excursion.
 * O(1) per sample. No evaluation before minSamples samples in the baseline.
 */
import { Cusum, type ChangeDirection } from '../../stats/change.ts';
import { Ewma } from '../../stats/ewma.ts';

export interface VolShiftConfig {
  halfLifeMs: number;
  minSamples: number;
  volRatio: number;
  /** Decision threshold, nats of log-likelihood ratio. */
  h: number;
  clipZ: number;
  direction: ChangeDirection;
  /** Floor under the baseline standard deviation (units of x). */
  minScale: number;
}

export interface VolShiftState {
  ew: Ewma;
  cusum: Cusum;
  /** Sum of (x − μ)² and count over the current upward / downward excursion, and its first sample's time. */
  upSum: number;
  upN: number;
  upStart: number;
  downSum: number;
  downN: number;
  downStart: number;
}

export interface VolShiftAlarm {
  direction: 'up' | 'down';
  /** Baseline standard deviation before the alarm (floored), and the realized one over the excursion. */
  before: number;
  after: number;
  /** after / before. */
  ratio: number;
  /** The CUSUM sum that crossed (σ units) and its decision interval and reference. */
  statistic: number;
  h: number;
  k: number;
  /** The excursion: first sample's time (the change-point estimate) and samples. */
  startTs: number;
  samples: number;
  baselineSamples: number;
  /** The last sample's z (capped) and y. */
  z: number;
  y: number;
}

/** The state as saved (baseline and CUSUM in their JSON forms). */
export type VolShiftJSON = Omit<VolShiftState, 'ew' | 'cusum'> & { ew: unknown; cusum: unknown };

export function volShiftThresholds(c: Pick<VolShiftConfig, 'volRatio' | 'h'>): { kUp: number; kDown: number; hUp: number; hDown: number } {
  const rho = c.volRatio * c.volRatio;
  const lr = Math.log(rho);
  return {
    kUp: (lr / (1 - 1 / rho) - 1) / Math.SQRT2,
    kDown: (1 - lr / (rho - 1)) / Math.SQRT2,
    hUp: c.h / (0.5 * (1 - 1 / rho) * Math.SQRT2),
    hDown: c.h / ((rho - 1) / Math.SQRT2),
  };
}

function newCusum(c: VolShiftConfig): Cusum {
  const t = volShiftThresholds(c);
  return new Cusum({ k: t.kUp, h: t.hUp, kDown: t.kDown, hDown: t.hDown, direction: c.direction });
}

export function newVolShift(c: VolShiftConfig): VolShiftState {
  return { ew: new Ewma({ halfLifeMs: c.halfLifeMs }), cusum: newCusum(c), upSum: 0, upN: 0, upStart: 0, downSum: 0, downN: 0, downStart: 0 };
}

/** Re-bases the baseline variance to v (keeping its weight and mean). */
function rebase(ew: Ewma, v: number): Ewma {
  const j = ew.toJSON();
  j.s = v * j.w;
  return Ewma.fromJSON(j);
}

/** Feeds one sample; returns the alarm it raises, if any. */
export function volShiftObserve(st: VolShiftState, c: VolShiftConfig, ts: number, x: number): VolShiftAlarm | null {
  let alarm: VolShiftAlarm | null = null;
  let xb = x; // what joins the baseline: winsorized at the clip once the baseline is warm
  const n = st.ew.count;
  if (n >= c.minSamples) {
    const mu = st.ew.mean;
    const v = Math.max(st.ew.variance, c.minScale * c.minScale);
    if (v > 0 && Number.isFinite(v)) {
      const d2 = (x - mu) * (x - mu);
      const y = d2 / v;
      const z = Math.min((y - 1) / Math.SQRT2, c.clipZ);
      const cu = st.cusum;
      if (cu.pos === 0) {
        st.upSum = 0;
        st.upN = 0;
        st.upStart = ts;
      }
      if (cu.neg === 0) {
        st.downSum = 0;
        st.downN = 0;
        st.downStart = ts;
      }
      st.upSum += d2;
      st.upN += 1;
      st.downSum += d2;
      st.downN += 1;
      const lim = Math.sqrt((1 + Math.SQRT2 * c.clipZ) * v);
      if (x > mu + lim) xb = mu + lim;
      else if (x < mu - lim) xb = mu - lim;
      const a = cu.update(z);
      if (a !== null) {
        const up = a === 'up';
        const sum = up ? st.upSum : st.downSum;
        const cnt = up ? st.upN : st.downN;
        const after = Math.sqrt(sum / cnt);
        const before = Math.sqrt(v);
        alarm = {
          direction: a,
          before,
          after,
          ratio: after / before,
          statistic: cu.alarmStatistic,
          h: up ? cu.h : cu.hDown,
          k: up ? cu.k : cu.kDown,
          startTs: up ? st.upStart : st.downStart,
          samples: cnt,
          baselineSamples: n,
          z,
          y,
        };
        st.ew = rebase(st.ew, Math.max(sum / cnt, c.minScale * c.minScale));
        st.upSum = st.upN = st.downSum = st.downN = 0;
      }
    }
  }
  st.ew.update(xb, ts);
  return alarm;
}

export function volShiftToJSON(st: VolShiftState): VolShiftJSON {
  return {
    ew: st.ew.toJSON(),
    cusum: st.cusum.toJSON(),
    upSum: st.upSum,
    upN: st.upN,
    upStart: st.upStart,
    downSum: st.downSum,
    downN: st.downN,
    downStart: st.downStart,
  };
}

/**
 * Restores under (possibly other) parameters: the CUSUM sums are kept with the new thresholds, the
 * baseline is kept as saved unless the half-life changed (then its moments carry over into the new one).
 */
export function volShiftFromJSON(json: unknown, c: VolShiftConfig): VolShiftState {
  const j = json as Partial<VolShiftJSON> | null;
  if (!j || typeof j !== 'object' || !j.ew || !j.cusum) throw new TypeError('volatility core: expected { ew, cusum, … }');
  let ew = Ewma.fromJSON(j.ew);
  if (ew.halfLifeMs !== c.halfLifeMs) {
    const e = ew.toJSON();
    ew = Ewma.fromJSON({ ...e, alpha: null, halfLifeMs: c.halfLifeMs });
  }
  const t = volShiftThresholds(c);
  const cusum = Cusum.fromJSON(j.cusum, { k: t.kUp, h: t.hUp, kDown: t.kDown, hDown: t.hDown, direction: c.direction });
  const num = (x: unknown): number => (typeof x === 'number' && Number.isFinite(x) ? x : 0);
  return {
    ew,
    cusum,
    upSum: num(j.upSum),
    upN: num(j.upN),
    upStart: num(j.upStart),
    downSum: num(j.downSum),
    downN: num(j.downN),
    downStart: num(j.downStart),
  };
}
