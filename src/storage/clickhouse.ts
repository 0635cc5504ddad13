/**
 * The Store over ClickHouse (embedded chdb or a server). Opening runs the migrations. Callers only
 * see the Store interface.
 *
 * Analyst SQL (`sql`): one read statement (see sql-guard.ts), run with readonly=1 (no writes, no
 * settings changes — so the limits below cannot be lifted from inside the query), max_execution_time
 * (default 30 s), max_result_rows (default 10 000) with result_overflow_mode='throw': 'break' stops
 * only at block boundaries (measured: a 5-row limit returned 65 410 rows), so it does not bound
 * anything; 'throw' answers an error the analyst can act on (add a LIMIT).
 */
import type { ClickHouseSettings } from '@clickhouse/client';
import type { ApiKeyInfo, NewApiKey } from '../core/api-keys.ts';
import type { Finding } from '../core/events.ts';
import type { TxRisk } from '../pipeline/risk-score.ts';
import { ERR, VigilError } from '../core/errors.ts';
import { Db, quoteIdentifier } from './db.ts';
import { openEngine, type Engine } from './engine.ts';
import { buildSearch, encodeCursor } from './finding-query.ts';
import { migrate } from './migrations.ts';
import {
  API_KEY_COLUMNS,
  apiKeyToRow,
  rowToApiKey,
  type ApiKeyReadRow,
  RULE_CHANGE_COLUMNS,
  rowToRuleChange,
  ruleChangeToRow,
  txRiskToRow,
  DEAD_LETTER_COLUMNS,
  FINDING_COLUMNS,
  deadLetterToRow,
  findingToRow,
  rowToDeadLetter,
  rowToFinding,
  runToRow,
  type FindingReadRow,
  LABEL_SCORE_COLUMNS,
  labelScoreToRow,
  rowToLabelScore,
} from './rows.ts';
import { singleReadStatement } from './sql-guard.ts';
import { ContextStore } from './context-query.ts';
import type { ContextRows } from './context-rows.ts';
import type { ContextEvent, ContextWindowOptions, FindingContext, FindingStats, Instrument, PriceQuery, PriceSeries, RunQuery, StatsQuery } from './context-types.ts';
import { WorkflowStore, type FindingActionRequest, type FindingRef, type NewSnooze, type SnoozeQuery } from './workflow.ts';
import { SQL_FORMATS, type LabelScoreRecord, type DeadLetter, type DeadLetterQuery, type FindingPage, type FindingQuery, type RuleChange, type RunRecord, type SqlFormat, type Store } from './types.ts';

export interface OpenStoreOptions {
  dataDir: string;
  url?: string;
  username?: string;
  password?: string;
  /** Default 'vigil'. */
  database?: string;
  log?: (msg: string) => void;
}

export const SQL_DEFAULTS = { maxRows: 10_000, maxSeconds: 30, maxBytes: 64 * 1024 * 1024 } as const;

export async function openStore(opts: OpenStoreOptions): Promise<Store> {
  const database = opts.database ?? 'vigil';
  const databaseIdent = quoteIdentifier(database);
  const engine = await openEngine({ ...opts, database, databaseIdent });
  try {
    const db = new Db(engine.client, databaseIdent, engine.bulkInsert);
    const result = await migrate(db, undefined, opts.log);
    opts.log?.(`storage: ${engine.kind} ClickHouse ready, schema version ${result.version}`);
    return new ClickHouseStore(engine, db);
  } catch (e) {
    await engine.close().catch(() => undefined);
    throw e;
  }
}

class ClickHouseStore implements Store {
  readonly kind: 'embedded' | 'server';
  private closed = false;
  private lastRunUpdate = 0;
  private readonly context: ContextStore;
  private readonly workflow: WorkflowStore;

  constructor(
    private readonly engine: Engine,
    private readonly db: Db,
  ) {
    this.kind = engine.kind;
    this.context = new ContextStore(db);
    this.workflow = new WorkflowStore(db);
  }

  async insertFindings(findings: readonly Finding[]): Promise<void> {
    this.assertOpen();
    await this.db.insert('findings', findings.map(findingToRow));
  }

  async insertDeadLetters(letters: readonly DeadLetter[]): Promise<void> {
    this.assertOpen();
    await this.db.insert('dead_letters', letters.map(deadLetterToRow));
  }

  async insertTxRisk(rows: readonly TxRisk[]): Promise<void> {
    this.assertOpen();
    await this.db.insert('tx_risk', rows.map(txRiskToRow));
  }

  async insertRuleChanges(changes: readonly RuleChange[]): Promise<void> {
    this.assertOpen();
    await this.db.insert('rule_changes', changes.map(ruleChangeToRow));
  }

