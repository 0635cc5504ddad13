/**
 * What a detector is. A detector holds no state itself: the runner keeps one state object per key
 * (venue:symbol, account…) and hands it in with each event, so state can be checkpointed to a store,
 * evicted when idle and restored on another worker.
 */
import type { z } from 'zod';
import type { CanonicalEvent, EventKind, EventView, Finding } from '../core/events.ts';

/** A finding as a detector produces it; the runner adds id, runId, detector and ruleId. */
export type FindingDraft = Omit<Finding, 'id' | 'runId' | 'detector' | 'ruleId'> & {
  /** Identifies the trigger within the key (usually eventRef of the triggering event); goes into the id. */
  trigger: string;
};

/**
 * A transaction rule's opinion of one transaction, findings or not: the transaction's risk score combines
 * the signals of every rule it touches (pipeline/risk-score.ts).
 */
export interface RiskSignal {
  readonly detector: string;
  readonly ruleId: string;
  /** In [0, 1]: 0 = nothing unusual, 1 = certainly what the rule looks for. */
  readonly score: number;
  /** One short sentence, e.g. "7 transactions in 10 min (usual 1.2)". */
  readonly reason: string;
}

export interface DetectorInstance<S = unknown> {
  readonly name: string;
  readonly ruleId: string;
  /**
   * Event kinds handled. With 'status' among them, the feed status markers of the symbol arrive in order
   * within the streams of the other kinds (copies on those topics), never from the status topic.
   */
  readonly kinds: readonly EventKind[];
  /**
   * Consume the copies of events keyed by another entity (events.ts eventViews), e.g. 'counterparty' for
   * fan_in; state is then per that entity. Absent: the events as keyed at the source.
   */
  readonly view?: EventView;
  /**
   * State key when it is not the message key. Must map every key of one partition routing key to the
   * same partition (e.g. the symbol, for market data routed by symbol), so one worker owns it.
   */
  keyOf?(ev: CanonicalEvent): string;
  /** Fresh state for a key seen for the first time. */
  newState(key: string): S;
  /**
   * Handles one event of the key whose state is given. Must be O(1) or O(log n) amortized: incremental
   * updates only, never a pass over the window. Findings are pushed to `out`; transaction rules also
   * push their opinion of each transaction to `signals` (when given).
   */
  onEvent(state: S, ev: CanonicalEvent, out: FindingDraft[], signals?: RiskSignal[]): void;
  /**
   * Plain JSON for checkpointing; fromJSON(toJSON(s)) continues exactly where s was. fromJSON must also
   * accept the JSON of an instance with other parameters (a rule changed by hot reload) and continue from
   * it under its own parameters, rebuilding or trimming what they change.
   */
  toJSON(state: S): unknown;
  fromJSON(json: unknown): S;
}

export interface DetectorSpec<P = unknown, S = unknown> {
  /** Public name used in the rules file, the API and ClickHouse (e.g. `price_jump`). */
  readonly name: string;
  readonly description: string;
  readonly kinds: readonly EventKind[];
  /** See DetectorInstance.view. */
  readonly view?: EventView;
  /** Parameters with their defaults; parse({}) gives the defaults. */
  readonly params: z.ZodType<P>;
  create(params: P, ruleId: string): DetectorInstance<S>;
}

/** Identifies one detector state: run (namespace), detector, rule and key (venue:symbol, account…). */
export interface StateRef {
  readonly runId: string;
  readonly detector: string;
  readonly ruleId: string;
  readonly key: string;
}

/** Told when a store's connection came back; `dataLost` when the server lost what was stored before. */
export interface StateStoreReconnect {
  dataLost: boolean;
}

/**
 * Where per-key detector state lives: memory on the embedded default, Redis when distributed.
 * Everything is namespaced by run id, so a replay never reads or overwrites live state.
 *
 * Batch operations take refs of any mix of runs, detectors and rules and cost one round trip.
 * A store that is temporarily unreachable makes operations wait and retry (bounded), then reject:
 * state is never dropped silently.
 */
export interface StateStore {
  readonly kind: 'memory' | 'redis';
  /**
   * True when the store keeps the very objects it is given (no serialization): the runner then hands
   * in live state objects and skips toJSON/fromJSON. False: values must be JSON (DetectorInstance.toJSON).
   */
  readonly byReference: boolean;
  /** Connects where there is something to connect to (bounded wait); idempotent. */
  open(): Promise<void>;
  /** States of the refs, in order; undefined where none is stored. One round trip. */
  load(refs: readonly StateRef[]): Promise<Array<unknown | undefined>>;
  /** Stores the states (atomically for the whole call where the store can). One round trip. */
  save(entries: ReadonlyArray<{ readonly ref: StateRef; readonly state: unknown }>): Promise<void>;
  delete(refs: readonly StateRef[]): Promise<void>;
  /**
   * Takes `name` within the run for ttlMs of wall time (SET NX PX): true when this call took it, false
   * while someone holds it. For cooldown/suppression windows and dedupe across workers.
   */
  claim(runId: string, name: string, ttlMs: number): Promise<boolean>;
  /** Removes every state and claim of the run; returns how many entries went. */
  clear(runId: string): Promise<number>;
  /** Registers a listener for reconnects (stores without a connection never call it); returns an unsubscribe. */
  onReconnect(listener: (info: StateStoreReconnect) => void): () => void;
  close(): Promise<void>;
}
