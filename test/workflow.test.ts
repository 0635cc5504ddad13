// Analyst workflow (status, assignment, notes, history), the workflow search filters, snoozes and the
// SnoozeBook (src/storage/workflow.ts, src/api/routes/workflow.ts, src/api/snoozes.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertHub } from '../src/api/alert-hub.ts';
import { buildApi } from '../src/api/server.ts';
import { SnoozeBook } from '../src/api/snoozes.ts';
import { issueApiKey } from '../src/core/api-keys.ts';
import type { Finding } from '../src/core/events.ts';
import { findingId } from '../src/core/ids.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import type { Store } from '../src/storage/types.ts';
import type { FindingAction, FindingWorkflow, Snooze } from '../src/storage/workflow.ts';

const T0 = Date.UTC(2024, 7, 9, 12, 0, 0);
const DAY = 24 * 3600_000;

function finding(n: number, over: Partial<Finding> = {}): Finding {
  return {
    id: findingId('price_jump', 'pj', `k${n}`, `t${n}`),
    runId: 'live',
    detector: n % 2 === 0 ? 'price_jump' : 'spoofing',
    ruleId: n % 2 === 0 ? 'pj' : 'sp',
    severity: 'high',
    score: n,
    venue: n % 3 === 0 ? 'okx' : 'binance',
    symbol: n % 4 < 2 ? 'BTC-USDT' : 'ETH-USDT',
    ...(n % 2 === 1 ? { account: `acct-${n % 3}` } : {}),
    key: `k${n}`,
    ts: T0 + n * 1000,
    windowStart: T0 + n * 1000 - 60_000,
    windowEnd: T0 + n * 1000,
    summary: `finding ${n}`,
    evidence: { observed: { z: n }, baseline: {}, threshold: { z: 8 }, triggers: [`trade:${n}`] },
    ...over,
  };
}

// 0-19: the filter and pagination set; 20-59: transitions and other tests (each their own finding).
const FINDINGS = Array.from({ length: 60 }, (_, n) => finding(n));
const F = (n: number) => FINDINGS[n]!;

let dir: string;
let store: Store;
let app: FastifyInstance;
let book: SnoozeBook;
const keys = { viewer: '', alice: '', bob: '' };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-workflow-'));
  store = await openStore({ dataDir: dir });
  await store.insertFindings(FINDINGS);
  keys.viewer = (await issueApiKey(store, 'vera', 'viewer')).key;
  keys.alice = (await issueApiKey(store, 'alice', 'analyst')).key;
  keys.bob = (await issueApiKey(store, 'bob', 'analyst')).key;
  book = new SnoozeBook(store, { refreshMs: 60_000 });
  await book.start();
  app = await buildApi({ store, hub: new AlertHub(), security: { auth: true }, snoozes: book });
}, 60_000);

afterAll(async () => {
  book?.stop();
  await app?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

type Who = keyof typeof keys;
async function call(method: InjectOptions['method'], url: string, payload?: unknown, who: Who = 'alice') {
  const opts: InjectOptions = { method, url, headers: { authorization: `Bearer ${keys[who]}` } };
  if (payload !== undefined) opts.payload = payload as object;
  const res = await app.inject(opts);
  return { status: res.statusCode, body: res.json() as Record<string, any> };
}
const post = (url: string, payload: unknown, who: Who = 'alice') => call('POST', url, payload, who);
const get = (url: string, who: Who = 'viewer') => call('GET', url, undefined, who);
const setStatus = (n: number, status: string, note?: string, who: Who = 'alice') => post(`/api/findings/${F(n).id}/status`, note === undefined ? { status } : { status, note }, who);

interface ActionRow {
  ts: number;
  run_id: string;
  finding_id: string;
  actor: string;
  action: string;
  from_status: string;
  to_status: string;
  assignee: string | null;
  note: string;
}
async function auditRows(n: number): Promise<ActionRow[]> {
  // Straight from the audit table (the SQL route's engine), not through the store's own readers.
  const text = await store.sql(
    `SELECT toUnixTimestamp64Milli(ts) AS ts, run_id, finding_id, actor, action, from_status, to_status, assignee, note FROM finding_actions WHERE finding_id = '${F(n).id}' ORDER BY seq`,
    'JSONEachRow',
  );
  return text
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const r = JSON.parse(l) as ActionRow;
      return { ...r, ts: Number(r.ts) };
    });
}

const OPEN: FindingWorkflow = { status: 'open', assignee: null, updatedAt: null, updatedBy: null };