  async listRuleChanges(opts: { limit?: number } = {}): Promise<RuleChange[]> {
    this.assertOpen();
    const limit = boundedInt('limit', opts.limit ?? 100, 1000);
    const rows = await this.db.rows<Parameters<typeof rowToRuleChange>[0]>(
      `SELECT ${RULE_CHANGE_COLUMNS} FROM {db}.rule_changes FINAL ORDER BY at DESC, version LIMIT {limit:UInt32}`,
      { limit },
    );
    return rows.map(rowToRuleChange);
  }

  async searchFindings(query: FindingQuery): Promise<FindingPage> {
    this.assertOpen();
    const s = buildSearch(query);
    const [rows, count] = await Promise.all([
      this.db.rows<FindingReadRow>(
        `SELECT ${FINDING_COLUMNS} FROM {db}.findings FINAL ${s.pageWhere} ${s.orderBy} LIMIT {pageSize:UInt32}`,
        { ...s.params, pageSize: s.limit + 1 },
      ),
      this.db.rows<{ n: number | string }>(`SELECT count() AS n FROM {db}.findings FINAL ${s.where}`, s.params),
    ]);
    const items = rows.slice(0, s.limit).map(rowToFinding);
    const last = items[items.length - 1];
    const page: FindingPage = { items, total: Number(count[0]?.n ?? 0) };
    if (rows.length > s.limit && last) page.nextCursor = encodeCursor({ t: last.ts, i: last.id, r: last.runId, o: s.order });
    return page;
  }

  async getFinding(id: string, runId?: string): Promise<Finding | undefined> {
    this.assertOpen();
    const rows = await this.db.rows<FindingReadRow>(
      `SELECT ${FINDING_COLUMNS} FROM {db}.findings FINAL WHERE id = {id:String}${runId === undefined ? '' : ' AND run_id = {runId:String}'}
       ORDER BY inserted_at DESC LIMIT 1`,
      runId === undefined ? { id } : { id, runId },
    );
    return rows[0] && rowToFinding(rows[0]);
  }

  async sql(query: string, format: SqlFormat, limits: { maxRows?: number; maxSeconds?: number } = {}): Promise<string> {
    this.assertOpen();
    if (!SQL_FORMATS.includes(format)) throw new VigilError(ERR.SQL, `unsupported format ${JSON.stringify(format)}: expected one of ${SQL_FORMATS.join(', ')}`, 400);
    const maxRows = positiveInt('maxRows', limits.maxRows ?? SQL_DEFAULTS.maxRows);
    const maxSeconds = positiveInt('maxSeconds', limits.maxSeconds ?? SQL_DEFAULTS.maxSeconds);
    const statement = singleReadStatement(query);
    // Order matters on chdb (applied as successive SETs): limits first, readonly last.
    const settings = {
      max_result_rows: String(maxRows),
      max_result_bytes: String(SQL_DEFAULTS.maxBytes),
      result_overflow_mode: 'throw',
      max_execution_time: maxSeconds,
      readonly: '1',
    } satisfies ClickHouseSettings;
    try {
      return await this.engine.withIsolatedClient(async (client) => {
        const rs = await client.query({ query: statement, format: format as 'JSONEachRow', clickhouse_settings: settings });
        return rs.text();
      });
    } catch (e) {
      if (e instanceof VigilError) throw e;
      throw new VigilError(ERR.SQL, (e as Error)?.message ?? String(e), 400);
    }
  }

  async upsertRun(run: RunRecord): Promise<void> {
    this.assertOpen();
    // The version column must grow even for two upserts within one millisecond.
    this.lastRunUpdate = Math.max(Date.now(), this.lastRunUpdate + 1);
    await this.db.insert('runs', [runToRow(run, this.lastRunUpdate)]);
  }

  // Runs, market and transaction context, prices and stats: src/storage/context-query.ts.
  async listRuns(opts: RunQuery = {}): Promise<RunRecord[]> {
    this.assertOpen();
    return this.context.listRuns(opts);
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    this.assertOpen();
    return this.context.getRun(runId);
  }

  async insertContext(events: readonly ContextEvent[]): Promise<void> {
    this.assertOpen();
    await this.context.insert(events);
  }

  async insertContextRows(rows: ContextRows): Promise<void> {
    this.assertOpen();
    await this.context.insertRows(rows);
  }

  async setContextTtl(days: number): Promise<void> {
    this.assertOpen();
    await this.context.setTtl(days);
  }

  async getFindingContext(finding: Finding, opts?: ContextWindowOptions): Promise<FindingContext> {
    this.assertOpen();
    return this.context.findingContext(finding, opts);
  }

  async listInstruments(opts: { runId: string; limit?: number }): Promise<Instrument[]> {
    this.assertOpen();
    return this.context.instruments(opts);
  }

  async priceBuckets(query: PriceQuery): Promise<PriceSeries> {
    this.assertOpen();
    return this.context.prices(query);
  }

