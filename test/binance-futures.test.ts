import { afterEach, describe, expect, it, vi } from 'vitest';
import { eventSchema, type CanonicalEvent, type FeedStatus } from '../src/core/events.ts';
import { ERR } from '../src/core/errors.ts';
import type { BinanceNormalizer } from '../src/feeds/binance.ts';
import {
  binanceFuturesAdapter,
  binanceFuturesProtocol,
  binanceFuturesSymbol,
  binanceFuturesWireSymbol,
} from '../src/feeds/binance-futures.ts';
import { getAdapter } from '../src/feeds/registry.ts';
import { MalformedFrameError, STATUS_CHANNEL, type RawFrame } from '../src/feeds/types.ts';
import { BinanceTestServer, startLiveClient, type ClientScript, type LiveClient } from './helpers/binance-server.ts';
import { rebuildFromEvents } from './helpers/live-harness.ts';

function frame(data: unknown, extra: Partial<RawFrame> = {}): RawFrame {
  return { recvTs: 1_700_000_000_500.25, source: 'binance-futures', data: JSON.stringify(data), ...extra };
}

type L = [string, string][];
const depth = (U: number, u: number, pu: number, b: L = [], a: L = [], s = 'BTCUSDT') =>
  frame({ stream: `${s.toLowerCase()}@depth@100ms`, data: { e: 'depthUpdate', E: 2_000 + u, T: 1_999 + u, s, U, u, pu, b, a } });
const snap = (lastUpdateId: number, bids: L, asks: L, s = 'BTCUSDT') => frame({ lastUpdateId, E: 1, T: 1, bids, asks }, { channel: `rest:depth:${s}` });

function setup() {
  const resyncs: [string, string][] = [];
  const n = binanceFuturesAdapter.createNormalizer({ requestResync: (s, r) => resyncs.push([s, r]) }) as BinanceNormalizer;
  const run = (f: RawFrame): CanonicalEvent[] => {
    const out: CanonicalEvent[] = [];
    n.normalize(f, out);
    return out;
  };
  return { n, run, resyncs };
}
const kinds = (evs: CanonicalEvent[]) => evs.map((e) => (e.kind === 'book' ? `book${e.snapshot ? ':snap' : ''}:${e.seq}` : e.kind === 'status' ? `status:${e.status}` : e.kind));

describe('binance-futures symbols and protocol', () => {
  it.each([
    ['BTCUSDT', 'BTC-USDT-PERP'],
    ['ethusdt', 'ETH-USDT-PERP'],
    ['1000PEPEUSDT', '1000PEPE-USDT-PERP'],
    ['BTCUSDC', 'BTC-USDC-PERP'],
    ['BTCUSDT_250926', 'BTC-USDT-250926'],
  ])('%s → %s', (raw, canonical) => {
    expect(binanceFuturesSymbol(raw)).toBe(canonical);
    expect(binanceFuturesSymbol(raw)).toBe(canonical);
  });

  it('rejects symbols without a known quote', () => {
    expect(() => binanceFuturesSymbol('FOOBAR')).toThrow(MalformedFrameError);
    expect(() => binanceFuturesSymbol('')).toThrow(MalformedFrameError);
  });

  it('turns user input into wire symbols and builds the stream URL', () => {
    expect(['BTC-USDT-PERP', 'btcusdt', 'ETH/USDT', 'BTC-USDT-250926'].map(binanceFuturesWireSymbol)).toEqual(['BTCUSDT', 'BTCUSDT', 'ETHUSDT', 'BTCUSDT_250926']);
    const p = binanceFuturesProtocol;
    expect(p.venue).toBe('binance-futures');
    expect(p.defaultWsUrl).toBe('wss://fstream.binance.com');
    expect(p.defaultRestUrl).toBe('https://fapi.binance.com');
    expect(p.nativeSymbols(['BTC-USDT-PERP', 'ethusdt'])).toEqual(['BTCUSDT', 'ETHUSDT']);
    expect(p.url('wss://fstream.binance.com', ['BTCUSDT', 'BTCUSDT_250926'])).toBe(
      'wss://fstream.binance.com/stream?streams=btcusdt@aggTrade/btcusdt@bookTicker/btcusdt@depth@100ms/btcusdt_250926@aggTrade/btcusdt_250926@bookTicker/btcusdt_250926@depth@100ms',
    );
    expect(p.subscribeMessages(['BTCUSDT'])).toEqual([]);
    expect(p.maxConnectionMs).toBeLessThan(24 * 3_600_000);
    expect(p.maxConnectionMs).toBeGreaterThan(23 * 3_600_000);
    expect(() => p.nativeSymbols(['NOTAPAIR'])).toThrow(expect.objectContaining({ code: ERR.FEED, statusCode: 400 }));
    expect(getAdapter('binance-futures')).toBe(binanceFuturesAdapter);
  });
});

