/**
 * `metric_anomaly`: the statistical cores of price_jump / volume_spike / volatility_shift on a generic
 * metric series (kind 'metric', one series per source:key). `method` picks the core:
 *
 *  - `robust_z` (default): x = the value (`on: 'value'`) or its change since the key's previous value
 *    (`on: 'change'`); z = (x − median)/max(1.4826·MAD, minScale) against the x of the last windowMs (at most
 *    maxSamples; cores/robust-z.ts). Fires when |z| ≥ zThreshold in a watched direction and
 *    |x − median| ≥ minDeviation; one finding per run of consecutive anomalous values of one direction.
 *  - `rate`: per bucket (bucketMs), the sum of the values (`measure: 'sum'`) or the number of metric events
 *    (`'count'`) against the key's completed buckets of the last baselineMs — volume_spike's core
 *    (cores/bucket-spike.ts): ratio to the median ≥ ratio, robust z ≥ zThreshold, value ≥ minBucketValue.
 *  - `volatility`: CUSUM on the squared changes between consecutive values, standardized by a slow robust
 *    EW variance — volatility_shift's core (cores/vol-shift.ts) with one sample per metric event.
 * Every method: O(1) or O(log n) per event; late values (older than the key's newest) are ignored, except
 * by `rate`, which files them into their bucket while it is in the window.
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Metric } from '../core/events.ts';
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
import { newRobustBaseline, robustAdd, robustExpire, robustFromJSON, robustScale, robustToJSON, type RobustBaseline } from './cores/robust-z.ts';
import { newVolShift, volShiftFromJSON, volShiftObserve, volShiftToJSON, type VolShiftConfig, type VolShiftState } from './cores/vol-shift.ts';
import { directionCooling } from './cooldown.ts';
import { formatDuration, formatFixed, formatIntervalAdjective, formatTime, formatTimes, round } from './format.ts';
import { finiteOrNull as num } from './json-state.ts';
import { gradeByMultiple, gradeByRatio } from './severity.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

export const metricAnomalyParams = z
  .strictObject({
    /** Statistic: robust z-score of values/changes, events or sums per bucket, or a volatility change. */
    method: z.enum(['robust_z', 'rate', 'volatility']).default('robust_z'),
    /** robust_z: judge the value itself, or its change since the previous value of the key. */
    on: z.enum(['value', 'change']).default('value'),
    /** robust_z and volatility: which deviations fire (up = higher value / change / volatility). */
    direction: z.enum(['up', 'down', 'both']).default('both'),
    /** robust_z: baseline window of past values (event time). */
    windowMs: z.number().int().positive().default(3_600_000),
    /** robust_z: bound on baseline samples (memory per key). */
    maxSamples: z.number().int().min(2).max(100_000).default(720),
    /** robust_z and volatility: no evaluation before the baseline holds this many samples. */
    minSamples: z.number().int().min(1).default(30),
    /** robust_z and rate: robust z-score that fires. */
    zThreshold: z.number().finite().positive().default(6),
    /** robust_z: floor under the robust scale 1.4826·MAD; volatility: floor under the change std (metric units). */
    minScale: z.number().finite().nonnegative().default(0),
    /** robust_z: the deviation from the median must also be at least this (metric units). */
    minDeviation: z.number().finite().nonnegative().default(0),
    /** rate: bucket length. */
    bucketMs: z.number().int().positive().default(60_000),
    /** rate: baseline of completed buckets over this much event time. */
    baselineMs: z.number().int().positive().default(3_600_000),
    /** rate: no evaluation before the baseline holds this many completed buckets. */
    minBaselineBuckets: z.number().int().min(1).default(30),
    /** rate: what a bucket measures, the sum of the values or the number of metric events. */
    measure: z.enum(['sum', 'count']).default('sum'),
    /** rate: the bucket must reach this multiple of the baseline median (the mean when the median is 0). */
    ratio: z.number().finite().min(1).default(5),
    /** rate: floor under the robust scale, as a fraction of the median. */
    minScaleFraction: z.number().finite().positive().default(0.1),
    /** rate: absolute floor on the bucket's measured value. */
    minBucketValue: z.number().finite().nonnegative().default(0),
    /** volatility: half-life of the baseline EW variance of changes (event time). */
    halfLifeMs: z.number().int().positive().default(3_600_000),
    /** volatility: the volatility ratio (new / old) the CUSUM is tuned for. */
    volRatio: z.number().finite().gt(1).max(100).default(2),
    /** volatility: CUSUM decision threshold in nats of log-likelihood ratio. */
    h: z.number().finite().positive().default(15),
    /** volatility: cap on one standardized squared change (σ units of χ²₁). */
    clipZ: z.number().finite().positive().default(6),
    /** At most one finding per key and direction within this time. */
    cooldownMs: z.number().int().nonnegative().default(300_000),
  })
  .superRefine((p, ctx) => {
    if (p.minSamples > p.maxSamples) ctx.addIssue({ code: 'custom', path: ['minSamples'], message: `must be <= maxSamples (${p.maxSamples})` });
    checkSpikeParams(p, ctx);
  });
