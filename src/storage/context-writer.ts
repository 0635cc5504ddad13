/**
 * Stores the market and transaction context of findings: trades, quotes and transactions off the event
 * topics, encoded as they are taken (src/storage/context-rows.ts) and batched into ClickHouse (`trades`,
 * `quotes`, `transactions`, migration 7) on the shared BatchWriter, in a consumer group of its own so
 * detection never waits for it (src/pipeline/store-side.ts).
 *
 * What is kept:
 * - every trade and every transaction, once: copies of a transaction sent for a view (`view` header,
 *   keyed by counterparty or merchant) and status markers copied into the data topics (`status-copy`
 *   header) are skipped, as are labels (they share the transactions' topic);
 * - quotes thinned, deterministically: a quote is kept when its event time falls in a later 100 ms
 *   bucket (floor(ts / 100)) than the last quote kept for its run, venue and symbol — the first quote of
 *   each bucket, in the order the transport delivers one instrument's quotes (its order on the feed).
 *   A quote older than the last kept bucket is dropped. Book updates are not stored: the top of book is in
 *   the quotes (derived from the rebuilt book for venues without a ticker stream).
 * The thinning state is one number per (run, venue, symbol); past MAX_THINNING_KEYS it starts over
 * (which can keep one extra quote per key in the bucket where that happens).
 */
import { ERR, VigilError } from '../core/errors.ts';
import type { Quote, Trade, Transaction } from '../core/events.ts';
import { STATUS_COPY_HEADER, VIEW_HEADER, type DeliveredMessage } from '../transport/types.ts';
import { BatchWriter, type BatchWriterOptions, type WriterCounters } from './batch-writer.ts';
import { ContextRows } from './context-rows.ts';
import type { Store } from './types.ts';

/** Quotes kept: at most one per venue and symbol per this many ms of event time. */
export const QUOTE_THINNING_MS = 100;
/** Thinning state entries kept at most (exported for the tests). */
export const MAX_THINNING_KEYS = 100_000;

/**
 * Batching of the context inserts (the store side's settings, or these when larger). Measured on chdb
 * 3.4: an insert costs ~13 ms of CPU whatever its size (a new part per table), against ~4 µs per row
 * as JSONEachRow (~1.5 µs as the RowBinary ContextStore sends now), so a replay's ~13k rows of the
 * Binance capture took 8 inserts at the findings' 250 ms (over half the context's cost) and take 2 at
 * these. Nothing waits for context rows but the context queries, where a
 * second is no loss; 50k rows held is ~15 MB, below the 100k rows the store side lets wait anyway.
 */
export const CONTEXT_BATCH = { maxRows: 50_000, maxDelayMs: 1_000 } as const;

export interface ContextCounters {
  trades: number;
  quotes: number;
  transactions: number;
  /** Quotes left out by the thinning rule. */
  quotesThinned: number;
  /** View and status-marker copies, labels and anything else not stored. */
  skipped: number;
  /** Messages not looked at because too many rows were waiting for the store (see StoreSide). */
  dropped: number;
}

/**
 * Rows are encoded as they are taken (ContextRows) into the batch being filled, which goes to the store
 * (through the BatchWriter underneath: in order, retried until stored) once it holds maxRows rows or its
 * first row has waited maxDelayMs, and on flush() and close(). Counters count rows.
 */
export class ContextWriter extends BatchWriter<ContextRows> {
  readonly taken: ContextCounters = { trades: 0, quotes: 0, transactions: 0, quotesThinned: 0, skipped: 0, dropped: 0 };
  /** run → venue → symbol → the 100 ms bucket of the last quote kept (nested: no key string per quote). */
  private readonly lastQuoteBucket = new Map<string, Map<string, Map<string, number>>>();
  /** Entries in lastQuoteBucket. */
  private thinningKeys = 0;
  /** The symbols of the (run, venue) looked up last: a feed's quotes come in long runs of one venue. */
  private cachedRun: string | undefined;
  private cachedVenue: string | undefined;
  private cachedSymbols: Map<string, number> | undefined;
  /** The batch being filled, and when it is due. */
  private filling: ContextRows | undefined;
  private due: NodeJS.Timeout | undefined;
  private readonly rowsPerBatch: number;
  private readonly delayMs: number;
  private rowsTaken = 0;
  private readonly done: { rows: number };
  private closing = false;

