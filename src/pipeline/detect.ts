/**
 * Runs the configured detectors over the event topics. State is one object per (run, detector, key),
 * kept by the runner so it can be checkpointed and moved; detectors only see (state, event).
 *
 * State lifecycle per batch (one partition of one topic):
 *  1. events go through the detectors. Keys held in memory are handled in one synchronous pass; events
 *     of keys that are not wait (in order) for their states, loaded from the state store in one round
 *     trip for the whole batch, all detectors and runs (fresh state when the store has none);
 *  2. findings are sent to vigil.findings;
 *  3. the states the batch touched are saved, before the handler resolves. The transport commits a
 *     batch's offsets only after its handler resolves, so committed offsets never run ahead of durable
 *     state: a worker that takes a partition over resumes from the states saved with its last commit.
 *     Findings go out before the save: a crash in between re-delivers the batch, and the re-derived
 *     findings carry the same ids (storage collapses them); the reverse order could lose findings.
 *     The one window left is a crash after the save and before the commit: the re-delivered batch
 *     would meet states that already contain it. On Kafka (option `offsetCheckpoint`, `vigil detect`)
 *     the runner closes it: each save also stores, in the same store call (one MULTI on Redis), the
 *     offset up to which that topic partition has been applied; the first batch of a partition after
 *     an assignment reads it back and skips the messages a re-delivery repeats. So a takeover applies
 *     every event exactly once to the states. (Only on a durable log: in-process transports' offsets
 *     restart at 0 per transport, so there it stays off.)
 *
 * With the in-process memory store (byReference) states are never serialized: the store holds the very
 * objects the runner mutates, a new key is handed to it once, and step 3 costs nothing after that.
 *
 * Idle eviction runs on event time, not wall time: a key leaves memory when its partition's event time
 * (the largest event ts seen on that topic partition) has moved `idleMs` past the partition's event time
 * when the key was last seen. Replays then evict exactly as live does — a max-speed replay of a day
 * would evict nothing on a wall clock — the outcome is deterministic, and measuring against the
 * partition's own progress (not the key's ts) is immune to one venue's clock lagging another's. A
 * partition with no traffic does not sweep, but then nothing grows either. Eviction never changes
 * results: the state is saved already and is loaded back when the key returns.
 *
 * A `run` header on a message (when the transport carries headers) selects the run: the findings' run
 * id and the state namespace. Without one, the runner's default run id applies.
 *
 * When the store reconnects (Redis restarted, perhaps empty), every state held in memory is saved again
 * before the next batch resolves, so the store is whole again for a takeover. States of keys evicted
 * before a restart that lost Redis's data are gone: those keys start fresh when they return (counted
 * in `counters.stateLossEvents`; run Redis with persistence where that matters).
 */
import type { CanonicalEvent, EventKind, Finding, Transaction } from '../core/events.ts';
import { findingId } from '../core/ids.ts';
import type { DetectorInstance, FindingDraft, RiskSignal, StateRef, StateStore, StateStoreReconnect } from '../detectors/types.ts';
import { combineRisk, type TxRisk } from './risk-score.ts';
import { detectorSpecs } from '../detectors/registry.ts';
import { MemoryStateStore } from '../state/memory.ts';
import { DETECTOR_SAMPLE_EVERY, type PipelineMetrics } from './metrics.ts';
import {
  EVENT_TOPICS,
  TOPICS,
  type Batch,
  type DeliveredMessage,
  type OutgoingMessage,
  type SubscribeOptions,
  type Subscription,
  type TopicPartition,
  type Transport,
  STATUS_COPY_HEADER,
  VIEW_HEADER,
} from '../transport/types.ts';

/** Default for VIGIL_STATE_IDLE_MS: 10 minutes of event time. */
export const DEFAULT_STATE_IDLE_MS = 600_000;
/** States per save call when everything is saved again (after a reconnect, on stop). */
const SAVE_CHUNK = 1_000;
/** The state-store run namespace of offset checkpoints (`@` never appears in a run id). */
export const OFFSETS_RUN = '@offsets';
/**
 * A checkpoint this far ahead of the first offset delivered after an assignment cannot come from this
 * topic's history (a re-delivery repeats at most a fetch): it is left over from a deleted and
 * re-created topic, and ignored.
 */
const STALE_CHECKPOINT_GAP = 1_000_000;

