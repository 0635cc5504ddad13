/**
 * Building blocks shared by the venue normalizers; each venue's protocol logic stays in its own file
 * (binance.ts, kraken.ts, coinbase.ts, bybit.ts, okx.ts, mapping.ts).
 *
 * - field checks for the hot path (no zod): prices finite and > 0, sizes finite and >= 0, integer times
 *   and ids. `fieldChecks` builds them for a venue's conventions (how a bad value is shown in the reason,
 *   whether numbers come as text); the module-level ones are the common case (JSON numbers or numeric
 *   text of any length, bad values shown as JSON), `textChecks` are Bybit's and OKX's;
 * - frames: `checkRecvTs`, `parseJsonFrame`, `parseFrame` (both, one JSON.parse), STATUS_CHANNEL frames
 *   (`feedStatus`, `parseStatusFrame`) and `statusEvent`;
 * - `parseLevels`: a venue's `[["px","sz",…],…]` into the event's [price, qty] pairs plus the venue text
 *   (kept in the OrderBook for checksums over the strings as sent), `applySide`;
 * - `SymbolBooks` (Bybit, OKX): one OrderBook per canonical symbol plus the bookkeeping — book_reset
 *   (status event, clear, ask the live connection to resync, count) and book_synced, STATUS_CHANNEL frames,
 *   derived quotes for symbols without a venue ticker, and the per-symbol `bookReport`.
 */
import type { CanonicalEvent, FeedStatus } from '../core/events.ts';
import { OrderBook } from './book/order-book.ts';
import { MalformedFrameError, STATUS_CHANNEL } from './types.ts';
import type { BookReport, NormalizerContext, RawFrame, StatusFrameData } from './types.ts';

export type Json = Record<string, unknown>;
export type Pair = [number, number];

export { STATUS_CHANNEL };

// ---------------------------------------------------------------- field helpers

/** A short printable form of a bad value for error reasons (objects and arrays as JSON). */
export function describe(v: unknown): string {
  if (v === undefined) return 'missing';
  let s: string;
  if (typeof v === 'string') s = JSON.stringify(v);
  else if (v !== null && typeof v === 'object') {
    try {
      s = JSON.stringify(v) ?? String(v);
    } catch {
      s = String(v);
    }
  } else s = String(v);
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

/** As `describe`, but objects and arrays as String(v) (`[object Object]`): Binance's reasons. */
export function describePlain(v: unknown): string {
  if (v === undefined) return 'missing';
  const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

/** 10^k for k <= 15, each an exact double (decimalText, and binance-scan.ts's byte reading of the same text). */
export const POW10: readonly number[] = Array.from({ length: 16 }, (_, k) => 10 ** k);

/**
 * Numeric text → number, exactly as `+s`: plain decimals of at most 15 digits (`"58000.01000000"`, every
 * price and size venues send as text) by the exact fast path — the digits as an integer below 2^53
 * divided by a power of ten up to 10^15, both exact doubles, so the one correctly rounded division gives
 * the double nearest the text, as `+s` does — anything else by `+s`. About twice as fast as `+s`, which
 * goes to the runtime for every decimal.
 */
export function decimalText(s: string): number {
  const n = s.length;
  if (n > 16) return +s;
  let m = 0;
  let dot = -1;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) m = m * 10 + (c - 48);
    else if (c === 46 && dot < 0) dot = i;
    else return +s;
  }
  const digits = dot < 0 ? n : n - 1;
  if (digits === 0 || digits > 15) return +s;
  return dot < 0 ? m : m / (POW10[n - 1 - dot] as number);
}

/** The checks of numeric and id fields, as one venue's conventions want them. */
export interface FieldChecks {
  /** A JSON number, or numeric text read with `+`; NaN for anything else. */
  toNumber(v: unknown): number;
  /** A price: finite and > 0. */
  price(v: unknown, ctx: string, field: string): number;
  /** A size (or a quote price, 0 for an empty side): finite and >= 0. */
  nonNegative(v: unknown, ctx: string, field: string): number;
  /** An epoch-ms time or a sequence number: a non-negative safe integer. */
  int(v: unknown, ctx: string, field: string): number;
  /** An id: a non-empty string or a safe integer. */
  id(v: unknown, ctx: string, field: string): string;
}

export interface FieldCheckOptions {
  /** How a bad value is shown in the reason (default `describe`). */
  show?: (v: unknown) => string;
  /** Longest text read as a number; longer text is not a number (default: any length). */
  maxNumberText?: number;
  /** `int` also reads decimal text of up to 16 digits (default: JSON numbers only). */
  intText?: boolean;
}

