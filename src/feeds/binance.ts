/**
 * Binance (spot, and through the shared BinanceMarket description USD-M futures in binance-futures.ts):
 * normalizer for the combined-stream wire format and REST depth snapshots, order-book sync, and the
 * venue protocol for the shared connection base (src/feeds/connection.ts).
 *
 * Wire formats handled (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams):
 * - envelope `{"stream":"btcusdt@trade","data":{...}}` or the bare payload;
 * - `trade`      {e,E,s,t,p,q,T,m,M}        → trade (ts = T, side from m: buyer is maker ⇒ aggressor sold);
 * - `aggTrade`   {e,E,s,a,p,q,f,l,T,m,M}    → trade with firstTradeId/lastTradeId (tradeId = a);
 * - bookTicker   {u,s,b,B,a,A} (spot: no `e`) → quote (seq = u; ts = E or T when present, else floor(recvTs));
 * - `depthUpdate`{e,E,s,U,u,[pu],b,a}       → book diff (ts = E, firstSeq = U, seq = u, prevSeq = pu);
 * - REST `/api/v3/depth` (futures `/fapi/v1/depth`) {lastUpdateId,bids,asks} → book snapshot (symbol
 *   from the frame's channel `rest:depth:<SYMBOL>`, else from the last depthUpdate seen);
 * - STATUS_CHANNEL frames of the connection base → one `status` event per symbol.
 *
 * Order-book sync, per Binance's "How to manage a local order book correctly":
 * - depth diffs are buffered until a REST snapshot (lastUpdateId L) is there;
 * - spot: diffs with u <= L are dropped; the first applied diff must have U <= L+1 <= u, every next one
 *   U == previous u + 1;
 * - futures: diffs with u < L are dropped; the first applied diff must have U <= L <= u, every next one
 *   pu == previous u;
 * - a snapshot older than the first buffered diff is dropped and a new one requested (requestResync);
 *   a snapshot is only applied once a diff bridges it, so `book` events (snapshot:true first, then
 *   the diffs) are emitted only while the book is consistent;
 * - a sequence gap → `status` book_reset, book cleared, `requestResync(symbol)`, the diffs from the gap
 *   on are buffered for the next snapshot; `book_synced` when it is rebuilt;
 * - a `disconnected` or `stale` status frame clears the symbol's book (the next connection fetches a
 *   new snapshot).
 *
 * Book consistency report: bookTicker pushes every change of the best bid/ask with its update id `u`
 * (the depth stream's id space). After each applied diff ending at u, the rebuilt top is compared with
 * the latest bookTicker with id <= u — known for certain only once a bookTicker with id > u arrived, so
 * each comparison waits for that. Prices and sizes of both sides must be equal.
 *
 * The normalizer is on the replay hot path: spot trade, bookTicker and depthUpdate frames in Binance's
 * exact layout are read straight from the text (binance-scan.ts), every other frame, and any frame the
 * scanner does not take, goes through one JSON.parse and hand-written field checks (no zod). Both
 * paths end in the same event construction and book code.
 */
import type { Book, CanonicalEvent, Quote, Side, Trade } from '../core/events.ts';
import { ERR, VigilError } from '../core/errors.ts';
import { OrderBook } from './book/order-book.ts';
import {
  BACKOFF_BASE_MS,
  BACKOFF_CAP_MS,
  FetchCancelledError,
  QUEUE_HIGH_WATER,
  QUEUE_LOW_WATER,
  backoffDelay,
  connectVenue,
} from './connection.ts';
import type { ConnectionContext, VenueProtocol } from './connection-types.ts';
import { BinanceScan, NOT_MINE, SCAN_BOOK_TICKER, SCAN_DEPTH_UPDATE, SCAN_TRADE } from './binance-scan.ts';
import { describePlain, feedStatus, fieldChecks, parseFrame, statusEvent, type Json, type Pair } from './normalize-util.ts';
import { binanceSymbol, binanceWireSymbol } from './symbols.ts';
import { MalformedFrameError, STATUS_CHANNEL } from './types.ts';
import type { BookReport, LiveFeedOptions, Normalizer, NormalizerContext, RawFrame, VenueAdapter } from './types.ts';

export { BACKOFF_BASE_MS, BACKOFF_CAP_MS, QUEUE_HIGH_WATER, QUEUE_LOW_WATER, backoffDelay };

type Level = Pair;

/**
 * Event types Binance streams carry that Vigil does not model (yet): returned as the ignore label.
 * Spot market streams, user-data streams, and the futures ones a mixed capture may contain.
 */