describe('findings carry their workflow', () => {
  it('open and unassigned until something is done, in the search and by id', async () => {
    const r = await get('/api/findings?limit=1000');
    expect(r.status).toBe(200);
    expect(r.body.items).toHaveLength(FINDINGS.length);
    for (const f of r.body.items as (Finding & { workflow: FindingWorkflow })[]) {
      const { workflow, ...rest } = f;
      expect(rest).toStrictEqual(FINDINGS.find((x) => x.id === f.id));
      expect(workflow).toStrictEqual(OPEN);
    }
    const one = await get(`/api/findings/${F(59).id}`);
    expect(one.body.workflow).toStrictEqual(OPEN);
  });

  it('after a change, by id and in the search, with who and when', async () => {
    const before = Date.now();
    expect((await setStatus(59, 'acknowledged')).status).toBe(200);
    const after = Date.now();
    const one = (await get(`/api/findings/${F(59).id}`)).body.workflow as FindingWorkflow;
    expect(one).toMatchObject({ status: 'acknowledged', assignee: null, updatedBy: 'api:alice' });
    expect(one.updatedAt).toBeGreaterThanOrEqual(before);
    expect(one.updatedAt).toBeLessThanOrEqual(after);
    const inSearch = (await get(`/api/findings?limit=1000`)).body.items.find((f: Finding) => f.id === F(59).id);
    expect(inSearch.workflow).toStrictEqual(one);
  });
});

describe('status transitions', () => {
  // The contract, written out here rather than imported, so the code is checked against it.
  const ALLOWED: Record<string, string[]> = {
    open: ['acknowledged', 'resolved', 'false_positive'],
    acknowledged: ['resolved', 'false_positive', 'open'],
    resolved: ['open'],
    false_positive: ['open'],
  };
  const STATUSES = Object.keys(ALLOWED);
  const cases = STATUSES.flatMap((from, i) => STATUSES.map((to, j) => ({ from, to, n: 20 + i * 4 + j })));

  it.each(cases)('$from → $to', async ({ from, to, n }) => {
    if (from !== 'open') expect((await setStatus(n, from)).status).toBe(200);
    const r = await setStatus(n, to, `to ${to}`);
    const legal = ALLOWED[from]!.includes(to);
    expect(r.status, JSON.stringify(r.body)).toBe(legal ? 200 : 409);
    const now = (await get(`/api/findings/${F(n).id}`)).body.workflow as FindingWorkflow;
    if (legal) {
      expect(r.body.workflow).toMatchObject({ status: to, updatedBy: 'api:alice' });
      expect(r.body.action).toMatchObject({ action: 'status', actor: 'api:alice', fromStatus: from, toStatus: to, note: `to ${to}` });
      expect(now.status).toBe(to);
    } else {
      expect(r.body.error.code).toBe('VIGIL_ERR_CONFLICT');
      expect(r.body.error.message).toContain(from);
      expect(now.status).toBe(from); // unchanged
      // Nothing recorded for a refused transition.
      expect((await auditRows(n)).filter((a) => a.note === `to ${to}`)).toEqual([]);
    }
  });
});

