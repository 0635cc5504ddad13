/**
 * Synchronous scoring: latency and throughput of POST /api/transactions/score on the embedded
 * one-process service (`vigil run` without Kafka: API + in-process pipeline with the default rules +
 * embedded ClickHouse storing the scores), with N concurrent keep-alive HTTP clients posting realistic
 * card and payment traffic of many accounts (test/helpers/tx-traffic.ts) for a few seconds. Latency is
 * measured at the client (request sent → answer read); the first `warmupMs` are not counted.
 *
 *   node --import tsx bench/scoring.ts
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { AlertHub } from '../src/api/alert-hub.ts';
import { buildApi } from '../src/api/server.ts';
import type { Transaction } from '../src/core/events.ts';
import { loadRules } from '../src/detectors/configure.ts';
import { Pipeline } from '../src/pipeline/pipeline.ts';
import { TransactionScorer } from '../src/pipeline/scoring.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import { DAY, traffic } from '../test/helpers/tx-traffic.ts';
import { fmtInt, printSection, type BenchSection } from './table.ts';

export interface ScoringBenchOptions {
  /** Measured time, after the warm-up (default 5 s). */
  durationMs?: number;
  warmupMs?: number;
  /** Concurrent keep-alive clients (default 32). */
  clients?: number;
  /** Accounts in the traffic (default 2000). */
  accounts?: number;
}

export interface ScoringBenchResult {
  requests: number;
  p50Ms: number;
  p99Ms: number;
  rps: number;
  /** Answers other than 200 (counted, not in the latencies). */
  errors: number;
  clients: number;
  accounts: number;
  /** Median of the answers' own latencyMs (publish → score, without HTTP). */
  serverP50Ms: number;
  /** Process CPU time (clients included) per measured request: comparable on a busy machine. */
  cpuMsPerRequest: number;
}

const TRAFFIC_DAYS = 3;

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

/** POSTs one JSON body over a keep-alive agent; resolves with the status and the parsed answer. */
function postJson(agent: Agent, port: number, body: string): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, host: '127.0.0.1', port, method: 'POST', path: '/api/transactions/score', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
          } catch (e) {
            reject(e as Error);
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export async function benchScoring(opts: ScoringBenchOptions = {}): Promise<ScoringBenchResult> {
  const durationMs = opts.durationMs ?? 5_000;
  const warmupMs = opts.warmupMs ?? 1_000;
  const clients = opts.clients ?? 32;
  const accounts = opts.accounts ?? 2_000;
  const base = traffic(7, { accounts, days: TRAFFIC_DAYS, prefix: 'BENCH-' }).txs;
  // Traffic for longer runs: the same days again, later, under new ids (a repeated id would be answered from memory).
  let cursor = 0;
  const next = (): Transaction => {
    const lap = Math.floor(cursor / base.length);
    const t = base[cursor++ % base.length] as Transaction;
    return lap === 0 ? t : { ...t, id: `${t.id}~${lap}`, ts: t.ts + lap * TRAFFIC_DAYS * DAY };
  };

  const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-scoring-'));
  const store = await openStore({ dataDir: dir });
  const pipeline = new Pipeline({ runId: 'live', detectors: loadRules({ detectors: {} }).instances, store });
  const scorer = new TransactionScorer();
  const app = await buildApi({ store, hub: new AlertHub(), scorer });
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  const latencies: number[] = [];
  const serverLatencies: number[] = [];
  let errors = 0;
  try {
    await pipeline.start();
    await scorer.attach(pipeline.transport);
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as { port: number }).port;
    const start = performance.now();
    const measureFrom = start + warmupMs;
    const end = measureFrom + durationMs;
    let cpuFrom: NodeJS.CpuUsage | undefined;
    const client = async (): Promise<void> => {
      while (performance.now() < end) {
        const body = JSON.stringify(next());
        const t = performance.now();
        const { status, json } = await postJson(agent, port, body);
        const done = performance.now();
        if (t < measureFrom) continue;
        cpuFrom ??= process.cpuUsage();
        if (status !== 200) {
          errors++;
          continue;
        }
        latencies.push(done - t);
        serverLatencies.push((json as { latencyMs: number }).latencyMs);
      }
    };
    await Promise.all(Array.from({ length: clients }, () => client()));
    const measuredS = (Math.min(performance.now(), end) - measureFrom) / 1000;
    const cpu = process.cpuUsage(cpuFrom);
    latencies.sort((a, b) => a - b);
    serverLatencies.sort((a, b) => a - b);
    return {
      requests: latencies.length,
      p50Ms: quantile(latencies, 0.5),
      p99Ms: quantile(latencies, 0.99),
      rps: latencies.length / measuredS,
      errors,
      clients,
      accounts,
      serverP50Ms: quantile(serverLatencies, 0.5),
      cpuMsPerRequest: (cpu.user + cpu.system) / 1000 / Math.max(1, latencies.length),
    };
  } finally {
    agent.destroy();
    await app.close();
    await scorer.detach();
    await pipeline.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '—');

/** The bench section (bench/index.ts). */
export async function scoringSection(opts?: ScoringBenchOptions): Promise<BenchSection> {
  const r = await benchScoring(opts);
  return {
    id: 'scoring',
    title: 'POST /api/transactions/score, embedded service (API + in-process pipeline + embedded ClickHouse)',
    header: ['clients', 'accounts', 'requests', 'requests/s', 'p50 ms', 'p99 ms', 'scorer p50 ms', 'CPU ms/request', 'errors'],
    rows: [[String(r.clients), fmtInt(r.accounts), fmtInt(r.requests), fmtInt(r.rps), ms(r.p50Ms), ms(r.p99Ms), ms(r.serverP50Ms), ms(r.cpuMsPerRequest), fmtInt(r.errors)]],
    notes: [
      'latency at the client over keep-alive HTTP (warm-up excluded); scorer p50 = publish → risk records and findings back, without HTTP;',
      'CPU ms/request = the whole process (clients, API, detectors, ClickHouse inserts) per request',
    ],
    json: r,
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  printSection(await scoringSection());
  process.exit(0);
}
