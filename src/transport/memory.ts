/**
 * In-process transport: topics split into keyed partitions, one bounded queue per (group, partition),
 * one consumer loop per queue. Values pass by reference (no serialization), batches keep the per-message
 * cost low, and senders wait when a queue is over its bound, so a max-speed replay runs at the
 * consumers' pace with bounded memory.
 */
import { ERR, VigilError } from '../core/errors.ts';
import { partitionFor } from './partitioner.ts';
import type {
  Batch,
  DeliveredMessage,
  OutgoingMessage,
  SubscribeOptions,
  Subscription,
  Transport,
  TransportStats,
} from './types.ts';

export interface MemoryTransportOptions {
  /** Partitions per topic. */
  partitions?: number;
  /** Messages a partition queue may hold before senders wait. */
  queueCapacity?: number;
  /** Default upper bound on a batch. */
  maxBatch?: number;
}

class PartitionQueue {
  /**
   * Slots [head, tail) hold the queued messages. Slots past tail are free (undefined) and reused, so a
   * queue that keeps being drained never regrows its array.
   */
  private items: Array<DeliveredMessage | undefined> = [];
  private head = 0;
  private tail = 0;
  private nextOffset = 0;
  private wakeConsumer: (() => void) | undefined;
  private spaceWaiters: Array<() => void> = [];
  busy = false;
  stopped = false;
  error: unknown;

  constructor(
    readonly topic: string,
    readonly partition: number,
    readonly capacity: number,
  ) {}

  get length(): number {
    return this.tail - this.head;
  }

  /** The offset the next message pushed gets. */
  get offset(): number {
    return this.nextOffset;
  }

  /** Appends a message made for this queue's next offset (see MemoryTransport.send). */
  push(message: DeliveredMessage): void {
    if (this.tail < this.items.length) this.items[this.tail] = message;
    else this.items.push(message);
    this.tail++;
    this.nextOffset++;
    const wake = this.wakeConsumer;
    if (wake) {
      this.wakeConsumer = undefined;
      wake();
    }
  }

  /** Resolves once the queue is below its capacity. */
  waitForSpace(): Promise<void> {
    if (this.length < this.capacity || this.stopped) return Promise.resolve();
    return new Promise((resolve) => this.spaceWaiters.push(resolve));
  }

  take(max: number): DeliveredMessage[] {
    const items = this.items;
    const end = Math.min(this.tail, this.head + max);
    const batch = items.slice(this.head, end) as DeliveredMessage[];
    if (end === this.tail) {
      // Drained (the usual case, consumers keep up): free the slots, so the queue holds no reference to
      // consumed messages (nor their events) for the GC to trace and copy, and start over at slot 0.
      items.fill(undefined, 0, end);
      this.head = 0;
      this.tail = 0;
      return batch;
    }
    this.head = end;
    // Compact once the consumed prefix dominates, so memory stays proportional to what is queued.
    if (this.head > 4096 && this.head * 2 > this.tail) {
      this.items = items.slice(this.head, this.tail);
      this.tail -= this.head;
      this.head = 0;
    }
    return batch;
  }

  releaseSpace(): void {
    if (this.spaceWaiters.length === 0) return;
    // Hysteresis: let senders go once half the queue is free, not after every batch.
    if (this.length > this.capacity / 2 && !this.stopped) return;
    const waiters = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const w of waiters) w();
  }

  waitForItems(): Promise<void> {
    if (this.length > 0 || this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      this.wakeConsumer = resolve;
    });
  }

  stop(): void {
    this.stopped = true;
    this.wakeConsumer?.();
    this.wakeConsumer = undefined;
    this.releaseSpace();
  }
}

interface Group {
  name: string;
  topics: Set<string>;
  /** topic → partition queues */
  queues: Map<string, PartitionQueue[]>;
  loops: Promise<void>[];
}

export class MemoryTransport implements Transport {
  readonly kind = 'memory' as const;
  private readonly partitions: number;
  private readonly capacity: number;
  private readonly maxBatch: number;
  private readonly groups = new Map<string, Group>();
  private idleWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  private closed = false;
  private counters = { sent: 0, delivered: 0, unrouted: 0, waits: 0 };
  private failure: unknown;
  /** The last routing key and its partition: a stream of one instrument repeats the same key string. */
  private lastRoutingKey: string | undefined;
  private lastPartition = 0;

  constructor(options: MemoryTransportOptions = {}) {
    this.partitions = options.partitions ?? 4;
    this.capacity = options.queueCapacity ?? 8192;
    this.maxBatch = options.maxBatch ?? 512;
  }

