import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { ERR, VigilError } from '../src/core/errors.ts';
import type { Book, CanonicalEvent } from '../src/core/events.ts';
import { binanceAdapter } from '../src/feeds/binance.ts';
import type { RawFrame } from '../src/feeds/types.ts';
import {
  detectFormat,
  fileFormat,
  formatRecordLine,
  nsToMs,
  readRecords,
  restChannel,
  secondsToMs,
  venueFromUrl,
  type ReplayRecord,
} from '../src/replay/formats.ts';

const DATA = new URL('../../shared/data/exchange_raw/', import.meta.url).pathname;
const captureLines = (rel: string): string[] => gunzipSync(readFileSync(`${DATA}${rel}`)).toString('utf8').split('\n');
const HFT = captureLines('hftbacktest/spot_btcusdt_20240808.gz');
const CF_BINANCE = captureLines('cryptofeed/BINANCE.ws.1.0.gz');
const CF_OKX = captureLines('cryptofeed/OKX.ws.1.0.gz');
const CF_COINBASE_REST = captureLines('cryptofeed/COINBASE.0.gz');

const dir = mkdtempSync(join(tmpdir(), 'vigil-formats-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
function write(lines: string[] | string, opts: { gzip?: boolean; name?: string } = {}): string {
  const path = join(dir, opts.name ?? `f${++fileNo}.txt`);
  const text = typeof lines === 'string' ? lines : `${lines.join('\n')}\n`;
  writeFileSync(path, opts.gzip ? gzipSync(text) : text);
  return path;
}
async function readAll(path: string): Promise<ReplayRecord[]> {
  const out: ReplayRecord[] = [];
  for await (const r of readRecords(path)) out.push(r);
  return out;
}
async function rejection(p: Promise<unknown>): Promise<VigilError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(VigilError);
    return err as VigilError;
  }
  throw new Error('expected a rejection');
}

const trade = { kind: 'trade', venue: 'binance', symbol: 'BTC-USDT', ts: 1, recvTs: 2, price: 3, qty: 4, side: 'buy', tradeId: '5' };
const vigilLine = formatRecordLine({ recvTs: 1.5, source: 'binance', data: '{"result":null,"id":1}' });

