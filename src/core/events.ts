/**
 * The canonical event model: every layer (feeds, transport, detectors, storage, API) speaks these types.
 * Times are epoch milliseconds (UTC). `ts` is the venue's event time, `recvTs` when Vigil received the frame.
 */
import { z } from 'zod';

const epochMs = z.number().finite().nonnegative();
const finite = z.number().finite();
const positive = z.number().finite().positive();
const nonNegative = z.number().finite().nonnegative();
/** Canonical instrument name: BASE-QUOTE in upper case, e.g. BTC-USDT; derivatives may add a suffix (BTC-USDT-PERP). */
export const symbolSchema = z.string().regex(/^[A-Z0-9]+-[A-Z0-9]+(-[A-Z0-9]+)*$/, 'symbol must be BASE-QUOTE, e.g. BTC-USDT');

export const sideSchema = z.enum(['buy', 'sell', 'unknown']);
export type Side = z.infer<typeof sideSchema>;

export const tradeSchema = z.object({
  kind: z.literal('trade'),
  venue: z.string().min(1),
  symbol: symbolSchema,
  ts: epochMs,
  recvTs: epochMs,
  price: positive,
  qty: nonNegative,
  /** The aggressor's side. */
  side: sideSchema,
  tradeId: z.string().min(1),
  /** Aggregate trades (Binance aggTrade) carry the range of underlying trade ids. */
  firstTradeId: z.string().optional(),
  lastTradeId: z.string().optional(),
});

export const quoteSchema = z.object({
  kind: z.literal('quote'),
  venue: z.string().min(1),
  symbol: symbolSchema,
  ts: epochMs,
  recvTs: epochMs,
  bidPx: nonNegative,
  bidQty: nonNegative,
  askPx: nonNegative,
  askQty: nonNegative,
  /** Venue's update id for the quote, when it has one (Binance bookTicker `u`). */
  seq: z.number().int().optional(),
  /** True when Vigil derived the quote from its rebuilt book (venues without a ticker stream). */
  derived: z.boolean().optional(),
});

const level = z.tuple([nonNegative, nonNegative]);
export const bookSchema = z.object({
  kind: z.literal('book'),
  venue: z.string().min(1),
  symbol: symbolSchema,
  ts: epochMs,
  recvTs: epochMs,
  /** Last update id covered by this message (Binance `u`, or the snapshot's lastUpdateId). */
  seq: z.number().int(),
  /** First update id covered (Binance `U`); equals seq for snapshots. */
  firstSeq: z.number().int().optional(),
  /** Previous message's last update id where the venue states it (Binance futures `pu`). */
  prevSeq: z.number().int().optional(),
  snapshot: z.boolean(),
  /** [price, qty] pairs; qty 0 removes the level. */
  bids: z.array(level),
  asks: z.array(level),
});

export const orderActionSchema = z.enum(['new', 'replace', 'cancel', 'fill']);
export const orderSchema = z.object({
  kind: z.literal('order'),
  venue: z.string().min(1),
  symbol: symbolSchema,
  ts: epochMs,
  recvTs: epochMs.optional(),
  orderId: z.string().min(1),
  account: z.string().min(1),
  side: z.enum(['buy', 'sell']),
  price: nonNegative,
  qty: nonNegative,
  action: orderActionSchema,
  fillQty: nonNegative.optional(),
  fillPrice: nonNegative.optional(),
  counterpartyAccount: z.string().optional(),
  /** For `replace`: the order id being replaced, when the venue assigns a new one. */
  origOrderId: z.string().optional(),
  /** `principal` (the firm's own account) or `agency` (a client's order), where the flow says. */
  capacity: z.enum(['principal', 'agency']).optional(),
  /** The account's segment (e.g. retail, institutional, market_maker), for rule scopes. */
  segment: z.string().optional(),
  /** Accounts under common control (same beneficial owner), for wash-trade linking. */
  linkedAccounts: z.array(z.string()).optional(),
});

