/**
 * A strict reader of the three Binance spot frame layouts that make up nearly all of a replay:
 * `trade`, `bookTicker` and `depthUpdate`, in the combined-stream envelope or bare.
 *
 * Why: the replay hot path spent more time in JSON.parse than anywhere else, and JSON.parse builds
 * every key, every string and every array of the frame only for the normalizer to read a few fields
 * and drop the rest. This scanner reads the fields straight from the frame, with no intermediate
 * object, so normalizing a hot frame costs less than parsing it. It works on the frame's bytes (one
 * TextEncoder.encodeInto per frame into a reused buffer): reading a byte is several times cheaper than
 * String.prototype.charCodeAt, which is what decides the speed here.
 *
 * Contract: it recognises exactly the layouts Binance sends, byte for byte in their structure —
 *   envelope    {"stream":"<text>","data":<payload>}   (or the payload alone)
 *   trade       {"e":"trade","E":<int>,"s":"<sym>","t":<int>,"p":"<dec>","q":"<dec>","T":<int>,"m":<bool>,"M":<bool>}
 *   bookTicker  {"u":<int>,"s":"<sym>","b":"<dec>","B":"<dec>","a":"<dec>","A":"<dec>"}
 *   depthUpdate {"e":"depthUpdate","E":<int>,"s":"<sym>","U":<int>,"u":<int>,"b":<levels>,"a":<levels>}
 *   levels      [] or [["<dec>","<dec>"],…]
 * with keys in that order, ASCII only, no whitespace, no escapes or control characters in strings,
 * <sym> non-empty, <int> plain JSON digits (no sign, fraction, exponent or leading zero) at most
 * Number.MAX_SAFE_INTEGER, <dec> digits with at most one dot, <bool> true or false, and nothing after
 * the closing brace. Anything else is NOT_MINE, and the caller takes the JSON.parse path, which keeps
 * its own events and error messages. Every text accepted here is valid JSON, and the values read are
 * the ones JSON.parse plus the normalizer's field reading give: integers exactly, decimals exactly as
 * decimalText (normalize-util.ts) reads the same text. The scanner checks the layout, and of the values
 * only the depth levels' (price > 0, both finite), which it reads one by one anyway; the other value
 * checks (trade and bookTicker prices, U <= u, the symbol's mapping) stay with the normalizer.
 */
import { POW10, type Pair } from './normalize-util.ts';

export const NOT_MINE = 0;
export const SCAN_TRADE = 1;
export const SCAN_BOOK_TICKER = 2;
export const SCAN_DEPTH_UPDATE = 3;

const QUOTE = 34; // "
const BACKSLASH = 92;
const COMMA = 44;
const DOT = 46;
const ZERO = 48;
const NINE = 57;
const COLON = 58;
const OPEN_BRACKET = 91;
const CLOSE_BRACKET = 93;
const CLOSE_BRACE = 125;

/** Longer frames are left to JSON.parse (the buffer grows to fit the longest frame scanned, up to 1 MB). */
const MAX_FRAME = (1 << 20) - 1;


const encoder = new TextEncoder();
const ascii = (s: string): Uint8Array => encoder.encode(s);

const ENVELOPE = ascii('{"stream":"');
const DATA = ascii(',"data":');
const BOOK_TICKER_HEAD = ascii('{"u":');
const TRADE_HEAD = ascii('{"e":"trade","E":');
const DEPTH_HEAD = ascii('{"e":"depthUpdate","E":');
// Keys after the first, each one character: `,"<key>":` (key()), with a string value's opening quote (strKey()).
const code = (k: string): number => k.charCodeAt(0);
const KEY_SYMBOL = code('s');
const KEY_T_ID = code('t');
const KEY_PRICE = code('p');
const KEY_QTY = code('q');
const KEY_T_TIME = code('T');
const KEY_M = code('m');
const KEY_M_IGNORED = code('M');
const KEY_BID = code('b'); // also depthUpdate's bids
const KEY_BID_QTY = code('B');
const KEY_ASK = code('a'); // also depthUpdate's asks
const KEY_ASK_QTY = code('A');
const KEY_FIRST_ID = code('U');
const KEY_LAST_ID = code('u');
const TRUE = ascii('true');
const FALSE = ascii('false');

