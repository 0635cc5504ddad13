// Bybit v5 normalizer on the documented example frames (no real Bybit capture exists in shared/) and on
// hand-made frames of every message type; symbols, categories and the protocol's messages.
import { describe, expect, it } from 'vitest';
import { ERR, VigilError } from '../src/core/errors.ts';
import { eventSchema, type Book, type CanonicalEvent, type FeedStatus, type Quote, type Trade } from '../src/core/events.ts';
import {
  BYBIT_WS_URL,
  bybitAdapter,
  bybitCategoryUrl,
  bybitNativeSymbol,
  BybitNormalizer,
  bybitProtocol,
  bybitSymbol,
  connectBybit,
} from '../src/feeds/bybit.ts';
import type { ConnectionContext } from '../src/feeds/connection-types.ts';
import { getAdapter } from '../src/feeds/registry.ts';
import { MalformedFrameError, STATUS_CHANNEL, type RawFrame } from '../src/feeds/types.ts';
import { normalizeFrame, rawFrame, rejectionReason } from './helpers/frames.ts';

const LINEAR = { channel: 'category:linear' };
const SPOT = { channel: 'category:spot' };

// Documented examples (bybit-exchange.github.io/docs/v5/websocket/public/*), level lists shortened.
const DOC_BOOK_SNAPSHOT = {
  topic: 'orderbook.50.BTCUSDT',
  type: 'snapshot',
  ts: 1671179923028,
  data: {
    s: 'BTCUSDT',
    b: [['17440.00', '40.833'], ['17439.50', '0.513'], ['17416.00', '6.156'], ['17415.50', '32.268']],
    a: [['17440.50', '78.815'], ['17441.00', '8.858'], ['17464.50', '4.901'], ['17465.00', '5.744']],
    u: 13079592,
    seq: 22520573250,
  },
};
const DOC_BOOK_DELTA = {
  topic: 'orderbook.50.BTCUSDT',
  type: 'delta',
  ts: 1671179923046,
  data: { s: 'BTCUSDT', b: [], a: [['17440.50', '78.857'], ['17442.00', '1.510']], u: 13079593, seq: 22520573251 },
};
const DOC_TRADE = {
  topic: 'publicTrade.BTCUSDT',
  type: 'snapshot',
  ts: 1672304486868,
  data: [{ T: 1672304486865, s: 'BTCUSDT', S: 'Buy', v: '0.001', p: '16578.50', L: 'PlusTick', i: '20f43950-d8dd-5b31-9112-a178eb6023af', BT: false }],
};
const DOC_LINEAR_TICKER = {
  topic: 'tickers.BTCUSDT',
  type: 'snapshot',
  data: {
    symbol: 'BTCUSDT',
    tickDirection: 'PlusTick',
    price24hPcnt: '0.017103',
    lastPrice: '17216.00',
    prevPrice24h: '16926.50',
    highPrice24h: '17281.50',
    lowPrice24h: '16915.00',
    prevPrice1h: '17238.00',
    markPrice: '17217.33',
    indexPrice: '17227.36',
    openInterest: '68744.761',
    openInterestValue: '1183601235.91',
    turnover24h: '1570383121.943499',
    volume24h: '91705.276',
    nextFundingTime: '1673280000000',
    fundingRate: '-0.000212',
    bid1Price: '17215.50',
    bid1Size: '84.489',
    ask1Price: '17216.00',
    ask1Size: '83.020',
  },
  cs: 24987956059,
  ts: 1673272861686,
};
const DOC_SPOT_TICKER = {
  topic: 'tickers.BTCUSDT',
  ts: 1673853746003,
  type: 'snapshot',
  cs: 2588407389,
  data: {
    symbol: 'BTCUSDT',
    lastPrice: '21109.77',
    highPrice24h: '21426.99',
    lowPrice24h: '20575',
    prevPrice24h: '20704.93',
    volume24h: '6780.866843',
    turnover24h: '141946527.22907118',
    price24hPcnt: '0.0196',
    usdIndexPrice: '21120.2400136',
  },
};

const frame = (data: unknown, extra: Partial<RawFrame> = {}): RawFrame => rawFrame('bybit', 1_700_000_000_250.5, data, extra);

function one(n: BybitNormalizer, data: unknown, extra: Partial<RawFrame> = LINEAR): { events: CanonicalEvent[]; label: string | undefined } {
  const r = normalizeFrame(n, frame(data, extra));
  for (const e of r.events) expect(() => eventSchema.parse(e)).not.toThrow();
  return r;
}

