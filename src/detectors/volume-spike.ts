/**
 * `volume_spike`: traded volume (or trade count) in a short event-time bucket far above the instrument's
 * own recent buckets.
 *
 * Per venue:symbol, trades are counted and their quantities summed per bucket (bucketMs) in a RateCounter
 * (cores/bucket-spike.ts); the completed buckets of the last baselineMs — empty ones as zeros — are the
 * baseline (median, MAD, mean). Every trade re-checks the current, still open bucket:
 *     ratio = volume / median (the mean when the median is 0)  ≥ ratio
 *     z = (volume − median) / max(1.4826·MAD, minScaleFraction·median)  ≥ zThreshold
 *     the bucket's notional Σ price·qty ≥ minNotional
 * and fires once per episode (consecutive spike buckets) and at most once per cooldownMs.
 * Work per trade: O(1) (plus O(log n) for the MAD when the ratio test passes, and once per bucket close).
 * Feed losses (status disconnected / gap / stale) keep the buckets around the outage out of the baseline.
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Trade } from '../core/events.ts';
import type { RateCounter } from '../stats/rate.ts';
import {
  checkSpikeParams,
  newSpikeCounter,
  newSpikeEpisode,
  readSpikeEpisode,
  restoreSpikeCounter,
  spikeBaselineEvidence,
  spikeCheck,
  spikeEpisodeStarts,
  type SpikeConfig,
  type SpikeEpisode,
} from './cores/bucket-spike.ts';
import { FEED_LOSS } from './feed-status.ts';
import { formatDuration, formatFixed, formatIntervalAdjective, formatTime, formatTimes, round } from './format.ts';
import { gradeByMultiple } from './severity.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

export const volumeSpikeParams = z
  .strictObject({
    /** Volume is summed per event-time bucket of this length. */
    bucketMs: z.number().int().positive().default(10_000),
    /** Baseline: the completed buckets of this much event time before the current one. */
    baselineMs: z.number().int().positive().default(1_800_000),
    /** No evaluation before the baseline holds this many completed buckets. */
    minBaselineBuckets: z.number().int().min(1).default(60),
    /** What is compared: traded base quantity (`volume`) or number of trades (`trades`). */
    measure: z.enum(['volume', 'trades']).default('volume'),
    /** The bucket must reach this multiple of the baseline median (the mean when the median is 0). */
    ratio: z.number().finite().min(1).default(5),
    /** Robust z-score of the bucket against the baseline median/MAD that must also be reached. */
    zThreshold: z.number().finite().positive().default(5),
    /** Floor under the robust scale 1.4826·MAD, as a fraction of the median (MAD is 0 for very regular series). */
    minScaleFraction: z.number().finite().positive().default(0.1),
    /** Absolute floor: the bucket's traded notional Σ price·qty (quote currency) must reach this. */
    minNotional: z.number().finite().nonnegative().default(10_000),
    /** At most one finding per key within this time (one per episode in any case). */
    cooldownMs: z.number().int().nonnegative().default(60_000),
  })
  .superRefine(checkSpikeParams);
export type VolumeSpikeParams = z.infer<typeof volumeSpikeParams>;

/** Largest trades of the open bucket kept for the evidence (with the trigger: at most 20). */
const TOP_TRADES = 19;

export interface VolumeSpikeState {
  key: string;
  rc: RateCounter;
  ep: SpikeEpisode;
  /** Bucket index the following fields describe (the open bucket), null before the first trade. */
  bucketIdx: number | null;
  /** Σ price·qty of the open bucket. */
  notional: number;
  /** Largest trades of the open bucket: quantities, trade ids (unordered, ≤ TOP_TRADES). */
  topQty: number[];
  topIds: string[];
  /**
   * Index of the first smallest of topQty once it is full (−1: to be found): it changes only when a trade
   * replaces it, so most trades compare with it instead of scanning the list. Not saved.
   */
  topMin: number;
  trades: number;
  late: number;
  gaps: number;
}

