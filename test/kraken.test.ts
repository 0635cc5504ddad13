/**
 * Kraken normalizer: the real cryptofeed captures (WebSocket v1, 2021, with REST AssetPairs), and
 * hand-made frames of both formats (v1 arrays, v2 channel objects) for every message type, the book
 * checksum, depth truncation, republished levels, resyncs, status frames and broken frames.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync, crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { eventSchema, type Book, type CanonicalEvent, type FeedStatus, type Quote, type Trade } from '../src/core/events.ts';
import { ERR, VigilError } from '../src/core/errors.ts';
import { OrderBook } from '../src/feeds/book/order-book.ts';
import {
  KRAKEN_BOOK_DEPTH,
  KRAKEN_REST_URL,
  KRAKEN_WS_URL,
  KrakenNormalizer,
  checksumDigits,
  krakenAdapter,
  krakenChecksum,
  krakenChecksumText,
  krakenProtocol,
  krakenSymbol,
  krakenWireSymbol,
} from '../src/feeds/kraken.ts';
import { getAdapter, venues } from '../src/feeds/registry.ts';
import { MalformedFrameError, STATUS_CHANNEL, type RawFrame } from '../src/feeds/types.ts';
import type { ConnectionContext } from '../src/feeds/connection-types.ts';
import { readRecords } from '../src/replay/formats.ts';
import { normalizeFrame, rawFrame, rejectionReason } from './helpers/frames.ts';

const CF = new URL('../../shared/data/exchange_raw/cryptofeed/', import.meta.url).pathname;
const BOOK_FILE = `${CF}KRAKEN.ws.50.0.gz`;
const TICKER_FILE = `${CF}KRAKEN.ws.49.0.gz`;
const TRADE_FILE = `${CF}KRAKEN.ws.48.0.gz`;
const REST_FILE = `${CF}KRAKEN.0.gz`;

const PAIRS_V1 = ['WAVES/EUR', 'XMR/USD', 'KSM/XBT', 'GRT/ETH', 'SC/EUR', 'ETH/CHF', 'OCEAN/XBT', 'OMG/USD', 'XBT/CHF', 'ADA/XBT'];
const SYMBOLS = ['WAVES-EUR', 'XMR-USD', 'KSM-BTC', 'GRT-ETH', 'SC-EUR', 'ETH-CHF', 'OCEAN-BTC', 'OMG-USD', 'BTC-CHF', 'ADA-BTC'];
/** Book update messages per pair in KRAKEN.ws.50.0.gz (all carry a checksum `c`). */
const UPDATES_PER_SYMBOL: Record<string, number> = {
  'WAVES-EUR': 576,
  'XMR-USD': 846,
  'KSM-BTC': 335,
  'GRT-ETH': 20,
  'SC-EUR': 818,
  'ETH-CHF': 317,
  'OCEAN-BTC': 148,
  'OMG-USD': 573,
  'BTC-CHF': 289,
  'ADA-BTC': 347,
};

interface Result {
  line: number;
  frame: RawFrame;
  events: CanonicalEvent[];
  label?: string;
  error?: Error;
}

async function replay(files: string[], normalizer = new KrakenNormalizer()): Promise<{ results: Result[]; skipped: number; malformedLines: number; normalizer: KrakenNormalizer }> {
  const results: Result[] = [];
  let skipped = 0;
  let malformedLines = 0;
  for (const file of files) {
    for await (const rec of readRecords(file)) {
      if (rec.type === 'skip') skipped++;
      if (rec.type === 'malformed') malformedLines++;
      if (rec.type !== 'frame') continue;
      const r: Result = { line: rec.line, frame: rec.frame, events: [] };
      try {
        const label = normalizer.normalize(rec.frame, r.events);
        if (label !== undefined) r.label = label;
      } catch (err) {
        r.error = err as Error;
      }
      results.push(r);
    }
  }
  return { results, skipped, malformedLines, normalizer };
}

/** The frames of a cryptofeed capture as text (`<ts>: <frame>` lines), without sent frames and markers. */
function captureFrames(file: string): { recvTs: number; data: string }[] {
  return gunzipSync(readFileSync(file))
    .toString('utf8')
    .split('\n')
    .filter((l) => /^\d/.test(l))
    .map((l) => {
      const i = l.indexOf(': ');
      return { recvTs: Number(l.slice(0, i)) * 1000, data: l.slice(i + 2) };
    });
}

function labels(results: Result[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of results) if (r.label !== undefined) out[r.label] = (out[r.label] ?? 0) + 1;
  return out;
}

const frame = (data: unknown, extra: Partial<RawFrame> = {}): RawFrame => rawFrame('kraken', 1_700_000_000_123.5, data, extra);

function run(n: KrakenNormalizer, data: unknown, extra: Partial<RawFrame> = {}): { events: CanonicalEvent[]; label: string | undefined } {
  const r = normalizeFrame(n, frame(data, extra));
  for (const e of r.events) expect(eventSchema.parse(e)).toEqual(e);
  return r;
}

const malformed = (data: unknown, n = new KrakenNormalizer(), extra: Partial<RawFrame> = {}): string => rejectionReason(n, frame(data, extra));

function levelsOf(book: OrderBook | undefined): { bids: [number, number][]; asks: [number, number][] } {
  return {
    bids: (book?.bids.levels ?? []).map((l): [number, number] => [l.price, l.qty]),
    asks: (book?.asks.levels ?? []).map((l): [number, number] => [l.price, l.qty]),
  };
}

function rebuilt(events: readonly CanonicalEvent[], symbol: string): { bids: [number, number][]; asks: [number, number][] } {
  const bids = new Map<number, number>();
  const asks = new Map<number, number>();
  for (const e of events) {
    if (!('symbol' in e) || e.symbol !== symbol) continue;
    if (e.kind === 'status' && e.status !== 'connected' && e.status !== 'book_synced') {
      bids.clear();
      asks.clear();
    }
    if (e.kind !== 'book') continue;
    if (e.snapshot) {
      bids.clear();
      asks.clear();
    }
    for (const [p, q] of e.bids) q === 0 ? bids.delete(p) : bids.set(p, q);
    for (const [p, q] of e.asks) q === 0 ? asks.delete(p) : asks.set(p, q);
  }
  return { bids: [...bids].sort((a, b) => b[0] - a[0]), asks: [...asks].sort((a, b) => a[0] - b[0]) };
}

/**
 * Kraken's documented checksum, written out independently of the normalizer: top 10 asks ascending,
 * top 10 bids descending, each price and qty text without '.', without leading zeros, CRC32 unsigned.
 */
function referenceChecksum(bids: readonly (readonly [string, string])[], asks: readonly (readonly [string, string])[]): number {
  const d = (s: string): string => s.replace('.', '').replace(/^0+/, '');
  const a = [...asks].sort((x, y) => Number(x[0]) - Number(y[0])).slice(0, 10);
  const b = [...bids].sort((x, y) => Number(y[0]) - Number(x[0])).slice(0, 10);
  return zlibCrc32([...a, ...b].map(([p, q]) => d(p) + d(q)).join('')) >>> 0;
}

/** A v2 book frame written by hand, so number literals keep the text given (trailing zeros). */
function v2Book(type: 'snapshot' | 'update', symbol: string, bids: [string, string][], asks: [string, string][], checksum: number, ts = '2023-10-06T17:35:55.440295Z'): string {
  const lv = (l: [string, string][]): string => l.map(([p, q]) => `{"price":${p},"qty":${q}}`).join(',');
  return `{"channel":"book","type":"${type}","data":[{"symbol":"${symbol}","bids":[${lv(bids)}],"asks":[${lv(asks)}],"checksum":${checksum},"timestamp":"${ts}"}]}`;
}

// ---------------------------------------------------------------- captures

