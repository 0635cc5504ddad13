import { describe, expect, it } from 'vitest';
import { eventSchema, type Book, type CanonicalEvent, type FeedStatus, type Quote, type Trade } from '../src/core/events.ts';
import {
  COINBASE_ADVANCED_CHANNELS,
  COINBASE_ADVANCED_WS_URL,
  COINBASE_REST_URL,
  COINBASE_WS_URL,
  CoinbaseNormalizer,
  coinbaseAdapter,
  coinbaseAdvancedAdapter,
  coinbaseAdvancedProtocol,
  coinbaseProtocol,
  coinbaseSymbol,
  isoToMs,
} from '../src/feeds/coinbase.ts';
import type { ConnectionContext } from '../src/feeds/connection-types.ts';
import { getAdapter } from '../src/feeds/registry.ts';
import { MalformedFrameError, STATUS_CHANNEL, type NormalizerContext, type RawFrame } from '../src/feeds/types.ts';
import { readRecords } from '../src/replay/formats.ts';
import { normalizeFrame, rawFrame, rejectionReason } from './helpers/frames.ts';

const DATA = new URL('../../shared/data/exchange_raw/cryptofeed/', import.meta.url).pathname;
const WS_CAPTURE = `${DATA}COINBASE.ws.28.0.gz`;
const REST_CAPTURE = `${DATA}COINBASE.0.gz`;

const frame = (data: unknown, extra: Partial<RawFrame> = {}): RawFrame => rawFrame('coinbase', 1_700_000_000_000, data, extra);
const run = (n: CoinbaseNormalizer, data: unknown, extra: Partial<RawFrame> = {}) => normalizeFrame(n, frame(data, extra));
const malformed = (n: CoinbaseNormalizer, data: unknown, extra: Partial<RawFrame> = {}): string => rejectionReason(n, frame(data, extra));

function resyncSpy(): NormalizerContext & { calls: [string, string][] } {
  const calls: [string, string][] = [];
  return { calls, requestResync: (symbol, reason) => calls.push([symbol, reason]) };
}

const books = (evs: CanonicalEvent[]): Book[] => evs.filter((e): e is Book => e.kind === 'book');
const quotes = (evs: CanonicalEvent[]): Quote[] => evs.filter((e): e is Quote => e.kind === 'quote');
const trades = (evs: CanonicalEvent[]): Trade[] => evs.filter((e): e is Trade => e.kind === 'trade');
const statuses = (evs: CanonicalEvent[]): FeedStatus[] => evs.filter((e): e is FeedStatus => e.kind === 'status');

// ---------------------------------------------------------------- the real captures

interface ReplayResult {
  frames: number;
  skipped: number;
  events: CanonicalEvent[];
  ignored: Record<string, number>;
  malformed: string[];
  byType: Record<string, number>;
  normalizer: CoinbaseNormalizer;
}

async function replay(paths: string[]): Promise<ReplayResult> {
  const normalizer = coinbaseAdapter.createNormalizer() as CoinbaseNormalizer;
  const res: ReplayResult = { frames: 0, skipped: 0, events: [], ignored: {}, malformed: [], byType: {}, normalizer };
  for (const path of paths) {
    for await (const rec of readRecords(path)) {
      if (rec.type === 'skip') {
        res.skipped++;
        continue;
      }
      if (rec.type !== 'frame') throw new Error(`unexpected record ${rec.type} at ${path}:${rec.line}`);
      res.frames++;
      expect(rec.frame.source).toBe('coinbase');
      if (rec.frame.channel === undefined) {
        const t = (JSON.parse(rec.frame.data) as { type: string }).type;
        res.byType[t] = (res.byType[t] ?? 0) + 1;
      }
      try {
        const label = normalizer.normalize(rec.frame, res.events);
        if (label !== undefined) res.ignored[label] = (res.ignored[label] ?? 0) + 1;
      } catch (err) {
        res.malformed.push(`${rec.line}: ${(err as Error).message}`);
      }
    }
  }
  return res;
}