/**
 * The event topics detectors consume (the topics of their event kinds), in EVENT_TOPICS order. Never the
 * status topic: status markers reach detectors as copies inside the data topics (ingest.ts).
 */
export function detectorTopics(detectors: readonly Pick<DetectorInstance, 'kinds'>[]): string[] {
  const kinds = new Set(detectors.flatMap((d) => [...d.kinds]).filter((k) => k !== 'status'));
  return EVENT_TOPICS.filter((t) => [...kinds].some((k) => TOPICS[k] === t));
}

/** The topics of every registered detector (what a worker consumes so any rule can be added later). */
export function allDetectorTopics(): string[] {
  return detectorTopics(Object.values(detectorSpecs));
}

/** Slots by event kind, for one topic and view (`''`: events as keyed at the source). */
type Dispatch = Map<string, Map<EventKind, Slot[]>>;

interface Slot {
  detector: DetectorInstance;
  /** run id → key → entry */
  runs: Map<string, Map<string, Entry>>;
  /** The last run looked up (almost always the default one), to skip a Map lookup per event. */
  lastRunId: string | undefined;
  lastRun: Map<string, Entry> | undefined;
  /**
   * The last key looked up in lastRun and its entry (a batch is mostly one instrument's events), to skip
   * the key lookup too; cleared when the run changes or that entry leaves memory.
   */
  lastKey: string | undefined;
  lastEntry: Entry | undefined;
  /** Rules changed: states loaded from a by-reference store were made by the previous instance. */
  migrateLoaded?: boolean;
}

interface Entry {
  readonly slot: Slot;
  readonly ref: StateRef;
  /** Undefined only while `loading`. */
  state: unknown;
  loading: Promise<void> | undefined;
  /** The partition's event-time watermark when the key was last seen. */
  lastSeen: number;
  /** The topic partition that last touched the key (`topic#partition`). */
  part: string;
  /** Changed since the last save (stores that serialize). */
  dirty: boolean;
  /** By-reference stores: the store holds this state object already. */
  stored: boolean;
}

/** A transaction (or a view's copy of it) whose rules' signals make its risk score. */
interface RiskRecord {
  ev: CanonicalEvent;
  view: string;
  key: string;
  runId: string;
  signals: RiskSignal[];
  /** Ids of the findings the event raised (in this view), so a caller waiting for its score can collect them. */
  findings?: string[];
}

interface Latency {
  detector: string;
  recvTs: number;
}

interface PartitionClock {
  watermark: number;
  nextSweep: number;
}

export interface DetectorRunnerOptions {
  /** Consumer group (default vigil-detect). */
  group?: string;
  /** Where state lives; default: a memory store of this runner's own. */
  store?: StateStore;
  /**
   * Kafka: store per topic partition the offset applied so far with the states, and skip re-delivered
   * messages after a takeover (see above). `namespace` (the topic prefix) keeps deployments apart.
   * Only used with a store that serializes (Redis): a memory store dies with its process anyway.
   */
  offsetCheckpoint?: { namespace: string };
  /** Event time a key may stay unseen before it leaves memory (VIGIL_STATE_IDLE_MS). */
  idleMs?: number;
  /**
   * Topics to consume beyond those of the detectors given, so a later rules change (setDetectors) can
   * add rules on them without resubscribing. Default: none.
   */
  topics?: readonly string[];
  /**
   * Where each transaction's risk score goes (combined from the signals of the rules that judged it, one
   * record per transaction and view). Default: sent to vigil.tx.risk.
   */
  riskScores?: 'topic' | 'none';
  /**
   * Exports the counters and observes latencies: each batch's detect pass, one event in
   * DETECTOR_SAMPLE_EVERY timed per rule, event-to-finding time, findings by severity.
   */
  metrics?: PipelineMetrics;
  /**
   * Observe event-to-finding latency (wall clock minus the event's recvTs): meaningful only for events
   * received now. Default: when the run id is `live`.
   */
  eventToFindingLatency?: boolean;
  log?: (message: string, extra?: Record<string, unknown>) => void;
}

export interface DetectorCounters {
  events: number;
  findings: Record<string, number>;
  /** States read from the store (keys that came back or were taken over), and load round trips. */
  statesLoaded: number;
  loadCalls: number;
  /** States written to the store, and save round trips. */
  statesSaved: number;
  saveCalls: number;
  /** Keys dropped from memory as idle, and on partition revoke. */
  evicted: number;
  revoked: number;
  /** Store reconnects after which everything in memory was saved again; of those, ones that lost data. */
  recheckpoints: number;
  stateLossEvents: number;
  /** Re-delivered messages skipped because the saved states contain them already (offset checkpoints). */
  skippedRedelivered: number;
  /** Transaction risk scores sent (one per transaction and view). */
  riskScores: number;
}

