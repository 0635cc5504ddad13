/**
 * Kraken live feed (WebSocket v2) against a local server speaking the v2 protocol
 * (test/helpers/kraken-server.ts): subscriptions and acks, application ping/pong, instrument
 * precisions, book snapshots and updates with the server's own CRC32, a corrupted checksum, a killed
 * connection, malformed frames and venue errors. Frames go through an Ingestor on a MemoryTransport,
 * exactly like `vigil run`, with the normalizer's resync requests wired to the feed.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Book, CanonicalEvent, Quote, Trade } from '../src/core/events.ts';
import { connectVenue } from '../src/feeds/connection.ts';
import { KRAKEN_BOOK_DEPTH, KrakenNormalizer, krakenAdapter, krakenProtocol } from '../src/feeds/kraken.ts';
import { KrakenServer, type PairSpec } from './helpers/kraken-server.ts';
import { atStopLiveRuns, bookLevels, countStatus, rebuildFromEvents, startLiveRun, statuses, stopLiveRuns, type LiveRun } from './helpers/live-harness.ts';

const PAIRS: PairSpec[] = [
  { symbol: 'BTC/USD', pricePrecision: 1, qtyPrecision: 8, mid: 65_000 },
  { symbol: 'ETH/USD', pricePrecision: 2, qtyPrecision: 8, mid: 3_000 },
  // Written without trailing zeros: the checksum needs the instrument channel's precision.
  { symbol: 'DOGE/USD', pricePrecision: 7, qtyPrecision: 8, mid: 0.15, trimZeros: true },
];
const CANONICAL: Record<string, string> = { 'BTC/USD': 'BTC-USD', 'ETH/USD': 'ETH-USD', 'DOGE/USD': 'DOGE-USD' };
const NATIVE = Object.keys(CANONICAL);
/** Application ping period for the tests (every send shares the 5/s outbox with subscriptions). */
const PING_MS = 500;

interface Harness extends LiveRun<KrakenNormalizer> {
  server: KrakenServer;
  logs: string[];
}

afterEach(stopLiveRuns);

async function start(symbols: string[] = ['BTC-USD', 'ETH-USD', 'DOGE-USD']): Promise<Harness> {
  const server = await KrakenServer.start({ pairs: PAIRS, heartbeatMs: 250 });
  const logs: string[] = [];
  // The real protocol, with the application ping period shrunk for the test.
  const protocol = { ...krakenProtocol, appPing: { intervalMs: PING_MS, message: krakenProtocol.appPing!.message } };
  const run = await startLiveRun({
    createNormalizer: (context) => new KrakenNormalizer(context),
    connect: (signal) =>
      connectVenue(protocol, { symbols, wsUrl: server.url, signal, log: (m) => logs.push(m) }, { backoffBaseMs: 20, backoffCapMs: 100, closeGraceMs: 50 }),
    onStop: () => server.close(),
  });
  return Object.assign(run, { server, logs });
}

async function synced(h: Harness, perSymbol: number, symbols: string[] = NATIVE): Promise<void> {
  await vi.waitFor(
    () => {
      for (const s of symbols) expect(countStatus(h.events, CANONICAL[s], 'book_synced')).toBe(perSymbol);
    },
    { timeout: 8_000, interval: 20 },
  );
}

/** Waits until every book (normalizer's and rebuilt from events) equals what the server publishes. */
async function booksMatchServer(h: Harness, symbols: string[] = NATIVE): Promise<void> {
  await vi.waitFor(
    () => {
      for (const s of symbols) {
        const want = h.server.book(s, KRAKEN_BOOK_DEPTH);
        expect(bookLevels(h.normalizer.book(CANONICAL[s]!))).toEqual(want);
      }
    },
    { timeout: 8_000, interval: 20 },
  );
  for (const s of symbols) {
    const want = h.server.book(s, KRAKEN_BOOK_DEPTH);
    expect(want.bids).toHaveLength(KRAKEN_BOOK_DEPTH);
    expect(want.asks).toHaveLength(KRAKEN_BOOK_DEPTH);
    expect(rebuildFromEvents(h.events, CANONICAL[s]!)).toEqual(want);
  }
}

function subscriptions(h: Harness, conn?: number): Record<string, unknown>[] {
  return h.server.received
    .filter((r) => (conn === undefined || r.conn === conn) && (r.msg.method === 'subscribe' || r.msg.method === 'unsubscribe'))
    .map((r) => {
      const { req_id: _ignored, ...rest } = r.msg;
      return rest;
    });
}