const IGNORED_EVENT_TYPES: ReadonlySet<string> = new Set([
  'kline',
  '24hrTicker',
  '24hrMiniTicker',
  '1hTicker',
  '4hTicker',
  '1dTicker',
  'avgPrice',
  'outboundAccountPosition',
  'balanceUpdate',
  'executionReport',
  'listStatus',
  'listenKeyExpired',
  'eventStreamTerminated',
  'externalLockUpdate',
  'markPriceUpdate',
  'continuous_kline',
  'indexPriceKline',
  'markPriceKline',
  'forceOrder',
  'compositeIndex',
  'contractInfo',
  'assetIndexUpdate',
]);

// ---------------------------------------------------------------- field helpers

// Binance's reasons show an object or array value as String(v) (describePlain).
const { toNumber, price, nonNegative, int, id } = fieldChecks({ show: describePlain });

function side(m: unknown): Side {
  // m: "is the buyer the market maker?" — then the seller was the aggressor.
  return m === true ? 'sell' : m === false ? 'buy' : 'unknown';
}

function levels(v: unknown, ctx: string, field: string): Level[] {
  if (!Array.isArray(v)) throw new MalformedFrameError(`${ctx}: ${field} must be an array of [price, qty], got ${describePlain(v)}`);
  const n = v.length;
  const out: Level[] = new Array<Level>(n);
  for (let i = 0; i < n; i++) {
    const lvl: unknown = v[i];
    if (!Array.isArray(lvl) || lvl.length < 2) {
      throw new MalformedFrameError(`${ctx}: ${field}[${i}] must be [price, qty], got ${describePlain(JSON.stringify(lvl))}`);
    }
    // Inline checks: the messages are built only on failure (a snapshot has 2,000 levels).
    const px = toNumber(lvl[0]);
    if (!(px > 0 && px !== Infinity)) price(lvl[0], ctx, `${field}[${i}] price`);
    const q = toNumber(lvl[1]);
    if (!(q >= 0 && q !== Infinity)) nonNegative(lvl[1], ctx, `${field}[${i}] qty`);
    out[i] = [px, q];
  }
  return out;
}

// ---------------------------------------------------------------- markets

/** What differs between Binance spot and USD-M futures; parsing and sync code is shared. */
export interface BinanceMarket {
  /** Registry name and RawFrame.source. */
  readonly venue: string;
  /** Venue symbol (`BTCUSDT`, any case) → canonical; throws MalformedFrameError. */
  symbol(raw: string): string;
  /** User input (`btcusdt`, `BTC-USDT`, canonical) → the venue's symbol (`BTCUSDT`). */
  wireSymbol(input: string): string;
  /** Which documented sync rules the depth stream follows. */
  readonly sync: 'spot' | 'futures';
  /** Streams subscribed per symbol, e.g. `trade`, `bookTicker`, `depth@100ms`. */
  readonly streams: readonly string[];
  /** REST path of the depth snapshot, e.g. `/api/v3/depth`. */
  readonly restDepthPath: string;
  readonly defaultWsUrl: string;
  readonly defaultRestUrl: string;
}

export const BINANCE_WS_URL = 'wss://stream.binance.com:9443';
export const BINANCE_REST_URL = 'https://api.binance.com';
/** Depth snapshot size requested from REST. */
export const DEPTH_LIMIT = 1000;
/** Binance closes every connection after 24 h; Vigil replaces it 10 minutes before. */
export const BINANCE_MAX_CONNECTION_MS = 24 * 3_600_000 - 10 * 60_000;
/** Diffs kept per symbol while waiting for a snapshot (100 ms diffs: ~16 minutes). */
export const MAX_BUFFERED_DIFFS = 10_000;
/** bookTickers kept per symbol for the consistency report. */
const TICKER_HISTORY = 4_096;
/** After a snapshot fetch failed all its attempts, the next try comes this much later. */
export const SNAPSHOT_RETRY_MS = 30_000;

export const SPOT_STREAMS: readonly string[] = ['trade', 'bookTicker', 'depth@100ms'];

export const binanceSpotMarket: BinanceMarket = {
  venue: 'binance',
  symbol: binanceSymbol,
  wireSymbol: binanceWireSymbol,
  sync: 'spot',
  streams: SPOT_STREAMS,
  restDepthPath: '/api/v3/depth',
  defaultWsUrl: BINANCE_WS_URL,
  defaultRestUrl: BINANCE_REST_URL,
};

/** The stream's symbol part (`btcusdt@trade` → `BTCUSDT`). */
function streamSymbol(stream: string | undefined): string | undefined {
  if (stream === undefined) return undefined;
  const at = stream.indexOf('@');
  return at > 0 ? stream.slice(0, at).toUpperCase() : undefined;
}

