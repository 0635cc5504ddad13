/**
 * `vigil record`: writes every frame of live feeds — the venue's frames, REST snapshots, Vigil's own
 * connection status frames — in Vigil's recording format (formatRecordLine), gzip-compressed, so that
 * `vigil replay` later produces exactly the events the live normalizer produced.
 *
 * The recorder runs the venue's normalizer on the live frames (and discards the events) because the
 * normalizer is what notices a sequence gap and asks the connection for a resync: without it a
 * recording would keep a broken book after the first gap. The REST snapshot the resync fetches is a
 * frame like any other, so it is in the recording.
 */
import { once } from 'node:events';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createGzip, type Gzip } from 'node:zlib';
import { loadConfig } from '../core/config.ts';
import { ERR, VigilError } from '../core/errors.ts';
import { getAdapter } from '../feeds/registry.ts';
import type { CanonicalEvent } from '../core/events.ts';
import type { BookReport, LiveFeed, RawFrame, VenueAdapter } from '../feeds/types.ts';
import { formatRecordLine } from '../replay/formats.ts';
import { parse, UsageError } from './args.ts';

export const RECORD_USAGE = `usage: vigil record --feed <venue>:<sym,…> [--feed …] --out FILE [--rotate-mb N] [--rotate-minutes N] [--duration SECONDS]

Records every frame of the live feed (venue frames, REST snapshots, connection status frames) in
Vigil's recording format, gzip-compressed, for \`vigil replay\`.

  --feed venue:syms    e.g. binance:btcusdt,ethusdt; repeat for more venues (one file for all)
  --out FILE           the recording, always gzip whatever its name (e.g. rec/binance.jsonl.gz); an
                       existing file is never overwritten
  --rotate-mb N        start a new file once the current one holds N MB of gzip output (1 MB = 2^20
                       bytes; the compressor emits in blocks of tens of KB)
  --rotate-minutes N   start a new file with the first frame N minutes after the current one began
  --duration SECONDS   stop after this long; otherwise SIGINT or SIGTERM stops (both end cleanly, every
                       file a complete gzip stream)

With --rotate-* the files are numbered from 0001 before the name's first dot: --out rec/binance.jsonl.gz
writes rec/binance-0001.jsonl.gz, rec/binance-0002.jsonl.gz, …; replay them in that order. Each file
begins with a {"v":1,"meta":{…}} line (venue feeds, part number, start time) that readers skip.
Endpoints: VIGIL_BINANCE_WS_URL, VIGIL_BINANCE_REST_URL, VIGIL_FEED_URLS (venue=wsUrl|restUrl).`;

const MB = 1024 * 1024;

/** `rec/binance.jsonl.gz`, 3 → `rec/binance-0003.jsonl.gz`; a name without a dot gets the number at its end. */
export function partPath(out: string, n: number): string {
  const base = basename(out);
  const dot = base.indexOf('.', 1);
  const stem = dot < 0 ? base : base.slice(0, dot);
  const ext = dot < 0 ? '' : base.slice(dot);
  return join(dirname(out), `${stem}-${String(n).padStart(4, '0')}${ext}`);
}

export interface RecordingWriterOptions {
  out: string;
  /** Rotate when the current file holds this many compressed bytes. */
  rotateBytes?: number;
  /** Rotate at the first frame this long after the current file began. */
  rotateMs?: number;
  /** Written as the first line of every file: {"v":1,"meta":{...meta, part, startedAt}}. */
  meta?: Record<string, unknown>;
}

/** Gzip JSON-lines writer with rotation; writes are serialized and wait for the disk (backpressure). */
export class RecordingWriter {
  readonly files: string[] = [];
  frames = 0;
  /** Compressed bytes of all finished files plus the current one. */
  bytes = 0;
  private gzip: Gzip | undefined;
  private file: WriteStream | undefined;
  private partBytes = 0;
  private partStarted = 0;
  private chain: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  private readonly rotating: boolean;

