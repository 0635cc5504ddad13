/**
 * Vigil's Prometheus metrics: one prom-client Registry and the PipelineMetrics sink the pipeline
 * components report to (src/pipeline/metrics.ts). Served as `GET /metrics` by the API
 * (src/api/routes/metrics.ts) and by the health server of `vigil feeds` / `vigil detect`.
 *
 * Counters the components keep anyway (events by source and kind, dead letters, state loads and saves,
 * rows written, spill rows, transport figures) are read at scrape time through collect callbacks, so
 * they cost nothing on the hot path; components that close hand their last counts over (the exported
 * counters never go down when a demo loop's pipeline is replaced). Latencies and findings by severity
 * are observed as they happen: per batch, per finding, or for one event in DETECTOR_SAMPLE_EVERY.
 *
 * Every metric name is in METRIC_NAMES (the dashboard test checks its queries against the registry).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RulesController } from '../detectors/rules-watch.ts';
import { feedReconnects } from '../feeds/connection.ts';
import { DETECTOR_SAMPLE_EVERY, type MetricsSource, type PipelineMetrics } from '../pipeline/metrics.ts';
import type { BatchWriter } from '../storage/batch-writer.ts';
import type { NotifierStats } from '../notify/webhooks.ts';
import { Readiness } from './readiness.ts';

type Labels = Record<string, string>;
type Emit = (labels: Labels, value: number) => void;

/** A metric whose values are read from the attached components when scraped. */
interface CollectedFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  labelNames: string[];
  read(source: MetricsSource, emit: Emit): void;
}

function writers(source: MetricsSource): Array<[string, BatchWriter<unknown> | undefined]> {
  if (source.kind !== 'store') return [];
  const s = source.storeSide;
  return [
    ['findings', s.findingWriter as BatchWriter<unknown> | undefined],
    ['dead_letters', s.deadLetterWriter as BatchWriter<unknown> | undefined],
    ['tx_risk', s.txRiskWriter as BatchWriter<unknown> | undefined],
    ['runs', s.runWriter as BatchWriter<unknown> | undefined],
    ['context', s.contextWriter as BatchWriter<unknown> | undefined],
  ];
}