// ---------------------------------------------------------------- normalizer

interface Ticker {
  u: number;
  b: number;
  B: number;
  a: number;
  A: number;
}

/** The rebuilt top of book right after the diff ending at update id `u`, waiting for its bookTicker. */
interface TopAt {
  u: number;
  bidPx: number;
  bidQty: number;
  askPx: number;
  askQty: number;
}

/** Book and sync state of one symbol. */
class SymbolState {
  readonly book = new OrderBook();
  /** A snapshot has been applied and every diff since was in sequence. */
  synced = false;
  /** Update id of the last applied diff (or of the snapshot). */
  lastU = 0;
  /** Diffs received while not synced, in order. */
  buffer: Book[] = [];
  /** A snapshot waiting for a diff that bridges it. */
  snapshot: Book | undefined;
  resyncs = 0;
  /** Diffs the snapshot already covered, dropped as the sync procedure says. */
  staleDiffs = 0;
  compared = 0;
  matched = 0;
  /** Recent bookTickers, in arrival (= id) order. */
  tickers: Ticker[] = [];
  /** Tops after applied diffs whose bookTicker is not known yet, in id order. */
  pending: TopAt[] = [];

  constructor(
    readonly symbol: string,
    public native: string,
  ) {}

  /** Forget the book (not the counters): it is rebuilt from the next snapshot. */
  reset(keepTickers: boolean): void {
    this.book.clear();
    this.synced = false;
    this.lastU = 0;
    this.buffer = [];
    this.snapshot = undefined;
    this.pending = [];
    if (!keepTickers) this.tickers = [];
  }
}

export interface BinanceNormalizerOptions {
  /**
   * Read spot trade, bookTicker and depthUpdate frames with the strict scanner (default true). Off,
   * every frame takes the JSON.parse path: for tests that compare the two.
   */
  scan?: boolean;
}

/** scanned()'s answer when the frame is not the scanner's: normalize() takes the JSON.parse path. */
const PARSE: unique symbol = Symbol('parse');

export class BinanceNormalizer implements Normalizer {
  readonly venue: string;
  private readonly symbols = new Map<string, SymbolState>();
  /** Symbol state of the most recent depthUpdate, for snapshots that arrive without a channel. */
  private lastDepth: SymbolState | undefined;
  /** The scanner knows the spot layouts only (futures frames carry e, E, T and pu where spot has none). */
  private readonly scanner: BinanceScan | undefined;
  /** The last venue symbol the scanner saw (text as sent) and its canonical symbol. */
  private scanRaw = '';
  private scanSymbol = '';
  /** Frames the scanner normalized (the rest took the JSON.parse path). For tests and tools. */
  scannedFrames = 0;

  constructor(
    private readonly market: BinanceMarket,
    private readonly context: NormalizerContext = {},
    options: BinanceNormalizerOptions = {},
  ) {
    this.venue = market.venue;
    this.scanner = market.sync === 'spot' && options.scan !== false ? new BinanceScan() : undefined;
  }

  bookReport(): Record<string, BookReport> {
    const out: Record<string, BookReport> = {};
    for (const [sym, st] of this.symbols) {
      out[sym] = { resyncs: st.resyncs, check: 'bbo', compared: st.compared, matched: st.matched };
      if (st.staleDiffs > 0) out[sym]!.dropped = st.staleDiffs;
    }
    return out;
  }

  /** The book Vigil rebuilt for a canonical symbol (undefined before its first frame). For tests and tools. */
  orderBook(symbol: string): { book: OrderBook; synced: boolean } | undefined {
    const st = this.symbols.get(symbol);
    return st === undefined ? undefined : { book: st.book, synced: st.synced };
  }

  normalize(frame: RawFrame, out: CanonicalEvent[]): string | undefined {
    if (this.scanner !== undefined && frame.channel !== STATUS_CHANNEL) {
      const r = this.scanned(this.scanner, frame, out);
      if (r !== PARSE) {
        this.scannedFrames++;
        return r;
      }
    }
    return this.parsed(frame, out);
  }

