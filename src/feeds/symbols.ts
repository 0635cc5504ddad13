/**
 * Venue symbol → canonical symbol (BASE-QUOTE, upper case).
 *
 * Binance concatenates base and quote (`BTCUSDT`), so the split is found by the longest known quote
 * asset that is a suffix and leaves a non-empty base. Longest first matters: `BTCFDUSD` is BTC-FDUSD,
 * not BTCFD-USD; `BTCTUSD` is BTC-TUSD. The rule is ambiguous for a few pairs that Binance spot (.com)
 * does not list (e.g. a hypothetical `DOTUSD` would read as DO-TUSD); add an override to
 * BINANCE_SYMBOL_OVERRIDES if one ever shows up.
 */
import { MalformedFrameError } from './types.ts';

/** Quote assets Binance spot uses, in no particular order (matching sorts them longest first). */
export const BINANCE_QUOTE_ASSETS: readonly string[] = [
  'USDT', 'USDC', 'FDUSD', 'BUSD', 'TUSD', 'USDP', 'DAI', 'USD',
  'BTC', 'ETH', 'BNB', 'XRP', 'DOGE', 'DOT', 'TRX',
  'EUR', 'GBP', 'TRY', 'BRL', 'AUD', 'JPY', 'RUB', 'UAH', 'BIDR', 'IDRT', 'ZAR', 'NGN', 'PLN', 'RON',
  'ARS', 'MXN', 'COP', 'CZK',
];

/** Explicit splits for symbols the suffix rule gets wrong (venue symbol → canonical). */
export const BINANCE_SYMBOL_OVERRIDES: Readonly<Record<string, string>> = {};

const QUOTES_LONGEST_FIRST = [...BINANCE_QUOTE_ASSETS].sort((a, b) => b.length - a.length);
const MEMO_LIMIT = 10_000;
const memo = new Map<string, string>();

/** `BTCUSDT` / `btcusdt` → `BTC-USDT`. Throws MalformedFrameError when no known quote asset matches. */
export function binanceSymbol(raw: string): string {
  const hit = memo.get(raw);
  if (hit !== undefined) return hit;
  const result = splitBinanceSymbol(raw);
  if (memo.size >= MEMO_LIMIT) memo.clear(); // a garbage feed must not grow the memo without bound
  memo.set(raw, result);
  return result;
}

function splitBinanceSymbol(raw: string): string {
  if (typeof raw !== 'string' || raw.length === 0) throw new MalformedFrameError('missing symbol');
  const upper = raw.toUpperCase();
  const override = BINANCE_SYMBOL_OVERRIDES[upper];
  if (override !== undefined) return override;
  if (!/^[A-Z0-9]+$/.test(upper)) throw new MalformedFrameError(`invalid symbol "${raw}"`);
  for (const quote of QUOTES_LONGEST_FIRST) {
    if (upper.length > quote.length && upper.endsWith(quote)) {
      return `${upper.slice(0, upper.length - quote.length)}-${quote}`;
    }
  }
  throw new MalformedFrameError(`symbol "${raw}" has no known quote asset`);
}

/** Canonical or venue symbol → Binance wire symbol: `BTC-USDT` / `btcusdt` → `BTCUSDT`. */
export function binanceWireSymbol(symbol: string): string {
  return symbol.replace(/[-/_]/g, '').toUpperCase();
}
