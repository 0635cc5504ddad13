/**
 * Binance spot: normalizer for the combined-stream wire format and REST depth snapshots, and a live
 * connection (WebSocket combined stream + REST snapshots) that yields RawFrames.
 *
 * Wire formats handled (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams):
 * - envelope `{"stream":"btcusdt@trade","data":{...}}` or the bare payload;
 * - `trade`      {e,E,s,t,p,q,T,m,M}        → trade (ts = T, side from m: buyer is maker ⇒ aggressor sold);
 * - `aggTrade`   {e,E,s,a,p,q,f,l,T,m,M}    → trade with firstTradeId/lastTradeId (tradeId = a);
 * - bookTicker   {u,s,b,B,a,A} (no `e`)     → quote (seq = u; ts = E or T when present, else floor(recvTs));
 * - `depthUpdate`{e,E,s,U,u,[pu],b,a}       → book diff (ts = E, firstSeq = U, seq = u, prevSeq = pu);
 * - REST `/api/v3/depth` {lastUpdateId,bids,asks} → book snapshot (symbol from the frame's channel
 *   `rest:depth:<SYMBOL>`, else from the last depthUpdate seen by this normalizer).
 *
 * The normalizer is on the replay hot path: one JSON.parse per frame, hand-written field checks, no zod.
 */
import WebSocket from 'ws';
import type { Book, CanonicalEvent, Quote, Side, Trade } from '../core/events.ts';
import { ERR, VigilError } from '../core/errors.ts';
import { binanceSymbol, binanceWireSymbol } from './symbols.ts';
import { MalformedFrameError } from './types.ts';
import type { LiveFeedOptions, Normalizer, RawFrame, VenueAdapter } from './types.ts';

const VENUE = 'binance';

type Json = Record<string, unknown>;
type Level = [number, number];

/**
 * Event types Binance streams carry that Vigil does not model (yet): returned as the ignore label.
 * Spot market streams, user-data streams, and the futures ones a mixed capture may contain.
 */
const IGNORED_EVENT_TYPES: ReadonlySet<string> = new Set([
  'kline',
  '24hrTicker',
  '24hrMiniTicker',
  '1hTicker',
  '4hTicker',
  '1dTicker',
  'avgPrice',
  'outboundAccountPosition',
  'balanceUpdate',
  'executionReport',
  'listStatus',
  'listenKeyExpired',
  'eventStreamTerminated',
  'externalLockUpdate',
  'markPriceUpdate',
  'continuous_kline',
  'indexPriceKline',
  'markPriceKline',
  'forceOrder',
  'compositeIndex',
  'contractInfo',
  'assetIndexUpdate',
]);

// ---------------------------------------------------------------- field helpers

function describe(v: unknown): string {
  if (v === undefined) return 'missing';
  const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && v.length > 0) return +v;
  return NaN;
}

/** A price: finite and > 0. */
function price(v: unknown, ctx: string, field: string): number {
  const n = toNumber(v);
  if (n > 0 && n !== Infinity) return n;
  throw new MalformedFrameError(`${ctx}: ${field} must be a positive number, got ${describe(v)}`);
}

/** A quantity (or a quote price, which Binance sends as 0 for an empty side): finite and >= 0. */
function nonNegative(v: unknown, ctx: string, field: string): number {
  const n = toNumber(v);
  if (n >= 0 && n !== Infinity) return n;
  throw new MalformedFrameError(`${ctx}: ${field} must be a non-negative number, got ${describe(v)}`);
}

/** An epoch-ms time or an update id: a non-negative safe integer. */
function int(v: unknown, ctx: string, field: string): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  throw new MalformedFrameError(`${ctx}: ${field} must be a non-negative integer, got ${describe(v)}`);
}

function id(v: unknown, ctx: string, field: string): string {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
  if (typeof v === 'string' && v.length > 0) return v;
  throw new MalformedFrameError(`${ctx}: ${field} must be an id, got ${describe(v)}`);
}

function side(m: unknown): Side {
  // m: "is the buyer the market maker?" — then the seller was the aggressor.
  return m === true ? 'sell' : m === false ? 'buy' : 'unknown';
}

