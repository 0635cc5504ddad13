/**
 * Kraken spot: one normalizer for both public WebSocket formats, and a live connection (WebSocket v2).
 *
 * The format is recognised per frame by its shape, so a recording may hold either (or both):
 *
 * WebSocket v2 (wss://ws.kraken.com/v2, https://docs.kraken.com/api/docs/websocket-v2/book) — objects:
 * - `{"channel":"trade","type":"snapshot"|"update","data":[{symbol,side,price,qty,ord_type,trade_id,timestamp}]}`
 *   → trade (side is the taker's side; tradeId = trade_id; trades whose id is not above the last one
 *   seen for the symbol are skipped, so the snapshot a re-subscription sends is not counted twice);
 * - `{"channel":"ticker",…,"data":[{symbol,bid,bid_qty,ask,ask_qty,…,timestamp?}]}` → quote;
 * - `{"channel":"book","type":"snapshot"|"update","data":[{symbol,bids:[{price,qty}],asks,checksum,timestamp}]}`
 *   → book (snapshot / delta), CRC32 checked on snapshots and updates;
 * - `{"channel":"instrument",…,"data":{"pairs":[{symbol,price_precision,qty_precision,…}]}}` → learns
 *   each pair's precision (for checksums), labelled `instrument`;
 * - `heartbeat`, `status` channels and method responses (`subscribe`/`unsubscribe` acks, `pong`) are
 *   labelled; a response with `success:false` is an error frame (MalformedFrameError with its text).
 *
 * WebSocket v1 (wss://ws.kraken.com, what cryptofeed recorded) — arrays
 * `[channelID, payload…, channelName, pair]` and event objects:
 * - trade  `[id, [[price, volume, time, side b/s, orderType, misc], …], "trade", "XBT/USD"]` → trades
 *   (v1 has no trade id: tradeId = `<time>-<index in message>`);
 * - ticker `[id, {a:[price, wholeLotVolume, lotVolume], b:[…], c, v, …}, "ticker", pair]` → quote;
 * - spread `[id, [bid, ask, time, bidVolume, askVolume], "spread", pair]` → quote;
 * - book   `[id, {as:[[price, volume, time]…], bs:[…]}, "book-N", pair]` → snapshot;
 *          `[id, {a:[[price, volume, time, "r"?]…]}, {b:[…], c:"<crc32>"}, "book-N", pair]` → delta (asks
 *          and bids may come in one object or two; "r" marks a republished level; `c` is checked);
 * - events `systemStatus`, `subscriptionStatus`, `heartbeat`, `pong` → labels; `status:"error"` → error.
 *
 * REST responses recorded with a frame channel (`rest:/0/public/AssetPairs…`) give the pairs' decimals.
 *
 * Books. Kraken sends no sequence numbers: integrity comes from the CRC32 checksum of the top 10 levels
 * (asks ascending, then bids descending; per level price then qty, each with the decimal point and the
 * leading zeros removed). Books keep only the subscribed depth (the subscription ack's depth, v1 `book-N`,
 * else the depth Vigil subscribes with), truncated after every message as Kraken documents; levels cut
 * off by truncation are sent as removals (qty 0) in the delta, so a consumer rebuilding the book from
 * the events has the same book. A checksum mismatch → `book_reset` status, the book is cleared, the
 * connection is asked to resync that symbol (unsubscribe + subscribe), and the book comes back with the
 * next snapshot (`book_synced`). `seq` of book events is Vigil's count of book messages for the symbol
 * (Kraken has no update ids).
 *
 * Checksum text. v1 sends prices and quantities as strings: they are hashed as sent. v2 sends them as
 * JSON numbers, which JSON.parse turns into doubles (0.5660 → 0.566). The number literals are therefore
 * read from the frame's own text (a scan of the `bids`/`asks` arrays, checked against the parsed
 * values): Kraken writes them with the pair's full precision, so the literal is what it hashed. The
 * digits are then padded (never cut) to the pair's precision when it is known — from the `instrument`
 * channel the live feed subscribes to first, a REST AssetPairs response, or the normalizer's options —
 * else to the most decimals seen in the symbol's literals. This survives a recorder that re-serialised
 * the JSON and dropped trailing zeros, as long as the precision is known. A level without usable text
 * and without a known precision cannot be hashed: that check is skipped (never counted as a mismatch).
 *
 * The normalizer is on the replay hot path: one JSON.parse per frame, hand-written checks, no zod.
 */
import type { Book, CanonicalEvent, Quote, Side, Trade } from '../core/events.ts';
import { ERR, VigilError } from '../core/errors.ts';
import { OrderBook, crc32 } from './book/order-book.ts';
import type { ConnectionContext, VenueProtocol } from './connection-types.ts';
import { connectVenue } from './connection.ts';
import { array, describe, feedStatus, levelPairs, nonNegative, object, parseFrame, price, statusEvent, str, toNumber, type Json, type Pair } from './normalize-util.ts';
import { MalformedFrameError, STATUS_CHANNEL } from './types.ts';
import type { BookReport, LiveFeedOptions, Normalizer, NormalizerContext, RawFrame, StatusFrameData, VenueAdapter } from './types.ts';

const VENUE = 'kraken';

export const KRAKEN_WS_URL = 'wss://ws.kraken.com/v2';
export const KRAKEN_REST_URL = 'https://api.kraken.com';
/** Book depth the live feed subscribes with (Kraken allows 10, 25, 100, 500, 1000). */
export const KRAKEN_BOOK_DEPTH = 100;
/** Levels per side that Kraken's checksum covers, whatever the depth. */
export const KRAKEN_CHECKSUM_LEVELS = 10;
/** Kraken's v2 default depth when a subscription names none. */
const V2_DEFAULT_DEPTH = 10;
/** Application ping period: Kraken v2 answers {"method":"ping"} with {"method":"pong"}. */
export const KRAKEN_PING_INTERVAL_MS = 15_000;

// ---------------------------------------------------------------- symbols

/** Kraken's legacy asset names (v1, REST) → the common ones (v2 already uses these). */
const ASSET_ALIASES: Readonly<Record<string, string>> = { XBT: 'BTC', XDG: 'DOGE' };
/** Quote assets, for splitting an input without a separator (`BTCUSD`); longest match first. */
const QUOTE_ASSETS: readonly string[] = ['USDT', 'USDC', 'PYUSD', 'USD', 'EUR', 'GBP', 'CAD', 'JPY', 'CHF', 'AUD', 'AED', 'XBT', 'BTC', 'ETH', 'DAI', 'DOT', 'POL']
  .sort((a, b) => b.length - a.length);