describe('kraken normalizer on the v1 book capture (KRAKEN.ws.50.0.gz, book-1000, 10 pairs) with its REST bootstrap', async () => {
  const { results, skipped, malformedLines, normalizer } = await replay([REST_FILE, BOOK_FILE]);
  const all = results.flatMap((r) => r.events);
  const books = all.filter((e): e is Book => e.kind === 'book');

  it('turns every frame into events or a label: nothing malformed', () => {
    expect(malformedLines).toBe(0);
    expect(skipped).toBe(1 + 2); // KRAKEN.0's configuration line; the connection and the sent subscribe
    expect(results.filter((r) => r.error !== undefined).map((r) => `${r.line}: ${r.error!.message}`)).toEqual([]);
    expect(results).toHaveLength(1 + 4_321);
    expect(labels(results)).toEqual({ 'asset-pairs': 1, 'system-status': 1, 'subscription-status': 10, heartbeat: 31 });
    // 4,279 book messages: 10 snapshots and 4,269 updates, each one book event.
    expect(books).toHaveLength(4_279);
    expect(books.filter((b) => b.snapshot)).toHaveLength(10);
    expect(all.filter((e) => e.kind === 'trade')).toHaveLength(0);
    for (const e of all) expect(eventSchema.safeParse(e).success).toBe(true);
  });

  it('verifies every update checksum: 4,269 compared, 4,269 matched, no resync', () => {
    const report = normalizer.bookReport();
    expect(Object.keys(report).sort()).toEqual([...SYMBOLS].sort());
    let compared = 0;
    for (const s of SYMBOLS) {
      expect(report[s]).toEqual({ resyncs: 0, check: 'checksum', compared: UPDATES_PER_SYMBOL[s], matched: UPDATES_PER_SYMBOL[s] });
      compared += report[s]!.compared;
    }
    expect(compared).toBe(4_269);
    expect(all.filter((e) => e.kind === 'status' && e.status === 'book_reset')).toHaveLength(0);
  });

  it('emits book_synced once per pair after its snapshot, and derived quotes (no ticker on this connection)', () => {
    const statuses = all.filter((e): e is FeedStatus => e.kind === 'status');
    expect(statuses.map((s) => `${s.symbol}:${s.status}`).sort()).toEqual(SYMBOLS.map((s) => `${s}:book_synced`).sort());
    const quotes = all.filter((e): e is Quote => e.kind === 'quote');
    expect(quotes).toHaveLength(810);
    expect(quotes.every((q) => q.derived === true && q.bidPx < q.askPx)).toBe(true);
    // Each derived quote is the rebuilt top of book right after the message that changed it.
    for (const r of results) {
      const q = r.events.find((e): e is Quote => e.kind === 'quote');
      const b = r.events.find((e): e is Book => e.kind === 'book');
      if (q !== undefined) expect(q.seq).toBe(b!.seq);
    }
  });

  it('maps the XMR/USD snapshot (line 23): every level (429 asks, 654 bids), ts = newest level time, seq = 1', () => {
    const r = results.find((x) => x.line === 23)!;
    expect(r.frame.data.startsWith('[992,{"as":')).toBe(true);
    const b = r.events[0] as Book;
    expect(b).toMatchObject({ kind: 'book', venue: 'kraken', symbol: 'XMR-USD', snapshot: true, seq: 1, firstSeq: 1 });
    expect(b.asks).toHaveLength(429);
    expect(b.bids).toHaveLength(654);
    expect(b.asks[0]).toEqual([354.8, 1.4]);
    expect(b.asks.at(-1)).toEqual([99999997, 0.1]);
    expect(b.bids[0]).toEqual([354.16, 1.4]);
    expect(b.bids.at(-1)).toEqual([0.01, 9046.99999]);
    expect(b.asks[1]).toEqual([354.84, 6.88212752]);
    const raw = JSON.parse(r.frame.data) as [number, { as: string[][]; bs: string[][] }];
    const newest = Math.max(...[...raw[1].as, ...raw[1].bs].map((l) => Number(l[2])));
    expect(b.ts).toBeCloseTo(newest * 1000, 2);
    expect(r.events[1]).toMatchObject({ kind: 'status', status: 'book_synced', symbol: 'XMR-USD' });
  });

  it('maps an update (line 25: one bid, checksum 2583817756) to a delta with the level time as ts', () => {
    const r = results.find((x) => x.line === 25)!;
    expect(r.frame.data).toBe('[992,{"b":[["354.15000000","5.00000000","1618678133.365913"]],"c":"2583817756"},"book-1000","XMR/USD"]');
    expect(r.events[0]).toEqual({
      kind: 'book',
      venue: 'kraken',
      symbol: 'XMR-USD',
      ts: 1618678133365.913,
      recvTs: r.frame.recvTs,
      seq: 2,
      firstSeq: 2,
      prevSeq: 1,
      snapshot: false,
      bids: [[354.15, 5]],
      asks: [],
    });
  });

  it('applies the message that carries asks and bids in two objects (line 1430), checksum matched', () => {
    const r = results.find((x) => x.line === 1430)!;
    expect(r.frame.data).toContain('},{"b":');
    const b = r.events.find((e): e is Book => e.kind === 'book')!;
    expect(b).toMatchObject({ symbol: 'SC-EUR', snapshot: false, asks: [[0.04299, 364630.28272081]], bids: [[0.04299, 0]] });
    expect(r.events.some((e) => e.kind === 'status')).toBe(false);
  });

  it('keeps at most the subscribed 1,000 levels a side (the capture never reaches it), and the events alone rebuild the same books', () => {
    for (const s of SYMBOLS) {
      const book = normalizer.book(s)!;
      expect(book.synced).toBe(true);
      expect(book.bids.levels.length).toBeLessThanOrEqual(1_000);
      expect(book.asks.levels.length).toBeLessThanOrEqual(1_000);
      expect(book.crossed).toBe(false);
      expect(rebuilt(all, s)).toEqual(levelsOf(book));
    }
  });

  it('learns the pairs’ decimals from REST AssetPairs, and the longer v1 strings are hashed as sent', () => {
    expect(normalizer.precisionOf('XMR-USD')).toEqual({ price: 2, qty: 8 }); // v1 sends 354.15000000
    expect(normalizer.precisionOf('BTC-CHF')).toEqual({ price: 1, qty: 8 }); // v1 sends 56218.30000
    expect(normalizer.precisionOf('DOGE-USD')).toEqual({ price: 7, qty: 8 }); // AssetPairs' XDG/USD
    expect(normalizer.precisionOf('FOO-BAR')).toBeUndefined();
  });
});