describe('coinbase Exchange feed: the real cryptofeed capture (2021-04, 10 products)', async () => {
  const r = await replay([REST_CAPTURE, WS_CAPTURE]);

  it('reads every frame with zero malformed and the exact counts per message type and event kind', () => {
    expect(r.malformed).toEqual([]);
    // 9,946 WebSocket frames (the README's types plus 3 subscriptions acks) and 1 REST bootstrap frame.
    expect(r.frames).toBe(9_947);
    expect(r.byType).toEqual({ l2update: 9_719, ticker: 107, match: 97, snapshot: 10, last_match: 10, subscriptions: 3 });
    const count = (pred: (e: CanonicalEvent) => boolean): number => r.events.filter(pred).length;
    expect(count((e) => e.kind === 'book' && e.snapshot)).toBe(10);
    expect(count((e) => e.kind === 'book' && !e.snapshot)).toBe(9_719);
    expect(count((e) => e.kind === 'trade')).toBe(107);
    expect(count((e) => e.kind === 'quote' && e.derived !== true)).toBe(107);
    expect(count((e) => e.kind === 'quote' && e.derived === true)).toBe(0); // a ticker exists for every product
    expect(count((e) => e.kind === 'status' && e.status === 'book_synced')).toBe(10);
    expect(r.events.length).toBe(10 + 9_719 + 107 + 107 + 10);
    // The REST products list of the bootstrap and the subscription acks are labelled, not dead letters.
    expect(r.ignored).toEqual({ rest: 1, subscriptions: 3 });
  });

  it('emits only events that satisfy the canonical schema, with symbols kept as BASE-QUOTE', () => {
    for (const e of r.events) expect(eventSchema.safeParse(e).success, JSON.stringify(e).slice(0, 200)).toBe(true);
    const symbols = new Set(r.events.map((e) => (e as { symbol: string }).symbol));
    expect([...symbols].sort()).toEqual(['BAND-BTC', 'BAND-GBP', 'CRV-EUR', 'DASH-BTC', 'NMR-EUR', 'NU-GBP', 'SKL-BTC', 'SKL-GBP', 'SKL-USD', 'YFI-BTC']);
  });

  it("gives the taker's side: every ticker (which states the taker side) agrees with the trade built from the maker-side match", async () => {
    const bySymbolId = new Map(trades(r.events).map((t) => [`${t.symbol}:${t.tradeId}`, t]));
    let checked = 0;
    for await (const rec of readRecords(WS_CAPTURE)) {
      if (rec.type !== 'frame') continue;
      const m = JSON.parse(rec.frame.data) as { type: string; product_id: string; trade_id: number; side: string };
      if (m.type !== 'ticker') continue;
      const t = bySymbolId.get(`${m.product_id}:${m.trade_id}`);
      expect(t, `trade ${m.product_id}:${m.trade_id}`).toBeDefined();
      expect(t!.side).toBe(m.side);
      checked++;
    }
    expect(checked).toBe(107);
    // First match of the capture: SKL-BTC, maker side sell → a buyer lifted the offer.
    expect(trades(r.events).find((t) => t.tradeId === '280232')).toMatchObject({
      symbol: 'SKL-BTC',
      side: 'buy',
      price: 0.00001305,
      qty: 985,
      ts: Date.UTC(2021, 3, 17, 16, 43, 37, 89),
    });
  });

  it('keeps the rebuilt books consistent with the venue: every ticker no older than the book agrees with its top', () => {
    const report = r.normalizer.bookReport();
    let compared = 0;
    let matched = 0;
    for (const rep of Object.values(report)) {
      expect(rep.resyncs).toBe(0);
      compared += rep.compared ?? 0;
      matched += rep.matched ?? 0;
    }
    // The 10 tickers sent on subscribing report the last trade (up to 107 s old) and are not compared.
    expect(compared).toBe(97);
    expect(matched).toBe(97);
    expect(report['SKL-USD']).toEqual({ resyncs: 0, check: 'bbo', compared: 52, matched: 52 });
  });

  it('never leaves a book crossed after a delta', () => {
    const bid = new Map<string, Map<number, number>>();
    const ask = new Map<string, Map<number, number>>();
    for (const b of books(r.events)) {
      if (b.snapshot) {
        bid.set(b.symbol, new Map(b.bids));
        ask.set(b.symbol, new Map(b.asks));
      } else {
        for (const [p, q] of b.bids) (q === 0 ? bid.get(b.symbol)!.delete(p) : bid.get(b.symbol)!.set(p, q));
        for (const [p, q] of b.asks) (q === 0 ? ask.get(b.symbol)!.delete(p) : ask.get(b.symbol)!.set(p, q));
        expect(Math.max(...bid.get(b.symbol)!.keys())).toBeLessThan(Math.min(...ask.get(b.symbol)!.keys()));
      }
    }
    // …and the normalizer's own books end equal to the books the events describe.
    for (const [symbol, bids] of bid) {
      const own = r.normalizer.orderBook(symbol)!;
      expect(own.bids.levels.map((l) => [l.price, l.qty])).toEqual([...bids].sort((x, y) => y[0] - x[0]));
      expect(own.asks.levels.map((l) => [l.price, l.qty])).toEqual([...ask.get(symbol)!].sort((x, y) => x[0] - y[0]));
    }
    expect(bid.size).toBe(10);
  });
});

// ---------------------------------------------------------------- Exchange feed, hand-made frames

const T = '2024-05-01T12:00:00.123456Z';
const TMS = Date.UTC(2024, 4, 1, 12, 0, 0, 123);

