/**
 * Bucket spike core (volume_spike, metric_anomaly method 'rate'): per key, events are counted and their
 * amounts summed per event-time bucket (RateCounter); the completed buckets of the last baselineMs are the
 * baseline. The measured quantity is the bucket's sum (volume) or its event count.
 *
 * The current bucket — partial while it is open — is a spike when
 *     ratio = value / ref ≥ ratio   and   z = (value − median) / max(1.4826·MAD, minScaleFraction·ref) ≥ zThreshold
 * with median/MAD over the baseline buckets (empty buckets count as 0) and ref = the median, or the
 * baseline mean when the median is 0 (a sparse series: most buckets empty). No evaluation before
 * minBaselineBuckets completed buckets, nor when the baseline holds nothing at all (ref = 0).
 *
 * Episodes: consecutive buckets that are spikes form one episode, which gives at most one finding (at its
 * first spike that passes the caller's floors and the cooldown).
 */
import type { z } from 'zod';
import { RateCounter, type RateCounterJSON } from '../../stats/rate.ts';
import { findingCooling } from '../cooldown.ts';
import { MAD_TO_SIGMA } from './robust-z.ts';

export type SpikeMeasure = 'sum' | 'count';

export interface SpikeConfig {
  bucketMs: number;
  baselineMs: number;
  minBaselineBuckets: number;
  ratio: number;
  zThreshold: number;
  minScaleFraction: number;
  measure: SpikeMeasure;
}

export interface SpikeStats {
  /** The current bucket's measured value (sum or count), its count and sum. */
  value: number;
  count: number;
  sum: number;
  bucketStart: number;
  median: number;
  mad: number;
  /** The reference level the ratio is taken against, and whether it is the median (else the mean). */
  ref: number;
  refIsMedian: boolean;
  scale: number;
  ratio: number;
  z: number;
  baselineBuckets: number;
  countMean: number;
  sumMean: number;
}

/** Cross-field checks of the bucket parameters (for a params schema's superRefine). */
export function checkSpikeParams(p: Pick<SpikeConfig, 'bucketMs' | 'baselineMs' | 'minBaselineBuckets'>, ctx: z.RefinementCtx): void {
  if (p.baselineMs < 2 * p.bucketMs) ctx.addIssue({ code: 'custom', path: ['baselineMs'], message: `must be >= 2 × bucketMs (${2 * p.bucketMs})` });
  if (p.baselineMs / p.bucketMs > 10_000) ctx.addIssue({ code: 'custom', path: ['baselineMs'], message: 'must hold at most 10,000 buckets' });
  if (p.minBaselineBuckets > Math.ceil(p.baselineMs / p.bucketMs)) {
    ctx.addIssue({ code: 'custom', path: ['minBaselineBuckets'], message: `must be <= baselineMs / bucketMs (${Math.ceil(p.baselineMs / p.bucketMs)})` });
  }
}

/** The baseline part of a spike finding's evidence (the caller adds its own means after it). */
export function spikeBaselineEvidence(st: SpikeStats): { median: number; mad: number; scale: number; reference: number; referenceIs: 'median' | 'mean'; buckets: number } {
  return {
    median: st.median,
    mad: st.mad,
    scale: st.scale,
    reference: st.ref,
    referenceIs: st.refIsMedian ? 'median' : 'mean',
    buckets: st.baselineBuckets,
  };
}

/** Buckets in the counter's window: the baseline's completed buckets plus the current one. */
export function spikeWindowBuckets(c: Pick<SpikeConfig, 'bucketMs' | 'baselineMs'>): number {
  return Math.ceil(c.baselineMs / c.bucketMs) + 1;
}

export function newSpikeCounter(c: SpikeConfig): RateCounter {
  return new RateCounter({ bucketMs: c.bucketMs, buckets: spikeWindowBuckets(c), sorted: c.measure });
}

/** Restores a counter saved under any parameters, adapted to `c` (see RateCounter.fromJSON). */
export function restoreSpikeCounter(json: unknown, c: SpikeConfig): RateCounter {
  return RateCounter.fromJSON(json as RateCounterJSON, { bucketMs: c.bucketMs, buckets: spikeWindowBuckets(c), sorted: c.measure });
}

/**
 * The current bucket's statistics when it is a spike (ratio and z both past their thresholds), else null.
 * O(1) when the ratio test fails (the common case); O(log n) for the MAD otherwise.
 */
export function spikeCheck(rc: RateCounter, c: SpikeConfig): SpikeStats | null {
  const n = rc.baselineBuckets;
  if (n < c.minBaselineBuckets || n === 0) return null;
  const value = c.measure === 'count' ? rc.currentCount : rc.currentSum;
  const median = rc.median();
  const refIsMedian = median > 0;
  // The mean only when it is the reference (most checks end at the ratio test).
  const ref = refIsMedian ? median : c.measure === 'count' ? rc.countMean : rc.sumMean;
  if (!(ref > 0)) return null;
  const ratio = value / ref;
  if (!(ratio >= c.ratio)) return null;
  const mad = rc.mad();
  const scale = Math.max(MAD_TO_SIGMA * mad, c.minScaleFraction * ref);
  const z = (value - median) / scale;
  if (!(z >= c.zThreshold)) return null;
  return {
    value,
    count: rc.currentCount,
    sum: rc.currentSum,
    bucketStart: rc.currentStart,
    median,
    mad,
    ref,
    refIsMedian,
    scale,
    ratio,
    z,
    baselineBuckets: n,
    countMean: rc.countMean,
    sumMean: rc.sumMean,
  };
}

/** Episode bookkeeping, plain JSON. */
export interface SpikeEpisode {
  /** Bucket index of the last bucket found to be a spike (null: none yet). */
  lastSpikeIdx: number | null;
  /** Time of the last finding (cooldown). */
  lastFindingTs: number | null;
}

export function newSpikeEpisode(): SpikeEpisode {
  return { lastSpikeIdx: null, lastFindingTs: null };
}

/**
 * Records a spike in bucket `idx` at `ts`; true when it starts a new episode that may give a finding
 * (not a continuation of the spike in the same or the previous bucket, and outside the cooldown).
 */
export function spikeEpisodeStarts(ep: SpikeEpisode, idx: number, ts: number, cooldownMs: number): boolean {
  const last = ep.lastSpikeIdx;
  const continuing = last !== null && idx >= last && idx - last <= 1;
  if (last === null || idx > last) ep.lastSpikeIdx = idx;
  if (continuing) return false;
  return !findingCooling(ep, ts, cooldownMs);
}

export function readSpikeEpisode(j: unknown): SpikeEpisode {
  const o = (j ?? {}) as Partial<SpikeEpisode>;
  return {
    lastSpikeIdx: typeof o.lastSpikeIdx === 'number' ? o.lastSpikeIdx : null,
    lastFindingTs: typeof o.lastFindingTs === 'number' ? o.lastFindingTs : null,
  };
}
