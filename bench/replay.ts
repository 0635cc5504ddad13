/**
 * The replay path in stages, on the shared Binance spot capture (hftbacktest, ~41k frames), against the
 * ceiling of plain JSON.parse on the very same frame texts. The capture is decompressed once into memory
 * (and into a plain temporary file for the full replay, which reads files); every stage then works on the
 * same bytes:
 *
 *  a. JSON.parse ceiling: JSON.parse of each frame's text (what the normalizer parses), nothing else;
 *  b. parse + normalize: the Binance normalizer with the REST depth snapshot withheld, so depth diffs are
 *     parsed, checked and buffered but no book is built;
 *  c. + book: every frame, so the book syncs on the snapshot and every diff is applied (and the rebuilt
 *     top compared with bookTicker);
 *  d. + detectors: (c)'s events into every default rule directly (one state per rule and key, keyed as
 *     the runner keys them), no transport;
 *  e. full embedded replay: `replayFiles` over the plain file into a Pipeline (Ingestor → memory
 *     transport → DetectorRunner → store side) with an embedded ClickHouse (chdb): findings and dead
 *     letters written, then the run record upserted, as `vigil replay` does. Timed from the run record
 *     marked running to the run record stored; the store is opened once, before (as a long-running
 *     process holds it), and the rules are built before (as for d).
 *
 * Each figure is the best of PASSES passes (fresh normalizer, states and pipeline per pass), the pass
 * least disturbed by GC and the other core. Also here: ClickHouse insert rows/s (findings rows in batches
 * into chdb).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { gunzipSync } from 'node:zlib';
import { median } from 'simple-statistics';
import { loadConfig } from '../src/core/config.ts';
import { eventKey, eventViews, type CanonicalEvent, type EventKind, type Finding } from '../src/core/events.ts';
import { buildDetectors } from '../src/detectors/configure.ts';
import type { DetectorInstance, FindingDraft } from '../src/detectors/types.ts';
import { getAdapter } from '../src/feeds/registry.ts';
import { MalformedFrameError, type RawFrame } from '../src/feeds/types.ts';
import { Pipeline } from '../src/pipeline/pipeline.ts';
import { readRecords } from '../src/replay/formats.ts';
import { replayFiles, type ReplaySummary } from '../src/replay/replay.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import type { Store } from '../src/storage/types.ts';
import { FEED_CAPTURES } from './feeds.ts';
import { fmtInt, fmtPct, type BenchSection } from './table.ts';

const CAPTURE = FEED_CAPTURES.binance![0]!;
/**
 * Rounds of every stage (VIGIL_BENCH_REPLAY_PASSES), about 1.2 s each. The full replay varies most from pass
 * to pass (chdb's merges and background threads, and the GC's, land in whichever pass is running; its
 * median pass costs ~1.5x its best on this VM): its best of 7 moved by ~10% between bench runs, its best of
 * 11 still by up to ~8% while the VM was busy; 15 rounds.
 */
const PASSES = Number(process.env.VIGIL_BENCH_REPLAY_PASSES ?? 15);
/** The project's target for the full embedded replay, as a share of the JSON.parse ceiling. */
export const REPLAY_TARGET_RATIO = 0.5;
/** Files the file-creation probe creates (see probeFileCreation). */
const PROBE_FILES = 200;
/**
 * Above this CPU per new file the bench warns: ~20 µs on tmpfs, ~40 µs on this VM's ext4 when quiet,
 * ~250 µs minutes after a test run deleted thousands of files.
 */
export const SLOW_FILE_CREATE_US = 100;
/** ClickHouse insert measure: rows, in batches of the store side's default size. */
const INSERT_ROWS = 20_000;
const INSERT_BATCH = 1_000;

export interface ReplayStage {
  id: 'json_parse' | 'normalize' | 'book' | 'detectors' | 'full_replay' | 'full_replay_no_context';
  stage: string;
  frames: number;
  events: number;
  findings: number | null;
  /** Best pass: process CPU time (what the rates are computed from) and, separately, the best wall time. */
  cpuMs: number;
  wallMs: number;
  /** The median pass's CPU time: how far a typical pass is from the best one. */
  medianCpuMs: number;
  /** Frames per second of CPU time: the rate on one core, whatever else the machine is running. */
  framesPerSec: number;
  /** framesPerSec as a share of the JSON.parse ceiling (stage a). */
  ratio: number;
}

