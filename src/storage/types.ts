/**
 * What the rest of Vigil asks of storage. Callers never see whether an embedded engine (chdb) or a
 * ClickHouse server answers.
 */
import type { Finding, Severity } from '../core/events.ts';
import type { RuleChange } from '../detectors/rules.ts';
import type { TxRisk } from '../pipeline/risk-score.ts';
import type { ApiKeyInfo, NewApiKey } from '../core/api-keys.ts';
import type { ContextRows } from './context-rows.ts';
import type { ContextEvent, ContextWindowOptions, FindingContext, FindingStats, Instrument, PriceQuery, PriceSeries, RunQuery, StatsQuery } from './context-types.ts';
import type { FindingAction, FindingActionRequest, FindingActionResult, FindingRef, FindingWorkflow, NewSnooze, Snooze, SnoozeQuery, WorkflowStatus } from './workflow.ts';

export type { RuleChange };

export interface FindingQuery {
  detector?: string[];
  venue?: string[];
  symbol?: string[];
  account?: string[];
  minSeverity?: Severity;
  /** Event-time range, epoch ms, from inclusive, to exclusive. */
  from?: number;
  to?: number;
  runId?: string;
  /** Page size (1..1000). */
  limit: number;
  /** Opaque cursor from a previous page. */
  cursor?: string;
  /** Newest first (default) or oldest first. */
  order?: 'desc' | 'asc';
  /** Workflow status (a finding never touched is 'open'). */
  status?: WorkflowStatus[];
  /** Assignee names; 'none' (UNASSIGNED) selects findings assigned to nobody. */
  assignee?: string[];
}

export interface FindingPage {
  items: Finding[];
  /** Present when there is a next page. */
  nextCursor?: string;
  /** Total number of findings that match the filters (ignoring the cursor). */
  total: number;
}

export interface DeadLetter {
  ts: number;
  source: string;
  origin: string;
  reason: string;
  /** The raw bytes of the frame. */
  raw: Buffer;
  runId: string;
}

export type SqlFormat = 'JSONEachRow' | 'TabSeparatedWithNames' | 'CSVWithNames' | 'PrettyCompact' | 'JSON';
export const SQL_FORMATS: readonly SqlFormat[] = ['JSONEachRow', 'TabSeparatedWithNames', 'CSVWithNames', 'PrettyCompact', 'JSON'];