function levels(v: unknown, ctx: string, field: string): Level[] {
  if (!Array.isArray(v)) throw new MalformedFrameError(`${ctx}: ${field} must be an array of [price, qty], got ${describe(v)}`);
  const n = v.length;
  const out: Level[] = new Array<Level>(n);
  for (let i = 0; i < n; i++) {
    const lvl: unknown = v[i];
    if (!Array.isArray(lvl) || lvl.length < 2) {
      throw new MalformedFrameError(`${ctx}: ${field}[${i}] must be [price, qty], got ${describe(JSON.stringify(lvl))}`);
    }
    // Inline checks: the messages are built only on failure (a snapshot has 2,000 levels).
    const px = toNumber(lvl[0]);
    if (!(px > 0 && px !== Infinity)) price(lvl[0], ctx, `${field}[${i}] price`);
    const q = toNumber(lvl[1]);
    if (!(q >= 0 && q !== Infinity)) nonNegative(lvl[1], ctx, `${field}[${i}] qty`);
    out[i] = [px, q];
  }
  return out;
}

function symbolOf(p: Json, stream: string | undefined, ctx: string): string {
  const s = p.s;
  if (typeof s === 'string' && s.length > 0) return binanceSymbol(s);
  if (stream !== undefined) {
    const at = stream.indexOf('@');
    if (at > 0) return binanceSymbol(stream.slice(0, at));
  }
  throw new MalformedFrameError(`${ctx}: missing symbol (s)`);
}

// ---------------------------------------------------------------- normalizer

class BinanceNormalizer implements Normalizer {
  readonly venue = VENUE;
  /** Canonical symbol of the most recent depthUpdate, for snapshots that arrive without one. */
  private lastDepthSymbol: string | undefined;

  normalize(frame: RawFrame, out: CanonicalEvent[]): string | undefined {
    const recvTs = frame.recvTs;
    if (!(recvTs >= 0 && recvTs !== Infinity)) {
      throw new MalformedFrameError(`frame recvTs must be a non-negative number, got ${describe(recvTs)}`);
    }
    let msg: unknown;
    try {
      msg = JSON.parse(frame.data);
    } catch (err) {
      throw new MalformedFrameError(`invalid JSON: ${(err as Error).message}`);
    }
    if (msg === null || typeof msg !== 'object') {
      throw new MalformedFrameError(`unknown structure: expected a JSON object, got ${describe(frame.data)}`);
    }
    if (Array.isArray(msg)) return ignoredArray(msg);

    let p = msg as Json;
    let stream: string | undefined;
    if (typeof p.stream === 'string' && 'data' in p) {
      stream = p.stream;
      const data = p.data;
      if (data === null || typeof data !== 'object') {
        throw new MalformedFrameError(`unknown structure: stream ${stream}: data is ${describe(data)}`);
      }
      if (Array.isArray(data)) return ignoredArray(data);
      p = data as Json;
    }

    const e = p.e;
    if (typeof e === 'string') {
      switch (e) {
        case 'trade':
          out.push(this.trade(p, stream, recvTs));
          return undefined;
        case 'aggTrade':
          out.push(this.aggTrade(p, stream, recvTs));
          return undefined;
        case 'depthUpdate':
          out.push(this.depthUpdate(p, stream, recvTs));
          return undefined;
        case 'bookTicker':
          out.push(this.bookTicker(p, stream, recvTs));
          return undefined;
        default:
          if (IGNORED_EVENT_TYPES.has(e)) return e;
          throw new MalformedFrameError(`unknown event type "${e}"`);
      }
    }
    if ('u' in p && 'b' in p && 'a' in p) {
      out.push(this.bookTicker(p, stream, recvTs));
      return undefined;
    }
    if ('lastUpdateId' in p) {
      // Partial book depth streams (<symbol>@depth5/10/20) have the snapshot's shape but hold only the
      // top levels: not a full snapshot, so not a book event.
      if (stream !== undefined && /@depth\d/.test(stream)) return 'partialDepth';
      out.push(this.snapshot(p, frame, recvTs));
      return undefined;
    }
    if ('result' in p && 'id' in p) return 'subscription-ack';
    if ('code' in p || 'msg' in p || 'error' in p) {
      const err = (p.error !== null && typeof p.error === 'object' ? p.error : p) as Json;
      throw new MalformedFrameError(`error frame: ${String(err.msg ?? 'no message')} (code ${describe(err.code)})`);
    }
    const keys = Object.keys(p).slice(0, 8).join(',');
    throw new MalformedFrameError(`unknown structure: object with keys {${keys}}${stream ? ` on stream ${stream}` : ''}`);
  }

  private trade(p: Json, stream: string | undefined, recvTs: number): Trade {
    const ctx = 'trade';
    return {
      kind: 'trade',
      venue: VENUE,
      symbol: symbolOf(p, stream, ctx),
      ts: int(p.T, ctx, 'trade time (T)'),
      recvTs,
      price: price(p.p, ctx, 'price (p)'),
      qty: nonNegative(p.q, ctx, 'qty (q)'),
      side: side(p.m),
      tradeId: id(p.t, ctx, 'trade id (t)'),
    };
  }

