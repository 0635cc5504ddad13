/**
 * `rapid_movement`: funds in, then out again within a short hold — the pass-through (mule account)
 * pattern: a credit of at least minAmount followed, within maxHoldMs, by debits that move out at least
 * passThroughFraction of it.
 *
 * Per account (the message key), credits wait in a FIFO queue (at most maxPending, the oldest dropped
 * first). Every debit is matched against the queue first-in first-out, like money accounting: it consumes
 * what is left of the oldest pending credit, then of the next, until its amount is used up. A credit older
 * than maxHoldMs at the debit's time is dropped unmatched; a credit that is used up is dropped. When a
 * credit of at least minAmount has had ≥ passThroughFraction of its amount consumed, the debit that pushed
 * it over fires a finding (at most one per cooldownMs) and the credit leaves the queue (one credit, one
 * finding). Each debit touches the credits it consumes plus one, and each credit is dropped once: O(1)
 * amortized per transaction.
 *
 * Every debit that consumes a credit pushes a RiskSignal with score signalScore(r), r = min(moved
 * fraction / passThroughFraction, credit amount / minAmount), the largest over the credits it touched
 * (flow-common.ts: 0 up to half the threshold, 0.8 at it). Credits are not judged (no signal).
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Severity, type Transaction } from '../core/events.ts';
import { formatAmount, formatPercent, round } from './format.ts';
import { formatSpan, num, plural, signalScore } from './flow-common.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft, RiskSignal } from './types.ts';

/** Out-transaction refs kept per credit for the evidence (plus the in-transaction and the trigger). */
const MAX_OUT_REFS = 18;

export const rapidMovementParams = z.strictObject({
  /** A debit counts against a credit only within this time after the credit (event time). */
  maxHoldMs: z.number().int().positive().default(3_600_000),
  /** Share of the credit that must leave the account within maxHoldMs. */
  passThroughFraction: z.number().finite().gt(0).max(1).default(0.8),
  /** Credits smaller than this never fire (they are still matched, first-in first-out). */
  minAmount: z.number().finite().nonnegative().default(1000),
  /** Bound on credits waiting per account (memory); the oldest is dropped first. */
  maxPending: z.number().int().min(1).max(100_000).default(50),
  /** At most one finding per account within this time. */
  cooldownMs: z.number().int().nonnegative().default(600_000),
});
export type RapidMovementParams = z.infer<typeof rapidMovementParams>;

export interface PendingCredit {
  ref: string;
  ts: number;
  amount: number;
  currency: string;
  counterparty: string | null;
  /** Amount moved out of this credit so far, and by how many debits. */
  out: number;
  outCount: number;
  /** The first MAX_OUT_REFS debits that moved money out of it. */
  outRefs: string[];
}

export interface RapidMovementState {
  key: string;
  /** FIFO of pending credits: q[head…] are live. */
  q: PendingCredit[];
  head: number;
  /** Largest event time seen. */
  hwm: number | null;
  credits: number;
  debits: number;
  lastFindingTs: number | null;
}

interface RapidMovementJSON {
  v: 1;
  key: string;
  pending: PendingCredit[];
  hwm: number | null;
  credits: number;
  debits: number;
  lastFindingTs: number | null;
}

function size(s: RapidMovementState): number {
  return s.q.length - s.head;
}

function dropHead(s: RapidMovementState): void {
  s.q[s.head] = undefined as unknown as PendingCredit;
  s.head += 1;
  if (s.head === s.q.length) {
    s.q = [];
    s.head = 0;
  } else if (s.head >= 32 && s.head * 2 >= s.q.length) {
    s.q = s.q.slice(s.head);
    s.head = 0;
  }
}

