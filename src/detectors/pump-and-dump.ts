/**
 * `pump_and_dump`: a rise far outside the instrument's own volatility on unusual volume, then a reversal
 * that gives back a large part of it.
 *
 * Per venue:symbol, trades are bucketed into event-time intervals (intervalMs). Baselines, all event time:
 *  - volatility: when an interval closes, its log return against the previous interval that had trades,
 *    divided by √(intervals spanned), squared, enters an exponentially weighted mean with half-life
 *    halfLifeMs (EW variance around 0); σ_horizon = σ_interval · √(pumpMs / intervalMs);
 *  - volume: a time-decayed volume rate (Σ qty·2^(−age/h) over the decayed observed time, same half-life),
 *    so empty stretches count as zero volume.
 * Each interval start keeps a snapshot (cumulative volume, volume rate, EW variance) of the moment it opened;
 * the pump is judged against the snapshot of the trough's interval, i.e. against the market BEFORE it.
 *
 * The running minimum over the last pumpMs comes from a monotonic deque (SlidingExtremum) fed once per
 * closed interval with that interval's lowest trade (and the open interval's minimum kept aside), so the
 * deque holds at most pumpMs/intervalMs + 1 entries; O(1) amortized.
 *
 * Pump (checked on every trade while none is under way): with L the lowest trade of the last pumpMs,
 *   rise = ln(p / L) ≥ riseSigmas · σ_horizon,  p / L − 1 ≥ minRisePct / 100,  and
 *   volume since the start of L's interval ≥ volumeMultiple × rate · (time since then)   (rate at that start).
 * Then the peak is followed (each higher trade is the new peak). Dump: a trade within dumpMs of the peak with
 *   give-back = (peak − p) / (peak − L) ≥ giveBackFraction  →  finding on that trade.
 * No reversal within dumpMs of the peak ends the episode silently. With detectBearRaid, the mirror (a fall
 * from the running maximum, then a recovery of the same fraction) is watched with its own sub-state.
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Trade } from '../core/events.ts';
import { TimeWindow } from '../stats/event-window.ts';
import { Ewma } from '../stats/ewma.ts';
import { SlidingExtremum } from '../stats/monotonic-deque.ts';
import { formatDuration, formatFixed, formatPercent, formatTimes, priceDecimals, round } from './format.ts';
import { isNum, isNumOrNull, nullIfNaN, requireNums } from './json-state.ts';
import { gradeByMultiple } from './severity.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

export const pumpAndDumpParams = z
  .strictObject({
    /** Returns (volatility) and the running extremum are sampled per event-time interval of this length. */
    intervalMs: z.number().int().positive().default(60_000),
    /** Half-life (event time) of the EW variance of interval returns and of the volume rate. */
    halfLifeMs: z.number().int().positive().default(6 * 3_600_000),
    /** No evaluation before this many interval returns have entered the variance. */
    minIntervals: z.number().int().min(1).default(60),
    /** Pump horizon: the rise is measured from the lowest trade of this much past event time. */
    pumpMs: z.number().int().positive().default(1_800_000),
    /** The rise must be at least this many σ of the pump horizon (σ_interval · √(pumpMs / intervalMs)). */
    riseSigmas: z.number().finite().positive().default(4),
    /** …and at least this many percent. */
    minRisePct: z.number().finite().positive().default(5),
    /** …on at least this multiple of the usual volume for the time since the start of the rise. */
    volumeMultiple: z.number().finite().positive().default(3),
    /** Dump horizon: the reversal must come within this time after the peak. */
    dumpMs: z.number().int().positive().default(1_800_000),
    /** The reversal gives back at least this fraction of the rise (peak − start). */
    giveBackFraction: z.number().finite().gt(0).max(1).default(0.5),
    /** Also watch the mirror: a fall on volume, then a recovery (bear raid). */
    detectBearRaid: z.boolean().default(false),
    /** At most one finding per key and direction within this time. */
    cooldownMs: z.number().int().nonnegative().default(1_800_000),
  })
  .superRefine((p, ctx) => {
    if (p.pumpMs < p.intervalMs) ctx.addIssue({ code: 'custom', path: ['pumpMs'], message: `must be >= intervalMs (${p.intervalMs})` });
    if (p.pumpMs / p.intervalMs > 10_000) ctx.addIssue({ code: 'custom', path: ['pumpMs'], message: `must be at most 10,000 intervals (intervalMs ${p.intervalMs})` });
  });
