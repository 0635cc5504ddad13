/**
 * Replay input through a field mapping (src/feeds/mapping.ts): `vigil replay --mapping map.json
 * file.csv|file.jsonl`. Plain or gzip (detected by the magic bytes 1f 8b, not the name).
 *
 * - CSV: parsed with csv-parse (streaming); the header row gives the field names (or the mapping's
 *   `csv.columns` for a file without one; `csv.delimiter` for `;` or tab files); fields are trimmed.
 *   Each row → mapper → canonical event. A row the parser rejects (wrong column count, bad quoting) or
 *   the mapper rejects is a `malformed` record with its line number and the reason; reading goes on.
 * - JSON lines: one provider message per line; the mapping's `stream.ignore` and `stream.records`
 *   apply as on a live stream (a line may hold several records: each becomes an event with that line's
 *   number). `stream.seq` is not checked on replay.
 *
 * The format comes from the name (.csv/.tsv, .jsonl/.ndjson/.json, before any .gz), else from the first
 * character of the content (`{` or `[`: JSON lines). Records have the shape of src/replay/formats.ts
 * (`event` records are already validated canonical events).
 */
import { createInterface } from 'node:readline';
import { Readable, pipeline } from 'node:stream';
import { parse as csvParse, type CsvError, type Info } from 'csv-parse';
import { createMapper, loadMapping, messageRecords, type Mapper, type Mapping } from '../feeds/mapping.ts';
import { MalformedFrameError } from '../feeds/types.ts';
import type { ReplayRecord } from './formats.ts';
import { openInputFile } from './open-input.ts';

export type MappedInputFormat = 'csv' | 'jsonl';

export interface MappedReadOptions {
  /** Told the size of every chunk read from disk (compressed bytes for gzip), for progress and ETA. */
  onBytes?: (n: number) => void;
  /** Overrides the detection from the name and content. */
  format?: MappedInputFormat;
}

export type MappedReader = (path: string, options?: MappedReadOptions) => AsyncGenerator<ReplayRecord, void, undefined>;

const MAX_RAW_IN_RECORD = 64 * 1024;

/** The input format a file name states, if any. */
export function formatFromName(path: string): MappedInputFormat | undefined {
  const name = path.toLowerCase().replace(/\.gz$/, '');
  if (name.endsWith('.csv') || name.endsWith('.tsv')) return 'csv';
  if (name.endsWith('.jsonl') || name.endsWith('.ndjson') || name.endsWith('.json')) return 'jsonl';
  return undefined;
}

function clip(raw: string): string {
  return raw.length > MAX_RAW_IN_RECORD ? raw.slice(0, MAX_RAW_IN_RECORD) : raw;
}

function reasonOf(err: unknown): string {
  return err instanceof MalformedFrameError ? err.message : `mapping failed: ${(err as Error).message}`;
}

interface Opened {
  /** The (decompressed) bytes. */
  chunks: AsyncGenerator<Buffer, void, undefined>;
  gzipError(): Error | undefined;
  close(): Promise<void>;
}

async function openInput(path: string, onBytes?: (n: number) => void): Promise<Opened> {
  const file = await openInputFile(path, onBytes);
  async function* chunks(): AsyncGenerator<Buffer, void, undefined> {
    for await (const c of file.stream) yield c as Buffer;
  }
  return { chunks: chunks(), gzipError: file.gzipError, close: file.close };
}

/** The first chunk(s) up to the first non-blank byte, and the detected format. */
async function sniff(chunks: AsyncGenerator<Buffer, void, undefined>): Promise<{ head: Buffer[]; format: MappedInputFormat | undefined }> {
  const head: Buffer[] = [];
  for (;;) {
    const r = await chunks.next();
    if (r.done) return { head, format: undefined };
    head.push(r.value);
    for (const b of r.value) {
      if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0xef || b === 0xbb || b === 0xbf) continue; // blanks, BOM
      return { head, format: b === 0x7b || b === 0x5b ? 'jsonl' : 'csv' };
    }
  }
}

async function* prepend(head: Buffer[], rest: AsyncGenerator<Buffer, void, undefined>): AsyncGenerator<Buffer, void, undefined> {
  for (const h of head) yield h;
  yield* rest;
}

/** Line of a CSV record's first character: csv-parse reports the line where the record ends. */
function csvStartLine(info: Info, raw: string | undefined): number {
  if (raw === undefined) return info.lines;
  const body = raw.replace(/^(?:\r?\n)+/, '').replace(/\r?\n$/, '');
  let n = 0;
  for (let i = body.indexOf('\n'); i >= 0; i = body.indexOf('\n', i + 1)) n++;
  return info.lines - n;
}

type CsvItem = { info: Info; record: Record<string, string>; raw?: string } | { skipped: CsvError | Error; raw?: string };