describe('audit trail', () => {
  it('records actor, note and time of every action in ClickHouse, and the history in order', async () => {
    const n = 40;
    const t0 = Date.now();
    expect((await setStatus(n, 'acknowledged', 'looking', 'alice')).status).toBe(200);
    expect((await post(`/api/findings/${F(n).id}/notes`, { note: 'asked the desk' }, 'bob')).status).toBe(201);
    expect((await post(`/api/findings/${F(n).id}/assign`, { assignee: 'bob', note: 'yours' }, 'alice')).status).toBe(200);
    expect((await setStatus(n, 'resolved', undefined, 'bob')).status).toBe(200);
    expect((await setStatus(n, 'open', 'reopened: it came back', 'alice')).status).toBe(200);
    const t1 = Date.now();

    const want = [
      { actor: 'api:alice', action: 'status', from_status: 'open', to_status: 'acknowledged', assignee: null, note: 'looking' },
      { actor: 'api:bob', action: 'note', from_status: 'acknowledged', to_status: 'acknowledged', assignee: null, note: 'asked the desk' },
      { actor: 'api:alice', action: 'assign', from_status: 'acknowledged', to_status: 'acknowledged', assignee: 'bob', note: 'yours' },
      { actor: 'api:bob', action: 'status', from_status: 'acknowledged', to_status: 'resolved', assignee: 'bob', note: '' },
      { actor: 'api:alice', action: 'status', from_status: 'resolved', to_status: 'open', assignee: 'bob', note: 'reopened: it came back' },
    ];
    const rows = await auditRows(n);
    expect(rows.map(({ ts: _ts, run_id: _r, finding_id: _f, ...rest }) => rest)).toEqual(want);
    for (const r of rows) {
      expect(r.run_id).toBe('live');
      expect(r.ts).toBeGreaterThanOrEqual(t0);
      expect(r.ts).toBeLessThanOrEqual(t1);
    }
    expect(rows.map((r) => r.ts)).toEqual([...rows.map((r) => r.ts)].sort((a, b) => a - b));

    const history = await get(`/api/findings/${F(n).id}/history`);
    expect(history.status).toBe(200);
    expect(history.body.items as FindingAction[]).toEqual(
      rows.map((r) => ({ ts: r.ts, actor: r.actor, action: r.action, fromStatus: r.from_status, toStatus: r.to_status, assignee: r.assignee, note: r.note === '' ? null : r.note })),
    );
    // A note changes no state: the workflow is the reopen's.
    const wf = (await get(`/api/findings/${F(n).id}`)).body.workflow as FindingWorkflow;
    expect(wf).toEqual({ status: 'open', assignee: 'bob', updatedAt: rows[4]!.ts, updatedBy: 'api:alice' });
  });

  it('a note alone leaves the workflow untouched', async () => {
    const n = 41;
    const r = await post(`/api/findings/${F(n).id}/notes`, { note: 'first look' });
    expect(r.status).toBe(201);
    expect(r.body.action).toMatchObject({ action: 'note', fromStatus: 'open', toStatus: 'open', note: 'first look', actor: 'api:alice' });
    expect((await get(`/api/findings/${F(n).id}`)).body.workflow).toStrictEqual(OPEN);
    expect((await get(`/api/findings/${F(n).id}/history`)).body.items).toHaveLength(1);
  });

  it('two simultaneous acknowledges: one 200, one 409, one action recorded', async () => {
    const n = 42;
    const [a, b] = await Promise.all([setStatus(n, 'acknowledged', 'mine', 'alice'), setStatus(n, 'acknowledged', 'no, mine', 'bob')]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    const winner = a.status === 200 ? 'api:alice' : 'api:bob';
    const rows = await auditRows(n);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ actor: winner, from_status: 'open', to_status: 'acknowledged' });
    expect((await get(`/api/findings/${F(n).id}`)).body.workflow.updatedBy).toBe(winner);
    // Many at once, from several states: exactly the legal ones pass.
    const m = 43;
    const burst = await Promise.all(Array.from({ length: 6 }, (_, i) => setStatus(m, i % 2 === 0 ? 'resolved' : 'false_positive')));
    expect(burst.filter((r) => r.status === 200)).toHaveLength(1);
    expect(burst.filter((r) => r.status === 409)).toHaveLength(5);
    expect(await auditRows(m)).toHaveLength(1);
  });

  it('run picks the run when several runs hold the id', async () => {
    const twin = { ...F(44), runId: 'replay-7' };
    await store.insertFindings([twin]);
    expect((await post(`/api/findings/${twin.id}/status`, { status: 'resolved', run: 'replay-7' })).status).toBe(200);
    expect((await get(`/api/findings/${twin.id}?run=replay-7`)).body.workflow.status).toBe('resolved');
    expect((await get(`/api/findings/${twin.id}?run=live`)).body.workflow.status).toBe('open');
    expect((await get(`/api/findings/${twin.id}/history?run=live`)).body.items).toEqual([]);
    expect((await get(`/api/findings/${twin.id}/history?run=replay-7`)).body.items).toHaveLength(1);
    expect((await post(`/api/findings/${twin.id}/status`, { status: 'resolved', run: 'nope' })).status).toBe(404);
  });
});

