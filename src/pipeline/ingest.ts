/**
 * Frames in, canonical events out onto the transport. One normalizer per source keeps each venue's
 * per-connection state (e.g. which symbol a REST snapshot belongs to). Broken frames become dead
 * letters on their own topic and never stop the feed.
 */
import { eventKey, eventViews, partitionKey as eventPartitionKey, type CanonicalEvent, type EventKind } from '../core/events.ts';
import { getAdapter } from '../feeds/registry.ts';
import { MalformedFrameError, type BookReport, type Normalizer, type RawFrame } from '../feeds/types.ts';
import { STATUS_COPY_HEADER, TOPICS, VIEW_HEADER, type OutgoingMessage, type Transport } from '../transport/types.ts';
import type { PipelineMetrics } from './metrics.ts';

/** Data topics that also carry copies of status markers. */
const STATUS_COPY_TOPICS = [TOPICS.trade, TOPICS.quote] as const;

/** What travels on vigil.dlq. */
export interface DeadLetterMessage {
  ts: number;
  source: string;
  origin: string;
  reason: string;
  /** The frame's text; the writer stores its bytes. */
  raw: string;
}

export interface IngestCounters {
  frames: number;
  events: Record<EventKind, number>;
  /** Frames that are deliberately not events, by label (subscription-ack, kline…). */
  ignored: Record<string, number>;
  malformed: number;
  /** Frames from a source no adapter handles. */
  unsupported: Record<string, number>;
}

export interface IngestOptions {
  /** Events buffered before a send; 1 sends every frame at once (live feeds). */
  batchSize?: number;
  /** How many rejected frames to keep as samples for reports. */
  keepSamples?: number;
  /** Exports the counters (read when scraped). */
  metrics?: PipelineMetrics;
}

const noEvents = (): Record<EventKind, number> => ({ trade: 0, quote: 0, book: 0, order: 0, transaction: 0, label: 0, metric: 0, status: 0 });

/**
 * counts[kind]++ with a named property per kind: records of one shape (noEvents) stay monomorphic, where a
 * computed key costs a megamorphic lookup per event.
 */
function countKind(counts: Record<EventKind, number>, kind: EventKind): void {
  switch (kind) {
    case 'trade':
      counts.trade++;
      break;
    case 'quote':
      counts.quote++;
      break;
    case 'book':
      counts.book++;
      break;
    case 'order':
      counts.order++;
      break;
    case 'transaction':
      counts.transaction++;
      break;
    case 'label':
      counts.label++;
      break;
    case 'metric':
      counts.metric++;
      break;
    case 'status':
      counts.status++;
      break;
  }
}

/** The messages waiting for one topic. */
interface Lane {
  readonly topic: string;
  list: OutgoingMessage<CanonicalEvent>[];
}

export interface RejectSample {
  origin: string;
  reason: string;
}

export class Ingestor {
  readonly counters: IngestCounters = {
    frames: 0,
    events: noEvents(),
    ignored: {},
    malformed: 0,
    unsupported: {},
  };
  /** Events by source (the frame's source; venue or source of canonical events) and kind. */
  readonly eventsBySource = new Map<string, Record<EventKind, number>>();
  /** Dead letters (frames that could not be read) by source. */
  readonly deadLettersBySource = new Map<string, number>();
  private lastSource: string | undefined;
  private lastSourceCounts: Record<EventKind, number> | undefined;
  private detachMetrics_: (() => void) | undefined;
  private readonly normalizers = new Map<string, Normalizer | null>();
  /** Pending messages per topic, in the order topics first appeared (the order flush sends them in). */
  private readonly lanes: Lane[] = [];
  private readonly laneByTopic = new Map<string, Lane>();
  /** The lane of the last event kind enqueued (a stream repeats kinds), to skip a lookup per event. */
  private lastKind: EventKind | undefined;
  private lastLane: Lane | undefined;
  private pendingCount = 0;
  private deadLetters: OutgoingMessage<DeadLetterMessage>[] = [];
  private readonly scratch: CanonicalEvent[] = [];
  private readonly batchSize: number;
  /** The first rejected frames, for the run summary. */
  readonly rejectSamples: RejectSample[] = [];
  /** Added to every event's ts and recvTs (the demo loop replays a sample as if it happened now). */
  timeShiftMs = 0;
  /**
   * The message key of the last market event, by its venue and symbol: normalizers hand out the same
   * string objects event after event, so this saves building (and hashing, downstream) a new key string
   * per event.
   */
  private keyVenue: string | undefined;
  private keySymbol: string | undefined;
  private key = '';

  constructor(
    private readonly transport: Transport,
    private readonly options: IngestOptions = {},
  ) {
    this.batchSize = options.batchSize ?? 512;
    this.detachMetrics_ = options.metrics?.attach({ kind: 'ingestor', ingestor: this });
  }

  /** Stops exporting this ingestor's counters (they stay in the exported totals). */
  detachMetrics(): void {
    this.detachMetrics_?.();
    this.detachMetrics_ = undefined;
  }

  private sourceCounts(source: string): Record<EventKind, number> {
    if (source === this.lastSource && this.lastSourceCounts !== undefined) return this.lastSourceCounts;
    let c = this.eventsBySource.get(source);
    if (c === undefined) this.eventsBySource.set(source, (c = noEvents()));
    this.lastSource = source;
    this.lastSourceCounts = c;
    return c;
  }

  private normalizerFor(source: string): Normalizer | null {
    let n = this.normalizers.get(source);
    if (n === undefined) {
      try {
        n = getAdapter(source).createNormalizer();
      } catch {
        n = null;
      }
      this.normalizers.set(source, n);
    }
    return n;
  }

