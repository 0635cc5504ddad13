/**
 * Coinbase: two adapters sharing one normalizer and one set of book machinery.
 *
 * - `coinbase` — the Exchange feed (wss://ws-feed.exchange.coinbase.com, formerly ws-feed.pro.coinbase.com),
 *   messages with a `type`:
 *   - `match` / `last_match` → trade. Coinbase's `side` is the MAKER's side, so the aggressor is the
 *     opposite (a `sell` maker was lifted by a buyer: an up-tick). `last_match` (the trade before the
 *     subscription) repeats on every reconnect: trade ids seen recently are not emitted twice.
 *   - `ticker` → quote (best_bid/best_ask; best_bid_size/best_ask_size when present, otherwise the size
 *     of that price level in the rebuilt book, or 0 when the book has no such level), seq = sequence.
 *   - `snapshot` + `l2update` (level2 / level2_batch) → book. No sequence numbers: the book is synced from
 *     the snapshot and the deltas apply in order; book seq is Vigil's own per-product counter.
 *   - the full channel (`received`, `open`, `done`, `match`, `change`, `activate`) → an L3 (order by order)
 *     book per product, synced as Coinbase documents: queue the stream, fetch the REST book
 *     `/products/<id>/book?level=3`, drop queued messages with sequence <= the snapshot's, apply the rest;
 *     a gap in the per-product `sequence` → book_reset, a fresh REST snapshot. Level-aggregated `book`
 *     deltas (seq = sequence) and derived quotes are emitted from it. Sizes are summed as fixed-point
 *     integers so levels never drift.
 *     The L3 book's products are known from the `subscriptions` ack (channel full) or their first
 *     full-channel message; on those products `match` feeds the book as well as the trade.
 *   - `heartbeat`, `subscriptions` → ignored labels; `error` → MalformedFrameError with its message.
 *   - book report: a ticker no older than the book's last change is compared with the rebuilt top (the
 *     ticker sent on subscribing reports the last trade, possibly minutes old, and is not compared).
 *   - live: heartbeat + ticker + matches + level2_batch by default (level2 and full need an authenticated
 *     subscribe since 2023, which Vigil does not do: the venue's error frame becomes a dead letter);
 *     `connectCoinbase(options, { book: 'full' })` for the L3 book.
 * - `coinbase-advanced` — Advanced Trade (wss://advanced-trade-ws.coinbase.com), messages with a `channel`
 *   and a per-connection `sequence_num`:
 *   - `l2_data` (subscribe `level2`): snapshot/update events, updates {side bid|offer, price_level,
 *     new_quantity (absolute)} → book (seq = sequence_num).
 *   - `market_trades`: trades arrays → trade (side is the taker's, BUY/SELL).
 *   - `ticker` / `ticker_batch` → quote; `heartbeats`, `subscriptions` (and status, candles…) → ignored.
 *   - `sequence_num` counts every message of the connection, whatever its product or channel: a gap cannot
 *     be pinned to one product, so every level2 book of the connection is reset and resubscribed (each
 *     product with its own unsubscribe + subscribe of level2). A lower number means a new connection. A
 *     broken message still counts; if it revealed a gap, the book_reset events come with the next frame.
 *   - market_trades snapshots (on every subscribe) repeat recent trades: ids seen lately are dropped.
 *
 * Both dialects are understood by the one normalizer (a cryptofeed capture of either venue is read with
 * source `coinbase`); events carry the adapter's name as venue. Symbols: Coinbase product ids already are
 * BASE-QUOTE (BTC-USD stays BTC-USD).
 *
 * REST frames (channel `rest:…`): `/products/<id>/book?level=3` is an L3 snapshot; anything else (the
 * products list of a cryptofeed bootstrap) is labelled `rest`.
 *
 * Hot path: one JSON.parse per frame, hand-written checks, no zod.
 */
import type { Book, CanonicalEvent, FeedStatus, Quote, Side, Trade } from '../core/events.ts';
import { OrderBook } from './book/order-book.ts';
import { connectVenue, type ConnectionTuning } from './connection.ts';
import type { ConnectionContext, VenueProtocol } from './connection-types.ts';
import { array, checkRecvTs, describe, feedStatus, id, int, levelPairs, nonNegative, object, price, statusEvent, str, toNumber, type Json } from './normalize-util.ts';
import { MalformedFrameError, STATUS_CHANNEL } from './types.ts';
import type { BookReport, LiveFeed, LiveFeedOptions, Normalizer, NormalizerContext, RawFrame, StatusFrameData, VenueAdapter } from './types.ts';

export const COINBASE_VENUE = 'coinbase';
export const COINBASE_ADVANCED_VENUE = 'coinbase-advanced';
export const COINBASE_WS_URL = 'wss://ws-feed.exchange.coinbase.com';
export const COINBASE_REST_URL = 'https://api.exchange.coinbase.com';
export const COINBASE_ADVANCED_WS_URL = 'wss://advanced-trade-ws.coinbase.com';

/** Full-channel messages queued per product while its L3 book waits for a REST snapshot. */
export const MAX_PENDING_L3 = 100_000;
/** Trade ids remembered per product to drop repeats (last_match on reconnect, market_trades snapshots). */
const RECENT_TRADE_IDS = 2048;

type Level = [number, number];

// ---------------------------------------------------------------- field helpers

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$/;

/**
 * `2021-04-17T16:43:37.075687Z` (or with nanoseconds, or an offset) → epoch ms, whole milliseconds
 * (the sub-millisecond digits are dropped).
 */
export function isoToMs(v: unknown, ctx: string, field: string): number {
  if (typeof v === 'string') {
    const m = ISO_RE.exec(v);
    if (m !== null) {
      const frac = m[7] ?? '';
      const ms = frac.length === 0 ? 0 : Number(frac.length >= 3 ? frac.slice(0, 3) : frac.padEnd(3, '0'));
      let t = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!, ms);
      const tz = m[8];
      if (tz !== undefined && tz !== 'Z') {
        const sign = tz[0] === '-' ? -1 : 1;
        const digits = tz.slice(1).replace(':', '');
        t -= sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4))) * 60_000;
      }
      if (t >= 0 && Number.isFinite(t)) return t;
    }
  }
  throw new MalformedFrameError(`${ctx}: ${field} must be an ISO-8601 UTC time, got ${describe(v)}`);
}

