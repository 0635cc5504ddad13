// API keys, roles, rate limiting, CORS and body limits (src/api/auth.ts), and `vigil keys`.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { stringify as toYaml } from 'yaml';
import { AlertHub } from '../src/api/alert-hub.ts';
import { registeredRoutes, type SecurityOptions } from '../src/api/auth.ts';
import { buildApi } from '../src/api/server.ts';
import { generateApiKey, hashApiKey, issueApiKey, type Role } from '../src/core/api-keys.ts';
import type { Finding } from '../src/core/events.ts';
import { findingId } from '../src/core/ids.ts';
import { RulesController } from '../src/detectors/rules-watch.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import type { Store } from '../src/storage/types.ts';
import { freePort, startVigil, stop, tempDir, vigil } from './helpers/cli.ts';

const TOKEN = 'test-service-token';
const T0 = Date.UTC(2024, 7, 9, 12, 0, 0);
const FINDING: Finding = {
  id: findingId('price_jump', 'pj', 'binance:BTC-USDT', 't1'),
  runId: 'live',
  detector: 'price_jump',
  ruleId: 'pj',
  severity: 'high',
  score: 9,
  venue: 'binance',
  symbol: 'BTC-USDT',
  key: 'binance:BTC-USDT',
  ts: T0,
  windowStart: T0 - 60_000,
  windowEnd: T0,
  summary: 'jump',
  evidence: { observed: { z: 9 }, baseline: {}, threshold: { z: 8 }, triggers: ['trade:binance:BTC-USDT:1'] },
};

let dir: string;
let store: Store;
let rules: RulesController;
const apps: FastifyInstance[] = [];
let app: FastifyInstance;
let port: number;
const keys: Record<'viewer' | 'analyst' | 'admin' | 'revoked', string> = { viewer: '', analyst: '', admin: '', revoked: '' };

async function build(security: SecurityOptions, extra: { bodyLimit?: number } = {}): Promise<FastifyInstance> {
  const a = await buildApi({ store, hub: new AlertHub(), sqlToken: TOKEN, rules, security, ...extra });
  apps.push(a);
  return a;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-auth-'));
  const rulesPath = join(dir, 'rules.yaml');
  writeFileSync(rulesPath, toYaml({ description: 'auth test rules', rules: [{ id: 'pj', detector: 'price_jump' }] }));
  store = await openStore({ dataDir: join(dir, 'data') });
  await store.insertFindings([FINDING]);
  rules = new RulesController({ path: rulesPath });
  for (const role of ['viewer', 'analyst', 'admin'] as const) keys[role] = (await issueApiKey(store, `test ${role}`, role)).key;
  const revoked = await issueApiKey(store, 'revoked admin', 'admin');
  await store.revokeApiKey(revoked.info.id);
  keys.revoked = revoked.key;
  app = await build({ auth: true, keyCacheMs: 300 });
  await app.listen({ host: '127.0.0.1', port: 0 });
  port = (app.server.address() as { port: number }).port;
}, 60_000);