async function* csvRecords(bytes: AsyncGenerator<Buffer, void, undefined>, mapping: Mapping, mapper: Mapper): AsyncGenerator<ReplayRecord, void, undefined> {
  const parser = csvParse({
    columns: mapping.csv?.columns ?? true,
    delimiter: mapping.csv?.delimiter ?? ',',
    bom: true,
    trim: true,
    skip_empty_lines: true,
    info: true,
    raw: true,
    skip_records_with_error: true,
    // Rejected rows go into the record stream in file order (the default would emit a `skip` event).
    on_skip: (err, raw) => {
      parser.push({ skipped: err ?? new Error('row rejected'), raw } satisfies CsvItem);
      return undefined;
    },
  });
  const source = Readable.from(bytes, { objectMode: false });
  pipeline(source, parser, () => undefined);
  for await (const item of parser as AsyncIterable<CsvItem>) {
    if ('skipped' in item) {
      const err = item.skipped;
      const line = typeof (err as { lines?: unknown }).lines === 'number' ? (err as unknown as { lines: number }).lines : 0;
      yield { type: 'malformed', line, reason: `CSV: ${err.message}`, raw: clip((item.raw ?? '').replace(/\r?\n$/, '')) };
      continue;
    }
    const line = csvStartLine(item.info, item.raw);
    try {
      yield { type: 'event', line, event: mapper(item.record) };
    } catch (err) {
      yield { type: 'malformed', line, reason: reasonOf(err), raw: clip((item.raw ?? '').replace(/^(?:\r?\n)+/, '').replace(/\r?\n$/, '')) };
    }
  }
}

async function* jsonlRecords(bytes: AsyncGenerator<Buffer, void, undefined>, mapping: Mapping, mapper: Mapper, lines: { n: number }): AsyncGenerator<ReplayRecord, void, undefined> {
  const rl = createInterface({ input: Readable.from(bytes, { objectMode: false }), crlfDelay: Infinity });
  try {
    for await (const text of rl) {
      const n = ++lines.n;
      const line = n === 1 && text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
      if (line.trim().length === 0) continue;
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch (err) {
        yield { type: 'malformed', line: n, reason: `invalid JSON: ${(err as Error).message}`, raw: clip(line) };
        continue;
      }
      let records: unknown[];
      try {
        const got = messageRecords(mapping, msg);
        if ('ignored' in got) {
          yield { type: 'skip', line: n, why: `ignored message ${got.ignored}` };
          continue;
        }
        records = got.records;
      } catch (err) {
        yield { type: 'malformed', line: n, reason: reasonOf(err), raw: clip(line) };
        continue;
      }
      for (let i = 0; i < records.length; i++) {
        try {
          yield { type: 'event', line: n, event: mapper(records[i] as Record<string, unknown>) };
        } catch (err) {
          const reason = records.length > 1 ? `records[${i}]: ${reasonOf(err)}` : reasonOf(err);
          yield { type: 'malformed', line: n, reason, raw: clip(records.length > 1 ? JSON.stringify(records[i]) : line) };
        }
      }
    }
  } finally {
    rl.close();
  }
}

/**
 * A reader of files through one mapping (a path to a mapping file, or a parsed mapping), compiled once.
 * Throws VigilError naming the key path when the mapping is bad.
 */
export function mappedReader(mapping: string | Mapping): MappedReader {
  const m = typeof mapping === 'string' ? loadMapping(mapping) : mapping;
  const mapper = createMapper(m);
  return async function* read(path: string, options: MappedReadOptions = {}): AsyncGenerator<ReplayRecord, void, undefined> {
    const inp = await openInput(path, options.onBytes);
    const lines = { n: 0 };
    let lastLine = 0;
    try {
      const { head, format: sniffed } = await sniff(inp.chunks).catch((err: unknown) => {
        if (inp.gzipError() === undefined) throw err;
        return { head: [] as Buffer[], format: undefined };
      });
      const format = options.format ?? formatFromName(path) ?? sniffed;
      if (format !== undefined) {
        const bytes = prepend(head, inp.chunks);
        const records = format === 'csv' ? csvRecords(bytes, m, mapper) : jsonlRecords(bytes, m, mapper, lines);
        try {
          for await (const rec of records) {
            lastLine = Math.max(lastLine, rec.line);
            yield rec;
          }
        } catch (err) {
          if (inp.gzipError() === undefined) throw err;
        }
      }
      const gzErr = inp.gzipError();
      if (gzErr !== undefined) {
        yield { type: 'malformed', line: Math.max(lastLine, lines.n) + 1, reason: `gzip stream ends early or is corrupt: ${gzErr.message}`, raw: '' };
      }
    } finally {
      await inp.close();
    }
  };
}

/** Streams the records of one file through a mapping (see mappedReader to reuse a compiled mapping). */
export function readMappedRecords(path: string, mapping: string | Mapping, options: MappedReadOptions = {}): AsyncGenerator<ReplayRecord, void, undefined> {
  return mappedReader(mapping)(path, options);
}