export type PumpAndDumpParams = z.infer<typeof pumpAndDumpParams>;

/** Snapshot taken when an interval opens: [cumulative volume before it, volume rate per ms (null: none yet), EW variance (null: none yet)]. */
type IntervalSnap = [number, number | null, number | null];

/** One direction's episode under way: up = pump (then dump), down = bear raid (then recovery). */
export interface Episode {
  startPx: number;
  startTs: number;
  startRef: string;
  /** Start of the start trade's interval (volume measured from there). */
  fromTs: number;
  cum0: number;
  rate0: number;
  sigmaH: number;
  sigmaInterval: number;
  qualTs: number;
  qualRef: string;
  peakPx: number;
  peakTs: number;
  peakRef: string;
  /** Volume from fromTs to the peak, and its ratio to the usual volume of that time. */
  volume: number;
  expectedVolume: number;
}

export interface PumpAndDumpState {
  key: string;
  curIdx: number | null;
  curClose: number;
  curMin: number;
  curMinTs: number;
  curMinRef: string;
  curMax: number;
  curMaxTs: number;
  curMaxRef: string;
  prevClose: number | null;
  prevIdx: number | null;
  variance: Ewma;
  /**
   * Decayed volume and decayed observed time (ms), at volTs (NaN before the first trade, null in the
   * JSON: a number field is updated in place, a field that may hold null boxes each new time).
   */
  volW: number;
  timeW: number;
  volTs: number;
  cumVol: number;
  snaps: TimeWindow<IntervalSnap>;
  /** Closed intervals' lowest / highest trades; refs by trade time (the deque keeps only times and prices). */
  lows: SlidingExtremum;
  highs: SlidingExtremum;
  lowRefs: TimeWindow<string>;
  highRefs: TimeWindow<string>;
  up: Episode | null;
  down: Episode | null;
  lastUpTs: number | null;
  lastDownTs: number | null;
  trades: number;
  late: number;
}

/** The state as saved: its windows and deques in their own JSON forms. */
type PumpAndDumpJSON = Omit<PumpAndDumpState, 'variance' | 'snaps' | 'lows' | 'highs' | 'lowRefs' | 'highRefs' | 'volTs'> & {
  v: 1;
  volTs: number | null;
  intervalMs: number;
  variance: unknown;
  snaps: unknown;
  lows: unknown;
  highs: unknown;
  lowRefs: unknown;
  highRefs: unknown;
};

const LN2 = Math.LN2;
/** Whole-ms gaps below this have their decay memoized (decayTo). */
const DECAY_MEMO = 1024;
/** Floor under σ_interval (0.01 bps), so a market that never moved gives a finite score. */
const MIN_SIGMA = 1e-6;
const UP_ONLY = [true] as const;
const BOTH = [true, false] as const;

const EPISODE_NUMS = ['startPx', 'startTs', 'fromTs', 'cum0', 'rate0', 'sigmaH', 'sigmaInterval', 'qualTs', 'peakPx', 'peakTs', 'volume', 'expectedVolume'] as const;