  constructor(private readonly options: RecordingWriterOptions) {
    this.rotating = options.rotateBytes !== undefined || options.rotateMs !== undefined;
  }

  /** Creates the first file now, so a bad path or an existing file fails before any connection. */
  async start(): Promise<void> {
    this.open();
    const file = this.file!;
    await new Promise<void>((resolve) => {
      file.once('open', () => resolve());
      file.once('error', () => resolve());
    });
    if (this.failure) throw this.failure;
  }

  write(frame: RawFrame): Promise<void> {
    const line = `${formatRecordLine(frame)}\n`;
    this.chain = this.chain.then(() => this.doWrite(line));
    return this.chain;
  }

  private async doWrite(line: string): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.gzip === undefined) this.open();
    else if (this.dueForRotation()) {
      await this.closePart();
      this.open();
    }
    this.frames++;
    if (!this.gzip!.write(line)) await this.waitDrain(this.gzip!);
    if (this.failure) throw this.failure;
  }

  private async waitDrain(gzip: Gzip): Promise<void> {
    // Ends on drain, or on a file error (which ends the gzip pipe without a drain).
    await Promise.race([once(gzip, 'drain'), once(this.file!, 'error').catch(() => undefined), once(this.file!, 'close')]);
  }

  private dueForRotation(): boolean {
    const o = this.options;
    if (o.rotateBytes !== undefined && this.partBytes >= o.rotateBytes) return true;
    return o.rotateMs !== undefined && Date.now() - this.partStarted >= o.rotateMs;
  }

  private open(): void {
    const n = this.files.length + 1;
    const path = this.rotating ? partPath(this.options.out, n) : this.options.out;
    mkdirSync(dirname(path), { recursive: true });
    const file = createWriteStream(path, { flags: 'wx' }); // never overwrite a recording
    const gzip = createGzip();
    file.on('error', (err) => {
      this.failure ??= new VigilError(ERR.BAD_REQUEST, `cannot write ${path}: ${err.message}`, 400, { path });
      gzip.unpipe(file);
    });
    gzip.on('data', (chunk: Buffer) => {
      this.partBytes += chunk.length;
      this.bytes += chunk.length;
    });
    gzip.pipe(file);
    this.gzip = gzip;
    this.file = file;
    this.partBytes = 0;
    this.partStarted = Date.now();
    this.files.push(path);
    const meta = { ...this.options.meta, part: n, startedAt: new Date(this.partStarted).toISOString() };
    gzip.write(`${JSON.stringify({ v: 1, meta })}\n`);
  }

  private async closePart(): Promise<void> {
    const gzip = this.gzip;
    const file = this.file;
    this.gzip = undefined;
    this.file = undefined;
    if (gzip === undefined || file === undefined) return;
    const closed = new Promise<void>((resolve) => {
      if (file.closed) resolve();
      else file.once('close', () => resolve());
    });
    gzip.end();
    await closed;
    if (this.failure) throw this.failure;
  }

  /** Writes the gzip trailer of the current file and closes it. */
  async close(): Promise<void> {
    this.chain = this.chain.catch(() => undefined).then(() => this.closePart());
    await this.chain;
  }
}

function formatReport(report: Record<string, BookReport>): string {
  return Object.entries(report)
    .map(([sym, r]) => {
      const match = r.compared ? `, top of book matched ${r.matched}/${r.compared} (${((100 * (r.matched ?? 0)) / r.compared).toFixed(2)}%)` : '';
      return `${sym}: ${r.resyncs} resync(s)${match}`;
    })
    .join('; ');
}

/**
 * Writes every frame of a live feed as received, and runs the venue's normalizer on it so gaps still
 * trigger resyncs while recording. `onEvents` sees the live events (tests compare them with the replay).
 */
