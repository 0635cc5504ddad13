/**
 * `feed_gap`: a venue:symbol's trades or quotes went silent for much longer than their own cadence.
 *
 * Two sub-states, one per data kind (trades and quotes have very different rates), each with the event
 * time of its last event and a baseline of its recent inter-arrival times (event time; the last windowMs, at
 * most maxSamples, in a SortedWindow). Cadence = the `quantile` (p99) of those gaps; the limit is
 * max(multiplier × cadence, minGapMs). When the next event of a kind arrives after a gap longer than the
 * limit, the gap is reported with its start (the previous event) and end (this one).
 *
 * Status markers arrive as copies inside each data topic (once with the trades, once with the quotes), and a
 * copy cannot tell which topic it came through. So markers are kept once per state in a small deduplicated
 * list (same ts and status = the same marker: a duplicate has no further effect), and a gap looks up the
 * markers whose time falls inside it (from FEED_GAP_MARKER_SLACK_MS before its start, for clock skew) — by
 * time, not by arrival order, which is right whichever copy came first. A gap containing `disconnected` (or,
 * for quotes, `book_reset`: derived quotes pause during a resync) is a known outage, not venue silence: it is
 * reported once per marker (whichever stream resumes first) as a `low` finding "the feed was down" when
 * reportDisconnects, else not at all, and never enters the cadence baseline. `gap` (sequence gap detected by
 * the feed) and `stale` (the adapter's own silence timer) markers are reported as findings when they arrive
 * (reportMarkers), once per marker.
 *
 * Cost per event: a ring write (QuantileWindow); the cadence is only read for a gap past minGapMs (the
 * limit is never below it), and the window sorts its gaps only while they are being read (O(log n)
 * amortized); no allocation (the last event's ref is kept as its parts and built only for a finding or the
 * JSON); the marker list (≤ 64) is only scanned when a marker is as recent as the gap.
 *
 * Blind spot: no timers in the streaming path, so silence is only seen when data of that kind resumes or a
 * status marker arrives. (Data of the other kind cannot be used as a clock: topics are not ordered with each
 * other, and a lagging topic would look silent.)
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type FeedStatus, type Quote, type Severity, type Trade } from '../core/events.ts';
import { findingCooling } from './cooldown.ts';
import { formatDuration, formatTime, formatTimes, round } from './format.ts';
import { nullIfNaN } from './json-state.ts';
import { QuantileWindow, num, numOrNull, strOrNull } from './market-common.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

/** Distinct status markers remembered per key (for deduplication of copies and lookup by time). */
export const FEED_GAP_MAX_MARKERS = 64;
/**
 * A marker counts as inside a gap from this long before the gap's first event: markers carry Vigil's
 * receive time, data the venue's event time, and the venue's clock may run a little ahead.
 */
export const FEED_GAP_MARKER_SLACK_MS = 2000;

export const feedGapParams = z
  .strictObject({
    /** Cadence = this quantile of the recent inter-arrival times of the kind. */
    quantile: z.number().min(0.5).max(1).default(0.99),
    /** A gap fires when longer than this multiple of the cadence… */
    multiplier: z.number().finite().min(1).default(4),
    /** …and longer than this floor (ms). */
    minGapMs: z.number().int().positive().default(5000),
    /** Baseline window of inter-arrival times, event time. */
    windowMs: z.number().int().positive().default(1_800_000),
    /** Bound on inter-arrival samples per kind (memory per key). */
    maxSamples: z.number().int().min(2).max(1_000_000).default(2000),
    /** No evaluation before a kind's baseline holds this many gaps. */
    minSamples: z.number().int().min(1).default(100),
    /** Report a silence explained by a disconnect or book resync as a low "feed was down" finding (else nothing). */
    reportDisconnects: z.boolean().default(true),
    /** Report `gap` (sequence gap) and `stale` status markers from the feed as findings. */
    reportMarkers: z.boolean().default(true),
    /** At most one finding of each type (trade silence, quote silence, outage, gap marker, stale marker) per key within this time. */
    cooldownMs: z.number().int().nonnegative().default(60_000),
  })
  .superRefine((p, ctx) => {
    if (p.minSamples > p.maxSamples) ctx.addIssue({ code: 'custom', path: ['minSamples'], message: `must be <= maxSamples (${p.maxSamples})` });
  });