export interface ReplayBench {
  capture: string;
  bytes: number;
  frames: number;
  passes: number;
  stages: ReplayStage[];
  /** The full embedded replay's events per second (its own summary's count). */
  fullReplayEventsPerSec: number;
  /** Rule deliveries (events × rules that take them) per second of the time stage d adds to stage c. */
  detectorEventsPerSec: number;
  detectorDeliveries: number;
  clickhouseInsert: { rows: number; batch: number; ms: number; rowsPerSec: number };
  target: { ratio: number; met: boolean };
  /** CPU µs per new file in the bench's temporary directory, measured before the stages (probeFileCreation). */
  fileCreateUs: number;
  summary: Pick<ReplaySummary, 'frames' | 'totalEvents' | 'findings' | 'totalFindings' | 'deadLetters' | 'books'>;
}

interface Timing {
  cpuMs: number;
  wallMs: number;
  medianCpuMs: number;
}

/** One stage: untimed setup, then the timed run. */
interface Stage<S> {
  setup(): S | Promise<S>;
  run(s: S): void | Promise<void>;
}

/**
 * Lowest process CPU time (user + system) and lowest wall time of each stage over `rounds` rounds, the
 * stages interleaved within a round (a, b, c, …, a, b, c, …): whatever else the machine does meanwhile
 * (the other hyperthread busy, CPU frequency) then weighs on every stage alike, which keeps their ratios
 * steadier than timing each stage's passes back to back.
 */
async function interleaved(rounds: number, stages: ReadonlyArray<Stage<unknown>>): Promise<Timing[]> {
  const out = stages.map(() => ({ cpuMs: Infinity, wallMs: Infinity, medianCpuMs: NaN }));
  const cpu: number[][] = stages.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < stages.length; i++) {
      const stage = stages[i]!;
      const s = await stage.setup();
      const c = process.cpuUsage();
      const t = performance.now();
      await stage.run(s);
      const wallMs = performance.now() - t;
      const used = process.cpuUsage(c);
      const best = out[i]!;
      best.cpuMs = Math.min(best.cpuMs, (used.user + used.system) / 1000);
      best.wallMs = Math.min(best.wallMs, wallMs);
      cpu[i]!.push((used.user + used.system) / 1000);
    }
  }
  out.forEach((t, i) => (t.medianCpuMs = median(cpu[i]!)));
  return out;
}

async function loadFrames(path: string): Promise<RawFrame[]> {
  const frames: RawFrame[] = [];
  for await (const r of readRecords(path)) {
    if (r.type === 'frame') frames.push(r.frame);
    else if (r.type === 'malformed') throw new Error(`${path}:${r.line}: ${r.reason}`);
  }
  return frames;
}

function normalizeAll(frames: readonly RawFrame[], onEvents?: (out: CanonicalEvent[]) => void): number {
  const n = getAdapter('binance').createNormalizer();
  const out: CanonicalEvent[] = [];
  let events = 0;
  for (const f of frames) {
    out.length = 0;
    try {
      n.normalize(f, out);
    } catch (e) {
      if (!(e instanceof MalformedFrameError)) throw e;
    }
    events += out.length;
    if (onEvents !== undefined && out.length > 0) onEvents(out);
  }
  return events;
}

/** Status markers reach rules as copies on the trade and quote topics (ingest.ts), once per topic the rule reads. */
const STATUS_COPY_KINDS: readonly EventKind[] = ['trade', 'quote'];

/**
 * Rules fed directly, keyed as DetectorRunner keys them (view copy, keyOf, or the event's key), one state
 * per rule and key, fresh per pass.
 */
class DirectRules {
  private readonly byKind = new Map<EventKind, Array<{ det: DetectorInstance; states: Map<string, unknown> }>>();
  readonly drafts: FindingDraft[] = [];
  findings = 0;
  deliveries = 0;

