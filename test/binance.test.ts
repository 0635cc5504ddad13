import { describe, expect, it } from 'vitest';
import { eventSchema, type Book, type CanonicalEvent, type FeedStatus, type Quote, type Trade } from '../src/core/events.ts';
import { VigilError, ERR } from '../src/core/errors.ts';
import { binanceAdapter, backoffDelay, binanceStreamUrl, BACKOFF_CAP_MS, type BinanceNormalizer } from '../src/feeds/binance.ts';
import { getAdapter, venues } from '../src/feeds/registry.ts';
import { BINANCE_QUOTE_ASSETS, binanceSymbol, binanceWireSymbol } from '../src/feeds/symbols.ts';
import { MalformedFrameError, STATUS_CHANNEL, type Normalizer, type RawFrame } from '../src/feeds/types.ts';
import { readRecords } from '../src/replay/formats.ts';
import { normalizeFrame, rawFrame, rejectionReason } from './helpers/frames.ts';

const DATA = new URL('../../shared/data/exchange_raw/', import.meta.url).pathname;
const HFT = `${DATA}hftbacktest/spot_btcusdt_20240808.gz`;
const CF_BINANCE = `${DATA}cryptofeed/BINANCE.ws.1.0.gz`;

interface Normalized {
  line: number;
  frame: RawFrame;
  events: CanonicalEvent[];
  ignored?: string;
  error?: Error;
}

async function normalizeFile(path: string): Promise<{ results: Normalized[]; skipped: number; malformedLines: number; normalizer: Normalizer }> {
  const n = binanceAdapter.createNormalizer();
  const results: Normalized[] = [];
  let skipped = 0;
  let malformedLines = 0;
  for await (const rec of readRecords(path)) {
    if (rec.type === 'skip') skipped++;
    if (rec.type === 'malformed') malformedLines++;
    if (rec.type !== 'frame') continue;
    const events: CanonicalEvent[] = [];
    const r: Normalized = { line: rec.line, frame: rec.frame, events };
    try {
      const label = n.normalize(rec.frame, events);
      if (label !== undefined) r.ignored = label;
    } catch (err) {
      r.error = err as Error;
    }
    results.push(r);
  }
  return { results, skipped, malformedLines, normalizer: n };
}

const frame = (data: unknown, extra: Partial<RawFrame> = {}): RawFrame => rawFrame('binance', 1_700_000_000_123.75, data, extra);
const normalizeOne = (data: unknown, extra: Partial<RawFrame> = {}) => normalizeFrame(binanceAdapter.createNormalizer(), frame(data, extra));
const malformedReason = (data: unknown, extra: Partial<RawFrame> = {}): string => rejectionReason(binanceAdapter.createNormalizer(), frame(data, extra), true);