  async findingStats(query: StatsQuery): Promise<FindingStats> {
    this.assertOpen();
    return this.context.stats(query);
  }

  async listDeadLetters(query: DeadLetterQuery = {}): Promise<DeadLetter[]> {
    this.assertOpen();
    const conds: string[] = [];
    const params: Record<string, unknown> = { limit: boundedInt('limit', query.limit ?? 1000, 10_000) };
    if (query.runId !== undefined) (conds.push('run_id = {runId:String}'), (params.runId = query.runId));
    if (query.source !== undefined) (conds.push('source = {source:String}'), (params.source = query.source));
    const rows = await this.db.rows<Parameters<typeof rowToDeadLetter>[0]>(
      `SELECT ${DEAD_LETTER_COLUMNS} FROM {db}.dead_letters ${conds.length ? `WHERE ${conds.join(' AND ')}` : ''}
       ORDER BY ts, inserted_at LIMIT {limit:UInt32}`,
      params,
    );
    return rows.map(rowToDeadLetter);
  }

  async createApiKey(key: NewApiKey): Promise<void> {
    this.assertOpen();
    await this.db.insert('api_keys', [apiKeyToRow(key)]);
  }

  async listApiKeys(): Promise<ApiKeyInfo[]> {
    this.assertOpen();
    const rows = await this.db.rows<ApiKeyReadRow>(`SELECT ${API_KEY_COLUMNS} FROM {db}.api_keys FINAL ORDER BY created_at DESC, id`);
    return rows.map(rowToApiKey);
  }

  async revokeApiKey(id: string, at = Date.now()): Promise<ApiKeyInfo | undefined> {
    this.assertOpen();
    const rows = await this.db.rows<ApiKeyReadRow>(`SELECT ${API_KEY_COLUMNS} FROM {db}.api_keys FINAL WHERE id = {id:String} LIMIT 1`, { id });
    const row = rows[0];
    if (!row) return undefined;
    const info = rowToApiKey(row);
    if (info.revokedAt !== undefined) return info;
    // The revoked copy (state 1) replaces the valid one whatever the insert order.
    await this.db.insert('api_keys', [apiKeyToRow({ ...info, keyHash: row.key_hash }, at)]);
    return { ...info, revokedAt: Math.round(at) };
  }

  async findApiKeyByHash(keyHash: string): Promise<ApiKeyInfo | undefined> {
    this.assertOpen();
    const rows = await this.db.rows<ApiKeyReadRow>(`SELECT ${API_KEY_COLUMNS} FROM {db}.api_keys FINAL WHERE key_hash = {keyHash:String} LIMIT 1`, { keyHash });
    return rows[0] && rowToApiKey(rows[0]);
  }

  // Workflow and snoozes: src/storage/workflow.ts.
  async findingWorkflows(refs: readonly FindingRef[]) {
    this.assertOpen();
    return this.workflow.findingWorkflows(refs);
  }

  async recordFindingAction(req: FindingActionRequest) {
    this.assertOpen();
    return this.workflow.recordFindingAction(req);
  }

  async findingHistory(ref: FindingRef) {
    this.assertOpen();
    return this.workflow.findingHistory(ref);
  }

  async createSnooze(snooze: NewSnooze) {
    this.assertOpen();
    return this.workflow.createSnooze(snooze);
  }

  async listSnoozes(query?: SnoozeQuery) {
    this.assertOpen();
    return this.workflow.listSnoozes(query);
  }

  async cancelSnooze(id: string, actor: string, at?: number) {
    this.assertOpen();
    return this.workflow.cancelSnooze(id, actor, at);
  }

  async insertLabelScores(rows: readonly LabelScoreRecord[]): Promise<void> {
    this.assertOpen();
    await this.db.insert('label_scores', rows.map(labelScoreToRow));
  }

  async listLabelScores(runId: string): Promise<LabelScoreRecord[]> {
    this.assertOpen();
    const rows = await this.db.rows<Parameters<typeof rowToLabelScore>[0]>(
      `SELECT ${LABEL_SCORE_COLUMNS} FROM {db}.label_scores FINAL WHERE run_id = {runId:String}
       ORDER BY labels_file, labels_hash, detector = '*', detector`,
      { runId },
    );
    return rows.map(rowToLabelScore);
  }

  async ping(): Promise<boolean> {
    if (this.closed) return false;
    try {
      return (await this.engine.client.ping()).success;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.engine.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new VigilError(ERR.STORE, 'store is closed', 503);
  }
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new VigilError(ERR.SQL, `invalid ${name}: expected a positive integer (got ${v})`, 400);
  return v;
}

function boundedInt(name: string, v: number, max: number): number {
  if (!Number.isInteger(v) || v < 1 || v > max) throw new VigilError(ERR.BAD_REQUEST, `invalid ${name}: expected an integer 1-${max} (got ${v})`, 400);
  return v;
}
