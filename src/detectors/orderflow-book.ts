/**
 * Shared per-instrument order-flow state for the order-flow detectors of group A (spoofing, layering,
 * momentum_ignition). Order events are keyed by venue:symbol, so one state sees every account's orders of
 * the instrument, in order. This module keeps, inside that state:
 *
 * - every account's LIVE orders (new/replace add or update, cancel removes, fills reduce the remaining
 *   quantity and remove a fully filled order), bounded: at most `maxAccounts` accounts (the least recently
 *   seen is evicted, amortized O(1) through a Map's insertion order with delete + set on every event) and
 *   at most `maxOpenOrders` live orders per account (the least recently displayed is evicted);
 * - the TOUCH derived from those live orders: best bid = highest live buy price, best ask = lowest live
 *   sell price (two SortedWindows, O(log n) search + bounded memmove per change). Public quotes are not
 *   used: topics do not interleave deterministically, and the order flow alone gives the same result on
 *   every replay. Market orders (price 0) are not part of the touch. When the tracked book is crossed
 *   (bid ≥ ask: orders whose cancel we never saw) or one side is empty, the last fill price stands in;
 * - the last fill price (and the last fill price of an earlier millisecond, so a multi-level sweep whose
 *   fills share one timestamp can still be compared with the price before it);
 * - a per-account fill log per side (FillLog) with cumulative sums, so "fills of the account on a side
 *   between t0 and t1" is an O(log n) binary search, not a pass over the window.
 *
 * Everything serializes to plain JSON (toJSON/fromJSON helpers here; each detector adds its own fields)
 * and restores under other limits by trimming (oldest accounts / orders first).
 */
import type { Order } from '../core/events.ts';
import { TimeWindow } from '../stats/event-window.ts';
import { SortedWindow } from '../stats/sorted-window.ts';
import { formatFixed, priceDecimals } from './format.ts';

export type OrderSide = 'buy' | 'sell';
export const oppositeSide = (s: OrderSide): OrderSide => (s === 'buy' ? 'sell' : 'buy');

/** A live order as the book tracks it. */
export interface LiveOrder {
  id: string;
  side: OrderSide;
  /** Limit price of the last display (0: market order). */
  px: number;
  /** Quantity shown at the last new/replace. */
  qty: number;
  /** Remaining quantity: qty minus the fills since. */
  rem: number;
  /** Placement time (the first `new`; a replace keeps it). */
  ts: number;
  /** Time of the last display (new or replace). */
  upd: number;
  /** Action of the last display. */
  act: 'new' | 'replace';
  /** The account's live quantity on the opposite side when the order was displayed (largest over its displays). */
  opp: number;
  /** Detector-specific numbers (e.g. spoofing's "large and near the touch" mark); plain JSON. */
  tag: number[] | null;
}

export interface AccountBase {
  /** Live orders by id, least recently displayed first. */
  orders: Map<string, LiveOrder>;
  /** Sum of the remaining quantity of the live buy / sell orders. */
  liveBuy: number;
  liveSell: number;
}

export function newAccountBase(): AccountBase {
  return { orders: new Map(), liveBuy: 0, liveSell: 0 };
}

/** Bounds of the book (memory per instrument). */
export interface BookLimits {
  maxAccounts: number;
  maxOpenOrders: number;
}

/** Quantities below this fraction of an order's size count as fully filled (rounding of partial fills). */
const FILLED_EPS = 1e-9;

export class OrderFlowBook<A extends AccountBase> {
  readonly accounts = new Map<string, A>();
  /** Live buy / sell prices (> 0) of every tracked order. */
  readonly bids: SortedWindow;
  readonly asks: SortedWindow;
  /** Last fill price and its time; prevPx = the last fill price of an earlier millisecond than lastPxTs. */
  lastPx: number | null = null;
  lastPxTs: number | null = null;
  prevPx: number | null = null;

  constructor(
    readonly limits: BookLimits,
    private readonly makeAccount: () => A,
  ) {
    const cap = Math.max(1, limits.maxAccounts * limits.maxOpenOrders);
    this.bids = new SortedWindow(cap);
    this.asks = new SortedWindow(cap);
  }

