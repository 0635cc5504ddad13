/**
 * The contract between the shared connection base (src/feeds/connection.ts) and each venue: a venue
 * describes its protocol, the base does the rest — connect, subscribe within rate limits, ping/pong,
 * stale-feed watchdog, reconnect with capped exponential backoff and jitter, re-subscribe, planned
 * reconnects before a venue's forced disconnect, status frames, bounded buffering with pause.
 */
import type { RawFrame } from './types.ts';

export interface ConnectionContext {
  /** Sends a text frame on the current socket (no-op when not connected). */
  send(data: string): void;
  /** Puts a frame into the stream as if received now (REST snapshots, with their channel). */
  emit(data: string, channel?: string): void;
  /** GET with retries and backoff; resolves to the body text; rejects when the connection is aborted. */
  fetchText(url: string): Promise<string>;
  /** The venue's REST base URL (options.restUrl or the protocol's default). */
  readonly restUrl: string;
  log(msg: string, extra?: Record<string, unknown>): void;
}

export interface VenueProtocol {
  /** RawFrame.source of every frame, e.g. `binance`, `kraken`. */
  readonly venue: string;
  readonly defaultWsUrl: string;
  readonly defaultRestUrl?: string;
  /** Venue-native symbols from user input (e.g. btcusdt → BTCUSDT, BTC-USD → XBT/USD). */
  nativeSymbols(symbols: string[]): string[];
  /** The URL to open (Binance puts streams in the URL; others subscribe after open). */
  url(wsUrl: string, symbols: string[]): string;
  /** Messages sent after open, in order, no faster than subscribeRatePerSec. */
  subscribeMessages(symbols: string[]): string[];
  /** Max subscribe messages per second (venue limits; default 5). */
  subscribeRatePerSec?: number;
  /** An application-level ping the venue expects (OKX `ping`, Bybit {"op":"ping"}), and its period. */
  appPing?: { intervalMs: number; message: string };
  /** Period of WebSocket control pings; a missing pong within the period means a dead socket. Default 30 s. */
  wsPingIntervalMs?: number;
  /** No frame for this long → the feed is stale: status frame, reconnect. Default 30 s. */
  staleAfterMs?: number;
  /** Reconnect on purpose before the venue's own forced disconnect (Binance: 24 h). */
  maxConnectionMs?: number;
  /**
   * Sees every received frame first. Returns false to keep a frame out of the stream (pongs, acks it
   * wants hidden — most venues keep acks in: the normalizer labels them ignored). May send replies
   * (a pong to a venue's ping) or emit frames (Binance: fetch the REST snapshot after a symbol's
   * first depth diff).
   */
  onFrame?(data: string, ctx: ConnectionContext): boolean | void;
  /** Called on every (re)connect before subscribing: reset per-connection state. */
  onOpen?(ctx: ConnectionContext): void;
  /** Rebuild one symbol's book: refetch a REST snapshot (emit it) or send unsubscribe + subscribe. */
  resync(symbol: string, ctx: ConnectionContext): void;
}

export type { RawFrame };