describe('detectFormat', () => {
  it('recognizes each format from its first lines', () => {
    expect(detectFormat(HFT.slice(0, 10))).toBe('hftbacktest');
    expect(detectFormat(CF_BINANCE.slice(0, 10))).toBe('cryptofeed');
    expect(detectFormat(CF_OKX.slice(0, 3))).toBe('cryptofeed'); // connection + sent frames only
    expect(detectFormat(CF_COINBASE_REST.slice(0, 2))).toBe('cryptofeed'); // REST response + configuration
    expect(detectFormat(['', vigilLine, vigilLine])).toBe('vigil');
    expect(detectFormat(['{"v":1,"meta":{"recorder":"vigil"}}', vigilLine])).toBe('vigil');
    expect(detectFormat([JSON.stringify(trade), JSON.stringify({ kind: 'metric', source: 's', key: 'k', ts: 1, value: 2 })])).toBe('events');
  });

  it('goes by the majority of the sample, so one broken line does not decide', () => {
    expect(detectFormat(['garbage', ...HFT.slice(0, 5)])).toBe('hftbacktest');
  });

  it('throws VigilError INPUT_FORMAT for lines that fit nothing and for no lines', () => {
    for (const lines of [['hello world', 'foo'], ['{"kind":"nope"}'], ['{"v":2,"recvTs":1,"source":"x","data":""}'], [], ['', '  ']]) {
      let err: unknown;
      try {
        detectFormat(lines);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(VigilError);
      expect((err as VigilError).code).toBe(ERR.INPUT_FORMAT);
      expect((err as VigilError).statusCode).toBe(400);
    }
  });
});

describe('fileFormat: gzip by magic bytes, not by name', () => {
  it.each([
    ['hftbacktest', HFT.slice(0, 20)],
    ['cryptofeed', CF_BINANCE.slice(0, 20)],
    ['vigil', [vigilLine, vigilLine]],
    ['events', [JSON.stringify(trade)]],
  ] as const)('%s, plain and gzip', async (format, lines) => {
    expect(await fileFormat(write([...lines], { name: `${format}.gz` }))).toEqual({ format, gzip: false });
    expect(await fileFormat(write([...lines], { gzip: true, name: `${format}.jsonl` }))).toEqual({ format, gzip: true });
  });

  it('reads the real captures', async () => {
    expect(await fileFormat(`${DATA}hftbacktest/spot_btcusdt_20240808.gz`)).toEqual({ format: 'hftbacktest', gzip: true });
    expect(await fileFormat(`${DATA}cryptofeed/KRAKEN.ws.50.0.gz`)).toEqual({ format: 'cryptofeed', gzip: true });
  });
});

describe('readRecords', () => {
  it('reads hftbacktest lines: ns → fractional ms, source binance, line numbers', async () => {
    const recs = await readAll(write(HFT.slice(0, 10), { gzip: true }));
    expect(recs).toHaveLength(10);
    expect(recs.map((r) => r.line)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const first = recs[0];
    if (first?.type !== 'frame') throw new Error('expected a frame');
    expect(first.frame.source).toBe('binance');
    expect(first.frame.recvTs).toBeCloseTo(1723161253937.085768, 3);
    expect(first.frame.data).toBe(HFT[0]?.slice(20));
    expect(first.frame.origin).toMatch(/:1$/);
    expect(nsToMs('1723161253937085768')).toBe(1723161253937.085768);
    expect(nsToMs('1723161253937000500')).toBeGreaterThan(1723161253937); // sub-µs survives (ulp here is ~0.24 µs)
    expect(nsToMs('999')).toBe(0.000999);
    expect(secondsToMs('1633998512.0633569')).toBe(1633998512063.3569);
    expect(secondsToMs('1633998512.5')).toBe(1633998512500);
    expect(secondsToMs('1633998512')).toBe(1633998512000);
  });

  it('reports a line that does not fit as malformed with its line number and keeps going', async () => {
    const lines = [...HFT.slice(0, 3), 'not a frame', '', '1723161254087891268 oops', '17231612540878912680000000 {}', ...HFT.slice(3, 5)];
    const recs = await readAll(write(lines));
    expect(recs.map((r) => [r.line, r.type])).toEqual([
      [1, 'frame'],
      [2, 'frame'],
      [3, 'frame'],
      [4, 'malformed'],
      // line 5 is blank: no record
      [6, 'malformed'],
      [7, 'malformed'],
      [8, 'frame'],
      [9, 'frame'],
    ]);
    const bad = recs[3];
    expect(bad).toMatchObject({ type: 'malformed', line: 4, raw: 'not a frame' });
    expect(bad?.type === 'malformed' && bad.reason).toMatch(/^expected "<ns> <json>"/);
    expect(recs[4]?.type === 'malformed' && recs[4].reason).toMatch(/no JSON after the timestamp/);
  });

  it('takes only digits as the hftbacktest timestamp, in the common 19-digit form and the others', async () => {
    const lines = [
      '172316125393708576x {}', // 19 characters, a letter last
      '1723161253x37085768 {}', // 19, a letter in the ms part
      '-723161253937085768 {}', // 19, a sign first
      '0723161253937085x68 {}', // 19 with a leading zero (the other path), a letter
      '12a4 {}', // short
      '0723161253937085768 {}', // valid with a leading zero
      '1234 {}', // valid, short
    ];
    const recs = (await readAll(write([...HFT.slice(0, 10), ...lines]))).slice(10); // detection needs good lines first
    expect(recs.map((r) => r.type)).toEqual(['malformed', 'malformed', 'malformed', 'malformed', 'malformed', 'frame', 'frame']);
    for (const r of recs.slice(0, 5)) expect(r.type === 'malformed' && r.reason).toMatch(/timestamp is not an integer of nanoseconds/);
    expect(recs[5]?.type === 'frame' && recs[5].frame.recvTs).toBe(723161253937.085768);
    expect(recs[6]?.type === 'frame' && recs[6].frame.recvTs).toBe(0.001234);
  });

  it('handles CRLF line ends and a UTF-8 BOM', async () => {
    const recs = await readAll(write(`\uFEFF${HFT.slice(0, 3).join('\r\n')}\r\n`));
    expect(recs).toHaveLength(3);
    for (const r of recs) {
      expect(r.type).toBe('frame');
      if (r.type === 'frame') expect(r.frame.data.endsWith('}')).toBe(true);
    }
  });

  it('reads cryptofeed: skips connection and sent lines, venue from the connection URL, seconds → ms', async () => {
    const recs = await readAll(write(CF_OKX.slice(0, 8), { gzip: true }));
    expect(recs.map((r) => r.type)).toEqual(['skip', 'skip', 'skip', 'skip', 'frame', 'frame', 'frame', 'frame']);
    expect(recs[0]).toMatchObject({ type: 'skip', line: 1, why: expect.stringMatching(/^connection wss:\/\/ws\.okx\.com.*venue okx/) });
    expect(recs[1]).toMatchObject({ type: 'skip', line: 2, why: expect.stringMatching(/^sent frame/) });
    const f = recs[4];
    if (f?.type !== 'frame') throw new Error('expected a frame');
    expect(f.frame.source).toBe('okx');
    expect(f.frame.recvTs).toBeCloseTo(1652459225503.7491, 2);
    expect(f.frame.data).toBe('{"event":"subscribe","arg":{"channel":"tickers","instId":"BTC-USD-220527"}}');
    expect(f.line).toBe(5);
  });

  it('reads cryptofeed REST responses as frames with a rest: channel, and skips configuration', async () => {
    const recs = await readAll(write(CF_COINBASE_REST, { gzip: true, name: 'COINBASE.0.gz' }));
    expect(recs.map((r) => r.type)).toEqual(['frame', 'skip']);
    expect(recs[0]).toMatchObject({ type: 'frame', frame: { source: 'coinbase', channel: 'rest:/products' } });
    expect(recs[1]).toMatchObject({ type: 'skip', why: 'configuration' });
  });

  it('gives a Binance REST depth snapshot the channel rest:depth:<SYMBOL>, which the normalizer uses', async () => {
    const snapshot = HFT[7]!.slice(20);
    const lines = [
      CF_BINANCE[0]!,
      'https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000 -> 1723161254.2066: ' + snapshot,
      'wss://stream.binance.com:9443/stream <- 1723161254.3: {"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}',
      '1723161254.4: {"result":null,"id":1}',
      'what is this',
    ];
    const recs = await readAll(write(lines, { name: 'noname.log' }));
    expect(recs.map((r) => r.type)).toEqual(['skip', 'frame', 'skip', 'frame', 'malformed']);
    const rest = recs[1];
    if (rest?.type !== 'frame') throw new Error('expected a frame');
    expect(rest.frame).toMatchObject({ source: 'binance', channel: 'rest:depth:BTCUSDT', recvTs: 1723161254206.6 });
    const out: CanonicalEvent[] = [];
    const n = binanceAdapter.createNormalizer();
    n.normalize(rest.frame, out);
    // The snapshot is applied once a depth diff bridges it: the capture's line 6 diff (U ≤ 50093239219 ≤ u).
    expect(out).toEqual([]);
    const sp = HFT[5]!.indexOf(' ');
    n.normalize({ recvTs: 1723161254300, source: 'binance', data: HFT[5]!.slice(sp + 1) }, out);
    expect(out[0]).toMatchObject({ kind: 'book', snapshot: true, symbol: 'BTC-USDT', seq: 50093239218 });
    expect((out[0] as Book).bids).toHaveLength(1000);
    if (recs[3]?.type === 'frame') expect(n.normalize(recs[3].frame, out)).toBe('subscription-ack');
    expect(recs[4]).toMatchObject({ type: 'malformed', line: 5, raw: 'what is this' });
  });

  it('names venues from URLs and REST channels', () => {
    expect(venueFromUrl('wss://stream.binance.com:9443/stream?streams=a')).toBe('binance');
    expect(venueFromUrl('wss://fstream.binance.com/stream')).toBe('binance-futures');
    expect(venueFromUrl('wss://ws-feed.pro.coinbase.com')).toBe('coinbase');
    expect(venueFromUrl('wss://ws.kraken.com')).toBe('kraken');
    expect(venueFromUrl('wss://real.okex.com:8443/ws/v3')).toBe('okx');
    expect(venueFromUrl('not a url')).toBeUndefined();
    expect(restChannel('https://api.binance.com/api/v3/depth?symbol=ethbtc&limit=1000')).toBe('rest:depth:ETHBTC');
    expect(restChannel('https://api.kraken.com/0/public/Depth?pair=XBTUSD')).toBe('rest:/0/public/Depth?pair=XBTUSD');
  });

  it('falls back to the cryptofeed file name for the venue when no connection line names it', async () => {
    const recs = await readAll(write(CF_BINANCE.slice(1, 4), { name: 'BINANCE.ws.9.0' }));
    expect(recs.map((r) => (r.type === 'frame' ? r.frame.source : r.type))).toEqual(['binance', 'binance', 'binance']);
  });

  it('reads the whole hftbacktest capture with physical line numbers', async () => {
    let frames = 0;
    let last = 0;
    let ordered = true;
    for await (const r of readRecords(`${DATA}hftbacktest/spot_btcusdt_20240808.gz`)) {
      if (r.type === 'frame') frames++;
      if (r.line !== last + 1) ordered = false;
      last = r.line;
    }
    expect(frames).toBe(41_249);
    expect(last).toBe(41_249);
    expect(ordered).toBe(true);
  });

  it('reports a truncated gzip as a final malformed record after the readable lines', async () => {
    const full = gzipSync(`${HFT.slice(0, 2000).join('\n')}\n`);
    const path = join(dir, 'truncated.gz');
    writeFileSync(path, full.subarray(0, Math.floor(full.length / 2)));
    const recs = await readAll(path);
    const last = recs[recs.length - 1];
    expect(last).toMatchObject({ type: 'malformed', reason: expect.stringMatching(/^gzip stream ends early or is corrupt/) });
    const frames = recs.filter((r) => r.type === 'frame');
    expect(frames.length).toBeGreaterThan(100);
    expect(frames.length).toBeLessThan(2000);
    expect(last?.line).toBe(frames.length + 1);
  });
});

describe('vigil format', () => {
  const frames: RawFrame[] = [
    { recvTs: 1723161253937.0857, source: 'binance', data: HFT[0]!.slice(20) },
    { recvTs: 1723161254206.652, source: 'binance', channel: 'rest:depth:BTCUSDT', data: HFT[7]!.slice(20) },
    { recvTs: 0, source: 'coinbase', data: 'text with "quotes", a \\ backslash,\na newline, tabs\t, unicode ✓ 𝄞 and \u2028' },
    { recvTs: 12, source: 'x', data: '' },
  ];

  it('round-trips frames through formatRecordLine and readRecords, plain and gzip', async () => {
    const lines = frames.map(formatRecordLine);
    for (const l of lines) expect(l).not.toContain('\n');
    expect(lines[0]).toMatch(/^\{"v":1,"recvTs":1723161253937\.0857,"source":"binance","data":"/);
    expect(lines[1]).toMatch(/^\{"v":1,"recvTs":1723161254206\.652,"source":"binance","channel":"rest:depth:BTCUSDT","data":/);
    for (const gzip of [false, true]) {
      const path = write(['{"v":1,"meta":{"recorder":"vigil record","symbols":["BTCUSDT"]}}', ...lines], { gzip });
      expect(await fileFormat(path)).toEqual({ format: 'vigil', gzip });
      const recs = await readAll(path);
      expect(recs[0]).toEqual({ type: 'skip', line: 1, why: 'meta' });
      const read = recs.slice(1).map((r) => {
        if (r.type !== 'frame') throw new Error(`expected a frame, got ${JSON.stringify(r)}`);
        return r.frame;
      });
      expect(read).toEqual(frames.map((f, i) => ({ ...f, origin: `${path}:${i + 2}` })));
    }
  });

  it('decodes b64 (binary) frames and reports bad records', async () => {
    const b64 = Buffer.from('{"result":null,"id":7}').toString('base64');
    const path = write([
      vigilLine,
      `{"v":1,"recvTs":5,"source":"binance","b64":"${b64}"}`,
      '{"v":1,"source":"binance","data":"x"}',
      '{"v":1,"recvTs":-1,"source":"binance","data":"x"}',
      '{"v":1,"recvTs":1,"data":"x"}',
      '{"v":1,"recvTs":1,"source":"binance"}',
      '{"v":2,"recvTs":1,"source":"binance","data":"x"}',
      '{"v":1,"recvTs":1,"source":"binance","data":"x"',
    ]);
    const recs = await readAll(path);
    expect(recs[1]).toMatchObject({ type: 'frame', frame: { recvTs: 5, data: '{"result":null,"id":7}' } });
    const reasons = recs.slice(2).map((r) => (r.type === 'malformed' ? `${r.line} ${r.reason}` : `${r.line} not malformed`));
    expect(reasons).toEqual([
      '3 vigil record: recvTs must be a non-negative number (epoch ms)',
      '4 vigil record: recvTs must be a non-negative number (epoch ms)',
      '5 vigil record: source must be a non-empty string',
      '6 vigil record: needs "data" (text) or "b64" (binary)',
      '7 expected a vigil record {"v":1,"recvTs":…,"source":…,"data":…}',
      expect.stringMatching(/^8 invalid JSON/),
    ]);
  });

  it('refuses to write a frame without a usable recvTs or source', () => {
    expect(() => formatRecordLine({ recvTs: NaN, source: 'binance', data: '' })).toThrow(RangeError);
    expect(() => formatRecordLine({ recvTs: 1, source: '', data: '' })).toThrow(RangeError);
  });
});

describe('events format', () => {
  it('returns canonical-event lines unvalidated and reports non-events', async () => {
    const lines = [JSON.stringify(trade), JSON.stringify({ ...trade, price: -1 }), '{"kind":"bogus"}', '[1,2]', JSON.stringify(trade)];
    const recs = await readAll(write(lines, { gzip: true }));
    expect(recs.map((r) => [r.line, r.type])).toEqual([
      [1, 'event'],
      [2, 'event'], // the caller validates the schema
      [3, 'malformed'],
      [4, 'malformed'],
      [5, 'event'],
    ]);
    expect(recs[0]).toEqual({ type: 'event', line: 1, event: trade });
    expect(recs[2]?.type === 'malformed' && recs[2].reason).toMatch(/canonical event object with "kind"/);
  });
});

describe('unreadable inputs', () => {
  it('throws VigilError naming the file for an unrecognizable file (plain and gzip)', async () => {
    for (const gzip of [false, true]) {
      const path = write(['hello', 'this is not a capture', 'at all'], { gzip });
      const err = await rejection(readAll(path));
      expect(err.code).toBe(ERR.INPUT_FORMAT);
      expect(err.statusCode).toBe(400);
      expect(err.message).toContain(path);
      expect(err.message).toContain('hello');
      expect((await rejection(fileFormat(path))).message).toContain(path);
    }
  });

  it('throws for an empty file and for a blank-only file', async () => {
    for (const text of ['', '\n\n  \n']) {
      const path = write(text);
      const err = await rejection(readAll(path));
      expect(err.code).toBe(ERR.INPUT_FORMAT);
      expect(err.message).toBe(`${path}: empty input file`);
    }
    const gzEmpty = write('', { gzip: true });
    expect((await rejection(fileFormat(gzEmpty))).message).toContain('empty input file');
  });

  it('throws NOT_FOUND for a missing file', async () => {
    const err = await rejection(readAll(join(dir, 'does-not-exist.gz')));
    expect(err.code).toBe(ERR.NOT_FOUND);
    expect(err.statusCode).toBe(404);
  });
});
