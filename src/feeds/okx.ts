/**
 * OKX v5 public WebSocket (wss://ws.okx.com:8443/ws/v5/public): normalizer and live protocol.
 *
 * Wire formats handled (https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws):
 * - push `{"arg":{"channel":…,"instId":…},"data":[…]}`:
 *   - `trades` / `trades-all`: data[] {instId, tradeId, px, sz, side (the taker's), ts} → trade per element;
 *   - `tickers`: data[] {instId, bidPx, bidSz, askPx, askSz, ts, …} → quote ("" of an empty side → 0);
 *   - `bbo-tbt`: data[0] {bids:[[px,sz,…]], asks:[[px,sz,…]], ts, seqId?} → quote (seq = seqId);
 *   - `books`, `books-l2-tbt`, `books50-l2-tbt` (with `"action":"snapshot"|"update"`): data[0] {asks, bids
 *     ([px, sz, liquidatedOrders, numOrders] strings), ts, checksum, seqId?, prevSeqId?} → book events;
 *   - `books5` and other channels Vigil does not model (candles, mark-price, funding-rate…) → ignored label;
 * - events: `subscribe` / `unsubscribe` acks, `notice`, `channel-conn-count` → ignored labels; `error`
 *   → MalformedFrameError with OKX's msg and code; the text `pong` (OKX's answer to our text `ping`) →
 *   ignored label;
 * - STATUS_CHANNEL frames of the live connection → status events (books dropped on disconnect/stale).
 *
 * Book sync (OKX's documented procedure): a snapshot resets the book; an update's prevSeqId must equal
 * the seqId of the message before it (this also covers OKX's keep-alive updates, where seqId =
 * prevSeqId, and its sequence resets after maintenance, where seqId < prevSeqId), else it is a gap.
 * After every message the CRC32 of the top 25 levels — `bidPx:bidSz:askPx:askSz:…` interleaved level by
 * level, the strings as sent, the longer side continuing alone — compared as a signed 32-bit integer
 * with `checksum`. A gap or mismatch → `book_reset`, the book is cleared, and the live connection sends
 * unsubscribe + subscribe of that instId's book channel; OKX answers with a fresh snapshot. Captures
 * from before OKX added seqId (2022) are checked by checksum alone. Book events carry seq = seqId
 * (or the message's ts when there is none), prevSeq = prevSeqId.
 *
 * bookReport(): per symbol `resyncs`, and `compared` / `matched` = checksums verified / matched.
 *
 * Symbols: spot BTC-USDT → BTC-USDT, perpetual swaps BTC-USDT-SWAP → BTC-USDT-PERP, futures
 * BTC-USD-240927 and options BTC-USD-240927-60000-C unchanged. Quotes come from `tickers` (OKX sends a
 * best bid/offer), so no derived quotes.
 */
import type { Book, CanonicalEvent, Quote, Side, Trade } from '../core/events.ts';
import { connectVenue } from './connection.ts';
import type { ConnectionContext, VenueProtocol } from './connection-types.ts';
import { crc32, type OrderBook } from './book/order-book.ts';
import { applySide, array, describe, int32, object, parseFrame, parseLevels, quoteField, SymbolBooks, textChecks, type Json, type SymbolBook } from './normalize-util.ts';
import { MalformedFrameError, STATUS_CHANNEL } from './types.ts';
import type { BookReport, LiveFeed, LiveFeedOptions, Normalizer, NormalizerContext, RawFrame, VenueAdapter } from './types.ts';

const VENUE = 'okx';
const { price, nonNegative: size, int, id } = textChecks;

export const OKX_WS_URL = 'wss://ws.okx.com:8443/ws/v5/public';
/** The book channel Vigil subscribes: 400 levels, snapshot then updates every 100 ms, with checksum and seqId. */
export const OKX_BOOK_CHANNEL = 'books';
/** Levels per side in OKX's checksum. */
export const OKX_CHECKSUM_DEPTH = 25;
/** OKX closes a connection without traffic for 30 s: a text `ping` every 25 s. */
export const OKX_PING_INTERVAL_MS = 25_000;
/** OKX limits subscribe/unsubscribe requests per connection; 3 a second stays well inside. */
export const OKX_SUBSCRIBE_RATE_PER_SEC = 3;
/** Instruments per subscribe message (3 channels each). */
const SYMBOLS_PER_SUBSCRIBE = 10;