describe('assignment and the workflow filters', () => {
  // Filter set: findings 0-19. Model of what the API should hold after the changes below.
  const state = new Map<number, { status: string; assignee: string | null }>();
  const model = (n: number) => state.get(n) ?? { status: 'open', assignee: null };
  const expectIds = (pred: (n: number) => boolean) =>
    Array.from({ length: 20 }, (_, n) => n)
      .filter(pred)
      .sort((a, b) => b - a)
      .map((n) => F(n).id);
  const ids = async (qs: string) => {
    const r = await get(`/api/findings?limit=1000&to=${T0 + 20_000}&${qs}`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.total).toBe(r.body.items.length);
    return (r.body.items as Finding[]).map((f) => f.id);
  };

  beforeAll(async () => {
    const changes: [number, 'status' | 'assign', string | null][] = [
      [1, 'status', 'acknowledged'],
      [2, 'status', 'acknowledged'],
      [3, 'status', 'resolved'],
      [4, 'status', 'false_positive'],
      [5, 'status', 'acknowledged'],
      [5, 'status', 'open'], // back to open: has a row, but is open
      [6, 'assign', 'alice'],
      [7, 'assign', 'bob'],
      [2, 'assign', 'alice'],
      [8, 'assign', 'carol'],
      [8, 'assign', null], // unassigned again
      [9, 'status', 'resolved'],
      [9, 'assign', 'bob'],
      [11, 'status', 'acknowledged'],
      [11, 'status', 'resolved'],
    ];
    for (const [n, kind, value] of changes) {
      const r = kind === 'status' ? await setStatus(n, value!) : await post(`/api/findings/${F(n).id}/assign`, { assignee: value });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      const s = { ...model(n) };
      if (kind === 'status') s.status = value!;
      else s.assignee = value;
      state.set(n, s);
      if (kind === 'assign') expect(r.body.workflow).toMatchObject({ assignee: value, status: s.status });
    }
  });

  it('status: one, several, open (with and without a workflow row)', async () => {
    expect(await ids('status=acknowledged')).toEqual(expectIds((n) => model(n).status === 'acknowledged'));
    expect(await ids('status=resolved,false_positive')).toEqual(expectIds((n) => ['resolved', 'false_positive'].includes(model(n).status)));
    const open = await ids('status=open');
    expect(open).toEqual(expectIds((n) => model(n).status === 'open'));
    expect(open).toContain(F(5).id);
    expect(await ids('status=open&status=acknowledged')).toEqual(expectIds((n) => ['open', 'acknowledged'].includes(model(n).status)));
    expect(await ids('status=open,acknowledged,resolved,false_positive')).toEqual(expectIds(() => true));
  });

  it('assignee: names, none (unassigned, also after an unassign), and both', async () => {
    expect(await ids('assignee=alice')).toEqual(expectIds((n) => model(n).assignee === 'alice'));
    expect(await ids('assignee=alice,bob')).toEqual(expectIds((n) => ['alice', 'bob'].includes(model(n).assignee ?? '')));
    const none = await ids('assignee=none');
    expect(none).toEqual(expectIds((n) => model(n).assignee === null));
    expect(none).toContain(F(8).id);
    expect(await ids('assignee=none,bob')).toEqual(expectIds((n) => model(n).assignee === null || model(n).assignee === 'bob'));
    expect(await ids('assignee=carol')).toEqual([]);
  });

  it('combined with each other and with the other filters', async () => {
    expect(await ids('status=acknowledged&assignee=alice')).toEqual(expectIds((n) => model(n).status === 'acknowledged' && model(n).assignee === 'alice'));
    expect(await ids('status=open&assignee=none&detector=spoofing')).toEqual(expectIds((n) => model(n).status === 'open' && model(n).assignee === null && F(n).detector === 'spoofing'));
    expect(await ids('status=resolved&assignee=bob&symbol=ETH-USDT')).toEqual(expectIds((n) => model(n).status === 'resolved' && model(n).assignee === 'bob' && F(n).symbol === 'ETH-USDT'));
  });

  it('paginates with the status filter: every match once, total constant', async () => {
    for (const [qs, pred] of [
      ['status=open', (n: number) => model(n).status === 'open'],
      ['status=acknowledged,resolved&order=asc', (n: number) => ['acknowledged', 'resolved'].includes(model(n).status)],
    ] as const) {
      const want = expectIds(pred);
      const asc = qs.includes('order=asc');
      const seen: string[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 30; i++) {
        const r = await get(`/api/findings?limit=3&to=${T0 + 20_000}&${qs}${cursor ? `&cursor=${cursor}` : ''}`);
        expect(r.status).toBe(200);
        expect(r.body.total).toBe(want.length);
        expect(r.body.items.length).toBeLessThanOrEqual(3);
        seen.push(...(r.body.items as Finding[]).map((f) => f.id));
        cursor = r.body.nextCursor as string | null;
        if (!cursor) break;
      }
      expect(seen).toEqual(asc ? [...want].reverse() : want);
    }
  });

  it('assign validation: none is reserved, null unassigns', async () => {
    const r = await post(`/api/findings/${F(12).id}/assign`, { assignee: 'none' });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain("'assignee'");
    const u = await post(`/api/findings/${F(12).id}/assign`, { assignee: null });
    expect(u.status).toBe(200);
    expect(u.body.workflow.assignee).toBeNull();
    expect(u.body.action).toMatchObject({ action: 'assign', assignee: null });
  });
});

