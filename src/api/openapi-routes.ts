/**
 * One description per route (method + fastify URL) for the OpenAPI document (openapi.ts). Query
 * parameters come from the very tables the routes validate with, so their documentation cannot drift.
 */
import { z } from 'zod';
import { transactionSchema } from '../core/events.ts';
import { ALERT_PARAMS, CONTEXT_PARAMS, FINDING_PARAMS, INSTRUMENT_PARAMS, PRICE_PARAMS, RUN_LIST_PARAMS, SEARCH_PARAMS, STATS_PARAMS } from './query-params.ts';
import { SNOOZE_LIST_PARAMS, assignBody, noteBody, snoozeBody, statusBody } from './routes/workflow.ts';

/** The JSON schema of a body the route validates with zod (what a client sends, before defaults). */
const bodyOf = (schema: z.ZodType): Record<string, unknown> => z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;

export interface RouteDoc {
  summary: string;
  tag: 'findings' | 'workflow' | 'alerts' | 'market' | 'stats' | 'runs' | 'rules' | 'scoring' | 'sql' | 'keys' | 'operations' | 'dashboard';
  description?: string;
  query?: Record<string, { expected: string }>;
  pathParams?: Record<string, string>;
  /** JSON schema of the request body. */
  body?: Record<string, unknown>;
  /** Status → description; default { 200: 'OK' }. */
  responses?: Record<number, string>;
}

const str = { type: 'string' } as const;
const findingNotFound = { 200: 'the finding', 404: 'no such finding (VIGIL_ERR_NOT_FOUND)' };