  private aggTrade(p: Json, stream: string | undefined, recvTs: number): Trade {
    const ctx = 'aggTrade';
    return {
      kind: 'trade',
      venue: VENUE,
      symbol: symbolOf(p, stream, ctx),
      ts: int(p.T, ctx, 'trade time (T)'),
      recvTs,
      price: price(p.p, ctx, 'price (p)'),
      qty: nonNegative(p.q, ctx, 'qty (q)'),
      side: side(p.m),
      tradeId: id(p.a, ctx, 'aggregate trade id (a)'),
      firstTradeId: id(p.f, ctx, 'first trade id (f)'),
      lastTradeId: id(p.l, ctx, 'last trade id (l)'),
    };
  }

  private bookTicker(p: Json, stream: string | undefined, recvTs: number): Quote {
    const ctx = 'bookTicker';
    // Spot bookTicker has no event time; futures has E (event) and T (transaction).
    const ts = p.E !== undefined ? int(p.E, ctx, 'event time (E)') : p.T !== undefined ? int(p.T, ctx, 'time (T)') : Math.floor(recvTs);
    return {
      kind: 'quote',
      venue: VENUE,
      symbol: symbolOf(p, stream, ctx),
      ts,
      recvTs,
      bidPx: nonNegative(p.b, ctx, 'bid price (b)'),
      bidQty: nonNegative(p.B, ctx, 'bid qty (B)'),
      askPx: nonNegative(p.a, ctx, 'ask price (a)'),
      askQty: nonNegative(p.A, ctx, 'ask qty (A)'),
      seq: int(p.u, ctx, 'update id (u)'),
    };
  }

  private depthUpdate(p: Json, stream: string | undefined, recvTs: number): Book {
    const ctx = 'depthUpdate';
    const symbol = symbolOf(p, stream, ctx);
    const book: Book = {
      kind: 'book',
      venue: VENUE,
      symbol,
      ts: int(p.E, ctx, 'event time (E)'),
      recvTs,
      seq: int(p.u, ctx, 'final update id (u)'),
      firstSeq: int(p.U, ctx, 'first update id (U)'),
      snapshot: false,
      bids: levels(p.b, ctx, 'bids (b)'),
      asks: levels(p.a, ctx, 'asks (a)'),
    };
    if (p.pu !== undefined) book.prevSeq = int(p.pu, ctx, 'previous update id (pu)');
    this.lastDepthSymbol = symbol;
    return book;
  }

  private snapshot(p: Json, frame: RawFrame, recvTs: number): Book {
    const ctx = 'depth snapshot';
    let symbol: string | undefined;
    const channel = frame.channel;
    if (channel !== undefined && channel.startsWith('rest:depth:') && channel.length > 11) {
      symbol = binanceSymbol(channel.slice(11));
    } else {
      symbol = this.lastDepthSymbol;
    }
    if (symbol === undefined) throw new MalformedFrameError('depth snapshot without symbol');
    const seq = int(p.lastUpdateId, ctx, 'lastUpdateId');
    return {
      kind: 'book',
      venue: VENUE,
      symbol,
      ts: Math.floor(recvTs),
      recvTs,
      seq,
      firstSeq: seq,
      snapshot: true,
      bids: levels(p.bids, ctx, 'bids'),
      asks: levels(p.asks, ctx, 'asks'),
    };
  }
}

/** All-market array streams (`!ticker@arr`, `!miniTicker@arr`) are not modelled. */
function ignoredArray(arr: unknown[]): string {
  const first: unknown = arr[0];
  if (arr.length === 0) return 'empty-array';
  if (first !== null && typeof first === 'object' && typeof (first as Json).e === 'string') {
    const e = (first as Json).e as string;
    if (IGNORED_EVENT_TYPES.has(e)) return e;
  }
  throw new MalformedFrameError(`unknown structure: array of ${arr.length}`);
}

// ---------------------------------------------------------------- live connection

export const BINANCE_WS_URL = 'wss://stream.binance.com:9443';
export const BINANCE_REST_URL = 'https://api.binance.com';
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_CAP_MS = 30_000;
/** Queue length at which the socket is paused, and the length at which it resumes. */
export const QUEUE_HIGH_WATER = 2048;
export const QUEUE_LOW_WATER = 512;
/** A connection with neither a message nor a pong for this long is considered dead. */
const HEARTBEAT_MS = 30_000;
const HANDSHAKE_TIMEOUT_MS = 10_000;
const SNAPSHOT_ATTEMPTS = 5;
const CLOSE_GRACE_MS = 1_000;