  constructor(detectors: readonly DetectorInstance[]) {
    for (const det of detectors) {
      const slot = { det, states: new Map<string, unknown>() };
      for (const kind of det.kinds) {
        const copies = kind === 'status' ? det.kinds.filter((k) => STATUS_COPY_KINDS.includes(k)).length : 1;
        let list = this.byKind.get(kind);
        if (!list) this.byKind.set(kind, (list = []));
        for (let i = 0; i < copies; i++) list.push(slot);
      }
    }
  }

  onEvent(ev: CanonicalEvent): void {
    const slots = this.byKind.get(ev.kind);
    if (slots === undefined) return;
    // The default key and the view copies once per event, as the runner gets them (the transport's key).
    let base: string | undefined;
    let views: ReturnType<typeof eventViews> | null = null;
    for (const { det, states } of slots) {
      let key: string | undefined;
      if (det.view !== undefined) key = (views ??= eventViews(ev))?.find((v) => v.view === det.view)?.key;
      else key = det.keyOf ? det.keyOf(ev) : (base ??= eventKey(ev));
      if (key === undefined) continue;
      let s = states.get(key);
      if (s === undefined) states.set(key, (s = det.newState(key)));
      det.onEvent(s, ev, this.drafts);
      this.deliveries++;
      if (this.drafts.length > 0) {
        this.findings += this.drafts.length;
        this.drafts.length = 0;
      }
    }
  }
}

/**
 * CPU per new file in `dir`, in µs. Every insert makes chdb write a new part of ~14 files (a full replay
 * makes ~5 parts), so (e)'s CPU depends on what creating a file costs on this filesystem right now. On
 * an ext4 without a journal (this VM's), a new inode is picked past every inode deleted in the last
 * minutes: after a test run removed thousands of files, creating one cost ~250 µs instead of ~40, which
 * added up to ~20 ms to (e). The probe's files stay until the bench's directory is removed (deleting
 * them now would make the stages' file creations dearer).
 */
function probeFileCreation(dir: string): number {
  const probe = join(dir, 'fs-probe');
  mkdirSync(probe);
  const c = process.cpuUsage();
  for (let i = 0; i < PROBE_FILES; i++) writeFileSync(join(probe, String(i)), 'x');
  const used = process.cpuUsage(c);
  return (used.user + used.system) / PROBE_FILES;
}

/** A findings row of the replay's, re-keyed `n` times (distinct ids, spread in time). */
function syntheticFindings(template: Finding, runId: string, n: number): Finding[] {
  const rows: Finding[] = [];
  for (let i = 0; i < n; i++) {
    const id = createHash('md5').update(`${template.id}:${i}`).digest('hex');
    rows.push({ ...template, id, runId, ts: template.ts + i, windowStart: template.windowStart + i, windowEnd: template.windowEnd + i });
  }
  return rows;
}

