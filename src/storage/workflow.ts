/**
 * Analyst workflow on findings (status, assignment, notes) and snoozes, over ClickHouse.
 *
 * Tables: migration 6 (src/storage/migrations.ts). Every change is one row appended to an audit table,
 * and the current state is derived from it by a materialized view, so the audit and the state can never
 * disagree (one insert writes both):
 *   finding_actions  (MergeTree, append-only)  → finding_workflow (ReplacingMergeTree(version), one row
 *                    per (run_id, finding_id); notes do not change the state and are not copied)
 *   snooze_actions   (MergeTree, append-only)  → snoozes (ReplacingMergeTree(state), one row per id;
 *                    the cancelled copy, state 1, wins whatever the insert order)
 * Each finding action carries the state after it (to_status, assignee), so the view copies it as is.
 * `seq` orders one finding's actions even within one millisecond; it is also the state's version.
 *
 * Concurrency: a transition is checked and written under a per-finding lock (per snooze for
 * cancellations), so two requests in this process can never both move a finding out of 'open'.
 * ClickHouse has no transactions: two API processes on one ClickHouse server can still both pass the
 * check in the same instant; then both actions are in the audit and the one with the higher seq is
 * the state. Run one API process per store, or accept that rare double transition (it stays visible
 * in the history).
 */
import { randomBytes } from 'node:crypto';
import { ERR, VigilError } from '../core/errors.ts';
import type { Finding } from '../core/events.ts';
import type { Db } from './db.ts';

export const WORKFLOW_STATUSES = ['open', 'acknowledged', 'resolved', 'false_positive'] as const;
export type WorkflowStatus = (typeof WORKFLOW_STATUSES)[number];

/** The statuses each status may move to. */
export const TRANSITIONS: Readonly<Record<WorkflowStatus, readonly WorkflowStatus[]>> = {
  open: ['acknowledged', 'resolved', 'false_positive'],
  acknowledged: ['resolved', 'false_positive', 'open'],
  resolved: ['open'],
  false_positive: ['open'],
};

/** In the `assignee` search filter: findings assigned to nobody. Refused as an assignee's name. */
export const UNASSIGNED = 'none';

export function isWorkflowStatus(v: unknown): v is WorkflowStatus {
  return typeof v === 'string' && (WORKFLOW_STATUSES as readonly string[]).includes(v);
}

export interface FindingWorkflow {
  status: WorkflowStatus;
  assignee: string | null;
  /** When the status or assignee last changed (null: never). */
  updatedAt: number | null;
  updatedBy: string | null;
}

export const OPEN_WORKFLOW: Readonly<FindingWorkflow> = Object.freeze({ status: 'open', assignee: null, updatedAt: null, updatedBy: null });

export type FindingActionKind = 'status' | 'assign' | 'note';

/** One audited action on a finding; status and assignee are those after the action. */
export interface FindingAction {
  ts: number;
  actor: string;
  action: FindingActionKind;
  fromStatus: WorkflowStatus;
  toStatus: WorkflowStatus;
  assignee: string | null;
  note: string | null;
}

export interface FindingRef {
  runId: string;
  findingId: string;
}

export type WorkflowChange = { kind: 'status'; to: WorkflowStatus } | { kind: 'assign'; assignee: string | null } | { kind: 'note' };

export interface FindingActionRequest extends FindingRef {
  actor: string;
  change: WorkflowChange;
  note?: string;
  /** Default now. */
  at?: number;
}

export interface FindingActionResult {
  workflow: FindingWorkflow;
  action: FindingAction;
}

/** Suppresses live alerts of a rule (by detector or rule id) for a symbol (optionally on one venue) or an account. */
export interface Snooze {
  id: string;
  detector: string | null;
  ruleId: string | null;
  symbol: string | null;
  venue: string | null;
  account: string | null;
  until: number;
  createdAt: number;
  createdBy: string;
  note: string | null;
  cancelledAt: number | null;
  cancelledBy: string | null;
}

