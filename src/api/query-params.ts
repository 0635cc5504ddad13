/**
 * Query-string parameters of /api/findings and /api/alerts, validated with zod one parameter at a
 * time so a bad value is reported by name with what was expected. Lists take comma-separated values
 * and/or a repeated parameter. Times take epoch milliseconds or ISO-8601 (a date-time without an
 * offset is read as UTC). Unknown parameters are refused, so a typo does not silently widen a search.
 */
import { z } from 'zod';
import { SEVERITIES, type Severity } from '../core/events.ts';
import { ERR, VigilError } from '../core/errors.ts';
import { parseTime } from '../core/time.ts';
import type { FindingQuery, RunStatus } from '../storage/types.ts';
import { CONTEXT_LIMITS, PRICE_INTERVALS, RUN_STATUSES, STATS_BUCKETS, STATS_BY, type PriceInterval, type StatsBucket, type StatsBy } from '../storage/context-types.ts';
import { WORKFLOW_STATUSES, type WorkflowStatus } from '../storage/workflow.ts';
import type { AlertFilter } from './alert-filter.ts';

interface Param<T> {
  schema: z.ZodType<T>;
  expected: string;
  /** A credential: a bad value is never echoed in the error. */
  secret?: boolean;
}

const one = z.string();
const listParam: Param<string[]> = {
  schema: z
    .union([one, z.array(one)])
    .transform((v) => (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== ''))
    .pipe(z.array(z.string().max(200)).max(100)),
  expected: 'a comma-separated list (or repeated parameter) of up to 100 values of at most 200 characters',
};
const severityParam: Param<Severity> = { schema: z.enum(SEVERITIES), expected: `one of ${SEVERITIES.join(', ')}` };
const timeParam: Param<number> = {
  schema: one.transform((s, ctx) => {
    const t = parseTime(s);
    if (t === undefined) {
      ctx.addIssue({ code: 'custom', message: 'not a time' });
      return z.NEVER;
    }
    return t;
  }),
  expected: 'epoch milliseconds or an ISO-8601 time (e.g. 2024-08-09T00:00:00Z)',
};
const idParam: Param<string> = { schema: one.min(1).max(200), expected: 'a non-empty string of at most 200 characters' };


const FILTER_PARAMS = {
  detector: listParam,
  venue: listParam,
  symbol: listParam,
  account: listParam,
  minSeverity: severityParam,
  severity: severityParam,
  run: idParam,
} as const;

export const SEARCH_PARAMS = {
  ...FILTER_PARAMS,
  from: timeParam,
  to: timeParam,
  limit: { schema: one.regex(/^\d{1,4}$/).transform(Number).pipe(z.number().int().min(1).max(1000)), expected: 'an integer 1-1000' } as Param<number>,
  cursor: { schema: one.min(1).max(2048), expected: 'the nextCursor of a previous page' } as Param<string>,
  order: { schema: z.enum(['asc', 'desc']), expected: 'asc or desc' } as Param<'asc' | 'desc'>,
  status: { schema: listParam.schema.pipe(z.array(z.enum(WORKFLOW_STATUSES))), expected: `a list of ${WORKFLOW_STATUSES.join(', ')}` } as Param<WorkflowStatus[]>,
  assignee: { ...listParam, expected: `${listParam.expected} (none: unassigned)` },
} as const;

/**
 * `access_token`: an API key for the live routes only (browsers cannot set headers on WebSocket or
 * EventSource); src/api/auth.ts reads it, it is not part of the filter.
 */
const accessTokenParam: Param<string> = { schema: one.min(1).max(512), expected: 'one API key', secret: true };

export const ALERT_PARAMS = { ...FILTER_PARAMS, since: idParam, access_token: accessTokenParam } as const;

export const FINDING_PARAMS = { run: idParam } as const;

