/**
 * Ground-truth labels for replays and backtests: intervals of event time in which something should have
 * been found, and how the findings of a run score against them (precision, recall, F1, detection delay).
 *
 * Labels file: JSON lines, one label a line (blank lines skipped):
 *   {"start": 1723165000000, "end": "2024-08-09T00:57:00Z", "key": "binance:BTC-USDT", "detector": "price_jump"}
 * `start`/`end`: epoch ms or ISO-8601 with a zone; `key`: a finding key (`venue:symbol`, an account…) or
 * a bare symbol or account; `detector` (optional): the detector expected to find it; `id`, `note`
 * (optional): free text. Anything else on a line is an error naming the file, the line and the field.
 *
 * Matching (docs/backtest.md): a finding matches a label when
 *   1. the label's key equals the finding's `key`, its `symbol` or its `account`;
 *   2. the label names no detector, or names the finding's detector;
 *   3. the finding's event time `ts` is in [start, end + grace].
 * A finding is a true positive when it matches at least one label, else a false positive; a label is
 * detected when at least one finding matches it, else it is a false negative. Per detector D, the labels
 * that count are those naming D and those naming none. Detection delay of a detected label: the first
 * matching finding's ts − the label's start.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { Finding } from '../core/events.ts';
import { ERR, VigilError } from '../core/errors.ts';
import { detectorNames } from '../detectors/registry.ts';
import type { LabelCounts, LabelScoreRecord } from '../storage/types.ts';
import { TOPICS, type Subscription, type Transport } from '../transport/types.ts';

export interface GroundTruthLabel {
  /** Line in the labels file (1-based). */
  line: number;
  start: number;
  end: number;
  key: string;
  detector?: string;
  id?: string;
}

export interface LabelSet {
  file: string;
  /** SHA-256 (hex) of the file's bytes: which labels a score was computed against. */
  hash: string;
  labels: GroundTruthLabel[];
}

/** Detection delay over the detected labels, in ms of event time. */
export interface DelayStats {
  mean: number;
  /** Nearest-rank median: the ⌈n/2⌉-th smallest delay. */
  p50: number;
  max: number;
}

export interface LabelScore extends LabelCounts {
  /** Null when no label was detected. */
  delayMs: DelayStats | null;
}

/** What `--labels` adds to a replay's summary (`labels` in --json). */
export interface LabelReport {
  file: string;
  hash: string;
  graceMs: number;
  /** Labels in the file (or, scoped to some detectors, those that count for them). */
  count: number;
  overall: LabelScore;
  byDetector: Record<string, LabelScore>;
}

const epochOrIso = z.union([
  z.number().finite().nonnegative(),
  z.iso.datetime({ offset: true }).transform((s) => Date.parse(s)),
]);

const labelLine = z.strictObject({
  start: epochOrIso,
  end: epochOrIso,
  key: z.string().min(1),
  detector: z.string().min(1).optional(),
  id: z.string().optional(),
  note: z.string().optional(),
});

function labelsError(file: string, line: number, reason: string): VigilError {
  return new VigilError(ERR.INPUT_FORMAT, `labels ${file}:${line}: ${reason}`, 400, { file, line });
}

/** Parses labels text (JSON lines); `file` names it in errors. */
export function parseLabels(text: string, file: string): GroundTruthLabel[] {
  const known = new Set(detectorNames());
  const labels: GroundTruthLabel[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = (lines[i] as string).trim();
    if (raw === '') continue;
    const line = i + 1;
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch (e) {
      throw labelsError(file, line, `not JSON: ${(e as Error).message}`);
    }
    const parsed = labelLine.safeParse(json);
    if (!parsed.success) {
      const reason = parsed.error.issues
        .map((is) => {
          const keys = is.code === 'unrecognized_keys' ? ` (${is.keys.join(', ')})` : '';
          const where = is.path.length > 0 ? `${is.path.join('.')}: ` : '';
          const what = is.path[0] === 'start' || is.path[0] === 'end' ? 'expected epoch ms or an ISO-8601 time with a zone' : is.message;
          return `${where}${what}${keys}`;
        })
        .join('; ');
      throw labelsError(file, line, reason);
    }
    const l = parsed.data;
    if (l.end < l.start) throw labelsError(file, line, `end (${new Date(l.end).toISOString()}) is before start (${new Date(l.start).toISOString()})`);
    if (l.detector !== undefined && !known.has(l.detector)) throw labelsError(file, line, `detector: unknown detector "${l.detector}" (known: ${[...known].join(', ')})`);
    labels.push({ line, start: l.start, end: l.end, key: l.key, ...(l.detector !== undefined ? { detector: l.detector } : {}), ...(l.id !== undefined ? { id: l.id } : {}) });
  }
  if (labels.length === 0) throw new VigilError(ERR.INPUT_FORMAT, `labels ${file}: no labels (expected JSON lines of {start, end, key, detector?})`, 400, { file });
  return labels;
}