/** The state as saved (the counter in its JSON form). */
type VolumeSpikeJSON = Omit<VolumeSpikeState, 'rc' | 'topMin'> & { v: 1; rc: unknown };

/** Quantities: decimals by magnitude, no locale. */
export function formatQty(x: number): string {
  const a = Math.abs(x);
  return formatFixed(x, a >= 1000 ? 0 : a >= 1 ? 2 : a >= 0.01 ? 4 : 6);
}

function spikeConfig(p: VolumeSpikeParams): SpikeConfig {
  return {
    bucketMs: p.bucketMs,
    baselineMs: p.baselineMs,
    minBaselineBuckets: p.minBaselineBuckets,
    ratio: p.ratio,
    zThreshold: p.zThreshold,
    minScaleFraction: p.minScaleFraction,
    measure: p.measure === 'volume' ? 'sum' : 'count',
  };
}

function makeInstance(params: VolumeSpikeParams, ruleId: string): DetectorInstance<VolumeSpikeState> {
  const cfg = spikeConfig(params);
  const { bucketMs, baselineMs, minNotional, cooldownMs } = params;
  const byVolume = params.measure === 'volume';

  const newState = (key: string): VolumeSpikeState => ({
    key,
    rc: newSpikeCounter(cfg),
    ep: newSpikeEpisode(),
    bucketIdx: null,
    notional: 0,
    topQty: [],
    topIds: [],
    topMin: -1,
    trades: 0,
    late: 0,
    gaps: 0,
  });

  const keepTop = (s: VolumeSpikeState, t: Trade): void => {
    const q = s.topQty;
    if (q.length < TOP_TRADES) {
      q.push(t.qty);
      s.topIds.push(t.tradeId);
      s.topMin = -1;
      return;
    }
    let min = s.topMin;
    if (min < 0) {
      min = 0;
      for (let i = 1; i < q.length; i++) if ((q[i] as number) < (q[min] as number)) min = i;
      s.topMin = min;
    }
    if (t.qty > (q[min] as number)) {
      q[min] = t.qty;
      s.topIds[min] = t.tradeId;
      s.topMin = -1;
    }
  };

  const onTrade = (s: VolumeSpikeState, t: Trade, out: FindingDraft[]): void => {
    if (!Number.isFinite(t.ts) || !(t.qty >= 0) || !(t.price > 0)) return;
    const where = s.rc.add(t.ts, t.qty);
    if (where === 'late') {
      s.late += 1;
      return;
    }
    s.trades += 1;
    if (where === 'past') return; // a late trade of a completed bucket: baseline updated, no live check
    const idx = s.rc.currentIndex as number;
    if (s.bucketIdx !== idx) {
      s.bucketIdx = idx;
      s.notional = 0;
      s.topQty.length = 0;
      s.topIds.length = 0;
      s.topMin = -1;
    }
    s.notional += t.price * t.qty;
    // The trigger goes into the evidence separately; keep the others' largest.
    const st = spikeCheck(s.rc, cfg);
    if (st === null) {
      keepTop(s, t);
      return;
    }
    if (!(s.notional >= minNotional) || !spikeEpisodeStarts(s.ep, idx, t.ts, cooldownMs)) {
      keepTop(s, t);
      return;
    }

    const [base, quote] = t.symbol.split('-') as [string, string];
    const elapsed = t.ts - st.bucketStart;
    const intervalAdj = formatIntervalAdjective(bucketMs);
    const usual = byVolume ? `${formatQty(st.ref)} ${base}` : formatFixed(st.ref, st.ref >= 100 ? 0 : 1);
    const what = byVolume ? `traded ${formatQty(st.sum)} ${base} (${formatFixed(st.count, 0)} trades)` : `had ${formatFixed(st.count, 0)} trades (${formatQty(st.sum)} ${base})`;
    const summary =
      `${t.symbol} on ${t.venue} ${what} in the ${formatDuration(bucketMs)} from ${formatTime(st.bucketStart)}, ` +
      `${formatTimes(st.ratio)} its usual ${intervalAdj} ${byVolume ? 'volume' : 'trade count'} of ${usual} ` +
      `(${st.refIsMedian ? 'median' : 'mean'} over ${formatDuration(baselineMs)})`;
    const trigger = eventRef(t);
    const order = s.topIds.map((id, i) => ({ id, q: s.topQty[i] as number })).sort((a, b) => b.q - a.q || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const triggers = [trigger, ...order.map((o) => `trade:${t.venue}:${t.symbol}:${o.id}`)];
    keepTop(s, t);
    out.push({
      severity: gradeByMultiple(st.ratio, params.ratio),
      score: round(st.ratio, 4),
      venue: t.venue,
      symbol: t.symbol,
      key: `${t.venue}:${t.symbol}`,
      ts: t.ts,
      windowStart: Math.min(s.rc.windowStart, t.ts),
      windowEnd: t.ts,
      summary,
      trigger,
      evidence: {
        observed: {
          measure: params.measure,
          value: st.value,
          volume: st.sum,
          trades: st.count,
          notional: round(s.notional, 8),
          ratio: round(st.ratio, 4),
          z: round(st.z, 4),
          bucketStart: st.bucketStart,
          bucketElapsedMs: elapsed,
          quote,
        },
        baseline: { ...spikeBaselineEvidence(st), meanVolume: st.sumMean, meanTrades: st.countMean },
        threshold: { ratio: params.ratio, z: params.zThreshold, minNotional, bucketMs },
        triggers,
      },
    });
  };

  return {
    name: 'volume_spike',
    ruleId,
    kinds: ['trade', 'status'],
    newState,
    onEvent(state: VolumeSpikeState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'trade') onTrade(state, ev, out);
      else if (ev.kind === 'status' && FEED_LOSS.has(ev.status)) {
        state.rc.markGap();
        state.gaps += 1;
      }
    },
    toJSON(s: VolumeSpikeState): VolumeSpikeJSON {
      return {
        v: 1,
        key: s.key,
        rc: s.rc.toJSON(),
        ep: { ...s.ep },
        bucketIdx: s.bucketIdx,
        notional: s.notional,
        topQty: [...s.topQty],
        topIds: [...s.topIds],
        trades: s.trades,
        late: s.late,
        gaps: s.gaps,
      };
    },
    fromJSON(json: unknown): VolumeSpikeState {
      const j = json as Partial<VolumeSpikeJSON> | null;
      if (!j || j.v !== 1 || typeof j.key !== 'string' || typeof j.rc !== 'object' || j.rc === null) {
        throw new TypeError('volume_spike: state JSON is not a v1 volume_spike state');
      }
      const s = newState(j.key);
      s.rc = restoreSpikeCounter(j.rc, cfg);
      s.ep = readSpikeEpisode(j.ep);
      const sameBucket = typeof j.bucketIdx === 'number' && j.bucketIdx === s.rc.currentIndex;
      if (sameBucket) {
        s.bucketIdx = j.bucketIdx as number;
        s.notional = typeof j.notional === 'number' ? j.notional : 0;
        const q = Array.isArray(j.topQty) ? j.topQty : [];
        const ids = Array.isArray(j.topIds) ? j.topIds : [];
        for (let i = 0; i < Math.min(q.length, ids.length, TOP_TRADES); i++) {
          if (typeof q[i] === 'number' && typeof ids[i] === 'string') {
            s.topQty.push(q[i] as number);
            s.topIds.push(ids[i] as string);
          }
        }
      }
      s.trades = typeof j.trades === 'number' ? j.trades : 0;
      s.late = typeof j.late === 'number' ? j.late : 0;
      s.gaps = typeof j.gaps === 'number' ? j.gaps : 0;
      return s;
    },
  };
}

export const volumeSpikeSpec: DetectorSpec<VolumeSpikeParams, VolumeSpikeState> = {
  name: 'volume_spike',
  description:
    'Traded volume (or trade count) of the current short bucket per venue:symbol against the median/MAD of the ' +
    "key's own recent buckets; fires on a bucket both many times the usual and statistically extreme, above a notional floor.",
  kinds: ['trade', 'status'],
  params: volumeSpikeParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
