/**
 * Batches rows for a sink and writes them one batch at a time, in order: when maxRows are buffered,
 * when the oldest buffered row has waited maxDelayMs, on flush() and on close(). A failing write is
 * retried with exponential backoff and the batch is kept, so a transient error never loses rows
 * (a permanent one retries forever and reports every attempt through `log`; `counters.errors` and
 * `lastError` show it).
 *
 * Spill (optional): at most `spill.maxBuffered` rows are held in memory. Rows beyond go, in order, to a
 * JSON-lines file (appended and fsynced per write() call) and come back from it, oldest first, as the
 * sink takes batches again; while the file holds unread rows every new row goes behind them, so the
 * sink sees rows in the order they were written. The file is emptied once everything in it is stored.
 * A file left by an earlier process (crash, or close() giving up on an unreachable sink) is read at
 * start and written first. A lock file next to it (pid inside) keeps two live processes off one file.
 */
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { ERR, VigilError } from '../core/errors.ts';

export interface SpillOptions<T> {
  /** The JSON-lines file rows beyond maxBuffered go to. */
  path: string;
  /** Rows held in memory (at least 1). */
  maxBuffered: number;
  /** Row → JSON value (default: the row itself). */
  encode?: (row: T) => unknown;
  /** JSON value → row (default: the value itself). */
  decode?: (value: unknown) => T;
}

export interface BatchWriterOptions {
  /** Rows per write; default 1000. */
  maxRows?: number;
  /** Longest a row waits before its batch is written; default 250 ms. */
  maxDelayMs?: number;
  /** First retry delay (doubles per attempt up to retryMaxMs); default 100 ms. */
  retryBaseMs?: number;
  /** Default 5000 ms. */
  retryMaxMs?: number;
  log?: (msg: string) => void;
}

export interface WriterCounters {
  /** Rows stored. */
  written: number;
  /** Successful writes. */
  flushes: number;
  /** Failed write attempts (each retried). */
  errors: number;
  /** Rows accepted but not yet stored. */
  pending: number;
}

export interface SpillCounters {
  /** Rows written to the spill file, ever (this process). */
  spilled: number;
  /** Rows in the file not yet read back. */
  unread: number;
  /** Rows found in the file at start (left by an earlier process). */
  recovered: number;
  /** Lines of the file that could not be read back (skipped, logged). */
  corrupt: number;
}

interface Waiter {
  /** Resolve once this many rows (counted from the start) are stored. */
  upTo: number;
  resolve: () => void;
}

/** Bytes read from the spill file per read call. */
const READ_CHUNK = 1 << 20;

class SpillFile<T> {
  private fd: number;
  /** Byte offset of the first unread line, and the file's size. */
  private readOffset = 0;
  private size = 0;
  unread = 0;
  /** The sequence number (rows accepted) just after the last row appended. */
  endSeq = 0;
  readonly counters: SpillCounters = { spilled: 0, unread: 0, recovered: 0, corrupt: 0 };
  private readonly lockPath: string;
  private readonly encode: (row: T) => unknown;
  private readonly decode: (value: unknown) => T;

  constructor(
    readonly path: string,
    private readonly name: string,
    encode: ((row: T) => unknown) | undefined,
    decode: ((value: unknown) => T) | undefined,
    private readonly log: (msg: string) => void,
  ) {
    this.encode = encode ?? ((r) => r);
    this.decode = decode ?? ((v) => v as T);
    mkdirSync(dirname(path), { recursive: true });
    this.lockPath = `${path}.lock`;
    takeLock(this.lockPath, name);
    try {
      this.fd = openSync(path, 'a+');
      this.size = fstatSync(this.fd).size;
      this.recover();
    } catch (e) {
      rmSync(this.lockPath, { force: true });
      throw e;
    }
  }

  /** Counts the complete lines an earlier process left; a torn last line (crash mid-write) is cut off. */
  private recover(): void {
    if (this.size === 0) return;
    let lines = 0;
    let lastNewline = -1;
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    for (let pos = 0; pos < this.size; ) {
      const n = readSync(this.fd, buf, 0, Math.min(READ_CHUNK, this.size - pos), pos);
      if (n <= 0) break;
      for (let i = 0; i < n; i++) {
        if (buf[i] === 0x0a) {
          lines++;
          lastNewline = pos + i;
        }
      }
      pos += n;
    }
    if (lastNewline + 1 < this.size) {
      this.log(`${this.name}: cutting a torn last line off ${this.path}`);
      ftruncateSync(this.fd, lastNewline + 1);
      this.size = lastNewline + 1;
    }
    this.unread = lines;
    this.counters.recovered = lines;
    this.counters.unread = lines;
    if (lines > 0) this.log(`${this.name}: ${lines} rows left in ${this.path} by an earlier process are written first`);
  }

