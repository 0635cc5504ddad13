/**
 * `cross_venue_divergence`: one venue's price of an instrument departs from the other venues' far more than
 * its usual basis against them, for a while.
 *
 * State per symbol (keyOf = the symbol: market data is partitioned by symbol, so every venue of the
 * instrument is on one worker, in order), holding per venue the latest mid and its time. When a quote
 * updates venue V's mid, the reference is the median mid of the OTHER venues whose latest quote is fresh
 * (|its ts − this quote's ts| ≤ maxStaleMs, event time); with at least minOtherVenues of them,
 * basis = (mid_V − ref) / ref in bps.
 *
 * Per venue, a robust baseline of its basis: samples of the last windowMs (at most maxSamples), taken at most
 * once per sampleMs on V's updates (so a fast-quoting venue does not weigh more), median ("usual basis")
 * and MAD cached. V diverges when |basis − usual| ≥ k × max(1.4826·MAD, minScaleBps), |basis − usual| ≥ minBps,
 * and V is the outlier: the venue farthest from the median of all fresh venues' mids, each adjusted by its own
 * usual basis (with two other venues their median is their mean, so one diverging venue would otherwise move
 * the others' reference by half its move and get them flagged too). The condition must hold on every update
 * of V, in the same direction, for minDurationMs; then one finding (key: the symbol, venue: V), and none for
 * V within cooldownMs.
 *
 * Per quote: O(V) over the venues of the symbol, V ≤ maxVenues (a small constant, default 16), plus
 * O(log n) for the baseline once per sampleMs. Venues beyond maxVenues: the least recently updated leaves.
 */
import { z } from 'zod';
import { eventKey, eventRef, type CanonicalEvent, type Quote, type Severity } from '../core/events.ts';
import { formatDuration, formatFixed, priceDecimals, round } from './format.ts';
import { MAD_TO_SIGMA, RobustWindow, formatBps, formatSignedBps, hasBothSides, midOf, num, numOrNull, strOrNull } from './market-common.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

export const crossVenueDivergenceParams = z
  .strictObject({
    /** Another venue's mid counts in the reference while its quote is at most this old (event time, either way). */
    maxStaleMs: z.number().int().positive().default(2000),
    /** Fresh other venues needed for a comparison. */
    minOtherVenues: z.number().int().min(1).default(2),
    /** Basis baseline: at most one sample per venue per this interval. */
    sampleMs: z.number().int().positive().default(1000),
    /** Basis baseline window, event time. */
    windowMs: z.number().int().positive().default(1_800_000),
    /** Bound on basis samples per venue (memory per venue). */
    maxSamples: z.number().int().min(2).max(1_000_000).default(1800),
    /** No evaluation of a venue before its baseline holds this many samples. */
    minSamples: z.number().int().min(1).default(60),
    /** Deviation from the usual basis, in robust scales (1.4826·MAD, floored), that fires. */
    k: z.number().finite().positive().default(6),
    /** Floor under the robust scale, in bps. */
    minScaleBps: z.number().finite().positive().default(1),
    /** The deviation from the usual basis must also be at least this many bps. */
    minBps: z.number().finite().nonnegative().default(10),
    /** The divergence must hold on every update of the venue for this long (event time). */
    minDurationMs: z.number().int().nonnegative().default(2000),
    /** Venues tracked per symbol (the least recently updated leaves beyond it). */
    maxVenues: z.number().int().min(2).max(64).default(16),
    /** At most one finding per venue of the symbol within this time. */
    cooldownMs: z.number().int().nonnegative().default(60_000),
  })
  .superRefine((p, ctx) => {
    if (p.minSamples > p.maxSamples) ctx.addIssue({ code: 'custom', path: ['minSamples'], message: `must be <= maxSamples (${p.maxSamples})` });
    if (p.windowMs < p.sampleMs) ctx.addIssue({ code: 'custom', path: ['windowMs'], message: `must be >= sampleMs (${p.sampleMs})` });
    if (p.minOtherVenues > p.maxVenues - 1) ctx.addIssue({ code: 'custom', path: ['minOtherVenues'], message: `must be <= maxVenues - 1 (${p.maxVenues - 1})` });
  });
export type CrossVenueDivergenceParams = z.infer<typeof crossVenueDivergenceParams>;

interface Episode {
  start: number;
  startRef: string;
  dir: 1 | -1;
  count: number;
  /** Largest |deviation| in the episode, bps. */
  peak: number;
  fired: boolean;
}

