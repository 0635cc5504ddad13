/**
 * `amount_anomaly`: a transaction amount far above what the account usually spends (or receives).
 *
 * Per account and currency — and channel, with perChannel (default) — (a bounded map of maxBaselines, least
 * recently seen evicted), the natural logs of the last windowSize amounts (and none older than maxAgeMs)
 * of the transactions that pass the direction and channel filters are kept in FIFO order with a sorted
 * view (tx-common SortedFifo: a SortedWindow built when the baseline is first judged, then maintained),
 * so median and MAD cost O(1)/O(log n). Each transaction with an amount > 0 is judged against the
 * baseline BEFORE it joins it:
 *   z = (ln(amount) − median) / max(1.4826 · MAD, minScale)
 * and a finding fires when all of these hold: the baseline holds ≥ minHistory amounts, z ≥ zThreshold,
 * amount ≥ minAmount (per-currency override; an absolute floor), and amount ≥ maxRatio × the largest
 * earlier amount in that baseline (its max so far, all time; maxRatio 0 turns that test off) — and no
 * finding fired for the account within cooldownMs. Only unusually LARGE amounts count (z > 0).
 * ratio = min(z / zThreshold, amount / minAmount, amount / (maxRatio · max)) is ≥ 1 exactly when the
 * tests pass; every judged transaction gets the risk signal riskScore(ratio) (tx-common.ts).
 * Work per transaction: O(log n) plus the SortedWindow's bounded memmove.
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Severity, type Transaction } from '../core/events.ts';
import { formatAmount, formatFixed, formatTimes, round } from './format.ts';
import { MAD_TO_SIGMA } from './price-jump.ts';
import {
  SortedFifo,
  arr,
  channelMatches,
  currencyAmounts,
  directionMatches,
  directionParam,
  num,
  numOrNull,
  perCurrency,
  riskScore,
  str,
  trimLru,
  txAmount,
  v1Object,
} from './tx-common.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft, RiskSignal } from './types.ts';

const DAY_MS = 86_400_000;

export const amountAnomalyParams = z
  .strictObject({
    /** Baseline: this many most recent amounts per account and currency. */
    windowSize: z.number().int().min(2).max(100_000).default(200),
    /** Amounts older than this (event time) leave the baseline too. */
    maxAgeMs: z.number().int().positive().default(180 * DAY_MS),
    /** No judgement before the baseline holds this many amounts. */
    minHistory: z.number().int().min(2).default(30),
    /** Robust z-score of ln(amount) against the baseline's median and MAD that fires. */
    zThreshold: z.number().finite().positive().default(5),
    /** Floor under the robust scale 1.4826·MAD of ln(amount) (0.25: about ±28% around the median). */
    minScale: z.number().finite().positive().default(0.25),
    /** Absolute floor: smaller amounts never fire (in the transaction's currency). */
    minAmount: z.number().finite().nonnegative().default(500),
    /** Per-currency overrides of minAmount, e.g. { JPY: 75000 }. */
    minAmountByCurrency: currencyAmounts.default({}),
    /** The amount must also reach this multiple of the account's largest earlier amount in the currency (0: no such test). */
    maxRatio: z.number().finite().nonnegative().default(1),
    /** Which transactions are judged and form the baseline: 'debit', 'credit' or 'any'. */
    direction: directionParam.default('debit'),
    /** Only transactions of these channels (empty: every channel). */
    channels: z.array(z.string().min(1)).default([]),
    /** One baseline per currency AND channel (a transfer is compared with the account's transfers, a card payment with its card payments); false: per currency. */
    perChannel: z.boolean().default(true),
    /** Baselines (currencies, or currency × channel) kept per account (least recently seen evicted beyond). */
    maxBaselines: z.number().int().min(1).max(64).default(8),
    /** At most one finding per account within this time. */
    cooldownMs: z.number().int().nonnegative().default(600_000),
  })
  .superRefine((p, ctx) => {
    if (p.minHistory > p.windowSize) {
      ctx.addIssue({ code: 'custom', path: ['minHistory'], message: `must be <= windowSize (${p.windowSize})` });
    }
  });
export type AmountAnomalyParams = z.infer<typeof amountAnomalyParams>;

/**
 * One baseline: ln(amount) in arrival order (for eviction by count and age) with its sorted view (for
 * median/MAD; built on first use: most baselines never reach minHistory).
 */
class CurState extends SortedFifo {
  /** Largest amount seen in this currency (all time). */
  max: number | null = null;
  seen = 0;
}

export interface AmountAnomalyState {
  key: string;
  curs: Map<string, CurState>;
  lastFireTs: number | null;
  judged: number;
  /** The baseline last seen (the last key of curs) and its entry: nothing to reorder when it comes again (not state: not in the JSON). */
  mruKey: string | null;
  mru: CurState | null;
}

