// The Binance scanner (src/feeds/binance-scan.ts) against the JSON.parse path it shortcuts: on every
// frame of the real Binance captures, and on many mutations of real frames, a normalizer with the
// scanner and one forced onto the JSON.parse path give exactly the same events (same keys in the same
// order, same numbers bit for bit), the same ignore label, or the same error, frame after frame.
import { describe, expect, it } from 'vitest';
import { FEED_CAPTURES } from '../bench/feeds.ts';
import type { CanonicalEvent } from '../src/core/events.ts';
import { BinanceNormalizer, binanceSpotMarket } from '../src/feeds/binance.ts';
import { binanceFuturesMarket } from '../src/feeds/binance-futures.ts';
import { BinanceScan, SCAN_BOOK_TICKER } from '../src/feeds/binance-scan.ts';
import { decimalText } from '../src/feeds/normalize-util.ts';
import { STATUS_CHANNEL, type RawFrame } from '../src/feeds/types.ts';
import { readRecords } from '../src/replay/formats.ts';
import { mulberry32 } from './helpers/random.ts';

const [HFT, CRYPTOFEED] = FEED_CAPTURES.binance!;
const MUTANTS = Number(process.env.VIGIL_SCAN_MUTANTS ?? 40_000);

async function frames(path: string): Promise<RawFrame[]> {
  const out: RawFrame[] = [];
  for await (const r of readRecords(path)) if (r.type === 'frame' && r.frame.source === 'binance') out.push(r.frame);
  return out;
}

type Kind = 'trade' | 'bookTicker' | 'depthUpdate' | 'other';
function kindOf(data: string): Kind {
  if (data.includes('"e":"trade"')) return 'trade';
  if (data.includes('"e":"depthUpdate"')) return 'depthUpdate';
  if (data.includes('@bookTicker')) return 'bookTicker';
  return 'other';
}

/** Two normalizers fed the same frames: one with the scanner, one on the JSON.parse path only. */
class Pair {
  readonly resyncs: { fast: string[]; slow: string[] } = { fast: [], slow: [] };
  readonly fast: BinanceNormalizer;
  readonly slow: BinanceNormalizer;

  constructor(market = binanceSpotMarket) {
    this.fast = new BinanceNormalizer(market, { requestResync: (s, r) => void this.resyncs.fast.push(`${s}: ${r}`) });
    this.slow = new BinanceNormalizer(market, { requestResync: (s, r) => void this.resyncs.slow.push(`${s}: ${r}`) }, { scan: false });
  }
}

/**
 * What a normalizer made of a frame, as exact text: events (keys in order; -0, NaN, Infinity and
 * undefined spelled out, which JSON would blur), the label, or the error's class and message.
 */
function outcome(n: BinanceNormalizer, frame: RawFrame): string {
  const events: CanonicalEvent[] = [];
  let result: unknown;
  try {
    result = { label: n.normalize(frame, events) ?? null };
  } catch (err) {
    result = { error: `${(err as Error).name}: ${(err as Error).message}` };
  }
  return JSON.stringify({ ...(result as object), events }, (_k, v: unknown) => {
    if (v === undefined) return '<undefined>';
    if (typeof v === 'number' && (Object.is(v, -0) || !Number.isFinite(v))) return `<${Object.is(v, -0) ? '-0' : String(v)}>`;
    return v;
  });
}

/** Both normalizers on one frame: their outcome if they agree, else a description of the difference. */
function compare(p: Pair, frame: RawFrame): { same: boolean; fast: string; slow: string; scanned: boolean } {
  const before = p.fast.scannedFrames;
  const fast = outcome(p.fast, frame);
  const slow = outcome(p.slow, frame);
  return { same: fast === slow, fast, slow, scanned: p.fast.scannedFrames === before + 1 };
}

/** The normalizers' state after a stream: book report, books, resync requests. */
function state(n: BinanceNormalizer, resyncs: string[]): unknown {
  const report = n.bookReport();
  const books = Object.keys(report).map((sym) => {
    const b = n.orderBook(sym)!;
    return { sym, synced: b.synced, seq: b.book.seq, bids: levels(b.book.bids), asks: levels(b.book.asks) };
  });
  return { report, books, resyncs };
}