const COLLECTED: CollectedFamily[] = [
  {
    name: 'vigil_events_total',
    help: 'Canonical events produced by the ingestor, by source (venue or source of the frame) and kind.',
    type: 'counter',
    labelNames: ['source', 'kind'],
    read(s, emit) {
      if (s.kind !== 'ingestor') return;
      for (const [source, byKind] of s.ingestor.eventsBySource) {
        for (const [kind, n] of Object.entries(byKind)) if (n > 0) emit({ source, kind }, n);
      }
    },
  },
  {
    name: 'vigil_frames_total',
    help: 'Raw frames (or replay lines) the ingestor read.',
    type: 'counter',
    labelNames: [],
    read(s, emit) {
      if (s.kind === 'ingestor') emit({}, s.ingestor.counters.frames);
    },
  },
  {
    name: 'vigil_dead_letters_total',
    help: 'Frames that could not be read (sent to vigil.dlq), by source.',
    type: 'counter',
    labelNames: ['source'],
    read(s, emit) {
      if (s.kind !== 'ingestor') return;
      for (const [source, n] of s.ingestor.deadLettersBySource) emit({ source }, n);
    },
  },
  {
    name: 'vigil_detector_events_total',
    help: 'Events the detector runner handled (reaching at least one rule).',
    type: 'counter',
    labelNames: [],
    read(s, emit) {
      if (s.kind === 'detectors') emit({}, s.runner.counters.events);
    },
  },
  {
    name: 'vigil_state_loads_total',
    help: 'Detector states read from the state store (keys that came back or were taken over).',
    type: 'counter',
    labelNames: [],
    read(s, emit) {
      if (s.kind === 'detectors') emit({}, s.runner.counters.statesLoaded);
    },
  },
  {
    name: 'vigil_state_load_calls_total',
    help: 'State store load round trips.',
    type: 'counter',
    labelNames: [],
    read(s, emit) {
      if (s.kind === 'detectors') emit({}, s.runner.counters.loadCalls);
    },
  },
  {
    name: 'vigil_state_saves_total',
    help: 'Detector states written to the state store.',
    type: 'counter',
    labelNames: [],
    read(s, emit) {
      if (s.kind === 'detectors') emit({}, s.runner.counters.statesSaved);
    },
  },
  {
    name: 'vigil_state_save_calls_total',
    help: 'State store save round trips.',
    type: 'counter',
    labelNames: [],
    read(s, emit) {
      if (s.kind === 'detectors') emit({}, s.runner.counters.saveCalls);
    },
  },
  {
    name: 'vigil_state_evictions_total',
    help: 'Keys dropped from memory, as idle or on partition revoke.',
    type: 'counter',
    labelNames: ['reason'],
    read(s, emit) {
      if (s.kind !== 'detectors') return;
      emit({ reason: 'idle' }, s.runner.counters.evicted);
      emit({ reason: 'revoke' }, s.runner.counters.revoked);
    },
  },
  {
    name: 'vigil_state_keys',
    help: 'Keys with detector state in memory (over rules and runs).',
    type: 'gauge',
    labelNames: [],
    read(s, emit) {
      if (s.kind === 'detectors') emit({}, s.runner.keyCount());
    },
  },
  {
    name: 'vigil_store_rows_written_total',
    help: 'Rows inserted into ClickHouse, by table.',
    type: 'counter',
    labelNames: ['table'],
    read(s, emit) {
      for (const [table, w] of writers(s)) if (w) emit({ table }, w.counters.written);
    },
  },
  {
    name: 'vigil_store_insert_failures_total',
    help: 'Failed ClickHouse insert attempts (each retried), by table.',
    type: 'counter',
    labelNames: ['table'],
    read(s, emit) {
      for (const [table, w] of writers(s)) if (w) emit({ table }, w.counters.errors);
    },
  },
  {
    name: 'vigil_store_pending_rows',
    help: 'Rows accepted by a writer and not stored yet, by table.',
    type: 'gauge',
    labelNames: ['table'],
    read(s, emit) {
      for (const [table, w] of writers(s)) if (w) emit({ table }, w.counters.pending);
    },
  },
  {
    name: 'vigil_store_spilled_rows_total',
    help: 'Rows written to a spill file while ClickHouse was slow or down, by table.',
    type: 'counter',
    labelNames: ['table'],
    read(s, emit) {
      for (const [table, w] of writers(s)) {
        const c = w?.spillCounters;
        if (c) emit({ table }, c.spilled);
      }
    },
  },
  {
    name: 'vigil_store_spill_unread_rows',
    help: 'Rows in a spill file not yet stored, by table.',
    type: 'gauge',
    labelNames: ['table'],
    read(s, emit) {
      for (const [table, w] of writers(s)) {
        const c = w?.spillCounters;
        if (c) emit({ table }, c.unread);
      }
    },
  },
  {
    name: 'vigil_transport_queued_messages',
    help: 'Messages waiting in the transport: in-process queues, or on Kafka consumer lag plus fetched, unhandled messages.',
    type: 'gauge',
    labelNames: ['transport'],
    read(s, emit) {
      if (s.kind === 'transport') emit({ transport: s.transport.kind }, s.transport.stats().queued);
    },
  },
  {
    name: 'vigil_transport_sent_messages_total',
    help: 'Messages sent on the transport.',
    type: 'counter',
    labelNames: ['transport'],
    read(s, emit) {
      if (s.kind === 'transport') emit({ transport: s.transport.kind }, s.transport.stats().sent);
    },
  },
  {
    name: 'vigil_transport_delivered_messages_total',
    help: 'Messages delivered to consumers.',
    type: 'counter',
    labelNames: ['transport'],
    read(s, emit) {
      if (s.kind === 'transport') emit({ transport: s.transport.kind }, s.transport.stats().delivered);
    },
  },
  {
    name: 'vigil_transport_backpressure_waits_total',
    help: 'Times a sender had to wait for consumers (backpressure).',
    type: 'counter',
    labelNames: ['transport'],
    read(s, emit) {
      if (s.kind === 'transport') emit({ transport: s.transport.kind }, s.transport.stats().waits);
    },
  },
];

