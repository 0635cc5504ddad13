/**
 * Context rows (trades, quotes, transactions; migration 7) encoded as they are taken: RowBinary bytes per
 * table, in the column order of the inserts (ContextStore.insertRows). The context writer encodes each
 * event when it takes it instead of holding the event objects until its batch goes out (up to a second
 * and 50k rows): a replay's whole market data would otherwise survive young collections and be copied and
 * promoted by the GC, only to be encoded at the end anyway.
 */
import type { Quote, Trade, Transaction } from '../core/events.ts';
import { RowBinaryWriter, type RowBinaryTable } from './row-binary.ts';

// LowCardinality columns go as String: the same bytes, and chdb reads a plain String from the insert
// file faster.
const DT = "DateTime64(3, 'UTC')" as const;
export const TRADES_ROWS: RowBinaryTable = {
  name: 'trades',
  columns: [['run_id', 'String'], ['venue', 'String'], ['symbol', 'String'], ['ts', DT], ['trade_id', 'String'], ['price', 'Float64'], ['qty', 'Float64'], ['side', 'String']],
};
export const QUOTES_ROWS: RowBinaryTable = {
  name: 'quotes',
  columns: [['run_id', 'String'], ['venue', 'String'], ['symbol', 'String'], ['ts', DT], ['bid', 'Float64'], ['ask', 'Float64'], ['bid_size', 'Float64'], ['ask_size', 'Float64']],
};
export const TRANSACTIONS_ROWS: RowBinaryTable = {
  name: 'transactions',
  columns: [
    ['run_id', 'String'],
    ['source', 'String'],
    ['tx_id', 'String'],
    ['ts', DT],
    ['account', 'String'],
    ['counterparty', 'String'],
    ['merchant', 'String'],
    ['terminal', 'String'],
    ['amount', 'Float64'],
    ['currency', 'String'],
    ['direction', 'String'],
    ['channel', 'String'],
    ['country', 'String'],
  ],
};

const EMPTY = new Uint8Array(0);

/** Encoded rows of the three context tables; a writer per table, made at its first row. */
export class ContextRows {
  private tradeRows: RowBinaryWriter | undefined;
  private quoteRows: RowBinaryWriter | undefined;
  private txRows: RowBinaryWriter | undefined;
  /** Rows encoded, all tables. */
  count = 0;

  addTrade(runId: string, e: Trade): void {
    (this.tradeRows ??= new RowBinaryWriter()).string(runId).string(e.venue).string(e.symbol).dateTime64Ms(e.ts).string(e.tradeId).float64(e.price).float64(e.qty).string(e.side);
    this.count++;
  }

  addQuote(runId: string, e: Quote): void {
    (this.quoteRows ??= new RowBinaryWriter()).string(runId).string(e.venue).string(e.symbol).dateTime64Ms(e.ts).float64(e.bidPx).float64(e.askPx).float64(e.bidQty).float64(e.askQty);
    this.count++;
  }

  /** Absent optional fields are stored as '' (the columns' "absent"). */
  addTransaction(runId: string, e: Transaction): void {
    (this.txRows ??= new RowBinaryWriter())
      .string(runId)
      .string(e.source)
      .string(e.id)
      .dateTime64Ms(e.ts)
      .string(e.account)
      .string(e.counterparty ?? '')
      .string(e.merchant ?? '')
      .string(e.terminal ?? '')
      .float64(e.amount)
      .string(e.currency)
      .string(e.direction)
      .string(e.channel)
      .string(e.country ?? '');
    this.count++;
  }

  add(runId: string, e: Trade | Quote | Transaction): void {
    if (e.kind === 'trade') this.addTrade(runId, e);
    else if (e.kind === 'quote') this.addQuote(runId, e);
    else this.addTransaction(runId, e);
  }

  /** The encoded rows of each table (views, not copies; empty when none). */
  get trades(): Uint8Array {
    return this.tradeRows?.bytes() ?? EMPTY;
  }

  get quotes(): Uint8Array {
    return this.quoteRows?.bytes() ?? EMPTY;
  }

  get transactions(): Uint8Array {
    return this.txRows?.bytes() ?? EMPTY;
  }
}
