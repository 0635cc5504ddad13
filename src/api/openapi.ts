/**
 * OpenAPI 3 document of the API, served at /docs (Swagger UI, assets shipped in node_modules, so it
 * works offline) and /docs/json. Routes validate with zod themselves, so the document is built here from
 * one table of route descriptions plus the query-parameter tables the routes use (query-params.ts), and
 * completed with what the router knows (every route and its role). test/openapi.test.ts checks that
 * every registered route is described and every description is registered, so the two cannot drift.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { readFileSync } from 'node:fs';
import { registeredRoutes, type RegisteredRoute } from './auth.ts';
import { isDashboardUrl } from './routes/dashboard.ts';
import { ROUTE_DOCS, type RouteDoc } from './openapi-routes.ts';

export const DOCS_PREFIX = '/docs';

const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

type Json = Record<string, unknown>;

/** `/api/findings/:id` → `/api/findings/{id}`, and the names of its path parameters. */
function openApiPath(url: string): { path: string; params: string[] } {
  const params: string[] = [];
  const path = url.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (_m, name: string) => {
    params.push(name);
    return `{${name}}`;
  });
  return { path, params };
}

/** Routes the document describes: the API's own, not the documentation's or the dashboard's files, nor HEAD twins and preflights. */
export function documentedRoutes(routes: readonly RegisteredRoute[]): RegisteredRoute[] {
  return routes.filter((r) => r.method !== 'HEAD' && r.method !== 'OPTIONS' && !r.url.startsWith(DOCS_PREFIX) && r.url !== '*' && !isDashboardUrl(r.url));
}

export function routeKey(method: string, url: string): string {
  return `${method} ${url}`;
}

const ERROR_SCHEMA = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string', example: 'VIGIL_ERR_BAD_REQUEST' }, message: { type: 'string' } },
      required: ['code', 'message'],
    },
  },
};

function operation(route: RegisteredRoute, doc: RouteDoc): Json {
  const { params } = openApiPath(route.url);
  const parameters: Json[] = params.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' }, description: doc.pathParams?.[name] }));
  for (const [name, p] of Object.entries(doc.query ?? {})) {
    parameters.push({ name, in: 'query', required: false, schema: { type: 'string' }, description: p.expected });
  }
  const responses: Json = {};
  for (const [status, description] of Object.entries(doc.responses ?? { 200: 'OK' })) responses[status] = { description };
  if (route.role !== 'public') {
    responses['401'] ??= { description: 'no valid API key (when auth is on)', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    responses['403'] ??= { description: `the key's role is below ${route.role}`, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
  }
  if (parameters.length > 0 || doc.body) responses['400'] ??= { description: 'invalid request; the message names the parameter', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
  const op: Json = {
    summary: doc.summary,
    tags: [doc.tag],
    'x-vigil-role': route.role,
    parameters,
    responses,
  };
  if (doc.description) op.description = doc.description;
  if (route.role !== 'public') op.security = [{ bearer: [] }, { apiKey: [] }];
  if (doc.body) op.requestBody = { required: true, content: { 'application/json': { schema: doc.body } } };
  return op;
}

/** The document for the routes an app has registered; routes without a description are listed by `undocumented`. */
export function buildOpenApi(routes: readonly RegisteredRoute[], version: string): { document: Json; undocumented: string[] } {
  const paths: Record<string, Json> = {};
  const undocumented: string[] = [];
  for (const route of documentedRoutes(routes)) {
    const doc = ROUTE_DOCS[routeKey(route.method, route.url)];
    if (!doc) {
      undocumented.push(routeKey(route.method, route.url));
      continue;
    }
    const { path } = openApiPath(route.url);
    (paths[path] ??= {})[route.method.toLowerCase()] = operation(route, doc);
  }
  const document: Json = {
    openapi: '3.0.3',
    info: {
      title: 'Vigil API',
      version,
      description:
        'Real-time surveillance of market data and payment transactions: findings, live alerts, workflow, rules, scoring. ' +
        'With auth on, send an API key as `Authorization: Bearer <key>` or `x-api-key`; roles rank viewer < analyst < admin (x-vigil-role on each operation). ' +
        'Errors carry a stable code (VIGIL_ERR_*).',
    },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer' },
        apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' },
      },
      schemas: { Error: ERROR_SCHEMA },
    },
    paths,
  };
  return { document, undocumented };
}

/**
 * The documentation is public like /healthz: it holds no data. Call before installSecurity, so the role is
 * set before the security hook records it (routes without a role are refused).
 */
export function markDocsPublic(app: FastifyInstance): void {
  app.addHook('onRoute', (r) => {
    if (r.url.startsWith(DOCS_PREFIX) && r.config?.role === undefined) r.config = { ...r.config, role: 'public' };
  });
}

/**
 * Registers /docs (Swagger UI) and /docs/json. Call after installSecurity (so rate limits apply) and before
 * the API's routes; the document is filled in when the app is ready, from the routes registered by then.
 */
export async function installApiDocs(app: FastifyInstance, version = PACKAGE_VERSION): Promise<void> {
  const document: Json = {};
  await app.register(swagger, { mode: 'static', specification: { document: document as never } });
  await app.register(swaggerUi, { routePrefix: DOCS_PREFIX, staticCSP: true });
  app.addHook('onReady', async () => {
    Object.assign(document, buildOpenApi(registeredRoutes(app), version).document);
  });
}
