/**
 * `quote_stuffing`: bursts of top-of-book updates (and, where order flow is visible, of order messages
 * against fills) far above the instrument's own usual rate.
 *
 * Two independent paths per venue:symbol, each with its own sub-state, bucket clock, baseline, lateness
 * count and cooldown, so the result of each depends only on its own stream (quotes and orders travel on
 * different topics; how they interleave is not deterministic):
 *
 *  - quotes: updates are counted per event-time bucket (bucketMs). When a quote opens a later bucket, the
 *    open bucket's count enters the baseline (the counts of the buckets of the last windowMs, empty ones as
 *    0, at most maxSamples, kept in a SortedWindow: median and MAD cached per close). Each quote is checked
 *    live: count so far ≥ rateMultiple × max(median, 1) and ≥ minUpdatesPerSec × bucketMs/1000, and the
 *    share of churn among the bucket's updates ≥ minChurnShare. Churn: an update that leaves both best
 *    prices unchanged (size-only change or repeat), or that puts them back to the pair before the current
 *    one (A → B → A flicker). Status markers (kinds include 'status') break the quote stream: the open
 *    bucket is dropped, no empty buckets are filled across the break, and the first bucket after it is
 *    neither evaluated nor added to the baseline (a resync can burst).
 *  - orders: order events of the symbol (any account) per bucket of orderBucketMs: messages (new, replace,
 *    cancel) and fills. A closed bucket with at least one message adds its order-to-trade ratio
 *    messages / max(fills, 1) to its own baseline (orderWindowMs). Each order event is checked live:
 *    messages ≥ minOrderMessages, ratio ≥ minOtr and ratio ≥ otrMultiple × max(median, 1).
 *
 * One episode, one finding: after a path fires it stays quiet until one of its buckets closes below its
 * thresholds (or an empty bucket passes), and then for the rest of cooldownMs.
 *
 * Work per event: O(1), plus O(log n + maxSamples memmove) per closed bucket (and per empty bucket filled,
 * at most maxSamples of them per gap).
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Order, type Quote } from '../core/events.ts';
import { TimeWindow } from '../stats/event-window.ts';
import { SortedWindow } from '../stats/sorted-window.ts';
import { formatDuration, formatFixed, formatPercent, formatTimes, round } from './format.ts';
import { isNum as num, isNumOrNull as numOrNull, nullIfNaN } from './json-state.ts';
import { gradeByMultiple } from './severity.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

export const quoteStuffingParams = z
  .strictObject({
    /** Quote updates are counted per event-time bucket of this length. */
    bucketMs: z.number().int().positive().default(1000),
    /** Quote baseline: the update counts of the buckets of this much past event time (empty buckets count 0). */
    windowMs: z.number().int().positive().default(300_000),
    /** Bound on baseline samples of each path (memory per key). */
    maxSamples: z.number().int().min(2).max(100_000).default(600),
    /** No quote evaluation before the baseline holds this many buckets. */
    minSamples: z.number().int().min(1).default(60),
    /** A bucket fires when its update count is at least this multiple of the baseline median (floored at 1). */
    rateMultiple: z.number().finite().min(1).default(10),
    /** …and at least this many updates per second (absolute floor, scaled to bucketMs). */
    minUpdatesPerSec: z.number().finite().positive().default(100),
    /** …and at least this share of the bucket's updates are churn (size-only or flip-back); 0 disables the check. */
    minChurnShare: z.number().finite().min(0).max(1).default(0.5),
    /** Order path: order messages and fills are counted per event-time bucket of this length. */
    orderBucketMs: z.number().int().positive().default(10_000),
    /** Order path baseline: the order-to-trade ratios of the buckets of this much past event time that had messages. */
    orderWindowMs: z.number().int().positive().default(1_800_000),
    /** No order evaluation before the order baseline holds this many buckets. */
    orderMinSamples: z.number().int().min(1).default(30),
    /** An order bucket fires when its order-to-trade ratio is at least this multiple of the baseline median (floored at 1). */
    otrMultiple: z.number().finite().min(1).default(5),
    /** …and the ratio is at least this (messages per fill). */
    minOtr: z.number().finite().positive().default(20),
    /** …and the bucket holds at least this many order messages (new, replace, cancel). */
    minOrderMessages: z.number().int().positive().default(200),
    /** At most one finding per key and path within this time. */
    cooldownMs: z.number().int().nonnegative().default(60_000),
  })
  .superRefine((p, ctx) => {
    if (p.minSamples > p.maxSamples) ctx.addIssue({ code: 'custom', path: ['minSamples'], message: `must be <= maxSamples (${p.maxSamples})` });
    if (p.orderMinSamples > p.maxSamples) ctx.addIssue({ code: 'custom', path: ['orderMinSamples'], message: `must be <= maxSamples (${p.maxSamples})` });
    if (p.windowMs < p.bucketMs) ctx.addIssue({ code: 'custom', path: ['windowMs'], message: `must be >= bucketMs (${p.bucketMs})` });
    if (p.orderWindowMs < p.orderBucketMs) ctx.addIssue({ code: 'custom', path: ['orderWindowMs'], message: `must be >= orderBucketMs (${p.orderBucketMs})` });
  });