  async send<T>(topic: string, messages: readonly OutgoingMessage<T>[]): Promise<void> {
    if (this.closed) throw new VigilError(ERR.TRANSPORT_CLOSED, 'transport is closed');
    if (this.failure) throw this.failure;
    this.counters.sent += messages.length;
    let routes: PartitionQueue[][] | undefined;
    for (const group of this.groups.values()) {
      const queues = group.queues.get(topic);
      if (queues) (routes ??= []).push(queues);
    }
    if (routes === undefined) {
      this.counters.unrouted += messages.length;
      return;
    }
    let full: PartitionQueue[] | undefined;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i] as OutgoingMessage<T>;
      const p = this.partitionOf(m.partitionKey ?? m.key);
      // Groups whose queues are at the same offset share one delivered message (as they share its value):
      // consumers only read it. One object shape for every message (headers undefined when none), so
      // consumers' reads stay monomorphic.
      let delivered: DeliveredMessage | undefined;
      for (let g = 0; g < routes.length; g++) {
        const q = (routes[g] as PartitionQueue[])[p] as PartitionQueue;
        const offset = q.offset;
        if (delivered === undefined || delivered.offset !== offset) delivered = { key: m.key, value: m.value, headers: m.headers, offset };
        q.push(delivered);
        if (q.length >= q.capacity && full?.[full.length - 1] !== q) (full ??= []).push(q);
      }
    }
    if (full) {
      this.counters.waits++;
      for (const q of full) await q.waitForSpace();
      if (this.failure) throw this.failure;
    }
  }

  private partitionOf(routingKey: string): number {
    if (routingKey !== this.lastRoutingKey) {
      this.lastRoutingKey = routingKey;
      this.lastPartition = partitionFor(routingKey, this.partitions);
    }
    return this.lastPartition;
  }

  async subscribe<T>(options: SubscribeOptions<T>): Promise<Subscription> {
    if (this.closed) throw new VigilError(ERR.TRANSPORT_CLOSED, 'transport is closed');
    if (this.groups.has(options.group)) {
      throw new VigilError(ERR.TRANSPORT_CLOSED, `group ${options.group} already has a consumer in this process`);
    }
    const group: Group = { name: options.group, topics: new Set(options.topics), queues: new Map(), loops: [] };
    const maxBatch = options.maxBatch ?? this.maxBatch;
    // One consumer per group here, so it owns every partition: told once, before any batch.
    const owned = options.topics.flatMap((topic) => Array.from({ length: this.partitions }, (_, partition) => ({ topic, partition })));
    await options.onAssign?.(owned);
    for (const topic of options.topics) {
      const queues: PartitionQueue[] = [];
      for (let p = 0; p < this.partitions; p++) {
        const q = new PartitionQueue(topic, p, this.capacity);
        queues.push(q);
        group.loops.push(this.consume(q, options.eachBatch as (b: Batch) => Promise<void> | void, maxBatch));
      }
      group.queues.set(topic, queues);
    }
    this.groups.set(group.name, group);
    return {
      group: group.name,
      stop: async () => {
        for (const qs of group.queues.values()) for (const q of qs) q.stop();
        await Promise.all(group.loops);
        this.groups.delete(group.name);
        this.checkIdle();
        await options.onRevoke?.(owned);
      },
    };
  }

  private async consume(q: PartitionQueue, eachBatch: (b: Batch) => Promise<void> | void, maxBatch: number): Promise<void> {
    for (;;) {
      await q.waitForItems();
      if (q.stopped) return;
      const messages = q.take(maxBatch);
      q.busy = true;
      try {
        await eachBatch({ topic: q.topic, partition: q.partition, messages });
        this.counters.delivered += messages.length;
      } catch (err) {
        // A failing handler stops the pipeline loudly: drain() and later sends reject with the error.
        q.error = err;
        this.failure ??= err;
        q.busy = false;
        q.stop();
        this.failAll(err);
        return;
      }
      q.busy = false;
      q.releaseSpace();
      if (q.length === 0) this.checkIdle();
    }
  }

  private isIdle(): boolean {
    for (const g of this.groups.values()) {
      for (const qs of g.queues.values()) for (const q of qs) if (q.busy || (q.length > 0 && !q.stopped)) return false;
    }
    return true;
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0 || !this.isIdle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w.resolve();
  }

  private failAll(err: unknown): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w.reject(err);
    for (const g of this.groups.values()) for (const qs of g.queues.values()) for (const q of qs) q.releaseSpace();
  }

  drain(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve, reject) => this.idleWaiters.push({ resolve, reject }));
  }

  stats(): TransportStats {
    let queued = 0;
    for (const g of this.groups.values()) for (const qs of g.queues.values()) for (const q of qs) queued += q.length;
    return { ...this.counters, queued };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const groups = [...this.groups.values()];
    for (const g of groups) for (const qs of g.queues.values()) for (const q of qs) q.stop();
    await Promise.all(groups.flatMap((g) => g.loops));
    this.groups.clear();
    this.checkIdle();
  }
}
