/**
 * `structuring`: repeated amounts just under a reporting threshold (e.g. several deposits of 9,000–9,999
 * USD), the classic way to move more than the threshold without a report.
 *
 * Per account and currency (only currencies with a threshold T in `thresholds`; a bounded map of
 * maxCurrencies, least recently seen evicted), the transactions that pass the direction and channel
 * filters with bandLow·T ≤ amount < T ("in band") enter a TimeWindow of windowMs (at most maxEvents) with a
 * running total. A finding fires when, with the current in-band transaction, the window holds
 * count ≥ minCount in-band transactions AND their total ≥ minTotalRatio·T — once per episode (re-armed
 * when an in-band transaction finds the window below those limits again) and cooldownMs apart at least.
 * ratio = min(count / minCount, total / (minTotalRatio·T)); every in-band transaction gets the risk signal
 * riskScore(ratio) (tx-common.ts); transactions outside the band are not judged. Work per transaction:
 * O(1) amortized.
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Transaction } from '../core/events.ts';
import { TimeWindow } from '../stats/event-window.ts';
import { armedFires } from './cooldown.ts';
import { formatAmount, formatPercent, round } from './format.ts';
import {
  MAX_TRIGGERS,
  arr,
  channelMatches,
  currencyAmounts,
  directionMatches,
  directionParam,
  formatSpan,
  lruEntry,
  num,
  numOrNull,
  riskScore,
  str,
  trimLru,
  txAmount,
  v1Object,
} from './tx-common.ts';
import { gradeAbove } from './severity.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft, RiskSignal } from './types.ts';

const DAY_MS = 86_400_000;

export const structuringParams = z
  .strictObject({
    /** Reporting threshold per currency; transactions in other currencies are not judged. */
    thresholds: currencyAmounts.default({ USD: 10_000, EUR: 10_000, GBP: 10_000, CAD: 10_000, AUD: 10_000 }),
    /** Lower edge of the band, as a fraction of the threshold: in band = [bandLow·T, T). */
    bandLow: z.number().finite().gt(0).lt(1).default(0.9),
    /** Event-time window in which the in-band transactions are gathered. */
    windowMs: z.number().int().positive().default(7 * DAY_MS),
    /** At least this many in-band transactions within the window. */
    minCount: z.number().int().min(1).default(3),
    /** Their total must also reach this multiple of the threshold. */
    minTotalRatio: z.number().finite().nonnegative().default(1),
    /** Which transactions count: 'credit' (deposits), 'debit' (withdrawals, transfers out) or 'any'. */
    direction: directionParam.default('any'),
    /** Only transactions of these channels (empty: every channel). */
    channels: z.array(z.string().min(1)).default([]),
    /** Bound on the in-band transactions kept per account and currency. */
    maxEvents: z.number().int().min(1).max(100_000).default(200),
    /** Currencies tracked per account (least recently seen evicted beyond). */
    maxCurrencies: z.number().int().min(1).max(64).default(4),
    /** At most one finding per account and currency within this time (besides one per episode). */
    cooldownMs: z.number().int().nonnegative().default(DAY_MS),
  })
  .superRefine((p, ctx) => {
    if (p.minCount > p.maxEvents) {
      ctx.addIssue({ code: 'custom', path: ['minCount'], message: `must be <= maxEvents (${p.maxEvents})` });
    }
    if (Object.keys(p.thresholds).length === 0) {
      ctx.addIssue({ code: 'custom', path: ['thresholds'], message: 'needs at least one currency' });
    }
  });
export type StructuringParams = z.infer<typeof structuringParams>;

interface Entry {
  ref: string;
  amount: number;
}

interface CurState {
  win: TimeWindow<Entry>;
  total: number;
  armed: boolean;
  lastFireTs: number | null;
  /** Transactions of the currency judged, and how many of them were in band (all time). */
  seen: number;
  inBand: number;
}

export interface StructuringState {
  key: string;
  curs: Map<string, CurState>;
}

interface CurJSON {
  cur: string;
  horizon: number | null;
  entries: Array<[ref: string, ts: number, amount: number]>;
  total: number;
  armed: boolean;
  lastFireTs: number | null;
  seen: number;
  inBand: number;
}

interface StructuringJSON {
  v: 1;
  key: string;
  curs: CurJSON[];
}