describe('validation', () => {
  const id = () => F(45).id;
  it.each([
    ['status', () => `/api/findings/${id()}/status`, { status: 'closed' }, 'status'],
    ['status', () => `/api/findings/${id()}/status`, {}, 'status'],
    ['status', () => `/api/findings/${id()}/status`, { status: 'resolved', note: 'x'.repeat(4001) }, 'note'],
    ['status', () => `/api/findings/${id()}/status`, { status: 'resolved', run: '' }, 'run'],
    ['status', () => `/api/findings/${id()}/status`, { status: 'resolved', by: 'me' }, 'by'],
    ['assign', () => `/api/findings/${id()}/assign`, {}, 'assignee'],
    ['assign', () => `/api/findings/${id()}/assign`, { assignee: 42 }, 'assignee'],
    ['assign', () => `/api/findings/${id()}/assign`, { assignee: '' }, 'assignee'],
    ['notes', () => `/api/findings/${id()}/notes`, { note: '   ' }, 'note'],
    ['notes', () => `/api/findings/${id()}/notes`, {}, 'note'],
    ['snooze', () => '/api/snoozes', { symbol: 'BTC-USDT', until: Date.now() + DAY }, 'detector'],
    ['snooze', () => '/api/snoozes', { detector: 'price_jump', until: Date.now() + DAY }, 'symbol'],
    ['snooze', () => '/api/snoozes', { detector: 'price_jump', account: 'a', venue: 'okx', until: Date.now() + DAY }, 'venue'],
    ['snooze', () => '/api/snoozes', { detector: 'price_jump', symbol: 'BTC-USDT', until: Date.now() - 1000 }, 'until'],
    ['snooze', () => '/api/snoozes', { detector: 'price_jump', symbol: 'BTC-USDT', until: Date.now() + 91 * DAY }, 'until'],
    ['snooze', () => '/api/snoozes', { detector: 'price_jump', symbol: 'BTC-USDT', until: 'tomorrow' }, 'until'],
    ['snooze', () => '/api/snoozes', { detector: 'price_jump', symbol: 'BTC-USDT' }, 'until'],
    ['snooze', () => '/api/snoozes', { detector: '', symbol: 'BTC-USDT', until: Date.now() + DAY }, 'detector'],
  ])('%s: 400 naming %j → %s', async (_what, url, payload, field) => {
    const r = await post(url(), payload);
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expect(r.body.error.code).toBe('VIGIL_ERR_BAD_REQUEST');
    expect(r.body.error.message).toContain(`'${field}'`);
  });

  it('bad query parameters, bodies that are not objects, unknown findings and snoozes', async () => {
    for (const [url, param] of [
      ['/api/findings?status=closed', 'status'],
      ['/api/findings?status=open,done', 'status'],
      [`/api/findings?assignee=${'x'.repeat(201)}`, 'assignee'],
      ['/api/snoozes?active=yes', 'active'],
      ['/api/snoozes?limit=0', 'limit'],
      [`/api/findings/${id()}/history?runn=x`, 'runn'],
    ]) {
      const r = await get(url!);
      expect(r.status, url).toBe(400);
      expect(r.body.error.message).toContain(`'${param}'`);
    }
    const notJson = await app.inject({ method: 'POST', url: `/api/findings/${id()}/status`, payload: '"acknowledged"', headers: { authorization: `Bearer ${keys.alice}`, 'content-type': 'application/json' } });
    expect(notJson.statusCode).toBe(400);
    const missing = '0'.repeat(32);
    for (const [method, url, payload] of [
      ['POST', `/api/findings/${missing}/status`, { status: 'acknowledged' }],
      ['POST', `/api/findings/${missing}/assign`, { assignee: 'alice' }],
      ['POST', `/api/findings/${missing}/notes`, { note: 'x' }],
      ['GET', `/api/findings/${missing}/history`, undefined],
      ['DELETE', '/api/snoozes/snz_0000000000000000', undefined],
    ] as const) {
      const r = await call(method, url, payload);
      expect(r.status, url).toBe(404);
      expect(r.body.error.code).toBe('VIGIL_ERR_NOT_FOUND');
    }
  });

  it('roles: a viewer reads but cannot write', async () => {
    expect((await setStatus(45, 'acknowledged', undefined, 'viewer')).status).toBe(403);
    expect((await post('/api/snoozes', { detector: 'x', symbol: 'y', until: Date.now() + DAY }, 'viewer')).status).toBe(403);
    expect((await get(`/api/findings/${id()}/history`, 'viewer')).status).toBe(200);
    expect((await get('/api/snoozes', 'viewer')).status).toBe(200);
  });
});

