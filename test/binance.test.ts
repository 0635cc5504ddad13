import { describe, expect, it } from 'vitest';
import { eventSchema, type Book, type CanonicalEvent, type Quote, type Trade } from '../src/core/events.ts';
import { VigilError, ERR } from '../src/core/errors.ts';
import { binanceAdapter, backoffDelay, binanceStreamUrl, BACKOFF_CAP_MS } from '../src/feeds/binance.ts';
import { getAdapter, venues } from '../src/feeds/registry.ts';
import { BINANCE_QUOTE_ASSETS, binanceSymbol, binanceWireSymbol } from '../src/feeds/symbols.ts';
import { MalformedFrameError, type RawFrame } from '../src/feeds/types.ts';
import { readRecords } from '../src/replay/formats.ts';

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

async function normalizeFile(path: string): Promise<{ results: Normalized[]; skipped: number; malformedLines: number }> {
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
  return { results, skipped, malformedLines };
}

function frame(data: unknown, extra: Partial<RawFrame> = {}): RawFrame {
  return { recvTs: 1_700_000_000_123.75, source: 'binance', data: typeof data === 'string' ? data : JSON.stringify(data), ...extra };
}

function normalizeOne(data: unknown, extra: Partial<RawFrame> = {}): { events: CanonicalEvent[]; label: string | undefined } {
  const events: CanonicalEvent[] = [];
  const label = binanceAdapter.createNormalizer().normalize(frame(data, extra), events);
  return { events, label };
}

function malformedReason(data: unknown, extra: Partial<RawFrame> = {}): string {
  const events: CanonicalEvent[] = [];
  try {
    binanceAdapter.createNormalizer().normalize(frame(data, extra), events);
  } catch (err) {
    expect(err).toBeInstanceOf(MalformedFrameError);
    expect(events).toHaveLength(0);
    return (err as Error).message;
  }
  throw new Error(`expected MalformedFrameError for ${JSON.stringify(data)}`);
}

describe('binance normalizer on the hftbacktest capture (spot BTCUSDT, 41,249 frames)', async () => {
  const { results, malformedLines } = await normalizeFile(HFT);
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
    expect(books.filter((b) => !b.snapshot)).toHaveLength(3_451);
    const snapshots = books.filter((b) => b.snapshot);
    expect(snapshots).toHaveLength(1);
    expect(snapshots[0]?.symbol).toBe('BTC-USDT');
    expect(new Set(all.map((e) => (e as Trade).symbol))).toEqual(new Set(['BTC-USDT']));
    expect(new Set(all.map((e) => (e as Trade).venue))).toEqual(new Set(['binance']));
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

  it('maps depthUpdate (ts = E, firstSeq = U, seq = u, levels as numbers)', () => {
    const b = byLine.get(1)?.events[0] as Book;
    expect(b).toMatchObject({ kind: 'book', snapshot: false, ts: 1723161255208, firstSeq: 50093239189, seq: 50093239202 });
    expect(b.prevSeq).toBeUndefined();
    expect(b.bids[0]).toEqual([61737.63, 0]);
    expect(b.asks[0]).toEqual([61837.64, 1.54698]);
    expect(b.bids).toHaveLength(3);
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
  const { results, skipped, malformedLines } = await normalizeFile(CF_BINANCE);
  const all = results.flatMap((r) => r.events);

  it('counts 177 depth updates, 84 quotes, 2 aggTrades, 2 ignored klines', () => {
    expect(skipped).toBe(1); // the connection line
    expect(malformedLines).toBe(0);
    expect(results).toHaveLength(265);
    expect(results.filter((r) => r.error)).toHaveLength(0);
    expect(all.filter((e) => e.kind === 'book' && !e.snapshot)).toHaveLength(177);
    expect(all.filter((e) => e.kind === 'quote')).toHaveLength(84);
    const trades = all.filter((e): e is Trade => e.kind === 'trade');
    expect(trades).toHaveLength(2);
    expect(results.filter((r) => r.ignored === 'kline')).toHaveLength(2);
    expect(results.filter((r) => r.ignored !== undefined)).toHaveLength(2);
    for (const ev of all) eventSchema.parse(ev);
  });

  it('normalizes the symbols', () => {
    expect(new Set(all.map((e) => (e as Book).symbol))).toEqual(new Set(['NKN-USDT', 'BLZ-ETH', 'LRC-BTC', 'RUNE-EUR']));
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
    expect(first?.events[0]).toMatchObject({ kind: 'book', symbol: 'NKN-USDT', firstSeq: 499869750, seq: 499869752, ts: 1633998512068 });
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
    const d = normalizeOne({ e: 'depthUpdate', E: 10, s: 'BTCUSDT', U: 5, u: 7, pu: 4, b: [['1.5', '2']], a: [] }).events[0] as Book;
    expect(d).toMatchObject({ firstSeq: 5, seq: 7, prevSeq: 4, bids: [[1.5, 2]], asks: [] });
    const q = normalizeOne({ e: 'bookTicker', u: 9, E: 1234, T: 1200, s: 'ETHBTC', b: '0.05', B: '1', a: '0.06', A: '2' }).events[0] as Quote;
    expect(q).toMatchObject({ symbol: 'ETH-BTC', ts: 1234, seq: 9 });
    const q2 = normalizeOne({ u: 9, s: 'ETHBTC', b: '0', B: '0', a: '0.06', A: '2' }).events[0] as Quote;
    expect(q2.bidPx).toBe(0); // an empty side is a zero price, not an error
    expect(q2.ts).toBe(1_700_000_000_123);
  });

  it('finds the snapshot symbol from the channel, else from the last depthUpdate, else fails', () => {
    const snap = { lastUpdateId: 77, bids: [['100.5', '1']], asks: [['101', '0.5']] };
    const fromChannel = normalizeOne(snap, { channel: 'rest:depth:ETHBTC' }).events[0] as Book;
    expect(fromChannel).toMatchObject({ symbol: 'ETH-BTC', snapshot: true, seq: 77, firstSeq: 77, ts: 1_700_000_000_123 });

    const n = binanceAdapter.createNormalizer();
    const out: CanonicalEvent[] = [];
    n.normalize(frame({ stream: 'bnbusdt@depth@100ms', data: { e: 'depthUpdate', E: 1, s: 'BNBUSDT', U: 1, u: 2, b: [], a: [] } }), out);
    n.normalize(frame(snap), out);
    expect((out[1] as Book).symbol).toBe('BNB-USDT');

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
      getAdapter('kraken');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VigilError);
    expect((err as VigilError).code).toBe(ERR.FEED);
    expect((err as VigilError).statusCode).toBe(400);
    expect((err as VigilError).message).toMatch(/kraken.*binance/);
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
