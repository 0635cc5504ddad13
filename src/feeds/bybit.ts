/**
 * Bybit v5 public WebSocket (wss://stream.bybit.com/v5/public/{spot,linear}): normalizer and live feed.
 *
 * Category. Bybit serves each product category on its own URL and its frames do not say which one they
 * came from (`publicTrade.BTCUSDT` is the same topic on spot and linear). So:
 * - feed specs name the category as a prefix, `spot/BTCUSDT` or `linear/BTCUSDT` (e.g.
 *   `VIGIL_FEEDS=bybit:linear/BTCUSDT,spot/ETHUSDT`); canonical names work too: `BTC-USDT-PERP` → linear
 *   BTCUSDT, `BTC-USDC-PERP` → linear BTCPERP, `BTC-USDT-26DEC25` → linear BTCUSDT-26DEC25, `BTC-USDT`
 *   and a bare `BTCUSDT` → spot. Venue-native symbols (status frames, resync) are `<category>/<SYMBOL>`.
 * - the live feed opens one connection per category (`<wsUrl>/<category>`; a wsUrl that already ends in a
 *   category has it replaced) and merges them into one LiveFeed; resync goes to the symbol's connection.
 * - every frame it yields carries the channel `category:<category>` (the connection's onFrame re-emits
 *   it with that channel), which recordings keep; the normalizer reads the category from it. A Bybit
 *   frame without a channel (a capture from another collector) is read as `linear`.
 *
 * Symbols: linear BTCUSDT → BTC-USDT-PERP, BTCPERP (USDC perpetual) → BTC-USDC-PERP, BTCUSDT-26DEC25 →
 * BTC-USDT-26DEC25, BTC-26DEC25 (USDC futures) → BTC-USDC-26DEC25; spot BTCUSDT → BTC-USDT.
 *
 * Wire formats handled (https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook and siblings):
 * - `publicTrade.<sym>`: data[] {T, s, S (taker side Buy/Sell), v, p, i} → trade per element (ts = T);
 * - `orderbook.<depth>.<sym>`: `type` snapshot|delta, ts, cts?, data {s, b, a, u, seq} → book events.
 *   A snapshot (including u=1, sent after a Bybit service restart) resets the book; each delta's u must
 *   be the previous u + 1, else `book_reset` and resync (unsubscribe + subscribe of that topic, which
 *   makes Bybit send a new snapshot). Book events: seq = firstSeq = u, prevSeq = the previous u; ts = cts
 *   (matching engine time) when present, else ts;
 * - `tickers.<sym>` linear: snapshot then deltas holding only changed fields; bid1Price/bid1Size/
 *   ask1Price/ask1Size are merged per symbol and a quote (seq = cs) is emitted when one of them is in the
 *   message. Spot tickers carry no best bid/offer: ignored, and spot quotes are derived from the book
 *   (derived: true) whenever its best bid/ask price or size changes;
 * - op responses `{"success":true,"op":"subscribe"}` → ignored label (success false → MalformedFrameError
 *   with ret_msg); pongs `{"op":"pong"}` / `{"ret_msg":"pong",…}` → ignored label; kline, liquidation
 *   and other topics Vigil does not model → ignored under the topic name;
 * - STATUS_CHANNEL frames → status events (books and ticker state dropped on disconnect/stale).
 *
 * The client sends `{"op":"ping"}` every 20 s, as Bybit requires.
 */
import { ERR, VigilError } from '../core/errors.ts';
import type { Book, CanonicalEvent, Quote, Side, Trade } from '../core/events.ts';
import { connectVenue, type ConnectionTuning } from './connection.ts';
import type { ConnectionContext, VenueProtocol } from './connection-types.ts';
import type { OrderBook } from './book/order-book.ts';
import { applySide, array, describe, object, parseFrame, parseLevels, quoteField, SymbolBooks, textChecks, type Json } from './normalize-util.ts';
import { binanceSymbol } from './symbols.ts';
import { MalformedFrameError, STATUS_CHANNEL } from './types.ts';
import type { BookReport, LiveFeed, LiveFeedOptions, Normalizer, NormalizerContext, RawFrame, VenueAdapter } from './types.ts';

const VENUE = 'bybit';
const { price, nonNegative: size, int, id } = textChecks;