describe('injection attempts are data', () => {
  const evil = ["x' OR 1=1 --", "'); DROP TABLE findings; --", "open') OR ('1'='1", '\\\'; SELECT 1; --'];

  it('in the workflow filters', async () => {
    const total = (await get('/api/findings?limit=1')).body.total as number;
    expect(total).toBeGreaterThanOrEqual(FINDINGS.length);
    for (const e of evil) {
      const s = await get(`/api/findings?status=${encodeURIComponent(e)}`);
      expect(s.status).toBe(400); // not a status
      const a = await get(`/api/findings?assignee=${encodeURIComponent(e)}`);
      expect(a.status).toBe(200);
      expect(a.body.total).toBe(0);
    }
    expect((await get('/api/findings?limit=1')).body.total).toBe(total);
  });

  it('in assignees, notes and snoozes: stored and found literally', async () => {
    const n = 46;
    const name = evil[1]!;
    const r = await post(`/api/findings/${F(n).id}/assign`, { assignee: name, note: evil[0] });
    expect(r.status).toBe(200);
    expect((await get(`/api/findings/${F(n).id}`)).body.workflow.assignee).toBe(name);
    expect((await get(`/api/findings?assignee=${encodeURIComponent(name)}`)).body.items.map((f: Finding) => f.id)).toEqual([F(n).id]);
    expect((await get(`/api/findings/${F(n).id}/history`)).body.items[0]).toMatchObject({ assignee: name, note: evil[0] });
    const s = await post('/api/snoozes', { detector: evil[2], symbol: evil[3], until: Date.now() + DAY, note: evil[1] });
    expect(s.status).toBe(201);
    expect(s.body).toMatchObject({ detector: evil[2], symbol: evil[3], note: evil[1] });
    expect((await get('/api/snoozes')).body.items.find((x: Snooze) => x.id === s.body.id)).toEqual(s.body);
    expect((await call('DELETE', `/api/snoozes/${encodeURIComponent(evil[0]!)}`)).status).toBe(404);
    expect((await get('/api/findings?limit=1')).body.total).toBeGreaterThanOrEqual(FINDINGS.length);
  });
});

describe('snoozes', () => {
  it('create, list, cancel (idempotent), audited; the book follows at once', async () => {
    const until = Date.now() + DAY;
    const t0 = Date.now();
    const created = await post('/api/snoozes', { detector: 'price_jump', symbol: 'BTC-USDT', venue: 'binance', until, note: 'known maintenance' }, 'bob');
    expect(created.status).toBe(201);
    const s = created.body as Snooze;
    expect(s).toEqual({
      id: expect.stringMatching(/^snz_[0-9a-f]{16}$/),
      detector: 'price_jump',
      ruleId: null,
      symbol: 'BTC-USDT',
      venue: 'binance',
      account: null,
      until,
      createdAt: expect.any(Number),
      createdBy: 'api:bob',
      note: 'known maintenance',
      cancelledAt: null,
      cancelledBy: null,
    });
    expect(s.createdAt).toBeGreaterThanOrEqual(t0);
    const covered = finding(100, { detector: 'price_jump', venue: 'binance', symbol: 'BTC-USDT' });
    expect(book.matches(covered)?.id).toBe(s.id);
    expect(book.filter([covered, finding(101, { detector: 'price_jump', venue: 'okx', symbol: 'BTC-USDT' })]).map((f) => f.key)).toEqual(['k101']);

    const all = (await get('/api/snoozes')).body.items as Snooze[];
    expect(all[0]).toEqual(s); // newest first
    expect(((await get('/api/snoozes?active=true')).body.items as Snooze[]).map((x) => x.id)).toContain(s.id);

    const cancelled = await call('DELETE', `/api/snoozes/${s.id}`, undefined, 'alice');
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ ...s, cancelledBy: 'api:alice', cancelledAt: expect.any(Number) });
    expect(book.matches(covered)).toBeUndefined();
    const again = await call('DELETE', `/api/snoozes/${s.id}`, undefined, 'bob');
    expect(again.status).toBe(200);
    expect(again.body).toEqual(cancelled.body);
    expect(((await get('/api/snoozes?active=true')).body.items as Snooze[]).map((x) => x.id)).not.toContain(s.id);
    expect(((await get('/api/snoozes?active=false')).body.items as Snooze[]).find((x) => x.id === s.id)).toEqual(cancelled.body);

    const audit = await store.sql(`SELECT action, actor, toUnixTimestamp64Milli(ts) AS ts, note FROM snooze_actions WHERE snooze_id = '${s.id}' ORDER BY ts, action DESC`, 'JSONEachRow');
    const rows = audit.trim().split('\n').map((l) => JSON.parse(l) as { action: string; actor: string; ts: string; note: string });
    expect(rows.map((r) => [r.action, r.actor, Number(r.ts)])).toEqual([
      ['create', 'api:bob', s.createdAt],
      ['cancel', 'api:alice', cancelled.body.cancelledAt],
    ]);
  });

  it('the book loads active snoozes from the store: made elsewhere, expired, cancelled', async () => {
    const now = Date.now();
    // Made directly on the store (as another API process would): not in the book until it reloads.
    const elsewhere = await store.createSnooze({ ruleId: 'sp', account: 'acct-1', until: now + DAY, createdBy: 'api:other' });
    const later = await store.createSnooze({ detector: 'spoofing', account: 'acct-2', until: now + 2 * DAY, createdBy: 'api:other' });
    const expired = await store.createSnooze({ detector: 'layering', account: 'acct-2', createdAt: now - 10_000, until: now - 5_000, createdBy: 'api:other' });
    const gone = await store.createSnooze({ detector: 'spoofing', account: 'acct-0', until: now + DAY, createdBy: 'api:other' });
    await store.cancelSnooze(gone.id, 'api:other');
    const f1 = finding(103, { detector: 'spoofing', ruleId: 'sp', account: 'acct-1' });
    const f2 = finding(104, { detector: 'spoofing', ruleId: 'sp2', account: 'acct-2' });
    const f3 = finding(105, { detector: 'layering', ruleId: 'ly', account: 'acct-2' });
    const f0 = finding(106, { detector: 'spoofing', ruleId: 'sp', account: 'acct-0' });
    expect(book.matches(f1)).toBeUndefined();
    await book.refresh();
    expect(book.matches(f1)?.id).toBe(elsewhere.id);
    expect(book.matches(f2)?.id).toBe(later.id);
    expect(book.matches(f2, later.until - 1)?.id).toBe(later.id);
    expect(book.matches(f2, later.until)).toBeUndefined(); // until is exclusive
    expect(book.matches(f3)).toBeUndefined();
    expect(book.matches(f0)).toBeUndefined();
    const active = (await store.listSnoozes({ active: true })).map((s) => s.id);
    expect(active).toEqual(expect.arrayContaining([elsewhere.id, later.id]));
    expect(active).not.toContain(expired.id);
    expect(active).not.toContain(gone.id);
    const every = (await store.listSnoozes()).map((s) => s.id);
    expect(every).toEqual(expect.arrayContaining([elsewhere.id, later.id, expired.id, gone.id]));
  });
});