  /** The account, created when new; marks it most recently seen and evicts the least recently seen beyond maxAccounts. */
  account(name: string): A {
    let acc = this.accounts.get(name);
    if (acc !== undefined) {
      this.accounts.delete(name);
      this.accounts.set(name, acc);
      return acc;
    }
    acc = this.makeAccount();
    this.accounts.set(name, acc);
    while (this.accounts.size > this.limits.maxAccounts) {
      const oldest = this.accounts.keys().next().value as string;
      this.dropAccount(oldest);
    }
    return acc;
  }

  private dropAccount(name: string): void {
    const acc = this.accounts.get(name);
    if (!acc) return;
    for (const o of acc.orders.values()) this.unindex(o);
    this.accounts.delete(name);
  }

  private index(o: LiveOrder): void {
    if (!(o.px > 0)) return;
    if (o.side === 'buy') this.bids.insert(o.px);
    else this.asks.insert(o.px);
  }

  private unindex(o: LiveOrder): void {
    if (!(o.px > 0)) return;
    if (o.side === 'buy') this.bids.remove(o.px);
    else this.asks.remove(o.px);
  }

  /** Makes `o` live for the account (indexing its price), evicting the least recently displayed order beyond maxOpenOrders. */
  add(acc: A, o: LiveOrder): void {
    const prev = acc.orders.get(o.id);
    if (prev) this.remove(acc, o.id);
    acc.orders.set(o.id, o);
    this.index(o);
    if (o.side === 'buy') acc.liveBuy += o.rem;
    else acc.liveSell += o.rem;
    while (acc.orders.size > this.limits.maxOpenOrders) {
      const oldest = acc.orders.keys().next().value as string;
      this.remove(acc, oldest);
    }
  }

  /** Removes a live order; returns it (undefined when not tracked). */
  remove(acc: A, id: string): LiveOrder | undefined {
    const o = acc.orders.get(id);
    if (!o) return undefined;
    acc.orders.delete(id);
    this.unindex(o);
    if (acc.orders.size === 0) {
      // Exact zeros once nothing is live, so rounding cannot outlive the orders that caused it.
      acc.liveBuy = 0;
      acc.liveSell = 0;
    } else if (o.side === 'buy') acc.liveBuy = Math.max(0, acc.liveBuy - o.rem);
    else acc.liveSell = Math.max(0, acc.liveSell - o.rem);
    return o;
  }

  /** Reduces a live order by a fill; removes it when fully filled. */
  reduce(acc: A, o: LiveOrder, qty: number): void {
    const q = Math.min(qty, o.rem);
    o.rem -= q;
    if (o.side === 'buy') acc.liveBuy = Math.max(0, acc.liveBuy - q);
    else acc.liveSell = Math.max(0, acc.liveSell - q);
    if (o.rem <= FILLED_EPS * Math.max(o.qty, 1)) this.remove(acc, o.id);
  }

  liveOn(acc: A, side: OrderSide): number {
    return side === 'buy' ? acc.liveBuy : acc.liveSell;
  }

  bestBid(): number | null {
    return this.bids.size > 0 ? this.bids.max : null;
  }
  bestAsk(): number | null {
    return this.asks.size > 0 ? this.asks.min : null;
  }

  /**
   * The touch an order of `side` is measured against: the best live price of its own side (best bid for a
   * buy); when that side is empty or the tracked book is crossed, the last fill price; failing that, the
   * other side's best price. Null when nothing is known yet.
   */
  touch(side: OrderSide): number | null {
    const bid = this.bestBid();
    const ask = this.bestAsk();
    const crossed = bid !== null && ask !== null && bid >= ask;
    const same = side === 'buy' ? bid : ask;
    if (same !== null && !crossed) return same;
    if (this.lastPx !== null) return this.lastPx;
    return same ?? (side === 'buy' ? ask : bid);
  }

  /**
   * How far (bps of the touch) an order of `side` at `px` sits behind the touch: (touch − px) / touch for a
   * buy, (px − touch) / touch for a sell; 0 when it is at or through the touch. Null without a touch or
   * for a market order.
   */
  distanceBps(side: OrderSide, px: number): number | null {
    const ref = this.touch(side);
    if (ref === null || !(ref > 0) || !(px > 0)) return null;
    const d = side === 'buy' ? (ref - px) / ref : (px - ref) / ref;
    return d > 0 ? d * 1e4 : 0;
  }