  /**
   * A hot frame read by the scanner. Everything is checked before anything is emitted or changed: any
   * value today's checks would reject (or a symbol that does not map) gives PARSE, and the JSON.parse
   * path then makes its events or its error message as it always has.
   */
  private scanned(scan: BinanceScan, frame: RawFrame, out: CanonicalEvent[]): string | undefined | typeof PARSE {
    const text = frame.data;
    const recvTs = frame.recvTs;
    if (typeof text !== 'string' || !(recvTs >= 0 && recvTs !== Infinity)) return PARSE;
    const kind = scan.scan(text);
    if (kind === NOT_MINE) return PARSE;
    const symbol = this.scannedSymbol(scan.symbol);
    if (symbol === undefined) return PARSE;
    if (kind === SCAN_TRADE) {
      const { price: px, qty } = scan;
      if (!(px > 0 && px !== Infinity) || !(qty >= 0 && qty !== Infinity)) return PARSE;
      out.push(this.tradeEvent(symbol, scan.tradeTime, recvTs, px, qty, scan.buyerIsMaker ? 'sell' : 'buy', scan.tradeId));
      return undefined;
    }
    if (kind === SCAN_BOOK_TICKER) {
      const { bidPx, bidQty, askPx, askQty } = scan;
      if (!(bidPx >= 0 && bidPx !== Infinity && bidQty >= 0 && bidQty !== Infinity && askPx >= 0 && askPx !== Infinity && askQty >= 0 && askQty !== Infinity)) return PARSE;
      // Spot bookTicker has no event time: ts from recvTs, as bookTicker() does without E and T.
      const q = this.quoteEvent(symbol, Math.floor(recvTs), recvTs, bidPx, bidQty, askPx, askQty, scan.lastId);
      const st = this.symbols.get(symbol) ?? this.state(symbol, scan.symbol.toUpperCase());
      return this.onQuote(st, q, out);
    }
    // SCAN_DEPTH_UPDATE
    // The scanner already turned away levels that levels() would reject.
    if (scan.firstId > scan.lastId) return PARSE;
    const d = this.diffEvent(symbol, scan.eventTime, recvTs, scan.lastId, scan.firstId, scan.bids, scan.asks);
    const st = this.symbols.get(symbol) ?? this.state(symbol, scan.symbol.toUpperCase());
    return this.onDepthUpdate(st, d, out);
  }

  /**
   * The canonical symbol of the frame's `s`, as market.symbol maps it; undefined when it does not map
   * (the JSON.parse path then reports it). The last one is kept: a stream is mostly one symbol, and the
   * scanner hands the same string object while the symbol does not change.
   */
  private scannedSymbol(raw: string): string | undefined {
    if (raw === this.scanRaw) return this.scanSymbol;
    let symbol: string;
    try {
      symbol = this.market.symbol(raw);
    } catch {
      return undefined;
    }
    this.scanRaw = raw;
    this.scanSymbol = symbol;
    return symbol;
  }

  /** Any frame, through JSON.parse and the field checks. */
  private parsed(frame: RawFrame, out: CanonicalEvent[]): string | undefined {
    const msg = parseFrame(frame);
    const recvTs = frame.recvTs;
    if (msg === null || typeof msg !== 'object') {
      throw new MalformedFrameError(`unknown structure: expected a JSON object, got ${describePlain(frame.data)}`);
    }
    if (frame.channel === STATUS_CHANNEL) return this.status(msg as Json, recvTs, out);
    if (Array.isArray(msg)) return ignoredArray(msg);

    let p = msg as Json;
    let stream: string | undefined;
    if (typeof p.stream === 'string' && 'data' in p) {
      stream = p.stream;
      const data = p.data;
      if (data === null || typeof data !== 'object') {
        throw new MalformedFrameError(`unknown structure: stream ${stream}: data is ${describePlain(data)}`);
      }
      if (Array.isArray(data)) return ignoredArray(data);
      p = data as Json;
    }

    const e = p.e;
    if (typeof e === 'string') {
      switch (e) {
        case 'trade':
        case 'aggTrade':
          out.push(this.trade(p, stream, recvTs, e === 'aggTrade'));
          return undefined;
        case 'depthUpdate':
          return this.depthUpdate(p, stream, recvTs, out);
        case 'bookTicker':
          return this.bookTicker(p, stream, recvTs, out);
        default:
          if (IGNORED_EVENT_TYPES.has(e)) return e;
          throw new MalformedFrameError(`unknown event type "${e}"`);
      }
    }
    if ('u' in p && 'b' in p && 'a' in p) return this.bookTicker(p, stream, recvTs, out);
    if ('lastUpdateId' in p) {
      // Partial book depth streams (<symbol>@depth5/10/20) have the snapshot's shape but hold only the
      // top levels: not a full snapshot, so not a book event.
      if (stream !== undefined && /@depth\d/.test(stream)) return 'partialDepth';
      return this.snapshot(p, frame, recvTs, out);
    }
    if ('result' in p && 'id' in p) return 'subscription-ack';
    if ('code' in p || 'msg' in p || 'error' in p) {
      const err = (p.error !== null && typeof p.error === 'object' ? p.error : p) as Json;
      throw new MalformedFrameError(`error frame: ${String(err.msg ?? 'no message')} (code ${describePlain(err.code)})`);
    }
    const keys = Object.keys(p).slice(0, 8).join(',');
    throw new MalformedFrameError(`unknown structure: object with keys {${keys}}${stream ? ` on stream ${stream}` : ''}`);
  }