describe('SnoozeBook.matches', () => {
  const NOW = Date.UTC(2025, 0, 1);
  let seq = 0;
  const snooze = (over: Partial<Snooze>): Snooze => ({
    id: `snz_${++seq}`,
    detector: null,
    ruleId: null,
    symbol: null,
    venue: null,
    account: null,
    until: NOW + DAY,
    createdAt: NOW - 1000,
    createdBy: 'api:t',
    note: null,
    cancelledAt: null,
    cancelledBy: null,
    ...over,
  });
  const bookOf = async (list: Snooze[]) => {
    const b = new SnoozeBook({ listSnoozes: async () => list });
    await b.refresh();
    return b;
  };
  const f = (over: Partial<Finding>) => finding(200, { detector: 'price_jump', ruleId: 'pj', venue: 'binance', symbol: 'BTC-USDT', ...over });

  it('by detector or by rule id, and both', async () => {
    const byDetector = snooze({ detector: 'price_jump', symbol: 'BTC-USDT' });
    const byRule = snooze({ ruleId: 'pj-strict', symbol: 'BTC-USDT' });
    const both = snooze({ detector: 'spoofing', ruleId: 'sp', symbol: 'BTC-USDT' });
    const b = await bookOf([byDetector, byRule, both]);
    expect(b.matches(f({}), NOW)?.id).toBe(byDetector.id);
    expect(b.matches(f({ detector: 'volume_spike', ruleId: 'pj-strict' }), NOW)?.id).toBe(byRule.id);
    expect(b.matches(f({ detector: 'volume_spike', ruleId: 'pj' }), NOW)).toBeUndefined();
    expect(b.matches(f({ detector: 'spoofing', ruleId: 'sp' }), NOW)?.id).toBe(both.id);
    expect(b.matches(f({ detector: 'spoofing', ruleId: 'sp-other' }), NOW)).toBeUndefined();
    expect(b.matches(f({ detector: 'layering', ruleId: 'sp' }), NOW)).toBeUndefined();
  });

  it('by symbol (any venue or one venue) and by account', async () => {
    const anyVenue = snooze({ detector: 'price_jump', symbol: 'ETH-USDT' });
    const oneVenue = snooze({ detector: 'price_jump', symbol: 'BTC-USDT', venue: 'okx' });
    const account = snooze({ detector: 'spoofing', account: 'acct-9' });
    const symbolAndAccount = snooze({ detector: 'layering', symbol: 'BTC-USDT', account: 'acct-9' });
    const b = await bookOf([anyVenue, oneVenue, account, symbolAndAccount]);
    expect(b.matches(f({ symbol: 'ETH-USDT', venue: 'kraken' }), NOW)?.id).toBe(anyVenue.id);
    expect(b.matches(f({ symbol: 'ETH-USDT', venue: undefined }), NOW)?.id).toBe(anyVenue.id);
    expect(b.matches(f({ venue: 'okx' }), NOW)?.id).toBe(oneVenue.id);
    expect(b.matches(f({ venue: 'binance' }), NOW)).toBeUndefined();
    expect(b.matches(f({ venue: undefined }), NOW)).toBeUndefined();
    expect(b.matches(f({ detector: 'spoofing', account: 'acct-9', symbol: 'SOL-USDT' }), NOW)?.id).toBe(account.id);
    expect(b.matches(f({ detector: 'spoofing', account: 'acct-8' }), NOW)).toBeUndefined();
    expect(b.matches(f({ detector: 'spoofing' }), NOW)).toBeUndefined(); // no account on the finding
    expect(b.matches(f({ detector: 'layering', account: 'acct-9' }), NOW)?.id).toBe(symbolAndAccount.id);
    expect(b.matches(f({ detector: 'layering', account: 'acct-8' }), NOW)).toBeUndefined();
    expect(b.matches(f({ detector: 'layering', symbol: 'ETH-USDT', account: 'acct-9' }), NOW)).toBeUndefined();
  });

  it('expiry and cancellation', async () => {
    const s = snooze({ detector: 'price_jump', symbol: 'BTC-USDT', until: NOW + 1000 });
    const b = await bookOf([s, snooze({ detector: 'price_jump', symbol: 'BTC-USDT', cancelledAt: NOW - 1, cancelledBy: 'x' })]);
    expect(b.size).toBe(1); // a cancelled one is never held
    expect(b.matches(f({}), NOW + 999)?.id).toBe(s.id);
    expect(b.matches(f({}), NOW + 1000)).toBeUndefined();
    b.put({ ...s, cancelledAt: NOW, cancelledBy: 'api:t' });
    expect(b.matches(f({}), NOW)).toBeUndefined();
    expect(b.size).toBe(0);
  });

  it('filter keeps the unsnoozed, in order, and counts the rest', async () => {
    const b = await bookOf([snooze({ detector: 'price_jump', symbol: 'BTC-USDT' })]);
    const batch = [f({ key: 'a' }), f({ key: 'b', symbol: 'ETH-USDT' }), f({ key: 'c' }), f({ key: 'd', detector: 'spoofing' })];
    expect(b.filter(batch, NOW).map((x) => x.key)).toEqual(['b', 'd']);
    expect(b.suppressed).toBe(2);
    const none = await bookOf([]);
    expect(none.filter(batch, NOW)).toBe(batch);
  });

  it('a reload that started earlier and ends later is discarded', async () => {
    const early = snooze({ detector: 'old', symbol: 'X' });
    const late = snooze({ detector: 'new', symbol: 'X' });
    let release!: () => void;
    let calls = 0;
    const b = new SnoozeBook({
      listSnoozes: async () => {
        if (++calls === 1) {
          await new Promise<void>((r) => (release = r));
          return [early];
        }
        return [late];
      },
    });
    const first = b.refresh();
    await b.refresh();
    release();
    await first;
    expect(b.matches(f({ detector: 'new', symbol: 'X' }), NOW)?.id).toBe(late.id);
    expect(b.matches(f({ detector: 'old', symbol: 'X' }), NOW)).toBeUndefined();
  });
});

