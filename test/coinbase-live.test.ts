// The Coinbase live feeds (connectVenue + coinbaseProtocol / coinbaseAdvancedProtocol) against a local
// Coinbase server, frames through an Ingestor on a MemoryTransport exactly as `vigil run` does: the real
// 2021 capture replayed by the server, subscription acks, heartbeats, killed connections, a lost
// full-channel message, a lost Advanced Trade message and broken frames.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Quote, Trade } from '../src/core/events.ts';
import {
  coinbaseAdapter,
  coinbaseAdvancedAdapter,
  connectCoinbase,
  connectCoinbaseAdvanced,
  type CoinbaseExchangeOptions,
  type CoinbaseNormalizer,
} from '../src/feeds/coinbase.ts';
import { CoinbaseServer, type Lvl } from './helpers/coinbase-server.ts';
import { bookLevels, books, countStatus, rebuildFromEvents, startLiveRun, statuses, stopLiveRuns, type Levels, type LiveRun } from './helpers/live-harness.ts';

const CAPTURE = gunzipSync(readFileSync(new URL('../../shared/data/exchange_raw/cryptofeed/COINBASE.ws.28.0.gz', import.meta.url)))
  .toString('utf8')
  .split('\n')
  .filter((l) => /^\d/.test(l))
  .map((l) => l.slice(l.indexOf(': ') + 2));
interface CapFrame {
  type: string;
  product_id: string;
  bids?: Lvl[];
  asks?: Lvl[];
  changes?: ['buy' | 'sell', string, string][];
  time?: string;
}
const TUNING = { backoffBaseMs: 20, backoffCapMs: 100 };
const WAIT = { timeout: 8_000, interval: 10 };

type Dialect = { kind: 'exchange'; exchange?: CoinbaseExchangeOptions } | { kind: 'advanced' };

interface Run extends LiveRun<CoinbaseNormalizer> {
  server: CoinbaseServer;
}

afterEach(stopLiveRuns);

async function start(symbols: string[], dialect: Dialect, prepare: (server: CoinbaseServer) => void): Promise<Run> {
  const server = await CoinbaseServer.start();
  prepare(server);
  const adapter = dialect.kind === 'exchange' ? coinbaseAdapter : coinbaseAdvancedAdapter;
  const run = await startLiveRun({
    createNormalizer: (context) => adapter.createNormalizer(context) as CoinbaseNormalizer,
    connect: (signal) => {
      const options = { symbols, wsUrl: server.wsUrl, restUrl: server.restUrl, signal };
      return dialect.kind === 'exchange' ? connectCoinbase(options, dialect.exchange, TUNING) : connectCoinbaseAdvanced(options, TUNING);
    },
    onStop: () => server.close(),
  });
  return Object.assign(run, { server });
}

/** The normalizer's own book. */
function own(run: Run, symbol: string): (Levels & { synced: boolean }) | undefined {
  const b = run.normalizer.orderBook(symbol);
  return b === undefined ? undefined : { synced: b.synced, ...bookLevels(b) };
}

function expectConsistent(run: Run, symbol: string, truth: Levels): void {
  expect(rebuildFromEvents(run.events, symbol)).toEqual(truth);
  expect(own(run, symbol)).toEqual({ synced: true, ...truth });
}

// ---------------------------------------------------------------- Exchange feed

/** The capture's frames of two products: the server loads their snapshots and replays the rest. */
const LIVE_PRODUCTS = ['SKL-USD', 'SKL-BTC'];
const CAP = CAPTURE.map((text) => ({ text, f: JSON.parse(text) as CapFrame })).filter((x) => LIVE_PRODUCTS.includes(x.f.product_id));

function loadCaptureBooks(server: CoinbaseServer): void {
  for (const { f } of CAP) if (f.type === 'snapshot') server.setBook(f.product_id, f.bids!, f.asks!);
}

async function subscribed(server: CoinbaseServer, n: number): Promise<void> {
  await vi.waitFor(() => expect(server.subscribes('subscribe').length).toBeGreaterThanOrEqual(n), WAIT);
}

