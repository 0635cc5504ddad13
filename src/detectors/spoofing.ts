/**
 * `spoofing`: an account shows a large order near the touch, cancels it quickly, and meanwhile trades on the
 * other side — the large order was bait (a show of demand to sell into, or of supply to buy from).
 *
 * Per venue:symbol (one state sees every account's orders of the instrument, orderflow-book.ts), for each
 * display of an order (new or replace) with its account:
 *   usual   = max(account's median order size, instrumentFloor × the instrument's median order size), the
 *             medians over the last maxSizeSamples displays within sizeWindowMs (SortedWindow, O(log n)),
 *             the account's median only once it has minSizeSamples of them; no evaluation before the
 *             instrument has minSizeSamples;
 *   dist    = how far the order sits behind the touch of its side, in bps (0 at or through the touch); the
 *             touch is the best price among the tracked live orders, or the last fill price (orderflow-book.ts).
 * A display with qty ≥ sizeMultiple × usual and dist ≤ nearTouchBps marks the order. When a marked order is
 * cancelled between minLifetimeMs and maxLifetimeMs after that display, and the same account has fills on
 * the OPPOSITE side between windowMs before the display and windowMs after the cancel, a finding fires —
 * on the cancel when the fills came first, else on the first opposite fill (the cancelled order waits at
 * most windowMs, at most MAX_PENDING per account). At most one finding per account within cooldownMs.
 *
 * Work per event: O(log n) (baselines, touch, fill-log binary search); the fill references of the evidence
 * (at most 17) are read only when a finding fires.
 */
import { z } from 'zod';
import type { CanonicalEvent, Order, Severity } from '../core/events.ts';
import { eventRef } from '../core/events.ts';
import { formatDuration, formatFixed, formatTimes, round } from './format.ts';
import {
  accountBaseToJSON,
  applyOrder,
  bookFromJSON,
  bookToJSON,
  FillLog,
  formatAvgPrice,
  formatQty,
  num,
  numOrNull,
  oppositeSide,
  orderRef,
  OrderFlowBook,
  restoreAccountBase,
  side as parseSide,
  str,
  type AccountBase,
  type AccountBaseJSON,
  type FillLogJSON,
  type LiveOrder,
  type OrderHooks,
  type OrderSide,
} from './orderflow-book.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

export const spoofingParams = z
  .strictObject({
    /** A spoof order is at least this multiple of the usual order size. */
    sizeMultiple: z.number().finite().gt(1).default(5),
    /** Order sizes (new and replace displays) kept per account and per instrument for the usual size. */
    maxSizeSamples: z.number().int().min(1).max(100_000).default(100),
    /** Size samples older than this are dropped (event time). */
    sizeWindowMs: z.number().int().positive().default(3_600_000),
    /** The account's own median counts from this many samples on (the instrument's median is required as well). */
    minSizeSamples: z.number().int().min(1).default(20),
    /** Floor of the usual size as a multiple of the instrument's median order size (0: the account's median alone). */
    instrumentFloor: z.number().finite().nonnegative().default(1),
    /** Near the touch: at most this many bps behind the best live price of the order's side. */
    nearTouchBps: z.number().finite().nonnegative().default(10),
    /** The large order is cancelled within this time of its display. */
    maxLifetimeMs: z.number().int().positive().default(10_000),
    /** Orders cancelled sooner than this after their display (IOC/FOK remainders) were never really shown: ignored. */
    minLifetimeMs: z.number().int().nonnegative().default(10),
    /** Opposite-side fills count from this long before the display until this long after the cancel. */
    windowMs: z.number().int().positive().default(5_000),
    /** Fills kept per account and side (the opposite-fill lookup). */
    maxFills: z.number().int().min(1).max(100_000).default(64),
    /** Accounts tracked per instrument (the least recently seen is evicted). */
    maxAccounts: z.number().int().min(1).max(100_000).default(200),
    /** Live orders tracked per account (the least recently displayed is evicted). */
    maxOpenOrders: z.number().int().min(1).max(100_000).default(50),
    /** At most one finding per account and instrument within this time. */
    cooldownMs: z.number().int().nonnegative().default(60_000),
  })
  .superRefine((p, ctx) => {
    if (p.minSizeSamples > p.maxSizeSamples) {
      ctx.addIssue({ code: 'custom', path: ['minSizeSamples'], message: `must be <= maxSizeSamples (${p.maxSizeSamples})` });
    }
    if (p.minLifetimeMs >= p.maxLifetimeMs) {
      ctx.addIssue({ code: 'custom', path: ['minLifetimeMs'], message: `must be < maxLifetimeMs (${p.maxLifetimeMs})` });
    }
  });
