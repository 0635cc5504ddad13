/**
 * `velocity`: too many transactions, or too much money, within a sliding event-time window of an account.
 *
 * Per account, the transactions that pass the direction and channel filters enter a sliding event-time
 * window of windowMs (at most maxEvents; TimeWindow's semantics on a ring of its own, TxWindow): the count
 * is the window's size, and a running sum per currency (a bounded map of at most maxCurrencies
 * currencies, least recently seen evicted) gives the window's amount in the transaction's currency.
 * Each transaction is judged after it entered the window:
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
  newDecayedSum,
  num,
  numOrNull,
  perCurrency,
  ratioTo,
  riskScore,
  str,
  trimLru,
  txAmount,
  txRef,
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

/**
 * The window's transactions, with TimeWindow's semantics (after a push or an expiry it holds those with
 * ts > horizon − spanMs, horizon = the largest time seen, at most maxCount of them, the newest; evicted
 * oldest first), on a ring of two plain arrays with three slots per transaction rather than an object
 * and a ref string each: [ts, amount, gen] and [source, id, currency], where gen is the generation of the
 * currency entry it was added to (a currency evicted and seen again starts afresh) and id is null when
 * source holds a whole ref (restored from JSON). The ref (eventRef, `tx:source:id`) is built only for a
 * finding's triggers and the JSON. The owner evicts (velocity's evictOldest feeds the baselines).
 */
class TxWindow {
  readonly spanMs: number;
  readonly maxCount: number;
  nums: number[];
  strs: (string | null)[];
  /** Transactions the arrays hold (4 at first, doubled up to maxCount). */
  cap: number;
  head = 0;
  n = 0;
  /** Largest time seen (−Infinity before the first push/expiry). */
  horizon = Number.NEGATIVE_INFINITY;

  constructor(spanMs: number, maxCount: number) {
    this.spanMs = spanMs;
    this.maxCount = maxCount;
    this.cap = Math.min(maxCount, 4);
    this.nums = new Array<number>(3 * this.cap);
    this.strs = new Array<string | null>(3 * this.cap);
  }

  get size(): number {
    return this.n;
  }
  /** Oldest transaction's time, or undefined when empty. */
  get oldestTs(): number | undefined {
    return this.n === 0 ? undefined : this.nums[3 * this.head];
  }
  /** First slot of the i-th transaction from the oldest (0) to the newest (size − 1). */
  slot(i: number): number {
    const k = this.head + i;
    return 3 * (k >= this.cap ? k - this.cap : k);
  }
  /** eventRef of the i-th transaction. */
  ref(i: number): string {
    const k = this.slot(i);
    const source = this.strs[k] as string;
    const id = this.strs[k + 1] as string | null;
    return id === null ? source : txRef(source, id);
  }

  /** Appends a transaction; there must be room (size < maxCount: the owner evicts first). */
  append(ts: number, amount: number, gen: number, source: string, id: string | null, cur: string): void {
    if (this.n === this.cap) this.grow();
    const k = this.slot(this.n);
    const nums = this.nums;
    const strs = this.strs;
    nums[k] = ts;
    nums[k + 1] = amount;
    nums[k + 2] = gen;
    strs[k] = source;
    strs[k + 1] = id;
    strs[k + 2] = cur;
    this.n += 1;
  }

  /** Drops the oldest transaction (read it first through slot(0)). */
  dropOldest(): void {
    const k = 3 * this.head;
    this.strs[k] = null; // drop the references
    this.strs[k + 1] = null;
    this.head = this.head + 1 === this.cap ? 0 : this.head + 1;
    this.n -= 1;
  }

  private grow(): void {
    const cap = Math.min(this.maxCount, this.cap * 2);
    // Allocated at their length (holey: the unused tail is never read), filled in ring order.
    const nums = new Array<number>(3 * cap);
    const strs = new Array<string | null>(3 * cap);
    for (let i = 0; i < this.n; i++) {
      const k = this.slot(i);
      for (let j = 0; j < 3; j++) {
        nums[3 * i + j] = this.nums[k + j] as number;
        strs[3 * i + j] = this.strs[k + j] as string | null;
      }
    }
    this.nums = nums;
    this.strs = strs;
    this.cap = cap;
    this.head = 0;
  }
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
  win: TxWindow;
  curs: Map<string, CurState>;
  nextGen: number;
  /** Decayed count of the transactions that left the window. */
  base: DecayedSum;
  firstTs: number | null;
  /** False while an episode that fired goes on. */
  armed: boolean;
  lastFireTs: number | null;
  judged: number;
  /** The currency last seen (the last key of curs) and its entry, so the usual single-currency account skips the Map (not state: not in the JSON). */
  mruCur: string | null;
  mru: CurState | null;
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
  const countLimitReason = ` ${dirWord}transactions in ${dur} (limit ${maxCount})`;
  const countUsualReason = ` ${dirWord}transactions in ${dur} (usual `;