describe('kraken normalizer on the v1 trade and ticker captures', async () => {
  const trades = await replay([TRADE_FILE]);
  const tickers = await replay([TICKER_FILE]);

  it('KRAKEN.ws.48.0.gz: 8 trade messages → 10 trades, the rest labelled', () => {
    expect(trades.malformedLines).toBe(0);
    expect(trades.results.filter((r) => r.error)).toHaveLength(0);
    expect(trades.results).toHaveLength(49);
    expect(labels(trades.results)).toEqual({ 'system-status': 1, 'subscription-status': 10, heartbeat: 30 });
    const all = trades.results.flatMap((r) => r.events);
    expect(all.every((e) => e.kind === 'trade')).toBe(true);
    expect(all).toHaveLength(10);
    expect(trades.results.filter((r) => r.events.length > 0)).toHaveLength(8);
    for (const e of all) expect(eventSchema.parse(e)).toEqual(e);
  });

  it('maps v1 trade entries [price, volume, time, side, type, misc]', () => {
    const all = trades.results.flatMap((r) => r.events) as Trade[];
    expect(all[0]).toEqual({
      kind: 'trade',
      venue: 'kraken',
      symbol: 'XMR-USD',
      ts: 1618678142557.535,
      recvTs: trades.results.find((r) => r.events.length > 0)!.frame.recvTs,
      price: 354.11,
      qty: 0.89594024,
      side: 'sell',
      tradeId: '1618678142.557535-0',
    });
    expect(all[1]).toMatchObject({ side: 'buy', price: 354.55, qty: 1.25690315 });
    expect(all.map((t) => t.symbol)).toEqual(['XMR-USD', 'XMR-USD', 'SC-EUR', 'XMR-USD', 'XMR-USD', 'SC-EUR', 'SC-EUR', 'SC-EUR', 'SC-EUR', 'SC-EUR']);
    expect(all.map((t) => t.side).join(',')).toBe('sell,buy,sell,sell,sell,buy,buy,buy,sell,buy');
    // Two trades of one message get distinct ids.
    expect(all[3]!.tradeId).toBe('1618678150.826417-0');
    expect(all[4]!.tradeId).toBe('1618678150.827816-1');
    expect(new Set(all.map((t) => t.tradeId)).size).toBe(10);
  });

  it('KRAKEN.ws.49.0.gz: 18 ticker messages → 18 quotes (bid/ask price and lot volume)', () => {
    expect(tickers.malformedLines).toBe(0);
    expect(tickers.results.filter((r) => r.error)).toHaveLength(0);
    expect(tickers.results).toHaveLength(60);
    expect(labels(tickers.results)).toEqual({ 'system-status': 1, 'subscription-status': 10, heartbeat: 31 });
    const quotes = tickers.results.flatMap((r) => r.events) as Quote[];
    expect(quotes).toHaveLength(18);
    const first = tickers.results.find((r) => r.events.length > 0)!;
    // [1668,{"a":["13.253900",35,"35.72892241"],"b":["13.232900",185,"185.18432037"],…},"ticker","WAVES/EUR"]
    expect(first.events[0]).toEqual({
      kind: 'quote',
      venue: 'kraken',
      symbol: 'WAVES-EUR',
      ts: Math.floor(first.frame.recvTs),
      recvTs: first.frame.recvTs,
      bidPx: 13.2329,
      bidQty: 185.18432037,
      askPx: 13.2539,
      askQty: 35.72892241,
    });
    expect(new Set(quotes.map((q) => q.symbol))).toEqual(new Set(SYMBOLS));
    expect(quotes.every((q) => q.derived === undefined && q.bidPx < q.askPx)).toBe(true);
  });
});

describe('kraken v1 books: corruption and loss on the real capture', () => {
  const frames = captureFrames(BOOK_FILE);

  function feed(list: { recvTs: number; data: string }[]) {
    const requests: [string, string][] = [];
    const n = new KrakenNormalizer({ requestResync: (s, r) => requests.push([s, r]) });
    const out: { events: CanonicalEvent[]; label: string | undefined; data: string }[] = [];
    for (const f of list) {
      const events: CanonicalEvent[] = [];
      const label = n.normalize({ recvTs: f.recvTs, source: 'kraken', data: f.data }, events);
      out.push({ events, label, data: f.data });
    }
    return { n, out, requests };
  }

  it('a wrong checksum resets that pair only, asks for its resync, and ignores its updates until a snapshot', () => {
    const scIdx = frames.findIndex((f, i) => i > 500 && f.data.endsWith('"book-1000","SC/EUR"]') && f.data.includes('"c":"'));
    const bad = frames.map((f, i) => (i === scIdx ? { ...f, data: f.data.replace(/"c":"\d+"/, '"c":"12345"') } : f));
    const { n, out, requests } = feed(bad);
    const reset = out[scIdx]!.events;
    expect(reset).toHaveLength(1);
    expect(reset[0]).toMatchObject({ kind: 'status', symbol: 'SC-EUR', status: 'book_reset' });
    expect((reset[0] as FeedStatus).reason).toMatch(/^checksum mismatch: computed \d+, venue sent 12345$/);
    expect(requests).toEqual([['SC/EUR', (reset[0] as FeedStatus).reason]]);
    const later = out.slice(scIdx + 1).filter((o) => o.data.endsWith('"SC/EUR"]'));
    expect(later.length).toBeGreaterThan(100);
    expect(later.every((o) => o.label === 'book-awaiting-snapshot' && o.events.length === 0)).toBe(true);
    const report = n.bookReport();
    expect(report['SC-EUR']).toMatchObject({ resyncs: 1 });
    expect(report['SC-EUR']!.compared).toBe(report['SC-EUR']!.matched + 1);
    for (const s of SYMBOLS.filter((x) => x !== 'SC-EUR')) expect(report[s]).toEqual({ resyncs: 0, check: 'checksum', compared: UPDATES_PER_SYMBOL[s], matched: UPDATES_PER_SYMBOL[s] });
    expect(n.book('SC-EUR')!.synced).toBe(false);
    expect(n.book('SC-EUR')!.bids.levels).toHaveLength(0);
  });

  it('a lost update is caught by the next checksum of that pair', () => {
    // The first XMR/USD update adds a bid at 354.15 (inside the top 10): drop it.
    const lost = frames.findIndex((f) => f.data.startsWith('[992,{"b":[["354.15000000"'));
    const { n, out, requests } = feed(frames.filter((_, i) => i !== lost));
    const next = out.slice(lost).find((o) => o.data.endsWith('"XMR/USD"]'))!;
    expect(next.events).toMatchObject([{ kind: 'status', status: 'book_reset', symbol: 'XMR-USD' }]);
    expect(requests.map((r) => r[0])).toEqual(['XMR/USD']);
    expect(n.bookReport()['XMR-USD']).toEqual({ resyncs: 1, check: 'checksum', compared: 1, matched: 0 });
  });

  it('after a reset, the snapshot of the resubscription rebuilds the book and every later checksum matches', () => {
    const snapIdx = frames.findIndex((f) => f.data.startsWith('[992,{"as":'));
    const firstUpdate = frames.findIndex((f, i) => i > snapIdx && f.data.endsWith('"XMR/USD"]'));
    // A bogus update (not from the venue) breaks the book; the venue's snapshot is then sent again.
    const bogus = { recvTs: frames[firstUpdate]!.recvTs, data: '[992,{"a":[["354.50000000","1.00000000","1618678134.000000"]],"c":"1"},"book-1000","XMR/USD"]' };
    const list = [...frames.slice(0, firstUpdate), bogus, frames[snapIdx]!, ...frames.slice(firstUpdate)];
    const { n, out, requests } = feed(list);
    const statuses = out.flatMap((o) => o.events).filter((e): e is FeedStatus => e.kind === 'status' && e.symbol === 'XMR-USD').map((e) => e.status);
    expect(statuses).toEqual(['book_synced', 'book_reset', 'book_synced']);
    expect(requests.map((r) => r[0])).toEqual(['XMR/USD']);
    expect(n.bookReport()['XMR-USD']).toEqual({ resyncs: 1, check: 'checksum', compared: 1 + UPDATES_PER_SYMBOL['XMR-USD']!, matched: UPDATES_PER_SYMBOL['XMR-USD'] });
    expect(out.filter((o) => o.label === 'book-awaiting-snapshot')).toHaveLength(0);
  });
});

// ---------------------------------------------------------------- hand-made v1

