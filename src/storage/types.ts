/**
 * What the rest of Vigil asks of storage. Callers never see whether an embedded engine (chdb) or a
 * ClickHouse server answers.
 */
import type { Finding, Severity } from '../core/events.ts';
import type { RuleChange } from '../detectors/rules.ts';
import type { TxRisk } from '../pipeline/risk-score.ts';
import type { ApiKeyInfo, NewApiKey } from '../core/api-keys.ts';

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
  /** Newest first (by start time); limit 1..10000, default 100. */
  listRuns(opts?: { limit?: number }): Promise<RunRecord[]>;
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
}

export interface DeadLetterQuery {
  runId?: string;
  source?: string;
  /** 1..10000, default 1000. Oldest first. */
  limit?: number;
}
