/**
 * The shared live-connection base: `connectVenue(protocol, options)` turns a VenueProtocol (see
 * connection-types.ts) into a LiveFeed — an async iterable of RawFrames plus `resync(symbol, reason)`.
 *
 * What the base does for every venue:
 * - opens `protocol.url(wsUrl, nativeSymbols)`; on open calls `protocol.onOpen`, puts a STATUS_CHANNEL
 *   frame `{status:'connected'}` into the stream, then sends `protocol.subscribeMessages` no faster than
 *   `subscribeRatePerSec` (default 5/s). Every message Vigil sends on the socket (subscribe, resync,
 *   replies, application pings) goes through that one rate-limited outbox, in order: venues count them
 *   all (Binance: 5 incoming messages per second per connection).
 * - WebSocket control pings every `wsPingIntervalMs` (default 30 s); neither a pong nor any frame
 *   before the next ping → the socket is dead: terminate and reconnect (a frame counts because under a
 *   backlog the venue's pong waits behind the data). `protocol.appPing` is sent on its own period.
 * - stale watchdog: no frame for `staleAfterMs` (default 30 s) → a `stale` status frame, then reconnect.
 * - planned reconnect after `maxConnectionMs`: a second connection is opened while the first still
 *   delivers; the moment it is open the old one is closed, a `disconnected` status frame with reason
 *   `planned reconnect` goes into the stream (normalizers drop their books) followed by the new
 *   connection's `connected` frame and its frames (which rebuild the books). So no book ever mixes the
 *   two connections, and the gap is only the frames in flight on the old socket, not a whole handshake.
 *   If the new connection cannot open, the old one keeps going and the switch is retried with backoff.
 * - on close or error: a `disconnected` status frame with the reason, reconnect with capped exponential
 *   backoff and jitter (base 500 ms, cap 30 s; the attempt count restarts after a connection that
 *   delivered frames), re-subscribe.
 * - `protocol.onFrame` sees every received frame first; it may keep it out of the stream, send, emit.
 * - `ctx.fetchText` GETs with retries and backoff (global fetch), cancelled when its connection ends.
 * - a bounded queue between socket and consumer: at the high-water mark the socket is paused (ws stops
 *   reading, TCP pushes back on the venue), at the low-water mark resumed. Nothing is dropped. While the
 *   socket is paused neither the stale watchdog nor the pong check runs (silence proves nothing then).
 * - `options.signal` aborts: the iteration ends at once (queued frames are dropped), sockets are closed
 *   with 1000, pending fetches cancelled. Breaking out of the loop does the same.
 *
 * Status frames carry the venue-native symbols of the connection; their recvTs is when Vigil noticed.
 * Frames a protocol emits synchronously from onFrame come before the frame that caused them.
 */
import WebSocket from 'ws';
import { ERR, VigilError } from '../core/errors.ts';
import type { ConnectionContext, VenueProtocol } from './connection-types.ts';
import { STATUS_CHANNEL } from './types.ts';
import type { LiveFeed, LiveFeedOptions, RawFrame, StatusFrameData } from './types.ts';

export const BACKOFF_BASE_MS = 500;
export const BACKOFF_CAP_MS = 30_000;
/** Queue length at which the socket is paused, and the length at which it resumes. */
export const QUEUE_HIGH_WATER = 2048;
export const QUEUE_LOW_WATER = 512;
export const DEFAULT_SUBSCRIBE_RATE_PER_SEC = 5;
export const DEFAULT_WS_PING_INTERVAL_MS = 30_000;
export const DEFAULT_STALE_AFTER_MS = 30_000;
const HANDSHAKE_TIMEOUT_MS = 10_000;
const FETCH_ATTEMPTS = 5;
const CLOSE_GRACE_MS = 1_000;

/**
 * Connections opened after a venue's first one (reconnects, planned replacements), per venue, in this
 * process: read by the metrics (vigil_feed_reconnects_total).
 */
export const feedReconnects = new Map<string, number>();