describe('binance normalizer on the hftbacktest capture (spot BTCUSDT, 41,249 frames)', async () => {
  const { results, malformedLines, normalizer } = await normalizeFile(HFT);
  const all = results.flatMap((r) => r.events);
  const byLine = new Map(results.map((r) => [r.line, r]));

  it('produces exactly the frames the README lists, nothing malformed or ignored', () => {
    expect(results).toHaveLength(41_249);
    expect(malformedLines).toBe(0);
    expect(results.filter((r) => r.error !== undefined).map((r) => `${r.line}: ${r.error?.message}`)).toEqual([]);
    expect(results.filter((r) => r.ignored !== undefined)).toHaveLength(0);
    const trades = all.filter((e) => e.kind === 'trade');
    const quotes = all.filter((e) => e.kind === 'quote');
    const books = all.filter((e): e is Book => e.kind === 'book');
    expect(trades).toHaveLength(9_757);
    expect(quotes).toHaveLength(28_040);
    // 3,451 depth diffs: the two older than the snapshot (u <= lastUpdateId) are dropped by the sync
    // procedure, the third (line 6) bridges the snapshot and is applied with it on line 8.
    expect(books.filter((b) => !b.snapshot)).toHaveLength(3_449);
    const snapshots = books.filter((b) => b.snapshot);
    expect(snapshots).toHaveLength(1);
    expect(snapshots[0]?.symbol).toBe('BTC-USDT');
    expect(all.filter((e) => e.kind === 'status').map((e) => [e.status, e.symbol])).toEqual([['book_synced', 'BTC-USDT']]);
    expect(all).toHaveLength(9_757 + 28_040 + 3_449 + 1 + 1);
    expect(results.filter((r) => r.events.length === 0).map((r) => r.line)).toEqual([1, 2, 6]);
    expect(new Set(all.map((e) => (e as Trade).symbol))).toEqual(new Set(['BTC-USDT']));
    expect(new Set(all.map((e) => (e as Trade).venue))).toEqual(new Set(['binance']));
  });

  it('rebuilds a book that matches bookTicker after every diff (bookReport)', () => {
    const report = normalizer.bookReport!();
    expect(Object.keys(report)).toEqual(['BTC-USDT']);
    const r = report['BTC-USDT']!;
    expect(r.resyncs).toBe(0);
    // Every applied diff but none before the first bookTicker can be compared; the capture ends with a
    // bookTicker after the last diff.
    expect(r.compared).toBe(3_449);
    expect(r.matched! / r.compared!).toBeGreaterThanOrEqual(0.999);
    expect(r.matched).toBe(3_449);
  });

  it('maps a trade where the buyer is the maker (m=true) to an aggressive sell', () => {
    // line 4: {"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true}
    const r = byLine.get(4);
    expect(r?.events).toEqual([
      {
        kind: 'trade',
        venue: 'binance',
        symbol: 'BTC-USDT',
        ts: 1723161255342,
        recvTs: r?.frame.recvTs,
        price: 61837.63,
        qty: 0.02,
        side: 'sell',
        tradeId: '3735683259',
      },
    ]);
    expect(r?.frame.recvTs).toBeCloseTo(1723161254087.896568, 3);
  });

  it('maps m=false to an aggressive buy', () => {
    // line 233: "t":3735683305,"p":"61828.02000000","q":"0.00810000","T":1723161255856,"m":false
    const t = byLine.get(233)?.events[0] as Trade;
    expect(t).toMatchObject({ kind: 'trade', side: 'buy', tradeId: '3735683305', price: 61828.02, qty: 0.0081, ts: 1723161255856 });
    const sides = all.filter((e): e is Trade => e.kind === 'trade').map((e) => e.side);
    // 4,103 frames in the capture carry "m":false
    expect(sides.filter((s) => s === 'buy')).toHaveLength(4_103);
    expect(sides.filter((s) => s === 'unknown')).toHaveLength(0);
  });

  it('maps bookTicker (no event time: ts = floor(recvTs), seq = u)', () => {
    // line 3: {"u":50093239212,"s":"BTCUSDT","b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}
    const r = byLine.get(3);
    const q = r?.events[0] as Quote;
    expect(q).toEqual({
      kind: 'quote',
      venue: 'binance',
      symbol: 'BTC-USDT',
      ts: 1723161254087,
      recvTs: r?.frame.recvTs,
      bidPx: 61837.63,
      bidQty: 3.78826,
      askPx: 61837.64,
      askQty: 1.54698,
      seq: 50093239212,
    });
    expect(q.recvTs).not.toBe(q.ts); // recvTs keeps the fractional milliseconds
    expect(Number.isInteger(q.ts)).toBe(true);
  });

  it('maps depthUpdate (ts = E, firstSeq = U, seq = u, levels as numbers)', async () => {
    // Line 1 is older than the capture's snapshot; give it a snapshot it bridges (U <= L+1 <= u).
    const n = binanceAdapter.createNormalizer();
    const out: CanonicalEvent[] = [];
    n.normalize(frame({ lastUpdateId: 50093239188, bids: [['61737.63', '1']], asks: [['61837.64', '1']] }, { channel: 'rest:depth:BTCUSDT' }), out);
    expect(out).toEqual([]); // a snapshot waits for a diff that bridges it
    n.normalize(byLine.get(1)!.frame, out);
    expect(out.map((e) => e.kind)).toEqual(['book', 'status', 'book']);
    const b = out[2] as Book;
    expect(b).toMatchObject({ kind: 'book', snapshot: false, ts: 1723161255208, firstSeq: 50093239189, seq: 50093239202 });
    expect(b.prevSeq).toBeUndefined();
    expect(b.bids[0]).toEqual([61737.63, 0]);
    expect(b.asks[0]).toEqual([61837.64, 1.54698]);
    expect(b.bids).toHaveLength(3);
    // Line 6 bridges the real snapshot and comes out with it on line 8.
    expect(byLine.get(8)?.events.map((e) => e.kind)).toEqual(['book', 'status', 'book']);
    expect(byLine.get(8)?.events[2]).toMatchObject({ snapshot: false, ts: 1723161255408, firstSeq: 50093239208, seq: 50093239224, recvTs: byLine.get(6)?.frame.recvTs });
  });

  it('maps the REST snapshot on line 8 (symbol from the preceding depthUpdate, seq = lastUpdateId)', () => {
    const r = byLine.get(8);
    const b = r?.events[0] as Book;
    expect(b.snapshot).toBe(true);
    expect(b.seq).toBe(50093239218);
    expect(b.firstSeq).toBe(50093239218);
    expect(b.symbol).toBe('BTC-USDT');
    expect(b.ts).toBe(Math.floor(r?.frame.recvTs ?? NaN));
    expect(b.bids).toHaveLength(1000);
    expect(b.asks).toHaveLength(1000);
    expect(b.bids[0]).toEqual([61837.63, 3.78826]);
    expect(b.asks[0]).toEqual([61837.64, 1.54698]);
    expect(b.bids[999]).toEqual([61631.55, 0.00014]);
  });

  it('every produced event passes the canonical schema (every 25th event plus all snapshots and first of each kind)', () => {
    const sample = all.filter((e, i) => i % 25 === 0 || (e.kind === 'book' && e.snapshot) || i < 10);
    expect(sample.length).toBeGreaterThan(1_600);
    for (const ev of sample) expect(eventSchema.parse(ev)).toEqual(ev);
  });

  it('book diffs are contiguous: each U is the previous u + 1 (no frame lost or reordered)', () => {
    const diffs = all.filter((e): e is Book => e.kind === 'book' && !e.snapshot);
    let gaps = 0;
    for (let i = 1; i < diffs.length; i++) if (diffs[i]!.firstSeq !== diffs[i - 1]!.seq + 1) gaps++;
    expect(gaps).toBe(0);
  });
});