  /** Records a fill price (after the detectors looked at the fill). */
  notePrice(px: number, ts: number): void {
    if (!(px > 0)) return;
    if (this.lastPxTs === null || ts > this.lastPxTs) {
      this.prevPx = this.lastPx;
      this.lastPxTs = ts;
    }
    this.lastPx = px;
  }

  /** The last fill price before millisecond `ts` (the fills of `ts` itself excluded where they are the latest). */
  priceBefore(ts: number): number | null {
    if (this.lastPxTs !== null && this.lastPxTs >= ts) return this.prevPx;
    return this.lastPx;
  }
}

// ---------------------------------------------------------------- applying order events

export interface OrderHooks<A extends AccountBase> {
  /**
   * A new or replace is about to go live as `o` (it is not in the touch yet, so the touch is the market the
   * order arrived into); `prev` is the order it replaces, if tracked.
   */
  display?(acc: A, o: LiveOrder, ev: Order, prev: LiveOrder | undefined): void;
  /** A cancel removed `o` (undefined: the order was not tracked). */
  cancel?(acc: A, o: LiveOrder | undefined, ev: Order): void;
  /**
   * A fill of `qty` at `px` of the account's order `o` (as it was before this fill; undefined when not
   * tracked). The book's last price is updated after this hook.
   */
  fill?(acc: A, o: LiveOrder | undefined, ev: Order, qty: number, px: number): void;
}

/** Applies one order event to the book, calling the detector's hooks; returns the event's account. */
export function applyOrder<A extends AccountBase>(book: OrderFlowBook<A>, ev: Order, hooks: OrderHooks<A>): A {
  const acc = book.account(ev.account);
  switch (ev.action) {
    case 'new':
    case 'replace': {
      const prev = ev.action === 'replace' ? book.remove(acc, ev.origOrderId ?? ev.orderId) : book.remove(acc, ev.orderId);
      const keep = ev.action === 'replace' && prev !== undefined;
      const o: LiveOrder = {
        id: ev.orderId,
        side: ev.side,
        px: ev.price,
        qty: ev.qty,
        rem: ev.qty,
        ts: keep ? prev.ts : ev.ts,
        upd: ev.ts,
        act: ev.action,
        opp: Math.max(keep ? prev.opp : 0, book.liveOn(acc, oppositeSide(ev.side))),
        tag: keep ? prev.tag : null,
      };
      hooks.display?.(acc, o, ev, prev);
      if (o.rem > 0) book.add(acc, o);
      break;
    }
    case 'cancel': {
      const o = book.remove(acc, ev.orderId);
      hooks.cancel?.(acc, o, ev);
      break;
    }
    case 'fill': {
      const qty = ev.fillQty ?? 0;
      const px = ev.fillPrice !== undefined && ev.fillPrice > 0 ? ev.fillPrice : ev.price;
      if (!(qty > 0)) break;
      const o = acc.orders.get(ev.orderId);
      hooks.fill?.(acc, o, ev, qty, px);
      if (o) book.reduce(acc, o, qty);
      book.notePrice(px, ev.ts);
      break;
    }
  }
  return acc;
}

/** eventRef() of an order event from its parts (for refs of events no longer at hand). */
export function orderRef(venue: string, orderId: string, action: Order['action'], ts: number): string {
  return `order:${venue}:${orderId}:${action}:${ts}`;
}

// ---------------------------------------------------------------- fill log

export interface FillRec {
  /** The filled order's id. */
  id: string;
  q: number;
  p: number;
  /** Cumulative quantity and notional of the log after this fill. */
  c: number;
  n: number;
}

export interface FillRange {
  count: number;
  qty: number;
  notional: number;
  /** Index of the first fill in the range (valid when count > 0). */
  first: number;
}

/**
 * An account's recent fills on one side, in event-time order (a fill older than the newest is filed at the
 * newest's time, so the log stays sorted for binary search), bounded by time and count, with cumulative
 * quantity/notional per entry: the sum over any time range is a difference of two entries.
 */
export class FillLog {
  readonly w: TimeWindow<FillRec>;
  private cq = 0;
  private cn = 0;

