/**
 * Parse + normalize throughput per venue, on real captures, against the ceiling of plain JSON.parse on
 * the same frames. Each figure is the best of several passes (least disturbed by GC and the other core).
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { CanonicalEvent } from '../src/core/events.ts';
import { getAdapter, venues } from '../src/feeds/registry.ts';
import { MalformedFrameError, type RawFrame } from '../src/feeds/types.ts';
import { readRecords } from '../src/replay/formats.ts';

const CAPTURES = '../shared/data/exchange_raw';
/** Real captures per venue; venues without one here are benchmarked when a capture is added. */
export const FEED_CAPTURES: Record<string, string[]> = {
  binance: [`${CAPTURES}/hftbacktest/spot_btcusdt_20240808.gz`, `${CAPTURES}/cryptofeed/BINANCE.ws.1.0.gz`],
  coinbase: [`${CAPTURES}/cryptofeed/COINBASE.ws.28.0.gz`],
  kraken: [`${CAPTURES}/cryptofeed/KRAKEN.ws.50.0.gz`, `${CAPTURES}/cryptofeed/KRAKEN.ws.49.0.gz`, `${CAPTURES}/cryptofeed/KRAKEN.ws.48.0.gz`],
  okx: [`${CAPTURES}/cryptofeed/OKX.ws.1.0.gz`],
};

export interface FeedBenchRow {
  venue: string;
  /** `capture` (real traffic) or `fixture` (the venue's documented example frames, repeated). */
  input: 'capture' | 'fixture';
  frames: number;
  events: number;
  bytes: number;
  jsonParseFramesPerSec: number;
  normalizeFramesPerSec: number;
  /** normalize throughput as a share of the JSON.parse ceiling. */
  ratio: number;
}

async function loadFrames(venue: string, files: string[]): Promise<RawFrame[]> {
  const frames: RawFrame[] = [];
  for (const f of files) {
    for await (const r of readRecords(f)) if (r.type === 'frame' && r.frame.source === venue) frames.push(r.frame);
  }
  return frames;
}

/** Mapped frames name their mapping file in the channel, as live mapped feeds and their recordings do. */
const MAPPED_CHANNEL = `mapping:${resolve('docs/feeds/examples/card-processor.json')}`;

/** Venues with no capture here are measured on their example frames (test/fixtures/frames/<venue>.jsonl). */
function fixtureFrames(venue: string): RawFrame[] {
  const path = `test/fixtures/frames/${venue}.jsonl`;
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((data, i) => ({ recvTs: 1_700_000_000_000 + i, source: venue, data, ...(venue === 'mapped' ? { channel: MAPPED_CHANNEL } : {}) }));
}

function best(passes: number, fn: () => void): number {
  let bestMs = Infinity;
  for (let i = 0; i < passes; i++) {
    const t = performance.now();
    fn();
    bestMs = Math.min(bestMs, performance.now() - t);
  }
  return bestMs;
}

export async function benchFeeds(options: { minFrames?: number; passes?: number } = {}): Promise<FeedBenchRow[]> {
  // Best of 3 passes of >= 50k frames (>= ~100 ms each): within a few % of longer runs, in a fraction of the time.
  const minFrames = options.minFrames ?? 50_000;
  const passes = options.passes ?? 3;
  const rows: FeedBenchRow[] = [];
  for (const venue of Object.keys(venues)) {
    const captured = await loadFrames(venue, FEED_CAPTURES[venue] ?? []);
    const input = captured.length > 0 ? 'capture' : 'fixture';
    const frames = captured.length > 0 ? captured : fixtureFrames(venue);
    if (frames.length === 0) continue;
    // Repeat small captures so every pass runs long enough to time.
    const reps = Math.max(1, Math.ceil(minFrames / frames.length));
    const adapter = getAdapter(venue);
    let sink = 0;
    const parseMs = best(passes, () => {
      for (let r = 0; r < reps; r++) for (const f of frames) sink += (JSON.parse(f.data) as object) ? 1 : 0;
    });
    let events = 0;
    const out: CanonicalEvent[] = [];
    const normMs = best(passes, () => {
      events = 0;
      for (let r = 0; r < reps; r++) {
        const n = adapter.createNormalizer(); // books and sequence state start fresh, as for a new replay
        for (const f of frames) {
          out.length = 0;
          try {
            n.normalize(f, out);
          } catch (e) {
            if (!(e instanceof MalformedFrameError)) throw e;
          }
          events += out.length;
        }
      }
    });
    if (sink < 0) console.log(sink);
    const total = frames.length * reps;
    rows.push({
      venue,
      input,
      frames: frames.length,
      events: events / reps,
      bytes: frames.reduce((a, f) => a + f.data.length, 0),
      jsonParseFramesPerSec: Math.round(total / (parseMs / 1000)),
      normalizeFramesPerSec: Math.round(total / (normMs / 1000)),
      ratio: Math.round((parseMs / normMs) * 1000) / 1000,
    });
  }
  return rows;
}
