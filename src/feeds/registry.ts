/** Venue adapters by name (also RawFrame.source). */
import { ERR, VigilError } from '../core/errors.ts';
import { binanceAdapter } from './binance.ts';
import type { VenueAdapter } from './types.ts';

export const venues: Record<string, VenueAdapter> = { binance: binanceAdapter };

/** The adapter for `name`; throws VigilError (VIGIL_ERR_FEED, 400) naming the known venues. */
export function getAdapter(name: string): VenueAdapter {
  const adapter = Object.hasOwn(venues, name) ? venues[name] : undefined;
  if (adapter === undefined) {
    const known = Object.keys(venues).sort().join(', ');
    throw new VigilError(ERR.FEED, `unknown venue "${name}" (known: ${known})`, 400, { venue: name, known: Object.keys(venues) });
  }
  return adapter;
}