function reviveCredit(v: unknown): PendingCredit {
  const c = v as Partial<PendingCredit> | null;
  if (!c || typeof c.ref !== 'string' || typeof c.currency !== 'string' || !Array.isArray(c.outRefs) || !c.outRefs.every((r) => typeof r === 'string')) {
    throw new TypeError('rapid_movement: bad pending credit');
  }
  return {
    ref: c.ref,
    ts: num(c.ts, 'rapid_movement.ts'),
    amount: num(c.amount, 'rapid_movement.amount'),
    currency: c.currency,
    counterparty: typeof c.counterparty === 'string' ? c.counterparty : null,
    out: num(c.out, 'rapid_movement.out'),
    outCount: num(c.outCount, 'rapid_movement.outCount'),
    outRefs: c.outRefs.slice(0, MAX_OUT_REFS),
  };
}

function makeInstance(params: RapidMovementParams, ruleId: string): DetectorInstance<RapidMovementState> {
  const { maxHoldMs, passThroughFraction, minAmount, maxPending, cooldownMs } = params;

  const newState = (key: string): RapidMovementState => ({ key, q: [], head: 0, hwm: null, credits: 0, debits: 0, lastFindingTs: null });

  const severityFor = (amount: number, holdMs: number): Severity => {
    let level = 0;
    if (amount >= 10 * Math.max(minAmount, 1)) level += 1;
    if (holdMs <= maxHoldMs / 4) level += 1;
    return level === 2 ? 'critical' : level === 1 ? 'high' : 'medium';
  };

  /** Drops credits at the head that are too old to be matched at `now`. */
  const expire = (s: RapidMovementState, now: number): void => {
    while (size(s) > 0 && (s.q[s.head] as PendingCredit).ts <= now - maxHoldMs) dropHead(s);
  };

  const onCredit = (s: RapidMovementState, tx: Transaction): void => {
    s.credits += 1;
    const amount = Math.abs(tx.amount);
    if (!(amount > 0)) return;
    s.q.push({ ref: eventRef(tx), ts: tx.ts, amount, currency: tx.currency, counterparty: tx.counterparty ?? null, out: 0, outCount: 0, outRefs: [] });
    while (size(s) > maxPending) dropHead(s);
  };

  const onDebit = (s: RapidMovementState, tx: Transaction, out: FindingDraft[], signals?: RiskSignal[]): void => {
    s.debits += 1;
    const ts = tx.ts;
    let left = Math.abs(tx.amount);
    const ref = eventRef(tx);
    let bestR = 0;
    let bestCredit: PendingCredit | null = null;
    let fired: PendingCredit | null = null;
    while (left > 0 && size(s) > 0) {
      const c = s.q[s.head] as PendingCredit;
      if (c.ts <= ts - maxHoldMs) {
        dropHead(s); // too old for this debit
        continue;
      }
      if (c.ts > ts) break; // a debit before the oldest pending credit (late): paid from earlier funds
      const take = Math.min(left, c.amount - c.out);
      left -= take;
      c.out += take;
      c.outCount += 1;
      if (c.outRefs.length < MAX_OUT_REFS) c.outRefs.push(ref);
      const frac = c.out / c.amount;
      const r = Math.min(frac / passThroughFraction, minAmount > 0 ? c.amount / minAmount : Number.POSITIVE_INFINITY);
      if (r > bestR) {
        bestR = r;
        bestCredit = c;
      }
      const crossed = frac >= passThroughFraction && c.amount >= minAmount;
      if (crossed && fired === null) fired = c;
      if (crossed || c.out >= c.amount) dropHead(s); // done: fired, or nothing left to move
      else break; // the debit is used up inside this credit
    }

    const score = signalScore(bestR);
    if (signals && score > 0 && bestCredit) {
      signals.push({
        detector: 'rapid_movement',
        ruleId,
        score,
        reason:
          `Moved out ${formatPercent(bestCredit.out / bestCredit.amount)} of a ${formatAmount(bestCredit.amount, bestCredit.currency)} credit ` +
          `within ${formatSpan(ts - bestCredit.ts)} (threshold ${formatPercent(passThroughFraction, 0)} within ${formatSpan(maxHoldMs)})`,
      });
    }
    if (!fired) return;
    if (s.lastFindingTs !== null && ts - s.lastFindingTs < cooldownMs && ts >= s.lastFindingTs) return;
    s.lastFindingTs = ts;

    const c = fired;
    const holdMs = ts - c.ts;
    const frac = c.out / c.amount;
    const outRefs = c.outRefs.includes(ref) ? c.outRefs : [...c.outRefs, ref];
    const summary =
      `${s.key} moved ${formatAmount(c.out, c.currency)} (${formatPercent(frac)}) of a ${formatAmount(c.amount, c.currency)} credit ` +
      `${c.counterparty ? `from ${c.counterparty} ` : ''}out again within ${formatSpan(holdMs)} in ${plural(c.outCount, 'payment')}`;
    out.push({
      severity: severityFor(c.amount, holdMs),
      score: round(frac, 4),
      account: s.key,
      key: s.key,
      ts,
      windowStart: Math.min(c.ts, ts),
      windowEnd: ts,
      summary,
      trigger: ref,
      evidence: {
        observed: {
          inAmount: c.amount,
          outAmount: round(c.out, 2),
          fraction: round(frac, 4),
          holdMs,
          outPayments: c.outCount,
          currency: c.currency,
          inTx: c.ref,
          inCounterparty: c.counterparty,
          outCounterparty: tx.counterparty ?? null,
        },
        baseline: {
          creditsSeen: s.credits,
          debitsSeen: s.debits,
          pendingCredits: size(s),
        },
        threshold: { passThroughFraction, minAmount, maxHoldMs },
        triggers: [c.ref, ...outRefs],
      },
    });
  };

  return {
    name: 'rapid_movement',
    ruleId,
    kinds: ['transaction'],
    newState,
    onEvent(state: RapidMovementState, ev: CanonicalEvent, out: FindingDraft[], signals?: RiskSignal[]): void {
      if (ev.kind !== 'transaction' || !Number.isFinite(ev.ts) || !Number.isFinite(ev.amount)) return;
      if (state.hwm === null || ev.ts > state.hwm) state.hwm = ev.ts;
      expire(state, state.hwm);
      if (ev.direction === 'credit') onCredit(state, ev);
      else onDebit(state, ev, out, signals);
    },
    toJSON(s: RapidMovementState): RapidMovementJSON {
      return {
        v: 1,
        key: s.key,
        pending: s.q.slice(s.head).map((c) => ({ ...c, outRefs: [...c.outRefs] })),
        hwm: s.hwm,
        credits: s.credits,
        debits: s.debits,
        lastFindingTs: s.lastFindingTs,
      };
    },
    fromJSON(json: unknown): RapidMovementState {
      const j = json as Partial<RapidMovementJSON> | null;
      if (!j || j.v !== 1 || typeof j.key !== 'string' || !Array.isArray(j.pending)) {
        throw new TypeError('rapid_movement: state JSON is not a v1 rapid_movement state');
      }
      const s = newState(j.key);
      // Under this instance's bounds: the newest maxPending credits; maxHoldMs applies at the next event.
      s.q = j.pending.map(reviveCredit).slice(-maxPending);
      s.hwm = typeof j.hwm === 'number' && Number.isFinite(j.hwm) ? j.hwm : null;
      s.credits = num(j.credits ?? 0, 'rapid_movement.credits');
      s.debits = num(j.debits ?? 0, 'rapid_movement.debits');
      s.lastFindingTs = typeof j.lastFindingTs === 'number' ? j.lastFindingTs : null;
      return s;
    },
  };
}

export const rapidMovementSpec: DetectorSpec<RapidMovementParams, RapidMovementState> = {
  name: 'rapid_movement',
  description:
    'Funds in then out: a credit of at least minAmount of which at least passThroughFraction leaves the account ' +
    'again within maxHoldMs (debits matched first-in first-out against pending credits) — the mule pattern.',
  kinds: ['transaction'],
  params: rapidMovementParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
