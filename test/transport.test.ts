import { describe, expect, it } from 'vitest';
import { MemoryTransport } from '../src/transport/memory.ts';
import { partitionFor } from '../src/transport/partitioner.ts';

const tick = () => new Promise((r) => setImmediate(r));

describe('MemoryTransport', () => {
  it('keeps per-key order and spreads keys over partitions', async () => {
    const t = new MemoryTransport({ partitions: 4, queueCapacity: 64, maxBatch: 7 });
    const seen = new Map<string, number[]>();
    const partitionsUsed = new Set<number>();
    await t.subscribe<number>({
      group: 'g',
      topics: ['a'],
      eachBatch: async (b) => {
        partitionsUsed.add(b.partition);
        for (const m of b.messages) {
          expect(partitionFor(m.key, 4)).toBe(b.partition);
          (seen.get(m.key) ?? seen.set(m.key, []).get(m.key)!).push(m.value);
        }
        if (b.partition % 2 === 0) await tick(); // uneven consumer speed must not reorder a key
      },
    });
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
    for (let i = 0; i < 500; i++) await t.send('a', keys.map((key) => ({ key, value: i })));
    await t.drain();
    expect(partitionsUsed.size).toBe(4);
    for (const key of keys) expect(seen.get(key)).toEqual(Array.from({ length: 500 }, (_, i) => i));
    expect(t.stats()).toMatchObject({ sent: 10_000, delivered: 10_000, queued: 0, unrouted: 0 });
    await t.close();
  });

  it('delivers every message to every group, with offsets per partition', async () => {
    const t = new MemoryTransport({ partitions: 2 });
    const got: Record<string, number> = { x: 0, y: 0 };
    const offsets = new Map<string, number>();
    for (const group of ['x', 'y']) {
      await t.subscribe<string>({
        group,
        topics: ['a', 'b'],
        eachBatch: (b) => {
          for (const m of b.messages) {
            const k = `${group}/${b.topic}/${b.partition}`;
            expect(m.offset).toBe((offsets.get(k) ?? -1) + 1);
            offsets.set(k, m.offset);
          }
          got[group] = (got[group] ?? 0) + b.messages.length;
        },
      });
    }
    await t.send('a', [{ key: '1', value: 'p' }, { key: '2', value: 'q' }]);
    await t.send('b', [{ key: '3', value: 'r' }]);
    await t.send('nobody', [{ key: '3', value: 'r' }]);
    await t.drain();
    expect(got).toEqual({ x: 3, y: 3 });
    expect(t.stats().unrouted).toBe(1);
    await t.close();
  });

  it('makes senders wait while a consumer is behind, so the queue stays bounded', async () => {
    const capacity = 100;
    const t = new MemoryTransport({ partitions: 1, queueCapacity: capacity, maxBatch: 10 });
    let release!: () => void;
    let gate = new Promise<void>((r) => (release = r));
    let maxQueued = 0;
    await t.subscribe<number>({
      group: 'slow',
      topics: ['a'],
      eachBatch: async () => {
        await gate;
      },
    });
    let sent = 0;
    const producer = (async () => {
      for (let i = 0; i < 50; i++) {
        await t.send('a', Array.from({ length: 10 }, (_, j) => ({ key: 'k', value: i * 10 + j })));
        sent += 10;
        maxQueued = Math.max(maxQueued, t.stats().queued);
      }
    })();
    for (let i = 0; i < 20; i++) await tick();
    // The consumer is blocked: the producer must be stuck near the capacity, not at 500.
    expect(sent).toBeLessThanOrEqual(capacity + 10);
    expect(sent).toBeGreaterThanOrEqual(capacity - 10);
    release();
    gate = Promise.resolve();
    await producer;
    await t.drain();
    expect(sent).toBe(500);
    expect(maxQueued).toBeLessThanOrEqual(capacity + 10);
    expect(t.stats().waits).toBeGreaterThan(0);
    expect(t.stats().delivered).toBe(500);
    await t.close();
  });

  it('drain waits for in-flight batches and rejects when a handler fails', async () => {
    const t = new MemoryTransport({ partitions: 1 });
    let done = 0;
    await t.subscribe<number>({
      group: 'g',
      topics: ['a'],
      eachBatch: async (b) => {
        await new Promise((r) => setTimeout(r, 20));
        if (b.messages.some((m) => m.value === 13)) throw new Error('boom on 13');
        done += b.messages.length;
      },
    });
    await t.send('a', [{ key: 'k', value: 1 }]);
    await t.drain();
    expect(done).toBe(1);
    await t.send('a', [{ key: 'k', value: 13 }]);
    await expect(t.drain()).rejects.toThrow('boom on 13');
    await expect(t.send('a', [{ key: 'k', value: 2 }])).rejects.toThrow('boom on 13');
    await t.close();
  });

  it('refuses sends after close', async () => {
    const t = new MemoryTransport();
    await t.close();
    await expect(t.send('a', [{ key: 'k', value: 1 }])).rejects.toMatchObject({ code: 'VIGIL_ERR_TRANSPORT_CLOSED' });
  });
});