// Fixed-point sizes for the L3 book: 10^-12 units in a bigint, so sums of order sizes are exact.
const FIXED_DIGITS = 12;
const FIXED_ONE = 10n ** BigInt(FIXED_DIGITS);
const FIXED_ONE_NUM = 1e12;
const DECIMAL_RE = /^(\d+)(?:\.(\d*))?$/;

/** A decimal size string → fixed-point (digits beyond 10^-12 are dropped; Coinbase sends at most 8-10). */
function fixed(v: unknown, ctx: string, field: string): bigint {
  const text = typeof v === 'number' && v >= 0 && Number.isFinite(v) ? String(v) : v;
  if (typeof text === 'string') {
    const m = DECIMAL_RE.exec(text);
    if (m !== null) {
      const frac = (m[2] ?? '').slice(0, FIXED_DIGITS).padEnd(FIXED_DIGITS, '0');
      return BigInt(m[1]!) * FIXED_ONE + BigInt(frac);
    }
  }
  throw new MalformedFrameError(`${ctx}: ${field} must be a non-negative decimal, got ${describe(v)}`);
}

function fixedToNumber(v: bigint): number {
  return Number(v) / FIXED_ONE_NUM;
}

// ---------------------------------------------------------------- symbols

const PRODUCT_RE = /^[A-Z0-9]+-[A-Z0-9]+$/;
const symbolMemo = new Map<string, string>();

/** A Coinbase product id → canonical symbol (the same text: BTC-USD). Throws MalformedFrameError otherwise. */
export function coinbaseSymbol(raw: unknown): string {
  if (typeof raw !== 'string') throw new MalformedFrameError(`product_id must be a string, got ${describe(raw)}`);
  const hit = symbolMemo.get(raw);
  if (hit !== undefined) return hit;
  const upper = raw.toUpperCase();
  if (!PRODUCT_RE.test(upper)) throw new MalformedFrameError(`invalid product_id ${describe(raw)} (expected BASE-QUOTE)`);
  if (symbolMemo.size >= 10_000) symbolMemo.clear();
  symbolMemo.set(raw, upper);
  return upper;
}

/** User input (btc-usd, BTC/USD, btc_usd) → Coinbase product id BTC-USD. */
export function coinbaseProductId(symbol: string): string {
  return symbol.trim().replace(/[/_]/g, '-').toUpperCase();
}

// ---------------------------------------------------------------- book state

/** Trade ids seen lately for one product, to drop repeats. */
class RecentIds {
  private readonly set = new Set<string>();
  private readonly ring: (string | undefined)[] = new Array<string | undefined>(RECENT_TRADE_IDS);
  private next = 0;

  /** Adds the id; false when it was already there. */
  add(tradeId: string): boolean {
    if (this.set.has(tradeId)) return false;
    const old = this.ring[this.next];
    if (old !== undefined) this.set.delete(old);
    this.ring[this.next] = tradeId;
    this.next = (this.next + 1) % RECENT_TRADE_IDS;
    this.set.add(tradeId);
    return true;
  }
}

interface ProductState {
  symbol: string;
  /** The level book (L2 channels) or the level aggregation of the L3 book. */
  book: OrderBook;
  /** L2 books: Vigil's own per-product counter of book events (the venue sends no sequence). */
  counter: number;
  /** Venue time of the last change applied to the book. */
  bookTs: number;
  /** The product has (or had) a book: it appears in bookReport(). */
  hasBook: boolean;
  resyncs: number;
  compared: number;
  matched: number;
  /** Last quote derived from the book: bid px, bid qty, ask px, ask qty. */
  lastQuote: [number, number, number, number] | undefined;
  trades: RecentIds;
}

interface L3Order {
  bid: boolean;
  px: number;
  size: bigint;
}

interface PendingMessage {
  seq: number;
  type: string;
  msg: Json;
  ts: number;
  recvTs: number;
}

/** The order-by-order book of one product (full channel). `book` holds the level aggregation. */
class L3State {
  readonly orders = new Map<string, L3Order>();
  readonly bidAgg = new Map<number, bigint>();
  readonly askAgg = new Map<number, bigint>();
  /** Full-channel messages received while unsynced, in arrival order. */
  pending: PendingMessage[] = [];

  clear(book: OrderBook): void {
    this.orders.clear();
    this.bidAgg.clear();
    this.askAgg.clear();
    book.clear();
  }

  queue(m: PendingMessage): void {
    this.pending.push(m);
    if (this.pending.length > MAX_PENDING_L3) this.pending = this.pending.slice(this.pending.length - MAX_PENDING_L3 / 2);
  }
}

/** Price → new aggregate size of the levels one message changed. */
interface LevelChanges {
  bids: Map<number, number>;
  asks: Map<number, number>;
}

