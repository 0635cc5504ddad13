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
import type { Readable } from 'node:stream';
import { isAscii } from 'node:buffer';
import { StringDecoder } from 'node:string_decoder';
import { ERR, VigilError } from '../core/errors.ts';
import { EVENT_KINDS } from '../core/events.ts';
import type { RawFrame } from '../feeds/types.ts';
import { openInputFile, type OpenedFile } from './open-input.ts';

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

/**
 * What the replay reads: a frame as it is (the common record, with nothing around it) or any other record.
 * readRecords wraps frames into their `frame` records.
 */
export type FrameOrRecord = RawFrame | ReplayRecord;

/** A bare frame, not a record: records have a `type`, RawFrame has none. */
export function isFrame(x: FrameOrRecord): x is RawFrame {
  return (x as { type?: unknown }).type === undefined;
}

/**
 * Parses line `n`, the characters [start, end) of `text` (a block of lines: see LineSplitter), so the
 * common line needs no string of its own.
 */
type LineParser = (text: string, start: number, end: number, n: number) => FrameOrRecord;

/** Line [start, end) of `text` as a string (the formats that JSON.parse or match whole lines). */
function lineOf(text: string, start: number, end: number): string {
  return start === 0 && end === text.length ? text : text.slice(start, end);
}

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
  const originPrefix = `${path}:`;
  return (text, start, end, n) => {
    const line = lineOf(text, start, end);
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
    const frame: RawFrame = { recvTs, source: r.source, data, origin: originPrefix + n };
    if (r.channel !== undefined) frame.channel = r.channel as string;
    return frame;
  };
}

