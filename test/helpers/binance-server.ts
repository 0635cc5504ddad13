/**
 * A local Binance (spot or USD-M futures) server for tests: combined streams in the URL, REST depth
 * snapshots, a simulated market whose book the test can compare with the one Vigil rebuilt.
 *
 * - One HTTP server carries both the WebSocket upgrades and REST. A test client picks a prefix so
 *   several clients (the test's own feed, a `vigil record` child process) can use one server at once
 *   and be told apart: wsUrl(client) = ws://127.0.0.1:PORT/<client>, restUrl(client) likewise; the
 *   client library appends `/stream?streams=…` and `/api/v3/depth?…` (futures `/fapi/v1/depth?…`).
 * - Every connection plays its own run of a deterministic market (seeded PRNG, virtual clock): the
 *   same frames in the same order on every connection, so two clients see identical streams. Per tick
 *   one symbol changes 1-4 price levels, each change one update id; a bookTicker is sent for every
 *   change of the best bid/ask (with that change's id), then the depthUpdate covering the tick's ids
 *   (U..u, futures also pu), sometimes a trade (futures: aggTrade).
 * - REST snapshots are the connection's current book. After the first diff of a symbol on a
 *   connection, and after the first diff following a skipped one, the market waits (up to 3 s) for
 *   that symbol's snapshot request, so snapshot ids — and with them the client's events — do not
 *   depend on timing.
 * - Script per client: number of ticks, connections to kill at a step, diffs to skip (a sequence gap
 *   for the client), raw frames to send at a step (malformed frames).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import type { BinanceNormalizer } from '../../src/feeds/binance.ts';
import { connectVenue, type ConnectionTuning } from '../../src/feeds/connection.ts';
import type { VenueProtocol } from '../../src/feeds/connection-types.ts';
import { STATUS_CHANNEL, type VenueAdapter } from '../../src/feeds/types.ts';
import { startLiveRun, type LiveRun } from './live-harness.ts';
import { mulberry32 } from './random.ts';

export type Market = 'spot' | 'futures';

export interface ClientScript {
  /** Ticks each connection plays, then it stays open and silent. */
  ticks: number;
  /** Terminate (no close frame) connection `conn` of this client after step `step`. */
  kill?: { conn: number; step: number }[];
  /** Do not send the first diff of `symbol` produced at or after `step` on connection `conn`. */
  skip?: { conn: number; step: number; symbol: string }[];
  /** Send `text` as is after step `step` on connection `conn`. */
  raw?: { conn: number; step: number; text: string }[];
}

export interface ServerOptions {
  symbols: string[];
  market?: Market;
  seed?: number;
  /** Milliseconds between ticks. */
  tickMs?: number;
  script?: (client: string) => ClientScript;
}

type Side = Map<string, string>; // price text → qty text

interface SimBook {
  bids: Side;
  asks: Side;
  /** Last update id. */
  u: number;
  /** u of the last diff produced (futures pu). */
  lastDiffU: number;
  mid: number;
  topKey: string;
}

const sortedLevels = (side: Side, descending: boolean): [string, string][] =>
  [...side.entries()].sort((x, y) => (descending ? Number(y[0]) - Number(x[0]) : Number(x[0]) - Number(y[0])));

/** A deterministic market for a list of symbols. */
export class MarketSim {
  readonly books = new Map<string, SimBook>();
  private readonly rng: () => number;
  private tradeId = 1_000_000;
  step = 0;

  constructor(
    readonly symbols: string[],
    readonly market: Market,
    seed: number,
  ) {
    this.rng = mulberry32(seed);
    symbols.forEach((s, i) => {
      const mid = 100_00 + i * 1_000_00; // cents
      const book: SimBook = { bids: new Map(), asks: new Map(), u: 1_000 + i * 1_000_000, lastDiffU: 0, mid, topKey: '' };
      for (let k = 1; k <= 12; k++) {
        book.bids.set(this.px(mid - k), this.qty());
        book.asks.set(this.px(mid + k), this.qty());
      }
      book.lastDiffU = book.u;
      book.topKey = this.topKey(book);
      this.books.set(s, book);
    });
  }

  private px(cents: number): string {
    return (cents / 100).toFixed(2);
  }

  private qty(): string {
    return (1 + Math.floor(this.rng() * 500_000) / 100_000).toFixed(5);
  }

