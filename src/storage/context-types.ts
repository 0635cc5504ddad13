/**
 * Types of the stored market and transaction context (migration 7 `market_events`: tables `trades`,
 * `quotes`, `transactions`), of the price and findings-statistics buckets built from them, and the
 * limits the queries enforce. Times are epoch ms.
 */
import type { Finding, Quote, Trade, Transaction } from '../core/events.ts';
import type { RunStatus } from './types.ts';

/** One event the context writer stores, with the run it belongs to. */
export interface ContextEvent {
  runId: string;
  event: Trade | Quote | Transaction;
}

export const CONTEXT_LIMITS = {
  /** Rows of each kind in one context answer. */
  maxRows: 5_000,
  defaultRows: 2_000,
  /** Longest `before` / `after` around a finding's window (24 h). */
  maxMarginMs: 86_400_000,
  /** The default margin: max(60 s, the finding's window length), capped at maxMarginMs. */
  minDefaultMarginMs: 60_000,
  /** Buckets in one price or stats answer. */
  maxBuckets: 10_000,
  /** Keys (detectors, symbols…) in one stats answer. */
  maxKeys: 100,
  defaultKeys: 20,
  maxInstruments: 1_000,
} as const;

export interface ContextWindowOptions {
  /** Milliseconds before the finding's windowStart (0..24 h); default max(60 s, window length). */
  before?: number;
  /** Milliseconds after the finding's windowEnd (0..24 h); default as before. */
  after?: number;
  /** Rows of each kind (1..5000, default 2000); beyond, the ones nearest the finding's ts are kept. */
  limit?: number;
}

export interface ContextTrade {
  ts: number;
  venue: string;
  symbol: string;
  price: number;
  size: number;
  side: string;
}

export interface ContextQuote {
  ts: number;
  venue: string;
  symbol: string;
  bid: number;
  ask: number;
  bidSize: number;
  askSize: number;
}

export interface ContextTransaction {
  ts: number;
  id: string;
  account: string;
  counterparty: string | null;
  merchant: string | null;
  amount: number;
  currency: string;
  direction: string;
  channel: string;
  country: string | null;
}

export interface FindingContext {
  finding: Finding;
  /** Inclusive event-time bounds of the rows returned. */
  window: { from: number; to: number };
  /** market: the instrument's trades and quotes; account: the account's transactions (as payer or counterparty). */
  kind: 'market' | 'account';
  trades: ContextTrade[];
  quotes: ContextQuote[];
  transactions: ContextTransaction[];
  /** Which lists hit the row limit (the rows nearest the finding's ts were kept). */
  truncated: { trades: boolean; quotes: boolean; transactions: boolean };
}

export interface Instrument {
  venue: string;
  symbol: string;
  /** Trades stored for the run. */
  trades: number;
  lastTs: number;
}

export const PRICE_INTERVALS = { '1s': 1_000, '5s': 5_000, '1m': 60_000, '5m': 300_000, '1h': 3_600_000 } as const;
export type PriceInterval = keyof typeof PRICE_INTERVALS;

export interface PriceQuery {
  runId: string;
  venue: string;
  symbol: string;
  interval: PriceInterval;
  /** From inclusive, to exclusive; without from, the latest maxBuckets intervals of the data at most. */
  from?: number;
  to?: number;
}

export interface PriceBucket {
  /** The interval's start. */
  t: number;
  open: number;
  high: number;
  low: number;
  close: number;
  /** Traded quantity (0 when built from quotes). */
  volume: number;
}

export interface PriceSeries {
  interval: PriceInterval;
  /** trades, or mid quotes when the range holds no trade; null when it holds neither. */
  source: 'trades' | 'quotes' | null;
  /** The range the buckets cover (from inclusive, to exclusive); null without data. */
  from: number | null;
  to: number | null;
  items: PriceBucket[];
}

export const STATS_BUCKETS = { '1m': 60_000, '5m': 300_000, '1h': 3_600_000, '1d': 86_400_000 } as const;
export type StatsBucket = keyof typeof STATS_BUCKETS;
export const STATS_BY = ['detector', 'severity', 'symbol', 'venue'] as const;
export type StatsBy = (typeof STATS_BY)[number];

export interface StatsQuery {
  bucket: StatsBucket;
  by: StatsBy;
  from?: number;
  to?: number;
  runId?: string;
  detector?: string[];
  venue?: string[];
  symbol?: string[];
  account?: string[];
  minSeverity?: Finding['severity'];
  /** Keys kept, by total count (1..100, default 20). */
  top?: number;
}

export interface FindingStats {
  bucket: StatsBucket;
  by: StatsBy;
  from: number | null;
  to: number | null;
  /** Count per bucket start and key (key null when the findings have no symbol / venue). */
  items: Array<{ t: number; key: string | null; count: number }>;
  /** Count per key over the whole range, largest first. */
  totals: Array<{ key: string | null; count: number }>;
  /** More keys matched than `top`: the smaller ones were left out. */
  truncated: boolean;
}

export const RUN_STATUSES: readonly RunStatus[] = ['running', 'completed', 'failed', 'cancelled'];

export interface RunQuery {
  /** 1..10000, default 100. Newest first. */
  limit?: number;
  status?: RunStatus[];
}
