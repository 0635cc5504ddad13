/**
 * `crossed_book`: the best bid at or above the best ask on one venue (crossed: bid > ask; locked: bid = ask,
 * counted only with includeLocked), persisting. Venues publish transient crosses while matching, so a
 * finding needs the condition to persist: minUpdates consecutive crossed quotes, or minDurationMs of event
 * time since the first crossed quote (a quote is in force until the next one, so the duration is measured
 * at each quote's arrival; the quote that uncrosses the book can therefore be the one that completes
 * minDurationMs). One finding per episode and none within cooldownMs of the previous one.
 *
 * Quotes with an empty side are ignored. Status disconnected / book_reset / gap / stale end the episode;
 * derived quotes (built from Vigil's own book) are skipped from book_reset until book_synced, when the
 * book they come from is being rebuilt. O(1) per quote.
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type FeedStatus, type Quote, type Severity } from '../core/events.ts';
import { formatDuration, formatFixed, priceDecimals, round } from './format.ts';
import { findingCooling } from './cooldown.ts';
import { bookStatusEnds } from './feed-status.ts';
import { fieldNum, fieldStr, nullIfNaN } from './json-state.ts';
import { formatBps, hasBothSides, midOf, num, numOrNull } from './market-common.ts';
import { distinctRefs } from './triggers.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

export const crossedBookParams = z.strictObject({
  /** Count a locked book (bid = ask) as crossed. */
  includeLocked: z.boolean().default(false),
  /** Fires when the book has stayed crossed this long (event time since the first crossed quote). */
  minDurationMs: z.number().int().nonnegative().default(1000),
  /** …or over this many consecutive crossed quotes, whichever comes first. */
  minUpdates: z.number().int().min(1).default(25),
  /** At most one finding per key within this time. */
  cooldownMs: z.number().int().nonnegative().default(60_000),
});
export type CrossedBookParams = z.infer<typeof crossedBookParams>;

interface Episode {
  start: number;
  startRef: string;
  count: number;
  bid: number;
  ask: number;
  cross: number;
  peak: number;
  peakRef: string;
  fired: boolean;
}

export interface CrossedBookState {
  key: string;
  /** Time of the last quote used; NaN before the first (null in the JSON). */
  lastTs: number;
  episode: Episode | null;
  resyncing: boolean;
  lastFindingTs: number | null;
  /** Quotes used; crossed (or locked, as configured) quotes among them; episodes started. */
  quotes: number;
  crossedQuotes: number;
  episodes: number;
  late: number;
  skipped: number;
}

/** (bid − ask) / mid in bps: 0 when locked, positive when crossed. */
function crossBpsOf(q: Quote): number {
  return ((q.bidPx - q.askPx) / midOf(q)) * 1e4;
}

function severityFor(peakBps: number): Severity {
  if (!(peakBps > 0)) return 'low';
  if (peakBps >= 100) return 'critical';
  if (peakBps >= 10) return 'high';
  return 'medium';
}