describe('coinbase Exchange feed: message types', () => {
  it('match → trade with the aggressor opposite to the maker side; last_match repeated on reconnect is not emitted twice', () => {
    const n = new CoinbaseNormalizer('coinbase');
    const m = { type: 'match', trade_id: 10, maker_order_id: 'a', taker_order_id: 'b', side: 'buy', size: '0.5', price: '100.5', product_id: 'BTC-USD', sequence: 50, time: T };
    const { label, events } = run(n, m);
    expect(label).toBeUndefined();
    expect(events).toEqual([{ kind: 'trade', venue: 'coinbase', symbol: 'BTC-USD', ts: TMS, recvTs: 1_700_000_000_000, price: 100.5, qty: 0.5, side: 'sell', tradeId: '10' }]);
    expect(trades(run(n, { ...m, trade_id: 11, side: 'sell' }).events)[0]!.side).toBe('buy');
    // After a reconnect the venue sends the last trade again as last_match: dropped.
    expect(run(n, { ...m, type: 'last_match', trade_id: 11 }).events).toEqual([]);
    expect(trades(run(n, { ...m, type: 'last_match', trade_id: 12 }).events)).toHaveLength(1);
  });

  it('ticker → quote with the venue sizes when present, else the rebuilt level at that price', () => {
    const n = new CoinbaseNormalizer('coinbase');
    const tk = { type: 'ticker', sequence: 7, product_id: 'ETH-USD', price: '10', best_bid: '9.5', best_ask: '10.5', side: 'buy', time: T, trade_id: 3, last_size: '1' };
    expect(run(n, { ...tk, best_bid_size: '2', best_ask_size: '3' }).events).toEqual([
      { kind: 'quote', venue: 'coinbase', symbol: 'ETH-USD', ts: TMS, recvTs: 1_700_000_000_000, bidPx: 9.5, bidQty: 2, askPx: 10.5, askQty: 3, seq: 7 },
    ]);
    // No sizes and no book yet: 0.
    expect(quotes(run(n, tk).events)[0]).toMatchObject({ bidQty: 0, askQty: 0 });
    run(n, { type: 'snapshot', product_id: 'ETH-USD', bids: [['9.5', '4.25']], asks: [['10.5', '1.5'], ['11', '2']] });
    expect(quotes(run(n, tk).events)[0]).toMatchObject({ bidPx: 9.5, bidQty: 4.25, askPx: 10.5, askQty: 1.5 });
    expect(n.bookReport()['ETH-USD']).toEqual({ resyncs: 0, check: 'bbo', compared: 1, matched: 1 });
    expect(malformed(n, { ...tk, best_bid: 'x' })).toBe('ticker: best_bid must be a non-negative number, got "x"');
  });

  it('snapshot + l2update → book: snapshot:true with all levels, then deltas in order; updates before a snapshot are labelled', () => {
    const n = new CoinbaseNormalizer('coinbase');
    const upd = { type: 'l2update', product_id: 'BTC-USD', changes: [['buy', '99', '1.5'], ['sell', '101', '0']], time: T };
    expect(run(n, upd)).toEqual({ label: 'l2update-before-snapshot', events: [] });
    const snap = run(n, { type: 'snapshot', product_id: 'BTC-USD', bids: [['100', '1'], ['99', '2']], asks: [['101', '3'], ['102', '4']] });
    expect(books(snap.events)).toEqual([
      { kind: 'book', venue: 'coinbase', symbol: 'BTC-USD', ts: 1_700_000_000_000, recvTs: 1_700_000_000_000, seq: 1, firstSeq: 1, snapshot: true, bids: [[100, 1], [99, 2]], asks: [[101, 3], [102, 4]] },
    ]);
    expect(statuses(snap.events).map((s) => s.status)).toEqual(['book_synced']);
    const d = run(n, upd);
    expect(books(d.events)).toEqual([
      { kind: 'book', venue: 'coinbase', symbol: 'BTC-USD', ts: TMS, recvTs: 1_700_000_000_000, seq: 2, firstSeq: 2, snapshot: false, bids: [[99, 1.5]], asks: [[101, 0]] },
    ]);
    // The rebuilt top agrees with a ticker at that state.
    run(n, { type: 'ticker', sequence: 1, product_id: 'BTC-USD', best_bid: '100', best_ask: '102', time: T });
    expect(n.bookReport()['BTC-USD']).toEqual({ resyncs: 0, check: 'bbo', compared: 1, matched: 1 });
    expect(malformed(n, { ...upd, changes: [['hold', '1', '1']] })).toBe('l2update: changes[0] side must be buy or sell, got "hold"');
    expect(malformed(n, { ...upd, changes: [['buy', '-1', '1']] })).toBe('l2update: changes[0] price must be a positive number, got "-1"');
  });

  it('labels heartbeat, subscriptions, activate and status; turns error frames into MalformedFrameError with the message', () => {
    const n = new CoinbaseNormalizer('coinbase');
    expect(run(n, { type: 'heartbeat', sequence: 90, last_trade_id: 20, product_id: 'BTC-USD', time: T })).toEqual({ label: 'heartbeat', events: [] });
    expect(run(n, { type: 'subscriptions', channels: [{ name: 'heartbeat', product_ids: ['BTC-USD'] }] }).label).toBe('subscriptions');
    expect(run(n, { type: 'activate', product_id: 'BTC-USD', order_id: 'x', stop_type: 'entry', side: 'buy', stop_price: '1', size: '1', timestamp: '1.0' }).label).toBe('activate');
    expect(malformed(n, { type: 'error', message: 'Failed to subscribe', reason: 'level2, level3, and full channels now require authentication' })).toBe(
      'error frame: Failed to subscribe (level2, level3, and full channels now require authentication)',
    );
    expect(malformed(n, { type: 'surprise' })).toBe('unknown message type "surprise"');
    expect(malformed(n, '{"type":"match"')).toMatch(/^invalid JSON: /);
    expect(malformed(n, { nothing: 1 })).toBe('unknown structure: object with keys {nothing} (neither "type" nor "channel")');
    expect(malformed(n, { type: 'match', trade_id: 1, side: 'buy', size: '1', price: '1', product_id: 'BTCUSD', time: T })).toBe('invalid product_id "BTCUSD" (expected BASE-QUOTE)');
    expect(malformed(n, { type: 'match', trade_id: 1, side: 'buy', size: '1', price: '1', product_id: 'BTC-USD', time: 'yesterday' })).toBe(
      'match: time must be an ISO-8601 UTC time, got "yesterday"',
    );
  });

  it('status frames: one status event per symbol; disconnected drops the book until the next snapshot', () => {
    const n = new CoinbaseNormalizer('coinbase');
    run(n, { type: 'snapshot', product_id: 'BTC-USD', bids: [['100', '1']], asks: [['101', '1']] });
    const st = run(n, { status: 'disconnected', reason: 'closed (1006)', symbols: ['BTC-USD', 'ETH-USD'] }, { channel: STATUS_CHANNEL });
    expect(st.events).toEqual([
      { kind: 'status', venue: 'coinbase', symbol: 'BTC-USD', ts: 1_700_000_000_000, recvTs: 1_700_000_000_000, status: 'disconnected', reason: 'closed (1006)' },
      { kind: 'status', venue: 'coinbase', symbol: 'ETH-USD', ts: 1_700_000_000_000, recvTs: 1_700_000_000_000, status: 'disconnected', reason: 'closed (1006)' },
    ]);
    expect(run(n, { type: 'l2update', product_id: 'BTC-USD', changes: [['buy', '100', '2']], time: T }).label).toBe('l2update-before-snapshot');
    const again = run(n, { type: 'snapshot', product_id: 'BTC-USD', bids: [['100', '5']], asks: [['101', '1']] });
    expect(statuses(again.events).map((s) => s.status)).toEqual(['book_synced']);
    expect(malformed(n, { status: 'weird', symbols: [] }, { channel: STATUS_CHANNEL })).toBe('status frame: status must be connected, disconnected or stale, got "weird"');
  });
});