export const ROUTE_DOCS: Record<string, RouteDoc> = {
  'GET /healthz': { summary: 'Liveness', tag: 'operations', responses: { 200: 'the process is up' } },
  'GET /readyz': { summary: 'Readiness: the store and the transport answer', tag: 'operations', responses: { 200: 'ready', 503: 'a dependency is down (named in the body)' } },
  'GET /metrics': { summary: 'Prometheus metrics', tag: 'operations' },
  'GET /api/findings': {
    summary: 'Search findings',
    tag: 'findings',
    description: 'Filters combine with AND; lists take comma-separated values. Keyset pagination: pass nextCursor as cursor. `total` counts every match.',
    query: SEARCH_PARAMS,
    responses: { 200: '{ items: Finding[], nextCursor: string|null, total: number }' },
  },
  'GET /api/findings/:id': { summary: 'A finding with its evidence and workflow state', tag: 'findings', query: FINDING_PARAMS, responses: findingNotFound },
  'GET /api/alerts': {
    summary: 'Live alerts (WebSocket)',
    tag: 'alerts',
    description:
      'Upgrade to a WebSocket. Messages: {type:"finding",finding}, {type:"heartbeat",ts}, {type:"gap",…}. Pass since=<last finding id seen> to resume after a reconnect. A client too slow to keep up is closed with code 4008 and the reason.',
    query: ALERT_PARAMS,
    responses: { 101: 'switching protocols' },
  },
  'GET /api/rules': { summary: 'The rules in force, their version and the last reload error', tag: 'rules' },
  'PUT /api/rules': {
    summary: 'Replace the rules (applied without a restart)',
    tag: 'rules',
    description: 'Body: the rules file as JSON, or YAML with content-type application/yaml. Validated, written to the rules file, recorded in rule_changes.',
    body: { type: 'object', description: 'the rules file (see docs/detectors.md)' },
    responses: { 200: 'the new rules version and the change' },
  },
  'GET /api/rules/:id': { summary: 'One rule of the rules in force, and whether it runs', tag: 'rules', responses: { 200: '{ version, rule, active }', 404: 'no such rule' } },
  'POST /api/rules': {
    summary: 'Add one rule (applied without a restart)',
    tag: 'rules',
    body: { type: 'object', required: ['id', 'detector'], description: 'one rule (see docs/detectors.md)' },
    responses: { 201: 'the new rules version and the diff', 409: 'a rule with that id exists' },
  },
  'PUT /api/rules/:id': { summary: 'Replace (or add) one rule', tag: 'rules', body: { type: 'object', required: ['detector'], description: 'one rule; id from the URL' }, responses: { 200: 'the new rules version and the diff' } },
  'DELETE /api/rules/:id': { summary: 'Remove one rule', tag: 'rules', responses: { 200: 'the new rules version and the diff', 404: 'no such rule' } },
  'POST /api/rules/reload': { summary: 'Read the rules file again', tag: 'rules' },
  'GET /api/rules/changes': { summary: 'Recorded rules changes, newest first', tag: 'rules', query: { limit: { expected: 'an integer 1-1000 (default 100)' } } },
  'POST /api/sql': {
    summary: 'Analyst SQL (read-only, time- and row-limited)',
    tag: 'sql',
    body: { type: 'object', required: ['query'], properties: { query: str, format: { type: 'string', enum: ['JSONEachRow', 'TabSeparatedWithNames', 'CSVWithNames', 'PrettyCompact', 'JSON'] } } },
    responses: { 200: 'the result in the requested format', 400: 'not a single read statement, or over a limit' },
  },
  'GET /api/keys': { summary: 'API keys (never the keys themselves)', tag: 'keys' },
  'POST /api/keys': {
    summary: 'Create an API key (shown once)',
    tag: 'keys',
    body: { type: 'object', required: ['name', 'role'], properties: { name: str, role: { type: 'string', enum: ['viewer', 'analyst', 'admin'] } } },
    responses: { 201: 'the key, shown this once' },
  },
  'DELETE /api/keys/:id': { summary: 'Revoke an API key', tag: 'keys', responses: { 200: 'the revoked key', 404: 'no such key' } },

  'POST /api/findings/:id/status': {
    summary: 'Move a finding through the workflow',
    tag: 'workflow',
    description: 'open → acknowledged | resolved | false_positive; acknowledged → resolved | false_positive | open; resolved | false_positive → open. Audited (actor, note, time).',
    body: bodyOf(statusBody),
    responses: { 200: '{ workflow, action }', 404: 'no such finding', 409: 'not a legal transition from the current status (VIGIL_ERR_CONFLICT)' },
  },
  'POST /api/findings/:id/assign': { summary: 'Assign a finding (null unassigns)', tag: 'workflow', body: bodyOf(assignBody), responses: { 200: '{ workflow, action }', 404: 'no such finding' } },
  'POST /api/findings/:id/notes': { summary: 'Add a note to a finding', tag: 'workflow', body: bodyOf(noteBody), responses: { 201: '{ action }', 404: 'no such finding' } },
  'GET /api/findings/:id/history': { summary: "A finding's audit trail, oldest first", tag: 'workflow', query: FINDING_PARAMS, responses: { 200: '{ items: Action[] }', 404: 'no such finding' } },
  'GET /api/snoozes': { summary: 'Snoozes (active ones with active=true)', tag: 'workflow', query: SNOOZE_LIST_PARAMS },
  'POST /api/snoozes': {
    summary: 'Snooze a rule or detector for a symbol or account until a time',
    tag: 'workflow',
    description: 'Snoozed findings are still detected and stored; they are kept out of live alerts and notifications. Audited.',
    body: bodyOf(snoozeBody),
    responses: { 201: 'the snooze' },
  },
  'DELETE /api/snoozes/:id': { summary: 'Cancel a snooze (idempotent)', tag: 'workflow', responses: { 200: 'the cancelled snooze', 404: 'no such snooze' } },
  'GET /api/findings/:id/context': {
    summary: 'Market or account context around a finding',
    tag: 'findings',
    description: "Trades and thinned quotes of the finding's instrument, or the account's transactions, in the finding's window widened by before/after.",
    query: CONTEXT_PARAMS,
    responses: findingNotFound,
  },
  'GET /api/instruments': { summary: 'Instruments with stored trades, most active first', tag: 'market', query: INSTRUMENT_PARAMS },
  'GET /api/prices': { summary: 'OHLC buckets of an instrument from stored trades (mid quotes without trades)', tag: 'market', query: PRICE_PARAMS },
  'GET /api/stats': { summary: 'Findings counted per time bucket and per detector, severity, symbol or venue', tag: 'stats', query: STATS_PARAMS },
  'GET /api/runs': { summary: 'Pipeline runs (live and replays), newest first', tag: 'runs', query: RUN_LIST_PARAMS },
  'GET /api/runs/:id': { summary: 'One run: inputs, rules version, counts, duration, status', tag: 'runs', responses: { 200: 'the run', 404: 'no such run' } },
  'GET /api/alerts/stream': {
    summary: 'Live alerts (Server-Sent Events)',
    tag: 'alerts',
    description: 'event: finding | heartbeat | gap | close; id: the finding id. Resumes from Last-Event-ID (or since). A client too slow to keep up gets event: close with the reason.',
    query: ALERT_PARAMS,
    responses: { 200: 'text/event-stream' },
  },
  'POST /api/transactions/score': {
    summary: 'Score one transaction synchronously (same state as the stream)',
    tag: 'scoring',
    description: 'The transaction counts in its account state like a streamed one. A repeated id gets the first answer again (header idempotent-replayed: true).',
    body: bodyOf(transactionSchema.strict()),
    responses: { 200: '{ eventId, account, score, reasons, findings, rulesVersion, latencyMs }', 409: 'same id, different body', 413: 'body too large', 503: 'scoring unavailable or too many pending', 504: 'no score in time' },
  },
};