/** Sampled per-event detector time: microseconds to tens of milliseconds. */
const DETECTOR_EVENT_BUCKETS = [1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 5e-2];
const BATCH_BUCKETS = [1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1, 5];
const EVENT_TO_FINDING_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const labelKey = (names: readonly string[], labels: Labels): string => names.map((n) => labels[n] ?? '').join('\u0000');

export interface VigilMetricsOptions {
  /** Also export Node's process metrics (CPU, memory, event loop lag, GC): default true. */
  processMetrics?: boolean;
}

export class VigilMetrics implements PipelineMetrics {
  readonly registry = new Registry();
  private readonly sources = new Set<MetricsSource>();
  /** Counts of detached components, per family and label set (so counters never go down). */
  private readonly retired = new Map<string, Map<string, { labels: Labels; value: number }>>();
  /** Late events per rule id: totals of rule instances replaced by a reload, and the instance in force. */
  private readonly late = new Map<string, { base: number; instance: object; last: number }>();
  private readonly detectorEvent: Histogram<'detector'>;
  private readonly detectBatch: Histogram;
  private readonly detectSeconds: Counter;
  private readonly eventToFinding: Histogram<'detector'>;
  private readonly findings: Counter<'detector' | 'severity'>;
  private readonly ruleReloads: Counter<'actor'>;
  private readonly rulesWatched: RulesController[] = [];
  /** Webhook notifiers, snooze books and transaction scorers of this process, read at scrape time. */
  private readonly notifiers = new Set<{ readonly stats: NotifierStats }>();
  private readonly snoozeBooks = new Set<{ readonly suppressed: number; readonly size: number }>();
  private readonly scorers = new Set<{ readonly counters: Readonly<Record<string, number>> }>();

