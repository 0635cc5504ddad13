/**
 * Consumer-group progress on the broker, for the processes that wait on other processes' work:
 * `vigil replay` over Kafka waits until the detect group has handled its events and the store group
 * has stored the findings they gave. Plain topic and group names in, the deployment's prefix applied
 * here (as the Kafka transport does).
 *
 * "Caught up to a target" = for every partition of the target, the group's committed offset (the next
 * message it will handle) is at or past the target's end offset; a partition the group never committed
 * counts from the partition's start. Targets are end offsets read at a chosen moment, so the wait ends
 * under continuous traffic from others too (it does not wait for lag 0).
 */
import { Kafka, logLevel, type Admin } from 'kafkajs';

export interface KafkaGroupsOptions {
  brokers: readonly string[];
  clientId?: string;
  prefix?: string;
}

/** plain topic → partition → end offset (high watermark) and start (low). */
export type OffsetTargets = Map<string, Map<number, { high: number; low: number }>>;

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

export class KafkaGroups {
  private readonly admin: Admin;
  private readonly prefix: string;
  private connected?: Promise<void>;

  constructor(options: KafkaGroupsOptions) {
    this.prefix = options.prefix ?? '';
    const kafka = new Kafka({
      clientId: options.clientId ?? 'vigil',
      brokers: [...options.brokers],
      logLevel: logLevel.NOTHING,
      connectionTimeout: 3000,
      requestTimeout: 30_000,
      retry: { initialRetryTime: 250, maxRetryTime: 2000, retries: 5 },
    });
    this.admin = kafka.admin();
  }

  private async ready(): Promise<Admin> {
    this.connected ??= this.admin.connect().catch((e: unknown) => {
      this.connected = undefined;
      throw e;
    });
    await this.connected;
    return this.admin;
  }

  /** The topics' end offsets now. */
  async ends(topics: readonly string[]): Promise<OffsetTargets> {
    const admin = await this.ready();
    const out: OffsetTargets = new Map();
    for (const topic of topics) {
      const parts = new Map<number, { high: number; low: number }>();
      for (const e of await admin.fetchTopicOffsets(this.prefix + topic)) parts.set(e.partition, { high: Number(e.high), low: Number(e.low) });
      out.set(topic, parts);
    }
    return out;
  }

  /** Messages of the targets the group has not committed yet. */
  async behind(group: string, targets: OffsetTargets): Promise<number> {
    const admin = await this.ready();
    const topics = [...targets.keys()];
    if (topics.length === 0) return 0;
    const committed = await admin.fetchOffsets({ groupId: this.prefix + group, topics: topics.map((t) => this.prefix + t) });
    let behind = 0;
    for (const [topic, parts] of targets) {
      const got = committed.find((c) => c.topic === this.prefix + topic);
      for (const [partition, { high, low }] of parts) {
        const c = Number(got?.partitions.find((p) => p.partition === partition)?.offset ?? -1);
        behind += Math.max(0, high - (c >= 0 ? c : low));
      }
    }
    return behind;
  }

  /**
   * Waits until the group has committed everything up to the targets. Broker errors (a restart) are
   * waited out; `onWait` hears the backlog about every `reportMs`. Resolves false when aborted.
   */
  async waitCaughtUp(
    group: string,
    targets: OffsetTargets,
    options: { signal?: AbortSignal; pollMs?: number; reportMs?: number; onWait?: (behind: number | undefined, error?: string) => void } = {},
  ): Promise<boolean> {
    const poll = options.pollMs ?? 100;
    const reportEvery = options.reportMs ?? 10_000;
    let lastReport = Date.now();
    for (;;) {
      if (options.signal?.aborted) return false;
      let behind: number | undefined;
      let error: string | undefined;
      try {
        behind = await this.behind(group, targets);
        if (behind === 0) return true;
      } catch (e) {
        error = (e as Error).message;
      }
      if (Date.now() - lastReport >= reportEvery) {
        lastReport = Date.now();
        options.onWait?.(behind, error);
      }
      await sleep(poll, options.signal);
    }
  }

  /** Members of the group now (0 when it has none or does not exist). */
  async members(group: string): Promise<number> {
    const admin = await this.ready();
    const { groups } = await admin.describeGroups([this.prefix + group]);
    return groups[0]?.members.length ?? 0;
  }

  /** Whether the group has committed an offset on any partition of the topics. */
  async hasCommitted(group: string, topics: readonly string[]): Promise<boolean> {
    const admin = await this.ready();
    const committed = await admin.fetchOffsets({ groupId: this.prefix + group, topics: topics.map((t) => this.prefix + t) });
    return committed.some((c) => c.partitions.some((p) => Number(p.offset) >= 0));
  }

  /** Removes an (empty) group and its committed offsets; best effort. */
  async deleteGroup(group: string): Promise<boolean> {
    try {
      const admin = await this.ready();
      await admin.deleteGroups([this.prefix + group]);
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    if (this.connected) await this.admin.disconnect().catch(() => undefined);
    this.connected = undefined;
  }
}