export type BybitCategory = 'spot' | 'linear';
export const BYBIT_CATEGORIES: readonly BybitCategory[] = ['spot', 'linear'];
/** Base of the public endpoints; the category is the last path segment. */
export const BYBIT_WS_URL = 'wss://stream.bybit.com/v5/public';
/** Book depth subscribed: 50 levels, pushed every 20 ms on spot and linear. */
export const BYBIT_BOOK_DEPTH = 50;
/** Bybit drops connections without a client ping; it recommends one every 20 s. */
export const BYBIT_PING_INTERVAL_MS = 20_000;
export const BYBIT_PING_MESSAGE = '{"op":"ping"}';
/** RawFrame.channel of the frames a Bybit connection yields: `category:linear`, `category:spot`. */
export const BYBIT_CATEGORY_CHANNEL_PREFIX = 'category:';
/** Bybit spot accepts at most 10 args per subscribe request. */
const ARGS_PER_SUBSCRIBE = 10;
/** Category path segments Bybit uses (a wsUrl ending in one has it replaced). */
const URL_CATEGORIES: ReadonlySet<string> = new Set(['spot', 'linear', 'inverse', 'option', 'spread']);
/** Topics Vigil does not model: counted as ignored under the topic's first segment. */
const IGNORED_TOPICS: ReadonlySet<string> = new Set([
  'kline',
  'liquidation',
  'allLiquidation',
  'kline_lt',
  'tickers_lt',
  'lt',
  'insurance',
  'priceLimit',
  'adlAlert',
  'orderbook_rpi',
]);

// ---------------------------------------------------------------- symbols

const EXPIRY_RE = /^([A-Z0-9]+)-(\d{1,2}[A-Z]{3}\d{2})$/;
const WIRE_RE = /^[A-Z0-9]+(-[A-Z0-9]+)?$/;
const MEMO_LIMIT = 10_000;
const symbolMemo = new Map<string, string>();

function isCategory(v: string): v is BybitCategory {
  return v === 'spot' || v === 'linear';
}

function splitQuote(wire: string): string | undefined {
  try {
    return binanceSymbol(wire);
  } catch {
    return undefined;
  }
}

/** Bybit wire symbol + category → canonical. Throws MalformedFrameError for one it cannot read. */
export function bybitSymbol(wire: string, category: BybitCategory): string {
  const key = `${category}/${wire}`;
  const hit = symbolMemo.get(key);
  if (hit !== undefined) return hit;
  const out = toCanonical(wire, category);
  if (symbolMemo.size >= MEMO_LIMIT) symbolMemo.clear();
  symbolMemo.set(key, out);
  return out;
}

function toCanonical(wire: string, category: BybitCategory): string {
  if (typeof wire !== 'string' || !WIRE_RE.test(wire)) throw new MalformedFrameError(`invalid Bybit symbol ${describe(wire)}`);
  if (category === 'spot') {
    if (wire.includes('-')) throw new MalformedFrameError(`invalid Bybit spot symbol ${describe(wire)}`);
    return binanceSymbol(wire);
  }
  const exp = EXPIRY_RE.exec(wire);
  if (exp !== null) {
    const head = exp[1]!;
    const expiry = exp[2]!;
    // BTCUSDT-26DEC25 (USDT futures) or BTC-26DEC25 (USDC futures).
    return `${splitQuote(head) ?? `${head}-USDC`}-${expiry}`;
  }
  if (wire.includes('-')) throw new MalformedFrameError(`invalid Bybit linear symbol ${describe(wire)}`);
  if (wire.endsWith('PERP') && wire.length > 4) return `${wire.slice(0, -4)}-USDC-PERP`;
  return `${binanceSymbol(wire)}-PERP`;
}

export interface BybitNative {
  category: BybitCategory;
  /** Bybit's symbol, e.g. BTCUSDT. */
  wire: string;
}

/** `linear/BTCUSDT` → {linear, BTCUSDT}. Throws MalformedFrameError. */
export function splitBybitNative(native: string): BybitNative {
  const slash = native.indexOf('/');
  if (slash <= 0) throw new MalformedFrameError(`Bybit symbol ${describe(native)} must be <category>/<SYMBOL>, e.g. linear/BTCUSDT`);
  const category = native.slice(0, slash);
  if (!isCategory(category)) throw new MalformedFrameError(`Bybit category ${describe(category)} is not supported (spot, linear)`);
  return { category, wire: native.slice(slash + 1) };
}

