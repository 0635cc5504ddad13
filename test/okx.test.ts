// OKX v5 normalizer on the real cryptofeed capture and on hand-made frames of every message type, the
// checksum, the symbol mapping and the protocol's messages.
import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { eventSchema, type Book, type CanonicalEvent, type FeedStatus, type Quote, type Trade } from '../src/core/events.ts';
import { OrderBook } from '../src/feeds/book/order-book.ts';
import type { ConnectionContext } from '../src/feeds/connection-types.ts';
import { OKX_WS_URL, okxAdapter, okxChecksum, okxInstId, OkxNormalizer, okxProtocol, okxSymbol } from '../src/feeds/okx.ts';
import { getAdapter } from '../src/feeds/registry.ts';
import { MalformedFrameError, STATUS_CHANNEL, type RawFrame } from '../src/feeds/types.ts';
import { readRecords } from '../src/replay/formats.ts';
import { normalizeFrame, rawFrame, rejectionReason } from './helpers/frames.ts';
import { okxBookChecksum, type Lvl } from './helpers/okx-server.ts';

const CAPTURE = new URL('../../shared/data/exchange_raw/cryptofeed/OKX.ws.1.0.gz', import.meta.url).pathname;

async function captureFrames(): Promise<{ frames: RawFrame[]; skipped: number; malformedLines: number }> {
  const frames: RawFrame[] = [];
  let skipped = 0;
  let malformedLines = 0;
  for await (const r of readRecords(CAPTURE)) {
    if (r.type === 'frame') frames.push(r.frame);
    else if (r.type === 'skip') skipped++;
    else if (r.type === 'malformed') malformedLines++;
  }
  return { frames, skipped, malformedLines };
}

interface Outcome {
  events: CanonicalEvent[];
  labels: Record<string, number>;
  errors: string[];
  perFrame: (string | undefined)[];
}

function run(n: OkxNormalizer, frames: readonly RawFrame[]): Outcome {
  const o: Outcome = { events: [], labels: {}, errors: [], perFrame: [] };
  for (const f of frames) {
    const out: CanonicalEvent[] = [];
    try {
      const label = n.normalize(f, out);
      o.perFrame.push(label);
      if (label !== undefined) o.labels[label] = (o.labels[label] ?? 0) + 1;
    } catch (err) {
      expect(err).toBeInstanceOf(MalformedFrameError);
      o.errors.push((err as Error).message);
      o.perFrame.push(`error: ${(err as Error).message}`);
    }
    o.events.push(...out);
  }
  return o;
}

const kinds = (events: CanonicalEvent[]): Record<string, number> => {
  const c: Record<string, number> = {};
  for (const e of events) c[e.kind] = (c[e.kind] ?? 0) + 1;
  return c;
};

const frame = (data: unknown, extra: Partial<RawFrame> = {}): RawFrame => rawFrame('okx', 1_700_000_000_500.25, data, extra);
const one = (n: OkxNormalizer, data: unknown, extra: Partial<RawFrame> = {}) => normalizeFrame(n, frame(data, extra));
const reason = (n: OkxNormalizer, data: unknown, extra: Partial<RawFrame> = {}): string => rejectionReason(n, frame(data, extra), true);

function bookMsg(instId: string, action: 'snapshot' | 'update', d: Record<string, unknown>, channel = 'books'): Record<string, unknown> {
  return { arg: { channel, instId }, action, data: [{ asks: [], bids: [], ts: '1700000000100', ...d }] };
}

const lv = (levels: Lvl[]): string[][] => levels.map(([p, q]) => [p, q, '0', '1']);

