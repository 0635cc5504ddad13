/**
 * The bus between feeds, detectors, the findings writer and the API. Shaped like Kafka (topics, keyed
 * partitions, consumer groups, batches) so the in-process implementation and the Kafka one are
 * interchangeable: callers never see which one runs.
 */

export interface OutgoingMessage<T = unknown> {
  /** Partition key: messages with one key are delivered in the order they were sent. */
  key: string;
  /**
   * Picks the partition instead of the key when set (the key still identifies the message). Must be a
   * function of the key, so one key never changes partition.
   */
  partitionKey?: string;
  value: T;
  /** Small string metadata carried with the message (e.g. `run`: the run id a replay belongs to). */
  headers?: Record<string, string>;
}

/**
 * A message as a consumer gets it. Read-only: the in-process transport hands one object to every group
 * whose queue is at the same offset (Readonly below keeps consumers from writing to it).
 */
export type DeliveredMessage<T = unknown> = Readonly<
  OutgoingMessage<T> & {
    /** Position in the partition; increases by one per message. */
    offset: number;
  }
>;

export interface Batch<T = unknown> {
  topic: string;
  partition: number;
  messages: DeliveredMessage<T>[];
}

export interface SubscribeOptions<T = unknown> {
  /** Every group receives every message; within a group each partition has one consumer. */
  group: string;
  topics: readonly string[];
  /** Handles one batch of one partition. The next batch of that partition waits until it resolves. */
  eachBatch(batch: Batch<T>): Promise<void> | void;
  /** Upper bound on messages per batch. */
  maxBatch?: number;
  /**
   * Partitions this consumer now owns (at subscribe on the in-process transport; after each group join
   * on Kafka). Batches of those partitions wait until it resolves, so a worker can restore their state.
   */
  onAssign?(partitions: TopicPartition[]): Promise<void> | void;
  /** Partitions this consumer no longer owns (rebalance, crash, stop). */
  onRevoke?(partitions: TopicPartition[]): Promise<void> | void;
}

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface Subscription {
  readonly group: string;
  stop(): Promise<void>;
}

export interface TransportStats {
  sent: number;
  delivered: number;
  /** Messages sent to a topic nobody subscribes to (the in-process transport keeps no log). */
  unrouted: number;
  /** Times a sender had to wait for consumers (backpressure). */
  waits: number;
  /** Messages waiting in queues now. */
  queued: number;
}

export interface Transport {
  readonly kind: 'memory' | 'kafka';
  /**
   * Sends messages; resolves once the transport has accepted them. Under backpressure (consumers
   * behind) it waits, which slows a max-speed replay down to the consumers' pace instead of growing
   * memory.
   */
  send<T>(topic: string, messages: readonly OutgoingMessage<T>[]): Promise<void>;
  subscribe<T>(options: SubscribeOptions<T>): Promise<Subscription>;
  /** Resolves when everything sent so far has been handled by every subscription; rejects on a handler error. */
  drain(): Promise<void>;
  stats(): TransportStats;
  close(): Promise<void>;
}

/** Topic per event kind, as on Kafka. */
export const TOPICS = {
  trade: 'vigil.md.trades',
  quote: 'vigil.md.quotes',
  book: 'vigil.md.book',
  order: 'vigil.orders',
  transaction: 'vigil.tx',
  /** Labels share the transactions' topic: rules that join them (terminal_risk) see both in order. */
  label: 'vigil.tx',
  metric: 'vigil.metrics',
  status: 'vigil.md.status',
  findings: 'vigil.findings',
  /** One risk score per transaction (and view), from the signals of the rules that judged it. */
  txRisk: 'vigil.tx.risk',
  dlq: 'vigil.dlq',
} as const;

/** Header naming the view of an event copy (events.ts eventViews); absent on the original. */
export const VIEW_HEADER = 'view';
/** Header on a status marker copied into a data topic, so it arrives in order with that topic's data. */
export const STATUS_COPY_HEADER = 'status-copy';

export const EVENT_TOPICS = [TOPICS.trade, TOPICS.quote, TOPICS.book, TOPICS.order, TOPICS.transaction, TOPICS.metric, TOPICS.status] as const;