/** Field checks for a venue's conventions. Reasons read `<ctx>: <field> must be …, got <value>`. */
export function fieldChecks(options: FieldCheckOptions = {}): FieldChecks {
  const show = options.show ?? describe;
  const maxText = options.maxNumberText ?? Infinity;
  const intText = options.intText === true;
  function toNumber(v: unknown): number {
    if (typeof v === 'number') return v;
    if (typeof v === 'string' && v.length > 0 && v.length <= maxText) return decimalText(v);
    return NaN;
  }
  return {
    toNumber,
    price(v, ctx, field) {
      const n = toNumber(v);
      if (n > 0 && n !== Infinity) return n;
      throw new MalformedFrameError(`${ctx}: ${field} must be a positive number, got ${show(v)}`);
    },
    nonNegative(v, ctx, field) {
      const n = toNumber(v);
      if (n >= 0 && n !== Infinity) return n;
      throw new MalformedFrameError(`${ctx}: ${field} must be a non-negative number, got ${show(v)}`);
    },
    int(v, ctx, field) {
      if (typeof v === 'number') {
        if (Number.isSafeInteger(v) && v >= 0) return v;
      } else if (intText && typeof v === 'string' && /^\d{1,16}$/.test(v)) {
        const n = +v;
        if (Number.isSafeInteger(n)) return n;
      }
      throw new MalformedFrameError(`${ctx}: ${field} must be a non-negative integer, got ${show(v)}`);
    },
    id(v, ctx, field) {
      if (typeof v === 'string' && v.length > 0) return v;
      if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
      throw new MalformedFrameError(`${ctx}: ${field} must be an id, got ${show(v)}`);
    },
  };
}

/** The common conventions (Kraken, Coinbase): JSON numbers or numeric text of any length, integers as JSON numbers. */
export const { toNumber, price, nonNegative, int, id } = fieldChecks();

/**
 * Bybit's and OKX's: every number may come as text (integers too, as decimal text), and text longer
 * than 64 characters is not read as a number.
 */
export const textChecks: FieldChecks = fieldChecks({ maxNumberText: 64, intText: true });

/** A best bid/ask price or size of a Bybit or OKX ticker: as `textChecks.nonNegative`, but "" (an empty side) reads as 0. */
export function quoteField(v: unknown, ctx: string, field: string): number {
  if (v === '') return 0;
  return textChecks.nonNegative(v, ctx, field);
}

/** A signed 32-bit integer (OKX checksums), as a JSON number or a decimal string. */
export function int32(v: unknown, ctx: string, field: string): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d{1,10}$/.test(v) ? +v : NaN;
  if (Number.isInteger(n) && n >= -2147483648 && n <= 4294967295) return n | 0;
  throw new MalformedFrameError(`${ctx}: ${field} must be a 32-bit integer, got ${describe(v)}`);
}

export function str(v: unknown, ctx: string, field: string): string {
  if (typeof v === 'string' && v.length > 0) return v;
  throw new MalformedFrameError(`${ctx}: ${field} must be a non-empty string, got ${describe(v)}`);
}

export function object(v: unknown, ctx: string, field: string): Json {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Json;
  throw new MalformedFrameError(`${ctx}: ${field} must be an object, got ${describe(v)}`);
}

export function array(v: unknown, ctx: string, field: string): unknown[] {
  if (Array.isArray(v)) return v;
  throw new MalformedFrameError(`${ctx}: ${field} must be an array, got ${describe(v)}`);
}

// ---------------------------------------------------------------- frames

/** The recvTs check every normalizer makes; returns it. */
export function checkRecvTs(frame: RawFrame): number {
  const recvTs = frame.recvTs;
  if (!(recvTs >= 0 && recvTs !== Infinity)) {
    throw new MalformedFrameError(`frame recvTs must be a non-negative number, got ${describe(recvTs)}`);
  }
  return recvTs;
}

/** The frame's text through JSON.parse; MalformedFrameError `invalid JSON: …` when it is not JSON. */
export function parseJsonFrame(frame: RawFrame): unknown {
  try {
    return JSON.parse(frame.data) as unknown;
  } catch (err) {
    throw new MalformedFrameError(`invalid JSON: ${(err as Error).message}`);
  }
}

/** Checks the frame's recvTs and parses its text (one JSON.parse). */
export function parseFrame(frame: RawFrame): unknown {
  checkRecvTs(frame);
  return parseJsonFrame(frame);
}

/**
 * The `status` of a STATUS_CHANNEL frame: connected, disconnected or stale, else MalformedFrameError
 * `<ctx>: status must be connected, disconnected or stale, got …`.
 */
export function feedStatus(v: unknown, ctx = 'status frame', show: (v: unknown) => string = describe): StatusFrameData['status'] {
  if (v === 'connected' || v === 'disconnected' || v === 'stale') return v;
  throw new MalformedFrameError(`${ctx}: status must be connected, disconnected or stale, got ${show(v)}`);
}

