/**
 * Replay: recorded files through the very same pipeline as live, at max speed, real time or N×.
 * Findings carry the run id; ids do not depend on it, so a replay reproduces live findings' ids.
 */
import { statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventSchema, type EventKind } from '../core/events.ts';
import type { BookReport, RawFrame } from '../feeds/types.ts';
import type { Pipeline } from '../pipeline/pipeline.ts';
import { readFrameBatches } from './formats.ts';
import { mappedReader, type MappedReader } from './mapped-input.ts';
import type { Mapping } from '../feeds/mapping.ts';
import { mergeBatchesByTime } from './merge.ts';
import type { ProgressReporter } from './progress.ts';
import { NormalizerWarmup, isFrameItem, itemTime, oneByOne, recordTime, timedBatches, type RangeCounts, type ReplayItem } from './time-range.ts';

export type Speed = { mode: 'max' } | { mode: 'paced'; factor: number };

export function parseSpeed(s: string): Speed {
  if (s === 'max') return { mode: 'max' };
  if (s === 'realtime') return { mode: 'paced', factor: 1 };
  const m = /^(\d+(?:\.\d+)?)x$/.exec(s);
  if (m && Number(m[1]) > 0) return { mode: 'paced', factor: Number(m[1]) };
  throw new Error(`--speed: expected max, realtime or <N>x (e.g. 10x), got ${JSON.stringify(s)}`);
}

export interface MalformedLine {
  file: string;
  line: number;
  reason: string;
}

export interface ReplaySummary {
  runId: string;
  inputs: string[];
  status: 'completed' | 'aborted';
  frames: number;
  events: Record<EventKind, number>;
  totalEvents: number;
  ignored: Record<string, number>;
  unsupported: Record<string, number>;
  malformed: { count: number; first: MalformedLine[] };
  deadLetters: number;
  /**
   * Per source and symbol: book resyncs and, where the venue sends its own best bid/offer beside the
   * book, how often the rebuilt top of book matched it (after sync).
   */
  books: Record<string, Record<string, BookReport & { matchRate?: number }>>;
  findings: Record<string, number>;
  totalFindings: number;
  /** Rules in force (their version), and events each rule found too late to use (only rules with some). */
  rulesVersion?: string;
  lateEvents?: Record<string, number>;
  /** With --from/--to: the range (epoch ms) and what lay outside it (src/replay/time-range.ts). */
  timeRange?: { from?: number; to?: number } & RangeCounts;
  durationMs: number;
  eventsPerSec: number;
}

export interface ReplayOptions {
  files: string[];
  speed: Speed;
  signal?: AbortSignal;
  /** Shift event times so the first frame happens now (the demo loop). */
  rebaseToNow?: boolean;
  progress?: ProgressReporter;
  /**
   * A field mapping (file path or parsed): the files are CSV or JSON lines of another provider's records,
   * mapped onto canonical events (src/replay/mapped-input.ts) instead of recordings.
   */
  mapping?: string | Mapping;
  /** Per file (same order as `files`): its field mapping, or undefined for a recording; overrides `mapping`. */
  mappings?: ReadonlyArray<string | Mapping | undefined>;
  /** Only records whose time (src/replay/time-range.ts) is in [from, to), epoch ms. */
  from?: number;
  to?: number;
}

/**
 * What a replay feeds: a Pipeline, or (`vigil replay` over Kafka) an ingestor whose drain() waits for
 * the detect and store roles, with the findings counted off vigil.findings.
 */
export type ReplayTarget = Pick<Pipeline, 'runId' | 'ingestor' | 'drain' | 'deadLetters'> & {
  readonly detectors: {
    readonly counters: { readonly findings: Record<string, number> };
    /** The rules running (rule instances carry their version and late-event counters). */
    detectors?(): ReadonlyArray<{ readonly ruleId: string; readonly settings?: { rulesVersion: string }; readonly counters?: { late: number } }>;
  };
};

/**
 * Pushes every record of the files through the pipeline, the files merged by time (src/replay/merge.ts,
 * record times as src/replay/time-range.ts defines them), then waits until all findings are stored.
 */