export class DetectorRunner {
  readonly counters: DetectorCounters = {
    events: 0,
    findings: {},
    statesLoaded: 0,
    loadCalls: 0,
    statesSaved: 0,
    saveCalls: 0,
    evicted: 0,
    revoked: 0,
    recheckpoints: 0,
    stateLossEvents: 0,
    skippedRedelivered: 0,
    riskScores: 0,
  };
  readonly store: StateStore;
  /** topic → view → kind → slots; rebuilt when the rules change. */
  private dispatch = new Map<string, Dispatch>();
  private slots: Slot[] = [];
  /** Topics subscribed (fixed at start; a rules change can only use these). */
  private topics: string[] = [];
  private readonly clocks = new Map<string, PartitionClock>();
  private readonly byReference: boolean;
  private readonly idleMs: number;
  private readonly group: string;
  private readonly log: (message: string, extra?: Record<string, unknown>) => void;
  private subscription?: Subscription;
  private unsubscribeReconnect?: () => void;
  /** Everything in memory must be saved again (the store reconnected). */
  private fullSaveNeeded = false;
  private fullSave: Promise<void> | undefined;
  /** Offset checkpoints per topic partition (`topic#partition` → last offset applied), when enabled. */
  private readonly checkpoints = new Map<string, number>();
  private readonly checkpointNamespace: string | undefined;
  private readonly extraTopics: readonly string[];
  private readonly riskSink: 'topic' | 'none' | undefined;
  /** The rules file version of the rules running (stamped on risk records), when they come from one. */
  private rulesVersion: string | undefined;
  private readonly metrics: PipelineMetrics | undefined;
  private readonly latency: boolean;
  private detachMetrics: (() => void) | undefined;
  /** Counts down to the next event timed per rule (metrics only). */
  private sampleCountdown = DETECTOR_SAMPLE_EVERY;

  constructor(
    private readonly transport: Transport,
    detectors: readonly DetectorInstance[],
    private readonly runId: string,
    options: DetectorRunnerOptions | string = {},
  ) {
    const opts: DetectorRunnerOptions = typeof options === 'string' ? { group: options } : options;
    this.group = opts.group ?? 'vigil-detect';
    this.store = opts.store ?? new MemoryStateStore();
    this.byReference = this.store.byReference;
    this.idleMs = opts.idleMs ?? DEFAULT_STATE_IDLE_MS;
    if (!(this.idleMs > 0)) throw new RangeError(`idleMs must be positive, got ${this.idleMs}`);
    this.log = opts.log ?? (() => undefined);
    this.checkpointNamespace = opts.offsetCheckpoint && !this.byReference ? opts.offsetCheckpoint.namespace || '-' : undefined;
    this.extraTopics = opts.topics ?? [];
    this.riskSink = opts.riskScores;
    this.metrics = opts.metrics;
    this.latency = opts.metrics !== undefined && (opts.eventToFindingLatency ?? runId === 'live');
    this.detachMetrics = opts.metrics?.attach({ kind: 'detectors', runner: this });
    for (const detector of detectors) this.slots.push(this.newSlot(detector));
    this.rebuildDispatch();
  }

  private newSlot(detector: DetectorInstance): Slot {
    this.counters.findings[detector.name] ??= 0;
    return { detector, runs: new Map(), lastRunId: undefined, lastRun: undefined, lastKey: undefined, lastEntry: undefined };
  }

  private rebuildDispatch(): void {
    const dispatch = new Map<string, Dispatch>();
    for (const slot of this.slots) {
      const d = slot.detector;
      const view = d.view ?? '';
      const dataKinds = d.kinds.filter((k) => k !== 'status');
      const add = (topic: string, kind: EventKind): void => {
        let byView = dispatch.get(topic);
        if (!byView) dispatch.set(topic, (byView = new Map()));
        let byKind = byView.get(view);
        if (!byKind) byView.set(view, (byKind = new Map()));
        let list = byKind.get(kind);
        if (!list) byKind.set(kind, (list = []));
        list.push(slot);
      };
      for (const kind of dataKinds) {
        add(TOPICS[kind], kind);
        // Status markers come as copies inside the data topics, in order with that topic's events.
        if (d.kinds.includes('status')) add(TOPICS[kind], 'status');
      }
    }
    this.dispatch = dispatch;
    this.rulesVersion = this.slots.map((s) => (s.detector as { settings?: { rulesVersion?: string } }).settings?.rulesVersion).find((v) => v !== undefined);
  }