describe('okx normalizer on the real capture (cryptofeed OKX.ws.1.0.gz, OKX v5 public, 2022-05)', () => {
  it('normalizes every frame: exact counts, zero malformed, every checksum verified and matched', async () => {
    const { frames, skipped, malformedLines } = await captureFrames();
    expect(skipped).toBe(4); // the connection line and three subscribe requests the client sent
    expect(malformedLines).toBe(0);
    expect(frames).toHaveLength(410);
    expect(new Set(frames.map((f) => f.source))).toEqual(new Set(['okx']));

    const n = new OkxNormalizer();
    const o = run(n, frames);
    expect(o.errors).toEqual([]);
    expect(o.labels).toEqual({ 'subscribe-ack': 18 });
    expect(kinds(o.events)).toEqual({ trade: 74, quote: 28, book: 290, status: 3 });
    const books = o.events.filter((e): e is Book => e.kind === 'book');
    expect(books.filter((b) => b.snapshot)).toHaveLength(3);
    expect(books.filter((b) => !b.snapshot)).toHaveLength(287);
    const statuses = o.events.filter((e): e is FeedStatus => e.kind === 'status');
    expect(statuses.map((s) => [s.symbol, s.status])).toEqual([
      ['BTC-USD-220527', 'book_synced'],
      ['UNI-USD-PERP', 'book_synced'],
      ['BTC-USDT', 'book_synced'],
    ]);
    expect(new Set(o.events.map((e) => (e as Trade).symbol))).toEqual(new Set(['BTC-USD-220527', 'UNI-USD-PERP', 'BTC-USDT']));
    for (const e of o.events) expect(() => eventSchema.parse(e)).not.toThrow();

    // 290 book messages, each with OKX's checksum: all verified against the rebuilt book, all matched.
    expect(n.bookReport()).toEqual({
      'BTC-USD-220527': { resyncs: 0, check: 'checksum', compared: 99, matched: 99 },
      'UNI-USD-PERP': { resyncs: 0, check: 'checksum', compared: 93, matched: 93 },
      'BTC-USDT': { resyncs: 0, check: 'checksum', compared: 98, matched: 98 },
    });

    const trades = o.events.filter((e): e is Trade => e.kind === 'trade');
    expect(trades[0]).toEqual({
      kind: 'trade',
      venue: 'okx',
      symbol: 'BTC-USD-220527',
      ts: 1652459199958,
      recvTs: 1652459225507.0758,
      price: 30218.8,
      qty: 1,
      side: 'buy',
      tradeId: '7849',
    });
    expect(trades.at(-1)).toMatchObject({ symbol: 'BTC-USDT', tradeId: '338476375', price: 30227.6, qty: 0.00000088, side: 'buy', ts: 1652459235576 });
    expect(trades.filter((t) => t.side === 'buy')).toHaveLength(48);
    expect(trades.filter((t) => t.side === 'sell')).toHaveLength(26);
    const quotes = o.events.filter((e): e is Quote => e.kind === 'quote');
    expect(quotes[0]).toEqual({
      kind: 'quote',
      venue: 'okx',
      symbol: 'BTC-USD-220527',
      ts: 1652459223003,
      recvTs: 1652459225506.6085,
      bidPx: 30210.4,
      bidQty: 4,
      askPx: 30220.1,
      askQty: 3,
    });
    // No seqId in 2022: seq is the message time; updates carry no prevSeq.
    const first = books.find((b) => b.symbol === 'BTC-USD-220527')!;
    expect(first).toMatchObject({ snapshot: true, ts: first.seq, firstSeq: first.seq });
    expect(books.filter((b) => b.prevSeq !== undefined)).toHaveLength(0);
    // The rebuilt books are consistent at the end.
    for (const s of ['BTC-USD-220527', 'UNI-USD-PERP', 'BTC-USDT']) {
      const b = n.orderBook(s)!;
      expect(b.synced).toBe(true);
      expect(b.crossed).toBe(false);
    }
  });

  it('detects a corrupted checksum in the real stream: book_reset, resync of that instrument, the others unaffected', async () => {
    const { frames } = await captureFrames();
    const updates = frames.filter((f) => f.data.includes('"books","instId":"BTC-USDT"},"action":"update"'));
    const target = updates[9]!;
    const checksum = (JSON.parse(target.data) as { data: [{ checksum: number }] }).data[0].checksum;
    const tampered = frames.map((f) => (f === target ? { ...f, data: f.data.replace(`"checksum":${checksum}`, `"checksum":${checksum + 1}`) } : f));
    const requests: [string, string][] = [];
    const n = new OkxNormalizer({ requestResync: (s, r) => requests.push([s, r]) });
    const o = run(n, tampered);
    expect(o.errors).toEqual([]);
    const resets = o.events.filter((e): e is FeedStatus => e.kind === 'status' && e.status === 'book_reset');
    expect(resets).toHaveLength(1);
    expect(resets[0]).toMatchObject({ symbol: 'BTC-USDT', reason: expect.stringMatching(new RegExp(`^checksum mismatch: OKX ${checksum + 1}, rebuilt book ${checksum}$`)) });
    expect(requests).toEqual([['BTC-USDT', resets[0]!.reason]]);
    // The bad update and all BTC-USDT updates after it (no new snapshot in the capture) are not book events.
    const btcBooks = o.events.filter((e) => e.kind === 'book' && e.symbol === 'BTC-USDT');
    expect(btcBooks).toHaveLength(1 + 9);
    expect(o.labels['book-not-synced']).toBe(updates.length - 10);
    expect(n.bookReport()['BTC-USDT']).toEqual({ resyncs: 1, check: 'checksum', compared: 11, matched: 10 });
    expect(n.bookReport()['UNI-USD-PERP']).toEqual({ resyncs: 0, check: 'checksum', compared: 93, matched: 93 });
    expect(n.orderBook('BTC-USDT')!.synced).toBe(false);
  });

  it('detects a changed level (checksum kept) the same way', async () => {
    const { frames } = await captureFrames();
    const target = frames.find((f) => f.data.includes('"books","instId":"UNI-USD-SWAP"},"action":"update"') && f.data.includes('"bids":[["'))!;
    const d = JSON.parse(target.data) as { data: [{ bids: string[][] }] };
    const lvl = d.data[0].bids[0]!;
    lvl[1] = String(Number(lvl[1]) + 7);
    const tampered = frames.map((f) => (f === target ? { ...f, data: JSON.stringify(d) } : f));
    const n = new OkxNormalizer();
    const o = run(n, tampered);
    expect(o.errors).toEqual([]);
    expect(o.events.filter((e): e is FeedStatus => e.kind === 'status' && e.status === 'book_reset').map((e) => e.symbol)).toEqual(['UNI-USD-PERP']);
    expect(n.bookReport()['UNI-USD-PERP']!.resyncs).toBe(1);
  });
});