const MEMO_LIMIT = 10_000;
const symbolMemo = new Map<string, string>();

function canonicalAsset(a: string): string {
  const up = a.toUpperCase().replace(/\./g, ''); // ETH2.S → ETH2S (canonical symbols are [A-Z0-9])
  return ASSET_ALIASES[up] ?? up;
}

/** Kraken pair name → canonical: `XBT/USD` → `BTC-USD`, `XDG/EUR` → `DOGE-EUR`, `BTC/USD` → `BTC-USD`. */
export function krakenSymbol(native: string): string {
  const hit = symbolMemo.get(native);
  if (hit !== undefined) return hit;
  if (typeof native !== 'string' || native.length === 0) throw new MalformedFrameError('missing pair');
  const slash = native.indexOf('/');
  if (slash <= 0 || slash === native.length - 1 || native.indexOf('/', slash + 1) >= 0) {
    throw new MalformedFrameError(`invalid pair ${describe(native)}: expected BASE/QUOTE`);
  }
  const out = `${canonicalAsset(native.slice(0, slash))}-${canonicalAsset(native.slice(slash + 1))}`;
  if (!/^[A-Z0-9]+-[A-Z0-9]+$/.test(out)) throw new MalformedFrameError(`invalid pair ${describe(native)}`);
  if (symbolMemo.size >= MEMO_LIMIT) symbolMemo.clear();
  symbolMemo.set(native, out);
  return out;
}

/**
 * User input or canonical symbol → Kraken v2 pair: `BTC-USD`, `btc/usd`, `XBT/USD`, `XBTUSD` → `BTC/USD`.
 * Throws VigilError (VIGIL_ERR_FEED, 400) for input it cannot split.
 */
export function krakenWireSymbol(input: string): string {
  const s = input.trim().toUpperCase();
  let base: string | undefined;
  let quote: string | undefined;
  const parts = s.split(/[-/_]/);
  if (parts.length === 2) {
    [base, quote] = parts;
  } else if (parts.length === 1) {
    const q = QUOTE_ASSETS.find((x) => s.length > x.length && s.endsWith(x));
    if (q !== undefined) {
      base = s.slice(0, s.length - q.length);
      quote = q;
    }
  }
  if (base === undefined || quote === undefined || !/^[A-Z0-9.]+$/.test(base) || !/^[A-Z0-9.]+$/.test(quote)) {
    throw new VigilError(ERR.FEED, `kraken: cannot read symbol "${input}" (expected BASE-QUOTE, e.g. BTC-USD)`, 400, { symbol: input });
  }
  return `${ASSET_ALIASES[base] ?? base}/${ASSET_ALIASES[quote] ?? quote}`;
}

// ---------------------------------------------------------------- field helpers

const SECONDS_RE = /^\d{1,12}(?:\.\d+)?$/;
/** `"1618678142.557535"` (epoch seconds as text) → 1618678142557.535 ms, exact to the double. */
function secondsTextToMs(v: unknown, ctx: string, field: string): number {
  if (typeof v === 'string' && SECONDS_RE.test(v)) {
    const dot = v.indexOf('.');
    if (dot < 0) return Number(v) * 1000;
    const frac = v.slice(dot + 1);
    const ms = `${v.slice(0, dot)}${frac.slice(0, 3).padEnd(3, '0')}`;
    return frac.length > 3 ? Number(`${ms}.${frac.slice(3)}`) : Number(ms);
  }
  throw new MalformedFrameError(`${ctx}: ${field} must be epoch seconds as text, got ${describe(v)}`);
}

const ISO_RE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z$/;
/** RFC 3339 UTC with up to nanoseconds → epoch ms (fractional, microseconds kept). */
function isoToMs(v: unknown, ctx: string, field: string): number {
  if (typeof v === 'string') {
    const m = ISO_RE.exec(v);
    if (m !== null) {
      const whole = Date.parse(`${m[1]}Z`);
      if (Number.isFinite(whole) && whole >= 0) {
        const frac = m[2];
        if (frac === undefined) return whole;
        const digits = frac.slice(1);
        const ms = digits.slice(0, 3).padEnd(3, '0');
        return Number(`${whole + Number(ms)}${digits.length > 3 ? `.${digits.slice(3)}` : ''}`);
      }
    }
  }
  throw new MalformedFrameError(`${ctx}: ${field} must be an RFC 3339 UTC time, got ${describe(v)}`);
}

function precisionValue(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 20 ? v : undefined;
}

function decimalsOf(text: string): number {
  const dot = text.indexOf('.');
  return dot < 0 ? 0 : text.length - dot - 1;
}

// ---------------------------------------------------------------- checksum

/**
 * The digits Kraken hashes for one price or qty: the text with the decimal point removed and leading
 * zeros stripped, after padding the decimals with zeros up to `precision` (never cutting any). Without
 * a usable text the value is formatted with `precision`; undefined when neither is available.
 */
export function checksumDigits(text: string | undefined, value: number, precision: number | undefined): string | undefined {
  let t: string;
  if (text !== undefined && text.length > 0 && !/[eE]/.test(text)) {
    t = text;
    if (precision !== undefined) {
      const d = decimalsOf(t);
      if (d < precision) t = `${d === 0 ? `${t}.` : t}${'0'.repeat(precision - d)}`;
    }
  } else if (precision !== undefined) {
    t = value.toFixed(precision);
    if (/[eE]/.test(t)) return undefined;
  } else {
    return undefined;
  }
  let i = 0;
  const digits = t.replace('.', '');
  while (i < digits.length - 1 && digits.charCodeAt(i) === 48 /* 0 */) i++;
  return digits.slice(i);
}

/** Precision of a pair: digits after the point for prices and quantities. */
export interface PairPrecision {
  price: number;
  qty: number;
}

/**
 * The checksum string of a book (top 10 asks ascending, then top 10 bids descending), or undefined
 * when a level cannot be rendered (no text and no known precision).
 */