const REST_L3_RE = /^rest:\/products\/([^/?]+)\/book\?(?:[^#]*&)?level=3(?:&|$)/;

/** Advanced Trade channels carrying nothing Vigil models. */
const ADVANCED_IGNORED: ReadonlySet<string> = new Set(['status', 'candles', 'user', 'futures_balance_summary']);

// ---------------------------------------------------------------- normalizer

export class CoinbaseNormalizer implements Normalizer {
  private readonly products = new Map<string, ProductState>();
  /** Products whose book is the L3 one (seen on the full channel). */
  private readonly l3 = new Map<string, L3State>();
  /** Advanced Trade products with a level2 subscription (from l2_data and subscriptions messages). */
  private readonly advancedL2 = new Set<string>();
  /** Advanced Trade: last sequence_num of the current connection. */
  private lastSeqNum: number | undefined;
  private readonly changes: LevelChanges = { bids: new Map(), asks: new Map() };
  /** Events of state changes made by a frame that then turned out broken (a gap's book_reset): sent with the next frame. */
  private carry: CanonicalEvent[] = [];

  constructor(
    readonly venue: string,
    private readonly context: NormalizerContext = {},
  ) {}

  normalize(frame: RawFrame, out: CanonicalEvent[]): string | undefined {
    const recvTs = checkRecvTs(frame);
    if (this.carry.length > 0) {
      for (const ev of this.carry) out.push(ev);
      this.carry = [];
    }
    const channel = frame.channel;
    if (channel !== undefined) {
      if (channel === STATUS_CHANNEL) return this.statusFrame(frame, out);
      if (channel.startsWith('rest:')) {
        const m = REST_L3_RE.exec(channel);
        if (m === null) return 'rest';
        return this.l3Snapshot(coinbaseSymbol(m[1]), parse(frame.data), recvTs, out);
      }
    }
    const msg = parse(frame.data);
    if (Array.isArray(msg)) throw new MalformedFrameError(`unknown structure: array of ${msg.length}`);
    const type = msg.type;
    if (typeof type === 'string') return this.exchange(type, msg, recvTs, out);
    if (typeof msg.channel === 'string') return this.advanced(msg.channel, msg, recvTs, out);
    const keys = Object.keys(msg).slice(0, 8).join(',');
    throw new MalformedFrameError(`unknown structure: object with keys {${keys}} (neither "type" nor "channel")`);
  }

  /** The rebuilt level book of a symbol (the L3 book's level aggregation on the full channel). */
  orderBook(symbol: string): OrderBook | undefined {
    return this.products.get(symbol)?.book;
  }

  bookReport(): Record<string, BookReport> {
    const report: Record<string, BookReport> = {};
    for (const st of this.products.values()) {
      if (!st.hasBook) continue;
      const r: BookReport = { resyncs: st.resyncs };
      if (st.compared > 0) {
        r.check = 'bbo';
        r.compared = st.compared;
        r.matched = st.matched;
      }
      report[st.symbol] = r;
    }
    return report;
  }

  // ---------------------------------------------------------------- shared

  private product(symbol: string): ProductState {
    let st = this.products.get(symbol);
    if (st === undefined) {
      st = { symbol, book: new OrderBook(), counter: 0, bookTs: 0, hasBook: false, resyncs: 0, compared: 0, matched: 0, lastQuote: undefined, trades: new RecentIds() };
      this.products.set(symbol, st);
    }
    return st;
  }

  private status(symbol: string, status: FeedStatus['status'], reason: string, recvTs: number, out: CanonicalEvent[]): void {
    out.push(statusEvent(this.venue, symbol, status, reason, Math.floor(recvTs), recvTs));
  }

  /** Book reset on a gap: status, cleared book, resync request, counted. */
  private reset(st: ProductState, reason: string, recvTs: number, out: CanonicalEvent[]): void {
    st.hasBook = true;
    st.resyncs++;
    st.book.clear();
    st.lastQuote = undefined;
    this.l3.get(st.symbol)?.clear(st.book);
    this.status(st.symbol, 'book_reset', reason, recvTs, out);
    this.context.requestResync?.(st.symbol, reason);
  }

  private statusFrame(frame: RawFrame, out: CanonicalEvent[]): string | undefined {
    const data = parse(frame.data) as Partial<StatusFrameData>;
    const status = feedStatus(data.status);
    const symbols = array(data.symbols, 'status frame', 'symbols');
    const reason = typeof data.reason === 'string' ? data.reason : '';
    // A new or lost connection: Advanced Trade's sequence_num starts over.
    this.lastSeqNum = undefined;
    for (const raw of symbols) {
      const symbol = coinbaseSymbol(raw);
      this.status(symbol, status, reason, frame.recvTs, out);
      if (status !== 'connected') {
        const st = this.products.get(symbol);
        if (st !== undefined) {
          st.book.clear();
          st.lastQuote = undefined;
          const l3 = this.l3.get(symbol);
          if (l3 !== undefined) {
            l3.clear(st.book);
            l3.pending = [];
          }
        }
      }
    }
    return undefined;
  }

  /** A trade unless its id was seen lately for the product. */
  private trade(st: ProductState, tradeId: string, ts: number, recvTs: number, px: number, qty: number, side: Side, out: CanonicalEvent[]): void {
    if (!st.trades.add(tradeId)) return;
    const t: Trade = { kind: 'trade', venue: this.venue, symbol: st.symbol, ts, recvTs, price: px, qty, side, tradeId };
    out.push(t);
  }

  /** A venue quote; sizes the venue left out come from the rebuilt book's level at that price. */
  private venueQuote(
    st: ProductState,
    ts: number,
    recvTs: number,
    bidPx: number,
    bidQty: number | undefined,
    askPx: number,
    askQty: number | undefined,
    seq: number | undefined,
    out: CanonicalEvent[],
  ): void {
    const book = st.book;
    // A ticker older than the book's last change (the one sent on subscribing reports the last trade,
    // seconds or minutes old) describes an earlier book: not compared.
    if (book.synced && ts >= st.bookTs) {
      st.compared++;
      if (book.bestBid?.price === bidPx && book.bestAsk?.price === askPx) st.matched++;
    }
    const q: Quote = {
      kind: 'quote',
      venue: this.venue,
      symbol: st.symbol,
      ts,
      recvTs,
      bidPx,
      bidQty: bidQty ?? levelQty(book, true, bidPx),
      askPx,
      askQty: askQty ?? levelQty(book, false, askPx),
    };
    if (seq !== undefined) q.seq = seq;
    out.push(q);
  }

  /** A derived quote when the book's best bid/ask price or size changed. */
  private derivedQuote(st: ProductState, ts: number, recvTs: number, seq: number, out: CanonicalEvent[]): void {
    const b = st.book.bestBid;
    const a = st.book.bestAsk;
    const bp = b?.price ?? 0;
    const bq = b?.qty ?? 0;
    const ap = a?.price ?? 0;
    const aq = a?.qty ?? 0;
    if (b === undefined && a === undefined && st.lastQuote === undefined) return;
    const last = st.lastQuote;
    if (last !== undefined && last[0] === bp && last[1] === bq && last[2] === ap && last[3] === aq) return;
    st.lastQuote = [bp, bq, ap, aq];
    out.push({ kind: 'quote', venue: this.venue, symbol: st.symbol, ts, recvTs, bidPx: bp, bidQty: bq, askPx: ap, askQty: aq, seq, derived: true });
  }

  private levelBook(st: ProductState, ts: number, recvTs: number, seq: number, snapshot: boolean, bids: Level[], asks: Level[], out: CanonicalEvent[]): void {
    st.bookTs = ts;
    st.hasBook = true;
    const b: Book = { kind: 'book', venue: this.venue, symbol: st.symbol, ts, recvTs, seq, firstSeq: seq, snapshot, bids, asks };
    out.push(b);
  }

  /** A level2 snapshot (Exchange or Advanced Trade) replaces the book: the book event, book_synced the first time. */
  private l2Snapshot(st: ProductState, ts: number, recvTs: number, seq: number, bids: Level[], asks: Level[], out: CanonicalEvent[]): void {
    const book = st.book;
    const wasSynced = book.synced;
    rebuild(book, bids, asks);
    book.seq = seq;
    this.levelBook(st, ts, recvTs, seq, true, levelPairs(book.bids), levelPairs(book.asks), out);
    if (!wasSynced) this.status(st.symbol, 'book_synced', 'level2 snapshot', recvTs, out);
  }

  /** A level2 update of a synced book: the levels set, the book event. */
  private l2Update(st: ProductState, ts: number, recvTs: number, seq: number, bids: Level[], asks: Level[], out: CanonicalEvent[]): void {
    const book = st.book;
    for (const [p, q] of bids) book.bids.set(p, q);
    for (const [p, q] of asks) book.asks.set(p, q);
    book.seq = seq;
    this.levelBook(st, ts, recvTs, seq, false, bids, asks, out);
  }

  /** The L3 state of a product, created on first use. */
  private l3Of(symbol: string): L3State {
    let l3 = this.l3.get(symbol);
    if (l3 === undefined) {
      l3 = new L3State();
      this.l3.set(symbol, l3);
    }
    return l3;
  }

  // ---------------------------------------------------------------- Exchange feed

  private exchange(type: string, msg: Json, recvTs: number, out: CanonicalEvent[]): string | undefined {
    switch (type) {
      case 'l2update':
        return this.l2update(msg, recvTs, out);
      case 'ticker':
        this.ticker(msg, recvTs, out);
        return undefined;
      case 'match':
      case 'last_match':
        return this.match(type, msg, recvTs, out);
      case 'snapshot':
        return this.l2snapshot(msg, recvTs, out);
      case 'received':
      case 'open':
      case 'done':
      case 'change':
        return this.l3Message(type, msg, recvTs, out);
      case 'activate':
        // A stop order was triggered; it enters the book (if at all) with its own received/open.
        return 'activate';
      case 'heartbeat':
        return 'heartbeat';
      case 'subscriptions':
        this.subscriptions(msg);
        return 'subscriptions';
      case 'error': {
        const text = typeof msg.message === 'string' ? msg.message : 'no message';
        const reason = typeof msg.reason === 'string' && msg.reason.length > 0 ? ` (${msg.reason})` : '';
        throw new MalformedFrameError(`error frame: ${text}${reason}`);
      }
      case 'status':
        return 'status';
      default:
        throw new MalformedFrameError(`unknown message type "${type}"`);
    }
  }

  /** Products subscribed to the full channel get an L3 book (so their first match is queued too). */
  private subscriptions(msg: Json): void {
    const channels = msg.channels;
    if (!Array.isArray(channels)) return;
    for (const c of channels) {
      if (c === null || typeof c !== 'object') continue;
      const ch = c as Json;
      if (ch.name !== 'full' || !Array.isArray(ch.product_ids)) continue;
      for (const p of ch.product_ids) {
        const symbol = coinbaseSymbol(p);
        this.l3Of(symbol); // its book is the L3 one from now on
        this.product(symbol);
      }
    }
  }

  private ticker(msg: Json, recvTs: number, out: CanonicalEvent[]): void {
    const ctx = 'ticker';
    const st = this.product(coinbaseSymbol(msg.product_id));
    const ts = msg.time !== undefined ? isoToMs(msg.time, ctx, 'time') : Math.floor(recvTs);
    const seq = msg.sequence !== undefined ? int(msg.sequence, ctx, 'sequence') : undefined;
    this.venueQuote(
      st,
      ts,
      recvTs,
      nonNegative(msg.best_bid, ctx, 'best_bid'),
      msg.best_bid_size !== undefined ? nonNegative(msg.best_bid_size, ctx, 'best_bid_size') : undefined,
      nonNegative(msg.best_ask, ctx, 'best_ask'),
      msg.best_ask_size !== undefined ? nonNegative(msg.best_ask_size, ctx, 'best_ask_size') : undefined,
      seq,
      out,
    );
  }

  private match(type: string, msg: Json, recvTs: number, out: CanonicalEvent[]): string | undefined {
    const ctx = type;
    const symbol = coinbaseSymbol(msg.product_id);
    const st = this.product(symbol);
    const ts = isoToMs(msg.time, ctx, 'time');
    const px = price(msg.price, ctx, 'price');
    const qty = nonNegative(msg.size, ctx, 'size');
    const maker = msg.side;
    if (maker !== 'buy' && maker !== 'sell') throw new MalformedFrameError(`${ctx}: side must be buy or sell, got ${describe(maker)}`);
    const tradeId = id(msg.trade_id, ctx, 'trade_id');
    // A full-channel match also shrinks the maker's resting order; last_match is history.
    const full = type === 'match' && this.l3.has(symbol);
    if (full) {
      int(msg.sequence, ctx, 'sequence');
      validateL3(type, msg);
    }
    // `side` is the maker's: the taker (aggressor) took the other side.
    this.trade(st, tradeId, ts, recvTs, px, qty, maker === 'buy' ? 'sell' : 'buy', out);
    return full ? this.l3Message(type, msg, recvTs, out) : undefined;
  }

  private l2snapshot(msg: Json, recvTs: number, out: CanonicalEvent[]): string | undefined {
    const ctx = 'snapshot';
    const symbol = coinbaseSymbol(msg.product_id);
    if (this.l3.has(symbol)) return 'l2-snapshot-ignored-l3-book';
    const st = this.product(symbol);
    const bids = levels(msg.bids, ctx, 'bids');
    const asks = levels(msg.asks, ctx, 'asks');
    const ts = msg.time !== undefined ? isoToMs(msg.time, ctx, 'time') : Math.floor(recvTs);
    this.l2Snapshot(st, ts, recvTs, ++st.counter, bids, asks, out);
    return undefined;
  }

  private l2update(msg: Json, recvTs: number, out: CanonicalEvent[]): string | undefined {
    const ctx = 'l2update';
    const symbol = coinbaseSymbol(msg.product_id);
    if (this.l3.has(symbol)) return 'l2update-ignored-l3-book';
    const changes = array(msg.changes, ctx, 'changes');
    const ts = isoToMs(msg.time, ctx, 'time');
    const bids: Level[] = [];
    const asks: Level[] = [];
    for (let i = 0; i < changes.length; i++) {
      const c = changes[i];
      if (!Array.isArray(c) || c.length < 3) throw new MalformedFrameError(`${ctx}: changes[${i}] must be [side, price, size], got ${describe(c)}`);
      const px = price(c[1], ctx, `changes[${i}] price`);
      const q = nonNegative(c[2], ctx, `changes[${i}] size`);
      if (c[0] === 'buy') bids.push([px, q]);
      else if (c[0] === 'sell') asks.push([px, q]);
      else throw new MalformedFrameError(`${ctx}: changes[${i}] side must be buy or sell, got ${describe(c[0])}`);
    }
    const st = this.product(symbol);
    if (!st.book.synced) return 'l2update-before-snapshot';
    this.l2Update(st, ts, recvTs, ++st.counter, bids, asks, out);
    return undefined;
  }

  // ---------------------------------------------------------------- Exchange full channel (L3)

  private l3Message(type: string, msg: Json, recvTs: number, out: CanonicalEvent[]): string | undefined {
    const ctx = type;
    const symbol = coinbaseSymbol(msg.product_id);
    const seq = int(msg.sequence, ctx, 'sequence');
    const ts = isoToMs(msg.time, ctx, 'time');
    validateL3(type, msg);
    const st = this.product(symbol);
    const l3 = this.l3Of(symbol);
    const book = st.book;
    if (!book.synced) {
      l3.queue({ seq, type, msg, ts, recvTs });
      return undefined;
    }
    if (seq <= book.seq) return 'stale-sequence';
    if (seq !== book.seq + 1) {
      this.reset(st, `sequence gap: expected ${book.seq + 1}, got ${seq}`, recvTs, out);
      l3.queue({ seq, type, msg, ts, recvTs });
      return undefined;
    }
    this.l3Apply(st, l3, seq, type, msg, ts, recvTs, out);
    return undefined;
  }

  /** Applies one in-sequence full-channel message; emits the changed levels and a derived quote. */
  private l3Apply(st: ProductState, l3: L3State, seq: number, type: string, msg: Json, ts: number, recvTs: number, out: CanonicalEvent[]): void {
    const ch = this.changes;
    ch.bids.clear();
    ch.asks.clear();
    switch (type) {
      case 'open': {
        const orderId = msg.order_id as string;
        if (l3.orders.has(orderId)) break;
        const bid = msg.side === 'buy';
        const px = price(msg.price, 'open', 'price');
        const size = fixed(msg.remaining_size, 'open', 'remaining_size');
        l3.orders.set(orderId, { bid, px, size });
        this.addLevel(st, l3, bid, px, size);
        break;
      }
      case 'done': {
        const orderId = msg.order_id as string;
        const o = l3.orders.get(orderId);
        if (o === undefined) break; // never rested on the book (filled at once, or a market order)
        l3.orders.delete(orderId);
        this.addLevel(st, l3, o.bid, o.px, -o.size);
        break;
      }
      case 'match': {
        const o = l3.orders.get(msg.maker_order_id as string);
        if (o === undefined) break;
        let size = fixed(msg.size, 'match', 'size');
        if (size > o.size) size = o.size;
        o.size -= size;
        this.addLevel(st, l3, o.bid, o.px, -size);
        break;
      }
      case 'change': {
        const o = l3.orders.get(msg.order_id as string);
        if (o === undefined || msg.new_size === undefined || msg.new_size === null) break; // not resting, or a funds change
        const newSize = fixed(msg.new_size, 'change', 'new_size');
        const newPx = msg.new_price !== undefined && msg.new_price !== null ? price(msg.new_price, 'change', 'new_price') : o.px;
        this.addLevel(st, l3, o.bid, o.px, -o.size);
        o.size = newSize;
        o.px = newPx;
        this.addLevel(st, l3, o.bid, o.px, newSize);
        break;
      }
      default: // received: not on the book yet
        break;
    }
    st.book.seq = seq;
    if (ch.bids.size > 0 || ch.asks.size > 0) {
      this.levelBook(st, ts, recvTs, seq, false, [...ch.bids], [...ch.asks], out);
      this.derivedQuote(st, ts, recvTs, seq, out);
    }
  }

  private addLevel(st: ProductState, l3: L3State, bid: boolean, px: number, delta: bigint): void {
    if (delta === 0n) return;
    const agg = bid ? l3.bidAgg : l3.askAgg;
    let v = (agg.get(px) ?? 0n) + delta;
    if (v < 0n) v = 0n;
    const side = bid ? st.book.bids : st.book.asks;
    const changed = bid ? this.changes.bids : this.changes.asks;
    if (v === 0n) {
      agg.delete(px);
      side.set(px, 0);
      changed.set(px, 0);
    } else {
      agg.set(px, v);
      const q = fixedToNumber(v);
      side.set(px, q);
      changed.set(px, q);
    }
  }

  /** REST `/products/<id>/book?level=3`: {sequence, bids:[[price,size,order_id]], asks:[…]}. */
  private l3Snapshot(symbol: string, body: Json | unknown[], recvTs: number, out: CanonicalEvent[]): string | undefined {
    const ctx = `L3 book snapshot for ${symbol}`;
    if (Array.isArray(body)) throw new MalformedFrameError(`${ctx}: expected an object, got an array`);
    if (body.sequence === undefined && typeof body.message === 'string') {
      throw new MalformedFrameError(`${ctx}: error response: ${body.message}`);
    }
    const seq = int(body.sequence, ctx, 'sequence');
    const bidsIn = array(body.bids, ctx, 'bids');
    const asksIn = array(body.asks, ctx, 'asks');
    const st = this.product(symbol);
    const l3 = this.l3Of(symbol);
    const book = st.book;
    const wasSynced = book.synced;
    if (wasSynced && seq <= book.seq) return 'stale-snapshot';
    // Parse everything before touching the book: a broken snapshot leaves the state as it was.
    const orders: [string, L3Order][] = [];
    readL3Levels(bidsIn, true, ctx, 'bids', orders);
    readL3Levels(asksIn, false, ctx, 'asks', orders);
    const ids = new Set<string>();
    for (const [orderId] of orders) {
      if (ids.has(orderId)) throw new MalformedFrameError(`${ctx}: order ${orderId} listed twice`);
      ids.add(orderId);
    }
    const ts = body.time !== undefined ? isoToMs(body.time, ctx, 'time') : Math.floor(recvTs);
    l3.clear(book);
    for (const [orderId, o] of orders) {
      l3.orders.set(orderId, o);
      const agg = o.bid ? l3.bidAgg : l3.askAgg;
      agg.set(o.px, (agg.get(o.px) ?? 0n) + o.size);
    }
    for (const [p, v] of l3.bidAgg) book.bids.set(p, fixedToNumber(v));
    for (const [p, v] of l3.askAgg) book.asks.set(p, fixedToNumber(v));
    book.seq = seq;
    book.synced = true;
    st.lastQuote = undefined;
    this.levelBook(st, ts, recvTs, seq, true, levelPairs(book.bids), levelPairs(book.asks), out);
    if (!wasSynced) this.status(symbol, 'book_synced', `L3 snapshot at sequence ${seq}`, recvTs, out);
    this.derivedQuote(st, ts, recvTs, seq, out);
    // Play back what was queued: drop what the snapshot already holds, apply the rest in sequence.
    const pending = l3.pending;
    l3.pending = [];
    for (let i = 0; i < pending.length; i++) {
      const m = pending[i]!;
      if (m.seq <= book.seq) continue;
      if (m.seq !== book.seq + 1) {
        this.reset(st, `sequence gap after snapshot: expected ${book.seq + 1}, got ${m.seq}`, recvTs, out);
        l3.pending = pending.slice(i);
        return undefined;
      }
      this.l3Apply(st, l3, m.seq, m.type, m.msg, m.ts, m.recvTs, out);
    }
    return undefined;
  }

  // ---------------------------------------------------------------- Advanced Trade

  private advanced(channel: string, msg: Json, recvTs: number, out: CanonicalEvent[]): string | undefined {
    const seqNum = int(msg.sequence_num, channel, 'sequence_num');
    const last = this.lastSeqNum;
    // A broken message still took its number: counted before its content is read.
    this.lastSeqNum = seqNum;
    const first = out.length;
    if (last !== undefined && seqNum > last + 1) {
      // The lost messages may have been any product's: every level2 book of the connection is suspect.
      const reason = `sequence_num gap: expected ${last + 1}, got ${seqNum}`;
      for (const symbol of this.advancedL2) this.reset(this.product(symbol), reason, recvTs, out);
    }
    // (A lower number is a new connection, e.g. a recording without status frames: its snapshots follow.)
    try {
      switch (channel) {
        case 'l2_data':
          this.advancedL2Data(msg, seqNum, recvTs, out);
          return undefined;
        case 'market_trades':
          this.advancedTrades(msg, recvTs, out);
          return undefined;
        case 'ticker':
        case 'ticker_batch':
          this.advancedTicker(channel, msg, recvTs, out);
          return undefined;
        case 'heartbeats':
          return 'heartbeat';
        case 'subscriptions':
          this.advancedSubscriptions(msg);
          return 'subscriptions';
        default:
          if (ADVANCED_IGNORED.has(channel)) return channel;
          throw new MalformedFrameError(`unknown channel "${channel}"`);
      }
    } catch (err) {
      // The books were reset all the same: their book_reset events go out with the next frame.
      this.carry.push(...out.slice(first));
      throw err;
    }
  }

  private advancedSubscriptions(msg: Json): void {
    if (!Array.isArray(msg.events)) return;
    for (const ev of msg.events) {
      if (ev === null || typeof ev !== 'object') continue;
      const subs = (ev as Json).subscriptions;
      if (subs === null || typeof subs !== 'object') continue;
      const l2 = (subs as Json).level2;
      if (!Array.isArray(l2)) continue;
      for (const p of l2.map(coinbaseSymbol)) {
        this.advancedL2.add(p);
        this.product(p);
      }
    }
  }

  /** Reads every event first, then applies them: a broken event leaves all books as they were. */
  private advancedL2Data(msg: Json, seq: number, recvTs: number, out: CanonicalEvent[]): void {
    const ctx = 'l2_data';
    const ts = isoToMs(msg.timestamp, ctx, 'timestamp');
    const events = array(msg.events, ctx, 'events');
    const parsed: { symbol: string; snapshot: boolean; bids: Level[]; asks: Level[] }[] = [];
    for (let e = 0; e < events.length; e++) {
      const ev = object(events[e], ctx, `events[${e}]`);
      const ectx = `${ctx} events[${e}]`;
      const symbol = coinbaseSymbol(ev.product_id);
      const type = ev.type;
      if (type !== 'snapshot' && type !== 'update') throw new MalformedFrameError(`${ectx}: type must be snapshot or update, got ${describe(type)}`);
      const updates = array(ev.updates, ectx, 'updates');
      const bids: Level[] = [];
      const asks: Level[] = [];
      for (let i = 0; i < updates.length; i++) {
        const u = updates[i];
        if (u === null || typeof u !== 'object') throw new MalformedFrameError(`${ectx}: updates[${i}] must be an object, got ${describe(u)}`);
        const up = u as Json;
        const px = price(up.price_level, ectx, `updates[${i}] price_level`);
        const q = nonNegative(up.new_quantity, ectx, `updates[${i}] new_quantity`);
        const side = up.side;
        if (side === 'bid') bids.push([px, q]);
        else if (side === 'offer' || side === 'ask') asks.push([px, q]);
        else throw new MalformedFrameError(`${ectx}: updates[${i}] side must be bid or offer, got ${describe(side)}`);
      }
      parsed.push({ symbol, snapshot: type === 'snapshot', bids, asks });
    }
    for (const { symbol, snapshot, bids, asks } of parsed) {
      this.advancedL2.add(symbol);
      const st = this.product(symbol);
      if (snapshot) this.l2Snapshot(st, ts, recvTs, seq, bids, asks, out);
      else if (st.book.synced) this.l2Update(st, ts, recvTs, seq, bids, asks, out); // else: before the (re)subscription's snapshot
    }
  }

  private advancedTrades(msg: Json, recvTs: number, out: CanonicalEvent[]): void {
    const ctx = 'market_trades';
    const events = array(msg.events, ctx, 'events');
    const parsed: [ProductState, string, number, number, number, Side][] = [];
    for (let e = 0; e < events.length; e++) {
      const ev = object(events[e], ctx, `events[${e}]`);
      const trades = array(ev.trades, ctx, `events[${e}].trades`);
      for (let i = 0; i < trades.length; i++) {
        const t = object(trades[i], ctx, `trades[${i}]`);
        const tctx = `${ctx} trades[${i}]`;
        const symbol = coinbaseSymbol(t.product_id);
        const side = t.side;
        // Advanced Trade's trade side is the taker's.
        const taker: Side = side === 'BUY' ? 'buy' : side === 'SELL' ? 'sell' : 'unknown';
        if (taker === 'unknown' && side !== 'UNKNOWN_ORDER_SIDE') {
          throw new MalformedFrameError(`${tctx}: side must be BUY or SELL, got ${describe(side)}`);
        }
        const tradeId = id(t.trade_id, tctx, 'trade_id');
        parsed.push([this.product(symbol), tradeId, isoToMs(t.time, tctx, 'time'), price(t.price, tctx, 'price'), nonNegative(t.size, tctx, 'size'), taker]);
      }
    }
    for (const [st, tradeId, ts, px, qty, side] of parsed) this.trade(st, tradeId, ts, recvTs, px, qty, side, out);
  }

  private advancedTicker(channel: string, msg: Json, recvTs: number, out: CanonicalEvent[]): void {
    const ctx = channel;
    const ts = isoToMs(msg.timestamp, ctx, 'timestamp');
    const events = array(msg.events, ctx, 'events');
    const parsed: [ProductState, number, number | undefined, number, number | undefined][] = [];
    for (let e = 0; e < events.length; e++) {
      const ev = object(events[e], ctx, `events[${e}]`);
      const tickers = array(ev.tickers, ctx, `events[${e}].tickers`);
      for (let i = 0; i < tickers.length; i++) {
        const t = object(tickers[i], ctx, `tickers[${i}]`);
        const tctx = `${ctx} tickers[${i}]`;
        const symbol = coinbaseSymbol(t.product_id);
        // ticker_batch leaves the best bid/ask out.
        if (t.best_bid === undefined && t.best_ask === undefined) continue;
        parsed.push([
          this.product(symbol),
          nonNegative(t.best_bid, tctx, 'best_bid'),
          t.best_bid_quantity !== undefined ? nonNegative(t.best_bid_quantity, tctx, 'best_bid_quantity') : undefined,
          nonNegative(t.best_ask, tctx, 'best_ask'),
          t.best_ask_quantity !== undefined ? nonNegative(t.best_ask_quantity, tctx, 'best_ask_quantity') : undefined,
        ]);
      }
    }
    for (const [st, bidPx, bidQty, askPx, askQty] of parsed) this.venueQuote(st, ts, recvTs, bidPx, bidQty, askPx, askQty, undefined, out);
  }
}

function parse(text: string): Json | unknown[] {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch (err) {
    throw new MalformedFrameError(`invalid JSON: ${(err as Error).message}`);
  }
  if (msg === null || typeof msg !== 'object') {
    throw new MalformedFrameError(`unknown structure: expected a JSON object, got ${describe(text)}`);
  }
  return msg as Json | unknown[];
}

function levels(v: unknown, ctx: string, field: string): Level[] {
  const arr = array(v, ctx, field);
  const n = arr.length;
  const out: Level[] = new Array<Level>(n);
  for (let i = 0; i < n; i++) {
    const lvl = arr[i];
    if (!Array.isArray(lvl) || lvl.length < 2) throw new MalformedFrameError(`${ctx}: ${field}[${i}] must be [price, size], got ${describe(lvl)}`);
    const px = toNumber(lvl[0]);
    if (!(px > 0 && px !== Infinity)) price(lvl[0], ctx, `${field}[${i}] price`);
    const q = toNumber(lvl[1]);
    if (!(q >= 0 && q !== Infinity)) nonNegative(lvl[1], ctx, `${field}[${i}] size`);
    out[i] = [px, q];
  }
  return out;
}

function readL3Levels(arr: unknown[], bid: boolean, ctx: string, field: string, into: [string, L3Order][]): void {
  for (let i = 0; i < arr.length; i++) {
    const lvl = arr[i];
    if (!Array.isArray(lvl) || lvl.length < 3) throw new MalformedFrameError(`${ctx}: ${field}[${i}] must be [price, size, order_id], got ${describe(lvl)}`);
    into.push([id(lvl[2], ctx, `${field}[${i}] order_id`), { bid, px: price(lvl[0], ctx, `${field}[${i}] price`), size: fixed(lvl[1], ctx, `${field}[${i}] size`) }]);
  }
}

/** The fields each full-channel type needs, checked before the message is queued or applied. */
function validateL3(type: string, msg: Json): void {
  switch (type) {
    case 'open':
      str(msg.order_id, type, 'order_id');
      if (msg.side !== 'buy' && msg.side !== 'sell') throw new MalformedFrameError(`open: side must be buy or sell, got ${describe(msg.side)}`);
      price(msg.price, type, 'price');
      fixed(msg.remaining_size, type, 'remaining_size');
      break;
    case 'done':
      str(msg.order_id, type, 'order_id');
      break;
    case 'match':
      str(msg.maker_order_id, type, 'maker_order_id');
      fixed(msg.size, type, 'size');
      break;
    case 'change':
      str(msg.order_id, type, 'order_id');
      if (msg.new_size !== undefined && msg.new_size !== null) fixed(msg.new_size, type, 'new_size');
      if (msg.new_price !== undefined && msg.new_price !== null) price(msg.new_price, type, 'new_price');
      break;
    default:
      break;
  }
}

/** Replaces the book's content with these levels (size 0 levels are skipped) and marks it synced. */
function rebuild(book: OrderBook, bids: readonly Level[], asks: readonly Level[]): void {
  book.clear();
  for (const [p, q] of bids) if (q > 0) book.bids.set(p, q);
  for (const [p, q] of asks) if (q > 0) book.asks.set(p, q);
  book.synced = true;
}

function levelQty(book: OrderBook, bid: boolean, px: number): number {
  if (!book.synced || px <= 0) return 0;
  const side = bid ? book.bids : book.asks;
  // Top of book first: the ticker's best price is almost always the first level.
  for (let i = 0; i < side.length && i < 16; i++) if (side.priceAt(i) === px) return side.qtyAt(i);
  return 0;
}

// ---------------------------------------------------------------- live protocols

/** Exchange book channels: level2_batch is public; level2 and full need an authenticated subscribe since 2023. */
export type CoinbaseBookChannel = 'level2_batch' | 'level2' | 'full';

export interface CoinbaseExchangeOptions {
  /** Which book channel to subscribe (default level2_batch, the one open without authentication). */
  book?: CoinbaseBookChannel;
}

function nativeSymbols(symbols: string[]): string[] {
  const out = new Set<string>();
  for (const s of symbols) {
    const p = coinbaseProductId(s);
    if (p.length > 0) out.add(coinbaseSymbol(p));
  }
  return [...out];
}

const PRODUCT_IN_FRAME_RE = /"product_id":"([^"]+)"/;
const FULL_TYPE_IN_FRAME_RE = /"type":"(received|open|done|match|change)"/;

