// Live alerts over Server-Sent Events (GET /api/alerts/stream) and the access_token query credential of
// the two live routes (src/api/routes/alerts-sse.ts, src/api/alert-session.ts, src/api/auth.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { AlertHub } from '../src/api/alert-hub.ts';
import { redactAccessToken } from '../src/api/auth.ts';
import { buildApi } from '../src/api/server.ts';
import { issueApiKey } from '../src/core/api-keys.ts';
import { SEVERITIES, severityRank, type Finding } from '../src/core/events.ts';
import { findingId } from '../src/core/ids.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import type { Store } from '../src/storage/types.ts';

const T0 = Date.UTC(2024, 7, 9, 12, 0, 0);

function finding(n: number, over: Partial<Finding> = {}): Finding {
  return {
    id: findingId('price_jump', 'pj', `k${n}`, `t${n}`),
    runId: 'live',
    detector: ['price_jump', 'spread_blowout', 'wash_trade'][n % 3]!,
    ruleId: 'pj',
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

interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

interface SseClient {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body of a refused request. */
  body: string;
  retry?: number;
  events: SseEvent[];
  res: IncomingMessage;
  next(pred?: (e: SseEvent) => boolean, timeoutMs?: number): Promise<SseEvent>;
  ended: Promise<void>;
  close(): void;
}

const notHeartbeat = (e: SseEvent) => e.event !== 'heartbeat';
const findingsOf = (c: SseClient) => c.events.filter((e) => e.event === 'finding').map((e) => (JSON.parse(e.data) as { finding: Finding }).finding);

/** A minimal EventSource over node:http: parses the stream into events (comments skipped). */
function stream(host: string, path: string, headers: Record<string, string> = {}): Promise<SseClient> {
  const [hostname, port] = host.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port: Number(port), path, headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      const events: SseEvent[] = [];
      const waiters: (() => void)[] = [];
      let text = '';
      let read = 0;
      let body = '';
      const client: SseClient = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        body: '',
        events,
        res,
        ended: new Promise<void>((r) => {
          res.on('end', r);
          res.on('close', r);
        }),
        close: () => req.destroy(),
        next: async (pred = notHeartbeat, timeoutMs = 5000) => {
          const deadline = Date.now() + timeoutMs;
          for (;;) {
            while (read < events.length) {
              const e = events[read++]!;
              if (pred(e)) return e;
            }
            if (Date.now() > deadline) throw new Error(`no matching event within ${timeoutMs} ms (have ${JSON.stringify(events.slice(-3))})`);
            await new Promise<void>((r) => {
              waiters.push(r);
              setTimeout(r, 50);
            });
          }
        },
      };
      res.setEncoding('utf8');
      if (client.status !== 200) {
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ ...client, body }));
        return;
      }
      res.on('data', (chunk: string) => {
        text += chunk;
        for (let end = text.indexOf('\n\n'); end !== -1; end = text.indexOf('\n\n')) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          const e: Partial<SseEvent> & { data?: string } = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) continue;
            const colon = line.indexOf(':');
            const field = colon === -1 ? line : line.slice(0, colon);
            const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'retry') client.retry = Number(value);
            else if (field === 'id') e.id = value;
            else if (field === 'event') e.event = value;
            else if (field === 'data') e.data = e.data === undefined ? value : `${e.data}\n${value}`;
          }
          if (e.data !== undefined) events.push({ event: e.event ?? 'message', data: e.data, ...(e.id === undefined ? {} : { id: e.id }) });
        }
        for (const w of waiters.splice(0)) w();
      });
      resolve(client);
    });
    req.on('error', reject);
    req.end();
  });
}

const until = async (cond: () => boolean, timeoutMs = 5000) => {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  return `127.0.0.1:${(app.server.address() as { port: number }).port}`;
}

let dir: string;
let store: Store;
let hub: AlertHub;
let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-sse-'));
  store = await openStore({ dataDir: dir });
  hub = new AlertHub({ bufferSize: 20 });
  app = await buildApi({ store, hub, alerts: { heartbeatMs: 100, retryMs: 1500 } });
  base = await listen(app);
});