afterAll(async () => {
  for (const a of apps) await a.close();
  rules?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

type Caller = 'none' | 'bad key' | 'revoked key' | 'viewer' | 'analyst' | 'admin' | 'service token';
const CALLERS: Caller[] = ['none', 'bad key', 'revoked key', 'viewer', 'analyst', 'admin', 'service token'];

function headersOf(caller: Caller): Record<string, string> {
  switch (caller) {
    case 'none':
      return {};
    case 'bad key':
      return { authorization: `Bearer ${generateApiKey().key}` };
    case 'revoked key':
      return { authorization: `Bearer ${keys.revoked}` };
    case 'service token':
      return { 'x-vigil-sql-token': TOKEN };
    case 'viewer':
      return { authorization: `Bearer ${keys.viewer}` };
    // Both headers work: x-api-key for these two.
    default:
      return { 'x-api-key': keys[caller] };
  }
}

const roleOf = (c: Caller): Role | undefined => (c === 'service token' ? 'admin' : c === 'viewer' || c === 'analyst' || c === 'admin' ? c : undefined);
const RANK: Record<Role, number> = { viewer: 0, analyst: 1, admin: 2 };

interface RouteCase {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string | (() => Promise<string>);
  role: Role | 'public';
  ok: number;
  payload?: () => object;
  /** The route pattern the case covers, when the URL is not the pattern itself. */
  route?: string;
}

const ROUTES: RouteCase[] = [
  { method: 'GET', url: '/healthz', role: 'public', ok: 200 },
  { method: 'GET', url: '/readyz', role: 'public', ok: 200 },
  { method: 'GET', url: '/api/findings', role: 'viewer', ok: 200 },
  { method: 'GET', url: `/api/findings/${FINDING.id}`, role: 'viewer', ok: 200 },
  { method: 'GET', url: '/api/alerts', role: 'viewer', ok: 101 },
  { method: 'GET', url: '/api/rules', role: 'viewer', ok: 200 },
  { method: 'GET', url: '/api/rules/changes', role: 'viewer', ok: 200 },
  { method: 'PUT', url: '/api/rules', role: 'admin', ok: 200, payload: () => rules.current.file as object },
  { method: 'POST', url: '/api/rules/reload', role: 'admin', ok: 200 },
  { method: 'GET', url: '/api/rules/pj', route: '/api/rules/:id', role: 'viewer', ok: 200 },
  { method: 'PUT', url: '/api/rules/pj', route: '/api/rules/:id', role: 'admin', ok: 200, payload: () => ({ detector: 'price_jump' }) },
  { method: 'POST', url: '/api/rules', role: 'admin', ok: 409, payload: () => ({ id: 'pj', detector: 'price_jump' }) },
  { method: 'DELETE', url: '/api/rules/no-such-rule', route: '/api/rules/:id', role: 'admin', ok: 404 },
  { method: 'POST', url: '/api/sql', role: 'analyst', ok: 200, payload: () => ({ query: 'SELECT 1' }) },
  { method: 'GET', url: '/api/keys', role: 'admin', ok: 200 },
  { method: 'POST', url: '/api/keys', role: 'admin', ok: 201, payload: () => ({ name: 'made in the matrix', role: 'viewer' }) },
  { method: 'DELETE', url: async () => `/api/keys/${(await issueApiKey(store, 'to revoke', 'viewer')).info.id}`, role: 'admin', ok: 200 },
  { method: 'GET', url: '/docs', role: 'public', ok: 200 },
  { method: 'GET', url: '/docs/json', role: 'public', ok: 200 },
  { method: 'GET', url: '/docs/yaml', role: 'public', ok: 200 },
  { method: 'GET', url: '/docs/static/index.html', role: 'public', ok: 302 },
  { method: 'GET', url: '/docs/static/swagger-initializer.js', role: 'public', ok: 200 },
  { method: 'GET', url: '/docs/static/swagger-ui.css', route: '/docs/static/*', role: 'public', ok: 200 },
  // No scorer wired in this API: reaching the route (past auth) answers 503.
  { method: 'POST', url: '/api/transactions/score', role: 'analyst', ok: 503, payload: () => ({ kind: 'transaction', source: 'bank', id: 't1', ts: T0, account: 'A1', amount: 10, currency: 'EUR', direction: 'debit', channel: 'card' }) },
  { method: 'GET', url: '/', role: 'public', ok: 200 },
  { method: 'GET', url: '/dashboard/style.css', role: 'public', ok: 200 },
  { method: 'GET', url: '/dashboard/favicon.svg', role: 'public', ok: 200 },
  { method: 'GET', url: '/dashboard/app.js', role: 'public', ok: 200 },
  { method: 'GET', url: '/dashboard/api.js', role: 'public', ok: 200 },
  { method: 'GET', url: '/dashboard/ui.js', role: 'public', ok: 200 },
  { method: 'GET', url: '/dashboard/feed.js', role: 'public', ok: 200 },
  { method: 'GET', url: '/dashboard/charts.js', role: 'public', ok: 200 },
  { method: 'GET', url: '/dashboard/detail.js', role: 'public', ok: 200 },
  { method: 'GET', url: '/dashboard/vendor/lightweight-charts.mjs', role: 'public', ok: 200 },
  { method: 'GET', url: '/api/alerts/stream', role: 'viewer', ok: 200 },
  { method: 'GET', url: `/api/findings/${FINDING.id}/context`, role: 'viewer', ok: 200 },
  { method: 'GET', url: '/api/instruments', role: 'viewer', ok: 200 },
  { method: 'GET', url: '/api/prices?venue=binance&symbol=BTC-USDT', route: '/api/prices', role: 'viewer', ok: 200 },
  { method: 'GET', url: '/api/stats', role: 'viewer', ok: 200 },
  { method: 'GET', url: '/api/runs', role: 'viewer', ok: 200 },
  { method: 'GET', url: async () => (await store.upsertRun({ runId: 'auth-run', startedAt: T0, status: 'completed', inputs: [], summary: {} }), '/api/runs/auth-run'), route: '/api/runs/:id', role: 'viewer', ok: 200 },
  // Workflow: each status call gets a finding of its own (a second acknowledge would be a 409).
  { method: 'POST', url: async () => { const f = { ...FINDING, id: findingId('price_jump', 'pj', 'binance:BTC-USDT', `wf-${Math.random()}`) }; await store.insertFindings([f]); return `/api/findings/${f.id}/status`; }, route: '/api/findings/:id/status', role: 'analyst', ok: 200, payload: () => ({ status: 'acknowledged' }) },
  { method: 'POST', url: `/api/findings/${FINDING.id}/assign`, role: 'analyst', ok: 200, payload: () => ({ assignee: 'matrix' }) },
  { method: 'POST', url: `/api/findings/${FINDING.id}/notes`, role: 'analyst', ok: 201, payload: () => ({ note: 'matrix' }) },
  { method: 'GET', url: `/api/findings/${FINDING.id}/history`, role: 'viewer', ok: 200 },
  { method: 'GET', url: '/api/snoozes', role: 'viewer', ok: 200 },
  { method: 'POST', url: '/api/snoozes', role: 'analyst', ok: 201, payload: () => ({ detector: 'price_jump', symbol: 'BTC-USDT', until: Date.now() + 3_600_000 }) },
  { method: 'DELETE', url: async () => `/api/snoozes/${(await store.createSnooze({ detector: 'price_jump', symbol: 'BTC-USDT', until: Date.now() + 3_600_000, createdBy: 'matrix' })).id}`, route: '/api/snoozes/:id', role: 'analyst', ok: 200 },
  { method: 'GET', url: '/no/such/route', role: 'viewer', ok: 404 },
];

function expected(route: RouteCase, caller: Caller): number {
  if (route.role === 'public') return route.ok;
  const role = roleOf(caller);
  if (!role) return 401;
  return RANK[role] >= RANK[route.role] ? route.ok : 403;
}

/** A WebSocket upgrade: 101 when it opens, else the HTTP status the server answered. */
function wsStatus(headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/api/alerts`, { headers });
    ws.on('open', () => {
      ws.close();
      resolve({ status: 101, body: '' });
    });
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () => {
        req.destroy(); // with this listener, ws leaves the request to us
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    ws.on('error', (e) => reject(e));
  });
}

/** An SSE stream never ends by itself: its status, then hang up (the body only of a refusal). */
function sseStatus(headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/api/alerts/stream', headers }, (res) => {
      if (res.statusCode === 200) {
        req.destroy();
        return resolve({ status: 200, body: '' });
      }
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function call(route: RouteCase, caller: Caller, target = app): Promise<{ status: number; body: string }> {
  const url = typeof route.url === 'string' ? route.url : await route.url();
  if (url === '/api/alerts') return wsStatus(headersOf(caller));
  if (url === '/api/alerts/stream') return sseStatus(headersOf(caller));
  const opts: InjectOptions = { method: route.method, url, headers: headersOf(caller) };
  if (route.payload) opts.payload = route.payload();
  const res = await target.inject(opts);
  return { status: res.statusCode, body: res.body };
}

describe('roles on every route', () => {
  it.each(CALLERS)('%s gets the expected status on every route', async (caller) => {
    for (const route of ROUTES) {
      const r = await call(route, caller);
      const want = expected(route, caller);
      expect(r.status, `${caller} ${route.method} ${typeof route.url === 'string' ? route.url : '/api/keys/:id'}: ${r.body}`).toBe(want);
      if (want === 401) expect(JSON.parse(r.body).error.code).toBe('VIGIL_ERR_UNAUTHORIZED');
      if (want === 403) expect(JSON.parse(r.body).error.code).toBe('VIGIL_ERR_FORBIDDEN');
    }
  }, 60_000);

  it('covers every registered route, and every registered route declares a role', () => {
    const routes = registeredRoutes(app);
    expect(routes.length).toBeGreaterThan(0);
    for (const r of routes) expect(r.role, `${r.method} ${r.url}`).toBeDefined();
    const tested = new Set(ROUTES.map((r) => `${r.method} ${r.route ?? (typeof r.url === 'string' ? r.url.replace(FINDING.id, ':id') : '/api/keys/:id')}`));
    for (const r of routes.filter((x) => x.method !== 'HEAD')) expect(tested, `${r.method} ${r.url} is not in the matrix`).toContain(`${r.method} ${r.url}`);
  });

  it('refuses a route that declares no role (fail closed), even to an admin', async () => {
    const a = await build({ auth: true });
    a.get('/api/undeclared', async () => ({ secret: true }));
    const r = await a.inject({ method: 'GET', url: '/api/undeclared', headers: headersOf('admin') });
    expect(r.statusCode).toBe(403);
    expect(r.json().error.code).toBe('VIGIL_ERR_FORBIDDEN');
    expect(registeredRoutes(a).find((x) => x.url === '/api/undeclared')?.role).toBeUndefined();
  });

  it('a malformed Authorization header is a 401', async () => {
    const r = await app.inject({ method: 'GET', url: '/api/findings', headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } });
    expect(r.statusCode).toBe(401);
    expect(r.json().error.message).toMatch(/Bearer/);
  });

  it('with auth off the data routes are open, SQL and key management still need a credential', async () => {
    const a = await build({ auth: false });
    expect((await a.inject({ method: 'GET', url: '/api/findings' })).statusCode).toBe(200);
    expect((await a.inject({ method: 'PUT', url: '/api/rules', payload: rules.current.file as object })).statusCode).toBe(200);
    expect((await a.inject({ method: 'GET', url: '/api/keys' })).statusCode).toBe(401);
    expect((await a.inject({ method: 'POST', url: '/api/sql', payload: { query: 'SELECT 1' } })).statusCode).toBe(401);
    expect((await a.inject({ method: 'GET', url: '/api/keys', headers: headersOf('viewer') })).statusCode).toBe(403);
    expect((await a.inject({ method: 'GET', url: '/api/keys', headers: headersOf('service token') })).statusCode).toBe(200);
    expect((await a.inject({ method: 'POST', url: '/api/sql', payload: { query: 'SELECT 1' }, headers: headersOf('analyst') })).statusCode).toBe(200);
  });

  it('records the key name as the actor of a rules change', async () => {
    const actors: string[] = [];
    const off = rules.onChange((change) => {
      actors.push(change.actor);
    });
    const file = structuredClone(rules.current.file) as { description?: string };
    file.description = 'changed by the admin key';
    const r = await app.inject({ method: 'PUT', url: '/api/rules', payload: file, headers: headersOf('admin') });
    off();
    expect(r.statusCode, r.body).toBe(200);
    expect(actors).toEqual(['api:test admin']);
  });
});

describe('keys', () => {
  it('are stored hashed: the table never holds a key', async () => {
    const created = await app.inject({ method: 'POST', url: '/api/keys', payload: { name: 'hash check', role: 'analyst' }, headers: headersOf('admin') });
    expect(created.statusCode).toBe(201);
    const body = created.json() as { id: string; key: string; hint: string; role: string };
    expect(body.key).toMatch(/^vgl_[A-Za-z0-9_-]{43}$/);
    expect(body.hint).toBe(body.key.slice(-4));
    const table = await store.sql('SELECT * FROM api_keys FINAL', 'JSONEachRow');
    for (const k of [body.key, keys.viewer, keys.analyst, keys.admin, keys.revoked]) {
      expect(table).not.toContain(k);
      expect(table).not.toContain(k.slice(4)); // nor the random part
    }
    const row = table.trim().split('\n').map((l) => JSON.parse(l) as { id: string; key_hash: string }).find((r) => r.id === body.id)!;
    expect(row.key_hash).toBe(hashApiKey(body.key));
    // Listing shows no hash and no key either.
    const list = await app.inject({ method: 'GET', url: '/api/keys', headers: headersOf('admin') });
    expect(list.body).not.toContain(row.key_hash);
    expect(list.body).not.toContain(body.key);
    expect((list.json() as { items: { id: string }[] }).items.map((k) => k.id)).toContain(body.id);
  });

  it('rejects a bad name or role', async () => {
    const r = await app.inject({ method: 'POST', url: '/api/keys', payload: { name: 'x', role: 'root' }, headers: headersOf('admin') });
    expect(r.statusCode).toBe(400);
    expect(r.json().error.message).toMatch(/viewer, analyst, admin/);
  });

  it('revocation through the API takes effect at once; through the store, within the cache time', async () => {
    const a = await issueApiKey(store, 'short-lived', 'viewer');
    const use = async (key: string) => (await app.inject({ method: 'GET', url: '/api/findings', headers: { authorization: `Bearer ${key}` } })).statusCode;
    expect(await use(a.key)).toBe(200);
    const del = await app.inject({ method: 'DELETE', url: `/api/keys/${a.info.id}`, headers: headersOf('admin') });
    expect(del.statusCode).toBe(200);
    expect(del.json().revokedAt).toBeGreaterThan(0);
    expect(await use(a.key)).toBe(401);
    // Revoked again: idempotent. Unknown: 404.
    expect((await app.inject({ method: 'DELETE', url: `/api/keys/${a.info.id}`, headers: headersOf('admin') })).statusCode).toBe(200);
    expect((await app.inject({ method: 'DELETE', url: '/api/keys/key_nope', headers: headersOf('admin') })).statusCode).toBe(404);

    // Elsewhere (another process on the same store): the cached lookup holds for at most keyCacheMs (300 ms here).
    const b = await issueApiKey(store, 'revoked elsewhere', 'viewer');
    expect(await use(b.key)).toBe(200);
    await store.revokeApiKey(b.info.id);
    const end = Date.now() + 300 + 1000;
    let status = await use(b.key);
    while (status === 200 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
      status = await use(b.key);
    }
    expect(status).toBe(401);
  });
});

describe('rate limit, CORS, body limit', () => {
  it('429 VIGIL_ERR_RATE_LIMITED with Retry-After, per key, and per IP without a key', async () => {
    const a = await build({ auth: true, rateLimitPerMinute: 3 });
    const get = (headers: Record<string, string>, remoteAddress = '10.0.0.1') => a.inject({ method: 'GET', url: '/api/findings', headers, remoteAddress });
    for (let i = 0; i < 3; i++) expect((await get(headersOf('viewer'))).statusCode).toBe(200);
    const limited = await get(headersOf('viewer'));
    expect(limited.statusCode).toBe(429);
    expect(limited.json().error.code).toBe('VIGIL_ERR_RATE_LIMITED');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
    // Another key from the same address has its own budget.
    expect((await get(headersOf('analyst'))).statusCode).toBe(200);
    // Without a key (or with a bad one) the client IP is counted: failed attempts are limited too.
    for (let i = 0; i < 3; i++) expect((await get(headersOf('bad key'), '10.0.0.2')).statusCode).toBe(401);
    const ipLimited = await get({}, '10.0.0.2');
    expect(ipLimited.statusCode).toBe(429);
    expect(ipLimited.headers['retry-after']).toBeDefined();
    expect((await get({}, '10.0.0.3')).statusCode).toBe(401);
    // Health checks are never limited.
    for (let i = 0; i < 5; i++) expect((await a.inject({ method: 'GET', url: '/healthz', remoteAddress: '10.0.0.2' })).statusCode).toBe(200);
  });

  it('CORS headers for an allowed origin only', async () => {
    const a = await build({ auth: true, corsOrigins: ['https://ok.example'] });
    const ok = await a.inject({ method: 'GET', url: '/api/findings', headers: { origin: 'https://ok.example', ...headersOf('viewer') } });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe('https://ok.example');
    const other = await a.inject({ method: 'GET', url: '/api/findings', headers: { origin: 'https://evil.example', ...headersOf('viewer') } });
    expect(other.statusCode).toBe(200);
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    // A browser's preflight carries no credentials: answered before auth, for the allowed origin only.
    const preflight = await a.inject({ method: 'OPTIONS', url: '/api/findings', headers: { origin: 'https://ok.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } });
    expect(preflight.statusCode).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe('https://ok.example');
    expect(String(preflight.headers['access-control-allow-headers'])).toMatch(/authorization/);
    const badPreflight = await a.inject({ method: 'OPTIONS', url: '/api/findings', headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' } });
    expect(badPreflight.headers['access-control-allow-origin']).toBeUndefined();
    // The error of an unauthenticated call is readable by the allowed origin.
    const denied = await a.inject({ method: 'GET', url: '/api/findings', headers: { origin: 'https://ok.example' } });
    expect(denied.statusCode).toBe(401);
    expect(denied.headers['access-control-allow-origin']).toBe('https://ok.example');
    for (const r of registeredRoutes(a)) expect(r.role, `${r.method} ${r.url}`).toBeDefined();
    // No CORS configured: no headers.
    const none = await app.inject({ method: 'GET', url: '/api/findings', headers: { origin: 'https://ok.example', ...headersOf('viewer') } });
    expect(none.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('413 for a body over the limit', async () => {
    const a = await build({ auth: true }, { bodyLimit: 1024 });
    const r = await a.inject({ method: 'POST', url: '/api/sql', payload: { query: `SELECT '${'x'.repeat(2048)}'` }, headers: headersOf('analyst') });
    expect(r.statusCode).toBe(413);
    expect(r.json().error.code).toBe('VIGIL_ERR_PAYLOAD_TOO_LARGE');
    // Authentication comes first: without a key the body is not read.
    const anon = await a.inject({ method: 'POST', url: '/api/sql', payload: { query: `SELECT '${'x'.repeat(2048)}'` } });
    expect(anon.statusCode).toBe(401);
  });
});

describe('vigil keys', () => {
  const dataDir = tempDir('vigil-keys-');
  let proc: ReturnType<typeof startVigil> | undefined;
  afterAll(async () => {
    if (proc) await stop(proc.child, 'SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  const env = { VIGIL_DATA_DIR: dataDir };
  const listJson = async (): Promise<{ id: string; name: string; role: string; revokedAt?: number }[]> => {
    const r = await vigil(['keys', 'list', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as { id: string; name: string; role: string; revokedAt?: number }[];
  };

  it('create, list and revoke against the store directly', async () => {
    const created = await vigil(['keys', 'create', '--name', 'ops', '--role', 'admin'], env);
    expect(created.code, created.stderr).toBe(0);
    const key = created.stdout.trim();
    expect(key).toMatch(/^vgl_[A-Za-z0-9_-]{43}$/);
    expect(created.stderr).toMatch(/shown only this once/);
    const listed = await vigil(['keys', 'list'], env);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/ops\s+admin\s+…/);
    expect(listed.stdout).not.toContain(key);
    const [k] = await listJson();
    expect(k).toMatchObject({ name: 'ops', role: 'admin' });
    const revoked = await vigil(['keys', 'revoke', k!.id], env);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain(`revoked ${k!.id}`);
    expect((await listJson())[0]!.revokedAt).toBeGreaterThan(0);
    const unknown = await vigil(['keys', 'revoke', 'key_nope'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('VIGIL_ERR_NOT_FOUND');
    const bad = await vigil(['keys', 'create', '--name', 'x', '--role', 'root'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/invalid role/);
    const usage = await vigil(['keys', 'create', '--name', 'no role'], env);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--role is required/);
  }, 90_000);

  it('create, list and revoke through a running vigil run that holds the store (auth on)', async () => {
    const p = await freePort();
    proc = startVigil(['run', '--no-demo'], { ...env, PORT: String(p), VIGIL_AUTH: 'on', VIGIL_LOG_LEVEL: 'info' });
    const base = `http://127.0.0.1:${p}`;
    const end = Date.now() + 30_000;
    while (!(await fetch(`${base}/healthz`).then((r) => r.ok, () => false))) {
      if (Date.now() > end) throw new Error(`vigil run did not come up\n${proc.output()}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // Only a revoked key exists: the log says how to make the first admin key.
    const hintEnd = Date.now() + 5_000;
    while (!proc.output().includes('vigil keys create') && Date.now() < hintEnd) await new Promise((r) => setTimeout(r, 100));
    expect(proc.output()).toMatch(/no API key exists yet.*vigil keys create --role admin/);
    expect((await fetch(`${base}/api/findings`)).status).toBe(401);

    const created = await vigil(['keys', 'create', '--name', 'analyst-1', '--role', 'analyst', '--json'], env);
    expect(created.code, created.stderr).toBe(0);
    const { id, key } = JSON.parse(created.stdout) as { id: string; key: string };
    const auth = { authorization: `Bearer ${key}` };
    expect((await fetch(`${base}/api/findings`, { headers: auth })).status).toBe(200);
    expect((await fetch(`${base}/api/keys`, { headers: auth })).status).toBe(403);
    expect((await listJson()).map((k) => k.id)).toContain(id);
    // vigil sql still works through the service token.
    const sql = await vigil(['sql', 'SELECT count() FROM api_keys FINAL', '--format', 'tsv'], env);
    expect(sql.code, sql.stderr).toBe(0);
    expect(Number(sql.stdout.trim().split('\n')[1])).toBe(2);

    const revoked = await vigil(['keys', 'revoke', id], env);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect((await fetch(`${base}/api/findings`, { headers: auth })).status).toBe(401);
    expect(await stop(proc.child, 'SIGTERM')).toBe(0);
  }, 120_000);
});
