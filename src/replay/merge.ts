/**
 * k-way merge of replay inputs by time: one lazy iterator per input and a binary heap over their
 * current heads, so each record costs O(log k) and memory holds one record (and one read buffer) per
 * input, whatever the files' sizes.
 *
 * The merge assumes every input is sorted by its own time (recordings are written as received, exports
 * are usually in time order). An input that is not stays in its own order: a record is only taken once
 * it is its input's head, so an early record behind later ones comes out right after them, never
 * before its own predecessors. Ties go to the input given first, and within an input to the earlier
 * line — the same order on every run.
 */

/** An item of an input: its time (epoch ms; -Infinity for "as soon as possible"). */
export interface TimedItem {
  readonly time: number;
}

/** What the heap orders: the time of an input's next item, and the input's position (the tie-breaker). */
interface HeapEntry {
  time: number;
  readonly input: number;
}

interface Head<T> extends HeapEntry {
  item: T;
  readonly iter: AsyncIterator<T>;
}

/** Min-heap on (time, input). */
class HeadHeap<H extends HeapEntry> {
  readonly items: H[] = [];

  get size(): number {
    return this.items.length;
  }

  private less(a: H, b: H): boolean {
    return a.time < b.time || (a.time === b.time && a.input < b.input);
  }

  push(h: H): void {
    const a = this.items;
    a.push(h);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }

  /** Restores the heap after the root's item changed. */
  siftDownRoot(): void {
    const a = this.items;
    const n = a.length;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) return;
      const r = l + 1;
      const c = r < n && this.less(a[r]!, a[l]!) ? r : l;
      if (!this.less(a[c]!, a[i]!)) return;
      [a[i], a[c]] = [a[c]!, a[i]!];
      i = c;
    }
  }

  popRoot(): void {
    const a = this.items;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      this.siftDownRoot();
    }
  }
}

/**
 * Items of all inputs, merged by time (see the module comment). Inputs are opened together at the
 * first step (their first items decide the first output); when the consumer stops early or an input
 * fails, every input still open is closed (its `return()`), and the failure propagates.
 */
export async function* mergeByTime<T extends TimedItem>(inputs: ReadonlyArray<AsyncIterable<T>>): AsyncGenerator<T, void, undefined> {
  if (inputs.length === 1) {
    yield* inputs[0]!;
    return;
  }
  const iters = inputs.map((s) => s[Symbol.asyncIterator]());
  const open = new Set(iters);
  const heap = new HeadHeap<Head<T>>();
  try {
    const firsts = await Promise.all(iters.map((it) => it.next()));
    firsts.forEach((r, input) => {
      const iter = iters[input]!;
      if (r.done) open.delete(iter);
      else heap.push({ item: r.value, time: r.value.time, input, iter });
    });
    while (heap.size > 0) {
      const top = heap.items[0]!;
      yield top.item;
      const r = await top.iter.next();
      if (r.done) {
        open.delete(top.iter);
        heap.popRoot();
      } else {
        top.item = r.value;
        top.time = r.value.time;
        heap.siftDownRoot();
      }
    }
  } finally {
    await Promise.allSettled([...open].map((it) => it.return?.()));
  }
}

interface BatchHead<T> extends HeapEntry {
  batch: readonly T[];
  /** The input's next item: batch[pos]. */
  pos: number;
  readonly iter: AsyncIterator<readonly T[]>;
}

/** The next non-empty batch of an input, undefined at its end. */
async function nextBatch<T>(iter: AsyncIterator<readonly T[]>): Promise<readonly T[] | undefined> {
  for (;;) {
    const r = await iter.next();
    if (r.done) return undefined;
    if (r.value.length > 0) return r.value;
  }
}

const ownTime = (item: TimedItem): number => item.time;

/**
 * mergeByTime over inputs that come in batches (src/replay/time-range.ts timedBatches): the same order,
 * given out in batches — the items merged until some input's batch runs out, handed over before that
 * input's next batch is awaited, so memory holds about one batch per input. A single input's batches
 * pass through as they are. `timeOf` gives an item's time (default: its `time`).
 */
export function mergeBatchesByTime<T extends TimedItem>(inputs: ReadonlyArray<AsyncIterable<readonly T[]>>): AsyncGenerator<readonly T[], void, undefined>;
export function mergeBatchesByTime<T>(inputs: ReadonlyArray<AsyncIterable<readonly T[]>>, timeOf: (item: T) => number): AsyncGenerator<readonly T[], void, undefined>;
export async function* mergeBatchesByTime<T>(
  inputs: ReadonlyArray<AsyncIterable<readonly T[]>>,
  timeOf: (item: T) => number = ownTime as (item: T) => number,
): AsyncGenerator<readonly T[], void, undefined> {
  if (inputs.length === 1) {
    yield* inputs[0]!;
    return;
  }
  const iters = inputs.map((s) => s[Symbol.asyncIterator]());
  const open = new Set(iters);
  const heap = new HeadHeap<BatchHead<T>>();
  try {
    const firsts = await Promise.all(iters.map((it) => nextBatch(it)));
    firsts.forEach((batch, input) => {
      const iter = iters[input]!;
      if (batch === undefined) open.delete(iter);
      else heap.push({ batch, pos: 0, time: timeOf(batch[0]!), input, iter });
    });
    let out: T[] = [];
    while (heap.size > 0) {
      const top = heap.items[0]!;
      out.push(top.batch[top.pos]!);
      if (++top.pos < top.batch.length) {
        top.time = timeOf(top.batch[top.pos]!);
        heap.siftDownRoot();
        continue;
      }
      yield out;
      out = [];
      const batch = await nextBatch(top.iter);
      if (batch === undefined) {
        open.delete(top.iter);
        heap.popRoot();
      } else {
        top.batch = batch;
        top.pos = 0;
        top.time = timeOf(batch[0]!);
        heap.siftDownRoot();
      }
    }
  } finally {
    await Promise.allSettled([...open].map((it) => it.return?.()));
  }
}