const EXPECTED_SUBSCRIPTIONS = [
  { method: 'subscribe', params: { channel: 'instrument', snapshot: true } },
  { method: 'subscribe', params: { channel: 'ticker', event_trigger: 'bbo', snapshot: true, symbol: NATIVE } },
  { method: 'subscribe', params: { channel: 'trade', snapshot: true, symbol: NATIVE } },
  { method: 'subscribe', params: { channel: 'book', depth: KRAKEN_BOOK_DEPTH, snapshot: true, symbol: NATIVE } },
];

describe('kraken live feed against a local WebSocket v2 server', () => {
  it('subscribes, pings, syncs every book from its snapshot and keeps it equal to the server through updates', async () => {
    const h = await start();
    await synced(h, 1);
    expect(subscriptions(h)).toEqual(EXPECTED_SUBSCRIPTIONS);
    expect(h.server.connections).toBe(1);

    const tradeIds: string[] = [];
    for (let i = 0; i < 150; i++) {
      const s = NATIVE[i % 3]!;
      h.server.mutate(s, 1 + (i % 4));
      if (i % 5 === 0) tradeIds.push(String(h.server.trade(s, i % 10 === 0 ? 'buy' : 'sell')));
    }
    await booksMatchServer(h);
    await vi.waitFor(() => expect(h.events.filter((e) => e.kind === 'trade')).toHaveLength(30));
    // Kraken v2 wants the client to ping: {"method":"ping"} answered by {"method":"pong"} (labelled).
    await vi.waitFor(() => expect(h.ingestor.counters.ignored.pong ?? 0).toBeGreaterThanOrEqual(2), { timeout: 3_000 });
    expect(h.server.messages((m) => m.method === 'ping').length).toBeGreaterThanOrEqual(2);
    expect(h.server.messages((m) => m.method === 'ping')[0]).toEqual({ method: 'ping' });

    // Every snapshot and update was verified against the server's CRC32, and all matched — including
    // DOGE/USD, whose literals carry no trailing zeros (padded to the instrument channel's precision;
    // test/kraken.test.ts shows a trimmed book that only that precision can check).
    const report = h.normalizer.bookReport();
    for (const s of NATIVE) {
      const bookMsgs = h.events.filter((e) => e.kind === 'book' && e.symbol === CANONICAL[s]).length;
      expect(bookMsgs).toBe(1 + 50);
      expect(report[CANONICAL[s]!]).toEqual({ resyncs: 0, check: 'checksum', compared: 51, matched: 51 });
    }
    expect(h.normalizer.precisionOf('DOGE-USD')).toEqual({ price: 7, qty: 8 });
    const dogeQty = h.frames.filter((f) => f.data.includes('"DOGE/USD"') && f.data.includes('"book"')).flatMap((f) => [...f.data.matchAll(/"qty":([0-9.]+)/g)].map((m) => m[1]!));
    expect(dogeQty.length).toBeGreaterThan(200);
    expect(dogeQty.filter((q) => !/\.\d{8}$/.test(q)).length).toBeGreaterThan(0); // literals shorter than the precision

    // Snapshots: 100 levels a side; statuses: connected then book_synced per symbol, nothing else.
    const snaps = h.events.filter((e): e is Book => e.kind === 'book' && e.snapshot);
    expect(snaps.map((b) => [b.symbol, b.bids.length, b.asks.length])).toEqual(NATIVE.map((s) => [CANONICAL[s], 100, 100]));
    expect(statuses(h.events).map((s) => `${s.symbol}:${s.status}`).sort()).toEqual(
      ['BTC-USD:book_synced', 'BTC-USD:connected', 'DOGE-USD:book_synced', 'DOGE-USD:connected', 'ETH-USD:book_synced', 'ETH-USD:connected'],
    );

    // Quotes come from the ticker (BBO trigger), not derived; the last one is the server's top of book.
    const quotes = h.events.filter((e): e is Quote => e.kind === 'quote');
    expect(quotes.length).toBeGreaterThan(3);
    expect(quotes.every((q) => q.derived === undefined)).toBe(true);
    for (const s of NATIVE) {
      const last = quotes.filter((q) => q.symbol === CANONICAL[s]).at(-1)!;
      const top = h.server.book(s, 1);
      expect([last.bidPx, last.bidQty, last.askPx, last.askQty]).toEqual([...top.bids[0]!, ...top.asks[0]!]);
    }
    const trades = h.events.filter((e): e is Trade => e.kind === 'trade');
    expect(trades.map((t) => t.tradeId)).toEqual(tradeIds);
    expect(trades.filter((t) => t.side === 'buy')).toHaveLength(15);
    expect(h.dlq).toEqual([]);
    expect(h.ingestor.counters.malformed).toBe(0);
    expect(h.ingestor.counters.ignored).toMatchObject({ 'subscription-ack': 1 + 3 * 3, instrument: 1, 'system-status': 1 });
  });

  it('a corrupted checksum resets that book and resubscribes that symbol only; the book comes back equal to the server', async () => {
    const h = await start();
    await synced(h, 1);
    for (let i = 0; i < 30; i++) h.server.mutate(NATIVE[i % 3]!, 2);
    await booksMatchServer(h);
    const before = h.server.received.length;

    h.server.corruptNext('ETH/USD');
    h.server.mutate('ETH/USD', 2);
    await synced(h, 2, ['ETH/USD']);
    for (let i = 0; i < 30; i++) h.server.mutate(NATIVE[i % 3]!, 2);
    await booksMatchServer(h);

    const reset = statuses(h.events, 'ETH-USD').filter((s) => s.status === 'book_reset');
    expect(reset).toHaveLength(1);
    expect(reset[0]!.reason).toMatch(/^checksum mismatch: computed \d+, venue sent \d+$/);
    expect(h.resyncs).toEqual([['ETH/USD', reset[0]!.reason]]);
    // The server saw an unsubscribe and a subscribe of ETH/USD's book, and nothing for the others.
    const after = h.server.received.slice(before).filter((r) => r.msg.method !== 'ping');
    expect(after.map((r) => ({ ...r.msg, req_id: undefined }))).toEqual([
      { method: 'unsubscribe', params: { channel: 'book', depth: KRAKEN_BOOK_DEPTH, symbol: ['ETH/USD'] }, req_id: undefined },
      { method: 'subscribe', params: { channel: 'book', depth: KRAKEN_BOOK_DEPTH, snapshot: true, symbol: ['ETH/USD'] }, req_id: undefined },
    ]);
    expect(h.server.connections).toBe(1);
    const report = h.normalizer.bookReport();
    expect(report['ETH-USD']!.resyncs).toBe(1);
    expect(report['ETH-USD']!.compared - report['ETH-USD']!.matched).toBe(1);
    expect(report['BTC-USD']).toMatchObject({ resyncs: 0 });
    expect(report['BTC-USD']!.matched).toBe(report['BTC-USD']!.compared);
    expect(report['DOGE-USD']).toMatchObject({ resyncs: 0 });
    expect(countStatus(h.events, 'BTC-USD', 'book_synced')).toBe(1);
    expect(countStatus(h.events, 'BTC-USD', 'book_reset') + countStatus(h.events, 'DOGE-USD', 'book_reset')).toBe(0);
    // The corrupt update itself was never emitted as a book event.
    const ethBooks = h.events.filter((e): e is Book => e.kind === 'book' && e.symbol === 'ETH-USD');
    expect(ethBooks.filter((b) => b.snapshot)).toHaveLength(2);
    expect(h.dlq).toEqual([]);
  });

  it('a killed connection reconnects, resubscribes everything and rebuilds books equal to the server; trades are not doubled', async () => {
    const h = await start();
    await synced(h, 1);
    const ids: number[] = [];
    for (let i = 0; i < 30; i++) {
      h.server.mutate(NATIVE[i % 3]!, 2);
      if (i % 3 === 0) ids.push(h.server.trade('BTC/USD', 'buy'));
    }
    await booksMatchServer(h);
    await vi.waitFor(() => expect(h.events.filter((e) => e.kind === 'trade')).toHaveLength(10));

    h.server.dropAll();
    await vi.waitFor(() => expect(countStatus(h.events, undefined, 'disconnected')).toBe(3));
    // While Vigil is away the market moves: the rebuilt books must show it.
    for (let i = 0; i < 30; i++) h.server.mutate(NATIVE[i % 3]!, 3);
    ids.push(h.server.trade('BTC/USD', 'sell'), h.server.trade('BTC/USD', 'sell'));
    await synced(h, 2);
    for (let i = 0; i < 30; i++) h.server.mutate(NATIVE[i % 3]!, 2);
    await booksMatchServer(h);

    expect(h.server.connections).toBe(2);
    expect(subscriptions(h, 2)).toEqual(EXPECTED_SUBSCRIPTIONS);
    expect(countStatus(h.events, undefined, 'connected')).toBe(6);
    for (const s of Object.values(CANONICAL)) {
      const seq = statuses(h.events, s).map((e) => e.status);
      expect(seq).toEqual(['connected', 'book_synced', 'disconnected', 'connected', 'book_synced']);
    }
    // The re-subscription's trade snapshot repeats the 10 trades already seen: each id once.
    const trades = h.events.filter((e): e is Trade => e.kind === 'trade');
    expect(trades.map((t) => Number(t.tradeId))).toEqual(ids);
    const report = h.normalizer.bookReport();
    for (const s of Object.values(CANONICAL)) {
      expect(report[s]!.resyncs).toBe(0);
      expect(report[s]!.matched).toBe(report[s]!.compared);
    }
    expect(h.dlq).toEqual([]);
  });

  it('malformed frames become dead letters with the reason and the raw text, and the feed goes on', async () => {
    const h = await start();
    await synced(h, 1);
    const badPrice = '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":-5,"qty":1.0}],"asks":[],"checksum":1,"timestamp":"2024-01-01T00:00:00.000000Z"}]}';
    const notJson = '{"channel":"trade","type":"update","data":[{';
    h.server.broadcast(badPrice);
    h.server.broadcast(notJson);
    for (let i = 0; i < 30; i++) h.server.mutate(NATIVE[i % 3]!, 2);
    await vi.waitFor(() => expect(h.dlq).toHaveLength(2));
    await booksMatchServer(h);

    expect(h.dlq[0]).toMatchObject({
      source: 'kraken',
      origin: 'kraken:ws#1',
      reason: 'book update: data[0].bids[0].price must be a positive number, got -5',
      raw: badPrice,
    });
    expect(h.dlq[1]).toMatchObject({ source: 'kraken', origin: 'kraken:ws#1', raw: notJson });
    expect(h.dlq[1]!.reason).toMatch(/^invalid JSON: /);
    expect(h.ingestor.counters.malformed).toBe(2);
    // The broken update did not touch the book: no reset, every checksum after it matched.
    const report = h.normalizer.bookReport();
    expect(report['BTC-USD']).toEqual({ resyncs: 0, check: 'checksum', compared: 11, matched: 11 });
    expect(countStatus(h.events, undefined, 'book_reset')).toBe(0);
  });

  it('venue errors (an unknown pair) are dead letters naming the pair; the other pairs stream normally', async () => {
    const h = await start(['BTC-USD', 'FOO-USD']);
    await synced(h, 1, ['BTC/USD']);
    await vi.waitFor(() => expect(h.dlq).toHaveLength(3));
    expect(h.dlq.map((d) => d.reason)).toEqual([
      'subscribe failed for FOO/USD: Currency pair not supported FOO/USD',
      'subscribe failed for FOO/USD: Currency pair not supported FOO/USD',
      'subscribe failed for FOO/USD: Currency pair not supported FOO/USD',
    ]);
    for (let i = 0; i < 10; i++) h.server.mutate('BTC/USD', 2);
    await booksMatchServer(h, ['BTC/USD']);
    expect(h.normalizer.bookReport()['BTC-USD']).toEqual({ resyncs: 0, check: 'checksum', compared: 11, matched: 11 });
  });

  it('the registered adapter connects with the real protocol (symbols in any common spelling)', async () => {
    const server = await KrakenServer.start({ pairs: PAIRS });
    const ctrl = new AbortController();
    atStopLiveRuns(async () => {
      ctrl.abort();
      await server.close();
    });
    const feed = krakenAdapter.connect!({ symbols: ['xbt/usd', 'ETH-USD'], wsUrl: server.url, signal: ctrl.signal });
    expect(typeof feed.resync).toBe('function');
    const n = krakenAdapter.createNormalizer();
    const out: CanonicalEvent[] = [];
    for await (const f of feed) {
      n.normalize(f, out);
      if (out.filter((e) => e.kind === 'status' && e.status === 'book_synced').length === 2) break;
    }
    expect(subscriptions({ server } as Harness)[3]).toEqual({
      method: 'subscribe',
      params: { channel: 'book', depth: KRAKEN_BOOK_DEPTH, snapshot: true, symbol: ['BTC/USD', 'ETH/USD'] },
    });
    expect(n.bookReport!()).toEqual({
      'BTC-USD': { resyncs: 0, check: 'checksum', compared: 1, matched: 1 },
      'ETH-USD': { resyncs: 0, check: 'checksum', compared: 1, matched: 1 },
    });
  });
});