export const transactionSchema = z.object({
  kind: z.literal('transaction'),
  source: z.string().min(1),
  id: z.string().min(1),
  ts: epochMs,
  recvTs: epochMs.optional(),
  account: z.string().min(1),
  counterparty: z.string().optional(),
  amount: finite,
  currency: z.string().min(3).max(8),
  direction: z.enum(['debit', 'credit']),
  channel: z.string().min(1),
  merchant: z.string().optional(),
  terminal: z.string().optional(),
  mcc: z.string().optional(),
  country: z.string().optional(),
  lat: z.number().min(-90).max(90).optional(),
  lon: z.number().min(-180).max(180).optional(),
  device: z.string().optional(),
  ip: z.string().optional(),
  /** The account's segment (e.g. retail, business), for rule scopes. */
  segment: z.string().optional(),
  /** Card or other instrument used, where one account has several. */
  card: z.string().optional(),
});

/**
 * Confirmed outcome of an earlier transaction, arriving later on its own input: a chargeback, an analyst's
 * verdict. Carries the transaction's account, merchant and terminal so rules keyed by them can use it.
 */
export const labelSchema = z.object({
  kind: z.literal('label'),
  source: z.string().min(1),
  /** Id of the labelled transaction. */
  txId: z.string().min(1),
  /** When the label was issued (not when the transaction happened). */
  ts: epochMs,
  recvTs: epochMs.optional(),
  label: z.enum(['fraud', 'chargeback', 'legit']),
  account: z.string().min(1),
  merchant: z.string().optional(),
  terminal: z.string().optional(),
  reason: z.string().optional(),
});

export const metricSchema = z.object({
  kind: z.literal('metric'),
  source: z.string().min(1),
  key: z.string().min(1),
  ts: epochMs,
  recvTs: epochMs.optional(),
  value: finite,
});

/**
 * Feed status, emitted by Vigil itself (not the venue) for every subscribed symbol of a connection, so
 * detectors never read a feed gap or a book rebuild as market behaviour.
 */
export const feedStatusSchema = z.enum(['connected', 'disconnected', 'book_reset', 'book_synced', 'stale', 'gap']);
export const statusSchema = z.object({
  kind: z.literal('status'),
  venue: z.string().min(1),
  symbol: symbolSchema,
  ts: epochMs,
  recvTs: epochMs,
  status: feedStatusSchema,
  reason: z.string(),
});

export const eventSchema = z.discriminatedUnion('kind', [
  tradeSchema,
  quoteSchema,
  bookSchema,
  orderSchema,
  transactionSchema,
  labelSchema,
  metricSchema,
  statusSchema,
]);

export type Trade = z.infer<typeof tradeSchema>;
export type Quote = z.infer<typeof quoteSchema>;
export type Book = z.infer<typeof bookSchema>;
export type Order = z.infer<typeof orderSchema>;
export type Transaction = z.infer<typeof transactionSchema>;
export type Label = z.infer<typeof labelSchema>;
export type Metric = z.infer<typeof metricSchema>;
export type FeedStatus = z.infer<typeof statusSchema>;
export type CanonicalEvent = z.infer<typeof eventSchema>;
export type EventKind = CanonicalEvent['kind'];
export const EVENT_KINDS: readonly EventKind[] = ['trade', 'quote', 'book', 'order', 'transaction', 'label', 'metric', 'status'];

/**
 * The partition key: what must stay ordered together. Market data by venue:symbol, order flow by
 * venue:symbol too (abuse patterns compare an account's orders with the book of that instrument),
 * transactions by account, metrics by source:key.
 */
export function eventKey(ev: CanonicalEvent): string {
  switch (ev.kind) {
    case 'trade':
    case 'quote':
    case 'book':
    case 'order':
    case 'status':
      return `${ev.venue}:${ev.symbol}`;
    case 'transaction':
    case 'label':
      return ev.account;
    case 'metric':
      return `${ev.source}:${ev.key}`;
  }
}

/**
 * What picks the partition, when it is not the key: one instrument on every venue (market data and order
 * flow) shares a partition, so a detector comparing venues (cross_venue_divergence) sees them all, in
 * order, on one worker. Per-key order is unaffected: a key always maps to the same routing key.
 */
export function partitionKey(ev: CanonicalEvent): string | undefined {
  switch (ev.kind) {
    case 'trade':
    case 'quote':
    case 'book':
    case 'order':
    case 'status':
      return ev.symbol;
    default:
      return undefined;
  }
}