export function krakenChecksumText(book: OrderBook, precision: Partial<PairPrecision> = {}): string | undefined {
  let s = '';
  for (const side of [book.asks, book.bids]) {
    const n = Math.min(KRAKEN_CHECKSUM_LEVELS, side.length);
    for (let i = 0; i < n; i++) {
      const p = checksumDigits(side.priceTextAt(i), side.priceAt(i), precision.price);
      const q = checksumDigits(side.qtyTextAt(i), side.qtyAt(i), precision.qty);
      if (p === undefined || q === undefined) return undefined;
      s += p + q;
    }
  }
  return s;
}

/** CRC32 (unsigned) of the book's checksum string; undefined when it cannot be rendered. */
export function krakenChecksum(book: OrderBook, precision: Partial<PairPrecision> = {}): number | undefined {
  const s = krakenChecksumText(book, precision);
  return s === undefined ? undefined : crc32(s);
}

// ---------------------------------------------------------------- v2 number literals

interface LiteralLevel {
  p: string;
  q: string;
}

const SIDE_ARRAY_RE = /"(bids|asks)"\s*:\s*\[/g;
const LEVEL_OBJECT_RE = /\{([^{}]*)\}/g;
const PRICE_LITERAL_RE = /"price"\s*:\s*"?([-+0-9.eE]+)"?/;
const QTY_LITERAL_RE = /"qty"\s*:\s*"?([-+0-9.eE]+)"?/;

/**
 * The literal text of every level's price and qty in the frame, per `bids`/`asks` array in document
 * order (the k-th `bids` array is data[k].bids). A scan of the text, not a second JSON parse; callers
 * check each literal against the parsed value and ignore the texts of an array that does not match.
 */
function scanLevelLiterals(raw: string): { bids: LiteralLevel[][]; asks: LiteralLevel[][] } {
  const out = { bids: [] as LiteralLevel[][], asks: [] as LiteralLevel[][] };
  SIDE_ARRAY_RE.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = SIDE_ARRAY_RE.exec(raw)) !== null) {
    const start = SIDE_ARRAY_RE.lastIndex;
    const end = raw.indexOf(']', start);
    if (end < 0) break;
    const segment = raw.slice(start, end);
    const levels: LiteralLevel[] = [];
    LEVEL_OBJECT_RE.lastIndex = 0;
    let o: RegExpExecArray | null;
    while ((o = LEVEL_OBJECT_RE.exec(segment)) !== null) {
      const body = o[1] ?? '';
      levels.push({ p: PRICE_LITERAL_RE.exec(body)?.[1] ?? '', q: QTY_LITERAL_RE.exec(body)?.[1] ?? '' });
    }
    (m[1] === 'bids' ? out.bids : out.asks).push(levels);
    SIDE_ARRAY_RE.lastIndex = end;
  }
  return out;
}

// ---------------------------------------------------------------- normalizer

interface ParsedLevel {
  price: number;
  qty: number;
  priceText?: string;
  qtyText?: string;
}

interface SymbolState {
  readonly symbol: string;
  /** The pair as the venue last named it (for resync requests). */
  native: string;
  readonly book: OrderBook;
  depth: number | undefined;
  /** Book messages seen (Vigil's seq for book events). */
  bookMsgs: number;
  resyncs: number;
  compared: number;
  matched: number;
  /** A ticker is subscribed/seen: quotes come from it, not derived from the book. */
  hasTicker: boolean;
  lastBidPx: number;
  lastBidQty: number;
  lastAskPx: number;
  lastAskQty: number;
  lastTradeId: number | undefined;
  /** Most decimals seen in the symbol's price and qty literals. */
  seenPriceDecimals: number;
  seenQtyDecimals: number;
  /** Whether any level of the symbol came with its literal text. */
  seenLiterals: boolean;
}

/** Per-symbol book figures: `compared`/`matched` count the venue checksums verified and matched. */
export interface KrakenBookReport extends BookReport {
  compared: number;
  matched: number;
}

export interface KrakenNormalizerOptions {
  /** Precision per pair (canonical `BTC-USD` or Kraken `BTC/USD`), overriding what the feed tells. */
  precision?: Record<string, PairPrecision>;
  /** Depth assumed for v2 books whose subscription ack was not seen (default: KRAKEN_BOOK_DEPTH). */
  defaultDepth?: number;
}

export class KrakenNormalizer implements Normalizer {
  readonly venue = VENUE;
  private readonly states = new Map<string, SymbolState>();
  /** Precision per canonical symbol from the instrument channel or REST AssetPairs. */
  private readonly venuePrecision = new Map<string, PairPrecision>();
  private readonly configuredPrecision = new Map<string, PairPrecision>();
  private readonly defaultDepth: number;

  constructor(
    private readonly context: NormalizerContext = {},
    options: KrakenNormalizerOptions = {},
  ) {
    for (const [k, v] of Object.entries(options.precision ?? {})) {
      this.configuredPrecision.set(k.includes('/') ? krakenSymbol(k) : k.toUpperCase(), v);
    }
    this.defaultDepth = options.defaultDepth ?? KRAKEN_BOOK_DEPTH;
  }

  normalize(frame: RawFrame, out: CanonicalEvent[]): string | undefined {
    const msg = parseFrame(frame);
    const recvTs = frame.recvTs;
    const channel = frame.channel;
    if (channel !== undefined) {
      if (channel === STATUS_CHANNEL) return this.statusFrame(msg, recvTs, out);
      if (channel.startsWith('rest:')) return this.rest(channel, msg);
    }
    if (Array.isArray(msg)) return this.v1Array(msg, recvTs, out);
    if (msg === null || typeof msg !== 'object') {
      throw new MalformedFrameError(`unknown structure: expected a JSON object or array, got ${describe(frame.data)}`);
    }
    const o = msg as Json;
    if (typeof o.channel === 'string') return this.v2Channel(o, o.channel, frame.data, recvTs, out);
    if (typeof o.method === 'string') return this.v2Method(o, o.method);
    if (typeof o.event === 'string') return this.v1Event(o, o.event);
    if (o.success === false || 'error' in o) throw new MalformedFrameError(`error frame: ${describe(o.error)}`);
    const keys = Object.keys(o).slice(0, 8).join(',');
    throw new MalformedFrameError(`unknown structure: object with keys {${keys}}`);
  }