export async function benchReplay(): Promise<ReplayBench> {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-replay-'));
  let store: Store | undefined;
  try {
    const fileCreateUs = probeFileCreation(dir);
    const bytes = gunzipSync(readFileSync(CAPTURE));
    const plain = join(dir, 'spot_btcusdt_20240808.txt');
    writeFileSync(plain, bytes);
    const frames = await loadFrames(plain);
    const noSnapshot = frames.filter((f) => !f.data.includes('"lastUpdateId"'));
    if (noSnapshot.length !== frames.length - 1) throw new Error(`expected one depth snapshot in ${CAPTURE}, found ${frames.length - noSnapshot.length}`);
    const detectors = () => buildDetectors(loadConfig({}));

    store = await openStore({ dataDir: join(dir, 'data') });
    const insert = store.insertFindings.bind(store);
    let lastFindings: Finding[] = [];
    store.insertFindings = async (rows) => {
      lastFindings = lastFindings.concat(rows);
      await insert(rows);
    };
    const st = store;
    let sink = 0;
    let normEvents = 0;
    let bookEvents = 0;
    let direct: DirectRules | undefined;
    let summary: ReplaySummary | undefined;
    let pass = 0;
    const none = () => undefined;
    /** e: a run as `vigil replay` makes it: run record, pipeline, replay, close, run record. */
    const fullReplay = (storeContext: boolean): Stage<{ runId: string; rules: DetectorInstance[] }> => ({
      // The rules file is read and built before the clock starts, as for (d) and as the store is opened:
      // a fixed cost per run (~5-9 ms, mostly YAML parsing), not part of getting frames through.
      setup: () => {
        lastFindings = [];
        return { runId: `bench-replay-${++pass}`, rules: detectors() };
      },
      run: async ({ runId, rules }) => {
        const startedAt = Date.now();
        await st.upsertRun({ runId, status: 'running', inputs: [plain], startedAt, summary: {} });
        const pipeline = await new Pipeline({ runId, detectors: rules, store: st, ephemeralState: true, storeContext }).start();
        try {
          summary = await replayFiles(pipeline, { files: [plain], speed: { mode: 'max' } });
        } finally {
          await pipeline.close();
        }
        await st.upsertRun({ runId, status: 'completed', inputs: [plain], startedAt, finishedAt: Date.now(), summary: { ...summary } });
        if (summary.frames !== frames.length) throw new Error(`replay read ${summary.frames} frames, expected ${frames.length}`);
      },
    });
    const [parseMs, normMs, bookMs, detectMs, replayMs, noContextMs] = await interleaved(PASSES, [
      // a. The ceiling.
      { setup: none, run: () => void frames.forEach((f) => (sink += JSON.parse(f.data) === null ? 0 : 1)) },
      // b. Parse + normalize (no book).
      { setup: none, run: () => void (normEvents = normalizeAll(noSnapshot)) },
      // c. + book.
      { setup: none, run: () => void (bookEvents = normalizeAll(frames)) },
      // d. + detectors, called directly.
      {
        setup: () => new DirectRules(detectors()),
        run: (rules: DirectRules) => {
          direct = rules;
          normalizeAll(frames, (out) => {
            for (const ev of out) rules.onEvent(ev);
          });
        },
      },
      // e. The full embedded replay into chdb, and as `vigil replay --no-context` (no market context stored for findings).
      fullReplay(true),
      fullReplay(false),
    ]);
    if (sink < 0) console.log(sink);
    if (!summary) throw new Error('no replay ran');
    if (!parseMs || !normMs || !bookMs || !detectMs || !replayMs || !noContextMs) throw new Error('a stage was not timed');

    // ClickHouse inserts: a finding of the replay's, as many rows as a busy day's findings in a few batches.
    const template = lastFindings[0];
    let insertMs = NaN;
    if (template) {
      const rows = syntheticFindings(template, 'bench-insert', INSERT_ROWS);
      // By the clock: what a writer gets (chdb inserts on threads of its own).
      const t = performance.now();
      for (let i = 0; i < rows.length; i += INSERT_BATCH) await insert(rows.slice(i, i + INSERT_BATCH));
      insertMs = performance.now() - t;
    }

    const ceiling = frames.length / (parseMs.cpuMs / 1000);
    const r1 = (x: number) => Math.round(x * 10) / 10;
    const stage = (id: ReplayStage['id'], name: string, t: Timing, stageFrames: number, events: number, findings: number | null): ReplayStage => {
      const framesPerSec = stageFrames / (t.cpuMs / 1000);
      return { id, stage: name, frames: stageFrames, events, findings, cpuMs: r1(t.cpuMs), wallMs: r1(t.wallMs), medianCpuMs: r1(t.medianCpuMs), framesPerSec: Math.round(framesPerSec), ratio: Math.round((framesPerSec / ceiling) * 1000) / 1000 };
    };
    const stages = [
      stage('json_parse', 'a. JSON.parse of each frame (ceiling)', parseMs, frames.length, 0, null),
      stage('normalize', 'b. parse + normalize (no book: snapshot withheld)', normMs, noSnapshot.length, normEvents, null),
      stage('book', 'c. + book (Binance depth sync, book building)', bookMs, frames.length, bookEvents, null),
      stage('detectors', 'd. + detectors (all default rules, direct calls)', detectMs, frames.length, bookEvents, direct?.findings ?? 0),
      stage('full_replay', 'e. full embedded replay (replayFiles → Pipeline → chdb)', replayMs, frames.length, summary.totalEvents, summary.totalFindings),
      stage('full_replay_no_context', "   e without storing findings' market context (--no-context)", noContextMs, frames.length, summary.totalEvents, summary.totalFindings),
    ];
    const full = stages[4]!;
    return {
      capture: CAPTURE,
      bytes: bytes.length,
      frames: frames.length,
      passes: PASSES,
      stages,
      fullReplayEventsPerSec: Math.round(summary.totalEvents / (replayMs.cpuMs / 1000)),
      detectorEventsPerSec: Math.round((direct?.deliveries ?? 0) / ((detectMs.cpuMs - bookMs.cpuMs) / 1000)),
      detectorDeliveries: direct?.deliveries ?? 0,
      clickhouseInsert: { rows: INSERT_ROWS, batch: INSERT_BATCH, ms: Math.round(insertMs), rowsPerSec: Math.round(INSERT_ROWS / (insertMs / 1000)) },
      target: { ratio: REPLAY_TARGET_RATIO, met: full.ratio >= REPLAY_TARGET_RATIO },
      fileCreateUs: Math.round(fileCreateUs),
      summary: {
        frames: summary.frames,
        totalEvents: summary.totalEvents,
        findings: Object.fromEntries(Object.entries(summary.findings).filter(([, v]) => v > 0)),
        totalFindings: summary.totalFindings,
        deadLetters: summary.deadLetters,
        books: summary.books,
      },
    };
  } finally {
    await store?.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function replaySection(): Promise<BenchSection> {
  const r = await benchReplay();
  const ch = r.clickhouseInsert;
  return {
    id: 'replay',
    title: `replay path in stages, on one core: ${r.frames.toLocaleString('en-US')} frames (${(r.bytes / 1e6).toFixed(1)} MB) of ${r.capture.split('/').pop()}; ratio = share of the JSON.parse ceiling`,
    header: ['stage', 'frames/s', 'ratio', 'CPU ms', 'median CPU ms', 'wall ms', 'events', 'findings'],
    rows: r.stages.map((s) => [s.stage, fmtInt(s.framesPerSec), fmtPct(s.ratio), s.cpuMs.toFixed(1), s.medianCpuMs.toFixed(1), s.wallMs.toFixed(1), s.events ? fmtInt(s.events) : '-', s.findings === null ? '-' : fmtInt(s.findings)]),
    notes: [
      `  frames/s per second of process CPU time (user + system, all threads: chdb's and GC's too), best of ${r.passes} rounds with the stages interleaved; median CPU ms: the typical round (chdb's merges and GC land in some rounds); wall ms: best by the clock.`,
      `  (e) runs from the run record marked running to the run record stored (store opened and rules built before), reading the decompressed capture from a file.`,
      `  detectors: ${fmtInt(r.detectorDeliveries)} rule deliveries per pass, ${fmtInt(r.detectorEventsPerSec)}/s (the time (d) adds to (c)); full replay ${fmtInt(r.fullReplayEventsPerSec)} events/s.`,
      `  ClickHouse (chdb) insert: ${fmtInt(ch.rows)} findings rows in batches of ${fmtInt(ch.batch)}: ${fmtInt(ch.rowsPerSec)} rows/s.`,
      `  target: full replay >= ${fmtPct(r.target.ratio)} of the JSON.parse ceiling: ${r.target.met ? 'met' : 'NOT met'}.`,
      `  file creation before the stages: ${fmtInt(r.fileCreateUs)} µs CPU per new file (chdb writes ~14 files per part, ~5 parts per full replay).`,
      ...(r.fileCreateUs > SLOW_FILE_CREATE_US
        ? [`  WARNING: creating a file is slow right now (over ${SLOW_FILE_CREATE_US} µs; files deleted in the last minutes, e.g. by a test run, on a filesystem without a journal): (e) pays it in every insert; rerun on a quiet machine.`]
        : []),
    ],
    json: r,
  };
}