function levels(side: { length: number; priceAt(i: number): number; qtyAt(i: number): number }): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < side.length; i++) out.push([side.priceAt(i), side.qtyAt(i)]);
  return out;
}

describe('the scanner gives what the JSON.parse path gives, on the real Binance captures', () => {
  it.each([
    // frames, hot frames (trade, bookTicker, depthUpdate), events (test/binance.test.ts has the hftbacktest
    // ones; the cryptofeed capture has no REST snapshot: its diffs stay buffered, 84 quotes + 2 aggTrades)
    ['hftbacktest spot BTCUSDT', HFT!, 41_249, 41_248, 41_248],
    ['cryptofeed spot, 4 symbols', CRYPTOFEED!, 265, 261, 86],
  ])('%s: frame by frame, and the book state after', async (_name, path, count, hot, eventCount) => {
    const all = await frames(path);
    expect(all).toHaveLength(count);
    const p = new Pair();
    const mismatches: string[] = [];
    let events = 0;
    for (const [i, f] of all.entries()) {
      const r = compare(p, f);
      if (!r.same && mismatches.length < 5) mismatches.push(`frame ${i}: ${f.data.slice(0, 200)}\n  scan:  ${r.fast.slice(0, 400)}\n  parse: ${r.slow.slice(0, 400)}`);
      events += JSON.parse(r.slow).events.length;
    }
    expect(mismatches).toEqual([]);
    expect(events).toBe(eventCount);
    // Every trade, bookTicker and depthUpdate went the scanner's way; the rest (REST snapshot, aggTrade, kline) did not.
    expect(p.fast.scannedFrames).toBe(hot);
    expect(p.slow.scannedFrames).toBe(0);
    expect(state(p.fast, p.resyncs.fast)).toEqual(state(p.slow, p.resyncs.slow));
    expect(p.fast.bookReport()).not.toEqual({});
  });
});

// ---------------------------------------------------------------- mutations

/** JSON's escape of one char (`\u0042`), which JSON.parse reads back as the very same char. */
const escapeChar = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

const INT_VARIANTS = (d: string): string[] => [
  `${d[0]}.${d.slice(1)}e${d.length - 1}`, // exponent form of the same number
  `${d}e0`,
  `${d}.0`,
  `-${d}`,
  `0${d}`,
  '0',
  '00',
  '-0',
  '9007199254740991',
  '9007199254740992',
  '9007199254740993',
  '99999999999999999999',
  `"${d}"`,
  'null',
  'true',
  '1.5',
  `${d} `,
];

const DECIMAL_VARIANTS = (d: string): string[] => [
  '"6.183763e4"',
  '"1E2"',
  '"-1.5"',
  '"-0"',
  '"-0.0"',
  '"0"',
  '"0.00000000"',
  '""',
  '"."',
  '"1."',
  '".5"',
  '"0.5.1"',
  `"0${d.slice(1, -1)}"`,
  `"00${d.slice(1, -1)}"`,
  '"12345678.123456789"', // 18 chars: +s
  '"1234567890123456"', // 16 digits: +s
  '"123456789012345"', // 15 digits: exact path
  '"0.000000000000001"',
  '"0.1234567890123456"',
  `"${'9'.repeat(400)}"`, // Infinity
  '"1e400"',
  '"Infinity"',
  '"NaN"',
  '" 1.5"',
  '"1.5 "',
  '"+1.5"',
  '"0x10"',
  d.slice(1, -1), // unquoted JSON number
  'null',
  'true',
  '[]',
  `"${d.slice(1, 3)}${escapeChar(d[3] ?? '0')}${d.slice(4, -1)}"`, // an escaped digit: the same text to JSON.parse
];

