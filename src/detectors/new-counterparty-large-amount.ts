/**
 * `new_counterparty_large_amount`: a payment to a counterparty the account has never paid before, far
 * above what the account usually pays — the shape of authorised-push-payment scams and of account
 * takeover cash-outs.
 *
 * Per account (the message key):
 *  - known counterparties: the last maxKnown distinct counterparties the account has paid (a debit with a
 *    counterparty), in a Map kept in last-paid order (delete + set), the least recently paid evicted first;
 *  - usual debit amount: the median of the account's debits (every debit, card payments included) of the
 *    last baselineMs, at most maxSamples of them (tx-common SortedFifo, whose sorted view is built when the
 *    account is first judged: O(log n)).
 * A debit with a counterparty not in the known set, when the baseline holds ≥ minHistory debits and the
 * account's first debit is at least minHistoryMs old (its monthly payees are known by then), is judged:
 * ratio = amount / max(median, 0.01). A finding fires when ratio ≥ multiple and amount ≥ minAmount (at most
 * one per cooldownMs). The debit is judged against the baseline BEFORE it, then joins it and the known set.
 *
 * RiskSignal per judged debit: signalScore(min(ratio / multiple, amount / minAmount)) (flow-common.ts:
 * 0 up to half the threshold, 0.8 at it). Debits to known counterparties, and debits before minHistory,
 * are not judged.
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Severity, type Transaction } from '../core/events.ts';
import { formatAmount, formatTimes, round } from './format.ts';
import { num, numOrNull, plural, signalScore } from './flow-common.ts';
import { SortedFifo } from './tx-common.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft, RiskSignal } from './types.ts';

const DAY = 86_400_000;
/** Floor under the usual amount in the ratio (accounts whose median debit is 0). */
const MIN_USUAL = 0.01;

export const newCounterpartyLargeAmountParams = z
  .strictObject({
    /** The payment must be at least this multiple of the account's median debit. */
    multiple: z.number().finite().gt(1).default(5),
    /** ... and at least this amount (in the transaction's currency). */
    minAmount: z.number().finite().nonnegative().default(500),
    /** No judgement before the baseline holds this many debits. */
    minHistory: z.number().int().min(1).default(10),
    /** No judgement before the account's first debit is this old (so monthly payees such as rent are known). */
    minHistoryMs: z.number().int().nonnegative().default(35 * DAY),
    /** The usual-amount baseline covers the debits of this much event time. */
    baselineMs: z.number().int().positive().default(90 * DAY),
    /** Bound on debits in the baseline (memory per account). */
    maxSamples: z.number().int().min(1).max(100_000).default(200),
    /** Counterparties remembered per account; the least recently paid is forgotten first (then counts as new again). */
    maxKnown: z.number().int().min(1).max(1_000_000).default(500),
    /** At most one finding per account within this time. */
    cooldownMs: z.number().int().nonnegative().default(600_000),
  })
  .superRefine((p, ctx) => {
    if (p.minHistory > p.maxSamples) {
      ctx.addIssue({ code: 'custom', path: ['minHistory'], message: `must be <= maxSamples (${p.maxSamples})` });
    }
  });
export type NewCounterpartyLargeAmountParams = z.infer<typeof newCounterpartyLargeAmountParams>;

export interface NewCounterpartyLargeAmountState {
  key: string;
  /** Counterparty → last time paid, least recently paid first. */
  known: Map<string, number>;
  /** The baseline's debit amounts in arrival order, with their sorted view (built when first judged). */
  amounts: SortedFifo;
  firstTs: number | null;
  debits: number;
  lastFindingTs: number | null;
}

interface NewCounterpartyLargeAmountJSON {
  v: 1;
  key: string;
  known: Array<[string, number]>;
  horizon: number | null;
  amountTs: number[];
  amounts: number[];
  firstTs: number | null;
  debits: number;
  lastFindingTs: number | null;
}