  // ------------------------------------------------------------ symbols

  private symbolOf(p: Json, stream: string | undefined, ctx: string): string {
    const s = p.s;
    if (typeof s === 'string' && s.length > 0) return this.market.symbol(s);
    const fromStream = streamSymbol(stream);
    if (fromStream !== undefined) return this.market.symbol(fromStream);
    throw new MalformedFrameError(`${ctx}: missing symbol (s)`);
  }

  private state(symbol: string, native: string): SymbolState {
    let st = this.symbols.get(symbol);
    if (st === undefined) {
      st = new SymbolState(symbol, native);
      this.symbols.set(symbol, st);
    }
    return st;
  }

  // ------------------------------------------------------------ status frames

  private status(p: Json, recvTs: number, out: CanonicalEvent[]): string | undefined {
    const status = feedStatus(p.status, 'status frame', describePlain);
    const reason = typeof p.reason === 'string' ? p.reason : '';
    const symbols = p.symbols;
    if (!Array.isArray(symbols) || symbols.some((s) => typeof s !== 'string')) {
      throw new MalformedFrameError(`status frame: symbols must be an array of strings, got ${describePlain(JSON.stringify(symbols))}`);
    }
    const ts = Math.floor(recvTs);
    const mapped = (symbols as string[]).map((native) => [native, this.market.symbol(native)] as const);
    for (const [native, symbol] of mapped) {
      out.push(statusEvent(this.venue, symbol, status, reason, ts, recvTs));
      if (status !== 'connected') this.state(symbol, native.toUpperCase()).reset(false);
    }
    return undefined;
  }

  // ------------------------------------------------------------ trades and quotes

  /** A `trade`, or an `aggTrade` (tradeId = a, with firstTradeId/lastTradeId). */
  private trade(p: Json, stream: string | undefined, recvTs: number, agg: boolean): Trade {
    const ctx = agg ? 'aggTrade' : 'trade';
    // Arguments are evaluated left to right: the checks run, and fail, in the order they always have.
    const t = this.tradeEvent(
      this.symbolOf(p, stream, ctx),
      int(p.T, ctx, 'trade time (T)'),
      recvTs,
      price(p.p, ctx, 'price (p)'),
      nonNegative(p.q, ctx, 'qty (q)'),
      side(p.m),
      agg ? id(p.a, ctx, 'aggregate trade id (a)') : id(p.t, ctx, 'trade id (t)'),
    );
    if (agg) {
      t.firstTradeId = id(p.f, ctx, 'first trade id (f)');
      t.lastTradeId = id(p.l, ctx, 'last trade id (l)');
    }
    return t;
  }

  /** A trade event from checked values (both paths: the same keys in the same order). */
  private tradeEvent(symbol: string, ts: number, recvTs: number, px: number, qty: number, side: Side, tradeId: string): Trade {
    return { kind: 'trade', venue: this.venue, symbol, ts, recvTs, price: px, qty, side, tradeId };
  }

  private bookTicker(p: Json, stream: string | undefined, recvTs: number, out: CanonicalEvent[]): undefined {
    const ctx = 'bookTicker';
    // Spot bookTicker has no event time; futures has E (event) and T (transaction).
    const ts = p.E !== undefined ? int(p.E, ctx, 'event time (E)') : p.T !== undefined ? int(p.T, ctx, 'time (T)') : Math.floor(recvTs);
    const q = this.quoteEvent(
      this.symbolOf(p, stream, ctx),
      ts,
      recvTs,
      nonNegative(p.b, ctx, 'bid price (b)'),
      nonNegative(p.B, ctx, 'bid qty (B)'),
      nonNegative(p.a, ctx, 'ask price (a)'),
      nonNegative(p.A, ctx, 'ask qty (A)'),
      int(p.u, ctx, 'update id (u)'),
    );
    // The native symbol only matters for a new symbol's state: not worth a new string per quote.
    const st = this.symbols.get(q.symbol) ?? this.state(q.symbol, typeof p.s === 'string' ? p.s.toUpperCase() : streamSymbol(stream)!);
    return this.onQuote(st, q, out);
  }

