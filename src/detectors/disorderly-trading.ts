/**
 * `disorderly_trading`: a sharp spike that reverts within seconds to a minute — a fat finger, a sweep of a
 * thin book, a print far off the market — judged as a completed shape, not as a move (price_jump fires on
 * the move; this fires when the price has come back).
 *
 * Per venue:symbol, the baseline is price_jump's: log returns between consecutive event-time intervals
 * (intervalMs) that had trades, over the last windowMs (at most maxSamples), median and MAD in a
 * SortedWindow. Each trade, while no spike is under way, is checked like price_jump:
 *   r = ln(price / previous interval's close),  z = (r − median) / max(1.4826·MAD, minScaleBps/1e4),
 *   |z| ≥ zThreshold, |r| ≥ minMoveBps/1e4, same sign  →  a spike starts, with the previous close as its
 *   reference and the baseline (median, scale) frozen.
 * While the spike runs, a trade further out in its direction becomes the extreme; a trade that brings the
 * price back by at least reversalFraction of the move (ln(extreme/price) / ln(extreme/reference), so a
 * trade through the reference counts ≥ 1) within reversalMs of the spike's first trade completes the shape:
 * finding on that trade. Past reversalMs without it, the spike is dropped (a lasting move, not disorder).
 * Work per trade: O(1), plus O(log n + maxSamples memmove) once per interval close.
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Trade } from '../core/events.ts';
import { TimeWindow } from '../stats/event-window.ts';
import { SortedWindow } from '../stats/sorted-window.ts';
import { formatDuration, formatFixed, formatIntervalAdjective, formatPercent, priceDecimals, round } from './format.ts';
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
import { isNum, isNumOrNull, requireNums } from './json-state.ts';
import { MAD_TO_SIGMA } from './market-common.ts';
import { gradeByMultiple } from './severity.ts';
import { distinctRefs } from './triggers.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

export const disorderlyTradingParams = z
  .strictObject({
    /** intervalMs, windowMs, maxSamples, minSamples: the baseline (interval-returns.ts). */
    ...intervalReturnParamShape,
    /** Robust z-score of the spike's move (from the previous interval's close) that starts a spike. */
    zThreshold: z.number().finite().positive().default(6),
    /** The spike's move must also be at least this large (basis points of log return). */
    minMoveBps: z.number().finite().nonnegative().default(10),
    /** Floor under the robust scale 1.4826·MAD, in bps. */
    minScaleBps: z.number().finite().positive().default(0.5),
    /** The price must come back by at least this fraction of the reference-to-extreme move. */
    reversalFraction: z.number().finite().gt(0).max(1).default(0.75),
    /** …within this time of the spike's first trade. */
    reversalMs: z.number().int().positive().default(60_000),
    /** At most one finding per key within this time. */
    cooldownMs: z.number().int().nonnegative().default(60_000),
  })
  .superRefine(checkIntervalReturnParams);
export type DisorderlyTradingParams = z.infer<typeof disorderlyTradingParams>;

export interface Spike {
  up: boolean;
  refPx: number;
  refTs: number;
  startTs: number;
  startRef: string;
  /** Move and z at the start (the trade that opened the spike). */
  startPx: number;
  extremePx: number;
  extremeTs: number;
  extremeRef: string;
  median: number;
  mad: number;
  scale: number;
  samples: number;
}

/** The baseline (interval-returns.ts), and: */
export interface DisorderlyTradingState extends IntervalReturns {
  key: string;
  spike: Spike | null;
  lastFireTs: number | null;
}

interface DisorderlyTradingJSON extends IntervalReturnsJSON {
  v: 1;
  key: string;
  /** Interval length the state was written under (a hot reload may change it). */
  intervalMs: number;
  spike: Spike | null;
  lastFireTs: number | null;
  trades: number;
  late: number;
}

const SPIKE_NUMS = ['refPx', 'refTs', 'startTs', 'startPx', 'extremePx', 'extremeTs', 'median', 'mad', 'scale', 'samples'] as const;