/**
 * One scanner per normalizer, reused frame after frame: scan() fills the fields of the layout it
 * matched (the others keep stale values) and returns which one.
 */
export class BinanceScan {
  /** The symbol `s` as sent: the same string object while it does not change from frame to frame. */
  symbol = '';
  /** trade: E, T, t (as text: exactly String(t), as id() makes it), p, q, m. */
  eventTime = 0;
  tradeTime = 0;
  tradeId = '';
  price = 0;
  qty = 0;
  buyerIsMaker = false;
  /** bookTicker: u, b, B, a, A. depthUpdate: E (eventTime), U, u (lastId), b, a. */
  lastId = 0;
  firstId = 0;
  bidPx = 0;
  bidQty = 0;
  askPx = 0;
  askQty = 0;
  bids: Pair[] = [];
  asks: Pair[] = [];

  /** The frame's bytes, then a 0 that stops every loop at the end (JSON has no raw 0 byte anywhere). */
  private b = new Uint8Array(4096);
  private i = 0;
  private text = '';
  /** The bytes of `symbol`. */
  private symbolBytes = new Uint8Array(0);

  /** SCAN_TRADE, SCAN_BOOK_TICKER or SCAN_DEPTH_UPDATE with the fields filled, else NOT_MINE. */
  scan(text: string): number {
    const n = text.length;
    // `{"s…` (envelope), `{"u…` or `{"e…` (bare payload), before anything is copied: a REST snapshot or
    // other frame is turned away at once.
    const c2 = text.charCodeAt(2);
    if (text.charCodeAt(0) !== 123 || text.charCodeAt(1) !== QUOTE || (c2 !== 115 && c2 !== 117 && c2 !== 101)) return NOT_MINE;
    if (n >= this.b.length) {
      if (n > MAX_FRAME) return NOT_MINE;
      this.b = new Uint8Array(2 ** Math.ceil(Math.log2(n + 1)));
    }
    // One byte per char only when every char is ASCII: then byte offsets are string offsets.
    const r = encoder.encodeInto(text, this.b);
    if (r.read !== n || r.written !== n) return NOT_MINE;
    this.b[n] = 0;
    this.text = text;
    this.i = 0;
    let enveloped = false;
    if (this.lit(ENVELOPE)) {
      if (!this.skipString() || !this.lit(DATA)) return NOT_MINE;
      enveloped = true;
    }
    let kind: number;
    if (this.lit(BOOK_TICKER_HEAD)) kind = this.bookTicker();
    else if (this.lit(TRADE_HEAD)) kind = this.trade();
    else if (this.lit(DEPTH_HEAD)) kind = this.depthUpdate();
    else return NOT_MINE;
    if (kind === NOT_MINE || (enveloped && !this.char(CLOSE_BRACE))) return NOT_MINE;
    return this.i === n ? kind : NOT_MINE;
  }

  private trade(): number {
    if ((this.eventTime = this.uint()) < 0 || !this.readSymbol() || !this.key(KEY_T_ID)) return NOT_MINE;
    const t0 = this.i;
    if (this.uint() < 0) return NOT_MINE;
    this.tradeId = this.text.slice(t0, this.i);
    if (!this.strKey(KEY_PRICE) || Number.isNaN((this.price = this.decimal()))) return NOT_MINE;
    if (!this.strKey(KEY_QTY) || Number.isNaN((this.qty = this.decimal()))) return NOT_MINE;
    if (!this.key(KEY_T_TIME) || (this.tradeTime = this.uint()) < 0) return NOT_MINE;
    if (!this.key(KEY_M)) return NOT_MINE;
    const m = this.bool();
    if (m < 0 || !this.key(KEY_M_IGNORED) || this.bool() < 0 || !this.char(CLOSE_BRACE)) return NOT_MINE;
    this.buyerIsMaker = m === 1;
    return SCAN_TRADE;
  }

