/**
 * One pipeline = one run: frames → Ingestor → event topics → DetectorRunner → vigil.findings →
 * (findings writer → ClickHouse) and (alert hub → live clients); vigil.dlq → dead-letter writer.
 * Live and replay build the very same pipeline; only the frame source and the run id differ.
 */
import type { Finding } from '../core/events.ts';
import type { DetectorInstance, StateStore } from '../detectors/types.ts';
import type { AlertHub } from '../api/alert-hub.ts';
import { DeadLetterWriter, FindingWriter } from '../storage/finding-writer.ts';
import type { Store } from '../storage/types.ts';
import { RedisStateStore } from '../state/redis.ts';
import { MemoryTransport } from '../transport/memory.ts';
import { TOPICS, type Subscription, type Transport } from '../transport/types.ts';
import { DetectorRunner } from './detect.ts';
import { Ingestor, type DeadLetterMessage, type IngestOptions } from './ingest.ts';

export interface PipelineOptions {
  runId: string;
  detectors: readonly DetectorInstance[];
  store?: Store;
  hub?: AlertHub;
  transport?: Transport;
  ingest?: IngestOptions;
  flushRows?: number;
  flushMs?: number;
  partitions?: number;
  queueCapacity?: number;
  /** Detector state store (the caller opens and closes it); default: in memory, fresh per pipeline. */
  stateStore?: StateStore;
  /** REDIS_URL: keep detector state in Redis (the pipeline opens and closes the connection). */
  redisUrl?: string;
  /** VIGIL_STATE_IDLE_MS: event time a key may stay unseen before its state leaves memory. */
  stateIdleMs?: number;
  /**
   * The run's detector state lives only as long as this pipeline (replays): the run's namespace in the
   * state store is cleared at start, so a re-run with the same id starts fresh, and again at close.
   */
  ephemeralState?: boolean;
}

export class Pipeline {
  readonly transport: Transport;
  readonly ingestor: Ingestor;
  readonly detectors: DetectorRunner;
  readonly findingWriter?: FindingWriter;
  readonly deadLetterWriter?: DeadLetterWriter;
  private readonly subscriptions: Subscription[] = [];
  private readonly ownsTransport: boolean;
  deadLetters = 0;
  private readonly maxPendingFindings: number;
  private readonly ownedStateStore?: StateStore;

  constructor(private readonly options: PipelineOptions) {
    this.ownsTransport = !options.transport;
    this.maxPendingFindings = 10 * (options.flushRows ?? 1000);
    this.transport = options.transport ?? new MemoryTransport({ partitions: options.partitions, queueCapacity: options.queueCapacity });
    this.ingestor = new Ingestor(this.transport, options.ingest);
    if (!options.stateStore && options.redisUrl) this.ownedStateStore = new RedisStateStore({ url: options.redisUrl });
    this.detectors = new DetectorRunner(this.transport, options.detectors, options.runId, {
      store: options.stateStore ?? this.ownedStateStore,
      idleMs: options.stateIdleMs,
    });
    if (options.store) {
      const batching = { maxRows: options.flushRows, maxDelayMs: options.flushMs };
      this.findingWriter = new FindingWriter(options.store, batching);
      this.deadLetterWriter = new DeadLetterWriter(options.store, batching);
    }
  }

  get runId(): string {
    return this.options.runId;
  }

  /** Subscribes every consumer before any frame is sent, so nothing is sent to a topic nobody reads. */
  async start(): Promise<this> {
    const { store, hub, runId } = this.options;
    const writer = this.findingWriter;
    if (writer || hub) {
      this.subscriptions.push(
        await this.transport.subscribe<Finding>({
          group: `vigil-findings-${runId}`,
          topics: [TOPICS.findings],
          eachBatch: async (batch) => {
            const findings = batch.messages.map((m) => m.value);
            hub?.publish(findings);
            if (!writer) return;
            writer.write(findings);
            // While the store is slow or down, hold the consumer (and so, through the transport, the
            // producers) instead of buffering findings without bound.
            if (writer.counters.pending > this.maxPendingFindings) await writer.flush();
          },
        }),
      );
    }
    this.subscriptions.push(
      await this.transport.subscribe<DeadLetterMessage>({
        group: `vigil-dlq-${runId}`,
        topics: [TOPICS.dlq],
        eachBatch: (batch) => {
          this.deadLetters += batch.messages.length;
          if (!store || !this.deadLetterWriter) return;
          this.deadLetterWriter.write(
            batch.messages.map((m) => ({ ...m.value, origin: m.value.origin, raw: Buffer.from(m.value.raw, 'utf8'), runId })),
          );
        },
      }),
    );
    await this.detectors.store.open();
    if (this.options.ephemeralState) await this.detectors.store.clear(runId);
    await this.detectors.start();
    return this;
  }

  /** Waits until every frame pushed so far is through detectors and stored. */
  async drain(): Promise<void> {
    await this.ingestor.flush();
    await this.transport.drain();
    await Promise.all([this.findingWriter?.flush(), this.deadLetterWriter?.flush()]);
  }

  async close(): Promise<void> {
    await this.drain().catch(() => undefined);
    await this.detectors.stop();
    if (this.options.ephemeralState) await this.detectors.store.clear(this.options.runId).catch(() => undefined);
    await this.ownedStateStore?.close();
    for (const s of this.subscriptions) await s.stop();
    await Promise.all([this.findingWriter?.close(), this.deadLetterWriter?.close()]);
    if (this.ownsTransport) await this.transport.close();
  }
}