/** A `status` event of a venue's symbol. */
export function statusEvent(venue: string, symbol: string, status: FeedStatus['status'], reason: string, ts: number, recvTs: number): FeedStatus {
  return { kind: 'status', venue, symbol, ts, recvTs, status, reason };
}

/** A side of a book message, parsed before anything is applied (a broken frame changes no book). */
export interface ParsedSide {
  /** [price, qty] pairs for the book event; qty 0 removes the level. */
  pairs: Pair[];
  /** The venue's text of each price and size, index for index. */
  priceText: string[];
  qtyText: string[];
}

const textNumber = textChecks.toNumber;

/**
 * Bybit's and OKX's `[["px","sz",…],…]` → pairs and texts (numbers read as `textChecks` reads them). Each
 * level needs at least a price and a size.
 */
export function parseLevels(v: unknown, ctx: string, field: string): ParsedSide {
  if (!Array.isArray(v)) throw new MalformedFrameError(`${ctx}: ${field} must be an array of [price, size], got ${describe(v)}`);
  const n = v.length;
  const pairs = new Array<Pair>(n);
  const priceText = new Array<string>(n);
  const qtyText = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const lvl: unknown = v[i];
    if (!Array.isArray(lvl) || lvl.length < 2) {
      throw new MalformedFrameError(`${ctx}: ${field}[${i}] must be [price, size, …], got ${describe(lvl)}`);
    }
    const p0: unknown = lvl[0];
    const q0: unknown = lvl[1];
    // Inline checks: the messages are built only on failure (snapshots have hundreds of levels).
    const px = textNumber(p0);
    if (!(px > 0 && px !== Infinity)) textChecks.price(p0, ctx, `${field}[${i}] price`);
    const q = textNumber(q0);
    if (!(q >= 0 && q !== Infinity)) textChecks.nonNegative(q0, ctx, `${field}[${i}] size`);
    pairs[i] = [px, q];
    priceText[i] = typeof p0 === 'string' ? p0 : String(p0);
    qtyText[i] = typeof q0 === 'string' ? q0 : String(q0);
  }
  return { pairs, priceText, qtyText };
}

/** Applies parsed levels to one side of a book. */
export function applySide(book: OrderBook, side: 'bids' | 'asks', parsed: ParsedSide): void {
  const s = book[side];
  const { pairs, priceText, qtyText } = parsed;
  for (let i = 0; i < pairs.length; i++) {
    const pair = pairs[i]!;
    s.set(pair[0], pair[1], priceText[i], qtyText[i]);
  }
}

/** The [price, qty] pairs of one side of a book, best first (a snapshot event's levels). */
export function levelPairs(side: OrderBook['bids']): Pair[] {
  const pairs = new Array<Pair>(side.length);
  for (let i = 0; i < pairs.length; i++) pairs[i] = [side.priceAt(i), side.qtyAt(i)];
  return pairs;
}

/** Parses a STATUS_CHANNEL frame's data. */
export function parseStatusFrame(frame: RawFrame): StatusFrameData {
  const msg = parseFrame(frame);
  const ctx = 'status frame';
  const o = object(msg, ctx, 'data');
  const status = feedStatus(o.status, ctx);
  const reason = o.reason;
  if (typeof reason !== 'string') throw new MalformedFrameError(`${ctx}: reason must be a string, got ${describe(reason)}`);
  const symbols = array(o.symbols, ctx, 'symbols');
  for (let i = 0; i < symbols.length; i++) {
    if (typeof symbols[i] !== 'string' || (symbols[i] as string).length === 0) {
      throw new MalformedFrameError(`${ctx}: symbols[${i}] must be a venue symbol, got ${describe(symbols[i])}`);
    }
  }
  return { status, reason, symbols: symbols as string[] };
}

// ---------------------------------------------------------------- books per symbol

/** One symbol's book and its figures. */
export class SymbolBook {
  readonly book = new OrderBook();
  /** Book resets (sequence gaps, checksum mismatches) since the normalizer was created. */
  resyncs = 0;
  /** Venue checksums (or other top-of-book statements) compared with the rebuilt book, and how many matched. */
  compared = 0;
  matched = 0;
  /** The venue's last sequence number for this book (OKX seqId), when it sends one. */
  lastSeq: number | undefined;
  /** The best bid/ask of the last derived quote; NaN before the first. */
  private qbp = NaN;
  private qbq = NaN;
  private qap = NaN;
  private qaq = NaN;

  constructor(
    /** Canonical symbol. */
    readonly symbol: string,
    /** Venue-native symbol, as the live connection's resync takes it. */
    readonly native: string,
  ) {}