  /**
   * Uses this normalizer for a source instead of a fresh one from the registry: a live feed passes one
   * whose resync requests reach its connection.
   */
  setNormalizer(source: string, normalizer: Normalizer): void {
    this.normalizers.set(source, normalizer);
  }

  /** Book figures per source and symbol (resyncs, top-of-book consistency), from normalizers that keep books. */
  bookReports(): Record<string, Record<string, BookReport>> {
    const out: Record<string, Record<string, BookReport>> = {};
    for (const [source, n] of this.normalizers) {
      const r = n?.bookReport?.();
      if (r && Object.keys(r).length > 0) out[source] = r;
    }
    return out;
  }

  /**
   * Normalizes one frame; sends when the buffer is full. Returns a promise only when it sends (await it
   * then); most frames only fill the buffer, and a replay at max speed saves a promise per frame.
   */
  push(frame: RawFrame): Promise<void> | undefined {
    this.counters.frames++;
    const normalizer = this.normalizerFor(frame.source);
    if (!normalizer) {
      this.counters.unsupported[frame.source] = (this.counters.unsupported[frame.source] ?? 0) + 1;
      return;
    }
    const out = this.scratch;
    out.length = 0;
    try {
      const ignored = normalizer.normalize(frame, out);
      if (ignored !== undefined) this.counters.ignored[ignored] = (this.counters.ignored[ignored] ?? 0) + 1;
    } catch (err) {
      const reason = err instanceof MalformedFrameError ? err.message : `normalizer error: ${(err as Error).message}`;
      this.reject(frame, reason);
      out.length = 0;
    }
    if (out.length > 0) {
      const bySource = this.sourceCounts(frame.source);
      for (let i = 0; i < out.length; i++) {
        const ev = out[i] as CanonicalEvent;
        countKind(bySource, ev.kind);
        this.enqueue(ev);
      }
    }
    if (this.pendingCount >= this.batchSize || this.deadLetters.length > 0) return this.flush();
    return undefined;
  }

  /** Adds an already canonical event (JSON-lines input of canonical events); a promise only when it sends, as push. */
  pushEvent(ev: CanonicalEvent): Promise<void> | undefined {
    countKind(this.sourceCounts('venue' in ev ? ev.venue : ev.source), ev.kind);
    this.enqueue(ev);
    if (this.pendingCount >= this.batchSize) return this.flush();
    return undefined;
  }

  /** Records a line or frame that could not be read at all. */
  reject(frame: RawFrame, reason: string): void {
    this.counters.malformed++;
    this.deadLettersBySource.set(frame.source, (this.deadLettersBySource.get(frame.source) ?? 0) + 1);
    if (this.rejectSamples.length < (this.options.keepSamples ?? 5)) this.rejectSamples.push({ origin: frame.origin ?? frame.source, reason });
    this.deadLetters.push({
      key: frame.source,
      value: { ts: Math.floor(frame.recvTs), source: frame.source, origin: frame.origin ?? '', reason, raw: frame.data },
    });
  }

  private enqueue(ev: CanonicalEvent): void {
    const shift = this.timeShiftMs;
    if (shift !== 0) {
      ev.ts += shift;
      if (ev.recvTs !== undefined) ev.recvTs += shift;
    }
    const kind = ev.kind;
    countKind(this.counters.events, kind);
    const key = this.keyOf(ev);
    const partitionKey = eventPartitionKey(ev);
    const message: OutgoingMessage<CanonicalEvent> = partitionKey === undefined ? { key, value: ev } : { key, partitionKey, value: ev };
    let lane = this.lastLane;
    if (kind !== this.lastKind || lane === undefined) {
      lane = this.lane(TOPICS[kind]);
      this.lastKind = kind;
      this.lastLane = lane;
    }
    this.add(lane, message);
    const views = eventViews(ev);
    if (views !== undefined) {
      for (const v of views) this.add(lane, { key: v.key, value: ev, headers: { [VIEW_HEADER]: v.view } });
    }
    if (ev.kind === 'status') {
      // Status markers also travel with the data they describe, so a rule on trades or quotes sees a
      // disconnect in order with that stream (topics are not ordered with each other).
      for (const topic of STATUS_COPY_TOPICS) this.add(this.lane(topic), { ...message, headers: { [STATUS_COPY_HEADER]: '1' } });
    }
  }

  /** eventKey(ev), reusing the last market key while venue and symbol stay the same strings. */
  private keyOf(ev: CanonicalEvent): string {
    if (ev.kind === 'transaction' || ev.kind === 'label' || ev.kind === 'metric') return eventKey(ev);
    if (ev.venue !== this.keyVenue || ev.symbol !== this.keySymbol) {
      this.keyVenue = ev.venue;
      this.keySymbol = ev.symbol;
      this.key = eventKey(ev);
    }
    return this.key;
  }

  private lane(topic: string): Lane {
    let lane = this.laneByTopic.get(topic);
    if (lane === undefined) {
      lane = { topic, list: [] };
      this.laneByTopic.set(topic, lane);
      this.lanes.push(lane);
    }
    return lane;
  }

  private add(lane: Lane, message: OutgoingMessage<CanonicalEvent>): void {
    lane.list.push(message);
    this.pendingCount++;
  }

  async flush(): Promise<void> {
    if (this.deadLetters.length > 0) {
      const dl = this.deadLetters;
      this.deadLetters = [];
      await this.transport.send(TOPICS.dlq, dl);
    }
    if (this.pendingCount === 0) return;
    this.pendingCount = 0;
    // By index: a topic first seen while a send waits is still sent in this flush, as before.
    const lanes = this.lanes;
    for (let i = 0; i < lanes.length; i++) {
      const lane = lanes[i] as Lane;
      const list = lane.list;
      if (list.length === 0) continue;
      lane.list = [];
      await this.transport.send(lane.topic, list);
    }
  }
}
