// Every venue parser against a large number of mutated real frames: no crash, no hang, and every
// rejected frame a dead letter with a reason and its raw text.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CanonicalEvent } from '../src/core/events.ts';
import { venues } from '../src/feeds/registry.ts';
import { MalformedFrameError, type RawFrame } from '../src/feeds/types.ts';
import { Ingestor, type DeadLetterMessage } from '../src/pipeline/ingest.ts';
import { readRecords } from '../src/replay/formats.ts';
import { MemoryTransport } from '../src/transport/memory.ts';
import { TOPICS } from '../src/transport/types.ts';
import { FEED_CAPTURES } from '../bench/feeds.ts';
import { mulberry32 } from './helpers/random.ts';

const MUTANTS_PER_VENUE = Number(process.env.VIGIL_FUZZ_MUTANTS ?? 20_000);

/** Seed frames per venue: its real captures, plus hand-made frames in test/fixtures/frames/<venue>.jsonl. */
async function seeds(venue: string): Promise<RawFrame[]> {
  const out: RawFrame[] = [];
  for (const f of FEED_CAPTURES[venue] ?? []) {
    for await (const r of readRecords(f)) if (r.type === 'frame' && r.frame.source === venue) out.push(r.frame);
  }
  const fixture = `test/fixtures/frames/${venue}.jsonl`;
  // Mapped frames name their mapping file in the channel, as a live mapped feed and its recordings do.
  const channel = venue === 'mapped' ? `mapping:${resolve('docs/feeds/examples/card-processor.json')}` : undefined;
  if (existsSync(fixture)) {
    for (const line of readFileSync(fixture, 'utf8').split('\n')) if (line.trim()) out.push({ recvTs: 1_700_000_000_000, source: venue, data: line, ...(channel ? { channel } : {}) });
  }
  return out;
}

const HUGE = ['1e308', '1e400', '-1e400', '-0', '123456789012345678901234567890', '"NaN"', '"Infinity"', '"-1"', '"1e999"', 'null', 'true', '[]', '{}', '""', '"x"'];