describe('okx checksum', () => {
  it('interleaves bid and ask levels and continues with the longer side, strings as sent, signed', () => {
    const b = new OrderBook();
    b.bids.set(100.5, 1, '100.50', '1.000');
    b.bids.set(100, 2, '100', '2');
    b.bids.set(99, 0.5, '99.0', '0.5');
    b.asks.set(101, 3, '101', '3');
    const text = '100.50:1.000:101:3:100:2:99.0:0.5';
    expect(okxChecksum(b)).toBe(crc32(text) | 0);
    expect(okxChecksum(b)).toBe(okxBookChecksum([['100.50', '1.000'], ['100', '2'], ['99.0', '0.5']], [['101', '3']]));
  });

  it('covers only the top 25 levels of each side', () => {
    const b = new OrderBook();
    const bids: Lvl[] = [];
    const asks: Lvl[] = [];
    for (let i = 0; i < 40; i++) {
      bids.push([String(1000 - i), String(i + 1)]);
      asks.push([String(1001 + i), String(i + 2)]);
      b.bids.set(1000 - i, i + 1, String(1000 - i), String(i + 1));
      b.asks.set(1001 + i, i + 2, String(1001 + i), String(i + 2));
    }
    expect(okxChecksum(b)).toBe(okxBookChecksum(bids, asks));
    b.bids.set(960, 5, '960', '5'); // level 41: outside the checksum
    expect(okxChecksum(b)).toBe(okxBookChecksum(bids, asks));
    b.bids.set(990, 5, '990', '5'); // level 11 changes
    expect(okxChecksum(b)).not.toBe(okxBookChecksum(bids, asks));
  });

  it('checks the snapshot too, and a hand-made book with the right checksum passes', () => {
    const bids: Lvl[] = [['3366.1', '7'], ['3366', '6']];
    const asks: Lvl[] = [['3366.8', '9'], ['3368', '8'], ['3372', '8']];
    const n = new OkxNormalizer();
    const good = one(n, bookMsg('BTC-USDT', 'snapshot', { bids: lv(bids), asks: lv(asks), checksum: okxBookChecksum(bids, asks) }));
    expect(good.events.map((e) => e.kind)).toEqual(['status', 'book']);
    const requests: string[] = [];
    const m = new OkxNormalizer({ requestResync: (s) => requests.push(s) });
    const bad = one(m, bookMsg('BTC-USDT', 'snapshot', { bids: lv(bids), asks: lv(asks), checksum: okxBookChecksum(bids, asks) ^ 1 }));
    expect(bad.events.map((e) => [e.kind, (e as FeedStatus).status])).toEqual([['status', 'book_reset']]);
    expect(requests).toEqual(['BTC-USDT']);
    expect(m.bookReport()['BTC-USDT']).toEqual({ resyncs: 1, check: 'checksum', compared: 1, matched: 0 });
  });
});

