/**
 * Shared per-instrument order-flow state for the order-flow detectors of group A (spoofing, layering,
 * momentum_ignition). Order events are keyed by venue:symbol, so one state sees every account's orders of
 * the instrument, in order. This module keeps, inside that state:
 *
 * - every account's LIVE orders (new/replace add or update, cancel removes, fills reduce the remaining
 *   quantity and remove a fully filled order), bounded: at most `maxAccounts` accounts (the least recently
 *   seen is evicted, O(1) through a RecencyMap: a Map plus a recency list relinked on every event) and
 *   at most `maxOpenOrders` live orders per account (the least recently displayed is evicted);
 * - the TOUCH derived from those live orders: best bid = highest live buy price, best ask = lowest live
 *   sell price (two PriceLevels: distinct prices with their order counts, O(log L) per change, a move of
 *   the levels only when a price level appears or empties). Public quotes are not
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

/**
 * A multiset of prices kept as its distinct values, ascending, with a count each (parallel arrays): min and
 * max in O(1); insert/remove a binary search over the levels, and a move of the levels behind the position
 * only when a level appears or empties. The book's live prices crowd near the touch, so there are far fewer
 * levels than orders (a sorted array of every order's price moved on each change). Plain arrays (unboxed
 * doubles): far cheaper to create than typed arrays, and every instrument has two of these.
 */
export class PriceLevels {
  private readonly px: number[] = [];
  private readonly cnt: number[] = [];
  /** Prices held, counted with multiplicity (the live orders). */
  size = 0;

  /** Distinct prices held. */
  get levels(): number {
    return this.px.length;
  }
  /** Smallest / largest price; NaN when empty. */
  get min(): number {
    return this.px.length === 0 ? Number.NaN : (this.px[0] as number);
  }
  get max(): number {
    const n = this.px.length;
    return n === 0 ? Number.NaN : (this.px[n - 1] as number);
  }

  /** Number of distinct prices < x. */
  private lowerBound(x: number): number {
    const px = this.px;
    let lo = 0;
    let hi = px.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((px[mid] as number) < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  insert(x: number): void {
    if (Number.isNaN(x)) throw new RangeError('PriceLevels.insert: NaN');
    const px = this.px;
    const cnt = this.cnt;
    const n = px.length;
    const i = this.lowerBound(x);
    this.size += 1;
    if (i < n && px[i] === x) {
      cnt[i] = (cnt[i] as number) + 1;
      return;
    }
    px.push(x);
    cnt.push(1);
    for (let j = n; j > i; j--) {
      px[j] = px[j - 1] as number;
      cnt[j] = cnt[j - 1] as number;
    }
    px[i] = x;
    cnt[i] = 1;
  }

  /** Removes one occurrence of x; false when x is not held. */
  remove(x: number): boolean {
    const px = this.px;
    const cnt = this.cnt;
    const i = this.lowerBound(x);
    if (i >= px.length || px[i] !== x) return false;
    this.size -= 1;
    const c = (cnt[i] as number) - 1;
    if (c > 0) {
      cnt[i] = c;
      return true;
    }
    const n = px.length - 1;
    for (let j = i; j < n; j++) {
      px[j] = px[j + 1] as number;
      cnt[j] = cnt[j + 1] as number;
    }
    px.pop();
    cnt.pop();
    return true;
  }
}

/** An entry of a RecencyMap: its key and value, and its neighbours in recency order. */
interface RecencySlot<V> {
  key: string;
  value: V;
  prev: RecencySlot<V> | null;
  next: RecencySlot<V> | null;
}

/**
 * A map whose iteration order is recency order — least recently touched first, like a Map on which every
 * touch is a delete + set — kept as a linked list beside a Map of the slots: a touch relinks a slot (no
 * hashing, no allocation) where delete + set rehashed a small Map's table every few events.
 */
export class RecencyMap<V> {
  private readonly slots = new Map<string, RecencySlot<V>>();
  private head: RecencySlot<V> | null = null;
  private tail: RecencySlot<V> | null = null;

  get size(): number {
    return this.slots.size;
  }

  /** The value, without touching it. */
  get(key: string): V | undefined {
    return this.slots.get(key)?.value;
  }

  has(key: string): boolean {
    return this.slots.has(key);
  }

  /** The value, made the most recently touched; undefined when absent. */
  touch(key: string): V | undefined {
    const e = this.slots.get(key);
    if (e === undefined) return undefined;
    if (e !== this.tail) {
      this.unlink(e);
      this.append(e);
    }
    return e.value;
  }

  /** Sets the value and makes it the most recently touched (Map delete + set). */
  set(key: string, value: V): this {
    const e = this.slots.get(key);
    if (e !== undefined) {
      e.value = value;
      if (e !== this.tail) {
        this.unlink(e);
        this.append(e);
      }
      return this;
    }
    const slot: RecencySlot<V> = { key, value, prev: null, next: null };
    this.slots.set(key, slot);
    this.append(slot);
    return this;
  }

  delete(key: string): boolean {
    const e = this.slots.get(key);
    if (e === undefined) return false;
    this.slots.delete(key);
    this.unlink(e);
    return true;
  }

  /** The least recently touched key. */
  oldestKey(): string | undefined {
    return this.head === null ? undefined : this.head.key;
  }

  *keys(): IterableIterator<string> {
    for (let e = this.head; e !== null; e = e.next) yield e.key;
  }

  *values(): IterableIterator<V> {
    for (let e = this.head; e !== null; e = e.next) yield e.value;
  }

  *entries(): IterableIterator<[string, V]> {
    for (let e = this.head; e !== null; e = e.next) yield [e.key, e.value];
  }

  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.entries();
  }

  private unlink(e: RecencySlot<V>): void {
    if (e.prev === null) this.head = e.next;
    else e.prev.next = e.next;
    if (e.next === null) this.tail = e.prev;
    else e.next.prev = e.prev;
    e.prev = null;
    e.next = null;
  }

  private append(e: RecencySlot<V>): void {
    e.prev = this.tail;
    e.next = null;
    if (this.tail === null) this.head = e;
    else this.tail.next = e;
    this.tail = e;
  }
}

export class OrderFlowBook<A extends AccountBase> {
  /** Accounts by name, least recently seen first. */
  readonly accounts = new RecencyMap<A>();
  /** Live buy / sell prices (> 0) of every tracked order. */
  readonly bids = new PriceLevels();
  readonly asks = new PriceLevels();
  /** Last fill price and its time; prevPx = the last fill price of an earlier millisecond than lastPxTs. */
  lastPx: number | null = null;
  lastPxTs: number | null = null;
  prevPx: number | null = null;
  /** The most recently seen account (the last of `accounts`) and its name: seen again, nothing to look up. */
  private lastName: string | null = null;
  private lastAcc: A | null = null;