describe('binance normalizer on the cryptofeed capture (4 symbols, 2021)', async () => {
  const { results, skipped, malformedLines, normalizer } = await normalizeFile(CF_BINANCE);
  const all = results.flatMap((r) => r.events);

  it('counts 177 depth updates (buffered: the capture has no snapshot), 84 quotes, 2 aggTrades, 2 ignored klines', () => {
    expect(skipped).toBe(1); // the connection line
    expect(malformedLines).toBe(0);
    expect(results).toHaveLength(265);
    expect(results.filter((r) => r.error)).toHaveLength(0);
    const diffs = results.filter((r) => r.frame.data.includes('"depthUpdate"'));
    expect(diffs).toHaveLength(177);
    // Without a REST snapshot no book is ever in sync, so no book event: the diffs wait in the buffer.
    expect(all.filter((e) => e.kind === 'book')).toHaveLength(0);
    for (const d of diffs) expect([d.events, d.ignored]).toEqual([[], undefined]);
    expect(Object.values(normalizer.bookReport!()).map((r) => r.compared)).toEqual([0, 0, 0, 0]);
    expect(all.filter((e) => e.kind === 'quote')).toHaveLength(84);
    const trades = all.filter((e): e is Trade => e.kind === 'trade');
    expect(trades).toHaveLength(2);
    expect(results.filter((r) => r.ignored === 'kline')).toHaveLength(2);
    expect(results.filter((r) => r.ignored !== undefined)).toHaveLength(2);
    for (const ev of all) eventSchema.parse(ev);
  });

  it('normalizes the symbols', () => {
    // RUNE-EUR has only depth diffs in this capture (buffered, no events); its book state exists.
    expect(new Set(all.map((e) => (e as Book).symbol))).toEqual(new Set(['NKN-USDT', 'BLZ-ETH', 'LRC-BTC']));
    expect(new Set(Object.keys(normalizer.bookReport!()))).toEqual(new Set(['NKN-USDT', 'BLZ-ETH', 'LRC-BTC', 'RUNE-EUR']));
  });

  it('maps aggTrade ids (a, f, l) and time', () => {
    const trades = all.filter((e): e is Trade => e.kind === 'trade');
    // {"e":"aggTrade","E":1633998523963,"s":"NKNUSDT","a":15683430,"p":"0.35280000","q":"58.00000000","f":19862790,"l":19862790,"T":1633998523963,"m":false}
    expect(trades[0]).toMatchObject({
      symbol: 'NKN-USDT',
      tradeId: '15683430',
      firstTradeId: '19862790',
      lastTradeId: '19862790',
      price: 0.3528,
      qty: 58,
      side: 'buy',
      ts: 1633998523963,
    });
    expect(trades[1]).toMatchObject({ symbol: 'LRC-BTC', tradeId: '9213679', price: 0.00000638 });
  });

  it('takes recvTs from the cryptofeed seconds timestamp', () => {
    const first = results[0];
    expect(first?.line).toBe(2);
    expect(first?.frame.recvTs).toBeCloseTo(1633998512063.3569, 2);
    expect(first?.frame.data).toContain('"U":499869750,"u":499869752');
    expect(first?.events).toEqual([]); // buffered depth diff
    const q = results.find((r) => r.events[0]?.kind === 'quote')!;
    expect(q.events[0]!.recvTs).toBe(q.frame.recvTs);
    expect(q.frame.recvTs).toBeGreaterThan(1633998512063);
  });
});