export type QuoteStuffingParams = z.infer<typeof quoteStuffingParams>;

/** Bucket values of the recent past (TimeWindow, by bucket start) with their median/MAD (SortedWindow). */
class MedianBaseline {
  readonly win: TimeWindow<number>;
  readonly sorted: SortedWindow;
  median = Number.NaN;
  mad = Number.NaN;
  private readonly evict = (v: number): void => {
    this.sorted.remove(v);
  };
  constructor(spanMs: number, maxSamples: number) {
    this.win = new TimeWindow<number>(spanMs, maxSamples);
    this.sorted = new SortedWindow(maxSamples);
  }
  get size(): number {
    return this.sorted.size;
  }
  add(ts: number, v: number): void {
    this.win.push(ts, v, this.evict);
    this.sorted.insert(v);
  }
  expire(now: number): void {
    this.win.expire(now, this.evict);
  }
  refresh(): void {
    this.median = this.sorted.median();
    this.mad = this.sorted.mad();
  }
  toJSON(): { horizon: number | null; ts: number[]; values: number[] } {
    const w = this.win.toJSON();
    return { horizon: w.horizon, ts: w.ts, values: w.values };
  }
  /** Rebuilds under (possibly other) bounds: pushing through the window trims by time and count. */
  static fromJSON(j: unknown, spanMs: number, maxSamples: number, what: string): MedianBaseline {
    const o = j as { horizon?: unknown; ts?: unknown; values?: unknown } | null;
    if (!o || !Array.isArray(o.ts) || !Array.isArray(o.values) || o.ts.length !== o.values.length) {
      throw new TypeError(`quote_stuffing: ${what} baseline is not { horizon, ts[], values[] }`);
    }
    const b = new MedianBaseline(spanMs, maxSamples);
    for (let i = 0; i < o.ts.length; i++) {
      const t = o.ts[i];
      const v = o.values[i];
      if (typeof t !== 'number' || !Number.isFinite(t) || typeof v !== 'number' || !Number.isFinite(v)) {
        throw new TypeError(`quote_stuffing: ${what} baseline holds a non-number`);
      }
      b.add(t, v);
    }
    if (typeof o.horizon === 'number') b.expire(o.horizon);
    b.refresh();
    return b;
  }
}

export interface QuoteSubState {
  /** Open bucket index (floor(ts / bucketMs)); null before the first quote and after a break. */
  curIdx: number | null;
  count: number;
  churn: number;
  /*
   * Prices and mids are NaN where the JSON has null: fields that may hold null keep numbers boxed (an
   * allocation per store, per quote); number fields are updated in place.
   */
  /** Mid before the bucket's first update (or at it), for the net move; NaN when a side was empty. */
  openMid: number;
  /** Current best prices, and the pair before the last change (flip-back detection). */
  bid: number;
  ask: number;
  prevBid: number;
  prevAsk: number;
  /** A status marker was seen: the next bucket opened is skipped. */
  breakPending: boolean;
  /** Bucket index neither evaluated nor added to the baseline (first after a break). */
  skipIdx: number | null;
  baseline: MedianBaseline;
  lastFireTs: number | null;
  /** Fired, and no bucket has closed below the thresholds since (one episode, one finding). */
  active: boolean;
  updates: number;
  late: number;
  breaks: number;
}