/**
 * Views: extra copies of an event keyed by another entity, sent on the same topic with a `view` header,
 * so rules keyed by that entity (fan_in by the receiving account, terminal_risk by merchant) get every
 * event of their key on one partition, in order, on whichever worker owns it.
 */
export const EVENT_VIEWS = ['counterparty', 'merchant'] as const;
export type EventView = (typeof EVENT_VIEWS)[number];

export function eventViews(ev: CanonicalEvent): Array<{ view: EventView; key: string }> | undefined {
  if (ev.kind === 'transaction') {
    const views: Array<{ view: EventView; key: string }> = [];
    if (ev.counterparty) views.push({ view: 'counterparty', key: ev.counterparty });
    const m = ev.merchant ?? ev.terminal;
    if (m) views.push({ view: 'merchant', key: m });
    return views.length > 0 ? views : undefined;
  }
  if (ev.kind === 'label') {
    const m = ev.merchant ?? ev.terminal;
    return m ? [{ view: 'merchant', key: m }] : undefined;
  }
  return undefined;
}

/** A short stable reference to an event, used in finding evidence and ids. */
export function eventRef(ev: CanonicalEvent): string {
  switch (ev.kind) {
    case 'trade':
      return `trade:${ev.venue}:${ev.symbol}:${ev.tradeId}`;
    case 'quote':
      return `quote:${ev.venue}:${ev.symbol}:${ev.seq ?? ev.ts}`;
    case 'book':
      return `book:${ev.venue}:${ev.symbol}:${ev.seq}`;
    case 'order':
      return `order:${ev.venue}:${ev.orderId}:${ev.action}:${ev.ts}`;
    case 'transaction':
      return `tx:${ev.source}:${ev.id}`;
    case 'label':
      return `label:${ev.source}:${ev.txId}:${ev.label}:${ev.ts}`;
    case 'metric':
      return `metric:${ev.source}:${ev.key}:${ev.ts}`;
    case 'status':
      return `status:${ev.venue}:${ev.symbol}:${ev.status}:${ev.ts}`;
  }
}

// ---------------------------------------------------------------- findings

export const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'] as const;
export const severitySchema = z.enum(SEVERITIES);
export type Severity = z.infer<typeof severitySchema>;
export function severityRank(s: Severity): number {
  return SEVERITIES.indexOf(s);
}

export const evidenceSchema = z
  .object({
    /** What was measured, e.g. { logReturn: 0.012, z: 14.2 }. */
    observed: z.record(z.string(), z.union([z.number(), z.string(), z.boolean(), z.null()])),
    /** The key's normal, e.g. { median: 0, mad: 0.0002, samples: 290 }. */
    baseline: z.record(z.string(), z.union([z.number(), z.string(), z.boolean(), z.null()])),
    /** The rule's limits that were crossed, e.g. { z: 8, minMoveBps: 20 }. */
    threshold: z.record(z.string(), z.union([z.number(), z.string(), z.boolean(), z.null()])),
    /** eventRef() of the events that triggered the finding. */
    triggers: z.array(z.string()),
  })
  .catchall(z.unknown());
export type Evidence = z.infer<typeof evidenceSchema>;

export const findingSchema = z.object({
  /** Deterministic: a hash of detector, rule, key and trigger, independent of run and wall clock. */
  id: z.string().regex(/^[0-9a-f]{32}$/),
  /** `live`, or the replay run's id. */
  runId: z.string().min(1),
  detector: z.string().min(1),
  ruleId: z.string().min(1),
  severity: severitySchema,
  score: z.number().finite(),
  venue: z.string().optional(),
  symbol: z.string().optional(),
  account: z.string().optional(),
  key: z.string().min(1),
  ts: epochMs,
  windowStart: epochMs,
  windowEnd: epochMs,
  summary: z.string().min(1),
  evidence: evidenceSchema,
  /** Version of the rules file the finding was produced under (rules.ts rulesVersion). */
  rulesVersion: z.string().optional(),
});
export type Finding = z.infer<typeof findingSchema>;
