import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { ERR } from '../src/core/errors.ts';
import type { Book, CanonicalEvent, FeedStatus } from '../src/core/events.ts';
import { binanceAdapter, binanceSpotProtocol, QUEUE_HIGH_WATER } from '../src/feeds/binance.ts';
import { BinanceTestServer, startLiveClient, type ClientScript, type LiveClient } from './helpers/binance-server.ts';
import { rebuildFromEvents } from './helpers/live-harness.ts';
import { STATUS_CHANNEL, type LiveFeedOptions, type RawFrame, type StatusFrameData } from '../src/feeds/types.ts';

const DATA = new URL('../../shared/data/exchange_raw/', import.meta.url).pathname;
const CAPTURE = gunzipSync(readFileSync(`${DATA}hftbacktest/spot_btcusdt_20240808.gz`))
  .toString('utf8')
  .split('\n')
  .filter((l) => l.length > 0)
  .map((l) => l.slice(l.indexOf(' ') + 1));
const SNAPSHOT = CAPTURE.find((l) => l.startsWith('{"lastUpdateId"'))!;
/** The combined-stream frames of the capture, without the REST snapshot line. */
const STREAM = CAPTURE.filter((l) => l !== SNAPSHOT);
const EXPECTED_PATH = '/stream?streams=btcusdt@trade/btcusdt@bookTicker/btcusdt@depth@100ms';

interface Mock {
  wsUrl: string;
  restUrl: string;
  /** URL path of each WebSocket connection, in order. */
  connections: string[];
  sockets: WebSocket[];
  /** Query strings of the REST requests. */
  restRequests: string[];
  closedByClient: number;
  close(): Promise<void>;
}

type OnConnection = (socket: WebSocket, index: number) => void;

