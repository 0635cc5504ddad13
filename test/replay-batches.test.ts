/**
 * The batched read path of a replay (src/replay/formats.ts LineSplitter, readRecordBatches;
 * src/replay/merge.ts mergeBatchesByTime): the same lines as node:readline and the same merge order as
 * mergeByTime, whatever the chunk and batch boundaries.
 */
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { LineSplitter } from '../src/replay/formats.ts';
import { mulberry32 as rng } from './helpers/random.ts';
import { mergeBatchesByTime, mergeByTime } from '../src/replay/merge.ts';

/** A small seeded PRNG, so a failure reproduces. */

const PIECES = ['abc', '{"x":1}', ' ', '\t', 'é', '€', '😀', '\n', '\r\n', '\r', '\n\n', '\r\r\n', '\r\n\r'];

function randomText(rand: () => number, parts: number): Buffer {
  let s = '';
  for (let i = 0; i < parts; i++) s += PIECES[Math.floor(rand() * PIECES.length)];
  return Buffer.from(s, 'utf8');
}

/** Cuts bytes at random places (inside UTF-8 sequences and between \r and \n too). */
function randomChunks(rand: () => number, bytes: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes.length; ) {
    const n = 1 + Math.floor(rand() * 12);
    chunks.push(bytes.subarray(i, i + n));
    i += n;
  }
  return chunks;
}

async function readlineLines(chunks: Buffer[]): Promise<string[]> {
  const out: string[] = [];
  const rl = createInterface({ input: Readable.from(chunks, { objectMode: false }), crlfDelay: Infinity });
  for await (const line of rl) out.push(line);
  return out;
}

function splitterLines(chunks: Buffer[]): string[] {
  const s = new LineSplitter();
  const out: string[] = [];
  for (const c of chunks) s.write(c, out);
  s.end(out);
  return out;
}

describe('LineSplitter', () => {
  it('gives the lines node:readline gives (crlfDelay Infinity) for any chunking', async () => {
    const rand = rng(42);
    for (let round = 0; round < 300; round++) {
      const bytes = randomText(rand, 1 + Math.floor(rand() * 60));
      const chunks = randomChunks(rand, bytes);
      expect(splitterLines(chunks), JSON.stringify(bytes.toString('utf8'))).toEqual(await readlineLines(chunks));
    }
  });

  it('joins a \\r\\n split across chunks into one line end, and keeps a lone \\r as one', () => {
    expect(splitterLines([Buffer.from('a\r'), Buffer.from('\nb\rc')])).toEqual(['a', 'b', 'c']);
    expect(splitterLines([Buffer.from('a\r'), Buffer.from('\n\nb')])).toEqual(['a', '', 'b']);
  });

  it('reads ASCII chunks (latin1, external strings past 1 MB) and then UTF-8 split across chunks', async () => {
    const big = Buffer.from(`${'x'.repeat(600_000)}\n${'y'.repeat(700_000)}\nab`); // one 1.3 MB ASCII chunk
    const e = Buffer.from('é€\n', 'utf8'); // c3 a9 e2 82 ac 0a
    const chunks = [big, Buffer.from('c\n'), e.subarray(0, 1), e.subarray(1, 3), e.subarray(3), Buffer.from('z')];
    const lines = splitterLines(chunks);
    expect(lines).toEqual(await readlineLines(chunks));
    expect(lines).toEqual(['x'.repeat(600_000), 'y'.repeat(700_000), 'abc', 'é€', 'z']);
  });
});

interface Item {
  time: number;
  tag: string;
}

/** Items as batches of random sizes, empty batches included. */
async function* inBatches(items: readonly Item[], rand: () => number, log?: string[]): AsyncGenerator<Item[]> {
  try {
    for (let i = 0; i < items.length; ) {
      const n = Math.floor(rand() * 5);
      yield items.slice(i, i + n);
      i += n;
    }
  } finally {
    log?.push('closed');
  }
}

async function* oneAtATime(items: readonly Item[]): AsyncGenerator<Item> {
  yield* items;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function flat<T>(it: AsyncIterable<readonly T[]>): Promise<T[]> {
  const out: T[] = [];
  for await (const b of it) out.push(...b);
  return out;
}

describe('mergeBatchesByTime', () => {
  it('gives the order mergeByTime gives (ties by input, unsorted inputs kept in their own order)', async () => {
    const rand = rng(7);
    for (let round = 0; round < 200; round++) {
      const k = 1 + Math.floor(rand() * 4);
      const inputs: Item[][] = [];
      for (let i = 0; i < k; i++) {
        const n = Math.floor(rand() * 15);
        let t = Math.floor(rand() * 5);
        const items: Item[] = [];
        for (let j = 0; j < n; j++) {
          // mostly ascending with ties, sometimes a step back (an input out of order)
          t += rand() < 0.15 ? -Math.floor(rand() * 3) : Math.floor(rand() * 3);
          items.push({ time: t, tag: `${i}:${j}` });
        }
        inputs.push(items);
      }
      const expected = (await collect(mergeByTime(inputs.map(oneAtATime)))).map((x) => x.tag);
      const got = (await flat(mergeBatchesByTime(inputs.map((xs) => inBatches(xs, rand))))).map((x) => x.tag);
      expect(got).toEqual(expected);
    }
  });

  it('never hands out an empty batch, and closes every input when the consumer stops early', async () => {
    const logs: string[][] = [[], [], []];
    const rand = rng(3);
    const items = (offset: number): Item[] => Array.from({ length: 50 }, (_, i) => ({ time: i * 3 + offset, tag: `${offset}:${i}` }));
    let taken = 0;
    for await (const batch of mergeBatchesByTime([0, 1, 2].map((i) => inBatches(items(i), rand, logs[i])))) {
      expect(batch.length).toBeGreaterThan(0);
      taken += batch.length;
      if (taken > 20) break;
    }
    expect(logs).toEqual([['closed'], ['closed'], ['closed']]);
  });

  it('passes a failing input on, after closing the others', async () => {
    const log: string[] = [];
    async function* failing(): AsyncGenerator<Item[]> {
      yield [{ time: 1, tag: 'f' }];
      throw new Error('disk gone');
    }
    const ok = inBatches(
      Array.from({ length: 20 }, (_, i) => ({ time: i, tag: `${i}` })),
      rng(1),
      log,
    );
    await expect(flat(mergeBatchesByTime([ok, failing()]))).rejects.toThrow('disk gone');
    expect(log).toEqual(['closed']);
  });
});