describe('coinbase Exchange live feed against a local server', () => {
  it('subscribes heartbeat/ticker/matches/level2_batch, rebuilds both books from the real capture and normalizes its trades and tickers', async () => {
    const run = await start(['skl-usd', 'SKL-BTC'], { kind: 'exchange' }, loadCaptureBooks);
    const { server, events } = run;
    await subscribed(server, 1);
    expect(server.received.map((r) => r.msg)).toEqual([
      { type: 'subscribe', product_ids: ['SKL-USD', 'SKL-BTC'], channels: ['heartbeat', 'ticker', 'matches', 'level2_batch'] },
    ]);
    await vi.waitFor(() => expect(countStatus(events, 'SKL-USD', 'book_synced') + countStatus(events, 'SKL-BTC', 'book_synced')).toBe(2), WAIT);
    // The rest of the capture, in its order: book changes through the server's book, trades and tickers verbatim.
    let sent = { l2update: 0, match: 0, ticker: 0 };
    for (const { text, f } of CAP) {
      if (f.type === 'l2update') server.l2update(f.product_id, f.changes!, f.time);
      else if (f.type === 'match' || f.type === 'last_match' || f.type === 'ticker') server.sendRaw(text);
      else continue;
      const k = f.type === 'last_match' ? 'match' : (f.type as keyof typeof sent);
      sent = { ...sent, [k]: sent[k] + 1 };
    }
    expect(sent).toEqual({ l2update: 4_131, match: 62, ticker: 62 });
    await vi.waitFor(() => expect(events.filter((e) => e.kind === 'quote')).toHaveLength(62), WAIT);
    await vi.waitFor(() => expect(books(events, 'SKL-USD').length + books(events, 'SKL-BTC').length).toBe(2 + 4_131), WAIT);

    expect(statuses(events).slice(0, 2).map((s) => [s.symbol, s.status, s.reason])).toEqual([
      ['SKL-USD', 'connected', 'initial connect'],
      ['SKL-BTC', 'connected', 'initial connect'],
    ]);
    for (const p of LIVE_PRODUCTS) expectConsistent(run, p, server.levelBook(p));
    const trades = events.filter((e): e is Trade => e.kind === 'trade');
    expect(trades).toHaveLength(62);
    // The capture's first SKL-USD match: maker side sell → the taker bought.
    expect(trades.find((t) => t.tradeId === '1568268')).toMatchObject({ symbol: 'SKL-USD', side: 'buy', price: 0.791, qty: 450 });
    // Live gives the figures the replay of the same frames gives (test/coinbase.test.ts): every ticker
    // newer than the book agrees with the rebuilt top.
    expect(run.normalizer.bookReport()).toEqual({ 'SKL-USD': { resyncs: 0, check: 'bbo', compared: 52, matched: 52 }, 'SKL-BTC': { resyncs: 0, check: 'bbo', compared: 8, matched: 8 } });
    const q = events.find((e): e is Quote => e.kind === 'quote' && e.symbol === 'SKL-BTC')!;
    expect(q).toMatchObject({ venue: 'coinbase', bidPx: 0.00001302, askPx: 0.00001305 });
    await vi.waitFor(() => expect(run.ingestor.counters.ignored.heartbeat ?? 0).toBeGreaterThan(0), WAIT);
    expect(run.ingestor.counters.ignored.subscriptions).toBe(1);
    expect(run.ingestor.counters.malformed).toBe(0);
    expect(run.dlq).toEqual([]);
    expect(run.resyncs).toEqual([]);
  });

  it('after a killed connection reconnects, resubscribes and rebuilds a book equal to the server book', async () => {
    const run = await start(['BTC-USD', 'ETH-USD'], { kind: 'exchange', exchange: { book: 'level2' } }, (s) => {
      s.setBook('BTC-USD', [['100.00', '1.5'], ['99.50', '2']], [['100.50', '1'], ['101.00', '4']]);
      s.setBook('ETH-USD', [['10.00', '3']], [['10.10', '5']]);
    });
    const { server, events } = run;
    await vi.waitFor(() => expect(countStatus(events, 'BTC-USD', 'book_synced') + countStatus(events, 'ETH-USD', 'book_synced')).toBe(2), WAIT);
    expect(server.received[0]!.msg).toEqual({ type: 'subscribe', product_ids: ['BTC-USD', 'ETH-USD'], channels: ['heartbeat', 'ticker', 'matches', 'level2'] });
    server.l2update('BTC-USD', [['buy', '100.00', '1.25'], ['sell', '100.25', '0.5']]);
    server.match('BTC-USD', 'sell', '100.25', '0.1');
    await vi.waitFor(() => expect(events.filter((e) => e.kind === 'trade')).toHaveLength(1), WAIT);
    expectConsistent(run, 'BTC-USD', server.levelBook('BTC-USD'));

    server.dropAll();
    // The market moves while the client is away: nobody receives these.
    server.l2update('BTC-USD', [['buy', '100.00', '0'], ['buy', '99.75', '3'], ['sell', '100.25', '0']]);
    server.l2update('ETH-USD', [['sell', '10.05', '1']]);
    await vi.waitFor(() => expect(countStatus(events, 'BTC-USD', 'book_synced') + countStatus(events, 'ETH-USD', 'book_synced')).toBe(4), WAIT);
    expect(server.connections).toBe(2);
    expect(statuses(events, 'BTC-USD').map((s) => s.status)).toEqual(['connected', 'book_synced', 'disconnected', 'connected', 'book_synced']);
    expect(server.subscribes('subscribe').map((r) => r.conn)).toEqual([1, 2]);
    // On subscribing again the venue repeats the last trade as last_match: not a second trade.
    server.l2update('ETH-USD', [['buy', '10.01', '2']]);
    await vi.waitFor(() => expect(rebuildFromEvents(events, 'ETH-USD')).toEqual(server.levelBook('ETH-USD')), WAIT);
    expect(events.filter((e) => e.kind === 'trade')).toHaveLength(1);
    expectConsistent(run, 'BTC-USD', server.levelBook('BTC-USD'));
    expectConsistent(run, 'ETH-USD', server.levelBook('ETH-USD'));
    expect(run.resyncs).toEqual([]);
    expect(run.ingestor.counters.malformed).toBe(0);
  });

  it('full channel: syncs each L3 book from the REST level-3 book; a lost message → book_reset and a REST resync of that product only', async () => {
    const run = await start(['BTC-USD', 'ETH-USD'], { kind: 'exchange', exchange: { book: 'full' } }, (s) => {
      s.setOrders('BTC-USD', 5_000, [
        ['b1', { side: 'buy', price: '100.00', size: '1.10000000' }],
        ['b2', { side: 'buy', price: '100.00', size: '0.20000000' }],
        ['a1', { side: 'sell', price: '100.50', size: '0.70000000' }],
      ]);
      s.setOrders('ETH-USD', 9_000, [
        ['e1', { side: 'buy', price: '10.00', size: '3' }],
        ['e2', { side: 'sell', price: '10.10', size: '5' }],
      ]);
    });
    const { server, events } = run;
    await subscribed(server, 1);
    expect(server.received[0]!.msg).toEqual({ type: 'subscribe', product_ids: ['BTC-USD', 'ETH-USD'], channels: ['heartbeat', 'full'] });
    await vi.waitFor(() => expect(run.ingestor.counters.ignored.subscriptions).toBe(1), WAIT);
    // The first full-channel message of each product makes the client fetch its L3 book.
    server.full('BTC-USD', 'received', { order_id: 'b3', order_type: 'limit', side: 'buy', price: '99.90', size: '2' });
    server.full('ETH-USD', 'open', { order_id: 'e3', side: 'buy', price: '9.90', remaining_size: '1' });
    await vi.waitFor(() => expect(countStatus(events, 'BTC-USD', 'book_synced') + countStatus(events, 'ETH-USD', 'book_synced')).toBe(2), WAIT);
    expect([...server.restRequests].sort()).toEqual(['/products/BTC-USD/book?level=3', '/products/ETH-USD/book?level=3']);
    server.full('BTC-USD', 'open', { order_id: 'b3', side: 'buy', price: '99.90', remaining_size: '2' });
    server.full('BTC-USD', 'match', { maker_order_id: 'a1', taker_order_id: 't1', side: 'sell', size: '0.25', price: '100.50' });
    server.full('BTC-USD', 'done', { order_id: 'b2', reason: 'canceled', side: 'buy', price: '100.00', remaining_size: '0.2' });
    server.full('ETH-USD', 'change', { order_id: 'e2', side: 'sell', price: '10.10', old_size: '5', new_size: '4.5' });
    await vi.waitFor(() => expect(rebuildFromEvents(events, 'BTC-USD')).toEqual(server.l3LevelBook('BTC-USD')), WAIT);
    await vi.waitFor(() => expect(rebuildFromEvents(events, 'ETH-USD')).toEqual(server.l3LevelBook('ETH-USD')), WAIT);
    expect(events.filter((e): e is Trade => e.kind === 'trade').map((t) => [t.symbol, t.side, t.price, t.qty])).toEqual([['BTC-USD', 'buy', 100.5, 0.25]]);
    // No ticker on the full channel: quotes are derived from the L3 book.
    const lastQuote = (): Quote => events.filter((e): e is Quote => e.kind === 'quote' && e.symbol === 'BTC-USD').at(-1)!;
    expect(lastQuote()).toMatchObject({ derived: true, bidPx: 100, bidQty: 1.1, askPx: 100.5, askQty: 0.45, seq: server.sequence('BTC-USD') });

    // One BTC-USD message is lost: the next one reveals the gap.
    const lost = server.full('BTC-USD', 'open', { order_id: 'b4', side: 'buy', price: '100.25', remaining_size: '0.5' }, true);
    server.full('BTC-USD', 'open', { order_id: 'a2', side: 'sell', price: '100.75', remaining_size: '3' });
    server.full('ETH-USD', 'done', { order_id: 'e1', reason: 'filled', side: 'buy', price: '10.00', remaining_size: '0' });
    await vi.waitFor(() => expect(countStatus(events, 'BTC-USD', 'book_synced')).toBe(2), WAIT);
    const reason = `sequence gap: expected ${lost}, got ${lost + 1}`;
    expect(statuses(events, 'BTC-USD').filter((s) => s.status === 'book_reset').map((s) => s.reason)).toEqual([reason]);
    expect(run.resyncs).toEqual([['BTC-USD', reason]]);
    // The resync is a REST snapshot of BTC-USD alone; nothing was resubscribed.
    expect(server.restRequests).toHaveLength(3);
    expect(server.restRequests[2]).toBe('/products/BTC-USD/book?level=3');
    expect(server.subscribes('unsubscribe')).toEqual([]);
    expect(server.subscribes('subscribe')).toHaveLength(1);
    expect(countStatus(events, 'ETH-USD', 'book_reset')).toBe(0);
    await vi.waitFor(() => expect(rebuildFromEvents(events, 'ETH-USD')).toEqual(server.l3LevelBook('ETH-USD')), WAIT);
    // The rebuilt BTC-USD book holds the lost order and goes on with live messages.
    server.full('BTC-USD', 'change', { order_id: 'a2', side: 'sell', price: '100.75', old_size: '3', new_size: '2.5' });
    await vi.waitFor(() => expect(rebuildFromEvents(events, 'BTC-USD')).toEqual(server.l3LevelBook('BTC-USD')), WAIT);
    expect(server.l3LevelBook('BTC-USD').bids[0]).toEqual([100.25, 0.5]);
    expectConsistent(run, 'BTC-USD', server.l3LevelBook('BTC-USD'));
    expectConsistent(run, 'ETH-USD', server.l3LevelBook('ETH-USD'));
    expect(lastQuote()).toMatchObject({ derived: true, bidPx: 100.25, bidQty: 0.5, askPx: 100.5, askQty: 0.45 });
    expect(run.normalizer.bookReport()).toEqual({ 'BTC-USD': { resyncs: 1 }, 'ETH-USD': { resyncs: 0 } });
    expect(run.ingestor.counters.malformed).toBe(0);
  });

  it('sends error frames and broken frames to vigil.dlq with the reason and raw text, and the feed goes on', async () => {
    const run = await start(['BTC-USD'], { kind: 'exchange' }, (s) => s.setBook('BTC-USD', [['100', '1']], [['101', '1']]));
    const { server, events } = run;
    await vi.waitFor(() => expect(countStatus(events, 'BTC-USD', 'book_synced')).toBe(1), WAIT);
    const authError = '{"type":"error","message":"Failed to subscribe","reason":"level2, level3, and full channels now require authentication"}';
    const badUpdate = '{"type":"l2update","product_id":"BTC-USD","changes":[["buy","abc","1"]],"time":"2024-05-01T12:00:00.000001Z"}';
    server.sendRaw(authError);
    server.sendRaw(badUpdate);
    server.sendRaw('{"type":"match","trade_id":');
    server.l2update('BTC-USD', [['buy', '100.5', '2']]);
    await vi.waitFor(() => expect(run.dlq).toHaveLength(3), WAIT);
    expect(run.dlq.map((d) => [d.source, d.reason, d.raw])).toEqual([
      ['coinbase', 'error frame: Failed to subscribe (level2, level3, and full channels now require authentication)', authError],
      ['coinbase', 'l2update: changes[0] price must be a positive number, got "abc"', badUpdate],
      ['coinbase', expect.stringMatching(/^invalid JSON: /), '{"type":"match","trade_id":'],
    ]);
    expect(run.dlq[0]!.origin).toBe('coinbase:ws#1');
    // The feed went on: the update after the broken frames is in the book.
    await vi.waitFor(() => expect(rebuildFromEvents(events, 'BTC-USD')).toEqual(server.levelBook('BTC-USD')), WAIT);
    expect(rebuildFromEvents(events, 'BTC-USD').bids[0]).toEqual([100.5, 2]);
    expect(run.ingestor.counters.malformed).toBe(3);
    expect(server.connections).toBe(1);
  });
});