  /** Per canonical symbol: resyncs, and checksums compared / matched (v1 `c`, v2 `checksum`). */
  bookReport(): Record<string, KrakenBookReport> {
    const r: Record<string, KrakenBookReport> = {};
    for (const s of this.states.values()) {
      if (s.bookMsgs === 0 && s.resyncs === 0) continue;
      r[s.symbol] = { resyncs: s.resyncs, check: 'checksum', compared: s.compared, matched: s.matched };
    }
    return r;
  }

  /** The rebuilt book of a canonical symbol (tests, diagnostics). */
  book(symbol: string): OrderBook | undefined {
    return this.states.get(symbol)?.book;
  }

  /** Precision used for a symbol's checksum text: configured, else the venue's, else learned from literals. */
  precisionOf(symbol: string): PairPrecision | undefined {
    const s = this.states.get(symbol);
    const p = this.configuredPrecision.get(symbol) ?? this.venuePrecision.get(symbol);
    if (p !== undefined) return p;
    if (s === undefined || !s.seenLiterals) return undefined;
    return { price: s.seenPriceDecimals, qty: s.seenQtyDecimals };
  }

  private state(native: string): SymbolState {
    const symbol = krakenSymbol(native);
    let s = this.states.get(symbol);
    if (s === undefined) {
      s = {
        symbol,
        native,
        book: new OrderBook(),
        depth: undefined,
        bookMsgs: 0,
        resyncs: 0,
        compared: 0,
        matched: 0,
        hasTicker: false,
        lastBidPx: NaN,
        lastBidQty: NaN,
        lastAskPx: NaN,
        lastAskQty: NaN,
        lastTradeId: undefined,
        seenPriceDecimals: 0,
        seenQtyDecimals: 0,
        seenLiterals: false,
      };
      this.states.set(symbol, s);
    } else {
      s.native = native;
    }
    return s;
  }

  // ------------------------------------------------------------ status frames and REST

  private statusFrame(msg: unknown, recvTs: number, out: CanonicalEvent[]): string | undefined {
    const ctx = 'status frame';
    const d = object(msg, ctx, 'data') as Partial<StatusFrameData>;
    const status = feedStatus(d.status, ctx);
    const reason = typeof d.reason === 'string' ? d.reason : '';
    const symbols = array(d.symbols, ctx, 'symbols');
    const ts = Math.floor(recvTs);
    for (const raw of symbols) {
      const native = str(raw, ctx, 'symbol');
      const s = this.state(native);
      out.push(statusEvent(VENUE, s.symbol, status, reason, ts, recvTs));
      if (status !== 'connected') this.dropBook(s);
    }
    return undefined;
  }

  private rest(channel: string, msg: unknown): string {
    const path = channel.slice(5);
    const ctx = `REST ${path}`;
    const o = object(msg, ctx, 'response');
    const errors = o.error;
    if (Array.isArray(errors) && errors.length > 0) throw new MalformedFrameError(`${ctx}: error ${describe(errors)}`);
    if (path.startsWith('/0/public/AssetPairs')) {
      const result = object(o.result, ctx, 'result');
      for (const info of Object.values(result)) {
        if (info === null || typeof info !== 'object') continue;
        const p = info as Json;
        const wsname = p.wsname;
        const pd = precisionValue(p.pair_decimals);
        const ld = precisionValue(p.lot_decimals);
        if (typeof wsname !== 'string' || pd === undefined || ld === undefined) continue; // dark-pool pairs have no wsname
        let symbol: string;
        try {
          symbol = krakenSymbol(wsname);
        } catch {
          continue;
        }
        this.venuePrecision.set(symbol, { price: pd, qty: ld });
      }
      return 'asset-pairs';
    }
    if (path.startsWith('/0/public/Assets')) return 'assets';
    throw new MalformedFrameError(`${ctx}: unsupported REST response`);
  }

  // ------------------------------------------------------------ v2

  private v2Method(o: Json, method: string): string {
    if (o.success === false || (typeof o.error === 'string' && o.error.length > 0)) {
      const sym = typeof o.symbol === 'string' ? ` for ${o.symbol}` : '';
      throw new MalformedFrameError(`${method} failed${sym}: ${typeof o.error === 'string' ? o.error : describe(o.error)}`);
    }
    switch (method) {
      case 'pong':
        return 'pong';
      case 'subscribe':
      case 'unsubscribe': {
        const r = o.result;
        if (r !== null && typeof r === 'object' && !Array.isArray(r)) {
          const res = r as Json;
          if (typeof res.symbol === 'string') {
            const s = this.state(res.symbol);
            if (res.channel === 'book') {
              if (method === 'subscribe') {
                const depth = res.depth;
                s.depth = typeof depth === 'number' && Number.isInteger(depth) && depth > 0 ? depth : V2_DEFAULT_DEPTH;
              }
            } else if (res.channel === 'ticker') {
              s.hasTicker = method === 'subscribe';
            }
          }
        }
        return method === 'subscribe' ? 'subscription-ack' : 'unsubscription-ack';
      }
      default:
        return `${method}-response`;
    }
  }

  private v2Channel(o: Json, channel: string, raw: string, recvTs: number, out: CanonicalEvent[]): string | undefined {
    switch (channel) {
      case 'heartbeat':
        return 'heartbeat';
      case 'status':
        return 'system-status';
      case 'trade':
        this.v2Trades(o, recvTs, out);
        return undefined;
      case 'ticker':
        this.v2Ticker(o, recvTs, out);
        return undefined;
      case 'book':
        return this.v2Book(o, raw, recvTs, out);
      case 'instrument':
        this.v2Instrument(o);
        return 'instrument';
      case 'ohlc':
      case 'level3':
      case 'executions':
      case 'balances':
        return channel;
      default:
        throw new MalformedFrameError(`unknown channel "${channel}"`);
    }
  }

