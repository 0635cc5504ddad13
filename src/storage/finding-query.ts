/**
 * FindingQuery → SQL with `{name:Type}` parameters. Filter values only ever travel as parameters;
 * the SQL text is assembled from fixed fragments. Pagination is keyset on (ts, id, run_id) in the
 * requested order: run_id breaks ties because the same deterministic id may exist in several runs.
 */
import { z } from 'zod';
import { SEVERITIES, severityRank } from '../core/events.ts';
import { ERR, VigilError } from '../core/errors.ts';
import type { FindingQuery } from './types.ts';
import { UNASSIGNED, WORKFLOW_STATUSES, isWorkflowStatus } from './workflow.ts';

export interface Cursor {
  /** Last row's event time, epoch ms. */
  t: number;
  /** Last row's id and run id. */
  i: string;
  r: string;
  /** The order the cursor was issued for. */
  o: 'asc' | 'desc';
}

const cursorSchema = z.object({ t: z.number().int().nonnegative(), i: z.string(), r: z.string(), o: z.enum(['asc', 'desc']) }).strict();

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c), 'utf8').toString('base64url');
}

export function decodeCursor(text: string): Cursor {
  const bad = () => new VigilError(ERR.BAD_REQUEST, "invalid 'cursor': expected the nextCursor of a previous page", 400, { parameter: 'cursor' });
  if (!/^[A-Za-z0-9_-]{1,2048}$/.test(text)) throw bad();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  const r = cursorSchema.safeParse(parsed);
  if (!r.success) throw bad();
  return r.data;
}

export interface BuiltSearch {
  /** WHERE clause for the total (no cursor). */
  where: string;
  /** WHERE clause for the page (filters and cursor). */
  pageWhere: string;
  orderBy: string;
  params: Record<string, unknown>;
  order: 'asc' | 'desc';
  limit: number;
}

const MAX_VALUES = 1000;

export function buildSearch(q: FindingQuery): BuiltSearch {
  const order = q.order ?? 'desc';
  if (order !== 'asc' && order !== 'desc') throw badQuery('order', 'asc or desc', q.order);
  if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > 1000) throw badQuery('limit', 'an integer 1-1000', q.limit);
  const conds: string[] = [];
  const params: Record<string, unknown> = {};
  const list = (name: 'detector' | 'venue' | 'symbol' | 'account', column: string) => {
    const values = q[name];
    if (values === undefined || values.length === 0) return;
    if (values.length > MAX_VALUES || !values.every((v) => typeof v === 'string')) throw badQuery(name, `up to ${MAX_VALUES} strings`, values);
    conds.push(`${column} IN {${name}:Array(String)}`);
    params[name] = [...values];
  };
  list('detector', 'detector');
  list('venue', 'venue');
  list('symbol', 'symbol');
  list('account', 'account');
  if (q.minSeverity !== undefined) {
    if (!SEVERITIES.includes(q.minSeverity)) throw badQuery('minSeverity', SEVERITIES.join(', '), q.minSeverity);
    conds.push('severity_rank >= {minRank:UInt8}');
    params.minRank = severityRank(q.minSeverity);
  }
  if (q.from !== undefined) {
    conds.push(`ts >= fromUnixTimestamp64Milli({from:Int64}, 'UTC')`);
    params.from = epochMs('from', q.from);
  }
  if (q.to !== undefined) {
    conds.push(`ts < fromUnixTimestamp64Milli({to:Int64}, 'UTC')`);
    params.to = epochMs('to', q.to);
  }
  if (q.runId !== undefined) {
    conds.push('run_id = {runId:String}');
    params.runId = q.runId;
  }
  // Workflow filters: a finding with no finding_workflow row is open and unassigned, so filters that
  // admit that case exclude the findings whose current state does not match instead.
  const workflowIn = (negate: boolean, cond: string) =>
    `(run_id, id) ${negate ? 'NOT IN' : 'IN'} (SELECT run_id, finding_id FROM {db}.finding_workflow FINAL WHERE ${cond})`;
  if (q.status !== undefined && q.status.length > 0) {
    if (q.status.length > WORKFLOW_STATUSES.length || !q.status.every(isWorkflowStatus)) throw badQuery('status', WORKFLOW_STATUSES.join(', '), q.status);
    params.status = [...q.status];
    conds.push(q.status.includes('open') ? workflowIn(true, 'status NOT IN {status:Array(String)}') : workflowIn(false, 'status IN {status:Array(String)}'));
  }
  if (q.assignee !== undefined && q.assignee.length > 0) {
    if (q.assignee.length > MAX_VALUES || !q.assignee.every((v) => typeof v === 'string')) throw badQuery('assignee', `up to ${MAX_VALUES} strings`, q.assignee);
    params.assignee = q.assignee.filter((a) => a !== UNASSIGNED);
    conds.push(
      q.assignee.includes(UNASSIGNED)
        ? workflowIn(true, 'assignee IS NOT NULL AND assignee NOT IN {assignee:Array(String)}')
        : workflowIn(false, 'assignee IN {assignee:Array(String)}'),
    );
  }
  const pageConds = [...conds];
  if (q.cursor !== undefined) {
    const c = decodeCursor(q.cursor);
    if (c.o !== order) throw new VigilError(ERR.BAD_REQUEST, `invalid 'cursor': it was issued for order=${c.o}, not order=${order}`, 400, { parameter: 'cursor' });
    const op = order === 'desc' ? '<' : '>';
    pageConds.push(`(ts, id, run_id) ${op} (fromUnixTimestamp64Milli({cTs:Int64}, 'UTC'), {cId:String}, {cRun:String})`);
    params.cTs = c.t;
    params.cId = c.i;
    params.cRun = c.r;
  }
  const dir = order === 'desc' ? 'DESC' : 'ASC';
  return {
    where: conds.length ? `WHERE ${conds.join(' AND ')}` : '',
    pageWhere: pageConds.length ? `WHERE ${pageConds.join(' AND ')}` : '',
    orderBy: `ORDER BY ts ${dir}, id ${dir}, run_id ${dir}`,
    params,
    order,
    limit: q.limit,
  };
}

function epochMs(name: string, v: number): number {
  if (!Number.isFinite(v) || v < 0) throw badQuery(name, 'epoch milliseconds >= 0', v);
  return Math.floor(v);
}

function badQuery(parameter: string, expected: string, got: unknown): VigilError {
  return new VigilError(ERR.BAD_REQUEST, `invalid '${parameter}': expected ${expected} (got ${JSON.stringify(got)})`, 400, { parameter });
}