/** ctx.fetchText rejected because its connection ended (or the feed was aborted): not worth a retry. */
export class FetchCancelledError extends VigilError {
  constructor(url: string) {
    super(ERR.FEED, `GET ${url} cancelled: connection ended`, 503, { url });
    this.name = 'FetchCancelledError';
  }
}

/** Knobs of the base that are not part of a venue's protocol; tests shrink them. */
export interface ConnectionTuning {
  backoffBaseMs?: number;
  backoffCapMs?: number;
  queueHighWater?: number;
  queueLowWater?: number;
  handshakeTimeoutMs?: number;
  /** Attempts of ctx.fetchText before it rejects. */
  fetchAttempts?: number;
  /** How long a closing socket may take for the close handshake before it is terminated. */
  closeGraceMs?: number;
  /** Jitter source, [0, 1). */
  random?: () => number;
}

/** Capped exponential backoff with "equal jitter": uniform in [d/2, d], d = min(cap, base·2^attempt). */
export function backoffDelay(
  attempt: number,
  random: () => number = Math.random,
  baseMs: number = BACKOFF_BASE_MS,
  capMs: number = BACKOFF_CAP_MS,
): number {
  const d = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  return d / 2 + (random() * d) / 2;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function rawDataToString(data: WebSocket.RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

type Log = (msg: string, extra?: Record<string, unknown>) => void;

/**
 * FIFO between the sockets and the consumer. Never drops: at the high-water mark it asks the producer
 * to pause and at the low-water mark to resume. Items the socket had already buffered when paused are
 * still accepted.
 */
class BackpressureQueue<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  private waiter: (() => void) | undefined;
  paused = false;

  constructor(
    private readonly high: number,
    private readonly low: number,
    private readonly onHigh: () => void,
    private readonly onLow: () => void,
  ) {}

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
    if (!this.paused && this.size >= this.high) {
      this.paused = true;
      this.onHigh();
    }
    this.wake();
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    if (this.paused && this.size <= this.low) {
      this.paused = false;
      this.onLow();
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }

  wait(): Promise<void> {
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}

interface Settings {
  venue: string;
  symbols: string[];
  url: string;
  restUrl: string;
  rateIntervalMs: number;
  pingMs: number;
  staleMs: number;
  maxConnectionMs: number | undefined;
  backoffBaseMs: number;
  backoffCapMs: number;
  handshakeTimeoutMs: number;
  fetchAttempts: number;
  closeGraceMs: number;
  random: () => number;
}

/**
 * One WebSocket. It only talks to the feed through `feed.*` callbacks; it pushes frames into the
 * stream only while it is the feed's current connection.
 */
class Connection {
  readonly origin: string;
  readonly ctx: ConnectionContext;
  private readonly ws: WebSocket;
  /** Cancels fetches and their retry sleeps when the connection ends. */
  private readonly ctrl = new AbortController();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly outbox: string[] = [];
  private outboxTimer: NodeJS.Timeout | undefined;
  private lastSendAt = -Infinity;
  private awaitingPong = false;
  /** The socket was paused since the last ping: its pong may wait behind data we did not read. */
  private pausedSincePing = false;
  private lastFrameAt = Date.now();
  opened = false;
  ended = false;
  /** Frames received from the socket. */
  received = 0;

  constructor(
    readonly id: number,
    private readonly feed: Feed,
    private readonly s: Settings,
  ) {
    this.origin = `${s.venue}:ws#${id}`;
    this.ctx = {
      send: (data) => this.send(data),
      emit: (data, channel) => this.emit(data, channel),
      fetchText: (url) => this.fetchText(url),
      restUrl: s.restUrl,
      log: (msg, extra) => feed.log(msg, { conn: id, ...extra }),
    };
    this.ws = new WebSocket(s.url, { perMessageDeflate: false, handshakeTimeout: s.handshakeTimeoutMs });
    this.ws.on('open', () => this.onOpen());
    this.ws.on('message', (data) => this.onMessage(data));
    this.ws.on('pong', () => {
      this.awaitingPong = false;
    });
    this.ws.on('error', (err) => this.end(`error: ${err.message}`));
    this.ws.on('close', (code, reason) => this.end(`closed (${code}${reason.length > 0 ? ` ${reason.toString()}` : ''})`));
  }

  get isCurrent(): boolean {
    return this.feed.current === this && !this.ended;
  }

  private onOpen(): void {
    if (this.ended) return;
    this.opened = true;
    this.lastFrameAt = Date.now();
    // The feed decides whether this connection becomes current now (it always does: a planned
    // successor replaces its predecessor the moment it is open).
    this.feed.opened(this);
  }

  /** Called by the feed once this connection is current: status, subscriptions, timers. */
  start(): void {
    const s = this.s;
    this.feed.log(`${s.venue}: connected`, { url: s.url, conn: this.id });
    if (this.feed.paused) this.pause();
    try {
      this.feed.protocol.onOpen?.(this.ctx);
    } catch (err) {
      this.feed.log(`${s.venue}: onOpen failed`, { conn: this.id, error: (err as Error).message });
    }
    this.feed.status(this, 'connected', this.feed.nextConnectReason());
    let messages: string[] = [];
    try {
      messages = this.feed.protocol.subscribeMessages(s.symbols);
    } catch (err) {
      this.end(`subscribe messages failed: ${(err as Error).message}`);
      return;
    }
    for (const m of messages) this.send(m);

    const ping = setInterval(() => this.checkPong(), s.pingMs);
    this.timers.push(ping);
    const staleCheck = setInterval(() => this.checkStale(), Math.max(5, Math.min(1_000, Math.floor(s.staleMs / 5))));
    this.timers.push(staleCheck);
    const appPing = this.feed.protocol.appPing;
    if (appPing !== undefined) {
      this.timers.push(setInterval(() => this.send(appPing.message), appPing.intervalMs));
    }
    if (s.maxConnectionMs !== undefined && s.maxConnectionMs > 0) {
      this.timers.push(setTimeout(() => this.feed.planReplacement(this), s.maxConnectionMs));
    }
    for (const t of this.timers) t.unref();
  }

  private checkPong(): void {
    if (this.ended || this.ws.readyState !== WebSocket.OPEN) return;
    if (this.feed.paused) {
      // Not reading: a pong could not be seen. Start over when reading again.
      this.awaitingPong = false;
      return;
    }
    if (this.awaitingPong && !this.pausedSincePing) {
      this.terminate(`no pong within ${this.s.pingMs} ms`);
      return;
    }
    this.awaitingPong = true;
    this.pausedSincePing = false;
    this.ws.ping();
  }

  private checkStale(): void {
    if (this.ended) return;
    const now = Date.now();
    if (this.feed.paused) {
      this.lastFrameAt = now;
      return;
    }
    const silent = now - this.lastFrameAt;
    if (silent >= this.s.staleMs) {
      const reason = `no frame for ${silent} ms`;
      this.feed.status(this, 'stale', reason);
      this.terminate(`stale: ${reason}`);
    }
  }

  private onMessage(data: WebSocket.RawData): void {
    if (this.ended) return;
    this.lastFrameAt = Date.now();
    this.awaitingPong = false; // a frame proves the socket alive as well as a pong (which may queue behind data)
    this.received++;
    if (this.received === 1) this.feed.delivered();
    const text = rawDataToString(data);
    const frame: RawFrame = { recvTs: Date.now(), source: this.s.venue, data: text, origin: this.origin };
    let keep: boolean | void = true;
    const onFrame = this.feed.protocol.onFrame;
    if (onFrame !== undefined) {
      try {
        keep = onFrame.call(this.feed.protocol, text, this.ctx);
      } catch (err) {
        this.feed.log(`${this.s.venue}: onFrame failed`, { conn: this.id, error: (err as Error).message });
      }
    }
    if (keep !== false && this.isCurrent) this.feed.push(frame);
  }

  send(data: string): void {
    if (this.ended) return;
    this.outbox.push(data);
    this.flushOutbox();
  }

  private flushOutbox(): void {
    if (this.outboxTimer !== undefined || this.ended) return;
    while (this.outbox.length > 0) {
      if (this.ws.readyState !== WebSocket.OPEN) return; // only reachable before open or while closing: kept until the socket ends
      const now = Date.now();
      const wait = this.lastSendAt + this.s.rateIntervalMs - now;
      if (wait > 0) {
        this.outboxTimer = setTimeout(() => {
          this.outboxTimer = undefined;
          this.flushOutbox();
        }, wait);
        this.outboxTimer.unref();
        return;
      }
      this.lastSendAt = now;
      this.ws.send(this.outbox.shift()!);
    }
  }

  private emit(data: string, channel?: string): void {
    if (!this.isCurrent) return;
    // origin: the connection it belongs to, and what it is (frames from the socket carry just the connection).
    const frame: RawFrame = { recvTs: Date.now(), source: this.s.venue, data, origin: `${this.origin} ${channel ?? 'emitted'}` };
    if (channel !== undefined) frame.channel = channel;
    this.feed.push(frame);
  }

  private async fetchText(url: string): Promise<string> {
    const signal = this.ctrl.signal;
    let lastError = 'not attempted';
    for (let attempt = 0; attempt < this.s.fetchAttempts; attempt++) {
      if (signal.aborted) throw new FetchCancelledError(url);
      let retryAfterMs: number | undefined;
      try {
        const res = await fetch(url, { signal });
        const text = await res.text();
        if (res.ok) return text;
        lastError = `HTTP ${res.status}: ${text.slice(0, 200)}`;
        const retryable = res.status >= 500 || res.status === 429 || res.status === 418 || res.status === 408;
        if (!retryable) throw new VigilError(ERR.FEED, `${this.s.venue}: GET ${url} failed: ${lastError}`, 502, { status: res.status });
        const ra = Number(res.headers.get('retry-after'));
        if (ra > 0) retryAfterMs = Math.min(ra * 1000, this.s.backoffCapMs);
      } catch (err) {
        if (err instanceof VigilError) throw err;
        if (signal.aborted) throw new FetchCancelledError(url);
        lastError = (err as Error).message;
      }
      this.feed.log(`${this.s.venue}: GET failed`, { url, attempt: attempt + 1, error: lastError });
      if (attempt + 1 >= this.s.fetchAttempts) break;
      const delay = retryAfterMs ?? backoffDelay(attempt, this.s.random, this.s.backoffBaseMs, this.s.backoffCapMs);
      if (!(await sleep(delay, signal))) throw new FetchCancelledError(url);
    }
    throw new VigilError(ERR.FEED, `${this.s.venue}: GET ${url} failed ${this.s.fetchAttempts} times: ${lastError}`, 502);
  }

  pause(): void {
    this.pausedSincePing = true;
    if (!this.ended && this.opened) this.ws.pause();
  }

  resume(): void {
    if (!this.ended && this.opened) {
      this.lastFrameAt = Date.now();
      this.ws.resume();
    }
  }

  /** Ends the connection because it failed: the feed reports and reconnects. */
  private terminate(reason: string): void {
    if (this.ended) return;
    this.ws.terminate();
    this.end(reason);
  }

  /** The socket closed or failed (or was found dead). */
  private end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.shutdown(false);
    this.feed.ended(this, reason);
  }

  /** Closed by the feed (abort, consumer gone, replaced by a successor): no report. */
  close(): void {
    if (this.ended) return;
    this.ended = true;
    this.shutdown(true);
  }

  private shutdown(graceful: boolean): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.length = 0;
    if (this.outboxTimer !== undefined) clearTimeout(this.outboxTimer);
    this.outbox.length = 0;
    this.ctrl.abort();
    const ws = this.ws;
    if (ws.readyState === WebSocket.OPEN && graceful) {
      ws.close(1000);
      if (ws.isPaused) ws.resume(); // let the close handshake be read
      setTimeout(() => ws.terminate(), this.s.closeGraceMs).unref();
    } else if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
      ws.terminate();
    }
  }
}