  private topKey(b: SimBook): string {
    const bid = sortedLevels(b.bids, true)[0];
    const ask = sortedLevels(b.asks, false)[0];
    return `${bid?.[0] ?? '0'}|${bid?.[1] ?? '0'}|${ask?.[0] ?? '0'}|${ask?.[1] ?? '0'}`;
  }

  /** Virtual event time of the current step. */
  get time(): number {
    return 1_700_000_000_000 + this.step * 10;
  }

  private wrap(symbol: string, stream: string, data: unknown): string {
    return JSON.stringify({ stream: `${symbol.toLowerCase()}@${stream}`, data });
  }

  /** One tick: frames in sending order, and the depth diff's symbol. */
  tick(): { symbol: string; frames: { text: string; diff: boolean }[] } {
    this.step++;
    const symbol = this.symbols[Math.floor(this.rng() * this.symbols.length)]!;
    const b = this.books.get(symbol)!;
    const E = this.time;
    const frames: { text: string; diff: boolean }[] = [];
    const changedBids = new Map<string, string>();
    const changedAsks = new Map<string, string>();
    const first = b.u + 1;
    const n = 1 + Math.floor(this.rng() * 4);
    for (let i = 0; i < n; i++) {
      const bid = this.rng() < 0.5;
      const side = bid ? b.bids : b.asks;
      const k = 1 + Math.floor(this.rng() * 8);
      const price = this.px(bid ? b.mid - k : b.mid + k);
      const remove = side.has(price) && side.size > 4 && this.rng() < 0.35;
      const q = remove ? '0.00000' : this.qty();
      if (remove) side.delete(price);
      else side.set(price, q);
      (bid ? changedBids : changedAsks).set(price, q);
      b.u++;
      const top = this.topKey(b);
      if (top !== b.topKey) {
        b.topKey = top;
        const [bp, bq, ap, aq] = top.split('|') as [string, string, string, string];
        const ticker =
          this.market === 'spot'
            ? { u: b.u, s: symbol, b: bp, B: bq, a: ap, A: aq }
            : { e: 'bookTicker', u: b.u, s: symbol, b: bp, B: bq, a: ap, A: aq, T: E - 1, E };
        frames.push({ text: this.wrap(symbol, 'bookTicker', ticker), diff: false });
      }
    }
    const depth: Record<string, unknown> =
      this.market === 'spot'
        ? { e: 'depthUpdate', E, s: symbol, U: first, u: b.u, b: [...changedBids], a: [...changedAsks] }
        : { e: 'depthUpdate', E, T: E - 1, s: symbol, U: first, u: b.u, pu: b.lastDiffU, b: [...changedBids], a: [...changedAsks] };
    b.lastDiffU = b.u;
    frames.push({ text: this.wrap(symbol, 'depth@100ms', depth), diff: true });
    if (this.rng() < 0.4) {
      const [p] = sortedLevels(b.asks, false)[0]!;
      const id = ++this.tradeId;
      const m = this.rng() < 0.5;
      const trade =
        this.market === 'spot'
          ? { e: 'trade', E, s: symbol, t: id, p, q: '0.01000', T: E, m, M: true }
          : { e: 'aggTrade', E, a: id, s: symbol, p, q: '0.010', f: id * 2, l: id * 2 + 1, T: E, m };
      frames.push({ text: this.wrap(symbol, this.market === 'spot' ? 'trade' : 'aggTrade', trade), diff: false });
    }
    return { symbol, frames };
  }

  snapshot(symbol: string): string {
    const b = this.books.get(symbol)!;
    const snap: Record<string, unknown> = { lastUpdateId: b.u };
    if (this.market === 'futures') Object.assign(snap, { E: this.time, T: this.time - 1 });
    snap.bids = sortedLevels(b.bids, true);
    snap.asks = sortedLevels(b.asks, false);
    return JSON.stringify(snap);
  }

  /** The book as numbers, sorted like Vigil's OrderBook (bids high→low, asks low→high). */
  book(symbol: string): { bids: [number, number][]; asks: [number, number][] } {
    const b = this.books.get(symbol)!;
    const conv = (l: [string, string][]) => l.map(([p, q]) => [Number(p), Number(q)] as [number, number]);
    return { bids: conv(sortedLevels(b.bids, true)), asks: conv(sortedLevels(b.asks, false)) };
  }
}