export interface OrderSubState {
  curIdx: number | null;
  news: number;
  replaces: number;
  cancels: number;
  fills: number;
  baseline: MedianBaseline;
  lastFireTs: number | null;
  /** Fired, and no bucket has closed below the thresholds since. */
  active: boolean;
  events: number;
  late: number;
}

export interface QuoteStuffingState {
  key: string;
  quotes: QuoteSubState;
  orders: OrderSubState;
}

interface QuoteStuffingJSON {
  v: 1;
  key: string;
  /** Bucket lengths the state was written under (a hot reload may change them). */
  bucketMs: number;
  orderBucketMs: number;
  quotes: Omit<QuoteSubState, 'baseline' | QuotePriceField> & { [K in QuotePriceField]: number | null } & { baseline: unknown };
  orders: Omit<OrderSubState, 'baseline'> & { baseline: unknown };
}

/** Quote sub-state fields that are NaN in memory where the JSON has null. */
type QuotePriceField = 'openMid' | 'bid' | 'ask' | 'prevBid' | 'prevAsk';


/**
 * The bucket index of event time ts for a sub-state; NaN when ts is not finite, or when it falls before the
 * open bucket (counted as late).
 */
function bucketIndex(sub: { curIdx: number | null; late: number }, ts: number, bucketMs: number): number {
  if (!Number.isFinite(ts)) return Number.NaN;
  const idx = Math.floor(ts / bucketMs);
  if (sub.curIdx !== null && idx < sub.curIdx) {
    sub.late += 1;
    return Number.NaN;
  }
  return idx;
}

/** One finding per episode, and none within cooldownMs of the previous one: true (and recorded) when it may fire. */
function episodeStarts(sub: { active: boolean; lastFireTs: number | null }, ts: number, cooldownMs: number): boolean {
  if (sub.active) return false;
  if (sub.lastFireTs !== null && ts - sub.lastFireTs < cooldownMs) return false;
  sub.lastFireTs = ts;
  sub.active = true;
  return true;
}

function mid(bid: number, ask: number): number {
  return bid > 0 && ask > 0 ? (bid + ask) / 2 : Number.NaN;
}