  /** A quote event from checked values (both paths: the same keys in the same order). */
  private quoteEvent(symbol: string, ts: number, recvTs: number, bidPx: number, bidQty: number, askPx: number, askQty: number, seq: number): Quote {
    return { kind: 'quote', venue: this.venue, symbol, ts, recvTs, bidPx, bidQty, askPx, askQty, seq };
  }

  /** A bookTicker's quote out, and into the book consistency report. */
  private onQuote(st: SymbolState, q: Quote, out: CanonicalEvent[]): undefined {
    out.push(q);
    this.onTicker(st, { u: q.seq!, b: q.bidPx, B: q.bidQty, a: q.askPx, A: q.askQty });
    return undefined;
  }

  // ------------------------------------------------------------ book

  private depthUpdate(p: Json, stream: string | undefined, recvTs: number, out: CanonicalEvent[]): string | undefined {
    const ctx = 'depthUpdate';
    const symbol = this.symbolOf(p, stream, ctx);
    const d = this.diffEvent(
      symbol,
      int(p.E, ctx, 'event time (E)'),
      recvTs,
      int(p.u, ctx, 'final update id (u)'),
      int(p.U, ctx, 'first update id (U)'),
      levels(p.b, ctx, 'bids (b)'),
      levels(p.a, ctx, 'asks (a)'),
    );
    if (p.pu !== undefined) d.prevSeq = int(p.pu, ctx, 'previous update id (pu)');
    else if (this.market.sync === 'futures') throw new MalformedFrameError(`${ctx}: previous update id (pu) missing`);
    if (d.firstSeq! > d.seq) throw new MalformedFrameError(`${ctx}: first update id U=${d.firstSeq} > final update id u=${d.seq}`);
    const native = typeof p.s === 'string' ? p.s.toUpperCase() : streamSymbol(stream)!;
    return this.onDepthUpdate(this.state(symbol, native), d, out);
  }

  /** A depth diff event from checked values (both paths: the same keys in the same order). */
  private diffEvent(symbol: string, ts: number, recvTs: number, seq: number, firstSeq: number, bids: Level[], asks: Level[]): Book {
    return { kind: 'book', venue: this.venue, symbol, ts, recvTs, seq, firstSeq, snapshot: false, bids, asks };
  }

  private onDepthUpdate(st: SymbolState, d: Book, out: CanonicalEvent[]): string | undefined {
    this.lastDepth = st;
    return this.onDiff(st, d, out);
  }

  private snapshot(p: Json, frame: RawFrame, recvTs: number, out: CanonicalEvent[]): string | undefined {
    const ctx = 'depth snapshot';
    let st: SymbolState | undefined;
    const channel = frame.channel;
    if (channel !== undefined && channel.startsWith('rest:depth:') && channel.length > 11) {
      const native = channel.slice(11).toUpperCase();
      st = this.state(this.market.symbol(native), native);
    } else {
      st = this.lastDepth;
    }
    if (st === undefined) throw new MalformedFrameError('depth snapshot without symbol');
    const seq = int(p.lastUpdateId, ctx, 'lastUpdateId');
    const snap: Book = {
      kind: 'book',
      venue: this.venue,
      symbol: st.symbol,
      ts: Math.floor(recvTs),
      recvTs,
      seq,
      firstSeq: seq,
      snapshot: true,
      bids: levels(p.bids, ctx, 'bids'),
      asks: levels(p.asks, ctx, 'asks'),
    };
    // A synced book does not need it (a duplicate fetch): the diffs keep it exact.
    if (st.synced) return 'snapshot-while-synced';
    st.snapshot = snap;
    this.trySync(st, out);
    return undefined;
  }

  /** A diff for a symbol: apply it (synced), or buffer it and see whether a waiting snapshot can be applied. */
  private onDiff(st: SymbolState, d: Book, out: CanonicalEvent[]): string | undefined {
    if (st.synced) {
      if (this.market.sync === 'spot') {
        if (d.seq <= st.lastU) return 'depth-duplicate';
        if (d.firstSeq !== st.lastU + 1) {
          this.gap(st, d, out, `sequence gap: expected U=${st.lastU + 1}, got U=${d.firstSeq} (u=${d.seq})`);
          return undefined;
        }
      } else if (d.prevSeq !== st.lastU) {
        this.gap(st, d, out, `sequence gap: expected pu=${st.lastU}, got pu=${d.prevSeq} (U=${d.firstSeq}, u=${d.seq})`);
        return undefined;
      }
      this.apply(st, d, out);
      return undefined;
    }
    if (st.buffer.length >= MAX_BUFFERED_DIFFS) st.buffer.shift();
    st.buffer.push(d);
    if (st.snapshot !== undefined) this.trySync(st, out);
    return undefined;
  }