  append(rows: readonly T[], endSeq: number): void {
    const text = rows.map((r) => `${JSON.stringify(this.encode(r))}\n`).join('');
    const bytes = Buffer.from(text, 'utf8');
    for (let off = 0; off < bytes.length; ) off += writeSync(this.fd, bytes, off, bytes.length - off);
    fsyncSync(this.fd);
    this.size += bytes.length;
    this.unread += rows.length;
    this.endSeq = endSeq;
    this.counters.spilled += rows.length;
    this.counters.unread = this.unread;
  }

  /** Reads up to `max` rows back (oldest first). Corrupt lines are skipped and reported in `corrupt`. */
  read(max: number): { rows: T[]; corrupt: number } {
    const rows: T[] = [];
    let corrupt = 0;
    let carry = '';
    while (rows.length + corrupt < max && this.unread > 0 && this.readOffset < this.size) {
      const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, this.size - this.readOffset));
      const n = readSync(this.fd, buf, 0, buf.length, this.readOffset);
      if (n <= 0) break;
      const text = carry + buf.subarray(0, n).toString('utf8');
      let start = 0;
      let consumed = 0;
      for (;;) {
        if (rows.length + corrupt >= max) break;
        const nl = text.indexOf('\n', start);
        if (nl < 0) break;
        const line = text.slice(start, nl);
        consumed += Buffer.byteLength(line, 'utf8') + 1;
        start = nl + 1;
        this.unread--;
        try {
          rows.push(this.decode(JSON.parse(line)));
        } catch (e) {
          corrupt++;
          this.log(`${this.name}: skipping an unreadable line of ${this.path}: ${(e as Error).message}`);
        }
      }
      // Carry is always empty here: the read offset only ever advances by whole lines.
      carry = '';
      this.readOffset += consumed;
      if (consumed === 0) {
        // A line longer than the chunk: read it whole.
        const rest = Buffer.allocUnsafe(this.size - this.readOffset);
        readSync(this.fd, rest, 0, rest.length, this.readOffset);
        const nl = rest.indexOf(0x0a);
        if (nl < 0) break;
        const line = rest.subarray(0, nl).toString('utf8');
        this.readOffset += nl + 1;
        this.unread--;
        try {
          rows.push(this.decode(JSON.parse(line)));
        } catch {
          corrupt++;
        }
      }
    }
    this.counters.corrupt += corrupt;
    this.counters.unread = this.unread;
    return { rows, corrupt };
  }

  /** Everything read back and stored: the file starts over empty. */
  reset(): void {
    if (this.size === 0) return;
    ftruncateSync(this.fd, 0);
    fsyncSync(this.fd);
    this.size = 0;
    this.readOffset = 0;
  }

  get hasContent(): boolean {
    return this.size > 0;
  }

  /** Puts rows in front of the unread ones (close() giving up on the sink): rewritten through a temp file. */
  prepend(rows: readonly T[]): void {
    const rest = Buffer.allocUnsafe(this.size - this.readOffset);
    if (rest.length > 0) readSync(this.fd, rest, 0, rest.length, this.readOffset);
    const head = Buffer.from(rows.map((r) => `${JSON.stringify(this.encode(r))}\n`).join(''), 'utf8');
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, Buffer.concat([head, rest]));
    const fd = openSync(tmp, 'r');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, this.path);
    closeSync(this.fd);
    this.fd = openSync(this.path, 'a+');
    this.size = head.length + rest.length;
    this.readOffset = 0;
    this.unread += rows.length;
    this.counters.unread = this.unread;
  }

  close(): void {
    try {
      closeSync(this.fd);
    } catch {
      /* closed already */
    }
    if (this.size === 0) rmSync(this.path, { force: true });
    rmSync(this.lockPath, { force: true });
  }
}