// Context, instruments, prices, stats, runs (src/api/routes/context.ts, stats.ts, runs.ts).
const intParam = (min: number, max: number, what = 'an integer'): Param<number> => ({
  schema: one.regex(/^\d{1,12}$/).transform(Number).pipe(z.number().int().min(min).max(max)),
  expected: `${what} ${min}-${max}`,
});
const marginParam = intParam(0, CONTEXT_LIMITS.maxMarginMs, 'milliseconds');
export const CONTEXT_PARAMS = { run: idParam, before: marginParam, after: marginParam, limit: intParam(1, CONTEXT_LIMITS.maxRows) } as const;
export const INSTRUMENT_PARAMS = { run: idParam, limit: intParam(1, CONTEXT_LIMITS.maxInstruments) } as const;
const intervals = Object.keys(PRICE_INTERVALS) as PriceInterval[];
const statsBuckets = Object.keys(STATS_BUCKETS) as StatsBucket[];
export const PRICE_PARAMS = {
  venue: idParam,
  symbol: idParam,
  from: timeParam,
  to: timeParam,
  interval: { schema: z.enum(intervals as [PriceInterval, ...PriceInterval[]]), expected: `one of ${intervals.join(', ')}` } as Param<PriceInterval>,
  run: idParam,
} as const;
export const STATS_PARAMS = {
  ...FILTER_PARAMS,
  from: timeParam,
  to: timeParam,
  bucket: { schema: z.enum(statsBuckets as [StatsBucket, ...StatsBucket[]]), expected: `one of ${statsBuckets.join(', ')}` } as Param<StatsBucket>,
  by: { schema: z.enum(STATS_BY), expected: `one of ${STATS_BY.join(', ')}` } as Param<StatsBy>,
  top: intParam(1, CONTEXT_LIMITS.maxKeys),
} as const;
export const RUN_LIST_PARAMS = {
  limit: intParam(1, 1000),
  status: { schema: listParam.schema.pipe(z.array(z.enum(RUN_STATUSES as [RunStatus, ...RunStatus[]]))), expected: `a list of ${RUN_STATUSES.join(', ')}` } as Param<RunStatus[]>,
} as const;

type Parsed<P extends Record<string, Param<unknown>>> = { [K in keyof P]?: P[K] extends Param<infer T> ? T : never };

export function badParam(name: string, expected: string, got?: unknown): VigilError {
  const shown = got === undefined ? '' : ` (got ${JSON.stringify(got)})`;
  return new VigilError(ERR.BAD_REQUEST, `invalid query parameter '${name}': expected ${expected}${shown}`, 400, { parameter: name });
}

/** Validates a parsed query string against a parameter table. */
export function parseParams<P extends Record<string, Param<unknown>>>(params: P, raw: unknown): Parsed<P> {
  const input = (raw ?? {}) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(input)) {
    const p = params[name];
    if (!p) throw new VigilError(ERR.BAD_REQUEST, `unknown query parameter '${name}': expected one of ${Object.keys(params).join(', ')}`, 400, { parameter: name });
    const r = p.schema.safeParse(value);
    if (!r.success) throw badParam(name, p.expected, p.secret ? undefined : value);
    out[name] = r.data;
  }
  return out as Parsed<P>;
}

function severityOf(p: { minSeverity?: Severity; severity?: Severity }): Severity | undefined {
  if (p.minSeverity !== undefined && p.severity !== undefined && p.minSeverity !== p.severity) {
    throw badParam('severity', `the same value as minSeverity (an alias), or only one of them`, p.severity);
  }
  return p.minSeverity ?? p.severity;
}

function nonEmpty(v: string[] | undefined): string[] | undefined {
  return v && v.length > 0 ? v : undefined;
}

function filterOf(p: Parsed<typeof FILTER_PARAMS>): AlertFilter {
  const f: AlertFilter = {};
  const set = <K extends 'detector' | 'venue' | 'symbol' | 'account'>(k: K) => {
    const v = nonEmpty(p[k]);
    if (v) f[k] = v;
  };
  set('detector');
  set('venue');
  set('symbol');
  set('account');
  const minSeverity = severityOf(p);
  if (minSeverity) f.minSeverity = minSeverity;
  if (p.run !== undefined) f.runId = p.run;
  return f;
}

export function parseSearchQuery(raw: unknown): FindingQuery {
  const p = parseParams(SEARCH_PARAMS, raw);
  if (p.from !== undefined && p.to !== undefined && p.to <= p.from) throw badParam('to', `a time after from (${p.from})`, p.to);
  const { detector, venue, symbol, account, minSeverity, runId } = filterOf(p);
  const q: FindingQuery = { limit: p.limit ?? 100, order: p.order ?? 'desc' };
  if (detector) q.detector = [...detector];
  if (venue) q.venue = [...venue];
  if (symbol) q.symbol = [...symbol];
  if (account) q.account = [...account];
  if (minSeverity) q.minSeverity = minSeverity;
  if (runId !== undefined) q.runId = runId;
  if (p.from !== undefined) q.from = p.from;
  if (p.to !== undefined) q.to = p.to;
  if (p.cursor !== undefined) q.cursor = p.cursor;
  if (p.status && p.status.length > 0) q.status = [...new Set(p.status)];
  const assignee = nonEmpty(p.assignee);
  if (assignee) q.assignee = assignee;
  return q;
}

export function parseAlertQuery(raw: unknown): { filter: AlertFilter; since?: string } {
  const p = parseParams(ALERT_PARAMS, raw);
  return p.since === undefined ? { filter: filterOf(p) } : { filter: filterOf(p), since: p.since };
}