  constructor(
    readonly limits: BookLimits,
    private readonly makeAccount: () => A,
  ) {}

  /** The account, created when new; marks it most recently seen and evicts the least recently seen beyond maxAccounts. */
  account(name: string): A {
    if (name === this.lastName) return this.lastAcc as A;
    let acc = this.accounts.touch(name);
    if (acc === undefined) {
      acc = this.makeAccount();
      this.accounts.set(name, acc);
      while (this.accounts.size > this.limits.maxAccounts) this.dropAccount(this.accounts.oldestKey() as string);
    }
    this.lastName = name;
    this.lastAcc = acc;
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
    this.addAbsent(acc, o);
  }

  /** add() of an order whose id is known not to be live for the account (applyOrder just removed it). */
  addAbsent(acc: A, o: LiveOrder): void {
    acc.orders.set(o.id, o);
    this.index(o);
    if (o.side === 'buy') acc.liveBuy += o.rem;
    else acc.liveSell += o.rem;
    while (acc.orders.size > this.limits.maxOpenOrders) this.drop(acc, acc.orders.values().next().value as LiveOrder);
  }

  /** Removes a live order; returns it (undefined when not tracked). */
  remove(acc: A, id: string): LiveOrder | undefined {
    const o = acc.orders.get(id);
    if (o === undefined) return undefined;
    this.drop(acc, o);
    return o;
  }