  private bookTicker(): number {
    if ((this.lastId = this.uint()) < 0 || !this.readSymbol()) return NOT_MINE;
    if (!this.strKey(KEY_BID) || Number.isNaN((this.bidPx = this.decimal()))) return NOT_MINE;
    if (!this.strKey(KEY_BID_QTY) || Number.isNaN((this.bidQty = this.decimal()))) return NOT_MINE;
    if (!this.strKey(KEY_ASK) || Number.isNaN((this.askPx = this.decimal()))) return NOT_MINE;
    if (!this.strKey(KEY_ASK_QTY) || Number.isNaN((this.askQty = this.decimal()))) return NOT_MINE;
    return this.char(CLOSE_BRACE) ? SCAN_BOOK_TICKER : NOT_MINE;
  }

  private depthUpdate(): number {
    if ((this.eventTime = this.uint()) < 0 || !this.readSymbol()) return NOT_MINE;
    if (!this.key(KEY_FIRST_ID) || (this.firstId = this.uint()) < 0) return NOT_MINE;
    if (!this.key(KEY_LAST_ID) || (this.lastId = this.uint()) < 0) return NOT_MINE;
    if (!this.key(KEY_BID)) return NOT_MINE;
    const bids = this.levels();
    if (bids === undefined || !this.key(KEY_ASK)) return NOT_MINE;
    const asks = this.levels();
    if (asks === undefined || !this.char(CLOSE_BRACE)) return NOT_MINE;
    // Fresh arrays per frame: they become the book event's.
    this.bids = bids;
    this.asks = asks;
    return SCAN_DEPTH_UPDATE;
  }

  // ------------------------------------------------------------ tokens

  /** The bytes of `lit` at the cursor: consumed, true; else false. */
  private lit(lit: Uint8Array): boolean {
    const b = this.b;
    const i = this.i;
    const n = lit.length;
    for (let k = 0; k < n; k++) if (b[i + k] !== lit[k]) return false; // the end's 0 never matches
    this.i = i + n;
    return true;
  }

  /** `,"<name>":` at the cursor: consumed, true; else false. Byte by byte with no table: one compare each. */
  private key(name: number): boolean {
    const b = this.b;
    const i = this.i;
    if (b[i] !== COMMA || b[i + 1] !== QUOTE || b[i + 2] !== name || b[i + 3] !== QUOTE || b[i + 4] !== COLON) return false;
    this.i = i + 5;
    return true;
  }

  /** `,"<name>":"`: a key and the opening quote of its string value. */
  private strKey(name: number): boolean {
    if (!this.key(name) || this.b[this.i] !== QUOTE) return false;
    this.i++;
    return true;
  }

  private char(c: number): boolean {
    if (this.b[this.i] !== c) return false;
    this.i++;
    return true;
  }

  /**
   * The rest of a string whose opening quote is read, through its closing quote: false on an escape
   * or a control character (which JSON does not allow unescaped), and so at the end of the frame.
   */
  private skipString(): boolean {
    const b = this.b;
    let i = this.i;
    for (;;) {
      const c = b[i]!;
      if (c === QUOTE) break;
      if (c < 32 || c === BACKSLASH) return false;
      i++;
    }
    this.i = i + 1;
    return true;
  }

  /** `,"s":"<symbol>"`: non-empty; the last frame's string object again when the bytes are the same. */
  private readSymbol(): boolean {
    if (!this.strKey(KEY_SYMBOL)) return false;
    const b = this.b;
    const start = this.i;
    // The last symbol's bytes then a quote: the same symbol, read in one pass (those bytes passed
    // skipString() before, so they need no check again; none is 0, so the compare stops at the end).
    const known = this.symbolBytes;
    const n = known.length;
    if (n > 0 && b[start + n] === QUOTE) {
      let k = 0;
      while (k < n && b[start + k] === known[k]) k++;
      if (k === n) {
        this.i = start + n + 1;
        return true;
      }
    }
    if (!this.skipString()) return false;
    const end = this.i - 1;
    if (end === start) return false;
    this.symbol = this.text.slice(start, end);
    this.symbolBytes = b.slice(start, end);
    return true;
  }