// ---------------------------------------------------------------- full channel (L3)

function l3(type: string, sequence: number, fields: Record<string, unknown> = {}): Record<string, unknown> {
  return { type, product_id: 'BTC-USD', sequence, time: T, ...fields };
}
const open = (seq: number, id: string, side: 'buy' | 'sell', px: string, size: string): Record<string, unknown> =>
  l3('open', seq, { order_id: id, side, price: px, remaining_size: size });
const l3Rest = (product: string): Partial<RawFrame> => ({ channel: `rest:/products/${product}/book?level=3` });

describe('coinbase full channel: L3 book with sequence numbers', () => {
  it('queues messages until the REST level-3 snapshot, drops those it holds, applies the rest and emits aggregated levels', () => {
    const ctx = resyncSpy();
    const n = new CoinbaseNormalizer('coinbase', ctx);
    expect(run(n, { type: 'subscriptions', channels: [{ name: 'full', product_ids: ['BTC-USD'] }] }).label).toBe('subscriptions');
    // Before the snapshot: queued (101 and 102 are already in the snapshot at 102).
    expect(run(n, open(101, 'o1', 'buy', '100', '1')).events).toEqual([]);
    expect(run(n, l3('received', 102, { order_id: 'o9', order_type: 'limit', side: 'sell', price: '101', size: '1' })).events).toEqual([]);
    // The first match (maker o2) is queued too: its product is known to be on the full channel.
    const match = l3('match', 103, { trade_id: 5, maker_order_id: 'o2', taker_order_id: 't', side: 'sell', size: '0.25', price: '101' });
    expect(trades(run(n, match).events)).toEqual([expect.objectContaining({ tradeId: '5', side: 'buy', price: 101, qty: 0.25 })]);
    run(n, open(104, 'o3', 'buy', '100', '0.2'));
    const snap = run(
      n,
      { sequence: 102, bids: [['100', '1', 'o1'], ['100', '0.1', 'o4'], ['99', '3', 'o5']], asks: [['101', '0.5', 'o2']] },
      l3Rest('BTC-USD'),
    );
    expect(snap.label).toBeUndefined();
    const b = books(snap.events);
    expect(b[0]).toEqual({ kind: 'book', venue: 'coinbase', symbol: 'BTC-USD', ts: 1_700_000_000_000, recvTs: 1_700_000_000_000, seq: 102, firstSeq: 102, snapshot: true, bids: [[100, 1.1], [99, 3]], asks: [[101, 0.5]] });
    // Played back: the match (103) shrinks o2, the open (104) adds to 100 exactly (1.1 + 0.2 = 1.3, no float drift).
    expect(b.slice(1).map((x) => [x.seq, x.bids, x.asks])).toEqual([
      [103, [], [[101, 0.25]]],
      [104, [[100, 1.3]], []],
    ]);
    expect(statuses(snap.events).map((s) => s.status)).toEqual(['book_synced']);
    expect(quotes(snap.events).map((q) => [q.seq, q.bidPx, q.bidQty, q.askPx, q.askQty, q.derived])).toEqual([
      [102, 100, 1.1, 101, 0.5, true],
      [103, 100, 1.1, 101, 0.25, true],
      [104, 100, 1.3, 101, 0.25, true],
    ]);
    expect(ctx.calls).toEqual([]);

    // Live: done of a resting order removes its remaining size; done of an order never on the book changes nothing.
    const d = run(n, l3('done', 105, { order_id: 'o1', reason: 'canceled', side: 'buy', price: '100', remaining_size: '1' }));
    expect(books(d.events).map((x) => x.bids)).toEqual([[[100, 0.3]]]);
    expect(run(n, l3('done', 106, { order_id: 'o9', reason: 'filled', side: 'sell' })).events).toEqual([]);
    // change: new size, and (modify) a new price.
    expect(books(run(n, l3('change', 107, { order_id: 'o4', side: 'buy', price: '100', old_size: '0.1', new_size: '0.05' })).events)[0]!.bids).toEqual([[100, 0.25]]);
    const moved = books(run(n, l3('change', 108, { order_id: 'o5', side: 'buy', price: '99', new_price: '100.5', old_size: '3', new_size: '2', reason: 'modify_order' })).events)[0]!;
    expect(moved.bids.sort((x, y) => y[0] - x[0])).toEqual([[100.5, 2], [99, 0]]);
    // Fills down to nothing: o2 matched fully, then done: the level goes away.
    run(n, l3('match', 109, { trade_id: 6, maker_order_id: 'o2', taker_order_id: 't2', side: 'sell', size: '0.25', price: '101' }));
    run(n, l3('done', 110, { order_id: 'o2', reason: 'filled', side: 'sell', price: '101', remaining_size: '0' }));
    const q = quotes(run(n, open(111, 'o6', 'sell', '102', '7')).events);
    expect(q).toEqual([expect.objectContaining({ bidPx: 100.5, bidQty: 2, askPx: 102, askQty: 7, seq: 111, derived: true })]);
    // A stale or repeated sequence is ignored.
    expect(run(n, open(111, 'o7', 'sell', '103', '1'))).toEqual({ label: 'stale-sequence', events: [] });
    expect(n.bookReport()['BTC-USD']).toEqual({ resyncs: 0 });
  });

  it('a sequence gap → book_reset, a resync request for that product only, and a rebuilt book from the next snapshot', () => {
    const ctx = resyncSpy();
    const n = new CoinbaseNormalizer('coinbase', ctx);
    run(n, { sequence: 10, bids: [['100', '1', 'a']], asks: [['101', '1', 'b']] }, l3Rest('BTC-USD'));
    run(n, { sequence: 500, bids: [['10', '1', 'x']], asks: [['11', '1', 'y']] }, l3Rest('ETH-USD'));
    run(n, open(11, 'c', 'buy', '100', '1'));
    const gap = run(n, open(13, 'd', 'buy', '99', '1'));
    expect(statuses(gap.events)).toEqual([
      { kind: 'status', venue: 'coinbase', symbol: 'BTC-USD', ts: 1_700_000_000_000, recvTs: 1_700_000_000_000, status: 'book_reset', reason: 'sequence gap: expected 12, got 13' },
    ]);
    expect(books(gap.events)).toEqual([]);
    expect(ctx.calls).toEqual([['BTC-USD', 'sequence gap: expected 12, got 13']]);
    // Unsynced: further messages are queued, nothing is emitted for the book.
    expect(run(n, open(14, 'e', 'sell', '101', '2')).events).toEqual([]);
    // ETH-USD is untouched.
    expect(books(run(n, { ...open(501, 'z', 'buy', '10', '1'), product_id: 'ETH-USD' }).events)[0]!.bids).toEqual([[10, 2]]);
    // The fresh snapshot (at 13) rebuilds BTC-USD and plays back 14.
    const rebuilt = run(n, { sequence: 13, bids: [['100', '2', 'c2'], ['99', '1', 'd']], asks: [['101', '1', 'b']] }, l3Rest('BTC-USD'));
    expect(books(rebuilt.events).map((b) => [b.seq, b.snapshot, b.bids, b.asks])).toEqual([
      [13, true, [[100, 2], [99, 1]], [[101, 1]]],
      [14, false, [], [[101, 3]]],
    ]);
    expect(statuses(rebuilt.events).map((s) => s.status)).toEqual(['book_synced']);
    expect(n.bookReport()).toEqual({ 'BTC-USD': { resyncs: 1 }, 'ETH-USD': { resyncs: 0 } });
    // A snapshot older than the synced book is ignored.
    expect(run(n, { sequence: 12, bids: [], asks: [] }, l3Rest('BTC-USD')).label).toBe('stale-snapshot');
  });

  it('a snapshot older than the first queued message leaves a gap: reset and ask again', () => {
    const ctx = resyncSpy();
    const n = new CoinbaseNormalizer('coinbase', ctx);
    run(n, open(20, 'a', 'buy', '100', '1'));
    run(n, open(21, 'b', 'buy', '100', '1'));
    const r = run(n, { sequence: 17, bids: [], asks: [['101', '1', 'x']] }, l3Rest('BTC-USD'));
    expect(statuses(r.events).map((s) => [s.status, s.reason])).toEqual([
      ['book_synced', 'L3 snapshot at sequence 17'],
      ['book_reset', 'sequence gap after snapshot: expected 18, got 20'],
    ]);
    expect(ctx.calls).toEqual([['BTC-USD', 'sequence gap after snapshot: expected 18, got 20']]);
    // The queued messages are kept for the next snapshot.
    const ok = run(n, { sequence: 19, bids: [], asks: [['101', '1', 'x']] }, l3Rest('BTC-USD'));
    expect(books(ok.events).map((b) => [b.seq, b.bids])).toEqual([
      [19, []],
      [20, [[100, 1]]],
      [21, [[100, 2]]],
    ]);
  });

  it('rejects broken full-channel messages and snapshots, keeping the book as it was', () => {
    const n = new CoinbaseNormalizer('coinbase');
    run(n, { sequence: 1, bids: [['100', '1', 'a']], asks: [] }, l3Rest('BTC-USD'));
    expect(malformed(n, open(2, 'x', 'buy', '100', '-1'))).toBe('open: remaining_size must be a non-negative decimal, got "-1"');
    expect(malformed(n, l3('open', 2, { order_id: 'x', side: 'up', price: '1', remaining_size: '1' }))).toBe('open: side must be buy or sell, got "up"');
    expect(malformed(n, l3('done', 2, {}))).toBe('done: order_id must be a non-empty string, got missing');
    expect(malformed(n, { ...open(2, 'x', 'buy', '100', '1'), sequence: -2 })).toBe('open: sequence must be a non-negative integer, got -2');
    expect(malformed(n, { message: 'NotFound' }, l3Rest('BTC-USD'))).toBe('L3 book snapshot for BTC-USD: error response: NotFound');
    expect(malformed(n, { sequence: 9, bids: [['100', '1']], asks: [] }, l3Rest('BTC-USD'))).toBe(
      'L3 book snapshot for BTC-USD: bids[0] must be [price, size, order_id], got ["100","1"]',
    );
    expect(malformed(n, { sequence: 9, bids: [['100', '1', 'a']], asks: [['101', '1', 'a']] }, l3Rest('BTC-USD'))).toBe('L3 book snapshot for BTC-USD: order a listed twice');
    expect(malformed(n, { sequence: 9, bids: [], asks: [], time: 'noon' }, l3Rest('BTC-USD'))).toBe('L3 book snapshot for BTC-USD: time must be an ISO-8601 UTC time, got "noon"');
    // A full-channel match that cannot apply to the book is rejected whole: no trade either.
    const out: CanonicalEvent[] = [];
    expect(() => n.normalize(frame(l3('match', 2, { trade_id: 77, taker_order_id: 't', side: 'sell', size: '1', price: '100' })), out)).toThrow(
      'match: maker_order_id must be a non-empty string, got missing',
    );
    expect(out).toEqual([]);
    // Still synced at 1: the next message applies.
    expect(books(run(n, open(2, 'x', 'buy', '100', '1')).events)[0]!.bids).toEqual([[100, 2]]);
  });
});

