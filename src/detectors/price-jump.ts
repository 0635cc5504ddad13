/**
 * `price_jump`: a price move far outside the instrument's usual short-horizon moves.
 *
 * Per venue:symbol, trades are bucketed into event-time intervals (intervalMs). When a trade opens a later
 * interval, the previous interval closes and its log return against the interval before it (the previous
 * interval that had trades) enters the baseline: the returns of the last windowMs of event time (at most
 * maxSamples), kept in a SortedWindow so median and MAD are O(1)/O(log n) and cached between closes.
 *
 * Every trade is checked live: r = ln(price / previous interval's close),
 * z = (r − median) / max(1.4826·MAD, minScaleBps/1e4). A finding fires when |z| ≥ zThreshold, |r| ≥
 * minMoveBps/1e4, r and z point the same way, and no finding of that direction fired for the key within
 * cooldownMs. Work per trade: O(1), plus O(log n + maxSamples memmove) once per interval close.
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Trade } from '../core/events.ts';
import { SortedWindow } from '../stats/sorted-window.ts';
import { TimeWindow } from '../stats/event-window.ts';
import { formatDuration, formatFixed, formatIntervalAdjective, priceDecimals, round } from './format.ts';
import {
  checkIntervalReturnParams,
  fileTrade,
  intervalReturnParamShape,
  intervalReturnsToJSON,
  refreshBaseline,
  restoreReturns,
  smallMoveBounds,
  type IntervalReturns,
  type IntervalReturnsJSON,
} from './interval-returns.ts';
import { MAD_TO_SIGMA } from './market-common.ts';
import { gradeByMultiple } from './severity.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

/** Scales MAD to a standard deviation for normally distributed data (re-exported for amount_anomaly). */
export { MAD_TO_SIGMA };

export const priceJumpParams = z
  .strictObject({
    /** intervalMs, windowMs, maxSamples, minSamples: the baseline (interval-returns.ts). */
    ...intervalReturnParamShape,
    /** Robust z-score that fires. */
    zThreshold: z.number().finite().positive().default(6),
    /** The move must also be at least this large (basis points of log return). */
    minMoveBps: z.number().finite().nonnegative().default(5),
    /** Floor under the robust scale 1.4826·MAD, in bps (MAD is 0 when most intervals don't move). */
    minScaleBps: z.number().finite().positive().default(0.5),
    /** At most one finding per key and direction within this time. */
    cooldownMs: z.number().int().nonnegative().default(10_000),
  })
  .superRefine(checkIntervalReturnParams);
export type PriceJumpParams = z.infer<typeof priceJumpParams>;

/** The baseline (interval-returns.ts; the previous interval's close is the live check's reference), and: */
export interface PriceJumpState extends IntervalReturns {
  key: string;
  /** Last finding time per direction (cooldown). */
  lastUpTs: number | null;
  lastDownTs: number | null;
}

interface PriceJumpJSON extends IntervalReturnsJSON {
  v: 1;
  key: string;
  /** The interval length the state was built with (absent in states saved before it was recorded). */
  intervalMs?: number;
  lastUpTs: number | null;
  lastDownTs: number | null;
  trades: number;
  late: number;
}

