/**
 * Vigil's transaction stream (adapter `transactions`): JSON over WebSocket, one canonical `transaction`
 * event per payment, documented in docs/feeds/transactions.md. The same protocol as the order-flow
 * stream (src/feeds/orderflow.ts) with `transaction`/`transactions` messages:
 *
 *   client → {"type":"subscribe","accounts"?:["acc-1"],"sources"?:["acme"]}
 *   server → {"type":"subscribed","accounts":[…]|null,"sources":[…]|null,"seq":0}
 *            {"type":"transaction","seq":1,"data":{…canonical transaction fields…}}
 *            {"type":"transactions","seq":2,"data":[{…},{…}]}
 *            {"type":"heartbeat","ts":1723161253937,"seq":2}
 *
 * Transactions have no instrument, while status events are keyed by venue:symbol: the stream reports
 * its status (connected, disconnected, stale, and `stale` with `sequence gap: …` for a seq gap) under
 * the pseudo-instrument TX-STREAM, venue `transactions`.
 *
 * `vigil run --feed transactions:all` takes every account; `--feed transactions:acc-1,acc-2` only
 * those accounts (the "symbols" of this feed are accounts). A provider with its own JSON format goes
 * through the `mapped` adapter and a mapping file instead (src/feeds/mapping.ts).
 */
import { transactionSchema, type Transaction } from '../core/events.ts';
import { connectVenue, type ConnectionTuning } from './connection.ts';
import type { VenueProtocol } from './connection-types.ts';
import { streamSymbol } from './mapping.ts';
import { requireWsUrl, subscribeMessage, validateData, VigilStreamNormalizer, vigilStreamProtocol, wireId, wireNumber, wireTime } from './orderflow.ts';
import type { LiveFeed, LiveFeedOptions, VenueAdapter } from './types.ts';

export const TRANSACTIONS = 'transactions';
/** The pseudo-instrument of the transaction stream's status events. */
export const TX_STREAM_SYMBOL = streamSymbol('tx');

const ID_FIELDS = ['id', 'account', 'counterparty', 'merchant', 'terminal', 'mcc', 'device'] as const;

export function toTransaction(data: unknown, recvTs: number, ctx: string): Transaction {
  return validateData(transactionSchema, data, recvTs, ctx, 'transaction', (d, c) => {
    c.ts = wireTime(d.ts, `${ctx}.ts`);
    for (const k of ['amount', 'lat', 'lon'] as const) if (d[k] !== undefined) c[k] = wireNumber(d[k]);
    for (const k of ID_FIELDS) if (d[k] !== undefined) c[k] = wireId(d[k]);
  });
}

export interface TransactionFeedOptions extends LiveFeedOptions {
  /** Only these accounts (default: options.symbols unless `all`; else every account). */
  accounts?: string[];
  /** Only these transaction sources. */
  sources?: string[];
}

/** The account filter: options.accounts, else the feed's "symbols" unless they are `all`/`*`/empty. */
export function transactionAccounts(options: TransactionFeedOptions): string[] | undefined {
  if (options.accounts !== undefined && options.accounts.length > 0) return options.accounts;
  const s = options.symbols.filter((x) => x.length > 0);
  if (s.length === 0 || s.some((x) => x === '*' || x.toLowerCase() === 'all')) return undefined;
  return s;
}

export function transactionsProtocol(accounts?: readonly string[], sources?: readonly string[]): VenueProtocol {
  return vigilStreamProtocol({
    venue: TRANSACTIONS,
    nativeSymbols: () => [TX_STREAM_SYMBOL],
    subscribe: () => subscribeMessage({ accounts, sources }),
  });
}

export function createTransactionsNormalizer(): VigilStreamNormalizer<Transaction> {
  return new VigilStreamNormalizer<Transaction>({
    venue: TRANSACTIONS,
    one: 'transaction',
    many: 'transactions',
    toEvent: toTransaction,
    fixedSymbols: [TX_STREAM_SYMBOL],
  });
}

/** Connects to the transaction stream at options.wsUrl (required). */
export function connectTransactions(options: TransactionFeedOptions, tuning?: ConnectionTuning): LiveFeed {
  requireWsUrl(options, TRANSACTIONS);
  return connectVenue(transactionsProtocol(transactionAccounts(options), options.sources), options, tuning);
}

export const transactionsAdapter: VenueAdapter = {
  name: TRANSACTIONS,
  createNormalizer: () => createTransactionsNormalizer(),
  connect: (options) => connectTransactions(options),
};