export interface ServerConnection {
  client: string;
  /** Index among this client's connections. */
  index: number;
  path: string;
  socket: WebSocket;
  sim: MarketSim;
  /** Frames sent, in order. */
  sent: string[];
  done: boolean;
  /** The script kills this connection (it is closing or closed). */
  killed: boolean;
  closeCode?: number;
}

export interface RestRequest {
  client: string;
  path: string;
  symbol: string;
  limit: string | null;
}

export class BinanceTestServer {
  readonly connections: ServerConnection[] = [];
  readonly restRequests: RestRequest[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly waiters = new Map<ServerConnection, { symbol: string; resume: () => void }>();
  private port = 0;

  private constructor(
    private readonly http: Server,
    private readonly wss: WebSocketServer,
    readonly options: Required<Omit<ServerOptions, 'script'>> & { script: (client: string) => ClientScript },
  ) {}

  static async start(options: ServerOptions): Promise<BinanceTestServer> {
    const http = createServer();
    const wss = new WebSocketServer({ server: http });
    const server = new BinanceTestServer(http, wss, {
      market: 'spot',
      seed: 42,
      tickMs: 5,
      script: () => ({ ticks: 200 }),
      ...options,
    });
    http.on('request', (req, res) => server.onRest(req, res));
    wss.on('connection', (socket, req) => server.onConnection(socket, req));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
    server.port = (http.address() as AddressInfo).port;
    return server;
  }

  wsUrl(client = 'c1'): string {
    return `ws://127.0.0.1:${this.port}/${client}`;
  }

  restUrl(client = 'c1'): string {
    return `http://127.0.0.1:${this.port}/${client}`;
  }

  /** Venue symbols a connection path subscribes (from its streams). */
  static streams(path: string): string[] {
    const q = path.indexOf('?streams=');
    return q < 0 ? [] : path.slice(q + 9).split('/');
  }

  connectionsOf(client: string): ServerConnection[] {
    return this.connections.filter((c) => c.client === client);
  }

  /** The client's latest connection. */
  current(client: string): ServerConnection | undefined {
    return this.connectionsOf(client).at(-1);
  }

  requestsOf(client: string): RestRequest[] {
    return this.restRequests.filter((r) => r.client === client);
  }

  private onConnection(socket: WebSocket, req: IncomingMessage): void {
    const path = req.url ?? '/';
    const client = path.split('/')[1] ?? '';
    const expectedPath = `/${client}/stream`;
    if (!path.startsWith(`${expectedPath}?streams=`)) {
      socket.close(1008, 'unexpected path');
      return;
    }
    const index = this.connectionsOf(client).length;
    const conn: ServerConnection = { client, index, path, socket, sim: new MarketSim(this.options.symbols, this.options.market, this.options.seed), sent: [], done: false, killed: false };
    this.connections.push(conn);
    socket.on('close', (code) => {
      conn.closeCode = code;
      conn.done = true;
    });
    const script = this.options.script(client);
    const wanted = new Set(BinanceTestServer.streams(path));
    const seenDiff = new Set<string>();
    const skipPending = new Set<string>();
    const afterSkip = new Set<string>();
    const send = (text: string): void => {
      if (socket.readyState !== WebSocket.OPEN) return;
      socket.send(text);
      conn.sent.push(text);
    };
    const run = (): void => {
      if (conn.done || socket.readyState !== WebSocket.OPEN) return;
      if (this.waiters.has(conn)) return; // waiting for a snapshot request
      if (conn.sim.step >= script.ticks) {
        conn.done = true;
        return;
      }
      const { symbol, frames } = conn.sim.tick();
      const step = conn.sim.step;
      for (const s of script.skip ?? []) if (s.conn === index && s.step === step) skipPending.add(s.symbol);
      let waitFor: string | undefined;
      for (const f of frames) {
        const stream = JSON.parse(f.text).stream as string;
        if (!wanted.has(stream)) continue;
        if (f.diff) {
          if (skipPending.delete(symbol)) {
            afterSkip.add(symbol);
            continue;
          }
          if (!seenDiff.has(symbol) || afterSkip.has(symbol)) {
            seenDiff.add(symbol);
            afterSkip.delete(symbol);
            waitFor = symbol;
          }
        }
        send(f.text);
      }
      for (const r of script.raw ?? []) if (r.conn === index && r.step === step) send(r.text);
      if ((script.kill ?? []).some((k) => k.conn === index && k.step === step)) {
        // Kill the TCP connection (no close frame) once what was sent has left, so the client has
        // received exactly conn.sent.
        conn.done = true;
        conn.killed = true;
        const kill = (): void => {
          if (socket.bufferedAmount > 0) {
            const t = setTimeout(kill, 5);
            this.timers.add(t);
          } else {
            const t = setTimeout(() => socket.terminate(), 30);
            this.timers.add(t);
          }
        };
        kill();
        return;
      }
      if (waitFor !== undefined) {
        const resumeTimer = setTimeout(() => resume(), 3_000);
        this.timers.add(resumeTimer);
        const resume = (): void => {
          clearTimeout(resumeTimer);
          this.waiters.delete(conn);
          schedule();
        };
        this.waiters.set(conn, { symbol: waitFor, resume });
        return;
      }
      schedule();
    };
    const schedule = (): void => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        run();
      }, this.options.tickMs);
      this.timers.add(t);
    };
    schedule();
  }

  private onRest(req: IncomingMessage, res: ServerResponse): void {
    if (req.headers.upgrade) return;
    const url = new URL(req.url ?? '/', 'http://x');
    const [, client = '', ...rest] = url.pathname.split('/');
    const path = `/${rest.join('/')}`;
    const expected = this.options.market === 'spot' ? '/api/v3/depth' : '/fapi/v1/depth';
    const symbol = url.searchParams.get('symbol') ?? '';
    if (path !== expected) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"code":-1,"msg":"not found"}');
      return;
    }
    this.restRequests.push({ client, path, symbol, limit: url.searchParams.get('limit') });
    const conn = this.current(client);
    if (conn === undefined || !this.options.symbols.includes(symbol)) {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"code":-1121,"msg":"Invalid symbol."}');
      return;
    }
    const body = conn.sim.snapshot(symbol);
    res.writeHead(200, { 'content-type': 'application/json' }).end(body, () => {
      const w = this.waiters.get(conn);
      if (w !== undefined && w.symbol === symbol) w.resume();
    });
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const c of this.wss.clients) c.terminate();
    await new Promise<void>((r) => this.wss.close(() => r()));
    this.http.closeAllConnections();
    await new Promise<void>((r) => this.http.close(() => r()));
  }
}

