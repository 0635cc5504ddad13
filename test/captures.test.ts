// Every real capture in ../shared/data/exchange_raw replays through the pipeline with no dead letters
// and no frame left without an adapter.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildDetectors } from '../src/detectors/configure.ts';
import { Pipeline } from '../src/pipeline/pipeline.ts';
import { replayFiles } from '../src/replay/replay.ts';
import { CAPTURES } from './helpers/cli.ts';

const files = ['cryptofeed', 'hftbacktest'].flatMap((d) =>
  readdirSync(join(CAPTURES, d))
    .filter((f) => f.endsWith('.gz'))
    .map((f) => join(CAPTURES, d, f)),
);

describe('every shared capture replays cleanly', () => {
  it('finds the captures', () => {
    expect(files.length).toBe(9);
  });

  it.each(files)('%s', async (file) => {
    const pipeline = await new Pipeline({ runId: 'captures', detectors: buildDetectors({ detectors: {} }) }).start();
    const s = await replayFiles(pipeline, { files: [file], speed: { mode: 'max' } });
    await pipeline.close();
    expect(s.status).toBe('completed');
    expect(s.unsupported, 'frames from a venue without an adapter').toEqual({});
    expect(s.malformed.first, 'dead letters').toEqual([]);
    expect(s.malformed.count).toBe(0);
    expect(s.frames).toBeGreaterThan(0);
    // REST bootstrap files hold no market events; every stream capture does.
    if (file.includes('.ws.') || file.includes('hftbacktest')) expect(s.totalEvents).toBeGreaterThan(0);
    for (const bySymbol of Object.values(s.books)) for (const r of Object.values(bySymbol)) if (r.compared) expect(r.matchRate).toBeGreaterThanOrEqual(0.999);
  });
});
