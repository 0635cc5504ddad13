import { describe, expect, it } from 'vitest';
import { MemoryTransport } from '../src/transport/memory.ts';
import type { DeliveredMessage } from '../src/transport/types.ts';

const tick = () => new Promise((r) => setImmediate(r));

describe('MemoryTransport queues', () => {
  it('gives each group its own offsets, also a group that subscribes after messages were sent', async () => {
    const t = new MemoryTransport({ partitions: 1 });
    const got: Record<string, DeliveredMessage<number>[]> = { early: [], late: [] };
    const subscribe = (group: string) =>
      t.subscribe<number>({ group, topics: ['a'], eachBatch: (b) => void got[group]!.push(...b.messages) });
    await subscribe('early');
    await t.send('a', [{ key: 'k', value: 0 }, { key: 'k', value: 1, headers: { run: 'r' } }]);
    await t.drain();
    await subscribe('late');
    await t.send('a', [{ key: 'k', value: 2 }, { key: 'j', value: 3, headers: { view: 'v' } }]);
    await t.drain();
    const plain = (ms: DeliveredMessage<number>[]) => ms.map((m) => ({ ...m }));
    expect(plain(got.early!)).toEqual([
      { key: 'k', value: 0, headers: undefined, offset: 0 },
      { key: 'k', value: 1, headers: { run: 'r' }, offset: 1 },
      { key: 'k', value: 2, headers: undefined, offset: 2 },
      { key: 'j', value: 3, headers: { view: 'v' }, offset: 3 },
    ]);
    expect(plain(got.late!)).toEqual([
      { key: 'k', value: 2, headers: undefined, offset: 0 },
      { key: 'j', value: 3, headers: { view: 'v' }, offset: 1 },
    ]);
    // Every message has the same fields, in the same order.
    for (const m of [...got.early!, ...got.late!]) expect(Object.keys(m)).toEqual(['key', 'value', 'headers', 'offset']);
    await t.close();
  });

  it('delivers a deep queue in order, in batches of at most maxBatch, across compactions', async () => {
    const total = 20_000;
    const t = new MemoryTransport({ partitions: 1, queueCapacity: 16_384, maxBatch: 300 });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const values: number[] = [];
    const offsets: number[] = [];
    let maxBatch = 0;
    await t.subscribe<number>({
      group: 'g',
      topics: ['a'],
      eachBatch: async (b) => {
        await gate;
        maxBatch = Math.max(maxBatch, b.messages.length);
        for (const m of b.messages) {
          values.push(m.value);
          offsets.push(m.offset);
        }
      },
    });
    // Sent while the consumer is held, so the queue holds thousands and is taken in partial batches.
    const producer = (async () => {
      for (let i = 0; i < total; i += 1000) await t.send('a', Array.from({ length: 1000 }, (_, j) => ({ key: 'k', value: i + j })));
    })();
    for (let i = 0; i < 20; i++) await tick();
    expect(t.stats().queued).toBeGreaterThan(4096);
    release();
    await producer;
    await t.drain();
    expect(values).toEqual(Array.from({ length: total }, (_, i) => i));
    expect(offsets).toEqual(values);
    expect(maxBatch).toBe(300);
    expect(t.stats()).toMatchObject({ sent: total, delivered: total, queued: 0 });
    await t.close();
  });
});