afterAll(async () => {
  await app?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('GET /api/alerts/stream (Server-Sent Events)', () => {
  it('streams findings filtered server-side, as events with ids, with retry and heartbeats', async () => {
    const c = await stream(base, '/api/alerts/stream?minSeverity=high&venue=binance&detector=price_jump,spread_blowout');
    expect(c.status).toBe(200);
    expect(c.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(c.headers['cache-control']).toMatch(/no-cache/);
    await until(() => hub.stats.subscribers === 1);
    const batch = Array.from({ length: 40 }, (_, n) => finding(100 + n));
    const want = batch.filter((f) => severityRank(f.severity) >= 3 && f.venue === 'binance' && ['price_jump', 'spread_blowout'].includes(f.detector));
    expect(want.length).toBeGreaterThan(0);
    expect(want.length).toBeLessThan(batch.length);
    hub.publish(batch);
    for (const f of want) {
      const e = await c.next();
      expect(e).toEqual({ id: f.id, event: 'finding', data: JSON.stringify({ type: 'finding', finding: f }) });
    }
    const hb = await c.next((e) => e.event === 'heartbeat');
    expect(hb.id).toBeUndefined();
    expect(JSON.parse(hb.data)).toEqual({ type: 'heartbeat', ts: expect.any(Number) });
    expect(c.retry).toBe(1500);
    expect(findingsOf(c).map((f) => f.id)).toEqual(want.map((f) => f.id));
    c.close();
    await until(() => hub.stats.subscribers === 0);
  });

  it('filters by run and account', async () => {
    const c = await stream(base, '/api/alerts/stream?run=replay-9&account=acct-0');
    await until(() => hub.stats.subscribers === 1);
    const batch = [finding(200, { runId: 'replay-9', account: 'acct-0' }), finding(201, { runId: 'live', account: 'acct-0' }), finding(202, { runId: 'replay-9', account: 'acct-1' })];
    hub.publish(batch);
    hub.publish([finding(203, { runId: 'replay-9', account: 'acct-0' })]);
    expect((await c.next()).id).toBe(batch[0]!.id);
    expect((await c.next()).id).toBe(finding(203).id);
    c.close();
    await until(() => hub.stats.subscribers === 0);
  });

  it('resumes from since: what was missed first, then live', async () => {
    const batch = Array.from({ length: 6 }, (_, n) => finding(300 + n, { severity: 'critical' }));
    hub.publish(batch);
    const c = await stream(base, `/api/alerts/stream?since=${batch[2]!.id}&minSeverity=critical`);
    for (const f of batch.slice(3)) expect((await c.next()).id).toBe(f.id);
    const live = finding(310, { severity: 'critical' });
    hub.publish([live]);
    expect((await c.next()).id).toBe(live.id);
    expect(findingsOf(c)).toHaveLength(4);
    c.close();
    await until(() => hub.stats.subscribers === 0);
  });

  it('resumes from Last-Event-ID after a reconnect with nothing missed; the header wins over since', async () => {
    const run = 'resume-run';
    const first = await stream(base, `/api/alerts/stream?run=${run}`);
    await until(() => hub.stats.subscribers === 1);
    const before = Array.from({ length: 5 }, (_, n) => finding(500 + n, { runId: run }));
    hub.publish(before);
    for (const f of before) expect((await first.next()).id).toBe(f.id);
    const lastSeen = first.events.filter((e) => e.id !== undefined).at(-1)!.id!;
    expect(lastSeen).toBe(before[4]!.id);
    first.close();
    await until(() => hub.stats.subscribers === 0);
    // Published while the client was away, with another run's findings interleaved.
    const missed = Array.from({ length: 7 }, (_, n) => finding(510 + n, { runId: n % 3 === 1 ? 'other' : run }));
    hub.publish(missed);
    // As an EventSource reconnects: the URL it was opened with (a stale since) and Last-Event-ID.
    const again = await stream(base, `/api/alerts/stream?run=${run}&since=${before[0]!.id}`, { 'last-event-id': lastSeen });
    const want = missed.filter((f) => f.runId === run);
    for (const f of want) expect((await again.next()).id).toBe(f.id);
    const live = finding(520, { runId: run });
    hub.publish([live]);
    expect((await again.next()).id).toBe(live.id);
    // Exactly the missed ones and the live one: no duplicates of what the first connection saw, no gap.
    expect(findingsOf(again).map((f) => f.id)).toEqual([...want, live].map((f) => f.id));
    expect(again.events.some((e) => e.event === 'gap')).toBe(false);
    again.close();
    await until(() => hub.stats.subscribers === 0);
  });

  it('sends a gap event when the id has left the buffer, then what is buffered', async () => {
    const run = 'gap-run';
    const evicted = finding(600, { runId: run });
    hub.publish([evicted]);
    // The buffer keeps 20: push the first one out.
    const after = Array.from({ length: 20 }, (_, n) => finding(601 + n, { runId: n < 18 ? 'filler' : run }));
    hub.publish(after);
    const c = await stream(base, `/api/alerts/stream?run=${run}`, { 'last-event-id': evicted.id });
    const gap = await c.next();
    expect(gap.event).toBe('gap');
    expect(gap.id).toBeUndefined();
    expect(JSON.parse(gap.data)).toMatchObject({ type: 'gap', since: evicted.id, buffered: 20, message: expect.stringContaining('no longer buffered') });
    expect((await c.next()).id).toBe(after[18]!.id);
    expect((await c.next()).id).toBe(after[19]!.id);
    c.close();
    await until(() => hub.stats.subscribers === 0);
  });

  it('rejects bad parameters and a bad Last-Event-ID with a 400 naming them', async () => {
    const bad = await stream(base, '/api/alerts/stream?minSeverity=urgent');
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error).toMatchObject({ code: 'VIGIL_ERR_BAD_REQUEST', message: expect.stringContaining('minSeverity') });
    const unknown = await stream(base, '/api/alerts/stream?severty=high');
    expect(unknown.status).toBe(400);
    expect(JSON.parse(unknown.body).error.message).toContain('severty');
    const header = await stream(base, '/api/alerts/stream', { 'last-event-id': 'x'.repeat(201) });
    expect(header.status).toBe(400);
    expect(JSON.parse(header.body).error.message).toContain('Last-Event-ID');
    expect(hub.stats.subscribers).toBe(0);
  });

  it('disconnects a client that does not read with a close event naming the reason; the server holds a bounded amount', async () => {
    const maxInFlight = 8;
    const slowHub = new AlertHub({ maxQueueBytes: 2 * 1024 * 1024, maxInFlight, bufferSize: 10 });
    const slowApp = await buildApi({ store, hub: slowHub, alerts: { heartbeatMs: 60_000, closeGraceMs: 20_000 } });
    const sockets: Socket[] = [];
    slowApp.server.on('connection', (s: Socket) => sockets.push(s));
    const host = await listen(slowApp);
    try {
      const slow = await stream(host, '/api/alerts/stream');
      const fast = await stream(host, '/api/alerts/stream');
      await until(() => slowHub.stats.subscribers === 2);
      slow.res.pause(); // stops reading: the server's writes back up
      const big = 'x'.repeat(64 * 1024);
      const total = 700; // ~45 MB: more than the kernel buffers, the in-flight window and the queue together
      let published = 0;
      let maxWritable = 0;
      for (let n = 0; n < total && slowHub.stats.dropped === 0; n++) {
        slowHub.publish([finding(1000 + n, { summary: big })]);
        published++;
        for (const s of sockets) maxWritable = Math.max(maxWritable, s.writableLength);
        if (n % 4 === 0) await new Promise((r) => setTimeout(r, 1));
      }
      await until(() => slowHub.stats.dropped === 1, 10_000);
      // Dropped long before everything was published: the server did not keep buffering for it.
      expect(published).toBeLessThan(total);
      expect(slowHub.stats.subscribers).toBe(1);
      // What sat in the server's socket buffers: at most the in-flight window (pending on drain) and one more.
      const eventBytes = JSON.stringify({ type: 'finding', finding: finding(1000, { summary: big }) }).length + 100;
      expect(maxWritable).toBeGreaterThan(0);
      expect(maxWritable).toBeLessThanOrEqual((maxInFlight + 1) * eventBytes);
      // The fast client is still subscribed and gets everything published.
      await until(() => findingsOf(fast).length === slowHub.stats.published, 10_000);
      // The slow one, once it reads again, finds a close event after what was sent, then the end.
      slow.res.resume();
      const close = await slow.next((e) => e.event === 'close', 10_000);
      expect(JSON.parse(close.data)).toEqual({ type: 'close', reason: expect.stringMatching(/slow consumer/) });
      await slow.ended;
      expect(slow.events.at(-1)!.event).toBe('close');
      expect(findingsOf(slow).length).toBeLessThan(slowHub.stats.published);
      fast.close();
    } finally {
      await slowApp.close();
    }
  }, 60_000);

  it('ends open streams with a close event when the server shuts down', async () => {
    const ownHub = new AlertHub();
    const own = await buildApi({ store, hub: ownHub });
    const host = await listen(own);
    const c = await stream(host, '/api/alerts/stream');
    await until(() => ownHub.stats.subscribers === 1);
    const closing = own.close();
    const last = await c.next((e) => e.event === 'close');
    expect(JSON.parse(last.data)).toEqual({ type: 'close', reason: 'server shutting down' });
    await c.ended;
    await closing;
    expect(ownHub.stats.subscribers).toBe(0);
  });
});

describe('access_token in the query (browsers cannot set headers on WebSocket and EventSource)', () => {
  let authApp: FastifyInstance;
  let authHub: AlertHub;
  let host: string;
  let viewerKey: string;
  const logs: string[] = [];

  beforeAll(async () => {
    viewerKey = (await issueApiKey(store, 'sse viewer', 'viewer')).key;
    authHub = new AlertHub();
    authApp = await buildApi({
      store,
      hub: authHub,
      security: { auth: true },
      logger: { level: 'info', stream: { write: (line: string) => void logs.push(line) } },
    });
    host = await listen(authApp);
  });
  afterAll(async () => {
    await authApp?.close();
  });

  it('works on the SSE stream, and is refused when missing or unknown', async () => {
    const c = await stream(host, `/api/alerts/stream?minSeverity=info&access_token=${encodeURIComponent(viewerKey)}`);
    expect(c.status).toBe(200);
    await until(() => authHub.stats.subscribers === 1);
    const f = finding(700);
    authHub.publish([f]);
    expect((await c.next()).id).toBe(f.id);
    c.close();
    const none = await stream(host, '/api/alerts/stream');
    expect(none.status).toBe(401);
    const unknown = await stream(host, `/api/alerts/stream?access_token=vgl_${'A'.repeat(43)}`);
    expect(unknown.status).toBe(401);
    expect(JSON.parse(unknown.body).error.code).toBe('VIGIL_ERR_UNAUTHORIZED');
    expect(unknown.body).not.toContain('A'.repeat(43));
  });

  it('works on the WebSocket route', async () => {
    const opened = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`ws://${host}/api/alerts?access_token=${encodeURIComponent(viewerKey)}`);
      ws.on('open', () => {
        ws.close();
        resolve(101);
      });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', reject);
    });
    expect(opened).toBe(101);
  });

  it('is refused (401) on any other route, even with a valid key', async () => {
    const r = await authApp.inject({ method: 'GET', url: `/api/findings?access_token=${encodeURIComponent(viewerKey)}` });
    expect(r.statusCode).toBe(401);
    expect(r.json().error).toMatchObject({ code: 'VIGIL_ERR_UNAUTHORIZED', message: expect.stringContaining('accepted only on GET /api/alerts and GET /api/alerts/stream') });
    expect(r.body).not.toContain(viewerKey);
    // The same key as a header works there.
    expect((await authApp.inject({ method: 'GET', url: '/api/findings', headers: { authorization: `Bearer ${viewerKey}` } })).statusCode).toBe(200);
  });

  it('never reaches the logs', async () => {
    await stream(host, `/api/alerts/stream?access_token=${encodeURIComponent(viewerKey)}&minSeverity=urgent`);
    await authApp.inject({ method: 'GET', url: `/api/findings?access_token=${encodeURIComponent(viewerKey)}` });
    const text = logs.join('');
    expect(text).toContain('access_token=[redacted]');
    expect(text).not.toContain(viewerKey);
    expect(text).not.toContain(viewerKey.slice(4));
  });

  it('redacts every spelling the query parser reads as access_token', () => {
    expect(redactAccessToken('/api/alerts?run=a&access_token=k1&x=1')).toBe('/api/alerts?run=a&access_token=[redacted]&x=1');
    expect(redactAccessToken('/api/alerts?access%5Ftoken=k2')).toBe('/api/alerts?access%5Ftoken=[redacted]');
    expect(redactAccessToken('/api/alerts?access_token=k3&access_token=k4')).toBe('/api/alerts?access_token=[redacted]&access_token=[redacted]');
    expect(redactAccessToken('/api/alerts?token=keep')).toBe('/api/alerts?token=keep');
    expect(redactAccessToken('/api/alerts')).toBe('/api/alerts');
  });
});
