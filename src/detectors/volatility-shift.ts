/**
 * `volatility_shift`: the instrument's short-horizon volatility moved to a new level (up; optionally down)
 * and stays there — a regime change, not a single jump.
 *
 * Per venue:symbol, trades are bucketed into event-time intervals (intervalMs); when a trade opens a later
 * interval, the previous one closes and its log return against the previous interval that had trades,
 * per interval (r / √gap, gap ≤ maxGapIntervals), goes to the volatility core (cores/vol-shift.ts): a
 * two-sided CUSUM on squared returns standardized by a slow, winsorized, event-time EW variance
 * (half-life halfLifeMs), tuned for a volatility ratio `volRatio`, decision threshold `h` nats of
 * log-likelihood ratio, per-sample cap clipZ. On an alarm the baseline is re-based to the new level, so a
 * persistent regime gives one finding. Realized volatility is reported in bps per interval (no annualization).
 * Work per trade: O(1). Feed losses (status disconnected / gap / stale) drop the return across the outage.
 */
import { z } from 'zod';
import { type CanonicalEvent, type Trade } from '../core/events.ts';
import { newVolShift, volShiftFromJSON, volShiftObserve, volShiftToJSON, type VolShiftConfig, type VolShiftState } from './cores/vol-shift.ts';
import { directionCooling } from './cooldown.ts';
import { FEED_LOSS } from './feed-status.ts';
import { formatDuration, formatFixed, formatIntervalAdjective, formatTimes, round } from './format.ts';
import { finiteOrNull as num } from './json-state.ts';
import { gradeByRatio } from './severity.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

export const volatilityShiftParams = z
  .strictObject({
    /** Returns are sampled between consecutive event-time intervals of this length that had trades. */
    intervalMs: z.number().int().positive().default(5000),
    /** Half-life of the baseline (EW variance of interval returns), event time. */
    halfLifeMs: z.number().int().positive().default(1_800_000),
    /** No evaluation before the baseline holds this many returns. */
    minSamples: z.number().int().min(2).default(120),
    /** The volatility ratio (new / old) the CUSUM is tuned for; larger = fewer, later, stronger alarms. */
    volRatio: z.number().finite().gt(1).max(100).default(2),
    /** CUSUM decision threshold in nats of log-likelihood ratio (false-alarm run ≳ e^h intervals on Gaussian returns). */
    h: z.number().finite().positive().default(15),
    /** Cap on one interval's standardized squared return (σ units of χ²₁), so a lone jump cannot fire alone. */
    clipZ: z.number().finite().positive().default(6),
    /** Which shifts fire: volatility rising, falling, or both. */
    direction: z.enum(['up', 'down', 'both']).default('up'),
    /** Floor under the baseline volatility, bps per interval (tick-bound prices barely move). */
    minVolBps: z.number().finite().positive().default(0.1),
    /** A return spanning more intervals without trades than this is skipped (the reference restarts). */
    maxGapIntervals: z.number().int().min(1).default(12),
    /** At most one finding per key and direction within this time. */
    cooldownMs: z.number().int().nonnegative().default(300_000),
  })
  .superRefine((p, ctx) => {
    if (p.halfLifeMs < p.intervalMs) ctx.addIssue({ code: 'custom', path: ['halfLifeMs'], message: `must be >= intervalMs (${p.intervalMs})` });
  });
export type VolatilityShiftParams = z.infer<typeof volatilityShiftParams>;

export interface VolatilityShiftState {
  key: string;
  /** Open interval (index), its last price, trade time and trade id; null before the first trade. */
  curIdx: number | null;
  curClose: number;
  curCloseTs: number;
  curCloseId: string;
  /** Close and index of the previous interval that had trades (the return's reference). */
  prevClose: number | null;
  prevIdx: number | null;
  core: VolShiftState;
  lastUpTs: number | null;
  lastDownTs: number | null;
  trades: number;
  late: number;
  samples: number;
}

/** The state as saved (the core in its JSON form), with the interval length it was built with. */
type VolatilityShiftJSON = Omit<VolatilityShiftState, 'core'> & { v: 1; intervalMs: number; core: unknown };

export function volShiftConfigOf(p: { halfLifeMs: number; minSamples: number; volRatio: number; h: number; clipZ: number; direction: 'up' | 'down' | 'both' }, minScale: number): VolShiftConfig {
  return { halfLifeMs: p.halfLifeMs, minSamples: p.minSamples, volRatio: p.volRatio, h: p.h, clipZ: p.clipZ, direction: p.direction, minScale };
}