export type SpoofingParams = z.infer<typeof spoofingParams>;

/** Cancelled large orders waiting for an opposite fill, per account. */
export const MAX_PENDING = 8;
/** Opposite fills listed in the evidence triggers. */
const MAX_FILL_REFS = 17;

/**
 * Bounded sample of order sizes, with its median. The samples are kept in arrival order for eviction — a
 * ring of (ts, q) with exactly a TimeWindow's semantics (the samples with ts > horizon − spanMs, at most
 * maxCount, the newest) — and sorted for the median (the same arithmetic as SortedWindow.median, i.e.
 * simple-statistics' quantile 0.5). Plain arrays of unboxed doubles, inline: no eviction callback, and
 * cheap to create (every account of an instrument has one; typed arrays cost far more to allocate).
 */
export class SizeBaseline {
  readonly spanMs: number;
  readonly maxCount: number;
  /** Ring of samples: ts and q by slot (capacity = the arrays' length, grown by doubling up to maxCount). */
  private ts: number[] = [];
  private qs: number[] = [];
  private head = 0;
  private n = 0;
  private horizonTs = Number.NEGATIVE_INFINITY;
  /** The samples' sizes, ascending. */
  private readonly sorted: number[] = [];

  constructor(spanMs: number, maxCount: number) {
    if (!(spanMs > 0)) throw new RangeError(`TimeWindow: spanMs must be > 0 (got ${spanMs})`);
    if (!Number.isInteger(maxCount) || maxCount < 1) throw new RangeError(`TimeWindow: maxCount must be a positive integer (got ${maxCount})`);
    this.spanMs = spanMs;
    this.maxCount = maxCount;
  }