function makeInstance(params: PumpAndDumpParams, ruleId: string): DetectorInstance<PumpAndDumpState> {
  const p = params;
  const I = p.intervalMs;
  const H = p.pumpMs / I;
  const h = p.halfLifeMs;
  const sqrtH = Math.sqrt(H);
  const minRise = p.minRisePct / 100;
  const maxIntervals = Math.ceil(H) + 2;
  // Deques and ref windows hold one entry per interval of the pump horizon.
  const newLows = (): SlidingExtremum => new SlidingExtremum('min', p.pumpMs, maxIntervals);
  const newHighs = (): SlidingExtremum => new SlidingExtremum('max', p.pumpMs, maxIntervals);

  const newState = (key: string): PumpAndDumpState => ({
    key,
    curIdx: null,
    curClose: 0,
    curMin: 0,
    curMinTs: 0,
    curMinRef: '',
    curMax: 0,
    curMaxTs: 0,
    curMaxRef: '',
    prevClose: null,
    prevIdx: null,
    variance: new Ewma({ halfLifeMs: h }),
    volW: 0,
    timeW: 0,
    volTs: Number.NaN,
    cumVol: 0,
    snaps: new TimeWindow<IntervalSnap>(p.pumpMs + I, maxIntervals),
    lows: newLows(),
    highs: newHighs(),
    lowRefs: new TimeWindow<string>(p.pumpMs, maxIntervals),
    highRefs: new TimeWindow<string>(p.pumpMs, maxIntervals),
    up: null,
    down: null,
    lastUpTs: null,
    lastDownTs: null,
    trades: 0,
    late: 0,
  });

  /**
   * The decay factor 2^(−dt/h) and the time weight's increment (h / ln 2)·(1 − f) by whole dt below
   * DECAY_MEMO, computed once per instance (NaN: not yet): most trades are a few ms apart, and Math.pow per
   * trade was a quarter of the rule's cost. The same expressions, so the same values.
   */
  const memoF = new Float64Array(DECAY_MEMO).fill(Number.NaN);
  const memoG = new Float64Array(DECAY_MEMO);

  /** Decays the volume sums to ts (no-op when time does not advance). */
  const decayTo = (s: PumpAndDumpState, ts: number): void => {
    if (Number.isNaN(s.volTs)) {
      s.volTs = ts;
      return;
    }
    const dt = ts - s.volTs;
    if (dt <= 0) return;
    let f: number;
    let g: number;
    if (dt < DECAY_MEMO && (dt | 0) === dt) {
      f = memoF[dt] as number;
      if (Number.isNaN(f)) {
        f = memoF[dt] = Math.pow(2, -dt / h);
        memoG[dt] = (h / LN2) * (1 - f);
      }
      g = memoG[dt] as number;
    } else {
      f = Math.pow(2, -dt / h);
      g = (h / LN2) * (1 - f);
    }
    s.volW *= f;
    s.timeW = s.timeW * f + g;
    s.volTs = ts;
  };
  const rateNow = (s: PumpAndDumpState): number | null => (s.timeW > 0 ? s.volW / s.timeW : null);

  /** The snapshot of the interval starting at fromTs (binary search over ≤ H + 2 entries). */
  const snapAt = (s: PumpAndDumpState, fromTs: number): IntervalSnap | undefined => {
    let lo = 0;
    let hi = s.snaps.size;
    while (lo < hi) {
      const m = (lo + hi) >>> 1;
      if (s.snaps.at(m).ts < fromTs) lo = m + 1;
      else hi = m;
    }
    if (lo >= s.snaps.size) return undefined;
    const e = s.snaps.at(lo);
    return e.ts === fromTs ? e.value : undefined;
  };

  /** A ref by its trade time in a refs window (the deque's extremum time). */
  const refAt = (w: TimeWindow<string>, ts: number): string => {
    let lo = 0;
    let hi = w.size;
    while (lo < hi) {
      const m = (lo + hi) >>> 1;
      if (w.at(m).ts < ts) lo = m + 1;
      else hi = m;
    }
    return lo < w.size && w.at(lo).ts === ts ? w.at(lo).value : '';
  };

  const closeInterval = (s: PumpAndDumpState): void => {
    const idx = s.curIdx as number;
    s.lows.push(s.curMinTs, s.curMin);
    s.highs.push(s.curMaxTs, s.curMax);
    s.lowRefs.push(s.curMinTs, s.curMinRef);
    s.highRefs.push(s.curMaxTs, s.curMaxRef);
    if (s.prevClose !== null && s.prevIdx !== null) {
      const r = Math.log(s.curClose / s.prevClose);
      s.variance.update((r * r) / (idx - s.prevIdx), idx * I);
    }
    s.prevClose = s.curClose;
    s.prevIdx = idx;
  };

  const tryStart = (s: PumpAndDumpState, t: Trade, up: boolean): Episode | null => {
    const price = t.price;
    const ts = t.ts;
    const deque = up ? s.lows : s.highs;
    const cur = up ? s.curMin : s.curMax;
    let ext = cur;
    let extTs = up ? s.curMinTs : s.curMaxTs;
    // The extremum's ref is looked up (a binary search) only for a move that passes the first test.
    let extRef: string | null = up ? s.curMinRef : s.curMaxRef;
    if (!deque.isEmpty && (up ? deque.value < cur : deque.value > cur)) {
      ext = deque.value;
      extTs = deque.valueTs as number;
      extRef = null;
    }
    const movePct = up ? price / ext - 1 : 1 - price / ext;
    if (!(movePct >= minRise)) return null;
    if (extRef === null) extRef = refAt(up ? s.lowRefs : s.highRefs, extTs);
    const fromTs = Math.floor(extTs / I) * I;
    const snap = snapAt(s, fromTs);
    if (!snap || snap[1] === null || snap[2] === null || !(snap[1] > 0)) return null;
    const sigmaI = Math.max(Math.sqrt(snap[2]), MIN_SIGMA);
    const sigmaH = sigmaI * sqrtH;
    const move = Math.abs(Math.log(price / ext));
    if (!(move >= p.riseSigmas * sigmaH)) return null;
    const volume = s.cumVol - snap[0];
    const expected = snap[1] * Math.max(ts - fromTs, I);
    if (!(volume >= p.volumeMultiple * expected)) return null;
    const ref = eventRef(t);
    return {
      startPx: ext,
      startTs: extTs,
      startRef: extRef,
      fromTs,
      cum0: snap[0],
      rate0: snap[1],
      sigmaH,
      sigmaInterval: sigmaI,
      qualTs: ts,
      qualRef: ref,
      peakPx: price,
      peakTs: ts,
      peakRef: ref,
      volume,
      expectedVolume: expected,
    };
  };

  /** Advances an episode with a trade; returns true when the reversal completes (the finding is pushed). */
  const advance = (s: PumpAndDumpState, e: Episode, t: Trade, up: boolean, out: FindingDraft[]): 'fired' | 'expired' | 'running' => {
    const price = t.price;
    const ts = t.ts;
    if (ts - e.peakTs > p.dumpMs) return 'expired';
    if (up ? price > e.peakPx : price < e.peakPx) {
      e.peakPx = price;
      e.peakTs = ts;
      e.peakRef = eventRef(t);
      e.volume = s.cumVol - e.cum0;
      e.expectedVolume = e.rate0 * Math.max(ts - e.fromTs, I);
      return 'running';
    }
    const giveBack = (e.peakPx - price) / (e.peakPx - e.startPx); // same sign convention both ways
    if (!(giveBack >= p.giveBackFraction)) return 'running';

    const last = up ? s.lastUpTs : s.lastDownTs;
    if (last !== null && ts - last < p.cooldownMs) return 'expired';
    if (up) s.lastUpTs = ts;
    else s.lastDownTs = ts;

    const movePct = up ? e.peakPx / e.startPx - 1 : 1 - e.peakPx / e.startPx;
    const moveLog = Math.abs(Math.log(e.peakPx / e.startPx));
    const sigmas = moveLog / e.sigmaH;
    const volumeRatio = e.volume / e.expectedVolume;
    const dec = Math.max(priceDecimals(e.startPx, e.peakPx), priceDecimals(price, price));
    const ref = eventRef(t);
    const trigger = up ? ref : `${ref}#bear_raid`;
    const triggers = [e.startRef, e.qualRef, e.peakRef, ref].filter((r, i, a) => r !== '' && a.indexOf(r) === i);
    const summary = up
      ? `${t.symbol} on ${t.venue} rose ${formatPercent(movePct)} in ${formatDuration(e.peakTs - e.startTs)} ` +
        `(${formatFixed(e.startPx, dec)} → ${formatFixed(e.peakPx, dec)}, ${formatFixed(sigmas, 1)}σ, on ${formatTimes(volumeRatio)} its usual volume) ` +
        `then gave back ${formatPercent(giveBack)} of the rise within ${formatDuration(ts - e.peakTs)} (now ${formatFixed(price, dec)})`
      : `${t.symbol} on ${t.venue} fell ${formatPercent(movePct)} in ${formatDuration(e.peakTs - e.startTs)} ` +
        `(${formatFixed(e.startPx, dec)} → ${formatFixed(e.peakPx, dec)}, ${formatFixed(sigmas, 1)}σ, on ${formatTimes(volumeRatio)} its usual volume) ` +
        `then recovered ${formatPercent(giveBack)} of the fall within ${formatDuration(ts - e.peakTs)} (now ${formatFixed(price, dec)})`;
    out.push({
      severity: gradeByMultiple(sigmas, p.riseSigmas),
      score: round(sigmas, 4),
      venue: t.venue,
      symbol: t.symbol,
      key: `${t.venue}:${t.symbol}`,
      ts,
      windowStart: Math.min(e.startTs, ts),
      windowEnd: ts,
      summary,
      trigger,
      evidence: {
        observed: {
          direction: up ? 'pump_and_dump' : 'bear_raid',
          startPrice: e.startPx,
          startTs: e.startTs,
          peakPrice: e.peakPx,
          peakTs: e.peakTs,
          price,
          movePct: round(movePct * 100, 6),
          moveSigmas: round(sigmas, 4),
          giveBackPct: round(giveBack * 100, 6),
          volume: round(e.volume, 8),
          volumeRatio: round(volumeRatio, 4),
          riseMs: e.peakTs - e.startTs,
          reversalMs: ts - e.peakTs,
          qualifiedTs: e.qualTs,
        },
        baseline: {
          sigmaIntervalBps: round(e.sigmaInterval * 1e4, 6),
          sigmaHorizonBps: round(e.sigmaH * 1e4, 6),
          expectedVolume: round(e.expectedVolume, 8),
          volumePerMin: round(e.rate0 * 60_000, 8),
          intervals: s.variance.count,
          since: e.fromTs,
        },
        threshold: {
          riseSigmas: p.riseSigmas,
          minRisePct: p.minRisePct,
          volumeMultiple: p.volumeMultiple,
          giveBackFraction: p.giveBackFraction,
          pumpMs: p.pumpMs,
          dumpMs: p.dumpMs,
        },
        triggers,
      },
    });
    return 'fired';
  };

  const onTrade = (s: PumpAndDumpState, t: Trade, out: FindingDraft[]): void => {
    const ts = t.ts;
    const price = t.price;
    if (!(price > 0) || !Number.isFinite(price) || !Number.isFinite(ts) || !(t.qty >= 0) || !Number.isFinite(t.qty)) return;
    const idx = Math.floor(ts / I);
    if (s.curIdx !== null && idx < s.curIdx) {
      s.late += 1;
      return;
    }
    s.trades += 1;
    // eventRef(t), built only when this trade becomes the interval's low or high (most trades don't).
    let ref: string | undefined;
    decayTo(s, ts);
    if (s.curIdx === null || idx > s.curIdx) {
      if (s.curIdx !== null) closeInterval(s);
      s.snaps.push(idx * I, [s.cumVol, rateNow(s), s.variance.count >= p.minIntervals ? s.variance.mean : null]);
      s.curIdx = idx;
      s.curMin = s.curMax = price;
      s.curMinTs = s.curMaxTs = ts;
      s.curMinRef = s.curMaxRef = eventRef(t);
    } else {
      if (price < s.curMin) {
        s.curMin = price;
        s.curMinTs = ts;
        s.curMinRef = ref ??= eventRef(t);
      }
      if (price > s.curMax) {
        s.curMax = price;
        s.curMaxTs = ts;
        s.curMaxRef = ref ??= eventRef(t);
      }
    }
    s.curClose = price;
    s.volW += t.qty;
    s.cumVol += t.qty;
    s.lows.expire(ts);
    s.highs.expire(ts);
    s.lowRefs.expire(ts);
    s.highRefs.expire(ts);

    for (const up of p.detectBearRaid ? BOTH : UP_ONLY) {
      const e = up ? s.up : s.down;
      if (e !== null) {
        const r = advance(s, e, t, up, out);
        if (r === 'running') continue;
        if (up) s.up = null;
        else s.down = null;
        if (r === 'fired') continue;
      }
      const last = up ? s.lastUpTs : s.lastDownTs;
      if (last !== null && ts - last < p.cooldownMs) continue;
      const started = tryStart(s, t, up);
      if (started) {
        if (up) s.up = started;
        else s.down = started;
      }
    }
    if (!p.detectBearRaid) s.down = null;
  };

  return {
    name: 'pump_and_dump',
    ruleId,
    kinds: ['trade'],
    newState,
    onEvent(state: PumpAndDumpState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'trade') onTrade(state, ev, out);
    },
    toJSON(s: PumpAndDumpState): PumpAndDumpJSON {
      return {
        v: 1,
        key: s.key,
        intervalMs: I,
        curIdx: s.curIdx,
        curClose: s.curClose,
        curMin: s.curMin,
        curMinTs: s.curMinTs,
        curMinRef: s.curMinRef,
        curMax: s.curMax,
        curMaxTs: s.curMaxTs,
        curMaxRef: s.curMaxRef,
        prevClose: s.prevClose,
        prevIdx: s.prevIdx,
        variance: s.variance.toJSON(),
        volW: s.volW,
        timeW: s.timeW,
        volTs: nullIfNaN(s.volTs),
        cumVol: s.cumVol,
        snaps: s.snaps.toJSON(),
        lows: s.lows.toJSON(),
        highs: s.highs.toJSON(),
        lowRefs: s.lowRefs.toJSON(),
        highRefs: s.highRefs.toJSON(),
        up: s.up ? { ...s.up } : null,
        down: s.down ? { ...s.down } : null,
        lastUpTs: s.lastUpTs,
        lastDownTs: s.lastDownTs,
        trades: s.trades,
        late: s.late,
      };
    },
    fromJSON(json: unknown): PumpAndDumpState {
      const j = json as Partial<PumpAndDumpJSON> | null;
      if (
        !j ||
        j.v !== 1 ||
        typeof j.key !== 'string' ||
        !isNum(j.intervalMs) ||
        !isNumOrNull(j.curIdx) ||
        !isNumOrNull(j.prevClose) ||
        !isNumOrNull(j.prevIdx) ||
        !isNumOrNull(j.volTs) ||
        !isNumOrNull(j.lastUpTs) ||
        !isNumOrNull(j.lastDownTs) ||
        ![j.curClose, j.curMin, j.curMinTs, j.curMax, j.curMaxTs, j.volW, j.timeW, j.cumVol, j.trades, j.late].every(isNum) ||
        typeof j.curMinRef !== 'string' ||
        typeof j.curMaxRef !== 'string'
      ) {
        throw new TypeError('pump_and_dump: state JSON is not a v1 pump_and_dump state');
      }
      const checkEpisode = (e: unknown): Episode | null => {
        if (e === null || e === undefined) return null;
        const o = e as Record<string, unknown>;
        requireNums(o, EPISODE_NUMS, 'pump_and_dump: episode');
        for (const k of ['startRef', 'qualRef', 'peakRef']) if (typeof o[k] !== 'string') throw new TypeError(`pump_and_dump: episode.${k} must be a string`);
        return { ...(o as unknown as Episode) };
      };
      const s = newState(j.key);
      s.curIdx = j.curIdx ?? null;
      s.curClose = j.curClose as number;
      s.curMin = j.curMin as number;
      s.curMinTs = j.curMinTs as number;
      s.curMinRef = j.curMinRef;
      s.curMax = j.curMax as number;
      s.curMaxTs = j.curMaxTs as number;
      s.curMaxRef = j.curMaxRef;
      s.prevClose = j.prevClose ?? null;
      s.prevIdx = j.prevIdx ?? null;
      s.volW = j.volW as number;
      s.timeW = j.timeW as number;
      s.volTs = j.volTs ?? Number.NaN;
      s.cumVol = j.cumVol as number;
      s.lastUpTs = j.lastUpTs ?? null;
      s.lastDownTs = j.lastDownTs ?? null;
      s.trades = j.trades as number;
      s.late = j.late as number;
      s.up = checkEpisode(j.up);
      s.down = p.detectBearRaid ? checkEpisode(j.down) : null;

      // The variance (and the volume rate) carry over; a changed half-life applies from here on.
      const v = Ewma.fromJSON(j.variance);
      const vj = v.toJSON();
      s.variance = Ewma.fromJSON({ ...vj, alpha: null, halfLifeMs: h });

      // Windows: rebuilt through this instance's bounds (a changed pump horizon trims them or lets them grow).
      const snaps = TimeWindow.fromJSON<IntervalSnap>(j.snaps, (x) => {
        if (!Array.isArray(x) || x.length !== 3 || !isNum(x[0]) || !isNumOrNull(x[1]) || !isNumOrNull(x[2])) {
          throw new TypeError('pump_and_dump: interval snapshot must be [number, number|null, number|null]');
        }
        return [x[0], x[1], x[2]] as IntervalSnap;
      });
      for (const e of snaps.entries()) s.snaps.push(e.ts, e.value);
      if (Number.isFinite(snaps.horizon)) s.snaps.expire(snaps.horizon);
      const rebuildRefs = (src: unknown, dst: TimeWindow<string>): void => {
        const w = TimeWindow.fromJSON<string>(src, (x) => {
          if (typeof x !== 'string') throw new TypeError('pump_and_dump: refs must be strings');
          return x;
        });
        for (const e of w.entries()) dst.push(e.ts, e.value);
        if (Number.isFinite(w.horizon)) dst.expire(w.horizon);
      };
      rebuildRefs(j.lowRefs, s.lowRefs);
      rebuildRefs(j.highRefs, s.highRefs);
      const rebuildDeque = (src: unknown, dst: SlidingExtremum): void => {
        const d = SlidingExtremum.fromJSON(src);
        const dj = d.toJSON();
        if (dj.spanMs === p.pumpMs && dj.maxCount === maxIntervals) {
          // Same bounds: continue exactly (the push counter matters for the count bound).
          const same = SlidingExtremum.fromJSON(dj);
          if (dst.mode === 'min') s.lows = same;
          else s.highs = same;
          return;
        }
        for (const [ts, val] of dj.entries) dst.push(ts, val);
        if (dj.horizon !== null) dst.expire(dj.horizon);
      };
      rebuildDeque(j.lows, s.lows);
      rebuildDeque(j.highs, s.highs);
      if (j.intervalMs !== I) {
        // Another interval length: the open interval's index and the previous close's index no longer fit;
        // the open interval's extremes go into the deques as if it had closed, and the snapshots are dropped.
        if (s.curIdx !== null) {
          s.lows.push(s.curMinTs, s.curMin);
          s.highs.push(s.curMaxTs, s.curMax);
          s.lowRefs.push(s.curMinTs, s.curMinRef);
          s.highRefs.push(s.curMaxTs, s.curMaxRef);
        }
        s.curIdx = null;
        s.prevIdx = null;
        s.prevClose = null;
        s.snaps = new TimeWindow<IntervalSnap>(p.pumpMs + I, maxIntervals);
      }
      return s;
    },
  };
}

export const pumpAndDumpSpec: DetectorSpec<PumpAndDumpParams, PumpAndDumpState> = {
  name: 'pump_and_dump',
  description:
    'A rise of at least riseSigmas σ of the pump horizon and minRisePct on volumeMultiple× the usual volume, then a give-back ' +
    'of giveBackFraction of it within dumpMs of the peak; optionally the mirror (bear raid).',
  kinds: ['trade'],
  params: pumpAndDumpParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
