/**
 * Synchronous scoring (POST /api/transactions/score) as a request-reply over the streaming path, so a
 * scored transaction uses and updates the very state the stream does, whichever worker owns its account:
 *
 *  1. the transaction is published exactly as the Ingestor publishes a streamed one (vigil.tx keyed by
 *     account, plus its view copies keyed by counterparty and merchant);
 *  2. the detectors handle it in order with that account's other transactions and send one risk record
 *     per copy to vigil.tx.risk (detect.ts), naming the findings it raised (sent to vigil.findings);
 *  3. this module, subscribed to both topics in a consumer group of its own process (like the live
 *     alerts' group), waits for every record of that transaction and for those findings, and answers
 *     with the score combined as ClickHouse's tx_scores combines it (risk-score.ts combineViews).
 *
 * Idempotency: (source, id) identifies a transaction. A repeated one — while its first request still
 * waits, or after it was answered (the last `remember` results of this process) — is not published
 * again: it gets the same answer (`replayed`), so a client's retry never counts twice in the account's
 * state. The same id with a different body is a conflict (409). A request that timed out leaves its
 * transaction in flight (it was published): a retry waits for that one's records instead of sending it
 * again. Beyond this process's memory (another API process, a restart, ids older than `remember`) a
 * repeated id is a new transaction, as it would be on the stream.
 */
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Config } from '../core/config.ts';
import { ERR, VigilError } from '../core/errors.ts';
import { eventViews, type Finding, type Transaction } from '../core/events.ts';
import type { RulesController } from '../detectors/rules-watch.ts';
import { processObservability } from '../observability/metrics.ts';
import { TOPICS, type Batch, type Subscription, type Transport } from '../transport/types.ts';
import { Ingestor } from './ingest.ts';
import type { PipelineMetrics } from './metrics.ts';
import { combineViews, type TxRisk } from './risk-score.ts';
import { kafkaGroups } from './roles.ts';

export const DEFAULT_SCORE_TIMEOUT_MS = 2_000;
export const DEFAULT_SCORE_MAX_PENDING = 1_000;
/** Answers kept for repeated transaction ids. */
const DEFAULT_REMEMBER = 10_000;
/** Findings kept that arrived before the risk record naming them (the two topics are not ordered). */
const EARLY_FINDINGS_MAX = 10_000;