export type FeedGapParams = z.infer<typeof feedGapParams>;

type StreamKind = 'trade' | 'quote';

interface Stream {
  /** Time of the last event; NaN before the first (null in the JSON): a number field is updated in place. */
  lastTs: number;
  /** eventRef of the last event: built on demand from the parts below (null: none, or not built yet). */
  lastRef: string | null;
  /** The last event's venue, symbol and id (tradeId, or quote seq ?? ts); id null when lastRef is all there is. */
  refVenue: string;
  refSymbol: string;
  refId: string | number | null;
  gaps: QuantileWindow;
  events: number;
  late: number;
  lastFindingTs: number | null;
}

interface Marker {
  ts: number;
  status: FeedStatus['status'];
  reason: string;
  reported: boolean;
}

export interface FeedGapState {
  key: string;
  trade: Stream;
  quote: Stream;
  /** Distinct markers, oldest first, at most FEED_GAP_MAX_MARKERS. */
  markers: Marker[];
  /** Largest ts of any marker (lookups are skipped when it is before a gap). */
  lastMarkerTs: number | null;
  /** Cooldown per finding type. */
  lastOutageTs: number | null;
  lastGapMarkerTs: number | null;
  lastStaleMarkerTs: number | null;
}

const STATUSES = new Set<string>(['connected', 'disconnected', 'book_reset', 'book_synced', 'stale', 'gap']);

function maxOrNull(a: number | null, b: number): number {
  return a === null || b > a ? b : a;
}

