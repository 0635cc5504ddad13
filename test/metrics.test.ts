// Observability: /metrics (Prometheus text) after an embedded pipeline run, /readyz, the roles' health
// server, and the Grafana dashboard's queries against the registry.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertHub } from '../src/api/alert-hub.ts';
import { buildApi } from '../src/api/server.ts';
import type { Config } from '../src/core/config.ts';
import { buildDetectors } from '../src/detectors/configure.ts';
import { VigilMetrics } from '../src/observability/metrics.ts';
import { Readiness } from '../src/observability/readiness.ts';
import { FAULT_STORE_FLAG_ENV, withStoreFaults } from '../src/pipeline/fault-store.ts';
import { Pipeline } from '../src/pipeline/pipeline.ts';
import { startHealthServer } from '../src/pipeline/roles.ts';
import { replayFiles, type ReplaySummary } from '../src/replay/replay.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import type { Store } from '../src/storage/types.ts';
import { tempDir } from './helpers/cli.ts';

const DEMO = 'replays/demo-binance-btcusdt.jsonl.gz';
const DASHBOARD = 'docs/grafana/vigil-dashboard.json';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text exposition (enough of it for these tests). */
function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of a metric's samples whose labels include `match`, grouped by one label. */
function sumBy(samples: Sample[], name: string, by: string, match: Record<string, string> = {}): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) {
    if (s.name !== name || !Object.entries(match).every(([k, v]) => s.labels[k] === v)) continue;
    const k = s.labels[by] ?? '';
    out[k] = (out[k] ?? 0) + s.value;
  }
  return out;
}

const total = (samples: Sample[], name: string): number => samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);
const nonZero = (r: Record<string, number>) => Object.fromEntries(Object.entries(r).filter(([, v]) => v > 0));

const dir = tempDir('vigil-metrics-');
let store: Store;
let metrics: VigilMetrics;
let summary: ReplaySummary;
let beforeClose: Sample[];
let afterClose: Sample[];
let storeClosed = false;