function makeInstance(params: QuoteStuffingParams, ruleId: string): DetectorInstance<QuoteStuffingState> {
  const p = params;
  const minCount = (p.minUpdatesPerSec * p.bucketMs) / 1000;
  const windowBuckets = Math.ceil(p.windowMs / p.bucketMs);

  const newQuotes = (): QuoteSubState => ({
    curIdx: null,
    count: 0,
    churn: 0,
    openMid: Number.NaN,
    bid: Number.NaN,
    ask: Number.NaN,
    prevBid: Number.NaN,
    prevAsk: Number.NaN,
    breakPending: false,
    skipIdx: null,
    baseline: new MedianBaseline(p.windowMs, p.maxSamples),
    lastFireTs: null,
    active: false,
    updates: 0,
    late: 0,
    breaks: 0,
  });
  const newOrders = (): OrderSubState => ({
    curIdx: null,
    news: 0,
    replaces: 0,
    cancels: 0,
    fills: 0,
    baseline: new MedianBaseline(p.orderWindowMs, p.maxSamples),
    lastFireTs: null,
    active: false,
    events: 0,
    late: 0,
  });
  const newState = (key: string): QuoteStuffingState => ({ key, quotes: newQuotes(), orders: newOrders() });

  // ------------------------------------------------------------------ quotes

  const onStatus = (q: QuoteSubState): void => {
    q.curIdx = null;
    q.active = false;
    q.count = 0;
    q.churn = 0;
    q.openMid = Number.NaN;
    q.bid = q.ask = q.prevBid = q.prevAsk = Number.NaN;
    q.breakPending = true;
    q.breaks += 1;
  };

  const onQuote = (q: QuoteSubState, ev: Quote, out: FindingDraft[]): void => {
    const ts = ev.ts;
    const idx = bucketIndex(q, ts, p.bucketMs);
    if (Number.isNaN(idx)) return;
    q.updates += 1;
    if (q.curIdx === null) {
      q.curIdx = idx;
      q.count = 0;
      q.churn = 0;
      q.openMid = mid(q.bid, q.ask);
      if (q.breakPending) {
        q.skipIdx = idx;
        q.breakPending = false;
      }
    } else if (idx > q.curIdx) {
      // Close the open bucket; fill the empty buckets up to the new one (only those still in the window).
      const b = q.baseline;
      if (q.active && (q.count < minCount || q.count < p.rateMultiple * Math.max(b.median, 1) || idx > q.curIdx + 1)) q.active = false;
      if (q.curIdx !== q.skipIdx) b.add(q.curIdx * p.bucketMs, q.count);
      const firstEmpty = Math.max(q.curIdx + 1, idx - windowBuckets, idx - p.maxSamples);
      for (let j = firstEmpty; j < idx; j++) b.add(j * p.bucketMs, 0);
      b.expire(idx * p.bucketMs);
      b.refresh();
      q.curIdx = idx;
      q.count = 0;
      q.churn = 0;
      q.openMid = mid(q.bid, q.ask);
    }

    // Churn: both best prices unchanged, or back to the pair before the current one.
    let churn: boolean;
    if (q.bid === ev.bidPx && q.ask === ev.askPx) {
      churn = true;
    } else {
      churn = q.prevBid === ev.bidPx && q.prevAsk === ev.askPx;
      q.prevBid = q.bid;
      q.prevAsk = q.ask;
      q.bid = ev.bidPx;
      q.ask = ev.askPx;
    }
    q.count += 1;
    if (churn) q.churn += 1;
    if (Number.isNaN(q.openMid)) q.openMid = mid(q.bid, q.ask);

    // Live check.
    if (q.curIdx === q.skipIdx) return;
    const b = q.baseline;
    if (b.size < p.minSamples) return;
    if (q.count < minCount) return;
    const base = Math.max(b.median, 1);
    const ratio = q.count / base;
    if (ratio < p.rateMultiple) return;
    const churnShare = q.churn / q.count;
    if (churnShare < p.minChurnShare) return;
    if (!episodeStarts(q, ts, p.cooldownMs)) return;

    const bucketStart = q.curIdx * p.bucketMs;
    const m = mid(q.bid, q.ask);
    const netMoveBps = !Number.isNaN(m) && !Number.isNaN(q.openMid) ? Math.log(m / q.openMid) * 1e4 : null;
    const trigger = eventRef(ev);
    const per = formatDuration(p.bucketMs);
    out.push({
      severity: gradeByMultiple(ratio, p.rateMultiple),
      score: round(ratio, 4),
      venue: ev.venue,
      symbol: ev.symbol,
      key: `${ev.venue}:${ev.symbol}`,
      ts,
      windowStart: Math.min(bucketStart, ts),
      windowEnd: ts,
      summary:
        `${ev.symbol} on ${ev.venue} had ${formatFixed(q.count, 0)} top-of-book updates within ${per}, ` +
        `${formatTimes(ratio)} its usual ${formatFixed(b.median, 1)} per ${per}, ` +
        `${formatPercent(churnShare)} of them churn (size-only changes or flips back)` +
        (netMoveBps !== null ? ` with a net mid move of ${formatFixed(netMoveBps, 1)} bps` : ''),
      trigger,
      evidence: {
        observed: {
          path: 'quotes',
          updates: q.count,
          updatesPerSec: round((q.count * 1000) / p.bucketMs, 4),
          ratio: round(ratio, 4),
          churn: q.churn,
          churnShare: round(churnShare, 6),
          netMoveBps: netMoveBps === null ? null : round(netMoveBps, 4),
          bucketStart,
          bidPx: ev.bidPx,
          askPx: ev.askPx,
        },
        baseline: { median: b.median, mad: b.mad, samples: b.size, bucketMs: p.bucketMs, windowMs: p.windowMs },
        threshold: { rateMultiple: p.rateMultiple, minUpdatesPerSec: p.minUpdatesPerSec, minUpdates: minCount, minChurnShare: p.minChurnShare },
        triggers: [trigger],
      },
    });
  };

  // ------------------------------------------------------------------ orders

  const onOrder = (o: OrderSubState, ev: Order, out: FindingDraft[]): void => {
    const ts = ev.ts;
    const idx = bucketIndex(o, ts, p.orderBucketMs);
    if (Number.isNaN(idx)) return;
    o.events += 1;
    if (o.curIdx === null || idx > o.curIdx) {
      const b = o.baseline;
      if (o.curIdx !== null) {
        const msgs = o.news + o.replaces + o.cancels;
        const otr = msgs / Math.max(o.fills, 1);
        const calm = msgs < p.minOrderMessages || otr < p.minOtr || otr < p.otrMultiple * Math.max(b.median, 1) || idx > o.curIdx + 1;
        if (o.active && calm) o.active = false;
        if (msgs > 0) b.add(o.curIdx * p.orderBucketMs, otr);
      } else {
        o.active = false; // a gap in what we know: the next burst is a new episode
      }
      b.expire(idx * p.orderBucketMs);
      b.refresh();
      o.curIdx = idx;
      o.news = o.replaces = o.cancels = o.fills = 0;
    }
    switch (ev.action) {
      case 'new':
        o.news += 1;
        break;
      case 'replace':
        o.replaces += 1;
        break;
      case 'cancel':
        o.cancels += 1;
        break;
      case 'fill':
        o.fills += 1;
        break;
    }
    if (ev.action === 'fill') return; // a fill only lowers the ratio
    const b = o.baseline;
    if (b.size < p.orderMinSamples) return;
    const msgs = o.news + o.replaces + o.cancels;
    if (msgs < p.minOrderMessages) return;
    const otr = msgs / Math.max(o.fills, 1);
    if (otr < p.minOtr) return;
    const base = Math.max(b.median, 1);
    const ratio = otr / base;
    if (ratio < p.otrMultiple) return;
    if (!episodeStarts(o, ts, p.cooldownMs)) return;

    const bucketStart = o.curIdx! * p.orderBucketMs;
    const trigger = eventRef(ev);
    out.push({
      severity: gradeByMultiple(ratio, p.otrMultiple),
      score: round(ratio, 4),
      venue: ev.venue,
      symbol: ev.symbol,
      key: `${ev.venue}:${ev.symbol}`,
      ts,
      windowStart: Math.min(bucketStart, ts),
      windowEnd: ts,
      summary:
        `${ev.symbol} on ${ev.venue} had ${formatFixed(msgs, 0)} order messages (new, replace, cancel) against ` +
        `${formatFixed(o.fills, 0)} fills within ${formatDuration(p.orderBucketMs)}, an order-to-trade ratio of ${formatFixed(otr, 1)}, ` +
        `${formatTimes(ratio)} its usual ${formatFixed(b.median, 1)}`,
      trigger,
      evidence: {
        observed: {
          path: 'orders',
          messages: msgs,
          news: o.news,
          replaces: o.replaces,
          cancels: o.cancels,
          fills: o.fills,
          otr: round(otr, 4),
          ratio: round(ratio, 4),
          bucketStart,
        },
        baseline: { medianOtr: b.median, madOtr: b.mad, samples: b.size, bucketMs: p.orderBucketMs, windowMs: p.orderWindowMs },
        threshold: { otrMultiple: p.otrMultiple, minOtr: p.minOtr, minOrderMessages: p.minOrderMessages },
        triggers: [trigger],
      },
    });
  };

  return {
    name: 'quote_stuffing',
    ruleId,
    kinds: ['quote', 'order', 'status'],
    newState,
    onEvent(state: QuoteStuffingState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'quote') onQuote(state.quotes, ev, out);
      else if (ev.kind === 'order') onOrder(state.orders, ev, out);
      else if (ev.kind === 'status') onStatus(state.quotes);
    },
    toJSON(s: QuoteStuffingState): QuoteStuffingJSON {
      const { baseline: qb, ...q } = s.quotes;
      const { baseline: ob, ...o } = s.orders;
      const quotes = {
        ...q,
        openMid: nullIfNaN(q.openMid),
        bid: nullIfNaN(q.bid),
        ask: nullIfNaN(q.ask),
        prevBid: nullIfNaN(q.prevBid),
        prevAsk: nullIfNaN(q.prevAsk),
        baseline: qb.toJSON(),
      };
      return { v: 1, key: s.key, bucketMs: p.bucketMs, orderBucketMs: p.orderBucketMs, quotes, orders: { ...o, baseline: ob.toJSON() } };
    },
    fromJSON(json: unknown): QuoteStuffingState {
      const j = json as Partial<QuoteStuffingJSON> | null;
      if (!j || j.v !== 1 || typeof j.key !== 'string' || typeof j.quotes !== 'object' || j.quotes === null || typeof j.orders !== 'object' || j.orders === null) {
        throw new TypeError('quote_stuffing: state JSON is not a v1 quote_stuffing state');
      }
      const jq = j.quotes as unknown as Record<string, unknown>;
      const jo = j.orders as unknown as Record<string, unknown>;
      for (const k of ['curIdx', 'openMid', 'bid', 'ask', 'prevBid', 'prevAsk', 'skipIdx', 'lastFireTs']) {
        if (!numOrNull(jq[k])) throw new TypeError(`quote_stuffing: quotes.${k} must be a number or null`);
      }
      for (const k of ['count', 'churn', 'updates', 'late', 'breaks']) {
        if (!num(jq[k])) throw new TypeError(`quote_stuffing: quotes.${k} must be a number`);
      }
      for (const k of ['curIdx', 'lastFireTs']) if (!numOrNull(jo[k])) throw new TypeError(`quote_stuffing: orders.${k} must be a number or null`);
      for (const k of ['news', 'replaces', 'cancels', 'fills', 'events', 'late']) {
        if (!num(jo[k])) throw new TypeError(`quote_stuffing: orders.${k} must be a number`);
      }
      const s = newState(j.key);
      const q = s.quotes;
      q.curIdx = jq.curIdx as number | null;
      q.count = jq.count as number;
      q.churn = jq.churn as number;
      q.openMid = (jq.openMid as number | null) ?? Number.NaN;
      q.bid = (jq.bid as number | null) ?? Number.NaN;
      q.ask = (jq.ask as number | null) ?? Number.NaN;
      q.prevBid = (jq.prevBid as number | null) ?? Number.NaN;
      q.prevAsk = (jq.prevAsk as number | null) ?? Number.NaN;
      q.breakPending = jq.breakPending === true;
      q.active = jq.active === true;
      q.skipIdx = jq.skipIdx as number | null;
      q.lastFireTs = jq.lastFireTs as number | null;
      q.updates = jq.updates as number;
      q.late = jq.late as number;
      q.breaks = jq.breaks as number;
      q.baseline = MedianBaseline.fromJSON(jq.baseline, p.windowMs, p.maxSamples, 'quotes');
      if (j.bucketMs !== p.bucketMs) {
        // Counts per bucket of another length mean something else: drop them and the open bucket.
        q.baseline = new MedianBaseline(p.windowMs, p.maxSamples);
        q.curIdx = q.skipIdx = null;
        q.count = q.churn = 0;
        q.openMid = Number.NaN;
      }
      const o = s.orders;
      o.curIdx = jo.curIdx as number | null;
      o.news = jo.news as number;
      o.replaces = jo.replaces as number;
      o.cancels = jo.cancels as number;
      o.fills = jo.fills as number;
      o.lastFireTs = jo.lastFireTs as number | null;
      o.active = jo.active === true;
      o.events = jo.events as number;
      o.late = jo.late as number;
      o.baseline = MedianBaseline.fromJSON(jo.baseline, p.orderWindowMs, p.maxSamples, 'orders');
      if (j.orderBucketMs !== p.orderBucketMs) {
        // Ratios are kept (they hardly depend on the bucket length); the open bucket's index no longer fits.
        o.curIdx = null;
        o.news = o.replaces = o.cancels = o.fills = 0;
      }
      return s;
    },
  };
}

export const quoteStuffingSpec: DetectorSpec<QuoteStuffingParams, QuoteStuffingState> = {
  name: 'quote_stuffing',
  description:
    'Bursts of top-of-book updates per venue:symbol far above the median of its recent buckets (optionally mostly churn: ' +
    'size-only changes and flips back), and, where order flow is visible, order-to-trade ratios far above its own median.',
  kinds: ['quote', 'order', 'status'],
  params: quoteStuffingParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