// ---------------------------------------------------------------- Advanced Trade

function at(channel: string, seq: number, events: unknown[], timestamp = '2024-05-01T12:00:00.123456789Z'): Record<string, unknown> {
  return { channel, client_id: '', timestamp, sequence_num: seq, events };
}
const l2Event = (type: 'snapshot' | 'update', product: string, updates: [string, string, string][]): Record<string, unknown> => ({
  type,
  product_id: product,
  updates: updates.map(([side, px, q]) => ({ side, event_time: '2024-05-01T12:00:00.1Z', price_level: px, new_quantity: q })),
});

describe('coinbase Advanced Trade: channels and sequence_num', () => {
  it('l2_data snapshot/update → book with seq = sequence_num (bid/offer sides, absolute quantities)', () => {
    const n = coinbaseAdvancedAdapter.createNormalizer() as CoinbaseNormalizer;
    const s = run(n, at('l2_data', 0, [l2Event('snapshot', 'BTC-USD', [['bid', '100', '1'], ['bid', '99', '2'], ['offer', '101', '3']])]));
    expect(books(s.events)).toEqual([
      { kind: 'book', venue: 'coinbase-advanced', symbol: 'BTC-USD', ts: TMS, recvTs: 1_700_000_000_000, seq: 0, firstSeq: 0, snapshot: true, bids: [[100, 1], [99, 2]], asks: [[101, 3]] },
    ]);
    expect(statuses(s.events).map((e) => e.status)).toEqual(['book_synced']);
    const u = run(n, at('l2_data', 1, [l2Event('update', 'BTC-USD', [['bid', '100', '0'], ['offer', '100.5', '0.7']])]));
    expect(books(u.events)).toEqual([
      { kind: 'book', venue: 'coinbase-advanced', symbol: 'BTC-USD', ts: TMS, recvTs: 1_700_000_000_000, seq: 1, firstSeq: 1, snapshot: false, bids: [[100, 0]], asks: [[100.5, 0.7]] },
    ]);
    expect(malformed(n, at('l2_data', 2, [l2Event('update', 'BTC-USD', [['ask?', '1', '1']])]))).toBe(
      'l2_data events[0]: updates[0] side must be bid or offer, got "ask?"',
    );
  });

  it("market_trades → trades with the taker's side; a snapshot's trades seen before are not repeated", () => {
    const n = new CoinbaseNormalizer('coinbase-advanced');
    const tr = (id: string, side: string): Record<string, unknown> => ({ trade_id: id, product_id: 'ETH-USD', price: '3000.5', size: '0.1', side, time: T });
    const r = run(n, at('market_trades', 0, [{ type: 'snapshot', trades: [tr('2', 'SELL'), tr('1', 'BUY')] }]));
    expect(trades(r.events)).toEqual([
      { kind: 'trade', venue: 'coinbase-advanced', symbol: 'ETH-USD', ts: TMS, recvTs: 1_700_000_000_000, price: 3000.5, qty: 0.1, side: 'sell', tradeId: '2' },
      { kind: 'trade', venue: 'coinbase-advanced', symbol: 'ETH-USD', ts: TMS, recvTs: 1_700_000_000_000, price: 3000.5, qty: 0.1, side: 'buy', tradeId: '1' },
    ]);
    // A reconnect's snapshot repeats trade 2: only trade 3 is new.
    expect(trades(run(n, at('market_trades', 0, [{ type: 'snapshot', trades: [tr('3', 'BUY'), tr('2', 'SELL')] }])).events).map((t) => t.tradeId)).toEqual(['3']);
    expect(malformed(n, at('market_trades', 1, [{ type: 'update', trades: [tr('4', 'HOLD')] }]))).toBe('market_trades trades[0]: side must be BUY or SELL, got "HOLD"');
  });

  it('ticker → quote; heartbeats and subscriptions are labelled; errors are dead letters; unknown channels too', () => {
    const n = new CoinbaseNormalizer('coinbase-advanced');
    const t = run(n, at('ticker', 0, [{ type: 'snapshot', tickers: [{ type: 'ticker', product_id: 'BTC-USD', price: '100', best_bid: '99.5', best_bid_quantity: '1.5', best_ask: '100.5', best_ask_quantity: '2.5' }] }]));
    expect(t.events).toEqual([{ kind: 'quote', venue: 'coinbase-advanced', symbol: 'BTC-USD', ts: TMS, recvTs: 1_700_000_000_000, bidPx: 99.5, bidQty: 1.5, askPx: 100.5, askQty: 2.5 }]);
    expect(run(n, at('heartbeats', 1, [{ current_time: '2024-05-01 12:00:00.1 +0000 UTC m=+1.0', heartbeat_counter: '12' }]))).toEqual({ label: 'heartbeat', events: [] });
    expect(run(n, at('subscriptions', 2, [{ subscriptions: { level2: ['BTC-USD'], heartbeats: ['heartbeats'] } }])).label).toBe('subscriptions');
    expect(run(n, at('candles', 3, [])).label).toBe('candles');
    expect(malformed(n, { type: 'error', message: 'failure to subscribe' })).toBe('error frame: failure to subscribe');
    expect(malformed(n, at('l3_mystery', 4, []))).toBe('unknown channel "l3_mystery"');
    expect(malformed(n, { channel: 'l2_data', timestamp: T, events: [] })).toBe('l2_data: sequence_num must be a non-negative integer, got missing');
  });

  it('a broken message is all-or-nothing: no book changes from its good events; a gap it revealed is reported with the next frame', () => {
    const ctx = resyncSpy();
    const n = new CoinbaseNormalizer('coinbase-advanced', ctx);
    run(n, at('l2_data', 0, [l2Event('snapshot', 'BTC-USD', [['bid', '100', '1'], ['offer', '101', '1']])]));
    // Event 0 is fine, event 1 is broken: nothing of the message applies.
    const broken = at('l2_data', 1, [l2Event('update', 'BTC-USD', [['bid', '100', '9']]), l2Event('update', 'BTC-USD', [['bid', 'x', '1']])]);
    expect(malformed(n, broken)).toBe('l2_data events[1]: updates[0] price_level must be a positive number, got "x"');
    expect(n.orderBook('BTC-USD')!.bestBid).toMatchObject({ price: 100, qty: 1 });
    // A broken message after a lost one: the reset happens at once, its status comes with the next frame.
    expect(malformed(n, at('market_trades', 3, [{ type: 'update', trades: [{ trade_id: '1', product_id: 'BTC-USD', price: '0', size: '1', side: 'BUY', time: T }] }]))).toBe(
      'market_trades trades[0]: price must be a positive number, got "0"',
    );
    expect(ctx.calls).toEqual([['BTC-USD', 'sequence_num gap: expected 2, got 3']]);
    const next = run(n, at('heartbeats', 4, [{}]));
    expect(next.label).toBe('heartbeat');
    expect(statuses(next.events).map((e) => [e.symbol, e.status, e.reason])).toEqual([['BTC-USD', 'book_reset', 'sequence_num gap: expected 2, got 3']]);
    expect(run(n, at('heartbeats', 5, [{}])).events).toEqual([]);
  });

  it('a sequence_num gap resets and resubscribes every level2 book of the connection (it cannot tell whose message was lost)', () => {
    const ctx = resyncSpy();
    const n = new CoinbaseNormalizer('coinbase-advanced', ctx);
    run(n, at('subscriptions', 0, [{ subscriptions: { level2: ['BTC-USD', 'ETH-USD'], market_trades: ['BTC-USD', 'ETH-USD', 'SOL-USD'] } }]));
    run(n, at('l2_data', 1, [l2Event('snapshot', 'BTC-USD', [['bid', '100', '1'], ['offer', '101', '1']])]));
    run(n, at('l2_data', 2, [l2Event('snapshot', 'ETH-USD', [['bid', '10', '1'], ['offer', '11', '1']])]));
    run(n, at('market_trades', 3, [{ type: 'update', trades: [{ trade_id: '9', product_id: 'SOL-USD', price: '1', size: '1', side: 'BUY', time: T }] }]));
    const gap = run(n, at('heartbeats', 5, [{ heartbeat_counter: '1' }]));
    expect(gap.label).toBe('heartbeat');
    expect(statuses(gap.events).map((s) => [s.symbol, s.status, s.reason])).toEqual([
      ['BTC-USD', 'book_reset', 'sequence_num gap: expected 4, got 5'],
      ['ETH-USD', 'book_reset', 'sequence_num gap: expected 4, got 5'],
    ]);
    expect(ctx.calls.map((c) => c[0])).toEqual(['BTC-USD', 'ETH-USD']);
    // Updates before the resubscription's snapshot are dropped; the snapshot resyncs.
    expect(run(n, at('l2_data', 6, [l2Event('update', 'BTC-USD', [['bid', '100', '5']])])).events).toEqual([]);
    const snap = run(n, at('l2_data', 7, [l2Event('snapshot', 'BTC-USD', [['bid', '100', '3'], ['offer', '101', '1']])]));
    expect(books(snap.events)[0]).toMatchObject({ snapshot: true, seq: 7, bids: [[100, 3]] });
    expect(statuses(snap.events).map((s) => s.status)).toEqual(['book_synced']);
    expect(n.bookReport()).toEqual({ 'BTC-USD': { resyncs: 1 }, 'ETH-USD': { resyncs: 1 } }); // SOL-USD has trades but no book
    // A new connection starts sequence_num over: no gap.
    run(n, { status: 'connected', reason: 'reconnect', symbols: ['BTC-USD', 'ETH-USD', 'SOL-USD'] }, { channel: STATUS_CHANNEL });
    expect(statuses(run(n, at('heartbeats', 0, [{}])).events)).toEqual([]);
    expect(statuses(run(n, at('heartbeats', 1, [{}])).events)).toEqual([]);
    expect(ctx.calls).toHaveLength(2);
  });
});