const BOOK_CHANNELS: ReadonlySet<string> = new Set(['books', 'books-l2-tbt', 'books50-l2-tbt']);
/** Public channels Vigil does not model: their pushes are counted as ignored under the channel name. */
const IGNORED_CHANNELS: ReadonlySet<string> = new Set([
  'books5',
  'instruments',
  'open-interest',
  'funding-rate',
  'price-limit',
  'opt-summary',
  'estimated-price',
  'mark-price',
  'index-tickers',
  'status',
  'liquidation-orders',
  'adl-warning',
  'economic-calendar',
  'call-auction-details',
]);
const IGNORED_EVENTS: Readonly<Record<string, string>> = {
  subscribe: 'subscribe-ack',
  unsubscribe: 'unsubscribe-ack',
  notice: 'notice',
  'channel-conn-count': 'channel-conn-count',
};

// ---------------------------------------------------------------- symbols

const INST_RE = /^[A-Z0-9]+-[A-Z0-9]+(-[A-Z0-9]+)*$/;
const MEMO_LIMIT = 10_000;
const symbolMemo = new Map<string, string>();

/** OKX instId → canonical: `BTC-USDT` → `BTC-USDT`, `BTC-USDT-SWAP` → `BTC-USDT-PERP`, futures/options unchanged. */
export function okxSymbol(instId: string): string {
  const hit = symbolMemo.get(instId);
  if (hit !== undefined) return hit;
  const upper = instId.toUpperCase();
  if (!INST_RE.test(upper)) throw new MalformedFrameError(`invalid OKX instId ${describe(instId)}`);
  const out = upper.endsWith('-SWAP') ? `${upper.slice(0, -5)}-PERP` : upper;
  if (symbolMemo.size >= MEMO_LIMIT) symbolMemo.clear();
  symbolMemo.set(instId, out);
  return out;
}

/** User input (canonical or OKX) → instId: `btc-usdt` → `BTC-USDT`, `BTC-USDT-PERP` → `BTC-USDT-SWAP`. Throws Error. */
export function okxInstId(input: string): string {
  const upper = input.trim().toUpperCase().replace(/[/_]/g, '-');
  if (!INST_RE.test(upper)) {
    throw new Error(`cannot read ${JSON.stringify(input)} as an OKX instrument (expected e.g. BTC-USDT, BTC-USDT-SWAP or BTC-USDT-PERP)`);
  }
  return upper.endsWith('-PERP') ? `${upper.slice(0, -5)}-SWAP` : upper;
}

// ---------------------------------------------------------------- checksum

/**
 * OKX's book checksum: CRC32 of the top 25 levels, `bidPx:bidSz:askPx:askSz` per level, the venue's
 * strings as sent; where one side has fewer levels the other continues alone. A signed 32-bit integer.
 */
export function okxChecksum(book: OrderBook, depth: number = OKX_CHECKSUM_DEPTH): number {
  const bids = book.bids;
  const asks = book.asks;
  const parts: string[] = [];
  for (let i = 0; i < depth; i++) {
    const b = i < bids.length;
    const a = i < asks.length;
    if (!b && !a) break;
    if (b) parts.push(bids.priceTextAt(i) ?? String(bids.priceAt(i)), bids.qtyTextAt(i) ?? String(bids.qtyAt(i)));
    if (a) parts.push(asks.priceTextAt(i) ?? String(asks.priceAt(i)), asks.qtyTextAt(i) ?? String(asks.qtyAt(i)));
  }
  return crc32(parts.join(':')) | 0;
}

// ---------------------------------------------------------------- normalizer

function takerSide(v: unknown, ctx: string): Side {
  if (v === 'buy') return 'buy';
  if (v === 'sell') return 'sell';
  throw new MalformedFrameError(`${ctx}: side must be "buy" or "sell", got ${describe(v)}`);
}

