/**
 * Mapping between Vigil objects (camelCase, epoch ms) and table rows (snake_case). Times are written
 * as epoch-ms numbers (DateTime64(3) parses them as milliseconds) and read back through
 * toUnixTimestamp64Milli. Absent venue/symbol/account are stored as '' and read back as absent.
 * Dead-letter bytes are stored base64-encoded: JSON input cannot carry arbitrary bytes losslessly.
 */
import { severityRank, type Evidence, type Finding, type Severity } from '../core/events.ts';
import type { TxRisk } from '../pipeline/risk-score.ts';
import type { ApiKeyInfo, NewApiKey, Role } from '../core/api-keys.ts';
import type { DeadLetter, LabelScoreRecord, RuleChange, RunRecord, RunStatus } from './types.ts';

export interface FindingRow {
  id: string;
  run_id: string;
  detector: string;
  rule_id: string;
  severity: string;
  severity_rank: number;
  score: number;
  venue: string;
  symbol: string;
  account: string;
  key: string;
  ts: number;
  window_start: number;
  window_end: number;
  summary: string;
  evidence: string;
  rules_version: string;
}

/** Column list for reads, with times as epoch ms (aliases differ from column names on purpose:
 * ClickHouse resolves aliases in WHERE, and `ts` must keep meaning the column there). */
export const FINDING_COLUMNS = `id, run_id, detector, rule_id, severity, score, venue, symbol, account, key,
  toUnixTimestamp64Milli(ts) AS ts_ms, toUnixTimestamp64Milli(window_start) AS window_start_ms,
  toUnixTimestamp64Milli(window_end) AS window_end_ms, summary, evidence, rules_version`;

export interface FindingReadRow {
  id: string;
  run_id: string;
  detector: string;
  rule_id: string;
  severity: string;
  score: number | string;
  venue: string;
  symbol: string;
  account: string;
  key: string;
  ts_ms: number | string;
  window_start_ms: number | string;
  window_end_ms: number | string;
  summary: string;
  evidence: string;
  rules_version: string;
}

export function findingToRow(f: Finding): FindingRow {
  return {
    id: f.id,
    run_id: f.runId,
    detector: f.detector,
    rule_id: f.ruleId,
    severity: f.severity,
    severity_rank: severityRank(f.severity),
    score: f.score,
    venue: f.venue ?? '',
    symbol: f.symbol ?? '',
    account: f.account ?? '',
    key: f.key,
    ts: ms(f.ts),
    window_start: ms(f.windowStart),
    window_end: ms(f.windowEnd),
    summary: f.summary,
    evidence: JSON.stringify(f.evidence),
    rules_version: f.rulesVersion ?? '',
  };
}

export function rowToFinding(r: FindingReadRow): Finding {
  return {
    id: r.id,
    runId: r.run_id,
    detector: r.detector,
    ruleId: r.rule_id,
    severity: r.severity as Severity,
    score: Number(r.score),
    ...(r.venue !== '' ? { venue: r.venue } : {}),
    ...(r.symbol !== '' ? { symbol: r.symbol } : {}),
    ...(r.account !== '' ? { account: r.account } : {}),
    key: r.key,
    ts: Number(r.ts_ms),
    windowStart: Number(r.window_start_ms),
    windowEnd: Number(r.window_end_ms),
    summary: r.summary,
    evidence: JSON.parse(r.evidence) as Evidence,
    ...(r.rules_version ? { rulesVersion: r.rules_version } : {}),
  };
}

export function txRiskToRow(r: TxRisk): Record<string, unknown> {
  return { run_id: r.runId, tx_id: r.txId, source: r.source, account: r.account, ts: ms(r.ts), view: r.view, score: r.score, reasons: JSON.stringify(r.reasons) };
}

export function ruleChangeToRow(c: RuleChange): Record<string, unknown> {
  return { at: ms(c.at), version: c.version, previous_version: c.previousVersion ?? '', actor: c.actor, origin: c.origin, diff: JSON.stringify(c.diff), rules: JSON.stringify(c.rules) };
}

export const RULE_CHANGE_COLUMNS = 'toUnixTimestamp64Milli(at) AS at_ms, version, previous_version, actor, origin, diff, rules';

export function rowToRuleChange(r: { at_ms: number | string; version: string; previous_version: string; actor: string; origin: string; diff: string; rules: string }): RuleChange {
  return {
    at: Number(r.at_ms),
    version: r.version,
    ...(r.previous_version ? { previousVersion: r.previous_version } : {}),
    actor: r.actor,
    origin: r.origin,
    diff: JSON.parse(r.diff) as RuleChange['diff'],
    rules: JSON.parse(r.rules) as unknown,
  };
}

export function deadLetterToRow(d: DeadLetter): Record<string, unknown> {
  return { ts: ms(d.ts), run_id: d.runId, source: d.source, origin: d.origin, reason: d.reason, raw: Buffer.from(d.raw).toString('base64') };
}

export const DEAD_LETTER_COLUMNS = 'toUnixTimestamp64Milli(ts) AS ts_ms, run_id, source, origin, reason, raw';

export function rowToDeadLetter(r: { ts_ms: number | string; run_id: string; source: string; origin: string; reason: string; raw: string }): DeadLetter {
  return { ts: Number(r.ts_ms), source: r.source, origin: r.origin, reason: r.reason, raw: Buffer.from(r.raw, 'base64'), runId: r.run_id };
}

