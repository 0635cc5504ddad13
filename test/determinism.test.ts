// Determinism, proven on stored findings: the same files and rules give the same findings (ids and every
// column) on every run, and a recording of a live feed replays to exactly the findings the live pipeline
// produced while it was recorded.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { parse as parseYaml } from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { RecordingWriter } from '../src/cli/record.ts';
import { DEFAULT_RULES_PATH, loadRulesFile } from '../src/detectors/rules.ts';
import { binanceAdapter } from '../src/feeds/binance.ts';
import { Pipeline } from '../src/pipeline/pipeline.ts';
import type { ReplaySummary } from '../src/replay/replay.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import { BinanceTestServer, type ClientScript } from './helpers/binance-server.ts';
import { HFT_CAPTURE, tempDir, vigil } from './helpers/cli.ts';

const dir = tempDir('vigil-determinism-');

/** Every column of a run's findings but the run id and the insert time, one JSON object per finding. */
const findingsQuery = (runId: string) => `SELECT * EXCEPT (run_id, inserted_at) FROM findings FINAL WHERE run_id = '${runId}' ORDER BY ts, id`;

/**
 * The shipped rules plus two sensitive price-jump rules (1 s and 100 ms intervals), so short inputs
 * give many findings.
 */
const rulesFile = join(dir, 'rules.json');
{
  const shipped = parseYaml(readFileSync(DEFAULT_RULES_PATH, 'utf8')) as { rules: unknown[] };
  shipped.rules.push(
    { id: 'price_jump.fast', detector: 'price_jump', params: { intervalMs: 1000, windowMs: 120000, maxSamples: 200, minSamples: 10, zThreshold: 3, minMoveBps: 0.5, cooldownMs: 2000 } },
    { id: 'price_jump.tick', detector: 'price_jump', params: { intervalMs: 100, windowMs: 30000, maxSamples: 300, minSamples: 10, zThreshold: 6, minMoveBps: 5, cooldownMs: 500 } },
  );
  writeFileSync(rulesFile, JSON.stringify(shipped));
}

async function replay(args: string[], dataDir: string): Promise<ReplaySummary> {
  const r = await vigil(['replay', ...args, '--rules', rulesFile, '--json'], { VIGIL_DATA_DIR: dataDir });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as ReplaySummary;
}