export class OkxNormalizer implements Normalizer {
  readonly venue = VENUE;
  private readonly books: SymbolBooks;

  constructor(context?: NormalizerContext) {
    this.books = new SymbolBooks(VENUE, context);
  }

  normalize(frame: RawFrame, out: CanonicalEvent[]): string | undefined {
    if (frame.channel === STATUS_CHANNEL) {
      this.books.statusFrame(frame, okxSymbol, out);
      return undefined;
    }
    if (frame.data === 'pong') {
      if (!(frame.recvTs >= 0 && frame.recvTs !== Infinity)) parseFrame(frame); // throws the recvTs reason
      return 'pong';
    }
    const msg = parseFrame(frame);
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
      throw new MalformedFrameError(`unknown structure: expected a JSON object, got ${describe(frame.data)}`);
    }
    const m = msg as Json;
    const recvTs = frame.recvTs;
    if (m.event !== undefined) return this.event(m);
    if (m.arg === undefined) {
      const keys = Object.keys(m).slice(0, 8).join(',');
      throw new MalformedFrameError(`unknown structure: object with keys {${keys}} (neither a push with "arg" nor an "event")`);
    }
    const arg = object(m.arg, 'push', 'arg');
    const channel = arg.channel;
    if (typeof channel !== 'string' || channel.length === 0) throw new MalformedFrameError(`push: arg.channel must be a channel name, got ${describe(channel)}`);
    switch (channel) {
      case 'trades':
      case 'trades-all':
        this.trades(m, arg, recvTs, out);
        return undefined;
      case 'tickers':
        this.tickers(m, recvTs, out);
        return undefined;
      case 'bbo-tbt':
        this.bbo(m, arg, recvTs, out);
        return undefined;
      default:
        if (BOOK_CHANNELS.has(channel)) return this.book(m, arg, channel, recvTs, out);
        if (IGNORED_CHANNELS.has(channel) || channel.startsWith('candle') || channel.startsWith('mark-price-candle') || channel.startsWith('index-candle')) {
          return channel;
        }
        throw new MalformedFrameError(`unknown channel ${describe(channel)}`);
    }
  }

  bookReport(): Record<string, BookReport> {
    return this.books.report();
  }

  /** The rebuilt book of a canonical symbol (diagnostics, tests); undefined before its first book message. */
  orderBook(symbol: string): OrderBook | undefined {
    return this.books.find(symbol)?.book;
  }

  private event(m: Json): string {
    const ev = m.event;
    if (typeof ev !== 'string') throw new MalformedFrameError(`event must be a string, got ${describe(ev)}`);
    if (ev === 'error') {
      const msg = typeof m.msg === 'string' && m.msg.length > 0 ? m.msg : 'no message';
      const code = typeof m.code === 'string' || typeof m.code === 'number' ? String(m.code).slice(0, 20) : describe(m.code);
      throw new MalformedFrameError(`OKX error event: ${msg.length > 300 ? `${msg.slice(0, 300)}…` : msg} (code ${code})`);
    }
    const label = IGNORED_EVENTS[ev];
    if (label !== undefined) return label;
    throw new MalformedFrameError(`unknown event ${describe(ev)}`);
  }

  private trades(m: Json, arg: Json, recvTs: number, out: CanonicalEvent[]): void {
    const ctx = 'trades';
    const data = array(m.data, ctx, 'data');
    const trades: Trade[] = [];
    for (let i = 0; i < data.length; i++) {
      const t = object(data[i], ctx, `data[${i}]`);
      const inst = t.instId ?? arg.instId;
      if (typeof inst !== 'string') throw new MalformedFrameError(`${ctx}: data[${i}].instId must be an instrument id, got ${describe(inst)}`);
      trades.push({
        kind: 'trade',
        venue: VENUE,
        symbol: okxSymbol(inst),
        ts: int(t.ts, ctx, 'ts'),
        recvTs,
        price: price(t.px, ctx, 'px'),
        qty: size(t.sz, ctx, 'sz'),
        side: takerSide(t.side, ctx),
        tradeId: id(t.tradeId, ctx, 'tradeId'),
      });
    }
    for (const t of trades) out.push(t);
  }

  private tickers(m: Json, recvTs: number, out: CanonicalEvent[]): void {
    const ctx = 'tickers';
    const data = array(m.data, ctx, 'data');
    const quotes: Quote[] = [];
    for (let i = 0; i < data.length; i++) {
      const t = object(data[i], ctx, `data[${i}]`);
      if (typeof t.instId !== 'string') throw new MalformedFrameError(`${ctx}: data[${i}].instId must be an instrument id, got ${describe(t.instId)}`);
      quotes.push({
        kind: 'quote',
        venue: VENUE,
        symbol: okxSymbol(t.instId),
        ts: int(t.ts, ctx, 'ts'),
        recvTs,
        bidPx: quoteField(t.bidPx, ctx, 'bidPx'),
        bidQty: quoteField(t.bidSz, ctx, 'bidSz'),
        askPx: quoteField(t.askPx, ctx, 'askPx'),
        askQty: quoteField(t.askSz, ctx, 'askSz'),
      });
    }
    for (const q of quotes) out.push(q);
  }

  private bbo(m: Json, arg: Json, recvTs: number, out: CanonicalEvent[]): void {
    const ctx = 'bbo-tbt';
    if (typeof arg.instId !== 'string') throw new MalformedFrameError(`${ctx}: arg.instId must be an instrument id, got ${describe(arg.instId)}`);
    const symbol = okxSymbol(arg.instId);
    const data = array(m.data, ctx, 'data');
    const quotes: Quote[] = [];
    for (let i = 0; i < data.length; i++) {
      const d = object(data[i], ctx, `data[${i}]`);
      const bids = parseLevels(d.bids, ctx, 'bids').pairs;
      const asks = parseLevels(d.asks, ctx, 'asks').pairs;
      const q: Quote = {
        kind: 'quote',
        venue: VENUE,
        symbol,
        ts: int(d.ts, ctx, 'ts'),
        recvTs,
        bidPx: bids[0]?.[0] ?? 0,
        bidQty: bids[0]?.[1] ?? 0,
        askPx: asks[0]?.[0] ?? 0,
        askQty: asks[0]?.[1] ?? 0,
      };
      if (d.seqId !== undefined) q.seq = int(d.seqId, ctx, 'seqId');
      quotes.push(q);
    }
    for (const q of quotes) out.push(q);
  }

  private book(m: Json, arg: Json, channel: string, recvTs: number, out: CanonicalEvent[]): string | undefined {
    const ctx = channel;
    const inst = arg.instId;
    if (typeof inst !== 'string') throw new MalformedFrameError(`${ctx}: arg.instId must be an instrument id, got ${describe(inst)}`);
    const symbol = okxSymbol(inst);
    const action = m.action;
    if (action !== 'snapshot' && action !== 'update') {
      throw new MalformedFrameError(`${ctx}: action must be "snapshot" or "update", got ${describe(action)}`);
    }
    const data = array(m.data, ctx, 'data');
    if (data.length !== 1) throw new MalformedFrameError(`${ctx}: data must hold exactly one book message, got ${data.length}`);
    const d = object(data[0], ctx, 'data[0]');
    // Everything is checked before the book changes: a broken frame leaves the book as it was.
    const ts = int(d.ts, ctx, 'ts');
    const bids = parseLevels(d.bids, ctx, 'bids');
    const asks = parseLevels(d.asks, ctx, 'asks');
    const checksum = d.checksum === undefined ? undefined : int32(d.checksum, ctx, 'checksum');
    const seqId = d.seqId === undefined ? undefined : int(d.seqId, ctx, 'seqId');
    let prevSeqId: number | undefined;
    if (d.prevSeqId !== undefined) {
      // -1 on snapshots.
      prevSeqId = d.prevSeqId === -1 || d.prevSeqId === '-1' ? -1 : int(d.prevSeqId, ctx, 'prevSeqId');
    }
    const b = this.books.get(symbol, inst);
    const book = b.book;

    if (action === 'snapshot') {
      b.replaceLevels();
      applySide(book, 'bids', bids);
      applySide(book, 'asks', asks);
      if (!this.verify(b, checksum, ts, recvTs, out)) return undefined;
      b.lastSeq = seqId;
      book.seq = seqId ?? ts;
      this.books.synced(b, 'snapshot', ts, recvTs, out);
      const ev: Book = { kind: 'book', venue: VENUE, symbol, ts, recvTs, seq: book.seq, firstSeq: book.seq, snapshot: true, bids: bids.pairs, asks: asks.pairs };
      out.push(ev);
      return undefined;
    }

    if (!book.synced) return 'book-not-synced';
    if (prevSeqId !== undefined && b.lastSeq !== undefined && prevSeqId !== b.lastSeq) {
      this.books.reset(b, `sequence gap: prevSeqId ${prevSeqId} after seqId ${b.lastSeq}`, ts, recvTs, out);
      return undefined;
    }
    applySide(book, 'bids', bids);
    applySide(book, 'asks', asks);
    if (!this.verify(b, checksum, ts, recvTs, out)) return undefined;
    if (seqId !== undefined) b.lastSeq = seqId;
    book.seq = seqId ?? ts;
    if (bids.pairs.length === 0 && asks.pairs.length === 0) return 'book-keepalive';
    const ev: Book = { kind: 'book', venue: VENUE, symbol, ts, recvTs, seq: book.seq, firstSeq: book.seq, snapshot: false, bids: bids.pairs, asks: asks.pairs };
    if (prevSeqId !== undefined && prevSeqId >= 0) ev.prevSeq = prevSeqId;
    out.push(ev);
    return undefined;
  }

  /** Compares OKX's checksum with the rebuilt book; a mismatch resets the book. True when the book is good. */
  private verify(b: SymbolBook, checksum: number | undefined, ts: number, recvTs: number, out: CanonicalEvent[]): boolean {
    if (checksum === undefined) return true;
    b.compared++;
    const ours = okxChecksum(b.book);
    if (ours === checksum) {
      b.matched++;
      return true;
    }
    this.books.reset(b, `checksum mismatch: OKX ${checksum}, rebuilt book ${ours}`, ts, recvTs, out);
    return false;
  }
}