function makeInstance(params: FeedGapParams, ruleId: string): DetectorInstance<FeedGapState> {
  const { quantile, multiplier, minGapMs, windowMs, maxSamples, minSamples, reportDisconnects, reportMarkers, cooldownMs } = params;

  const newStream = (): Stream => ({
    lastTs: Number.NaN,
    lastRef: null,
    refVenue: '',
    refSymbol: '',
    refId: null,
    gaps: new QuantileWindow(windowMs, maxSamples),
    events: 0,
    late: 0,
    lastFindingTs: null,
  });

  const newState = (key: string): FeedGapState => ({
    key,
    trade: newStream(),
    quote: newStream(),
    markers: [],
    lastMarkerTs: null,
    lastOutageTs: null,
    lastGapMarkerTs: null,
    lastStaleMarkerTs: null,
  });

  const cooled = (last: number | null, ts: number): boolean => last !== null && ts - last < cooldownMs && ts >= last;

  /** The `quantile` of the stream's recent gaps (NaN when none): read only when a finding may need it. */
  const cadenceOf = (st: Stream): number => st.gaps.quantile(quantile);

  const limitOf = (st: Stream): number => Math.max(multiplier * cadenceOf(st), minGapMs);

  const plural = (k: StreamKind): string => (k === 'trade' ? 'trades' : 'quotes');

  /** eventRef from a stream's saved parts, or its ref as restored from JSON (null: no event yet). */
  const refOfParts = (kind: StreamKind, ref: string | null, venue: string, symbol: string, id: string | number | null): string | null => {
    if (ref !== null || id === null) return ref;
    return kind === 'trade'
      ? eventRef({ kind: 'trade', venue, symbol, tradeId: id } as Trade)
      : eventRef({ kind: 'quote', venue, symbol, seq: id, ts: id } as Quote);
  };

  /** eventRef of the stream's last event (built once, on demand). */
  const lastRefOf = (st: Stream, kind: StreamKind): string | null =>
    (st.lastRef = refOfParts(kind, st.lastRef, st.refVenue, st.refSymbol, st.refId));

  const onData = (s: FeedGapState, kind: StreamKind, ev: Trade | Quote, out: FindingDraft[]): void => {
    const st = kind === 'trade' ? s.trade : s.quote; // not s[kind]: a keyed load per event
    const ts = ev.ts;
    if (!Number.isFinite(ts)) return;
    if (ts < st.lastTs) {
      st.late++;
      return;
    }
    st.events++;
    const prev = st.lastTs;
    // The previous event's ref parts, for a finding about the gap that ends here.
    const prevVenue = st.refVenue;
    const prevSymbol = st.refSymbol;
    const prevId = st.refId;
    const prevRef = st.lastRef;
    st.lastTs = ts;
    st.lastRef = null;
    st.refVenue = ev.venue;
    st.refSymbol = ev.symbol;
    st.refId = ev.kind === 'trade' ? ev.tradeId : (ev.seq ?? ev.ts);
    if (Number.isNaN(prev)) return;
    const gap = ts - prev;

    // Markers inside the gap (only looked up when some marker is that recent: O(1) in steady state).
    let disrupt: Marker[] | undefined;
    let notes: Marker[] | undefined;
    const from = prev - FEED_GAP_MARKER_SLACK_MS;
    if (s.lastMarkerTs !== null && s.lastMarkerTs >= from) {
      for (const m of s.markers) {
        if (m.ts < from || m.ts > ts) continue;
        // A disconnect explains either stream's silence; a book resync only that of (derived) quotes.
        if (m.status === 'disconnected' || (m.status === 'book_reset' && kind === 'quote')) (disrupt ??= []).push(m);
        else if (m.status === 'gap' || m.status === 'stale') (notes ??= []).push(m);
      }
    }

    // limit ≥ minGapMs, so a gap within the floor needs no cadence (the baseline is then not sorted).
    const limit = st.gaps.size >= minSamples && gap > minGapMs ? limitOf(st) : Number.NaN;
    if (gap > limit) {
      if (disrupt !== undefined) {
        const first = disrupt.find((m) => m.status === 'disconnected') ?? (disrupt[0] as Marker);
        const already = disrupt.some((m) => m.reported);
        for (const m of disrupt) m.reported = true;
        if (reportDisconnects && !already && !cooled(s.lastOutageTs, ts)) {
          s.lastOutageTs = ts;
          out.push(finding(s, ev, kind, st, prev, refOfParts(kind, prevRef, prevVenue, prevSymbol, prevId), gap, limit, first, notes, 'low'));
        }
      } else if (!findingCooling(st, ts, cooldownMs)) {
        const x = gap / limit;
        const severity: Severity = x >= 20 ? 'critical' : x >= 4 ? 'high' : 'medium';
        out.push(finding(s, ev, kind, st, prev, refOfParts(kind, prevRef, prevVenue, prevSymbol, prevId), gap, limit, undefined, notes, severity));
      }
      return; // an anomalous gap is not cadence
    }
    if (disrupt !== undefined) return; // neither is a gap across a disconnect or resync
    st.gaps.push(ts, gap);
  };

  const finding = (
    s: FeedGapState,
    ev: Trade | Quote,
    kind: StreamKind,
    st: Stream,
    prev: number,
    prevRef: string | null,
    gap: number,
    limit: number,
    outage: Marker | undefined,
    notes: Marker[] | undefined,
    severity: Severity,
  ): FindingDraft => {
    const ts = ev.ts;
    const trigger = eventRef(ev);
    const ratio = gap / limit;
    const cadence = cadenceOf(st);
    const noteText =
      notes === undefined ? '' : `; the feed reported ${notes.map((m) => (m.status === 'gap' ? `a sequence gap (${m.reason})` : `the stream stale (${m.reason})`)).join(' and ')}`;
    const span = `from ${formatTime(prev)} to ${formatTime(ts)}`;
    const summary =
      outage === undefined
        ? `${ev.symbol} on ${ev.venue}: no ${plural(kind)} for ${formatDuration(gap)} (${span}) while the feed stayed connected, ` +
          `${formatTimes(ratio)} the ${formatDuration(limit)} limit (usual p${round(quantile * 100, 1)} gap ${formatDuration(cadence)})${noteText}`
        : outage.status === 'disconnected'
          ? `${ev.symbol} on ${ev.venue}: the feed was down, no ${plural(kind)} for ${formatDuration(gap)} (${span}) after a disconnect (${outage.reason})${noteText}`
          : `${ev.symbol} on ${ev.venue}: no quotes for ${formatDuration(gap)} (${span}) during a book resync (${outage.reason})${noteText}`;
    const triggers = prevRef !== null && prevRef !== trigger ? [prevRef, trigger] : [trigger];
    return {
      severity,
      score: round(ratio, 4),
      venue: ev.venue,
      symbol: ev.symbol,
      key: `${ev.venue}:${ev.symbol}`,
      ts,
      windowStart: prev,
      windowEnd: ts,
      summary,
      trigger,
      evidence: {
        observed: {
          stream: kind,
          gapMs: gap,
          gapStart: prev,
          gapEnd: ts,
          ratio: round(ratio, 4),
          cause: outage !== undefined ? outage.status : 'silence',
          causeReason: outage !== undefined ? outage.reason : null,
          causeTs: outage !== undefined ? outage.ts : null,
          markers: notes === undefined ? null : notes.map((m) => `${m.status}@${formatTime(m.ts)}`).join(', '),
        },
        baseline: {
          cadenceMs: round(cadence, 3),
          medianGapMs: round(st.gaps.median(), 3),
          samples: st.gaps.size,
          events: st.events,
        },
        threshold: { quantile, multiplier, minGapMs, limitMs: round(limit, 3), reportDisconnects },
        triggers,
      },
    };
  };

  const onStatus = (s: FeedGapState, ev: FeedStatus, out: FindingDraft[]): void => {
    const ts = ev.ts;
    if (!Number.isFinite(ts)) return;
    for (const m of s.markers) if (m.ts === ts && m.status === ev.status) return; // a copy already seen: no effect
    const marker: Marker = { ts, status: ev.status, reason: ev.reason, reported: false };
    s.markers.push(marker);
    if (s.markers.length > FEED_GAP_MAX_MARKERS) s.markers.shift();
    s.lastMarkerTs = maxOrNull(s.lastMarkerTs, ts);
    if (!reportMarkers || (ev.status !== 'gap' && ev.status !== 'stale')) return;
    const isGap = ev.status === 'gap';
    if (cooled(isGap ? s.lastGapMarkerTs : s.lastStaleMarkerTs, ts)) return;
    if (isGap) s.lastGapMarkerTs = ts;
    else s.lastStaleMarkerTs = ts;
    marker.reported = true;

    let lastData: number | null = null;
    let lastKind: StreamKind | null = null;
    for (const k of ['trade', 'quote'] as const) {
      const t = s[k].lastTs;
      if (!Number.isNaN(t) && t <= ts && (lastData === null || t > lastData)) {
        lastData = t;
        lastKind = k;
      }
    }
    const silentMs = lastData === null ? null : ts - lastData;
    const trigger = eventRef(ev);
    const what = isGap ? `reported a sequence gap (${ev.reason})` : `flagged the stream stale (${ev.reason})`;
    const tradeCadence = cadenceOf(s.trade);
    const quoteCadence = cadenceOf(s.quote);
    const since = silentMs === null ? '' : `; last data ${formatDuration(silentMs)} before (${plural(lastKind as StreamKind)})`;
    out.push({
      severity: 'medium',
      score: round((silentMs ?? 0) / 1000, 4),
      venue: ev.venue,
      symbol: ev.symbol,
      key: `${ev.venue}:${ev.symbol}`,
      ts,
      windowStart: lastData ?? ts,
      windowEnd: ts,
      summary: `${ev.symbol} on ${ev.venue}: the feed ${what}${since}`,
      trigger,
      evidence: {
        observed: { status: ev.status, reason: ev.reason, silentMs, lastDataTs: lastData },
        baseline: {
          tradeCadenceMs: Number.isFinite(tradeCadence) ? round(tradeCadence, 3) : null,
          quoteCadenceMs: Number.isFinite(quoteCadence) ? round(quoteCadence, 3) : null,
          lastTradeTs: nullIfNaN(s.trade.lastTs),
          lastQuoteTs: nullIfNaN(s.quote.lastTs),
        },
        threshold: { reportMarkers },
        triggers: [trigger],
      },
    });
  };

  const streamJSON = (st: Stream, kind: StreamKind): unknown => ({
    lastTs: nullIfNaN(st.lastTs),
    lastRef: lastRefOf(st, kind),
    gaps: st.gaps.toJSON(),
    events: st.events,
    late: st.late,
    lastFindingTs: st.lastFindingTs,
  });

  const streamFromJSON = (json: unknown, what: string): Stream => {
    const j = json as Record<string, unknown> | null;
    if (!j || typeof j !== 'object') throw new TypeError(`feed_gap: ${what} must be an object`);
    const st = newStream();
    st.lastTs = numOrNull(j.lastTs, `feed_gap: ${what}.lastTs`) ?? Number.NaN;
    st.lastRef = strOrNull(j.lastRef, `feed_gap: ${what}.lastRef`);
    st.gaps = QuantileWindow.restore(j.gaps, windowMs, maxSamples, `feed_gap: ${what}`);
    st.events = num(j.events, `feed_gap: ${what}.events`, 0);
    st.late = num(j.late, `feed_gap: ${what}.late`, 0);
    st.lastFindingTs = numOrNull(j.lastFindingTs, `feed_gap: ${what}.lastFindingTs`);
    return st;
  };

  return {
    name: 'feed_gap',
    ruleId,
    kinds: ['trade', 'quote', 'status'],
    newState,
    onEvent(state: FeedGapState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'trade' || ev.kind === 'quote') onData(state, ev.kind, ev, out);
      else if (ev.kind === 'status') onStatus(state, ev, out);
    },
    toJSON(s: FeedGapState): unknown {
      return {
        v: 1,
        key: s.key,
        trade: streamJSON(s.trade, 'trade'),
        quote: streamJSON(s.quote, 'quote'),
        markers: s.markers.map((m) => ({ ...m })),
        lastMarkerTs: s.lastMarkerTs,
        lastOutageTs: s.lastOutageTs,
        lastGapMarkerTs: s.lastGapMarkerTs,
        lastStaleMarkerTs: s.lastStaleMarkerTs,
      };
    },
    fromJSON(json: unknown): FeedGapState {
      const j = json as Record<string, unknown> | null;
      if (!j || typeof j !== 'object' || j.v !== 1 || typeof j.key !== 'string' || !Array.isArray(j.markers)) {
        throw new TypeError('feed_gap: state JSON is not a v1 feed_gap state');
      }
      const s = newState(j.key);
      s.trade = streamFromJSON(j.trade, 'trade');
      s.quote = streamFromJSON(j.quote, 'quote');
      for (const raw of j.markers.slice(-FEED_GAP_MAX_MARKERS)) {
        const m = raw as Record<string, unknown> | null;
        if (!m || typeof m !== 'object' || typeof m.status !== 'string' || !STATUSES.has(m.status) || typeof m.reason !== 'string') {
          throw new TypeError('feed_gap: markers must be { ts, status, reason, reported }');
        }
        s.markers.push({ ts: num(m.ts, 'feed_gap: marker.ts'), status: m.status as FeedStatus['status'], reason: m.reason, reported: m.reported === true });
      }
      s.lastMarkerTs = numOrNull(j.lastMarkerTs, 'feed_gap: lastMarkerTs');
      s.lastOutageTs = numOrNull(j.lastOutageTs, 'feed_gap: lastOutageTs');
      s.lastGapMarkerTs = numOrNull(j.lastGapMarkerTs, 'feed_gap: lastGapMarkerTs');
      s.lastStaleMarkerTs = numOrNull(j.lastStaleMarkerTs, 'feed_gap: lastStaleMarkerTs');
      return s;
    },
  };
}

export const feedGapSpec: DetectorSpec<FeedGapParams, FeedGapState> = {
  name: 'feed_gap',
  description:
    "Silence of a venue:symbol's trades or quotes far beyond their own cadence (p99 inter-arrival × multiplier, with a floor), " +
    'reported when data resumes; outages explained by a disconnect are reported as such; gap and stale feed markers are reported.',
  kinds: ['trade', 'quote', 'status'],
  params: feedGapParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