function takeLock(lockPath: string, name: string): void {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(lockPath, String(process.pid), { flag: 'wx' });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let owner = NaN;
      try {
        owner = Number(readFileSync(lockPath, 'utf8').trim());
      } catch {
        /* gone meanwhile */
      }
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
        throw new VigilError(ERR.STORE_LOCKED, `${name}: the spill file ${lockPath.slice(0, -5)} is in use by pid ${owner}; give each process its own VIGIL_DATA_DIR`, 503);
      }
      rmSync(lockPath, { force: true }); // stale (its process is gone), or our own from an earlier writer
    }
  }
  if (!existsSync(lockPath)) throw new VigilError(ERR.STORE_LOCKED, `${name}: could not lock ${lockPath}`, 503);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class BatchWriter<T> {
  private readonly maxRows: number;
  private readonly maxDelayMs: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly maxBuffered: number;
  private buffer: T[] = [];
  private accepted = 0;
  private stored = 0;
  private waiters: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  /** close() gave up on the sink: stop retrying. */
  private abandoned = false;
  private readonly stats = { flushes: 0, errors: 0 };
  private readonly spillFile: SpillFile<T> | undefined;
  lastError: Error | undefined;

  constructor(
    private readonly name: string,
    private readonly sink: (rows: readonly T[]) => Promise<void>,
    private readonly options: BatchWriterOptions & { spill?: SpillOptions<T> } = {},
  ) {
    this.maxRows = options.maxRows ?? 1000;
    this.maxDelayMs = options.maxDelayMs ?? 250;
    this.retryBaseMs = options.retryBaseMs ?? 100;
    this.retryMaxMs = options.retryMaxMs ?? 5000;
    if (!Number.isInteger(this.maxRows) || this.maxRows < 1) throw new RangeError(`${name}: maxRows must be a positive integer`);
    if (!(this.maxDelayMs >= 0)) throw new RangeError(`${name}: maxDelayMs must be >= 0`);
    const spill = options.spill;
    this.maxBuffered = spill ? spill.maxBuffered : Number.POSITIVE_INFINITY;
    if (spill && !(Number.isInteger(spill.maxBuffered) && spill.maxBuffered >= 1)) throw new RangeError(`${name}: spill.maxBuffered must be a positive integer`);
    if (spill) {
      this.spillFile = new SpillFile<T>(spill.path, name, spill.encode, spill.decode, (m) => options.log?.(m));
      // Rows an earlier process left count as accepted before anything written now.
      this.accepted = this.spillFile.unread;
      this.spillFile.endSeq = this.accepted;
      if (this.accepted > 0) this.kick();
    }
  }

  get counters(): WriterCounters {
    return { written: this.stored, flushes: this.stats.flushes, errors: this.stats.errors, pending: this.accepted - this.stored };
  }

  /** Spill figures (undefined without a spill file). */
  get spillCounters(): SpillCounters | undefined {
    return this.spillFile ? { ...this.spillFile.counters } : undefined;
  }

  /** Whether rows beyond the memory bound go to a file (so write() never needs the caller to wait). */
  get spills(): boolean {
    return this.spillFile !== undefined;
  }

  write(rows: readonly T[]): void {
    if (this.closed) throw new VigilError(ERR.STORE, `${this.name} is closed`, 500);
    if (rows.length === 0) return;
    const spill = this.spillFile;
    if (spill) {
      // Behind the rows waiting in the file, or beyond the memory bound: to the file.
      const room = spill.unread > 0 ? 0 : Math.max(0, this.maxBuffered - this.buffer.length);
      if (room < rows.length) {
        for (let i = 0; i < room; i++) this.buffer.push(rows[i] as T);
        const rest = room === 0 ? rows : rows.slice(room);
        const first = spill.counters.spilled === 0 || spill.unread === 0;
        spill.append(rest, this.accepted + rows.length);
        if (first) this.options.log?.(`${this.name}: ${this.buffer.length} rows held in memory (the bound), spilling further rows to ${spill.path}`);
        this.accepted += rows.length;
        this.kick();
        return;
      }
    }
    for (const r of rows) this.buffer.push(r);
    this.accepted += rows.length;
    if (this.buffer.length >= this.maxRows) this.kick();
    else this.timer ??= setTimeout(() => this.kick(), this.maxDelayMs);
  }

  /** Resolves when every row written before the call is stored. */
  flush(): Promise<void> {
    if (this.stored >= this.accepted) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.waiters.push({ upTo: this.accepted, resolve }));
    this.kick();
    return done;
  }

  /**
   * Stores everything and refuses further writes. Idempotent. With `timeoutMs`, gives up waiting for
   * the sink after that long: with a spill file the rows not yet stored are kept in it (the next
   * process writes them first) and `kept` says how many; without one they are lost, and `lost` says
   * how many.
   */
  async close(options: { timeoutMs?: number } = {}): Promise<{ kept: number; lost: number }> {
    this.closed = true;
    const flushed = this.flush();
    let done = true;
    if (options.timeoutMs === undefined) await flushed;
    else {
      let timer: NodeJS.Timeout | undefined;
      done = await Promise.race([flushed.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), options.timeoutMs)))]);
      clearTimeout(timer);
    }
    let result = { kept: 0, lost: 0 };
    if (!done) {
      this.abandoned = true;
      const left = this.accepted - this.stored;
      if (this.spillFile) {
        // The memory rows (an insert of some may still be in flight: stored twice then, which
        // ReplacingMergeTree collapses) go in front of the file's unread ones.
        this.spillFile.prepend(this.buffer);
        this.buffer = [];
        result = { kept: left, lost: 0 };
        this.options.log?.(`${this.name}: the store did not take ${left} rows within ${options.timeoutMs} ms; they stay in ${this.spillFile.path} for the next start`);
      } else {
        result = { kept: 0, lost: left };
      }
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.spillFile?.close();
    return result;
  }

  /** Starts the write loop unless it is running; it drains what is due and stops. */
  private kick(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.abandoned) return;
    this.running ??= this.loop()
      .catch((e: unknown) => {
        if (!this.abandoned) throw e;
      })
      .finally(() => {
        this.running = undefined;
        if (this.abandoned) return;
        // Rows that arrived during the last write and are not yet due wait for their timer.
        if (this.buffer.length >= this.maxRows || this.waiters.length > 0 || (this.spillFile?.unread ?? 0) > 0) this.kick();
        else if (this.buffer.length > 0) this.timer ??= setTimeout(() => this.kick(), this.maxDelayMs);
      });
  }

  /** Tops the memory buffer up from the spill file. */
  private refill(): void {
    const spill = this.spillFile;
    if (!spill || spill.unread === 0 || this.buffer.length >= Math.max(this.maxBuffered, 1)) return;
    const { rows, corrupt } = spill.read(Math.max(1, this.maxBuffered - this.buffer.length));
    for (const r of rows) this.buffer.push(r);
    // Unreadable lines can never be stored: they count as done, so flush() does not wait for them.
    if (corrupt > 0) this.stored += corrupt;
  }

  private async loop(): Promise<void> {
    // Write at least once (the kick was due), then keep going while full batches, waiters or spilled rows remain.
    let first = true;
    for (;;) {
      this.refill();
      const spillDue = (this.spillFile?.unread ?? 0) > 0 || (this.spillFile !== undefined && this.stored < this.spillFile.endSeq);
      if (this.buffer.length === 0 || !(first || this.buffer.length >= this.maxRows || this.waiters.length > 0 || spillDue)) break;
      first = false;
      const batch = this.buffer.slice(0, this.maxRows);
      await this.writeWithRetry(batch);
      this.buffer.splice(0, batch.length);
      this.stored += batch.length;
      this.stats.flushes++;
      const spill = this.spillFile;
      if (spill && spill.unread === 0 && spill.hasContent && this.stored >= spill.endSeq) {
        spill.reset();
        this.options.log?.(`${this.name}: every spilled row is stored; ${spill.path} emptied`);
      }
      this.releaseWaiters();
    }
    this.releaseWaiters();
  }

  private async writeWithRetry(batch: readonly T[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.abandoned) throw new VigilError(ERR.STORE, `${this.name}: closed before the store took the rows`);
      try {
        await this.sink(batch);
        return;
      } catch (e) {
        this.stats.errors++;
        this.lastError = e instanceof Error ? e : new Error(String(e));
        const delay = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** attempt);
        this.options.log?.(`${this.name}: write of ${batch.length} rows failed (attempt ${attempt + 1}), retrying in ${delay} ms: ${this.lastError.message}`);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private releaseWaiters(): void {
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) (w.upTo <= this.stored ? w.resolve() : still.push(w));
    this.waiters = still;
  }
}
