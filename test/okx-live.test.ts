// The OKX live feed (connectVenue + okxProtocol) against a local OKX v5 server, frames through an
// Ingestor on a MemoryTransport exactly as `vigil run` does: acks, pings, snapshots, updates, a killed
// connection, a sequence gap, a checksum mismatch and broken frames.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Book, Quote, Trade } from '../src/core/events.ts';
import { connectVenue } from '../src/feeds/connection.ts';
import type { VenueProtocol } from '../src/feeds/connection-types.ts';
import { okxAdapter, okxProtocol, type OkxNormalizer } from '../src/feeds/okx.ts';
import { bookLevels, books, countStatus, numericLevels, rebuildFromEvents, startLiveRun, statuses, stopLiveRuns, type Levels, type LiveRun } from './helpers/live-harness.ts';
import { OkxServer, type Lvl } from './helpers/okx-server.ts';

const BOOKS: Record<string, { bids: Lvl[]; asks: Lvl[] }> = {
  'BTC-USDT': {
    bids: [['30000.1', '1.5'], ['29999.9', '0.25'], ['29990', '3'], ['29980.50', '0.001']],
    asks: [['30000.5', '0.75'], ['30001', '2'], ['30010.0', '1.10']],
  },
  'ETH-USDT-SWAP': {
    bids: [['2000.01', '10'], ['1999.5', '4']],
    asks: [['2000.02', '7'], ['2000.5', '12'], ['2001', '3']],
  },
};
const SYMBOLS = ['BTC-USDT', 'ETH-USDT-PERP'];

interface Run extends LiveRun<OkxNormalizer> {
  server: OkxServer;
}

afterEach(stopLiveRuns);

async function start(protocol: VenueProtocol = okxProtocol): Promise<Run> {
  const server = await OkxServer.start(BOOKS);
  const run = await startLiveRun({
    createNormalizer: (context) => okxAdapter.createNormalizer(context) as OkxNormalizer,
    connect: (signal) => connectVenue(protocol, { symbols: SYMBOLS, wsUrl: server.url, signal }, { backoffBaseMs: 20, backoffCapMs: 100 }),
    onStop: () => server.close(),
  });
  return Object.assign(run, { server });
}

const serverBook = (server: OkxServer, instId: string): Levels => numericLevels(server.book(instId));

/** The normalizer's own book as [price, qty] and the venue texts. */
function normalizerBook(n: OkxNormalizer, symbol: string) {
  const b = n.orderBook(symbol);
  if (b === undefined) return undefined;
  return { synced: b.synced, ...bookLevels(b), texts: [...b.bids.levels, ...b.asks.levels].map((l) => [l.priceText, l.qtyText]) };
}

function expectConsistent(run: Run, symbol: string, instId: string): void {
  const truth = serverBook(run.server, instId);
  expect(rebuildFromEvents(run.events, symbol)).toEqual(truth);
  const own = normalizerBook(run.normalizer, symbol);
  expect(own?.synced).toBe(true);
  expect({ bids: own?.bids, asks: own?.asks }).toEqual(truth);
  const sb = run.server.book(instId);
  expect(own?.texts).toEqual([...sb.bids, ...sb.asks]);
}

async function synced(run: Run, times = 1): Promise<void> {
  await vi.waitFor(
    () => {
      expect(countStatus(run.events, 'BTC-USDT', 'book_synced')).toBe(times);
      expect(countStatus(run.events, 'ETH-USDT-PERP', 'book_synced')).toBe(times);
    },
    { timeout: 10_000, interval: 10 },
  );
}

/** Resubscriptions after the initial subscribe of the connection: [op, channel, instId]. */
function laterRequests(server: OkxServer): [string, string, string][] {
  return server
    .requests()
    .slice(1)
    .flatMap((r) => r.args.map((a): [string, string, string] => [r.op, a.channel, a.instId]));
}