describe('kraken v1 hand-made frames', () => {
  const snap = (asks: [string, string][], bids: [string, string][], depth = 10, pair = 'XBT/USD'): unknown[] => [
    336,
    { as: asks.map(([p, q]) => [p, q, '1700000000.000100']), bs: bids.map(([p, q]) => [p, q, '1700000000.000200']) },
    `book-${depth}`,
    pair,
  ];
  const A10: [string, string][] = Array.from({ length: 10 }, (_, i) => [`${50001 + i}.00000`, `${(i + 1).toFixed(8)}`]);
  const B10: [string, string][] = Array.from({ length: 10 }, (_, i) => [`${50000 - i}.00000`, `${(i + 1).toFixed(8)}`]);

  it('book-10: an insert truncates the worst level (sent as a removal); a republished "r" level refills', () => {
    const n = new KrakenNormalizer();
    const s = run(n, snap(A10, B10));
    expect(s.events.map((e) => e.kind)).toEqual(['book', 'status', 'quote']);
    expect(s.events[2]).toMatchObject({ derived: true, bidPx: 50000, bidQty: 1, askPx: 50001, askQty: 1 });

    // A better bid pushes 49991 out of the 10 levels.
    const bids1 = new Map(B10);
    bids1.set('50000.50000', '0.50000000');
    bids1.delete('49991.00000');
    const u1 = run(n, [336, { b: [['50000.50000', '0.50000000', '1700000001.000000']], c: String(referenceChecksum([...bids1], A10)) }, 'book-10', 'XBT/USD']);
    expect(u1.events[0]).toMatchObject({ kind: 'book', snapshot: false, bids: [[50000.5, 0.5], [49991, 0]], asks: [] });
    expect(u1.events[1]).toMatchObject({ kind: 'quote', derived: true, bidPx: 50000.5, bidQty: 0.5 });
    expect(n.book('BTC-USD')!.bids.levels).toHaveLength(10);

    // 49995 is removed; Kraken republishes 49991 ("r") to keep 10 levels.
    bids1.delete('49995.00000');
    bids1.set('49991.00000', '10.00000000');
    const u2 = run(n, [336, { b: [['49995.00000', '0.00000000', '1700000002.000000'], ['49991.00000', '10.00000000', '1700000001.500000', 'r']], c: String(referenceChecksum([...bids1], A10)) }, 'book-10', 'XBT/USD']);
    expect(u2.events).toHaveLength(1); // top of book unchanged: no new derived quote
    expect(u2.events[0]).toMatchObject({ ts: 1700000002000, bids: [[49995, 0], [49991, 10]] });
    expect(n.bookReport()['BTC-USD']).toEqual({ resyncs: 0, check: 'checksum', compared: 2, matched: 2 });
  });

  it('asks and bids in two objects of one message, checksum in the last', () => {
    const n = new KrakenNormalizer();
    run(n, snap(A10, B10));
    const asks = new Map(A10);
    asks.set('50001.00000', '7.00000000');
    const bids = new Map(B10);
    bids.delete('50000.00000');
    const c = referenceChecksum([...bids].concat([['49990.00000', '3.00000000']]), [...asks]);
    const r = run(n, [336, { a: [['50001.00000', '7.00000000', '1700000003.000000']] }, { b: [['50000.00000', '0.00000000', '1700000003.000001'], ['49990.00000', '3.00000000', '1700000003.000002', 'r']], c: String(c) }, 'book-10', 'XBT/USD']);
    expect(r.events[0]).toMatchObject({ asks: [[50001, 7]], bids: [[50000, 0], [49990, 3]], ts: 1700000003000.002 });
    expect(n.bookReport()['BTC-USD']).toEqual({ resyncs: 0, check: 'checksum', compared: 1, matched: 1 });
  });

  it('an update without a checksum is applied unverified; updates before any snapshot wait', () => {
    const n = new KrakenNormalizer();
    expect(run(n, [336, { a: [['1.00000', '1.00000000', '1700000000.000000']] }, 'book-10', 'XBT/USD'])).toEqual({ events: [], label: 'book-awaiting-snapshot' });
    run(n, snap(A10, B10));
    const r = run(n, [336, { a: [['50001.00000', '2.00000000', '1700000000.000000']] }, 'book-10', 'XBT/USD']);
    expect(r.events[0]).toMatchObject({ kind: 'book', asks: [[50001, 2]] });
    expect(n.bookReport()['BTC-USD']).toEqual({ resyncs: 0, check: 'checksum', compared: 0, matched: 0 });
  });

  it('spread → quote; ohlc labelled; subscription and system events labelled', () => {
    const n = new KrakenNormalizer();
    const r = run(n, [0, ['5698.40000', '5700.00000', '1542057299.545897', '1.01234567', '0.98765432'], 'spread', 'XBT/USD']);
    expect(r.events).toEqual([
      { kind: 'quote', venue: 'kraken', symbol: 'BTC-USD', ts: 1542057299545.897, recvTs: 1_700_000_000_123.5, bidPx: 5698.4, bidQty: 1.01234567, askPx: 5700, askQty: 0.98765432 },
    ]);
    expect(run(n, [42, ['1542057314.748456', '1542057360.435743', '3586.70000', '3586.70000', '3586.60000', '3586.60000', '3586.68894', '0.03373000', 2], 'ohlc-5', 'XBT/USD']).label).toBe('ohlc');
    expect(run(n, { event: 'heartbeat' }).label).toBe('heartbeat');
    expect(run(n, { event: 'pong', reqid: 42 }).label).toBe('pong');
    expect(run(n, { connectionID: 1, event: 'systemStatus', status: 'online', version: '1.9.0' }).label).toBe('system-status');
    expect(run(n, { channelID: 10001, channelName: 'ticker', event: 'subscriptionStatus', pair: 'XBT/EUR', status: 'subscribed', subscription: { name: 'ticker' } }).label).toBe('subscription-status');
  });

  it('a ticker subscription for the pair stops derived quotes from its book', () => {
    const n = new KrakenNormalizer();
    run(n, { channelID: 1, channelName: 'ticker', event: 'subscriptionStatus', pair: 'XBT/USD', status: 'subscribed', subscription: { name: 'ticker' } });
    expect(run(n, snap(A10, B10)).events.map((e) => e.kind)).toEqual(['book', 'status']);
  });

  it('rejects broken v1 frames with precise reasons', () => {
    expect(malformed([1, 2])).toBe('unknown structure: array of 2 (expected [channelID, payload, channelName, pair])');
    expect(malformed([1, {}, 3, 'XBT/USD'])).toBe('unknown structure: array without channelName and pair (got 3, "XBT/USD")');
    expect(malformed([1, {}, 'candles', 'XBT/USD'])).toBe('unknown channel "candles"');
    expect(malformed([1, [['1.0', '1.0', '1700000000.1', 'x', 'l', '']], 'trade', 'XBT/USD'])).toBe('trade: trades[0] side must be "b" or "s", got "x"');
    expect(malformed([1, [['-1.0', '1.0', '1700000000.1', 'b', 'l', '']], 'trade', 'XBT/USD'])).toBe('trade: trades[0] price must be a positive number, got "-1.0"');
    expect(malformed([1, [['1.0', '1.0', 'yesterday', 'b', 'l', '']], 'trade', 'XBT/USD'])).toBe('trade: trades[0] time must be epoch seconds as text, got "yesterday"');
    expect(malformed([1, [['1.0', '1.0', '1700000000.1', 'b', 'l', '']], 'trade', 'XBTUSD'])).toBe('invalid pair "XBTUSD": expected BASE/QUOTE');
    expect(malformed([1, { a: ['1', 1, '1'] }, 'ticker', 'XBT/USD'])).toBe('ticker: bid (b) must be an array, got missing');
    const n = new KrakenNormalizer();
    run(n, snap(A10, B10));
    expect(malformed([336, { a: [['1.0', '1.0', '1700000000.1']], c: 'x1' }, 'book-10', 'XBT/USD'], n)).toBe('book update: checksum (c) must be an unsigned 32-bit integer as text, got "x1"');
    expect(malformed([336, { a: [['1.0', '1.0', '1700000000.1', 'q']] }, 'book-10', 'XBT/USD'], n)).toBe('book update: asks (a)[0] has unexpected fields ["q"]');
    expect(malformed([336, { a: [[1.0, '1.0', '1700000000.1']] }, 'book-10', 'XBT/USD'], n)).toBe('book update: asks (a)[0] price and volume must be decimal strings, got [1,"1.0","1700000000.1"]');
    expect(malformed([336, { z: [] }, 'book-10', 'XBT/USD'], n)).toBe('book update: unexpected key "z"');
    expect(malformed([336, { c: '1' }, 'book-10', 'XBT/USD'], n)).toBe('book update: payload 1 has neither asks (a) nor bids (b)');
    expect(malformed([336, { as: [] }, 'book-x', 'XBT/USD'], n)).toBe('book: invalid channel name "book-x"');
    expect(malformed({ event: 'subscriptionStatus', status: 'error', pair: 'XBT/USDX', errorMessage: 'Currency pair not supported' })).toBe('subscription error for XBT/USDX: Currency pair not supported');
    expect(malformed({ event: 'error', errorMessage: 'Malformed request' })).toBe('error event: Malformed request');
    expect(malformed({ event: 'surprise' })).toBe('unknown event "surprise"');
    // The rejected update left the book as it was.
    expect(n.book('BTC-USD')!.asks.levels[0]).toMatchObject({ price: 50001, qty: 1 });
  });
});