  const newState = (key: string): VelocityState => ({
    key,
    win: new TxWindow(windowMs, maxEvents),
    curs: new Map(),
    nextGen: 0,
    base: newDecayedSum(),
    firstTs: null,
    armed: true,
    lastFireTs: null,
    judged: 0,
    mruCur: null,
    mru: null,
  });

  /** The oldest transaction leaves the window: it joins the baselines and leaves the running sums. */
  const evictOldest = (s: VelocityState): void => {
    const w = s.win;
    const k = 3 * w.head;
    const ts = w.nums[k] as number;
    const amount = w.nums[k + 1] as number;
    const gen = w.nums[k + 2] as number;
    const curKey = w.strs[k + 2] as string;
    w.dropOldest();
    decayedAdd(s.base, ts, 1, baselineHalfLifeMs);
    const c = curKey === s.mruCur ? (s.mru as CurState) : s.curs.get(curKey);
    if (c === undefined || c.gen !== gen) return;
    c.n -= 1;
    c.sum = c.n > 0 ? c.sum - amount : 0; // exact zero when empty: no rounding residue
    decayedAdd(c.base, ts, amount, baselineHalfLifeMs);
  };
  /** Advances the window's horizon to `now` (if later) and evicts the transactions with ts <= horizon − windowMs. */
  const expireWindow = (s: VelocityState, now: number): void => {
    const w = s.win;
    if (now > w.horizon) w.horizon = now;
    const cutoff = w.horizon - w.spanMs;
    while (w.n > 0 && (w.nums[3 * w.head] as number) <= cutoff) evictOldest(s);
  };
  /** TimeWindow.push: evicts what fell out of the window (by time, then by count), then appends. */
  const pushWindow = (s: VelocityState, ts: number, amount: number, gen: number, source: string, id: string | null, cur: string): void => {
    if (!Number.isFinite(ts)) throw new RangeError(`TimeWindow.push: non-finite ts ${ts}`);
    expireWindow(s, ts);
    if (s.win.n === s.win.maxCount) evictOldest(s);
    s.win.append(ts, amount, gen, source, id, cur);
  };
  const noAmountOverrides = Object.keys(maxAmountByCurrency).length === 0;

  /**
   * The currency's entry, created when absent, moved to the most recently seen end (lruEntry without a
   * creation closure; nothing to move when it is already the last one seen).
   */
  const currencyEntry = (s: VelocityState, curKey: string, ts: number): CurState => {
    if (curKey === s.mruCur) return s.mru as CurState;
    const curs = s.curs;
    let c = curs.get(curKey);
    if (c !== undefined) {
      if (curs.size > 1) {
        curs.delete(curKey);
        curs.set(curKey, c);
      }
    } else {
      c = { gen: s.nextGen++, sum: 0, n: 0, firstTs: ts, base: newDecayedSum() };
      curs.set(curKey, c);
      while (curs.size > maxCurrencies) curs.delete(curs.keys().next().value as string);
    }
    s.mruCur = curKey;
    s.mru = c;
    return c;
  };

  /** The account's usual count per window (decayed, from the transactions that left the window), or null. */
  const usualCountOf = (s: VelocityState, windowStartB: number): number | null => {
    if (s.firstTs !== null && windowStartB - s.firstTs >= minHistoryMs) {
      const rate = decayedRate(s.base, windowStartB, s.firstTs, baselineHalfLifeMs);
      if (rate !== null) return rate * windowMs;
    }
    return null;
  };
  /** Its usual amount per window in the currency, or null. */
  const usualAmountOf = (cur: CurState, windowStartB: number): number | null => {
    if (windowStartB - cur.firstTs >= minHistoryMs) {
      const rate = decayedRate(cur.base, windowStartB, cur.firstTs, baselineHalfLifeMs);
      if (rate !== null) return rate * windowMs;
    }
    return null;
  };

