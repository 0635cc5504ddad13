/**
 * `fan_out`: one account pays many distinct counterparties within a short window (the dispersal leg of a
 * mule account, a compromised account being emptied to many beneficiaries, payout fraud).
 *
 * Per account (the message key), every debit with a counterparty enters a sliding event-time window of
 * windowMs (DistinctCountWindow: count map + time ring, O(1) amortized), which gives D = the number of
 * distinct counterparties paid in (ts − windowMs, ts]. The account's baseline is its busiest window: the
 * debits are also counted per tumbling window of windowMs (aligned to the epoch); a closed tumbling window
 * joins the baseline once it no longer overlaps the sliding window (start + 2·windowMs ≤ now), so an
 * episode never raises its own bar. The baseline holds the closed windows of the last baselineMs; its
 * maximum (monotonic deque) is `peak`.
 *
 * Threshold: T = max(minDistinct, ceil(peakFactor · peak)). A finding fires on the debit that brings D to
 * ≥ T with a counterparty new to the window, at most once per cooldownMs; nothing is judged while the key's
 * first counted debit is younger than minHistoryMs (default 0). Every judged debit pushes a
 * RiskSignal with score signalScore(D / T) (flow-common.ts: 0 up to half the threshold, 0.8 at it).
 *
 * The same engine, keyed by the receiving account through the counterparty view and counting the payers,
 * is fan_in (fan-in.ts).
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Severity, type Transaction } from '../core/events.ts';
import { DistinctCountWindow } from '../stats/distinct-count-window.ts';
import { formatAmount, formatFixed, round } from './format.ts';
import { formatSpan, num, numOrNull, plural, signalScore } from './flow-common.ts';
import { txRef } from './tx-common.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft, RiskSignal } from './types.ts';

const DAY = 86_400_000;
const MAX_TRIGGERS = 20;

/** The parameter schema of fan_out and fan_in (the same knobs; `who` names what is counted). */
export function fanParamsSchema(defaults: { minDistinct: number }) {
  return z
    .strictObject({
      /** Sliding window in which distinct counterparties (fan_out) or senders (fan_in) are counted, event time. */
      windowMs: z.number().int().positive().default(3_600_000),
      /** Absolute floor: at least this many distinct counterparties/senders in the window. */
      minDistinct: z.number().int().min(2).default(defaults.minDistinct),
      /** The count must also reach this multiple of the key's busiest window within baselineMs. */
      peakFactor: z.number().finite().min(1).default(2),
      /** How far back the busiest-window baseline looks (35 days covers monthly cycles such as payroll). */
      baselineMs: z.number().int().positive().default(35 * DAY),
      /** No judgement before the key's first counted payment is this old (0: new accounts are judged at once). */
      minHistoryMs: z.number().int().nonnegative().default(0),
      /** Bound on debits held in the sliding window per key (memory); the oldest go first. */
      maxEvents: z.number().int().min(10).max(1_000_000).default(2000),
      /** At most one finding per key within this time. */
      cooldownMs: z.number().int().nonnegative().default(600_000),
    })
    .superRefine((p, ctx) => {
      if (p.baselineMs < 2 * p.windowMs) {
        ctx.addIssue({ code: 'custom', path: ['baselineMs'], message: `must be >= 2 × windowMs (${2 * p.windowMs})` });
      }
      if (p.maxEvents < p.minDistinct) {
        ctx.addIssue({ code: 'custom', path: ['maxEvents'], message: `must be >= minDistinct (${p.minDistinct})` });
      }
    });
}

export const fanOutParams = fanParamsSchema({ minDistinct: 10 });
export type FanParams = z.infer<typeof fanOutParams>;
export type FanOutParams = FanParams;

/**
 * One debit in the sliding window (the id is the counterparty / payer): its amount and its event ref's
 * parts, the transaction's source and id (the ref is built only for a finding or the JSON); id is null
 * when source holds the whole ref (restored from JSON). In the JSON: { ref, amount }.
 */
export interface FanSample {
  source: string;
  id: string | null;
  amount: number;
}

function sampleRef(v: FanSample): string {
  return v.id === null ? v.source : txRef(v.source, v.id);
}

