/**
 * The store side of a pipeline: vigil.findings → FindingWriter → ClickHouse `findings` (and, in the same
 * handler, the alert hub when one is given), vigil.dlq → DeadLetterWriter → `dead_letters`, and
 * optionally vigil.runs → `runs` (run records `vigil replay` publishes over Kafka), and — in a consumer group
 * of its own, so detection and findings never wait for it — the trades, quotes (thinned) and transactions
 * of the event topics → ContextWriter → `trades`, `quotes`, `transactions` (src/storage/context-writer.ts).
 *
 * Two modes:
 * - durable (Kafka, `vigil api`): a batch resolves only once its rows are stored, so the group's
 *   committed offsets never pass a finding that is not in ClickHouse. While ClickHouse is down the
 *   handlers wait (the writers retry with backoff); what Kafka delivers meanwhile is held in memory up to
 *   the bound and spilled to a file beyond it. stop() lets waiting handlers give up after a grace period:
 *   their batches stay uncommitted (Kafka delivers them again) and close() keeps the unstored rows in
 *   the spill file, which the next start writes first.
 * - in-process (the embedded pipeline): there is no log to fall back on, so a batch resolves once its
 *   rows are accepted; with a spill file nothing ever waits (rows beyond the bound go to disk), without
 *   one the consumer is held while more than maxPending rows wait (backpressure up to the feeds).
 */
import type { AlertHub } from '../api/alert-hub.ts';
import type { Finding } from '../core/events.ts';
import { DeadLetterWriter, FindingWriter, RunWriter, TxRiskWriter, type SpillConfig } from '../storage/finding-writer.ts';
import { CONTEXT_BATCH, ContextWriter } from '../storage/context-writer.ts';
import type { RunRecord, Store } from '../storage/types.ts';
import { TOPICS, type Batch, type DeliveredMessage, type Subscription, type Transport } from '../transport/types.ts';
import type { DeadLetterMessage } from './ingest.ts';
import type { PipelineMetrics } from './metrics.ts';
import type { TxRisk } from './risk-score.ts';

/** Run records published by `vigil replay` over Kafka; the store side upserts them. */
export const RUNS_TOPIC = 'vigil.runs';

export interface StoreSideOptions {
  transport: Transport;
  /** Where rows go; without one, findings only reach the hub and dead letters are only counted. */
  store?: Store;
  /** Findings are published to live clients from the store's own findings handler. */
  hub?: AlertHub;
  /** The group consuming vigil.findings (and, unless dlqGroup is given, vigil.dlq and vigil.runs). */
  group: string;
  /** A group of its own for vigil.dlq (the embedded pipeline's per-run groups). */
  dlqGroup?: string;
  /** Also consume vigil.runs into the runs table. */
  runs?: boolean;
  /**
   * Store the market and transaction context (trades, quotes thinned, transactions) off the event topics
   * (default true; false for replay benchmarks: `vigil replay --no-context`).
   */
  storeContext?: boolean;
  /** The group consuming the event topics for the context; default `<group>-context`. */
  contextGroup?: string;
  /** Run id of dead letters without a `run` header. */
  runId: string;
  /** A batch resolves only once its rows are stored (Kafka). */
  durable?: boolean;
  flushRows?: number;
  flushMs?: number;
  /** Spill beyond a memory bound to files in this directory. */
  spill?: SpillConfig;
  /** Durable mode: how long stop() lets handlers wait for the store before they give up (default 10 s). */
  stopGraceMs?: number;
  /** Exports the writers' counters (rows stored, failed writes, spilled rows), read when scraped. */
  metrics?: PipelineMetrics;
  log?: (message: string) => void;
}

export class StoreSide {
  readonly findingWriter?: FindingWriter;
  readonly deadLetterWriter?: DeadLetterWriter;
  readonly runWriter?: RunWriter;
  readonly txRiskWriter?: TxRiskWriter;
  readonly contextWriter?: ContextWriter;
  /** Findings, dead letters and transaction risk scores handled (not necessarily stored yet). */
  findings = 0;
  deadLetters = 0;
  txRisk = 0;
  private readonly subscriptions: Subscription[] = [];
  private readonly maxPending: number;
  private giveUp: Promise<never> | undefined;
  private triggerGiveUp: ((e: Error) => void) | undefined;
  private closed = false;
  private detachMetrics: (() => void) | undefined;

