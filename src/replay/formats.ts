/**
 * Reading recorded input files, plain or gzip (detected by the magic bytes 1f 8b, not the name), streamed
 * line by line. The format is detected from the first non-empty lines:
 *
 * - `vigil` — Vigil's own recording format (what `vigil record` writes, see formatRecordLine), JSON lines:
 *     {"v":1,"recvTs":1723161253937.0857,"source":"binance","data":"{\"stream\":\"btcusdt@trade\",...}"}
 *     {"v":1,"recvTs":1723161254206.652,"source":"binance","channel":"rest:depth:BTCUSDT","data":"{\"lastUpdateId\":...}"}
 *   `v` is the format version (1). `recvTs` is when the frame was received, epoch ms, fractional allowed.
 *   `source` is the adapter name that normalizes it (RawFrame.source). `channel` is optional
 *   (RawFrame.channel, e.g. `rest:depth:BTCUSDT` for a REST depth snapshot). `data` is the frame's text
 *   exactly as received; a binary frame is stored as `"b64":"<base64>"` instead of `data` and read back as
 *   UTF-8 text. A line `{"v":1,"meta":{...}}` (no data) carries recording metadata and is skipped.
 *   Writers put the keys in the order v, recvTs, source, channel, data; readers accept any order.
 * - `cryptofeed` — cryptofeed's raw data collection: `<recv_unix_ts_seconds>: <frame>`; frames the client
 *   sent `<url> <- <ts>: <json>` (skipped); connection opening `<url> <-> <ts>` (skipped, its URL names the
 *   venue of the frames that follow); REST responses `<url> -> <ts>: <json>` (frames with channel
 *   `rest:<path>?<query>`, or `rest:depth:<SYMBOL>` for a Binance depth snapshot); `configuration: {...}`
 *   (skipped).
 * - `hftbacktest` — hftbacktest's Binance collector: `<local_receive_time_ns> <raw JSON>`; source `binance`.
 * - `events` — JSON lines of canonical events (objects with `kind` trade, quote, book, order, transaction
 *   or metric); returned unvalidated, the caller validates them.
 *
 * Line numbers are 1-based physical lines. Blank lines produce no record. A line that does not fit the
 * file's format is returned as `malformed` and reading goes on; a gzip stream that ends early (a
 * collector killed mid-write) gives one final `malformed` record.
 */
import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import { ERR, VigilError } from '../core/errors.ts';
import { EVENT_KINDS } from '../core/events.ts';
import type { RawFrame } from '../feeds/types.ts';
import { openInputFile } from './open-input.ts';

export type InputFormat = 'vigil' | 'cryptofeed' | 'hftbacktest' | 'events';

export type ReplayRecord =
  | { type: 'frame'; line: number; frame: RawFrame }
  | { type: 'event'; line: number; event: unknown } // a canonical-event JSON line, validated later by the caller
  | { type: 'skip'; line: number; why: string } // sent frames, connection markers, config lines
  | { type: 'malformed'; line: number; reason: string; raw: string };

export const INPUT_FORMATS: readonly InputFormat[] = ['vigil', 'events', 'hftbacktest', 'cryptofeed'];
/** How many non-empty lines format detection looks at. */
export const DETECT_SAMPLE_LINES = 10;
const MAX_RAW_IN_RECORD = 64 * 1024;

type Json = Record<string, unknown>;
const EVENT_KIND_SET: ReadonlySet<string> = new Set(EVENT_KINDS);
const TS_SECONDS_RE = /^\d+(?:\.\d+)?$/;
const URL_RE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/\S+$/;
const CRYPTOFEED_DIRECTED_RE = /^(\S+) (<->|<-|->) (\d+(?:\.\d+)?)(?:: ([\s\S]*))?$/;

// ---------------------------------------------------------------- writer