describe('okx book sync with seqId / prevSeqId', () => {
  it('follows prevSeqId, accepts keep-alives and sequence resets, resyncs on a gap, rebuilds from the next snapshot', () => {
    const requests: [string, string][] = [];
    const n = new OkxNormalizer({ requestResync: (s, r) => requests.push([s, r]) });
    const inst = 'BTC-USDT-SWAP';
    const snap = one(n, bookMsg(inst, 'snapshot', { bids: lv([['100', '1'], ['99', '2']]), asks: lv([['101', '1']]), seqId: 100, prevSeqId: -1 }));
    expect(snap.events).toEqual([
      { kind: 'status', venue: 'okx', symbol: 'BTC-USDT-PERP', ts: 1700000000100, recvTs: 1700000000500.25, status: 'book_synced', reason: 'snapshot' },
      {
        kind: 'book',
        venue: 'okx',
        symbol: 'BTC-USDT-PERP',
        ts: 1700000000100,
        recvTs: 1700000000500.25,
        seq: 100,
        firstSeq: 100,
        snapshot: true,
        bids: [[100, 1], [99, 2]],
        asks: [[101, 1]],
      },
    ]);
    const upd = one(n, bookMsg(inst, 'update', { bids: lv([['99', '0']]), asks: lv([['101.5', '3']]), seqId: 105, prevSeqId: 100 }));
    expect(upd.events).toEqual([
      {
        kind: 'book',
        venue: 'okx',
        symbol: 'BTC-USDT-PERP',
        ts: 1700000000100,
        recvTs: 1700000000500.25,
        seq: 105,
        firstSeq: 105,
        prevSeq: 100,
        snapshot: false,
        bids: [[99, 0]],
        asks: [[101.5, 3]],
      },
    ]);
    // Keep-alive: no change, seqId = prevSeqId.
    expect(one(n, bookMsg(inst, 'update', { seqId: 105, prevSeqId: 105 }))).toEqual({ events: [], label: 'book-keepalive' });
    // Sequence reset after maintenance: seqId < prevSeqId, prevSeqId still the last seqId.
    const reset = one(n, bookMsg(inst, 'update', { bids: lv([['100', '4']]), seqId: 3, prevSeqId: 105 }));
    expect(reset.events.map((e) => [e.kind, (e as Book).seq])).toEqual([['book', 3]]);
    // Gap.
    const gap = one(n, bookMsg(inst, 'update', { bids: lv([['98', '1']]), seqId: 9, prevSeqId: 7 }));
    expect(gap.events).toEqual([
      {
        kind: 'status',
        venue: 'okx',
        symbol: 'BTC-USDT-PERP',
        ts: 1700000000100,
        recvTs: 1700000000500.25,
        status: 'book_reset',
        reason: 'sequence gap: prevSeqId 7 after seqId 3',
      },
    ]);
    expect(requests).toEqual([[inst, 'sequence gap: prevSeqId 7 after seqId 3']]);
    expect(n.orderBook('BTC-USDT-PERP')!.bids.levels).toEqual([]);
    expect(one(n, bookMsg(inst, 'update', { bids: lv([['97', '1']]), seqId: 10, prevSeqId: 9 }))).toEqual({ events: [], label: 'book-not-synced' });
    const again = one(n, bookMsg(inst, 'snapshot', { bids: lv([['100', '4'], ['98', '1'], ['97', '1']]), asks: lv([['101', '1'], ['101.5', '3']]), seqId: 10, prevSeqId: -1 }));
    expect(again.events.map((e) => (e.kind === 'status' ? e.status : `book:${String((e as Book).snapshot)}`))).toEqual(['book_synced', 'book:true']);
    expect(n.orderBook('BTC-USDT-PERP')!.bids.levels.map((l) => [l.price, l.qty])).toEqual([[100, 4], [98, 1], [97, 1]]);
    expect(n.bookReport()).toEqual({ 'BTC-USDT-PERP': { resyncs: 1 } });
  });

  it('also keeps books50-l2-tbt and books-l2-tbt; books5 (top 5 only) is ignored', () => {
    const n = new OkxNormalizer();
    const a = one(n, bookMsg('ETH-USDT', 'snapshot', { bids: lv([['2000', '1']]), asks: lv([['2001', '1']]), seqId: 1, prevSeqId: -1 }, 'books50-l2-tbt'));
    expect(a.events.map((e) => e.kind)).toEqual(['status', 'book']);
    const b = one(n, bookMsg('ETH-USDT', 'update', { bids: lv([['2000', '2']]), seqId: 2, prevSeqId: 1 }, 'books-l2-tbt'));
    expect(b.events.map((e) => e.kind)).toEqual(['book']);
    expect(one(n, { arg: { channel: 'books5', instId: 'ETH-USDT' }, data: [{ asks: [], bids: [], ts: '1' }] }).label).toBe('books5');
  });

  it('leaves the book untouched when a book frame is broken', () => {
    const n = new OkxNormalizer();
    one(n, bookMsg('BTC-USDT', 'snapshot', { bids: lv([['100', '1']]), asks: lv([['101', '1']]), seqId: 1, prevSeqId: -1 }));
    const before = n.orderBook('BTC-USDT')!.bids.levels.map((l) => ({ ...l }));
    expect(reason(n, bookMsg('BTC-USDT', 'update', { bids: [['100', '5', '0', '1'], ['99', 'x', '0', '1']], seqId: 2, prevSeqId: 1 }))).toBe(
      'books: bids[1] size must be a non-negative number, got "x"',
    );
    expect(n.orderBook('BTC-USDT')!.bids.levels).toEqual(before);
    expect(reason(n, bookMsg('BTC-USDT', 'update', { bids: [['-1', '5']], seqId: 2, prevSeqId: 1 }))).toBe('books: bids[0] price must be a positive number, got "-1"');
    expect(reason(n, bookMsg('BTC-USDT', 'update', { bids: [['1']], seqId: 2, prevSeqId: 1 }))).toBe('books: bids[0] must be [price, size, …], got ["1"]');
    expect(reason(n, bookMsg('BTC-USDT', 'update', { checksum: 'abc', seqId: 2, prevSeqId: 1 }))).toBe('books: checksum must be a 32-bit integer, got "abc"');
    expect(reason(n, bookMsg('BTC-USDT', 'update', { seqId: -5, prevSeqId: 1 }))).toBe('books: seqId must be a non-negative integer, got -5');
    expect(reason(n, { arg: { channel: 'books', instId: 'BTC-USDT' }, action: 'partial', data: [{}] })).toBe('books: action must be "snapshot" or "update", got "partial"');
    expect(reason(n, { arg: { channel: 'books', instId: 'BTC-USDT' }, action: 'update', data: [] })).toBe('books: data must hold exactly one book message, got 0');
    // After all that, the next update in sequence still applies.
    expect(one(n, bookMsg('BTC-USDT', 'update', { bids: lv([['100', '2']]), seqId: 2, prevSeqId: 1 })).events.map((e) => e.kind)).toEqual(['book']);
  });
});