// ---------------------------------------------------------------- helpers, protocols, registry

describe('coinbase helpers, protocols and registry', () => {
  it('parses ISO times to whole epoch ms, with micro/nanoseconds and offsets', () => {
    expect(isoToMs('2021-04-17T16:43:37.089723Z', 'x', 't')).toBe(Date.UTC(2021, 3, 17, 16, 43, 37, 89));
    expect(isoToMs('2023-02-09T20:32:50.714964855Z', 'x', 't')).toBe(Date.UTC(2023, 1, 9, 20, 32, 50, 714));
    expect(isoToMs('2023-02-09T20:32:50Z', 'x', 't')).toBe(Date.UTC(2023, 1, 9, 20, 32, 50));
    expect(isoToMs('2023-02-09T22:32:50.5+02:00', 'x', 't')).toBe(Date.UTC(2023, 1, 9, 20, 32, 50, 500));
    expect(() => isoToMs(1675975970, 'x', 't')).toThrow(MalformedFrameError);
    expect(coinbaseSymbol('btc-usd')).toBe('BTC-USD');
  });

  it('Exchange protocol: one subscribe with heartbeat; level2 books with ticker and matches; the full channel alone', () => {
    const p = coinbaseProtocol();
    expect(p.venue).toBe('coinbase');
    expect(p.defaultWsUrl).toBe(COINBASE_WS_URL);
    expect(p.defaultRestUrl).toBe(COINBASE_REST_URL);
    expect(p.nativeSymbols(['btc-usd', 'ETH/USD', 'BTC-USD'])).toEqual(['BTC-USD', 'ETH-USD']);
    expect(p.subscribeMessages(['BTC-USD', 'ETH-USD']).map((m) => JSON.parse(m))).toEqual([
      { type: 'subscribe', product_ids: ['BTC-USD', 'ETH-USD'], channels: ['heartbeat', 'ticker', 'matches', 'level2_batch'] },
    ]);
    expect(JSON.parse(coinbaseProtocol({ book: 'full' }).subscribeMessages(['BTC-USD'])[0]!)).toEqual({ type: 'subscribe', product_ids: ['BTC-USD'], channels: ['heartbeat', 'full'] });
    const sent: string[] = [];
    const ctx: ConnectionContext = { send: (d) => sent.push(d), emit: () => {}, fetchText: () => Promise.reject(new Error('unused')), restUrl: 'http://x', log: () => {} };
    coinbaseProtocol({ book: 'level2' }).resync('ETH-USD', ctx);
    expect(sent.map((m) => JSON.parse(m))).toEqual([
      { type: 'unsubscribe', product_ids: ['ETH-USD'], channels: ['level2'] },
      { type: 'subscribe', product_ids: ['ETH-USD'], channels: ['level2'] },
    ]);
  });

  it('Exchange full protocol: fetches the level-3 REST book after a product’s first full-channel message, once per connection, and on resync', async () => {
    const p = coinbaseProtocol({ book: 'full' });
    const fetched: string[] = [];
    const emitted: [string, string | undefined][] = [];
    const ctx: ConnectionContext = {
      send: () => {},
      emit: (d, c) => emitted.push([d, c]),
      fetchText: (url) => {
        fetched.push(url);
        return Promise.resolve(`{"sequence":1,"bids":[],"asks":[]}`);
      },
      restUrl: 'http://127.0.0.1:1',
      log: () => {},
    };
    p.onOpen!(ctx);
    p.subscribeMessages(['BTC-USD', 'ETH-USD']);
    p.onFrame!('{"type":"subscriptions","channels":[]}', ctx);
    p.onFrame!('{"type":"received","product_id":"BTC-USD","sequence":5}', ctx);
    p.onFrame!('{"type":"open","product_id":"BTC-USD","sequence":6}', ctx);
    p.onFrame!('{"type":"match","product_id":"ETH-USD","sequence":6}', ctx);
    await new Promise((r) => setImmediate(r));
    expect(fetched).toEqual(['http://127.0.0.1:1/products/BTC-USD/book?level=3', 'http://127.0.0.1:1/products/ETH-USD/book?level=3']);
    expect(emitted.map((e) => e[1])).toEqual(['rest:/products/BTC-USD/book?level=3', 'rest:/products/ETH-USD/book?level=3']);
    // Both requested: later frames are not even looked at.
    p.onFrame!('{"type":"open","product_id":"BTC-USD","sequence":7}', ctx);
    expect(fetched).toHaveLength(2);
    p.resync('BTC-USD', ctx);
    p.onOpen!(ctx); // a new connection: ask again
    p.onFrame!('{"type":"done","product_id":"ETH-USD","sequence":9}', ctx);
    expect(fetched.slice(2)).toEqual(['http://127.0.0.1:1/products/BTC-USD/book?level=3', 'http://127.0.0.1:1/products/ETH-USD/book?level=3']);
  });

  it('Advanced Trade protocol: one subscribe per channel; resync = unsubscribe + subscribe of level2 for the product', () => {
    const p = coinbaseAdvancedProtocol();
    expect(p.venue).toBe('coinbase-advanced');
    expect(p.defaultWsUrl).toBe(COINBASE_ADVANCED_WS_URL);
    expect(p.subscribeMessages(['BTC-USD']).map((m) => JSON.parse(m))).toEqual(
      COINBASE_ADVANCED_CHANNELS.map((channel) => ({ type: 'subscribe', product_ids: ['BTC-USD'], channel })),
    );
    expect(COINBASE_ADVANCED_CHANNELS).toEqual(['heartbeats', 'level2', 'market_trades', 'ticker']);
    const sent: string[] = [];
    p.resync('BTC-USD', { send: (d) => sent.push(d), emit: () => {}, fetchText: () => Promise.reject(new Error('unused')), restUrl: '', log: () => {} });
    expect(sent.map((m) => JSON.parse(m))).toEqual([
      { type: 'unsubscribe', product_ids: ['BTC-USD'], channel: 'level2' },
      { type: 'subscribe', product_ids: ['BTC-USD'], channel: 'level2' },
    ]);
  });

  it('registers both adapters', () => {
    expect(getAdapter('coinbase')).toBe(coinbaseAdapter);
    expect(getAdapter('coinbase-advanced')).toBe(coinbaseAdvancedAdapter);
    expect(coinbaseAdapter.createNormalizer().venue).toBe('coinbase');
    expect(coinbaseAdvancedAdapter.createNormalizer().venue).toBe('coinbase-advanced');
  });
});