/** One `vigil` format line (no newline) for a frame; readRecords reads it back as the same frame. */
export function formatRecordLine(frame: RawFrame): string {
  if (!(Number.isFinite(frame.recvTs) && frame.recvTs >= 0)) {
    throw new RangeError(`formatRecordLine: recvTs must be a non-negative finite number, got ${String(frame.recvTs)}`);
  }
  if (typeof frame.source !== 'string' || frame.source.length === 0) throw new RangeError('formatRecordLine: source is required');
  let s = `{"v":1,"recvTs":${frame.recvTs},"source":${JSON.stringify(frame.source)}`;
  if (frame.channel !== undefined) s += `,"channel":${JSON.stringify(frame.channel)}`;
  return `${s},"data":${JSON.stringify(frame.data)}}`;
}

// ---------------------------------------------------------------- detection

function parseObject(line: string): Json | undefined {
  if (line.charCodeAt(0) !== 0x7b /* { */) return undefined;
  try {
    const v = JSON.parse(line) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
  } catch {
    return undefined;
  }
}

function fitsVigil(line: string): boolean {
  // The signature is {"v":1} plus a record key; the line parser checks the fields (a bad field is a
  // malformed line of a vigil file, not a different format).
  const o = parseObject(line);
  return o !== undefined && o.v === 1 && ('data' in o || 'b64' in o || 'recvTs' in o || 'meta' in o);
}

function fitsEvents(line: string): boolean {
  const o = parseObject(line);
  return o !== undefined && typeof o.kind === 'string' && EVENT_KIND_SET.has(o.kind);
}