function makeInstance(params: VolatilityShiftParams, ruleId: string): DetectorInstance<VolatilityShiftState> {
  const { intervalMs, maxGapIntervals, cooldownMs, volRatio } = params;
  const cfg = volShiftConfigOf(params, params.minVolBps / 1e4);

  const newState = (key: string): VolatilityShiftState => ({
    key,
    curIdx: null,
    curClose: 0,
    curCloseTs: 0,
    curCloseId: '',
    prevClose: null,
    prevIdx: null,
    core: newVolShift(cfg),
    lastUpTs: null,
    lastDownTs: null,
    trades: 0,
    late: 0,
    samples: 0,
  });

  /** Closes the open interval: its return joins the core; returns a finding draft when the core alarms. */
  const closeInterval = (s: VolatilityShiftState, t: Trade, out: FindingDraft[]): void => {
    const idx = s.curIdx as number;
    const prevClose = s.prevClose;
    const prevIdx = s.prevIdx;
    s.prevClose = s.curClose;
    s.prevIdx = idx;
    if (prevClose === null || prevIdx === null) return;
    const gap = idx - prevIdx;
    if (gap < 1 || gap > maxGapIntervals) return;
    const r = Math.log(s.curClose / prevClose) / Math.sqrt(gap);
    s.samples += 1;
    const a = volShiftObserve(s.core, cfg, idx * intervalMs, r);
    if (a === null) return;
    const ts = s.curCloseTs;
    const up = a.direction === 'up';
    if (directionCooling(s, up, ts, cooldownMs)) return;
    const f = up ? a.ratio : 1 / a.ratio;
    const beforeBps = a.before * 1e4;
    const afterBps = a.after * 1e4;
    const trigger = `trade:${t.venue}:${t.symbol}:${s.curCloseId}`;
    const windowStart = Math.min(a.startTs, ts);
    const summary =
      `${t.symbol} on ${t.venue}: ${formatIntervalAdjective(intervalMs)} volatility ${up ? 'rose' : 'fell'} to ` +
      `${formatFixed(afterBps, 2)} bps from ${formatFixed(beforeBps, 2)} bps (${formatTimes(f)} ${up ? 'higher' : 'lower'}) ` +
      `over the last ${formatDuration(ts - windowStart + intervalMs)}`;
    out.push({
      severity: gradeByRatio(f, volRatio), // f = max(ratio, 1/ratio) against the tuned ratio
      score: round(f, 4),
      venue: t.venue,
      symbol: t.symbol,
      key: `${t.venue}:${t.symbol}`,
      ts,
      windowStart,
      windowEnd: ts,
      summary,
      trigger,
      evidence: {
        observed: {
          direction: a.direction,
          volBps: round(afterBps, 6),
          ratio: round(a.ratio, 6),
          statistic: round(a.statistic, 6),
          intervals: a.samples,
          changeStartTs: a.startTs,
          lastReturnBps: round(r * 1e4, 6),
          lastZ: round(a.z, 6),
        },
        baseline: {
          volBps: round(beforeBps, 6),
          samples: a.baselineSamples,
          halfLifeMs: params.halfLifeMs,
          floored: a.before <= cfg.minScale,
        },
        threshold: {
          hNats: params.h,
          h: round(a.h, 6),
          k: round(a.k, 6),
          volRatio,
          clipZ: params.clipZ,
          intervalMs,
        },
        triggers: [trigger],
      },
    });
  };

  const onTrade = (s: VolatilityShiftState, t: Trade, out: FindingDraft[]): void => {
    const { ts, price } = t;
    if (!(price > 0) || !Number.isFinite(price) || !Number.isFinite(ts)) return;
    const idx = Math.floor(ts / intervalMs);
    if (s.curIdx !== null && idx < s.curIdx) {
      s.late += 1;
      return;
    }
    s.trades += 1;
    if (s.curIdx !== null && idx > s.curIdx) closeInterval(s, t, out);
    s.curIdx = idx;
    s.curClose = price;
    s.curCloseTs = ts;
    s.curCloseId = t.tradeId;
  };

  return {
    name: 'volatility_shift',
    ruleId,
    kinds: ['trade', 'status'],
    newState,
    onEvent(state: VolatilityShiftState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'trade') onTrade(state, ev, out);
      else if (ev.kind === 'status' && FEED_LOSS.has(ev.status)) {
        // No return across the outage: the next trade starts a new reference (baseline and CUSUM kept).
        state.curIdx = null;
        state.prevClose = null;
        state.prevIdx = null;
      }
    },
    toJSON(s: VolatilityShiftState): VolatilityShiftJSON {
      return {
        v: 1,
        key: s.key,
        intervalMs,
        curIdx: s.curIdx,
        curClose: s.curClose,
        curCloseTs: s.curCloseTs,
        curCloseId: s.curCloseId,
        prevClose: s.prevClose,
        prevIdx: s.prevIdx,
        core: volShiftToJSON(s.core),
        lastUpTs: s.lastUpTs,
        lastDownTs: s.lastDownTs,
        trades: s.trades,
        late: s.late,
        samples: s.samples,
      };
    },
    fromJSON(json: unknown): VolatilityShiftState {
      const j = json as Partial<VolatilityShiftJSON> | null;
      if (!j || j.v !== 1 || typeof j.key !== 'string' || typeof j.core !== 'object' || j.core === null) {
        throw new TypeError('volatility_shift: state JSON is not a v1 volatility_shift state');
      }
      const s = newState(j.key);
      s.core = volShiftFromJSON(j.core, cfg);
      // Another interval length: the saved interval indices mean nothing, restart the reference.
      if (j.intervalMs === intervalMs) {
        s.curIdx = num(j.curIdx);
        s.curClose = num(j.curClose) ?? 0;
        s.curCloseTs = num(j.curCloseTs) ?? 0;
        s.curCloseId = typeof j.curCloseId === 'string' ? j.curCloseId : '';
        s.prevClose = num(j.prevClose);
        s.prevIdx = num(j.prevIdx);
      }
      s.lastUpTs = num(j.lastUpTs);
      s.lastDownTs = num(j.lastDownTs);
      s.trades = num(j.trades) ?? 0;
      s.late = num(j.late) ?? 0;
      s.samples = num(j.samples) ?? 0;
      return s;
    },
  };
}

export const volatilityShiftSpec: DetectorSpec<VolatilityShiftParams, VolatilityShiftState> = {
  name: 'volatility_shift',
  description:
    'CUSUM change detection on squared interval log returns per venue:symbol, standardized by a slow robust EW ' +
    'variance; fires when realized volatility shifts to a new level (up, optionally down) against its own baseline.',
  kinds: ['trade', 'status'],
  params: volatilityShiftParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