function makeInstance(params: NewCounterpartyLargeAmountParams, ruleId: string): DetectorInstance<NewCounterpartyLargeAmountState> {
  const { multiple, minAmount, minHistory, minHistoryMs, baselineMs, maxSamples, maxKnown, cooldownMs } = params;

  const newState = (key: string): NewCounterpartyLargeAmountState => ({
    key,
    known: new Map(),
    amounts: new SortedFifo(baselineMs, maxSamples),
    firstTs: null,
    debits: 0,
    lastFindingTs: null,
  });

  const severityFor = (ratio: number): Severity => {
    if (ratio >= 4 * multiple) return 'critical';
    if (ratio >= 2 * multiple) return 'high';
    return 'medium';
  };

  const remember = (s: NewCounterpartyLargeAmountState, cp: string, ts: number): void => {
    s.known.delete(cp);
    s.known.set(cp, ts);
    if (s.known.size > maxKnown) s.known.delete(s.known.keys().next().value as string);
  };

  const onDebit = (s: NewCounterpartyLargeAmountState, tx: Transaction, out: FindingDraft[], signals?: RiskSignal[]): void => {
    const ts = tx.ts;
    const amount = Math.abs(tx.amount);
    s.amounts.expire(ts);
    const cp = tx.counterparty !== undefined && tx.counterparty !== tx.account ? tx.counterparty : undefined;
    const history = s.amounts.size;
    const seasoned = s.firstTs !== null && ts - s.firstTs >= minHistoryMs;
    if (cp !== undefined && history >= minHistory && seasoned && !s.known.has(cp)) {
      const usual = s.amounts.sorted.median();
      const ratio = amount / Math.max(usual, MIN_USUAL);
      const r = Math.min(ratio / multiple, minAmount > 0 ? amount / minAmount : Number.POSITIVE_INFINITY);
      const score = signalScore(r);
      if (signals && score > 0) {
        signals.push({
          detector: 'new_counterparty_large_amount',
          ruleId,
          score,
          reason: `First payment to ${cp}: ${formatAmount(amount, tx.currency)}, ${formatTimes(ratio)} the usual ${formatAmount(usual, tx.currency)}`,
        });
      }
      const cooled = s.lastFindingTs === null || ts - s.lastFindingTs >= cooldownMs || ts < s.lastFindingTs;
      if (ratio >= multiple && amount >= minAmount && cooled) {
        s.lastFindingTs = ts;
        const ref = eventRef(tx);
        const knownCount = s.known.size;
        out.push({
          severity: severityFor(ratio),
          score: round(ratio, 4),
          account: s.key,
          key: s.key,
          ts,
          windowStart: Math.min(s.amounts.oldestTs ?? ts, ts),
          windowEnd: ts,
          summary:
            `${s.key} paid ${formatAmount(amount, tx.currency)} to ${cp}, a counterparty it has not paid before, ` +
            `${formatTimes(ratio)} its usual debit of ${formatAmount(usual, tx.currency)} (${plural(knownCount, 'known counterparty', 'known counterparties')})`,
          trigger: ref,
          evidence: {
            observed: { amount, currency: tx.currency, counterparty: cp, ratio: round(ratio, 4), channel: tx.channel },
            baseline: {
              usualAmount: usual,
              mad: s.amounts.sorted.mad(),
              samples: history,
              knownCounterparties: knownCount,
              debitsSeen: s.debits,
              historyMs: ts - (s.firstTs ?? ts),
            },
            threshold: { multiple, minAmount, minHistory, minHistoryMs },
            triggers: [ref],
          },
        });
      }
    }
    s.debits += 1;
    if (s.firstTs === null || ts < s.firstTs) s.firstTs = ts;
    if (cp !== undefined) remember(s, cp, ts);
    s.amounts.push(ts, amount);
  };

  return {
    name: 'new_counterparty_large_amount',
    ruleId,
    kinds: ['transaction'],
    newState,
    onEvent(state: NewCounterpartyLargeAmountState, ev: CanonicalEvent, out: FindingDraft[], signals?: RiskSignal[]): void {
      if (ev.kind !== 'transaction' || ev.direction !== 'debit' || !Number.isFinite(ev.ts) || !Number.isFinite(ev.amount)) return;
      onDebit(state, ev, out, signals);
    },
    toJSON(s: NewCounterpartyLargeAmountState): NewCounterpartyLargeAmountJSON {
      const w = s.amounts.toJSON();
      return {
        v: 1,
        key: s.key,
        known: [...s.known],
        horizon: w.horizon,
        amountTs: w.ts,
        amounts: w.values,
        firstTs: s.firstTs,
        debits: s.debits,
        lastFindingTs: s.lastFindingTs,
      };
    },
    fromJSON(json: unknown): NewCounterpartyLargeAmountState {
      const j = json as Partial<NewCounterpartyLargeAmountJSON> | null;
      if (
        !j ||
        j.v !== 1 ||
        typeof j.key !== 'string' ||
        !Array.isArray(j.known) ||
        !Array.isArray(j.amountTs) ||
        !Array.isArray(j.amounts) ||
        j.amountTs.length !== j.amounts.length
      ) {
        throw new TypeError('new_counterparty_large_amount: state JSON is not a v1 new_counterparty_large_amount state');
      }
      const what = 'new_counterparty_large_amount';
      const s = newState(j.key);
      for (const e of j.known) {
        if (!Array.isArray(e) || typeof e[0] !== 'string') throw new TypeError(`${what}: bad known counterparty`);
        remember(s, e[0], num(e[1], `${what}.known`)); // keeps the newest maxKnown
      }
      // The baseline rebuilt under this instance's window and bound (identical when unchanged).
      for (let i = 0; i < j.amountTs.length; i++) s.amounts.push(num(j.amountTs[i], `${what}.amountTs`), num(j.amounts[i], `${what}.amounts`));
      const horizon = numOrNull(j.horizon, `${what}.horizon`);
      if (horizon !== null) s.amounts.expire(horizon);
      s.firstTs = numOrNull(j.firstTs, `${what}.firstTs`);
      s.debits = num(j.debits ?? 0, `${what}.debits`);
      s.lastFindingTs = numOrNull(j.lastFindingTs, `${what}.lastFindingTs`);
      return s;
    },
  };
}

export const newCounterpartyLargeAmountSpec: DetectorSpec<NewCounterpartyLargeAmountParams, NewCounterpartyLargeAmountState> = {
  name: 'new_counterparty_large_amount',
  description:
    'A payment to a counterparty the account has not paid before (within its last maxKnown), at least multiple × ' +
    "the account's median debit and at least minAmount, once the account has minHistory debits.",
  kinds: ['transaction'],
  params: newCounterpartyLargeAmountParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