  private v2Trades(o: Json, recvTs: number, out: CanonicalEvent[]): void {
    const ctx = 'trade';
    const data = array(o.data, ctx, 'data');
    const trades: Trade[] = [];
    const lastIds = new Map<SymbolState, number>();
    for (let i = 0; i < data.length; i++) {
      const t = object(data[i], ctx, `data[${i}]`);
      const s = this.state(str(t.symbol, ctx, `data[${i}].symbol`));
      const side = t.side;
      if (side !== 'buy' && side !== 'sell') throw new MalformedFrameError(`${ctx}: data[${i}].side must be buy or sell, got ${describe(side)}`);
      const id = t.trade_id;
      if (!(typeof id === 'number' && Number.isSafeInteger(id) && id >= 0)) {
        throw new MalformedFrameError(`${ctx}: data[${i}].trade_id must be a non-negative integer, got ${describe(id)}`);
      }
      const trade: Trade = {
        kind: 'trade',
        venue: VENUE,
        symbol: s.symbol,
        ts: isoToMs(t.timestamp, ctx, `data[${i}].timestamp`),
        recvTs,
        price: price(t.price, ctx, `data[${i}].price`),
        qty: nonNegative(t.qty, ctx, `data[${i}].qty`),
        side,
        tradeId: String(id),
      };
      // Trade ids rise per pair: a re-subscription's snapshot repeats trades already emitted.
      const last = lastIds.get(s) ?? s.lastTradeId;
      if (last !== undefined && id <= last) continue;
      lastIds.set(s, id);
      trades.push(trade);
    }
    // Validated as a whole: a broken entry rejects the frame without emitting half of it.
    for (const [s, id] of lastIds) s.lastTradeId = id;
    for (const t of trades) out.push(t);
  }

  private v2Ticker(o: Json, recvTs: number, out: CanonicalEvent[]): void {
    const ctx = 'ticker';
    const data = array(o.data, ctx, 'data');
    const quotes: Quote[] = [];
    const states: SymbolState[] = [];
    for (let i = 0; i < data.length; i++) {
      const t = object(data[i], ctx, `data[${i}]`);
      const s = this.state(str(t.symbol, ctx, `data[${i}].symbol`));
      quotes.push({
        kind: 'quote',
        venue: VENUE,
        symbol: s.symbol,
        ts: t.timestamp !== undefined ? isoToMs(t.timestamp, ctx, `data[${i}].timestamp`) : Math.floor(recvTs),
        recvTs,
        bidPx: nonNegative(t.bid, ctx, `data[${i}].bid`),
        bidQty: nonNegative(t.bid_qty, ctx, `data[${i}].bid_qty`),
        askPx: nonNegative(t.ask, ctx, `data[${i}].ask`),
        askQty: nonNegative(t.ask_qty, ctx, `data[${i}].ask_qty`),
      });
      states.push(s);
    }
    for (const s of states) s.hasTicker = true;
    for (const q of quotes) out.push(q);
  }

  private v2Instrument(o: Json): void {
    const ctx = 'instrument';
    const data = object(o.data, ctx, 'data');
    const pairs = data.pairs;
    if (pairs === undefined) return;
    for (const p of array(pairs, ctx, 'data.pairs')) {
      if (p === null || typeof p !== 'object') continue;
      const pair = p as Json;
      const pp = precisionValue(pair.price_precision);
      const qp = precisionValue(pair.qty_precision);
      if (typeof pair.symbol !== 'string' || pp === undefined || qp === undefined) continue;
      let symbol: string;
      try {
        symbol = krakenSymbol(pair.symbol);
      } catch {
        continue; // a pair name Vigil cannot represent is not one it subscribes to
      }
      this.venuePrecision.set(symbol, { price: pp, qty: qp });
    }
  }

  private v2Book(o: Json, raw: string, recvTs: number, out: CanonicalEvent[]): string | undefined {
    const type = o.type;
    if (type !== 'snapshot' && type !== 'update') throw new MalformedFrameError(`book: type must be snapshot or update, got ${describe(type)}`);
    const ctx = `book ${type}`;
    const data = array(o.data, ctx, 'data');
    let literals: { bids: LiteralLevel[][]; asks: LiteralLevel[][] } | undefined;
    // Validate everything first: a broken entry must not leave a book half updated.
    const entries: { s: SymbolState; bids: ParsedLevel[]; asks: ParsedLevel[]; checksum: number; ts: number }[] = [];
    for (let i = 0; i < data.length; i++) {
      const d = object(data[i], ctx, `data[${i}]`);
      const s = this.state(str(d.symbol, ctx, `data[${i}].symbol`));
      literals ??= scanLevelLiterals(raw);
      const bids = v2Levels(d.bids, literals.bids[i], ctx, `data[${i}].bids`);
      const asks = v2Levels(d.asks, literals.asks[i], ctx, `data[${i}].asks`);
      const cs = d.checksum;
      if (!(typeof cs === 'number' && Number.isInteger(cs) && cs >= 0 && cs <= 0xffffffff)) {
        throw new MalformedFrameError(`${ctx}: data[${i}].checksum must be an unsigned 32-bit integer, got ${describe(cs)}`);
      }
      const ts = d.timestamp !== undefined ? isoToMs(d.timestamp, ctx, `data[${i}].timestamp`) : Math.floor(recvTs);
      entries.push({ s, bids, asks, checksum: cs, ts });
    }
    let label: string | undefined;
    for (const e of entries) {
      const depth = e.s.depth ?? this.defaultDepth;
      if (type === 'snapshot') this.applySnapshot(e.s, e.bids, e.asks, depth, e.ts, recvTs, e.checksum, out);
      else if (!this.applyUpdate(e.s, e.bids, e.asks, depth, e.ts, recvTs, e.checksum, out)) label = 'book-awaiting-snapshot';
    }
    return label;
  }

  // ------------------------------------------------------------ v1

  private v1Event(o: Json, event: string): string {
    switch (event) {
      case 'heartbeat':
        return 'heartbeat';
      case 'pong':
        return 'pong';
      case 'systemStatus':
        return 'system-status';
      case 'subscriptionStatus': {
        if (o.status === 'error') {
          const pair = typeof o.pair === 'string' ? ` for ${o.pair}` : '';
          throw new MalformedFrameError(`subscription error${pair}: ${typeof o.errorMessage === 'string' ? o.errorMessage : describe(o.errorMessage)}`);
        }
        if (typeof o.pair === 'string' && typeof o.channelName === 'string') {
          const s = this.state(o.pair);
          const name = o.channelName;
          if (name.startsWith('book-')) {
            const depth = Number(name.slice(5));
            if (o.status === 'subscribed' && Number.isInteger(depth) && depth > 0) s.depth = depth;
          } else if (name === 'ticker' || name === 'spread') {
            s.hasTicker = o.status === 'subscribed';
          }
        }
        return 'subscription-status';
      }
      case 'error':
        throw new MalformedFrameError(`error event: ${typeof o.errorMessage === 'string' ? o.errorMessage : describe(o.errorMessage)}`);
      default:
        throw new MalformedFrameError(`unknown event "${event}"`);
    }
  }

