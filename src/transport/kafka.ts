/**
 * Kafka transport (kafkajs): the same contract as the in-process one, on a real broker.
 *
 * - Topics: one per event kind (TOPICS), created at start with the configured partition counts; any
 *   other topic is created the first time it is used. An optional prefix namespaces topics and group ids
 *   (tests, several deployments on one cluster); callers only ever see the plain names.
 * - Producing: keyed messages (the key picks the partition, Java-compatible murmur2, so one key stays on
 *   one partition and in order), values as JSON, string headers, idempotent producer, acks=all, GZIP.
 *   Concurrent send() calls queue up and leave as few sendBatch requests as fit a request-size bound, in
 *   call order. The idempotent producer retries without limit (backoff capped), so a broker restart
 *   only delays a send.
 * - Consuming: one kafkajs consumer per subscription, eachBatch, autoCommit off. Handlers see slices of
 *   at most maxBatch messages; a slice's offset is committed only after its handler resolved, so a crash
 *   re-delivers what was not handled (at least once). A failing handler makes kafkajs retry the batch
 *   (nothing committed); after a bounded number of consumer restarts for the same partition the
 *   transport fails loudly: drain() and later sends reject with the handler's error. Lost connections
 *   restart the consumer without bound (a broker restart is survived).
 * - A group new to a topic starts at the topic's end, as the in-process transport delivers only what is
 *   sent after subscribe(); an existing group resumes from its committed offsets.
 * - drain() polls the broker until every group subscribed in this process has committed up to the end
 *   offsets of its topics.
 * - Backpressure: with maxLag set, send() waits while a group subscribed in this process lags more
 *   than maxLag messages behind on the topic (measured on the broker, so it holds across processes).
 * - Closing: consumers leave their groups, pending sends finish, clients disconnect; then every socket
 *   this transport's clients opened is closed, and none is opened after. kafkajs alone does not
 *   guarantee that: after a broker restart (a "Closed connection" error) it drops the broker from its
 *   pool without disconnecting it, while the consumer group keeps that very Broker object as its
 *   coordinator; the next heartbeat or commit reconnects it, and disconnect() only closes the brokers
 *   still in the pool — the socket stayed open and the process never exited. The transport therefore
 *   opens the sockets itself (kafkajs' socketFactory) and keeps track of them.
 */
import { connect as netConnect, Socket } from 'node:net';
import { CompressionTypes, Kafka, Partitioners, logLevel as LEVEL } from 'kafkajs';
import type { Admin, Consumer, EachBatchPayload, IHeaders, ISocketFactory, KafkaMessage, LogEntry, Message, Producer, RetryOptions } from 'kafkajs';
import { ERR, VigilError } from '../core/errors.ts';

const routingPartitioner = Partitioners.DefaultPartitioner();
import {
  TOPICS,
  type Batch,
  type DeliveredMessage,
  type OutgoingMessage,
  type SubscribeOptions,
  type Subscription,
  type TopicPartition,
  type Transport,
  type TransportStats,
} from './types.ts';

export type KafkaLogLevel = 'nothing' | 'error' | 'warn' | 'info' | 'debug';

export interface KafkaTransportOptions {
  /** Bootstrap brokers, host:port. */
  brokers: readonly string[];
  clientId?: string;
  /** Partitions of each topic this transport creates (default 6). */
  partitions?: number;
  /** Per-topic partition counts (plain topic names), over `partitions`. */
  topicPartitions?: Readonly<Record<string, number>>;
  /** Replication factor of created topics; default min(3, brokers in the cluster). */
  replicationFactor?: number;
  /** Prepended to every topic name and group id on the broker (letters, digits, . _ -). */
  topicPrefix?: string;
  /** Default upper bound on messages per handler call (default 512). */
  maxBatch?: number;
  /** Upper bound on the serialized values of one produce request (default 900 kB, under the broker's 1 MB batch limit). */
  maxRequestBytes?: number;
  compression?: 'gzip' | 'none';
  /** send() waits while a group subscribed in this process lags more than this on the topic (default 200000; 0 = never). */
  maxLag?: number;
  /** Consumer restarts allowed per partition whose handler keeps failing before the transport fails (default 2). */
  maxHandlerRestarts?: number;
  /** Retries of a failing batch (and of fetch errors) inside one consumer run, before it restarts. */
  consumerRetry?: RetryOptions;
  /** Client-level retries (metadata, admin, connections). */
  retry?: RetryOptions;
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  /** Batches processed at once per subscription (default: partitions owned, at most 16). */
  concurrency?: number;
  /** How long subscribe() waits for the first group join (default 60 s). */
  joinTimeoutMs?: number;
  drainPollMs?: number;
  /** How long close() lets pending sends finish (default 30 s). */
  closeTimeoutMs?: number;
  logLevel?: KafkaLogLevel;
  /** Where log lines go (default: stderr, `kafka <level> …`). */
  log?: (level: KafkaLogLevel, message: string, extra: Record<string, unknown>) => void;
}