export interface Store {
  readonly kind: 'embedded' | 'server';
  insertFindings(findings: readonly Finding[]): Promise<void>;
  insertDeadLetters(letters: readonly DeadLetter[]): Promise<void>;
  insertTxRisk(rows: readonly TxRisk[]): Promise<void>;
  insertRuleChanges(changes: readonly RuleChange[]): Promise<void>;
  /** Newest first; limit 1..1000, default 100. */
  listRuleChanges(opts?: { limit?: number }): Promise<RuleChange[]>;
  searchFindings(query: FindingQuery): Promise<FindingPage>;
  /** A finding by id; with several runs holding it, the given run's, else the most recently written. */
  getFinding(id: string, runId?: string): Promise<Finding | undefined>;
  /** Analyst SQL, read-only, with row and time limits; returns the text in the requested format. */
  sql(query: string, format: SqlFormat, limits?: { maxRows?: number; maxSeconds?: number }): Promise<string>;
  /** Inserts or replaces a run by run id (the latest write wins). */
  upsertRun(run: RunRecord): Promise<void>;
  /** Newest first (by start time); limit 1..10000, default 100; optionally only runs in the given statuses. */
  listRuns(opts?: RunQuery): Promise<RunRecord[]>;
  getRun(runId: string): Promise<RunRecord | undefined>;
  /** Market and transaction context (src/storage/context-query.ts): trades, quotes, transactions of a run. */
  insertContext(events: readonly ContextEvent[]): Promise<void>;
  /** The same, already encoded (src/storage/context-rows.ts: what the context writer holds). */
  insertContextRows(rows: ContextRows): Promise<void>;
  /** Days the context tables keep a row after storing it (VIGIL_CONTEXT_TTL_DAYS; 0: for good). */
  setContextTtl(days: number): Promise<void>;
  /** The finding's instrument's trades and quotes, or its account's transactions, around its window. */
  getFindingContext(finding: Finding, opts?: ContextWindowOptions): Promise<FindingContext>;
  /** Instruments with stored trades in a run, most trades first. */
  listInstruments(opts: { runId: string; limit?: number }): Promise<Instrument[]>;
  /** OHLC buckets of one instrument from its stored trades (mid quotes when none). */
  priceBuckets(query: PriceQuery): Promise<PriceSeries>;
  /** Findings counted per time bucket and key. */
  findingStats(query: StatsQuery): Promise<FindingStats>;
  /** Dead letters oldest first, raw bytes exactly as inserted. */
  listDeadLetters(query?: DeadLetterQuery): Promise<DeadLetter[]>;
  /** Stores a new API key (its hash, never the key). */
  createApiKey(key: NewApiKey): Promise<void>;
  /** Every key, revoked ones too, newest first. */
  listApiKeys(): Promise<ApiKeyInfo[]>;
  /** Revokes a key (idempotent); undefined when no key has that id. */
  revokeApiKey(id: string, at?: number): Promise<ApiKeyInfo | undefined>;
  /** The key with this SHA-256 (hex), revoked or not. */
  findApiKeyByHash(keyHash: string): Promise<ApiKeyInfo | undefined>;
  /** Workflow (src/storage/workflow.ts): current state of findings, keyed by workflowKey(runId, id); untouched findings are absent. */
  findingWorkflows(refs: readonly FindingRef[]): Promise<Map<string, FindingWorkflow>>;
  /** Checks (409 VIGIL_ERR_CONFLICT on an illegal transition) and records a status change, assignment or note. */
  recordFindingAction(req: FindingActionRequest): Promise<FindingActionResult>;
  /** A finding's actions, oldest first. */
  findingHistory(ref: FindingRef): Promise<FindingAction[]>;
  createSnooze(snooze: NewSnooze): Promise<Snooze>;
  /** Newest first. */
  listSnoozes(query?: SnoozeQuery): Promise<Snooze[]>;
  /** Cancels a snooze (idempotent); undefined when no snooze has that id. */
  cancelSnooze(id: string, actor: string, at?: number): Promise<Snooze | undefined>;
  /** Label scores of a replay (src/replay/labels.ts); rows of the same run, labels file and detector replace earlier ones. */
  insertLabelScores(rows: readonly LabelScoreRecord[]): Promise<void>;
  /** A run's label scores, by labels file and detector ('*' last). */
  listLabelScores(runId: string): Promise<LabelScoreRecord[]>;
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export type RunStatus = 'running' | 'completed' | 'failed' | 'cancelled';

/** One pipeline run (`live` or a replay). Upserted by run id: the latest write wins. */
export interface RunRecord {
  runId: string;
  startedAt: number;
  /** Absent while the run is going. */
  finishedAt?: number;
  status: RunStatus;
  /** What the run read: feed names, replay files… */
  inputs: string[];
  /** Free-form counters and notes (stored as JSON). */
  summary: Record<string, unknown>;
  /** Version of the rules the run detected with (rules.ts rulesVersion), when known. */
  rulesVersion?: string;
  /** How the run was asked for (replay: speed, time range, rules file, mappings), stored as JSON. */
  options?: Record<string, unknown>;
  /** Canonical events processed and findings emitted, so far or in all. */
  events?: number;
  findings?: number;
  /** Wall-clock duration, once finished. */
  durationMs?: number;
}

export interface DeadLetterQuery {
  runId?: string;
  source?: string;
  /** 1..10000, default 1000. Oldest first. */
  limit?: number;
}

/** How the findings of one detector (or all, `*`) scored against labels (src/replay/labels.ts). */
export interface LabelCounts {
  /** A detector name, or `*` for every finding and every label together. */
  detector: string;
  findings: number;
  /** Findings that matched a label (true positives) and those that did not. */
  tp: number;
  fp: number;
  /** Labels that count for this detector, those detected, and those missed (false negatives). */
  labels: number;
  detected: number;
  fn: number;
  /** tp / findings; null without findings. */
  precision: number | null;
  /** detected / labels; null without labels. */
  recall: number | null;
  /** Harmonic mean of precision and recall; null when either is. */
  f1: number | null;
}

/** One row of `label_scores`: a run's scores of one detector (or all, `*`) against a labels file. */
export interface LabelScoreRecord extends LabelCounts {
  runId: string;
  delayMeanMs: number | null;
  delayP50Ms: number | null;
  delayMaxMs: number | null;
  graceMs: number;
  labelsFile: string;
  labelsHash: string;
  scoredAt: number;
}