  /** The detectors running now (rule instances), in rules order. */
  detectors(): DetectorInstance[] {
    return this.slots.map((s) => s.detector);
  }

  /**
   * Swaps the detectors for a new set (a rules change), between two events: a rule whose id and detector
   * stay keeps its keys, their states carried over through toJSON/fromJSON into the new instance (which
   * rebuilds what its parameters change); new rules start empty; removed rules' states leave memory.
   * Only topics subscribed at start are available: a rule needing another topic is refused.
   */
  setDetectors(detectors: readonly DetectorInstance[]): void {
    if (this.subscription) {
      const missing = detectorTopics(detectors).filter((t) => !this.topics.includes(t));
      if (missing.length > 0) throw new RangeError(`the new rules need topics this worker does not consume (${missing.join(', ')}): restart it`);
    }
    const old = new Map(this.slots.map((s) => [s.detector.ruleId, s]));
    const next: Slot[] = [];
    for (const detector of detectors) {
      const slot = old.get(detector.ruleId);
      if (!slot || slot.detector.name !== detector.name) {
        next.push(this.newSlot(detector));
        continue;
      }
      old.delete(detector.ruleId);
      if (slot.detector !== detector) {
        const before = slot.detector;
        for (const keys of slot.runs.values()) {
          for (const e of keys.values()) {
            if (e.state === undefined) continue; // loading: the new instance reads it from the store
            e.state = detector.fromJSON(JSON.parse(JSON.stringify(before.toJSON(e.state))));
            if (this.byReference) {
              e.stored = false; // hand the new object to the store with the next batch that touches it
            } else e.dirty = true;
          }
        }
        slot.detector = detector;
        // States evicted to a by-reference store before the swap are the old instance's objects.
        if (this.byReference) slot.migrateLoaded = true;
      }
      next.push(slot);
    }
    this.slots = next;
    this.rebuildDispatch();
  }

  async start(): Promise<void> {
    const topics = [...new Set([...detectorTopics(this.slots.map((s) => s.detector)), ...this.extraTopics])];
    this.topics = EVENT_TOPICS.filter((t) => topics.includes(t));
    this.unsubscribeReconnect = this.store.onReconnect((info) => this.onStoreReconnect(info));
    const options: SubscribeOptions<CanonicalEvent> = {
      group: this.group,
      topics: this.topics,
      eachBatch: (batch) => this.handle(batch),
      onRevoke: (partitions) => this.revoke(partitions),
    };
    this.subscription = await this.transport.subscribe<CanonicalEvent>(options);
  }

  private runMap(slot: Slot, runId: string): Map<string, Entry> {
    if (slot.lastRunId === runId && slot.lastRun) return slot.lastRun;
    let map = slot.runs.get(runId);
    if (!map) slot.runs.set(runId, (map = new Map()));
    slot.lastRunId = runId;
    slot.lastRun = map;
    slot.lastKey = undefined;
    slot.lastEntry = undefined;
    return map;
  }

  private clock(part: string): PartitionClock {
    let c = this.clocks.get(part);
    if (!c) this.clocks.set(part, (c = { watermark: Number.NEGATIVE_INFINITY, nextSweep: Number.NEGATIVE_INFINITY }));
    return c;
  }

  private checkpointRef(part: string): StateRef {
    return { runId: OFFSETS_RUN, detector: this.group, ruleId: this.checkpointNamespace ?? '-', key: part };
  }

  /** The offset up to which the partition's messages are in the saved states (-1: none), read once per assignment. */
  private async checkpointOf(part: string, firstOffset: number): Promise<number> {
    const known = this.checkpoints.get(part);
    if (known !== undefined) return known;
    this.counters.loadCalls++;
    const [v] = await this.store.load([this.checkpointRef(part)]);
    let applied = typeof v === 'number' && Number.isFinite(v) ? v : -1;
    if (applied >= firstOffset + STALE_CHECKPOINT_GAP) {
      this.log(`offset checkpoint of ${part} (${applied}) is far beyond the stream (${firstOffset}): left from an earlier topic, ignored`);
      applied = -1;
    }
    this.checkpoints.set(part, applied);
    return applied;
  }

