import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { SEVERITIES, severityRank, type Finding } from '../src/core/events.ts';
import { findingId } from '../src/core/ids.ts';
import { AlertHub, type AlertMessage } from '../src/api/alert-hub.ts';
import { buildApi } from '../src/api/server.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import type { Store } from '../src/storage/types.ts';
import { OPEN_WORKFLOW } from '../src/storage/workflow.ts';

const T0 = Date.UTC(2024, 7, 9, 12, 0, 0);
const TOKEN = 'test-sql-token';

function finding(n: number, over: Partial<Finding> = {}): Finding {
  return {
    id: findingId('price-jump', 'z8', `k${n}`, `t${n}`),
    runId: 'live',
    detector: ['price-jump', 'spread', 'wash-trade'][n % 3]!,
    ruleId: 'z8',
    severity: SEVERITIES[n % 5]!,
    score: n / 3,
    venue: n % 2 === 0 ? 'binance' : 'okx',
    symbol: n % 4 < 2 ? 'BTC-USDT' : 'ETH-USDT',
    ...(n % 3 === 0 ? { account: `acct-${n % 2}` } : {}),
    key: 'binance:BTC-USDT',
    ts: T0 + n * 1000,
    windowStart: T0 + n * 1000 - 60_000,
    windowEnd: T0 + n * 1000,
    summary: `finding ${n}`,
    evidence: { observed: { z: n }, baseline: { median: 0 }, threshold: { z: 8 }, triggers: [`trade:binance:BTC-USDT:${n}`] },
    ...over,
  };
}

const seeded: Finding[] = Array.from({ length: 30 }, (_, n) => finding(n, n >= 25 ? { runId: 'replay-1' } : {}));

let dir: string;
let store: Store;
let hub: AlertHub;
let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-api-'));
  store = await openStore({ dataDir: dir });
  await store.insertFindings(seeded);
  hub = new AlertHub({ bufferSize: 50 });
  app = await buildApi({ store, hub, sqlToken: TOKEN, alerts: { heartbeatMs: 100 } });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  if (!addr || typeof addr === 'string') throw new Error('no address');
  base = `127.0.0.1:${addr.port}`;
});