export interface NewSnooze {
  detector?: string;
  ruleId?: string;
  symbol?: string;
  venue?: string;
  account?: string;
  until: number;
  note?: string;
  createdBy: string;
  /** Default now. */
  createdAt?: number;
}

export interface SnoozeQuery {
  /** Only snoozes in force at `now` (not cancelled, not expired). */
  active?: boolean;
  now?: number;
  /** 1..10000, default 1000; newest first. */
  limit?: number;
}

export const MAX_SNOOZE_MS = 90 * 24 * 3600_000;

/** Key of a finding in maps returned by findingWorkflows. */
export function workflowKey(runId: string, findingId: string): string {
  return `${runId}\u0000${findingId}`;
}

/** Checks a snooze's scope and time; the error names the offending field. */
export function checkNewSnooze(s: NewSnooze, now = Date.now()): void {
  if (s.detector === undefined && s.ruleId === undefined) throw badField('detector', 'detector or ruleId (one of them is required)');
  if (s.symbol === undefined && s.account === undefined) throw badField('symbol', 'symbol or account (one of them is required)');
  if (s.venue !== undefined && s.symbol === undefined) throw badField('venue', 'a venue only together with a symbol');
  if (!Number.isInteger(s.until) || s.until <= now) throw badField('until', 'a time in the future (epoch ms)', s.until);
  if (s.until > now + MAX_SNOOZE_MS) throw badField('until', 'at most 90 days from now', s.until);
}

export function badField(field: string, expected: string, got?: unknown): VigilError {
  const shown = got === undefined ? '' : ` (got ${JSON.stringify(got)})`;
  return new VigilError(ERR.BAD_REQUEST, `invalid '${field}': expected ${expected}${shown}`, 400, { parameter: field });
}

/** Whether a snooze covers a finding (scope only; see snoozeActive for time). */
export function snoozeCovers(s: Snooze, f: Pick<Finding, 'detector' | 'ruleId' | 'symbol' | 'venue' | 'account'>): boolean {
  return (
    (s.detector === null || s.detector === f.detector) &&
    (s.ruleId === null || s.ruleId === f.ruleId) &&
    (s.symbol === null || s.symbol === f.symbol) &&
    (s.venue === null || s.venue === f.venue) &&
    (s.account === null || s.account === f.account)
  );
}

export function snoozeActive(s: Snooze, now: number): boolean {
  return s.cancelledAt === null && now < s.until;
}

// ------------------------------------------------------------------------------------------- store

interface WorkflowReadRow {
  run_id: string;
  finding_id: string;
  status: string;
  assignee: string | null;
  updated_at_ms: number | string;
  updated_by: string;
}

interface ActionReadRow {
  ts_ms: number | string;
  actor: string;
  action: string;
  from_status: string;
  to_status: string;
  assignee: string | null;
  note: string;
}

interface SnoozeReadRow {
  id: string;
  detector: string | null;
  rule_id: string | null;
  symbol: string | null;
  venue: string | null;
  account: string | null;
  until_ms: number | string;
  created_at_ms: number | string;
  created_by: string;
  note: string | null;
  cancelled_at_ms: number | string | null;
  cancelled_by: string | null;
}

const WORKFLOW_COLUMNS = 'run_id, finding_id, status, assignee, toUnixTimestamp64Milli(updated_at) AS updated_at_ms, updated_by';
const ACTION_COLUMNS = 'toUnixTimestamp64Milli(ts) AS ts_ms, actor, action, from_status, to_status, assignee, note';
const SNOOZE_COLUMNS = `id, detector, rule_id, symbol, venue, account, toUnixTimestamp64Milli(until) AS until_ms,
  toUnixTimestamp64Milli(created_at) AS created_at_ms, created_by, note,
  if(isNull(cancelled_at), NULL, toUnixTimestamp64Milli(assumeNotNull(cancelled_at))) AS cancelled_at_ms, cancelled_by`;

