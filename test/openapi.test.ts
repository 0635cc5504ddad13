// The OpenAPI document at /docs/json describes exactly the routes the API registers, with their roles;
// Swagger UI is served at /docs without a key and without anything from the internet.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertHub } from '../src/api/alert-hub.ts';
import { registeredRoutes } from '../src/api/auth.ts';
import { buildOpenApi, documentedRoutes, routeKey } from '../src/api/openapi.ts';
import { ROUTE_DOCS } from '../src/api/openapi-routes.ts';
import { buildApi } from '../src/api/server.ts';
import { processObservability } from '../src/observability/metrics.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import type { Store } from '../src/storage/types.ts';

let dir: string;
let store: Store;
let app: FastifyInstance;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-openapi-'));
  store = await openStore({ dataDir: join(dir, 'data') });
  // Auth on: the documentation must still be reachable without a key.
  app = await buildApi({ store, hub: new AlertHub(), sqlToken: 'token', security: { auth: true }, ...processObservability() });
  await app.ready();
}, 60_000);

afterAll(async () => {
  await app?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Operation {
  summary: string;
  'x-vigil-role': string;
  parameters: { name: string; in: string }[];
  security?: unknown[];
}

describe('OpenAPI at /docs', () => {
  it('every registered route is described, and every description names a registered route', () => {
    const registered = documentedRoutes(registeredRoutes(app)).map((r) => routeKey(r.method, r.url));
    const { undocumented } = buildOpenApi(registeredRoutes(app), 'test');
    expect(undocumented).toEqual([]);
    // Routes this app did not register because a dependency was not passed (rules, scorer…) are
    // still described; every other description must match a route.
    const optional = new Set(['GET /api/rules', 'PUT /api/rules', 'POST /api/rules/reload', 'GET /api/rules/changes', 'GET /api/rules/:id', 'POST /api/rules', 'PUT /api/rules/:id', 'DELETE /api/rules/:id']);
    for (const key of Object.keys(ROUTE_DOCS)) if (!optional.has(key)) expect(registered, key).toContain(key);
  });

  it('/docs/json is an OpenAPI 3 document with each operation, its role and its query parameters, without a key', async () => {
    const res = await app.inject({ method: 'GET', url: '/docs/json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json() as { openapi: string; paths: Record<string, Record<string, Operation>> };
    expect(doc.openapi).toMatch(/^3\./);
    for (const r of documentedRoutes(registeredRoutes(app))) {
      const path = r.url.replace(/:([A-Za-z_]\w*)/g, '{$1}');
      const op = doc.paths[path]?.[r.method.toLowerCase()];
      expect(op, `${r.method} ${r.url}`).toBeDefined();
      expect(op!['x-vigil-role']).toBe(r.role);
      expect(op!.security === undefined).toBe(r.role === 'public');
    }
    const search = doc.paths['/api/findings']!.get!;
    expect(search.parameters.map((p) => p.name)).toEqual(expect.arrayContaining(['detector', 'symbol', 'account', 'minSeverity', 'from', 'to', 'cursor', 'limit']));
    const byId = doc.paths['/api/findings/{id}']!.get!;
    expect(byId.parameters).toContainEqual(expect.objectContaining({ name: 'id', in: 'path' }));
  });

  it('/docs serves Swagger UI and its assets locally, without a key', async () => {
    const page = await app.inject({ method: 'GET', url: '/docs/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.body).toContain('swagger-ui');
    const asset = await app.inject({ method: 'GET', url: '/docs/static/swagger-ui-bundle.js' });
    expect(asset.statusCode).toBe(200);
    expect(asset.body.length).toBeGreaterThan(100_000);
    // The data routes still need a key.
    expect((await app.inject({ method: 'GET', url: '/api/findings' })).statusCode).toBe(401);
  });
});
