/**
 * Shared pieces of the market-quote detectors (spread_blowout, feed_gap, crossed_book,
 * cross_venue_divergence): quote arithmetic, bps formatting and a robust rolling baseline.
 */
import type { Quote } from '../core/events.ts';
import { TimeWindow } from '../stats/event-window.ts';
import { SortedWindow } from '../stats/sorted-window.ts';
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
    const j = json as Partial<RobustWindowJSON> | null;
    if (!j || typeof j !== 'object' || !Array.isArray(j.ts) || !Array.isArray(j.values) || j.ts.length !== j.values.length) {
      throw new TypeError(`${what}: baseline JSON must be { horizon, ts[], values[] }`);
    }
    const w = new RobustWindow(windowMs, maxSamples);
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
    w.refresh();
    return w;
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
