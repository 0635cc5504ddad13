/**
 * What a detector is. A detector holds no state itself: the runner keeps one state object per key
 * (venue:symbol, account…) and hands it in with each event, so state can be checkpointed to a store,
 * evicted when idle and restored on another worker.
 */
import type { z } from 'zod';
import type { CanonicalEvent, EventKind, Finding } from '../core/events.ts';

/** A finding as a detector produces it; the runner adds id, runId, detector and ruleId. */
export type FindingDraft = Omit<Finding, 'id' | 'runId' | 'detector' | 'ruleId'> & {
  /** Identifies the trigger within the key (usually eventRef of the triggering event); goes into the id. */
  trigger: string;
};

export interface DetectorInstance<S = unknown> {
  readonly name: string;
  readonly ruleId: string;
  readonly kinds: readonly EventKind[];
  /** Fresh state for a key seen for the first time. */
  newState(key: string): S;
  /**
   * Handles one event of the key whose state is given. Must be O(1) or O(log n) amortized: incremental
   * updates only, never a pass over the window. Findings are pushed to `out`.
   */
  onEvent(state: S, ev: CanonicalEvent, out: FindingDraft[]): void;
  /** Plain JSON for checkpointing; fromJSON(toJSON(s)) continues exactly where s was. */
  toJSON(state: S): unknown;
  fromJSON(json: unknown): S;
}

export interface DetectorSpec<P = unknown, S = unknown> {
  /** Public name used in the rules file, the API and ClickHouse (e.g. `price_jump`). */
  readonly name: string;
  readonly description: string;
  readonly kinds: readonly EventKind[];
  /** Parameters with their defaults; parse({}) gives the defaults. */
  readonly params: z.ZodType<P>;
  create(params: P, ruleId: string): DetectorInstance<S>;
}

/** Where per-key detector state lives (memory on the embedded default; Redis when distributed). */
export interface StateStore {
  load(detector: string, ruleId: string, key: string): Promise<unknown | undefined>;
  save(detector: string, ruleId: string, entries: ReadonlyArray<{ key: string; state: unknown }>): Promise<void>;
}