  constructor(private readonly options: StoreSideOptions) {
    this.maxPending = 10 * (options.flushRows ?? 1000);
    const { store } = options;
    if (store) {
      const batching = { maxRows: options.flushRows, maxDelayMs: options.flushMs, log: options.log };
      this.findingWriter = new FindingWriter(store, { ...batching, spill: options.spill });
      try {
        this.deadLetterWriter = new DeadLetterWriter(store, { ...batching, spill: options.spill });
      } catch (e) {
        void this.findingWriter.close({ timeoutMs: 0 });
        throw e;
      }
      this.txRiskWriter = new TxRiskWriter(store, { ...batching, spill: options.spill });
      if (options.runs) this.runWriter = new RunWriter(store, { maxDelayMs: options.flushMs, log: options.log });
      // Market data comes in far larger numbers than findings, and nothing waits for it: bigger, rarer
      // inserts (each costs chdb ~13 ms CPU whatever its size; see CONTEXT_BATCH). With a spill bound, a
      // full batch goes out before the rows waiting reach it (onContext drops beyond the bound).
      if (options.storeContext !== false) {
        const maxRows = Math.min(Math.max(CONTEXT_BATCH.maxRows, options.flushRows ?? 0), options.spill?.maxBuffered ?? Infinity);
        const maxDelayMs = Math.max(CONTEXT_BATCH.maxDelayMs, options.flushMs ?? 0);
        this.contextWriter = new ContextWriter(store, { ...batching, maxRows, maxDelayMs });
      }
    }
    this.giveUp = new Promise<never>((_, reject) => (this.triggerGiveUp = reject));
    this.giveUp.catch(() => undefined);
    this.detachMetrics = options.metrics?.attach({ kind: 'store', storeSide: this });
  }

  /** Subscribes (before anything is sent, on the in-process transport). */
  async start(): Promise<this> {
    const { transport, group, dlqGroup, hub } = this.options;
    const sameGroup = dlqGroup === undefined;
    if (this.findingWriter || hub || sameGroup) {
      const topics: string[] = [TOPICS.findings];
      if (this.txRiskWriter) topics.push(TOPICS.txRisk);
      if (sameGroup) topics.push(TOPICS.dlq);
      if (sameGroup && this.options.runs) topics.push(RUNS_TOPIC);
      this.subscriptions.push(await transport.subscribe<unknown>({ group, topics, eachBatch: (b) => this.handle(b) }));
    }
    if (!sameGroup) {
      this.subscriptions.push(await transport.subscribe<unknown>({ group: dlqGroup, topics: [TOPICS.dlq], eachBatch: (b) => this.handle(b) }));
    }
    if (this.contextWriter) {
      const contextGroup = this.options.contextGroup ?? `${group}-context`;
      const topics = [TOPICS.trade, TOPICS.quote, TOPICS.transaction];
      this.subscriptions.push(await transport.subscribe<unknown>({ group: contextGroup, topics, eachBatch: (b) => this.onContext(b.messages) }));
    }
    return this;
  }

  private handle(batch: Batch<unknown>): Promise<void> | void {
    if (batch.topic === TOPICS.findings) return this.onFindings(batch.messages.map((m) => m.value as Finding));
    if (batch.topic === TOPICS.dlq) return this.onDeadLetters(batch.messages as DeliveredMessage<DeadLetterMessage>[]);
    if (batch.topic === RUNS_TOPIC) return this.onRuns(batch.messages.map((m) => m.value as RunRecord));
    if (batch.topic === TOPICS.txRisk) return this.onTxRisk(batch.messages.map((m) => m.value as TxRisk));
  }

  private onTxRisk(rows: TxRisk[]): Promise<void> | void {
    this.txRisk += rows.length;
    const writer = this.txRiskWriter;
    if (!writer) return;
    writer.write(rows);
    if (this.options.durable) return this.stored(writer.flush());
    if (!writer.spills && writer.counters.pending > this.maxPending) return writer.flush();
  }

  private onFindings(findings: Finding[]): Promise<void> | void {
    this.findings += findings.length;
    this.options.hub?.publish(findings);
    const writer = this.findingWriter;
    if (!writer) return;
    writer.write(findings);
    if (this.options.durable) return this.stored(writer.flush());
    // In-process without a spill file: while the store is slow or down, hold the consumer (and so,
    // through the transport, the producers) instead of buffering findings without bound.
    if (!writer.spills && writer.counters.pending > this.maxPending) return writer.flush();
  }