async function startMock(onConnection: OnConnection): Promise<Mock> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const http: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/api/v3/depth') {
      res.writeHead(404).end('{"code":-1,"msg":"not found"}');
      return;
    }
    mock.restRequests.push(url.search);
    if (url.searchParams.get('symbol') !== 'BTCUSDT' || url.searchParams.get('limit') !== '1000') {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"code":-1121,"msg":"Invalid symbol."}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(SNAPSHOT);
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', () => resolve()));
  const mock: Mock = {
    wsUrl: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`,
    restUrl: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    connections: [],
    sockets: [],
    restRequests: [],
    closedByClient: 0,
    async close() {
      for (const s of wss.clients) s.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
  wss.on('connection', (socket, req) => {
    const index = mock.connections.length;
    mock.connections.push(req.url ?? '');
    mock.sockets.push(socket);
    socket.on('close', (code) => {
      if (code === 1000) mock.closedByClient++;
    });
    if (req.url !== EXPECTED_PATH) {
      socket.close(1008, 'unexpected streams');
      return;
    }
    onConnection(socket, index);
  });
  return mock;
}

const mocks: Mock[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  while (mocks.length > 0) await mocks.pop()!.close();
});

function options(mock: Mock, signal: AbortSignal, logs: string[] = []): LiveFeedOptions {
  return { symbols: ['BTC-USDT'], wsUrl: mock.wsUrl, restUrl: mock.restUrl, signal, log: (msg) => logs.push(msg) };
}

/** Frames from the venue (WebSocket and REST), without the connection base's status frames. */
function venueFrames(frames: readonly RawFrame[]): RawFrame[] {
  return frames.filter((f) => f.channel !== STATUS_CHANNEL);
}

function statuses(frames: readonly RawFrame[]): (StatusFrameData & { origin: string | undefined })[] {
  return frames.filter((f) => f.channel === STATUS_CHANNEL).map((f) => ({ ...(JSON.parse(f.data) as StatusFrameData), origin: f.origin }));
}

function sendAll(socket: WebSocket, frames: readonly string[]): void {
  for (const f of frames) socket.send(f);
}

/** Iterates until `stop` returns true (then aborts), with a timeout that fails the test. */
async function collect(
  iterable: AsyncIterable<RawFrame>,
  ctrl: AbortController,
  stop: (frames: RawFrame[]) => boolean,
  timeoutMs = 10_000,
): Promise<RawFrame[]> {
  const frames: RawFrame[] = [];
  const timer = setTimeout(() => ctrl.abort(), timeoutMs);
  try {
    for await (const f of iterable) {
      frames.push(f);
      if (stop(frames)) ctrl.abort();
    }
  } finally {
    clearTimeout(timer);
  }
  return frames;
}

describe('binance live connect() against a local combined-stream server', () => {
  it('subscribes to the right streams, yields the frames in order and the REST snapshot after the first depthUpdate', async () => {
    const frames = STREAM.slice(0, 300);
    const mock = await startMock((socket) => sendAll(socket, frames));
    mocks.push(mock);
    const ctrl = new AbortController();
    const all = await collect(binanceAdapter.connect!(options(mock, ctrl.signal)), ctrl, (fs) => venueFrames(fs).length >= 301);

    expect(mock.connections).toEqual([EXPECTED_PATH]);
    // The stream starts with the connection base's status frame, then the venue's frames.
    expect(all[0]).toMatchObject({ source: 'binance', channel: STATUS_CHANNEL, origin: 'binance:ws#1' });
    expect(statuses(all)).toEqual([{ status: 'connected', reason: 'initial connect', symbols: ['BTCUSDT'], origin: 'binance:ws#1' }]);
    const got = venueFrames(all);
    expect(got).toHaveLength(301);
    const snapshots = got.filter((f) => f.channel !== undefined);
    expect(snapshots).toHaveLength(1);
    expect(snapshots[0]).toMatchObject({ source: 'binance', channel: 'rest:depth:BTCUSDT', data: SNAPSHOT });
    expect(mock.restRequests).toEqual(['?symbol=BTCUSDT&limit=1000']);
    const ws = got.filter((f) => f.channel === undefined);
    expect(ws.map((f) => f.data)).toEqual(frames);
    for (const f of ws) {
      expect(f.source).toBe('binance');
      expect(f.origin).toBe('binance:ws#1');
      expect(Math.abs(f.recvTs - Date.now())).toBeLessThan(60_000);
    }
    // The first frame is a depthUpdate, so the snapshot cannot come before it.
    expect(got[0]?.data).toContain('depthUpdate');
    expect(got.indexOf(snapshots[0]!)).toBeGreaterThan(0);

    // Live frames normalize like recorded ones.
    const n = binanceAdapter.createNormalizer();
    const out: CanonicalEvent[] = [];
    for (const f of all) n.normalize(f, out);
    const snap = out.filter((e): e is Book => e.kind === 'book' && e.snapshot);
    expect(snap.map((b) => [b.symbol, b.seq])).toEqual([['BTC-USDT', 50093239218]]);
    // 300 stream frames: every trade and bookTicker is an event; the depth diffs older than the
    // snapshot are dropped by the sync procedure, the rest are applied after it.
    const diffs = frames.filter((f) => f.includes('depthUpdate'));
    const applied = diffs.filter((f) => (JSON.parse(f) as { data: { u: number } }).data.u > 50093239218);
    expect(out.filter((e) => e.kind === 'book' && !e.snapshot)).toHaveLength(applied.length);
    expect(out.filter((e) => e.kind === 'trade' || e.kind === 'quote')).toHaveLength(frames.length - diffs.length);
    expect(out.filter((e) => e.kind === 'status').map((e) => (e as { status: string }).status)).toEqual(['connected', 'book_synced']);
    expect(out.length).toBe(1 + (frames.length - diffs.length) + applied.length + 1 + 1);
    expect(n.bookReport!()['BTC-USDT']).toMatchObject({ resyncs: 0 });
    // The server saw a clean close when the iteration ended.
    await vi.waitFor(() => expect(mock.closedByClient).toBe(1), { timeout: 3_000 });
  });

  it('reconnects after the server kills the connection, and fetches a new snapshot', async () => {
    const mock = await startMock((socket, index) => {
      if (index === 0) {
        sendAll(socket, STREAM.slice(0, 50));
        // Kill the TCP connection (no close frame) once the frames are flushed.
        setTimeout(() => socket.terminate(), 100);
      } else {
        sendAll(socket, STREAM.slice(50, 120));
      }
    });
    mocks.push(mock);
    const ctrl = new AbortController();
    const logs: string[] = [];
    const all = await collect(binanceAdapter.connect!(options(mock, ctrl.signal, logs)), ctrl, (fs) => venueFrames(fs).length >= 50 + 1 + 70 + 1);
    const got = venueFrames(all);

    expect(mock.connections).toHaveLength(2);
    expect(mock.restRequests).toHaveLength(2);
    const first = got.filter((f) => f.origin === 'binance:ws#1').map((f) => f.data);
    const second = got.filter((f) => f.origin === 'binance:ws#2').map((f) => f.data);
    expect(first).toEqual(STREAM.slice(0, 50));
    expect(second).toEqual(STREAM.slice(50, 120));
    expect(got.filter((f) => f.channel === 'rest:depth:BTCUSDT')).toHaveLength(2);
    // Frames of the second connection come after all of the first's.
    const lastOfFirst = got.findLastIndex((f) => f.origin === 'binance:ws#1');
    const firstOfSecond = got.findIndex((f) => f.origin === 'binance:ws#2');
    expect(lastOfFirst).toBeLessThan(firstOfSecond);
    expect(logs.some((l) => l.includes('reconnecting'))).toBe(true);
    // connected, disconnected (with the reason), connected again; each before its connection's frames.
    const st = statuses(all);
    expect(st.map((s) => [s.status, s.origin])).toEqual([
      ['connected', 'binance:ws#1'],
      ['disconnected', 'binance:ws#1'],
      ['connected', 'binance:ws#2'],
    ]);
    expect(st[1]!.reason).toMatch(/^closed \(1006/);
    expect(st[2]!.reason).toBe('reconnect');
    const iDisconnected = all.findIndex((f) => f.channel === STATUS_CHANNEL && f.data.includes('"disconnected"'));
    expect(iDisconnected).toBeGreaterThan(all.findLastIndex((f) => f.origin === 'binance:ws#1' && f.channel !== STATUS_CHANNEL));
    expect(iDisconnected).toBeLessThan(firstOfSecond + 2);
  });

  it('ends the iteration cleanly on abort, also while waiting to reconnect', async () => {
    // A server that accepts and sends one bookTicker frame (no depthUpdate, so no snapshot), then stays silent.
    const mock = await startMock((socket) => sendAll(socket, [STREAM[2]!]));
    mocks.push(mock);
    const ctrl = new AbortController();
    const it = binanceAdapter.connect!(options(mock, ctrl.signal))[Symbol.asyncIterator]();
    expect((await it.next()).value?.channel).toBe(STATUS_CHANNEL);
    const first = await it.next();
    expect(first.value?.data).toBe(STREAM[2]);
    const pending = it.next(); // waits for a frame that never comes
    setTimeout(() => ctrl.abort(), 50);
    const t0 = Date.now();
    const end = await pending;
    expect(end.done).toBe(true);
    expect(Date.now() - t0).toBeLessThan(1_000);
    await vi.waitFor(() => expect(mock.closedByClient).toBe(1), { timeout: 3_000 });

    // Nobody listening: the feed retries with backoff until aborted.
    const dead = await startMock(() => {});
    await dead.close();
    const ctrl2 = new AbortController();
    const logs: string[] = [];
    setTimeout(() => ctrl2.abort(), 1_200);
    const t1 = Date.now();
    const got = await collect(binanceAdapter.connect!(options(dead, ctrl2.signal, logs)), ctrl2, () => false);
    expect(got).toEqual([]);
    expect(Date.now() - t1).toBeLessThan(2_000);
    expect(logs.filter((l) => l.includes('reconnecting')).length).toBeGreaterThanOrEqual(2);

    // An already aborted signal yields nothing and connects nowhere.
    const pre = AbortSignal.abort();
    const none = await collect(binanceAdapter.connect!(options(mock, pre)), new AbortController(), () => false);
    expect(none).toEqual([]);
    expect(mock.connections).toHaveLength(1);
  });

  it('rejects an empty or unusable symbol list before connecting', async () => {
    const mock = await startMock(() => {});
    mocks.push(mock);
    const signal = new AbortController().signal;
    for (const symbols of [[], ['NOTAPAIR']]) {
      const it = binanceAdapter.connect!({ ...options(mock, signal), symbols })[Symbol.asyncIterator]();
      await expect(it.next()).rejects.toMatchObject({ code: ERR.FEED, statusCode: 400 });
    }
    expect(mock.connections).toHaveLength(0);
  });

  it('pauses the socket instead of buffering without bound when the consumer is slow, and loses nothing', async () => {
    const pause = vi.spyOn(WebSocket.prototype, 'pause');
    const resume = vi.spyOn(WebSocket.prototype, 'resume');
    const total = 6_000;
    const pad = 'x'.repeat(4_000);
    let server: WebSocket | undefined;
    const mock = await startMock((socket) => {
      server = socket;
      for (let i = 0; i < total; i++) socket.send(`{"stream":"btcusdt@trade","data":{"i":${i},"pad":"${pad}"}}`);
    });
    mocks.push(mock);
    const ctrl = new AbortController();
    const it = binanceAdapter.connect!(options(mock, ctrl.signal))[Symbol.asyncIterator]();
    expect((await it.next()).value?.channel).toBe(STATUS_CHANNEL);
    const first = await it.next();
    expect(first.value?.data).toContain('"i":0,');
    // Stall the consumer: the client must stop reading, so ~24 MB stay on the server's side.
    await new Promise((r) => setTimeout(r, 500));
    expect(pause).toHaveBeenCalled();
    expect(server!.bufferedAmount).toBeGreaterThan(0);

    let expected = 1;
    let inOrder = true;
    while (expected < total) {
      const r = await it.next();
      if (r.done) break;
      if (!r.value.data.includes(`"i":${expected},`)) inOrder = false;
      expected++;
    }
    expect(expected).toBe(total);
    expect(inOrder).toBe(true);
    expect(resume).toHaveBeenCalled();
    expect(QUEUE_HIGH_WATER).toBeLessThan(total);
    ctrl.abort();
    expect(await it.next()).toEqual({ done: true, value: undefined });
  });
});

// ---------------------------------------------------------------- against a simulated market

const SYMBOLS = ['BTCUSDT', 'ETHUSDT'];
const CANON: Record<string, string> = { BTCUSDT: 'BTC-USDT', ETHUSDT: 'ETH-USDT' };
const simServers: BinanceTestServer[] = [];
const clients: LiveClient[] = [];
afterEach(async () => {
  while (clients.length > 0) await clients.pop()!.stop();
  while (simServers.length > 0) await simServers.pop()!.close();
});

async function session(script: ClientScript): Promise<{ server: BinanceTestServer; client: LiveClient }> {
  const server = await BinanceTestServer.start({ symbols: SYMBOLS, script: () => script });
  simServers.push(server);
  const client = await startLiveClient(server, binanceAdapter, binanceSpotProtocol, ['btc-usdt', 'ethusdt']);
  clients.push(client);
  await client.settled();
  return { server, client };
}

const statusesOf = (events: CanonicalEvent[], symbol: string): [string, string][] =>
  events.filter((e): e is FeedStatus => e.kind === 'status' && e.symbol === symbol).map((e) => [e.status, e.reason]);

/** The book Vigil holds and the one its events describe both equal the server's. */
function expectBooksMatchServer(server: BinanceTestServer, client: LiveClient): void {
  const sim = server.current('c1')!.sim;
  for (const s of SYMBOLS) {
    const expected = sim.book(s);
    const held = client.normalizer.orderBook(CANON[s]!)!;
    expect(held.synced).toBe(true);
    expect({ bids: held.book.bids.levels.map((l) => [l.price, l.qty]), asks: held.book.asks.levels.map((l) => [l.price, l.qty]) }).toEqual(expected);
    expect(rebuildFromEvents(client.events, CANON[s]!)).toEqual(expected);
  }
}

describe('binance live feed against a simulated Binance market (books, reconnects, gaps, dead letters)', () => {
  it('normal flow: one snapshot per symbol, books equal to the server\'s, top of book matching every bookTicker', async () => {
    const { server, client } = await session({ ticks: 300 });
    const conn = server.current('c1')!;
    expect(conn.path).toBe('/c1/stream?streams=btcusdt@trade/btcusdt@bookTicker/btcusdt@depth@100ms/ethusdt@trade/ethusdt@bookTicker/ethusdt@depth@100ms');
    expect(server.requestsOf('c1').map((r) => [r.path, r.symbol, r.limit]).sort()).toEqual([
      ['/api/v3/depth', 'BTCUSDT', '1000'],
      ['/api/v3/depth', 'ETHUSDT', '1000'],
    ]);
    expectBooksMatchServer(server, client);
    for (const s of SYMBOLS) {
      expect(statusesOf(client.events, CANON[s]!).map(([st]) => st)).toEqual(['connected', 'book_synced']);
      const r = client.normalizer.bookReport()[CANON[s]!]!;
      expect(r.resyncs).toBe(0);
      expect(r.compared).toBeGreaterThan(50);
      expect(r.matched).toBe(r.compared);
    }
    // Every trade and bookTicker became an event; every diff after the snapshot did.
    const sentTrades = conn.sent.filter((t) => t.includes('@trade')).length;
    expect(client.events.filter((e) => e.kind === 'trade')).toHaveLength(sentTrades);
    expect(client.events.filter((e) => e.kind === 'quote')).toHaveLength(conn.sent.filter((t) => t.includes('@bookTicker')).length);
    expect(client.ingestor.counters.malformed).toBe(0);
    expect(client.resyncs).toEqual([]);
  });

  it('a dropped connection recovers with a consistent book (new snapshot per symbol)', async () => {
    const { server, client } = await session({ ticks: 300, kill: [{ conn: 0, step: 120 }] });
    expect(server.connectionsOf('c1')).toHaveLength(2);
    expect(server.requestsOf('c1').map((r) => r.symbol).sort()).toEqual(['BTCUSDT', 'BTCUSDT', 'ETHUSDT', 'ETHUSDT']);
    expectBooksMatchServer(server, client);
    for (const s of SYMBOLS) {
      expect(statusesOf(client.events, CANON[s]!).map(([st]) => st)).toEqual(['connected', 'book_synced', 'disconnected', 'connected', 'book_synced']);
      const r = client.normalizer.bookReport()[CANON[s]!]!;
      expect(r.resyncs).toBe(0); // a reconnect is not a sequence gap
      expect(r.matched).toBe(r.compared);
    }
    // No book event between the disconnect and the new snapshot.
    const iDisc = client.events.findIndex((e) => e.kind === 'status' && e.status === 'disconnected');
    const iSnap = client.events.findIndex((e, i) => i > iDisc && e.kind === 'book' && e.symbol === 'BTC-USDT');
    expect((client.events[iSnap] as Book).snapshot).toBe(true);
  });

  it('a sequence gap resyncs that one symbol: book_reset, a new snapshot request for it only, book_synced', async () => {
    const { server, client } = await session({ ticks: 300, skip: [{ conn: 0, step: 150, symbol: 'ETHUSDT' }] });
    expect(server.connectionsOf('c1')).toHaveLength(1);
    const requests = server.requestsOf('c1').map((r) => r.symbol);
    expect(requests.slice(0, 2).sort()).toEqual(['BTCUSDT', 'ETHUSDT']);
    expect(requests.slice(2)).toEqual(['ETHUSDT']);
    expect(client.resyncs).toEqual([['ETHUSDT', expect.stringMatching(/^sequence gap: expected U=\d+, got U=\d+ \(u=\d+\)$/)]]);
    const eth = statusesOf(client.events, 'ETH-USDT');
    expect(eth.map(([st]) => st)).toEqual(['connected', 'book_synced', 'book_reset', 'book_synced']);
    expect(eth[2]![1]).toBe(client.resyncs[0]![1]);
    expect(statusesOf(client.events, 'BTC-USDT').map(([st]) => st)).toEqual(['connected', 'book_synced']);
    const report = client.normalizer.bookReport();
    expect(report['ETH-USDT']!.resyncs).toBe(1);
    expect(report['BTC-USDT']!.resyncs).toBe(0);
    expect(report['ETH-USDT']!.matched).toBe(report['ETH-USDT']!.compared);
    expectBooksMatchServer(server, client);
  });

  it('a malformed frame becomes a dead letter with its reason and raw text, and the feed goes on', async () => {
    const bad = '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":7,"p":"-5","q":"1","T":1,"m":true}}';
    const { server, client } = await session({ ticks: 200, raw: [{ conn: 0, step: 80, text: bad }] });
    await vi.waitFor(() => expect(client.dlq).toHaveLength(1));
    expect(client.dlq[0]).toMatchObject({ source: 'binance', origin: 'binance:ws#1', reason: 'trade: price (p) must be a positive number, got "-5"', raw: bad });
    expect(client.ingestor.counters.malformed).toBe(1);
    // Frames after it were normalized: the books are complete at the end of the script.
    const iBad = client.frames.findIndex((f) => f.data === bad);
    expect(client.frames.length - iBad).toBeGreaterThan(100);
    expectBooksMatchServer(server, client);
  });
});