function makeInstance(params: PriceJumpParams, ruleId: string): DetectorInstance<PriceJumpState> {
  const { intervalMs, windowMs, maxSamples, minSamples, zThreshold, minMoveBps, minScaleBps, cooldownMs } = params;
  const minMove = minMoveBps / 1e4;
  const small = smallMoveBounds(minMove);
  const smallLo = small.lo;
  const smallHi = small.hi;
  const minScale = minScaleBps / 1e4;

  const newState = (key: string): PriceJumpState => ({
    key,
    curIdx: null,
    curClose: 0,
    curCloseTs: 0,
    prevClose: null,
    prevCloseTs: null,
    returns: new TimeWindow<number>(windowMs, maxSamples),
    sorted: new SortedWindow(maxSamples),
    median: Number.NaN,
    mad: Number.NaN,
    lastUpTs: null,
    lastDownTs: null,
    trades: 0,
    late: 0,
  });

  const onTrade = (s: PriceJumpState, t: Trade, out: FindingDraft[]): void => {
    const ts = t.ts;
    const price = t.price;
    if (!(price > 0) || !Number.isFinite(price) || !Number.isFinite(ts)) return;
    if (!fileTrade(s, price, ts, intervalMs)) return; // first trade (nothing to compare with yet) or late

    // Live check against the cached baseline.
    if (s.prevClose === null || s.sorted.size < minSamples) return;
    const x = price / s.prevClose;
    if (x > smallLo && x < smallHi) return; // |r| < minMove for certain (no logarithm needed)
    const r = Math.log(x);
    if (!(Math.abs(r) >= minMove)) return;
    const scale = Math.max(MAD_TO_SIGMA * s.mad, minScale);
    const zScore = (r - s.median) / scale;
    const absZ = Math.abs(zScore);
    if (!(absZ >= zThreshold)) return;
    if (Math.sign(zScore) !== Math.sign(r)) return; // a "fall" with a positive z is not a jump
    const up = r > 0;
    const last = up ? s.lastUpTs : s.lastDownTs;
    if (last !== null && ts - last < cooldownMs) return;
    if (up) s.lastUpTs = ts;
    else s.lastDownTs = ts;

    const refPrice = s.prevClose;
    const moveBps = r * 1e4;
    const decimals = priceDecimals(refPrice, price);
    const elapsedMs = ts - (s.prevCloseTs ?? ts);
    const summary =
      `${t.symbol} on ${t.venue} ${up ? 'rose' : 'fell'} ${formatFixed(Math.abs(moveBps), 1)} bps within ${formatDuration(elapsedMs)} ` +
      `(${formatFixed(refPrice, decimals)} → ${formatFixed(price, decimals)}), ` +
      `${formatFixed(absZ, 1)}× its usual ${formatIntervalAdjective(intervalMs)} move`;
    const trigger = eventRef(t);
    out.push({
      severity: gradeByMultiple(absZ, zThreshold),
      score: round(absZ, 4),
      venue: t.venue,
      symbol: t.symbol,
      key: `${t.venue}:${t.symbol}`,
      ts,
      windowStart: Math.min(s.returns.oldestTs ?? (s.curIdx as number) * intervalMs, ts),
      windowEnd: ts,
      summary,
      trigger,
      evidence: {
        observed: {
          logReturn: r,
          moveBps: round(moveBps, 4),
          z: round(zScore, 4),
          price,
          refPrice,
          direction: up ? 'up' : 'down',
          elapsedMs,
        },
        baseline: {
          median: s.median,
          mad: s.mad,
          scale,
          scaleFloored: scale === minScale,
          samples: s.sorted.size,
        },
        threshold: { z: zThreshold, minMoveBps },
        triggers: [trigger],
      },
    });
  };

  return {
    name: 'price_jump',
    ruleId,
    kinds: ['trade'],
    newState,
    onEvent(state: PriceJumpState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'trade') onTrade(state, ev, out);
    },
    toJSON(s: PriceJumpState): PriceJumpJSON {
      return {
        v: 1,
        key: s.key,
        intervalMs,
        ...intervalReturnsToJSON(s),
        lastUpTs: s.lastUpTs,
        lastDownTs: s.lastDownTs,
        trades: s.trades,
        late: s.late,
      };
    },
    fromJSON(json: unknown): PriceJumpState {
      const j = json as Partial<PriceJumpJSON> | null;
      if (!j || j.v !== 1 || typeof j.key !== 'string' || !Array.isArray(j.sampleTs) || !Array.isArray(j.sampleR) || j.sampleTs.length !== j.sampleR.length) {
        throw new TypeError('price_jump: state JSON is not a v1 price_jump state');
      }
      const s = newState(j.key);
      s.curIdx = j.curIdx ?? null;
      // Another interval length (a rules change): the open interval is the one holding its last trade
      // under the new length, so later trades are not taken for late ones.
      if (s.curIdx !== null && j.intervalMs !== undefined && j.intervalMs !== intervalMs) s.curIdx = Math.floor((j.curCloseTs ?? 0) / intervalMs);
      s.curClose = j.curClose ?? 0;
      s.curCloseTs = j.curCloseTs ?? 0;
      s.prevClose = j.prevClose ?? null;
      s.prevCloseTs = j.prevCloseTs ?? null;
      s.lastUpTs = j.lastUpTs ?? null;
      s.lastDownTs = j.lastDownTs ?? null;
      s.trades = j.trades ?? 0;
      s.late = j.late ?? 0;
      // Rebuild the baseline with the current parameters (identical to the saved one when they are unchanged).
      restoreReturns(s, j.sampleTs, j.sampleR, j.horizon);
      refreshBaseline(s);
      return s;
    },
  };
}

export const priceJumpSpec: DetectorSpec<PriceJumpParams, PriceJumpState> = {
  name: 'price_jump',
  description:
    'Robust z-score of short-interval log returns per venue:symbol against the median/MAD of the recent past; ' +
    'fires on a move that is both statistically extreme and at least minMoveBps.',
  kinds: ['trade'],
  params: priceJumpParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
