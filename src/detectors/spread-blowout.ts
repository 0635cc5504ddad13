/**
 * `spread_blowout`: the bid-ask spread of a venue:symbol far wider than its own recent normal, for long
 * enough that it is not a flickering quote.
 *
 * Spread = (ask − bid) / mid in bps. Baseline: the spread in force at the end of each event-time bucket of
 * sampleMs that had quotes (the last quote's spread of the bucket), over the last windowMs (at most
 * maxSamples) — one sample per bucket, so a burst of quote updates does not weigh more than a quiet second
 * (no quote-rate bias). Median and MAD are cached and refreshed once per bucket close (O(log n)).
 *
 * A quote is wide when spread ≥ ratio × median, (spread − median) / max(1.4826·MAD, minScaleBps) ≥ zThreshold
 * and spread ≥ minSpreadBps. An episode starts at the first wide quote; each quote's spread is in force until
 * the next quote, so at every quote the episode has lasted (this quote's ts − the first wide quote's ts). The
 * finding fires at the first quote at which the episode has lasted ≥ minDurationMs with every quote in
 * between wide (that quote may be the one that ends it: the wide spread was in force until then). One
 * finding per episode, and none within cooldownMs of the previous one. Quotes with bid ≥ ask (locked or
 * crossed: crossed_book's business) or an empty side are ignored. Status disconnected / book_reset / gap /
 * stale end the episode without a finding and drop the open bucket; derived quotes are skipped from
 * book_reset until book_synced.
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type FeedStatus, type Quote } from '../core/events.ts';
import { formatDuration, formatTimes, round } from './format.ts';
import { findingCooling } from './cooldown.ts';
import { bookStatusEnds } from './feed-status.ts';
import { fieldNum, fieldStr, nullIfNaN } from './json-state.ts';
import { MAD_TO_SIGMA, RobustWindow, formatBps, hasBothSides, num, numOrNull, spreadBpsOf } from './market-common.ts';
import { gradeByMultiple } from './severity.ts';
import { distinctRefs } from './triggers.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

export const spreadBlowoutParams = z
  .strictObject({
    /** Baseline sampling bucket (event time): one spread sample per bucket that had quotes. */
    sampleMs: z.number().int().positive().default(1000),
    /** Baseline window of past spread samples, event time. */
    windowMs: z.number().int().positive().default(900_000),
    /** Bound on baseline samples (memory per key). */
    maxSamples: z.number().int().min(2).max(1_000_000).default(900),
    /** No evaluation before the baseline holds this many samples. */
    minSamples: z.number().int().min(1).default(60),
    /** The spread must be at least this multiple of the baseline median. */
    ratio: z.number().finite().min(1).default(3),
    /** Robust z of the spread against the baseline, (spread − median) / max(1.4826·MAD, minScaleBps), that must be reached. */
    zThreshold: z.number().finite().positive().default(5),
    /** Floor under the robust scale 1.4826·MAD, in bps (a one-tick spread has MAD 0). */
    minScaleBps: z.number().finite().positive().default(0.5),
    /** Absolute floor: spreads narrower than this (bps of mid) never fire. */
    minSpreadBps: z.number().finite().nonnegative().default(5),
    /** The wide spread must have been in force this long (event time) before it fires. */
    minDurationMs: z.number().int().nonnegative().default(1000),
    /** At most one finding per key within this time. */
    cooldownMs: z.number().int().nonnegative().default(60_000),
  })
  .superRefine((p, ctx) => {
    if (p.minSamples > p.maxSamples) ctx.addIssue({ code: 'custom', path: ['minSamples'], message: `must be <= maxSamples (${p.maxSamples})` });
    if (p.windowMs < p.sampleMs) ctx.addIssue({ code: 'custom', path: ['windowMs'], message: `must be >= sampleMs (${p.sampleMs})` });
  });
export type SpreadBlowoutParams = z.infer<typeof spreadBlowoutParams>;

interface Episode {
  start: number;
  startRef: string;
  count: number;
  peak: number;
  peakRef: string;
  peakBid: number;
  peakAsk: number;
  /** The latest wide quote. */
  last: number;
  lastBid: number;
  lastAsk: number;
  fired: boolean;
}

export interface SpreadBlowoutState {
  key: string;
  /*
   * Times and spread are NaN where the JSON has null: fields that may hold null keep numbers boxed (an
   * allocation per store, per quote); number fields are updated in place.
   */
  /** Time of the last quote used (its bucket is the open one); NaN before the first or after a reset. */
  curTs: number;
  /** Spread of the last quote of the open bucket (the open bucket's sample so far); NaN when none. */
  curSpread: number;
  /** Time of the last quote used (late quotes are older than this); NaN before the first. */
  lastTs: number;
  baseline: RobustWindow;
  episode: Episode | null;
  /** book_reset seen and book_synced not yet: derived quotes are skipped. */
  resyncing: boolean;
  lastFindingTs: number | null;
  quotes: number;
  late: number;
  skipped: number;
}

