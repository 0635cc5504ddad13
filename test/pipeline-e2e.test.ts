// File → pipeline → ClickHouse → API, in one process (one embedded store for the whole file).
import { createReadStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertHub } from '../src/api/alert-hub.ts';
import { buildApi } from '../src/api/server.ts';
import { findingSchema, type Finding } from '../src/core/events.ts';
import { buildDetectors } from '../src/detectors/configure.ts';
import { binanceAdapter } from '../src/feeds/binance.ts';
import { Pipeline } from '../src/pipeline/pipeline.ts';
import { replayFiles, type ReplaySummary } from '../src/replay/replay.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import type { Store } from '../src/storage/types.ts';
import { HFT_CAPTURE, tempDir } from './helpers/cli.ts';
import { OPEN_WORKFLOW } from '../src/storage/workflow.ts';

const dir = tempDir();
let store: Store;
let hub: AlertHub;

async function replay(runId: string, files: string[]): Promise<ReplaySummary> {
  const pipeline = await new Pipeline({ runId, detectors: buildDetectors({ detectors: {} }), store, hub, partitions: 3, queueCapacity: 256 }).start();
  const summary = await replayFiles(pipeline, { files, speed: { mode: 'max' } });
  await pipeline.close();
  return summary;
}

async function stored(runId: string): Promise<Finding[]> {
  const page = await store.searchFindings({ runId, limit: 1000, order: 'asc' });
  return page.items;
}

const strip = ({ runId: _r, ...rest }: Finding) => rest;

beforeAll(async () => {
  store = await openStore({ dataDir: dir });
  hub = new AlertHub();
});
afterAll(async () => {
  await store.close();
});

describe('a replay end to end', () => {
  let live: Finding[] = [];
  let summary: ReplaySummary;

  it('publishes findings to live subscribers and stores the same ones', async () => {
    const sub = hub.subscribe({ runId: 'a' }, (_d, m) => {
      if (m.type === 'finding') live.push(m.finding);
    });
    summary = await replay('a', [HFT_CAPTURE]);
    sub.close();
    expect(summary.totalFindings).toBeGreaterThan(0);
    const rows = await stored('a');
    expect(rows.length).toBe(summary.totalFindings);
    live = [...live].sort((x, y) => x.ts - y.ts || x.id.localeCompare(y.id));
    expect(rows).toEqual(live);
    for (const f of rows) expect(findingSchema.parse(f)).toEqual(f);
  });

  it('serves them over the API with filters and by id', async () => {
    const app = await buildApi({ store, hub });
    try {
      const all = (await app.inject({ url: '/api/findings?run=a&order=asc&limit=2' })).json() as { items: Finding[]; total: number; nextCursor: string | null };
      expect(all.total).toBe(summary.totalFindings);
      // Each finding as stored, with the workflow state of one nobody has touched yet.
      const served = (f: Finding) => ({ ...f, workflow: OPEN_WORKFLOW });
      expect(all.items).toEqual(live.slice(0, 2).map(served));
      const next = (await app.inject({ url: `/api/findings?run=a&order=asc&limit=2&cursor=${all.nextCursor}` })).json() as { items: Finding[] };
      expect(next.items).toEqual(live.slice(2, 4).map(served));
      const bySymbol = (await app.inject({ url: '/api/findings?run=a&symbol=BTC-USDT&venue=binance&detector=price_jump' })).json() as { total: number };
      expect(bySymbol.total).toBe(summary.findings.price_jump);
      expect(bySymbol.total).toBeGreaterThan(0);
      const other = (await app.inject({ url: '/api/findings?run=a&symbol=ETH-USDT' })).json() as { total: number };
      expect(other.total).toBe(0);
      const one = await app.inject({ url: `/api/findings/${live[0]!.id}?run=a` });
      expect(one.statusCode).toBe(200);
      expect(one.json()).toEqual(served(live[0]!));
    } finally {
      await app.close();
    }
  });

  it('is deterministic: another run of the same file gives the same ids and content', async () => {
    await replay('b', [HFT_CAPTURE]);
    expect((await stored('b')).map(strip)).toEqual((await stored('a')).map(strip));
  });

  it('canonical-event JSON lines of the same trades give the same findings as the raw frames', async () => {
    // Normalize the capture once, write the events as JSON lines, replay those.
    const normalizer = binanceAdapter.createNormalizer();
    const out: unknown[] = [];
    const rl = createInterface({ input: createReadStream(HFT_CAPTURE).pipe(createGunzip()), crlfDelay: Infinity });
    for await (const line of rl) {
      const sp = line.indexOf(' ');
      const events: never[] = [];
      normalizer.normalize({ recvTs: Number(line.slice(0, sp).slice(0, -6)), source: 'binance', data: line.slice(sp + 1) }, events);
      out.push(...events);
    }
    const file = join(dir, 'events.jsonl');
    writeFileSync(file, out.map((e) => JSON.stringify(e)).join('\n'));
    const s = await replay('c', [file]);
    expect(s.events).toMatchObject({ trade: 9757, quote: 28040, book: 3450, status: 1 });
    expect((await stored('c')).map(strip)).toEqual((await stored('a')).map(strip));
  });
});