export async function recordFeed(
  adapter: VenueAdapter,
  feed: LiveFeed,
  writer: RecordingWriter,
  onEvents?: (events: CanonicalEvent[]) => void,
): Promise<{ malformed: number; books?: Record<string, BookReport> }> {
  const normalizer = adapter.createNormalizer({ requestResync: (symbol, reason) => feed.resync(symbol, reason) });
  const out: CanonicalEvent[] = [];
  let malformed = 0;
  for await (const frame of feed) {
    await writer.write(frame);
    out.length = 0;
    try {
      normalizer.normalize(frame, out);
    } catch {
      malformed++; // recorded as received; the replay reports it
    }
    if (onEvents && out.length > 0) onEvents([...out]);
  }
  return { malformed, books: normalizer.bookReport?.() };
}

export async function recordCommand(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      feed: { type: 'string', multiple: true },
      out: { type: 'string' },
      'rotate-mb': { type: 'string' },
      'rotate-minutes': { type: 'string' },
      duration: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    false,
  );
  if (values.help) {
    console.log(RECORD_USAGE);
    return 0;
  }
  if (!values.feed || values.feed.length === 0) throw new UsageError(`--feed is required\n${RECORD_USAGE}`);
  if (!values.out) throw new UsageError(`--out is required\n${RECORD_USAGE}`);
  const positive = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!(Number.isFinite(n) && n > 0)) throw new UsageError(`--${name}: expected a positive number, got ${JSON.stringify(v)}`);
    return n;
  };
  const rotateMb = positive('rotate-mb', values['rotate-mb']);
  const rotateMinutes = positive('rotate-minutes', values['rotate-minutes']);
  const durationS = positive('duration', values.duration);

  const config = loadConfig(process.env, { VIGIL_FEEDS: values.feed.join(';') });
  const byVenue = new Map<string, string[]>();
  for (const f of config.feeds) byVenue.set(f.venue, [...new Set([...(byVenue.get(f.venue) ?? []), ...f.symbols])]);
  for (const venue of byVenue.keys()) {
    if (!getAdapter(venue).connect) throw new UsageError(`--feed ${venue}: this venue has no live connection`);
  }

  const log = (msg: string, extra?: Record<string, unknown>): void => {
    console.error(`vigil record: ${msg}${extra && Object.keys(extra).length > 0 ? ` ${JSON.stringify(extra)}` : ''}`);
  };
  const writer = new RecordingWriter({
    out: values.out,
    rotateBytes: rotateMb === undefined ? undefined : Math.max(1, Math.round(rotateMb * MB)),
    rotateMs: rotateMinutes === undefined ? undefined : rotateMinutes * 60_000,
    meta: { recorder: 'vigil record', feeds: Object.fromEntries(byVenue) },
  });

  await writer.start();
  const abort = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      log(`${sig} again: exiting without finishing the file`);
      process.exit(130);
    }
    log(`${sig}: stopping, finishing the file`);
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const timer = durationS === undefined ? undefined : setTimeout(() => abort.abort(), durationS * 1000);

  const reports: Record<string, Record<string, BookReport>> = {};
  let malformed = 0;
  let failure: unknown;
  try {
    await Promise.all(
      [...byVenue].map(async ([venue, symbols]) => {
        const adapter = getAdapter(venue);
        log(`connecting ${venue}: ${symbols.join(', ')}`);
        const feed = adapter.connect!({ symbols, ...config.endpoints[venue], signal: abort.signal, log: (m, extra) => log(m, extra) });
        const r = await recordFeed(adapter, feed, writer);
        malformed += r.malformed;
        if (r.books && Object.keys(r.books).length > 0) reports[venue] = r.books;
      }),
    );
  } catch (e) {
    failure = e;
    abort.abort();
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await writer.close();
  }
  log(`wrote ${writer.frames} frames, ${writer.bytes} bytes in ${writer.files.length} file(s): ${writer.files.join(', ')}`);
  if (malformed > 0) log(`${malformed} frame(s) the normalizer rejected (recorded as received)`);
  for (const [venue, r] of Object.entries(reports)) log(`${venue} books: ${formatReport(r)}`);
  if (failure !== undefined) throw failure;
  return 0;
}
