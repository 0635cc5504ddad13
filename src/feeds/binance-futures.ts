/**
 * Binance USD-M futures (venue `binance-futures`): the same wire format as spot with a few differences,
 * so everything but this market description is shared with binance.ts:
 * - streams on wss://fstream.binance.com (`<symbol>@aggTrade`, `@bookTicker`, `@depth@100ms`); REST
 *   snapshots from https://fapi.binance.com/fapi/v1/depth;
 * - depthUpdate carries `pu` (the previous diff's u) and the sync rules differ: diffs with u < lastUpdateId
 *   are dropped, the first applied one must have U <= lastUpdateId <= u, every next one pu == previous u;
 * - bookTicker has `e`, `E` and `T` (ts = E);
 * - symbols: perpetuals `BTCUSDT` → `BTC-USDT-PERP`, quarterly contracts `BTCUSDT_250926` → `BTC-USDT-250926`;
 * - `markPriceUpdate` (and the other futures-only streams) are labelled, not events.
 */
import { binanceMarketAdapter, binanceProtocol, type BinanceMarket } from './binance.ts';
import { binanceSymbol } from './symbols.ts';
import { MalformedFrameError, type VenueAdapter } from './types.ts';
import type { VenueProtocol } from './connection-types.ts';

export const BINANCE_FUTURES_WS_URL = 'wss://fstream.binance.com';
export const BINANCE_FUTURES_REST_URL = 'https://fapi.binance.com';

const MEMO_LIMIT = 10_000;
const memo = new Map<string, string>();
const DELIVERY_RE = /^([A-Z0-9]+)_(\d{6})$/;

/** `BTCUSDT` → `BTC-USDT-PERP`, `BTCUSDT_250926` → `BTC-USDT-250926`. Throws MalformedFrameError. */
export function binanceFuturesSymbol(raw: string): string {
  const hit = memo.get(raw);
  if (hit !== undefined) return hit;
  if (typeof raw !== 'string' || raw.length === 0) throw new MalformedFrameError('missing symbol');
  const upper = raw.toUpperCase();
  const delivery = DELIVERY_RE.exec(upper);
  const result = delivery !== null ? `${binanceSymbol(delivery[1]!)}-${delivery[2]!}` : `${binanceSymbol(upper)}-PERP`;
  if (memo.size >= MEMO_LIMIT) memo.clear();
  memo.set(raw, result);
  return result;
}

/** User input → futures wire symbol: `BTC-USDT-PERP` / `btcusdt` → `BTCUSDT`, `BTC-USDT-250926` → `BTCUSDT_250926`. */
export function binanceFuturesWireSymbol(input: string): string {
  const upper = input.trim().toUpperCase();
  const delivery = /^(.*?)[-_/](\d{6})$/.exec(upper);
  if (delivery !== null) return `${delivery[1]!.replace(/[-/_]/g, '')}_${delivery[2]!}`;
  return upper.replace(/[-/_]PERP$/, '').replace(/[-/_]/g, '');
}

export const binanceFuturesMarket: BinanceMarket = {
  venue: 'binance-futures',
  symbol: binanceFuturesSymbol,
  wireSymbol: binanceFuturesWireSymbol,
  sync: 'futures',
  streams: ['aggTrade', 'bookTicker', 'depth@100ms'],
  restDepthPath: '/fapi/v1/depth',
  defaultWsUrl: BINANCE_FUTURES_WS_URL,
  defaultRestUrl: BINANCE_FUTURES_REST_URL,
};

export const binanceFuturesProtocol: VenueProtocol = binanceProtocol(binanceFuturesMarket);

export const binanceFuturesAdapter: VenueAdapter = binanceMarketAdapter(binanceFuturesMarket, binanceFuturesProtocol);