  /** Removes the live order `o` (acc.orders holds it under o.id). */
  private drop(acc: A, o: LiveOrder): void {
    acc.orders.delete(o.id);
    this.unindex(o);
    if (acc.orders.size === 0) {
      // Exact zeros once nothing is live, so rounding cannot outlive the orders that caused it.
      acc.liveBuy = 0;
      acc.liveSell = 0;
    } else if (o.side === 'buy') acc.liveBuy = Math.max(0, acc.liveBuy - o.rem);
    else acc.liveSell = Math.max(0, acc.liveSell - o.rem);
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
      // The order's id was just removed, unless a replace moved another id to it (then add() checks).
      if (o.rem > 0) {
        if (ev.action === 'new' || ev.origOrderId === undefined || ev.origOrderId === ev.orderId) book.addAbsent(acc, o);
        else book.add(acc, o);
      }
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
 *
 * The window behaves exactly like a TimeWindow (src/stats/event-window.ts) of (ts, fill) entries: it holds
 * the entries with ts > horizon − spanMs (horizon = the largest time seen) and at most maxCount of them, the
 * newest. It is stored as a ring of numbers (ts, q, p, c, n per entry, and the order ids beside them), so a
 * fill allocates nothing and a lookup reads no objects; the ring is allocated at the first fill.
 */
export class FillLog {
  readonly spanMs: number;
  readonly maxCount: number;
  /** Ring of entries, STRIDE numbers each: ts, q, p, c, n (a plain array of unboxed doubles). */
  private d: number[] = [];
  private ids: string[] = [];
  /** Ring capacity (entries), first entry's slot, entries held. */
  private cap = 0;
  private head = 0;
  private n = 0;
  private horizonTs = Number.NEGATIVE_INFINITY;
  private cq = 0;
  private cn = 0;

  constructor(spanMs: number, maxCount: number) {
    if (!(spanMs > 0)) throw new RangeError(`TimeWindow: spanMs must be > 0 (got ${spanMs})`);
    if (!Number.isInteger(maxCount) || maxCount < 1) throw new RangeError(`TimeWindow: maxCount must be a positive integer (got ${maxCount})`);
    this.spanMs = spanMs;
    this.maxCount = maxCount;
  }

  get size(): number {
    return this.n;
  }

  /** Slot of the i-th entry from the oldest. */
  private slot(i: number): number {
    const k = this.head + i;
    return k < this.cap ? k : k - this.cap;
  }

  private tsAt(i: number): number {
    return this.d[this.slot(i) * STRIDE] as number;
  }

  /** Advances the horizon to `now` (if later) and drops the entries with ts <= horizon − spanMs. */
  private expire(now: number): void {
    if (now > this.horizonTs) this.horizonTs = now;
    const cutoff = this.horizonTs - this.spanMs;
    while (this.n > 0 && this.tsAt(0) <= cutoff) this.shift();
  }

  private shift(): void {
    this.ids[this.head] = '';
    this.head = this.head + 1 === this.cap ? 0 : this.head + 1;
    this.n -= 1;
  }

  /** Appends an entry: TimeWindow.push (expire by its time, then by count). */
  private push(ts: number, id: string, q: number, p: number, c: number, n: number): void {
    if (!Number.isFinite(ts)) throw new RangeError(`TimeWindow.push: non-finite ts ${ts}`);
    this.expire(ts);
    if (this.n === this.maxCount) this.shift();
    if (this.n === this.cap) this.grow();
    const k = this.slot(this.n);
    const d = this.d;
    const b = k * STRIDE;
    d[b] = ts;
    d[b + 1] = q;
    d[b + 2] = p;
    d[b + 3] = c;
    d[b + 4] = n;
    this.ids[k] = id;
    this.n += 1;
  }

  private grow(): void {
    const cap = this.cap === 0 ? Math.min(this.maxCount, 8) : Math.min(this.maxCount, this.cap * 2);
    const d: number[] = [];
    const ids: string[] = [];
    for (let i = 0; i < this.n; i++) {
      const b = this.slot(i) * STRIDE;
      for (let j = 0; j < STRIDE; j++) d.push(this.d[b + j] as number);
      ids.push(this.ids[this.slot(i)] as string);
    }
    for (let i = this.n * STRIDE; i < cap * STRIDE; i++) d.push(0.5);
    for (let i = this.n; i < cap; i++) ids.push('');
    this.d = d;
    this.ids = ids;
    this.cap = cap;
    this.head = 0;
  }

  add(ts: number, id: string, q: number, p: number): void {
    const t = this.n > 0 && ts < this.tsAt(this.n - 1) ? this.tsAt(this.n - 1) : ts;
    this.expire(t);
    if (this.n === 0) {
      this.cq = 0;
      this.cn = 0;
    }
    this.cq += q;
    this.cn += q * p;
    this.push(t, id, q, p, this.cq, this.cn);
  }

  /** Index of the first fill at or after t (strict: after t). */
  private bound(t: number, strict: boolean): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const ts = this.tsAt(mid);
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
    const d = this.d;
    const f = this.slot(a) * STRIDE;
    const l = this.slot(b - 1) * STRIDE;
    const fq = d[f + 1] as number;
    const fp = d[f + 2] as number;
    return { count: b - a, qty: (d[l + 3] as number) - ((d[f + 3] as number) - fq), notional: (d[l + 4] as number) - ((d[f + 4] as number) - fq * fp), first: a };
  }

  /** The count of fills with t0 ≤ ts ≤ t1 (range() without the sums). */
  count(t0: number, t1: number): number {
    const a = this.bound(t0, false);
    const b = this.bound(t1, true);
    return b > a ? b - a : 0;
  }

  /** i-th fill from the oldest (0) to the newest (size − 1). */
  at(i: number): { ts: number; value: FillRec } {
    if (i < 0 || i >= this.n) throw new RangeError(`TimeWindow.at: index ${i} out of range [0, ${this.n})`);
    const k = this.slot(i);
    const d = this.d;
    const b = k * STRIDE;
    return { ts: d[b] as number, value: { id: this.ids[k] as string, q: d[b + 1] as number, p: d[b + 2] as number, c: d[b + 3] as number, n: d[b + 4] as number } };
  }

  toJSON(): FillLogJSON {
    const t: number[] = [];
    const f: [string, number, number, number, number][] = [];
    for (let i = 0; i < this.n; i++) {
      const { ts, value: r } = this.at(i);
      t.push(ts);
      f.push([r.id, r.q, r.p, r.c, r.n]);
    }
    return { h: Number.isFinite(this.horizonTs) ? this.horizonTs : null, t, f, cq: this.cq, cn: this.cn };
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
      log.push(num(j.t[i], what), r[0], num(r[1], what), num(r[2], what), num(r[3], what), num(r[4], what));
    }
    if (j.h !== null && j.h !== undefined) log.expire(num(j.h, what));
    log.cq = num(j.cq, what);
    log.cn = num(j.cn, what);
    return log;
  }
}

/** Numbers per FillLog entry: ts, q, p, c, n. */
const STRIDE = 5;

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