describe('okx trades, tickers, bbo-tbt, events', () => {
  it('maps each trade of a frame (side = taker side)', () => {
    const n = new OkxNormalizer();
    const { events, label } = one(n, {
      arg: { channel: 'trades', instId: 'BTC-USDT-SWAP' },
      data: [
        { instId: 'BTC-USDT-SWAP', tradeId: '130639474', px: '42219.9', sz: '0.12060306', side: 'buy', ts: '1630048897897', count: '3' },
        { instId: 'BTC-USDT-SWAP', tradeId: '130639475', px: '42219.8', sz: '1', side: 'sell', ts: '1630048897898' },
      ],
    });
    expect(label).toBeUndefined();
    expect(events).toEqual([
      { kind: 'trade', venue: 'okx', symbol: 'BTC-USDT-PERP', ts: 1630048897897, recvTs: 1700000000500.25, price: 42219.9, qty: 0.12060306, side: 'buy', tradeId: '130639474' },
      { kind: 'trade', venue: 'okx', symbol: 'BTC-USDT-PERP', ts: 1630048897898, recvTs: 1700000000500.25, price: 42219.8, qty: 1, side: 'sell', tradeId: '130639475' },
    ]);
    expect(one(n, { arg: { channel: 'trades-all', instId: 'BTC-USD-240927' }, data: [{ instId: 'BTC-USD-240927', tradeId: '1', px: '1', sz: '1', side: 'sell', ts: '1' }] }).events[0]).toMatchObject({
      symbol: 'BTC-USD-240927',
    });
    const t = (over: Record<string, unknown>) => ({ arg: { channel: 'trades', instId: 'BTC-USDT' }, data: [{ instId: 'BTC-USDT', tradeId: '1', px: '1', sz: '1', side: 'buy', ts: '1', ...over }] });
    expect(reason(n, t({ side: 'Buy' }))).toBe('trades: side must be "buy" or "sell", got "Buy"');
    expect(reason(n, t({ px: '0' }))).toBe('trades: px must be a positive number, got "0"');
    expect(reason(n, t({ px: 'Infinity' }))).toBe('trades: px must be a positive number, got "Infinity"');
    expect(reason(n, t({ sz: '-1' }))).toBe('trades: sz must be a non-negative number, got "-1"');
    expect(reason(n, t({ ts: '1.5' }))).toBe('trades: ts must be a non-negative integer, got "1.5"');
    expect(reason(n, t({ tradeId: '' }))).toBe('trades: tradeId must be an id, got ""');
    expect(reason(n, t({ instId: 'btc usdt' }))).toBe('invalid OKX instId "btc usdt"');
    expect(reason(n, { arg: { channel: 'trades', instId: 'BTC-USDT' }, data: {} })).toBe('trades: data must be an array, got {}');
  });

  it('maps tickers and bbo-tbt to quotes; an empty side reads as 0', () => {
    const n = new OkxNormalizer();
    const tk = one(n, {
      arg: { channel: 'tickers', instId: 'ETH-USDT-SWAP' },
      data: [{ instType: 'SWAP', instId: 'ETH-USDT-SWAP', last: '2000', lastSz: '1', askPx: '2000.5', askSz: '12', bidPx: '', bidSz: '', ts: '1700000000001' }],
    });
    expect(tk.events).toEqual([
      { kind: 'quote', venue: 'okx', symbol: 'ETH-USDT-PERP', ts: 1700000000001, recvTs: 1700000000500.25, bidPx: 0, bidQty: 0, askPx: 2000.5, askQty: 12 },
    ]);
    const bbo = one(n, { arg: { channel: 'bbo-tbt', instId: 'BTC-USDT' }, data: [{ asks: [['30001', '0.5', '0', '2']], bids: [['30000', '1.25', '0', '3']], ts: '1700000000002', seqId: 42 }] });
    expect(bbo.events).toEqual([
      { kind: 'quote', venue: 'okx', symbol: 'BTC-USDT', ts: 1700000000002, recvTs: 1700000000500.25, bidPx: 30000, bidQty: 1.25, askPx: 30001, askQty: 0.5, seq: 42 },
    ]);
    expect(reason(n, { arg: { channel: 'tickers', instId: 'ETH-USDT' }, data: [{ instId: 'ETH-USDT', bidPx: 'x', bidSz: '1', askPx: '1', askSz: '1', ts: '1' }] })).toBe(
      'tickers: bidPx must be a non-negative number, got "x"',
    );
  });

  it('labels acks, notices and pongs; error events and unknown shapes are malformed with a precise reason', () => {
    const n = new OkxNormalizer();
    expect(one(n, { event: 'subscribe', arg: { channel: 'books', instId: 'BTC-USDT' }, connId: 'a4d3ae55' }).label).toBe('subscribe-ack');
    expect(one(n, { event: 'unsubscribe', arg: { channel: 'books', instId: 'BTC-USDT' }, connId: 'a4d3ae55' }).label).toBe('unsubscribe-ack');
    expect(one(n, { event: 'notice', code: '64008', msg: 'The connection will soon be closed for a service upgrade.', connId: 'x' }).label).toBe('notice');
    expect(one(n, { event: 'channel-conn-count', channel: 'books', connCount: '2', connId: 'x' }).label).toBe('channel-conn-count');
    expect(one(n, 'pong')).toEqual({ events: [], label: 'pong' });
    expect(one(n, { arg: { channel: 'candle1m', instId: 'BTC-USDT' }, data: [['1', '2', '3', '4', '5', '6', '7', '8', '0']] }).label).toBe('candle1m');
    expect(one(n, { arg: { channel: 'funding-rate', instId: 'BTC-USDT-SWAP' }, data: [{}] }).label).toBe('funding-rate');
    expect(reason(n, { event: 'error', code: '60012', msg: 'Invalid request: {"op": "subscribe", "args":[{ "channel" : "block-tickers", "instId" : "LTC-USD-200327"}]}', connId: 'a4d3ae55' })).toBe(
      'OKX error event: Invalid request: {"op": "subscribe", "args":[{ "channel" : "block-tickers", "instId" : "LTC-USD-200327"}]} (code 60012)',
    );
    expect(reason(n, { event: 'error', code: 60013 })).toBe('OKX error event: no message (code 60013)');
    expect(reason(n, { event: 'login-ish' })).toBe('unknown event "login-ish"');
    expect(reason(n, { arg: { channel: 'blocks', instId: 'BTC-USDT' }, data: [] })).toBe('unknown channel "blocks"');
    expect(reason(n, { arg: {}, data: [] })).toBe('push: arg.channel must be a channel name, got missing');
    expect(reason(n, { hello: 1 })).toBe('unknown structure: object with keys {hello} (neither a push with "arg" nor an "event")');
    expect(reason(n, [1, 2])).toBe('unknown structure: expected a JSON object, got "[1,2]"');
    expect(reason(n, 'ping')).toMatch(/^invalid JSON: /);
    expect(reason(n, 'pong', { recvTs: Number.NaN })).toBe('frame recvTs must be a non-negative number, got NaN');
  });
});