/**
 * User input → native `<category>/<SYMBOL>`: `linear/btcusdt` → `linear/BTCUSDT`; `BTC-USDT-PERP` →
 * `linear/BTCUSDT`; `BTC-USDC-PERP` → `linear/BTCPERP`; `BTC-USDT-26DEC25` → `linear/BTCUSDT-26DEC25`;
 * `BTC-USDC-26DEC25` → `linear/BTC-26DEC25`; `BTC-USDT` or `BTCUSDT` → `spot/BTCUSDT`. Throws Error.
 */
export function bybitNativeSymbol(input: string): string {
  const t = input.trim();
  let category: string;
  let wire: string;
  const slash = t.indexOf('/');
  if (slash >= 0) {
    category = t.slice(0, slash).toLowerCase();
    wire = t.slice(slash + 1).toUpperCase();
  } else {
    const u = t.toUpperCase().replace(/_/g, '-');
    const parts = u.split('-');
    if (parts.length === 3 && parts[2] === 'PERP') {
      category = 'linear';
      wire = parts[1] === 'USDC' ? `${parts[0]}PERP` : `${parts[0]}${parts[1]}`;
    } else if (parts.length === 3 && /^\d{1,2}[A-Z]{3}\d{2}$/.test(parts[2]!)) {
      category = 'linear';
      wire = parts[1] === 'USDC' ? `${parts[0]}-${parts[2]}` : `${parts[0]}${parts[1]}-${parts[2]}`;
    } else if (parts.length <= 2) {
      category = 'spot';
      wire = parts.join('');
    } else {
      throw new Error(`cannot read ${JSON.stringify(input)} as a Bybit symbol (expected e.g. linear/BTCUSDT, spot/BTCUSDT, BTC-USDT-PERP or BTC-USDT)`);
    }
  }
  if (!isCategory(category)) throw new Error(`Bybit category ${JSON.stringify(category)} is not supported (spot, linear) in ${JSON.stringify(input)}`);
  try {
    bybitSymbol(wire, category);
  } catch (err) {
    throw new Error(`cannot read ${JSON.stringify(input)} as a Bybit ${category} symbol: ${(err as Error).message}`);
  }
  return `${category}/${wire}`;
}

function nativeToCanonical(native: string): string {
  const { category, wire } = splitBybitNative(native);
  return bybitSymbol(wire, category);
}

/** The endpoint of a category: `wss://…/v5/public` + `/linear`; a URL ending in a category has it replaced. */
export function bybitCategoryUrl(wsUrl: string, category: BybitCategory): string {
  const base = wsUrl.replace(/\/+$/, '');
  const slash = base.lastIndexOf('/');
  const last = slash >= 0 ? base.slice(slash + 1) : '';
  if (URL_CATEGORIES.has(last) && !base.endsWith(`//${last}`)) return `${base.slice(0, slash)}/${category}`;
  return `${base}/${category}`;
}

// ---------------------------------------------------------------- normalizer

function takerSide(v: unknown, ctx: string): Side {
  if (v === 'Buy') return 'buy';
  if (v === 'Sell') return 'sell';
  throw new MalformedFrameError(`${ctx}: S (taker side) must be "Buy" or "Sell", got ${describe(v)}`);
}

function categoryOf(frame: RawFrame): BybitCategory {
  const ch = frame.channel;
  if (ch === undefined) return 'linear';
  if (ch.startsWith(BYBIT_CATEGORY_CHANNEL_PREFIX)) {
    const c = ch.slice(BYBIT_CATEGORY_CHANNEL_PREFIX.length);
    if (isCategory(c)) return c;
    throw new MalformedFrameError(`Bybit category ${describe(c)} is not supported (spot, linear)`);
  }
  throw new MalformedFrameError(`unknown channel ${describe(ch)} for a Bybit frame (expected category:spot or category:linear)`);
}

/** Merged linear ticker fields per symbol (deltas carry only what changed). */
interface TickerState {
  bp: number;
  bq: number;
  ap: number;
  aq: number;
}

export class BybitNormalizer implements Normalizer {
  readonly venue = VENUE;
  private readonly books: SymbolBooks;
  private readonly tickers = new Map<string, TickerState>();

  constructor(context?: NormalizerContext) {
    this.books = new SymbolBooks(VENUE, context);
  }