// ---------------------------------------------------------------- hand-made v2

describe('kraken v2 hand-made frames', () => {
  const BIDS: [string, string][] = Array.from({ length: 12 }, (_, i) => [(45283.5 - i).toFixed(1), `0.${String(100000 + i * 1000).padStart(8, '0')}`]);
  const ASKS: [string, string][] = Array.from({ length: 12 }, (_, i) => [`${(45285.2 + i).toFixed(1)}`, `${i + 1}.50000000`]);

  function synced(n = new KrakenNormalizer(), depth = 25): KrakenNormalizer {
    run(n, { method: 'subscribe', result: { channel: 'book', depth, snapshot: true, symbol: 'BTC/USD' }, success: true, time_in: '2023-10-06T17:35:55.219022Z', time_out: '2023-10-06T17:35:55.219067Z' });
    const r = run(n, v2Book('snapshot', 'BTC/USD', BIDS, ASKS, referenceChecksum(BIDS, ASKS)));
    expect(r.events.map((e) => e.kind)).toEqual(['book', 'status', 'quote']);
    return n;
  }

  it('snapshot: all levels, checksum verified, book_synced, derived quote; number literals keep trailing zeros', () => {
    const n = new KrakenNormalizer();
    const r = run(n, v2Book('snapshot', 'BTC/USD', BIDS, ASKS, referenceChecksum(BIDS, ASKS)));
    expect(r.events[0]).toMatchObject({ kind: 'book', symbol: 'BTC-USD', snapshot: true, seq: 1, ts: 1696613755440.295 });
    const b = r.events[0] as Book;
    expect(b.bids).toHaveLength(12);
    expect(b.asks[0]).toEqual([45285.2, 1.5]);
    expect(r.events[1]).toMatchObject({ kind: 'status', status: 'book_synced' });
    expect(n.bookReport()['BTC-USD']).toEqual({ resyncs: 0, check: 'checksum', compared: 1, matched: 1 });
    // The stored text is the literal as sent ("1.50000000", not "1.5").
    expect(n.book('BTC-USD')!.asks.levels[0]).toMatchObject({ priceText: '45285.2', qtyText: '1.50000000' });
  });

  it('updates: changed levels as a delta, checksum verified after applying all of them', () => {
    const n = synced();
    const bids = new Map(BIDS);
    const asks = new Map(ASKS);
    bids.delete(BIDS[0]![0]);
    asks.set('45284.9', '0.00100000');
    asks.set(ASKS[3]![0], '9.99000000');
    const upd = v2Book('update', 'BTC/USD', [[BIDS[0]![0], '0.00000000']], [['45284.9', '0.00100000'], [ASKS[3]![0], '9.99000000']], referenceChecksum([...bids], [...asks]), '2023-10-06T17:35:56.000001Z');
    const r = run(n, upd);
    expect(r.events[0]).toEqual({
      kind: 'book',
      venue: 'kraken',
      symbol: 'BTC-USD',
      ts: 1696613756000.001,
      recvTs: 1_700_000_000_123.5,
      seq: 2,
      firstSeq: 2,
      prevSeq: 1,
      snapshot: false,
      bids: [[45283.5, 0]],
      asks: [[45284.9, 0.001], [45288.2, 9.99]],
    });
    expect(r.events[1]).toMatchObject({ kind: 'quote', derived: true, bidPx: 45282.5, askPx: 45284.9, askQty: 0.001 });
    expect(n.bookReport()['BTC-USD']).toEqual({ resyncs: 0, check: 'checksum', compared: 2, matched: 2 });
  });

  it('a checksum mismatch: book_reset, resync requested for BTC/USD, updates ignored until the next snapshot', () => {
    const requests: [string, string][] = [];
    const n = synced(new KrakenNormalizer({ requestResync: (s, r) => requests.push([s, r]) }));
    const r = run(n, v2Book('update', 'BTC/USD', [['45283.5', '0.20000000']], [], 12345));
    expect(r.events).toHaveLength(1);
    expect(r.events[0]).toMatchObject({ kind: 'status', status: 'book_reset', symbol: 'BTC-USD' });
    const reason = (r.events[0] as FeedStatus).reason;
    expect(reason).toMatch(/^checksum mismatch: computed \d+, venue sent 12345$/);
    expect(requests).toEqual([['BTC/USD', reason]]);
    expect(run(n, v2Book('update', 'BTC/USD', [['45283.5', '0.30000000']], [], 1))).toEqual({ events: [], label: 'book-awaiting-snapshot' });
    const again = run(n, v2Book('snapshot', 'BTC/USD', BIDS, ASKS, referenceChecksum(BIDS, ASKS)));
    expect(again.events.map((e) => (e.kind === 'status' ? e.status : e.kind))).toEqual(['book', 'book_synced', 'quote']);
    expect(n.bookReport()['BTC-USD']).toEqual({ resyncs: 1, check: 'checksum', compared: 3, matched: 2 });
  });

  it('truncates to the subscribed depth (ack depth 10): the level pushed out is sent as a removal', () => {
    const n = new KrakenNormalizer();
    run(n, { method: 'subscribe', result: { channel: 'book', depth: 10, snapshot: true, symbol: 'BTC/USD' }, success: true });
    const b10 = BIDS.slice(0, 10);
    const a10 = ASKS.slice(0, 10);
    run(n, v2Book('snapshot', 'BTC/USD', b10, a10, referenceChecksum(b10, a10)));
    const bids = [['45284.0', '1.00000000'] as [string, string], ...b10.slice(0, 9)];
    const r = run(n, v2Book('update', 'BTC/USD', [['45284.0', '1.00000000']], [], referenceChecksum(bids, a10)));
    expect(r.events[0]).toMatchObject({ bids: [[45284, 1], [Number(b10[9]![0]), 0]] });
    expect(n.book('BTC-USD')!.bids.levels).toHaveLength(10);
    expect(n.bookReport()['BTC-USD']).toEqual({ resyncs: 0, check: 'checksum', compared: 2, matched: 2 });
  });

  it('literals written without trailing zeros: only the instrument precision makes the checksum right', () => {
    // Kraken hashed "45000.0" / "1.50000000"; a re-serialised frame says 45000 and 1.5.
    const full: [string, string][] = Array.from({ length: 10 }, (_, i) => [`${45000 - i}.0`, '1.50000000']);
    const fullAsks: [string, string][] = Array.from({ length: 10 }, (_, i) => [`${45001 + i}.0`, '0.25000000']);
    const cs = referenceChecksum(full, fullAsks);
    const trimmed = (l: [string, string][]): [string, string][] => l.map(([p, q]) => [String(Number(p)), String(Number(q))]);
    const frameText = v2Book('snapshot', 'BTC/USD', trimmed(full), trimmed(fullAsks), cs);

    const blind = new KrakenNormalizer();
    const r1 = run(blind, frameText);
    expect(r1.events).toMatchObject([{ kind: 'status', status: 'book_reset' }]);
    expect(blind.precisionOf('BTC-USD')).toEqual({ price: 0, qty: 2 }); // learned from the literals: too few

    const informed = new KrakenNormalizer();
    const inst = {
      channel: 'instrument',
      type: 'snapshot',
      data: { assets: [], pairs: [{ symbol: 'BTC/USD', base: 'BTC', quote: 'USD', price_precision: 1, qty_precision: 8, price_increment: 0.1, qty_increment: 1e-8 }, { symbol: 'weird pair' }] },
    };
    expect(run(informed, inst).label).toBe('instrument');
    expect(informed.precisionOf('BTC-USD')).toEqual({ price: 1, qty: 8 });
    expect(run(informed, frameText).events.map((e) => e.kind)).toEqual(['book', 'status', 'quote']);
    expect(informed.bookReport()['BTC-USD']).toEqual({ resyncs: 0, check: 'checksum', compared: 1, matched: 1 });

    // Configured precision works the same way.
    const configured = new KrakenNormalizer({}, { precision: { 'BTC-USD': { price: 1, qty: 8 } } });
    expect(run(configured, frameText).events.map((e) => e.kind)).toEqual(['book', 'status', 'quote']);
  });

  it('accepts prices and quantities sent as strings', () => {
    const n = new KrakenNormalizer();
    const text = v2Book('snapshot', 'BTC/USD', BIDS.map(([p, q]) => [`"${p}"`, `"${q}"`]), ASKS.map(([p, q]) => [`"${p}"`, `"${q}"`]), referenceChecksum(BIDS, ASKS));
    expect(run(n, text).events[0]).toMatchObject({ kind: 'book', snapshot: true });
    expect(n.bookReport()['BTC-USD']).toEqual({ resyncs: 0, check: 'checksum', compared: 1, matched: 1 });
  });

  it('trade: taker side, trade_id, microsecond time; a snapshot repeating known ids adds nothing', () => {
    const n = new KrakenNormalizer();
    const t = (id: number, side: string, price = 0.5147): unknown => ({ symbol: 'MATIC/USD', side, price, qty: 6423.46326, ord_type: 'limit', trade_id: id, timestamp: '2023-09-25T07:48:36.925533Z' });
    const r = run(n, { channel: 'trade', type: 'snapshot', data: [t(5, 'buy'), t(6, 'sell'), t(7, 'sell')] });
    expect(r.events).toHaveLength(3);
    expect(r.events[0]).toEqual({ kind: 'trade', venue: 'kraken', symbol: 'MATIC-USD', ts: 1695628116925.533, recvTs: 1_700_000_000_123.5, price: 0.5147, qty: 6423.46326, side: 'buy', tradeId: '5' });
    expect((r.events[1] as Trade).side).toBe('sell');
    const again = run(n, { channel: 'trade', type: 'snapshot', data: [t(6, 'sell'), t(7, 'sell'), t(8, 'buy')] });
    expect(again.events.map((e) => (e as Trade).tradeId)).toEqual(['8']);
    expect(run(n, { channel: 'trade', type: 'update', data: [t(9, 'buy'), t(9, 'buy')] }).events).toHaveLength(1);
  });

  it('ticker → quote (timestamp when present, else receive time); stops derived quotes', () => {
    const n = new KrakenNormalizer();
    const tk = { symbol: 'ALGO/USD', bid: 0.10025, bid_qty: 740.0, ask: 0.10035, ask_qty: 740.1, last: 0.10035, volume: 997038.98383185, vwap: 0.10148, low: 0.09979, high: 0.10285, change: -0.00017, change_pct: -0.17 };
    expect(run(n, { channel: 'ticker', type: 'snapshot', data: [tk] }).events).toEqual([
      { kind: 'quote', venue: 'kraken', symbol: 'ALGO-USD', ts: 1_700_000_000_123, recvTs: 1_700_000_000_123.5, bidPx: 0.10025, bidQty: 740, askPx: 0.10035, askQty: 740.1 },
    ]);
    expect(run(n, { channel: 'ticker', type: 'update', data: [{ ...tk, timestamp: '2024-01-01T00:00:00.5Z' }] }).events[0]).toMatchObject({ ts: 1704067200500 });
    const a = [['0.10035', '740.00000000']] as [string, string][];
    const b = [['0.10025', '740.00000000']] as [string, string][];
    expect(run(n, v2Book('snapshot', 'ALGO/USD', b, a, referenceChecksum(b, a))).events.map((e) => e.kind)).toEqual(['book', 'status']);
  });

  it('labels heartbeats, status, pongs, acks and other channels', () => {
    const n = new KrakenNormalizer();
    expect(run(n, { channel: 'heartbeat' }).label).toBe('heartbeat');
    expect(run(n, { channel: 'status', type: 'update', data: [{ api_version: 'v2', connection_id: 1, system: 'online', version: '2.0.0' }] }).label).toBe('system-status');
    expect(run(n, { method: 'pong', req_id: 1, time_in: '2023-09-24T14:10:23.799685Z', time_out: '2023-09-24T14:10:23.799703Z' }).label).toBe('pong');
    expect(run(n, { method: 'subscribe', result: { channel: 'ticker', snapshot: true, symbol: 'ALGO/USD' }, success: true }).label).toBe('subscription-ack');
    expect(run(n, { method: 'unsubscribe', result: { channel: 'book', depth: 10, symbol: 'ALGO/USD' }, success: true }).label).toBe('unsubscription-ack');
    expect(run(n, { channel: 'ohlc', type: 'update', data: [] }).label).toBe('ohlc');
  });

  it('rejects broken v2 frames with precise reasons, without touching the book', () => {
    const n = synced();
    expect(malformed('not json', n)).toMatch(/^invalid JSON: /);
    expect(malformed('42', n)).toBe('unknown structure: expected a JSON object or array, got "42"');
    expect(malformed({ foo: 1, bar: 2 }, n)).toBe('unknown structure: object with keys {foo,bar}');
    expect(malformed({ channel: 'candles' }, n)).toBe('unknown channel "candles"');
    expect(malformed({ channel: 'book', type: 'delta', data: [] }, n)).toBe('book: type must be snapshot or update, got "delta"');
    expect(malformed(v2Book('update', 'BTC/USD', [['45283.5', '1.0']], [], -1), n)).toBe('book update: data[0].checksum must be an unsigned 32-bit integer, got -1');
    expect(malformed(v2Book('update', 'BTC/USD', [['45283.5', '1.0']], [], 4294967296), n)).toBe('book update: data[0].checksum must be an unsigned 32-bit integer, got 4294967296');
    expect(malformed(v2Book('update', 'BTC/USD', [['0', '1.0']], [], 1), n)).toBe('book update: data[0].bids[0].price must be a positive number, got 0');
    expect(malformed(v2Book('update', 'BTC/USD', [['1', '-2']], [], 1), n)).toBe('book update: data[0].bids[0].qty must be a non-negative number, got -2');
    expect(malformed({ channel: 'book', type: 'update', data: [{ symbol: 'BTC/USD', bids: [[1, 2]], asks: [], checksum: 1 }] }, n)).toBe('book update: data[0].bids[0] must be {price, qty}, got [1,2]');
    expect(malformed({ channel: 'book', type: 'update', data: [{ symbol: 'BTC/USD', bids: [], asks: [], checksum: 1, timestamp: 'soon' }] }, n)).toBe('book update: data[0].timestamp must be an RFC 3339 UTC time, got "soon"');
    expect(malformed({ channel: 'trade', type: 'update', data: [{ symbol: 'BTC/USD', side: 'b', price: 1, qty: 1, trade_id: 1, timestamp: '2024-01-01T00:00:00Z' }] }, n)).toBe('trade: data[0].side must be buy or sell, got "b"');
    expect(malformed({ channel: 'trade', type: 'update', data: [{ symbol: 'BTC/USD', side: 'buy', price: 1, qty: 1, trade_id: 1.5, timestamp: '2024-01-01T00:00:00Z' }] }, n)).toBe('trade: data[0].trade_id must be a non-negative integer, got 1.5');
    expect(malformed({ channel: 'ticker', type: 'update', data: [{ symbol: 'BTC/USD', bid: 'NaN', bid_qty: 1, ask: 2, ask_qty: 1 }] }, n)).toBe('ticker: data[0].bid must be a non-negative number, got "NaN"');
    expect(malformed({ channel: 'trade', type: 'update', data: [{ symbol: 'BTCUSD' }] }, n)).toBe('invalid pair "BTCUSD": expected BASE/QUOTE');
    expect(malformed({ method: 'subscribe', error: 'Currency pair not supported FOO/USD', success: false, symbol: 'FOO/USD' }, n)).toBe('subscribe failed for FOO/USD: Currency pair not supported FOO/USD');
    expect(malformed({ error: 'Malformed request', success: false }, n)).toBe('error frame: "Malformed request"');
    // A frame whose second entry is broken leaves the first entry's symbol untouched too.
    expect(malformed({ channel: 'book', type: 'update', data: [{ symbol: 'BTC/USD', bids: [{ price: 45283.5, qty: 9 }], asks: [], checksum: 1 }, { symbol: 'BTC/USD', bids: 'x', asks: [], checksum: 1 }] }, n)).toBe('book update: data[1].bids must be an array, got "x"');
    expect(n.bookReport()['BTC-USD']).toEqual({ resyncs: 0, check: 'checksum', compared: 1, matched: 1 });
    expect(n.book('BTC-USD')!.bids.levels[0]).toMatchObject({ price: 45283.5, qty: 0.001 });
    expect(malformed('{"x":1}', n, { recvTs: Number.NaN })).toBe('frame recvTs must be a non-negative number, got NaN');
  });
});

