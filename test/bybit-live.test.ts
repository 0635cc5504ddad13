// The Bybit live feed (one connection per category, merged) against a local Bybit v5 server, frames
// through an Ingestor on a MemoryTransport exactly as `vigil run` does: acks, pings, snapshots, deltas,
// tickers, a killed connection, a sequence gap, a service restart (u=1) and broken frames.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Trade } from '../src/core/events.ts';
import { BYBIT_PING_MESSAGE, bybitAdapter, bybitProtocol, connectBybit, type BybitNormalizer } from '../src/feeds/bybit.ts';
import { connectVenue } from '../src/feeds/connection.ts';
import type { LiveFeed } from '../src/feeds/types.ts';
import { STATUS_CHANNEL } from '../src/feeds/types.ts';
import { BybitServer, type Lvl } from './helpers/bybit-server.ts';
import { bookLevels, books, countStatus, numericLevels, quotes, rebuildFromEvents, startLiveRun, statuses, stopLiveRuns, type Levels, type LiveRun } from './helpers/live-harness.ts';

const BOOKS: Record<string, { bids: Lvl[]; asks: Lvl[] }> = {
  'linear/BTCUSDT': {
    bids: [['30000.10', '1.500'], ['30000.00', '0.250'], ['29999.90', '3.000']],
    asks: [['30000.20', '0.750'], ['30000.30', '2.000']],
  },
  'linear/ETHUSDT': {
    bids: [['2000.01', '10.00'], ['1999.50', '4.00']],
    asks: [['2000.02', '7.00'], ['2000.50', '12.00']],
  },
  'spot/BTCUSDT': {
    bids: [['30001.5', '0.1'], ['30000', '1']],
    asks: [['30002', '0.2'], ['30003', '0.5']],
  },
};
const SYMBOLS = ['linear/BTCUSDT', 'ETH-USDT-PERP', 'BTC-USDT'];
/** Canonical symbol → server book key. */
const KEYS: Record<string, string> = { 'BTC-USDT-PERP': 'linear/BTCUSDT', 'ETH-USDT-PERP': 'linear/ETHUSDT', 'BTC-USDT': 'spot/BTCUSDT' };

interface Run extends LiveRun<BybitNormalizer> {
  server: BybitServer;
}

afterEach(stopLiveRuns);

async function start(makeFeed?: (server: BybitServer, signal: AbortSignal) => LiveFeed): Promise<Run> {
  const server = await BybitServer.start(BOOKS);
  const run = await startLiveRun({
    createNormalizer: (context) => bybitAdapter.createNormalizer(context) as BybitNormalizer,
    connect: (signal) => makeFeed?.(server, signal) ?? connectBybit({ symbols: SYMBOLS, wsUrl: server.url, signal }, { backoffBaseMs: 20, backoffCapMs: 100 }),
    onStop: () => server.close(),
  });
  return Object.assign(run, { server });
}

const serverBook = (server: BybitServer, symbol: string): Levels => numericLevels(server.book(KEYS[symbol]!));

function expectConsistent(run: Run, symbol: string): void {
  const truth = serverBook(run.server, symbol);
  expect(rebuildFromEvents(run.events, symbol)).toEqual(truth);
  const own = run.normalizer.orderBook(symbol);
  expect(own?.synced).toBe(true);
  expect(bookLevels(own)).toEqual(truth);
  expect(own?.seq).toBe(run.server.updateId(KEYS[symbol]!));
}

async function synced(run: Run, times = 1): Promise<void> {
  await vi.waitFor(
    () => {
      for (const s of Object.keys(KEYS)) expect(countStatus(run.events, s, 'book_synced'), s).toBe(times);
    },
    { timeout: 10_000, interval: 10 },
  );
}

const wait = (fn: () => void): Promise<void> => vi.waitFor(fn, { timeout: 10_000, interval: 10 });