interface CurJSON {
  cur: string;
  horizon: number | null;
  ts: number[];
  x: number[];
  max: number | null;
  seen: number;
}

interface AmountAnomalyJSON {
  v: 1;
  key: string;
  curs: CurJSON[];
  lastFireTs: number | null;
  judged: number;
}

function severityFor(z: number, threshold: number): Severity {
  if (z >= 2 * threshold) return 'critical';
  if (z >= 1.5 * threshold) return 'high';
  return 'medium';
}

function makeInstance(params: AmountAnomalyParams, ruleId: string): DetectorInstance<AmountAnomalyState> {
  const { windowSize, maxAgeMs, minHistory, zThreshold, minScale, minAmount, minAmountByCurrency, maxRatio } = params;
  const { direction, perChannel, maxBaselines, cooldownMs } = params;
  const channels = new Set(params.channels);

  const newState = (key: string): AmountAnomalyState => ({ key, curs: new Map(), lastFireTs: null, judged: 0, mruKey: null, mru: null });
  const noFloorOverrides = Object.keys(minAmountByCurrency).length === 0;

  /**
   * "currency|channel" without building the string per transaction: one shared string per pair (its
   * hash computed once), from a per-instance cache bounded against unexpected cardinality.
   */
  const pairKeys = new Map<string, Map<string, string>>();
  const pairKey = (currency: string, channel: string): string => {
    let byChannel = pairKeys.get(currency);
    if (byChannel === undefined) {
      if (pairKeys.size >= 256) pairKeys.clear();
      byChannel = new Map();
      pairKeys.set(currency, byChannel);
    }
    let k = byChannel.get(channel);
    if (k === undefined) {
      if (byChannel.size >= 256) byChannel.clear();
      k = `${currency}|${channel}`;
      byChannel.set(channel, k);
    }
    return k;
  };

  /** The baseline of baseKey, created when absent, moved to the most recently seen end (tx-common lruEntry, without the reordering when it is already there). */
  const baseline = (s: AmountAnomalyState, baseKey: string): CurState => {
    if (baseKey === s.mruKey) return s.mru as CurState;
    const curs = s.curs;
    let c = curs.get(baseKey);
    if (c !== undefined) {
      if (curs.size > 1) {
        curs.delete(baseKey);
        curs.set(baseKey, c);
      }
    } else {
      c = new CurState(maxAgeMs, windowSize);
      curs.set(baseKey, c);
      while (curs.size > maxBaselines) curs.delete(curs.keys().next().value as string);
    }
    s.mruKey = baseKey;
    s.mru = c;
    return c;
  };

  const onTx = (s: AmountAnomalyState, t: Transaction, out: FindingDraft[], signals?: RiskSignal[]): void => {
    if (!directionMatches(direction, t) || !channelMatches(channels, t.channel)) return;
    const amount = txAmount(t);
    const ts = t.ts;
    if (!(amount > 0) || !Number.isFinite(amount) || !Number.isFinite(ts)) return;
    s.judged += 1;
    const curKey = t.currency;
    const baseKey = perChannel ? pairKey(curKey, t.channel) : curKey;
    const c = baseline(s, baseKey);
    c.expire(ts);
    const x = Math.log(amount);
    const n = c.size;
    const prevMax = c.max;

    if (n >= minHistory) {
      const sorted = c.sorted;
      const median = sorted.median();
      const mad = sorted.mad();
      const scale = Math.max(MAD_TO_SIGMA * mad, minScale);
      const zScore = (x - median) / scale;
      const floor = noFloorOverrides ? minAmount : perCurrency(minAmountByCurrency, curKey, minAmount);
      const rZ = zScore / zThreshold;
      const rFloor = floor > 0 ? amount / floor : Number.POSITIVE_INFINITY;
      const rMax = maxRatio > 0 && prevMax !== null ? amount / (maxRatio * prevMax) : Number.POSITIVE_INFINITY;
      const ratio = Math.min(rZ, rFloor, rMax);
      const medianAmount = Math.exp(median);
      const score = riskScore(ratio);
      if (signals && score > 0) {
        signals.push({
          detector: 'amount_anomaly',
          ruleId,
          score,
          reason: `${formatAmount(amount, curKey)} is ${formatTimes(amount / medianAmount)} the account's median ${formatAmount(medianAmount, curKey)} (robust z ${formatFixed(zScore, 1)})`,
        });
      }
      const cooled = s.lastFireTs !== null && ts >= s.lastFireTs && ts - s.lastFireTs < cooldownMs;
      if (ratio >= 1 && !cooled) {
        s.lastFireTs = ts;
        const trigger = eventRef(t);
        const verb = t.direction === 'debit' ? 'paid' : 'received';
        const where = t.merchant ?? t.terminal ?? t.counterparty;
        const summary =
          `${t.account} ${verb} ${formatAmount(amount, curKey)}${where ? ` (${t.channel}, ${where})` : ` (${t.channel})`}, ` +
          `${formatTimes(amount / medianAmount)} its median of ${formatAmount(medianAmount, curKey)} over its last ${n} ${curKey} ${perChannel ? `${t.channel} ` : ''}transactions ` +
          `(robust z ${formatFixed(zScore, 1)} on log amounts` +
          (prevMax !== null ? `; largest before: ${formatAmount(prevMax, curKey)})` : ')');
        out.push({
          severity: severityFor(zScore, zThreshold),
          score: round(zScore, 4),
          account: t.account,
          key: t.account,
          ts,
          windowStart: Math.min(c.oldestTs ?? ts, ts),
          windowEnd: ts,
          summary,
          trigger,
          evidence: {
            observed: {
              amount,
              currency: curKey,
              logAmount: x,
              z: round(zScore, 6),
              timesMedian: round(amount / medianAmount, 6),
              timesMax: prevMax !== null ? round(amount / prevMax, 6) : null,
              channel: t.channel,
              merchant: t.merchant ?? null,
            },
            baseline: {
              medianAmount: round(medianAmount, 6),
              medianLog: median,
              madLog: mad,
              scale,
              scaleFloored: scale === minScale,
              samples: n,
              previousMax: prevMax,
              baseline: perChannel ? `${curKey} ${t.channel}` : curKey,
            },
            threshold: { z: zThreshold, minAmount: floor, maxRatio, minHistory },
            triggers: [trigger],
          },
        });
      }
    }

    c.push(ts, x);
    if (c.max === null || amount > c.max) c.max = amount;
    c.seen += 1;
  };

  return {
    name: 'amount_anomaly',
    ruleId,
    kinds: ['transaction'],
    newState,
    onEvent(state: AmountAnomalyState, ev: CanonicalEvent, out: FindingDraft[], signals?: RiskSignal[]): void {
      if (ev.kind === 'transaction') onTx(state, ev, out, signals);
    },
    toJSON(s: AmountAnomalyState): AmountAnomalyJSON {
      return {
        v: 1,
        key: s.key,
        curs: [...s.curs].map(([cur, c]) => {
          const w = c.toJSON();
          return { cur, horizon: w.horizon, ts: w.ts, x: w.values, max: c.max, seen: c.seen };
        }),
        lastFireTs: s.lastFireTs,
        judged: s.judged,
      };
    },
    fromJSON(json: unknown): AmountAnomalyState {
      const what = 'amount_anomaly';
      const j = v1Object(json, what);
      const s = newState(j.key as string);
      s.lastFireTs = numOrNull(j.lastFireTs, `${what}.lastFireTs`);
      s.judged = num(j.judged ?? 0, `${what}.judged`);
      for (const raw of arr(j.curs, `${what}.curs`)) {
        const o = raw as Partial<CurJSON> | null;
        if (!o || typeof o !== 'object') throw new TypeError(`${what}: bad currency entry`);
        const tsList = arr(o.ts, `${what}.curs.ts`);
        const xList = arr(o.x, `${what}.curs.x`);
        if (tsList.length !== xList.length) throw new TypeError(`${what}: curs.ts and curs.x differ in length`);
        const baseKey = str(o.cur, `${what}.curs.cur`);
        if (baseKey.includes('|') !== perChannel) continue; // saved under the other perChannel: not these baselines
        const c = new CurState(maxAgeMs, windowSize);
        // Rebuilt under the current windowSize/maxAgeMs (the same contents when they are unchanged).
        for (let i = 0; i < tsList.length; i++) {
          const x = num(xList[i], `${what}.curs.x`);
          c.push(num(tsList[i], `${what}.curs.ts`), x);
        }
        const horizon = numOrNull(o.horizon, `${what}.curs.horizon`);
        if (horizon !== null) c.expire(horizon);
        c.max = numOrNull(o.max, `${what}.curs.max`);
        c.seen = num(o.seen ?? 0, `${what}.curs.seen`);
        s.curs.set(baseKey, c);
      }
      trimLru(s.curs, maxBaselines);
      return s;
    },
  };
}

export const amountAnomalySpec: DetectorSpec<AmountAnomalyParams, AmountAnomalyState> = {
  name: 'amount_anomaly',
  description:
    'Robust z-score of ln(amount) against the median/MAD of the account’s recent amounts in that currency, with a ' +
    'minimum history, an absolute amount floor and a test against the account’s largest earlier amount.',
  kinds: ['transaction'],
  params: amountAnomalyParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
