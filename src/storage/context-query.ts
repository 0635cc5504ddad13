/**
 * The stored market and transaction context (migration 7: `trades`, `quotes`, `transactions`) and the
 * aggregates built over it and over `findings`: a finding's surroundings, the instruments of a run,
 * OHLC price buckets, findings counted per time bucket and key, and the runs table.
 *
 * Every value travels as a `{name:Type}` parameter; the only SQL assembled from input is a column name
 * picked from a fixed table (stats `by`). Limits (rows, buckets, margins) are checked here as well as in
 * the API, so a direct caller gets the same 400s. Reads use FINAL: the tables collapse re-deliveries.
 */
import { SEVERITIES, severityRank, type Finding } from '../core/events.ts';
import { ERR, VigilError } from '../core/errors.ts';
import type { Db } from './db.ts';
import {
  CONTEXT_LIMITS,
  PRICE_INTERVALS,
  RUN_STATUSES,
  STATS_BUCKETS,
  STATS_BY,
  type ContextEvent,
  type ContextQuote,
  type ContextTrade,
  type ContextTransaction,
  type ContextWindowOptions,
  type FindingContext,
  type FindingStats,
  type Instrument,
  type PriceBucket,
  type PriceQuery,
  type PriceSeries,
  type RunQuery,
  type StatsBy,
  type StatsQuery,
} from './context-types.ts';
import { ContextRows, QUOTES_ROWS, TRADES_ROWS, TRANSACTIONS_ROWS } from './context-rows.ts';
import { RUN_COLUMNS, rowToRun } from './rows.ts';
import type { RunRecord } from './types.ts';

const CONTEXT_TABLES = ['trades', 'quotes', 'transactions'] as const;

const num = (v: number | string): number => Number(v);
const orNull = (s: string): string | null => (s === '' ? null : s);

function bad(parameter: string, expected: string, got: unknown): VigilError {
  return new VigilError(ERR.BAD_REQUEST, `invalid '${parameter}': expected ${expected} (got ${JSON.stringify(got)})`, 400, { parameter });
}

function intIn(parameter: string, v: number | undefined, min: number, max: number, fallback: number): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v < min || v > max) throw bad(parameter, `an integer ${min}-${max}`, v);
  return v;
}

function epochMs(parameter: string, v: number | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isFinite(v) || v < 0) throw bad(parameter, 'epoch milliseconds >= 0', v);
  return Math.floor(v);
}

function nonEmpty(parameter: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 200) throw bad(parameter, 'a non-empty string of at most 200 characters', v);
  return v;
}

/** Number of epoch-aligned buckets of `size` ms that [from, to) touches. */
export function bucketCount(from: number, to: number, size: number): number {
  if (to <= from) return 0;
  return Math.floor((to - 1) / size) - Math.floor(from / size) + 1;
}

const TS_RANGE = `ts >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND ts < fromUnixTimestamp64Milli({to:Int64}, 'UTC')`;

interface TradeRow {
  ts_ms: number | string;
  venue: string;
  symbol: string;
  price: number | string;
  qty: number | string;
  side: string;
}
interface QuoteRow {
  ts_ms: number | string;
  venue: string;
  symbol: string;
  bid: number | string;
  ask: number | string;
  bid_size: number | string;
  ask_size: number | string;
}
interface TxRow {
  ts_ms: number | string;
  tx_id: string;
  account: string;
  counterparty: string;
  merchant: string;
  amount: number | string;
  currency: string;
  direction: string;
  channel: string;
  country: string;
}
interface OhlcRow {
  t: number | string;
  open: number | string;
  high: number | string;
  low: number | string;
  close: number | string;
  volume: number | string;
}
interface RangeRow {
  n: number | string;
  min_ms: number | string;
  max_ms: number | string;
}

export class ContextStore {
  constructor(private readonly db: Db) {}

  /** Writes trades, quotes and transactions to their tables (see insertRows). */
  async insert(events: readonly ContextEvent[]): Promise<void> {
    const rows = new ContextRows();
    for (const { runId, event } of events) rows.add(runId, event);
    await this.insertRows(rows);
  }

  /** Encoded context rows: one RowBinary insert per table that has rows. */
  async insertRows(rows: ContextRows): Promise<void> {
    await Promise.all([
      this.db.insertRowBinary(TRADES_ROWS, rows.trades),
      this.db.insertRowBinary(QUOTES_ROWS, rows.quotes),
      this.db.insertRowBinary(TRANSACTIONS_ROWS, rows.transactions),
    ]);
  }