const TOPIC_NAME = /^[A-Za-z0-9._-]*$/;
const LEVELS: Record<KafkaLogLevel, LEVEL> = {
  nothing: LEVEL.NOTHING,
  error: LEVEL.ERROR,
  warn: LEVEL.WARN,
  info: LEVEL.INFO,
  debug: LEVEL.DEBUG,
};

/** A handler's error as it travels through kafkajs (which retries and restarts on it). */
class HandlerError extends Error {
  readonly retriable = true;
  constructor(
    readonly original: unknown,
    readonly topic: string,
    readonly partition: number,
  ) {
    super(`handler failed on ${topic}[${partition}]: ${original instanceof Error ? original.message : String(original)}`);
    this.name = 'HandlerError';
  }
}

function findHandlerError(e: unknown): HandlerError | undefined {
  for (let cur = e, depth = 0; cur && depth < 10; depth++) {
    if (cur instanceof HandlerError) return cur;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function decodeHeaders(headers: IHeaders | undefined): Record<string, string> | undefined {
  if (!headers) return undefined;
  let out: Record<string, string> | undefined;
  for (const [k, v] of Object.entries(headers)) {
    const last = Array.isArray(v) ? v[v.length - 1] : v;
    if (last === undefined) continue;
    (out ??= {})[k] = typeof last === 'string' ? last : last.toString('utf8');
  }
  return out;
}

interface QueuedSend {
  topic: string;
  messages: Message[];
  bytes: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

class KafkaSubscription {
  readonly assigned = new Set<string>();
  /** Batches wait for the last onAssign/onRevoke to finish. */
  private gate: Promise<void> = Promise.resolve();
  private readonly restarts = new Map<string, number>();
  stopping = false;
  joined = false;
  private joinWaiters: Array<() => void> = [];
  readonly kafkaTopics: string[];
  /**
   * Where a group new to a topic starts (its end when subscribe() was called), applied at the first
   * join to the partitions this member gets: "topic\0partition" → offset.
   */
  initialPositions = new Map<string, string>();

  constructor(
    readonly transport: KafkaTransport,
    readonly options: SubscribeOptions,
    readonly groupId: string,
    readonly consumer: Consumer,
    readonly maxBatch: number,
    readonly heartbeatMs: number,
  ) {
    this.kafkaTopics = options.topics.map((t) => transport.kafkaTopic(t));
  }

  /** After each group join: revoke what is gone, assign what is new (plain topic names). */
  onJoin(assignment: Record<string, number[]>): void {
    const next = new Set<string>();
    for (const [topic, partitions] of Object.entries(assignment)) for (const p of partitions) next.add(`${p}:${topic}`);
    const revoked = [...this.assigned].filter((k) => !next.has(k));
    const added = [...next].filter((k) => !this.assigned.has(k));
    this.assigned.clear();
    for (const k of next) this.assigned.add(k);
    // Runs inside kafkajs' join, before its first fetch: a seek here decides where that fetch starts.
    const positions: Array<{ topic: string; partition: number; offset: string }> = [];
    for (const [topic, partitions] of Object.entries(assignment)) {
      for (const partition of partitions) {
        const offset = this.initialPositions.get(`${topic}\0${partition}`);
        if (offset === undefined) continue;
        this.consumer.seek({ topic, partition, offset });
        positions.push({ topic, partition, offset });
      }
    }
    this.initialPositions.clear();
    if (positions.length > 0) {
      // Committed too, so a restart before the first batch starts there as well. Best effort: if it
      // fails, the first handled batch commits.
      // (kafkajs takes commits once the join returned and its runner runs: hence the next turn.)
      const committed = new Promise<void>((r) => setImmediate(r))
        .then(() => this.consumer.commitOffsets(positions))
        .catch((e: unknown) => {
          this.transport.logLine('warn', `group ${this.groupId}: could not commit the start positions`, { error: (e as Error).message });
        });
      const prev = this.gate;
      this.gate = prev.then(() => committed);
    }
    this.chain(revoked, added);
    this.joined = true;
    for (const w of this.joinWaiters.splice(0)) w();
  }

  /** Resolves once the assignment callbacks queued so far ran. */
  settled(): Promise<void> {
    return this.gate;
  }

  /** The consumer stopped or crashed: it owns nothing until it joins again. */
  revokeAll(): void {
    const revoked = [...this.assigned];
    this.assigned.clear();
    this.chain(revoked, []);
  }

  private chain(revoked: string[], added: string[]): void {
    const toTp = (k: string): TopicPartition => {
      const i = k.indexOf(':');
      return { topic: this.transport.plainTopic(k.slice(i + 1)), partition: Number(k.slice(0, i)) };
    };
    const prev = this.gate;
    this.gate = (async () => {
      await prev;
      if (revoked.length > 0) await this.options.onRevoke?.(revoked.map(toTp));
      if (added.length > 0) await this.options.onAssign?.(added.map(toTp));
    })();
    // A failing callback fails the transport like a failing handler.
    this.gate.catch((e: unknown) => this.transport.fail(e));
  }

  waitJoined(timeoutMs: number): Promise<boolean> {
    if (this.joined) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.joinWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  async eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, heartbeat, commitOffsetsIfNecessary, resolveOffset, isRunning, isStale } = payload;
    await this.gate;
    const topic = this.transport.plainTopic(batch.topic);
    const { partition } = batch;
    const all = batch.messages;
    /** Offset of the last message whose handler resolved, not committed yet. */
    let handled: string | undefined;
    // Commit first, then move the fetch position: if the commit fails, those messages are fetched and
    // handled again rather than skipped.
    const commit = async () => {
      if (handled === undefined) return;
      const next = (BigInt(handled) + 1n).toString();
      await commitOffsetsIfNecessary({ topics: [{ topic: batch.topic, partitions: [{ partition, offset: next }] }] });
      resolveOffset(handled);
      handled = undefined;
    };
    try {
      for (let i = 0; i < all.length; i += this.maxBatch) {
        // Stopping or moved by a rebalance: the rest stays uncommitted and is fetched again by its owner.
        if (!isRunning() || isStale() || this.stopping) break;
        const slice = all.slice(i, i + this.maxBatch);
        // The handler runs as long as it needs; the group keeps hearing from this member meanwhile.
        const beat = setInterval(() => void heartbeat().catch(() => undefined), this.heartbeatMs);
        try {
          const messages = slice.map((m) => this.decode(m));
          await this.options.eachBatch({ topic, partition, messages } satisfies Batch);
        } catch (e) {
          throw new HandlerError(e, topic, partition);
        } finally {
          clearInterval(beat);
        }
        handled = slice[slice.length - 1]!.offset;
        this.transport.counted(slice.length);
        this.restarts.delete(`${partition}:${topic}`);
        if (i + this.maxBatch < all.length) await heartbeat();
      }
    } catch (e) {
      // Keep what was handled before the failure (best effort), so a retry starts at the failure.
      await commit().catch(() => undefined);
      throw e;
    }
    // One commit per fetched batch: its offsets are committed only after all its handlers resolved.
    await commit();
  }

  private decode(m: KafkaMessage): DeliveredMessage {
    const value: unknown = m.value === null ? null : JSON.parse(m.value.toString('utf8'));
    const headers = decodeHeaders(m.headers);
    const key = m.key === null ? '' : m.key.toString('utf8');
    const offset = Number(m.offset);
    return headers ? { key, value, headers, offset } : { key, value, offset };
  }

  /** kafkajs asks whether to restart the consumer after retries ran out. */
  restartOnFailure(e: unknown, maxRestarts: number): boolean {
    if (this.stopping) return false;
    const h = findHandlerError(e);
    // Connections, coordinators, leaders: keep trying, the broker comes back.
    if (!h) return true;
    const key = `${h.partition}:${h.topic}`;
    const n = (this.restarts.get(key) ?? 0) + 1;
    this.restarts.set(key, n);
    if (n > maxRestarts) {
      this.transport.fail(h.original);
      return false;
    }
    this.transport.logLine('warn', `group ${this.groupId}: handler failed on ${h.topic}[${h.partition}], restarting the consumer (${n}/${maxRestarts})`, {
      error: h.message,
    });
    return true;
  }
}

export class KafkaTransport implements Transport {
  readonly kind = 'kafka' as const;
  private readonly kafka: Kafka;
  private readonly admin: Admin;
  private readonly producer: Producer;
  private readonly prefix: string;
  private readonly partitionMeta = new Map<number, unknown[]>();
  /** Partitions of each topic as the broker has them (plain topic names), once the topic is ready. */
  private readonly topicPartitions = new Map<string, number>();
  private readonly partitions: number;
  private readonly maxBatch: number;
  private readonly maxRequestBytes: number;
  private readonly maxLag: number;
  private readonly log: NonNullable<KafkaTransportOptions['log']>;
  private readonly subs = new Map<string, KafkaSubscription>();
  private readonly topicsReady = new Map<string, Promise<void>>();
  private readonly lagCache = new Map<string, { at: number; lag: number; sent: number }>();
  private readonly lagPending = new Map<string, Promise<number>>();
  /** Messages sent per topic by this transport. */
  private readonly sentTo = new Map<string, number>();
  private started?: Promise<void>;
  private replicationFactor?: number;
  private queue: QueuedSend[] = [];
  private flushing?: Promise<void>;
  private closed = false;
  /** Sockets the clients opened and not closed yet (see "Closing" above). */
  private readonly sockets = new Set<Socket>();
  /** Set at the end of close(): no client of this transport connects again. */
  private socketsClosed = false;
  private failure: unknown;
  private failWaiters: Array<(e: unknown) => void> = [];
  private counters = { sent: 0, delivered: 0, waits: 0 };
  private lastLag = 0;

  constructor(private readonly options: KafkaTransportOptions) {
    if (options.brokers.length === 0) throw new VigilError(ERR.CONFIG, 'KafkaTransport needs at least one broker');
    this.prefix = options.topicPrefix ?? '';
    if (!TOPIC_NAME.test(this.prefix)) throw new VigilError(ERR.CONFIG, `topic prefix ${JSON.stringify(this.prefix)}: letters, digits, . _ - only`);
    this.partitions = options.partitions ?? 6;
    this.maxBatch = options.maxBatch ?? 512;
    this.maxRequestBytes = options.maxRequestBytes ?? 900_000;
    this.maxLag = options.maxLag ?? 200_000;
    this.replicationFactor = options.replicationFactor;
    this.log =
      options.log ??
      ((level, message, extra) => {
        const detail = extra.error ? `: ${String(extra.error)}` : '';
        process.stderr.write(`kafka ${level} ${message}${detail}\n`);
      });
    const level = LEVELS[options.logLevel ?? 'warn'];
    this.kafka = new Kafka({
      clientId: options.clientId ?? 'vigil',
      brokers: [...options.brokers],
      logLevel: level,
      logCreator: () => (entry: LogEntry) => this.kafkaLog(entry),
      socketFactory: this.openSocket,
      connectionTimeout: 3000,
      requestTimeout: 30_000,
      retry: { initialRetryTime: 250, maxRetryTime: 5000, retries: 10, ...options.retry },
    });
    this.admin = this.kafka.admin({ retry: { initialRetryTime: 250, maxRetryTime: 2000, retries: 5 } });
    this.producer = this.kafka.producer({
      idempotent: true,
      // The idempotent producer keeps retrying (with backoff) until the broker takes the batch.
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 100, maxRetryTime: 2000 },
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
  }

  /**
   * kafkajs' own socket factory (plain TCP, keep-alive), keeping track of what it opened. After close()
   * a connect fails at once: a consumer restart timer or a request still in flight can't reopen one.
   */
  private readonly openSocket: ISocketFactory = ({ host, port, onConnect }) => {
    if (this.socketsClosed) {
      const refused = new Socket();
      process.nextTick(() => refused.destroy(new VigilError(ERR.TRANSPORT_CLOSED, 'transport is closed')));
      return refused;
    }
    const socket = netConnect({ host, port }, onConnect);
    socket.setKeepAlive(true, 60_000);
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    return socket;
  };

  /** The topic's name on the broker. */
  kafkaTopic(topic: string): string {
    return this.prefix + topic;
  }

  plainTopic(kafkaTopic: string): string {
    return kafkaTopic.startsWith(this.prefix) ? kafkaTopic.slice(this.prefix.length) : kafkaTopic;
  }

  /** Partitions a topic is created with here. */
  partitionsOf(topic: string): number {
    return this.options.topicPartitions?.[topic] ?? this.partitions;
  }

  /** Connects and creates the TOPICS; send() and subscribe() call it, callers may call it to fail early. */
  start(): Promise<void> {
    this.started ??= (async () => {
      await this.admin.connect();
      await this.producer.connect();
      if (this.replicationFactor === undefined) {
        const cluster = await this.admin.describeCluster();
        this.replicationFactor = Math.max(1, Math.min(3, cluster.brokers.length));
      }
      await this.ensureTopics(Object.values(TOPICS));
    })();
    // A failed start may be retried by the next call.
    this.started.catch(() => (this.started = undefined));
    return this.started;
  }

  private async ensureTopics(topics: readonly string[]): Promise<void> {
    // Distinct names: several event kinds may share a topic (TOPICS values repeat), and the broker
    // refuses a createTopics request that names one topic twice.
    const missing = [...new Set(topics)].filter((t) => !this.topicsReady.has(t));
    if (missing.length > 0) {
      for (const t of missing) if (!TOPIC_NAME.test(t) || t.length === 0) throw new VigilError(ERR.BAD_REQUEST, `bad topic name ${JSON.stringify(t)}`);
      const created = (async () => {
        const names = missing.map((t) => this.kafkaTopic(t));
        await this.admin.createTopics({
          waitForLeaders: false,
          topics: missing.map((t) => ({ topic: this.kafkaTopic(t), numPartitions: this.partitionsOf(t), replicationFactor: this.replicationFactor ?? 1 })),
        });
        await this.waitForLeaders(names);
      })();
      for (const t of missing) this.topicsReady.set(t, created);
      created.catch(() => {
        for (const t of missing) if (this.topicsReady.get(t) === created) this.topicsReady.delete(t);
      });
    }
    await Promise.all(topics.map((t) => this.topicsReady.get(t)));
  }

  /**
   * Until every partition of the topics has a leader. (kafkajs' own wait gives up when a KRaft broker
   * still answers "unknown topic" for a topic it just created.)
   */
  private async waitForLeaders(topics: string[], timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let delay = 20; ; delay = Math.min(500, delay * 2)) {
      try {
        const meta = await this.admin.fetchTopicMetadata({ topics });
        if (meta.topics.length === topics.length && meta.topics.every((t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0))) {
          // The real counts (a topic created earlier may have another count than configured): routing keys use them.
          for (const t of meta.topics) this.topicPartitions.set(this.plainTopic(t.name), t.partitions.length);
          return;
        }
      } catch (e) {
        if (Date.now() > deadline) throw e;
      }
      if (Date.now() > deadline) throw new VigilError(ERR.INTERNAL, `topics ${topics.join(', ')} have no leaders after ${timeoutMs} ms`);
      await sleep(delay);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new VigilError(ERR.TRANSPORT_CLOSED, 'transport is closed');
    if (this.failure) throw this.failure;
  }

  async send<T>(topic: string, messages: readonly OutgoingMessage<T>[]): Promise<void> {
    this.assertOpen();
    if (messages.length === 0) return;
    await this.start();
    await this.ensureTopics([topic]);
    this.assertOpen();
    // Serialize now (the caller may reuse its objects), split at the request-size bound.
    const parts: Promise<void>[] = [];
    let chunk: Message[] = [];
    let bytes = 0;
    const push = () => {
      const entry = { topic: this.kafkaTopic(topic), messages: chunk, bytes } as QueuedSend;
      parts.push(new Promise<void>((resolve, reject) => Object.assign(entry, { resolve, reject })));
      this.queue.push(entry);
      chunk = [];
      bytes = 0;
    };
    for (const m of messages) {
      const value = Buffer.from(JSON.stringify(m.value) ?? 'null', 'utf8');
      const size = value.length + m.key.length + 16;
      if (bytes + size > this.maxRequestBytes && chunk.length > 0) push();
      const msg: Message = m.headers ? { key: m.key, value, headers: m.headers } : { key: m.key, value };
      if (m.partitionKey !== undefined) msg.partition = this.partitionByKey(topic, m.partitionKey);
      chunk.push(msg);
      bytes += size;
    }
    push();
    this.kick();
    await Promise.all(parts);
    this.counters.sent += messages.length;
    this.sentTo.set(topic, (this.sentTo.get(topic) ?? 0) + messages.length);
    await this.backpressure(topic);
  }

  /** The partition the default (murmur2) partitioner would pick for `key`: routing keys keep Java clients' mapping. */
  private partitionByKey(topic: string, key: string): number {
    const n = this.topicPartitions.get(topic) ?? this.partitionsOf(topic);
    let meta = this.partitionMeta.get(n);
    if (!meta) this.partitionMeta.set(n, (meta = Array.from({ length: n }, (_, partitionId) => ({ partitionId, leader: 0, replicas: [0], isr: [0] }))));
    return routingPartitioner({ topic, partitionMetadata: meta as never, message: { key, value: null } });
  }

  private kick(): void {
    if (this.flushing) return;
    this.flushing = (async () => {
      while (this.queue.length > 0) {
        // Coalesce queued sends into one request up to the size bound, keeping their order.
        const take: QueuedSend[] = [];
        let bytes = 0;
        while (this.queue.length > 0) {
          const next = this.queue[0]!;
          if (take.length > 0 && bytes + next.bytes > this.maxRequestBytes) break;
          take.push(this.queue.shift()!);
          bytes += next.bytes;
        }
        const byTopic = new Map<string, Message[]>();
        for (const q of take) {
          const list = byTopic.get(q.topic);
          if (list) list.push(...q.messages);
          else byTopic.set(q.topic, [...q.messages]);
        }
        try {
          await this.producer.sendBatch({
            acks: -1,
            compression: this.options.compression === 'none' ? CompressionTypes.None : CompressionTypes.GZIP,
            topicMessages: [...byTopic].map(([topic, msgs]) => ({ topic, messages: msgs })),
          });
          for (const q of take) q.resolve();
        } catch (e) {
          for (const q of take) q.reject(e);
        }
      }
    })().finally(() => {
      this.flushing = undefined;
      if (this.queue.length > 0) this.kick();
    });
  }

  /** With consumers in this process far behind on the topic, wait until they caught up half way. */
  private async backpressure(topic: string): Promise<void> {
    if (this.maxLag <= 0) return;
    const sent = this.sentTo.get(topic) ?? 0;
    const subs = [...this.subs.values()].filter((s) => s.options.topics.includes(topic) && !s.stopping);
    if (subs.length === 0) return;
    // Between measurements the lag is estimated as the last measured lag plus what was sent since.
    const m = this.lagCache.get(topic);
    if (m && m.lag + (sent - m.sent) <= this.maxLag && Date.now() - m.at < 1000) return;
    let lag = await this.measureLag(topic, subs);
    if (lag <= this.maxLag) return;
    this.counters.waits++;
    while (lag > this.maxLag / 2) {
      this.assertOpen();
      await sleep(100);
      lag = await this.measureLag(topic, subs);
    }
  }

  /** The largest lag on the topic among the given groups (end offsets minus committed), from the broker. */
  private measureLag(topic: string, subs: KafkaSubscription[]): Promise<number> {
    const running = this.lagPending.get(topic);
    if (running) return running;
    const sent = this.sentTo.get(topic) ?? 0;
    const pending = (async () => {
      try {
        const kt = this.kafkaTopic(topic);
        const ends = await this.admin.fetchTopicOffsets(kt);
        let worst = 0;
        for (const s of subs) {
          const [committed] = await this.admin.fetchOffsets({ groupId: s.groupId, topics: [kt] });
          let lag = 0;
          for (const e of ends) {
            const c = committed?.partitions.find((p) => p.partition === e.partition);
            const at = c && Number(c.offset) >= 0 ? Number(c.offset) : Number(e.low);
            lag += Math.max(0, Number(e.high) - at);
          }
          worst = Math.max(worst, lag);
        }
        this.lagCache.set(topic, { at: Date.now(), lag: worst, sent });
        return worst;
      } catch {
        // Broker unreachable: don't hold the sender on a number we can't get.
        return 0;
      } finally {
        this.lagPending.delete(topic);
      }
    })();
    this.lagPending.set(topic, pending);
    return pending;
  }

  async subscribe<T>(options: SubscribeOptions<T>): Promise<Subscription> {
    this.assertOpen();
    await this.start();
    await this.ensureTopics(options.topics);
    const groupId = this.prefix + options.group;
    if (this.subs.has(groupId)) {
      throw new VigilError(ERR.TRANSPORT_CLOSED, `group ${options.group} already has a consumer in this process`);
    }
    const heartbeatMs = this.options.heartbeatIntervalMs ?? 3000;
    const maxRestarts = this.options.maxHandlerRestarts ?? 2;
    let sub: KafkaSubscription | undefined;
    const consumer = this.kafka.consumer({
      groupId,
      sessionTimeout: this.options.sessionTimeoutMs ?? 30_000,
      heartbeatInterval: heartbeatMs,
      maxWaitTimeInMs: 500,
      allowAutoTopicCreation: false,
      // kafkajs gives a consumer up for good (not restartable) when a coordinator lookup runs out of
      // retries; ~45 s of retries (300 ms doubling to 5 s, 12 times) outlasts a broker restart even on a
      // loaded machine (measured: 10+ s to come back), so the group rejoins instead of the role stopping.
      retry: {
        initialRetryTime: 300,
        maxRetryTime: 5000,
        retries: 12,
        ...this.options.consumerRetry,
        restartOnFailure: async (e: Error) => sub?.restartOnFailure(e, maxRestarts) ?? true,
      },
    });
    sub = new KafkaSubscription(this, options as SubscribeOptions, groupId, consumer, options.maxBatch ?? this.maxBatch, heartbeatMs);
    const s = sub;
    // Taken at once, so a concurrent subscribe() of the same group fails.
    this.subs.set(groupId, s);
    consumer.on(consumer.events.GROUP_JOIN, (e) => s.onJoin(e.payload.memberAssignment));
    consumer.on(consumer.events.CRASH, (e) => {
      s.revokeAll();
      if (!e.payload.restart && !s.stopping) {
        // Not a handler failure (those were reported already): kafkajs gave up on this consumer.
        this.fail(findHandlerError(e.payload.error)?.original ?? e.payload.error);
      }
    });
    try {
      s.initialPositions = await this.newTopicPositions(groupId, s.kafkaTopics);
      await consumer.connect();
      await consumer.subscribe({ topics: s.kafkaTopics, fromBeginning: true });
      const owned = options.topics.reduce((n, t) => n + this.partitionsOf(t), 0);
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: this.options.concurrency ?? Math.max(1, Math.min(16, owned)),
        eachBatch: (payload) => s.eachBatch(payload),
      });
      if (!(await s.waitJoined(this.options.joinTimeoutMs ?? 60_000))) {
        throw new VigilError(ERR.INTERNAL, `group ${options.group} did not join within ${this.options.joinTimeoutMs ?? 60_000} ms`);
      }
      // onAssign ran (as on the in-process transport, where it runs before subscribe() returns).
      await s.settled();
    } catch (e) {
      s.stopping = true;
      this.subs.delete(groupId);
      await consumer.disconnect().catch(() => undefined);
      throw e;
    }
    return { group: options.group, stop: () => this.stopSubscription(s) };
  }

  /**
   * A group that never consumed a topic starts at the topic's end (what the in-process transport does:
   * a subscription gets what is sent after it); groups with commits resume from them.
   */
  private async newTopicPositions(groupId: string, topics: string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const committed = await this.retrying(() => this.admin.fetchOffsets({ groupId, topics }));
    for (const { topic, partitions } of committed) {
      if (partitions.some((p) => Number(p.offset) >= 0)) continue;
      for (const e of await this.retrying(() => this.admin.fetchTopicOffsets(topic))) out.set(`${topic}\0${e.partition}`, e.high);
    }
    return out;
  }

  /** Admin calls right after a topic was created may meet a partition whose leader is not ready yet. */
  private async retrying<R>(fn: () => Promise<R>, timeoutMs = 15_000): Promise<R> {
    const deadline = Date.now() + timeoutMs;
    for (let delay = 50; ; delay = Math.min(1000, delay * 2)) {
      try {
        return await fn();
      } catch (e) {
        const err = e as { retriable?: boolean; name?: string };
        const transient = err.retriable !== false || err.name === 'KafkaJSNumberOfRetriesExceeded';
        if (!transient || Date.now() > deadline) throw e;
        await sleep(delay);
      }
    }
  }

  private async stopSubscription(s: KafkaSubscription): Promise<void> {
    if (s.stopping) return;
    s.stopping = true;
    try {
      await s.consumer.disconnect();
    } finally {
      s.revokeAll();
      this.subs.delete(s.groupId);
    }
  }

  /** Every group subscribed here has committed up to the end of its topics (nothing left to handle). */
  private async caughtUp(): Promise<boolean> {
    const subs = [...this.subs.values()].filter((s) => !s.stopping);
    if (subs.length === 0) return true;
    // Committed offsets first, end offsets after: anything a handler sent before committing is then
    // already in the end offsets read later.
    const committed = new Map<string, number>();
    for (const s of subs) {
      for (const { topic, partitions } of await this.admin.fetchOffsets({ groupId: s.groupId, topics: s.kafkaTopics })) {
        for (const p of partitions) committed.set(`${s.groupId}\0${topic}\0${p.partition}`, Number(p.offset));
      }
    }
    const ends = new Map<string, Array<{ partition: number; high: number; low: number }>>();
    for (const topic of new Set(subs.flatMap((s) => s.kafkaTopics))) {
      ends.set(topic, (await this.admin.fetchTopicOffsets(topic)).map((e) => ({ partition: e.partition, high: Number(e.high), low: Number(e.low) })));
    }
    let lag = 0;
    for (const s of subs) {
      for (const topic of s.kafkaTopics) {
        for (const e of ends.get(topic) ?? []) {
          const c = committed.get(`${s.groupId}\0${topic}\0${e.partition}`) ?? -1;
          lag += Math.max(0, e.high - (c >= 0 ? c : e.low));
        }
      }
    }
    this.lastLag = lag;
    return lag === 0;
  }

  async drain(): Promise<void> {
    this.assertFailure();
    // Sends accepted so far reach the broker first.
    while (this.flushing || this.queue.length > 0) {
      if (!this.flushing) this.kick();
      await this.flushing?.catch(() => undefined);
      this.assertFailure();
    }
    const poll = this.options.drainPollMs ?? 50;
    let onFail!: (e: unknown) => void;
    const failed = new Promise<never>((_, reject) => (onFail = reject));
    failed.catch(() => undefined);
    this.failWaiters.push(onFail);
    try {
      for (;;) {
        this.assertFailure();
        try {
          if (await Promise.race([this.caughtUp(), failed])) return;
        } catch (e) {
          if (this.failure) throw this.failure;
          // The broker is away (restart): keep asking.
          this.logLine('debug', 'drain: offsets not available yet', { error: (e as Error).message });
        }
        await Promise.race([sleep(poll), failed]);
      }
    } finally {
      this.failWaiters = this.failWaiters.filter((w) => w !== onFail);
    }
  }

  private assertFailure(): void {
    if (this.failure) throw this.failure;
  }

  /** @internal A handler (or an assignment callback) failed for good: drain() and later sends reject with its error. */
  fail(e: unknown): void {
    if (this.failure) return;
    this.failure = e ?? new Error('unknown handler failure');
    this.logLine('error', 'a handler failed for good; the transport stops', { error: e instanceof Error ? e.message : String(e) });
    for (const w of this.failWaiters.splice(0)) w(this.failure);
  }

  /** @internal Messages whose handler resolved. */
  counted(n: number): void {
    this.counters.delivered += n;
  }

  stats(): TransportStats {
    let queued = this.lastLag;
    for (const q of this.queue) queued += q.messages.length;
    return { sent: this.counters.sent, delivered: this.counters.delivered, unrouted: 0, waits: this.counters.waits, queued };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Consumers leave their groups (others take over at once), then pending sends finish.
    await Promise.allSettled([...this.subs.values()].map((s) => this.stopSubscription(s)));
    // Sends wait for a broker that is away; a closing process waits for them only so long.
    const deadline = Date.now() + (this.options.closeTimeoutMs ?? 30_000);
    while (this.flushing && Date.now() < deadline) await Promise.race([this.flushing.catch(() => undefined), sleep(Math.max(0, deadline - Date.now()))]);
    await this.producer.disconnect().catch(() => undefined);
    await this.admin.disconnect().catch(() => undefined);
    // Whatever is still open was lost track of by kafkajs (a broker dropped from its pool and still in
    // use, typically the group coordinator after a broker restart): nothing of this transport needs it.
    // Destroyed with an error, so kafkajs sees its connection fail and stops that connection's timers
    // too (a request-timeout interval per connection, which alone would keep the process running).
    this.socketsClosed = true;
    if (this.sockets.size > 0) {
      this.logLine('info', `closing ${this.sockets.size} Kafka connection(s) the client left open`);
      const closed = new VigilError(ERR.TRANSPORT_CLOSED, 'transport is closed');
      for (const socket of this.sockets) socket.destroy(closed);
      this.sockets.clear();
    }
  }

  /** @internal */
  logLine(level: KafkaLogLevel, message: string, extra: Record<string, unknown> = {}): void {
    const configured = LEVELS[this.options.logLevel ?? 'warn'];
    if (LEVELS[level] > configured || level === 'nothing') return;
    this.log(level, message, extra);
  }

  private kafkaLog(entry: LogEntry): void {
    const { namespace, level, log } = entry;
    const { message, ...extra } = log;
    // Each failed request is logged by kafkajs as an error before its retry; what matters is whether
    // the retries succeed, which the consumer/producer report themselves.
    const noisy = namespace === 'Connection' || namespace === 'BrokerPool' || namespace === 'Cluster';
    const name: KafkaLogLevel = level === LEVEL.ERROR ? (noisy ? 'debug' : 'error') : level === LEVEL.WARN ? 'warn' : level === LEVEL.INFO ? 'info' : 'debug';
    this.logLine(name, `[${namespace}] ${message}`, extra);
  }
}