// ---------------------------------------------------------------- status frames, REST

describe('kraken status frames and REST responses', () => {
  it('connected → status per symbol; disconnected/stale → status and the book is dropped until a snapshot', () => {
    const n = new KrakenNormalizer();
    const status = (s: string, reason: string): Partial<RawFrame> & { data: string } => ({ channel: STATUS_CHANNEL, data: JSON.stringify({ status: s, reason, symbols: ['BTC/USD', 'XDG/USD'] }) });
    const c = status('connected', 'initial connect');
    expect(run(n, c.data, { channel: STATUS_CHANNEL }).events).toEqual([
      { kind: 'status', venue: 'kraken', symbol: 'BTC-USD', ts: 1_700_000_000_123, recvTs: 1_700_000_000_123.5, status: 'connected', reason: 'initial connect' },
      { kind: 'status', venue: 'kraken', symbol: 'DOGE-USD', ts: 1_700_000_000_123, recvTs: 1_700_000_000_123.5, status: 'connected', reason: 'initial connect' },
    ]);
    const b = [['45000.0', '1.00000000']] as [string, string][];
    const a = [['45001.0', '1.00000000']] as [string, string][];
    run(n, v2Book('snapshot', 'BTC/USD', b, a, referenceChecksum(b, a)));
    expect(n.book('BTC-USD')!.synced).toBe(true);
    const d = run(n, status('disconnected', 'closed (1006)').data, { channel: STATUS_CHANNEL });
    expect(d.events.map((e) => [(e as FeedStatus).symbol, (e as FeedStatus).status, (e as FeedStatus).reason])).toEqual([
      ['BTC-USD', 'disconnected', 'closed (1006)'],
      ['DOGE-USD', 'disconnected', 'closed (1006)'],
    ]);
    expect(n.book('BTC-USD')!.synced).toBe(false);
    expect(n.book('BTC-USD')!.bids.levels).toHaveLength(0);
    expect(run(n, v2Book('update', 'BTC/USD', [['45000.0', '2.00000000']], [], 1)).label).toBe('book-awaiting-snapshot');
    run(n, status('stale', 'no frame for 15000 ms').data, { channel: STATUS_CHANNEL });
    expect(malformed('{"status":"gone","symbols":[]}', n, { channel: STATUS_CHANNEL })).toBe('status frame: status must be connected, disconnected or stale, got "gone"');
    expect(malformed('{"status":"stale","reason":"x"}', n, { channel: STATUS_CHANNEL })).toBe('status frame: symbols must be an array, got missing');
  });

  it('REST AssetPairs is labelled and gives precisions; errors and unknown REST responses are rejected', () => {
    const n = new KrakenNormalizer();
    const body = { error: [], result: { XXBTZUSD: { altname: 'XBTUSD', wsname: 'XBT/USD', pair_decimals: 1, lot_decimals: 8 }, 'XBTUSD.d': { altname: 'XBTUSD.d', pair_decimals: 1, lot_decimals: 8 } } };
    expect(run(n, body, { channel: 'rest:/0/public/AssetPairs' }).label).toBe('asset-pairs');
    expect(n.precisionOf('BTC-USD')).toEqual({ price: 1, qty: 8 });
    expect(malformed({ error: ['EQuery:Unknown asset pair'] }, n, { channel: 'rest:/0/public/AssetPairs?pair=FOO' })).toBe('REST /0/public/AssetPairs?pair=FOO: error ["EQuery:Unknown asset pair"]');
    expect(malformed({ error: [], result: {} }, n, { channel: 'rest:/0/public/Depth?pair=XBTUSD' })).toBe('REST /0/public/Depth?pair=XBTUSD: unsupported REST response');
  });
});

