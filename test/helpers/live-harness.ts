/**
 * The live-client harness of the feed tests: a venue's live feed driven exactly as `vigil run` drives
 * it — every frame through an Ingestor (batch size 1) on a MemoryTransport with a subscriber on
 * vigil.dlq — with the normalizer wrapped to record the frames, events and ignored labels, and its
 * resync requests going back to the feed. Plus what the tests ask of the recorded events.
 */
import type { Book, CanonicalEvent, FeedStatus, Quote } from '../../src/core/events.ts';
import type { OrderBook } from '../../src/feeds/book/order-book.ts';
import type { LiveFeed, Normalizer, NormalizerContext, RawFrame } from '../../src/feeds/types.ts';
import { Ingestor, type DeadLetterMessage } from '../../src/pipeline/ingest.ts';
import { MemoryTransport } from '../../src/transport/memory.ts';
import { TOPICS, VIEW_HEADER } from '../../src/transport/types.ts';

export interface LiveRun<N extends Normalizer = Normalizer, E = unknown> {
  feed: LiveFeed;
  normalizer: N;
  ingestor: Ingestor;
  transport: MemoryTransport;
  /** Every frame the feed yielded (each reaches the normalizer), in order. */
  frames: RawFrame[];
  /** Every event the normalizer produced for a frame it accepted, in order. */
  events: CanonicalEvent[];
  /** Labels of the frames the normalizer ignored, in order. */
  ignored: string[];
  /** Dead letters received on vigil.dlq. */
  dlq: DeadLetterMessage[];
  /** What arrived on the data topic (`dataTopic`), when one was named. */
  onTopic: E[];
  /** The normalizer's resync requests: [symbol, reason]. */
  resyncs: [string, string][];
  /** Resolves once `pred` holds (checked every 5 ms); rejects after `timeoutMs`. */
  until(pred: () => boolean, timeoutMs?: number): Promise<void>;
  /** Aborts the feed, flushes the ingestor, drains and closes the transport, then runs `onStop`. Idempotent. */
  stop(): Promise<void>;
}

export interface LiveRunOptions<N extends Normalizer> {
  /** The normalizer; `context.requestResync` records the request and resyncs the feed. */
  createNormalizer(context: NormalizerContext): N;
  /** The live feed, stopped through `signal`. */
  connect(signal: AbortSignal): LiveFeed;
  /** The frames' source the ingestor routes to the normalizer (default: the normalizer's venue). */
  source?: string;
  /** Default: a MemoryTransport with its default partitions. */
  transport?: MemoryTransport;
  /** A topic whose messages are collected in `onTopic` (vigil.orders, vigil.tx). */
  dataTopic?: string;
  /** Runs last in `stop` (closing the test server). */
  onStop?: () => Promise<void>;
}

const cleanups: (() => Promise<void>)[] = [];

/** Stops every run started (and runs every `atStopLiveRuns` cleanup) since the last call, the latest first: `afterEach(stopLiveRuns)`. */
export async function stopLiveRuns(): Promise<void> {
  while (cleanups.length > 0) await cleanups.pop()!();
}

/** Work for the next `stopLiveRuns`, e.g. stopping a feed and closing a server the test set up itself. */
export function atStopLiveRuns(cleanup: () => Promise<void>): void {
  cleanups.push(cleanup);
}