/**
 * The Exchange feed: one subscribe with heartbeat (the feed drops idle connections) plus, for level2
 * books, ticker and matches; for the full channel only `full` (it carries every match; quotes are
 * derived from the L3 book). Full-channel books are synced from the REST level-3 book, fetched after
 * each product's first full-channel message on a connection and on every resync.
 */
export function coinbaseProtocol(options: CoinbaseExchangeOptions = {}): VenueProtocol {
  const bookChannel = options.book ?? 'level2_batch';
  const full = bookChannel === 'full';
  /** Products whose L3 snapshot has been requested on this connection. */
  const requested = new Set<string>();
  let subscribed = 0;

  const fetchSnapshot = (product: string, ctx: ConnectionContext): void => {
    requested.add(product);
    const path = `/products/${product}/book?level=3`;
    ctx.fetchText(`${ctx.restUrl.replace(/\/+$/, '')}${path}`).then(
      (text) => ctx.emit(text, `rest:${path}`),
      (err: unknown) => {
        requested.delete(product); // the next full-channel message of the product asks again
        ctx.log('coinbase: L3 book snapshot failed', { product, error: (err as Error).message });
      },
    );
  };

  return {
    venue: COINBASE_VENUE,
    defaultWsUrl: COINBASE_WS_URL,
    defaultRestUrl: COINBASE_REST_URL,
    nativeSymbols,
    url: (wsUrl) => wsUrl,
    subscribeMessages: (symbols) => {
      subscribed = symbols.length;
      const channels = full ? ['heartbeat', 'full'] : ['heartbeat', 'ticker', 'matches', bookChannel];
      return [JSON.stringify({ type: 'subscribe', product_ids: symbols, channels })];
    },
    // Heartbeats arrive every second per product.
    staleAfterMs: 15_000,
    onOpen: () => requested.clear(),
    onFrame: full
      ? (data, ctx) => {
          if (requested.size >= subscribed) return; // every product's snapshot is on its way
          const t = FULL_TYPE_IN_FRAME_RE.exec(data);
          if (t === null) return;
          const p = PRODUCT_IN_FRAME_RE.exec(data);
          if (p !== null && !requested.has(p[1]!)) fetchSnapshot(p[1]!, ctx);
        }
      : undefined,
    resync: (symbol, ctx) => {
      if (full) {
        fetchSnapshot(symbol, ctx);
        return;
      }
      // level2 snapshots come with a subscription.
      ctx.send(JSON.stringify({ type: 'unsubscribe', product_ids: [symbol], channels: [bookChannel] }));
      ctx.send(JSON.stringify({ type: 'subscribe', product_ids: [symbol], channels: [bookChannel] }));
    },
  };
}