/** Capped exponential backoff with "equal jitter": uniform in [d/2, d], d = min(cap, base·2^attempt). */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const d = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(Math.max(attempt, 0), 30));
  return d / 2 + (random() * d) / 2;
}

/** The combined-stream URL for the symbols (trade, bookTicker, depth@100ms each). */
export function binanceStreamUrl(wsUrl: string, symbols: readonly string[]): string {
  const streams = symbols.flatMap((s) => {
    const l = binanceWireSymbol(s).toLowerCase();
    return [`${l}@trade`, `${l}@bookTicker`, `${l}@depth@100ms`];
  });
  return `${wsUrl.replace(/\/+$/, '')}/stream?streams=${streams.join('/')}`;
}

function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
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

/** `{"stream":"btcusdt@depth@100ms",...` → `btcusdt@depth@100ms` without parsing the whole frame. */
function streamName(text: string): string | undefined {
  const prefix = '{"stream":"';
  if (text.startsWith(prefix)) {
    const end = text.indexOf('"', prefix.length);
    return end > 0 ? text.slice(prefix.length, end) : undefined;
  }
  try {
    const msg = JSON.parse(text) as unknown;
    if (msg !== null && typeof msg === 'object' && typeof (msg as Json).stream === 'string') return (msg as Json).stream as string;
  } catch {
    // not JSON: the normalizer will report it
  }
  return undefined;
}

type QueueItem = { t: 'frame'; frame: RawFrame } | { t: 'end'; reason: string };

/**
 * FIFO between the socket and the consumer. Never drops: at the high-water mark it asks the producer
 * to pause (ws stops reading the TCP socket, so the kernel window pushes back on the venue) and at the
 * low-water mark to resume. Items the socket had already buffered when paused are still accepted.
 */
class BackpressureQueue {
  private items: (QueueItem | undefined)[] = [];
  private head = 0;
  private waiter: (() => void) | undefined;
  paused = false;

  constructor(
    private readonly onHigh: () => void,
    private readonly onLow: () => void,
  ) {}

  get size(): number {
    return this.items.length - this.head;
  }

  push(item: QueueItem): void {
    this.items.push(item);
    if (!this.paused && this.size >= QUEUE_HIGH_WATER) {
      this.paused = true;
      this.onHigh();
    }
    this.wake();
  }

  shift(): QueueItem | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    if (this.paused && this.size <= QUEUE_LOW_WATER) {
      this.paused = false;
      this.onLow();
    }
    return item;
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

type Log = (msg: string, extra?: Record<string, unknown>) => void;

/** One WebSocket connection plus its REST snapshots. Ends (never restarts) on close, error or abort. */
class LiveConnection {
  private readonly ws: WebSocket;
  private readonly queue: BackpressureQueue;
  /** Cancels snapshot fetches and their retry sleeps when the connection ends. */
  private readonly ctrl = new AbortController();
  /** Wire symbols whose first depthUpdate has not been seen yet on this connection. */
  private readonly awaitingDepth: Set<string>;
  private readonly origin: string;
  private readonly heartbeat: NodeJS.Timeout;
  private ended = false;
  private aborted = false;
  private alive = true;
  /** Frames received from the socket (not counting snapshots). */
  received = 0;

  constructor(
    url: string,
    private readonly restBase: string,
    symbols: readonly string[],
    connId: number,
    private readonly log: Log,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.origin = `binance:ws#${connId}`;
    this.awaitingDepth = new Set(symbols);
    this.queue = new BackpressureQueue(
      () => this.ws.pause(),
      () => this.ws.resume(),
    );
    this.ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: HANDSHAKE_TIMEOUT_MS });
    this.ws.on('open', () => this.log('binance: connected', { url, conn: connId }));
    this.ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    this.ws.on('pong', () => {
      this.alive = true;
    });
    this.ws.on('error', (err) => this.end(`error: ${err.message}`));
    this.ws.on('close', (code, reason) => this.end(`closed (${code}${reason.length > 0 ? ` ${reason.toString()}` : ''})`));
    this.heartbeat = setInterval(() => this.checkAlive(), HEARTBEAT_MS);
    this.heartbeat.unref();
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  private readonly onAbort = (): void => {
    this.aborted = true;
    this.end('aborted');
  };

  private checkAlive(): void {
    if (this.ended || this.ws.readyState !== WebSocket.OPEN) return;
    if (this.queue.paused) return; // we are not reading, so silence proves nothing
    if (!this.alive) {
      this.end(`no message or pong for ${HEARTBEAT_MS} ms`);
      return;
    }
    this.alive = false;
    this.ws.ping();
  }

