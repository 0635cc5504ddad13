/**
 * What the rest of Vigil asks of storage. Callers never see whether an embedded engine (chdb) or a
 * ClickHouse server answers.
 */
import type { Finding, Severity } from '../core/events.ts';

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

export interface Store {
  readonly kind: 'embedded' | 'server';
  insertFindings(findings: readonly Finding[]): Promise<void>;
  insertDeadLetters(letters: readonly DeadLetter[]): Promise<void>;
  searchFindings(query: FindingQuery): Promise<FindingPage>;
  /** A finding by id; with several runs holding it, the given run's, else the most recently written. */
  getFinding(id: string, runId?: string): Promise<Finding | undefined>;
  /** Analyst SQL, read-only, with row and time limits; returns the text in the requested format. */
  sql(query: string, format: SqlFormat, limits?: { maxRows?: number; maxSeconds?: number }): Promise<string>;
  ping(): Promise<boolean>;
  close(): Promise<void>;
}
