/**
 * `velocity`: too many transactions, or too much money, within a sliding event-time window of an account.
 *
 * Per account, the transactions that pass the direction and channel filters enter a TimeWindow of windowMs
 * (at most maxEvents): the count is the window's size, and a running sum per currency (a bounded map of
 * at most maxCurrencies currencies, least recently seen evicted) gives the window's amount in the
 * transaction's currency. Each transaction is judged after it entered the window:
 *  - absolute tests: count ≥ maxCount; amount ≥ maxAmount (per-currency override) with count ≥ amountMinCount;
 *  - baseline tests: count ≥ baselineMinCount and ≥ baselineFactor × the account's usual count per window;
 *    amount ≥ baselineMinAmount and ≥ baselineFactor × its usual amount per window (per currency), with
 *    count ≥ amountMinCount (a single large payment is amount_anomaly's business, not velocity).
 *    The usual rate comes from the transactions that have LEFT the window (so a burst does not raise its
 *    own baseline): an event-time exponentially decayed count (and amount) with half-life
 *    baselineHalfLifeMs, divided by the decayed length of the history before the window; the tests need
 *    minHistoryMs of history before the window.
 * `mode` picks the tests: 'absolute', 'baseline', or 'both' (both kinds run; either one crossed fires).
 * ratio = the largest observed / threshold of the active tests (for a baseline test, the smaller of its
 * two ratios, both having to hold); a finding fires when ratio ≥ 1, once per episode: the rule re-arms
 * when a judged transaction sees every test below its threshold again, and cooldownMs apart at least.
 * Every judged transaction gets a risk signal riskScore(ratio) (tx-common.ts). Work per transaction: O(1)
 * amortized (ring buffer, running sums, evictions).
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Severity, type Transaction } from '../core/events.ts';
import { TimeWindow } from '../stats/event-window.ts';
import { formatAmount, formatFixed, formatTimes, round } from './format.ts';
import {
  MAX_TRIGGERS,
  arr,
  channelMatches,
  currencyAmounts,
  decayedAdd,
  decayedFromJSON,
  decayedRate,
  directionMatches,
  directionParam,
  directionWord,
  formatSpan,
  lruEntry,
  newDecayedSum,
  num,
  numOrNull,
  perCurrency,
  ratioTo,
  riskScore,
  str,
  trimLru,
  txAmount,
  v1Object,
  type DecayedSum,
} from './tx-common.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft, RiskSignal } from './types.ts';

const DAY_MS = 86_400_000;

export const velocityParams = z
  .strictObject({
    /** Sliding event-time window over which transactions are counted and summed (one window per rule). */
    windowMs: z.number().int().positive().default(600_000),
    /** 'absolute': maxCount/maxAmount; 'baseline': the account's own usual rate; 'both': either one crossed fires. */
    mode: z.enum(['absolute', 'baseline', 'both']).default('both'),
    /** Absolute limit: this many transactions within the window fire (0: no count limit). */
    maxCount: z.number().int().nonnegative().default(10),
    /** Absolute limit on the window's total amount in one currency (0: no amount limit). */
    maxAmount: z.number().finite().nonnegative().default(10_000),
    /** Per-currency overrides of maxAmount, e.g. { JPY: 1500000 }. */
    maxAmountByCurrency: currencyAmounts.default({}),
    /** The amount tests (absolute and baseline) need at least this many transactions in the window: one large payment alone is amount_anomaly's business. */
    amountMinCount: z.number().int().min(1).default(3),
    /** Baseline tests fire at this multiple of the account's usual count (or amount) per window. */
    baselineFactor: z.number().finite().min(1).default(5),
    /** Baseline count test: at least this many transactions in the window as well. */
    baselineMinCount: z.number().int().min(1).default(6),
    /** Baseline amount test: at least this total in the window as well (in the transaction's currency). */
    baselineMinAmount: z.number().finite().positive().default(3_000),
    /** Half-life of the account's usual rate (event-time exponential decay of the transactions that left the window). */
    baselineHalfLifeMs: z.number().int().positive().default(14 * DAY_MS),
    /** Baseline tests only when the account (currency) has at least this much history before the window. */
    minHistoryMs: z.number().int().nonnegative().default(7 * DAY_MS),
    /** Which transactions count: 'debit' (money out, card payments), 'credit' (money in) or 'any'. */
    direction: directionParam.default('debit'),
    /** Only transactions of these channels count (empty: every channel). */
    channels: z.array(z.string().min(1)).default([]),
    /** Bound on the transactions kept in the window per account (memory). */
    maxEvents: z.number().int().min(1).max(1_000_000).default(5_000),
    /** Currencies tracked per account (least recently seen evicted beyond). */
    maxCurrencies: z.number().int().min(1).max(64).default(8),
    /** At most one finding per account within this time (besides one per episode). */
    cooldownMs: z.number().int().nonnegative().default(600_000),
  })
  .superRefine((p, ctx) => {
    if (p.mode !== 'baseline' && p.maxCount === 0 && p.maxAmount === 0 && Object.keys(p.maxAmountByCurrency).length === 0) {
      ctx.addIssue({ code: 'custom', path: ['maxCount'], message: `mode '${p.mode}' needs maxCount or maxAmount > 0` });
    }
    if (p.maxCount > p.maxEvents) {
      ctx.addIssue({ code: 'custom', path: ['maxCount'], message: `must be <= maxEvents (${p.maxEvents})` });
    }
    if (p.baselineMinCount > p.maxEvents) {
      ctx.addIssue({ code: 'custom', path: ['baselineMinCount'], message: `must be <= maxEvents (${p.maxEvents})` });
    }
  });