const SYMBOL_VARIANTS = ['"btcusdt"', '"BtcUsdt"', '"FOOBAR"', '""', '"BTC-USDT"', '"BTC USDT"', '"BTCUSD\u0422"', '"ETHBTC"', '"BTC\\u0055SDT"', '123', 'null', '"BTCUSDT\\n"'];
const BOOL_VARIANTS = ['true', 'false', '1', '0', 'null', '"true"', 'True', 'tru', 'falsey'];
const LEVEL_VARIANTS = ['[]', '{}', 'null', '[[]]', '[["1.0"]]', '[["1.0","2.0","3.0"]]', '[[1.0,2.0]]', '[["1.0",2]]', '[["0","1.0"]]', '[["1.0","-1"]]', '[["1.0","0"]]', '[["-0","1"]]', '[[ "1.0","2.0"]]', '[["1.0","2.0"],]', '[["1.0","2.0"]', '[["1.0","2.0"],["3.0","4.0"]]', '"x"'];
const WHITESPACE = [' ', '\n', '\t', '\r', '  '];
const JUNK = ['"', '\\', '{', '}', '[', ']', ',', ':', '0', '9', '.', '-', 'e', 'x', ' ', '\u0000', '\u0001', '\u00e9', '\ud800', 'ü'];

type Mutation = (data: string, r: () => number) => string;

/** Replaces one match of `re` (chosen at random) by `f(match)`; the text unchanged when none. */
function replaceOne(data: string, re: RegExp, f: (m: RegExpExecArray) => string, r: () => number): string {
  const ms = [...data.matchAll(re)];
  if (ms.length === 0) return data;
  const m = ms[Math.floor(r() * ms.length)]! as RegExpExecArray;
  return data.slice(0, m.index) + f(m) + data.slice(m.index + m[0].length);
}

const pick = <T>(a: readonly T[], r: () => number): T => a[Math.floor(r() * a.length)]!;
const at = (data: string, r: () => number) => Math.floor(r() * (data.length + 1));

/** The payload object's keys in a new order (the frame re-serialized as Binance would, no whitespace). */
function reorder(data: string, r: () => number, how: 'swap' | 'unknown' | 'duplicate' | 'drop'): string {
  let msg: Record<string, unknown>;
  try {
    msg = JSON.parse(data) as Record<string, unknown>;
  } catch {
    return data;
  }
  const enveloped = typeof msg.stream === 'string' && msg.data !== null && typeof msg.data === 'object';
  const p = (enveloped ? msg.data : msg) as Record<string, unknown>;
  const entries = Object.entries(p);
  const k = Math.floor(r() * entries.length);
  let text: string;
  if (how === 'swap') {
    const j = (k + 1) % entries.length;
    [entries[k], entries[j]] = [entries[j]!, entries[k]!];
    text = JSON.stringify(Object.fromEntries(entries));
  } else if (how === 'drop') {
    entries.splice(k, 1);
    text = JSON.stringify(Object.fromEntries(entries));
  } else {
    // Text surgery: JSON.stringify cannot write a duplicate key.
    const parts = entries.map(([key, v]) => `${JSON.stringify(key)}:${JSON.stringify(v)}`);
    const [key, v] = entries[k]!;
    const extra = how === 'unknown' ? pick(['"x":1', '"zz":"y"', '"pu":123', '"E":1723161255208', '"e":"bookTicker"', '"stream":"x"', '"data":{}'], r) : `${JSON.stringify(key)}:${JSON.stringify(typeof v === 'string' ? '1.5' : typeof v === 'number' ? v + 1 : v)}`;
    parts.splice(Math.floor(r() * (parts.length + 1)), 0, extra);
    text = `{${parts.join(',')}}`;
  }
  if (!enveloped) return text;
  return r() < 0.2 ? `{"data":${text},"stream":${JSON.stringify(msg.stream)}}` : `{"stream":${JSON.stringify(msg.stream)},"data":${text}}`;
}

