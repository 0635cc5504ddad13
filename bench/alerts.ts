/**
 * Alert delivery latency: detection → WebSocket client, through the real parts `vigil run` uses in one
 * process — a Pipeline (in-process transport, embedded ClickHouse in a temporary directory) whose
 * alert hub feeds the API's WS /api/alerts route (buildApi, listening on a free port), and a `ws`
 * client connected to it.
 *
 * Input: a synthetic trade stream of one instrument, paced in wall time (default 2 000 trades/s):
 * a small random walk with a step of ±50 bps every `tradesPerJump` trades, which price_jump (one rule,
 * 100 ms intervals) reports once per step. Latency per finding = wall time the client received it −
 * wall time its triggering trade (evidence.triggers[0]) was handed to the pipeline's ingestor. One
 * process, one monotonic clock (performance.now()); the store's inserts run alongside, as they do in
 * `vigil run`. The first `warmupFindings` findings are not measured (JIT, the store's first inserts).
 *
 * Alone: `node --import tsx bench/alerts.ts` prints the figures.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { quantile } from 'simple-statistics';
import WebSocket from 'ws';
import { AlertHub, type AlertMessage } from '../src/api/alert-hub.ts';
import { buildApi } from '../src/api/server.ts';
import { eventRef, type Trade } from '../src/core/events.ts';
import { buildRuleSet } from '../src/detectors/rules.ts';
import { Pipeline } from '../src/pipeline/pipeline.ts';
import { openStore } from '../src/storage/clickhouse.ts';

export interface AlertLatencyOptions {
  /** Findings to measure (default 200). */
  findings?: number;
  /** Trades handed to the pipeline per second of wall time (default 2000). */
  eventsPerSec?: number;
  /** Trades between two price steps, one finding each (default 50). */
  tradesPerJump?: number;
  /** Findings received first and not measured: JIT, the store's first inserts (default 20). */
  warmupFindings?: number;
}

export interface AlertLatency {
  samples: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Trades handed to the pipeline. */
  events: number;
  /**
   * The event loop's longest stall while measuring: the spikes of the tail (the embedded store's
   * inserts run in this process's loop, as in `vigil run`).
   */
  loopDelayMaxMs: number;
}

const VENUE = 'bench';
const SYMBOL = 'BTC-USDT';
/** Event time between two trades. */
const TRADE_GAP_MS = 20;
const RULES = {
  rules: [
    {
      id: 'bench-price-jump',
      detector: 'price_jump',
      // 100 ms intervals (5 trades each), baseline from 20 of them; a step fires once per direction and 500 ms.
      params: { intervalMs: 100, windowMs: 60_000, maxSamples: 600, minSamples: 20, zThreshold: 6, minMoveBps: 20, cooldownMs: 500 },
    },
  ],
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function benchAlertLatency(opts: AlertLatencyOptions = {}): Promise<AlertLatency> {
  const wanted = opts.findings ?? 200;
  const rate = opts.eventsPerSec ?? 2000;
  const perJump = opts.tradesPerJump ?? 50;
  const warmup = opts.warmupFindings ?? 20;
  const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-alerts-'));
  const store = await openStore({ dataDir: dir });
  const hub = new AlertHub();
  const app = await buildApi({ store, hub });
  let ws: WebSocket | undefined;
  let pipeline: Pipeline | undefined;
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as { port: number }).port;
    pipeline = await new Pipeline({ runId: 'live', detectors: buildRuleSet(RULES, 'bench/alerts.ts').instances, store, hub, ingest: { batchSize: 1 } }).start();

    const loopDelay = monitorEventLoopDelay({ resolution: 5 });
    const handedOver = new Map<string, number>();
    const latencies: number[] = [];
    let received = 0;
    const client = new WebSocket(`ws://127.0.0.1:${port}/api/alerts?detector=price_jump`);
    ws = client;
    client.on('message', (data) => {
      const at = performance.now();
      const m = JSON.parse(String(data)) as AlertMessage;
      if (m.type !== 'finding') return;
      if (received++ < warmup) return;
      if (received === warmup + 1) loopDelay.enable();
      const sent = handedOver.get(m.finding.evidence.triggers[0] ?? '');
      if (sent !== undefined) latencies.push(at - sent);
      handedOver.delete(m.finding.evidence.triggers[0] ?? '');
    });
    await new Promise<void>((resolve, reject) => {
      client.once('open', () => resolve());
      client.once('error', reject);
    });
    while (hub.stats.subscribers === 0) await sleep(1);

    // Trades until enough findings arrived (or a bound on trades, so a broken detector cannot hang it).
    const maxTrades = (warmup + wanted + 10) * perJump * 2;
    const t0 = performance.now();
    const ts0 = Date.now();
    let price = 60_000;
    let direction = 1;
    let random = 1;
    let events = 0;
    for (let i = 0; i < maxTrades && received < warmup + wanted; i++) {
      if (i % 10 === 0) {
        const wait = t0 + (i * 1000) / rate - performance.now();
        if (wait > 0) await sleep(wait);
      }
      random = (random * 16807) % 2147483647; // deterministic walk (Park-Miller)
      // After a 200-trade baseline, a ±50 bps step every perJump trades (alternating); else ±0.5 bps noise.
      const jump = i >= 200 && i % perJump === 0;
      price *= 1 + (jump ? direction * 0.005 : (random / 2147483647 - 0.5) * 0.0001);
      if (jump) direction = -direction;
      const ts = ts0 + i * TRADE_GAP_MS;
      const trade: Trade = { kind: 'trade', venue: VENUE, symbol: SYMBOL, ts, recvTs: ts, price: Math.round(price * 100) / 100, qty: 0.01, side: random % 2 === 0 ? 'buy' : 'sell', tradeId: String(i) };
      handedOver.set(eventRef(trade), performance.now());
      events++;
      await pipeline.ingestor.pushEvent(trade);
    }
    await pipeline.drain();
    loopDelay.disable();
    const deadline = performance.now() + 5_000;
    while (received < hub.stats.published && performance.now() < deadline) await sleep(5); // the last ones in flight
    if (latencies.length === 0) throw new Error('bench alerts: no finding reached the WebSocket client; nothing to measure');
    return {
      samples: latencies.length,
      p50Ms: quantile(latencies, 0.5),
      p99Ms: quantile(latencies, 0.99),
      maxMs: Math.max(...latencies),
      events,
      loopDelayMaxMs: loopDelay.max / 1e6,
    };
  } finally {
    ws?.close();
    await pipeline?.close();
    hub.closeAll();
    await app.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await benchAlertLatency();
  const ms = (x: number) => x.toFixed(2);
  console.log('alert delivery latency: detection → WebSocket client (trade handed to the pipeline → finding received by a ws client)');
  console.log(`  findings measured  ${r.samples} (${r.events} trades)`);
  console.log(`  p50 / p99 / max ms ${ms(r.p50Ms)} / ${ms(r.p99Ms)} / ${ms(r.maxMs)}`);
  console.log(`  longest event-loop stall meanwhile ${ms(r.loopDelayMaxMs)} ms (the embedded store's inserts share the loop, as in vigil run)`);
  process.exit(0);
}