  normalize(frame: RawFrame, out: CanonicalEvent[]): string | undefined {
    if (frame.channel === STATUS_CHANNEL) {
      this.books.statusFrame(frame, nativeToCanonical, out, (symbol) => this.tickers.delete(symbol));
      return undefined;
    }
    const category = categoryOf(frame);
    const msg = parseFrame(frame);
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
      throw new MalformedFrameError(`unknown structure: expected a JSON object, got ${describe(frame.data)}`);
    }
    const m = msg as Json;
    const topic = m.topic;
    if (topic !== undefined) {
      if (typeof topic !== 'string') throw new MalformedFrameError(`topic must be a string, got ${describe(topic)}`);
      const dot = topic.indexOf('.');
      const kind = dot < 0 ? topic : topic.slice(0, dot);
      switch (kind) {
        case 'publicTrade':
          this.trades(m, topic, category, frame.recvTs, out);
          return undefined;
        case 'orderbook':
          return this.book(m, topic, category, frame.recvTs, out);
        case 'tickers':
          return this.ticker(m, topic, category, frame.recvTs, out);
        default:
          if (IGNORED_TOPICS.has(kind)) return kind;
          throw new MalformedFrameError(`unknown topic ${describe(topic)}`);
      }
    }
    const op = m.op;
    if (op === 'pong' || m.ret_msg === 'pong') return 'pong';
    if (op === 'subscribe' || op === 'unsubscribe') {
      if (m.success === true) return `${op}-ack`;
      const why = typeof m.ret_msg === 'string' && m.ret_msg.length > 0 ? m.ret_msg : 'no ret_msg';
      throw new MalformedFrameError(`Bybit ${op} failed: ${why}`);
    }
    const keys = Object.keys(m).slice(0, 8).join(',');
    throw new MalformedFrameError(`unknown structure: object with keys {${keys}} (neither a topic push nor an op response)`);
  }

  bookReport(): Record<string, BookReport> {
    return this.books.report();
  }

  /** The rebuilt book of a canonical symbol (diagnostics, tests); undefined before its first book message. */
  orderBook(symbol: string): OrderBook | undefined {
    return this.books.find(symbol)?.book;
  }

  private trades(m: Json, topic: string, category: BybitCategory, recvTs: number, out: CanonicalEvent[]): void {
    const ctx = 'publicTrade';
    const data = array(m.data, ctx, 'data');
    const trades: Trade[] = [];
    for (let i = 0; i < data.length; i++) {
      const t = object(data[i], ctx, `data[${i}]`);
      const s = typeof t.s === 'string' ? t.s : topic.slice(topic.indexOf('.') + 1);
      trades.push({
        kind: 'trade',
        venue: VENUE,
        symbol: bybitSymbol(s, category),
        ts: int(t.T, ctx, 'T (trade time)'),
        recvTs,
        price: price(t.p, ctx, 'p (price)'),
        qty: size(t.v, ctx, 'v (size)'),
        side: takerSide(t.S, ctx),
        tradeId: id(t.i, ctx, 'i (trade id)'),
      });
    }
    for (const t of trades) out.push(t);
  }

  private book(m: Json, topic: string, category: BybitCategory, recvTs: number, out: CanonicalEvent[]): string | undefined {
    const ctx = 'orderbook';
    const type = m.type;
    if (type !== 'snapshot' && type !== 'delta') throw new MalformedFrameError(`${ctx}: type must be "snapshot" or "delta", got ${describe(type)}`);
    const d = object(m.data, ctx, 'data');
    const s = typeof d.s === 'string' ? d.s : topic.slice(topic.lastIndexOf('.') + 1);
    const symbol = bybitSymbol(s, category);
    // Everything is checked before the book changes: a broken frame leaves the book as it was.
    const ts = m.cts !== undefined ? int(m.cts, ctx, 'cts') : int(m.ts, ctx, 'ts');
    const u = int(d.u, ctx, 'u (update id)');
    const bids = parseLevels(d.b, ctx, 'b (bids)');
    const asks = parseLevels(d.a, ctx, 'a (asks)');
    const b = this.books.get(symbol, `${category}/${s}`);
    const book = b.book;
    const derive = category === 'spot';

    if (type === 'snapshot') {
      b.replaceLevels();
      applySide(book, 'bids', bids);
      applySide(book, 'asks', asks);
      book.seq = u;
      this.books.synced(b, u === 1 ? 'snapshot (u=1: Bybit service restart)' : 'snapshot', ts, recvTs, out);
      const ev: Book = { kind: 'book', venue: VENUE, symbol, ts, recvTs, seq: u, firstSeq: u, snapshot: true, bids: bids.pairs, asks: asks.pairs };
      out.push(ev);
      if (derive) this.books.derivedQuote(b, ts, recvTs, out);
      return undefined;
    }

    if (!book.synced) return 'book-not-synced';
    const prev = book.seq;
    if (u !== prev + 1) {
      this.books.reset(b, `update id gap: expected u=${prev + 1}, got u=${u}`, ts, recvTs, out);
      return undefined;
    }
    applySide(book, 'bids', bids);
    applySide(book, 'asks', asks);
    book.seq = u;
    const ev: Book = { kind: 'book', venue: VENUE, symbol, ts, recvTs, seq: u, firstSeq: u, prevSeq: prev, snapshot: false, bids: bids.pairs, asks: asks.pairs };
    out.push(ev);
    if (derive) this.books.derivedQuote(b, ts, recvTs, out);
    return undefined;
  }

  private ticker(m: Json, topic: string, category: BybitCategory, recvTs: number, out: CanonicalEvent[]): string | undefined {
    const ctx = 'tickers';
    const type = m.type;
    if (type !== 'snapshot' && type !== 'delta') throw new MalformedFrameError(`${ctx}: type must be "snapshot" or "delta", got ${describe(type)}`);
    const d = object(m.data, ctx, 'data');
    // Spot tickers carry no best bid/offer: spot quotes are derived from the book.
    if (category === 'spot') return 'ticker';
    const s = typeof d.symbol === 'string' ? d.symbol : topic.slice(topic.indexOf('.') + 1);
    const symbol = bybitSymbol(s, category);
    const ts = int(m.ts, ctx, 'ts');
    const bp = d.bid1Price === undefined ? undefined : quoteField(d.bid1Price, ctx, 'bid1Price');
    const bq = d.bid1Size === undefined ? undefined : quoteField(d.bid1Size, ctx, 'bid1Size');
    const ap = d.ask1Price === undefined ? undefined : quoteField(d.ask1Price, ctx, 'ask1Price');
    const aq = d.ask1Size === undefined ? undefined : quoteField(d.ask1Size, ctx, 'ask1Size');
    const cs = m.cs === undefined ? undefined : int(m.cs, ctx, 'cs (cross sequence)');
    let st = this.tickers.get(symbol);
    if (st === undefined || type === 'snapshot') {
      st = { bp: NaN, bq: NaN, ap: NaN, aq: NaN };
      this.tickers.set(symbol, st);
    }
    if (bp !== undefined) st.bp = bp;
    if (bq !== undefined) st.bq = bq;
    if (ap !== undefined) st.ap = ap;
    if (aq !== undefined) st.aq = aq;
    if (bp === undefined && bq === undefined && ap === undefined && aq === undefined) return 'ticker-no-bbo-change';
    // A delta before any snapshot (the fields not in it are unknown): no quote until they are.
    if (Number.isNaN(st.bp) || Number.isNaN(st.bq) || Number.isNaN(st.ap) || Number.isNaN(st.aq)) return 'ticker-partial';
    const q: Quote = { kind: 'quote', venue: VENUE, symbol, ts, recvTs, bidPx: st.bp, bidQty: st.bq, askPx: st.ap, askQty: st.aq };
    if (cs !== undefined) q.seq = cs;
    out.push(q);
    return undefined;
  }
}