  constructor(options: VigilMetricsOptions = {}) {
    const registers = [this.registry];
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    for (const f of COLLECTED) this.addCollected(f);
    this.detectorEvent = new Histogram({
      name: 'vigil_detector_event_duration_seconds',
      help: `Time one event takes in one detector (rule), sampled: one event in every ${DETECTOR_SAMPLE_EVERY} is timed.`,
      labelNames: ['detector'],
      buckets: DETECTOR_EVENT_BUCKETS,
      registers,
    });
    this.detectBatch = new Histogram({
      name: 'vigil_detect_batch_duration_seconds',
      help: 'Time of one batch\'s detect pass (every rule over the batch\'s events; state loads excluded).',
      buckets: BATCH_BUCKETS,
      registers,
    });
    this.detectSeconds = new Counter({
      name: 'vigil_detect_seconds_total',
      help: 'Time spent in detect passes; divided by vigil_detector_events_total: the mean time per event.',
      registers,
    });
    this.eventToFinding = new Histogram({
      name: 'vigil_event_to_finding_seconds',
      help: 'Wall clock when a finding was sent minus the receive time of the event that triggered it (live runs).',
      labelNames: ['detector'],
      buckets: EVENT_TO_FINDING_BUCKETS,
      registers,
    });
    this.findings = new Counter({ name: 'vigil_findings_total', help: 'Findings emitted, by detector and severity.', labelNames: ['detector', 'severity'], registers });
    this.ruleReloads = new Counter({ name: 'vigil_rule_reloads_total', help: 'Rules changes applied (file change, API), by actor.', labelNames: ['actor'], registers });
    const watched = this.rulesWatched;
    new Gauge({
      name: 'vigil_rules_reload_failing',
      help: '1 while the rules file on disk is invalid (the last reload failed; the previous rules stay in force).',
      registers,
      collect() {
        this.set(watched.some((r) => r.lastError !== undefined) ? 1 : 0);
      },
    });
    const late = this.late;
    const sources = this.sources;
    new Counter({
      name: 'vigil_late_events_total',
      help: 'Events a rule found too late to use (older than its allowed lateness), by rule.',
      labelNames: ['rule'],
      registers,
      collect() {
        const seen = new Set<object>();
        for (const s of sources) {
          if (s.kind !== 'detectors') continue;
          for (const d of s.runner.detectors()) {
            const c = (d as { counters?: { late?: number } }).counters;
            if (seen.has(d) || typeof c?.late !== 'number') continue;
            seen.add(d);
            const entry = late.get(d.ruleId);
            if (!entry) late.set(d.ruleId, { base: 0, instance: d, last: c.late });
            else if (entry.instance !== d) {
              // A reload replaced the rule's instance: its count so far stays in the total.
              entry.base += entry.last;
              entry.instance = d;
              entry.last = c.late;
            } else entry.last = c.late;
          }
        }
        this.reset();
        for (const [rule, e] of late) this.inc({ rule }, e.base + e.last);
      },
    });
    const notifiers = this.notifiers;
    new Counter({
      name: 'vigil_webhook_deliveries_total',
      help: 'Findings handled per webhook, by outcome: delivered, failed (not retried or out of attempts), dropped (queue full), abandoned (at shutdown).',
      labelNames: ['webhook', 'outcome'],
      registers,
      collect() {
        this.reset();
        for (const n of notifiers) {
          for (const w of n.stats.webhooks) {
            for (const outcome of ['delivered', 'failed', 'dropped', 'abandoned'] as const) this.inc({ webhook: w.name, outcome }, w[outcome]);
          }
        }
      },
    });
    new Counter({
      name: 'vigil_webhook_retries_total',
      help: 'Webhook attempts after the first, by webhook.',
      labelNames: ['webhook'],
      registers,
      collect() {
        this.reset();
        for (const n of notifiers) for (const w of n.stats.webhooks) this.inc({ webhook: w.name }, w.retries);
      },
    });
    new Gauge({
      name: 'vigil_webhook_queued',
      help: 'Findings waiting for delivery (queued or in flight), by webhook.',
      labelNames: ['webhook'],
      registers,
      collect() {
        this.reset();
        for (const n of notifiers) for (const w of n.stats.webhooks) this.set({ webhook: w.name }, w.queued + w.inFlight);
      },
    });
    const books = this.snoozeBooks;
    new Counter({
      name: 'vigil_snoozed_findings_total',
      help: 'Findings kept out of live alerts and webhooks by a snooze (still stored).',
      registers,
      collect() {
        this.reset();
        for (const b of books) this.inc(b.suppressed);
      },
    });
    new Gauge({
      name: 'vigil_snoozes_active',
      help: 'Snoozes in force in this process.',
      registers,
      collect() {
        this.reset();
        for (const b of books) this.inc(b.size);
      },
    });
    const scorers = this.scorers;
    new Counter({
      name: 'vigil_score_requests_total',
      help: 'POST /api/transactions/score requests, by outcome: published (scored through the stream), replayed (a repeated id), timeouts, refused (too many pending).',
      labelNames: ['outcome'],
      registers,
      collect() {
        this.reset();
        for (const sc of scorers) for (const outcome of ['published', 'replayed', 'timeouts', 'refused']) this.inc({ outcome }, sc.counters[outcome] ?? 0);
      },
    });
    new Counter({
      name: 'vigil_feed_reconnects_total',
      help: 'Live feed connections opened after the first one (reconnects and planned replacements), by venue.',
      labelNames: ['venue'],
      registers,
      collect() {
        this.reset();
        for (const [venue, n] of feedReconnects) this.inc({ venue }, n);
      },
    });
  }