describe('bybit live feed against a local Bybit v5 server', () => {
  it('opens one connection per category, subscribes, syncs the books and normalizes trades, tickers, deltas and derived spot quotes', async () => {
    const run = await start();
    await synced(run);
    const { server, events } = run;
    await wait(() => expect(quotes(events, 'ETH-USDT-PERP')).toHaveLength(1));
    expect([...server.paths].sort()).toEqual(['/v5/public/linear', '/v5/public/spot']);
    const reqs = server.requests();
    expect(reqs.filter((r) => r.category === 'linear').map((r) => [r.op, r.args])).toEqual([
      ['subscribe', ['publicTrade.BTCUSDT', 'orderbook.50.BTCUSDT', 'tickers.BTCUSDT', 'publicTrade.ETHUSDT', 'orderbook.50.ETHUSDT', 'tickers.ETHUSDT']],
    ]);
    expect(reqs.filter((r) => r.category === 'spot').map((r) => [r.op, r.args])).toEqual([['subscribe', ['publicTrade.BTCUSDT', 'orderbook.50.BTCUSDT']]]);
    // Every venue frame carries its connection's category.
    for (const f of run.frames.filter((x) => x.channel !== STATUS_CHANNEL)) {
      expect(f.channel).toMatch(/^category:(spot|linear)$/);
      if (f.data.includes('ETHUSDT')) expect(f.channel).toBe('category:linear');
    }
    // Linear quotes come from the ticker snapshot; the spot quote is derived from the book.
    expect(quotes(events, 'BTC-USDT-PERP')).toEqual([expect.objectContaining({ bidPx: 30000.1, bidQty: 1.5, askPx: 30000.2, askQty: 0.75 })]);
    expect(quotes(events, 'BTC-USDT-PERP')[0]!.derived).toBeUndefined();
    expect(quotes(events, 'BTC-USDT')).toEqual([expect.objectContaining({ bidPx: 30001.5, bidQty: 0.1, askPx: 30002, askQty: 0.2, derived: true, seq: 2000 })]);

    server.update('linear/BTCUSDT', { bids: [['30000.15', '0.5'], ['30000.00', '0']] });
    server.tickerDelta('linear/BTCUSDT', ['bid']);
    server.update('spot/BTCUSDT', { bids: [['30000', '2']] }); // below the top: no derived quote
    server.update('spot/BTCUSDT', { asks: [['30002', '0']] }); // the best ask goes: derived quote
    server.trade('linear/BTCUSDT', 'a1b2', '30000.20', '0.010', 'Buy');
    server.trade('spot/BTCUSDT', '2290000000061666327', '30002', '0.2', 'Sell');
    await wait(() => expect(events.filter((e) => e.kind === 'trade')).toHaveLength(2));
    await wait(() => expect(quotes(events, 'BTC-USDT')).toHaveLength(2));
    await wait(() => expect(quotes(events, 'BTC-USDT-PERP')).toHaveLength(2));

    const trades = events.filter((e): e is Trade => e.kind === 'trade');
    expect(trades.map((t) => [t.symbol, t.tradeId, t.price, t.qty, t.side]).sort()).toEqual([
      ['BTC-USDT', '2290000000061666327', 30002, 0.2, 'sell'],
      ['BTC-USDT-PERP', 'a1b2', 30000.2, 0.01, 'buy'],
    ]);
    // The ticker delta carried only the bid: the ask is merged from the snapshot.
    expect(quotes(events, 'BTC-USDT-PERP')[1]).toMatchObject({ bidPx: 30000.15, bidQty: 0.5, askPx: 30000.2, askQty: 0.75 });
    expect(quotes(events, 'BTC-USDT')[1]).toMatchObject({ bidPx: 30001.5, bidQty: 0.1, askPx: 30003, askQty: 0.5, derived: true, seq: 2002 });
    expect(books(events, 'BTC-USDT-PERP').map((b) => [b.snapshot, b.seq, b.prevSeq])).toEqual([
      [true, 1000, undefined],
      [false, 1001, 1000],
    ]);
    for (const s of Object.keys(KEYS)) expectConsistent(run, s);
    expect(run.normalizer.bookReport()).toEqual({ 'BTC-USDT-PERP': { resyncs: 0 }, 'ETH-USDT-PERP': { resyncs: 0 }, 'BTC-USDT': { resyncs: 0 } });
    expect(run.ingestor.counters.ignored).toEqual({ 'subscribe-ack': 2 });
    expect(run.ingestor.counters.malformed).toBe(0);
  });

  it('sends {"op":"ping"} on the protocol period on both categories and takes either pong form as ignored', async () => {
    for (const category of ['linear', 'spot'] as const) {
      const symbol = category === 'linear' ? 'linear/ETHUSDT' : 'spot/BTCUSDT';
      const run = await start((server, signal) =>
        connectVenue({ ...bybitProtocol(category), appPing: { intervalMs: 30, message: BYBIT_PING_MESSAGE } }, { symbols: [symbol], wsUrl: server.url, signal }),
      );
      await wait(() => expect(run.ingestor.counters.ignored.pong ?? 0).toBeGreaterThanOrEqual(3));
      expect(run.server.received.filter((r) => r.text === '{"op":"ping"}').length).toBeGreaterThanOrEqual(3);
      expect(run.server.paths).toEqual([`/v5/public/${category}`]);
      expect(run.ingestor.counters.malformed).toBe(0);
      await run.stop();
    }
    expect(bybitProtocol('linear').appPing).toEqual({ intervalMs: 20_000, message: '{"op":"ping"}' });
  });

  it('after killed connections reconnects both categories and rebuilds books equal to the server books', async () => {
    const run = await start();
    await synced(run);
    const { server, events } = run;
    server.update('linear/BTCUSDT', { asks: [['30000.25', '1']] });
    await wait(() => expect(books(events, 'BTC-USDT-PERP')).toHaveLength(2));

    server.dropAll();
    // The market moves while the client is away.
    server.update('linear/BTCUSDT', { asks: [['30000.25', '0'], ['30000.20', '0.5']] });
    server.update('linear/ETHUSDT', { bids: [['2000.015', '1']] });
    server.update('spot/BTCUSDT', { bids: [['30001.6', '0.3']] });
    await synced(run, 2);
    expect(server.connections).toBe(4);
    for (const s of Object.keys(KEYS)) {
      expect(statuses(events, s).map((x) => x.status)).toEqual(['connected', 'book_synced', 'disconnected', 'connected', 'book_synced']);
    }
    server.update('linear/BTCUSDT', { bids: [['29999.95', '2']] });
    server.update('spot/BTCUSDT', { asks: [['30002.5', '1']] });
    await wait(() => {
      expect(rebuildFromEvents(events, 'BTC-USDT-PERP')).toEqual(serverBook(server, 'BTC-USDT-PERP'));
      expect(rebuildFromEvents(events, 'BTC-USDT')).toEqual(serverBook(server, 'BTC-USDT'));
    });
    for (const s of Object.keys(KEYS)) expectConsistent(run, s);
    // The derived spot quote follows the rebuilt book.
    expect(quotes(events, 'BTC-USDT').at(-1)).toMatchObject({ bidPx: 30001.6, bidQty: 0.3, askPx: 30002, derived: true });
    expect(run.resyncs).toEqual([]);
    expect(run.ingestor.counters.malformed).toBe(0);
  });

  it('on an update id gap resyncs that one symbol (unsubscribe + subscribe of its orderbook topic) and rebuilds it', async () => {
    const run = await start();
    await synced(run);
    const { server, events } = run;
    const initial = server.requests().length;
    server.update('linear/BTCUSDT', { bids: [['30000.10', '1.6']] }, { drop: true });
    server.update('linear/BTCUSDT', { asks: [['30000.30', '0']] });
    await wait(() => expect(countStatus(events, 'BTC-USDT-PERP', 'book_synced')).toBe(2));

    const reset = statuses(events, 'BTC-USDT-PERP').find((s) => s.status === 'book_reset')!;
    expect(reset.reason).toBe('update id gap: expected u=1001, got u=1002');
    expect(run.resyncs).toEqual([['linear/BTCUSDT', reset.reason]]);
    expect(server.requests().slice(initial).map((r) => [r.category, r.op, r.args])).toEqual([
      ['linear', 'unsubscribe', ['orderbook.50.BTCUSDT']],
      ['linear', 'subscribe', ['orderbook.50.BTCUSDT']],
    ]);
    for (const s of ['ETH-USDT-PERP', 'BTC-USDT']) {
      expect(countStatus(events, s, 'book_reset')).toBe(0);
      expect(countStatus(events, s, 'book_synced')).toBe(1);
    }
    expect(books(events, 'BTC-USDT-PERP').map((b) => [b.snapshot, b.seq])).toEqual([
      [true, 1000],
      [true, 1002],
    ]);
    expectConsistent(run, 'BTC-USDT-PERP');
    expect(run.normalizer.bookReport()).toEqual({ 'BTC-USDT-PERP': { resyncs: 1 }, 'ETH-USDT-PERP': { resyncs: 0 }, 'BTC-USDT': { resyncs: 0 } });
    server.update('linear/BTCUSDT', { bids: [['29999.80', '1']] });
    await wait(() => expect(rebuildFromEvents(events, 'BTC-USDT-PERP')).toEqual(serverBook(server, 'BTC-USDT-PERP')));
    expect(run.ingestor.counters.ignored).toMatchObject({ 'subscribe-ack': 3, 'unsubscribe-ack': 1 });
  });

  it('takes a u=1 snapshot (Bybit service restart) as a fresh book without a resync', async () => {
    const run = await start();
    await synced(run);
    const { server, events } = run;
    server.update('spot/BTCUSDT', { bids: [['30001', '1']] });
    server.restart('spot/BTCUSDT', { bids: [['30001.5', '0'], ['30001.4', '0.7']] });
    server.update('spot/BTCUSDT', { asks: [['30001.9', '0.05']] });
    await wait(() => expect(books(events, 'BTC-USDT').map((b) => [b.snapshot, b.seq])).toEqual([
      [true, 2000],
      [false, 2001],
      [true, 1],
      [false, 2],
    ]));
    expectConsistent(run, 'BTC-USDT');
    expect(countStatus(events, 'BTC-USDT', 'book_reset')).toBe(0);
    expect(countStatus(events, 'BTC-USDT', 'book_synced')).toBe(1); // it never stopped being synced
    expect(run.resyncs).toEqual([]);
    expect(quotes(events, 'BTC-USDT').at(-1)).toMatchObject({ bidPx: 30001.4, bidQty: 0.7, askPx: 30001.9, askQty: 0.05, seq: 2, derived: true });
  });

  it('sends broken frames to vigil.dlq with the reason and raw text, and the feed goes on', async () => {
    const run = await start();
    await synced(run);
    const { server, events } = run;
    const badTrade = '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1700000000000,"data":[{"T":1700000000000,"s":"BTCUSDT","S":"Buy","v":"1","p":"-5","i":"x1","BT":false}]}';
    const failedSub = '{"success":false,"ret_msg":"error:handler not found,topic:orderbook.50.XYZUSDT","conn_id":"c1","req_id":"","op":"subscribe"}';
    server.broadcast('linear', badTrade);
    server.broadcast('linear', failedSub);
    server.broadcast('spot', '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[["1","2"]],"a":[],"u":"x"}}');
    server.trade('linear/BTCUSDT', 'ok-1', '30000.2', '0.5', 'Sell');
    await wait(() => expect(events.filter((e) => e.kind === 'trade')).toHaveLength(1));
    await wait(() => expect(run.dlq).toHaveLength(3));
    expect(run.dlq.map((d) => [d.source, d.reason, d.raw]).sort()).toEqual(
      [
        ['bybit', 'Bybit subscribe failed: error:handler not found,topic:orderbook.50.XYZUSDT', failedSub],
        ['bybit', 'publicTrade: p (price) must be a positive number, got "-5"', badTrade],
        ['bybit', 'orderbook: u (update id) must be a non-negative integer, got "x"', expect.stringContaining('"u":"x"')],
      ].sort(),
    );
    expect(run.ingestor.counters.malformed).toBe(3);
    expect(events.find((e) => e.kind === 'trade')).toMatchObject({ symbol: 'BTC-USDT-PERP', tradeId: 'ok-1', side: 'sell' });
    // The spot book was not touched by the broken delta and keeps syncing.
    server.update('spot/BTCUSDT', { bids: [['30000.5', '1']] });
    await wait(() => expect(rebuildFromEvents(events, 'BTC-USDT')).toEqual(serverBook(server, 'BTC-USDT')));
    expectConsistent(run, 'BTC-USDT');
    expect(run.resyncs).toEqual([]);
  });
});