describe('binance-futures normalizer', () => {
  it('maps aggTrade, bookTicker (ts = E) and labels markPrice', () => {
    const { run, n } = setup();
    const t = run(frame({ stream: 'btcusdt@aggTrade', data: { e: 'aggTrade', E: 1_700_000_000_100, a: 5, s: 'BTCUSDT', p: '65000.10', q: '0.004', f: 10, l: 12, T: 1_700_000_000_099, m: true } }));
    expect(t).toEqual([
      { kind: 'trade', venue: 'binance-futures', symbol: 'BTC-USDT-PERP', ts: 1_700_000_000_099, recvTs: 1_700_000_000_500.25, price: 65000.1, qty: 0.004, side: 'sell', tradeId: '5', firstTradeId: '10', lastTradeId: '12' },
    ]);
    const q = run(frame({ stream: 'btcusdt@bookTicker', data: { e: 'bookTicker', u: 400, s: 'BTCUSDT', b: '65000.1', B: '3', a: '65000.2', A: '4', T: 1_700_000_000_200, E: 1_700_000_000_201 } }));
    expect(q).toEqual([
      { kind: 'quote', venue: 'binance-futures', symbol: 'BTC-USDT-PERP', ts: 1_700_000_000_201, recvTs: 1_700_000_000_500.25, bidPx: 65000.1, bidQty: 3, askPx: 65000.2, askQty: 4, seq: 400 },
    ]);
    for (const e of [...t, ...q]) expect(eventSchema.parse(e)).toEqual(e);
    const mark = { stream: 'btcusdt@markPrice', data: { e: 'markPriceUpdate', E: 1, s: 'BTCUSDT', p: '65000', i: '65001', P: '65002', r: '0.0001', T: 2 } };
    expect(n.normalize(frame(mark), [])).toBe('markPriceUpdate');
    expect(n.normalize(frame({ result: null, id: 1 }), [])).toBe('subscription-ack');
  });

  it('sync: drops u < lastUpdateId, the first applied diff has U <= lastUpdateId <= u, then pu == previous u', () => {
    const { run, n } = setup();
    expect(run(depth(1, 4, 0))).toEqual([]);
    expect(run(depth(5, 8, 4, [['100', '2']]))).toEqual([]);
    expect(run(depth(9, 10, 8, [], [['102', '1']]))).toEqual([]);
    // L = 8: 1..4 dropped (u < 8); 5..8 has u == L, so unlike spot it is applied.
    const out = run(snap(8, [['100', '1'], ['99', '1']], [['101', '1']]));
    expect(kinds(out)).toEqual(['book:snap:8', 'status:book_synced', 'book:8', 'book:10']);
    expect(out[2]).toMatchObject({ firstSeq: 5, seq: 8, prevSeq: 4, symbol: 'BTC-USDT-PERP', ts: 2_008 });
    const b = n.orderBook('BTC-USDT-PERP')!.book;
    expect(b.bids.levels.map((l) => [l.price, l.qty])).toEqual([[100, 2], [99, 1]]);
    expect(b.asks.levels.map((l) => [l.price, l.qty])).toEqual([[101, 1], [102, 1]]);
    // U is not checked once synced — futures diffs overlap; pu is.
    expect(kinds(run(depth(10, 12, 10)))).toEqual(['book:12']);
  });

  it('a snapshot that no buffered diff bridges (U > lastUpdateId) is dropped and another requested', () => {
    const { run, resyncs } = setup();
    run(depth(9, 12, 8));
    expect(run(snap(8, [['100', '1']], [['101', '1']]))).toEqual([]);
    expect(resyncs).toEqual([['BTCUSDT', 'snapshot lastUpdateId=8 is older than the first buffered diff (U=9)']]);
    expect(kinds(run(snap(10, [['100', '1']], [['101', '1']])))).toEqual(['book:snap:10', 'status:book_synced', 'book:12']);
  });

  it('pu != previous u → book_reset and a resync of that symbol, counted', () => {
    const { run, n, resyncs } = setup();
    run(snap(8, [['100', '1']], [['101', '1']]));
    run(depth(7, 9, 6));
    run(snap(50, [['10', '1']], [['11', '1']], 'ETHUSDT'));
    run(depth(50, 51, 49, [], [], 'ETHUSDT'));
    const out = run(depth(12, 14, 11));
    expect(kinds(out)).toEqual(['status:book_reset']);
    const reason = 'sequence gap: expected pu=9, got pu=11 (U=12, u=14)';
    expect((out[0] as FeedStatus).reason).toBe(reason);
    expect(resyncs).toEqual([['BTCUSDT', reason]]);
    expect(kinds(run(depth(52, 52, 51, [], [], 'ETHUSDT')))).toEqual(['book:52']);
    expect(kinds(run(snap(13, [['100', '1']], [['101', '1']])))).toEqual(['book:snap:13', 'status:book_synced', 'book:14']);
    expect(n.bookReport()).toMatchObject({ 'BTC-USDT-PERP': { resyncs: 1 }, 'ETH-USDT-PERP': { resyncs: 0 } });
  });

  it('rejects a futures depthUpdate without pu, and maps status frames to -PERP symbols', () => {
    const { run } = setup();
    expect(() => run(frame({ e: 'depthUpdate', E: 1, s: 'BTCUSDT', U: 1, u: 2, b: [], a: [] }))).toThrow('depthUpdate: previous update id (pu) missing');
    expect(() => run(frame({ e: 'depthUpdate', E: 1, s: 'BTCUSDT', U: 3, u: 2, pu: 1, b: [], a: [] }))).toThrow('depthUpdate: first update id U=3 > final update id u=2');
    const st = run(frame({ status: 'connected', reason: 'initial connect', symbols: ['BTCUSDT'] }, { channel: STATUS_CHANNEL }));
    expect(st).toMatchObject([{ kind: 'status', venue: 'binance-futures', symbol: 'BTC-USDT-PERP', status: 'connected' }]);
  });
});