export type MetricAnomalyParams = z.infer<typeof metricAnomalyParams>;

export interface MetricAnomalyState {
  key: string;
  /** Newest value and its time (null before the first). */
  last: number | null;
  lastTs: number | null;
  /** robust_z */
  robust: RobustBaseline | null;
  /** Direction of the previous value's anomaly (robust_z episodes), null when it was normal. */
  runDir: 'up' | 'down' | null;
  /** rate */
  rc: RateCounter | null;
  ep: SpikeEpisode;
  /** volatility */
  vol: VolShiftState | null;
  lastUpTs: number | null;
  lastDownTs: number | null;
  events: number;
  late: number;
}

interface MetricAnomalyJSON {
  v: 1;
  key: string;
  method: MetricAnomalyParams['method'];
  on: MetricAnomalyParams['on'];
  last: number | null;
  lastTs: number | null;
  robust: unknown;
  runDir: 'up' | 'down' | null;
  rc: unknown;
  ep: SpikeEpisode;
  vol: unknown;
  lastUpTs: number | null;
  lastDownTs: number | null;
  events: number;
  late: number;
}

/** Z cap for the output when the scale is 0 (any deviation is infinitely many scales away). */
const Z_CAP = 1e6;

/** Metric values: decimals by magnitude, no locale. */
export function formatValue(x: number): string {
  const a = Math.abs(x);
  return formatFixed(x, a >= 1000 ? 0 : a >= 1 ? 2 : a >= 0.01 ? 4 : a === 0 ? 0 : 6);
}
function signed(x: number): string {
  return `${x > 0 ? '+' : ''}${formatValue(x)}`;
}