  private v1Array(a: unknown[], recvTs: number, out: CanonicalEvent[]): string | undefined {
    if (a.length < 4) throw new MalformedFrameError(`unknown structure: array of ${a.length} (expected [channelID, payload, channelName, pair])`);
    const name = a[a.length - 2];
    const pair = a[a.length - 1];
    if (typeof name !== 'string' || typeof pair !== 'string') {
      throw new MalformedFrameError(`unknown structure: array without channelName and pair (got ${describe(name)}, ${describe(pair)})`);
    }
    const payloads = a.slice(1, a.length - 2);
    if (name === 'trade') return this.v1Trades(payloads, pair, recvTs, out);
    if (name === 'ticker') return this.v1Ticker(payloads, pair, recvTs, out);
    if (name === 'spread') return this.v1Spread(payloads, pair, recvTs, out);
    if (name.startsWith('book-')) return this.v1Book(payloads, name, pair, recvTs, out);
    if (name.startsWith('ohlc-')) return 'ohlc';
    throw new MalformedFrameError(`unknown channel "${name}"`);
  }

  private v1Trades(payloads: unknown[], pair: string, recvTs: number, out: CanonicalEvent[]): undefined {
    const ctx = 'trade';
    const list = array(onePayload(payloads, ctx), ctx, 'trades');
    const s = this.state(pair);
    const trades: Trade[] = [];
    for (let i = 0; i < list.length; i++) {
      const t = array(list[i], ctx, `trades[${i}]`);
      if (t.length < 4) throw new MalformedFrameError(`${ctx}: trades[${i}] must be [price, volume, time, side, …], got ${describe(t)}`);
      const sideCode = t[3];
      const side: Side = sideCode === 'b' ? 'buy' : sideCode === 's' ? 'sell' : 'unknown';
      if (side === 'unknown') throw new MalformedFrameError(`${ctx}: trades[${i}] side must be "b" or "s", got ${describe(sideCode)}`);
      const time = t[2] as string;
      trades.push({
        kind: 'trade',
        venue: VENUE,
        symbol: s.symbol,
        ts: secondsTextToMs(time, ctx, `trades[${i}] time`),
        recvTs,
        price: price(t[0], ctx, `trades[${i}] price`),
        qty: nonNegative(t[1], ctx, `trades[${i}] volume`),
        side,
        tradeId: `${time}-${i}`,
      });
    }
    for (const t of trades) out.push(t);
    return undefined;
  }

  private v1Ticker(payloads: unknown[], pair: string, recvTs: number, out: CanonicalEvent[]): undefined {
    const ctx = 'ticker';
    const t = object(onePayload(payloads, ctx), ctx, 'payload');
    const a = array(t.a, ctx, 'ask (a)');
    const b = array(t.b, ctx, 'bid (b)');
    const s = this.state(pair);
    return this.v1Quote(
      s,
      Math.floor(recvTs),
      recvTs,
      nonNegative(b[0], ctx, 'bid price (b[0])'),
      nonNegative(b[2], ctx, 'bid lot volume (b[2])'),
      nonNegative(a[0], ctx, 'ask price (a[0])'),
      nonNegative(a[2], ctx, 'ask lot volume (a[2])'),
      out,
    );
  }

  private v1Spread(payloads: unknown[], pair: string, recvTs: number, out: CanonicalEvent[]): undefined {
    const ctx = 'spread';
    const p = array(onePayload(payloads, ctx), ctx, 'payload');
    const s = this.state(pair);
    const ts = secondsTextToMs(p[2], ctx, 'time');
    return this.v1Quote(s, ts, recvTs, nonNegative(p[0], ctx, 'bid'), nonNegative(p[3], ctx, 'bid volume'), nonNegative(p[1], ctx, 'ask'), nonNegative(p[4], ctx, 'ask volume'), out);
  }

  /** A v1 ticker or spread quote; quotes of the symbol come from its ticker from now on, not from the book. */
  private v1Quote(s: SymbolState, ts: number, recvTs: number, bidPx: number, bidQty: number, askPx: number, askQty: number, out: CanonicalEvent[]): undefined {
    const q: Quote = { kind: 'quote', venue: VENUE, symbol: s.symbol, ts, recvTs, bidPx, bidQty, askPx, askQty };
    s.hasTicker = true;
    out.push(q);
    return undefined;
  }

  private v1Book(payloads: unknown[], name: string, pair: string, recvTs: number, out: CanonicalEvent[]): string | undefined {
    const depth = Number(name.slice(5));
    if (!(Number.isInteger(depth) && depth > 0)) throw new MalformedFrameError(`book: invalid channel name ${describe(name)}`);
    if (payloads.length < 1 || payloads.length > 2) throw new MalformedFrameError(`book: expected 1 or 2 payload objects, got ${payloads.length}`);
    const s = this.state(pair);
    const first = object(payloads[0], 'book', 'payload');
    if ('as' in first || 'bs' in first) {
      if (payloads.length !== 1) throw new MalformedFrameError('book snapshot: expected one payload object');
      const ctx = 'book snapshot';
      let ts = 0;
      const asks = v1Levels(first.as ?? [], ctx, 'asks (as)', false);
      const bids = v1Levels(first.bs ?? [], ctx, 'bids (bs)', false);
      for (const l of asks.times) if (l > ts) ts = l;
      for (const l of bids.times) if (l > ts) ts = l;
      this.applySnapshot(s, bids.levels, asks.levels, depth, ts > 0 ? ts : Math.floor(recvTs), recvTs, undefined, out);
      return undefined;
    }
    const ctx = 'book update';
    const asks: ParsedLevel[] = [];
    const bids: ParsedLevel[] = [];
    let checksum: number | undefined;
    let ts = 0;
    for (let k = 0; k < payloads.length; k++) {
      const p = object(payloads[k], ctx, `payload ${k + 1}`);
      let any = false;
      for (const key of Object.keys(p)) {
        if (key === 'a' || key === 'b') {
          const parsed = v1Levels(p[key], ctx, key === 'a' ? 'asks (a)' : 'bids (b)', true);
          (key === 'a' ? asks : bids).push(...parsed.levels);
          for (const t of parsed.times) if (t > ts) ts = t;
          any = true;
        } else if (key === 'c') {
          const c = p.c;
          if (!(typeof c === 'string' && /^\d{1,10}$/.test(c) && Number(c) <= 0xffffffff)) {
            throw new MalformedFrameError(`${ctx}: checksum (c) must be an unsigned 32-bit integer as text, got ${describe(c)}`);
          }
          checksum = Number(c);
        } else {
          throw new MalformedFrameError(`${ctx}: unexpected key "${key}"`);
        }
      }
      if (!any) throw new MalformedFrameError(`${ctx}: payload ${k + 1} has neither asks (a) nor bids (b)`);
    }
    const applied = this.applyUpdate(s, bids, asks, depth, ts > 0 ? ts : Math.floor(recvTs), recvTs, checksum, out);
    return applied ? undefined : 'book-awaiting-snapshot';
  }