describe('binance normalizer: frame shapes and malformed frames', () => {
  const trade = { e: 'trade', E: 1723161255343, s: 'BTCUSDT', t: 42, p: '61837.63', q: '0.02', T: 1723161255342, m: true, M: true };

  it('accepts the bare payload without the combined-stream envelope', () => {
    const { events } = normalizeOne(trade);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ kind: 'trade', symbol: 'BTC-USDT', tradeId: '42', recvTs: 1_700_000_000_123.75 });
    const wrapped = normalizeOne({ stream: 'btcusdt@trade', data: trade }).events;
    expect(wrapped).toEqual(events);
  });

  it('labels subscription acks and known but unmodelled streams', () => {
    expect(normalizeOne({ result: null, id: 1 })).toEqual({ events: [], label: 'subscription-ack' });
    expect(normalizeOne({ stream: 'btcusdt@ticker', data: { e: '24hrTicker', E: 1, s: 'BTCUSDT' } }).label).toBe('24hrTicker');
    expect(normalizeOne({ stream: 'btcusdt@kline_1m', data: { e: 'kline', E: 1, s: 'BTCUSDT', k: {} } }).label).toBe('kline');
    expect(normalizeOne({ stream: '!miniTicker@arr', data: [{ e: '24hrMiniTicker', s: 'BTCUSDT' }] }).label).toBe('24hrMiniTicker');
    expect(normalizeOne({ stream: 'btcusdt@depth5', data: { lastUpdateId: 5, bids: [], asks: [] } }).label).toBe('partialDepth');
  });

  it('keeps pu as prevSeq and uses E for a bookTicker that has it', () => {
    const n = binanceAdapter.createNormalizer();
    const out: CanonicalEvent[] = [];
    n.normalize(frame({ lastUpdateId: 5, bids: [], asks: [] }, { channel: 'rest:depth:BTCUSDT' }), out);
    n.normalize(frame({ e: 'depthUpdate', E: 10, s: 'BTCUSDT', U: 5, u: 7, pu: 4, b: [['1.5', '2']], a: [] }), out);
    const d = out[2] as Book;
    expect(d).toMatchObject({ firstSeq: 5, seq: 7, prevSeq: 4, bids: [[1.5, 2]], asks: [] });
    const q = normalizeOne({ e: 'bookTicker', u: 9, E: 1234, T: 1200, s: 'ETHBTC', b: '0.05', B: '1', a: '0.06', A: '2' }).events[0] as Quote;
    expect(q).toMatchObject({ symbol: 'ETH-BTC', ts: 1234, seq: 9 });
    const q2 = normalizeOne({ u: 9, s: 'ETHBTC', b: '0', B: '0', a: '0.06', A: '2' }).events[0] as Quote;
    expect(q2.bidPx).toBe(0); // an empty side is a zero price, not an error
    expect(q2.ts).toBe(1_700_000_000_123);
  });

  it('finds the snapshot symbol from the channel, else from the last depthUpdate, else fails', () => {
    const snap = { lastUpdateId: 77, bids: [['100.5', '1']], asks: [['101', '0.5']] };
    const n0 = binanceAdapter.createNormalizer();
    const out0: CanonicalEvent[] = [];
    n0.normalize(frame(snap, { channel: 'rest:depth:ETHBTC' }), out0);
    n0.normalize(frame({ e: 'depthUpdate', E: 1, s: 'ETHBTC', U: 70, u: 80, b: [], a: [] }), out0);
    expect(out0[0]).toMatchObject({ symbol: 'ETH-BTC', snapshot: true, seq: 77, firstSeq: 77, ts: 1_700_000_000_123 });

    const n = binanceAdapter.createNormalizer();
    const out: CanonicalEvent[] = [];
    n.normalize(frame({ stream: 'bnbusdt@depth@100ms', data: { e: 'depthUpdate', E: 1, s: 'BNBUSDT', U: 1, u: 78, b: [], a: [] } }), out);
    n.normalize(frame(snap), out);
    expect((out[0] as Book).symbol).toBe('BNB-USDT');
    expect((out[0] as Book).snapshot).toBe(true);

    expect(malformedReason(snap)).toBe('depth snapshot without symbol');
  });

  it('rejects broken frames with precise reasons', () => {
    expect(malformedReason('{"stream":"btcusdt@trade","data":{')).toMatch(/^invalid JSON/);
    expect(malformedReason('')).toMatch(/^invalid JSON/);
    expect(malformedReason({ ...trade, p: 'NaN' })).toBe('trade: price (p) must be a positive number, got "NaN"');
    expect(malformedReason({ ...trade, p: '0' })).toMatch(/price \(p\) must be a positive number/);
    expect(malformedReason({ ...trade, p: '-1' })).toMatch(/price \(p\)/);
    expect(malformedReason({ ...trade, q: undefined })).toBe('trade: qty (q) must be a non-negative number, got missing');
    expect(malformedReason({ ...trade, q: '' })).toMatch(/qty \(q\)/);
    expect(malformedReason({ ...trade, T: 'soon' })).toMatch(/trade time \(T\)/);
    expect(malformedReason({ ...trade, t: undefined })).toMatch(/trade id \(t\)/);
    expect(malformedReason({ ...trade, s: 'XYZ' })).toMatch(/symbol "XYZ" has no known quote asset/);
    expect(malformedReason({ code: -1121, msg: 'Invalid symbol.' })).toBe('error frame: Invalid symbol. (code -1121)');
    expect(malformedReason({ error: { code: 2, msg: 'Invalid request: unknown property' }, id: 3 })).toMatch(/Invalid request: unknown property/);
    expect(malformedReason({ foo: 1, bar: 2 })).toBe('unknown structure: object with keys {foo,bar}');
    expect(malformedReason({ e: 'mysteryEvent', s: 'BTCUSDT' })).toBe('unknown event type "mysteryEvent"');
    expect(malformedReason('42')).toMatch(/^unknown structure/);
    expect(malformedReason({ e: 'depthUpdate', E: 1, s: 'BTCUSDT', U: 1, u: 2, b: [['1', 'x']], a: [] })).toMatch(/bids \(b\)\[0\] qty/);
    expect(malformedReason({ e: 'depthUpdate', E: 1, s: 'BTCUSDT', U: 1, u: 2, b: [['1', '1']] })).toMatch(/asks \(a\) must be an array/);
    expect(malformedReason({ e: 'depthUpdate', E: 1, s: 'BTCUSDT', U: 1.5, u: 2, b: [], a: [] })).toMatch(/first update id \(U\)/);
    expect(malformedReason({ u: 1, s: 'BTCUSDT', b: 'Infinity', B: '1', a: '1', A: '1' })).toMatch(/bid price \(b\)/);
    expect(malformedReason(trade, { recvTs: NaN })).toMatch(/recvTs/);
  });
});