describe('binance-futures live feed against a simulated futures market', () => {
  const servers: BinanceTestServer[] = [];
  const clients: LiveClient[] = [];
  afterEach(async () => {
    while (clients.length > 0) await clients.pop()!.stop();
    while (servers.length > 0) await servers.pop()!.close();
  });

  async function session(script: ClientScript) {
    const server = await BinanceTestServer.start({ symbols: ['BTCUSDT', 'ETHUSDT'], market: 'futures', script: () => script, seed: 7 });
    servers.push(server);
    const client = await startLiveClient(server, binanceFuturesAdapter, binanceFuturesProtocol, ['BTC-USDT-PERP', 'ethusdt']);
    clients.push(client);
    await client.settled();
    return { server, client };
  }

  function expectBooks(server: BinanceTestServer, client: LiveClient): void {
    const sim = server.current('c1')!.sim;
    for (const [native, canon] of [['BTCUSDT', 'BTC-USDT-PERP'], ['ETHUSDT', 'ETH-USDT-PERP']] as const) {
      const held = client.normalizer.orderBook(canon)!;
      expect(held.synced).toBe(true);
      expect({ bids: held.book.bids.levels.map((l) => [l.price, l.qty]), asks: held.book.asks.levels.map((l) => [l.price, l.qty]) }).toEqual(sim.book(native));
      expect(rebuildFromEvents(client.events, canon)).toEqual(sim.book(native));
    }
  }

  it('normal flow: /fapi/v1/depth snapshots, books equal to the server\'s, every bookTicker matched', async () => {
    const { server, client } = await session({ ticks: 300 });
    expect(server.current('c1')!.path).toBe('/c1/stream?streams=btcusdt@aggTrade/btcusdt@bookTicker/btcusdt@depth@100ms/ethusdt@aggTrade/ethusdt@bookTicker/ethusdt@depth@100ms');
    expect(server.requestsOf('c1').map((r) => [r.path, r.symbol]).sort()).toEqual([
      ['/fapi/v1/depth', 'BTCUSDT'],
      ['/fapi/v1/depth', 'ETHUSDT'],
    ]);
    expectBooks(server, client);
    for (const r of Object.values(client.normalizer.bookReport())) {
      expect(r.compared).toBeGreaterThan(50);
      expect(r.matched).toBe(r.compared);
    }
    expect(client.events.filter((e) => e.kind === 'trade').length).toBe(server.current('c1')!.sent.filter((t) => t.includes('@aggTrade')).length);
    expect(client.ingestor.counters.malformed).toBe(0);
  });

  it('a dropped connection recovers with a consistent book (new /fapi/v1/depth snapshot per symbol)', async () => {
    const { server, client } = await session({ ticks: 300, kill: [{ conn: 0, step: 120 }] });
    expect(server.connectionsOf('c1')).toHaveLength(2);
    expect(server.requestsOf('c1').map((r) => r.symbol).sort()).toEqual(['BTCUSDT', 'BTCUSDT', 'ETHUSDT', 'ETHUSDT']);
    for (const r of Object.values(client.normalizer.bookReport())) {
      expect(r.resyncs).toBe(0); // a reconnect is not a sequence gap
      expect(r.matched).toBe(r.compared);
    }
    const statuses = client.events.filter((e) => e.kind === 'status' && e.symbol === 'BTC-USDT-PERP').map((e) => (e.kind === 'status' ? e.status : ''));
    expect(statuses).toEqual(['connected', 'book_synced', 'disconnected', 'connected', 'book_synced']);
    expectBooks(server, client);
  });

  it('a malformed frame becomes a dead letter with its reason and raw text, and the feed goes on', async () => {
    const bad = '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":7,"p":"1","q":"NaN","f":1,"l":1,"T":1,"m":true}}';
    const { server, client } = await session({ ticks: 200, raw: [{ conn: 0, step: 80, text: bad }] });
    await vi.waitFor(() => expect(client.dlq).toHaveLength(1));
    expect(client.dlq[0]).toMatchObject({ source: 'binance-futures', raw: bad });
    expect(client.dlq[0]!.reason).toMatch(/qty|\(q\)/);
    expect(client.ingestor.counters.malformed).toBe(1);
    expectBooks(server, client);
  });

  it('a pu gap resyncs that symbol only', async () => {
    const { server, client } = await session({ ticks: 300, skip: [{ conn: 0, step: 140, symbol: 'BTCUSDT' }] });
    const requests = server.requestsOf('c1').map((r) => r.symbol);
    expect(requests.slice(2)).toEqual(['BTCUSDT']);
    expect(client.resyncs).toEqual([['BTCUSDT', expect.stringMatching(/^sequence gap: expected pu=\d+, got pu=\d+/)]]);
    expect(client.normalizer.bookReport()).toMatchObject({ 'BTC-USDT-PERP': { resyncs: 1 }, 'ETH-USDT-PERP': { resyncs: 0 } });
    expectBooks(server, client);
  });
});