function mutate(data: string, r: () => number): string {
  const pick = <T>(a: readonly T[]) => a[Math.floor(r() * a.length)]!;
  // The costly shapes (deep nesting, megabyte-long fields) are rarer so the run stays short.
  const x = r();
  const kind = x < 0.01 ? 3 : x < 0.02 ? 6 : [0, 1, 2, 4, 5, 7, 8, 9][Math.floor(r() * 8)]!;
  switch (kind) {
    case 0: // truncated
      return data.slice(0, Math.floor(r() * data.length));
    case 1: {
      // a number replaced by something of another type or absurd size
      const nums = [...data.matchAll(/-?\d+(\.\d+)?(e[+-]?\d+)?/gi)];
      if (nums.length === 0) return data + pick(HUGE);
      const m = pick(nums);
      return data.slice(0, m.index) + pick(HUGE) + data.slice(m.index! + m[0].length);
    }
    case 2: {
      // a string value replaced by a number, null, object or huge number
      const strs = [...data.matchAll(/"[^"\\]*"/g)];
      if (strs.length === 0) return data;
      const m = pick(strs);
      return data.slice(0, m.index) + pick(HUGE) + data.slice(m.index! + m[0].length);
    }
    case 3: // deep nesting
      return '['.repeat(100_000 + Math.floor(r() * 100_000)) + ']'.repeat(Math.floor(r() * 2) * 100_000);
    case 4: {
      // invalid UTF-8 bytes, decoded as a WebSocket text frame would be
      const b = Buffer.from(data);
      for (let i = 0; i < 1 + r() * 8; i++) b[Math.floor(r() * b.length)] = 0xc0 + Math.floor(r() * 64);
      return b.toString('utf8');
    }
    case 5:
      return pick(['', ' ', 'null', '[]', '{}', '""', '0', 'true', '[null]', '{"data":null}', '{"stream":"x","data":[]}']);
    case 6: {
      // a megabyte-long field
      const i = data.indexOf('"', 1 + Math.floor(r() * Math.max(1, data.length - 2)));
      return i < 0 ? data + 'x'.repeat(1 << 20) : `${data.slice(0, i)}${'9'.repeat(1 << 20)}${data.slice(i)}`;
    }
    case 7: {
      // random byte flips
      const a = data.split('');
      for (let i = 0; i < 1 + r() * 5; i++) a[Math.floor(r() * a.length)] = String.fromCharCode(Math.floor(r() * 128));
      return a.join('');
    }
    case 8: {
      // a key dropped
      const keys = [...data.matchAll(/"[A-Za-z_]+":/g)];
      if (keys.length === 0) return data;
      const m = pick(keys);
      return data.slice(0, m.index) + '"zz_dropped":' + data.slice(m.index! + m[0].length);
    }
    default: {
      // arrays swapped for objects and back
      return data.replace(/\[/g, () => (r() < 0.1 ? '{' : '[')).replace(/\{/g, () => (r() < 0.05 ? '[' : '{'));
    }
  }
}

const report: Record<string, { tried: number; rejected: number; events: number }> = {};

describe('fuzzing every venue parser with mutated real frames', () => {
  const names = Object.keys(venues);
  it('has venues to fuzz', () => {
    expect(names.length).toBeGreaterThan(0);
  });

  it.each(names)('%s: only MalformedFrameError, never a crash or a hang; rejects become dead letters', async (venue) => {
    const base = await seeds(venue);
    expect(base.length, `no seed frames for ${venue}: add a capture or test/fixtures/frames/${venue}.jsonl`).toBeGreaterThan(0);
    const r = mulberry32(venue.split('').reduce((a, c) => a * 31 + c.charCodeAt(0), 7));
    const adapter = venues[venue]!;
    const normalizer = adapter.createNormalizer();
    const out: CanonicalEvent[] = [];
    let rejected = 0;
    let events = 0;
    const mutants: RawFrame[] = [];
    for (let i = 0; i < MUTANTS_PER_VENUE; i++) {
      const seed = base[Math.floor(r() * base.length)]!;
      // Interleave untouched frames so books get synced and deeper code paths see mutants.
      const data = r() < 0.3 ? seed.data : mutate(seed.data, r);
      const frame: RawFrame = { ...seed, data, recvTs: seed.recvTs + i };
      out.length = 0;
      try {
        normalizer.normalize(frame, out);
        events += out.length;
      } catch (e) {
        if (!(e instanceof MalformedFrameError)) throw new Error(`${venue} threw ${(e as Error).name}: ${(e as Error).message} on ${data.slice(0, 200)}`);
        expect(e.message.length).toBeGreaterThan(3);
        rejected++;
        if (mutants.length < 500) mutants.push(frame);
      }
    }
    report[venue] = { tried: MUTANTS_PER_VENUE, rejected, events };
    expect(rejected).toBeGreaterThan(MUTANTS_PER_VENUE * 0.05);

    // The same rejected frames through the ingest path end up on vigil.dlq with reason and raw text.
    const transport = new MemoryTransport({ partitions: 1 });
    const letters: DeadLetterMessage[] = [];
    await transport.subscribe<DeadLetterMessage>({ group: 'dlq', topics: [TOPICS.dlq], eachBatch: (b) => void letters.push(...b.messages.map((m) => m.value)) });
    const ingestor = new Ingestor(transport);
    const replayNormalizer = adapter.createNormalizer();
    ingestor.setNormalizer(venue, replayNormalizer);
    for (const f of mutants) await ingestor.push(f);
    await ingestor.flush();
    await transport.drain();
    expect(letters.length).toBe(ingestor.counters.malformed);
    expect(letters.length).toBeGreaterThan(0);
    for (const l of letters) {
      expect(l.reason.length).toBeGreaterThan(3);
      expect(mutants.some((m) => m.data === l.raw)).toBe(true);
    }
    await transport.close();
  }, 240_000);

  it('reports how many frames it tried', () => {
    const total = Object.values(report).reduce((a, r) => a + r.tried, 0);
    console.log(`fuzz: ${total.toLocaleString('en-US')} mutated frames over ${Object.keys(report).length} venues`, report);
    expect(total).toBe(MUTANTS_PER_VENUE * Object.keys(report).length);
  });
});