  // ------------------------------------------------------------ book state

  private applySnapshot(s: SymbolState, bids: ParsedLevel[], asks: ParsedLevel[], depth: number, ts: number, recvTs: number, checksum: number | undefined, out: CanonicalEvent[]): void {
    const book = s.book;
    const wasSynced = book.synced;
    book.clear();
    for (const l of bids) this.setLevel(s, book.bids, l);
    for (const l of asks) this.setLevel(s, book.asks, l);
    book.bids.truncate(depth);
    book.asks.truncate(depth);
    s.depth ??= depth;
    s.bookMsgs++;
    if (checksum !== undefined && !this.verify(s, checksum, ts, recvTs, out)) return;
    book.synced = true;
    book.seq = s.bookMsgs;
    out.push(bookEvent(s, ts, recvTs, true, levelPairs(book.bids), levelPairs(book.asks)));
    if (!wasSynced) out.push(statusEvent(VENUE, s.symbol, 'book_synced', 'snapshot', ts, recvTs));
    this.deriveQuote(s, ts, recvTs, out);
  }

  /** Applies a delta; false when the book is not synced (waiting for a snapshot). */
  private applyUpdate(s: SymbolState, bids: ParsedLevel[], asks: ParsedLevel[], depth: number, ts: number, recvTs: number, checksum: number | undefined, out: CanonicalEvent[]): boolean {
    const book = s.book;
    if (!book.synced) return false;
    const changedBids: Pair[] = [];
    const changedAsks: Pair[] = [];
    for (const l of bids) {
      this.setLevel(s, book.bids, l);
      changedBids.push([l.price, l.qty]);
    }
    for (const l of asks) {
      this.setLevel(s, book.asks, l);
      changedAsks.push([l.price, l.qty]);
    }
    // Kraken sends no removal for levels pushed beyond the subscribed depth: drop them, and tell.
    for (const [side, changed] of [
      [book.bids, changedBids],
      [book.asks, changedAsks],
    ] as const) {
      for (let i = depth; i < side.length; i++) changed.push([side.priceAt(i), 0]);
      side.truncate(depth);
    }
    s.bookMsgs++;
    if (checksum !== undefined && !this.verify(s, checksum, ts, recvTs, out)) return true;
    book.seq = s.bookMsgs;
    out.push(bookEvent(s, ts, recvTs, false, changedBids, changedAsks));
    this.deriveQuote(s, ts, recvTs, out);
    return true;
  }

  private setLevel(s: SymbolState, side: OrderBook['bids'], l: ParsedLevel): void {
    if (l.priceText !== undefined) {
      s.seenLiterals = true;
      const d = decimalsOf(l.priceText);
      if (d > s.seenPriceDecimals) s.seenPriceDecimals = d;
    }
    if (l.qtyText !== undefined) {
      const d = decimalsOf(l.qtyText);
      if (d > s.seenQtyDecimals) s.seenQtyDecimals = d;
    }
    side.set(l.price, l.qty, l.priceText, l.qtyText);
  }

  /**
   * Compares the book's checksum with the venue's. On a mismatch: book_reset, clear, resync request.
   * Returns true when the book may be used (matched, or not computable).
   */
  private verify(s: SymbolState, expected: number, ts: number, recvTs: number, out: CanonicalEvent[]): boolean {
    const got = krakenChecksum(s.book, this.precisionOf(s.symbol));
    if (got === undefined) return true; // no text and no precision: cannot be checked, not a mismatch
    s.compared++;
    if (got === expected) {
      s.matched++;
      return true;
    }
    const reason = `checksum mismatch: computed ${got}, venue sent ${expected}`;
    s.resyncs++;
    out.push(statusEvent(VENUE, s.symbol, 'book_reset', reason, ts, recvTs));
    this.dropBook(s);
    try {
      this.context.requestResync?.(s.native, reason);
    } catch {
      // the connection logs its own failures; a frame must never crash the feed
    }
    return false;
  }

  private dropBook(s: SymbolState): void {
    s.book.clear();
    s.lastBidPx = s.lastBidQty = s.lastAskPx = s.lastAskQty = NaN;
  }

  /** Without a ticker for the symbol: a derived quote whenever the best bid or ask (price or size) changes. */
  private deriveQuote(s: SymbolState, ts: number, recvTs: number, out: CanonicalEvent[]): void {
    if (s.hasTicker) return;
    const b = s.book.bestBid;
    const a = s.book.bestAsk;
    if (b === undefined || a === undefined) return;
    if (b.price === s.lastBidPx && b.qty === s.lastBidQty && a.price === s.lastAskPx && a.qty === s.lastAskQty) return;
    s.lastBidPx = b.price;
    s.lastBidQty = b.qty;
    s.lastAskPx = a.price;
    s.lastAskQty = a.qty;
    out.push({
      kind: 'quote',
      venue: VENUE,
      symbol: s.symbol,
      ts,
      recvTs,
      bidPx: b.price,
      bidQty: b.qty,
      askPx: a.price,
      askQty: a.qty,
      seq: s.bookMsgs,
      derived: true,
    });
  }
}

/** A book event, numbered with Vigil's count of the symbol's book messages (Kraken sends no sequence). */
function bookEvent(s: SymbolState, ts: number, recvTs: number, snapshot: boolean, bids: Pair[], asks: Pair[]): Book {
  const seq = s.bookMsgs;
  return snapshot
    ? { kind: 'book', venue: VENUE, symbol: s.symbol, ts, recvTs, seq, firstSeq: seq, snapshot, bids, asks }
    : { kind: 'book', venue: VENUE, symbol: s.symbol, ts, recvTs, seq, firstSeq: seq, prevSeq: seq - 1, snapshot, bids, asks };
}