async function storedFindings(runId: string, dataDir: string): Promise<Record<string, unknown>[]> {
  const r = await vigil(['sql', findingsQuery(runId), '--format', 'jsonl'], { VIGIL_DATA_DIR: dataDir });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim() === '' ? [] : r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('the same files and rules, twice, into two fresh data directories', () => {
  it('give identical findings, row by row (ids and every column)', async () => {
    // Two inputs merged: the first ~2 minutes of the Binance capture, and canonical transactions.
    const part = join(dir, 'btcusdt-part.gz');
    writeFileSync(part, gzipSync(gunzipSync(readFileSync(HFT_CAPTURE)).toString('utf8').split('\n').slice(0, 15_000).join('\n')));
    const t0 = Date.UTC(2024, 7, 8, 23, 54, 14);
    const tx: string[] = [];
    for (let i = 0; i < 400; i++) {
      // One account pays fast and in growing amounts late on: velocity and amount rules have something.
      const burst = i > 300 && i % 2 === 0;
      tx.push(
        JSON.stringify({
          kind: 'transaction',
          source: 'bank',
          id: `t${i}`,
          ts: t0 + i * (burst ? 50 : 300),
          account: burst ? 'acc-burst' : `acc-${i % 9}`,
          counterparty: `cp-${i % 4}`,
          amount: burst ? 900 + i : 20 + (i % 17),
          currency: 'EUR',
          direction: 'debit',
          channel: 'card_not_present',
        }),
      );
    }
    // Times of the burst rows jump ahead of the others: sort, as the merge expects sorted inputs.
    tx.sort((a, b) => (JSON.parse(a) as { ts: number }).ts - (JSON.parse(b) as { ts: number }).ts);
    const txFile = join(dir, 'tx.jsonl');
    writeFileSync(txFile, `${tx.join('\n')}\n`);

    const dirs = [join(dir, 'a'), join(dir, 'b')];
    const summaries = [await replay([part, txFile, '--run-id', 'det'], dirs[0]!), await replay([part, txFile, '--run-id', 'det'], dirs[1]!)];
    const [a, b] = [await storedFindings('det', dirs[0]!), await storedFindings('det', dirs[1]!)];
    expect(a.length).toBe(summaries[0]!.totalFindings);
    expect(a.length).toBeGreaterThan(10);
    expect(new Set(a.map((f) => f.detector)).size).toBeGreaterThan(1);
    expect(b).toHaveLength(a.length);
    for (let i = 0; i < a.length; i++) expect(b[i], `finding ${i}`).toEqual(a[i]);
    expect(summaries[1]!.findings).toEqual(summaries[0]!.findings);
    expect(summaries[1]!.events).toEqual(summaries[0]!.events);
  });
});

// ---------------------------------------------------------------- live, recorded, replayed

const servers: BinanceTestServer[] = [];
afterEach(async () => {
  while (servers.length > 0) await servers.pop()!.close();
});

/** A trade far off the market (±3 %), sent as a raw frame after step `step` (the sim's clock: 10 ms a step). */
function jump(symbol: string, step: number, price: string): { conn: number; step: number; text: string } {
  const T = 1_700_000_000_000 + step * 10;
  const data = { e: 'trade', E: T, s: symbol, t: 9_000_000 + step, p: price, q: '0.01000', T, m: false, M: true };
  return { conn: 0, step, text: JSON.stringify({ stream: `${symbol.toLowerCase()}@trade`, data }) };
}

describe('a live feed, recorded while the live pipeline ran, then replayed', () => {
  it('replays to exactly the findings the live pipeline stored (ids and every column but the run id)', async () => {
    const script: ClientScript = {
      ticks: 1_000,
      // A sequence gap on ETH: the live normalizer asks for a new snapshot, which the recording keeps.
      skip: [{ conn: 0, step: 420, symbol: 'ETHUSDT' }],
      raw: [
        jump('BTCUSDT', 200, '103.00'),
        jump('BTCUSDT', 350, '97.00'),
        jump('BTCUSDT', 500, '103.50'),
        jump('BTCUSDT', 650, '96.50'),
        jump('BTCUSDT', 800, '104.00'),
        jump('ETHUSDT', 260, '1133.00'),
        jump('ETHUSDT', 480, '1067.00'),
        jump('ETHUSDT', 720, '1140.00'),
      ],
    };
    const server = await BinanceTestServer.start({ symbols: ['BTCUSDT', 'ETHUSDT'], tickMs: 1, script: () => script });
    servers.push(server);

    // The live side, as `vigil run` builds it: one pipeline (run "live", batch size 1) on the venue's
    // connection, the normalizer's resync requests going back to it; the recorder writes every frame of
    // that same connection before the pipeline gets it.
    const liveDir = join(dir, 'live');
    const store = await openStore({ dataDir: liveDir });
    let liveRows: Record<string, unknown>[];
    let liveFindings: Record<string, number>;
    const recording = join(dir, 'session.jsonl.gz');
    try {
      const pipeline = await new Pipeline({ runId: 'live', detectors: loadRulesFile(rulesFile).instances, store, ingest: { batchSize: 1 } }).start();
      const writer = new RecordingWriter({ out: recording });
      await writer.start();
      const ctrl = new AbortController();
      const feed = binanceAdapter.connect!({ symbols: ['btcusdt', 'ethusdt'], wsUrl: server.wsUrl('live'), restUrl: server.restUrl('live'), signal: ctrl.signal });
      pipeline.ingestor.setNormalizer(binanceAdapter.name, binanceAdapter.createNormalizer({ requestResync: (symbol, reason) => feed.resync(symbol, reason) }));
      const loop = (async () => {
        for await (const frame of feed) {
          await writer.write(frame);
          await pipeline.ingestor.push(frame);
        }
      })();
      const t0 = Date.now();
      while (!server.current('live')?.done && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 500)); // the last frames in flight
      ctrl.abort();
      await loop;
      await writer.close();
      await pipeline.close(); // drains: every finding stored
      liveFindings = { ...pipeline.detectors.counters.findings };
      expect(server.requestsOf('live').map((r) => r.symbol).slice(2)).toEqual(['ETHUSDT']); // the resync happened
      liveRows = (await store.sql(findingsQuery('live'), 'JSONEachRow')).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    } finally {
      await store.close();
    }
    expect(liveRows.length).toBeGreaterThanOrEqual(8);
    expect(liveRows.filter((f) => f.rule_id === 'price_jump.tick').length).toBeGreaterThanOrEqual(8); // one per jump at least

    const summary = await replay([recording, '--run-id', 'replayed'], join(dir, 'replayed'));
    expect(summary.malformed.count).toBe(0);
    expect(summary.findings).toEqual(liveFindings);
    const replayed = await storedFindings('replayed', join(dir, 'replayed'));
    expect(replayed).toHaveLength(liveRows.length);
    for (let i = 0; i < liveRows.length; i++) expect(replayed[i], `finding ${i}`).toEqual(liveRows[i]);
  });
});