export async function startLiveRun<N extends Normalizer, E = unknown>(options: LiveRunOptions<N>): Promise<LiveRun<N, E>> {
  const ctrl = new AbortController();
  const frames: RawFrame[] = [];
  const events: CanonicalEvent[] = [];
  const ignored: string[] = [];
  const dlq: DeadLetterMessage[] = [];
  const onTopic: E[] = [];
  const resyncs: [string, string][] = [];
  let feed: LiveFeed | undefined;
  const normalizer = options.createNormalizer({
    requestResync: (symbol, reason) => {
      resyncs.push([symbol, reason]);
      feed?.resync(symbol, reason);
    },
  });
  const source = options.source ?? normalizer.venue;
  const recording: Normalizer = {
    venue: source,
    normalize(frame, out) {
      frames.push(frame);
      const label = normalizer.normalize(frame, out);
      if (label !== undefined) ignored.push(label);
      events.push(...out);
      return label;
    },
  };
  if (normalizer.bookReport !== undefined) recording.bookReport = () => normalizer.bookReport!();
  feed = options.connect(ctrl.signal);
  const transport = options.transport ?? new MemoryTransport();
  await transport.subscribe<DeadLetterMessage>({ group: 'dlq-test', topics: [TOPICS.dlq], eachBatch: (b) => void dlq.push(...b.messages.map((m) => m.value)) });
  const dataTopic = options.dataTopic;
  if (dataTopic !== undefined) {
    await transport.subscribe<E>({ group: 'data-test', topics: [dataTopic], eachBatch: (b) => void onTopic.push(...b.messages.filter((m) => m.headers?.[VIEW_HEADER] === undefined).map((m) => m.value)) });
  }
  const ingestor = new Ingestor(transport, { batchSize: 1 });
  ingestor.setNormalizer(source, recording);
  const f = feed;
  const loop = (async () => {
    for await (const frame of f) await ingestor.push(frame);
    await ingestor.flush();
  })();
  let stopped: Promise<void> | undefined;
  const run: LiveRun<N, E> = {
    feed,
    normalizer,
    ingestor,
    transport,
    frames,
    events,
    ignored,
    dlq,
    onTopic,
    resyncs,
    until(pred, timeoutMs = 10_000) {
      return new Promise<void>((resolve, reject) => {
        const started = Date.now();
        const t = setInterval(() => {
          if (pred()) {
            clearInterval(t);
            resolve();
          } else if (Date.now() - started > timeoutMs) {
            clearInterval(t);
            reject(new Error(`timed out after ${timeoutMs} ms; events so far: ${events.map((e) => e.kind).join(', ')}; dead letters: ${dlq.length}`));
          }
        }, 5);
      });
    },
    stop() {
      stopped ??= (async () => {
        ctrl.abort();
        await loop;
        await ingestor.flush();
        await transport.drain();
        await transport.close();
        await options.onStop?.();
      })();
      return stopped;
    },
  };
  cleanups.push(() => run.stop());
  return run;
}

// ---------------------------------------------------------------- the recorded events

export const statuses = (events: readonly CanonicalEvent[], symbol?: string): FeedStatus[] =>
  events.filter((e): e is FeedStatus => e.kind === 'status' && (symbol === undefined || e.symbol === symbol));
export const books = (events: readonly CanonicalEvent[], symbol: string): Book[] => events.filter((e): e is Book => e.kind === 'book' && e.symbol === symbol);
export const quotes = (events: readonly CanonicalEvent[], symbol: string): Quote[] => events.filter((e): e is Quote => e.kind === 'quote' && e.symbol === symbol);
/** How many `status` events of the symbol (any symbol when undefined) have this status. */
export const countStatus = (events: readonly CanonicalEvent[], symbol: string | undefined, status: FeedStatus['status']): number =>
  statuses(events, symbol).filter((s) => s.status === status).length;

export interface Levels {
  bids: [number, number][];
  asks: [number, number][];
}

/** The book a consumer of the events would hold: snapshots reset it, deltas change it, a reset or disconnect drops it. */
export function rebuildFromEvents(events: readonly CanonicalEvent[], symbol: string): Levels {
  let bids = new Map<number, number>();
  let asks = new Map<number, number>();
  for (const e of events) {
    if (e.kind === 'status' && e.symbol === symbol && (e.status === 'book_reset' || e.status === 'disconnected' || e.status === 'stale')) {
      bids = new Map();
      asks = new Map();
    }
    if (e.kind !== 'book' || e.symbol !== symbol) continue;
    if (e.snapshot) {
      bids = new Map();
      asks = new Map();
    }
    for (const [p, q] of e.bids) q === 0 ? bids.delete(p) : bids.set(p, q);
    for (const [p, q] of e.asks) q === 0 ? asks.delete(p) : asks.set(p, q);
  }
  return { bids: [...bids].sort((a, b) => b[0] - a[0]), asks: [...asks].sort((a, b) => a[0] - b[0]) };
}

/** A normalizer's book as [price, qty] levels (none for no book). */
export function bookLevels(book: OrderBook | undefined): Levels {
  return {
    bids: (book?.bids.levels ?? []).map((l): [number, number] => [l.price, l.qty]),
    asks: (book?.asks.levels ?? []).map((l): [number, number] => [l.price, l.qty]),
  };
}

/** A test server's book of venue strings as numbers. */
export function numericLevels(book: { bids: readonly (readonly [string, string])[]; asks: readonly (readonly [string, string])[] }): Levels {
  const num = (l: readonly [string, string]): [number, number] => [Number(l[0]), Number(l[1])];
  return { bids: book.bids.map(num), asks: book.asks.map(num) };
}