const reason = (n: BybitNormalizer, data: unknown, extra: Partial<RawFrame> = LINEAR): string => rejectionReason(n, frame(data, extra), true);

const delta = (u: number, d: { b?: string[][]; a?: string[][] } = {}, sym = 'BTCUSDT') => ({
  topic: `orderbook.50.${sym}`,
  type: 'delta',
  ts: 1700000000000 + u,
  data: { s: sym, b: d.b ?? [], a: d.a ?? [], u, seq: 9_000_000 + u },
  cts: 1700000000000 + u - 1,
});
const snapshot = (u: number, b: string[][], a: string[][], sym = 'BTCUSDT') => ({
  topic: `orderbook.50.${sym}`,
  type: 'snapshot',
  ts: 1700000000000 + u,
  data: { s: sym, b, a, u, seq: 9_000_000 + u },
});

describe('bybit normalizer on the documented frames', () => {
  it('orderbook snapshot + delta (linear): book events with u as seq, the delta applied in sequence', () => {
    const n = new BybitNormalizer();
    const s = one(n, DOC_BOOK_SNAPSHOT);
    expect(s.label).toBeUndefined();
    expect(s.events).toEqual([
      { kind: 'status', venue: 'bybit', symbol: 'BTC-USDT-PERP', ts: 1671179923028, recvTs: 1700000000250.5, status: 'book_synced', reason: 'snapshot' },
      {
        kind: 'book',
        venue: 'bybit',
        symbol: 'BTC-USDT-PERP',
        ts: 1671179923028,
        recvTs: 1700000000250.5,
        seq: 13079592,
        firstSeq: 13079592,
        snapshot: true,
        bids: [[17440, 40.833], [17439.5, 0.513], [17416, 6.156], [17415.5, 32.268]],
        asks: [[17440.5, 78.815], [17441, 8.858], [17464.5, 4.901], [17465, 5.744]],
      },
    ]);
    const d = one(n, DOC_BOOK_DELTA);
    expect(d.events).toEqual([
      {
        kind: 'book',
        venue: 'bybit',
        symbol: 'BTC-USDT-PERP',
        ts: 1671179923046,
        recvTs: 1700000000250.5,
        seq: 13079593,
        firstSeq: 13079593,
        prevSeq: 13079592,
        snapshot: false,
        bids: [],
        asks: [[17440.5, 78.857], [17442, 1.51]],
      },
    ]);
    const book = n.orderBook('BTC-USDT-PERP')!;
    expect(book.asks.levels.slice(0, 3).map((l) => [l.price, l.qty])).toEqual([[17440.5, 78.857], [17441, 8.858], [17442, 1.51]]);
    expect(book.seq).toBe(13079593);
    // Linear has a ticker with a best bid/offer: no derived quotes.
    expect([...s.events, ...d.events].some((e) => e.kind === 'quote')).toBe(false);
    expect(n.bookReport()).toEqual({ 'BTC-USDT-PERP': { resyncs: 0 } });
  });

  it('the same frames on spot: BTC-USDT, and quotes derived from the book when its top changes', () => {
    const n = new BybitNormalizer();
    const s = one(n, DOC_BOOK_SNAPSHOT, SPOT);
    expect(s.events.map((e) => [e.kind, (e as Book | Quote | FeedStatus).symbol])).toEqual([
      ['status', 'BTC-USDT'],
      ['book', 'BTC-USDT'],
      ['quote', 'BTC-USDT'],
    ]);
    expect(s.events[2]).toEqual({
      kind: 'quote',
      venue: 'bybit',
      symbol: 'BTC-USDT',
      ts: 1671179923028,
      recvTs: 1700000000250.5,
      bidPx: 17440,
      bidQty: 40.833,
      askPx: 17440.5,
      askQty: 78.815,
      seq: 13079592,
      derived: true,
    });
    const d = one(n, DOC_BOOK_DELTA, SPOT);
    expect(d.events.filter((e) => e.kind === 'quote')).toEqual([expect.objectContaining({ askPx: 17440.5, askQty: 78.857, seq: 13079593, derived: true })]);
    // A change below the top: no quote.
    const deep = one(n, { ...delta(13079594, { b: [['17416.00', '1']] }) }, SPOT);
    expect(deep.events.map((e) => e.kind)).toEqual(['book']);
  });

  it('publicTrade: the taker side; the category decides the symbol', () => {
    const n = new BybitNormalizer();
    const expected = {
      kind: 'trade',
      venue: 'bybit',
      ts: 1672304486865,
      recvTs: 1700000000250.5,
      price: 16578.5,
      qty: 0.001,
      side: 'buy',
      tradeId: '20f43950-d8dd-5b31-9112-a178eb6023af',
    };
    expect(one(n, DOC_TRADE, LINEAR).events).toEqual([{ ...expected, symbol: 'BTC-USDT-PERP' }]);
    expect(one(n, DOC_TRADE, SPOT).events).toEqual([{ ...expected, symbol: 'BTC-USDT' }]);
    // A frame without a channel (another collector's capture) is read as linear.
    expect((one(n, DOC_TRADE, {}).events[0] as Trade).symbol).toBe('BTC-USDT-PERP');
    expect(reason(n, DOC_TRADE, { channel: 'category:inverse' })).toBe('Bybit category "inverse" is not supported (spot, linear)');
    expect(reason(n, DOC_TRADE, { channel: 'rest:/v5/market' })).toBe('unknown channel "rest:/v5/market" for a Bybit frame (expected category:spot or category:linear)');
    const sell = one(n, { ...DOC_TRADE, data: [{ ...DOC_TRADE.data[0], S: 'Sell', i: '2290000000061666327' }, { ...DOC_TRADE.data[0], i: 'b' }] });
    expect(sell.events.map((e) => [(e as { side: string }).side, (e as { tradeId: string }).tradeId])).toEqual([
      ['sell', '2290000000061666327'],
      ['buy', 'b'],
    ]);
  });

  it('linear tickers: snapshot and deltas merged per symbol, seq = cs; spot tickers carry no best bid/offer', () => {
    const n = new BybitNormalizer();
    const snap = one(n, DOC_LINEAR_TICKER);
    expect(snap.events).toEqual([
      {
        kind: 'quote',
        venue: 'bybit',
        symbol: 'BTC-USDT-PERP',
        ts: 1673272861686,
        recvTs: 1700000000250.5,
        bidPx: 17215.5,
        bidQty: 84.489,
        askPx: 17216,
        askQty: 83.02,
        seq: 24987956059,
      },
    ]);
    const d1 = one(n, { topic: 'tickers.BTCUSDT', type: 'delta', data: { symbol: 'BTCUSDT', ask1Size: '80.5', markPrice: '17217.40' }, cs: 24987956070, ts: 1673272861786 });
    expect(d1.events).toEqual([expect.objectContaining({ bidPx: 17215.5, bidQty: 84.489, askPx: 17216, askQty: 80.5, seq: 24987956070, ts: 1673272861786 })]);
    expect(one(n, { topic: 'tickers.BTCUSDT', type: 'delta', data: { symbol: 'BTCUSDT', markPrice: '17217.50' }, cs: 24987956071, ts: 1673272861886 })).toEqual({
      events: [],
      label: 'ticker-no-bbo-change',
    });
    // A delta before any snapshot: the other fields are unknown.
    const fresh = new BybitNormalizer();
    expect(one(fresh, { topic: 'tickers.ETHUSDT', type: 'delta', data: { symbol: 'ETHUSDT', bid1Price: '2000' }, cs: 1, ts: 1 })).toEqual({ events: [], label: 'ticker-partial' });
    expect(one(n, DOC_SPOT_TICKER, SPOT)).toEqual({ events: [], label: 'ticker' });
    expect(reason(n, { ...DOC_LINEAR_TICKER, data: { ...DOC_LINEAR_TICKER.data, bid1Price: 'abc' } })).toBe('tickers: bid1Price must be a non-negative number, got "abc"');
  });

  it('labels op responses and pongs, and rejects failed subscriptions and unknown shapes precisely', () => {
    const n = new BybitNormalizer();
    expect(one(n, { success: true, ret_msg: 'subscribe', conn_id: '2324d924-aa4d-45b0-a858-7b8be29ab52b', req_id: '10001', op: 'subscribe' }).label).toBe('subscribe-ack');
    expect(one(n, { success: true, op: 'subscribe' }).label).toBe('subscribe-ack');
    expect(one(n, { success: true, ret_msg: '', conn_id: 'x', op: 'unsubscribe' }).label).toBe('unsubscribe-ack');
    expect(one(n, { success: true, ret_msg: 'pong', conn_id: '0970e817-426e-429a-a679-ff7f55e0b16a', op: 'ping' }, SPOT).label).toBe('pong');
    expect(one(n, { req_id: 'test', op: 'pong', args: ['1675418560633'], conn_id: 'cfcb4ocsvfriu23r3er0-1b' }).label).toBe('pong');
    expect(one(n, { op: 'pong' }).label).toBe('pong');
    expect(one(n, { topic: 'kline.5.BTCUSDT', type: 'snapshot', ts: 1, data: [] }).label).toBe('kline');
    expect(one(n, { topic: 'allLiquidation.BTCUSDT', type: 'snapshot', ts: 1, data: [] }).label).toBe('allLiquidation');
    expect(reason(n, { success: false, ret_msg: 'error:handler not found,topic:orderbook.50.XYZ', conn_id: 'x', op: 'subscribe' })).toBe(
      'Bybit subscribe failed: error:handler not found,topic:orderbook.50.XYZ',
    );
    expect(reason(n, { success: false, op: 'unsubscribe' })).toBe('Bybit unsubscribe failed: no ret_msg');
    expect(reason(n, { topic: 'funding.BTCUSDT', data: {} })).toBe('unknown topic "funding.BTCUSDT"');
    expect(reason(n, { topic: 5 })).toBe('topic must be a string, got 5');
    expect(reason(n, { op: 'auth', success: true })).toBe('unknown structure: object with keys {op,success} (neither a topic push nor an op response)');
    expect(reason(n, '[]')).toBe('unknown structure: expected a JSON object, got "[]"');
    expect(reason(n, '{"topic":')).toMatch(/^invalid JSON: /);
    const t = DOC_TRADE.data[0];
    expect(reason(n, { ...DOC_TRADE, data: [{ ...t, S: 'buy' }] })).toBe('publicTrade: S (taker side) must be "Buy" or "Sell", got "buy"');
    expect(reason(n, { ...DOC_TRADE, data: [{ ...t, p: '1e400' }] })).toBe('publicTrade: p (price) must be a positive number, got "1e400"');
    expect(reason(n, { ...DOC_TRADE, data: [{ ...t, v: null }] })).toBe('publicTrade: v (size) must be a non-negative number, got null');
    expect(reason(n, { ...DOC_TRADE, data: [{ ...t, T: 1.5 }] })).toBe('publicTrade: T (trade time) must be a non-negative integer, got 1.5');
    expect(reason(n, { ...DOC_TRADE, data: [{ ...t, i: '' }] })).toBe('publicTrade: i (trade id) must be an id, got ""');
    expect(reason(n, { ...DOC_TRADE, data: [{ ...t, s: 'BTC$USDT' }] })).toBe('invalid Bybit symbol "BTC$USDT"');
    expect(reason(n, { ...DOC_TRADE, data: [{ ...t, s: 'BTCXYZ' }] })).toBe('symbol "BTCXYZ" has no known quote asset');
  });
});

