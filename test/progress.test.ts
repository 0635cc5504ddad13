import { describe, expect, it } from 'vitest';
import { stderrProgress } from '../src/replay/progress.ts';
import type { IngestCounters } from '../src/pipeline/ingest.ts';

const counters = (trade: number): IngestCounters => ({
  frames: trade,
  events: { trade, quote: 0, book: 0, order: 0, transaction: 0, label: 0, metric: 0, status: 0 },
  ignored: {},
  malformed: 0,
  unsupported: {},
});

describe('replay progress', () => {
  it('prints events, events/s and an ETA from the share read, then ends the line', async () => {
    const lines: string[] = [];
    const p = stderrProgress('replay x', { afterMs: 0, everyMs: 0, write: (l) => lines.push(l) });
    await new Promise((r) => setTimeout(r, 20));
    for (let i = 1; i <= 256; i++) p.tick(counters(i * 1000), 0.25);
    p.done();
    expect(lines.length).toBe(2);
    expect(lines[0]).toMatch(/^\rreplay x: 256,000 events, [\d,]+ events\/s 25\.0% ETA \d+s/);
    expect(lines[1]).toBe('\n');
  });

  it('stays quiet on short runs', () => {
    const lines: string[] = [];
    const p = stderrProgress('replay y', { write: (l) => lines.push(l) });
    for (let i = 1; i <= 1024; i++) p.tick(counters(i), 0.5);
    p.done();
    expect(lines).toEqual([]);
  });
});