  /** Drops the book (and the derived-quote memory): it is rebuilt from the next snapshot. */
  clear(): void {
    this.book.clear();
    this.lastSeq = undefined;
    this.qbp = this.qbq = this.qap = this.qaq = NaN;
  }

  /**
   * A snapshot replaces the levels. The sync state and the last derived quote stay: a snapshot of a
   * synced book (Bybit resends them) is not a rebuild, and a quote is derived only if its top differs.
   */
  replaceLevels(): void {
    this.book.bids.clear();
    this.book.asks.clear();
    this.lastSeq = undefined;
  }

  /** True when the best bid/ask (price or size) differs from the last derived quote; remembers it. */
  topChanged(bp: number, bq: number, ap: number, aq: number): boolean {
    if (bp === this.qbp && bq === this.qbq && ap === this.qap && aq === this.qaq) return false;
    this.qbp = bp;
    this.qbq = bq;
    this.qap = ap;
    this.qaq = aq;
    return true;
  }
}

export class SymbolBooks {
  private readonly books = new Map<string, SymbolBook>();

  constructor(
    private readonly venue: string,
    private readonly context: NormalizerContext | undefined,
  ) {}

  get(symbol: string, native: string): SymbolBook {
    let b = this.books.get(symbol);
    if (b === undefined) {
      b = new SymbolBook(symbol, native);
      this.books.set(symbol, b);
    }
    return b;
  }

  find(symbol: string): SymbolBook | undefined {
    return this.books.get(symbol);
  }

  statusEvent(symbol: string, status: FeedStatus['status'], reason: string, ts: number, recvTs: number): FeedStatus {
    return statusEvent(this.venue, symbol, status, reason, ts, recvTs);
  }

  /**
   * The book is inconsistent (gap, checksum mismatch): a `book_reset` status event, the book cleared,
   * the live connection asked to resync this one symbol, the reset counted.
   */
  reset(b: SymbolBook, reason: string, ts: number, recvTs: number, out: CanonicalEvent[]): void {
    b.resyncs++;
    b.clear();
    out.push(this.statusEvent(b.symbol, 'book_reset', reason, ts, recvTs));
    this.context?.requestResync?.(b.native, reason);
  }

  /** A snapshot made the book whole: `book_synced` when it was not synced before. */
  synced(b: SymbolBook, reason: string, ts: number, recvTs: number, out: CanonicalEvent[]): void {
    if (!b.book.synced) {
      b.book.synced = true;
      out.push(this.statusEvent(b.symbol, 'book_synced', reason, ts, recvTs));
    }
  }

  /** A derived quote (from the rebuilt book) when the best bid/ask price or size changed. */
  derivedQuote(b: SymbolBook, ts: number, recvTs: number, out: CanonicalEvent[]): void {
    if (!b.book.synced) return;
    const bid = b.book.bestBid;
    const ask = b.book.bestAsk;
    const bp = bid?.price ?? 0;
    const bq = bid?.qty ?? 0;
    const ap = ask?.price ?? 0;
    const aq = ask?.qty ?? 0;
    if (!b.topChanged(bp, bq, ap, aq)) return;
    out.push({ kind: 'quote', venue: this.venue, symbol: b.symbol, ts, recvTs, bidPx: bp, bidQty: bq, askPx: ap, askQty: aq, seq: b.book.seq, derived: true });
  }

  /**
   * A STATUS_CHANNEL frame: one `status` event per symbol; on `disconnected` or `stale` that symbol's
   * book is dropped (the next connection's snapshot rebuilds it). `canonical` maps a native symbol,
   * and may throw MalformedFrameError for one it cannot read.
   */
  statusFrame(frame: RawFrame, canonical: (native: string) => string, out: CanonicalEvent[], onDrop?: (symbol: string) => void): void {
    const data = parseStatusFrame(frame);
    const symbols = data.symbols.map(canonical); // all mapped before any event: a bad frame emits nothing
    const recvTs = frame.recvTs;
    const ts = Math.floor(recvTs);
    const drop = data.status !== 'connected';
    for (const symbol of symbols) {
      if (drop) {
        this.books.get(symbol)?.clear();
        onDrop?.(symbol);
      }
      out.push(this.statusEvent(symbol, data.status, data.reason, ts, recvTs));
    }
  }

  /** Per canonical symbol: resyncs, and the comparisons with the venue's own statement where there are any. */
  report(): Record<string, BookReport> {
    const out: Record<string, BookReport> = {};
    for (const [symbol, b] of this.books) {
      const r: BookReport = { resyncs: b.resyncs };
      if (b.compared > 0) {
        // Only OKX's checksums are compared here.
        r.check = 'checksum';
        r.compared = b.compared;
        r.matched = b.matched;
      }
      out[symbol] = r;
    }
    return out;
  }
}
