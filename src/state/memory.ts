/**
 * The embedded state store: one Map per process, holding the detectors' live state objects by
 * reference (no serialization, so the in-process path costs what it did before stores existed).
 * Claims expire like Redis keys with PX: by wall time, checked on access.
 */
import type { StateRef, StateStore, StateStoreReconnect } from '../detectors/types.ts';

export interface MemoryStateStoreOptions {
  /** Wall clock for claim expiry (tests move it by hand). */
  now?: () => number;
}

const SEP = '\u0000';
const stateKey = (r: StateRef): string => `${r.runId}${SEP}${r.detector}${SEP}${r.ruleId}${SEP}${r.key}`;
const claimKey = (runId: string, name: string): string => `${runId}${SEP}${name}`;

export class MemoryStateStore implements StateStore {
  readonly kind = 'memory' as const;
  readonly byReference = true;
  private readonly states = new Map<string, unknown>();
  /** claim key → expiry (wall ms) */
  private readonly claims = new Map<string, number>();
  private pruneAt = 1024;
  private readonly now: () => number;

  constructor(options: MemoryStateStoreOptions = {}) {
    this.now = options.now ?? Date.now;
  }

  async open(): Promise<void> {}

  async load(refs: readonly StateRef[]): Promise<Array<unknown | undefined>> {
    return refs.map((r) => this.states.get(stateKey(r)));
  }

  async save(entries: ReadonlyArray<{ readonly ref: StateRef; readonly state: unknown }>): Promise<void> {
    for (const e of entries) this.states.set(stateKey(e.ref), e.state);
  }

  async delete(refs: readonly StateRef[]): Promise<void> {
    for (const r of refs) this.states.delete(stateKey(r));
  }

  async claim(runId: string, name: string, ttlMs: number): Promise<boolean> {
    if (!(ttlMs > 0)) throw new RangeError(`claim: ttlMs must be a positive number of milliseconds, got ${ttlMs}`);
    const now = this.now();
    const k = claimKey(runId, name);
    const until = this.claims.get(k);
    if (until !== undefined && until > now) return false;
    this.claims.set(k, now + Math.ceil(ttlMs));
    if (this.claims.size >= this.pruneAt) this.prune(now);
    return true;
  }

  /** Drops expired claims; runs when the map doubled since the last prune, so the cost is amortized O(1). */
  private prune(now: number): void {
    for (const [k, until] of this.claims) if (until <= now) this.claims.delete(k);
    this.pruneAt = Math.max(1024, 2 * this.claims.size);
  }

  async clear(runId: string): Promise<number> {
    const prefix = `${runId}${SEP}`;
    let n = 0;
    for (const map of [this.states, this.claims] as Map<string, unknown>[]) {
      for (const k of map.keys()) {
        if (k.startsWith(prefix)) {
          map.delete(k);
          n++;
        }
      }
    }
    return n;
  }

  /** Stored states (all runs). */
  get size(): number {
    return this.states.size;
  }

  onReconnect(_listener: (info: StateStoreReconnect) => void): () => void {
    return () => undefined; // nothing to reconnect to
  }

  async close(): Promise<void> {
    this.states.clear();
    this.claims.clear();
  }
}