  /** Drops the oldest sample (from the sorted part too). */
  private shift(): void {
    const q = this.qs[this.head] as number;
    // Remove one occurrence of q: the first position holding it (lower bound).
    const a = this.sorted;
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((a[mid] as number) < q) lo = mid + 1;
      else hi = mid;
    }
    if (lo < a.length && a[lo] === q) {
      for (let j = lo + 1; j < a.length; j++) a[j - 1] = a[j] as number;
      a.pop();
    }
    this.head = this.head + 1 === this.ts.length ? 0 : this.head + 1;
    this.n -= 1;
  }

  private grow(): void {
    const cap = this.ts.length === 0 ? Math.min(this.maxCount, 16) : Math.min(this.maxCount, this.ts.length * 2);
    const ts: number[] = [];
    const qs: number[] = [];
    for (let i = 0; i < this.n; i++) {
      let k = this.head + i;
      if (k >= this.ts.length) k -= this.ts.length;
      ts.push(this.ts[k] as number);
      qs.push(this.qs[k] as number);
    }
    for (let i = this.n; i < cap; i++) {
      ts.push(0.5);
      qs.push(0.5);
    }
    this.ts = ts;
    this.qs = qs;
    this.head = 0;
  }

  push(ts: number, q: number): void {
    if (!Number.isFinite(ts)) throw new RangeError(`TimeWindow.push: non-finite ts ${ts}`);
    this.expire(ts);
    if (this.n === this.maxCount) this.shift();
    if (this.n === this.ts.length) this.grow();
    let k = this.head + this.n;
    if (k >= this.ts.length) k -= this.ts.length;
    this.ts[k] = ts;
    this.qs[k] = q;
    this.n += 1;
    if (Number.isNaN(q)) throw new RangeError('SortedWindow.insert: NaN');
    // Insert after the equal values (upper bound).
    const a = this.sorted;
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((a[mid] as number) <= q) lo = mid + 1;
      else hi = mid;
    }
    a.push(q);
    for (let j = a.length - 1; j > lo; j--) a[j] = a[j - 1] as number;
    a[lo] = q;
  }

  /** Advances the horizon to `now` (if later) and drops the samples with ts <= horizon − spanMs. */
  expire(now: number): void {
    if (now > this.horizonTs) this.horizonTs = now;
    const cutoff = this.horizonTs - this.spanMs;
    while (this.n > 0 && (this.ts[this.head] as number) <= cutoff) this.shift();
  }

  /** Samples held (in the sorted part, as SortedWindow.size was). */
  get size(): number {
    return this.sorted.length;
  }

  /** simple-statistics quantileSorted(·, 0.5) of the samples (as SortedWindow.median); NaN when empty. */
  median(): number {
    const a = this.sorted;
    const n = a.length;
    if (n === 0) return Number.NaN;
    const idx = (n - 1) * 0.5;
    if (idx % 1 !== 0) {
      const lower = Math.floor(idx);
      const lo = a[lower] as number;
      return lo + (idx - lower) * ((a[Math.ceil(idx)] as number) - lo);
    }
    return a[idx] as number;
  }

  toJSON(): { h: number | null; t: number[]; q: number[] } {
    const t: number[] = [];
    const q: number[] = [];
    for (let i = 0; i < this.n; i++) {
      let k = this.head + i;
      if (k >= this.ts.length) k -= this.ts.length;
      t.push(this.ts[k] as number);
      q.push(this.qs[k] as number);
    }
    return { h: Number.isFinite(this.horizonTs) ? this.horizonTs : null, t, q };
  }
  static fromJSON(json: unknown, spanMs: number, maxCount: number, what: string): SizeBaseline {
    const j = json as { h?: unknown; t?: unknown; q?: unknown } | null;
    if (!j || typeof j !== 'object' || !Array.isArray(j.t) || !Array.isArray(j.q) || j.t.length !== j.q.length) {
      throw new TypeError(`${what}: size baseline must be { h, t[], q[] }`);
    }
    const b = new SizeBaseline(spanMs, maxCount);
    for (let i = 0; i < j.t.length; i++) b.push(num(j.t[i], what), num(j.q[i], what));
    if (j.h !== null && j.h !== undefined) b.expire(num(j.h, what));
    return b;
  }
}

/** A marked (large, near the touch) display: [qty, usual, distBps, price, displayTs, action 0 new / 1 replace, accountMedian or -1, instrumentMedian, accountSamples]. */
type SpoofTag = number[];

interface PendingSpoof {
  id: string;
  side: OrderSide;
  tag: SpoofTag;
  /** Cancel time; the opposite fill must come by cancel + windowMs. */
  cts: number;
}

interface SpoofAccount extends AccountBase {
  sizes: SizeBaseline;
  fills: { buy: FillLog; sell: FillLog };
  pending: PendingSpoof[];
  lastFindingTs: number | null;
}

export interface SpoofingState {
  key: string;
  book: OrderFlowBook<SpoofAccount>;
  /** The instrument's order sizes (every account). */
  sizes: SizeBaseline;
  /** Orders marked large and near the touch, and findings. */
  marked: number;
  findings: number;
}

interface SpoofAccountJSON extends AccountBaseJSON {
  sz: ReturnType<SizeBaseline['toJSON']>;
  fb: FillLogJSON;
  fs: FillLogJSON;
  pd: { id: string; side: OrderSide; tag: number[]; cts: number }[];
  lf: number | null;
}

interface SpoofingJSON {
  v: 1;
  key: string;
  book: unknown;
  sizes: unknown;
  marked: number;
  findings: number;
}

function severityFor(multiple: number, k: number): Severity {
  if (multiple >= 4 * k) return 'critical';
  if (multiple >= 2 * k) return 'high';
  return 'medium';
}