/** The controller behind one LiveFeed: owns the queue, the current connection, reconnects. */
class Feed {
  readonly queue: BackpressureQueue<RawFrame>;
  current: Connection | undefined;
  /** A connection being opened: a reconnect, or the planned successor of `current`. */
  private pending: Connection | undefined;
  private connId = 0;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private connectReason = 'initial connect';
  stopped = false;

  constructor(
    readonly protocol: VenueProtocol,
    private readonly s: Settings,
    readonly log: Log,
    high: number,
    low: number,
  ) {
    this.queue = new BackpressureQueue<RawFrame>(
      high,
      low,
      () => this.current?.pause(),
      () => this.current?.resume(),
    );
  }

  get paused(): boolean {
    return this.queue.paused;
  }

  push(frame: RawFrame): void {
    if (!this.stopped) this.queue.push(frame);
  }

  nextConnectReason(): string {
    const r = this.connectReason;
    if (r !== 'initial connect') feedReconnects.set(this.s.venue, (feedReconnects.get(this.s.venue) ?? 0) + 1);
    this.connectReason = 'reconnect';
    return r;
  }

  status(conn: Connection, status: StatusFrameData['status'], reason: string): void {
    const data: StatusFrameData = { status, reason, symbols: this.s.symbols };
    this.push({ recvTs: Date.now(), source: this.s.venue, data: JSON.stringify(data), channel: STATUS_CHANNEL, origin: conn.origin });
  }