function makeInstance(params: StructuringParams, ruleId: string): DetectorInstance<StructuringState> {
  const { thresholds, bandLow, windowMs, minCount, minTotalRatio, direction, maxEvents, maxCurrencies, cooldownMs } = params;
  const channels = new Set(params.channels);

  const newState = (key: string): StructuringState => ({ key, curs: new Map() });
  const newCur = (): CurState => ({ win: new TimeWindow<Entry>(windowMs, maxEvents), total: 0, armed: true, lastFireTs: null, seen: 0, inBand: 0 });
  const evictor =
    (c: CurState) =>
    (e: Entry): void => {
      c.total = c.win.size > 0 ? c.total - e.amount : 0; // exact zero when empty
    };

  const onTx = (s: StructuringState, t: Transaction, out: FindingDraft[], signals?: RiskSignal[]): void => {
    const curKey = t.currency;
    const T = Object.hasOwn(thresholds, curKey) ? thresholds[curKey] : undefined;
    if (T === undefined) return;
    if (!directionMatches(direction, t) || !channelMatches(channels, t.channel)) return;
    const amount = txAmount(t);
    const ts = t.ts;
    if (!Number.isFinite(amount) || !Number.isFinite(ts)) return;
    const c = lruEntry(s.curs, curKey, maxCurrencies, newCur);
    c.seen += 1;
    const evict = evictor(c);
    if (!(amount >= bandLow * T && amount < T)) {
      c.win.expire(ts, evict);
      return;
    }
    c.inBand += 1;
    const ref = eventRef(t);
    c.win.push(ts, { ref, amount }, evict);
    c.total += amount;

    const count = c.win.size;
    const minTotal = minTotalRatio * T;
    const countRatio = count / minCount;
    const totalRatio = minTotal > 0 ? c.total / minTotal : Number.POSITIVE_INFINITY;
    const ratio = Math.min(countRatio, totalRatio);
    const score = riskScore(ratio);
    if (signals && score > 0) {
      signals.push({
        detector: 'structuring',
        ruleId,
        score,
        reason: `${count} transaction${count === 1 ? '' : 's'} just under ${formatAmount(T, curKey)} within ${formatSpan(windowMs)}, total ${formatAmount(c.total, curKey)}`,
      });
    }
    if (!(ratio >= 1)) {
      c.armed = true;
      return;
    }
    if (!armedFires(c, ts, cooldownMs)) return;

    const items: Array<{ ref: string; ts: number; amount: number }> = [];
    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    for (let i = Math.max(0, count - MAX_TRIGGERS); i < count; i++) {
      const { ts: ets, value } = c.win.at(i);
      items.push({ ref: value.ref, ts: ets, amount: value.amount });
      if (value.amount < lo) lo = value.amount;
      if (value.amount > hi) hi = value.amount;
    }
    const start = Math.min(c.win.oldestTs ?? ts, ts);
    const summary =
      `${t.account} made ${count} transactions of ${formatAmount(lo, curKey)}–${formatAmount(hi, curKey)}, just under the ` +
      `${formatAmount(T, curKey)} reporting threshold, within ${formatSpan(ts - start)} (total ${formatAmount(c.total, curKey)})`;
    out.push({
      severity: gradeAbove(Math.min(countRatio, totalRatio), 3, 2),
      score: round(ratio, 4),
      account: t.account,
      key: t.account,
      ts,
      windowStart: start,
      windowEnd: ts,
      summary,
      trigger: ref,
      evidence: {
        observed: {
          count,
          total: round(c.total, 6),
          currency: curKey,
          smallest: lo,
          largest: hi,
          amounts: items.map((x) => x.amount.toFixed(2)).join(', '),
          spanMs: ts - start,
        },
        baseline: {
          transactionsSeen: c.seen,
          inBandSeen: c.inBand,
          inBandShare: round(c.inBand / c.seen, 6),
        },
        threshold: {
          reportingThreshold: T,
          bandLow: round(bandLow * T, 6),
          band: `${formatPercent(bandLow)}–100%`,
          minCount,
          minTotal: round(minTotal, 6),
          windowMs,
        },
        triggers: items.map((x) => x.ref),
        transactions: items,
      },
    });
  };

  return {
    name: 'structuring',
    ruleId,
    kinds: ['transaction'],
    newState,
    onEvent(state: StructuringState, ev: CanonicalEvent, out: FindingDraft[], signals?: RiskSignal[]): void {
      if (ev.kind === 'transaction') onTx(state, ev, out, signals);
    },
    toJSON(s: StructuringState): StructuringJSON {
      return {
        v: 1,
        key: s.key,
        curs: [...s.curs].map(([cur, c]) => {
          const w = c.win.toJSON();
          return {
            cur,
            horizon: w.horizon,
            entries: w.values.map((e, i) => [e.ref, w.ts[i] as number, e.amount] as [string, number, number]),
            total: c.total,
            armed: c.armed,
            lastFireTs: c.lastFireTs,
            seen: c.seen,
            inBand: c.inBand,
          };
        }),
      };
    },
    fromJSON(json: unknown): StructuringState {
      const what = 'structuring';
      const j = v1Object(json, what);
      const s = newState(j.key as string);
      for (const raw of arr(j.curs, `${what}.curs`)) {
        const o = raw as Partial<CurJSON> | null;
        if (!o || typeof o !== 'object') throw new TypeError(`${what}: bad currency entry`);
        const c = newCur();
        c.total = num(o.total, `${what}.curs.total`);
        c.armed = o.armed !== false;
        c.lastFireTs = numOrNull(o.lastFireTs, `${what}.curs.lastFireTs`);
        c.seen = num(o.seen ?? 0, `${what}.curs.seen`);
        c.inBand = num(o.inBand ?? 0, `${what}.curs.inBand`);
        const evict = evictor(c);
        // The total is restored as saved; under other window parameters what no longer fits leaves through
        // the eviction path (nothing leaves when they are unchanged).
        for (const e of arr(o.entries, `${what}.curs.entries`)) {
          const a = arr(e, `${what}.curs.entries[]`);
          c.win.push(num(a[1], `${what}.entries.ts`), { ref: str(a[0], `${what}.entries.ref`), amount: num(a[2], `${what}.entries.amount`) }, evict);
        }
        const horizon = numOrNull(o.horizon, `${what}.curs.horizon`);
        if (horizon !== null) c.win.expire(horizon, evict);
        s.curs.set(str(o.cur, `${what}.curs.cur`), c);
      }
      trimLru(s.curs, maxCurrencies);
      return s;
    },
  };
}

export const structuringSpec: DetectorSpec<StructuringParams, StructuringState> = {
  name: 'structuring',
  description:
    'Repeated transactions just under a reporting threshold (per currency) within a window: at least minCount in the ' +
    'band below the threshold, together reaching the threshold; one finding per episode.',
  kinds: ['transaction'],
  params: structuringParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