// ---------------------------------------------------------------- a live Vigil client of the server

export interface LiveClient extends LiveRun<BinanceNormalizer> {
  /** Frames received from the client's connection #n (1-based, as in origins). */
  received(conn: number): number;
  /** Resolves when the client's latest server connection played its script and every frame arrived. */
  settled(timeoutMs?: number): Promise<void>;
}

/**
 * Connects Vigil's live feed for `adapter` to the server as `client` (test/helpers/live-harness.ts:
 * through an Ingestor on a MemoryTransport with a vigil.dlq subscriber, the normalizer's resync requests
 * going back to the feed). Stopping it leaves the server running.
 */
export async function startLiveClient(
  server: BinanceTestServer,
  adapter: VenueAdapter,
  protocol: VenueProtocol,
  symbols: string[],
  client = 'c1',
  tuning: ConnectionTuning = { backoffBaseMs: 20, backoffCapMs: 100 },
): Promise<LiveClient> {
  const run = await startLiveRun({
    createNormalizer: (context) => adapter.createNormalizer(context) as BinanceNormalizer,
    connect: (signal) => connectVenue(protocol, { symbols, wsUrl: server.wsUrl(client), restUrl: server.restUrl(client), signal }, tuning),
  });
  const venue = run.normalizer.venue;
  const received = (conn: number): number => run.frames.filter((fr) => fr.origin === `${venue}:ws#${conn}` && fr.channel !== STATUS_CHANNEL).length;
  return Object.assign(run, {
    received,
    async settled(timeoutMs = 20_000) {
      const t0 = Date.now();
      for (;;) {
        const conns = server.connectionsOf(client);
        const last = conns.at(-1);
        if (last !== undefined && last.done && !last.killed && last.closeCode === undefined && received(conns.length) === last.sent.length) {
          await new Promise((r) => setTimeout(r, 50)); // let a pending snapshot response land
          return;
        }
        if (Date.now() - t0 > timeoutMs) {
          throw new Error(`client ${client} did not settle: ${conns.length} connections, last done=${last?.done}, received ${received(conns.length)} of ${last?.sent.length}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  });
}