  private async handle(batch: Batch<CanonicalEvent>): Promise<void> {
    try {
      await this.handleBatch(batch);
    } catch (err) {
      // The store may or may not hold this batch's save: read the checkpoint again with the states.
      if (this.checkpointNamespace !== undefined) this.checkpoints.delete(`${batch.topic}#${batch.partition}`);
      throw err;
    }
  }

  private async handleBatch(batch: Batch<CanonicalEvent>): Promise<void> {
    const part = `${batch.topic}#${batch.partition}`;
    const clock = this.clock(part);
    let messages = batch.messages;
    const last = messages[messages.length - 1];
    if (last === undefined) return;
    let checkpoint: StateRef | undefined;
    if (this.checkpointNamespace !== undefined) {
      checkpoint = this.checkpointRef(part);
      const applied = await this.checkpointOf(part, (messages[0] as DeliveredMessage<CanonicalEvent>).offset);
      if (applied >= (messages[0] as DeliveredMessage<CanonicalEvent>).offset) {
        const before = messages.length;
        messages = messages.filter((m) => m.offset > applied);
        this.counters.skippedRedelivered += before - messages.length;
        if (messages.length === 0) return;
      }
    }

    // 1. Detect, in one pass, on keys held in memory; events of keys that are not (or still loading)
    //    wait, in order, until their states come from the store — one round trip for the batch.
    //    Per key the order of events is kept; findings of different keys were never ordered.
    const dirty: Entry[] = [];
    const drafts: FindingDraft[] = [];
    const out: OutgoingMessage<Finding>[] = [];
    const byReference = this.byReference;
    let missing: Entry[] | undefined;
    let pending: Set<Promise<void>> | undefined;
    let waitingEntries: Entry[] | undefined;
    let waitingEvents: CanonicalEvent[] | undefined;
    let wm = clock.watermark;
    let handled = 0;
    const dispatch = this.dispatch.get(batch.topic);
    let risks: RiskRecord[] | undefined;
    let waitingRisks: Array<RiskRecord | undefined> | undefined;
    const metrics = this.metrics;
    const started = metrics === undefined ? 0 : performance.now();
    // Detector and trigger recvTs of the batch's findings (event-to-finding latency).
    const latencies: Latency[] | undefined = this.latency ? [] : undefined;
    // The slots of the last (view, kind) seen: a batch is one topic, mostly one kind and view.
    let lastView: string | undefined;
    let lastKind: EventKind | undefined;
    let lastSlots: Slot[] | undefined;
    for (const m of messages) {
      const ev = m.value;
      const headers = m.headers;
      const view = headers?.[VIEW_HEADER] ?? '';
      let slots: Slot[] | undefined;
      if (ev.kind === lastKind && view === lastView) slots = lastSlots;
      else {
        slots = lastSlots = dispatch?.get(view)?.get(ev.kind);
        lastKind = ev.kind;
        lastView = view;
      }
      // Every transaction and view copy gets its record, also in a view no rule reads (score 0), so a
      // caller waiting for a transaction's score (scoring.ts) knows how many records will come.
      let rec: RiskRecord | undefined;
      if (ev.kind === 'transaction' && this.riskSink !== 'none' && headers?.[STATUS_COPY_HEADER] === undefined) {
        rec = { ev, view: view || 'account', key: m.key, runId: headers?.run || this.runId, signals: [] };
        (risks ??= []).push(rec);
      }
      if (slots === undefined) continue;
      handled++;
      // One event in DETECTOR_SAMPLE_EVERY is timed in every rule it reaches; the others are not.
      let timed = false;
      if (metrics !== undefined && --this.sampleCountdown <= 0) {
        this.sampleCountdown = DETECTOR_SAMPLE_EVERY;
        timed = true;
      }
      if (ev.ts > wm) wm = ev.ts;
      const runId = headers?.run || this.runId;
      const signals = rec?.signals;
      for (let i = 0; i < slots.length; i++) {
        const slot = slots[i] as Slot;
        const detector = slot.detector;
        const key = detector.keyOf === undefined ? m.key : detector.keyOf(ev);
        // The slot's last entry when the key and run are those of its last event (lastKey is only set
        // with lastEntry, and cleared when the run changes): no lookup, and the slot stays untouched.
        let e = slot.lastKey === key && slot.lastRunId === runId ? slot.lastEntry : undefined;
        let ready = true;
        if (e === undefined) {
          const keys = this.runMap(slot, runId);
          e = keys.get(key);
          if (e === undefined) {
            e = { slot, ref: { runId, detector: detector.name, ruleId: detector.ruleId, key }, state: undefined, loading: undefined, lastSeen: wm, part, dirty: false, stored: false };
            keys.set(key, e);
            (missing ??= []).push(e);
            ready = false;
          }
          slot.lastKey = key;
          slot.lastEntry = e;
        }
        if (ready && (e.loading !== undefined || e.state === undefined)) {
          // Loading in another batch, or created earlier in this one (its load starts after this pass).
          if (e.loading !== undefined) (pending ??= new Set()).add(e.loading);
          ready = false;
        }
        // Claimed by this partition from now on, so another partition's sweep can't evict it mid-batch.
        e.lastSeen = wm;
        e.part = part;
        if (byReference) {
          if (!e.stored) {
            e.stored = true;
            dirty.push(e);
          }
        } else if (!e.dirty) {
          e.dirty = true;
          dirty.push(e);
        }
        if (ready) {
          if (timed) {
            const t = performance.now();
            detector.onEvent(e.state, ev, drafts, signals);
            metrics!.observeDetectorEvent(detector.name, (performance.now() - t) / 1000);
          } else detector.onEvent(e.state, ev, drafts, signals);
          if (drafts.length > 0) this.emit(e, drafts, out, ev, latencies, rec);
        } else {
          (waitingEntries ??= []).push(e);
          (waitingEvents ??= []).push(ev);
          if (rec !== undefined || waitingRisks !== undefined) {
            waitingRisks ??= new Array<RiskRecord | undefined>(waitingEntries.length - 1).fill(undefined);
            waitingRisks.push(rec);
          }
        }
      }
    }
    this.counters.events += handled;
    clock.watermark = wm;
    let detectMs = metrics === undefined ? 0 : performance.now() - started;
    if (waitingEntries !== undefined && waitingEvents !== undefined) {
      if (missing) await this.loadEntries(missing);
      if (pending) await Promise.all(pending);
      const resumed = metrics === undefined ? 0 : performance.now();
      for (let i = 0; i < waitingEntries.length; i++) {
        const e = waitingEntries[i] as Entry;
        const ev = waitingEvents[i] as CanonicalEvent;
        const rec = waitingRisks?.[i];
        e.slot.detector.onEvent(e.state, ev, drafts, rec?.signals);
        if (drafts.length > 0) this.emit(e, drafts, out, ev, latencies, rec);
      }
      if (metrics !== undefined) detectMs += performance.now() - resumed;
    }
    // The detect pass alone (state loads excluded).
    if (metrics !== undefined && handled > 0) metrics.observeDetectBatch(detectMs / 1000, handled);
    if (risks !== undefined) {
      const scores: OutgoingMessage<TxRisk>[] = risks.map((r) => {
        const value = combineRisk(r.ev as Transaction, r.view, r.signals, r.runId);
        if (r.findings !== undefined) value.findings = r.findings;
        if (this.rulesVersion !== undefined) value.rulesVersion = this.rulesVersion;
        return r.runId === this.runId ? { key: r.key, value } : { key: r.key, value, headers: { run: r.runId } };
      });
      this.counters.riskScores += scores.length;
      await this.transport.send(TOPICS.txRisk, scores);
    }

    try {
      // 2. Findings, then 3. the states that produced them.
      if (out.length > 0) await this.transport.send(TOPICS.findings, out);
      if (latencies !== undefined && latencies.length > 0) {
        const now = Date.now();
        for (const l of latencies) metrics!.observeEventToFinding(l.detector, Math.max(0, now - l.recvTs) / 1000);
      }
      if (dirty.length > 0) {
        // With checkpoints, the partition's offset goes in the same store call as its states.
        await this.saveEntries(dirty, checkpoint && [{ ref: checkpoint, state: last.offset }]);
        if (checkpoint) this.checkpoints.set(part, last.offset);
      }
      if (this.fullSaveNeeded || this.fullSave) await this.saveAllNow();
    } catch (err) {
      // Memory is now ahead of the store and of the committed offsets. Forget the batch's keys, so a
      // re-delivery starts from the saved states instead of applying the batch twice.
      if (!byReference) this.forget(dirty);
      throw err;
    }

    // 4. Idle keys of this partition leave memory (everything here is saved now).
    if (wm >= clock.nextSweep) {
      clock.nextSweep = wm + Math.max(1, Math.floor(this.idleMs / 4));
      this.evict((e) => e.part === part && e.lastSeen < wm - this.idleMs, 'idle');
    }
  }

