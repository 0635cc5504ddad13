/** Feed status handling shared by the market detectors. */
import type { FeedStatus } from '../core/events.ts';

/** Statuses that mean data was (or may have been) lost. */
export const FEED_LOSS: ReadonlySet<FeedStatus['status']> = new Set(['disconnected', 'gap', 'stale']);

/**
 * Book-resync bookkeeping of the quote detectors: book_reset starts a resync, book_synced ends it.
 * Returns whether the status ends what is under way (book_reset, disconnected, gap, stale).
 */
export function bookStatusEnds(s: { resyncing: boolean }, status: FeedStatus['status']): boolean {
  switch (status) {
    case 'book_reset':
      s.resyncing = true;
      return true;
    case 'book_synced':
      s.resyncing = false;
      return false;
    case 'disconnected':
    case 'gap':
    case 'stale':
      return true;
    default:
      return false;
  }
}