  start(): void {
    this.open();
  }

  private open(): void {
    if (this.stopped) return;
    this.pending = new Connection(++this.connId, this, this.s);
  }

  /** A connection finished its handshake. */
  opened(conn: Connection): void {
    if (this.stopped || conn !== this.pending) {
      conn.close();
      return;
    }
    this.pending = undefined;
    const old = this.current;
    if (old !== undefined) {
      // Planned replacement: retire the old socket before the new one delivers anything.
      old.close();
      this.status(old, 'disconnected', 'planned reconnect');
      this.connectReason = 'planned reconnect';
      this.log(`${this.s.venue}: planned reconnect`, { from: old.id, to: conn.id });
    }
    this.current = conn;
    conn.start();
  }

  /** The first frame of a connection: the backoff starts over. */
  delivered(): void {
    this.attempt = 0;
  }

  /** maxConnectionMs elapsed on `conn`: open its successor while it keeps delivering. */
  planReplacement(conn: Connection): void {
    if (this.stopped || conn !== this.current || this.pending !== undefined) return;
    this.log(`${this.s.venue}: opening a replacement connection (max connection time reached)`, { conn: conn.id });
    this.open();
  }

  ended(conn: Connection, reason: string): void {
    if (this.stopped) return;
    if (conn === this.current) {
      this.current = undefined;
      this.status(conn, 'disconnected', reason);
      if (this.pending !== undefined) return; // the successor being opened takes over
      this.scheduleReconnect(reason, conn.id);
    } else if (conn === this.pending) {
      this.pending = undefined;
      if (this.current !== undefined) {
        // A planned successor failed to open; the current connection goes on, try again later.
        const current = this.current;
        const delay = backoffDelay(this.attempt++, this.s.random, this.s.backoffBaseMs, this.s.backoffCapMs);
        this.log(`${this.s.venue}: replacement connection failed`, { reason, conn: conn.id, delayMs: Math.round(delay) });
        this.reconnectTimer = setTimeout(() => {
          this.reconnectTimer = undefined;
          this.planReplacement(current);
        }, delay);
        return;
      }
      this.scheduleReconnect(reason, conn.id);
    }
  }