export interface FanState {
  key: string;
  win: DistinctCountWindow<FanSample>;
  /** Start of the open tumbling window and the distinct ids seen in it (bounded by maxEvents). */
  bucketStart: number | null;
  bucketIds: Set<string>;
  /** Closed tumbling windows not yet in the baseline (they still overlap the sliding window): [start, distinct]. */
  pending: Array<[number, number]>;
  /** Baseline: distinct count per closed tumbling window (start time), with its running sum and maximum. */
  baseline: FanBaseline;
  /** First event time of the key, debits judged, last finding time. */
  firstTs: number | null;
  debits: number;
  lastFindingTs: number | null;
}

interface FanJSON {
  v: 1;
  key: string;
  win: unknown;
  bucketStart: number | null;
  bucketIds: string[];
  pending: Array<[number, number]>;
  bucketTs: number[];
  bucketCounts: number[];
  horizon: number | null;
  firstTs: number | null;
  debits: number;
  lastFindingTs: number | null;
}

export interface FanMode {
  name: 'fan_out' | 'fan_in';
  view?: 'counterparty';
  /** The counted id of a debit (the counterparty paid, or the payer), or undefined when the debit does not count. */
  idOf(tx: Transaction, key: string): string | undefined;
  /** "paid 12 distinct counterparties" / "received payments from 12 distinct senders". */
  verb(n: number): string;
  /** Evidence field naming the id that completed the count: "newCounterparty" / "newSender". */
  idLabel: string;
}

function severityFor(ratioToPeak: number, peakFactor: number): Severity {
  if (ratioToPeak >= 10 * peakFactor) return 'critical';
  if (ratioToPeak >= 4 * peakFactor) return 'high';
  return 'medium';
}

const NO_NUMBERS: number[] = [];

/**
 * The baseline's closed tumbling windows: (start, distinct count) with TimeWindow's semantics (those with
 * start > horizon − spanMs, horizon = the largest time seen, at most maxCount of them, evicted oldest
 * first) and their running sum, and their running maximum with SlidingExtremum's ('max': a monotonic
 * deque of (start, count, push number) with the same span and bound, expired after each push). What a
 * TimeWindow and a SlidingExtremum side by side gave, on plain arrays allocated at the first push (their
 * four typed arrays cost ~2.5 µs to allocate outside the V8 heap, for every key with a closed window).
 */
class FanBaseline {
  readonly spanMs: number;
  readonly maxCount: number;
  /** Largest time seen (−Infinity before the first push/expiry); the ring's and the deque's alike. */
  horizon = Number.NEGATIVE_INFINITY;
  /** Sum of the counts in the window. */
  sum = 0;
  // Ring of the windows: capacity = starts.length.
  private starts: number[] = NO_NUMBERS;
  private counts: number[] = NO_NUMBERS;
  private head = 0;
  private n = 0;
  // Monotonic deque of the maximum (counts non-increasing from the head): capacity = dStarts.length.
  private dStarts: number[] = NO_NUMBERS;
  private dCounts: number[] = NO_NUMBERS;
  private dSeqs: number[] = NO_NUMBERS;
  private dHead = 0;
  private dN = 0;
  private pushed = 0;

  constructor(spanMs: number, maxCount: number) {
    this.spanMs = spanMs;
    this.maxCount = maxCount;
  }

  /** Windows in the baseline. */
  get size(): number {
    return this.n;
  }
  /** The largest count in the baseline (0 when empty). */
  get peak(): number {
    return this.dN === 0 ? 0 : (this.dCounts[this.dHead] as number);
  }

  push(start: number, count: number): void {
    if (!Number.isFinite(start) || Number.isNaN(count)) throw new RangeError(`FanBaseline.push: bad window (${start}, ${count})`);
    // The window ring (TimeWindow.push: expire, make room, append).
    this.expireRing(start);
    if (this.n === this.maxCount) this.shiftRing();
    let cap = this.starts.length;
    if (this.n === cap) {
      this.growRing();
      cap = this.starts.length;
    }
    let k = this.head + this.n;
    if (k >= cap) k -= cap;
    this.starts[k] = start;
    this.counts[k] = count;
    this.n += 1;
    this.sum += count;
    // The maximum (SlidingExtremum.push: drop what the new window dominates, append, expire).
    const seq = this.pushed++;
    let dcap = this.dStarts.length;
    while (this.dN > 0) {
      let b = this.dHead + this.dN - 1;
      if (b >= dcap) b -= dcap;
      if ((this.dCounts[b] as number) <= count) this.dN -= 1;
      else break;
    }
    if (this.dN === dcap) {
      this.growDeque();
      dcap = this.dStarts.length;
    }
    k = this.dHead + this.dN;
    if (k >= dcap) k -= dcap;
    this.dStarts[k] = start;
    this.dCounts[k] = count;
    this.dSeqs[k] = seq;
    this.dN += 1;
    this.expireDeque(start);
  }