describe('binance symbols', () => {
  it.each([
    ['BTCUSDT', 'BTC-USDT'],
    ['btcusdt', 'BTC-USDT'],
    ['ETHBTC', 'ETH-BTC'],
    ['BTCFDUSD', 'BTC-FDUSD'],
    ['BTCTUSD', 'BTC-TUSD'],
    ['BNBBUSD', 'BNB-BUSD'],
    ['ETHUSDC', 'ETH-USDC'],
    ['USDTTRY', 'USDT-TRY'],
    ['BTCBIDR', 'BTC-BIDR'],
    ['BTCIDRT', 'BTC-IDRT'],
    ['SHIBDOGE', 'SHIB-DOGE'],
    ['RUNEEUR', 'RUNE-EUR'],
    ['BLZETH', 'BLZ-ETH'],
    ['1INCHUSDT', '1INCH-USDT'],
    ['EURUSDT', 'EUR-USDT'],
    ['BTCUSD', 'BTC-USD'],
  ])('%s → %s', (raw, canonical) => {
    expect(binanceSymbol(raw)).toBe(canonical);
    expect(binanceSymbol(raw)).toBe(canonical); // memoized path
  });

  it.each(['FOOBAR', 'USDT', '', 'BTC-USDT', 'BTC USDT'])('rejects %j', (raw) => {
    expect(() => binanceSymbol(raw)).toThrow(MalformedFrameError);
  });

  it('keeps the quote list in one constant and converts back to the wire form', () => {
    expect(BINANCE_QUOTE_ASSETS).toContain('FDUSD');
    expect(new Set(BINANCE_QUOTE_ASSETS).size).toBe(BINANCE_QUOTE_ASSETS.length);
    expect(binanceWireSymbol('BTC-USDT')).toBe('BTCUSDT');
    expect(binanceWireSymbol('ethbtc')).toBe('ETHBTC');
  });
});