export async function replayFiles(pipeline: ReplayTarget, options: ReplayOptions): Promise<ReplaySummary> {
  const started = performance.now();
  const ingestor = pipeline.ingestor;
  let aborted = false;
  let firstTs: number | undefined;
  let wallStart = 0;
  const factor = options.speed.mode === 'paced' ? options.speed.factor : 0;
  const progress = options.progress;
  const totalBytes = options.files.reduce((a, f) => a + statSync(f).size, 0);
  let bytesRead = 0;
  const onBytes = (n: number) => {
    bytesRead += n;
  };

  const readers = new Map<string | Mapping, MappedReader>();
  const readerFor = (m: string | Mapping): MappedReader => {
    let r = readers.get(m);
    if (r === undefined) readers.set(m, (r = mappedReader(m))); // a bad mapping fails here, before any file is read
    return r;
  };
  const range = { from: options.from, to: options.to };
  const counts: RangeCounts = { skippedBefore: 0, skippedAfter: 0, warmupFrames: 0 };
  const inputs = options.files.map((file, i) => {
    const m = options.mappings?.[i] ?? options.mapping;
    return timedBatches(m !== undefined ? oneByOne(readerFor(m)(file, { onBytes })) : readFrameBatches(file, { onBytes }), i, range, counts);
  });
  // With --from, frames before it still build the normalizers' state (books): the same normalizer then
  // carries on, so the ingestor must use this one for every source.
  const warmup = options.from !== undefined ? new NormalizerWarmup(ingestor) : undefined;
  const from = options.from;
  // Records come in batches (a chunk of a file's lines): one await per batch, not per record. Frames
  // come bare (their origin names their file), other records as TimedRecords (time-range.ts ReplayItem).
  replay: for await (const batch of mergeBatchesByTime(inputs, itemTime)) {
    for (const item of batch) {
      if (options.signal?.aborted) {
        aborted = true;
        break replay;
      }
      let frame: RawFrame | undefined;
      let event: { line: number; event: unknown } | undefined; // a canonical-event record, of `file`
      let file = '';
      let t: number | undefined;
      if (isFrameItem(item)) {
        if (from !== undefined && item.recvTs < from) {
          warmup?.warm(item);
          continue;
        }
        frame = item;
        t = item.recvTs;
      } else {
        const { rec, input, warmup: beforeFrom } = item;
        if (rec.type === 'skip') continue;
        file = options.files[input]!;
        if (beforeFrom) {
          if (rec.type === 'frame') warmup?.warm(rec.frame);
          continue;
        }
        if (rec.type === 'malformed') {
          ingestor.reject({ recvTs: Date.now(), source: 'replay', data: rec.raw, origin: `${file}:${rec.line}` }, rec.reason);
          continue;
        }
        t = recordTime(rec);
        if (rec.type === 'frame') frame = rec.frame.origin ? rec.frame : { ...rec.frame, origin: `${file}:${rec.line}` };
        else event = rec;
      }
      if (firstTs === undefined && t !== undefined) {
        firstTs = t;
        wallStart = performance.now();
        if (options.rebaseToNow) ingestor.timeShiftMs = Math.round(Date.now() - t);
      }
      if (factor > 0 && t !== undefined && firstTs !== undefined) {
        const wait = wallStart + (t - firstTs) / factor - performance.now();
        if (wait > 1) {
          await ingestor.flush();
          await sleep(wait, undefined, { signal: options.signal }).catch(() => undefined);
        }
      }
      if (frame !== undefined) {
        warmup?.register(frame.source);
        const sent = ingestor.push(frame); // a promise only when the buffer went out
        if (sent !== undefined) await sent;
      } else if (event !== undefined) {
        const parsed = eventSchema.safeParse(event.event);
        if (!parsed.success) {
          const reason = `invalid canonical event: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`;
          ingestor.reject({ recvTs: Date.now(), source: 'events', data: JSON.stringify(event.event), origin: `${file}:${event.line}` }, reason);
          continue;
        }
        const sent = ingestor.pushEvent(parsed.data);
        if (sent !== undefined) await sent;
      }
      progress?.tick(ingestor.counters, totalBytes > 0 ? bytesRead / totalBytes : undefined);
    }
    // Done with this batch: empty it (the arrays are ours to change, see readFrameBatches), since the
    // generators that made it keep it in their saved registers while the next chunk is read and parsed;
    // the GC would otherwise copy two or three chunks' frames (~8k each) in every young collection.
    (batch as ReplayItem[]).length = 0;
  }
  await pipeline.drain();
  progress?.done();

  const c = ingestor.counters;
  const totalEvents = Object.values(c.events).reduce((a, b) => a + b, 0);
  const findings = { ...pipeline.detectors.counters.findings };
  const durationMs = performance.now() - started;
  return {
    runId: pipeline.runId,
    inputs: options.files,
    status: aborted ? 'aborted' : 'completed',
    frames: c.frames,
    events: { ...c.events },
    totalEvents,
    ignored: { ...c.ignored },
    unsupported: { ...c.unsupported },
    malformed: { count: c.malformed, first: ingestor.rejectSamples.map(toMalformedLine) },
    deadLetters: pipeline.deadLetters,
    books: withMatchRates(ingestor.bookReports()),
    findings,
    totalFindings: Object.values(findings).reduce((a, b) => a + b, 0),
    ...rulesInfo(pipeline.detectors.detectors?.() ?? []),
    ...(options.from !== undefined || options.to !== undefined ? { timeRange: { ...range, ...counts } } : {}),
    durationMs: Math.round(durationMs),
    eventsPerSec: Math.round(totalEvents / Math.max(durationMs / 1000, 1e-3)),
  };
}

function rulesInfo(rules: ReadonlyArray<{ ruleId: string; settings?: { rulesVersion: string }; counters?: { late: number } }>): Pick<ReplaySummary, 'rulesVersion' | 'lateEvents'> {
  const version = rules.find((r) => r.settings)?.settings?.rulesVersion;
  const late: Record<string, number> = {};
  for (const r of rules) if (r.counters && r.counters.late > 0) late[r.ruleId] = r.counters.late;
  return { ...(version ? { rulesVersion: version } : {}), ...(Object.keys(late).length > 0 ? { lateEvents: late } : {}) };
}

function toMalformedLine(s: { origin: string; reason: string }): MalformedLine {
  const i = s.origin.lastIndexOf(':');
  const line = Number(s.origin.slice(i + 1));
  return i > 0 && Number.isInteger(line) ? { file: s.origin.slice(0, i), line, reason: s.reason } : { file: s.origin, line: 0, reason: s.reason };
}

function withMatchRates(reports: Record<string, Record<string, BookReport>>): ReplaySummary['books'] {
  const out: ReplaySummary['books'] = {};
  for (const [source, bySymbol] of Object.entries(reports)) {
    out[source] = {};
    for (const [symbol, r] of Object.entries(bySymbol)) {
      out[source]![symbol] = r.compared ? { ...r, matchRate: Math.round((1e6 * (r.matched ?? 0)) / r.compared) / 1e6 } : { ...r };
    }
  }
  return out;
}