  /** Advances the horizon to `now` (if later) and evicts the windows with start <= horizon − spanMs. */
  expire(now: number): void {
    this.expireRing(now);
    this.expireDeque(now);
  }

  /** The windows oldest → newest and the horizon (null before any time), as TimeWindow.toJSON gives them. */
  toJSON(): { ts: number[]; values: number[]; horizon: number | null } {
    const ts: number[] = [];
    const values: number[] = [];
    const cap = this.starts.length;
    for (let i = 0, k = this.head; i < this.n; i++, k = k + 1 === cap ? 0 : k + 1) {
      ts.push(this.starts[k] as number);
      values.push(this.counts[k] as number);
    }
    return { ts, values, horizon: Number.isFinite(this.horizon) ? this.horizon : null };
  }

  private expireRing(now: number): void {
    if (now > this.horizon) this.horizon = now;
    const cutoff = this.horizon - this.spanMs;
    while (this.n > 0 && (this.starts[this.head] as number) <= cutoff) this.shiftRing();
  }

  private shiftRing(): void {
    const h = this.head;
    this.sum -= this.counts[h] as number;
    this.head = h + 1 === this.starts.length ? 0 : h + 1;
    this.n -= 1;
  }

  private expireDeque(now: number): void {
    if (now > this.horizon) this.horizon = now;
    const cutoff = this.horizon - this.spanMs;
    const minSeq = this.pushed - this.maxCount; // seq < minSeq is beyond the count bound
    const cap = this.dStarts.length;
    while (this.dN > 0 && ((this.dStarts[this.dHead] as number) <= cutoff || (this.dSeqs[this.dHead] as number) < minSeq)) {
      this.dHead = this.dHead + 1 === cap ? 0 : this.dHead + 1;
      this.dN -= 1;
    }
  }

  private growRing(): void {
    const cap = this.starts.length;
    const next = Math.min(this.maxCount, Math.max(4, cap * 2));
    const starts = new Array<number>(next);
    const counts = new Array<number>(next);
    for (let i = 0, k = this.head; i < this.n; i++, k = k + 1 === cap ? 0 : k + 1) {
      starts[i] = this.starts[k] as number;
      counts[i] = this.counts[k] as number;
    }
    this.starts = starts;
    this.counts = counts;
    this.head = 0;
  }

  private growDeque(): void {
    const cap = this.dStarts.length;
    const next = Math.min(this.maxCount + 1, Math.max(4, cap * 2));
    const starts = new Array<number>(next);
    const counts = new Array<number>(next);
    const seqs = new Array<number>(next);
    for (let i = 0, k = this.dHead; i < this.dN; i++, k = k + 1 === cap ? 0 : k + 1) {
      starts[i] = this.dStarts[k] as number;
      counts[i] = this.dCounts[k] as number;
      seqs[i] = this.dSeqs[k] as number;
    }
    this.dStarts = starts;
    this.dCounts = counts;
    this.dSeqs = seqs;
    this.dHead = 0;
  }
}

function reviveSample(v: unknown): FanSample {
  const o = v as Partial<{ ref: string; amount: number }> | null;
  if (!o || typeof o.ref !== 'string' || typeof o.amount !== 'number' || !Number.isFinite(o.amount)) {
    throw new TypeError('fan state: bad window sample');
  }
  return { source: o.ref, id: null, amount: o.amount };
}

/** The window's JSON with each sample as { ref, amount }. */
function winJSON(win: DistinctCountWindow<FanSample>): unknown {
  const w = win.toJSON();
  return { ...w, values: w.values.map((v) => ({ ref: sampleRef(v), amount: v.amount })) };
}

