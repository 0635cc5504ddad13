/**
 * Robust z-score core: the median and MAD of the values of the last windowMs of event time (at most
 * maxSamples), and a value's robust z against them: z = (x − median) / max(1.4826·MAD, minScale).
 * TimeWindow (expiry by time and count) + SortedWindow (order statistics); median and MAD are cached and
 * refreshed on demand after a change: O(log n + maxSamples memmove) per added value.
 */
import { TimeWindow } from '../../stats/event-window.ts';
import { SortedWindow } from '../../stats/sorted-window.ts';

/** Scales MAD to a standard deviation for normally distributed data. */
export const MAD_TO_SIGMA = 1.4826;

export interface RobustBaseline {
  window: TimeWindow<number>;
  sorted: SortedWindow;
  /** Median and MAD, cached; `dirty` when the window changed since (refreshed on demand by robustRefresh). */
  median: number;
  mad: number;
  dirty: boolean;
  /** Removes an evicted value from `sorted` (one closure per baseline: none is created per event). */
  evict: (v: number) => void;
}

export interface RobustBaselineJSON {
  horizon: number | null;
  ts: number[];
  values: number[];
}

export function newRobustBaseline(windowMs: number, maxSamples: number): RobustBaseline {
  const sorted = new SortedWindow(maxSamples);
  return {
    window: new TimeWindow<number>(windowMs, maxSamples),
    sorted,
    median: Number.NaN,
    mad: Number.NaN,
    dirty: false,
    evict: (v: number): void => {
      sorted.remove(v);
    },
  };
}

function refresh(b: RobustBaseline): void {
  b.median = b.sorted.median();
  b.mad = b.sorted.mad();
  b.dirty = false;
}

/** Brings the cached median/MAD up to date (once per change, however many values came and went). */
export function robustRefresh(b: RobustBaseline): void {
  if (b.dirty) refresh(b);
}

/** Adds a value observed at ts (after expiring what ts pushes out of the window). */
export function robustAdd(b: RobustBaseline, ts: number, x: number): void {
  b.window.push(ts, x, b.evict);
  b.sorted.insert(x);
  b.dirty = true;
}

/** Expires the values that left the window by `now`. */
export function robustExpire(b: RobustBaseline, now: number): void {
  if (b.window.expire(now, b.evict) > 0) b.dirty = true;
}

export function robustScale(b: RobustBaseline, minScale: number): number {
  robustRefresh(b);
  return Math.max(MAD_TO_SIGMA * b.mad, minScale);
}

/** Robust z of x; ±Infinity when the scale is 0 and x differs from the median, NaN when empty. */
export function robustZ(b: RobustBaseline, x: number, minScale: number): number {
  robustRefresh(b);
  const scale = robustScale(b, minScale);
  const d = x - b.median;
  if (scale > 0) return d / scale;
  return d === 0 ? 0 : d > 0 ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
}

export function robustToJSON(b: RobustBaseline): RobustBaselineJSON {
  const w = b.window.toJSON();
  return { horizon: w.horizon, ts: w.ts, values: w.values };
}

/** Rebuilds the baseline under (possibly other) window parameters; throws TypeError on garbage. */
export function robustFromJSON(json: unknown, windowMs: number, maxSamples: number): RobustBaseline {
  const j = json as Partial<RobustBaselineJSON> | null;
  if (!j || !Array.isArray(j.ts) || !Array.isArray(j.values) || j.ts.length !== j.values.length) {
    throw new TypeError('robust baseline: expected { horizon, ts[], values[] }');
  }
  const b = newRobustBaseline(windowMs, maxSamples);
  const evict = b.evict;
  for (let i = 0; i < j.ts.length; i++) {
    const t = j.ts[i];
    const v = j.values[i];
    if (typeof t !== 'number' || !Number.isFinite(t) || typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError('robust baseline: ts and values must be finite numbers');
    b.window.push(t, v, evict);
    b.sorted.insert(v);
  }
  if (typeof j.horizon === 'number') b.window.expire(j.horizon, evict);
  refresh(b);
  return b;
}