  constructor(spanMs: number, maxCount: number) {
    this.w = new TimeWindow<FillRec>(spanMs, maxCount);
  }

  get size(): number {
    return this.w.size;
  }

  add(ts: number, id: string, q: number, p: number): void {
    const newest = this.w.newestTs;
    const t = newest !== undefined && ts < newest ? newest : ts;
    this.w.expire(t);
    if (this.w.size === 0) {
      this.cq = 0;
      this.cn = 0;
    }
    this.cq += q;
    this.cn += q * p;
    this.w.push(t, { id, q, p, c: this.cq, n: this.cn });
  }

  /** Index of the first fill at or after t (strict: after t). */
  private bound(t: number, strict: boolean): number {
    let lo = 0;
    let hi = this.w.size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const ts = this.w.at(mid).ts;
      if (ts < t || (strict && ts === t)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Fills with t0 ≤ ts ≤ t1: O(log n). */
  range(t0: number, t1: number): FillRange {
    const a = this.bound(t0, false);
    const b = this.bound(t1, true);
    if (b <= a) return { count: 0, qty: 0, notional: 0, first: a };
    const first = this.w.at(a).value;
    const last = this.w.at(b - 1).value;
    return { count: b - a, qty: last.c - (first.c - first.q), notional: last.n - (first.n - first.q * first.p), first: a };
  }

  at(i: number): { ts: number; value: FillRec } {
    return this.w.at(i);
  }

  toJSON(): FillLogJSON {
    const j = this.w.toJSON();
    return { h: j.horizon, t: j.ts, f: j.values.map((r) => [r.id, r.q, r.p, r.c, r.n]), cq: this.cq, cn: this.cn };
  }

  static fromJSON(json: unknown, spanMs: number, maxCount: number, what: string): FillLog {
    const j = json as Partial<FillLogJSON> | null;
    if (!j || typeof j !== 'object' || !Array.isArray(j.t) || !Array.isArray(j.f) || j.t.length !== j.f.length) {
      throw new TypeError(`${what}: fill log must be { h, t[], f[], cq, cn }`);
    }
    const log = new FillLog(spanMs, maxCount);
    for (let i = 0; i < j.t.length; i++) {
      const r = j.f[i];
      if (!Array.isArray(r) || r.length !== 5 || typeof r[0] !== 'string') throw new TypeError(`${what}: bad fill entry`);
      log.w.push(num(j.t[i], what), { id: r[0], q: num(r[1], what), p: num(r[2], what), c: num(r[3], what), n: num(r[4], what) });
    }
    if (j.h !== null && j.h !== undefined) log.w.expire(num(j.h, what));
    log.cq = num(j.cq, what);
    log.cn = num(j.cn, what);
    return log;
  }
}

export interface FillLogJSON {
  h: number | null;
  t: number[];
  f: [string, number, number, number, number][];
  cq: number;
  cn: number;
}

// ---------------------------------------------------------------- formatting

/** Decimals (0…8) that show every quantity exactly. */
export function qtyDecimals(...xs: number[]): number {
  for (let d = 0; d <= 8; d++) if (xs.every((x) => Number(x.toFixed(d)) === x)) return d;
  return 8;
}

/** A quantity with the decimals it needs (after rounding to 8): 40 → "40", 0.125 → "0.125". */
export function formatQty(x: number): string {
  const r = Math.round(x * 1e8) / 1e8;
  return formatFixed(r, qtyDecimals(r));
}

/** An average price with two more decimals than the reference prices need: 99.9154545 (ref 99.91) → "99.9155". */
export function formatAvgPrice(avg: number, ...refs: number[]): string {
  const d = refs.length > 0 ? priceDecimals(refs[0] as number, refs[refs.length - 1] as number) : 2;
  return formatFixed(avg, Math.min(8, d + 2));
}

// ---------------------------------------------------------------- JSON helpers

export function num(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError(`${what}: expected a finite number`);
  return v;
}

export function numOrNull(v: unknown, what: string): number | null {
  return v === null || v === undefined ? null : num(v, what);
}

export function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new TypeError(`${what}: expected a string`);
  return v;
}

export function strArray(v: unknown, what: string): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new TypeError(`${what}: expected an array of strings`);
  return v as string[];
}