// ---------------------------------------------------------------- live feed

function topicsOf(category: BybitCategory, wire: string): string[] {
  const topics = [`publicTrade.${wire}`, `orderbook.${BYBIT_BOOK_DEPTH}.${wire}`];
  if (category === 'linear') topics.push(`tickers.${wire}`);
  return topics;
}

/**
 * The protocol of one Bybit category's connection: subscribe publicTrade, orderbook.50 and (linear)
 * tickers, 10 topics a message; `{"op":"ping"}` every 20 s; every frame re-emitted with the channel
 * `category:<category>`; resync = unsubscribe + subscribe of the symbol's orderbook topic.
 */
export function bybitProtocol(category: BybitCategory): VenueProtocol {
  const channel = `${BYBIT_CATEGORY_CHANNEL_PREFIX}${category}`;
  const wireOf = (native: string): string => {
    const n = splitBybitNative(native);
    if (n.category !== category) throw new Error(`${native} is not a ${category} symbol`);
    return n.wire;
  };
  return {
    venue: VENUE,
    defaultWsUrl: BYBIT_WS_URL,
    nativeSymbols(symbols) {
      return symbols.map((s) => {
        const native = bybitNativeSymbol(s);
        wireOf(native);
        return native;
      });
    },
    url: (wsUrl) => bybitCategoryUrl(wsUrl, category),
    subscribeMessages(symbols) {
      const topics = symbols.flatMap((s) => topicsOf(category, wireOf(s)));
      const out: string[] = [];
      for (let i = 0; i < topics.length; i += ARGS_PER_SUBSCRIBE) {
        out.push(JSON.stringify({ op: 'subscribe', args: topics.slice(i, i + ARGS_PER_SUBSCRIBE) }));
      }
      return out;
    },
    appPing: { intervalMs: BYBIT_PING_INTERVAL_MS, message: BYBIT_PING_MESSAGE },
    onFrame(data: string, ctx: ConnectionContext) {
      // Put the category on the frame: Bybit's frames do not say which endpoint they came from.
      ctx.emit(data, channel);
      return false;
    },
    resync(symbol: string, ctx: ConnectionContext) {
      const args = [`orderbook.${BYBIT_BOOK_DEPTH}.${wireOf(symbol)}`];
      ctx.send(JSON.stringify({ op: 'unsubscribe', args }));
      ctx.send(JSON.stringify({ op: 'subscribe', args }));
    },
  };
}