  /**
   * Sets the context tables' TTL (days after a row was stored; 0: kept for good). Changes a table only
   * when its TTL differs, so a restart with the same setting touches nothing.
   */
  async setTtl(days: number): Promise<void> {
    if (!Number.isInteger(days) || days < 0 || days > 36_500) throw new VigilError(ERR.CONFIG, `invalid context TTL: expected whole days 0-36500 (got ${days})`, 500);
    const rows = await this.db.rows<{ name: string; engine_full: string }>(
      `SELECT name, engine_full FROM system.tables WHERE database = {database:String} AND name IN {tables:Array(String)}`,
      { database: this.db.database.slice(1, -1), tables: [...CONTEXT_TABLES] },
    );
    for (const r of rows) {
      const m = /TTL inserted_at \+ toIntervalDay\((?:_CAST\()?(\d+)/.exec(r.engine_full);
      const current = m ? Number(m[1]) : 0;
      if (current === days) continue;
      const table = CONTEXT_TABLES.find((t) => t === r.name)!;
      if (days === 0) await this.db.command(`ALTER TABLE {db}.${table} REMOVE TTL`);
      else await this.db.command(`ALTER TABLE {db}.${table} MODIFY TTL inserted_at + toIntervalDay({days:UInt32})`, { days });
    }
  }

  /**
   * A finding's surroundings, from its own run: for a finding on an instrument, the trades and quotes of
   * its venue and symbol (every venue's when it names none); for a finding on an account, that
   * account's transactions as payer or as counterparty. Window: [windowStart − before, windowEnd + after].
   */
  async findingContext(finding: Finding, opts: ContextWindowOptions = {}): Promise<FindingContext> {
    const span = Math.max(0, finding.windowEnd - finding.windowStart);
    const margin = Math.min(CONTEXT_LIMITS.maxMarginMs, Math.max(CONTEXT_LIMITS.minDefaultMarginMs, span));
    const before = intIn('before', opts.before, 0, CONTEXT_LIMITS.maxMarginMs, margin);
    const after = intIn('after', opts.after, 0, CONTEXT_LIMITS.maxMarginMs, margin);
    const limit = intIn('limit', opts.limit, 1, CONTEXT_LIMITS.maxRows, CONTEXT_LIMITS.defaultRows);
    const from = Math.max(0, Math.floor(finding.windowStart - before));
    const to = Math.ceil(finding.windowEnd + after);
    const out: FindingContext = {
      finding,
      window: { from, to },
      kind: finding.symbol === undefined && finding.account !== undefined ? 'account' : 'market',
      trades: [],
      quotes: [],
      transactions: [],
      truncated: { trades: false, quotes: false, transactions: false },
    };
    // One more row than the limit tells whether the limit cut anything; the rows nearest the finding's
    // own time are the ones kept, then put back in time order.
    const params: Record<string, unknown> = { runId: finding.runId, from, to, center: Math.round(finding.ts), limit: limit + 1 };
    const range = `ts >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND ts <= fromUnixTimestamp64Milli({to:Int64}, 'UTC')`;
    const nearest = `abs(toInt64(toUnixTimestamp64Milli(ts)) - {center:Int64})`;
    if (out.kind === 'market' && finding.symbol !== undefined) {
      params.symbol = finding.symbol;
      let where = `run_id = {runId:String} AND symbol = {symbol:String} AND ${range}`;
      if (finding.venue !== undefined) {
        params.venue = finding.venue;
        where += ' AND venue = {venue:String}';
      }
      const [trades, quotes] = await Promise.all([
        this.db.rows<TradeRow>(
          `SELECT toUnixTimestamp64Milli(ts) AS ts_ms, venue, symbol, price, qty, side FROM {db}.trades FINAL WHERE ${where}
           ORDER BY ${nearest}, ts, venue, length(trade_id), trade_id LIMIT {limit:UInt32}`,
          params,
        ),
        this.db.rows<QuoteRow>(
          `SELECT toUnixTimestamp64Milli(ts) AS ts_ms, venue, symbol, bid, ask, bid_size, ask_size FROM {db}.quotes FINAL WHERE ${where}
           ORDER BY ${nearest}, ts, venue LIMIT {limit:UInt32}`,
          params,
        ),
      ]);
      out.truncated.trades = trades.length > limit;
      out.truncated.quotes = quotes.length > limit;
      out.trades = byTime(trades.slice(0, limit)).map(
        (r): ContextTrade => ({ ts: num(r.ts_ms), venue: r.venue, symbol: r.symbol, price: num(r.price), size: num(r.qty), side: r.side }),
      );
      out.quotes = byTime(quotes.slice(0, limit)).map(
        (r): ContextQuote => ({ ts: num(r.ts_ms), venue: r.venue, symbol: r.symbol, bid: num(r.bid), ask: num(r.ask), bidSize: num(r.bid_size), askSize: num(r.ask_size) }),
      );
    } else if (out.kind === 'account' && finding.account !== undefined) {
      params.account = finding.account;
      const cols = `toUnixTimestamp64Milli(ts) AS ts_ms, ${nearest} AS distance, source, tx_id, account, counterparty, merchant, amount, currency, direction, channel, country`;
      // Two selects: the first uses the sorting key (account), the second the counterparty's bloom filter.
      const rows = await this.db.rows<TxRow>(
        `SELECT * FROM (
           SELECT ${cols} FROM {db}.transactions FINAL WHERE run_id = {runId:String} AND account = {account:String} AND ${range}
           UNION ALL
           SELECT ${cols} FROM {db}.transactions FINAL WHERE run_id = {runId:String} AND counterparty = {account:String} AND account != {account:String} AND ${range}
         ) ORDER BY distance, ts_ms, source, tx_id LIMIT {limit:UInt32}`,
        params,
      );
      out.truncated.transactions = rows.length > limit;
      out.transactions = byTime(rows.slice(0, limit)).map(
        (r): ContextTransaction => ({
          ts: num(r.ts_ms),
          id: r.tx_id,
          account: r.account,
          counterparty: orNull(r.counterparty),
          merchant: orNull(r.merchant),
          amount: num(r.amount),
          currency: r.currency,
          direction: r.direction,
          channel: r.channel,
          country: orNull(r.country),
        }),
      );
    }
    return out;
  }

  /** Instruments with stored trades in a run, most trades first. */
  async instruments(opts: { runId: string; limit?: number }): Promise<Instrument[]> {
    const runId = nonEmpty('run', opts.runId);
    const limit = intIn('limit', opts.limit, 1, CONTEXT_LIMITS.maxInstruments, CONTEXT_LIMITS.maxInstruments);
    const rows = await this.db.rows<{ venue: string; symbol: string; n: number | string; last_ms: number | string }>(
      `SELECT venue, symbol, count() AS n, toUnixTimestamp64Milli(max(ts)) AS last_ms FROM {db}.trades FINAL
       WHERE run_id = {runId:String} GROUP BY venue, symbol ORDER BY n DESC, venue, symbol LIMIT {limit:UInt32}`,
      { runId, limit },
    );
    return rows.map((r) => ({ venue: r.venue, symbol: r.symbol, trades: num(r.n), lastTs: num(r.last_ms) }));
  }

  /**
   * OHLC buckets of one instrument from its trades (ties within a millisecond broken by trade id), or
   * from mid quotes when the range holds no trade. Without `from`, the latest maxBuckets intervals of
   * the data at most; without `to`, up to the last event.
   */
  async prices(q: PriceQuery): Promise<PriceSeries> {
    const runId = nonEmpty('run', q.runId);
    const venue = nonEmpty('venue', q.venue);
    const symbol = nonEmpty('symbol', q.symbol);
    const size = PRICE_INTERVALS[q.interval];
    if (size === undefined) throw bad('interval', Object.keys(PRICE_INTERVALS).join(', '), q.interval);
    const base = { runId, venue, symbol };
    const key = 'run_id = {runId:String} AND symbol = {symbol:String} AND venue = {venue:String}';
    const empty: PriceSeries = { interval: q.interval, source: null, from: null, to: null, items: [] };
    this.checkBuckets(q.from, q.to, size, 'interval');
    let source: 'trades' | 'quotes' = 'trades';
    let range = await this.range('trades', key, base, q.from, q.to);
    if (range === undefined) {
      source = 'quotes';
      range = await this.range('quotes', `${key} AND bid > 0 AND ask > 0`, base, q.from, q.to);
    }
    if (range === undefined) return empty;
    const { from, to } = this.resolveRange(range, q.from, q.to, size, 'interval');
    const params = { ...base, from, to, seconds: size / 1000 };
    const bucket = `toUnixTimestamp(toStartOfInterval(ts, toIntervalSecond({seconds:UInt32}))) * 1000`;
    const rows =
      source === 'trades'
        ? await this.db.rows<OhlcRow>(
            `SELECT ${bucket} AS t, argMin(price, (ts, length(trade_id), trade_id)) AS open, max(price) AS high, min(price) AS low,
               argMax(price, (ts, length(trade_id), trade_id)) AS close, sum(qty) AS volume
             FROM {db}.trades FINAL WHERE ${key} AND ${TS_RANGE} GROUP BY t ORDER BY t`,
            params,
          )
        : await this.db.rows<OhlcRow>(
            `SELECT ${bucket} AS t, argMin(mid, ts) AS open, max(mid) AS high, min(mid) AS low, argMax(mid, ts) AS close, 0 AS volume
             FROM (SELECT ts, (bid + ask) / 2 AS mid FROM {db}.quotes FINAL WHERE ${key} AND bid > 0 AND ask > 0 AND ${TS_RANGE})
             GROUP BY t ORDER BY t`,
            params,
          );
    const items = rows.map((r): PriceBucket => ({ t: num(r.t), open: num(r.open), high: num(r.high), low: num(r.low), close: num(r.close), volume: num(r.volume) }));
    return { interval: q.interval, source, from, to, items };
  }

  /** Findings counted per time bucket and key (detector, severity, symbol or venue), with the same filters as the search. */
  async stats(q: StatsQuery): Promise<FindingStats> {
    const size = STATS_BUCKETS[q.bucket];
    if (size === undefined) throw bad('bucket', Object.keys(STATS_BUCKETS).join(', '), q.bucket);
    if (!STATS_BY.includes(q.by)) throw bad('by', STATS_BY.join(', '), q.by);
    const column: Record<StatsBy, string> = { detector: 'detector', severity: 'severity', symbol: 'symbol', venue: 'venue' };
    const keyColumn = column[q.by];
    const top = intIn('top', q.top, 1, CONTEXT_LIMITS.maxKeys, CONTEXT_LIMITS.defaultKeys);
    const conds: string[] = [];
    const params: Record<string, unknown> = {};
    for (const name of ['detector', 'venue', 'symbol', 'account'] as const) {
      const values = q[name];
      if (values === undefined || values.length === 0) continue;
      if (values.length > 1000 || !values.every((v) => typeof v === 'string')) throw bad(name, 'up to 1000 strings', values);
      conds.push(`${name} IN {${name}:Array(String)}`);
      params[name] = [...values];
    }
    if (q.minSeverity !== undefined) {
      if (!SEVERITIES.includes(q.minSeverity)) throw bad('minSeverity', SEVERITIES.join(', '), q.minSeverity);
      conds.push('severity_rank >= {minRank:UInt8}');
      params.minRank = severityRank(q.minSeverity);
    }
    if (q.runId !== undefined) {
      conds.push('run_id = {runId:String}');
      params.runId = nonEmpty('run', q.runId);
    }
    const filters = conds.join(' AND ');
    const empty: FindingStats = { bucket: q.bucket, by: q.by, from: null, to: null, items: [], totals: [], truncated: false };
    this.checkBuckets(q.from, q.to, size, 'bucket');
    const range = await this.range('findings', filters, params, q.from, q.to);
    if (range === undefined) return empty;
    const { from, to } = this.resolveRange(range, q.from, q.to, size, 'bucket');
    const all = { ...params, from, to, top: top + 1, seconds: size / 1000 };
    const where = `WHERE ${filters ? `${filters} AND ` : ''}${TS_RANGE}`;
    const totals = await this.db.rows<{ k: string; n: number | string }>(
      `SELECT ${keyColumn} AS k, count() AS n FROM {db}.findings FINAL ${where} GROUP BY k ORDER BY n DESC, k LIMIT {top:UInt32}`,
      all,
    );
    const kept = totals.slice(0, top);
    const items = await this.db.rows<{ t: number | string; k: string; n: number | string }>(
      `SELECT toUnixTimestamp(toStartOfInterval(ts, toIntervalSecond({seconds:UInt32}))) * 1000 AS t, ${keyColumn} AS k, count() AS n
       FROM {db}.findings FINAL ${where} AND ${keyColumn} IN {keys:Array(String)} GROUP BY t, k ORDER BY t, k`,
      { ...all, keys: kept.map((r) => r.k) },
    );
    return {
      bucket: q.bucket,
      by: q.by,
      from,
      to,
      items: items.map((r) => ({ t: num(r.t), key: orNull(r.k), count: num(r.n) })),
      totals: kept.map((r) => ({ key: orNull(r.k), count: num(r.n) })),
      truncated: totals.length > top,
    };
  }

  /** Newest first (by start time), optionally only runs in the given statuses. */
  async listRuns(q: RunQuery = {}): Promise<RunRecord[]> {
    const limit = intIn('limit', q.limit, 1, 10_000, 100);
    const params: Record<string, unknown> = { limit };
    let where = '';
    if (q.status !== undefined && q.status.length > 0) {
      for (const s of q.status) if (!RUN_STATUSES.includes(s)) throw bad('status', RUN_STATUSES.join(', '), s);
      where = 'WHERE status IN {status:Array(String)}';
      params.status = [...q.status];
    }
    const rows = await this.db.rows<Parameters<typeof rowToRun>[0]>(
      `SELECT ${RUN_COLUMNS} FROM {db}.runs FINAL ${where} ORDER BY started_at DESC, run_id LIMIT {limit:UInt32}`,
      params,
    );
    return rows.map(rowToRun);
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    const rows = await this.db.rows<Parameters<typeof rowToRun>[0]>(`SELECT ${RUN_COLUMNS} FROM {db}.runs FINAL WHERE run_id = {runId:String} LIMIT 1`, {
      runId: nonEmpty('id', runId),
    });
    return rows[0] && rowToRun(rows[0]);
  }

  /** Count and first/last event time of the rows matching `filters` within the requested bounds; undefined when none. */
  private async range(table: 'trades' | 'quotes' | 'findings', filters: string, params: Record<string, unknown>, from?: number, to?: number): Promise<{ min: number; max: number } | undefined> {
    const conds = filters ? [filters] : [];
    const p: Record<string, unknown> = { ...params };
    const f = epochMs('from', from);
    const t = epochMs('to', to);
    if (f !== undefined && t !== undefined && t <= f) throw bad('to', `a time after from (${f})`, t);
    if (f !== undefined) (conds.push(`ts >= fromUnixTimestamp64Milli({rangeFrom:Int64}, 'UTC')`), (p.rangeFrom = f));
    if (t !== undefined) (conds.push(`ts < fromUnixTimestamp64Milli({rangeTo:Int64}, 'UTC')`), (p.rangeTo = t));
    const rows = await this.db.rows<RangeRow>(
      `SELECT count() AS n, toUnixTimestamp64Milli(min(ts)) AS min_ms, toUnixTimestamp64Milli(max(ts)) AS max_ms
       FROM {db}.${table} FINAL ${conds.length ? `WHERE ${conds.join(' AND ')}` : ''}`,
      p,
    );
    const r = rows[0];
    if (!r || num(r.n) === 0) return undefined;
    return { min: num(r.min_ms), max: num(r.max_ms) };
  }

  /**
   * The [from, to) the buckets cover: the requested bounds, else the data's (to: just after the last
   * event; from: the first event, or the start of the latest maxBuckets buckets when the data spans more).
   * Refuses a requested range of more than maxBuckets buckets, naming the size parameter.
   */
  private resolveRange(data: { min: number; max: number }, reqFrom: number | undefined, reqTo: number | undefined, size: number, sizeParam: string): { from: number; to: number } {
    const to = reqTo ?? data.max + 1;
    const latest = (Math.floor((to - 1) / size) - (CONTEXT_LIMITS.maxBuckets - 1)) * size;
    const from = reqFrom ?? Math.max(data.min, latest);
    this.checkBuckets(from, to, size, sizeParam);
    return { from, to };
  }

  /** A range given whole is checked before any query (it may hold no data at all). */
  private checkBuckets(from: number | undefined, to: number | undefined, size: number, sizeParam: string): void {
    if (from === undefined || to === undefined) return;
    const n = bucketCount(from, to, size);
    if (n > CONTEXT_LIMITS.maxBuckets) {
      throw new VigilError(
        ERR.BAD_REQUEST,
        `invalid '${sizeParam}': from ${from} to ${to} spans ${n} intervals of ${size / 1000} s; at most ${CONTEXT_LIMITS.maxBuckets}: choose a coarser ${sizeParam} or a shorter range`,
        400,
        { parameter: sizeParam },
      );
    }
  }
}

/** Stable sort by event time (rows arrive nearest-first; equal times keep their tie-break order). */
function byTime<R extends { ts_ms: number | string }>(rows: R[]): R[] {
  return rows.sort((a, b) => num(a.ts_ms) - num(b.ts_ms));
}