/** The one payload of a v1 trade, ticker or spread message. */
function onePayload(payloads: unknown[], ctx: string): unknown {
  if (payloads.length !== 1) throw new MalformedFrameError(`${ctx}: expected one payload, got ${payloads.length}`);
  return payloads[0];
}

/** v2 levels `[{price, qty}]` with their literal texts when the scan found them and they agree. */
function v2Levels(v: unknown, literals: LiteralLevel[] | undefined, ctx: string, field: string): ParsedLevel[] {
  if (v === undefined) return [];
  const list = array(v, ctx, field);
  const n = list.length;
  const useText = literals !== undefined && literals.length === n;
  const out: ParsedLevel[] = new Array<ParsedLevel>(n);
  let textOk = useText;
  for (let i = 0; i < n; i++) {
    const l = list[i];
    if (l === null || typeof l !== 'object' || Array.isArray(l)) {
      throw new MalformedFrameError(`${ctx}: ${field}[${i}] must be {price, qty}, got ${describe(l)}`);
    }
    const lo = l as Json;
    const px = toNumber(lo.price);
    if (!(px > 0 && px !== Infinity)) price(lo.price, ctx, `${field}[${i}].price`);
    const q = toNumber(lo.qty);
    if (!(q >= 0 && q !== Infinity)) nonNegative(lo.qty, ctx, `${field}[${i}].qty`);
    const lv: ParsedLevel = { price: px, qty: q };
    if (textOk && literals !== undefined) {
      const lit = literals[i]!;
      if (lit.p !== '' && lit.q !== '' && Number(lit.p) === px && Number(lit.q) === q) {
        lv.priceText = lit.p;
        lv.qtyText = lit.q;
      } else {
        textOk = false;
      }
    }
    out[i] = lv;
  }
  if (useText && !textOk) {
    // The scan and the parse disagree (unexpected layout): use no text for this side at all.
    for (const l of out) {
      delete l.priceText;
      delete l.qtyText;
    }
  }
  return out;
}

/** v1 levels `[price, volume, time, "r"?]` (strings as sent), and their times in ms. */
function v1Levels(v: unknown, ctx: string, field: string, update: boolean): { levels: ParsedLevel[]; times: number[] } {
  const list = array(v, ctx, field);
  const levels: ParsedLevel[] = new Array<ParsedLevel>(list.length);
  const times: number[] = new Array<number>(list.length);
  for (let i = 0; i < list.length; i++) {
    const l = list[i];
    if (!Array.isArray(l) || l.length < 3) {
      throw new MalformedFrameError(`${ctx}: ${field}[${i}] must be [price, volume, time], got ${describe(l)}`);
    }
    const pt = l[0];
    const qt = l[1];
    if (typeof pt !== 'string' || typeof qt !== 'string') {
      throw new MalformedFrameError(`${ctx}: ${field}[${i}] price and volume must be decimal strings, got ${describe(l)}`);
    }
    const px = +pt;
    if (!(px > 0 && px !== Infinity)) price(pt, ctx, `${field}[${i}] price`);
    const q = +qt;
    if (!(q >= 0 && q !== Infinity)) nonNegative(qt, ctx, `${field}[${i}] volume`);
    if (l.length > 3) {
      // Updates may carry "r": a level republished after another fell out of the subscribed depth.
      if (!update || l.length > 4 || l[3] !== 'r') throw new MalformedFrameError(`${ctx}: ${field}[${i}] has unexpected fields ${describe(l.slice(3))}`);
    }
    levels[i] = { price: px, qty: q, priceText: pt, qtyText: qt };
    times[i] = secondsTextToMs(l[2], ctx, `${field}[${i}] time`);
  }
  return { levels, times };
}

// ---------------------------------------------------------------- live connection (v2)

let reqId = 0;
function subscribe(channel: string, symbols: string[] | undefined, extra: Json = {}, method = 'subscribe'): string {
  const params: Json = { channel, ...extra };
  if (symbols !== undefined) params.symbol = symbols;
  return JSON.stringify({ method, params, req_id: ++reqId });
}

/**
 * Kraken WebSocket v2 for the shared connection base. Subscribes, in order: `instrument` (pair
 * precisions for the checksums, before any book), `ticker` with `event_trigger: "bbo"` (a quote on every
 * best bid/offer change), `trade`, and `book` at KRAKEN_BOOK_DEPTH. Kraken v2 expects the client to
 * ping: {"method":"ping"} every KRAKEN_PING_INTERVAL_MS, answered by {"method":"pong"} (kept in the
 * stream and labelled). Heartbeats arrive every second, so silence for 15 s is a stale feed. A resync
 * is unsubscribe + subscribe of that one symbol's book, which makes Kraken send a fresh snapshot.
 */
export const krakenProtocol: VenueProtocol = {
  venue: VENUE,
  defaultWsUrl: KRAKEN_WS_URL,
  defaultRestUrl: KRAKEN_REST_URL,
  nativeSymbols: (symbols) => symbols.map(krakenWireSymbol),
  url: (wsUrl) => wsUrl,
  subscribeMessages: (symbols) => [
    subscribe('instrument', undefined, { snapshot: true }),
    subscribe('ticker', symbols, { event_trigger: 'bbo', snapshot: true }),
    subscribe('trade', symbols, { snapshot: true }),
    subscribe('book', symbols, { depth: KRAKEN_BOOK_DEPTH, snapshot: true }),
  ],
  subscribeRatePerSec: 5,
  appPing: { intervalMs: KRAKEN_PING_INTERVAL_MS, message: '{"method":"ping"}' },
  staleAfterMs: 15_000,
  resync(symbol: string, ctx: ConnectionContext): void {
    ctx.send(subscribe('book', [symbol], { depth: KRAKEN_BOOK_DEPTH }, 'unsubscribe'));
    ctx.send(subscribe('book', [symbol], { depth: KRAKEN_BOOK_DEPTH, snapshot: true }));
  },
};

export const krakenAdapter: VenueAdapter = {
  name: VENUE,
  createNormalizer: (context?: NormalizerContext) => new KrakenNormalizer(context),
  connect: (options: LiveFeedOptions) => connectVenue(krakenProtocol, options),
};