beforeAll(async () => {
  store = await openStore({ dataDir: dir });
  metrics = new VigilMetrics();
  // A few lines no reader understands: dead letters of source "replay".
  const bad = join(dir, 'bad.jsonl');
  const ok = '{"v":1,"recvTs":1723161440049,"source":"binance","data":"{\\"stream\\":\\"btcusdt@bookTicker\\",\\"data\\":{\\"u\\":50093320043,\\"s\\":\\"BTCUSDT\\",\\"b\\":\\"61713.45\\",\\"B\\":\\"2.8\\",\\"a\\":\\"61713.46\\",\\"A\\":\\"3.6\\"}}"}';
  writeFileSync(bad, [ok, '{"v":1,"recvTs":1723161440050,"source":"binance","data":"{not json"}', 'not a record at all', '{"half":'].join('\n'));
  // Run id "live" with the times rebased to now: the event-to-finding latency is observed as live.
  const pipeline = await new Pipeline({ runId: 'live', detectors: buildDetectors({ detectors: {} }), store, metrics, partitions: 2, queueCapacity: 256 }).start();
  summary = await replayFiles(pipeline, { files: [DEMO, bad], speed: { mode: 'max' }, rebaseToNow: true });
  const app = await buildApi({ store, hub: new AlertHub(), metrics });
  try {
    beforeClose = parse((await app.inject({ url: '/metrics' })).body);
    await pipeline.close();
    const res = await app.inject({ url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    afterClose = parse(res.body);
  } finally {
    await app.close();
  }
}, 120_000);

afterAll(async () => {
  if (!storeClosed) await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('GET /metrics after a pipeline run', () => {
  it('counts events by source and kind as the replay summary does', () => {
    expect(summary.totalEvents).toBeGreaterThan(0);
    expect(nonZero(sumBy(afterClose, 'vigil_events_total', 'kind'))).toEqual(nonZero(summary.events));
    expect(Object.keys(sumBy(afterClose, 'vigil_events_total', 'source'))).toEqual(['binance']);
    expect(total(afterClose, 'vigil_frames_total')).toBe(summary.frames);
  });

  it('counts findings by detector (and severity) as the summary does', () => {
    expect(summary.totalFindings).toBeGreaterThan(0);
    expect(sumBy(afterClose, 'vigil_findings_total', 'detector')).toEqual(nonZero(summary.findings));
    for (const s of afterClose.filter((x) => x.name === 'vigil_findings_total')) expect(s.labels.severity).toMatch(/^(info|low|medium|high|critical)$/);
    // Every finding reached ClickHouse.
    expect(sumBy(afterClose, 'vigil_store_rows_written_total', 'table').findings).toBe(summary.totalFindings);
    expect(sumBy(afterClose, 'vigil_store_insert_failures_total', 'table').findings).toBe(0);
  });

  it('counts dead letters by source', () => {
    expect(summary.malformed.count).toBeGreaterThan(0);
    expect(total(afterClose, 'vigil_dead_letters_total')).toBe(summary.malformed.count);
    expect(sumBy(afterClose, 'vigil_store_rows_written_total', 'table').dead_letters).toBe(summary.malformed.count);
  });

  it('exports the detector latency histograms, per detector, with their buckets', () => {
    const buckets = afterClose.filter((s) => s.name === 'vigil_detector_event_duration_seconds_bucket');
    expect(new Set(buckets.map((b) => b.labels.detector))).toContain('price_jump');
    expect(buckets.some((b) => b.labels.le === '+Inf' && b.value > 0)).toBe(true);
    expect(total(afterClose, 'vigil_detect_batch_duration_seconds_count')).toBeGreaterThan(0);
    expect(total(afterClose, 'vigil_detect_seconds_total')).toBeGreaterThan(0);
    // Live run: event-to-finding latency per finding, seconds (rebased to now: well under a minute).
    const e2f = sumBy(afterClose, 'vigil_event_to_finding_seconds_count', 'detector');
    expect(e2f).toEqual(nonZero(summary.findings));
    const inf = sumBy(afterClose, 'vigil_event_to_finding_seconds_bucket', 'detector', { le: '60' });
    expect(inf).toEqual(e2f);
  });

  it('exports state store, transport and process figures', () => {
    expect(total(afterClose, 'vigil_detector_events_total')).toBeGreaterThan(0);
    expect(afterClose.some((s) => s.name === 'vigil_state_saves_total')).toBe(true);
    expect(total(afterClose, 'vigil_transport_sent_messages_total')).toBeGreaterThan(summary.totalEvents);
    expect(afterClose.some((s) => s.name === 'process_cpu_user_seconds_total')).toBe(true);
  });

  it('keeps the counters of components that closed (counters never go down)', () => {
    for (const name of ['vigil_events_total', 'vigil_dead_letters_total', 'vigil_findings_total', 'vigil_detector_events_total', 'vigil_transport_sent_messages_total']) {
      expect(total(afterClose, name), name).toBe(total(beforeClose, name));
    }
    // Gauges of closed components are gone (nothing queued anywhere).
    expect(total(afterClose, 'vigil_transport_queued_messages')).toBe(0);
  });
});

describe('webhooks, snoozes and scoring on /metrics', () => {
  it('exports what the notifier, the snooze book and the scorer counted, read when scraped', async () => {
    const m = new VigilMetrics({ processMetrics: false });
    const webhook = { name: 'desk', format: 'slack' as const, queued: 2, inFlight: 1, delivered: 7, failed: 1, retries: 3, dropped: 4, abandoned: 0 };
    const notifier = { stats: { received: 13, notLive: 0, suppressed: 0, unrouted: 0, webhooks: [webhook] } };
    const book = { suppressed: 5, size: 2 };
    const scorer = { counters: { requests: 10, published: 8, replayed: 1, timeouts: 1, refused: 0 } };
    m.watchNotifier(notifier);
    m.watchSnoozes(book);
    m.watchScorer(scorer);
    webhook.delivered = 9; // read at scrape time, not at registration
    const samples = parse(await m.registry.metrics());
    const one = (name: string, labels: Record<string, string> = {}) =>
      samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
    expect(one('vigil_webhook_deliveries_total', { webhook: 'desk', outcome: 'delivered' })).toBe(9);
    expect(one('vigil_webhook_deliveries_total', { webhook: 'desk', outcome: 'dropped' })).toBe(4);
    expect(one('vigil_webhook_retries_total', { webhook: 'desk' })).toBe(3);
    expect(one('vigil_webhook_queued', { webhook: 'desk' })).toBe(3);
    expect(one('vigil_snoozed_findings_total')).toBe(5);
    expect(one('vigil_snoozes_active')).toBe(2);
    expect(one('vigil_score_requests_total', { outcome: 'published' })).toBe(8);
    expect(one('vigil_score_requests_total', { outcome: 'timeouts' })).toBe(1);
  });
});

describe('GET /readyz', () => {
  it('is 200 while the store answers and every check passes, 503 naming what is down', async () => {
    const flag = join(dir, 'store-down');
    const faulty = withStoreFaults(store, { [FAULT_STORE_FLAG_ENV]: flag });
    const readiness = new Readiness();
    let pipelineStarted = true;
    readiness.set('pipeline', () => pipelineStarted);
    const app = await buildApi({ store: faulty, hub: new AlertHub(), readiness });
    try {
      const ok = await app.inject({ url: '/readyz' });
      expect(ok.statusCode).toBe(200);
      expect(ok.json()).toEqual({ status: 'ready', down: [], checks: { store: true, pipeline: true } });

      writeFileSync(flag, '');
      const down = await app.inject({ url: '/readyz' });
      expect(down.statusCode).toBe(503);
      expect(down.json()).toEqual({ status: 'unavailable', down: ['store'], checks: { store: false, pipeline: true } });
      // Liveness is a separate route (it still reports the store, as before).
      expect((await app.inject({ url: '/healthz' })).statusCode).toBe(503);

      rmSync(flag);
      pipelineStarted = false;
      const notStarted = await app.inject({ url: '/readyz' });
      expect(notStarted.statusCode).toBe(503);
      expect(notStarted.json().down).toEqual(['pipeline']);

      pipelineStarted = true;
      expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200);
      // A check that throws counts as down.
      readiness.set('stateStore', () => {
        throw new Error('redis gone');
      });
      expect((await app.inject({ url: '/readyz' })).json().down).toEqual(['stateStore']);
    } finally {
      if (existsSync(flag)) rmSync(flag);
      await app.close();
    }
  });
});

describe('the roles\' health server (vigil feeds, vigil detect)', () => {
  it('serves /healthz, /readyz naming what is down, and /metrics', async () => {
    let transportOk = true;
    const config = { VIGIL_HEALTH_PORT: 0, HOST: '127.0.0.1' } as unknown as Config;
    const health = await startHealthServer(config, 'detect', () => ({ ok: transportOk, transport: transportOk, stateStore: true }), metrics);
    expect(health).toBeDefined();
    const base = health!.url.replace(/\/healthz$/, '');
    try {
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      const m = await fetch(`${base}/metrics`);
      expect(m.status).toBe(200);
      expect(total(parse(await m.text()), 'vigil_findings_total')).toBe(summary.totalFindings);
      transportOk = false;
      const down = await fetch(`${base}/readyz`);
      expect(down.status).toBe(503);
      expect(((await down.json()) as { down: string[] }).down).toEqual(['transport']);
    } finally {
      await health!.close();
    }
  });
});

describe('the Grafana dashboard', () => {
  it('queries only metrics the registry exports, and the findings table', () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Array<{ title: string; type: string; datasource?: { type?: string }; targets?: Array<Record<string, unknown>> }> };
    const registered = new Set(metrics.metricNames());
    const queried = new Set<string>();
    let clickhouseTable = false;
    for (const panel of dashboard.panels) {
      for (const t of panel.targets ?? []) {
        if (typeof t.expr === 'string') {
          for (const [name] of t.expr.matchAll(/\b(?:vigil|process|nodejs)_[a-z0-9_]+\b/g)) queried.add(name);
        }
        if (typeof t.rawSql === 'string' && /\bFROM\s+\$\{database\}\.findings\b/i.test(t.rawSql)) clickhouseTable = panel.type === 'table' && panel.datasource?.type === 'grafana-clickhouse-datasource';
      }
    }
    expect(queried.size).toBeGreaterThan(10);
    for (const name of queried) {
      const base = name.replace(/_(bucket|sum|count)$/, '');
      expect(registered.has(name) || registered.has(base), `${name} is not in the registry`).toBe(true);
    }
    for (const required of ['vigil_events_total', 'vigil_transport_queued_messages', 'vigil_detector_event_duration_seconds_bucket', 'vigil_findings_total', 'vigil_dead_letters_total', 'vigil_feed_reconnects_total']) {
      expect(queried, required).toContain(required);
    }
    expect(clickhouseTable).toBe(true);
  });
});

describe('GET /readyz when the store is closed', () => {
  // Last: it closes the file's store.
  it('is 503 naming the store', async () => {
    const app = await buildApi({ store, hub: new AlertHub() });
    try {
      expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200);
      // No /metrics without a registry.
      expect((await app.inject({ url: '/metrics' })).statusCode).toBe(404);
      await store.close();
      storeClosed = true;
      const res = await app.inject({ url: '/readyz' });
      expect(res.statusCode).toBe(503);
      expect(res.json()).toMatchObject({ status: 'unavailable', down: ['store'] });
    } finally {
      await app.close();
    }
  });
});