describe('registry and connection helpers', () => {
  it('returns the binance adapter and rejects unknown venues with a VigilError listing the known ones', () => {
    expect(getAdapter('binance')).toBe(binanceAdapter);
    expect(venues.binance?.name).toBe('binance');
    expect(binanceAdapter.createNormalizer().venue).toBe('binance');
    let err: unknown;
    try {
      getAdapter('nosuchvenue');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VigilError);
    expect((err as VigilError).code).toBe(ERR.FEED);
    expect((err as VigilError).statusCode).toBe(400);
    expect((err as VigilError).message).toMatch(/nosuchvenue.*binance/);
    expect(() => getAdapter('toString')).toThrow(VigilError);
  });

  it('builds the combined-stream URL with lower-case streams', () => {
    expect(binanceStreamUrl('wss://stream.binance.com:9443/', ['BTC-USDT', 'ETHBTC'])).toBe(
      'wss://stream.binance.com:9443/stream?streams=btcusdt@trade/btcusdt@bookTicker/btcusdt@depth@100ms/ethbtc@trade/ethbtc@bookTicker/ethbtc@depth@100ms',
    );
  });

  it('backs off exponentially with jitter, capped at 30 s', () => {
    expect(backoffDelay(0, () => 0)).toBe(250);
    expect(backoffDelay(0, () => 1)).toBe(500);
    expect(backoffDelay(3, () => 1)).toBe(4000);
    expect(backoffDelay(20, () => 1)).toBe(BACKOFF_CAP_MS);
    expect(backoffDelay(1000, () => 0)).toBe(BACKOFF_CAP_MS / 2);
    const d = backoffDelay(2);
    expect(d).toBeGreaterThanOrEqual(1000);
    expect(d).toBeLessThanOrEqual(2000);
  });
});