function makeInstance(params: MetricAnomalyParams, ruleId: string): DetectorInstance<MetricAnomalyState> {
  const { method, on, direction, windowMs, maxSamples, minSamples, zThreshold, minScale, minDeviation, cooldownMs } = params;
  const spikeCfg: SpikeConfig = {
    bucketMs: params.bucketMs,
    baselineMs: params.baselineMs,
    minBaselineBuckets: params.minBaselineBuckets,
    ratio: params.ratio,
    zThreshold,
    minScaleFraction: params.minScaleFraction,
    measure: params.measure,
  };
  const volCfg: VolShiftConfig = { halfLifeMs: params.halfLifeMs, minSamples, volRatio: params.volRatio, h: params.h, clipZ: params.clipZ, direction, minScale };
  const watchUp = direction !== 'down';
  const watchDown = direction !== 'up';

  const newState = (key: string): MetricAnomalyState => ({
    key,
    last: null,
    lastTs: null,
    robust: method === 'robust_z' ? newRobustBaseline(windowMs, maxSamples) : null,
    runDir: null,
    rc: method === 'rate' ? newSpikeCounter(spikeCfg) : null,
    ep: newSpikeEpisode(),
    vol: method === 'volatility' ? newVolShift(volCfg) : null,
    lastUpTs: null,
    lastDownTs: null,
    events: 0,
    late: 0,
  });

  const base = (m: Metric) => ({ key: `${m.source}:${m.key}`, ts: m.ts, windowEnd: m.ts, trigger: eventRef(m) });

  const onRobust = (s: MetricAnomalyState, m: Metric, out: FindingDraft[]): void => {
    const b = s.robust as RobustBaseline;
    const prev = s.last;
    s.last = m.value;
    s.lastTs = m.ts;
    let x: number;
    if (on === 'value') x = m.value;
    else if (prev === null) return;
    else x = m.value - prev;
    robustExpire(b, m.ts);
    let fired: FindingDraft | null = null;
    let dir: 'up' | 'down' | null = null;
    if (b.sorted.size >= minSamples) {
      const scale = robustScale(b, minScale); // refreshes the cached median/MAD
      const dev = x - b.median;
      const zRaw = scale > 0 ? dev / scale : dev === 0 ? 0 : dev > 0 ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
      const absZ = Math.abs(zRaw);
      if (absZ >= zThreshold && Math.abs(dev) >= minDeviation && dev !== 0) {
        const up = dev > 0;
        if (up ? watchUp : watchDown) {
          dir = up ? 'up' : 'down';
          if (s.runDir !== dir && !directionCooling(s, up, m.ts, cooldownMs)) {
            const zOut = Math.max(-Z_CAP, Math.min(Z_CAP, zRaw));
            const span = `${formatFixed(b.sorted.size, 0)} ${on === 'value' ? 'values' : 'changes'}`;
            const name = `${m.source}:${m.key}`;
            const what =
              on === 'value'
                ? `${up ? 'rose' : 'fell'} to ${formatValue(m.value)} (median ${formatValue(b.median)} of the last ${span})`
                : `${up ? 'jumped' : 'dropped'} by ${signed(x)} to ${formatValue(m.value)} (median change ${signed(b.median)} of the last ${span})`;
            const zText = scale > 0 ? `robust z ${formatFixed(zOut, 1)}` : 'after no variation at all';
            fired = {
              ...base(m),
              severity: scale > 0 ? gradeByMultiple(absZ, zThreshold) : 'high',
              score: round(Math.abs(zOut), 4),
              windowStart: Math.min(b.window.oldestTs ?? m.ts, m.ts),
              summary: `Metric ${name} ${what}, ${zText}`,
              evidence: {
                observed: { method, on, value: m.value, x, z: round(zOut, 4), direction: dir, ...(on === 'change' ? { previous: prev } : {}) },
                baseline: { median: b.median, mad: b.mad, scale, scaleFloored: scale === minScale, samples: b.sorted.size, windowMs },
                threshold: { z: zThreshold, minDeviation, minScale },
                triggers: [eventRef(m)],
              },
            };
          }
        }
      }
    }
    s.runDir = dir;
    robustAdd(b, m.ts, x);
    if (fired) out.push(fired);
  };

  const onRate = (s: MetricAnomalyState, m: Metric, out: FindingDraft[]): void => {
    const rc = s.rc as RateCounter;
    const where = rc.add(m.ts, m.value);
    if (where === 'late') {
      s.late += 1;
      return;
    }
    if (s.lastTs === null || m.ts >= s.lastTs) {
      s.last = m.value;
      s.lastTs = m.ts;
    }
    if (where === 'past') return;
    const st = spikeCheck(rc, spikeCfg);
    if (st === null || !(st.value >= params.minBucketValue)) return;
    const idx = rc.currentIndex as number;
    if (!spikeEpisodeStarts(s.ep, idx, m.ts, cooldownMs)) return;
    const name = `${m.source}:${m.key}`;
    const adj = formatIntervalAdjective(params.bucketMs);
    const what =
      params.measure === 'sum'
        ? `summed ${formatValue(st.sum)} over ${formatFixed(st.count, 0)} values`
        : `had ${formatFixed(st.count, 0)} values (sum ${formatValue(st.sum)})`;
    out.push({
      ...base(m),
      severity: gradeByMultiple(st.ratio, params.ratio),
      score: round(st.ratio, 4),
      windowStart: Math.min(rc.windowStart, m.ts),
      summary:
        `Metric ${name} ${what} in the ${formatDuration(params.bucketMs)} from ${formatTime(st.bucketStart)}, ` +
        `${formatTimes(st.ratio)} its usual ${adj} ${params.measure === 'sum' ? 'total' : 'count'} of ${formatValue(st.ref)} ` +
        `(${st.refIsMedian ? 'median' : 'mean'} over ${formatDuration(params.baselineMs)})`,
      evidence: {
        observed: { method, measure: params.measure, value: st.value, count: st.count, sum: st.sum, ratio: round(st.ratio, 4), z: round(st.z, 4), bucketStart: st.bucketStart },
        baseline: { ...spikeBaselineEvidence(st), meanCount: st.countMean, meanSum: st.sumMean },
        threshold: { ratio: params.ratio, z: zThreshold, minBucketValue: params.minBucketValue, bucketMs: params.bucketMs },
        triggers: [eventRef(m)],
      },
    });
  };

  const onVolatility = (s: MetricAnomalyState, m: Metric, out: FindingDraft[]): void => {
    const prev = s.last;
    s.last = m.value;
    s.lastTs = m.ts;
    if (prev === null) return;
    const x = m.value - prev;
    const a = volShiftObserve(s.vol as VolShiftState, volCfg, m.ts, x);
    if (a === null) return;
    const up = a.direction === 'up';
    if (directionCooling(s, up, m.ts, cooldownMs)) return;
    const f = up ? a.ratio : 1 / a.ratio;
    const name = `${m.source}:${m.key}`;
    out.push({
      ...base(m),
      severity: gradeByRatio(f, params.volRatio),
      score: round(f, 4),
      windowStart: Math.min(a.startTs, m.ts),
      summary:
        `Metric ${name}: the typical change between values ${up ? 'rose' : 'fell'} to ${formatValue(a.after)} from ${formatValue(a.before)} ` +
        `(${formatTimes(f)} ${up ? 'higher' : 'lower'}) over its last ${formatFixed(a.samples, 0)} values`,
      evidence: {
        observed: { method, direction: a.direction, std: a.after, ratio: round(a.ratio, 6), statistic: round(a.statistic, 6), samples: a.samples, changeStartTs: a.startTs, lastChange: x },
        baseline: { std: a.before, samples: a.baselineSamples, halfLifeMs: params.halfLifeMs, floored: a.before <= minScale },
        threshold: { hNats: params.h, h: round(a.h, 6), k: round(a.k, 6), volRatio: params.volRatio, clipZ: params.clipZ },
        triggers: [eventRef(m)],
      },
    });
  };

  const onMetric = (s: MetricAnomalyState, m: Metric, out: FindingDraft[]): void => {
    if (!Number.isFinite(m.ts) || !Number.isFinite(m.value)) return;
    if (method === 'rate') {
      s.events += 1;
      onRate(s, m, out);
      return;
    }
    if (s.lastTs !== null && m.ts < s.lastTs) {
      s.late += 1;
      return;
    }
    s.events += 1;
    if (method === 'robust_z') onRobust(s, m, out);
    else onVolatility(s, m, out);
  };

  return {
    name: 'metric_anomaly',
    ruleId,
    kinds: ['metric'],
    newState,
    onEvent(state: MetricAnomalyState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'metric') onMetric(state, ev, out);
    },
    toJSON(s: MetricAnomalyState): MetricAnomalyJSON {
      return {
        v: 1,
        key: s.key,
        method,
        on,
        last: s.last,
        lastTs: s.lastTs,
        robust: s.robust ? robustToJSON(s.robust) : null,
        runDir: s.runDir,
        rc: s.rc ? s.rc.toJSON() : null,
        ep: { ...s.ep },
        vol: s.vol ? volShiftToJSON(s.vol) : null,
        lastUpTs: s.lastUpTs,
        lastDownTs: s.lastDownTs,
        events: s.events,
        late: s.late,
      };
    },
    fromJSON(json: unknown): MetricAnomalyState {
      const j = json as Partial<MetricAnomalyJSON> | null;
      if (!j || j.v !== 1 || typeof j.key !== 'string') throw new TypeError('metric_anomaly: state JSON is not a v1 metric_anomaly state');
      const s = newState(j.key);
      s.last = num(j.last);
      s.lastTs = num(j.lastTs);
      s.lastUpTs = num(j.lastUpTs);
      s.lastDownTs = num(j.lastDownTs);
      s.events = num(j.events) ?? 0;
      s.late = num(j.late) ?? 0;
      // The method's part carries over when the method (and for robust_z, what it measures) is unchanged.
      if (j.method === method) {
        if (method === 'robust_z' && j.on === on && j.robust) {
          s.robust = robustFromJSON(j.robust, windowMs, maxSamples);
          s.runDir = j.runDir === 'up' || j.runDir === 'down' ? j.runDir : null;
        }
        if (method === 'rate' && j.rc) {
          s.rc = restoreSpikeCounter(j.rc, spikeCfg);
          s.ep = readSpikeEpisode(j.ep);
        }
        if (method === 'volatility' && j.vol) s.vol = volShiftFromJSON(j.vol, volCfg);
      }
      return s;
    },
  };
}

export const metricAnomalySpec: DetectorSpec<MetricAnomalyParams, MetricAnomalyState> = {
  name: 'metric_anomaly',
  description:
    'Anomalies of a generic metric series per source:key: robust z-score of values or changes (robust_z), ' +
    'events or sums per bucket against their baseline (rate), or a shift of the volatility of changes (volatility).',
  kinds: ['metric'],
  params: metricAnomalyParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