/** Reads and validates a labels file. */
export function loadLabels(file: string): LabelSet {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new VigilError(ERR.INPUT_FORMAT, `labels ${file}: cannot read: ${(e as Error).message}`, 400, { file });
  }
  return { file, hash: createHash('sha256').update(bytes).digest('hex'), labels: parseLabels(bytes.toString('utf8'), file) };
}

/** `500`, `500ms`, `30s`, `5m` → ms (the label grace). */
export function parseDurationMs(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new VigilError(ERR.BAD_REQUEST, `${flag}: expected a duration like 500, 500ms, 30s or 5m, got ${JSON.stringify(text)}`, 400);
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[(m[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

/** The finding fields scoring reads (a Finding has them all). */
export type ScoredFinding = Pick<Finding, 'detector' | 'key' | 'ts'> & { symbol?: string; account?: string };

interface Tally {
  findings: number;
  tp: number;
  /** Label index → first matching finding ts. */
  first: Map<number, number>;
}

/**
 * Scores findings against labels as they come (add), in any order. Memory: one counter set per
 * detector and one entry per (detected label, detector).
 */
export class LabelScorer {
  /** Labels by key, each list sorted by start. */
  private readonly byKey = new Map<string, Array<{ index: number; label: GroundTruthLabel }>>();
  private readonly labels: GroundTruthLabel[];
  private readonly scope: ReadonlySet<string> | undefined;
  private readonly tallies = new Map<string, Tally>();
  private readonly overall: Tally = { findings: 0, tp: 0, first: new Map() };

  /**
   * `detectors`: score only these (a backtest's varied detectors): findings of others are ignored, the
   * labels that count are those naming one of them or none, and each gets a row even without findings.
   */
  constructor(
    private readonly set: LabelSet,
    readonly graceMs = 0,
    detectors?: readonly string[],
  ) {
    if (!(graceMs >= 0) || !Number.isFinite(graceMs)) throw new RangeError(`label grace must be a non-negative number of ms, got ${graceMs}`);
    this.scope = detectors ? new Set(detectors) : undefined;
    this.labels = this.scope ? set.labels.filter((l) => l.detector === undefined || this.scope!.has(l.detector)) : set.labels;
    this.labels.forEach((label, index) => {
      let list = this.byKey.get(label.key);
      if (!list) this.byKey.set(label.key, (list = []));
      list.push({ index, label });
    });
    for (const list of this.byKey.values()) list.sort((a, b) => a.label.start - b.label.start);
    for (const d of detectors ?? []) this.tally(d);
  }

  private tally(detector: string): Tally {
    let t = this.tallies.get(detector);
    if (!t) this.tallies.set(detector, (t = { findings: 0, tp: 0, first: new Map() }));
    return t;
  }

  add(f: ScoredFinding): void {
    if (this.scope && !this.scope.has(f.detector)) return;
    const t = this.tally(f.detector);
    t.findings++;
    this.overall.findings++;
    let matched = false;
    const ts = f.ts;
    const grace = this.graceMs;
    // The finding's key, symbol and account, each once.
    const keys = [f.key];
    if (f.symbol !== undefined && f.symbol !== f.key) keys.push(f.symbol);
    if (f.account !== undefined && !keys.includes(f.account)) keys.push(f.account);
    for (const key of keys) {
      const list = this.byKey.get(key);
      if (list === undefined) continue;
      for (const { index, label } of list) {
        if (label.start > ts) break; // sorted by start: no later label can contain ts
        if (ts > label.end + grace) continue;
        if (label.detector !== undefined && label.detector !== f.detector) continue;
        matched = true;
        const prev = t.first.get(index);
        if (prev === undefined || ts < prev) t.first.set(index, ts);
        const prevAll = this.overall.first.get(index);
        if (prevAll === undefined || ts < prevAll) this.overall.first.set(index, ts);
      }
    }
    if (matched) {
      t.tp++;
      this.overall.tp++;
    }
  }

  /** The scores so far. */
  report(): LabelReport {
    const named = new Set(this.labels.flatMap((l) => (l.detector !== undefined ? [l.detector] : [])));
    const detectors = [...new Set([...this.tallies.keys(), ...named])].sort();
    const byDetector: Record<string, LabelScore> = {};
    for (const d of detectors) {
      const counted = this.labels.filter((l) => l.detector === undefined || l.detector === d).length;
      byDetector[d] = this.score(d, this.tallies.get(d) ?? { findings: 0, tp: 0, first: new Map() }, counted);
    }
    return {
      file: this.set.file,
      hash: this.set.hash,
      graceMs: this.graceMs,
      count: this.labels.length,
      overall: this.score('*', this.overall, this.labels.length),
      byDetector,
    };
  }

  private score(detector: string, t: Tally, labels: number): LabelScore {
    const delays = [...t.first].map(([index, ts]) => ts - (this.labels[index] as GroundTruthLabel).start).sort((a, b) => a - b);
    const detected = delays.length;
    const precision = t.findings > 0 ? t.tp / t.findings : null;
    const recall = labels > 0 ? detected / labels : null;
    const f1 = precision === null || recall === null ? null : precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    return {
      detector,
      findings: t.findings,
      tp: t.tp,
      fp: t.findings - t.tp,
      labels,
      detected,
      fn: labels - detected,
      precision: round6(precision),
      recall: round6(recall),
      f1: round6(f1),
      delayMs:
        detected === 0
          ? null
          : {
              mean: Math.round((delays.reduce((a, b) => a + b, 0) / detected) * 1000) / 1000,
              p50: delays[Math.ceil(detected / 2) - 1] as number,
              max: delays[detected - 1] as number,
            },
    };
  }
}

function round6(x: number | null): number | null {
  return x === null ? null : Math.round(x * 1e6) / 1e6;
}

/**
 * Feeds a run's findings off the transport's findings topic into a scorer, as they are produced. Subscribe
 * before the first event is sent (a new group starts at the end on Kafka); the in-process transport's
 * drain() then also waits for this subscription.
 */
export async function scoreFindingsOn(transport: Transport, runId: string, scorer: LabelScorer): Promise<Subscription> {
  const seen = new Set<string>();
  return transport.subscribe<Finding>({
    group: `vigil-labels-${runId}`,
    topics: [TOPICS.findings],
    eachBatch: (b) => {
      for (const m of b.messages) {
        const f = m.value;
        // Re-deliveries carry the same id: counted once.
        if (f.runId !== runId || seen.has(f.id)) continue;
        seen.add(f.id);
        scorer.add(f);
      }
    },
  });
}

const pct = (x: number | null) => (x === null ? '—' : `${(x * 100).toFixed(1)}%`);
const secs = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;

/** The labels part of the human replay summary. */
export function formatLabelReport(r: LabelReport): string {
  const lines = [`  labels     ${r.count} from ${r.file}${r.graceMs ? ` (grace ${secs(r.graceMs)})` : ''}, sha256 ${r.hash.slice(0, 12)}`];
  const row = (s: LabelScore) => {
    const delay = s.delayMs ? `, delay mean ${secs(s.delayMs.mean)} p50 ${secs(s.delayMs.p50)} max ${secs(s.delayMs.max)}` : '';
    const name = s.detector === '*' ? 'all' : s.detector;
    return `    ${name.padEnd(22)} precision ${pct(s.precision)} (${s.tp}/${s.findings}) · recall ${pct(s.recall)} (${s.detected}/${s.labels}) · F1 ${pct(s.f1)}${delay}`;
  };
  for (const s of Object.values(r.byDetector)) lines.push(row(s));
  lines.push(row(r.overall));
  return `${lines.join('\n')}\n`;
}

/** One row of ClickHouse `label_scores` per detector and one (`*`) for all. */
export function labelScoreRows(runId: string, r: LabelReport, scoredAt = Date.now()): LabelScoreRecord[] {
  return [...Object.values(r.byDetector), r.overall].map((s) => ({
    runId,
    detector: s.detector,
    findings: s.findings,
    tp: s.tp,
    fp: s.fp,
    labels: s.labels,
    detected: s.detected,
    fn: s.fn,
    precision: s.precision,
    recall: s.recall,
    f1: s.f1,
    delayMeanMs: s.delayMs?.mean ?? null,
    delayP50Ms: s.delayMs?.p50 ?? null,
    delayMaxMs: s.delayMs?.max ?? null,
    graceMs: r.graceMs,
    labelsFile: r.file,
    labelsHash: r.hash,
    scoredAt,
  }));
}