  constructor(store: Pick<Store, 'insertContextRows'>, options: BatchWriterOptions = {}) {
    const done = { rows: 0 };
    // One filled batch per write: the batching happens here, on rows, before encoding.
    super(
      'context writer',
      async (batches) => {
        for (const b of batches) {
          await store.insertContextRows(b);
          done.rows += b.count;
        }
      },
      { ...options, maxRows: 1, maxDelayMs: 0 },
    );
    this.done = done;
    this.rowsPerBatch = options.maxRows ?? 1000;
    this.delayMs = options.maxDelayMs ?? 250;
    if (!Number.isInteger(this.rowsPerBatch) || this.rowsPerBatch < 1) throw new RangeError('context writer: maxRows must be a positive integer');
  }

  /** In rows (the writer underneath counts batches). */
  override get counters(): WriterCounters {
    const c = super.counters;
    return { written: this.done.rows, flushes: c.flushes, errors: c.errors, pending: this.rowsTaken - this.done.rows };
  }

  /** Picks what to store from a batch of event-topic messages and encodes it; returns how many rows it took. */
  take(messages: readonly DeliveredMessage<unknown>[], defaultRunId: string): number {
    if (this.closing) throw new VigilError(ERR.STORE, 'context writer is closed', 500);
    const rows = (this.filling ??= new ContextRows());
    const before = rows.count;
    for (const m of messages) {
      const headers = m.headers;
      if (headers !== undefined && (headers[VIEW_HEADER] !== undefined || headers[STATUS_COPY_HEADER] !== undefined)) {
        this.taken.skipped++;
        continue;
      }
      const event = m.value as Trade | Quote | Transaction | { kind: string };
      const runId = headers?.run || defaultRunId;
      switch (event.kind) {
        case 'trade':
          this.taken.trades++;
          rows.addTrade(runId, event as Trade);
          break;
        case 'transaction':
          this.taken.transactions++;
          rows.addTransaction(runId, event as Transaction);
          break;
        case 'quote': {
          const q = event as Quote;
          const bucket = Math.floor(q.ts / QUOTE_THINNING_MS);
          let symbols = this.symbolBuckets(runId, q.venue);
          const last = symbols.get(q.symbol);
          if (last !== undefined && bucket <= last) {
            this.taken.quotesThinned++;
            break;
          }
          if (last === undefined) {
            if (this.thinningKeys >= MAX_THINNING_KEYS) {
              this.lastQuoteBucket.clear();
              this.cachedSymbols = undefined;
              this.thinningKeys = 0;
              symbols = this.symbolBuckets(runId, q.venue);
            }
            this.thinningKeys++;
          }
          symbols.set(q.symbol, bucket);
          this.taken.quotes++;
          rows.addQuote(runId, q);
          break;
        }
        default:
          this.taken.skipped++;
      }
    }
    const added = rows.count - before;
    this.rowsTaken += added;
    if (rows.count >= this.rowsPerBatch) this.seal();
    else if (rows.count > 0) this.due ??= setTimeout(() => this.seal(), this.delayMs);
    return added;
  }

  /** Resolves when every row taken before the call is stored. */
  override flush(): Promise<void> {
    this.seal();
    return super.flush();
  }

  override async close(options: { timeoutMs?: number } = {}): Promise<{ kept: number; lost: number }> {
    this.seal();
    this.closing = true;
    const r = await super.close(options);
    // Batches not stored → rows (no spill file here: nothing is kept).
    return r.lost > 0 ? { kept: 0, lost: this.rowsTaken - this.done.rows } : r;
  }

  /** Hands the batch being filled to the writer underneath. */
  private seal(): void {
    if (this.due !== undefined) clearTimeout(this.due);
    this.due = undefined;
    const rows = this.filling;
    if (rows === undefined || rows.count === 0) return;
    this.filling = undefined;
    this.write([rows]);
  }

  /** The thinning state of one run and venue: symbol → bucket of the last quote kept. */
  private symbolBuckets(runId: string, venue: string): Map<string, number> {
    if (this.cachedSymbols !== undefined && runId === this.cachedRun && venue === this.cachedVenue) return this.cachedSymbols;
    let venues = this.lastQuoteBucket.get(runId);
    if (venues === undefined) this.lastQuoteBucket.set(runId, (venues = new Map()));
    let symbols = venues.get(venue);
    if (symbols === undefined) venues.set(venue, (symbols = new Map()));
    this.cachedRun = runId;
    this.cachedVenue = venue;
    this.cachedSymbols = symbols;
    return symbols;
  }

  /** Counts messages left out because the store was too far behind (the caller decided to drop them). */
  noteDropped(n: number): void {
    this.taken.dropped += n;
  }
}