// ---------------------------------------------------------------- Advanced Trade

describe('coinbase Advanced Trade live feed against a local server', () => {
  const prepare = (s: CoinbaseServer): void => {
    s.setBook('BTC-USD', [['60000.00', '0.5'], ['59999.50', '1.25']], [['60000.50', '0.75'], ['60001.00', '2']]);
    s.setBook('ETH-USD', [['3000.00', '4']], [['3000.10', '6']]);
  };
  const synced = async (run: Run, times: number): Promise<void> => {
    await vi.waitFor(() => {
      expect(countStatus(run.events, 'BTC-USD', 'book_synced')).toBe(times);
      expect(countStatus(run.events, 'ETH-USD', 'book_synced')).toBe(times);
    }, WAIT);
  };

  it('subscribes one channel per message, normalizes l2_data, market_trades and ticker, and rebuilds the books after a killed connection', async () => {
    const run = await start(['BTC-USD', 'eth-usd'], { kind: 'advanced' }, prepare);
    const { server, events } = run;
    await synced(run, 1);
    await subscribed(server, 4);
    expect(server.received.map((r) => r.msg)).toEqual(
      ['heartbeats', 'level2', 'market_trades', 'ticker'].map((channel) => ({ type: 'subscribe', product_ids: ['BTC-USD', 'ETH-USD'], channel })),
    );
    server.advancedL2('BTC-USD', [['bid', '60000.00', '0'], ['offer', '60000.25', '0.1']]);
    server.advancedTrade('BTC-USD', 'SELL', '60000.00', '0.5');
    server.advancedTicker('BTC-USD');
    await vi.waitFor(() => expect(events.filter((e) => e.kind === 'quote')).toHaveLength(1), WAIT);
    expect(events.filter((e): e is Trade => e.kind === 'trade').map((t) => [t.venue, t.symbol, t.side, t.price, t.qty])).toEqual([['coinbase-advanced', 'BTC-USD', 'sell', 60000, 0.5]]);
    expect(events.find((e) => e.kind === 'quote')).toMatchObject({ symbol: 'BTC-USD', bidPx: 59999.5, bidQty: 1.25, askPx: 60000.25, askQty: 0.1 });
    expectConsistent(run, 'BTC-USD', server.levelBook('BTC-USD'));
    await vi.waitFor(() => expect(run.ingestor.counters.ignored.heartbeat ?? 0).toBeGreaterThan(0), WAIT);

    server.dropAll();
    server.advancedL2('ETH-USD', [['bid', '3000.05', '1']]); // nobody receives it
    server.setBook('BTC-USD', [['59990.00', '9']], [['60010.00', '9']]);
    await synced(run, 2);
    expect(server.connections).toBe(2);
    await vi.waitFor(
      () => expect(server.subscribes('subscribe').filter((r) => r.conn === 2).map((r) => r.msg.channel)).toEqual(['heartbeats', 'level2', 'market_trades', 'ticker']),
      WAIT,
    );
    // sequence_num starts over on the new connection: not a gap.
    server.advancedL2('ETH-USD', [['offer', '3000.10', '0']]);
    await vi.waitFor(() => expect(rebuildFromEvents(events, 'ETH-USD')).toEqual(server.levelBook('ETH-USD')), WAIT);
    expectConsistent(run, 'BTC-USD', server.levelBook('BTC-USD'));
    expectConsistent(run, 'ETH-USD', server.levelBook('ETH-USD'));
    expect(statuses(events, 'ETH-USD').map((s) => s.status)).toEqual(['connected', 'book_synced', 'disconnected', 'connected', 'book_synced']);
    // The market_trades snapshot of the new subscription repeats the last trade: not emitted again.
    expect(events.filter((e) => e.kind === 'trade')).toHaveLength(1);
    expect(run.resyncs).toEqual([]);
    expect(run.ingestor.counters.malformed).toBe(0);
  });

  it('a lost message (sequence_num gap) resubscribes level2 for the books of the connection only, and rebuilds them', async () => {
    const run = await start(['BTC-USD', 'ETH-USD'], { kind: 'advanced' }, prepare);
    const { server, events } = run;
    await synced(run, 1);
    await subscribed(server, 4);
    await vi.waitFor(() => expect(run.ingestor.counters.ignored.subscriptions).toBe(4), WAIT);
    server.advancedL2('BTC-USD', [['bid', '59999.75', '3']], true); // lost on the way
    server.advancedL2('ETH-USD', [['bid', '3000.00', '5']]);
    await synced(run, 2);
    const resets = statuses(events).filter((s) => s.status === 'book_reset');
    expect(resets.map((s) => s.symbol)).toEqual(['BTC-USD', 'ETH-USD']);
    expect(resets[0]!.reason).toMatch(/^sequence_num gap: expected (\d+), got (\d+)$/);
    expect(run.resyncs.map((r) => r[0])).toEqual(['BTC-USD', 'ETH-USD']);
    // Only level2 was resubscribed, one product per request pair; trades, ticker and heartbeats stayed.
    const later = server.received.slice(4).map((r) => [r.msg.type, r.msg.channel, (r.msg.product_ids as string[]).join()]);
    expect(later).toEqual([
      ['unsubscribe', 'level2', 'BTC-USD'],
      ['subscribe', 'level2', 'BTC-USD'],
      ['unsubscribe', 'level2', 'ETH-USD'],
      ['subscribe', 'level2', 'ETH-USD'],
    ]);
    expect(server.connections).toBe(1);
    server.advancedL2('BTC-USD', [['offer', '60000.50', '0']]);
    await vi.waitFor(() => expect(rebuildFromEvents(events, 'BTC-USD')).toEqual(server.levelBook('BTC-USD')), WAIT);
    expectConsistent(run, 'BTC-USD', server.levelBook('BTC-USD'));
    expectConsistent(run, 'ETH-USD', server.levelBook('ETH-USD'));
    expect(rebuildFromEvents(events, 'BTC-USD').bids).toContainEqual([59999.75, 3]); // the lost change came with the new snapshot
    expect(run.normalizer.bookReport()).toEqual({ 'BTC-USD': { resyncs: 1 }, 'ETH-USD': { resyncs: 1 } });
    expect(run.ingestor.counters.malformed).toBe(0);
  });

  it('sends broken frames to vigil.dlq and goes on', async () => {
    const run = await start(['BTC-USD'], { kind: 'advanced' }, prepare);
    const { server, events } = run;
    await vi.waitFor(() => expect(countStatus(events, 'BTC-USD', 'book_synced')).toBe(1), WAIT);
    await vi.waitFor(() => expect(run.ingestor.counters.ignored.subscriptions).toBe(4), WAIT);
    const bad = server.advancedBroadcast('market_trades', [
      { type: 'update', trades: [{ trade_id: '1', product_id: 'BTC-USD', price: '-5', size: '1', side: 'BUY', time: '2024-05-01T12:00:00Z' }] },
    ]);
    server.sendRaw('{"type":"error","message":"failure to subscribe"}');
    server.sendRaw('{"channel":"l2_data","sequence_num":');
    server.advancedL2('BTC-USD', [['bid', '60000.00', '0.8']]);
    await vi.waitFor(() => expect(run.dlq).toHaveLength(3), WAIT);
    expect(run.dlq.map((d) => [d.source, d.reason, d.raw])).toEqual([
      ['coinbase-advanced', 'market_trades trades[0]: price must be a positive number, got "-5"', bad],
      ['coinbase-advanced', 'error frame: failure to subscribe', '{"type":"error","message":"failure to subscribe"}'],
      ['coinbase-advanced', expect.stringMatching(/^invalid JSON: /), '{"channel":"l2_data","sequence_num":'],
    ]);
    // The broken message still counted in sequence_num: no gap, no resync; the next update applies.
    await vi.waitFor(() => expect(rebuildFromEvents(events, 'BTC-USD')).toEqual(server.levelBook('BTC-USD')), WAIT);
    expect(rebuildFromEvents(events, 'BTC-USD').bids[0]).toEqual([60000, 0.8]);
    expect(countStatus(events, 'BTC-USD', 'book_reset')).toBe(0);
    expect(run.resyncs).toEqual([]);
    expect(run.ingestor.counters.malformed).toBe(3);
  });
});