  /** With a snapshot waiting: drop the diffs it covers; if the next one bridges it, the book is synced. */
  private trySync(st: SymbolState, out: CanonicalEvent[]): void {
    const snap = st.snapshot!;
    const L = snap.seq;
    const spot = this.market.sync === 'spot';
    const buf = st.buffer;
    let i = 0;
    while (i < buf.length && (spot ? buf[i]!.seq <= L : buf[i]!.seq < L)) i++;
    st.staleDiffs += i;
    if (i >= buf.length) {
      st.buffer = [];
      return; // every buffered diff is older than the snapshot: wait for the next one
    }
    const first = buf[i]!;
    const bridges = spot ? first.firstSeq! <= L + 1 : first.firstSeq! <= L;
    if (!bridges) {
      st.snapshot = undefined;
      st.buffer = buf.slice(i);
      const reason = `snapshot lastUpdateId=${L} is older than the first buffered diff (U=${first.firstSeq})`;
      this.context.requestResync?.(st.native, reason);
      return;
    }
    st.snapshot = undefined;
    st.buffer = [];
    const book = st.book;
    book.clear();
    for (const [px, q] of snap.bids) if (q > 0) book.bids.set(px, q);
    for (const [px, q] of snap.asks) if (q > 0) book.asks.set(px, q);
    book.seq = L;
    book.synced = true;
    st.synced = true;
    st.lastU = L;
    out.push(snap);
    out.push(statusEvent(this.venue, st.symbol, 'book_synced', `snapshot lastUpdateId=${L}`, snap.ts, snap.recvTs));
    this.apply(st, first, out);
    for (let j = i + 1; j < buf.length; j++) this.onDiff(st, buf[j]!, out);
  }

  private apply(st: SymbolState, d: Book, out: CanonicalEvent[]): void {
    const book = st.book;
    book.bids.setAll(d.bids);
    book.asks.setAll(d.asks);
    book.seq = d.seq;
    st.lastU = d.seq;
    out.push(d);
    const bids = book.bids;
    const asks = book.asks;
    const hasBid = bids.length > 0;
    const hasAsk = asks.length > 0;
    const top: TopAt = { u: d.seq, bidPx: hasBid ? bids.bestPrice : 0, bidQty: hasBid ? bids.bestQty : 0, askPx: hasAsk ? asks.bestPrice : 0, askQty: hasAsk ? asks.bestQty : 0 };
    const last = st.tickers[st.tickers.length - 1];
    if (last !== undefined && last.u > d.seq) this.compare(st, top);
    else st.pending.push(top);
  }

  private gap(st: SymbolState, d: Book, out: CanonicalEvent[], reason: string): void {
    st.resyncs++;
    st.reset(true);
    st.buffer.push(d); // it may bridge the next snapshot
    out.push(statusEvent(this.venue, st.symbol, 'book_reset', reason, d.ts, d.recvTs));
    this.context.requestResync?.(st.native, reason);
  }

  // ------------------------------------------------------------ consistency with bookTicker

  private onTicker(st: SymbolState, t: Ticker): void {
    const tickers = st.tickers;
    if (tickers.length >= TICKER_HISTORY) tickers.splice(0, TICKER_HISTORY / 2);
    tickers.push(t);
    const pending = st.pending;
    if (pending.length === 0 || pending[0]!.u >= t.u) return;
    let n = 0;
    while (n < pending.length && pending[n]!.u < t.u) this.compare(st, pending[n++]!);
    st.pending = n === pending.length ? [] : pending.slice(n);
  }

  /** Compares the top after update `top.u` with the latest bookTicker whose id is <= top.u. */
  private compare(st: SymbolState, top: TopAt): void {
    const tickers = st.tickers;
    for (let i = tickers.length - 1; i >= 0; i--) {
      const t = tickers[i]!;
      if (t.u > top.u) continue;
      st.compared++;
      if (t.b === top.bidPx && t.B === top.bidQty && t.a === top.askPx && t.A === top.askQty) st.matched++;
      return;
    }
    // No bookTicker at or before this update seen (start of the stream): not comparable.
  }
}

/** All-market array streams (`!ticker@arr`, `!miniTicker@arr`) are not modelled. */
function ignoredArray(arr: unknown[]): string {
  const first: unknown = arr[0];
  if (arr.length === 0) return 'empty-array';
  if (first !== null && typeof first === 'object' && typeof (first as Json).e === 'string') {
    const e = (first as Json).e as string;
    if (IGNORED_EVENT_TYPES.has(e)) return e;
  }
  throw new MalformedFrameError(`unknown structure: array of ${arr.length}`);
}

// ---------------------------------------------------------------- live connection