export function runToRow(run: RunRecord, updatedAt: number): Record<string, unknown> {
  return {
    run_id: run.runId,
    started_at: ms(run.startedAt),
    finished_at: run.finishedAt === undefined ? null : ms(run.finishedAt),
    status: run.status,
    inputs: run.inputs,
    summary: JSON.stringify(run.summary),
    rules_version: run.rulesVersion ?? '',
    options: JSON.stringify(run.options ?? {}),
    events: run.events ?? 0,
    findings: run.findings ?? 0,
    duration_ms: Math.max(0, Math.round(run.durationMs ?? 0)),
    updated_at: updatedAt,
  };
}

export const RUN_COLUMNS = `run_id, toUnixTimestamp64Milli(started_at) AS started_at_ms,
  if(isNull(finished_at), NULL, toUnixTimestamp64Milli(assumeNotNull(finished_at))) AS finished_at_ms, status, inputs, summary,
  rules_version, options, events, findings, duration_ms`;

export function rowToRun(r: {
  run_id: string; started_at_ms: number | string; finished_at_ms: number | string | null; status: string; inputs: string[]; summary: string;
  rules_version: string; options: string; events: number | string; findings: number | string; duration_ms: number | string;
}): RunRecord {
  const run: RunRecord = { runId: r.run_id, startedAt: Number(r.started_at_ms), status: r.status as RunStatus, inputs: r.inputs, summary: JSON.parse(r.summary) as Record<string, unknown> };
  if (r.finished_at_ms !== null) run.finishedAt = Number(r.finished_at_ms);
  // Columns of migration 8 (runs_detail); rows written before it read back with their defaults, left out.
  if (r.rules_version !== '') run.rulesVersion = r.rules_version;
  const options = JSON.parse(r.options) as Record<string, unknown>;
  if (Object.keys(options).length > 0) run.options = options;
  if (Number(r.events) > 0) run.events = Number(r.events);
  if (Number(r.findings) > 0) run.findings = Number(r.findings);
  if (Number(r.duration_ms) > 0) run.durationMs = Number(r.duration_ms);
  return run;
}

export function apiKeyToRow(k: NewApiKey, revokedAt?: number): Record<string, unknown> {
  return {
    id: k.id,
    name: k.name,
    role: k.role,
    key_hash: k.keyHash,
    hint: k.hint,
    created_at: ms(k.createdAt),
    revoked_at: revokedAt === undefined ? null : ms(revokedAt),
    state: revokedAt === undefined ? 0 : 1,
  };
}

export const API_KEY_COLUMNS = `id, name, role, key_hash, hint, toUnixTimestamp64Milli(created_at) AS created_at_ms,
  if(isNull(revoked_at), NULL, toUnixTimestamp64Milli(assumeNotNull(revoked_at))) AS revoked_at_ms`;

export interface ApiKeyReadRow {
  id: string;
  name: string;
  role: string;
  key_hash: string;
  hint: string;
  created_at_ms: number | string;
  revoked_at_ms: number | string | null;
}

export function rowToApiKey(r: ApiKeyReadRow): ApiKeyInfo {
  const k: ApiKeyInfo = { id: r.id, name: r.name, role: r.role as Role, hint: r.hint, createdAt: Number(r.created_at_ms) };
  if (r.revoked_at_ms !== null) k.revokedAt = Number(r.revoked_at_ms);
  return k;
}

export function labelScoreToRow(r: LabelScoreRecord): Record<string, unknown> {
  return {
    run_id: r.runId,
    detector: r.detector,
    findings: r.findings,
    tp: r.tp,
    fp: r.fp,
    labels: r.labels,
    detected: r.detected,
    fn: r.fn,
    precision: r.precision,
    recall: r.recall,
    f1: r.f1,
    delay_mean_ms: r.delayMeanMs,
    delay_p50_ms: r.delayP50Ms,
    delay_max_ms: r.delayMaxMs,
    grace_ms: Math.round(r.graceMs),
    labels_file: r.labelsFile,
    labels_hash: r.labelsHash,
    scored_at: ms(r.scoredAt),
  };
}

export const LABEL_SCORE_COLUMNS = `run_id, detector, findings, tp, fp, labels, detected, fn, precision, recall, f1,
  delay_mean_ms, delay_p50_ms, delay_max_ms, grace_ms, labels_file, labels_hash, toUnixTimestamp64Milli(scored_at) AS scored_at_ms`;

type Num = number | string;
export function rowToLabelScore(r: {
  run_id: string; detector: string; findings: Num; tp: Num; fp: Num; labels: Num; detected: Num; fn: Num;
  precision: Num | null; recall: Num | null; f1: Num | null; delay_mean_ms: Num | null; delay_p50_ms: Num | null; delay_max_ms: Num | null;
  grace_ms: Num; labels_file: string; labels_hash: string; scored_at_ms: Num;
}): LabelScoreRecord {
  const orNull = (v: Num | null) => (v === null ? null : Number(v));
  return {
    runId: r.run_id,
    detector: r.detector,
    findings: Number(r.findings),
    tp: Number(r.tp),
    fp: Number(r.fp),
    labels: Number(r.labels),
    detected: Number(r.detected),
    fn: Number(r.fn),
    precision: orNull(r.precision),
    recall: orNull(r.recall),
    f1: orNull(r.f1),
    delayMeanMs: orNull(r.delay_mean_ms),
    delayP50Ms: orNull(r.delay_p50_ms),
    delayMaxMs: orNull(r.delay_max_ms),
    graceMs: Number(r.grace_ms),
    labelsFile: r.labels_file,
    labelsHash: r.labels_hash,
    scoredAt: Number(r.scored_at_ms),
  };
}

/** DateTime64(3) from JSON takes integer milliseconds only (a fraction fails the insert — measured). */
function ms(t: number): number {
  return Math.round(t);
}