describe('okx live feed against a local OKX v5 server', () => {
  it('subscribes, syncs both books from their snapshots and normalizes trades, tickers and updates', async () => {
    const run = await start();
    await synced(run);
    const { server, events } = run;
    expect(server.connections).toBe(1);
    // One subscribe message with the three channels of each instrument.
    expect(server.requests()).toEqual([
      {
        conn: 1,
        op: 'subscribe',
        args: [
          { channel: 'trades', instId: 'BTC-USDT' },
          { channel: 'books', instId: 'BTC-USDT' },
          { channel: 'tickers', instId: 'BTC-USDT' },
          { channel: 'trades', instId: 'ETH-USDT-SWAP' },
          { channel: 'books', instId: 'ETH-USDT-SWAP' },
          { channel: 'tickers', instId: 'ETH-USDT-SWAP' },
        ],
      },
    ]);
    expect(statuses(events).slice(0, 2).map((s) => [s.symbol, s.status, s.reason])).toEqual([
      ['BTC-USDT', 'connected', 'initial connect'],
      ['ETH-USDT-PERP', 'connected', 'initial connect'],
    ]);
    const snaps = events.filter((e): e is Book => e.kind === 'book' && e.snapshot);
    expect(snaps.map((b) => [b.symbol, b.seq, b.bids.length, b.asks.length])).toEqual([
      ['BTC-USDT', 2000, 4, 3],
      ['ETH-USDT-PERP', 3000, 2, 3],
    ]);

    server.update('BTC-USDT', { bids: [['30000.2', '0.5'], ['29999.9', '0']], asks: [['30001', '2.5']] });
    server.update('ETH-USDT-SWAP', { asks: [['2000.02', '0'], ['2000.03', '1']] });
    server.keepalive('BTC-USDT');
    server.update('BTC-USDT', { asks: [['30000.5', '0']] });
    server.trade('BTC-USDT', '9001', '30000.5', '0.75', 'buy');
    server.trade('ETH-USDT-SWAP', '77', '2000.01', '3', 'sell');
    server.ticker('BTC-USDT');
    await vi.waitFor(() => expect(events.filter((e) => e.kind === 'quote')).toHaveLength(1), { timeout: 10_000, interval: 10 });

    const trades = events.filter((e): e is Trade => e.kind === 'trade');
    expect(trades.map((t) => [t.symbol, t.tradeId, t.price, t.qty, t.side])).toEqual([
      ['BTC-USDT', '9001', 30000.5, 0.75, 'buy'],
      ['ETH-USDT-PERP', '77', 2000.01, 3, 'sell'],
    ]);
    const quote = events.find((e): e is Quote => e.kind === 'quote')!;
    expect(quote).toMatchObject({ symbol: 'BTC-USDT', bidPx: 30000.2, bidQty: 0.5, askPx: 30001, askQty: 2.5 });
    expect(quote.derived).toBeUndefined();
    const deltas = books(events, 'BTC-USDT').filter((b) => !b.snapshot);
    expect(deltas).toHaveLength(2); // the keep-alive carries no change: no event
    expect(deltas[0]).toMatchObject({ prevSeq: 2000, bids: [[30000.2, 0.5], [29999.9, 0]], asks: [[30001, 2.5]] });
    expect(deltas[1]!.prevSeq).toBe(deltas[0]!.seq);
    expectConsistent(run, 'BTC-USDT', 'BTC-USDT');
    expectConsistent(run, 'ETH-USDT-PERP', 'ETH-USDT-SWAP');
    // Every book message's checksum was verified and matched: 2 snapshots, 3 updates, 1 keep-alive.
    expect(run.normalizer.bookReport()).toEqual({
      'BTC-USDT': { resyncs: 0, check: 'checksum', compared: 4, matched: 4 },
      'ETH-USDT-PERP': { resyncs: 0, check: 'checksum', compared: 2, matched: 2 },
    });
    expect(run.ingestor.counters.ignored).toEqual({ 'subscribe-ack': 6, 'book-keepalive': 1 });
    expect(run.ingestor.counters.malformed).toBe(0);
    expect(run.resyncs).toEqual([]);
  });

  it('sends the text ping on the protocol period and takes the pong as an ignored frame', async () => {
    const run = await start({ ...okxProtocol, appPing: { intervalMs: 40, message: 'ping' } });
    await synced(run);
    await vi.waitFor(() => expect(run.ingestor.counters.ignored.pong ?? 0).toBeGreaterThanOrEqual(3), { timeout: 10_000, interval: 10 });
    const pings = run.server.received.filter((r) => r.text === 'ping');
    expect(pings.length).toBeGreaterThanOrEqual(3);
    expect(run.ingestor.counters.malformed).toBe(0);
    expect(okxProtocol.appPing).toEqual({ intervalMs: 25_000, message: 'ping' });
  });

  it('after a killed connection reconnects, resubscribes and rebuilds a book equal to the server book', async () => {
    const run = await start();
    await synced(run);
    const { server, events } = run;
    server.update('BTC-USDT', { bids: [['30000.3', '1']] });
    await vi.waitFor(() => expect(books(events, 'BTC-USDT')).toHaveLength(2), { timeout: 10_000, interval: 10 });

    server.dropAll();
    // The market moves while the client is away: nobody receives these.
    server.update('BTC-USDT', { bids: [['30000.3', '0'], ['29999.8', '5']], asks: [['30000.4', '0.1']] });
    server.update('ETH-USDT-SWAP', { bids: [['2000.015', '2']] });
    await synced(run, 2);
    expect(server.connections).toBe(2);
    expect(countStatus(events, 'BTC-USDT', 'disconnected')).toBe(1);
    expect(countStatus(events, 'ETH-USDT-PERP', 'disconnected')).toBe(1);
    expect(statuses(events, 'BTC-USDT').map((s) => s.status)).toEqual(['connected', 'book_synced', 'disconnected', 'connected', 'book_synced']);
    // The second connection subscribed everything again.
    expect(server.requests().filter((r) => r.conn === 2).flatMap((r) => r.args.map((a) => `${a.channel}:${a.instId}`))).toEqual([
      'trades:BTC-USDT',
      'books:BTC-USDT',
      'tickers:BTC-USDT',
      'trades:ETH-USDT-SWAP',
      'books:ETH-USDT-SWAP',
      'tickers:ETH-USDT-SWAP',
    ]);
    server.update('BTC-USDT', { asks: [['30000.45', '0.2']] });
    await vi.waitFor(() => expect(rebuildFromEvents(events, 'BTC-USDT')).toEqual(serverBook(server, 'BTC-USDT')), { timeout: 10_000, interval: 10 });
    expectConsistent(run, 'BTC-USDT', 'BTC-USDT');
    expectConsistent(run, 'ETH-USDT-PERP', 'ETH-USDT-SWAP');
    expect(run.resyncs).toEqual([]);
    expect(run.ingestor.counters.malformed).toBe(0);
  });

  it('on a sequence gap resyncs that one instrument (unsubscribe + subscribe of its book) and rebuilds it', async () => {
    const run = await start();
    await synced(run);
    const { server, events } = run;
    server.update('BTC-USDT', { bids: [['29999.9', '0.5']] }, { drop: true }); // lost on the way
    server.update('BTC-USDT', { asks: [['30001', '0']] });
    await vi.waitFor(() => expect(countStatus(events, 'BTC-USDT', 'book_synced')).toBe(2), { timeout: 10_000, interval: 10 });

    const reset = statuses(events, 'BTC-USDT').find((s) => s.status === 'book_reset')!;
    expect(reset.reason).toMatch(/^sequence gap: prevSeqId \d+ after seqId 2000$/);
    expect(run.resyncs).toEqual([['BTC-USDT', reset.reason]]);
    expect(laterRequests(server)).toEqual([
      ['unsubscribe', 'books', 'BTC-USDT'],
      ['subscribe', 'books', 'BTC-USDT'],
    ]);
    expect(countStatus(events, 'ETH-USDT-PERP', 'book_reset')).toBe(0);
    expect(countStatus(events, 'ETH-USDT-PERP', 'book_synced')).toBe(1);
    // The update after the gap was not applied; the fresh snapshot holds both changes.
    expect(books(events, 'BTC-USDT').filter((b) => !b.snapshot)).toHaveLength(0);
    expectConsistent(run, 'BTC-USDT', 'BTC-USDT');
    expect(run.normalizer.bookReport()['BTC-USDT']!.resyncs).toBe(1);
    expect(run.normalizer.bookReport()['ETH-USDT-PERP']!.resyncs).toBe(0);
    expect(run.ingestor.counters.ignored).toMatchObject({ 'subscribe-ack': 7, 'unsubscribe-ack': 1 });
    // Updates go on after the resync.
    server.update('BTC-USDT', { bids: [['29999.95', '1']] });
    await vi.waitFor(() => expect(rebuildFromEvents(events, 'BTC-USDT')).toEqual(serverBook(server, 'BTC-USDT')), { timeout: 10_000, interval: 10 });
    expect(books(events, 'BTC-USDT').filter((b) => !b.snapshot)).toHaveLength(1);
  });

  it('on a checksum mismatch resyncs that one instrument and rebuilds it', async () => {
    const run = await start();
    await synced(run);
    const { server, events } = run;
    server.update('ETH-USDT-SWAP', { bids: [['2000.01', '11']] });
    server.update('ETH-USDT-SWAP', { asks: [['2000.5', '13']] }, { corrupt: true });
    await vi.waitFor(() => expect(countStatus(events, 'ETH-USDT-PERP', 'book_synced')).toBe(2), { timeout: 10_000, interval: 10 });

    const reset = statuses(events, 'ETH-USDT-PERP').find((s) => s.status === 'book_reset')!;
    expect(reset.reason).toMatch(/^checksum mismatch: OKX -?\d+, rebuilt book -?\d+$/);
    expect(run.resyncs).toEqual([['ETH-USDT-SWAP', reset.reason]]);
    expect(laterRequests(server)).toEqual([
      ['unsubscribe', 'books', 'ETH-USDT-SWAP'],
      ['subscribe', 'books', 'ETH-USDT-SWAP'],
    ]);
    expect(countStatus(events, 'BTC-USDT', 'book_reset')).toBe(0);
    // The corrupt update never became a book event.
    expect(books(events, 'ETH-USDT-PERP').map((b) => b.snapshot)).toEqual([true, false, true]);
    expectConsistent(run, 'ETH-USDT-PERP', 'ETH-USDT-SWAP');
    expect(run.normalizer.bookReport()['ETH-USDT-PERP']).toEqual({ resyncs: 1, check: 'checksum', compared: 4, matched: 3 });
  });

  it('sends broken frames to vigil.dlq with the reason and raw text, and the feed goes on', async () => {
    const run = await start();
    await synced(run);
    const { server, events } = run;
    const badTrade = '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"5","px":"abc","sz":"1","side":"buy","ts":"1700000000000"}]}';
    const errorEvent = '{"event":"error","code":"60018","msg":"Wrong URL or channel:books9,instId:BTC-USDT doesn\'t exist.","connId":"c1"}';
    server.broadcast(badTrade);
    server.broadcast(errorEvent);
    server.broadcast('{"arg":{"channel":"books"'); // truncated
    server.trade('BTC-USDT', '6', '30000.5', '0.1', 'sell');
    await vi.waitFor(() => expect(events.filter((e) => e.kind === 'trade')).toHaveLength(1), { timeout: 10_000, interval: 10 });
    await vi.waitFor(() => expect(run.dlq).toHaveLength(3), { timeout: 10_000, interval: 10 });

    expect(run.dlq.map((d) => [d.source, d.reason, d.raw])).toEqual([
      ['okx', 'trades: px must be a positive number, got "abc"', badTrade],
      ['okx', "OKX error event: Wrong URL or channel:books9,instId:BTC-USDT doesn't exist. (code 60018)", errorEvent],
      ['okx', expect.stringMatching(/^invalid JSON: /), '{"arg":{"channel":"books"'],
    ]);
    expect(run.dlq[0]!.origin).toBe('okx:ws#1');
    expect(run.ingestor.counters.malformed).toBe(3);
    expect(events.find((e) => e.kind === 'trade')).toMatchObject({ symbol: 'BTC-USDT', tradeId: '6', price: 30000.5, side: 'sell' });
    // The books were not touched by the broken frames.
    server.update('BTC-USDT', { bids: [['30000.1', '2']] });
    await vi.waitFor(() => expect(rebuildFromEvents(events, 'BTC-USDT')).toEqual(serverBook(server, 'BTC-USDT')), { timeout: 10_000, interval: 10 });
    expect(run.resyncs).toEqual([]);
  });
});