  /** Turns the drafts of one entry's event into findings (and empties drafts). */
  private emit(e: Entry, drafts: FindingDraft[], out: OutgoingMessage<Finding>[], ev: CanonicalEvent, latencies: Latency[] | undefined, risk?: RiskRecord): void {
    const detector = e.slot.detector;
    for (const d of drafts) {
      const f = this.toFinding(detector, d, e.ref.runId);
      out.push(f.runId === this.runId ? { key: f.key, value: f } : { key: f.key, value: f, headers: { run: f.runId } });
      if (risk !== undefined) (risk.findings ??= []).push(f.id);
      if (this.metrics !== undefined) {
        this.metrics.observeFinding(detector.name, f.severity);
        if (latencies !== undefined && ev.recvTs !== undefined) latencies.push({ detector: detector.name, recvTs: ev.recvTs });
      }
    }
    this.counters.findings[detector.name] = (this.counters.findings[detector.name] ?? 0) + drafts.length;
    drafts.length = 0;
  }

  private async loadEntries(entries: Entry[]): Promise<void> {
    const loading = (async () => {
      this.counters.loadCalls++;
      const values = await this.store.load(entries.map((e) => e.ref));
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i] as Entry;
        const v = values[i];
        const detector = e.slot.detector;
        if (v === undefined) {
          e.state = detector.newState(e.ref.key);
        } else {
          e.state = !this.byReference ? detector.fromJSON(v) : e.slot.migrateLoaded ? detector.fromJSON(JSON.parse(JSON.stringify(detector.toJSON(v)))) : v;
          e.stored = true;
          this.counters.statesLoaded++;
        }
      }
    })();
    for (const e of entries) e.loading = loading;
    try {
      await loading;
    } catch (err) {
      this.forget(entries);
      throw err;
    } finally {
      for (const e of entries) e.loading = undefined;
    }
  }

  /** Drops entries from memory (only the very entries given, not a newer one under the same key). */
  private forget(entries: readonly Entry[]): void {
    for (const e of entries) {
      const keys = e.slot.runs.get(e.ref.runId);
      if (keys?.get(e.ref.key) === e) keys.delete(e.ref.key);
      if (e.slot.lastEntry === e) {
        e.slot.lastEntry = undefined;
        e.slot.lastKey = undefined;
      }
      e.dirty = false;
    }
  }

  private async saveEntries(entries: readonly Entry[], extra?: ReadonlyArray<{ ref: StateRef; state: unknown }>): Promise<void> {
    const byReference = this.byReference;
    const payload = entries.map((e) => ({ ref: e.ref, state: byReference ? e.state : e.slot.detector.toJSON(e.state) }));
    for (const e of entries) e.dirty = false;
    this.counters.saveCalls++;
    this.counters.statesSaved += payload.length;
    await this.store.save(extra && extra.length > 0 ? [...payload, ...extra] : payload);
  }

  /** The offset checkpoints held in memory, as store entries. */
  private checkpointEntries(filter?: (part: string) => boolean): Array<{ ref: StateRef; state: unknown }> {
    if (this.checkpointNamespace === undefined) return [];
    const out: Array<{ ref: StateRef; state: unknown }> = [];
    for (const [part, offset] of this.checkpoints) if (offset >= 0 && (!filter || filter(part))) out.push({ ref: this.checkpointRef(part), state: offset });
    return out;
  }

  /** Every loaded entry, optionally filtered. */
  private *entries(filter?: (e: Entry) => boolean): Generator<Entry> {
    for (const slot of this.slots) {
      for (const keys of slot.runs.values()) {
        for (const e of keys.values()) if (e.loading === undefined && (!filter || filter(e))) yield e;
      }
    }
  }

  private evict(filter: (e: Entry) => boolean, why: 'idle' | 'revoke'): number {
    let n = 0;
    for (const slot of this.slots) {
      for (const [runId, keys] of slot.runs) {
        for (const [key, e] of keys) {
          if (e.loading !== undefined || e.dirty || (this.byReference && !e.stored) || !filter(e)) continue;
          keys.delete(key);
          if (slot.lastEntry === e) {
            slot.lastEntry = undefined;
            slot.lastKey = undefined;
          }
          n++;
        }
        if (keys.size === 0 && runId !== this.runId) {
          slot.runs.delete(runId);
          if (slot.lastRun === keys) {
            slot.lastRun = undefined;
            slot.lastRunId = undefined;
            slot.lastKey = undefined;
            slot.lastEntry = undefined;
          }
        }
      }
    }
    if (why === 'idle') this.counters.evicted += n;
    else this.counters.revoked += n;
    return n;
  }

  private onStoreReconnect(info: StateStoreReconnect): void {
    if (this.byReference) return;
    this.counters.recheckpoints++;
    if (info.dataLost) {
      this.counters.stateLossEvents++;
      this.log('state store lost its data: saving every state held in memory again; keys evicted before start fresh');
    }
    this.fullSaveNeeded = true;
    this.saveAllNow().catch((e: unknown) => this.log('saving states after a store reconnect failed (retried with the next batch)', { error: (e as Error).message }));
  }

  /** Saves every state in memory (serialized, in chunks) while a full save is needed; one run at a time. */
  private saveAllNow(): Promise<void> {
    this.fullSave ??= (async () => {
      try {
        while (this.fullSaveNeeded) {
          this.fullSaveNeeded = false;
          try {
            let chunk: Entry[] = [];
            for (const e of this.entries()) {
              chunk.push(e);
              if (chunk.length >= SAVE_CHUNK) {
                await this.saveEntries(chunk);
                chunk = [];
              }
            }
            // The offset checkpoints go with the last chunk (after every state they vouch for).
            const checkpoints = this.checkpointEntries();
            if (chunk.length > 0 || checkpoints.length > 0) await this.saveEntries(chunk, checkpoints);
          } catch (err) {
            this.fullSaveNeeded = true;
            throw err;
          }
        }
      } finally {
        this.fullSave = undefined;
      }
    })();
    return this.fullSave;
  }

  /**
   * The transport takes partitions away (rebalance): their keys get a final save and leave memory, so
   * the next owner loads exactly what this worker had.
   */
  async revoke(partitions: readonly TopicPartition[]): Promise<void> {
    // A re-save after a store reconnect covers keys that are clean here but gone from the store: finish it first.
    if (this.fullSaveNeeded || this.fullSave) await this.saveAllNow();
    const parts = new Set(partitions.map((p) => `${p.topic}#${p.partition}`));
    const inParts = (e: Entry) => parts.has(e.part);
    const unsaved = [...this.entries((e) => inParts(e) && (e.dirty || (this.byReference && !e.stored)))];
    if (unsaved.length > 0) await this.saveEntries(unsaved, this.checkpointEntries((p) => parts.has(p)));
    for (const e of unsaved) e.stored = true;
    this.evict(inParts, 'revoke');
    for (const p of parts) {
      this.clocks.delete(p);
      // The next owner (perhaps this worker again) reads the checkpoint back from the store.
      this.checkpoints.delete(p);
    }
  }

  private toFinding(detector: DetectorInstance, draft: FindingDraft, runId: string): Finding {
    const { trigger, ...rest } = draft;
    return {
      // The trigger's event time is part of the identity, so the same trade id at another time is another finding.
      id: findingId(detector.name, detector.ruleId, draft.key, `${trigger}@${draft.ts}`),
      runId,
      detector: detector.name,
      ruleId: detector.ruleId,
      ...rest,
    };
  }

  /** Keys with state in memory, over detectors and runs (for metrics and tests). */
  keyCount(): number {
    let n = 0;
    for (const slot of this.slots) for (const keys of slot.runs.values()) n += keys.size;
    return n;
  }

  /** Stops consuming; states are saved already (each batch saves before it resolves). */
  async stop(): Promise<void> {
    await this.subscription?.stop();
    this.subscription = undefined;
    this.unsubscribeReconnect?.();
    this.unsubscribeReconnect = undefined;
    try {
      if (this.fullSaveNeeded || this.fullSave) await this.saveAllNow();
    } finally {
      this.detachMetrics?.();
      this.detachMetrics = undefined;
    }
  }
}