/** The combined-stream URL for venue-native symbols and per-symbol streams (lower case). */
export function combinedStreamUrl(wsUrl: string, nativeSymbols: readonly string[], streams: readonly string[]): string {
  const all = nativeSymbols.flatMap((s) => {
    const l = s.toLowerCase();
    return streams.map((st) => `${l}@${st}`);
  });
  return `${wsUrl.replace(/\/+$/, '')}/stream?streams=${all.join('/')}`;
}

/** The spot combined-stream URL for the symbols (trade, bookTicker, depth@100ms each). */
export function binanceStreamUrl(wsUrl: string, symbols: readonly string[]): string {
  return combinedStreamUrl(wsUrl, symbols.map(binanceWireSymbol), SPOT_STREAMS);
}

/** `{"stream":"btcusdt@depth@100ms",...` → `btcusdt@depth@100ms` without parsing the whole frame. */
function streamName(text: string): string | undefined {
  const prefix = '{"stream":"';
  if (!text.startsWith(prefix)) return undefined;
  const end = text.indexOf('"', prefix.length);
  return end > 0 ? text.slice(prefix.length, end) : undefined;
}

/**
 * The venue protocol of a Binance market: streams in the URL (nothing to subscribe after open), a REST
 * depth snapshot fetched after each symbol's first depth diff on every connection and on resync
 * (emitted with channel `rest:depth:<SYMBOL>`), a planned reconnect before the 24 h limit. Binance
 * sends the pings; ws answers them.
 */
export function binanceProtocol(market: BinanceMarket): VenueProtocol {
  /** Per connection: symbols whose snapshot has been requested. */
  const requested = new WeakMap<ConnectionContext, Set<string>>();

  function fetchSnapshot(sym: string, ctx: ConnectionContext): void {
    const url = `${ctx.restUrl}${market.restDepthPath}?symbol=${sym}&limit=${DEPTH_LIMIT}`;
    ctx.fetchText(url).then(
      (text) => ctx.emit(text, `rest:depth:${sym}`),
      (err: unknown) => {
        if (err instanceof FetchCancelledError) return;
        ctx.log(`${market.venue}: depth snapshot for ${sym} failed, next try in ${SNAPSHOT_RETRY_MS / 1000} s`, { symbol: sym, error: (err as Error).message });
        setTimeout(() => fetchSnapshot(sym, ctx), SNAPSHOT_RETRY_MS).unref();
      },
    );
  }

  return {
    venue: market.venue,
    defaultWsUrl: market.defaultWsUrl,
    defaultRestUrl: market.defaultRestUrl,
    nativeSymbols(symbols: string[]): string[] {
      return symbols.map((s) => {
        const w = market.wireSymbol(s);
        try {
          market.symbol(w); // fail fast on symbols we could never normalize
        } catch (err) {
          throw new VigilError(ERR.FEED, `${market.venue}: cannot subscribe to ${s}: ${(err as Error).message}`, 400, { symbol: s });
        }
        return w;
      });
    },
    url: (wsUrl, symbols) => combinedStreamUrl(wsUrl, symbols, market.streams),
    subscribeMessages: () => [],
    subscribeRatePerSec: 5,
    maxConnectionMs: BINANCE_MAX_CONNECTION_MS,
    onOpen(ctx) {
      requested.set(ctx, new Set());
    },
    onFrame(data, ctx) {
      const stream = streamName(data);
      if (stream === undefined) return true;
      const at = stream.indexOf('@');
      if (at <= 0 || !stream.startsWith('@depth', at) || /^@depth\d/.test(stream.slice(at))) return true;
      const sym = stream.slice(0, at).toUpperCase();
      const set = requested.get(ctx);
      if (set !== undefined && !set.has(sym)) {
        set.add(sym);
        fetchSnapshot(sym, ctx);
      }
      return true;
    },
    resync(symbol, ctx) {
      requested.get(ctx)?.add(symbol);
      fetchSnapshot(symbol, ctx);
    },
  };
}

export const binanceSpotProtocol: VenueProtocol = binanceProtocol(binanceSpotMarket);

/** A VenueAdapter for a Binance market. */
export function binanceMarketAdapter(market: BinanceMarket, protocol: VenueProtocol = binanceProtocol(market)): VenueAdapter {
  return {
    name: market.venue,
    createNormalizer: (context?: NormalizerContext) => new BinanceNormalizer(market, context),
    connect: (options: LiveFeedOptions) => connectVenue(protocol, options),
  };
}

export const binanceAdapter: VenueAdapter = binanceMarketAdapter(binanceSpotMarket, binanceSpotProtocol);