export function makeFanInstance(params: FanParams, ruleId: string, mode: FanMode): DetectorInstance<FanState> {
  const { windowMs, minDistinct, peakFactor, baselineMs, minHistoryMs, maxEvents, cooldownMs } = params;
  const maxBuckets = Math.ceil(baselineMs / windowMs) + 2;
  const name = mode.name;

  const newState = (key: string): FanState => ({
    key,
    win: new DistinctCountWindow<FanSample>(windowMs, maxEvents),
    bucketStart: null,
    bucketIds: new Set(),
    pending: [],
    baseline: new FanBaseline(baselineMs, maxBuckets),
    firstTs: null,
    debits: 0,
    lastFindingTs: null,
  });

  /** Moves closed windows that no longer overlap the sliding window into the baseline; expires the baseline. */
  const advanceBaseline = (s: FanState, now: number): void => {
    while (s.pending.length > 0 && (s.pending[0] as [number, number])[0] + 2 * windowMs <= now) {
      const [start, count] = s.pending.shift() as [number, number];
      s.baseline.push(start, count);
    }
    s.baseline.expire(now);
  };

  const windowSpan = formatSpan(windowMs);
  const baselineSpan = formatSpan(baselineMs);

  const onDebit = (s: FanState, tx: Transaction, out: FindingDraft[], signals?: RiskSignal[]): void => {
    const id = mode.idOf(tx, s.key);
    if (id === undefined) return;
    const ts = tx.ts;
    const amount = Math.abs(tx.amount);
    if (s.firstTs === null || ts < s.firstTs) s.firstTs = ts;
    s.debits += 1;

    // Tumbling windows for the baseline (a late debit counts in the open window).
    const start = Math.floor(ts / windowMs) * windowMs;
    if (s.bucketStart === null) s.bucketStart = start;
    else if (start > s.bucketStart) {
      if (s.bucketIds.size > 0) s.pending.push([s.bucketStart, s.bucketIds.size]);
      s.bucketIds.clear();
      s.bucketStart = start;
    }
    if (s.bucketIds.size < maxEvents) s.bucketIds.add(id);
    const now = Math.max(ts, s.win.horizon);
    advanceBaseline(s, now);

    const isNew = s.win.push(ts, id, { source: tx.source, id: tx.id, amount });
    if (ts - s.firstTs < minHistoryMs) return; // too new to judge (still learning its baseline)
    const d = s.win.distinct;
    const peak = s.baseline.peak;
    const threshold = Math.max(minDistinct, Math.ceil(peakFactor * peak));

    const score = signalScore(d / threshold);
    if (signals && score > 0) {
      signals.push({
        detector: name,
        ruleId,
        score,
        reason: `${s.key} ${mode.verb(d)} within ${windowSpan} (threshold ${threshold})`,
      });
    }
    if (!(d >= threshold) || !isNew) return;
    if (s.lastFindingTs !== null && ts - s.lastFindingTs < cooldownMs && ts >= s.lastFindingTs) return;
    s.lastFindingTs = ts;

    // Evidence (a pass over the window, once per finding): totals and the first debit to each distinct id.
    let total = 0;
    const firsts: FanSample[] = [];
    const seen = new Set<string>();
    for (const e of s.win.entries()) {
      total += e.value.amount;
      if (!seen.has(e.id)) {
        seen.add(e.id);
        firsts.push(e.value);
      }
    }
    const triggers = firsts.slice(-MAX_TRIGGERS).map(sampleRef);
    const ref = eventRef(tx);
    const ratioToPeak = d / Math.max(peak, 1);
    const activeWindows = s.baseline.size;
    const windowStart = Math.min(s.win.oldestTs ?? ts, ts);
    const debitsInWindow = s.win.size;
    const summary =
      `${s.key} ${mode.verb(d)} within ${windowSpan} ` +
      `(${plural(debitsInWindow, 'payment')}, ${formatAmount(total, tx.currency)}); ` +
      (activeWindows > 0 ? `its busiest ${windowSpan} in the last ${baselineSpan}: ${formatFixed(peak, 0)}` : `no earlier payments in the last ${baselineSpan}`);
    out.push({
      severity: severityFor(ratioToPeak, peakFactor),
      score: round(ratioToPeak, 4),
      account: s.key,
      key: s.key,
      ts,
      windowStart,
      windowEnd: ts,
      summary,
      trigger: ref,
      evidence: {
        observed: {
          distinct: d,
          payments: debitsInWindow,
          amount: round(total, 2),
          currency: tx.currency,
          windowMs,
          ratioToPeak: round(ratioToPeak, 4),
          [mode.idLabel]: id,
        },
        baseline: {
          peakDistinct: peak,
          activeWindows,
          meanDistinctActive: activeWindows > 0 ? round(s.baseline.sum / activeWindows, 4) : null,
          historyMs: ts - (s.firstTs ?? ts),
          paymentsSeen: s.debits,
        },
        threshold: { distinct: threshold, minDistinct, peakFactor },
        triggers,
      },
    });
  };

  return {
    name,
    ruleId,
    kinds: ['transaction'],
    ...(mode.view ? { view: mode.view } : {}),
    newState,
    onEvent(state: FanState, ev: CanonicalEvent, out: FindingDraft[], signals?: RiskSignal[]): void {
      if (ev.kind !== 'transaction' || ev.direction !== 'debit' || !Number.isFinite(ev.ts)) return;
      onDebit(state, ev, out, signals);
    },
    toJSON(s: FanState): FanJSON {
      const b = s.baseline.toJSON();
      return {
        v: 1,
        key: s.key,
        win: winJSON(s.win),
        bucketStart: s.bucketStart,
        bucketIds: [...s.bucketIds],
        pending: s.pending.map(([a, c]) => [a, c]),
        bucketTs: b.ts,
        bucketCounts: b.values,
        horizon: b.horizon,
        firstTs: s.firstTs,
        debits: s.debits,
        lastFindingTs: s.lastFindingTs,
      };
    },
    fromJSON(json: unknown): FanState {
      const j = json as Partial<FanJSON> | null;
      if (
        !j ||
        j.v !== 1 ||
        typeof j.key !== 'string' ||
        !Array.isArray(j.bucketIds) ||
        !Array.isArray(j.pending) ||
        !Array.isArray(j.bucketTs) ||
        !Array.isArray(j.bucketCounts) ||
        j.bucketTs.length !== j.bucketCounts.length
      ) {
        throw new TypeError(`${name}: state JSON is not a v1 ${name} state`);
      }
      const s = newState(j.key);
      // Rebuilt under this instance's window and bounds (identical when the parameters are unchanged).
      s.win = DistinctCountWindow.fromJSON(j.win, reviveSample, { spanMs: windowMs, maxCount: maxEvents });
      s.bucketStart = numOrNull(j.bucketStart, `${name}.bucketStart`);
      for (const id of j.bucketIds) {
        if (typeof id !== 'string') throw new TypeError(`${name}: bucketIds must be strings`);
        if (s.bucketIds.size < maxEvents) s.bucketIds.add(id);
      }
      for (const p of j.pending) {
        if (!Array.isArray(p) || p.length !== 2) throw new TypeError(`${name}: bad pending window`);
        s.pending.push([num(p[0], `${name}.pending`), num(p[1], `${name}.pending`)]);
      }
      for (let i = 0; i < j.bucketTs.length; i++) {
        s.baseline.push(num(j.bucketTs[i], `${name}.bucketTs`), num(j.bucketCounts[i], `${name}.bucketCounts`));
      }
      const horizon = numOrNull(j.horizon, `${name}.horizon`);
      if (horizon !== null) s.baseline.expire(horizon);
      s.firstTs = numOrNull(j.firstTs, `${name}.firstTs`);
      s.debits = num(j.debits ?? 0, `${name}.debits`);
      s.lastFindingTs = numOrNull(j.lastFindingTs, `${name}.lastFindingTs`);
      return s;
    },
  };
}

export const fanOutSpec: DetectorSpec<FanOutParams, FanState> = {
  name: 'fan_out',
  description:
    'An account pays many distinct counterparties within a short window: at least minDistinct, and at least ' +
    'peakFactor × its busiest window of the last baselineMs (mule dispersal, account being emptied).',
  kinds: ['transaction'],
  params: fanOutParams,
  create: (params, ruleId) =>
    makeFanInstance(params, ruleId, {
      name: 'fan_out',
      idOf: (tx) => (tx.counterparty !== undefined && tx.counterparty !== tx.account ? tx.counterparty : undefined),
      verb: (n) => `paid ${plural(n, 'distinct counterparty', 'distinct counterparties')}`,
      idLabel: 'newCounterparty',
    }),
};