/** Advanced Trade channels Vigil subscribes, one subscribe message each. */
export const COINBASE_ADVANCED_CHANNELS = ['heartbeats', 'level2', 'market_trades', 'ticker'] as const;

/**
 * Advanced Trade: one subscribe per channel (the venue takes one channel per message); heartbeats keep
 * the subscriptions open. A level2 book is rebuilt by unsubscribing and subscribing that product again,
 * which brings a fresh snapshot.
 */
export function coinbaseAdvancedProtocol(): VenueProtocol {
  return {
    venue: COINBASE_ADVANCED_VENUE,
    defaultWsUrl: COINBASE_ADVANCED_WS_URL,
    nativeSymbols,
    url: (wsUrl) => wsUrl,
    subscribeMessages: (symbols) => COINBASE_ADVANCED_CHANNELS.map((channel) => JSON.stringify({ type: 'subscribe', product_ids: symbols, channel })),
    staleAfterMs: 15_000,
    resync: (symbol, ctx) => {
      ctx.send(JSON.stringify({ type: 'unsubscribe', product_ids: [symbol], channel: 'level2' }));
      ctx.send(JSON.stringify({ type: 'subscribe', product_ids: [symbol], channel: 'level2' }));
    },
  };
}

/** The Exchange feed with a chosen book channel (the registered adapter uses level2_batch). */
export function connectCoinbase(options: LiveFeedOptions, exchange: CoinbaseExchangeOptions = {}, tuning?: ConnectionTuning): LiveFeed {
  return connectVenue(coinbaseProtocol(exchange), options, tuning);
}

/** Advanced Trade, with the connection base's tuning (tests shrink backoffs). */
export function connectCoinbaseAdvanced(options: LiveFeedOptions, tuning?: ConnectionTuning): LiveFeed {
  return connectVenue(coinbaseAdvancedProtocol(), options, tuning);
}

export const coinbaseAdapter: VenueAdapter = {
  name: COINBASE_VENUE,
  createNormalizer: (context?: NormalizerContext) => new CoinbaseNormalizer(COINBASE_VENUE, context),
  connect: (options: LiveFeedOptions) => connectVenue(coinbaseProtocol(), options),
};

export const coinbaseAdvancedAdapter: VenueAdapter = {
  name: COINBASE_ADVANCED_VENUE,
  createNormalizer: (context?: NormalizerContext) => new CoinbaseNormalizer(COINBASE_ADVANCED_VENUE, context),
  connect: (options: LiveFeedOptions) => connectVenue(coinbaseAdvancedProtocol(), options),
};