  /**
   * A JSON integer of plain digits: no sign, fraction or exponent, no leading zero, at most
   * Number.MAX_SAFE_INTEGER (so the digit loop is exact); -1 otherwise. Whatever follows the digits is
   * for the next token to check.
   */
  private uint(): number {
    const b = this.b;
    const start = this.i;
    let i = start;
    let v = 0;
    for (;;) {
      const c = b[i]!;
      if (c < ZERO || c > NINE) break;
      v = v * 10 + (c - ZERO);
      i++;
    }
    const n = i - start;
    // 17+ digits are above 2^53 anyway; once a prefix passes 2^53, v stays past it (rounding is monotonic).
    if (n === 0 || n > 16 || (n > 1 && b[start] === ZERO) || v > Number.MAX_SAFE_INTEGER) return -1;
    this.i = i;
    return v;
  }

  /** true → 1, false → 0, else -1. */
  private bool(): number {
    if (this.lit(TRUE)) return 1;
    if (this.lit(FALSE)) return 0;
    return -1;
  }

  /**
   * A quoted plain decimal whose opening quote is read, through its closing quote: digits with at most
   * one dot and at least one digit, else NaN. Its value is decimalText's for the same text, step for
   * step: up to 16 characters and 15 digits the digits as an integer over a power of ten, else `+text`.
   * The integer part and the fraction are read as two integers (int32 arithmetic for the usual 9 digits
   * or fewer each, where one chain of doubles costs twice as much), joined exactly: every partial value
   * is an integer below 10^15.
   */
  private decimal(): number {
    const b = this.b;
    const start = this.i;
    let i = start;
    let ip = 0;
    // d: the byte's digit value, a digit when d >>> 0 <= 9 (one unsigned compare; other bytes, the 0 at
    // the end included, go negative or above 9).
    let d = b[i]! - ZERO;
    while (d >>> 0 <= 9) {
      ip = ip * 10 + d;
      d = b[++i]! - ZERO;
    }
    let fp = 0;
    let fd = -1; // fraction digits; -1: no dot
    if (d === DOT - ZERO) {
      const f0 = i + 1;
      d = b[++i]! - ZERO;
      while (d >>> 0 <= 9) {
        fp = fp * 10 + d;
        d = b[++i]! - ZERO;
      }
      fd = i - f0;
    }
    if (d !== QUOTE - ZERO) return NaN; // another character, a second dot, or the end of the frame
    this.i = i + 1;
    const n = i - start;
    const digits = fd < 0 ? n : n - 1;
    if (digits === 0) return NaN;
    if (n > 16 || digits > 15) return +this.text.slice(start, i);
    if (fd < 0) return ip;
    const scale = POW10[fd] as number;
    return (ip * scale + fp) / scale;
  }

  /**
   * `[]` or `[["<dec>","<dec>"],…]`; undefined when the levels are anything else, or when a level
   * fails the normalizer's checks of it (price > 0, price and size finite: levels() in binance.ts), so
   * that the normalizer does not walk them again. A byte is checked before the one after it is read:
   * the 0 at the end of the frame stops every test.
   */
  private levels(): Pair[] | undefined {
    const b = this.b;
    if (b[this.i] !== OPEN_BRACKET) return undefined;
    const out: Pair[] = [];
    if (b[++this.i] === CLOSE_BRACKET) {
      this.i++;
      return out;
    }
    for (;;) {
      if (b[this.i] !== OPEN_BRACKET || b[this.i + 1] !== QUOTE) return undefined;
      this.i += 2;
      const px = this.decimal();
      if (!(px > 0 && px !== Infinity) || b[this.i] !== COMMA || b[this.i + 1] !== QUOTE) return undefined;
      this.i += 2;
      const q = this.decimal();
      if (!(q >= 0 && q !== Infinity) || b[this.i] !== CLOSE_BRACKET) return undefined;
      out.push([px, q]);
      const c = b[this.i + 1];
      this.i += 2;
      if (c === CLOSE_BRACKET) return out;
      if (c !== COMMA) return undefined;
    }
  }
}
