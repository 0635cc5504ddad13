/** Venue adapters by name (also RawFrame.source). */
import { ERR, VigilError } from '../core/errors.ts';
import { binanceAdapter } from './binance.ts';
import { binanceFuturesAdapter } from './binance-futures.ts';
import { bybitAdapter } from './bybit.ts';
import { coinbaseAdapter, coinbaseAdvancedAdapter } from './coinbase.ts';
import { krakenAdapter } from './kraken.ts';
import { okxAdapter } from './okx.ts';
import { mappedAdapter } from './mapping.ts';
import { orderFlowAdapter } from './orderflow.ts';
import { transactionsAdapter } from './transactions.ts';
import type { VenueAdapter } from './types.ts';

export const venues: Record<string, VenueAdapter> = { binance: binanceAdapter, 'binance-futures': binanceFuturesAdapter, bybit: bybitAdapter, okx: okxAdapter, kraken: krakenAdapter, coinbase: coinbaseAdapter, 'coinbase-advanced': coinbaseAdvancedAdapter };
// Vigil's own order-flow and transaction streams, and providers' JSON streams through a mapping file.
Object.assign(venues, { orderflow: orderFlowAdapter, transactions: transactionsAdapter, mapped: mappedAdapter });

/** The adapter for `name`; throws VigilError (VIGIL_ERR_FEED, 400) naming the known venues. */
export function getAdapter(name: string): VenueAdapter {
  const adapter = Object.hasOwn(venues, name) ? venues[name] : undefined;
  if (adapter === undefined) {
    const known = Object.keys(venues).sort().join(', ');
    throw new VigilError(ERR.FEED, `unknown venue "${name}" (known: ${known})`, 400, { venue: name, known: Object.keys(venues) });
  }
  return adapter;
}