/** The scoring group of this process: every API process sees every risk record. */
export function scoreGroup(): string {
  return `vigil-score-${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9._-]/g, '_');
}

export interface ScoreReason {
  detector: string;
  ruleId: string;
  score: number;
  summary: string;
}

/** The answer of POST /api/transactions/score. */
export interface ScoreResult {
  eventId: string;
  account: string;
  /** In [0, 1]: noisy-OR of the rules' signals over the transaction and its view copies. */
  score: number;
  /** The signals, strongest first. */
  reasons: ScoreReason[];
  /** Findings this transaction raised. */
  findings: Finding[];
  rulesVersion: string;
  /** From the request's arrival here to its answer. */
  latencyMs: number;
}

export interface ScoreOutcome {
  result: ScoreResult;
  /** The transaction id was scored already (or is being scored): the answer is that one's. */
  replayed: boolean;
}

/** What the API route needs. */
export interface TransactionScoring {
  score(tx: Transaction): Promise<ScoreOutcome>;
}

export interface TransactionScorerOptions {
  /** The run whose records answer (default `live`: the run of vigil run / vigil detect). */
  runId?: string;
  /** Consumer group (default scoreGroup()). */
  group?: string;
  /** VIGIL_SCORE_TIMEOUT_MS */
  timeoutMs?: number;
  /** VIGIL_SCORE_MAX_PENDING: requests waiting at once. */
  maxPending?: number;
  /** Answers kept for repeated ids. */
  remember?: number;
  /** The rules version to report when the records carry none. */
  rulesVersion?: () => string | undefined;
  metrics?: PipelineMetrics;
  /** Removes the group from the broker after detach (Kafka), as the live alerts' group is. */
  deleteGroup?: (group: string) => Promise<void>;
}

interface Waiter {
  started: number;
  timer: NodeJS.Timeout;
  resolve(result: ScoreResult): void;
  reject(err: unknown): void;
}

/** A published transaction whose records are awaited. */
interface InFlight {
  key: string;
  tx: Transaction;
  fingerprint: string;
  /** Records expected: the transaction as sent, and one per view copy. */
  expect: number;
  records: Map<string, TxRisk>;
  /** Finding ids named by the records and not received yet. */
  wanted: Set<string>;
  findings: Map<string, Finding>;
  waiters: Waiter[];
  createdAt: number;
}

interface Binding {
  transport: Transport;
  ingestor: Ingestor;
  subscription: Subscription;
}

const unavailable = (message: string) => new VigilError(ERR.UNAVAILABLE, message, 503);

export class TransactionScorer implements TransactionScoring {
  readonly group: string;
  readonly counters = { requests: 0, published: 0, replayed: 0, timeouts: 0, refused: 0 };
  private readonly runId: string;
  private readonly timeoutMs: number;
  private readonly maxPending: number;
  private readonly remember: number;
  /** In-flight entries older than this without waiters are dropped (their records never came). */
  private readonly lateMs: number;
  private binding: Binding | undefined;
  private attaching: Promise<void> | undefined;
  private readonly inflight = new Map<string, InFlight>();
  private readonly wantedBy = new Map<string, InFlight>();
  private readonly early = new Map<string, Finding>();
  private readonly results = new Map<string, { fingerprint: string; result: ScoreResult }>();
  private waiting = 0;

  constructor(private readonly options: TransactionScorerOptions = {}) {
    this.runId = options.runId ?? 'live';
    this.group = options.group ?? scoreGroup();
    this.timeoutMs = options.timeoutMs ?? DEFAULT_SCORE_TIMEOUT_MS;
    this.maxPending = options.maxPending ?? DEFAULT_SCORE_MAX_PENDING;
    this.remember = options.remember ?? DEFAULT_REMEMBER;
    this.lateMs = Math.max(60_000, 10 * this.timeoutMs);
  }

  /** Requests waiting now. */
  get pending(): number {
    return this.waiting;
  }

  get attached(): boolean {
    return this.binding !== undefined;
  }

  /**
   * Starts scoring over a transport (its pipeline's, or the process's Kafka transport): subscribes to
   * the risk and findings topics before any transaction is published, so no record is missed.
   */
  async attach(transport: Transport): Promise<void> {
    if (this.binding || this.attaching) throw new Error('the scorer is attached already');
    this.attaching = (async () => {
      const subscription = await transport.subscribe<TxRisk | Finding>({
        group: this.group,
        topics: [TOPICS.txRisk, TOPICS.findings],
        eachBatch: (batch) => this.onBatch(batch),
      });
      const ingestor = new Ingestor(transport, { batchSize: 1, ...(this.options.metrics ? { metrics: this.options.metrics } : {}) });
      this.binding = { transport, ingestor, subscription };
    })();
    try {
      await this.attaching;
    } finally {
      this.attaching = undefined;
    }
  }

  /** Stops scoring: waiting requests fail with 503, what this process remembered is forgotten (new state). */
  async detach(): Promise<void> {
    const b = this.binding;
    if (!b) return;
    this.binding = undefined;
    const stopped = unavailable('transaction scoring stopped (the pipeline is shutting down or restarting); retry');
    for (const entry of [...this.inflight.values()]) this.fail(entry, stopped);
    this.inflight.clear();
    this.wantedBy.clear();
    this.early.clear();
    this.results.clear();
    b.ingestor.detachMetrics();
    await b.subscription.stop();
    if (b.transport.kind === 'kafka') await this.options.deleteGroup?.(this.group).catch(() => undefined);
  }

  async score(tx: Transaction): Promise<ScoreOutcome> {
    const started = performance.now();
    this.counters.requests++;
    const binding = this.binding;
    if (!binding) throw unavailable('transaction scoring is not available now: no pipeline is running in this process');
    const key = `${tx.source}\u0000${tx.id}`;
    const fingerprint = JSON.stringify(tx);
    const known = this.results.get(key);
    if (known) {
      this.sameBody(tx, known.fingerprint, fingerprint);
      // Most recently used last.
      this.results.delete(key);
      this.results.set(key, known);
      this.counters.replayed++;
      return { result: { ...known.result, latencyMs: elapsed(started) }, replayed: true };
    }
    let entry = this.inflight.get(key);
    if (entry) this.sameBody(tx, entry.fingerprint, fingerprint);
    if (this.waiting >= this.maxPending) {
      this.counters.refused++;
      throw unavailable(`too many scoring requests waiting (${this.maxPending}, VIGIL_SCORE_MAX_PENDING); retry later`);
    }
    if (entry) {
      this.counters.replayed++;
      return { result: await this.wait(entry, started), replayed: true };
    }
    this.sweep();
    entry = { key, tx, fingerprint, expect: 1 + (eventViews(tx)?.length ?? 0), records: new Map(), wanted: new Set(), findings: new Map(), waiters: [], createdAt: Date.now() };
    // Waiting before publishing: the records may come back before the send resolves.
    this.inflight.set(key, entry);
    const answer = this.wait(entry, started);
    answer.catch(() => undefined); // awaited below; this only keeps a rejection during the send from counting as unhandled
    try {
      await binding.ingestor.pushEvent(tx);
      await binding.ingestor.flush();
      this.counters.published++;
    } catch (e) {
      this.fail(entry, unavailable(`could not publish the transaction: ${(e as Error).message}`));
    }
    return { result: await answer, replayed: false };
  }

  private sameBody(tx: Transaction, before: string, now: string): void {
    if (before !== now) {
      throw new VigilError(ERR.CONFLICT, `transaction '${tx.id}' of source '${tx.source}' was scored already with a different body; a transaction id identifies one transaction`, 409);
    }
  }

  private wait(entry: InFlight, started: number): Promise<ScoreResult> {
    return new Promise<ScoreResult>((resolve, reject) => {
      const waiter: Waiter = {
        started,
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = entry.waiters.indexOf(waiter);
          if (i < 0) return;
          entry.waiters.splice(i, 1);
          this.waiting--;
          this.counters.timeouts++;
          // The entry stays in flight: its records may still come, and a retry then gets them.
          const missing = entry.expect - entry.records.size;
          const what = missing > 0 ? `${missing} of ${entry.expect} risk records missing` : `${entry.wanted.size} findings missing`;
          reject(
            new VigilError(
              ERR.TIMEOUT,
              `no risk score for transaction '${entry.tx.id}' within ${this.timeoutMs} ms (${what}): are the detectors running (vigil detect workers, with KAFKA_BROKERS) and keeping up? A retry with the same id waits for this transaction again without counting it twice`,
              504,
            ),
          );
        }, this.timeoutMs),
      };
      entry.waiters.push(waiter);
      this.waiting++;
    });
  }

  /** Rejects every waiter of the entry and forgets it. */
  private fail(entry: InFlight, err: unknown): void {
    this.drop(entry);
    for (const w of entry.waiters.splice(0)) {
      clearTimeout(w.timer);
      this.waiting--;
      w.reject(err);
    }
  }

  private drop(entry: InFlight): void {
    if (this.inflight.get(entry.key) === entry) this.inflight.delete(entry.key);
    for (const id of entry.wanted) if (this.wantedBy.get(id) === entry) this.wantedBy.delete(id);
    if (this.inflight.size === 0) this.early.clear();
  }

  /** Forgets in-flight transactions nobody waits for any more whose records never came (oldest first). */
  private sweep(): void {
    const horizon = Date.now() - this.lateMs;
    const cap = this.maxPending + this.remember;
    for (const entry of this.inflight.values()) {
      if (entry.createdAt >= horizon && this.inflight.size <= cap) break;
      if (entry.waiters.length === 0) this.drop(entry);
    }
  }

  private onBatch(batch: Batch<TxRisk | Finding>): void {
    if (this.inflight.size === 0) return;
    if (batch.topic === TOPICS.txRisk) {
      for (const m of batch.messages) this.onRisk(m.value as TxRisk);
    } else {
      for (const m of batch.messages) this.onFinding(m.value as Finding);
    }
  }

  private onRisk(r: TxRisk): void {
    if (r.runId !== this.runId) return;
    const entry = this.inflight.get(`${r.source}\u0000${r.txId}`);
    if (entry === undefined) return;
    entry.records.set(r.view, r);
    for (const id of r.findings ?? []) {
      if (entry.findings.has(id)) continue;
      const f = this.early.get(id);
      if (f !== undefined) {
        this.early.delete(id);
        entry.findings.set(id, f);
      } else {
        entry.wanted.add(id);
        this.wantedBy.set(id, entry);
      }
    }
    this.complete(entry);
  }

  private onFinding(f: Finding): void {
    if (f.runId !== this.runId) return;
    const entry = this.wantedBy.get(f.id);
    if (entry === undefined) {
      this.early.set(f.id, f);
      if (this.early.size > EARLY_FINDINGS_MAX) this.early.delete(this.early.keys().next().value as string);
      return;
    }
    this.wantedBy.delete(f.id);
    entry.wanted.delete(f.id);
    entry.findings.set(f.id, f);
    this.complete(entry);
  }

  /** Answers the entry's waiters once every record and finding it needs is here. */
  private complete(entry: InFlight): void {
    if (entry.records.size < entry.expect || entry.wanted.size > 0) return;
    this.drop(entry);
    // The transaction as sent first, then its view copies.
    const records = [...entry.records.values()].sort((a, b) => (a.view === 'account' ? -1 : b.view === 'account' ? 1 : a.view < b.view ? -1 : 1));
    const { score, reasons } = combineViews(records);
    const findings: Finding[] = [];
    for (const r of records) for (const id of r.findings ?? []) findings.push(entry.findings.get(id) as Finding);
    const result: ScoreResult = {
      eventId: entry.tx.id,
      account: entry.tx.account,
      score,
      reasons: reasons.map((x) => ({ detector: x.detector, ruleId: x.ruleId, score: x.score, summary: x.reason })),
      findings,
      rulesVersion: records.find((r) => r.rulesVersion !== undefined)?.rulesVersion ?? this.options.rulesVersion?.() ?? '',
      latencyMs: 0,
    };
    this.results.set(entry.key, { fingerprint: entry.fingerprint, result });
    if (this.results.size > this.remember) this.results.delete(this.results.keys().next().value as string);
    for (const w of entry.waiters.splice(0)) {
      clearTimeout(w.timer);
      this.waiting--;
      w.resolve({ ...result, latencyMs: elapsed(w.started) });
    }
  }
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 1000) / 1000;
}

/** The scorer of an API process (vigil run, vigil api) from its configuration; attach it to a transport. */
export function scorerFor(config: Config, rules?: RulesController): TransactionScorer {
  return new TransactionScorer({
    timeoutMs: config.VIGIL_SCORE_TIMEOUT_MS,
    maxPending: config.VIGIL_SCORE_MAX_PENDING,
    rulesVersion: rules ? () => rules.current.version : undefined,
    metrics: processObservability().metrics,
    deleteGroup: config.KAFKA_BROKERS
      ? async (group) => {
          const groups = kafkaGroups(config);
          try {
            await groups.deleteGroup(group);
          } finally {
            await groups.close();
          }
        }
      : undefined,
  });
}