/**
 * The live Bybit feed for symbols of one or both categories: one connection per category, merged.
 * Bad symbols reject the first `next()` with VigilError (VIGIL_ERR_FEED, 400).
 */
export function connectBybit(options: LiveFeedOptions, tuning: ConnectionTuning = {}): LiveFeed {
  const log = options.log ?? (() => {});
  const feeds = new Map<BybitCategory, LiveFeed>();
  let iterated = false;

  async function* frames(): AsyncGenerator<RawFrame, void, undefined> {
    const groups = new Map<BybitCategory, string[]>();
    for (const s of options.symbols) {
      let native: string;
      try {
        native = bybitNativeSymbol(s);
      } catch (err) {
        throw new VigilError(ERR.FEED, `bybit: ${(err as Error).message}`, 400, { symbol: s });
      }
      const { category } = splitBybitNative(native);
      const list = groups.get(category) ?? [];
      if (!list.includes(native)) list.push(native);
      groups.set(category, list);
    }
    if (groups.size === 0) throw new VigilError(ERR.FEED, 'bybit: no symbols to subscribe to', 400);
    const ctrl = new AbortController();
    const outer = options.signal;
    const onAbort = (): void => ctrl.abort();
    if (outer?.aborted) return;
    outer?.addEventListener('abort', onAbort, { once: true });
    for (const [category, symbols] of groups) {
      feeds.set(category, connectVenue(bybitProtocol(category), { ...options, symbols, signal: ctrl.signal }, tuning));
    }
    try {
      const iters = [...feeds.values()].map((f) => f[Symbol.asyncIterator]());
      if (iters.length === 1) {
        yield* { [Symbol.asyncIterator]: () => iters[0]! };
        return;
      }
      type Next = { i: number; r: IteratorResult<RawFrame> };
      const pending = new Map<number, Promise<Next>>();
      const pull = (i: number): void => {
        pending.set(
          i,
          iters[i]!.next().then((r) => ({ i, r })),
        );
      };
      for (let i = 0; i < iters.length; i++) pull(i);
      while (pending.size > 0) {
        const { i, r } = await Promise.race(pending.values());
        if (r.done === true) {
          pending.delete(i);
          continue;
        }
        pull(i);
        yield r.value;
      }
    } finally {
      outer?.removeEventListener('abort', onAbort);
      ctrl.abort(); // stops every connection; their pending next() calls end
    }
  }

  return {
    [Symbol.asyncIterator](): AsyncIterator<RawFrame> {
      if (iterated) throw new VigilError(ERR.FEED, 'bybit: a live feed can be iterated only once', 500);
      iterated = true;
      return frames();
    },
    resync(symbol: string, reason: string): void {
      let feed: LiveFeed | undefined;
      try {
        feed = feeds.get(splitBybitNative(symbol).category);
      } catch {
        feed = undefined;
      }
      if (feed === undefined) {
        log(`bybit: resync of ${symbol} ignored: no connection carries it`, { reason });
        return;
      }
      feed.resync(symbol, reason);
    },
  };
}

export const bybitAdapter: VenueAdapter = {
  name: VENUE,
  createNormalizer: (context?: NormalizerContext) => new BybitNormalizer(context),
  connect: (options: LiveFeedOptions): LiveFeed => connectBybit(options),
};
