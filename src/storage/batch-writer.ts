/**
 * Batches rows for a sink and writes them one batch at a time, in order: when maxRows are buffered,
 * when the oldest buffered row has waited maxDelayMs, on flush() and on close(). A failing write is
 * retried with exponential backoff and the batch is kept, so a transient error never loses rows
 * (a permanent one retries forever and reports every attempt through `log`; `counters.errors` and
 * `lastError` show it).
 */
import { ERR, VigilError } from '../core/errors.ts';

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

interface Waiter {
  /** Resolve once this many rows (counted from the start) are stored. */
  upTo: number;
  resolve: () => void;
}

export class BatchWriter<T> {
  private readonly maxRows: number;
  private readonly maxDelayMs: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private buffer: T[] = [];
  private accepted = 0;
  private stored = 0;
  private waiters: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;
  private readonly stats = { flushes: 0, errors: 0 };
  lastError: Error | undefined;

  constructor(
    private readonly name: string,
    private readonly sink: (rows: readonly T[]) => Promise<void>,
    private readonly options: BatchWriterOptions = {},
  ) {
    this.maxRows = options.maxRows ?? 1000;
    this.maxDelayMs = options.maxDelayMs ?? 250;
    this.retryBaseMs = options.retryBaseMs ?? 100;
    this.retryMaxMs = options.retryMaxMs ?? 5000;
    if (!Number.isInteger(this.maxRows) || this.maxRows < 1) throw new RangeError(`${name}: maxRows must be a positive integer`);
    if (!(this.maxDelayMs >= 0)) throw new RangeError(`${name}: maxDelayMs must be >= 0`);
  }

  get counters(): WriterCounters {
    return { written: this.stored, flushes: this.stats.flushes, errors: this.stats.errors, pending: this.accepted - this.stored };
  }

  write(rows: readonly T[]): void {
    if (this.closed) throw new VigilError(ERR.STORE, `${this.name} is closed`, 500);
    if (rows.length === 0) return;
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

  /** Stores everything and refuses further writes. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }

  /** Starts the write loop unless it is running; it drains what is due and stops. */
  private kick(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.running ??= this.loop().finally(() => {
      this.running = undefined;
      // Rows that arrived during the last write and are not yet due wait for their timer.
      if (this.buffer.length >= this.maxRows || this.waiters.length > 0) this.kick();
      else if (this.buffer.length > 0) this.timer ??= setTimeout(() => this.kick(), this.maxDelayMs);
    });
  }

  private async loop(): Promise<void> {
    // Write at least once (the kick was due), then keep going while full batches or waiters remain.
    let first = true;
    while (this.buffer.length > 0 && (first || this.buffer.length >= this.maxRows || this.waiters.length > 0)) {
      first = false;
      const batch = this.buffer.slice(0, this.maxRows);
      await this.writeWithRetry(batch);
      this.buffer.splice(0, batch.length);
      this.stored += batch.length;
      this.stats.flushes++;
      this.releaseWaiters();
    }
    this.releaseWaiters();
  }

  private async writeWithRetry(batch: readonly T[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
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