function eventsParser(): LineParser {
  return (text, start, end, n) => {
    const line = lineOf(text, start, end);
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
  return nsRangeToMs(ns, 0, ns.length);
}

/**
 * nsToMs of `text`'s characters [start, end) (ASCII digits). The common case, 19 digits without a
 * leading zero (epoch ns from 2001 to 2286), needs no string: ms + frac / 1e6 with both parts exact
 * integers is the nearest double to the decimal. (frac / 1e6 is off by at most 2^-53 of itself, ~1e-16,
 * while the exact value is at least 64 / (1e6 * 2^14) ~ 4e-9 away from any rounding midpoint at this
 * magnitude, whose ulp is 2^-13 .. 2^-9: no midpoint lies between them, so the sum rounds the same.)
 * That case checks its digits as it goes (one charCodeAt per digit: on a slice of an external string
 * each costs a few ns, a good part of reading a line) and gives NaN when one is not 0-9; the others
 * expect digits checked by the caller.
 */
function nsRangeToMs(text: string, start: number, end: number): number {
  if (end - start === 19 && text.charCodeAt(start) !== 48) {
    let ms = 0;
    let frac = 0;
    let notDigit = 0; // negative once some character is not 0-9
    for (let i = start; i < start + 13; i++) {
      const d = text.charCodeAt(i) - 48;
      notDigit |= d | (9 - d);
      ms = ms * 10 + d;
    }
    for (let i = start + 13; i < end; i++) {
      const d = text.charCodeAt(i) - 48;
      notDigit |= d | (9 - d);
      frac = frac * 10 + d;
    }
    return notDigit < 0 ? NaN : ms + frac / 1e6;
  }
  // Otherwise one decimal conversion of "<ms>.<ns fraction>": the nearest double, no BigInt, no 2^53 overflow.
  const ns = lineOf(text, start, end);
  if (ns.length <= 6) return Number(`0.${ns.padStart(6, '0')}`);
  return Number(`${ns.slice(0, ns.length - 6)}.${ns.slice(ns.length - 6)}`);
}

/** [start, end) of `text` is all ASCII digits. */
function allDigits(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

function hftbacktestParser(path: string): LineParser {
  const expected = 'expected "<ns> <json>"';
  const originPrefix = `${path}:`;
  return (text, start, end, n) => {
    let sp = text.indexOf(' ', start);
    if (sp >= end) sp = -1;
    const digits = sp < 0 ? -1 : sp - start;
    if (digits < 1 || digits > 20) return malformed(n, expected, lineOf(text, start, end));
    // nsRangeToMs's common case checks its digits itself (NaN when one is not a digit).
    const checked = digits === 19 && text.charCodeAt(start) !== 48;
    const recvTs = checked || allDigits(text, start, sp) ? nsRangeToMs(text, start, sp) : NaN;
    if (Number.isNaN(recvTs)) return malformed(n, `${expected}: timestamp is not an integer of nanoseconds`, lineOf(text, start, end));
    const c0 = sp + 1 < end ? text.charCodeAt(sp + 1) : -1;
    if (c0 !== 0x7b && c0 !== 0x5b) return malformed(n, `${expected}: no JSON after the timestamp`, lineOf(text, start, end));
    return { recvTs, source: 'binance', data: text.slice(sp + 1, end), origin: originPrefix + n };
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
  const originPrefix = `${path}:`;
  return (text, start, end, n) => {
    const line = lineOf(text, start, end);
    const c = line.charCodeAt(0);
    if (c >= 48 && c <= 57) {
      const i = line.indexOf(': ');
      if (i > 0) {
        const ts = line.slice(0, i);
        if (TS_SECONDS_RE.test(ts)) {
          return { recvTs: secondsToMs(ts), source: venue, data: line.slice(i + 2), origin: originPrefix + n };
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
    return {
      recvTs: secondsToMs(ts),
      source: venueFromUrl(url) ?? venue,
      data: payload,
      channel: restChannel(url),
      origin: originPrefix + n,
    };
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

/**
 * Splits decoded text into lines exactly as node:readline does with crlfDelay Infinity — \n, \r\n and a
 * lone \r end a line, a \r\n split across chunks ends one line, an unfinished last line is a line at the
 * end, an incomplete UTF-8 sequence at the very end is dropped — but a chunk at a time, with no event
 * and (writeBlocks) no string per line.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  /** The unfinished line carried over from earlier chunks (never holds a \r or \n). */
  private rest = '';
  /** The last chunk ended with \r: a \n starting the next one belongs to that line end. */
  private sawReturn = false;
  /** A chunk was not ASCII: the UTF-8 decoder reads every later one (it may hold a split character). */
  private utf8 = false;

  /** Appends the lines the chunk completes to `out`. */
  write(chunk: Buffer, out: string[]): void {
    const blocks: string[] = [];
    this.writeBlocks(chunk, blocks);
    for (const block of blocks) for (const line of block.split('\n')) out.push(line);
  }

  /**
   * Appends the lines the chunk completes to `out` as blocks: a block is one or more whole lines joined
   * by \n (no line end after the last one; "" is one empty line). The lines of a chunk are one slice of
   * its text, so the reader parses them in place instead of making a string per line.
   */
  writeBlocks(chunk: Buffer, out: string[]): void {
    // ASCII (every recording seen so far) is latin1: a big chunk becomes an external string, no copy
    // into the heap (open-input.ts READ_CHUNK_BYTES).
    if (!this.utf8 && !isAscii(chunk)) this.utf8 = true;
    let s = this.utf8 ? this.decoder.write(chunk) : chunk.toString('latin1');
    if (this.sawReturn) {
      if (s.charCodeAt(0) === 10) s = s.slice(1);
      this.sawReturn = false;
    }
    if (s.indexOf('\r') >= 0) {
      this.writeWithReturns(s, out);
      return;
    }
    const last = s.lastIndexOf('\n');
    if (last < 0) {
      this.rest += s;
      return;
    }
    let start = 0;
    if (this.rest.length > 0) {
      const nl = s.indexOf('\n');
      out.push(this.rest + s.slice(0, nl));
      this.rest = '';
      start = nl + 1;
    }
    if (start <= last) out.push(s.slice(start, last));
    this.rest = s.slice(last + 1);
  }

  /** The rare chunk with a \r in it: readline's own line-end pattern, one block per line. */
  private writeWithReturns(s: string, out: string[]): void {
    const text = this.rest + s;
    const lineEnd = /\r?\n|\r(?!\n)/g;
    let start = 0;
    for (let m = lineEnd.exec(text); m !== null; m = lineEnd.exec(text)) {
      out.push(text.slice(start, m.index));
      start = lineEnd.lastIndex;
    }
    this.rest = text.slice(start);
    this.sawReturn = text.endsWith('\r');
  }

  /** The end of the input: the unfinished last line, if any (a block of one line). */
  end(out: string[]): void {
    if (this.rest.length > 0) out.push(this.rest);
    this.rest = '';
  }
}

/** Text waiting in a LineBatches queue beyond which the file is not read further until some is taken. */
const MAX_QUEUED_CHARS = 1 << 20;
/** Text per batch at most when the reader is ahead of the consumer (small chunks join up to this). */
const MAX_BATCH_CHARS = 1 << 19;

/** A batch of LineSplitter blocks and their total length. */
interface Batch {
  blocks: string[];
  chars: number;
}

/**
 * The lines of a file in batches of blocks (LineSplitter.writeBlocks: the lines of one or more chunks).
 * A plain file is pulled a chunk at a time (OpenedFile.nextChunk). A gzip stream is read in flowing mode
 * as readline reads it: lines taken before a stream error are all delivered, then the error is thrown
 * (an unfinished last line is lost, as with readline); memory stays bounded: the stream is paused while
 * MAX_QUEUED_CHARS of text waits.
 */
class LineBatches {
  private readonly queue: Batch[] = [];
  private queuedChars = 0;
  private ended = false;
  private error: Error | undefined;
  private paused = false;
  private wake: (() => void) | undefined;

  private readonly splitter = new LineSplitter();
  private readonly stream: Readable | undefined;

  /** Reads `file` with its nextChunk when it has one (a plain file), else its stream. */
  constructor(private readonly file: OpenedFile) {
    if (file.nextChunk !== undefined) return;
    const stream = (this.stream = file.stream);
    const splitter = this.splitter;
    stream.on('data', (chunk: Buffer) => {
      const last = this.queue[this.queue.length - 1];
      // Join a batch nobody took yet rather than queueing many small ones.
      const batch = last !== undefined && last.chars < MAX_BATCH_CHARS ? last : { blocks: [], chars: 0 };
      const from = batch.blocks.length;
      splitter.writeBlocks(chunk, batch.blocks);
      let chars = 0;
      for (let i = from; i < batch.blocks.length; i++) chars += batch.blocks[i]!.length;
      batch.chars += chars;
      this.queuedChars += chars;
      if (batch !== last && batch.blocks.length > 0) this.queue.push(batch);
      if (this.queuedChars >= MAX_QUEUED_CHARS && !this.paused) {
        this.paused = true;
        stream.pause();
      }
      this.notify();
    });
    stream.on('end', () => {
      const blocks: string[] = [];
      splitter.end(blocks);
      if (blocks.length > 0) this.queue.push({ blocks, chars: 0 });
      this.ended = true;
      this.notify();
    });
    stream.on('error', (err: Error) => {
      this.error ??= err;
      this.notify();
    });
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** The next batch of blocks (never empty), undefined at the end; the stream's error once every line before it was taken. */
  async next(): Promise<string[] | undefined> {
    const nextChunk = this.file.nextChunk;
    if (nextChunk !== undefined) {
      // Pulled a chunk at a time: nothing queues up, an I/O error is thrown where it happens.
      while (!this.ended) {
        const chunk = await nextChunk();
        const blocks: string[] = [];
        if (chunk === undefined) {
          this.splitter.end(blocks);
          this.ended = true;
        } else this.splitter.writeBlocks(chunk, blocks);
        if (blocks.length > 0) return blocks;
      }
      return undefined;
    }
    for (;;) {
      const batch = this.queue.shift();
      if (batch !== undefined) {
        this.queuedChars -= batch.chars;
        if (this.paused && this.queuedChars < MAX_QUEUED_CHARS) {
          this.paused = false;
          this.stream!.resume();
        }
        return batch.blocks;
      }
      if (this.error !== undefined) throw this.error;
      if (this.ended) return undefined;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}

interface OpenedInput {
  gzip: boolean;
  lines: LineBatches;
  /** Set when the gunzip stream failed (truncated or corrupt file). */
  gzipError(): Error | undefined;
  close(): Promise<void>;
}

async function openInput(path: string, onBytes?: (n: number) => void): Promise<OpenedInput> {
  const file = await openInputFile(path, onBytes);
  return { gzip: file.gzip, lines: new LineBatches(file), gzipError: file.gzipError, close: () => file.close() };
}

/**
 * Reads batches of blocks until DETECT_SAMPLE_LINES non-empty lines are in (keeping every block read;
 * the first has its BOM removed).
 */
async function readSample(inp: OpenedInput): Promise<{ blocks: string[]; nonEmpty: string[]; done: boolean }> {
  let blocks: string[] = [];
  const nonEmpty: string[] = [];
  let done = false;
  while (nonEmpty.length < DETECT_SAMPLE_LINES) {
    let batch: string[] | undefined;
    try {
      batch = await inp.lines.next();
    } catch (err) {
      if (inp.gzipError() === undefined) throw err;
      done = true; // a truncated gzip: detect on what was readable, readRecords reports the rest
      break;
    }
    if (batch === undefined) {
      done = true;
      break;
    }
    if (blocks.length === 0) batch[0] = stripBom(batch[0]!);
    blocks = blocks.length === 0 ? batch : blocks.concat(batch);
    for (const block of batch) {
      for (let start = 0; nonEmpty.length < DETECT_SAMPLE_LINES; ) {
        const nl = block.indexOf('\n', start);
        const line = block.slice(start, nl < 0 ? block.length : nl);
        if (line.trim().length > 0) nonEmpty.push(line);
        if (nl < 0) break;
        start = nl + 1;
      }
    }
  }
  return { blocks, nonEmpty, done };
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

/** Options of readRecordBatches and readRecords. */
export interface ReadOptions {
  /** Told the size of every chunk read from disk (compressed bytes for gzip), for progress and ETA. */
  onBytes?: (n: number) => void;
}

/**
 * The records of a recorded file (plain or gzip) in file order, in batches (the lines of a chunk read or
 * more; never empty): one await per batch instead of one per record is what keeps reading cheap.
 */
export function readRecordBatches(path: string, options: ReadOptions = {}): AsyncGenerator<ReplayRecord[], void, undefined> {
  return readBatches(path, options, true) as AsyncGenerator<ReplayRecord[], void, undefined>;
}

/**
 * readRecordBatches with frames as they are instead of in `frame` records (see isFrame): what the
 * replay reads, one object less per frame. The arrays are the caller's to change.
 */
export function readFrameBatches(path: string, options: ReadOptions = {}): AsyncGenerator<FrameOrRecord[], void, undefined> {
  return readBatches(path, options, false);
}

async function* readBatches(path: string, options: ReadOptions, frameRecords: boolean): AsyncGenerator<FrameOrRecord[], void, undefined> {
  const inp = await openInput(path, options.onBytes);
  try {
    const sample = await readSample(inp);
    const format = detectOrThrow(path, sample.nonEmpty, inp.gzipError());
    const parse = parserFor(format, path);
    let n = 0;
    const parseAll = (blocks: readonly string[]): FrameOrRecord[] => {
      const out: FrameOrRecord[] = [];
      for (const block of blocks) {
        for (let start = 0; ; ) {
          const nl = block.indexOf('\n', start);
          const end = nl < 0 ? block.length : nl;
          n++;
          // blank lines (whitespace only) give no record
          if (end > start && (block.charCodeAt(start) > 32 || block.slice(start, end).trim().length > 0)) {
            const r = parse(block, start, end, n);
            out.push(frameRecords && isFrame(r) ? { type: 'frame', line: n, frame: r } : r);
          }
          if (nl < 0) break;
          start = nl + 1;
        }
      }
      return out;
    };
    const first = parseAll(sample.blocks);
    if (first.length > 0) yield first;
    if (!sample.done) {
      for (;;) {
        let blocks: string[] | undefined;
        try {
          blocks = await inp.lines.next();
        } catch (err) {
          if (inp.gzipError() === undefined) throw err;
          break;
        }
        if (blocks === undefined) break;
        const recs = parseAll(blocks);
        if (recs.length > 0) yield recs;
      }
    }
    const gzErr = inp.gzipError();
    if (gzErr !== undefined) {
      yield [{ type: 'malformed', line: n + 1, reason: `gzip stream ends early or is corrupt: ${gzErr.message}`, raw: '' }];
    }
  } finally {
    await inp.close();
  }
}

/** Streams the records of a recorded file (plain or gzip), in file order, one at a time (see readRecordBatches). */
export async function* readRecords(path: string, options: ReadOptions = {}): AsyncGenerator<ReplayRecord, void, undefined> {
  for await (const batch of readRecordBatches(path, options)) yield* batch;
}