function fitsHftbacktest(line: string): boolean {
  return /^\d{1,20} [[{]/.test(line);
}

function fitsCryptofeed(line: string): boolean {
  const i = line.indexOf(': ');
  if (i > 0 && TS_SECONDS_RE.test(line.slice(0, i))) return true;
  if (line.startsWith('configuration: ')) return true;
  const m = CRYPTOFEED_DIRECTED_RE.exec(line);
  if (m === null || !URL_RE.test(m[1] ?? '')) return false;
  return m[2] === '<->' ? m[4] === undefined : m[4] !== undefined;
}

const FITS: Record<InputFormat, (line: string) => boolean> = {
  vigil: fitsVigil,
  events: fitsEvents,
  hftbacktest: fitsHftbacktest,
  cryptofeed: fitsCryptofeed,
};

function detect(lines: readonly string[]): InputFormat | undefined {
  const sample = lines.filter((l) => l.trim().length > 0).slice(0, DETECT_SAMPLE_LINES);
  if (sample.length === 0) return undefined;
  let best: InputFormat | undefined;
  let bestHits = 0;
  for (const format of INPUT_FORMATS) {
    let hits = 0;
    for (const line of sample) if (FITS[format](line)) hits++;
    if (hits > bestHits) {
      best = format;
      bestHits = hits;
    }
  }
  // The majority of the sample must fit: one odd line does not decide the format.
  return bestHits * 2 >= sample.length ? best : undefined;
}

/** The format of a file from its first non-empty lines; throws VigilError (INPUT_FORMAT, 400) if none fits. */
export function detectFormat(firstLines: string[]): InputFormat {
  const format = detect(firstLines);
  if (format === undefined) {
    const nonEmpty = firstLines.some((l) => l.trim().length > 0);
    throw new VigilError(ERR.INPUT_FORMAT, nonEmpty ? unrecognizedMessage(firstLines) : 'empty input', 400);
  }
  return format;
}

function unrecognizedMessage(lines: readonly string[]): string {
  const first = lines.find((l) => l.trim().length > 0) ?? '';
  const shown = first.length > 80 ? `${first.slice(0, 80)}…` : first;
  return `unrecognized input format (expected vigil, cryptofeed, hftbacktest or canonical-event JSON lines); first line: ${JSON.stringify(shown)}`;
}

// ---------------------------------------------------------------- line parsers

type LineParser = (line: string, n: number) => ReplayRecord;

function malformed(n: number, reason: string, line: string): ReplayRecord {
  return { type: 'malformed', line: n, reason, raw: line.length > MAX_RAW_IN_RECORD ? line.slice(0, MAX_RAW_IN_RECORD) : line };
}

/** The line as a JSON object that `accept` takes, or the reason it is not one (invalid JSON, or `expected`). */
function objectLine(line: string, expected: string, accept: (o: Json) => boolean): Json | string {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch (err) {
    return `invalid JSON: ${(err as Error).message}`;
  }
  if (o === null || typeof o !== 'object' || Array.isArray(o) || !accept(o as Json)) return expected;
  return o as Json;
}

const EXPECTED_VIGIL = 'expected a vigil record {"v":1,"recvTs":…,"source":…,"data":…}';
const isVigilRecord = (o: Json): boolean => o.v === 1;
const EXPECTED_EVENT = `expected a canonical event object with "kind" one of ${EVENT_KINDS.join(', ')}`;
const isEventObject = (o: Json): boolean => EVENT_KIND_SET.has(o.kind as string);

function vigilParser(path: string): LineParser {
  return (line, n) => {
    const r = objectLine(line, EXPECTED_VIGIL, isVigilRecord);
    if (typeof r === 'string') return malformed(n, r, line);
    if (r.data === undefined && r.b64 === undefined && r.meta !== undefined) return { type: 'skip', line: n, why: 'meta' };
    const recvTs = r.recvTs;
    if (typeof recvTs !== 'number' || !(recvTs >= 0) || recvTs === Infinity) {
      return malformed(n, 'vigil record: recvTs must be a non-negative number (epoch ms)', line);
    }
    if (typeof r.source !== 'string' || r.source.length === 0) return malformed(n, 'vigil record: source must be a non-empty string', line);
    if (r.channel !== undefined && typeof r.channel !== 'string') return malformed(n, 'vigil record: channel must be a string', line);
    let data: string;
    if (typeof r.data === 'string') data = r.data;
    else if (typeof r.b64 === 'string') data = Buffer.from(r.b64, 'base64').toString('utf8');
    else return malformed(n, 'vigil record: needs "data" (text) or "b64" (binary)', line);
    const frame: RawFrame = { recvTs, source: r.source, data, origin: `${path}:${n}` };
    if (r.channel !== undefined) frame.channel = r.channel as string;
    return { type: 'frame', line: n, frame };
  };
}

function eventsParser(): LineParser {
  return (line, n) => {
    const o = objectLine(line, EXPECTED_EVENT, isEventObject);
    if (typeof o === 'string') return malformed(n, o, line);
    return { type: 'event', line: n, event: o };
  };
}

/**
 * `1633998512.0633569` (seconds) → 1633998512063.3569 (ms), by moving the decimal point in the text so
 * the result is the double nearest to the written value (seconds * 1000 would add a rounding error).
 */
export function secondsToMs(s: string): number {
  const dot = s.indexOf('.');
  if (dot < 0) return Number(s) * 1000;
  const frac = s.slice(dot + 1);
  const ms = `${s.slice(0, dot)}${frac.slice(0, 3).padEnd(3, '0')}`;
  return frac.length > 3 ? Number(`${ms}.${frac.slice(3)}`) : Number(ms);
}

/** `1723161253937085768` → 1723161253937.085768 (ms), exact to the double's precision. */
export function nsToMs(ns: string): number {
  // One decimal conversion of "<ms>.<ns fraction>": the nearest double, no BigInt, no 2^53 overflow.
  if (ns.length <= 6) return Number(`0.${ns.padStart(6, '0')}`);
  return Number(`${ns.slice(0, ns.length - 6)}.${ns.slice(ns.length - 6)}`);
}

function hftbacktestParser(path: string): LineParser {
  const expected = 'expected "<ns> <json>"';
  return (line, n) => {
    const sp = line.indexOf(' ');
    if (sp < 1 || sp > 20) return malformed(n, expected, line);
    for (let i = 0; i < sp; i++) {
      const c = line.charCodeAt(i);
      if (c < 48 || c > 57) return malformed(n, `${expected}: timestamp is not an integer of nanoseconds`, line);
    }
    const c0 = line.charCodeAt(sp + 1);
    if (c0 !== 0x7b && c0 !== 0x5b) return malformed(n, `${expected}: no JSON after the timestamp`, line);
    const frame: RawFrame = { recvTs: nsToMs(line.slice(0, sp)), source: 'binance', data: line.slice(sp + 1), origin: `${path}:${n}` };
    return { type: 'frame', line: n, frame };
  };
}

/**
 * Best-effort venue name from a URL's host: Binance spot `binance` (futures/delivery/US get their own
 * names), otherwise the registrable domain's first label (ws-feed.pro.coinbase.com → coinbase).
 */
export function venueFromUrl(url: string): string | undefined {
  let host: string;
  try {
    host = new URL(url).hostname.toLowerCase();
  } catch {
    return undefined;
  }
  if (host.length === 0) return undefined;
  if (host.includes('binance')) {
    if (host.endsWith('binance.us')) return 'binance-us';
    if (/^(fstream|fapi)\b/.test(host)) return 'binance-futures';
    if (/^(dstream|dapi)\b/.test(host)) return 'binance-delivery';
    return 'binance';
  }
  if (/^[\d.]+$/.test(host) || host.includes(':')) return host;
  const labels = host.split('.');
  const name = labels.length >= 2 ? (labels[labels.length - 2] as string) : host;
  return name === 'okex' ? 'okx' : name;
}

/** The channel of a REST response frame: `rest:depth:<SYMBOL>` for Binance depth, else `rest:<path>?<query>`. */
export function restChannel(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `rest:${url}`;
  }
  const symbol = u.searchParams.get('symbol');
  if (u.hostname.includes('binance') && /\/depth$/.test(u.pathname) && symbol) return `rest:depth:${symbol.toUpperCase()}`;
  return `rest:${u.pathname}${u.search}`;
}

/** cryptofeed names files `<EXCHANGE>.<...>`: the fallback venue when no connection line names it. */
function venueFromFileName(path: string): string {
  const head = basename(path).split('.')[0] ?? '';
  return head.length > 0 ? head.toLowerCase().replace(/_/g, '-') : 'unknown';
}

function cryptofeedParser(path: string): LineParser {
  let venue = venueFromFileName(path);
  const expected = 'expected "<ts>: <frame>", "<url> <-> <ts>", "<url> <- <ts>: <json>", "<url> -> <ts>: <json>" or "configuration: …"';
  return (line, n) => {
    const c = line.charCodeAt(0);
    if (c >= 48 && c <= 57) {
      const i = line.indexOf(': ');
      if (i > 0) {
        const ts = line.slice(0, i);
        if (TS_SECONDS_RE.test(ts)) {
          const frame: RawFrame = { recvTs: secondsToMs(ts), source: venue, data: line.slice(i + 2), origin: `${path}:${n}` };
          return { type: 'frame', line: n, frame };
        }
      }
      return malformed(n, expected, line);
    }
    if (line.startsWith('configuration: ')) return { type: 'skip', line: n, why: 'configuration' };
    const m = CRYPTOFEED_DIRECTED_RE.exec(line);
    if (m === null) return malformed(n, expected, line);
    const [, url = '', dir, ts = '', payload] = m;
    if (dir === '<->') {
      if (payload !== undefined) return malformed(n, expected, line);
      const v = venueFromUrl(url);
      if (v !== undefined) venue = v;
      return { type: 'skip', line: n, why: `connection ${url} (venue ${venue})` };
    }
    if (payload === undefined) return malformed(n, expected, line);
    if (dir === '<-') return { type: 'skip', line: n, why: `sent frame to ${url}` };
    const frame: RawFrame = {
      recvTs: secondsToMs(ts),
      source: venueFromUrl(url) ?? venue,
      data: payload,
      channel: restChannel(url),
      origin: `${path}:${n}`,
    };
    return { type: 'frame', line: n, frame };
  };
}

function parserFor(format: InputFormat, path: string): LineParser {
  switch (format) {
    case 'vigil':
      return vigilParser(path);
    case 'events':
      return eventsParser();
    case 'hftbacktest':
      return hftbacktestParser(path);
    case 'cryptofeed':
      return cryptofeedParser(path);
  }
}

// ---------------------------------------------------------------- streaming

interface OpenedInput {
  gzip: boolean;
  lines: AsyncIterator<string>;
  /** Set when the gunzip stream failed (truncated or corrupt file). */
  gzipError(): Error | undefined;
  close(): Promise<void>;
}

async function openInput(path: string, onBytes?: (n: number) => void): Promise<OpenedInput> {
  const file = await openInputFile(path, onBytes);
  const rl = createInterface({ input: file.stream, crlfDelay: Infinity });
  const lines = rl[Symbol.asyncIterator]();
  return {
    gzip: file.gzip,
    lines,
    gzipError: file.gzipError,
    async close() {
      rl.close();
      await file.close();
    },
  };
}

/** Reads up to DETECT_SAMPLE_LINES non-empty lines (keeping all physical lines read so far). */
async function readSample(inp: OpenedInput): Promise<{ lines: string[]; nonEmpty: string[]; done: boolean }> {
  const lines: string[] = [];
  const nonEmpty: string[] = [];
  let done = false;
  while (nonEmpty.length < DETECT_SAMPLE_LINES) {
    let r: IteratorResult<string>;
    try {
      r = await inp.lines.next();
    } catch (err) {
      if (inp.gzipError() === undefined) throw err;
      done = true; // a truncated gzip: detect on what was readable, readRecords reports the rest
      break;
    }
    if (r.done) {
      done = true;
      break;
    }
    const line = lines.length === 0 ? stripBom(r.value) : r.value;
    lines.push(line);
    if (line.trim().length > 0) nonEmpty.push(line);
  }
  return { lines, nonEmpty, done };
}

function stripBom(s: string): string {
  return s.charCodeAt(0) === 0xfeff ? s.slice(1) : s;
}

function detectOrThrow(path: string, nonEmpty: string[], gzErr: Error | undefined): InputFormat {
  if (nonEmpty.length === 0 && gzErr !== undefined) {
    throw new VigilError(ERR.INPUT_FORMAT, `${path}: corrupt gzip stream: ${gzErr.message}`, 400, { file: path });
  }
  if (nonEmpty.length === 0) throw new VigilError(ERR.INPUT_FORMAT, `${path}: empty input file`, 400, { file: path });
  const format = detect(nonEmpty);
  if (format === undefined) throw new VigilError(ERR.INPUT_FORMAT, `${path}: ${unrecognizedMessage(nonEmpty)}`, 400, { file: path });
  return format;
}

/** The format and compression of a file (reads only its first lines). */
export async function fileFormat(path: string): Promise<{ format: InputFormat; gzip: boolean }> {
  const inp = await openInput(path);
  try {
    const { nonEmpty } = await readSample(inp);
    return { format: detectOrThrow(path, nonEmpty, inp.gzipError()), gzip: inp.gzip };
  } finally {
    await inp.close();
  }
}

/** Streams the records of a recorded file (plain or gzip), in file order. */
export interface ReadOptions {
  /** Told the size of every chunk read from disk (compressed bytes for gzip), for progress and ETA. */
  onBytes?: (n: number) => void;
}

export async function* readRecords(path: string, options: ReadOptions = {}): AsyncGenerator<ReplayRecord, void, undefined> {
  const inp = await openInput(path, options.onBytes);
  try {
    const sample = await readSample(inp);
    const format = detectOrThrow(path, sample.nonEmpty, inp.gzipError());
    const parse = parserFor(format, path);
    let n = 0;
    for (const line of sample.lines) {
      n++;
      if (line.trim().length > 0) yield parse(line, n);
    }
    if (!sample.done) {
      for (;;) {
        let r: IteratorResult<string>;
        try {
          r = await inp.lines.next();
        } catch (err) {
          if (inp.gzipError() === undefined) throw err;
          break;
        }
        if (r.done) break;
        n++;
        const line = r.value;
        if (line.length > 0 && (line.charCodeAt(0) > 32 || line.trim().length > 0)) yield parse(line, n);
      }
    }
    const gzErr = inp.gzipError();
    if (gzErr !== undefined) {
      yield { type: 'malformed', line: n + 1, reason: `gzip stream ends early or is corrupt: ${gzErr.message}`, raw: '' };
    }
  } finally {
    await inp.close();
  }
}
