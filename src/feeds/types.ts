/**
 * Feeds turn raw frames into canonical events. Transport (a WebSocket, a replay file) and
 * normalization are separate: a normalizer sees only RawFrames, so live and replayed frames go through
 * the very same code.
 */
import type { CanonicalEvent } from '../core/events.ts';

export interface RawFrame {
  /** When Vigil (or the recording collector) received the frame, epoch ms (fractional allowed). */
  recvTs: number;
  /** The adapter that must normalize it, e.g. `binance` (spot). */
  source: string;
  /** The frame exactly as received (text). */
  data: string;
  /** Optional channel hint: e.g. `rest:depth:BTCUSDT` for a REST snapshot fetched for one symbol. */
  channel?: string;
  /** Where it came from, for error reports: file:line or connection id. */
  origin?: string;
}

/** Thrown for a frame that cannot be understood; the frame goes to the dead-letter store with the reason. */
export class MalformedFrameError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'MalformedFrameError';
  }
}

/** Frames Vigil itself puts into a feed's stream (and so into recordings): connection status. */
export const STATUS_CHANNEL = 'vigil:status';
/** RawFrame.data of a STATUS_CHANNEL frame. */
export interface StatusFrameData {
  status: 'connected' | 'disconnected' | 'stale';
  reason: string;
  /** Venue-native symbols the connection carries (e.g. BTCUSDT, XBT/USD, BTC-USDT-SWAP). */
  symbols: string[];
}

export interface NormalizerContext {
  /**
   * Asks the live connection to rebuild one symbol's book (sequence gap, checksum mismatch). In a
   * replay nobody listens: the recording already holds whatever the live connection did.
   */
  requestResync?(symbol: string, reason: string): void;
}

export interface Normalizer {
  readonly venue: string;
  /**
   * Appends the frame's canonical events to `out`. Returns undefined when the frame was turned into
   * events (possibly none, e.g. a buffered depth diff), or a short label for a frame that is
   * deliberately not an event (`subscription-ack`, `kline`, `heartbeat`…), counted as ignored.
   * Throws MalformedFrameError when the frame is broken.
   */
  normalize(frame: RawFrame, out: CanonicalEvent[]): string | undefined;
  /**
   * Per-symbol book figures for the run summary: resyncs (gaps, checksum mismatches) and, where the
   * venue sends both a book and its own best bid/offer, how often the rebuilt top matched it.
   */
  bookReport?(): Record<string, BookReport>;
}

export interface BookReport {
  resyncs: number;
  /**
   * What `compared`/`matched` count: `bbo` — the rebuilt top of book against the venue's own best
   * bid/offer stream, after sync; `checksum` — the venue's book checksums verified against the rebuilt book.
   */
  check?: 'bbo' | 'checksum';
  compared?: number;
  matched?: number;
  /** Book updates the snapshot already covered, dropped as the venue's sync procedure says. */
  dropped?: number;
}

export interface LiveFeedOptions {
  symbols: string[];
  /** Override the venue's endpoints (tests point these at local servers). */
  wsUrl?: string;
  restUrl?: string;
  signal?: AbortSignal;
  log?: (msg: string, extra?: Record<string, unknown>) => void;
}

export interface LiveFeed extends AsyncIterable<RawFrame> {
  /** Rebuild one symbol's book: refetch its snapshot or resubscribe it, as the venue requires. */
  resync(symbol: string, reason: string): void;
}

export interface VenueAdapter {
  /** Registry name, also RawFrame.source, e.g. `binance`. */
  readonly name: string;
  createNormalizer(context?: NormalizerContext): Normalizer;
  /**
   * Live frames (including REST snapshots, with their channel, and STATUS_CHANNEL frames on connect,
   * disconnect and staleness) as an async iterator.
   */
  connect?(options: LiveFeedOptions): LiveFeed;
}