  private addCollected(f: CollectedFamily): void {
    const totals = (): Map<string, { labels: Labels; value: number }> => {
      const out = new Map<string, { labels: Labels; value: number }>();
      if (f.type === 'counter') for (const [k, v] of this.retired.get(f.name) ?? []) out.set(k, { labels: v.labels, value: v.value });
      for (const s of this.sources) {
        f.read(s, (labels, value) => {
          const k = labelKey(f.labelNames, labels);
          const t = out.get(k);
          if (t) t.value += value;
          else out.set(k, { labels, value });
        });
      }
      return out;
    };
    if (f.type === 'counter') {
      new Counter({
        name: f.name,
        help: f.help,
        labelNames: f.labelNames,
        registers: [this.registry],
        collect() {
          this.reset();
          for (const { labels, value } of totals().values()) this.inc(labels, Math.max(0, value));
        },
      });
    } else {
      new Gauge({
        name: f.name,
        help: f.help,
        labelNames: f.labelNames,
        registers: [this.registry],
        collect() {
          this.reset();
          for (const { labels, value } of totals().values()) this.set(labels, value);
        },
      });
    }
  }

  attach(source: MetricsSource): () => void {
    this.sources.add(source);
    return () => {
      if (!this.sources.delete(source)) return;
      // Its counts stay in the counters' totals.
      for (const f of COLLECTED) {
        if (f.type !== 'counter') continue;
        let m = this.retired.get(f.name);
        if (!m) this.retired.set(f.name, (m = new Map()));
        const into = m;
        f.read(source, (labels, value) => {
          const k = labelKey(f.labelNames, labels);
          const t = into.get(k);
          if (t) t.value += value;
          else into.set(k, { labels, value });
        });
      }
    };
  }

  observeDetectBatch(seconds: number, _events: number): void {
    this.detectBatch.observe(seconds);
    this.detectSeconds.inc(seconds);
  }

  observeDetectorEvent(detector: string, seconds: number): void {
    this.detectorEvent.observe({ detector }, seconds);
  }

  observeEventToFinding(detector: string, seconds: number): void {
    this.eventToFinding.observe({ detector }, seconds);
  }

  observeFinding(detector: string, severity: string): void {
    this.findings.inc({ detector, severity });
  }

  /** Exports a webhook notifier's delivery counters, a snooze book's, a scorer's (read when scraped). */
  watchNotifier(notifier: { readonly stats: NotifierStats }): () => void {
    this.notifiers.add(notifier);
    return () => this.notifiers.delete(notifier);
  }

  watchSnoozes(book: { readonly suppressed: number; readonly size: number }): () => void {
    this.snoozeBooks.add(book);
    return () => this.snoozeBooks.delete(book);
  }

  watchScorer(scorer: { readonly counters: Readonly<Record<string, number>> }): () => void {
    this.scorers.add(scorer);
    return () => this.scorers.delete(scorer);
  }

  /** Counts the rules changes that take effect (not the initial load) and exports whether reloads fail. */
  watchRules(rules: RulesController): () => void {
    this.rulesWatched.push(rules);
    const off = rules.onChange((change) => {
      if (change.actor !== 'start') this.ruleReloads.inc({ actor: change.actor });
    });
    return () => {
      off();
      const i = this.rulesWatched.indexOf(rules);
      if (i >= 0) this.rulesWatched.splice(i, 1);
    };
  }

  /** The Prometheus text exposition. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Names of every metric in the registry. */
  metricNames(): string[] {
    return this.registry.getMetricsAsArray().map((m) => m.name);
  }
}

/** Metrics and readiness of this process (the CLI roles share one registry; tests build their own). */
export interface Observability {
  metrics: VigilMetrics;
  readiness: Readiness;
}

let processWide: Observability | undefined;

export function processObservability(): Observability {
  processWide ??= { metrics: new VigilMetrics(), readiness: new Readiness() };
  return processWide;
}