function makeInstance(params: DisorderlyTradingParams, ruleId: string): DetectorInstance<DisorderlyTradingState> {
  const p = params;
  const minMove = p.minMoveBps / 1e4;
  const small = smallMoveBounds(minMove);
  const smallLo = small.lo;
  const smallHi = small.hi;
  const minScale = p.minScaleBps / 1e4;

  const newState = (key: string): DisorderlyTradingState => ({
    key,
    curIdx: null,
    curClose: 0,
    curCloseTs: 0,
    prevClose: null,
    prevCloseTs: null,
    returns: new TimeWindow<number>(p.windowMs, p.maxSamples),
    sorted: new SortedWindow(p.maxSamples),
    median: Number.NaN,
    mad: Number.NaN,
    spike: null,
    lastFireTs: null,
    trades: 0,
    late: 0,
  });

  const fire = (s: DisorderlyTradingState, sp: Spike, t: Trade, reverted: number, out: FindingDraft[]): void => {
    const ts = t.ts;
    const move = Math.log(sp.extremePx / sp.refPx);
    const zScore = (move - sp.median) / sp.scale;
    const absZ = Math.abs(zScore);
    const moveBps = move * 1e4;
    const dec = Math.max(priceDecimals(sp.refPx, sp.extremePx), priceDecimals(t.price, t.price));
    const ref = eventRef(t);
    const triggers = distinctRefs(sp.startRef, sp.extremeRef, ref);
    out.push({
      severity: gradeByMultiple(absZ, p.zThreshold),
      score: round(absZ, 4),
      venue: t.venue,
      symbol: t.symbol,
      key: `${t.venue}:${t.symbol}`,
      ts,
      windowStart: Math.min(sp.refTs, ts),
      windowEnd: ts,
      summary:
        `${t.symbol} on ${t.venue} ${sp.up ? 'spiked up' : 'spiked down'} ${formatFixed(Math.abs(moveBps), 1)} bps ` +
        `(${formatFixed(sp.refPx, dec)} → ${formatFixed(sp.extremePx, dec)}, ${formatFixed(absZ, 1)}× its usual ${formatIntervalAdjective(p.intervalMs)} move) ` +
        `and came back ${formatPercent(reverted)} of it to ${formatFixed(t.price, dec)} within ${formatDuration(ts - sp.extremeTs)}`,
      trigger: ref,
      evidence: {
        observed: {
          direction: sp.up ? 'up' : 'down',
          refPrice: sp.refPx,
          extremePrice: sp.extremePx,
          revertedPrice: t.price,
          moveBps: round(moveBps, 4),
          z: round(zScore, 4),
          revertedFraction: round(reverted, 6),
          timeToExtremeMs: sp.extremeTs - sp.refTs,
          timeToRevertMs: ts - sp.extremeTs,
          spikeStartTs: sp.startTs,
          extremeTs: sp.extremeTs,
        },
        baseline: { median: sp.median, mad: sp.mad, scale: sp.scale, scaleFloored: sp.scale === minScale, samples: sp.samples },
        threshold: { z: p.zThreshold, minMoveBps: p.minMoveBps, reversalFraction: p.reversalFraction, reversalMs: p.reversalMs },
        triggers,
      },
    });
  };

  const onTrade = (s: DisorderlyTradingState, t: Trade, out: FindingDraft[]): void => {
    const ts = t.ts;
    const price = t.price;
    if (!(price > 0) || !Number.isFinite(price) || !Number.isFinite(ts)) return;
    if (!fileTrade(s, price, ts, p.intervalMs)) return;

    // A spike under way: extend its extreme, complete it, or drop it when it lasted too long.
    const sp = s.spike;
    if (sp !== null) {
      if (ts - sp.startTs > p.reversalMs) {
        s.spike = null;
      } else {
        const beyond = sp.up ? price > sp.extremePx : price < sp.extremePx;
        if (beyond) {
          sp.extremePx = price;
          sp.extremeTs = ts;
          sp.extremeRef = eventRef(t);
          return;
        }
        const reverted = Math.log(sp.extremePx / price) / Math.log(sp.extremePx / sp.refPx);
        if (reverted >= p.reversalFraction) {
          s.spike = null;
          if (s.lastFireTs !== null && ts - s.lastFireTs < p.cooldownMs) return;
          s.lastFireTs = ts;
          fire(s, sp, t, reverted, out);
        }
        return;
      }
    }

    // No spike: does this trade start one?
    if (s.prevClose === null || s.sorted.size < p.minSamples) return;
    if (s.lastFireTs !== null && ts - s.lastFireTs < p.cooldownMs) return;
    const x = price / s.prevClose;
    if (x > smallLo && x < smallHi) return; // |r| < minMove for certain (no logarithm needed)
    const r = Math.log(x);
    if (!(Math.abs(r) >= minMove)) return;
    const scale = Math.max(MAD_TO_SIGMA * s.mad, minScale);
    const zScore = (r - s.median) / scale;
    if (!(Math.abs(zScore) >= p.zThreshold)) return;
    if (Math.sign(zScore) !== Math.sign(r)) return;
    const ref = eventRef(t);
    s.spike = {
      up: r > 0,
      refPx: s.prevClose,
      refTs: s.prevCloseTs ?? ts,
      startTs: ts,
      startRef: ref,
      startPx: price,
      extremePx: price,
      extremeTs: ts,
      extremeRef: ref,
      median: s.median,
      mad: s.mad,
      scale,
      samples: s.sorted.size,
    };
  };

  return {
    name: 'disorderly_trading',
    ruleId,
    kinds: ['trade'],
    newState,
    onEvent(state: DisorderlyTradingState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'trade') onTrade(state, ev, out);
    },
    toJSON(s: DisorderlyTradingState): DisorderlyTradingJSON {
      return {
        v: 1,
        key: s.key,
        intervalMs: p.intervalMs,
        ...intervalReturnsToJSON(s),
        spike: s.spike ? { ...s.spike } : null,
        lastFireTs: s.lastFireTs,
        trades: s.trades,
        late: s.late,
      };
    },
    fromJSON(json: unknown): DisorderlyTradingState {
      const j = json as Partial<DisorderlyTradingJSON> | null;
      if (
        !j ||
        j.v !== 1 ||
        typeof j.key !== 'string' ||
        !Array.isArray(j.sampleTs) ||
        !Array.isArray(j.sampleR) ||
        j.sampleTs.length !== j.sampleR.length ||
        !isNumOrNull(j.curIdx) ||
        !isNumOrNull(j.prevClose) ||
        !isNumOrNull(j.prevCloseTs) ||
        !isNumOrNull(j.lastFireTs) ||
        !isNumOrNull(j.horizon) ||
        ![j.curClose, j.curCloseTs, j.trades, j.late].every(isNum)
      ) {
        throw new TypeError('disorderly_trading: state JSON is not a v1 disorderly_trading state');
      }
      let spike: Spike | null = null;
      if (j.spike) {
        const o = j.spike as unknown as Record<string, unknown>;
        requireNums(o, SPIKE_NUMS, 'disorderly_trading: spike');
        if (typeof o.up !== 'boolean' || typeof o.startRef !== 'string' || typeof o.extremeRef !== 'string') {
          throw new TypeError('disorderly_trading: spike is malformed');
        }
        spike = { ...(o as unknown as Spike) };
      }
      const s = newState(j.key);
      s.curIdx = j.curIdx as number | null;
      s.curClose = j.curClose as number;
      s.curCloseTs = j.curCloseTs as number;
      s.prevClose = j.prevClose as number | null;
      s.prevCloseTs = j.prevCloseTs as number | null;
      s.spike = spike;
      s.lastFireTs = j.lastFireTs as number | null;
      s.trades = j.trades as number;
      s.late = j.late as number;
      restoreReturns(s, j.sampleTs, j.sampleR, j.horizon, 'disorderly_trading');
      if (j.intervalMs !== p.intervalMs) {
        // Returns over intervals of another length have another scale, and the open interval's index no
        // longer fits: the baseline starts again (a spike under way keeps its frozen baseline).
        s.returns.clear();
        s.sorted.clear();
        s.curIdx = null;
        s.prevClose = null;
        s.prevCloseTs = null;
      }
      refreshBaseline(s);
      return s;
    },
  };
}

export const disorderlyTradingSpec: DetectorSpec<DisorderlyTradingParams, DisorderlyTradingState> = {
  name: 'disorderly_trading',
  description:
    'A spike of at least zThreshold robust z (and minMoveBps) against the previous interval close that comes back by ' +
    'reversalFraction of the move within reversalMs: a completed spike-and-revert (fat finger, thin-book sweep).',
  kinds: ['trade'],
  params: disorderlyTradingParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
