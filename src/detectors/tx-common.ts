/**
 * Small pieces shared by the transaction rules (velocity, amount_anomaly, structuring, impossible_travel,
 * card_testing): transaction filters, the risk-signal mapping, an event-time decayed sum for "the
 * account's usual rate", bounded LRU sub-state maps and JSON validation helpers.
 */
import { z } from 'zod';
import { eventRef, type Transaction } from '../core/events.ts';
import { SortedWindow } from '../stats/sorted-window.ts';
import { formatDuration, formatFixed } from './format.ts';

// ---------------------------------------------------------------- filters

export const directionParam = z.enum(['debit', 'credit', 'any']);
export type DirectionFilter = z.infer<typeof directionParam>;

export function directionMatches(filter: DirectionFilter, t: Transaction): boolean {
  return filter === 'any' || t.direction === filter;
}

/** Empty list: every channel. */
export function channelMatches(channels: ReadonlySet<string>, channel: string): boolean {
  return channels.size === 0 || channels.has(channel);
}

/** The transaction's amount as a magnitude (some sources sign debits negative; direction says which way). */
export function txAmount(t: Transaction): number {
  return Math.abs(t.amount);
}

/** Per-currency override or the general value. */
export function perCurrency(map: Readonly<Record<string, number>>, currency: string, fallback: number): number {
  const v = Object.hasOwn(map, currency) ? map[currency] : undefined;
  return v ?? fallback;
}

/** A record of currency → positive amount, for per-currency parameters. */
export const currencyAmounts = z.record(z.string().min(3).max(8), z.number().finite().positive());

// ---------------------------------------------------------------- risk signals

/** Signal score when the observation is exactly at the rule's threshold. */
export const SIGNAL_AT_THRESHOLD = 0.8;
/** Below this fraction of the threshold the signal is 0 (nothing unusual: nothing is pushed). */
export const SIGNAL_FLOOR_RATIO = 0.5;

/**
 * The risk-signal score for `ratio` = observed / threshold (for several conditions that must all hold:
 * the smallest of their ratios; for alternatives: the largest), continuous and non-decreasing:
 *   ratio ≤ 0.5        → 0
 *   0.5 < ratio < 1    → 0.8 · ((ratio − 0.5) / 0.5)²        (0 → 0.8 as the threshold approaches)
 *   ratio ≥ 1          → 1 − 0.2 · 2^(−(ratio − 1) / 0.5)     (0.8 at the threshold, 0.9 at 1.5×, → 1)
 * so a finding (ratio ≥ 1) always comes with a signal ≥ 0.8.
 */
export function riskScore(ratio: number): number {
  if (!(ratio > SIGNAL_FLOOR_RATIO)) return 0; // also NaN
  if (ratio < 1) {
    const x = (ratio - SIGNAL_FLOOR_RATIO) / (1 - SIGNAL_FLOOR_RATIO);
    return SIGNAL_AT_THRESHOLD * x * x;
  }
  if (!Number.isFinite(ratio)) return 1;
  return 1 - (1 - SIGNAL_AT_THRESHOLD) * Math.pow(2, -(ratio - 1) / 0.5);
}

/** observed / limit where a limit of 0 (or less) means "no limit" (ratio 0) and 0/0 is 0. */
export function ratioTo(observed: number, limit: number): number {
  if (!(limit > 0)) return 0;
  return observed / limit;
}

// ---------------------------------------------------------------- decayed sums (usual rates)

/**
 * Σ wᵢ · 2^(−(ref − tᵢ)/halfLife) over the samples added so far, valued at time `ref` (the latest sample
 * time). Plain JSON: { ref, sum }.
 */
export interface DecayedSum {
  ref: number | null;
  sum: number;
}

export function newDecayedSum(): DecayedSum {
  return { ref: null, sum: 0 };
}

export function decayedAdd(d: DecayedSum, ts: number, w: number, halfLifeMs: number): void {
  if (d.ref === null) {
    d.ref = ts;
    d.sum = w;
  } else if (ts >= d.ref) {
    d.sum = d.sum * Math.pow(2, -(ts - d.ref) / halfLifeMs) + w;
    d.ref = ts;
  } else {
    d.sum += w * Math.pow(2, -(d.ref - ts) / halfLifeMs);
  }
}

/**
 * The usual rate (per ms) of what was added, over [since, at]: the decayed sum valued at `at` divided by
 * the decayed length of that span, (h / ln 2) · (1 − 2^(−(at − since)/h)) — a plain count / duration while
 * the span is short against the half-life, an exponentially weighted one after. Null without a span.
 */
