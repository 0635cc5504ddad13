/**
 * One backtest setting: the varied rules, with fresh state, over the captured messages, through the
 * DetectorRunner itself (src/pipeline/detect.ts) on a direct transport — no queues, no store. Kept apart
 * from backtest.ts so a worker thread loads only this (the detectors), not the readers and venues.
 */
import { performance } from 'node:perf_hooks';
import type { CanonicalEvent, Finding } from '../core/events.ts';
import { applyRule } from '../detectors/rule.ts';
import { buildRuleSet, rulesVersion, type RulesFile } from '../detectors/rules.ts';
import type { DetectorInstance } from '../detectors/types.ts';
import { DetectorRunner } from '../pipeline/detect.ts';
import { TOPICS, type Batch, type DeliveredMessage, type OutgoingMessage, type SubscribeOptions, type Subscription, type Transport, type TransportStats } from '../transport/types.ts';
import { LabelScorer, type LabelReport, type LabelSet } from './labels.ts';

/** A run of consecutive messages of one topic, as the ingestor sent them. */
export interface CapturedBatch {
  topic: string;
  messages: DeliveredMessage<CanonicalEvent>[];
}

/** Rule id → params of the varied rules (the rules file's params with the grid's values over them). */
export type SettingParams = Record<string, Record<string, unknown>>;

export const noTransportStats = (): TransportStats => ({ sent: 0, delivered: 0, unrouted: 0, waits: 0, queued: 0 });

/** Hands batches straight to the runner's handler and keeps the findings it sends. */
class DirectTransport implements Transport {
  readonly kind = 'memory' as const;
  readonly findings: Finding[] = [];
  handler: ((batch: Batch<CanonicalEvent>) => Promise<void> | void) | undefined;
  topics: readonly string[] = [];

  async send<T>(topic: string, messages: readonly OutgoingMessage<T>[]): Promise<void> {
    if (topic === TOPICS.findings) for (const m of messages) this.findings.push(m.value as Finding);
  }
  async subscribe<T>(o: SubscribeOptions<T>): Promise<Subscription> {
    this.handler = o.eachBatch as unknown as DirectTransport['handler'];
    this.topics = o.topics;
    return { group: o.group, stop: async () => undefined };
  }
  async drain(): Promise<void> {}
  stats(): TransportStats {
    return noTransportStats();
  }
  async close(): Promise<void> {}
}

/** The rules file of one setting: the base file with the setting's parameters on the varied rules (enabled). */
export function settingRulesFile(base: RulesFile, params: SettingParams): RulesFile {
  return { ...base, rules: base.rules.map((r) => (params[r.id] ? { ...r, enabled: true, params: params[r.id] as Record<string, unknown> } : r)) };
}

/**
 * The varied rules' instances for one setting, stamped with the version of the setting's whole rules
 * file (what a replay under that file stamps). Only the varied rules are built: `base` is validated
 * already (defaults applied), so the version of the substituted file is what buildRuleSet would give it
 * (test/backtest.test.ts checks).
 */
export function settingInstances(base: RulesFile, ruleIds: readonly string[], params: SettingParams): { instances: DetectorInstance[]; rulesVersion: string } {
  const file = settingRulesFile(base, params);
  const wanted = new Set(ruleIds);
  const version = rulesVersion(file);
  const varied = buildRuleSet({ ...file, rules: file.rules.filter((r) => wanted.has(r.id)) }, 'backtest setting');
  return { instances: varied.instances.map((r) => applyRule(r.inner, { ...r.settings, rulesVersion: version })), rulesVersion: version };
}

/** Messages per runner batch (the ingestor's own batches are at most 512 events anyway). */
const RUN_BATCH = 512;
/** Runner batches between two turns of the event loop. */
const YIELD_EVERY = 64;

/** Runs rule instances over captured messages with fresh state; resolves to their findings, in order. */
export async function runDetectors(batches: readonly CapturedBatch[], instances: readonly DetectorInstance[]): Promise<Finding[]> {
  const transport = new DirectTransport();
  const runner = new DetectorRunner(transport, instances, 'backtest', { riskScores: 'none' });
  await runner.start();
  const handler = transport.handler as NonNullable<DirectTransport['handler']>;
  const topics = new Set(transport.topics);
  let handled = 0;
  for (const b of batches) {
    if (!topics.has(b.topic)) continue;
    const all = b.messages;
    for (let i = 0; i < all.length; i += RUN_BATCH) {
      await handler({ topic: b.topic, partition: 0, messages: all.length <= RUN_BATCH ? all : all.slice(i, i + RUN_BATCH) });
      // Now and then a turn of the event loop, so a long setting does not hold up messages from workers.
      if (++handled % YIELD_EVERY === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
  await runner.stop();
  return transport.findings;
}

/** What every setting shares. */
export interface SettingJob {
  base: RulesFile;
  ruleIds: readonly string[];
  detectors: readonly string[];
  labels?: LabelSet;
  graceMs?: number;
  keepFindings?: boolean;
}

/** What one setting gave. */
export interface SettingResult {
  index: number;
  findings: number;
  byDetector: Record<string, number>;
  rulesVersion: string;
  /** With labels: scored over the varied detectors only. */
  labels?: LabelReport;
  /** Wall time of this setting (rules built, detectors over the input, scoring). */
  runMs: number;
  /** Only when asked for (tests). */
  list?: Finding[];
  /** The thread that ran it: `main` or `worker-N`. */
  thread?: string;
}

export async function runSetting(batches: readonly CapturedBatch[], job: SettingJob, setting: { index: number; params: SettingParams }): Promise<SettingResult> {
  const started = performance.now();
  const { instances, rulesVersion: version } = settingInstances(job.base, job.ruleIds, setting.params);
  const findings = await runDetectors(batches, instances);
  const byDetector: Record<string, number> = Object.fromEntries(job.detectors.map((d) => [d, 0]));
  for (const f of findings) byDetector[f.detector] = (byDetector[f.detector] ?? 0) + 1;
  let labels: LabelReport | undefined;
  if (job.labels) {
    const scorer = new LabelScorer(job.labels, job.graceMs ?? 0, job.detectors);
    for (const f of findings) scorer.add(f);
    labels = scorer.report();
  }
  return {
    index: setting.index,
    findings: findings.length,
    byDetector,
    rulesVersion: version,
    ...(labels ? { labels } : {}),
    runMs: Math.round((performance.now() - started) * 10) / 10,
    ...(job.keepFindings ? { list: findings } : {}),
  };
}

/** Worker protocol (backtest-worker.ts). */
export type ToWorker = { type: 'input'; data: SharedArrayBuffer; job: SettingJob } | { type: 'run'; setting: { index: number; params: SettingParams } } | { type: 'exit' };
export type FromWorker =
  | { type: 'loaded' }
  | { type: 'ready' }
  | { type: 'result'; result: SettingResult }
  | { type: 'error'; index: number; message: string }
  | { type: 'fatal'; message: string };