  const onTx = (s: VelocityState, t: Transaction, out: FindingDraft[], signals?: RiskSignal[]): void => {
    if (!directionMatches(direction, t) || !channelMatches(channels, t.channel)) return;
    const ts = t.ts;
    const amount = txAmount(t);
    if (!Number.isFinite(ts) || !Number.isFinite(amount)) return;
    s.judged += 1;
    if (s.firstTs === null || ts < s.firstTs) s.firstTs = ts;
    const curKey = t.currency;
    const cur = currencyEntry(s, curKey, ts);
    if (ts < cur.firstTs) cur.firstTs = ts;
    pushWindow(s, ts, amount, cur.gen, t.source, t.id, curKey);
    cur.sum += amount;
    cur.n += 1;

    // ---- judge
    const count = s.win.size;
    const sum = cur.sum;
    const windowStartB = s.win.horizon - windowMs; // the baseline ends where the window starts
    const maxAmt = noAmountOverrides ? maxAmount : perCurrency(maxAmountByCurrency, curKey, maxAmount);
    let ratio = 0;
    let test = 'count_limit' as Test;
    if (useAbsolute) {
      const rCount = ratioTo(count, maxCount);
      if (rCount > ratio) {
        ratio = rCount;
        test = 'count_limit';
      }
      const rAmount = Math.min(count / amountMinCount, ratioTo(sum, maxAmt));
      if (rAmount > ratio) {
        ratio = rAmount;
        test = 'amount_limit';
      }
    }
    // The usual rates are computed in every mode (context for the analyst); they are tests only with a
    // baseline mode, so without one they are computed only for a finding (the state is the same then).
    let usualCount: number | null = null;
    let usualAmount: number | null = null;
    if (useBaseline) {
      usualCount = usualCountOf(s, windowStartB);
      usualAmount = usualAmountOf(cur, windowStartB);
      if (usualCount !== null) {
        const byUsual = usualCount > 0 ? count / (baselineFactor * usualCount) : Number.POSITIVE_INFINITY;
        const r = Math.min(count / baselineMinCount, byUsual);
        if (r > ratio) {
          ratio = r;
          test = 'count_baseline';
        }
      }
      if (usualAmount !== null) {
        const byUsual = usualAmount > 0 ? sum / (baselineFactor * usualAmount) : Number.POSITIVE_INFINITY;
        const r = Math.min(count / amountMinCount, sum / baselineMinAmount, byUsual);
        if (r > ratio) {
          ratio = r;
          test = 'amount_baseline';
        }
      }
    }

    const isAmount = test === 'amount_limit' || test === 'amount_baseline';
    const score = riskScore(ratio);
    if (signals && score > 0) {
      // "<what> in <dur> (<limit or usual>)", the constant parts of the count tests' reasons made once.
      const reason =
        test === 'count_limit'
          ? `${count}${countLimitReason}`
          : test === 'count_baseline'
            ? `${count}${countUsualReason}${formatUsual(usualCount ?? 0)})`
            : `${formatAmount(sum, curKey)} in ${dur} (${test === 'amount_limit' ? `limit ${formatAmount(maxAmt, curKey)}` : `usual ${formatAmount(usualAmount ?? 0, curKey)}`})`;
      signals.push({ detector: 'velocity', ruleId, score, reason });
    }

    if (!(ratio >= 1)) {
      s.armed = true;
      return;
    }
    if (!s.armed) return;
    if (s.lastFireTs !== null && ts >= s.lastFireTs && ts - s.lastFireTs < cooldownMs) return;
    s.armed = false;
    s.lastFireTs = ts;
    if (!useBaseline) {
      usualCount = usualCountOf(s, windowStartB);
      usualAmount = usualAmountOf(cur, windowStartB);
    }

    const triggers: string[] = [];
    for (let i = Math.max(0, count - MAX_TRIGGERS); i < count; i++) triggers.push(s.win.ref(i));
    const trigger = eventRef(t);
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
      const w = s.win;
      const entries: EntryJSON[] = [];
      for (let i = 0; i < w.n; i++) {
        const k = w.slot(i);
        entries.push([w.ref(i), w.nums[k] as number, w.nums[k + 1] as number, w.strs[k + 2] as string, w.nums[k + 2] as number]);
      }
      return {
        v: 1,
        key: s.key,
        horizon: Number.isFinite(w.horizon) ? w.horizon : null,
        entries,
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
      for (const e of arr(j.entries, `${what}.entries`)) {
        const a = arr(e, `${what}.entries[]`);
        const ts = num(a[1], `${what}.entries.ts`);
        const ref = str(a[0], `${what}.entries.ref`);
        const amount = num(a[2], `${what}.entries.amount`);
        const cur = str(a[3], `${what}.entries.cur`);
        pushWindow(s, ts, amount, num(a[4], `${what}.entries.gen`), ref, null, cur);
      }
      const horizon = numOrNull(j.horizon, `${what}.horizon`);
      if (horizon !== null) expireWindow(s, horizon);
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