afterAll(async () => {
  await app?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function get(url: string) {
  const res = await app.inject({ method: 'GET', url });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> & { items: Finding[]; total: number; nextCursor: string | null; error: { code: string; message: string } } };
}

async function ids(url: string): Promise<string[]> {
  const r = await get(url);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  expect(r.body.total).toBe(r.body.items.length);
  return r.body.items.map((f) => f.id);
}

const expectIds = (pred: (f: Finding) => boolean, order: 'asc' | 'desc' = 'desc') => {
  const sel = seeded.filter(pred).sort((a, b) => a.ts - b.ts);
  return (order === 'desc' ? sel.reverse() : sel).map((f) => f.id);
};

describe('GET /api/findings', () => {
  it('defaults: newest first, everything, null cursor when done', async () => {
    const r = await get('/api/findings');
    expect(r.status).toBe(200);
    expect(r.body.total).toBe(seeded.length);
    expect(r.body.items.map((f) => f.id)).toEqual(expectIds(() => true));
    expect(r.body.nextCursor).toBeNull();
    expect(r.body.items[0]).toStrictEqual({ ...seeded[seeded.length - 1], workflow: OPEN_WORKFLOW });
  });

  it('detector as a comma list and as a repeated parameter', async () => {
    const want = expectIds((f) => f.detector === 'spread' || f.detector === 'wash-trade');
    expect(await ids('/api/findings?detector=spread,wash-trade')).toEqual(want);
    expect(await ids('/api/findings?detector=spread&detector=wash-trade')).toEqual(want);
    expect(await ids('/api/findings?detector=spread, wash-trade,')).toEqual(want);
  });

  it('venue, symbol, account', async () => {
    expect(await ids('/api/findings?venue=okx')).toEqual(expectIds((f) => f.venue === 'okx'));
    expect(await ids('/api/findings?symbol=ETH-USDT')).toEqual(expectIds((f) => f.symbol === 'ETH-USDT'));
    expect(await ids('/api/findings?account=acct-1')).toEqual(expectIds((f) => f.account === 'acct-1'));
    expect(await ids('/api/findings?venue=binance&symbol=BTC-USDT')).toEqual(expectIds((f) => f.venue === 'binance' && f.symbol === 'BTC-USDT'));
  });

  it('minSeverity and its alias severity', async () => {
    const want = expectIds((f) => severityRank(f.severity) >= severityRank('high'));
    expect(await ids('/api/findings?minSeverity=high')).toEqual(want);
    expect(await ids('/api/findings?severity=high')).toEqual(want);
    expect(await ids('/api/findings?severity=high&minSeverity=high')).toEqual(want);
  });

  it('from/to as epoch ms and as ISO-8601', async () => {
    const from = T0 + 5000;
    const to = T0 + 12_000;
    const want = expectIds((f) => f.ts >= from && f.ts < to);
    expect(want).toHaveLength(7);
    expect(await ids(`/api/findings?from=${from}&to=${to}`)).toEqual(want);
    expect(await ids(`/api/findings?from=${new Date(from).toISOString()}&to=${encodeURIComponent(new Date(to).toISOString())}`)).toEqual(want);
    expect(await ids(`/api/findings?from=2024-08-09T12:00:05&to=2024-08-09T14:00:12%2B02:00`)).toEqual(want);
  });

  it('run (default: all runs), order, limit', async () => {
    expect(await ids('/api/findings?run=replay-1')).toEqual(expectIds((f) => f.runId === 'replay-1'));
    expect(await ids('/api/findings?run=live&order=asc')).toEqual(expectIds((f) => f.runId === 'live', 'asc'));
    const r = await get('/api/findings?limit=4&order=asc');
    expect(r.body.items.map((f) => f.id)).toEqual(expectIds(() => true, 'asc').slice(0, 4));
    expect(r.body.total).toBe(seeded.length);
    expect(r.body.nextCursor).toBeTypeOf('string');
  });

  it('paginates with nextCursor over every row exactly once', async () => {
    const seen: string[] = [];
    let url = '/api/findings?limit=7&minSeverity=low';
    for (let i = 0; i < 20; i++) {
      const r = await get(url);
      expect(r.status).toBe(200);
      seen.push(...r.body.items.map((f) => f.id));
      if (!r.body.nextCursor) break;
      url = `/api/findings?limit=7&minSeverity=low&cursor=${r.body.nextCursor}`;
    }
    expect(seen).toEqual(expectIds((f) => f.severity !== 'info'));
  });

  it.each([
    ['limit=0', 'limit', /1-1000/],
    ['limit=1001', 'limit', /1-1000/],
    ['limit=ten', 'limit', /integer/],
    ['order=up', 'order', /asc or desc/],
    ['minSeverity=urgent', 'minSeverity', /info, low, medium, high, critical/],
    ['severity=urgent', 'severity', /info, low/],
    ['severity=low&minSeverity=high', 'severity', /minSeverity/],
    ['from=yesterday', 'from', /epoch milliseconds or an ISO-8601/],
    ['to=2024-13-45T99:00:00Z', 'to', /ISO-8601/],
    [`from=${T0 + 10}&to=${T0}`, 'to', /after from/],
    ['cursor=not-a-cursor', 'cursor', /cursor/],
    ['run=', 'run', /non-empty/],
    ['sevrity=high', 'sevrity', /unknown query parameter/],
    ['status=closed', 'status', /open, acknowledged, resolved, false_positive/],
    [`assignee=${'a'.repeat(201)}`, 'assignee', /at most 200 characters/],
  ])('400 for %s, naming %s', async (qs, param, expected) => {
    const r = await get(`/api/findings?${qs}`);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('VIGIL_ERR_BAD_REQUEST');
    expect(r.body.error.message).toContain(`'${param}'`);
    expect(r.body.error.message).toMatch(expected);
  });

  const INJECTIONS = ["x' OR 1=1 --", "binance') OR ('1'='1", "x'; DROP TABLE findings; --", 'x\\\' OR 1=1 --', "x' UNION SELECT * FROM system.users --", '{db}', '`findings`'];
  it.each(['detector', 'venue', 'symbol', 'account', 'run', 'assignee'])('treats SQL in the %s filter as data: nothing matches, nothing breaks', async (param) => {
    for (const attempt of INJECTIONS) {
      const r = await get(`/api/findings?${param}=${encodeURIComponent(attempt)}`);
      expect(r.status, `${param}=${attempt}`).toBe(200);
      expect(r.body.total, `${param}=${attempt}`).toBe(0);
    }
    expect((await get('/api/findings')).body.total).toBe(seeded.length);
  });

  it.each(['minSeverity', 'severity', 'status', 'from', 'to', 'limit', 'order', 'cursor'])('refuses SQL in the typed %s parameter with a 400 naming it', async (param) => {
    for (const attempt of INJECTIONS) {
      const r = await get(`/api/findings?${param}=${encodeURIComponent(attempt)}`);
      expect(r.status, `${param}=${attempt}`).toBe(400);
      expect(r.body.error.message).toContain(`'${param}'`);
    }
    expect((await get('/api/findings')).body.total).toBe(seeded.length);
  });

  it('treats SQL in values as data', async () => {
    expect((await get(`/api/findings?symbol=${encodeURIComponent("x' OR 1=1 --")}`)).body.total).toBe(0);
    expect((await get(`/api/findings?assignee=${encodeURIComponent("x' OR 1=1 --")}`)).body.total).toBe(0);
    expect((await get(`/api/findings?assignee=${encodeURIComponent("none') OR ('1'='1")}`)).body.total).toBe(0);
    expect((await get(`/api/findings?status=${encodeURIComponent("open' OR 1=1 --")}`)).status).toBe(400);
    expect((await get('/api/findings?status=open&assignee=none')).body.total).toBe(seeded.length);
    expect((await get('/api/findings')).body.total).toBe(seeded.length);
  });
});

describe('GET /api/findings/:id', () => {
  it('returns the finding, by run too', async () => {
    const f = seeded[27]!;
    const r = await app.inject({ method: 'GET', url: `/api/findings/${f.id}` });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toStrictEqual({ ...f, workflow: OPEN_WORKFLOW });
    expect((await app.inject({ method: 'GET', url: `/api/findings/${f.id}?run=replay-1` })).json()).toStrictEqual({ ...f, workflow: OPEN_WORKFLOW });
  });

  it('404 with the error shape for an unknown id or the wrong run', async () => {
    for (const url of [`/api/findings/${'0'.repeat(32)}`, `/api/findings/${seeded[27]!.id}?run=live`]) {
      const r = await app.inject({ method: 'GET', url });
      expect(r.statusCode).toBe(404);
      expect(r.json()).toMatchObject({ error: { code: 'VIGIL_ERR_NOT_FOUND', message: expect.stringContaining('not found') } });
    }
    const unknownRoute = await app.inject({ method: 'GET', url: '/api/nope' });
    expect(unknownRoute.statusCode).toBe(404);
    expect(unknownRoute.json().error.code).toBe('VIGIL_ERR_NOT_FOUND');
  });
});

describe('health and errors', () => {
  it('GET /healthz is 200 with a live store and 503 without', async () => {
    const ok = await app.inject({ method: 'GET', url: '/healthz' });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ status: 'ok', store: true });
    const down = await buildApi({ store: { ...store, ping: async () => false } as Store, hub: new AlertHub() });
    const r = await down.inject({ method: 'GET', url: '/healthz' });
    expect(r.statusCode).toBe(503);
    expect(r.json()).toEqual({ status: 'unavailable', store: false });
    await down.close();
  });

  it('an unexpected error is a 500 VIGIL_ERR_INTERNAL that leaks nothing', async () => {
    const broken = { ...store, searchFindings: async () => Promise.reject(new Error('secret: password=hunter2 at /srv/internal.ts')) } as Store;
    const a = await buildApi({ store: broken, hub: new AlertHub() });
    const r = await a.inject({ method: 'GET', url: '/api/findings' });
    expect(r.statusCode).toBe(500);
    expect(r.json()).toEqual({ error: { code: 'VIGIL_ERR_INTERNAL', message: 'internal error' } });
    expect(r.body).not.toContain('hunter2');
    await a.close();
  });
});