interface VenueState {
  venue: string;
  mid: number;
  ts: number;
  basis: RobustWindow;
  lastSampleTs: number | null;
  episode: Episode | null;
  lastFindingTs: number | null;
  quotes: number;
  late: number;
}

export interface CrossVenueDivergenceState {
  symbol: string;
  /** By venue, least recently updated first (delete + set on each update). */
  venues: Map<string, VenueState>;
  /** Venues dropped beyond maxVenues. */
  evicted: number;
  skipped: number;
  /** The most recently updated venue (the Map's last entry), or null. */
  last: VenueState | null;
}

/**
 * Median of xs[0..n) (n ≥ 1), sorting that prefix in place: insertion sort, as n ≤ maxVenues is small (no
 * comparator closure, no allocation). Same value as sorting with (a, b) => a − b: mids are finite numbers.
 */
function medianOf(xs: Float64Array, n: number): number {
  for (let i = 1; i < n; i++) {
    const x = xs[i] as number;
    let j = i - 1;
    while (j >= 0 && (xs[j] as number) > x) {
      xs[j + 1] = xs[j] as number;
      j--;
    }
    xs[j + 1] = x;
  }
  const h = n >> 1;
  return n % 2 === 1 ? (xs[h] as number) : ((xs[h - 1] as number) + (xs[h] as number)) / 2;
}

/** Scratch for the mids of one quote's comparison (maxVenues ≤ 64): reused, never held across calls. */
const scratch = new Float64Array(64);

