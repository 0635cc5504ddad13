/**
 * The time of a replay record, and `vigil replay --from/--to`.
 *
 * A record's time — what the merge orders by, the pacing follows and --from/--to select on — is the
 * time its format states up front, before any normalization:
 * - frames (Vigil recordings, cryptofeed, hftbacktest): the receive time (`recvTs`). It is the order in
 *   which the live process saw the frames, on one clock for every venue; exchange times come out of
 *   the normalizer, one frame may carry several, and each venue stamps its own clock.
 * - canonical events and mapped CSV / JSON lines: the event's `ts`.
 * - malformed lines: the time of the record before them in their file (the start of the file for the
 *   first ones), so they stay where they were in their file. Lines the formats skip (meta,
 *   configuration, frames the client sent) are dropped here.
 *
 * --from/--to select records by that time, from inclusive, to exclusive. Event records outside are
 * skipped before validation. Frames received before `from` still go through their venue's normalizer
 * (the "warm-up"), with the events discarded: a book needs the depth snapshot and the diffs before
 * `from` to be right at `from`, so a range that cuts into a depth stream gives the same book events and
 * derived quotes from `from` on as the whole file; nothing before `from` reaches the detectors.
 * Recordings are written as received, so a frame input is read only up to its first frame at or after
 * `to`; event inputs (whose times come from the data and may be a little out of order) are read to the
 * end, skipping what lies outside.
 */
import { parseTime } from '../core/time.ts';
import { getAdapter } from '../feeds/registry.ts';
import type { Normalizer, RawFrame } from '../feeds/types.ts';
import type { CanonicalEvent } from '../core/events.ts';
import { isFrame, type FrameOrRecord, type ReplayRecord } from './formats.ts';

export interface TimeRange {
  /** Epoch ms, inclusive. */
  from?: number;
  /** Epoch ms, exclusive. */
  to?: number;
}

export interface RangeCounts {
  /** Records before `from` not used at all (events and malformed lines). */
  skippedBefore: number;
  /** Records at or after `to` that were read and skipped. */
  skippedAfter: number;
  /** Frames before `from` normalized only to bring books and sequences up to `from`. */
  warmupFrames: number;
}

/** A record of one input, with its time and whether it only warms the normalizer up. */
export interface TimedRecord {
  readonly time: number;
  readonly rec: ReplayRecord;
  /** Position of the input in the command line (for origins and tie-breaks). */
  readonly input: number;
  readonly warmup: boolean;
}

/**
 * What timedBatches gives: a frame as it is (the common case: its time is recvTs, it is a warm-up frame
 * when recvTs < from, and its origin names its input) or any other record as a TimedRecord.
 */
export type ReplayItem = RawFrame | TimedRecord;

/** A bare frame, not a TimedRecord. */
export function isFrameItem(x: ReplayItem): x is RawFrame {
  return (x as { rec?: unknown }).rec === undefined;
}

/** The time of an item (the merge orders by it). */
export function itemTime(x: ReplayItem): number {
  return isFrameItem(x) ? x.recvTs : x.time;
}

/** `--from`/`--to` values: as the API's `from`/`to` (src/core/time.ts). */
export const parseTimeArg = parseTime;

function eventTime(ev: unknown): number | undefined {
  const ts = (ev as { ts?: unknown } | null)?.ts;
  return typeof ts === 'number' && !Number.isNaN(ts) ? ts : undefined;
}

/** A record's own time (see the module comment), undefined for lines that carry none. */
export function recordTime(rec: ReplayRecord): number | undefined {
  if (rec.type === 'frame') return rec.frame.recvTs;
  if (rec.type === 'event') return eventTime(rec.event);
  return undefined;
}

/**
 * The records of one input with their times, the range applied (see the module comment), in batches as
 * they are read (readFrameBatches; never empty): one await per batch, not per record. Bare frames stay
 * bare (see ReplayItem). The batches are reused: the reader's arrays are filtered in place.
 */
export async function* timedBatches(
  batches: AsyncIterable<FrameOrRecord[]>,
  input: number,
  range: TimeRange,
  counts: RangeCounts,
): AsyncGenerator<ReplayItem[], void, undefined> {
  const { from, to } = range;
  let last = -Infinity;
  for await (const records of batches) {
    const out = records as unknown as ReplayItem[];
    let kept = 0;
    for (let i = 0; i < records.length; i++) {
      const item = records[i]!;
      if (isFrame(item)) {
        const time = item.recvTs;
        last = time;
        if (to !== undefined && time >= to) {
          // received in order: nothing after this one is in range
          out.length = kept;
          if (kept > 0) yield out;
          return;
        }
        if (from !== undefined && time < from) counts.warmupFrames++;
        out[kept++] = item;
        continue;
      }
      const rec = item;
      if (rec.type === 'skip') continue; // meta, configuration and sent-frame lines: never replayed
      const own = recordTime(rec);
      const time = own ?? last;
      if (own !== undefined) last = own;
      if (to !== undefined && time >= to) {
        if (rec.type === 'frame') {
          // received in order: nothing after this one is in range
          out.length = kept;
          if (kept > 0) yield out;
          return;
        }
        counts.skippedAfter++;
        continue;
      }
      if (from !== undefined && time < from) {
        if (rec.type === 'frame') {
          counts.warmupFrames++;
          out[kept++] = { time, rec, input, warmup: true };
        } else counts.skippedBefore++;
        continue;
      }
      out[kept++] = { time, rec, input, warmup: false };
    }
    out.length = kept;
    if (kept > 0) yield out;
  }
}

/** Records one at a time as batches of one (inputs read record by record, e.g. mapped CSV / JSON lines). */
export async function* oneByOne<T>(items: AsyncIterable<T>): AsyncGenerator<T[], void, undefined> {
  for await (const item of items) yield [item];
}

/**
 * Normalizers shared by the warm-up and the run: the replay registers each source's normalizer with
 * the ingestor before its first frame, so frames before `from` build the state the frames after it
 * are normalized with.
 */
export class NormalizerWarmup {
  private readonly normalizers = new Map<string, Normalizer | null>();
  private readonly scratch: CanonicalEvent[] = [];

  constructor(private readonly ingestor: { setNormalizer(source: string, normalizer: Normalizer): void }) {}

  /** Makes sure the ingestor uses this warm-up's normalizer for the frame's source. */
  register(source: string): Normalizer | null {
    let n = this.normalizers.get(source);
    if (n === undefined) {
      try {
        n = getAdapter(source).createNormalizer();
      } catch {
        n = null; // the ingestor counts the source's frames as unsupported
      }
      this.normalizers.set(source, n);
      if (n !== null) this.ingestor.setNormalizer(source, n);
    }
    return n;
  }

  /** Normalizes a frame before `from`: its state changes stay, its events (and errors) are dropped. */
  warm(frame: RawFrame): void {
    const n = this.register(frame.source);
    if (n === null) return;
    this.scratch.length = 0;
    try {
      n.normalize(frame, this.scratch);
    } catch {
      // a broken frame before the range: outside what was asked for, not a dead letter of this run
    }
    this.scratch.length = 0;
  }
}
