/**
 * One pipeline = one run, in one process: frames → Ingestor → event topics → DetectorRunner →
 * vigil.findings → StoreSide (findings writer → ClickHouse, alert hub → live clients); vigil.dlq →
 * dead-letter writer. Live and replay build the very same pipeline; only the frame source and the run
 * id differ. The three parts (ingest.ts, detect.ts, store-side.ts) also run on their own, one role
 * per process over Kafka (src/cli/feeds.ts, detect.ts, api.ts).
 */
import type { DetectorInstance, StateStore } from '../detectors/types.ts';
import type { AlertHub } from '../api/alert-hub.ts';
import type { DeadLetterWriter, FindingWriter, SpillConfig } from '../storage/finding-writer.ts';
import type { Store } from '../storage/types.ts';
import { RedisStateStore } from '../state/redis.ts';
import { MemoryTransport } from '../transport/memory.ts';
import type { Transport } from '../transport/types.ts';
import { DetectorRunner, allDetectorTopics } from './detect.ts';
import { Ingestor, type IngestOptions } from './ingest.ts';
import type { PipelineMetrics } from './metrics.ts';
import { StoreSide } from './store-side.ts';

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
  /** Spill findings and dead letters beyond a memory bound to files (vigil run: VIGIL_DATA_DIR/spill). */
  spill?: SpillConfig;
  /** Store trades, quotes (thinned) and transactions as findings' context (default true; `vigil replay --no-context`). */
  storeContext?: boolean;
  /** Where the pipeline's counters and latencies go (src/observability/metrics.ts); absent: nowhere. */
  metrics?: PipelineMetrics;
  log?: (message: string) => void;
}

export class Pipeline {
  readonly transport: Transport;
  readonly ingestor: Ingestor;
  readonly detectors: DetectorRunner;
  readonly storeSide: StoreSide;
  private readonly ownsTransport: boolean;
  private readonly ownedStateStore?: StateStore;
  private readonly detachTransport?: () => void;

  constructor(private readonly options: PipelineOptions) {
    this.ownsTransport = !options.transport;
    this.transport = options.transport ?? new MemoryTransport({ partitions: options.partitions, queueCapacity: options.queueCapacity });
    const metrics = options.metrics;
    this.ingestor = new Ingestor(this.transport, metrics ? { ...options.ingest, metrics } : options.ingest);
    this.detachTransport = metrics?.attach({ kind: 'transport', transport: this.transport });
    if (!options.stateStore && options.redisUrl) this.ownedStateStore = new RedisStateStore({ url: options.redisUrl });
    this.detectors = new DetectorRunner(this.transport, options.detectors, options.runId, {
      store: options.stateStore ?? this.ownedStateStore,
      idleMs: options.stateIdleMs,
      // Every detector's topics, so a rules change can add a rule on any of them.
      topics: allDetectorTopics(),
      metrics,
    });
    this.storeSide = new StoreSide({
      transport: this.transport,
      store: options.store,
      hub: options.hub,
      group: `vigil-findings-${options.runId}`,
      dlqGroup: `vigil-dlq-${options.runId}`,
      storeContext: options.storeContext,
      contextGroup: `vigil-context-${options.runId}`,
      runId: options.runId,
      flushRows: options.flushRows,
      flushMs: options.flushMs,
      spill: options.spill,
      metrics,
      log: options.log,
    });
  }

  get runId(): string {
    return this.options.runId;
  }

  get findingWriter(): FindingWriter | undefined {
    return this.storeSide.findingWriter;
  }

  get deadLetterWriter(): DeadLetterWriter | undefined {
    return this.storeSide.deadLetterWriter;
  }

  /** Dead letters seen on vigil.dlq. */
  get deadLetters(): number {
    return this.storeSide.deadLetters;
  }

  /** Subscribes every consumer before any frame is sent, so nothing is sent to a topic nobody reads. */
  async start(): Promise<this> {
    await this.storeSide.start();
    await this.detectors.store.open();
    if (this.options.ephemeralState) await this.detectors.store.clear(this.options.runId);
    await this.detectors.start();
    return this;
  }

  /** Waits until every frame pushed so far is through detectors and stored. */
  async drain(): Promise<void> {
    await this.ingestor.flush();
    await this.transport.drain();
    await this.storeSide.flush();
  }

  async close(): Promise<void> {
    await this.drain().catch(() => undefined);
    await this.detectors.stop();
    if (this.options.ephemeralState) await this.detectors.store.clear(this.options.runId).catch(() => undefined);
    await this.ownedStateStore?.close();
    await this.storeSide.stop();
    await this.storeSide.close();
    this.ingestor.detachMetrics();
    this.detachTransport?.();
    if (this.ownsTransport) await this.transport.close();
  }
}