export function decayedRate(d: DecayedSum, at: number, since: number | null, halfLifeMs: number): number | null {
  if (since === null) return null;
  const span = at - since;
  if (!(span > 0)) return null;
  const valued = d.ref === null ? 0 : d.sum * Math.pow(2, -Math.max(0, at - d.ref) / halfLifeMs);
  const effective = (halfLifeMs / Math.LN2) * (1 - Math.pow(2, -span / halfLifeMs));
  return effective > 0 ? valued / effective : null;
}

export function decayedFromJSON(j: unknown, what: string): DecayedSum {
  const o = j as Partial<DecayedSum> | null;
  if (!o || typeof o !== 'object' || (o.ref !== null && !isFiniteNumber(o.ref)) || !isFiniteNumber(o.sum)) {
    throw new TypeError(`${what}: bad decayed sum`);
  }
  return { ref: o.ref, sum: o.sum };
}

// ---------------------------------------------------------------- bounded sub-state maps

/**
 * The entry of `key`, created when absent, moved to the most-recently-seen end; beyond `cap` entries the
 * least recently seen goes (amortized O(1): a Map keeps insertion order).
 */
export function lruEntry<V>(map: Map<string, V>, key: string, cap: number, create: () => V): V {
  let v = map.get(key);
  if (v !== undefined) {
    if (map.size > 1) {
      map.delete(key);
      map.set(key, v);
    }
    return v;
  }
  v = create();
  map.set(key, v);
  while (map.size > cap) {
    const oldest = map.keys().next().value as string;
    map.delete(oldest);
  }
  return v;
}

/** Keeps the `cap` most recently seen entries of a restored map. */
export function trimLru<V>(map: Map<string, V>, cap: number): void {
  while (map.size > cap) map.delete(map.keys().next().value as string);
}

// ---------------------------------------------------------------- refs

/**
 * eventRef of a transaction from its source and id: windows keep those two (strings the event already
 * has) and build the ref only for a finding's evidence or the JSON, not for every transaction.
 */
export function txRef(source: string, id: string): string {
  return eventRef({ kind: 'transaction', source, id } as Transaction);
}

// ---------------------------------------------------------------- baselines of amounts

const ascending = (a: number, b: number): number => a - b;

/**
 * A FIFO of (ts, x) samples with TimeWindow's semantics — after push(ts, …) / expire(now) it holds the
 * samples with ts > horizon − spanMs (horizon = the largest time seen), at most maxCount of them (the
 * newest), evicting oldest first — together with a sorted view of the x (a SortedWindow of the same
 * bound) for order statistics: what a TimeWindow plus a SortedWindow kept side by side give, cheaper for
 * the many keys that never need the order statistics:
 *  - the ring is plain arrays of 4 slots grown by doubling up to maxCount (a typed array of more than 64
 *    bytes is allocated outside the V8 heap and costs ~0.6 µs, more than the whole event);
 *  - the sorted view is built on first use (one O(n log n) sort of the window), then kept up to date on
 *    every push and eviction (O(log n) plus SortedWindow's bounded memmove).
 */
export class SortedFifo {
  readonly spanMs: number;
  readonly maxCount: number;
  private tss: number[];
  private xs: number[];
  private head = 0;
  private n = 0;
  private horizonTs = Number.NEGATIVE_INFINITY;
  private view: SortedWindow | null = null;

  constructor(spanMs: number, maxCount: number) {
    if (!(spanMs > 0)) throw new RangeError(`SortedFifo: spanMs must be > 0 (got ${spanMs})`);
    if (!Number.isInteger(maxCount) || maxCount < 1) throw new RangeError(`SortedFifo: maxCount must be a positive integer (got ${maxCount})`);
    this.spanMs = spanMs;
    this.maxCount = maxCount;
    const alloc = Math.min(maxCount, 4);
    this.tss = new Array<number>(alloc);
    this.xs = new Array<number>(alloc);
  }

  get size(): number {
    return this.n;
  }
  /** Largest time seen (−Infinity before the first push/expire). */
  get horizon(): number {
    return this.horizonTs;
  }
  /** Oldest sample's time, or undefined when empty. */
  get oldestTs(): number | undefined {
    return this.n === 0 ? undefined : this.tss[this.head];
  }

  /** The samples' x in ascending order (built on first use, then maintained). */
  get sorted(): SortedWindow {
    if (this.view === null) {
      const values = this.values();
      values.sort(ascending);
      this.view = SortedWindow.fromJSON({ capacity: this.maxCount, values });
    }
    return this.view;
  }