function makeInstance(params: SpoofingParams, ruleId: string): DetectorInstance<SpoofingState> {
  const p = params;
  const fillSpan = p.maxLifetimeMs + 2 * p.windowMs;
  const limits = { maxAccounts: p.maxAccounts, maxOpenOrders: p.maxOpenOrders };

  const makeAccount = (): SpoofAccount => ({
    orders: new Map(),
    liveBuy: 0,
    liveSell: 0,
    sizes: new SizeBaseline(p.sizeWindowMs, p.maxSizeSamples),
    fills: { buy: new FillLog(fillSpan, p.maxFills), sell: new FillLog(fillSpan, p.maxFills) },
    pending: [],
    lastFindingTs: null,
  });

  const newState = (key: string): SpoofingState => ({
    key,
    book: new OrderFlowBook<SpoofAccount>(limits, makeAccount),
    sizes: new SizeBaseline(p.sizeWindowMs, p.maxSizeSamples),
    marked: 0,
    findings: 0,
  });

  const fire = (s: SpoofingState, acc: SpoofAccount, cand: PendingSpoof, cancelTs: number, ev: Order, out: FindingDraft[]): void => {
    const [qty, usual, dist, px, dts, dact, accMed, instMed, accN] = cand.tag as [number, number, number, number, number, number, number, number, number];
    if (acc.lastFindingTs !== null && ev.ts - acc.lastFindingTs < p.cooldownMs && ev.ts >= acc.lastFindingTs) return;
    const oppSide = oppositeSide(cand.side);
    const log = acc.fills[oppSide];
    const r = log.range(dts - p.windowMs, Math.max(ev.ts, cancelTs));
    if (r.count === 0) return;
    acc.lastFindingTs = ev.ts;
    s.findings += 1;
    const lifetime = Math.max(0, cancelTs - dts);
    const multiple = qty / usual;
    const vwap = r.notional / r.qty;
    const ratio = qty / r.qty;
    const trigger = eventRef(ev);
    const triggers = [orderRef(ev.venue, cand.id, dact === 1 ? 'replace' : 'new', dts), orderRef(ev.venue, cand.id, 'cancel', cancelTs)];
    let firstFillTs = Number.POSITIVE_INFINITY;
    for (let i = r.first, listed = 0; i < r.first + r.count && listed < MAX_FILL_REFS; i++) {
      const f = log.at(i);
      const ref = orderRef(ev.venue, f.value.id, 'fill', f.ts);
      if (triggers[triggers.length - 1] !== ref) {
        triggers.push(ref);
        listed += 1;
      }
      if (f.ts < firstFillTs) firstFillTs = f.ts;
    }
    if (!triggers.includes(trigger)) triggers.push(trigger);
    const summary =
      `${ev.account} showed a ${cand.side} order of ${formatQty(qty)} on ${ev.symbol} at ${ev.venue} ` +
      `(${formatTimes(multiple)} its usual ${formatQty(round(usual, 8))}, ${formatFixed(dist, 1)} bps from the touch) and cancelled it after ${formatDuration(lifetime)}, ` +
      `while ${oppSide === 'sell' ? 'selling' : 'buying'} ${formatQty(round(r.qty, 8))} at ${formatAvgPrice(vwap, px)} on the other side`;
    out.push({
      severity: severityFor(multiple, p.sizeMultiple),
      score: round(multiple, 4),
      venue: ev.venue,
      symbol: ev.symbol,
      account: ev.account,
      key: ev.account,
      ts: ev.ts,
      windowStart: Math.min(dts, firstFillTs, ev.ts),
      windowEnd: ev.ts,
      summary,
      trigger,
      evidence: {
        observed: {
          orderId: cand.id,
          side: cand.side,
          qty,
          price: px,
          distanceBps: round(dist, 4),
          lifetimeMs: lifetime,
          sizeMultiple: round(multiple, 4),
          oppositeSide: oppSide,
          oppositeFills: r.count,
          oppositeQty: round(r.qty, 10),
          oppositeVwap: round(vwap, 10),
          spoofToFilledRatio: round(ratio, 4),
          firedOn: ev.action,
        },
        baseline: {
          usualQty: round(usual, 10),
          accountMedianQty: accMed >= 0 ? accMed : null,
          accountSamples: accN,
          instrumentMedianQty: instMed,
        },
        threshold: {
          sizeMultiple: p.sizeMultiple,
          nearTouchBps: p.nearTouchBps,
          maxLifetimeMs: p.maxLifetimeMs,
          windowMs: p.windowMs,
          instrumentFloor: p.instrumentFloor,
        },
        triggers,
      },
    });
  };

  // The hooks are made once per instance (not per event): they read the state and the findings array of
  // the event being applied from `cur` / `curOut`, set by onOrder.
  let cur: SpoofingState | null = null;
  let curOut: FindingDraft[] = [];
  const hooks: OrderHooks<SpoofAccount> = {
    display(acc: SpoofAccount, o: LiveOrder, ev: Order): void {
      const s = cur as SpoofingState;
      const q = o.qty;
      if (!(q > 0)) return;
      s.sizes.expire(ev.ts);
      acc.sizes.expire(ev.ts);
      if (s.sizes.size >= p.minSizeSamples) {
        const instMed = s.sizes.median();
        const accMed = acc.sizes.size >= p.minSizeSamples ? acc.sizes.median() : -1;
        const usual = Math.max(accMed, p.instrumentFloor * instMed);
        const dist = s.book.distanceBps(o.side, o.px);
        if (usual > 0 && q >= p.sizeMultiple * usual && dist !== null && dist <= p.nearTouchBps) {
          o.tag = [q, usual, dist, o.px, ev.ts, ev.action === 'replace' ? 1 : 0, accMed, instMed, acc.sizes.size];
          s.marked += 1;
        }
      }
      s.sizes.push(ev.ts, q);
      acc.sizes.push(ev.ts, q);
    },
    cancel(acc: SpoofAccount, o: LiveOrder | undefined, ev: Order): void {
      if (!o || o.tag === null) return;
      const dts = o.tag[4] as number;
      const lifetime = ev.ts - dts;
      if (lifetime > p.maxLifetimeMs || lifetime < p.minLifetimeMs) return;
      const cand: PendingSpoof = { id: o.id, side: o.side, tag: o.tag, cts: ev.ts };
      if (acc.fills[oppositeSide(o.side)].count(dts - p.windowMs, ev.ts) > 0) {
        fire(cur as SpoofingState, acc, cand, ev.ts, ev, curOut);
        return;
      }
      acc.pending.push(cand);
      if (acc.pending.length > MAX_PENDING) acc.pending.shift();
    },
    fill(acc: SpoofAccount, _o: LiveOrder | undefined, ev: Order, qty: number, px: number): void {
      acc.fills[ev.side].add(ev.ts, ev.orderId, qty, px);
      const pending = acc.pending;
      if (pending.length === 0) return;
      // Drop what can no longer complete (in place), then complete the oldest cancelled order of the other side.
      let kept = 0;
      for (let i = 0; i < pending.length; i++) {
        const c = pending[i] as PendingSpoof;
        if (ev.ts <= c.cts + p.windowMs) pending[kept++] = c;
      }
      pending.length = kept;
      let i = 0;
      while (i < kept && ((pending[i] as PendingSpoof).side === ev.side || (pending[i] as PendingSpoof).id === ev.orderId)) i++;
      if (i === kept) return;
      const cand = pending[i] as PendingSpoof;
      pending.splice(i, 1);
      fire(cur as SpoofingState, acc, cand, cand.cts, ev, curOut);
    },
  };

  const onOrder = (s: SpoofingState, ev: Order, out: FindingDraft[]): void => {
    cur = s;
    curOut = out;
    applyOrder(s.book, ev, hooks);
  };

  const accountToJSON = (acc: SpoofAccount): SpoofAccountJSON => ({
    ...accountBaseToJSON(acc),
    sz: acc.sizes.toJSON(),
    fb: acc.fills.buy.toJSON(),
    fs: acc.fills.sell.toJSON(),
    pd: acc.pending.map((c) => ({ id: c.id, side: c.side, tag: [...c.tag], cts: c.cts })),
    lf: acc.lastFindingTs,
  });

  /**
   * A mark written under other parameters, re-judged under these (same parameters: unchanged): the usual
   * size from the medians it recorded, then the size and distance limits. Null when it no longer holds.
   */
  const rejudge = (tag: number[]): number[] | null => {
    if (tag.length !== 9) return null;
    const [q, , dist, , , , accMed, instMed, accN] = tag as [number, number, number, number, number, number, number, number, number];
    const usual = Math.max(accN >= p.minSizeSamples ? accMed : -1, p.instrumentFloor * instMed);
    if (!(usual > 0) || q < p.sizeMultiple * usual || dist > p.nearTouchBps) return null;
    const out = [...tag];
    out[1] = usual;
    return out;
  };

  const restoreAccount = (book: OrderFlowBook<SpoofAccount>, acc: SpoofAccount, json: unknown): void => {
    const what = 'spoofing: account';
    const j = json as Partial<SpoofAccountJSON> | null;
    if (!j || typeof j !== 'object' || !Array.isArray(j.pd)) throw new TypeError(`${what}: bad account state`);
    restoreAccountBase(book, acc, j, what);
    for (const o of acc.orders.values()) if (o.tag !== null) o.tag = rejudge(o.tag);
    acc.sizes = SizeBaseline.fromJSON(j.sz, p.sizeWindowMs, p.maxSizeSamples, what);
    acc.fills = { buy: FillLog.fromJSON(j.fb, fillSpan, p.maxFills, what), sell: FillLog.fromJSON(j.fs, fillSpan, p.maxFills, what) };
    acc.pending = [];
    for (const c of j.pd.slice(-MAX_PENDING)) {
      if (!c || typeof c !== 'object' || !Array.isArray(c.tag) || c.tag.length !== 9) throw new TypeError(`${what}: bad pending order`);
      const tag = rejudge(c.tag.map((x) => num(x, what)));
      const cts = num(c.cts, what);
      const life = cts - (tag?.[4] ?? 0);
      if (tag !== null && life <= p.maxLifetimeMs && life >= p.minLifetimeMs) acc.pending.push({ id: str(c.id, what), side: parseSide(c.side, what), tag, cts });
    }
    acc.lastFindingTs = numOrNull(j.lf, what);
  };

  return {
    name: 'spoofing',
    ruleId,
    kinds: ['order'],
    newState,
    onEvent(state: SpoofingState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'order') onOrder(state, ev, out);
    },
    toJSON(s: SpoofingState): SpoofingJSON {
      return { v: 1, key: s.key, book: bookToJSON(s.book, accountToJSON), sizes: s.sizes.toJSON(), marked: s.marked, findings: s.findings };
    },
    fromJSON(json: unknown): SpoofingState {
      const j = json as Partial<SpoofingJSON> | null;
      if (!j || typeof j !== 'object' || j.v !== 1 || typeof j.key !== 'string') throw new TypeError('spoofing: state JSON is not a v1 spoofing state');
      const s = newState(j.key);
      s.book = bookFromJSON(j.book, limits, makeAccount, restoreAccount, 'spoofing: book');
      s.sizes = SizeBaseline.fromJSON(j.sizes, p.sizeWindowMs, p.maxSizeSamples, 'spoofing: sizes');
      s.marked = num(j.marked ?? 0, 'spoofing: marked');
      s.findings = num(j.findings ?? 0, 'spoofing: findings');
      return s;
    },
  };
}

export const spoofingSpec: DetectorSpec<SpoofingParams, SpoofingState> = {
  name: 'spoofing',
  description:
    'Per venue:symbol order flow: an account shows an order of at least sizeMultiple× its usual size near the touch, ' +
    'cancels it within maxLifetimeMs, and trades on the opposite side within ±windowMs of it.',
  kinds: ['order'],
  params: spoofingParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