describe('bybit book sync', () => {
  it('a skipped update id resets the book and asks for a resync of that symbol; the next snapshot rebuilds it', () => {
    const requests: [string, string][] = [];
    const n = new BybitNormalizer({ requestResync: (s, r) => requests.push([s, r]) });
    one(n, snapshot(100, [['10', '1']], [['11', '1']]));
    one(n, snapshot(200, [['20', '1']], [['21', '1']], 'ETHUSDT'));
    expect(one(n, delta(101, { b: [['10', '2']] })).events.map((e) => e.kind)).toEqual(['book']);
    const gap = one(n, delta(103, { b: [['9', '1']] }));
    expect(gap.events).toEqual([
      {
        kind: 'status',
        venue: 'bybit',
        symbol: 'BTC-USDT-PERP',
        ts: 1700000000102,
        recvTs: 1700000000250.5,
        status: 'book_reset',
        reason: 'update id gap: expected u=102, got u=103',
      },
    ]);
    expect(requests).toEqual([['linear/BTCUSDT', 'update id gap: expected u=102, got u=103']]);
    expect(n.orderBook('BTC-USDT-PERP')!.synced).toBe(false);
    expect(one(n, delta(104))).toEqual({ events: [], label: 'book-not-synced' });
    // The other symbol is untouched.
    expect(one(n, delta(201, { a: [['21', '0']] }, 'ETHUSDT')).events.map((e) => e.kind)).toEqual(['book']);
    const again = one(n, snapshot(110, [['10', '2'], ['9', '1']], [['11', '1']]));
    expect(again.events.map((e) => (e.kind === 'status' ? e.status : `book:${String((e as Book).snapshot)}`))).toEqual(['book_synced', 'book:true']);
    expect(one(n, delta(111, { a: [['11', '0.5']] })).events.map((e) => e.kind)).toEqual(['book']);
    // A repeated or old update id is a gap too.
    expect(one(n, delta(111)).events.map((e) => (e as FeedStatus).status)).toEqual(['book_reset']);
    expect(n.bookReport()).toEqual({ 'BTC-USDT-PERP': { resyncs: 2 }, 'ETH-USDT-PERP': { resyncs: 0 } });
  });

  it('a snapshot with u=1 (service restart) replaces the book without a resync; a delta with u=1 is a gap', () => {
    const requests: string[] = [];
    const n = new BybitNormalizer({ requestResync: (s) => requests.push(s) });
    one(n, snapshot(5000, [['10', '1']], [['11', '1']]), SPOT);
    const restart = one(n, snapshot(1, [['10.5', '1']], [['11', '2']]), SPOT);
    expect(restart.events.map((e) => e.kind)).toEqual(['book', 'quote']); // still synced: no status event
    expect(restart.events[0]).toMatchObject({ snapshot: true, seq: 1, bids: [[10.5, 1]] });
    expect(n.orderBook('BTC-USDT')!.bids.levels.map((l) => l.price)).toEqual([10.5]);
    expect(one(n, delta(2, { b: [['10.4', '3']] }), SPOT).events.map((e) => e.kind)).toEqual(['book']);
    expect(requests).toEqual([]);
    const m = new BybitNormalizer({ requestResync: (s) => requests.push(s) });
    one(m, snapshot(5000, [['10', '1']], [['11', '1']]));
    expect(one(m, delta(1)).events.map((e) => (e as FeedStatus).status)).toEqual(['book_reset']);
    expect(requests).toEqual(['linear/BTCUSDT']);
  });

  it('leaves the book untouched when a book frame is broken', () => {
    const n = new BybitNormalizer();
    one(n, snapshot(100, [['10', '1'], ['9', '1']], [['11', '1']]));
    const before = n.orderBook('BTC-USDT-PERP')!.bids.levels.map((l) => ({ ...l }));
    expect(reason(n, delta(101, { b: [['10', '5'], ['9', '-1']] }))).toBe('orderbook: b (bids)[1] size must be a non-negative number, got "-1"');
    expect(reason(n, delta(101, { b: [['0', '5']] }))).toBe('orderbook: b (bids)[0] price must be a positive number, got "0"');
    expect(reason(n, { ...delta(101), type: 'partial' })).toBe('orderbook: type must be "snapshot" or "delta", got "partial"');
    expect(reason(n, { ...delta(101), data: { s: 'BTCUSDT', b: [], a: [] } })).toBe('orderbook: u (update id) must be a non-negative integer, got missing');
    expect(reason(n, { ...delta(101), data: { s: 'BTCUSDT', b: {}, a: [], u: 101 } })).toBe('orderbook: b (bids) must be an array of [price, size], got {}');
    expect(reason(n, { ...delta(101), data: [] })).toBe('orderbook: data must be an object, got []');
    expect(n.orderBook('BTC-USDT-PERP')!.bids.levels).toEqual(before);
    expect(one(n, delta(101, { b: [['10', '2']] })).events.map((e) => e.kind)).toEqual(['book']);
  });

  it('status frames: one event per symbol; disconnect drops books and ticker state', () => {
    const n = new BybitNormalizer();
    const status = (data: unknown) => frame(data, { channel: STATUS_CHANNEL, recvTs: 1_700_000_002_000.75 });
    const out: CanonicalEvent[] = [];
    n.normalize(status({ status: 'connected', reason: 'initial connect', symbols: ['linear/BTCUSDT', 'linear/BTCPERP'] }), out);
    expect(out).toEqual([
      { kind: 'status', venue: 'bybit', symbol: 'BTC-USDT-PERP', ts: 1700000002000, recvTs: 1700000002000.75, status: 'connected', reason: 'initial connect' },
      { kind: 'status', venue: 'bybit', symbol: 'BTC-USDC-PERP', ts: 1700000002000, recvTs: 1700000002000.75, status: 'connected', reason: 'initial connect' },
    ]);
    one(n, snapshot(100, [['10', '1']], [['11', '1']]));
    one(n, DOC_LINEAR_TICKER);
    const out2: CanonicalEvent[] = [];
    n.normalize(status({ status: 'stale', reason: 'no frame for 30000 ms', symbols: ['linear/BTCUSDT'] }), out2);
    expect(out2.map((e) => [(e as FeedStatus).status, (e as FeedStatus).symbol])).toEqual([['stale', 'BTC-USDT-PERP']]);
    expect(one(n, delta(101))).toEqual({ events: [], label: 'book-not-synced' });
    expect(one(n, { topic: 'tickers.BTCUSDT', type: 'delta', data: { symbol: 'BTCUSDT', bid1Price: '1' }, cs: 2, ts: 2 })).toEqual({ events: [], label: 'ticker-partial' });
    expect(n.bookReport()).toEqual({ 'BTC-USDT-PERP': { resyncs: 0 } });
    expect(reason(n, { status: 'connected', reason: 'x', symbols: ['BTCUSDT'] }, { channel: STATUS_CHANNEL })).toBe(
      'Bybit symbol "BTCUSDT" must be <category>/<SYMBOL>, e.g. linear/BTCUSDT',
    );
    expect(reason(n, { status: 'connected', reason: 'x', symbols: ['option/BTC'] }, { channel: STATUS_CHANNEL })).toBe('Bybit category "option" is not supported (spot, linear)');
  });
});