describe('okx status frames', () => {
  it('emits one status event per symbol and drops the books on disconnect', () => {
    const n = new OkxNormalizer();
    const status = (data: unknown) => frame(data, { channel: STATUS_CHANNEL, recvTs: 1_700_000_001_000.5 });
    const out: CanonicalEvent[] = [];
    expect(n.normalize(status({ status: 'connected', reason: 'initial connect', symbols: ['BTC-USDT', 'BTC-USDT-SWAP'] }), out)).toBeUndefined();
    expect(out).toEqual([
      { kind: 'status', venue: 'okx', symbol: 'BTC-USDT', ts: 1700000001000, recvTs: 1700000001000.5, status: 'connected', reason: 'initial connect' },
      { kind: 'status', venue: 'okx', symbol: 'BTC-USDT-PERP', ts: 1700000001000, recvTs: 1700000001000.5, status: 'connected', reason: 'initial connect' },
    ]);
    one(n, bookMsg('BTC-USDT-SWAP', 'snapshot', { bids: lv([['100', '1']]), asks: lv([['101', '1']]), seqId: 1, prevSeqId: -1 }));
    expect(n.orderBook('BTC-USDT-PERP')!.synced).toBe(true);
    const out2: CanonicalEvent[] = [];
    n.normalize(status({ status: 'disconnected', reason: 'closed (1006)', symbols: ['BTC-USDT', 'BTC-USDT-SWAP'] }), out2);
    expect(out2.map((e) => [(e as FeedStatus).symbol, (e as FeedStatus).status, (e as FeedStatus).reason])).toEqual([
      ['BTC-USDT', 'disconnected', 'closed (1006)'],
      ['BTC-USDT-PERP', 'disconnected', 'closed (1006)'],
    ]);
    expect(n.orderBook('BTC-USDT-PERP')!.synced).toBe(false);
    expect(one(n, bookMsg('BTC-USDT-SWAP', 'update', { bids: lv([['100', '2']]), seqId: 2, prevSeqId: 1 })).label).toBe('book-not-synced');
    // A disconnect is not a resync.
    expect(n.bookReport()['BTC-USDT-PERP']).toEqual({ resyncs: 0 });
    expect(reason(n, { status: 'gone', reason: 'x', symbols: [] }, { channel: STATUS_CHANNEL })).toBe('status frame: status must be connected, disconnected or stale, got "gone"');
    expect(reason(n, { status: 'stale', reason: 'x', symbols: ['BTC USDT'] }, { channel: STATUS_CHANNEL })).toBe('invalid OKX instId "BTC USDT"');
  });
});