// ---------------------------------------------------------------- checksum, symbols, protocol

describe('kraken checksum text', () => {
  it('follows the documented formatting ("0.05000" with "0.00000304" → "5000304")', () => {
    expect(checksumDigits('0.05000', 0.05, undefined)! + checksumDigits('0.00000304', 0.00000304, undefined)!).toBe('5000304');
    expect(checksumDigits('45285.2', 45285.2, 1)).toBe('452852');
    expect(checksumDigits('0.00100000', 0.001, 8)).toBe('100000');
    expect(checksumDigits('0.001', 0.001, 8)).toBe('100000'); // padded to the precision
    expect(checksumDigits('45000', 45000, 1)).toBe('450000');
    expect(checksumDigits('354.15000000', 354.15, 2)).toBe('35415000000'); // never cut
    expect(checksumDigits(undefined, 0.5666, 4)).toBe('5666');
    expect(checksumDigits('1e-8', 1e-8, 8)).toBe('1');
    expect(checksumDigits(undefined, 1, undefined)).toBeUndefined();
  });

  it('hashes top 10 asks ascending then top 10 bids descending', () => {
    const book = new OrderBook();
    const asks: [string, string][] = [];
    const bids: [string, string][] = [];
    for (let i = 0; i < 15; i++) {
      const ap = (0.05 + i * 0.0001).toFixed(5);
      const bp = (0.0499 - i * 0.0001).toFixed(5);
      const q = (0.000005 * (i + 1)).toFixed(8);
      asks.push([ap, q]);
      bids.push([bp, q]);
      book.asks.set(Number(ap), Number(q), ap, q);
      book.bids.set(Number(bp), Number(q), bp, q);
    }
    expect(krakenChecksumText(book)!.startsWith('5000500')).toBe(true);
    expect(krakenChecksum(book)).toBe(referenceChecksum(bids, asks));
    book.bids.set(Number(bids[9]![0]), 0);
    expect(krakenChecksum(book)).toBe(referenceChecksum(bids.filter((_, i) => i !== 9), asks));
    const untexted = new OrderBook();
    untexted.asks.set(1.5, 2);
    expect(krakenChecksum(untexted)).toBeUndefined();
    expect(krakenChecksum(untexted, { price: 2, qty: 3 })).toBe(zlibCrc32('1502000') >>> 0);
  });
});