const MUTATIONS: Record<string, Mutation> = {
  deleteChar: (d, r) => {
    const i = Math.floor(r() * d.length);
    return d.slice(0, i) + d.slice(i + 1);
  },
  insertChar: (d, r) => {
    const i = at(d, r);
    return d.slice(0, i) + pick(JUNK, r) + d.slice(i);
  },
  replaceChar: (d, r) => {
    const i = Math.floor(r() * d.length);
    return d.slice(0, i) + pick(JUNK, r) + d.slice(i + 1);
  },
  whitespace: (d, r) => replaceOne(d, /[,:{}[\]]/g, (m) => (r() < 0.5 ? pick(WHITESPACE, r) + m[0] : m[0] + pick(WHITESPACE, r)), r),
  whitespaceEnds: (d, r) => (r() < 0.5 ? pick(WHITESPACE, r) + d : d + pick(WHITESPACE, r)),
  swapKeys: (d, r) => reorder(d, r, 'swap'),
  unknownKey: (d, r) => reorder(d, r, 'unknown'),
  duplicateKey: (d, r) => reorder(d, r, 'duplicate'),
  dropKey: (d, r) => reorder(d, r, 'drop'),
  integer: (d, r) => replaceOne(d, /(?<=":)\d+(?=[,}])/g, (m) => pick(INT_VARIANTS(m[0]), r), r),
  decimal: (d, r) => replaceOne(d, /"\d+\.\d+"/g, (m) => pick(DECIMAL_VARIANTS(m[0]), r), r),
  symbol: (d, r) => replaceOne(d, /(?<="s":)"[A-Z]+"/g, () => pick(SYMBOL_VARIANTS, r), r),
  bool: (d, r) => replaceOne(d, /(?<=":)(true|false)(?=[,}])/g, () => pick(BOOL_VARIANTS, r), r),
  levels: (d, r) => replaceOne(d, /(?<="[ab]":)\[(\[[^\]]*\],?)*\]/g, () => pick(LEVEL_VARIANTS, r), r),
  // An escape anywhere in a string (key, stream, symbol, number text): JSON.parse reads the same text.
  escape: (d, r) => replaceOne(d, /"([^"\\]+)"/g, (m) => {
    const s = m[1]!;
    const i = Math.floor(r() * s.length);
    return `"${s.slice(0, i)}${r() < 0.8 ? escapeChar(s[i]!) : pick(['\\"', '\\\\', '\\/', '\\n'], r)}${s.slice(i + 1)}"`;
  }, r),
  controlChar: (d, r) => replaceOne(d, /"([^"\\]+)"/g, (m) => `"${m[1]}${pick(['\u0001', '\u001f', '\t', '\u007f', '\u00a0', '\u2028'], r)}"`, r),
  nonAsciiStream: (d, r) => d.replace(/^\{"stream":"([^"]*)"/, (_m, s: string) => `{"stream":"${s}${pick(['é', '\u0422', '\ud83d\ude00', '\ud800'], r)}"`),
  truncate: (d, r) => d.slice(0, Math.floor(r() * d.length)),
  wrap: (d, r) =>
    pick(
      [`[${d}]`, `{"stream":"x","data":${d}}`, `${d}x`, `${d}}`, `${d},`, `${d}${d}`, `{"stream":"btcusdt@trade","data":${d},"x":1}`, `{"stream":1,"data":${d}}`, `{"stream":"a\\"b","data":${d}}`],
      r,
    ),
  // The bare payload (no envelope): the scanner takes it too.
  unwrap: (d) => d.replace(/^\{"stream":"[^"]*","data":(.*)\}$/, '$1'),
  eventType: (d, r) => d.replace(/"e":"(trade|depthUpdate)"/, () => `"e":${pick(['"aggTrade"', '"kline"', '"depthUpdate"', '"trade"', '"bookTicker"', '"Trade"', '"x"', '1', 'null'], r)}`),
  sequence: (d) => d.replace(/"U":(\d+),"u":(\d+)/, (_m, a: string, b: string) => `"U":${b},"u":${a}`),
  // Many levels; now and then more than the scanner takes (its 1 MB limit).
  bigFrame: (d, r) => d.replace(/"b":\[/, () => `"b":[${'["1.00000000","2.00000000"],'.repeat(r() < 0.05 ? 40_000 : 1 + Math.floor(r() * 100))}`),
};

const MUTATION_NAMES = Object.keys(MUTATIONS);

describe('mutated real frames: the scanner and the JSON.parse path agree', () => {
  it(`${MUTANTS.toLocaleString('en-US')} mutants of trade, bookTicker and depthUpdate frames, in a live stream`, async () => {
    const hft = await frames(HFT!);
    const cf = await frames(CRYPTOFEED!);
    // The stream from its start (the REST snapshot comes early, so books sync and later diffs are applied),
    // then the multi-symbol capture.
    const stream = [...hft.slice(0, 6_000), ...cf];
    const hot = stream.filter((f) => kindOf(f.data) !== 'other');
    const r = mulberry32(20240808);
    const p = new Pair();
    const mismatches: string[] = [];
    const tally = { mutants: 0, scanned: 0, parsed: 0, events: 0, errors: 0, labels: 0, unchanged: 0 };
    // Per mutation when applied alone; two in a row count under `double`.
    const byMutation: Record<string, { tried: number; scanned: number }> = Object.fromEntries([...MUTATION_NAMES, 'double'].map((m) => [m, { tried: 0, scanned: 0 }]));
    const perFrame = MUTANTS / hot.length;
    let unmutatedHot = 0;
    let unmutatedScanned = 0;
    let credit = 0;

    const check = (f: RawFrame, label: string) => {
      const c = compare(p, f);
      if (!c.same && mismatches.length < 10) mismatches.push(`${label}: ${JSON.stringify(f.data.slice(0, 300))} recvTs=${f.recvTs} channel=${f.channel}\n  scan:  ${c.fast.slice(0, 500)}\n  parse: ${c.slow.slice(0, 500)}`);
      return c;
    };

    for (const f of stream) {
      const kind = kindOf(f.data);
      if (kind !== 'other') {
        // Mutants of this frame first, then the frame itself, so the books go on as the capture has them.
        for (credit += perFrame; credit >= 1; credit--) {
          let name = pick(MUTATION_NAMES, r);
          let data = MUTATIONS[name]!(f.data, r);
          if (r() < 0.15) {
            const second = pick(MUTATION_NAMES, r);
            data = MUTATIONS[second]!(data, r);
            name = `double`;
          }
          if (data === f.data) tally.unchanged++;
          const mutant: RawFrame = { ...f, data };
          const c = check(mutant, `${name} of ${kind}`);
          tally.mutants++;
          byMutation[name]!.tried++;
          if (c.scanned) {
            tally.scanned++;
            byMutation[name]!.scanned++;
          } else tally.parsed++;
          const o = JSON.parse(c.slow) as { error?: string; label: string | null; events: unknown[] };
          if (o.error !== undefined) tally.errors++;
          else if (o.label !== null) tally.labels++;
          else tally.events += o.events.length;
        }
        unmutatedHot++;
      }
      const c = check(f, `unmutated ${kind}`);
      if (kind !== 'other' && c.scanned) unmutatedScanned++;
    }

    // Frames the scanner must leave alone, whatever their text: bad recvTs, and status frames.
    for (const f of hot.slice(0, 200)) {
      for (const recvTs of [NaN, -1, Infinity, -Infinity]) {
        const c = check({ ...f, recvTs }, `recvTs ${recvTs}`);
        expect(c.scanned).toBe(false);
        expect(c.slow).toContain('frame recvTs must be a non-negative number');
      }
      const c = check({ ...f, channel: STATUS_CHANNEL }, 'status channel');
      expect(c.scanned).toBe(false);
      expect(c.slow).toContain('status frame');
    }

    console.log('scan mutants:', tally, byMutation);
    expect(mismatches).toEqual([]);
    expect(state(p.fast, p.resyncs.fast)).toEqual(state(p.slow, p.resyncs.slow));
    // Not vacuous: every unmutated hot frame was the scanner's, and the mutants cover both paths and every kind of outcome.
    expect(unmutatedScanned).toBe(unmutatedHot);
    expect(unmutatedHot).toBe(hot.length);
    expect(tally.mutants).toBeGreaterThanOrEqual(MUTANTS - 1);
    expect(tally.scanned).toBeGreaterThan(MUTANTS * 0.02);
    expect(tally.parsed).toBeGreaterThan(MUTANTS * 0.5);
    expect(tally.errors).toBeGreaterThan(MUTANTS * 0.2);
    expect(tally.labels).toBeGreaterThan(0);
    expect(tally.events).toBeGreaterThan(MUTANTS * 0.1);
    for (const [name, m] of Object.entries(byMutation)) expect(m.tried, name).toBeGreaterThan(0);
    // Mutations that keep the frame in the layout (values only) reach the scanner; the others never do.
    for (const name of ['integer', 'decimal', 'symbol', 'bool', 'levels', 'unwrap', 'sequence', 'bigFrame']) expect(byMutation[name]!.scanned, name).toBeGreaterThan(0);
    for (const name of ['swapKeys', 'unknownKey', 'duplicateKey', 'dropKey', 'escape', 'nonAsciiStream', 'whitespace', 'whitespaceEnds']) expect(byMutation[name]!.scanned, name).toBe(0);
  }, 240_000);
});

describe('decimals and integers, bit for bit', () => {
  it('a quoted decimal reads as decimalText reads it, for every length and dot position', () => {
    const r = mulberry32(7);
    const p = new Pair();
    let scanned = 0;
    for (let k = 0; k < 20_000; k++) {
      const len = 1 + Math.floor(r() * 20);
      let s = '';
      for (let i = 0; i < len; i++) s += String(Math.floor(r() * 10));
      if (r() < 0.8) {
        const dot = Math.floor(r() * (len + 1));
        s = `${s.slice(0, dot)}.${s.slice(dot)}`;
      }
      const frame: RawFrame = {
        recvTs: 1_723_161_255_000.5 + k,
        source: 'binance',
        data: `{"stream":"btcusdt@bookTicker","data":{"u":${50_093_239_212 + k},"s":"BTCUSDT","b":"${s}","B":"1.0","a":"${s}","A":"${s}"}}`,
      };
      const c = compare(p, frame);
      expect(c.fast, s).toBe(c.slow);
      const v = decimalText(s);
      if (v >= 0 && v !== Infinity) {
        expect(c.scanned, s).toBe(true);
        scanned++;
        const q = JSON.parse(c.fast).events[0] as { bidPx: number | string };
        if (typeof q.bidPx === 'number') expect(Object.is(q.bidPx, v), s).toBe(true);
      }
    }
    expect(scanned).toBeGreaterThan(15_000);
  });

  it('integers up to Number.MAX_SAFE_INTEGER are the scanner\'s, above it the JSON.parse path reports them', () => {
    const p = new Pair();
    const trade = (t: string, T: string) => ({ recvTs: 1, source: 'binance', data: `{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":${t},"p":"1.5","q":"0","T":${T},"m":false,"M":true}}` });
    for (const [t, T, scanned] of [
      ['0', '0', true],
      ['9007199254740991', '9007199254740991', true],
      ['9007199254740992', '1', false],
      ['1', '9007199254740992', false],
      ['1', '9007199254740993', false],
      ['1', '10000000000000000', false],
      ['1', '01', false],
    ] as const) {
      const c = compare(p, trade(t, T));
      expect(c.fast, `${t} ${T}`).toBe(c.slow);
      expect(c.scanned, `${t} ${T}`).toBe(scanned);
    }
  });
});

describe('the symbol', () => {
  it('is the last string object again only for the same bytes: a longer, shorter or changed symbol is read anew', () => {
    const scan = new BinanceScan();
    const frame = (sym: string) => `{"u":1,"s":"${sym}","b":"1.0","B":"2.0","a":"3.0","A":"4.0"}`;
    const seen: string[] = [];
    for (const sym of ['BTCUSDT', 'BTCUSDT', 'BTCUSDTX', 'BTCUSD', 'BTCUSDT', 'BTCUSDX', 'ETHUSDT', 'ETHUSDT', 'E', 'ETHUSDT']) {
      expect(scan.scan(frame(sym)), sym).toBe(SCAN_BOOK_TICKER);
      expect(scan.symbol).toBe(sym);
      seen.push(scan.symbol);
    }
    expect(seen[1]).toBe(seen[0]);
    expect(seen[7]).toBe(seen[6]);
    // A symbol equal to the last one up to the end of the frame is not taken: the frame ends first.
    scan.scan(frame('BTCUSDT'));
    expect(scan.scan('{"u":1,"s":"BTCUSDT')).toBe(0);
    expect(scan.scan('{"u":1,"s":"BTCUSD')).toBe(0);
  });
});

describe('futures', () => {
  it('the futures normalizer keeps to the JSON.parse path (its layouts are not the scanner\'s)', () => {
    const p = new Pair(binanceFuturesMarket);
    const frames: RawFrame[] = [
      '{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1.0","B":"1.0","a":"2.0","A":"1.0"}}',
      '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":5,"p":"1.5","q":"1","T":2,"m":true,"M":true}}',
      '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[],"a":[]}}',
    ].map((data, i) => ({ recvTs: 1_700_000_000_000 + i, source: 'binance-futures', data }));
    for (const f of frames) expect(compare(p, f).same).toBe(true);
    expect(p.fast.scannedFrames).toBe(0);
  });
});
