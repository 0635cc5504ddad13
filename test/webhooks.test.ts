// Webhook notifications (src/notify/): formats, signature, routing, retries and backoff, Retry-After,
// timeouts, bounded queues, live-only, shutdown, the consumer of vigil.findings, and the config file.
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { AlertHub } from '../src/api/alert-hub.ts';
import { loadConfig } from '../src/core/config.ts';
import { SEVERITIES, type Finding } from '../src/core/events.ts';
import { findingId } from '../src/core/ids.ts';
import { loadWebhooksFile, webhooksFromConfig, type WebhookConfig, type WebhookInput, webhookSchema } from '../src/notify/config.ts';
import { Notifier, notifyFromHub, retryAfterMs, startNotifier, type NotifierOptions } from '../src/notify/webhooks.ts';
import { MemoryTransport } from '../src/transport/memory.ts';
import { TOPICS } from '../src/transport/types.ts';

const T0 = Date.UTC(2024, 7, 9, 12, 0, 0);
const tmp = mkdtempSync(join(tmpdir(), 'vigil-webhooks-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function finding(n: number, over: Partial<Finding> = {}): Finding {
  return {
    id: findingId('price_jump', 'pj', `k${n}`, `t${n}`),
    runId: 'live',
    detector: 'price_jump',
    ruleId: 'pj',
    severity: 'high',
    score: 9,
    venue: 'binance',
    symbol: 'BTC-USDT',
    key: 'binance:BTC-USDT',
    ts: T0 + n * 1000,
    windowStart: T0 + n * 1000 - 60_000,
    windowEnd: T0 + n * 1000,
    summary: `BTC-USDT jumped ${n} bps <in 1 s> & more`,
    evidence: { observed: { z: 9 }, baseline: { median: 0 }, threshold: { z: 8 }, triggers: [`trade:binance:BTC-USDT:${n}`] },
    ...over,
  };
}

interface Received {
  at: number;
  headers: IncomingHttpHeaders;
  body: string;
}
type Answer = { status: number; headers?: Record<string, string> } | 'hang';

interface Receiver {
  url: string;
  requests: Received[];
  /** Answers held by 'hang' (answer them to let the sender go on). */
  held: ServerResponse[];
  close(): Promise<void>;
}

const receivers: Receiver[] = [];
afterEach(async () => {
  for (const r of receivers.splice(0)) await r.close();
});

/** A local webhook endpoint; `answer` picks the reply to the n-th request (0-based). */
async function receiver(answer: (n: number, req: Received) => Answer = () => ({ status: 200 })): Promise<Receiver> {
  const requests: Received[] = [];
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      const r = { at: performance.now(), headers: req.headers, body };
      const a = answer(requests.length, r);
      requests.push(r);
      if (a === 'hang') return void held.push(res);
      res.writeHead(a.status, a.headers ?? {}).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const rec: Receiver = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    requests,
    held,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  receivers.push(rec);
  return rec;
}

const webhook = (over: Partial<WebhookInput> & { name: string; url: string }): WebhookConfig => webhookSchema.parse({ format: 'json', backoffMs: 10, maxBackoffMs: 100, ...over });

const until = async (cond: () => boolean, timeoutMs = 5000) => {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

function logCapture(): { lines: string[]; log: NonNullable<NotifierOptions['log']> } {
  const lines: string[] = [];
  return { lines, log: { info: (m) => lines.push(m), warn: (m) => lines.push(m) } };
}

const notifiers: Notifier[] = [];
afterEach(async () => {
  for (const n of notifiers.splice(0)) await n.stop({ graceMs: 0 });
});
function notifier(webhooks: WebhookConfig[], options: NotifierOptions = {}): Notifier {
  const n = new Notifier(webhooks, options);
  notifiers.push(n);
  return n;
}

describe('formats', () => {
  it('json: the finding in an envelope, signed with the secret', async () => {
    const rx = await receiver();
    const n = notifier([webhook({ name: 'generic', url: rx.url, secret: 'topsecret', headers: { authorization: 'Bearer abc' } })]);
    const f = finding(1);
    const before = Date.now();
    n.notify([f]);
    await until(() => n.stats.webhooks[0]!.delivered === 1);
    const [req] = rx.requests;
    const body = JSON.parse(req!.body) as { type: string; finding: Finding; sentAt: number };
    expect(body).toEqual({ type: 'finding', finding: f, sentAt: expect.any(Number) });
    expect(body.sentAt).toBeGreaterThanOrEqual(before);
    expect(req!.headers['content-type']).toBe('application/json');
    expect(req!.headers.authorization).toBe('Bearer abc');
    expect(req!.headers['x-vigil-finding-id']).toBe(f.id);
    // What a receiver does: HMAC of the raw body with the shared secret, compared.
    const expected = `sha256=${createHmac('sha256', 'topsecret').update(req!.body).digest('hex')}`;
    expect(req!.headers['x-vigil-signature']).toBe(expected);
    const forged = `sha256=${createHmac('sha256', 'wrong').update(req!.body).digest('hex')}`;
    expect(req!.headers['x-vigil-signature']).not.toBe(forged);
  });

  it('slack: text and blocks with severity, summary, detector and key; no signature without a secret', async () => {
    const rx = await receiver();
    const n = notifier([webhook({ name: 'slack', url: rx.url, format: 'slack' })]);
    const f = finding(2, { severity: 'critical', account: 'acct-7' });
    n.notify([f]);
    await until(() => n.stats.webhooks[0]!.delivered === 1);
    const [req] = rx.requests;
    expect(req!.headers['x-vigil-signature']).toBeUndefined();
    const body = JSON.parse(req!.body) as { text: string; blocks: { type: string; text?: { text: string }; fields?: { text: string }[] }[] };
    expect(Object.keys(body).sort()).toEqual(['blocks', 'text']);
    expect(body.text).toBe(`[CRITICAL] price_jump: ${f.summary} (binance:BTC-USDT)`);
    const all = body.blocks.flatMap((b) => [b.text?.text ?? '', ...(b.fields ?? []).map((x) => x.text)]).join('\n');
    expect(all).toContain('CRITICAL');
    expect(all).toContain('BTC-USDT jumped 2 bps &lt;in 1 s&gt; &amp; more'); // mrkdwn escaped
    expect(all).toContain('price_jump (rule pj)');
    expect(all).toContain('binance:BTC-USDT');
    expect(all).toContain('acct-7');
    expect(all).toContain(f.id);
  });
});

describe('routing', () => {
  it('per rule, severity, detector, venue, symbol and account; unmatched findings are counted', async () => {
    const a = await receiver();
    const b = await receiver();
    const c = await receiver();
    const n = notifier([
      webhook({ name: 'btc-rule-high', url: a.url, rules: ['pj-btc'], minSeverity: 'high' }),
      webhook({ name: 'critical-only', url: b.url, minSeverity: 'critical' }),
      webhook({ name: 'wash-okx-acct', url: c.url, detectors: ['wash_trade'], venues: ['okx'], symbols: ['ETH-USDT'], accounts: ['acct-1', 'acct-2'] }),
    ]);
    const all: Finding[] = [];
    for (let i = 0; i < 30; i++) {
      all.push(
        finding(100 + i, {
          ruleId: i % 2 === 0 ? 'pj-btc' : 'pj-eth',
          severity: SEVERITIES[i % 5]!,
          detector: i % 3 === 0 ? 'wash_trade' : 'price_jump',
          venue: i % 4 < 2 ? 'okx' : 'binance',
          symbol: i % 5 < 3 ? 'ETH-USDT' : 'BTC-USDT',
          account: `acct-${i % 4}`,
        }),
      );
    }
    n.notify(all);
    const wantA = all.filter((f) => f.ruleId === 'pj-btc' && (f.severity === 'high' || f.severity === 'critical'));
    const wantB = all.filter((f) => f.severity === 'critical');
    const wantC = all.filter((f) => f.detector === 'wash_trade' && f.venue === 'okx' && f.symbol === 'ETH-USDT' && ['acct-1', 'acct-2'].includes(f.account!));
    for (const want of [wantA, wantB, wantC]) expect(want.length).toBeGreaterThan(0);
    await until(() => a.requests.length === wantA.length && b.requests.length === wantB.length && c.requests.length === wantC.length);
    const ids = (r: Receiver) => r.requests.map((x) => (JSON.parse(x.body) as { finding: Finding }).finding.id);
    expect(ids(a)).toEqual(wantA.map((f) => f.id)); // in order
    expect(ids(b)).toEqual(wantB.map((f) => f.id));
    expect(ids(c)).toEqual(wantC.map((f) => f.id));
    const routed = new Set([...wantA, ...wantB, ...wantC].map((f) => f.id));
    expect(n.stats.unrouted).toBe(all.length - routed.size);
  });

  it('sends only findings of run live, and skips what the suppress hook covers', async () => {
    const rx = await receiver();
    const n = notifier([webhook({ name: 'all', url: rx.url })]);
    const live = finding(200);
    n.notify([finding(201, { runId: 'replay-1' }), live, finding(202, { runId: 'backfill' }), finding(203, { detector: 'snoozed' })], { suppress: (f) => f.detector === 'snoozed' });
    await until(() => n.stats.webhooks[0]!.delivered === 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(rx.requests.map((r) => (JSON.parse(r.body) as { finding: Finding }).finding.id)).toEqual([live.id]);
    expect(n.stats).toMatchObject({ received: 4, notLive: 2, suppressed: 1, unrouted: 0 });
  });

  it('a failing suppress hook does not stop the notification', async () => {
    const rx = await receiver();
    const { lines, log } = logCapture();
    const n = notifier([webhook({ name: 'all', url: rx.url })], { log });
    n.notify([finding(210)], {
      suppress: () => {
        throw new Error('snooze store down');
      },
    });
    await until(() => rx.requests.length === 1);
    expect(lines.join('\n')).toMatch(/suppress hook failed.*snooze store down/);
  });
});

describe('delivery', () => {
  it('retries a 500 with growing backoff, then succeeds', async () => {
    const rx = await receiver((n) => (n < 2 ? { status: 500 } : { status: 204 }));
    const n = notifier([webhook({ name: 'flaky', url: rx.url, backoffMs: 80, maxBackoffMs: 10_000 })], { random: () => 0.99 });
    n.notify([finding(300)]);
    await until(() => n.stats.webhooks[0]!.delivered === 1);
    expect(rx.requests).toHaveLength(3);
    expect(rx.requests.map((r) => r.headers['x-vigil-attempt'])).toEqual(['1', '2', '3']);
    const [t0, t1, t2] = rx.requests.map((r) => r.at) as [number, number, number];
    // Jittered between half and all of 80 ms, then of 160 ms (random 0.99: near the top).
    expect(t1 - t0).toBeGreaterThanOrEqual(75);
    expect(t2 - t1).toBeGreaterThanOrEqual(150);
    expect(t2 - t1).toBeGreaterThan(t1 - t0);
    expect(n.stats.webhooks[0]).toMatchObject({ delivered: 1, retries: 2, failed: 0, lastStatus: 204, queued: 0, inFlight: 0 });
  });

  it('honours Retry-After on a 429 (longer than its own backoff)', async () => {
    const rx = await receiver((n) => (n === 0 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 }));
    const n = notifier([webhook({ name: 'limited', url: rx.url, backoffMs: 10, maxBackoffMs: 20 })]);
    n.notify([finding(310)]);
    await until(() => n.stats.webhooks[0]!.delivered === 1, 5000);
    expect(rx.requests[1]!.at - rx.requests[0]!.at).toBeGreaterThanOrEqual(950);
    expect(n.stats.webhooks[0]!.retries).toBe(1);
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    const now = Date.UTC(2025, 0, 1, 0, 0, 0);
    expect(retryAfterMs('3', now)).toBe(3000);
    expect(retryAfterMs(new Date(now + 7000).toUTCString(), now)).toBe(7000);
    expect(retryAfterMs(new Date(now - 7000).toUTCString(), now)).toBe(0);
    expect(retryAfterMs('999999', now)).toBe(600_000);
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs(null, now)).toBeUndefined();
  });

  it('does not retry a 400, and goes on with the next finding', async () => {
    const rx = await receiver((n) => (n === 0 ? { status: 400 } : { status: 200 }));
    const { lines, log } = logCapture();
    const n = notifier([webhook({ name: 'strict', url: rx.url })], { log });
    n.notify([finding(320), finding(321)]);
    await until(() => n.stats.webhooks[0]!.delivered === 1);
    expect(rx.requests).toHaveLength(2);
    expect(n.stats.webhooks[0]).toMatchObject({ failed: 1, retries: 0, delivered: 1 });
    expect(lines.join('\n')).toMatch(/webhook strict: finding \w+ not delivered \(not retried\): HTTP 400/);
    expect(lines.join('\n')).not.toContain(rx.url); // webhook URLs can be secrets
  });

  it('times an attempt out, retries, and gives up after maxAttempts', async () => {
    const rx = await receiver(() => 'hang');
    const n = notifier([webhook({ name: 'silent', url: rx.url, timeoutMs: 200, maxAttempts: 2 })]);
    const started = performance.now();
    n.notify([finding(330)]);
    await until(() => n.stats.webhooks[0]!.failed === 1, 5000);
    expect(performance.now() - started).toBeGreaterThanOrEqual(390);
    expect(rx.requests).toHaveLength(2);
    expect(n.stats.webhooks[0]).toMatchObject({ retries: 1, delivered: 0, lastError: 'timed out after 200 ms' });
  });

  it('retries network errors', async () => {
    const rx = await receiver();
    const url = rx.url;
    await rx.close(); // nothing listens there any more
    receivers.splice(receivers.indexOf(rx), 1);
    const n = notifier([webhook({ name: 'down', url, maxAttempts: 3, backoffMs: 5, maxBackoffMs: 10 })]);
    n.notify([finding(340)]);
    await until(() => n.stats.webhooks[0]!.failed === 1);
    expect(n.stats.webhooks[0]).toMatchObject({ retries: 2, lastError: 'ECONNREFUSED' });
  });

  it('bounds its queue: overflow is dropped, counted and logged', async () => {
    const rx = await receiver(() => 'hang');
    const { lines, log } = logCapture();
    const n = notifier([webhook({ name: 'slow', url: rx.url, queueSize: 3, timeoutMs: 10_000 })], { log });
    n.notify(Array.from({ length: 10 }, (_, i) => finding(400 + i)));
    await until(() => rx.requests.length === 1);
    expect(n.stats.webhooks[0]).toMatchObject({ inFlight: 1, queued: 3, dropped: 6 });
    expect(lines.filter((l) => l.includes('queue full'))).toHaveLength(1); // once per episode, not per finding
    // Let it go: the in-flight one and the three queued arrive; the dropped ones never do.
    const release = setInterval(() => {
      for (const res of rx.held.splice(0)) res.writeHead(200).end();
    }, 5);
    try {
      await until(() => n.stats.webhooks[0]!.delivered === 4);
      n.notify([finding(420)]);
      await until(() => n.stats.webhooks[0]!.delivered === 5);
    } finally {
      clearInterval(release);
    }
    expect(rx.requests.map((r) => (JSON.parse(r.body) as { finding: Finding }).finding.id)).toEqual([400, 401, 402, 403, 420].map((i) => finding(i).id));
    expect(lines.some((l) => l.includes('accepting again; 6 findings were dropped'))).toBe(true);
  });

  it('stop() drains within the grace period, then abandons pending retries', async () => {
    const ok = await receiver();
    const failing = await receiver(() => ({ status: 503 }));
    const n = new Notifier([webhook({ name: 'ok', url: ok.url }), webhook({ name: 'failing', url: failing.url, backoffMs: 30_000, maxBackoffMs: 30_000 })]);
    n.notify([finding(500), finding(501)]);
    await until(() => failing.requests.length === 1); // now waiting 15-30 s before its retry
    const started = performance.now();
    const { abandoned } = await n.stop({ graceMs: 200 });
    expect(performance.now() - started).toBeLessThan(2000);
    expect(abandoned).toBe(2); // the retry in wait and the finding queued behind it
    const [okStats, failStats] = n.stats.webhooks;
    expect(okStats).toMatchObject({ delivered: 2, abandoned: 0 });
    expect(failStats).toMatchObject({ delivered: 0, abandoned: 2, queued: 0, inFlight: 0 });
    n.notify([finding(502)]); // after stop: not sent
    expect(n.stats.webhooks[0]!.abandoned).toBe(1);
  });
});

describe('consumers', () => {
  it('startNotifier consumes vigil.findings in its group: live findings only', async () => {
    const rx = await receiver();
    const n = notifier([webhook({ name: 'all', url: rx.url })]);
    const transport = new MemoryTransport({ partitions: 2 });
    const sub = await startNotifier(transport, n, 'vigil-notify', { suppress: (f) => f.symbol === 'SNOOZED' });
    try {
      const live = [finding(600), finding(601, { key: 'okx:ETH-USDT' })];
      const sent = [live[0]!, finding(602, { runId: 'replay-7' }), live[1]!, finding(603, { symbol: 'SNOOZED' })];
      await transport.send(
        TOPICS.findings,
        sent.map((f) => ({ key: f.key, value: f, ...(f.runId === 'live' ? {} : { headers: { run: f.runId } }) })),
      );
      await transport.drain();
      await until(() => rx.requests.length === 2);
      const got = rx.requests.map((r) => (JSON.parse(r.body) as { finding: Finding }).finding.id).sort();
      expect(got).toEqual(live.map((f) => f.id).sort());
      expect(n.stats).toMatchObject({ received: 4, notLive: 1, suppressed: 1 });
      expect(sub.group).toBe('vigil-notify');
    } finally {
      await sub.stop();
      await transport.close();
    }
  });

  it('notifyFromHub feeds it from the alert hub (one process)', async () => {
    const rx = await receiver();
    const n = notifier([webhook({ name: 'all', url: rx.url })]);
    const hub = new AlertHub();
    const sub = notifyFromHub(hub, n);
    hub.publish([finding(700, { runId: 'replay-1' }), finding(701)]);
    await until(() => rx.requests.length === 1);
    expect((JSON.parse(rx.requests[0]!.body) as { finding: Finding }).finding.id).toBe(finding(701).id);
    sub.close();
    hub.publish([finding(702)]);
    await new Promise((r) => setTimeout(r, 50));
    expect(rx.requests).toHaveLength(1);
  });
});

describe('VIGIL_WEBHOOKS', () => {
  const write = (name: string, content: string) => {
    const p = join(tmp, name);
    writeFileSync(p, content);
    return p;
  };

  it('reads YAML and JSON files, with defaults', () => {
    const yaml = write('ok.yaml', toYaml({ webhooks: [{ name: 'ops', url: 'https://hooks.example/x', format: 'slack', minSeverity: 'high', rules: ['pj'] }] }));
    const json = write('ok.json', JSON.stringify([{ name: 'siem', url: 'http://10.0.0.5:9000/in', format: 'json', secret: 's', maxAttempts: 8 }]));
    expect(loadWebhooksFile(yaml)).toEqual([
      { name: 'ops', url: 'https://hooks.example/x', format: 'slack', minSeverity: 'high', rules: ['pj'], timeoutMs: 5000, maxAttempts: 5, backoffMs: 1000, maxBackoffMs: 60_000, queueSize: 1000 },
    ]);
    expect(loadWebhooksFile(json)[0]).toMatchObject({ name: 'siem', secret: 's', maxAttempts: 8 });
    const config = loadConfig({ VIGIL_WEBHOOKS: yaml });
    expect(config.VIGIL_WEBHOOKS).toBe(yaml);
    expect(webhooksFromConfig(config).map((w) => w.name)).toEqual(['ops']);
    expect(webhooksFromConfig(loadConfig({}))).toEqual([]);
  });

  it.each([
    ['a missing file', null, /VIGIL_WEBHOOKS: .*missing\.yaml: cannot read the webhooks file/],
    ['broken YAML', 'webhooks: [ {name: a', /VIGIL_WEBHOOKS: .*not valid YAML or JSON/],
    ['not a list', 'webhooks: 3', /VIGIL_WEBHOOKS: .*expected a list of webhooks/],
    ['an entry without url', toYaml([{ name: 'a', url: 'http://x/', format: 'json' }, { name: 'b', format: 'json' }]), /VIGIL_WEBHOOKS: .* webhook 1 \("b"\): url: /],
    ['a bad format', toYaml([{ name: 'teams', url: 'http://x/', format: 'teams' }]), /VIGIL_WEBHOOKS: .* webhook 0 \("teams"\): format: /],
    ['a non-http url', toYaml([{ name: 'ftp', url: 'ftp://x/', format: 'json' }]), /webhook 0 \("ftp"\): url: expected an http\(s\) URL/],
    ['a bad severity', toYaml([{ name: 's', url: 'http://x/', format: 'json', minSeverity: 'urgent' }]), /webhook 0 \("s"\): minSeverity/],
    ['an unknown field', toYaml([{ name: 'u', url: 'http://x/', format: 'json', severity: 'high' }]), /webhook 0 \("u"\): .*severity/],
    ['a duplicate name', toYaml([{ name: 'd', url: 'http://x/', format: 'json' }, { name: 'd', url: 'http://y/', format: 'json' }]), /webhook 1 \("d"\): duplicate name/],
    ['a reserved header', toYaml([{ name: 'h', url: 'http://x/', format: 'json', headers: { 'X-Vigil-Signature': 'x' } }]), /webhook 0 \("h"\): headers: may not set/],
    ['maxBackoffMs under backoffMs', toYaml([{ name: 'b', url: 'http://x/', format: 'json', backoffMs: 5000, maxBackoffMs: 100 }]), /webhook 0 \("b"\): maxBackoffMs/],
  ])('%s fails naming the key and the entry', (_what, content, message) => {
    const path = content === null ? join(tmp, 'missing.yaml') : write(`bad-${Math.random().toString(36).slice(2)}.yaml`, content);
    expect(() => loadWebhooksFile(path)).toThrow(message);
    try {
      loadWebhooksFile(path);
    } catch (e) {
      expect((e as { code: string; details: { key: string } }).code).toBe('VIGIL_ERR_CONFIG');
      expect((e as { details: { key: string } }).details.key).toBe('VIGIL_WEBHOOKS');
    }
  });
});