  private onMessage(data: WebSocket.RawData, _isBinary: boolean): void {
    if (this.ended) return;
    this.alive = true;
    this.received++;
    const text = rawDataToString(data);
    this.queue.push({ t: 'frame', frame: { recvTs: Date.now(), source: VENUE, data: text, origin: this.origin } });
    if (this.awaitingDepth.size > 0) {
      const stream = streamName(text);
      if (stream === undefined) return;
      const at = stream.indexOf('@');
      if (at <= 0 || !stream.startsWith('@depth', at)) return;
      const sym = stream.slice(0, at).toUpperCase();
      if (this.awaitingDepth.delete(sym)) void this.fetchSnapshot(sym);
    }
  }

  private async fetchSnapshot(sym: string): Promise<void> {
    const url = `${this.restBase}/api/v3/depth?symbol=${sym}&limit=1000`;
    for (let attempt = 0; attempt < SNAPSHOT_ATTEMPTS; attempt++) {
      try {
        const res = await fetch(url, { signal: this.ctrl.signal });
        const text = await res.text();
        if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
        if (this.ended) return;
        this.queue.push({
          t: 'frame',
          frame: { recvTs: Date.now(), source: VENUE, data: text, channel: `rest:depth:${sym}`, origin: url },
        });
        return;
      } catch (err) {
        if (this.ended) return;
        this.log('binance: depth snapshot failed', { symbol: sym, attempt: attempt + 1, error: (err as Error).message });
        if (!(await sleep(backoffDelay(attempt), this.ctrl.signal))) return;
      }
    }
    this.end(`depth snapshot for ${sym} failed ${SNAPSHOT_ATTEMPTS} times`);
  }

  /** Marks the connection finished: the consumer gets the queued frames, then the end. */
  private end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.queue.push({ t: 'end', reason });
    this.shutdown();
  }

  private shutdown(): void {
    clearInterval(this.heartbeat);
    this.ctrl.abort();
    this.signal?.removeEventListener('abort', this.onAbort);
    const ws = this.ws;
    if (ws.readyState === WebSocket.OPEN) {
      ws.close(1000);
      if (ws.isPaused) ws.resume(); // let the close handshake be read
      setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref();
    } else if (ws.readyState === WebSocket.CONNECTING) {
      ws.terminate();
    }
  }

  async next(): Promise<QueueItem> {
    for (;;) {
      if (this.aborted) return { t: 'end', reason: 'aborted' };
      const item = this.queue.shift();
      if (item !== undefined) return item;
      await this.queue.wait();
    }
  }

  /** Called by the consumer side when it stops (break, abort or end). */
  close(): void {
    if (!this.ended) {
      this.ended = true;
      this.shutdown();
    }
  }
}

async function* connectBinance(options: LiveFeedOptions): AsyncGenerator<RawFrame, void, undefined> {
  const symbols = [...new Set(options.symbols.map(binanceWireSymbol))].filter((s) => s.length > 0);
  if (symbols.length === 0) throw new VigilError(ERR.FEED, 'binance: no symbols to subscribe to', 400);
  for (const s of symbols) {
    // Fail fast on symbols we could never normalize.
    try {
      binanceSymbol(s);
    } catch (err) {
      throw new VigilError(ERR.FEED, `binance: cannot subscribe to ${s}: ${(err as Error).message}`, 400, { symbol: s });
    }
  }
  const url = binanceStreamUrl(options.wsUrl ?? BINANCE_WS_URL, symbols);
  const restBase = (options.restUrl ?? BINANCE_REST_URL).replace(/\/+$/, '');
  const signal = options.signal;
  const log: Log = options.log ?? (() => {});

  let attempt = 0;
  let connId = 0;
  while (!signal?.aborted) {
    connId++;
    const conn = new LiveConnection(url, restBase, symbols, connId, log, signal);
    let reason = 'ended';
    try {
      for (;;) {
        const item = await conn.next();
        if (item.t === 'end') {
          reason = item.reason;
          break;
        }
        attempt = 0; // the connection delivered data: the next failure starts the backoff over
        yield item.frame;
      }
    } finally {
      conn.close();
    }
    if (signal?.aborted) break;
    const delay = backoffDelay(attempt++);
    log('binance: connection lost, reconnecting', { reason, conn: connId, delayMs: Math.round(delay) });
    if (!(await sleep(delay, signal))) break;
  }
}

export const binanceAdapter: VenueAdapter = {
  name: VENUE,
  createNormalizer: () => new BinanceNormalizer(),
  connect: (options: LiveFeedOptions) => connectBinance(options),
};