describe('kraken symbols, protocol and registry', () => {
  it('maps pair names to canonical symbols', () => {
    expect(krakenSymbol('XBT/USD')).toBe('BTC-USD');
    expect(krakenSymbol('XDG/EUR')).toBe('DOGE-EUR');
    expect(krakenSymbol('BTC/USD')).toBe('BTC-USD');
    expect(krakenSymbol('KSM/XBT')).toBe('KSM-BTC');
    expect(krakenSymbol('ETH2.S/ETH')).toBe('ETH2S-ETH');
    expect(krakenSymbol('AAPLx/USD')).toBe('AAPLX-USD');
    expect(() => krakenSymbol('XBTUSD')).toThrow(MalformedFrameError);
    expect(() => krakenSymbol('A/B/C')).toThrow('invalid pair "A/B/C": expected BASE/QUOTE');
    expect(() => krakenSymbol('BT C/USD')).toThrow('invalid pair "BT C/USD"');
  });

  it('maps user input to v2 pair names', () => {
    expect(krakenWireSymbol('BTC-USD')).toBe('BTC/USD');
    expect(krakenWireSymbol('xbt/usd')).toBe('BTC/USD');
    expect(krakenWireSymbol('XBTUSD')).toBe('BTC/USD');
    expect(krakenWireSymbol('xdg-eur')).toBe('DOGE/EUR');
    expect(krakenWireSymbol('ETHUSDT')).toBe('ETH/USDT');
    expect(krakenWireSymbol('ksm_xbt')).toBe('KSM/BTC');
    let err: unknown;
    try {
      krakenWireSymbol('BTC');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VigilError);
    expect((err as VigilError).code).toBe(ERR.FEED);
    expect((err as VigilError).statusCode).toBe(400);
    expect(() => krakenWireSymbol('A-B-C')).toThrow(VigilError);
  });

  it('describes the v2 protocol: endpoints, subscriptions, ping, resync of one symbol', () => {
    expect(krakenProtocol.venue).toBe('kraken');
    expect(krakenProtocol.defaultWsUrl).toBe(KRAKEN_WS_URL);
    expect(KRAKEN_WS_URL).toBe('wss://ws.kraken.com/v2');
    expect(krakenProtocol.defaultRestUrl).toBe(KRAKEN_REST_URL);
    expect(krakenProtocol.nativeSymbols(['BTC-USD', 'xdg/usd'])).toEqual(['BTC/USD', 'DOGE/USD']);
    expect(krakenProtocol.url('ws://127.0.0.1:1', ['BTC/USD'])).toBe('ws://127.0.0.1:1');
    const msgs = krakenProtocol.subscribeMessages(['BTC/USD', 'ETH/USD']).map((m) => JSON.parse(m) as Record<string, unknown>);
    expect(msgs.map(({ req_id: _r, ...m }) => m)).toEqual([
      { method: 'subscribe', params: { channel: 'instrument', snapshot: true } },
      { method: 'subscribe', params: { channel: 'ticker', event_trigger: 'bbo', snapshot: true, symbol: ['BTC/USD', 'ETH/USD'] } },
      { method: 'subscribe', params: { channel: 'trade', snapshot: true, symbol: ['BTC/USD', 'ETH/USD'] } },
      { method: 'subscribe', params: { channel: 'book', depth: KRAKEN_BOOK_DEPTH, snapshot: true, symbol: ['BTC/USD', 'ETH/USD'] } },
    ]);
    expect(new Set(msgs.map((m) => m.req_id)).size).toBe(4);
    expect(JSON.parse(krakenProtocol.appPing!.message)).toEqual({ method: 'ping' });
    const sent: string[] = [];
    const ctx: ConnectionContext = { send: (d) => sent.push(d), emit: () => {}, fetchText: () => Promise.reject(new Error('no')), restUrl: '', log: () => {} };
    krakenProtocol.resync('ETH/USD', ctx);
    expect(sent.map((s) => JSON.parse(s) as Record<string, unknown>).map(({ req_id: _r, ...m }) => m)).toEqual([
      { method: 'unsubscribe', params: { channel: 'book', depth: KRAKEN_BOOK_DEPTH, symbol: ['ETH/USD'] } },
      { method: 'subscribe', params: { channel: 'book', depth: KRAKEN_BOOK_DEPTH, snapshot: true, symbol: ['ETH/USD'] } },
    ]);
  });

  it('is registered as "kraken", the name cryptofeed captures map to', () => {
    expect(venues.kraken).toBe(krakenAdapter);
    expect(getAdapter('kraken').name).toBe('kraken');
    expect(getAdapter('kraken').createNormalizer()).toBeInstanceOf(KrakenNormalizer);
  });
});

// ---------------------------------------------------------------- robustness

describe('kraken normalizer robustness', () => {
  it('damaged real frames only ever raise MalformedFrameError, and every event it still emits is valid', () => {
    let seed = 12345;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const sources = [...captureFrames(BOOK_FILE).slice(0, 400), ...captureFrames(TICKER_FILE), ...captureFrames(TRADE_FILE)];
    const v2 = [
      v2Book('snapshot', 'BTC/USD', [['45000.0', '1.00000000']], [['45001.0', '1.00000000']], referenceChecksum([['45000.0', '1.00000000']], [['45001.0', '1.00000000']])),
      '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":45001.0,"qty":0.1,"ord_type":"market","trade_id":7,"timestamp":"2024-01-01T00:00:00.000001Z"}]}',
      '{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":45000.0,"bid_qty":1.0,"ask":45001.0,"ask_qty":1.0}]}',
    ];
    const texts = [...sources.map((s) => s.data), ...v2];
    const alphabet = '[]{}",:.-0123456789eE abrcsnul';
    const n = new KrakenNormalizer({ requestResync: () => {} });
    let rejected = 0;
    let emitted = 0;
    for (let i = 0; i < 6_000; i++) {
      let t = texts[Math.floor(rand() * texts.length)]!;
      const edits = 1 + Math.floor(rand() * 3);
      for (let k = 0; k < edits; k++) {
        const at = Math.floor(rand() * t.length);
        const op = rand();
        if (op < 0.4) t = t.slice(0, at) + alphabet[Math.floor(rand() * alphabet.length)] + t.slice(at + 1);
        else if (op < 0.7) t = t.slice(0, at) + t.slice(at + 1);
        else if (op < 0.85) t = t.slice(0, at);
        else t = t.slice(0, at) + alphabet[Math.floor(rand() * alphabet.length)] + t.slice(at);
      }
      const out: CanonicalEvent[] = [];
      try {
        n.normalize({ recvTs: 1_700_000_000_000 + i, source: 'kraken', data: t }, out);
      } catch (err) {
        if (!(err instanceof MalformedFrameError)) throw new Error(`non-Malformed error ${(err as Error).name}: ${(err as Error).message} for ${t}`);
        rejected++;
        continue;
      }
      for (const e of out) {
        const r = eventSchema.safeParse(e);
        if (!r.success) throw new Error(`invalid event ${JSON.stringify(e)} from ${t}`);
        emitted++;
      }
    }
    expect(rejected).toBeGreaterThan(3_000);
    expect(emitted).toBeGreaterThan(100);
  });
});