describe('bybit symbols, categories and protocol', () => {
  it('maps wire symbols by category', () => {
    expect(bybitSymbol('BTCUSDT', 'linear')).toBe('BTC-USDT-PERP');
    expect(bybitSymbol('1000PEPEUSDT', 'linear')).toBe('1000PEPE-USDT-PERP');
    expect(bybitSymbol('BTCPERP', 'linear')).toBe('BTC-USDC-PERP');
    expect(bybitSymbol('ETHUSDC', 'linear')).toBe('ETH-USDC-PERP');
    expect(bybitSymbol('BTCUSDT-26DEC25', 'linear')).toBe('BTC-USDT-26DEC25');
    expect(bybitSymbol('BTC-26DEC25', 'linear')).toBe('BTC-USDC-26DEC25');
    expect(bybitSymbol('BTCUSDT', 'spot')).toBe('BTC-USDT');
    expect(bybitSymbol('ETHBTC', 'spot')).toBe('ETH-BTC');
    expect(() => bybitSymbol('BTC-26DEC25', 'spot')).toThrow(MalformedFrameError);
    expect(() => bybitSymbol('btcusdt', 'spot')).toThrow('invalid Bybit symbol "btcusdt"');
  });

  it('reads feed specs: category prefix or canonical names', () => {
    expect(bybitNativeSymbol('linear/btcusdt')).toBe('linear/BTCUSDT');
    expect(bybitNativeSymbol('SPOT/ETHUSDT')).toBe('spot/ETHUSDT');
    expect(bybitNativeSymbol('BTC-USDT-PERP')).toBe('linear/BTCUSDT');
    expect(bybitNativeSymbol('btc-usdc-perp')).toBe('linear/BTCPERP');
    expect(bybitNativeSymbol('BTC-USDT-26DEC25')).toBe('linear/BTCUSDT-26DEC25');
    expect(bybitNativeSymbol('BTC-USDC-26DEC25')).toBe('linear/BTC-26DEC25');
    expect(bybitNativeSymbol('BTC-USDT')).toBe('spot/BTCUSDT');
    expect(bybitNativeSymbol('btcusdt')).toBe('spot/BTCUSDT');
    expect(() => bybitNativeSymbol('inverse/BTCUSD')).toThrow('Bybit category "inverse" is not supported (spot, linear) in "inverse/BTCUSD"');
    expect(() => bybitNativeSymbol('linear/BTCXYZ')).toThrow('cannot read "linear/BTCXYZ" as a Bybit linear symbol: symbol "BTCXYZ" has no known quote asset');
    expect(() => bybitNativeSymbol('A-B-C-D')).toThrow(/cannot read "A-B-C-D" as a Bybit symbol/);
    // Canonical → native → the same canonical.
    for (const c of ['BTC-USDT-PERP', 'BTC-USDC-PERP', 'BTC-USDT-26DEC25', 'BTC-USDC-26DEC25', 'ETH-BTC']) {
      const [category, wire] = bybitNativeSymbol(c).split('/') as ['spot' | 'linear', string];
      expect(bybitSymbol(wire, category)).toBe(c);
    }
  });

  it('builds the category endpoint from the configured URL', () => {
    expect(bybitCategoryUrl(BYBIT_WS_URL, 'linear')).toBe('wss://stream.bybit.com/v5/public/linear');
    expect(bybitCategoryUrl('wss://stream.bybit.com/v5/public/', 'spot')).toBe('wss://stream.bybit.com/v5/public/spot');
    expect(bybitCategoryUrl('wss://stream.bybit.com/v5/public/linear', 'spot')).toBe('wss://stream.bybit.com/v5/public/spot');
    expect(bybitCategoryUrl('ws://127.0.0.1:4567', 'linear')).toBe('ws://127.0.0.1:4567/linear');
  });

  it('subscribes 10 topics a message, tickers only on linear; tags frames with the category; resync resubscribes one book', () => {
    const linear = bybitProtocol('linear');
    const natives = linear.nativeSymbols(['BTC-USDT-PERP', 'linear/ETHUSDT', 'SOL-USDT-PERP', 'XRP-USDT-PERP', 'DOGE-USDT-PERP']);
    expect(natives).toEqual(['linear/BTCUSDT', 'linear/ETHUSDT', 'linear/SOLUSDT', 'linear/XRPUSDT', 'linear/DOGEUSDT']);
    const msgs = linear.subscribeMessages(natives).map((m) => JSON.parse(m) as { op: string; args: string[] });
    expect(msgs.map((m) => m.args.length)).toEqual([10, 5]);
    expect(msgs[0]!.args.slice(0, 3)).toEqual(['publicTrade.BTCUSDT', 'orderbook.50.BTCUSDT', 'tickers.BTCUSDT']);
    expect(bybitProtocol('spot').subscribeMessages(['spot/BTCUSDT'])).toEqual(['{"op":"subscribe","args":["publicTrade.BTCUSDT","orderbook.50.BTCUSDT"]}']);
    expect(() => linear.nativeSymbols(['BTC-USDT'])).toThrow('spot/BTCUSDT is not a linear symbol');
    expect(linear.url(BYBIT_WS_URL, natives)).toBe('wss://stream.bybit.com/v5/public/linear');

    const sent: string[] = [];
    const emitted: [string, string | undefined][] = [];
    const ctx: ConnectionContext = { send: (d) => sent.push(d), emit: (d, c) => emitted.push([d, c]), fetchText: () => Promise.reject(new Error('no')), restUrl: '', log: () => {} };
    expect(linear.onFrame!('{"op":"pong"}', ctx)).toBe(false);
    expect(emitted).toEqual([['{"op":"pong"}', 'category:linear']]);
    linear.resync('linear/ETHUSDT', ctx);
    expect(sent).toEqual(['{"op":"unsubscribe","args":["orderbook.50.ETHUSDT"]}', '{"op":"subscribe","args":["orderbook.50.ETHUSDT"]}']);
    expect(linear.appPing).toEqual({ intervalMs: 20_000, message: '{"op":"ping"}' });
    expect(getAdapter('bybit')).toBe(bybitAdapter);
  });

  it('connect rejects symbols it cannot subscribe to with VIGIL_ERR_FEED 400', async () => {
    const iterate = async (symbols: string[]) => {
      for await (const _ of connectBybit({ symbols, wsUrl: 'ws://127.0.0.1:9' })) break;
    };
    await expect(iterate(['inverse/BTCUSD'])).rejects.toSatisfy(
      (e: unknown) => e instanceof VigilError && e.code === ERR.FEED && e.statusCode === 400 && e.message.includes('Bybit category "inverse" is not supported'),
    );
    await expect(iterate([])).rejects.toThrow('bybit: no symbols to subscribe to');
    const logs: string[] = [];
    connectBybit({ symbols: ['BTC-USDT'], log: (m) => logs.push(m) }).resync('linear/BTCUSDT', 'gap');
    expect(logs).toEqual(['bybit: resync of linear/BTCUSDT ignored: no connection carries it']);
  });
});
