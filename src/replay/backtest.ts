/**
 * Backtests: one input, many settings of a rule's parameters (docs/backtest.md).
 *
 * 1. Parse once. The files go through the replay's own reader and Ingestor (src/replay/replay.ts,
 *    src/pipeline/ingest.ts) into a capturing transport instead of the bus: the very messages the
 *    detectors would get (book-derived quotes, status copies and view copies included), in the order
 *    they would be sent, kept only for the topics the varied rules read.
 * 2. Per setting, only the varied rules run, with fresh state, through the DetectorRunner itself
 *    (src/pipeline/detect.ts) over a direct transport: no queues, no store, no ClickHouse. So a
 *    setting's findings are those a `vigil replay` of the same input gives under a rules file with the
 *    setting's parameters (test/backtest.test.ts compares them).
 * 3. Settings are shared out between this thread and worker threads (src/replay/backtest-worker.ts),
 *    each taking the next setting when it is free. This thread runs the first settings, which measure a
 *    setting's cost; workers are started only when the rest would take this thread longer than
 *    `workerAfterMs` (a worker needs ~0.6 s to load the detectors through tsx — more than a whole small
 *    grid costs). The captured messages are serialized once (v8 structured clone) into a
 *    SharedArrayBuffer that every worker deserializes from; this thread keeps running settings while
 *    the workers start.
 */
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { serialize } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { z } from 'zod';
import type { CanonicalEvent } from '../core/events.ts';
import { ERR, VigilError } from '../core/errors.ts';
import { createDetector } from '../detectors/registry.ts';
import { parseRulesText, type RuleDef, type RulesFile } from '../detectors/rules.ts';
import type { Mapping } from '../feeds/mapping.ts';
import { detectorTopics } from '../pipeline/detect.ts';
import { Ingestor } from '../pipeline/ingest.ts';
import { TOPICS, type DeliveredMessage, type OutgoingMessage, type SubscribeOptions, type Subscription, type Transport, type TransportStats } from '../transport/types.ts';
import { noTransportStats, runSetting, settingInstances, type CapturedBatch, type FromWorker, type SettingJob, type SettingResult, type ToWorker } from './backtest-run.ts';
import type { LabelSet } from './labels.ts';
import type { ProgressReporter } from './progress.ts';
import { replayFiles, type ReplaySummary } from './replay.ts';

export { settingInstances, settingRulesFile, runDetectors, type CapturedBatch, type SettingResult } from './backtest-run.ts';

/** At most this many settings in one backtest. */
export const MAX_SETTINGS = 1_000;

// ---------------------------------------------------------------- grid file

const scalar = z.union([z.number().finite(), z.string(), z.boolean(), z.null()]);
const paramValues = z.union([
  z.array(z.unknown()).min(1, 'at least one value'),
  z.strictObject({ from: z.number().finite(), to: z.number().finite(), step: z.number().finite().positive() }),
  scalar,
]);
const varyEntry = z.strictObject({
  /** A rule id of the rules file, or a detector name (every rule of that detector). */
  rule: z.string().min(1),
  params: z.record(z.string(), paramValues).refine((p) => Object.keys(p).length > 0, 'at least one parameter'),
});
const gridSchema = z.union([
  varyEntry.extend({ description: z.string().optional() }),
  z.strictObject({ description: z.string().optional(), vary: z.array(varyEntry).min(1) }),
]);
export type GridInput = z.input<typeof gridSchema>;

/** One axis of the grid: a parameter of one or more rules (a detector name varies all its rules together). */
export interface GridAxis {
  /** As given in the grid file (rule id or detector name). */
  rule: string;
  /** The rule ids it resolved to. */
  ruleIds: string[];
  param: string;
  values: unknown[];
}

export interface Grid {
  description?: string;
  axes: GridAxis[];
  /** Rule ids varied (in rules-file order). */
  ruleIds: string[];
  /** Detector names of those rules. */
  detectors: string[];
}

/** One combination of the axes' values: for each axis (in order), the value. */
export interface Setting {
  index: number;
  values: unknown[];
  /** Rule id → params of the varied rules in this setting (the rules file's params with the grid's over them). */
  params: Record<string, Record<string, unknown>>;
  /** The setting equals the rules file as it is (every varied parameter at its current value). */
  current: boolean;
}