  private onDeadLetters(messages: DeliveredMessage<DeadLetterMessage>[]): Promise<void> | void {
    this.deadLetters += messages.length;
    const writer = this.deadLetterWriter;
    if (!writer) return;
    writer.write(
      messages.map((m) => ({ ...m.value, origin: m.value.origin, raw: Buffer.from(m.value.raw, 'utf8'), runId: m.headers?.run ?? this.options.runId })),
    );
    if (this.options.durable) return this.stored(writer.flush());
    if (!writer.spills && writer.counters.pending > this.maxPending) return writer.flush();
  }

  /**
   * Durable (Kafka): the batch resolves once stored, like the findings. In-process: the context must not
   * hold detection up while ClickHouse is slow or down. With a spill configured (`vigil run`, where nothing
   * else waits either) messages are dropped, counted, while the bound's worth of rows waits for the store;
   * without one (replays) the consumer waits, so a replay's context is complete.
   */
  private onContext(messages: DeliveredMessage<unknown>[]): Promise<void> | void {
    const writer = this.contextWriter;
    if (!writer) return;
    const spill = this.options.spill;
    if (!this.options.durable && spill && writer.counters.pending >= spill.maxBuffered) {
      if (writer.taken.dropped === 0) this.options.log?.(`context writer: ${writer.counters.pending} rows wait for the store; dropping market and transaction context until it catches up`);
      writer.noteDropped(messages.length);
      return;
    }
    writer.take(messages, this.options.runId);
    if (this.options.durable) return this.stored(writer.flush());
    if (!spill && writer.counters.pending > 10 * this.maxPending) return writer.flush();
  }

  private onRuns(runs: RunRecord[]): Promise<void> | void {
    const writer = this.runWriter;
    if (!writer) return;
    writer.write(runs);
    if (this.options.durable) return this.stored(writer.flush());
  }

  /** Durable mode: the batch resolves once stored, or fails when stop() gives up waiting. */
  private stored(flushed: Promise<void>): Promise<void> {
    return Promise.race([flushed, this.giveUp!]);
  }

  /** Resolves when every row handed to the writers so far is stored. */
  async flush(): Promise<void> {
    await Promise.all([this.findingWriter?.flush(), this.deadLetterWriter?.flush(), this.runWriter?.flush(), this.txRiskWriter?.flush(), this.contextWriter?.flush()]);
  }

  /**
   * Stops consuming. In durable mode a handler still waiting for the store after the grace period
   * gives up: its batch is not committed (Kafka delivers it again).
   */
  async stop(): Promise<void> {
    const grace = setTimeout(
      () => this.triggerGiveUp?.(new Error('stopping: the store did not take the batch in time; it stays uncommitted')),
      this.options.stopGraceMs ?? 10_000,
    );
    try {
      for (const s of this.subscriptions.splice(0)) await s.stop();
    } finally {
      clearTimeout(grace);
    }
  }

  /**
   * Stores what the writers hold and closes them. With `timeoutMs`, gives up on an unreachable store
   * after that long: rows then stay in the spill file (or are counted as lost without one).
   */
  async close(options: { timeoutMs?: number } = {}): Promise<{ kept: number; lost: number }> {
    if (this.closed) return { kept: 0, lost: 0 };
    this.closed = true;
    const results = await Promise.all([
      this.findingWriter?.close(options),
      this.deadLetterWriter?.close(options),
      this.runWriter?.close(options),
      this.txRiskWriter?.close(options),
      this.contextWriter?.close(options),
    ]);
    this.detachMetrics?.();
    this.detachMetrics = undefined;
    return results.reduce<{ kept: number; lost: number }>((a, r) => ({ kept: a.kept + (r?.kept ?? 0), lost: a.lost + (r?.lost ?? 0) }), { kept: 0, lost: 0 });
  }
}

/** Live alerts from vigil.findings in a group of their own (the API's per-process group on Kafka). */
export function subscribeAlerts(transport: Transport, group: string, hub: AlertHub): Promise<Subscription> {
  return transport.subscribe<Finding>({
    group,
    topics: [TOPICS.findings],
    eachBatch: (b) => {
      hub.publish(b.messages.map((m) => m.value));
    },
  });
}