describe('POST /api/sql', () => {
  const post = (payload: unknown, headers: Record<string, string> = { 'x-vigil-sql-token': TOKEN }, target = app) =>
    target.inject({ method: 'POST', url: '/api/sql', payload: payload as object, headers });

  it('requires the token', async () => {
    const missing = await post({ query: 'SELECT 1' }, {});
    expect(missing.statusCode).toBe(401);
    expect(missing.json().error.code).toBe('VIGIL_ERR_UNAUTHORIZED');
    const wrong = await post({ query: 'SELECT 1' }, { 'x-vigil-sql-token': 'nope' });
    expect(wrong.statusCode).toBe(403);
    expect(wrong.json().error.code).toBe('VIGIL_ERR_FORBIDDEN');
  });

  it('is absent when no token is configured', async () => {
    const a = await buildApi({ store, hub: new AlertHub() });
    const r = await post({ query: 'SELECT 1' }, { 'x-vigil-sql-token': '' }, a);
    expect(r.statusCode).toBe(404);
    await a.close();
  });

  it('answers text in the requested format', async () => {
    const tsv = await post({ query: 'SELECT count() AS n FROM findings' });
    expect(tsv.statusCode).toBe(200);
    expect(tsv.headers['content-type']).toMatch(/tab-separated/);
    expect(tsv.body).toBe(`n\n${seeded.length}\n`);
    const json = await post({ query: "SELECT id FROM findings WHERE run_id = 'replay-1' ORDER BY ts", format: 'JSON' });
    expect(json.headers['content-type']).toMatch(/application\/json/);
    expect(JSON.parse(json.body).data.map((r: { id: string }) => r.id)).toEqual(seeded.filter((f) => f.runId === 'replay-1').map((f) => f.id));
  });

  it('400 for a bad body, a bad format, and a write', async () => {
    const badFormat = await post({ query: 'SELECT 1', format: 'XML' });
    expect(badFormat.statusCode).toBe(400);
    expect(badFormat.json().error.message).toMatch(/'format'.*JSONEachRow/);
    const noQuery = await post({ format: 'JSON' });
    expect(noQuery.statusCode).toBe(400);
    expect(noQuery.json().error.message).toContain("'query'");
    const write = await post({ query: 'DROP TABLE findings' });
    expect(write.statusCode).toBe(400);
    expect(write.json().error.code).toBe('VIGIL_ERR_SQL');
    const invalidJson = await app.inject({ method: 'POST', url: '/api/sql', payload: '{"query":', headers: { 'content-type': 'application/json', 'x-vigil-sql-token': TOKEN } });
    expect(invalidJson.statusCode).toBe(400);
    expect(invalidJson.json().error.code).toBe('VIGIL_ERR_BAD_REQUEST');
    expect((await get('/api/findings')).body.total).toBe(seeded.length);
  });

  it('413 for a body over the limit', async () => {
    const r = await post({ query: `SELECT '${'x'.repeat(1024 * 1024)}'` });
    expect(r.statusCode).toBe(413);
    expect(r.json().error.code).toBe('VIGIL_ERR_PAYLOAD_TOO_LARGE');
  });
});