// ---------------------------------------------------------------- live protocol

function subscribeArgs(instIds: readonly string[]): { channel: string; instId: string }[] {
  return instIds.flatMap((instId) => [
    { channel: 'trades', instId },
    { channel: OKX_BOOK_CHANNEL, instId },
    { channel: 'tickers', instId },
  ]);
}

/**
 * OKX v5 public: subscribe `trades`, `books` and `tickers` per instrument (10 instruments a message, 3
 * messages a second), text `ping` every 25 s (OKX answers `pong`), resync = unsubscribe + subscribe of
 * the instrument's `books` channel, which makes OKX send a fresh snapshot.
 */
export const okxProtocol: VenueProtocol = {
  venue: VENUE,
  defaultWsUrl: OKX_WS_URL,
  nativeSymbols: (symbols) => symbols.map(okxInstId),
  url: (wsUrl) => wsUrl,
  subscribeMessages(symbols) {
    const out: string[] = [];
    for (let i = 0; i < symbols.length; i += SYMBOLS_PER_SUBSCRIBE) {
      out.push(JSON.stringify({ op: 'subscribe', args: subscribeArgs(symbols.slice(i, i + SYMBOLS_PER_SUBSCRIBE)) }));
    }
    return out;
  },
  subscribeRatePerSec: OKX_SUBSCRIBE_RATE_PER_SEC,
  appPing: { intervalMs: OKX_PING_INTERVAL_MS, message: 'ping' },
  resync(symbol: string, ctx: ConnectionContext) {
    const args = [{ channel: OKX_BOOK_CHANNEL, instId: symbol }];
    ctx.send(JSON.stringify({ op: 'unsubscribe', args }));
    ctx.send(JSON.stringify({ op: 'subscribe', args }));
  },
};

export const okxAdapter: VenueAdapter = {
  name: VENUE,
  createNormalizer: (context?: NormalizerContext) => new OkxNormalizer(context),
  connect: (options: LiveFeedOptions): LiveFeed => connectVenue(okxProtocol, options),
};