export function side(v: unknown, what: string): OrderSide {
  if (v !== 'buy' && v !== 'sell') throw new TypeError(`${what}: expected "buy" or "sell"`);
  return v;
}

type LiveOrderJSON = [string, 'b' | 's', number, number, number, number, number, 'n' | 'r', number, number[] | null];

export interface AccountBaseJSON {
  o: LiveOrderJSON[];
  lb: number;
  ls: number;
}

export function accountBaseToJSON(acc: AccountBase): AccountBaseJSON {
  const o: LiveOrderJSON[] = [];
  for (const x of acc.orders.values()) {
    o.push([x.id, x.side === 'buy' ? 'b' : 's', x.px, x.qty, x.rem, x.ts, x.upd, x.act === 'new' ? 'n' : 'r', x.opp, x.tag === null ? null : [...x.tag]]);
  }
  return { o, lb: acc.liveBuy, ls: acc.liveSell };
}

/** Restores an account's live orders into `acc` (already created in the book), trimming to the book's limits. */
export function restoreAccountBase<A extends AccountBase>(book: OrderFlowBook<A>, acc: A, json: unknown, what: string): void {
  const j = json as Partial<AccountBaseJSON> | null;
  if (!j || typeof j !== 'object' || !Array.isArray(j.o)) throw new TypeError(`${what}: account must have o[]`);
  for (const r of j.o) {
    if (!Array.isArray(r) || r.length !== 10 || typeof r[0] !== 'string' || (r[1] !== 'b' && r[1] !== 's') || (r[7] !== 'n' && r[7] !== 'r')) {
      throw new TypeError(`${what}: bad live order`);
    }
    const tag = r[9];
    if (tag !== null && !(Array.isArray(tag) && tag.every((x) => typeof x === 'number' && Number.isFinite(x)))) throw new TypeError(`${what}: bad order tag`);
    book.add(acc, {
      id: r[0],
      side: r[1] === 'b' ? 'buy' : 'sell',
      px: num(r[2], what),
      qty: num(r[3], what),
      rem: num(r[4], what),
      ts: num(r[5], what),
      upd: num(r[6], what),
      act: r[7] === 'n' ? 'new' : 'replace',
      opp: num(r[8], what),
      tag: tag === null ? null : [...tag],
    });
  }
  // The saved running sums are exact for the saved orders; after trimming, the recomputed ones hold.
  if (acc.orders.size === j.o.length) {
    acc.liveBuy = num(j.lb, what);
    acc.liveSell = num(j.ls, what);
  }
}

export interface BookJSON<AJ> {
  a: [string, AJ][];
  lp: number | null;
  lpt: number | null;
  pp: number | null;
}

export function bookToJSON<A extends AccountBase, AJ>(book: OrderFlowBook<A>, accountToJSON: (acc: A) => AJ): BookJSON<AJ> {
  const a: [string, AJ][] = [];
  for (const [name, acc] of book.accounts) a.push([name, accountToJSON(acc)]);
  return { a, lp: book.lastPx, lpt: book.lastPxTs, pp: book.prevPx };
}

/**
 * Rebuilds a book from JSON under `limits`: accounts in their saved recency order (the least recently seen
 * dropped when there are more than maxAccounts), each restored by `restoreAccount`.
 */
export function bookFromJSON<A extends AccountBase>(
  json: unknown,
  limits: BookLimits,
  makeAccount: () => A,
  restoreAccount: (book: OrderFlowBook<A>, acc: A, json: unknown) => void,
  what: string,
): OrderFlowBook<A> {
  const j = json as Partial<BookJSON<unknown>> | null;
  if (!j || typeof j !== 'object' || !Array.isArray(j.a)) throw new TypeError(`${what}: book must have a[]`);
  const book = new OrderFlowBook<A>(limits, makeAccount);
  const start = Math.max(0, j.a.length - limits.maxAccounts);
  for (let i = start; i < j.a.length; i++) {
    const e = j.a[i];
    if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string') throw new TypeError(`${what}: bad account entry`);
    const acc = book.account(e[0]);
    restoreAccount(book, acc, e[1]);
  }
  book.lastPx = numOrNull(j.lp, what);
  book.lastPxTs = numOrNull(j.lpt, what);
  book.prevPx = numOrNull(j.pp, what);
  return book;
}