describe('okx symbols and protocol', () => {
  it('maps instIds to canonical symbols and user input to instIds', () => {
    expect(okxSymbol('BTC-USDT')).toBe('BTC-USDT');
    expect(okxSymbol('BTC-USDT-SWAP')).toBe('BTC-USDT-PERP');
    expect(okxSymbol('BTC-USD-SWAP')).toBe('BTC-USD-PERP');
    expect(okxSymbol('BTC-USD-240927')).toBe('BTC-USD-240927');
    expect(okxSymbol('BTC-USD-240927-60000-C')).toBe('BTC-USD-240927-60000-C');
    expect(() => okxSymbol('BTCUSDT')).toThrow(MalformedFrameError);
    expect(okxInstId('btc-usdt')).toBe('BTC-USDT');
    expect(okxInstId('BTC-USDT-PERP')).toBe('BTC-USDT-SWAP');
    expect(okxInstId('BTC-USDT-SWAP')).toBe('BTC-USDT-SWAP');
    expect(okxInstId('eth/usdt')).toBe('ETH-USDT');
    expect(okxInstId('BTC-USD-240927')).toBe('BTC-USD-240927');
    expect(() => okxInstId('BTCUSDT')).toThrow(/cannot read "BTCUSDT" as an OKX instrument/);
  });

  it('subscribes trades, books and tickers, 10 instruments a message; resync resubscribes one book; pings with text', () => {
    const syms = okxProtocol.nativeSymbols(Array.from({ length: 25 }, (_, i) => `C${i}-USDT-PERP`));
    expect(syms[0]).toBe('C0-USDT-SWAP');
    const msgs = okxProtocol.subscribeMessages(syms).map((m) => JSON.parse(m) as { op: string; args: { channel: string; instId: string }[] });
    expect(msgs.map((m) => [m.op, m.args.length])).toEqual([
      ['subscribe', 30],
      ['subscribe', 30],
      ['subscribe', 15],
    ]);
    expect(msgs[0]!.args.slice(0, 3)).toEqual([
      { channel: 'trades', instId: 'C0-USDT-SWAP' },
      { channel: 'books', instId: 'C0-USDT-SWAP' },
      { channel: 'tickers', instId: 'C0-USDT-SWAP' },
    ]);
    const sent: string[] = [];
    const ctx: ConnectionContext = { send: (d) => sent.push(d), emit: () => {}, fetchText: () => Promise.reject(new Error('no')), restUrl: '', log: () => {} };
    okxProtocol.resync('BTC-USDT', ctx);
    expect(sent).toEqual(['{"op":"unsubscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}', '{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}']);
    expect(okxProtocol.url(OKX_WS_URL, syms)).toBe('wss://ws.okx.com:8443/ws/v5/public');
    expect(okxProtocol.appPing).toEqual({ intervalMs: 25_000, message: 'ping' });
    expect(okxProtocol.subscribeRatePerSec).toBe(3);
    expect(getAdapter('okx')).toBe(okxAdapter);
    expect(okxAdapter.createNormalizer().venue).toBe('okx');
  });
});