  private scheduleReconnect(reason: string, connId: number): void {
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    const delay = backoffDelay(this.attempt++, this.s.random, this.s.backoffBaseMs, this.s.backoffCapMs);
    this.log(`${this.s.venue}: connection lost, reconnecting`, { reason, conn: connId, delayMs: Math.round(delay) });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.pending === undefined && this.current === undefined) this.open();
    }, delay);
  }

  resync(symbol: string, reason: string): void {
    const conn = this.current;
    if (this.stopped || conn === undefined) {
      this.log(`${this.s.venue}: resync of ${symbol} skipped: not connected (the next connection rebuilds it)`, { reason });
      return;
    }
    this.log(`${this.s.venue}: resync`, { symbol, reason, conn: conn.id });
    try {
      this.protocol.resync(symbol, conn.ctx);
    } catch (err) {
      this.log(`${this.s.venue}: resync failed`, { symbol, error: (err as Error).message });
    }
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.current?.close();
    this.pending?.close();
    this.current = undefined;
    this.pending = undefined;
    this.queue.clear();
    this.queue.wake();
  }
}

/**
 * A live feed for the protocol. Nothing happens until iteration starts; bad symbols reject the first
 * `next()`. One iteration per LiveFeed.
 */
export function connectVenue(protocol: VenueProtocol, options: LiveFeedOptions, tuning: ConnectionTuning = {}): LiveFeed {
  const log: Log = options.log ?? (() => {});
  let feed: Feed | undefined;
  let iterated = false;

  async function* frames(): AsyncGenerator<RawFrame, void, undefined> {
    const signal = options.signal;
    let symbols: string[];
    let url: string;
    try {
      symbols = [...new Set(protocol.nativeSymbols(options.symbols))];
      if (symbols.length === 0) throw new Error('no symbols to subscribe to');
      url = protocol.url(options.wsUrl ?? protocol.defaultWsUrl, symbols);
    } catch (err) {
      if (err instanceof VigilError) throw err;
      throw new VigilError(ERR.FEED, `${protocol.venue}: ${(err as Error).message}`, 400, { symbols: options.symbols });
    }
    if (signal?.aborted) return;
    const rate = protocol.subscribeRatePerSec ?? DEFAULT_SUBSCRIBE_RATE_PER_SEC;
    const settings: Settings = {
      venue: protocol.venue,
      symbols,
      url,
      restUrl: (options.restUrl ?? protocol.defaultRestUrl ?? '').replace(/\/+$/, ''),
      rateIntervalMs: rate > 0 ? 1000 / rate : 0,
      pingMs: protocol.wsPingIntervalMs ?? DEFAULT_WS_PING_INTERVAL_MS,
      staleMs: protocol.staleAfterMs ?? DEFAULT_STALE_AFTER_MS,
      maxConnectionMs: protocol.maxConnectionMs,
      backoffBaseMs: tuning.backoffBaseMs ?? BACKOFF_BASE_MS,
      backoffCapMs: tuning.backoffCapMs ?? BACKOFF_CAP_MS,
      handshakeTimeoutMs: tuning.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
      fetchAttempts: tuning.fetchAttempts ?? FETCH_ATTEMPTS,
      closeGraceMs: tuning.closeGraceMs ?? CLOSE_GRACE_MS,
      random: tuning.random ?? Math.random,
    };
    const f = new Feed(protocol, settings, log, tuning.queueHighWater ?? QUEUE_HIGH_WATER, tuning.queueLowWater ?? QUEUE_LOW_WATER);
    feed = f;
    const onAbort = (): void => f.stop();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      f.start();
      for (;;) {
        if (f.stopped) return;
        const frame = f.queue.shift();
        if (frame !== undefined) {
          yield frame;
          continue;
        }
        await f.queue.wait();
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      f.stop();
    }
  }

  return {
    [Symbol.asyncIterator](): AsyncIterator<RawFrame> {
      if (iterated) throw new VigilError(ERR.FEED, `${protocol.venue}: a live feed can be iterated only once`, 500);
      iterated = true;
      return frames();
    },
    resync(symbol: string, reason: string): void {
      if (feed === undefined) {
        log(`${protocol.venue}: resync of ${symbol} before the feed started: ignored`, { reason });
        return;
      }
      feed.resync(symbol, reason);
    },
  };
}