function gridError(origin: string, message: string): VigilError {
  return new VigilError(ERR.BAD_REQUEST, `grid ${origin}: ${message}`, 400, { origin });
}

function expandValues(v: z.output<typeof paramValues>, where: string, origin: string): unknown[] {
  if (Array.isArray(v)) return v;
  if (v !== null && typeof v === 'object') {
    const count = Math.floor((v.to - v.from) / v.step + 1e-9) + 1;
    if (!(v.to >= v.from)) throw gridError(origin, `${where}: "to" (${v.to}) is below "from" (${v.from})`);
    if (count > MAX_SETTINGS) throw gridError(origin, `${where}: the range has ${count} values, more than ${MAX_SETTINGS}`);
    // Rounded so that 0.1 steps give 0.3, not 0.30000000000000004.
    return Array.from({ length: count }, (_, i) => Math.round((v.from + i * v.step) * 1e9) / 1e9);
  }
  return [v];
}

/** The grid file's text (YAML or JSON) against the rules file: rules resolved, values expanded. */
export function parseGrid(text: string, origin: string, rules: RulesFile): Grid {
  let raw: unknown;
  try {
    raw = parseRulesText(text, origin);
  } catch (e) {
    throw gridError(origin, (e as Error).message.replace(/^rules [^:]*: /, ''));
  }
  const parsed = gridSchema.safeParse(raw);
  if (!parsed.success) {
    const text = parsed.error.issues
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}${i.code === 'unrecognized_keys' ? ` (${i.keys.join(', ')})` : ''}`)
      .join('; ');
    throw gridError(origin, `${text} (expected {rule, params: {name: [values…]}} or {vary: [{rule, params}, …]})`);
  }
  const entries = 'vary' in parsed.data ? parsed.data.vary : [{ rule: parsed.data.rule, params: parsed.data.params }];
  const axes: GridAxis[] = [];
  entries.forEach((entry, i) => {
    const where = 'vary' in parsed.data ? `vary.${i}` : '';
    const byId = rules.rules.filter((r) => r.id === entry.rule);
    const matched = byId.length > 0 ? byId : rules.rules.filter((r) => r.detector === entry.rule);
    if (matched.length === 0) {
      throw gridError(origin, `${where ? `${where}.` : ''}rule: "${entry.rule}" is neither a rule id nor a detector of the rules file (rules: ${rules.rules.map((r) => r.id).join(', ')})`);
    }
    for (const [param, v] of Object.entries(entry.params)) {
      const path = `${where ? `${where}.` : ''}params.${param}`;
      if (axes.some((a) => a.param === param && a.ruleIds.some((id) => matched.some((r) => r.id === id)))) throw gridError(origin, `${path}: varied twice`);
      axes.push({ rule: entry.rule, ruleIds: matched.map((r) => r.id), param, values: expandValues(v, path, origin) });
    }
  });
  const total = axes.reduce((n, a) => n * a.values.length, 1);
  if (total > MAX_SETTINGS) {
    throw gridError(origin, `${total.toLocaleString('en-US')} settings (${axes.map((a) => `${a.param}: ${a.values.length}`).join(' × ')}); at most ${MAX_SETTINGS} in one backtest — use fewer values`);
  }
  const ids = new Set(axes.flatMap((a) => a.ruleIds));
  const varied = rules.rules.filter((r) => ids.has(r.id));
  return {
    ...('description' in parsed.data && parsed.data.description !== undefined ? { description: parsed.data.description } : {}),
    axes,
    ruleIds: varied.map((r) => r.id),
    detectors: [...new Set(varied.map((r) => r.detector))],
  };
}

export function loadGrid(path: string, rules: RulesFile): Grid {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw gridError(path, `cannot read: ${(e as Error).message}`);
  }
  return parseGrid(text, path, rules);
}

/**
 * Every combination of the axes (the first axis varies slowest), each validated against its detector's
 * parameter schema: a bad value fails here naming the setting, before any input is read.
 */
export function expandGrid(grid: Grid, rules: RulesFile): Setting[] {
  const byId = new Map(rules.rules.map((r) => [r.id, r]));
  const settings: Setting[] = [];
  const values: unknown[] = [];
  const walk = (axis: number): void => {
    if (axis === grid.axes.length) {
      const params: Record<string, Record<string, unknown>> = {};
      let current = true;
      for (const id of grid.ruleIds) params[id] = { ...(byId.get(id) as RuleDef).params };
      grid.axes.forEach((a, i) => {
        for (const id of a.ruleIds) {
          const p = params[id] as Record<string, unknown>;
          if (JSON.stringify(p[a.param]) !== JSON.stringify(values[i])) current = false;
          p[a.param] = values[i];
        }
      });
      const setting: Setting = { index: settings.length, values: [...values], params, current };
      for (const id of grid.ruleIds) {
        const rule = byId.get(id) as RuleDef;
        try {
          createDetector(rule.detector, params[id], id);
        } catch (e) {
          throw new VigilError(ERR.BAD_REQUEST, `grid setting ${settingLabel(grid, setting)}: ${(e as Error).message}`, 400);
        }
      }
      settings.push(setting);
      return;
    }
    for (const v of (grid.axes[axis] as GridAxis).values) {
      values[axis] = v;
      walk(axis + 1);
    }
  };
  walk(0);
  return settings;
}

/** `zThreshold=5 minMoveBps=3` (rule-qualified when several rules vary). */
export function settingLabel(grid: Pick<Grid, 'axes' | 'ruleIds'>, setting: Pick<Setting, 'values'>): string {
  return grid.axes.map((a, i) => `${axisName(grid, a)}=${JSON.stringify(setting.values[i])}`).join(' ');
}

export function axisName(grid: Pick<Grid, 'axes' | 'ruleIds'>, axis: GridAxis): string {
  const rules = new Set(grid.axes.map((a) => a.rule));
  return rules.size > 1 ? `${axis.rule}.${axis.param}` : axis.param;
}

// ---------------------------------------------------------------- parse once

export interface CapturedInput {
  batches: CapturedBatch[];
  /** What the replay's reader and normalizers saw (events by kind, malformed lines, books). */
  summary: ReplaySummary;
  /** Event-time span of every event of the input (not only the kept topics). */
  firstTs: number | undefined;
  lastTs: number | undefined;
  /** Messages kept (over the kept topics). */
  messages: number;
}

/** Keeps what the ingestor sends to the wanted topics, numbered per topic as a partition log would. */
class CaptureTransport implements Transport {
  readonly kind = 'memory' as const;
  readonly batches: CapturedBatch[] = [];
  readonly offsets = new Map<string, number>();
  firstTs = Number.POSITIVE_INFINITY;
  lastTs = Number.NEGATIVE_INFINITY;
  deadLetters = 0;
  messages = 0;

  constructor(private readonly topics: ReadonlySet<string>) {}

  async send<T>(topic: string, messages: readonly OutgoingMessage<T>[]): Promise<void> {
    if (topic === TOPICS.dlq) {
      this.deadLetters += messages.length;
      return;
    }
    for (const m of messages) {
      const ts = (m.value as CanonicalEvent).ts;
      if (ts < this.firstTs) this.firstTs = ts;
      if (ts > this.lastTs) this.lastTs = ts;
    }
    if (!this.topics.has(topic)) return;
    let offset = this.offsets.get(topic) ?? 0;
    const out: DeliveredMessage<CanonicalEvent>[] = new Array(messages.length);
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i] as OutgoingMessage<CanonicalEvent>;
      // partitionKey only picks a partition: the runner never reads it.
      out[i] = m.headers === undefined ? { key: m.key, value: m.value, offset: offset++ } : { key: m.key, value: m.value, headers: m.headers, offset: offset++ };
    }
    this.offsets.set(topic, offset);
    this.messages += out.length;
    const last = this.batches[this.batches.length - 1];
    if (last !== undefined && last.topic === topic) for (const m of out) last.messages.push(m);
    else this.batches.push({ topic, messages: out });
  }

  async subscribe<T>(o: SubscribeOptions<T>): Promise<Subscription> {
    return { group: o.group, stop: async () => undefined };
  }
  async drain(): Promise<void> {}
  stats(): TransportStats {
    return noTransportStats();
  }
  async close(): Promise<void> {}
}

export interface CaptureOptions {
  files: string[];
  /** Topics to keep (those the varied rules read). */
  topics: readonly string[];
  mapping?: string | Mapping;
  mappings?: ReadonlyArray<string | Mapping | undefined>;
  from?: number;
  to?: number;
  signal?: AbortSignal;
  progress?: ProgressReporter;
}

/** Reads and normalizes the files once, as a max-speed replay would, keeping the wanted topics' messages. */
export async function captureInput(o: CaptureOptions): Promise<CapturedInput> {
  const transport = new CaptureTransport(new Set(o.topics));
  const ingestor = new Ingestor(transport);
  const summary = await replayFiles(
    {
      runId: 'backtest',
      ingestor,
      drain: () => ingestor.flush(),
      get deadLetters() {
        return transport.deadLetters;
      },
      detectors: { counters: { findings: {} } },
    },
    {
      files: o.files,
      speed: { mode: 'max' },
      ...(o.mapping !== undefined ? { mapping: o.mapping } : {}),
      ...(o.mappings !== undefined ? { mappings: o.mappings } : {}),
      ...(o.from !== undefined ? { from: o.from } : {}),
      ...(o.to !== undefined ? { to: o.to } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.progress ? { progress: o.progress } : {}),
    },
  );
  return {
    batches: transport.batches,
    summary,
    firstTs: Number.isFinite(transport.firstTs) ? transport.firstTs : undefined,
    lastTs: Number.isFinite(transport.lastTs) ? transport.lastTs : undefined,
    messages: transport.messages,
  };
}

// ---------------------------------------------------------------- the backtest

export interface BacktestOptions extends Omit<CaptureOptions, 'topics'> {
  /** The rules file (validated) the grid varies, and its version. */
  rules: RulesFile;
  rulesVersion: string;
  grid: Grid;
  labels?: LabelSet;
  graceMs?: number;
  /** Threads running settings, this one included; 1: no worker threads. Default: os.availableParallelism(). */
  workers?: number;
  /**
   * Start workers only when the settings left after the second would take this thread longer than this
   * (ms); default 2000. 0: start them at once, before the input is read (their start-up overlaps it).
   */
  workerAfterMs?: number;
  /** This thread runs settings too (default); false: only workers do (tests of the worker path). */
  mainThreadRuns?: boolean;
  /** Keep each setting's findings in its row (`list`; tests). */
  keepFindings?: boolean;
  /** Called after each setting. */
  onSetting?: (done: number, total: number) => void;
}

export interface BacktestRow extends SettingResult {
  label: string;
  values: unknown[];
  params: Record<string, Record<string, unknown>>;
  current: boolean;
  /** Findings per hour of the input's event time (null when the input spans no time). */
  perHour: number | null;
}

export interface BacktestReport {
  status: 'completed' | 'aborted';
  inputs: string[];
  description?: string;
  rulesVersion: string;
  /** Varied rules and detectors, and the axes with their names as the report shows them. */
  ruleIds: string[];
  detectors: string[];
  axes: Array<{ name: string; rule: string; ruleIds: string[]; param: string; values: unknown[] }>;
  events: ReplaySummary['events'];
  totalEvents: number;
  malformed: number;
  /** Messages the varied rules read (status and view copies included). */
  messages: number;
  firstTs?: number;
  lastTs?: number;
  spanMs: number;
  labels?: { file: string; hash: string; graceMs: number; count: number };
  /** Threads that ran settings (this one included). */
  workers: number;
  parseMs: number;
  runMs: number;
  totalMs: number;
  /** In the order of the grid. */
  settings: BacktestRow[];
}

/**
 * Starts a worker thread on the TypeScript worker module. Threads do not inherit loader hooks, so the
 * worker registers tsx itself; an eval worker (CommonJS) can dynamic-import, so no bootstrap file is needed.
 */
function startWorker(): Worker {
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./backtest-worker.ts', import.meta.url).href;
  const boot = `const { parentPort } = require('node:worker_threads');
import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })
  .catch((e) => parentPort.postMessage({ type: 'fatal', message: String((e && e.stack) || e) }));`;
  return new Worker(boot, { eval: true });
}

/**
 * Workers start when the settings left would take this thread longer than this. Measured on 2 cores: a
 * worker needs ~0.6 s to load the detectors through tsx, then deserializes the input, and while it loads
 * it competes with this thread for a core — below ~2 s of work left it does not pay.
 */
const DEFAULT_WORKER_AFTER_MS = 2_000;

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

interface WorkerSlot {
  id: string;
  worker: Worker;
  /** Still able to take settings (not failed, not exited). */
  alive: boolean;
  /** The setting it is running. */
  current: number | undefined;
}

/**
 * Hands the settings out to this thread and to workers, each taking the next one when it is free, and
 * collects the results. Workers that fail to start are not used (this thread runs what they would have);
 * an error on a setting fails the backtest.
 */
class Scheduler {
  private next = 0;
  private inFlight = 0;
  private closed = false;
  private failure: Error | undefined;
  private readonly results: SettingResult[] = [];
  private readonly threads = new Set<string>();
  private readonly workers: WorkerSlot[] = [];
  private input: { data: () => SharedArrayBuffer; job: SettingJob } | undefined;
  /** Workers loaded before the input was there. */
  private readonly waiting: WorkerSlot[] = [];
  private settle: (() => void) | undefined;

  constructor(
    private readonly settings: readonly Setting[],
    private readonly signal: AbortSignal | undefined,
    private readonly onSetting?: (done: number, total: number) => void,
  ) {}

  get left(): number {
    return this.closed || this.failure ? 0 : this.settings.length - this.next;
  }

  get workerCount(): number {
    return this.workers.length;
  }

  get threadsUsed(): number {
    return this.threads.size;
  }

  result(index: number): SettingResult | undefined {
    return this.results[index];
  }

  take(): Setting | undefined {
    if (this.signal?.aborted) this.closed = true;
    if (this.left === 0) return undefined;
    this.inFlight++;
    return this.settings[this.next++];
  }

  put(r: SettingResult, thread: string): void {
    this.results[r.index] = { ...r, thread };
    this.threads.add(thread);
    this.inFlight--;
    this.onSetting?.(this.results.filter(Boolean).length, this.settings.length);
    this.check();
  }

  startWorkers(n: number): void {
    for (let i = 0; i < n; i++) {
      const slot: WorkerSlot = { id: `worker-${this.workers.length + 1}`, worker: startWorker(), alive: true, current: undefined };
      this.workers.push(slot);
      this.attach(slot);
    }
  }

  /** The captured input is there: workers that loaded already get it. */
  provide(data: () => SharedArrayBuffer, job: SettingJob): void {
    this.input = { data, job };
    for (const slot of this.waiting.splice(0)) this.sendInput(slot);
    this.check();
  }

  private sendInput(slot: WorkerSlot): void {
    if (this.left === 0 || !this.input) slot.worker.postMessage({ type: 'exit' } satisfies ToWorker);
    else slot.worker.postMessage({ type: 'input', data: this.input.data(), job: this.input.job } satisfies ToWorker);
  }

  private give(slot: WorkerSlot): void {
    const s = this.take();
    slot.current = s?.index;
    slot.worker.postMessage(s === undefined ? ({ type: 'exit' } satisfies ToWorker) : ({ type: 'run', setting: { index: s.index, params: s.params } } satisfies ToWorker));
  }

  private lose(slot: WorkerSlot, why: string): void {
    if (!slot.alive) return;
    slot.alive = false;
    if (slot.current !== undefined) {
      this.failure ??= new VigilError(ERR.INTERNAL, `backtest setting ${slot.current + 1}: ${why}`);
      this.inFlight--;
      slot.current = undefined;
    }
    this.check();
  }

  private attach(slot: WorkerSlot): void {
    const w = slot.worker;
    w.on('message', (m: FromWorker) => {
      if (m.type === 'loaded') {
        if (this.input) this.sendInput(slot);
        else this.waiting.push(slot);
      } else if (m.type === 'ready') this.give(slot);
      else if (m.type === 'result') {
        slot.current = undefined;
        this.put(m.result, slot.id);
        this.give(slot);
      } else if (m.type === 'error') this.lose(slot, m.message);
      else this.lose(slot, `worker failed: ${m.message}`);
    });
    w.on('error', (e) => this.lose(slot, `worker failed: ${e.message}`));
    w.on('exit', (code) => this.lose(slot, `worker exited with code ${code}`));
  }

  /** Settled: nothing running, and nothing left that a live worker could still take. */
  private check(): void {
    if (!this.settle || this.inFlight > 0) return;
    if (this.left > 0 && this.input && this.workers.some((w) => w.alive)) return;
    const f = this.settle;
    this.settle = undefined;
    f();
  }

  /** Waits until every setting ran (or could not), then throws the first error if there was one. */
  async settled(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.settle = resolve;
      this.check();
    });
    if (this.failure) throw this.failure;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((s) => s.worker.terminate()));
  }
}

export async function runBacktest(o: BacktestOptions): Promise<BacktestReport> {
  const started = performance.now();
  const settings = expandGrid(o.grid, o.rules);
  const threads = Math.max(1, Math.min(o.workers ?? availableParallelism(), settings.length));
  const mainRuns = o.mainThreadRuns ?? true;
  const scheduler = new Scheduler(settings, o.signal, o.onSetting);
  try {
    // Started before the parse, their start-up overlaps it.
    if (o.workerAfterMs === 0 && threads > 1) scheduler.startWorkers(mainRuns ? threads - 1 : threads);
    const probe = settingInstances(o.rules, o.grid.ruleIds, (settings[0] as Setting).params).instances;
    const captured = await captureInput({ ...o, topics: detectorTopics(probe) });
    const parsed = performance.now();
    const job: SettingJob = {
      base: o.rules,
      ruleIds: o.grid.ruleIds,
      detectors: o.grid.detectors,
      ...(o.labels ? { labels: o.labels, graceMs: o.graceMs ?? 0 } : {}),
      ...(o.keepFindings ? { keepFindings: true } : {}),
    };
    let shared: SharedArrayBuffer | undefined;
    // Serialized once, when the first worker asks, for all of them.
    const data = (): SharedArrayBuffer => {
      if (shared === undefined) {
        const bytes = serialize(captured.batches);
        shared = new SharedArrayBuffer(bytes.length);
        new Uint8Array(shared).set(bytes);
      }
      return shared;
    };
    const runHere = async (): Promise<void> => {
      for (let s = scheduler.take(); s !== undefined; s = scheduler.take()) {
        scheduler.put(await runSetting(captured.batches, job, s), 'main');
        if (s.index === 1 && scheduler.workerCount === 0 && threads > 1 && scheduler.left > 0) {
          // The second setting's cost (the first one's includes warming up) says whether the rest are worth a worker's start-up.
          const cost = (scheduler.result(s.index) as SettingResult).runMs;
          if (cost * scheduler.left > (o.workerAfterMs ?? DEFAULT_WORKER_AFTER_MS)) scheduler.startWorkers(Math.min(threads - 1, scheduler.left));
        }
        if (scheduler.workerCount > 0) await nextTick(); // lets the workers' messages in between settings
      }
    };
    if (captured.summary.status === 'completed') {
      if (!mainRuns && scheduler.workerCount === 0 && threads > 1) scheduler.startWorkers(threads);
      scheduler.provide(data, job);
      if (mainRuns) await runHere();
      await scheduler.settled();
      // Workers that could not start leave their settings here.
      await runHere();
    }
    const ran = performance.now();
    const spanMs = captured.firstTs !== undefined && captured.lastTs !== undefined ? captured.lastTs - captured.firstTs : 0;
    const rows: BacktestRow[] = settings.flatMap((s) => {
      const r = scheduler.result(s.index);
      if (!r) return [];
      return [{ ...r, label: settingLabel(o.grid, s), values: s.values, params: s.params, current: s.current, perHour: spanMs > 0 ? Math.round((r.findings / (spanMs / 3_600_000)) * 100) / 100 : null }];
    });
    return {
      status: captured.summary.status === 'completed' && rows.length === settings.length ? 'completed' : 'aborted',
      inputs: o.files,
      ...(o.grid.description !== undefined ? { description: o.grid.description } : {}),
      rulesVersion: o.rulesVersion,
      ruleIds: o.grid.ruleIds,
      detectors: o.grid.detectors,
      axes: o.grid.axes.map((a) => ({ name: axisName(o.grid, a), rule: a.rule, ruleIds: a.ruleIds, param: a.param, values: a.values })),
      events: captured.summary.events,
      totalEvents: captured.summary.totalEvents,
      malformed: captured.summary.malformed.count,
      messages: captured.messages,
      ...(captured.firstTs !== undefined ? { firstTs: captured.firstTs } : {}),
      ...(captured.lastTs !== undefined ? { lastTs: captured.lastTs } : {}),
      spanMs,
      ...(o.labels ? { labels: { file: o.labels.file, hash: o.labels.hash, graceMs: o.graceMs ?? 0, count: rows[0]?.labels?.count ?? 0 } } : {}),
      workers: Math.max(1, scheduler.threadsUsed),
      parseMs: Math.round(parsed - started),
      runMs: Math.round(ran - parsed),
      totalMs: Math.round(performance.now() - started),
      settings: rows,
    };
  } finally {
    await scheduler.close();
  }
}