function makeInstance(params: CrossedBookParams, ruleId: string): DetectorInstance<CrossedBookState> {
  const { includeLocked, minDurationMs, minUpdates, cooldownMs } = params;

  const newState = (key: string): CrossedBookState => ({
    key,
    lastTs: Number.NaN,
    episode: null,
    resyncing: false,
    lastFindingTs: null,
    quotes: 0,
    crossedQuotes: 0,
    episodes: 0,
    late: 0,
    skipped: 0,
  });

  const fire = (s: CrossedBookState, q: Quote, ep: Episode, ended: boolean, out: FindingDraft[]): void => {
    ep.fired = true;
    const ts = q.ts;
    if (findingCooling(s, ts, cooldownMs)) return;
    const durationMs = ts - ep.start;
    const locked = !(ep.peak > 0);
    const d = priceDecimals(ep.bid, ep.ask);
    const trigger = eventRef(q);
    const triggers = distinctRefs(ep.startRef, ep.peakRef, trigger);
    const state = locked
      ? `locked (bid = ask = ${formatFixed(ep.bid, d)})`
      : `crossed (bid ${formatFixed(ep.bid, d)} > ask ${formatFixed(ep.ask, d)}, ${formatBps(ep.cross)}${ep.peak > ep.cross ? `, peak ${formatBps(ep.peak)}` : ''})`;
    const summary =
      `${q.symbol} on ${q.venue}: the book was ${state} for ${formatDuration(durationMs)} ` +
      `over ${ep.count} consecutive update${ep.count === 1 ? '' : 's'}${ended ? ' before it uncrossed' : ''}`;
    out.push({
      severity: severityFor(ep.peak),
      score: round(Math.max(0, ep.peak), 4),
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
          bid: ep.bid,
          ask: ep.ask,
          crossBps: round(ep.cross, 6),
          peakCrossBps: round(ep.peak, 6),
          locked,
          durationMs,
          updates: ep.count,
          ended,
          derived: q.derived === true,
          startTs: ep.start,
        },
        baseline: {
          quotes: s.quotes,
          crossedQuotes: s.crossedQuotes,
          episodes: s.episodes,
        },
        threshold: { minDurationMs, minUpdates, includeLocked },
        triggers,
      },
    });
  };

  const onStatus = (s: CrossedBookState, ev: FeedStatus): void => {
    if (bookStatusEnds(s, ev.status)) s.episode = null;
  };

  const onQuote = (s: CrossedBookState, q: Quote, out: FindingDraft[]): void => {
    if (!hasBothSides(q) || !Number.isFinite(q.ts) || (q.derived === true && s.resyncing)) {
      s.skipped++;
      return;
    }
    const ts = q.ts;
    if (ts < s.lastTs) {
      s.late++;
      return;
    }
    s.lastTs = ts;
    s.quotes++;
    const crossed = includeLocked ? q.bidPx >= q.askPx : q.bidPx > q.askPx;
    let ep = s.episode;
    if (crossed) {
      s.crossedQuotes++;
      const cross = crossBpsOf(q);
      if (ep === null) {
        s.episodes++;
        const ref = eventRef(q);
        ep = s.episode = { start: ts, startRef: ref, count: 0, bid: q.bidPx, ask: q.askPx, cross, peak: cross, peakRef: ref, fired: false };
      }
      ep.count++;
      ep.bid = q.bidPx;
      ep.ask = q.askPx;
      ep.cross = cross;
      if (cross > ep.peak) {
        ep.peak = cross;
        ep.peakRef = eventRef(q);
      }
    }
    if (ep !== null && !ep.fired && ((crossed && ep.count >= minUpdates) || (ts - ep.start >= minDurationMs && (crossed || ts > ep.start)))) {
      fire(s, q, ep, !crossed, out);
    }
    if (!crossed) s.episode = null;
  };

  return {
    name: 'crossed_book',
    ruleId,
    kinds: ['quote', 'status'],
    newState,
    onEvent(state: CrossedBookState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'quote') onQuote(state, ev, out);
      else if (ev.kind === 'status') onStatus(state, ev);
    },
    toJSON(s: CrossedBookState): unknown {
      return {
        v: 1,
        key: s.key,
        lastTs: nullIfNaN(s.lastTs),
        episode: s.episode === null ? null : { ...s.episode },
        resyncing: s.resyncing,
        lastFindingTs: s.lastFindingTs,
        quotes: s.quotes,
        crossedQuotes: s.crossedQuotes,
        episodes: s.episodes,
        late: s.late,
        skipped: s.skipped,
      };
    },
    fromJSON(json: unknown): CrossedBookState {
      const j = json as Record<string, unknown> | null;
      if (!j || typeof j !== 'object' || j.v !== 1 || typeof j.key !== 'string') {
        throw new TypeError('crossed_book: state JSON is not a v1 crossed_book state');
      }
      const s = newState(j.key);
      s.lastTs = numOrNull(j.lastTs, 'crossed_book: lastTs') ?? Number.NaN;
      s.resyncing = j.resyncing === true;
      s.lastFindingTs = numOrNull(j.lastFindingTs, 'crossed_book: lastFindingTs');
      s.quotes = num(j.quotes, 'crossed_book: quotes', 0);
      s.crossedQuotes = num(j.crossedQuotes, 'crossed_book: crossedQuotes', 0);
      s.episodes = num(j.episodes, 'crossed_book: episodes', 0);
      s.late = num(j.late, 'crossed_book: late', 0);
      s.skipped = num(j.skipped, 'crossed_book: skipped', 0);
      const e = j.episode as Record<string, unknown> | null | undefined;
      if (e !== null && e !== undefined) {
        if (typeof e !== 'object') throw new TypeError('crossed_book: episode must be an object or null');
        const w = 'crossed_book: episode';
        const n = (k: string): number => fieldNum(e, k, w);
        const str = (k: string): string => fieldStr(e, k, w);
        const ep: Episode = {
          start: n('start'), startRef: str('startRef'), count: n('count'), bid: n('bid'), ask: n('ask'),
          cross: n('cross'), peak: n('peak'), peakRef: str('peakRef'), fired: e.fired === true,
        };
        // A reload that stops counting locked books ends a locked-only episode.
        if (includeLocked || ep.cross > 0) s.episode = ep;
      }
      return s;
    },
  };
}

export const crossedBookSpec: DetectorSpec<CrossedBookParams, CrossedBookState> = {
  name: 'crossed_book',
  description:
    'Best bid at or above the best ask on one venue:symbol (crossed; locked optionally), persisting minDurationMs or ' +
    'minUpdates consecutive quotes; derived quotes are skipped during a book resync.',
  kinds: ['quote', 'status'],
  params: crossedBookParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
