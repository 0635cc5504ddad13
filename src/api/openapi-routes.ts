/**
 * One description per route (method + fastify URL) for the OpenAPI document (openapi.ts). Query
 * parameters come from the very tables the routes validate with, so their documentation cannot drift.
 */
import { ALERT_PARAMS, FINDING_PARAMS, SEARCH_PARAMS } from './query-params.ts';

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
};