export type VelocityParams = z.infer<typeof velocityParams>;

interface Entry {
  ref: string;
  amount: number;
  cur: string;
  /** Generation of the currency entry it was added to (a currency evicted and seen again starts afresh). */
  gen: number;
}

interface CurState {
  gen: number;
  /** Amount of this currency's transactions in the window, and their number. */
  sum: number;
  n: number;
  /** First transaction in this currency (history for the amount baseline). */
  firstTs: number;
  /** Decayed amount of this currency's transactions that left the window. */
  base: DecayedSum;
}

export interface VelocityState {
  key: string;
  win: TimeWindow<Entry>;
  curs: Map<string, CurState>;
  nextGen: number;
  /** Decayed count of the transactions that left the window. */
  base: DecayedSum;
  firstTs: number | null;
  /** False while an episode that fired goes on. */
  armed: boolean;
  lastFireTs: number | null;
  judged: number;
}

type EntryJSON = [ref: string, ts: number, amount: number, cur: string, gen: number];

interface CurJSON {
  cur: string;
  gen: number;
  sum: number;
  n: number;
  firstTs: number;
  base: DecayedSum;
}

interface VelocityJSON {
  v: 1;
  key: string;
  horizon: number | null;
  entries: EntryJSON[];
  curs: CurJSON[];
  nextGen: number;
  base: DecayedSum;
  firstTs: number | null;
  armed: boolean;
  lastFireTs: number | null;
  judged: number;
}

type Test = 'count_limit' | 'amount_limit' | 'count_baseline' | 'amount_baseline';

function severityFor(ratio: number): Severity {
  if (ratio >= 4) return 'critical';
  if (ratio >= 2) return 'high';
  return 'medium';
}

function formatUsual(x: number): string {
  return formatFixed(x, x < 1 ? 2 : 1);
}