describe('binance spot order-book sync (hand-made frames)', () => {
  type L = [string, string][];
  const depth = (U: number, u: number, b: L = [], a: L = [], s = 'BTCUSDT') =>
    frame({ stream: `${s.toLowerCase()}@depth@100ms`, data: { e: 'depthUpdate', E: 1_000 + u, s, U, u, b, a } });
  const snap = (lastUpdateId: number, bids: L, asks: L, s = 'BTCUSDT') => frame({ lastUpdateId, bids, asks }, { channel: `rest:depth:${s}` });
  const ticker = (u: number, b: string, B: string, a: string, A: string) => frame({ stream: 'btcusdt@bookTicker', data: { u, s: 'BTCUSDT', b, B, a, A } });
  const status = (st: string, symbols: string[], reason = 'why') => frame({ status: st, reason, symbols }, { channel: STATUS_CHANNEL });

  function setup() {
    const resyncs: [string, string][] = [];
    const n = binanceAdapter.createNormalizer({ requestResync: (s, r) => resyncs.push([s, r]) }) as BinanceNormalizer;
    const run = (f: RawFrame): CanonicalEvent[] => {
      const out: CanonicalEvent[] = [];
      n.normalize(f, out);
      return out;
    };
    const levels = (sym = 'BTC-USDT') => {
      const b = n.orderBook(sym)!.book;
      return { bids: b.bids.levels.map((l) => [l.price, l.qty]), asks: b.asks.levels.map((l) => [l.price, l.qty]) };
    };
    return { n, run, resyncs, levels };
  }
  const kinds = (evs: CanonicalEvent[]) => evs.map((e) => (e.kind === 'book' ? `book${e.snapshot ? ':snap' : ''}:${e.seq}` : e.kind === 'status' ? `status:${e.status}` : e.kind));

  it('buffers diffs until the snapshot, drops those it covers, applies the bridging one and the rest in order', () => {
    const { n, run, levels } = setup();
    expect(run(depth(1, 5, [['100', '9']]))).toEqual([]);
    expect(run(depth(6, 9, [['101', '2']]))).toEqual([]);
    expect(run(depth(10, 12, [], [['105', '1']]))).toEqual([]);
    expect(n.orderBook('BTC-USDT')!.synced).toBe(false);
    const out = run(snap(8, [['100', '1'], ['99', '3']], [['105', '2']]));
    // 1..5 is older than the snapshot (u <= 8) and dropped; 6..9 bridges it (U <= 9 <= u).
    expect(kinds(out)).toEqual(['book:snap:8', 'status:book_synced', 'book:9', 'book:12']);
    expect(out[1]).toMatchObject({ symbol: 'BTC-USDT', reason: 'snapshot lastUpdateId=8' });
    expect(levels()).toEqual({ bids: [[101, 2], [100, 1], [99, 3]], asks: [[105, 1]] });
    expect(kinds(run(depth(13, 13, [['101', '0']])))).toEqual(['book:13']);
    expect(levels().bids).toEqual([[100, 1], [99, 3]]);
    expect(run(depth(12, 13))).toEqual([]); // a duplicate is not applied twice…
    expect(n.normalize(depth(12, 13), [])).toBe('depth-duplicate'); // …and labelled
  });

  it('a snapshot newer than every buffered diff waits for the diff that bridges it', () => {
    const { run } = setup();
    expect(run(depth(1, 3))).toEqual([]);
    expect(run(snap(7, [['100', '1']], [['101', '1']]))).toEqual([]);
    expect(run(depth(4, 6))).toEqual([]); // still older
    expect(kinds(run(depth(7, 9)))).toEqual(['book:snap:7', 'status:book_synced', 'book:9']);
  });

  it('a snapshot older than the buffered diffs is dropped and a new one requested (not counted as a gap)', () => {
    const { n, run, resyncs } = setup();
    run(depth(10, 12));
    expect(run(snap(5, [['100', '1']], [['101', '1']]))).toEqual([]);
    expect(resyncs).toEqual([['BTCUSDT', 'snapshot lastUpdateId=5 is older than the first buffered diff (U=10)']]);
    expect(kinds(run(snap(11, [['100', '1']], [['101', '1']])))).toEqual(['book:snap:11', 'status:book_synced', 'book:12']);
    expect(n.bookReport()['BTC-USDT']!.resyncs).toBe(0);
  });

  it('a gap → book_reset, book cleared, requestResync for that symbol only, rebuilt from the next snapshot', () => {
    const { n, run, resyncs, levels } = setup();
    run(snap(8, [['100', '1']], [['105', '2']]));
    run(depth(9, 10, [['101', '1']]));
    run(snap(20, [['50', '1']], [['60', '1']], 'ETHBTC'));
    run(depth(21, 22, [], [], 'ETHBTC'));
    const out = run(depth(12, 14, [['102', '1']])); // U should be 11
    expect(kinds(out)).toEqual(['status:book_reset']);
    const reason = 'sequence gap: expected U=11, got U=12 (u=14)';
    expect(out[0]).toMatchObject({ kind: 'status', venue: 'binance', symbol: 'BTC-USDT', status: 'book_reset', reason, ts: 1_014 });
    expect(resyncs).toEqual([['BTCUSDT', reason]]);
    expect(n.orderBook('BTC-USDT')).toMatchObject({ synced: false });
    expect(levels()).toEqual({ bids: [], asks: [] });
    expect(run(depth(15, 16, [['103', '1']]))).toEqual([]); // buffered
    expect(kinds(run(depth(23, 23, [], [], 'ETHBTC')))).toEqual(['book:23']); // the other symbol goes on
    // The new snapshot covers 12..14; 15..16 bridges it.
    expect(kinds(run(snap(14, [['102', '1'], ['100', '1']], [['105', '2']])))).toEqual(['book:snap:14', 'status:book_synced', 'book:16']);
    expect(levels()).toEqual({ bids: [[103, 1], [102, 1], [100, 1]], asks: [[105, 2]] });
    expect(n.bookReport()).toMatchObject({ 'BTC-USDT': { resyncs: 1 }, 'ETH-BTC': { resyncs: 0 } });
  });

  it('labels a snapshot that arrives while the book is synced', () => {
    const { n, run } = setup();
    run(snap(8, [['100', '1']], [['105', '2']]));
    run(depth(9, 9));
    const out: CanonicalEvent[] = [];
    expect(n.normalize(snap(9, [['1', '1']], [['2', '1']]), out)).toBe('snapshot-while-synced');
    expect(out).toEqual([]);
    expect(kinds(run(depth(10, 10)))).toEqual(['book:10']);
  });

  it('status frames: one status event per symbol; disconnected and stale drop the books', () => {
    const { n, run } = setup();
    run(snap(8, [['100', '1']], [['105', '2']]));
    run(depth(9, 9));
    const connected = run(status('connected', ['BTCUSDT', 'ETHBTC'], 'initial connect'));
    expect(connected).toEqual([
      { kind: 'status', venue: 'binance', symbol: 'BTC-USDT', ts: 1_700_000_000_123, recvTs: 1_700_000_000_123.75, status: 'connected', reason: 'initial connect' },
      { kind: 'status', venue: 'binance', symbol: 'ETH-BTC', ts: 1_700_000_000_123, recvTs: 1_700_000_000_123.75, status: 'connected', reason: 'initial connect' },
    ]);
    expect(n.orderBook('BTC-USDT')!.synced).toBe(true); // connected changes nothing
    for (const st of ['disconnected', 'stale']) {
      run(snap(8, [['100', '1']], [['105', '2']]));
      run(depth(9, 9));
      const out = run(status(st, ['BTCUSDT'], 'closed (1006)'));
      expect(out.map((e) => [e.kind, (e as FeedStatus).status, (e as FeedStatus).reason])).toEqual([['status', st, 'closed (1006)']]);
      expect(n.orderBook('BTC-USDT')).toMatchObject({ synced: false });
      expect(n.orderBook('BTC-USDT')!.book.bids.levels).toEqual([]);
      expect(run(depth(10, 10))).toEqual([]); // buffered until a new snapshot
    }
    expect(() => run(status('exploded', ['BTCUSDT']))).toThrow(MalformedFrameError);
    expect(() => run(frame({ status: 'connected', reason: 'x', symbols: 'BTCUSDT' }, { channel: STATUS_CHANNEL }))).toThrow(/symbols must be an array/);
  });

  it('bookReport: the top after each diff is compared with the latest bookTicker at or before it, once a later one arrives', () => {
    const { n, run } = setup();
    const report = () => n.bookReport()['BTC-USDT']!;
    run(ticker(8, '100', '1', '105', '2'));
    run(snap(8, [['100', '1']], [['105', '2']]));
    run(depth(9, 10, [['101', '0.5']])); // top bid 101 × 0.5
    run(ticker(9, '101', '0.5', '105', '2'));
    expect(report()).toEqual({ resyncs: 0, check: 'bbo', compared: 0, matched: 0 }); // ticker 9 <= 10: not decided yet
    run(ticker(11, '101', '0.7', '105', '2')); // 11 > 10: the venue's top at 10 is ticker 9's
    expect(report()).toEqual({ resyncs: 0, check: 'bbo', compared: 1, matched: 1 });
    run(depth(11, 11, [['101', '0.7']]));
    run(depth(12, 12, [], [['104', '1']]));
    run(ticker(12, '101', '0.7', '104', '1')); // decides diff 11 (with ticker 11)
    expect(report()).toEqual({ resyncs: 0, check: 'bbo', compared: 2, matched: 2 });
    run(ticker(13, '101', '0.7', '104', '9')); // decides diff 12 (with ticker 12)
    expect(report()).toEqual({ resyncs: 0, check: 'bbo', compared: 3, matched: 3 });
    run(depth(13, 13, [], [['104', '5']])); // the book says 5, ticker 13 said 9
    run(ticker(20, '101', '0.7', '104', '5'));
    expect(report()).toEqual({ resyncs: 0, check: 'bbo', compared: 4, matched: 3 });
    // A diff whose later bookTicker already arrived (20 > 15) is decided at once, with the latest one <= 15 (13).
    run(depth(14, 15, [], [['104', '9']]));
    expect(report()).toEqual({ resyncs: 0, check: 'bbo', compared: 5, matched: 4 });
  });

  it('bookReport counts mismatches on the real capture when the snapshot is tampered with', async () => {
    const { run, n } = setup();
    let tampered = 0;
    for await (const rec of readRecords(HFT)) {
      if (rec.type !== 'frame') continue;
      const f = rec.frame;
      if (f.data.startsWith('{"lastUpdateId"')) {
        // A phantom best bid no diff ever removes: the rebuilt top is wrong until the real bids rise above it.
        const data = f.data.replace('"bids":[', '"bids":[["61837.63500000","1.00000000"],');
        expect(data).not.toBe(f.data);
        tampered++;
        run({ ...f, data });
      } else run(f);
    }
    expect(tampered).toBe(1);
    const r = n.bookReport()['BTC-USDT']!;
    expect(r.compared).toBe(3_449);
    expect(r.matched).toBe(238); // the diffs after the market moved above 61837.635
  });
});