/** Runs tasks one after another per key; keys are forgotten when idle. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const tail = previous.then(() => new Promise<void>((r) => (release = r)));
    this.tails.set(key, tail);
    await previous;
    try {
      return await task();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  get size(): number {
    return this.tails.size;
  }
}

export class WorkflowStore {
  private readonly findingLocks = new KeyedMutex();
  private readonly snoozeLocks = new KeyedMutex();

  constructor(private readonly db: Db) {}

  /** Current workflow of the given findings; findings never touched are absent from the map. */
  async findingWorkflows(refs: readonly FindingRef[]): Promise<Map<string, FindingWorkflow>> {
    const out = new Map<string, FindingWorkflow>();
    if (refs.length === 0) return out;
    const runs = [...new Set(refs.map((r) => r.runId))];
    const ids = [...new Set(refs.map((r) => r.findingId))];
    const rows = await this.db.rows<WorkflowReadRow>(
      `SELECT ${WORKFLOW_COLUMNS} FROM {db}.finding_workflow FINAL WHERE run_id IN {runs:Array(String)} AND finding_id IN {ids:Array(String)}`,
      { runs, ids },
    );
    for (const r of rows) out.set(workflowKey(r.run_id, r.finding_id), rowToWorkflow(r));
    return out;
  }

  /**
   * Checks and records one action. Status changes must follow TRANSITIONS (409 VIGIL_ERR_CONFLICT
   * otherwise, a move to the status the finding already has included).
   */
  async recordFindingAction(req: FindingActionRequest): Promise<FindingActionResult> {
    return this.findingLocks.run(workflowKey(req.runId, req.findingId), async () => {
      const params = { runId: req.runId, findingId: req.findingId };
      const [states, seqs] = await Promise.all([
        this.db.rows<WorkflowReadRow>(`SELECT ${WORKFLOW_COLUMNS} FROM {db}.finding_workflow FINAL WHERE run_id = {runId:String} AND finding_id = {findingId:String} LIMIT 1`, params),
        this.db.rows<{ seq: number | string }>(`SELECT max(seq) AS seq FROM {db}.finding_actions WHERE run_id = {runId:String} AND finding_id = {findingId:String}`, params),
      ]);
      const before = states[0] ? rowToWorkflow(states[0]) : OPEN_WORKFLOW;
      const change = req.change;
      let toStatus = before.status;
      let assignee = before.assignee;
      if (change.kind === 'status') {
        if (!TRANSITIONS[before.status].includes(change.to)) {
          const allowed = TRANSITIONS[before.status].join(', ');
          throw new VigilError(ERR.CONFLICT, `finding ${req.findingId} is ${before.status}: it cannot move to ${change.to} (allowed: ${allowed})`, 409, {
            status: before.status,
          });
        }
        toStatus = change.to;
      } else if (change.kind === 'assign') {
        assignee = change.assignee;
      }
      const ts = Math.round(req.at ?? Date.now());
      // Grows even for two actions within one millisecond, and past a clock that went back.
      const seq = Math.max(ts, Number(seqs[0]?.seq ?? 0) + 1);
      const note = req.note ?? '';
      await this.db.insert('finding_actions', [
        { ts, run_id: req.runId, finding_id: req.findingId, seq, actor: req.actor, action: change.kind, from_status: before.status, to_status: toStatus, assignee, note },
      ]);
      const action: FindingAction = { ts, actor: req.actor, action: change.kind, fromStatus: before.status, toStatus, assignee, note: note === '' ? null : note };
      const workflow: FindingWorkflow = change.kind === 'note' ? before : { status: toStatus, assignee, updatedAt: ts, updatedBy: req.actor };
      return { workflow: { ...workflow }, action };
    });
  }

  /** A finding's actions, oldest first. */
  async findingHistory(ref: FindingRef): Promise<FindingAction[]> {
    const rows = await this.db.rows<ActionReadRow>(
      `SELECT ${ACTION_COLUMNS} FROM {db}.finding_actions WHERE run_id = {runId:String} AND finding_id = {findingId:String} ORDER BY seq, ts LIMIT 10000`,
      { runId: ref.runId, findingId: ref.findingId },
    );
    return rows.map((r) => ({
      ts: Number(r.ts_ms),
      actor: r.actor,
      action: r.action as FindingActionKind,
      fromStatus: r.from_status as WorkflowStatus,
      toStatus: r.to_status as WorkflowStatus,
      assignee: r.assignee,
      note: r.note === '' ? null : r.note,
    }));
  }

  async createSnooze(s: NewSnooze): Promise<Snooze> {
    const createdAt = Math.round(s.createdAt ?? Date.now());
    checkNewSnooze(s, createdAt);
    const snooze: Snooze = {
      id: `snz_${randomBytes(8).toString('hex')}`,
      detector: s.detector ?? null,
      ruleId: s.ruleId ?? null,
      symbol: s.symbol ?? null,
      venue: s.venue ?? null,
      account: s.account ?? null,
      until: s.until,
      createdAt,
      createdBy: s.createdBy,
      note: s.note ?? null,
      cancelledAt: null,
      cancelledBy: null,
    };
    await this.db.insert('snooze_actions', [snoozeActionRow(snooze, 'create', createdAt, s.createdBy)]);
    return snooze;
  }

  async listSnoozes(q: SnoozeQuery = {}): Promise<Snooze[]> {
    const limit = q.limit ?? 1000;
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw badField('limit', 'an integer 1-10000', limit);
    const params: Record<string, unknown> = { limit };
    let where = '';
    if (q.active) {
      where = `WHERE state = 0 AND until > fromUnixTimestamp64Milli({now:Int64}, 'UTC')`;
      params.now = Math.round(q.now ?? Date.now());
    }
    const rows = await this.db.rows<SnoozeReadRow>(`SELECT ${SNOOZE_COLUMNS} FROM {db}.snoozes FINAL ${where} ORDER BY created_at DESC, id LIMIT {limit:UInt32}`, params);
    return rows.map(rowToSnooze);
  }

  async getSnooze(id: string): Promise<Snooze | undefined> {
    const rows = await this.db.rows<SnoozeReadRow>(`SELECT ${SNOOZE_COLUMNS} FROM {db}.snoozes FINAL WHERE id = {id:String} LIMIT 1`, { id });
    return rows[0] && rowToSnooze(rows[0]);
  }

  /** Cancels a snooze (idempotent: a cancelled one is returned as it is); undefined when no snooze has that id. */
  async cancelSnooze(id: string, actor: string, at = Date.now()): Promise<Snooze | undefined> {
    return this.snoozeLocks.run(id, async () => {
      const current = await this.getSnooze(id);
      if (!current || current.cancelledAt !== null) return current;
      const cancelledAt = Math.round(at);
      await this.db.insert('snooze_actions', [snoozeActionRow(current, 'cancel', cancelledAt, actor)]);
      return { ...current, cancelledAt, cancelledBy: actor };
    });
  }
}

function rowToWorkflow(r: WorkflowReadRow): FindingWorkflow {
  return { status: r.status as WorkflowStatus, assignee: r.assignee, updatedAt: Number(r.updated_at_ms), updatedBy: r.updated_by };
}

function snoozeActionRow(s: Snooze, action: 'create' | 'cancel', ts: number, actor: string): Record<string, unknown> {
  return {
    ts,
    snooze_id: s.id,
    actor,
    action,
    detector: s.detector,
    rule_id: s.ruleId,
    symbol: s.symbol,
    venue: s.venue,
    account: s.account,
    until: s.until,
    created_at: s.createdAt,
    created_by: s.createdBy,
    note: s.note,
  };
}

function rowToSnooze(r: SnoozeReadRow): Snooze {
  return {
    id: r.id,
    detector: r.detector,
    ruleId: r.rule_id,
    symbol: r.symbol,
    venue: r.venue,
    account: r.account,
    until: Number(r.until_ms),
    createdAt: Number(r.created_at_ms),
    createdBy: r.created_by,
    note: r.note,
    cancelledAt: r.cancelled_at_ms === null ? null : Number(r.cancelled_at_ms),
    cancelledBy: r.cancelled_by,
  };
}