function makeInstance(params: VelocityParams, ruleId: string): DetectorInstance<VelocityState> {
  const { windowMs, mode, maxCount, maxAmount, maxAmountByCurrency, amountMinCount, baselineFactor, baselineMinCount, baselineMinAmount } = params;
  const { baselineHalfLifeMs, minHistoryMs, direction, maxEvents, maxCurrencies, cooldownMs } = params;
  const channels = new Set(params.channels);
  const useAbsolute = mode !== 'baseline';
  const useBaseline = mode !== 'absolute';
  const dur = formatSpan(windowMs);
  const dirWord = directionWord(direction);

  const newState = (key: string): VelocityState => ({
    key,
    win: new TimeWindow<Entry>(windowMs, maxEvents),
    curs: new Map(),
    nextGen: 0,
    base: newDecayedSum(),
    firstTs: null,
    armed: true,
    lastFireTs: null,
    judged: 0,
  });

  /** A transaction leaving the window joins the baselines and leaves the running sums. */
  const evictor =
    (s: VelocityState) =>
    (e: Entry, ts: number): void => {
      decayedAdd(s.base, ts, 1, baselineHalfLifeMs);
      const c = s.curs.get(e.cur);
      if (c === undefined || c.gen !== e.gen) return;
      c.n -= 1;
      c.sum = c.n > 0 ? c.sum - e.amount : 0; // exact zero when empty: no rounding residue
      decayedAdd(c.base, ts, e.amount, baselineHalfLifeMs);
    };

  const onTx = (s: VelocityState, t: Transaction, out: FindingDraft[], signals?: RiskSignal[]): void => {
    if (!directionMatches(direction, t) || !channelMatches(channels, t.channel)) return;
    const ts = t.ts;
    const amount = txAmount(t);
    if (!Number.isFinite(ts) || !Number.isFinite(amount)) return;
    s.judged += 1;
    if (s.firstTs === null || ts < s.firstTs) s.firstTs = ts;
    const curKey = t.currency;
    const cur = lruEntry(s.curs, curKey, maxCurrencies, () => ({ gen: s.nextGen++, sum: 0, n: 0, firstTs: ts, base: newDecayedSum() }));
    if (ts < cur.firstTs) cur.firstTs = ts;
    const ref = eventRef(t);
    s.win.push(ts, { ref, amount, cur: curKey, gen: cur.gen }, evictor(s));
    cur.sum += amount;
    cur.n += 1;

    // ---- judge
    const count = s.win.size;
    const sum = cur.sum;
    const windowStartB = s.win.horizon - windowMs; // the baseline ends where the window starts
    const maxAmt = perCurrency(maxAmountByCurrency, curKey, maxAmount);
    let ratio = 0;
    let test = 'count_limit' as Test;
    const consider = (r: number, which: Test): void => {
      if (r > ratio) {
        ratio = r;
        test = which;
      }
    };
    if (useAbsolute) {
      consider(ratioTo(count, maxCount), 'count_limit');
      consider(Math.min(count / amountMinCount, ratioTo(sum, maxAmt)), 'amount_limit');
    }
    // The usual rates are computed in every mode (context for the analyst); they are tests only with a baseline mode.
    let usualCount: number | null = null;
    let usualAmount: number | null = null;
    if (s.firstTs !== null && windowStartB - s.firstTs >= minHistoryMs) {
      const rate = decayedRate(s.base, windowStartB, s.firstTs, baselineHalfLifeMs);
      if (rate !== null) usualCount = rate * windowMs;
    }
    if (windowStartB - cur.firstTs >= minHistoryMs) {
      const rate = decayedRate(cur.base, windowStartB, cur.firstTs, baselineHalfLifeMs);
      if (rate !== null) usualAmount = rate * windowMs;
    }
    if (useBaseline) {
      if (usualCount !== null) {
        const byUsual = usualCount > 0 ? count / (baselineFactor * usualCount) : Number.POSITIVE_INFINITY;
        consider(Math.min(count / baselineMinCount, byUsual), 'count_baseline');
      }
      if (usualAmount !== null) {
        const byUsual = usualAmount > 0 ? sum / (baselineFactor * usualAmount) : Number.POSITIVE_INFINITY;
        consider(Math.min(count / amountMinCount, sum / baselineMinAmount, byUsual), 'amount_baseline');
      }
    }

    const isAmount = test === 'amount_limit' || test === 'amount_baseline';
    const score = riskScore(ratio);
    if (signals && score > 0) {
      const what = isAmount ? formatAmount(sum, curKey) : `${count} ${dirWord}transactions`;
      const limitText =
        test === 'count_limit'
          ? `limit ${maxCount}`
          : test === 'amount_limit'
            ? `limit ${formatAmount(maxAmt, curKey)}`
            : test === 'count_baseline'
              ? `usual ${formatUsual(usualCount ?? 0)}`
              : `usual ${formatAmount(usualAmount ?? 0, curKey)}`;
      signals.push({ detector: 'velocity', ruleId, score, reason: `${what} in ${dur} (${limitText})` });
    }

    if (!(ratio >= 1)) {
      s.armed = true;
      return;
    }
    if (!s.armed) return;
    if (s.lastFireTs !== null && ts >= s.lastFireTs && ts - s.lastFireTs < cooldownMs) return;
    s.armed = false;
    s.lastFireTs = ts;

    const triggers: string[] = [];
    for (let i = Math.max(0, count - MAX_TRIGGERS); i < count; i++) triggers.push(s.win.at(i).value.ref);
    const trigger = ref;
    const usual = isAmount ? usualAmount : usualCount;
    const observedValue = isAmount ? sum : count;
    const parts: string[] = [];
    if (test === 'count_limit') parts.push(`limit: ${maxCount} per ${dur}`);
    if (test === 'amount_limit') parts.push(`limit: ${formatAmount(maxAmt, curKey)} per ${dur}`);
    if (usual !== null) {
      parts.push(`usual: ${isAmount ? formatAmount(usual, curKey) : formatUsual(usual)} per ${dur}`);
      if ((test === 'count_baseline' || test === 'amount_baseline') && usual > 0) parts.push(`${formatTimes(observedValue / usual)} that`);
    }
    const summary =
      `${t.account} made ${count} ${dirWord}transaction${count === 1 ? '' : 's'} totalling ${formatAmount(sum, curKey)} within ${dur}` +
      (parts.length > 0 ? ` (${parts.join('; ')})` : '');
    out.push({
      severity: severityFor(ratio),
      score: round(ratio, 4),
      account: t.account,
      key: t.account,
      ts,
      windowStart: Math.min(s.win.oldestTs ?? ts, ts),
      windowEnd: ts,
      summary,
      trigger,
      evidence: {
        observed: {
          test,
          ratio: round(ratio, 6),
          count,
          amount: round(sum, 6),
          currency: curKey,
          currencyCount: cur.n,
          windowMs,
        },
        baseline: {
          usualCount: usualCount === null ? null : round(usualCount, 6),
          usualAmount: usualAmount === null ? null : round(usualAmount, 6),
          historyMs: s.firstTs === null ? 0 : Math.max(0, windowStartB - s.firstTs),
          transactionsJudged: s.judged,
        },
        threshold: {
          mode,
          maxCount: useAbsolute ? maxCount : null,
          maxAmount: useAbsolute ? maxAmt : null,
          baselineFactor: useBaseline ? baselineFactor : null,
          baselineMinCount: useBaseline ? baselineMinCount : null,
          baselineMinAmount: useBaseline ? baselineMinAmount : null,
          amountMinCount,
        },
        triggers,
      },
    });
  };

  return {
    name: 'velocity',
    ruleId,
    kinds: ['transaction'],
    newState,
    onEvent(state: VelocityState, ev: CanonicalEvent, out: FindingDraft[], signals?: RiskSignal[]): void {
      if (ev.kind === 'transaction') onTx(state, ev, out, signals);
    },
    toJSON(s: VelocityState): VelocityJSON {
      const w = s.win.toJSON();
      return {
        v: 1,
        key: s.key,
        horizon: w.horizon,
        entries: w.values.map((e, i) => [e.ref, w.ts[i] as number, e.amount, e.cur, e.gen]),
        curs: [...s.curs].map(([cur, c]) => ({ cur, gen: c.gen, sum: c.sum, n: c.n, firstTs: c.firstTs, base: { ...c.base } })),
        nextGen: s.nextGen,
        base: { ...s.base },
        firstTs: s.firstTs,
        armed: s.armed,
        lastFireTs: s.lastFireTs,
        judged: s.judged,
      };
    },
    fromJSON(json: unknown): VelocityState {
      const what = 'velocity';
      const j = v1Object(json, what);
      const s = newState(j.key as string);
      for (const c of arr(j.curs, `${what}.curs`)) {
        const o = c as Partial<CurJSON> | null;
        if (!o || typeof o !== 'object') throw new TypeError(`${what}: bad currency entry`);
        s.curs.set(str(o.cur, `${what}.curs.cur`), {
          gen: num(o.gen, `${what}.curs.gen`),
          sum: num(o.sum, `${what}.curs.sum`),
          n: num(o.n, `${what}.curs.n`),
          firstTs: num(o.firstTs, `${what}.curs.firstTs`),
          base: decayedFromJSON(o.base, what),
        });
      }
      trimLru(s.curs, maxCurrencies);
      s.nextGen = num(j.nextGen, `${what}.nextGen`);
      s.base = decayedFromJSON(j.base, what);
      s.firstTs = numOrNull(j.firstTs, `${what}.firstTs`);
      s.armed = j.armed !== false;
      s.lastFireTs = numOrNull(j.lastFireTs, `${what}.lastFireTs`);
      s.judged = num(j.judged ?? 0, `${what}.judged`);
      // Rebuild the window under the current parameters: what no longer fits leaves through the eviction
      // path (into the baselines), exactly as it would have live; nothing leaves when they are unchanged.
      const evict = evictor(s);
      for (const e of arr(j.entries, `${what}.entries`)) {
        const a = arr(e, `${what}.entries[]`);
        s.win.push(num(a[1], `${what}.entries.ts`), { ref: str(a[0], `${what}.entries.ref`), amount: num(a[2], `${what}.entries.amount`), cur: str(a[3], `${what}.entries.cur`), gen: num(a[4], `${what}.entries.gen`) }, evict);
      }
      const horizon = numOrNull(j.horizon, `${what}.horizon`);
      if (horizon !== null) s.win.expire(horizon, evict);
      return s;
    },
  };
}

export const velocitySpec: DetectorSpec<VelocityParams, VelocityState> = {
  name: 'velocity',
  description:
    'Count and amount of an account’s transactions within a sliding event-time window, against absolute limits ' +
    'and/or a multiple of the account’s own usual rate; one finding per episode.',
  kinds: ['transaction'],
  params: velocityParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