function makeInstance(params: CrossVenueDivergenceParams, ruleId: string): DetectorInstance<CrossVenueDivergenceState> {
  const { maxStaleMs, minOtherVenues, sampleMs, windowMs, maxSamples, minSamples, k, minScaleBps, minBps, minDurationMs, maxVenues, cooldownMs } = params;

  const newVenue = (venue: string): VenueState => ({
    venue,
    mid: Number.NaN,
    ts: Number.NaN,
    basis: new RobustWindow(windowMs, maxSamples),
    lastSampleTs: null,
    episode: null,
    lastFindingTs: null,
    quotes: 0,
    late: 0,
  });

  const newState = (symbol: string): CrossVenueDivergenceState => ({ symbol, venues: new Map(), evicted: 0, skipped: 0, last: null });

  const usualOf = (v: VenueState): number => (v.basis.size >= minSamples ? v.basis.median : 0);

  const fresh = (w: VenueState, ts: number): boolean => Math.abs(ts - w.ts) <= maxStaleMs;

  /** A venue's mid adjusted by its usual basis. */
  const adj = (w: VenueState): number => w.mid / (1 + usualOf(w) / 1e4);

  /** Is V the venue farthest from the median of all fresh venues' basis-adjusted mids? O(V). */
  const isOutlier = (s: CrossVenueDivergenceState, v: VenueState, ts: number): boolean => {
    let n = 0;
    for (const w of s.venues.values()) if (w === v || fresh(w, ts)) scratch[n++] = adj(w);
    const med = medianOf(scratch, n);
    // Ties (two venues: both equally far from their mean) count for both; 1e-9 absorbs rounding.
    const mine = Math.abs(adj(v) - med) + Math.abs(med) * 1e-9;
    for (const w of s.venues.values()) {
      if (w !== v && fresh(w, ts) && Math.abs(adj(w) - med) > mine) return false;
    }
    return true;
  };

  const severityFor = (absDev: number, absZ: number): Severity => {
    const x = minBps > 0 ? absDev / minBps : absZ / k;
    if (x >= 10) return 'critical';
    if (x >= 3) return 'high';
    return 'medium';
  };

  const onQuote = (s: CrossVenueDivergenceState, q: Quote, out: FindingDraft[]): void => {
    if (!hasBothSides(q) || q.bidPx > q.askPx || !Number.isFinite(q.ts)) {
      s.skipped++;
      return;
    }
    const ts = q.ts;
    // The most recently updated venue (the Map's last entry) needs no lookup: usually the same again.
    const last = s.last;
    let v = last !== null && last.venue === q.venue ? last : s.venues.get(q.venue);
    if (v !== undefined) {
      if (ts < v.ts) {
        v.late++;
        return;
      }
      // Most recently updated last: re-inserted unless it already is the last.
      if (v !== s.last) {
        s.venues.delete(q.venue);
        s.venues.set(q.venue, v);
      }
    } else {
      if (s.venues.size >= maxVenues) {
        const oldest = s.venues.keys().next().value as string;
        s.venues.delete(oldest);
        s.evicted++;
      }
      v = newVenue(q.venue);
      s.venues.set(q.venue, v);
    }
    s.last = v;
    const mid = midOf(q);
    v.mid = mid;
    v.ts = ts;
    v.quotes++;

    let nOthers = 0;
    // Too few other venues even if all were fresh (a single-venue feed): no scan.
    if (s.venues.size - 1 >= minOtherVenues) for (const w of s.venues.values()) if (w !== v && fresh(w, ts)) scratch[nOthers++] = w.mid;
    if (nOthers < minOtherVenues) {
      v.episode = null;
      return;
    }
    const ref = medianOf(scratch, nOthers);
    const basis = ((mid - ref) / ref) * 1e4;

    // Evaluate against the baseline as it was before this observation.
    const b = v.basis;
    if (b.size >= minSamples) {
      const usual = b.median;
      const scale = Math.max(MAD_TO_SIGMA * b.mad, minScaleBps);
      const dev = basis - usual;
      const z = dev / scale;
      const diverging = Math.abs(z) >= k && Math.abs(dev) >= minBps && isOutlier(s, v, ts);
      if (diverging) {
        const dir: 1 | -1 = dev > 0 ? 1 : -1;
        let ep = v.episode;
        if (ep === null || ep.dir !== dir) ep = v.episode = { start: ts, startRef: eventRef(q), dir, count: 0, peak: 0, fired: false };
        ep.count++;
        if (Math.abs(dev) > ep.peak) ep.peak = Math.abs(dev);
        if (!ep.fired && ts - ep.start >= minDurationMs) {
          ep.fired = true;
          if (!(v.lastFindingTs !== null && ts - v.lastFindingTs < cooldownMs && ts >= v.lastFindingTs)) {
            v.lastFindingTs = ts;
            out.push(finding(s, v, q, ep, { ref, basis, usual, scale, dev, z, nOthers }));
          }
        }
      } else {
        v.episode = null;
      }
    }

    if (v.lastSampleTs === null || ts - v.lastSampleTs >= sampleMs) {
      b.push(ts, basis);
      b.refresh();
      v.lastSampleTs = ts;
    }
  };

  interface Measure {
    ref: number;
    basis: number;
    usual: number;
    scale: number;
    dev: number;
    z: number;
    nOthers: number;
  }

  const finding = (s: CrossVenueDivergenceState, v: VenueState, q: Quote, ep: Episode, m: Measure): FindingDraft => {
    const ts = q.ts;
    const trigger = eventRef(q);
    const otherList = [...s.venues.values()]
      .filter((w) => w !== v && fresh(w, ts))
      .map((w) => [w.venue, round(w.mid, 8)] as const)
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    // Mids of cent prices are half-cents; rounding to 8 decimals drops binary noise (…869999999995).
    const mid = round(v.mid, 8);
    const ref = round(m.ref, 8);
    const d = priceDecimals(mid, ref);
    const durationMs = ts - ep.start;
    const summary =
      `${q.symbol} on ${q.venue} was quoted ${formatBps(Math.abs(m.basis))} ${m.basis >= 0 ? 'above' : 'below'} the other venues ` +
      `for ${formatDuration(durationMs)} (mid ${formatFixed(mid, d)} vs median ${formatFixed(ref, d)} of ${otherList.map((o) => o[0]).join(', ')}), ` +
      `against a usual basis of ${formatSignedBps(m.usual)}: ${formatFixed(Math.abs(m.z), 1)}× its usual deviation`;
    return {
      severity: severityFor(Math.abs(m.dev), Math.abs(m.z)),
      score: round(Math.abs(m.z), 4),
      venue: q.venue,
      symbol: q.symbol,
      key: q.symbol,
      ts,
      windowStart: Math.min(ep.start, ts),
      windowEnd: ts,
      summary,
      trigger,
      evidence: {
        observed: {
          mid,
          refMid: ref,
          basisBps: round(m.basis, 6),
          deviationBps: round(m.dev, 6),
          peakDeviationBps: round(ep.peak, 6),
          z: round(m.z, 4),
          direction: ep.dir > 0 ? 'above' : 'below',
          durationMs,
          updates: ep.count,
          otherVenues: m.nOthers,
          others: otherList.map(([name, mid]) => `${name}=${mid}`).join(' '),
        },
        baseline: {
          usualBasisBps: round(m.usual, 6),
          madBps: round(v.basis.mad, 6),
          scaleBps: round(m.scale, 6),
          scaleFloored: m.scale === minScaleBps,
          samples: v.basis.size,
        },
        threshold: { k, minBps, minDurationMs, minOtherVenues, maxStaleMs },
        triggers: ep.startRef === trigger ? [trigger] : [ep.startRef, trigger],
      },
    };
  };

  return {
    name: 'cross_venue_divergence',
    ruleId,
    kinds: ['quote'],
    keyOf: (ev: CanonicalEvent): string => ('symbol' in ev ? ev.symbol : eventKey(ev)),
    newState,
    onEvent(state: CrossVenueDivergenceState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'quote') onQuote(state, ev, out);
    },
    toJSON(s: CrossVenueDivergenceState): unknown {
      return {
        v: 1,
        symbol: s.symbol,
        evicted: s.evicted,
        skipped: s.skipped,
        venues: [...s.venues.values()].map((v) => ({
          venue: v.venue,
          mid: v.mid,
          ts: v.ts,
          basis: v.basis.toJSON(),
          lastSampleTs: v.lastSampleTs,
          episode: v.episode === null ? null : { ...v.episode },
          lastFindingTs: v.lastFindingTs,
          quotes: v.quotes,
          late: v.late,
        })),
      };
    },
    fromJSON(json: unknown): CrossVenueDivergenceState {
      const j = json as Record<string, unknown> | null;
      if (!j || typeof j !== 'object' || j.v !== 1 || typeof j.symbol !== 'string' || !Array.isArray(j.venues)) {
        throw new TypeError('cross_venue_divergence: state JSON is not a v1 cross_venue_divergence state');
      }
      const s = newState(j.symbol);
      s.evicted = num(j.evicted, 'cross_venue_divergence: evicted', 0);
      s.skipped = num(j.skipped, 'cross_venue_divergence: skipped', 0);
      const list = j.venues as unknown[];
      // Fewer venues allowed now: the most recently updated stay.
      const keepFrom = Math.max(0, list.length - maxVenues);
      s.evicted += keepFrom;
      for (const raw of list.slice(keepFrom)) {
        const r = raw as Record<string, unknown> | null;
        if (!r || typeof r !== 'object' || typeof r.venue !== 'string') throw new TypeError('cross_venue_divergence: venue entries must be objects with a venue');
        const what = `cross_venue_divergence: venue ${r.venue}`;
        const v = newVenue(r.venue);
        v.mid = num(r.mid, `${what}.mid`);
        v.ts = num(r.ts, `${what}.ts`);
        v.basis = RobustWindow.restore(r.basis, windowMs, maxSamples, what);
        v.lastSampleTs = numOrNull(r.lastSampleTs, `${what}.lastSampleTs`);
        v.lastFindingTs = numOrNull(r.lastFindingTs, `${what}.lastFindingTs`);
        v.quotes = num(r.quotes, `${what}.quotes`, 0);
        v.late = num(r.late, `${what}.late`, 0);
        const e = r.episode as Record<string, unknown> | null | undefined;
        if (e !== null && e !== undefined) {
          if (typeof e !== 'object') throw new TypeError(`${what}.episode must be an object or null`);
          const startRef = strOrNull(e.startRef, `${what}.episode.startRef`);
          if (startRef === null || (e.dir !== 1 && e.dir !== -1)) throw new TypeError(`${what}.episode is malformed`);
          v.episode = {
            start: num(e.start, `${what}.episode.start`),
            startRef,
            dir: e.dir,
            count: num(e.count, `${what}.episode.count`),
            peak: num(e.peak, `${what}.episode.peak`),
            fired: e.fired === true,
          };
        }
        if (s.venues.has(v.venue)) throw new TypeError(`${what} appears twice`);
        s.venues.set(v.venue, v);
        s.last = v;
      }
      return s;
    },
  };
}

export const crossVenueDivergenceSpec: DetectorSpec<CrossVenueDivergenceParams, CrossVenueDivergenceState> = {
  name: 'cross_venue_divergence',
  description:
    "One venue's mid against the median mid of the other fresh venues of the same symbol (basis in bps), compared with " +
    'that venue’s usual basis (median/MAD); fires when the deviation is k robust scales and minBps away for minDurationMs.',
  kinds: ['quote'],
  params: crossVenueDivergenceParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