// ------------------------------------------------------------------ WebSocket

interface Client {
  ws: WebSocket;
  messages: AlertMessage[];
  next(pred?: (m: AlertMessage) => boolean, timeoutMs?: number): Promise<AlertMessage>;
  closed: Promise<{ code: number; reason: string }>;
}

function connect(query: string, host = base): Promise<Client> {
  return new Promise((resolveConn, reject) => {
    const ws = new WebSocket(`ws://${host}/api/alerts${query}`);
    const messages: AlertMessage[] = [];
    let read = 0;
    const waiters: (() => void)[] = [];
    ws.on('message', (data) => {
      messages.push(JSON.parse(String(data)) as AlertMessage);
      for (const w of waiters.splice(0)) w();
    });
    const closed = new Promise<{ code: number; reason: string }>((r) => ws.on('close', (code, reason) => r({ code, reason: String(reason) })));
    const next = async (pred: (m: AlertMessage) => boolean = (m) => m.type !== 'heartbeat', timeoutMs = 5000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        while (read < messages.length) {
          const m = messages[read++]!;
          if (pred(m)) return m;
        }
        if (Date.now() > deadline) throw new Error(`no matching message within ${timeoutMs} ms`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
    };
    ws.once('open', () => resolveConn({ ws, messages, next, closed }));
    ws.once('error', reject);
  });
}

const findingsOf = (c: Client) => c.messages.filter((m): m is Extract<AlertMessage, { type: 'finding' }> => m.type === 'finding').map((m) => m.finding);
const until = async (cond: () => boolean, timeoutMs = 5000) => {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('GET /api/alerts (WebSocket)', () => {
  it('delivers published findings filtered server-side, and heartbeats', async () => {
    const c = await connect('?minSeverity=high&venue=binance&detector=price-jump,spread');
    const subscribers = hub.stats.subscribers;
    expect(subscribers).toBeGreaterThanOrEqual(1);
    const batch = Array.from({ length: 40 }, (_, n) => finding(100 + n));
    const want = batch.filter((f) => severityRank(f.severity) >= 3 && f.venue === 'binance' && ['price-jump', 'spread'].includes(f.detector));
    expect(want.length).toBeGreaterThan(0);
    expect(want.length).toBeLessThan(batch.length);
    hub.publish(batch);
    for (const f of want) expect(await c.next()).toEqual({ type: 'finding', finding: f });
    const hb = await c.next((m) => m.type === 'heartbeat');
    expect(hb).toMatchObject({ type: 'heartbeat', ts: expect.any(Number) });
    expect(findingsOf(c).map((f) => f.id)).toEqual(want.map((f) => f.id));
    c.ws.close();
    await c.closed;
    await until(() => hub.stats.subscribers === subscribers - 1);
  });

  it('filters by run and account', async () => {
    const c = await connect('?run=replay-9&account=acct-0');
    const batch = [finding(200, { runId: 'replay-9', account: 'acct-0' }), finding(201, { runId: 'live', account: 'acct-0' }), finding(202, { runId: 'replay-9', account: 'acct-1' })];
    hub.publish(batch);
    expect(await c.next()).toEqual({ type: 'finding', finding: batch[0] });
    hub.publish([finding(203, { runId: 'replay-9', account: 'acct-0' })]);
    expect(((await c.next()) as { finding: Finding }).finding.id).toBe(finding(203).id);
    c.ws.close();
  });

  it('resumes with since: first what was missed, then live', async () => {
    const batch = Array.from({ length: 6 }, (_, n) => finding(300 + n, { severity: 'critical' }));
    hub.publish(batch);
    const c = await connect(`?since=${batch[2]!.id}&minSeverity=critical`);
    for (const f of batch.slice(3)) expect(await c.next()).toEqual({ type: 'finding', finding: f });
    const live = finding(310, { severity: 'critical' });
    hub.publish([live]);
    expect(await c.next()).toEqual({ type: 'finding', finding: live });
    expect(findingsOf(c)).toHaveLength(4);
    c.ws.close();
  });

  it('says gap when since has left the buffer, then sends what is buffered', async () => {
    const c = await connect(`?since=${'e'.repeat(32)}&run=gap-run`);
    const first = await c.next();
    expect(first).toMatchObject({ type: 'gap', since: 'e'.repeat(32), buffered: expect.any(Number), message: expect.stringContaining('no longer buffered') });
    c.ws.close();
    const buffered = [finding(400, { runId: 'gap-run' }), finding(401, { runId: 'gap-run' })];
    hub.publish(buffered);
    const d = await connect(`?since=${'e'.repeat(32)}&run=gap-run`);
    expect((await d.next()).type).toBe('gap');
    expect(await d.next()).toEqual({ type: 'finding', finding: buffered[0] });
    expect(await d.next()).toEqual({ type: 'finding', finding: buffered[1] });
    d.ws.close();
  });

  it('rejects bad parameters with HTTP 400 before the upgrade', async () => {
    const status = await new Promise<number>((resolveStatus, reject) => {
      const ws = new WebSocket(`ws://${base}/api/alerts?minSeverity=urgent`);
      ws.on('unexpected-response', (_req, res) => {
        resolveStatus(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.on('open', () => reject(new Error('upgraded')));
      ws.on('error', () => undefined);
    });
    expect(status).toBe(400);
  });

  it('disconnects a client that does not read, keeps a fast one', async () => {
    const slowHub = new AlertHub({ maxQueueBytes: 2 * 1024 * 1024, maxInFlight: 8, bufferSize: 10 });
    const slowApp = await buildApi({ store, hub: slowHub, alerts: { heartbeatMs: 60_000, closeGraceMs: 20_000 } });
    await slowApp.listen({ host: '127.0.0.1', port: 0 });
    const port = (slowApp.server.address() as { port: number }).port;
    const host = `127.0.0.1:${port}`;
    try {
      const slow = await connect('', host);
      const fast = await connect('', host);
      slow.ws.pause(); // stops reading from the socket: the server's writes back up
      const big = 'x'.repeat(64 * 1024);
      const total = 700; // ~45 MB, more than the kernel buffers, in-flight window and queue together
      for (let n = 0; n < total && slowHub.stats.dropped === 0; n++) {
        slowHub.publish([finding(1000 + n, { summary: big })]);
        if (n % 4 === 0) await new Promise((r) => setTimeout(r, 1));
      }
      await until(() => slowHub.stats.dropped === 1, 10_000);
      expect(slowHub.stats.subscribers).toBe(1);
      const published = slowHub.stats.published;
      // The fast client is still subscribed and gets everything published.
      await until(() => findingsOf(fast).length === published, 10_000);
      // The slow one, once it reads again, finds the close frame after what was already sent.
      slow.ws.resume();
      const { code, reason } = await slow.closed;
      expect(code).toBe(4008);
      expect(reason).toMatch(/slow consumer/);
      expect(findingsOf(slow).length).toBeLessThan(published);
      fast.ws.close();
    } finally {
      await slowApp.close();
    }
  });
});