describe('a snooze keeps findings out of the live feed, not out of the store', () => {
  it('a hub with the book as its suppressor publishes only unsnoozed findings; all stay searchable', async () => {
    const live = new AlertHub({ suppress: (f) => book.matches(f) !== undefined });
    const received: string[] = [];
    const sub = live.subscribe({}, (data) => {
      received.push((JSON.parse(data) as { finding: Finding }).finding.id);
    });
    // Two findings of the same rule on two symbols; the snooze covers one symbol only.
    const btc = finding(900, { symbol: 'BTC-USDT', venue: 'binance', detector: 'price_jump', ruleId: 'pj-live' });
    const eth = finding(901, { symbol: 'ETH-USDT', venue: 'binance', detector: 'price_jump', ruleId: 'pj-live' });
    const created = await post('/api/snoozes', { ruleId: 'pj-live', symbol: 'BTC-USDT', until: Date.now() + 3600_000, note: 'maintenance' });
    expect(created.status).toBe(201);
    live.publish([btc, eth]);
    await new Promise((r) => setTimeout(r, 20));
    expect(received).toEqual([eth.id]);
    // Cancelled: the same finding goes through again.
    expect((await call('DELETE', `/api/snoozes/${created.body.id as string}`)).status).toBe(200);
    live.publish([btc]);
    await new Promise((r) => setTimeout(r, 20));
    expect(received).toEqual([eth.id, btc.id]);
    sub.close();
  });
});
