/**
 * The interval-return baseline of price_jump and disorderly_trading: per key, trades are bucketed into
 * event-time intervals (intervalMs); when a trade opens a later interval, the previous one closes and its
 * log return against the previous interval that had trades joins a window of the last windowMs (at most
 * maxSamples), kept in time order (TimeWindow) and sorted (SortedWindow), with median and MAD cached.
 */
import { z } from 'zod';
import type { TimeWindow } from '../stats/event-window.ts';
import type { SortedWindow } from '../stats/sorted-window.ts';

/** The baseline's parameters (the first of price_jump's and disorderly_trading's). */
export const intervalReturnParamShape = {
  /** Returns are sampled between consecutive event-time intervals of this length that had trades. */
  intervalMs: z.number().int().positive().default(1000),
  /** Baseline window of past interval returns, event time. */
  windowMs: z.number().int().positive().default(300_000),
  /** Bound on baseline samples (memory per key). */
  maxSamples: z.number().int().min(2).max(1_000_000).default(600),
  /** No evaluation before the baseline holds this many returns. */
  minSamples: z.number().int().min(1).default(20),
};

/** Cross-field checks of intervalReturnParamShape (for superRefine). */
export function checkIntervalReturnParams(p: { intervalMs: number; windowMs: number; maxSamples: number; minSamples: number }, ctx: z.RefinementCtx): void {
  if (p.minSamples > p.maxSamples) ctx.addIssue({ code: 'custom', path: ['minSamples'], message: `must be <= maxSamples (${p.maxSamples})` });
  if (p.windowMs < p.intervalMs) ctx.addIssue({ code: 'custom', path: ['windowMs'], message: `must be >= intervalMs (${p.intervalMs})` });
}

/** The part of a detector's per-key state this module maintains. */
export interface IntervalReturns {
  /** Index (floor(ts / intervalMs)) of the open interval; null before the first trade. */
  curIdx: number | null;
  /** Last price of the open interval, and its trade's time. */
  curClose: number;
  curCloseTs: number;
  /** Close of the previous interval that had trades, and its trade's time. */
  prevClose: number | null;
  prevCloseTs: number | null;
  /** Baseline returns by interval start time; `sorted` holds the same values, ordered. */
  returns: TimeWindow<number>;
  sorted: SortedWindow;
  /** Cached baseline median and MAD (change only when an interval closes). */
  median: number;
  mad: number;
  /** Trades used, and trades ignored because they fell before the open interval. */
  trades: number;
  late: number;
}

/**
 * Bounds of a ratio x for which |ln x| < minMove is certain without computing the logarithm: strictly
 * inside (e^−minMove, e^minMove) by a relative margin of 1e-9, far beyond the rounding of Math.exp and
 * Math.log (~1e-16 relative), so `x > lo && x < hi` implies `!(Math.abs(Math.log(x)) >= minMove)`. Most
 * trades are such small moves; the others take the logarithm as before.
 */
export function smallMoveBounds(minMove: number): { lo: number; hi: number } {
  return { lo: Math.exp(-minMove) * (1 + 1e-9), hi: Math.exp(minMove) * (1 - 1e-9) };
}

export function refreshBaseline(s: IntervalReturns): void {
  s.median = s.sorted.median();
  s.mad = s.sorted.mad();
}

/** The saved baseline: the open and previous interval and the window's samples. */
export interface IntervalReturnsJSON {
  curIdx: number | null;
  curClose: number;
  curCloseTs: number;
  prevClose: number | null;
  prevCloseTs: number | null;
  horizon: number | null;
  sampleTs: number[];
  sampleR: number[];
}

export function intervalReturnsToJSON(s: IntervalReturns): IntervalReturnsJSON {
  const w = s.returns.toJSON();
  return {
    curIdx: s.curIdx,
    curClose: s.curClose,
    curCloseTs: s.curCloseTs,
    prevClose: s.prevClose,
    prevCloseTs: s.prevCloseTs,
    horizon: w.horizon,
    sampleTs: w.ts,
    sampleR: w.values,
  };
}

/** Adds a closed interval's return to the baseline and expires what the new interval start pushes out. */
export function addReturnSample(s: IntervalReturns, sampleTs: number, r: number | null, now: number): void {
  const evict = (v: number): void => {
    s.sorted.remove(v);
  };
  // The TimeWindow evicts (by time and count) before the value goes into the equally bounded SortedWindow.
  if (r !== null) {
    s.returns.push(sampleTs, r, evict);
    s.sorted.insert(r);
  }
  s.returns.expire(now, evict);
  refreshBaseline(s);
}

/**
 * Files a valid trade (price > 0, finite price and time) into the intervals: counts it (or counts it late
 * and returns false when it falls before the open interval), closes the open interval when the trade opens
 * a later one, and makes the trade the open interval's close. Returns false for the key's first trade too
 * (nothing to compare with yet), true when the trade is to be checked.
 */
export function fileTrade(s: IntervalReturns, price: number, ts: number, intervalMs: number): boolean {
  const idx = Math.floor(ts / intervalMs);
  if (s.curIdx === null) {
    s.trades += 1;
    s.curIdx = idx;
    s.curClose = price;
    s.curCloseTs = ts;
    return false;
  }
  if (idx < s.curIdx) {
    s.late += 1;
    return false;
  }
  s.trades += 1;
  if (idx > s.curIdx) {
    // Close the open interval: its return against the previous trading interval joins the baseline.
    const r = s.prevClose === null ? null : Math.log(s.curClose / s.prevClose);
    addReturnSample(s, s.curIdx * intervalMs, r, idx * intervalMs);
    s.prevClose = s.curClose;
    s.prevCloseTs = s.curCloseTs;
    s.curIdx = idx;
  }
  s.curClose = price;
  s.curCloseTs = ts;
  return true;
}

/**
 * Rebuilds the baseline from saved samples under the current window parameters (identical to the saved
 * one when they are unchanged), expired against the saved horizon. With `what`, samples that are not
 * finite numbers throw `${what}: baseline samples must be numbers`. Does not refresh median and MAD.
 */
export function restoreReturns(s: IntervalReturns, sampleTs: readonly unknown[], sampleR: readonly unknown[], horizon: unknown, what?: string): void {
  const evict = (v: number): void => {
    s.sorted.remove(v);
  };
  for (let i = 0; i < sampleTs.length; i++) {
    const ts = sampleTs[i];
    const r = sampleR[i];
    if (what !== undefined && !(typeof ts === 'number' && Number.isFinite(ts) && typeof r === 'number' && Number.isFinite(r))) {
      throw new TypeError(`${what}: baseline samples must be numbers`);
    }
    s.returns.push(ts as number, r as number, evict);
    s.sorted.insert(r as number);
  }
  if (typeof horizon === 'number') s.returns.expire(horizon, evict);
}