function makeInstance(params: SpreadBlowoutParams, ruleId: string): DetectorInstance<SpreadBlowoutState> {
  const { sampleMs, windowMs, maxSamples, minSamples, ratio, zThreshold, minScaleBps, minSpreadBps, minDurationMs, cooldownMs } = params;

  const newState = (key: string): SpreadBlowoutState => ({
    key,
    curTs: Number.NaN,
    curSpread: Number.NaN,
    lastTs: Number.NaN,
    baseline: new RobustWindow(windowMs, maxSamples),
    episode: null,
    resyncing: false,
    lastFindingTs: null,
    quotes: 0,
    late: 0,
    skipped: 0,
  });

  /** The spread a quote must reach to be wide under the current baseline (NaN when not ready). */
  const effectiveThreshold = (s: SpreadBlowoutState): number => {
    const b = s.baseline;
    if (b.size < minSamples) return Number.NaN;
    const scale = Math.max(MAD_TO_SIGMA * b.mad, minScaleBps);
    return Math.max(ratio * b.median, b.median + zThreshold * scale, minSpreadBps);
  };

  const fire = (s: SpreadBlowoutState, q: Quote, ep: Episode, ended: boolean, out: FindingDraft[]): void => {
    ep.fired = true;
    const ts = q.ts;
    if (findingCooling(s, ts, cooldownMs)) return;
    const b = s.baseline;
    const median = b.median;
    const scale = Math.max(MAD_TO_SIGMA * b.mad, minScaleBps);
    const effective = effectiveThreshold(s);
    const durationMs = ts - ep.start;
    const peakRatio = ep.peak / median;
    const z = (ep.peak - median) / scale;
    const trigger = eventRef(q);
    const triggers = distinctRefs(ep.startRef, ep.peakRef, trigger);
    const summary =
      `${q.symbol} on ${q.venue}: the bid-ask spread widened to ${formatBps(ep.peak)} for ${formatDuration(durationMs)} ` +
      `(${ep.count} quote${ep.count === 1 ? '' : 's'}${ended ? ', now back to ' + formatBps(spreadBpsOf(q)) : ''}), ` +
      `${formatTimes(peakRatio)} its usual ${formatBps(median)}`;
    out.push({
      severity: gradeByMultiple(ep.peak / (Number.isFinite(effective) ? effective : ep.peak), 1),
      score: round(peakRatio, 4),
      venue: q.venue,
      symbol: q.symbol,
      key: `${q.venue}:${q.symbol}`,
      ts,
      windowStart: Math.min(ep.start, ts),
      windowEnd: ts,
      summary,
      trigger,
      evidence: {
        observed: {
          spreadBps: round(ep.last, 6),
          peakBps: round(ep.peak, 6),
          peakBid: ep.peakBid,
          peakAsk: ep.peakAsk,
          lastBid: ep.lastBid,
          lastAsk: ep.lastAsk,
          ratio: round(peakRatio, 4),
          z: round(z, 4),
          durationMs,
          wideQuotes: ep.count,
          ended,
          startTs: ep.start,
        },
        baseline: {
          medianBps: round(median, 6),
          madBps: round(b.mad, 6),
          scaleBps: round(scale, 6),
          scaleFloored: scale === minScaleBps,
          samples: b.size,
          sampleMs,
        },
        threshold: {
          ratio,
          z: zThreshold,
          minSpreadBps,
          minDurationMs,
          effectiveBps: Number.isFinite(effective) ? round(effective, 6) : null,
        },
        triggers,
      },
    });
  };

  /** Ends what a feed disruption makes meaningless: the episode and the open bucket. */
  const reset = (s: SpreadBlowoutState): void => {
    s.episode = null;
    s.curTs = Number.NaN;
    s.curSpread = Number.NaN;
  };

  const onStatus = (s: SpreadBlowoutState, ev: FeedStatus): void => {
    if (bookStatusEnds(s, ev.status)) reset(s);
  };

  const onQuote = (s: SpreadBlowoutState, q: Quote, out: FindingDraft[]): void => {
    if (!hasBothSides(q) || !(q.askPx > q.bidPx) || !Number.isFinite(q.ts)) {
      s.skipped++;
      return;
    }
    if (q.derived === true && s.resyncing) {
      s.skipped++;
      return;
    }
    const ts = q.ts;
    if (ts < s.lastTs) {
      s.late++;
      return;
    }
    s.quotes++;
    s.lastTs = ts;
    const spread = spreadBpsOf(q);

    // Bucket bookkeeping: a quote in a later bucket closes the open one; its closing spread joins the baseline.
    const idx = Math.floor(ts / sampleMs);
    if (!Number.isNaN(s.curTs) && !Number.isNaN(s.curSpread) && idx > Math.floor(s.curTs / sampleMs)) {
      s.baseline.push(Math.floor(s.curTs / sampleMs) * sampleMs, s.curSpread);
      s.baseline.expire(idx * sampleMs);
      s.baseline.refresh();
    }
    s.curTs = ts;
    s.curSpread = spread;

    const effective = effectiveThreshold(s);
    const wide = Number.isFinite(effective) && spread >= effective;
    let ep = s.episode;
    if (wide) {
      if (ep === null) {
        const ref = eventRef(q);
        ep = s.episode = {
          start: ts, startRef: ref, count: 0, peak: spread, peakRef: ref, peakBid: q.bidPx, peakAsk: q.askPx,
          last: spread, lastBid: q.bidPx, lastAsk: q.askPx, fired: false,
        };
      }
      ep.count++;
      ep.last = spread;
      ep.lastBid = q.bidPx;
      ep.lastAsk = q.askPx;
      if (spread > ep.peak) {
        ep.peak = spread;
        ep.peakRef = eventRef(q);
        ep.peakBid = q.bidPx;
        ep.peakAsk = q.askPx;
      }
    }
    if (ep !== null && !ep.fired && ts - ep.start >= minDurationMs && (wide || ts > ep.start)) {
      fire(s, q, ep, !wide, out);
    }
    if (!wide) s.episode = null;
  };

  return {
    name: 'spread_blowout',
    ruleId,
    kinds: ['quote', 'status'],
    newState,
    onEvent(state: SpreadBlowoutState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'quote') onQuote(state, ev, out);
      else if (ev.kind === 'status') onStatus(state, ev);
    },
    toJSON(s: SpreadBlowoutState): unknown {
      return {
        v: 1,
        key: s.key,
        curTs: nullIfNaN(s.curTs),
        curSpread: nullIfNaN(s.curSpread),
        lastTs: nullIfNaN(s.lastTs),
        baseline: s.baseline.toJSON(),
        episode: s.episode === null ? null : { ...s.episode },
        resyncing: s.resyncing,
        lastFindingTs: s.lastFindingTs,
        quotes: s.quotes,
        late: s.late,
        skipped: s.skipped,
      };
    },
    fromJSON(json: unknown): SpreadBlowoutState {
      const j = json as Record<string, unknown> | null;
      if (!j || typeof j !== 'object' || j.v !== 1 || typeof j.key !== 'string') {
        throw new TypeError('spread_blowout: state JSON is not a v1 spread_blowout state');
      }
      const s = newState(j.key);
      s.curTs = numOrNull(j.curTs, 'spread_blowout: curTs') ?? Number.NaN;
      s.curSpread = numOrNull(j.curSpread, 'spread_blowout: curSpread') ?? Number.NaN;
      s.lastTs = numOrNull(j.lastTs, 'spread_blowout: lastTs') ?? Number.NaN;
      s.baseline = RobustWindow.restore(j.baseline, windowMs, maxSamples, 'spread_blowout');
      s.resyncing = j.resyncing === true;
      s.lastFindingTs = numOrNull(j.lastFindingTs, 'spread_blowout: lastFindingTs');
      s.quotes = num(j.quotes, 'spread_blowout: quotes', 0);
      s.late = num(j.late, 'spread_blowout: late', 0);
      s.skipped = num(j.skipped, 'spread_blowout: skipped', 0);
      const e = j.episode as Record<string, unknown> | null | undefined;
      if (e !== null && e !== undefined) {
        if (typeof e !== 'object') throw new TypeError('spread_blowout: episode must be an object or null');
        const w = 'spread_blowout: episode';
        const n = (k: string): number => fieldNum(e, k, w);
        const str = (k: string): string => fieldStr(e, k, w);
        s.episode = {
          start: n('start'), startRef: str('startRef'), count: n('count'), peak: n('peak'), peakRef: str('peakRef'),
          peakBid: n('peakBid'), peakAsk: n('peakAsk'), last: n('last'), lastBid: n('lastBid'), lastAsk: n('lastAsk'),
          fired: e.fired === true,
        };
      }
      return s;
    },
  };
}

export const spreadBlowoutSpec: DetectorSpec<SpreadBlowoutParams, SpreadBlowoutState> = {
  name: 'spread_blowout',
  description:
    'Bid-ask spread (bps of mid) per venue:symbol against its own recent median/MAD (one sample per time bucket); ' +
    'fires when the spread is ratio× the median, a robust z past the threshold and above an absolute floor, for minDurationMs.',
  kinds: ['quote', 'status'],
  params: spreadBlowoutParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};