  /** Appends a sample after evicting what fell out of the window (by time, then by count). */
  push(ts: number, x: number): void {
    if (!Number.isFinite(ts)) throw new RangeError(`SortedFifo.push: non-finite ts ${ts}`);
    this.expire(ts);
    if (this.n === this.maxCount) this.shiftOne();
    let cap = this.tss.length;
    if (this.n === cap) {
      this.grow();
      cap = this.tss.length;
    }
    let k = this.head + this.n;
    if (k >= cap) k -= cap;
    this.tss[k] = ts;
    this.xs[k] = x;
    this.n += 1;
    if (this.view !== null) this.view.insert(x);
  }

  /** Advances the horizon to `now` (if later) and evicts samples with ts <= horizon − spanMs. */
  expire(now: number): void {
    if (now > this.horizonTs) this.horizonTs = now;
    const cutoff = this.horizonTs - this.spanMs;
    while (this.n > 0 && (this.tss[this.head] as number) <= cutoff) this.shiftOne();
  }

  /** The x oldest → newest (a copy). */
  values(): number[] {
    const out: number[] = [];
    const cap = this.tss.length;
    for (let i = 0, k = this.head; i < this.n; i++, k = k + 1 === cap ? 0 : k + 1) out.push(this.xs[k] as number);
    return out;
  }

  /** Plain JSON of the FIFO: horizon (null before any time), times and values oldest → newest. */
  toJSON(): { horizon: number | null; ts: number[]; values: number[] } {
    const ts: number[] = [];
    const cap = this.tss.length;
    for (let i = 0, k = this.head; i < this.n; i++, k = k + 1 === cap ? 0 : k + 1) ts.push(this.tss[k] as number);
    return { horizon: Number.isFinite(this.horizonTs) ? this.horizonTs : null, ts, values: this.values() };
  }

  private shiftOne(): void {
    const h = this.head;
    const x = this.xs[h] as number;
    this.head = h + 1 === this.tss.length ? 0 : h + 1;
    this.n -= 1;
    if (this.view !== null) this.view.remove(x);
  }

  private grow(): void {
    const cap = this.tss.length;
    const next = Math.min(this.maxCount, cap * 2);
    // Allocated at their length (holey: the unused tail is never read), filled in ring order.
    const tss = new Array<number>(next);
    const xs = new Array<number>(next);
    for (let i = 0, k = this.head; i < this.n; i++, k = k + 1 === cap ? 0 : k + 1) {
      tss[i] = this.tss[k] as number;
      xs[i] = this.xs[k] as number;
    }
    this.tss = tss;
    this.xs = xs;
    this.head = 0;
  }
}

// ---------------------------------------------------------------- JSON validation

export function isFiniteNumber(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}

export function numOrNull(x: unknown, what: string): number | null {
  if (x === null || x === undefined) return null;
  if (!isFiniteNumber(x)) throw new TypeError(`${what}: expected a number or null`);
  return x;
}

export function num(x: unknown, what: string): number {
  if (!isFiniteNumber(x)) throw new TypeError(`${what}: expected a finite number`);
  return x;
}

export function str(x: unknown, what: string): string {
  if (typeof x !== 'string') throw new TypeError(`${what}: expected a string`);
  return x;
}

export function strOrNull(x: unknown, what: string): string | null {
  if (x === null || x === undefined) return null;
  return str(x, what);
}

export function arr(x: unknown, what: string): unknown[] {
  if (!Array.isArray(x)) throw new TypeError(`${what}: expected an array`);
  return x;
}

/** The object `json` when it is a v1 state; throws TypeError otherwise. */
export function v1Object(json: unknown, detector: string): Record<string, unknown> {
  if (!json || typeof json !== 'object' || Array.isArray(json) || (json as { v?: unknown }).v !== 1 || typeof (json as { key?: unknown }).key !== 'string') {
    throw new TypeError(`${detector}: state JSON is not a v1 ${detector} state`);
  }
  return json as Record<string, unknown>;
}

// ---------------------------------------------------------------- wording

/** "debit " / "credit " / "" for the summaries. */
export function directionWord(filter: DirectionFilter): string {
  return filter === 'any' ? '' : `${filter} `;
}

/** Like formatDuration, but hours beyond 2 h and days beyond 48 h: "40 min", "5.5 h", "3.0 days". */
export function formatSpan(ms: number): string {
  if (ms < 2 * 3_600_000) return formatDuration(ms);
  if (ms < 48 * 3_600_000) return `${formatFixed(ms / 3_600_000, ms % 3_600_000 === 0 ? 0 : 1)} h`;
  return `${formatFixed(ms / 86_400_000, ms % 86_400_000 === 0 ? 0 : 1)} days`;
}

/** Last `max` items of a list, oldest first (for evidence triggers). */
export function lastN<T>(items: readonly T[], max: number): T[] {
  return items.length <= max ? [...items] : items.slice(items.length - max);
}

/** Maximum number of transaction references in a finding's evidence. */
export const MAX_TRIGGERS = 20;
