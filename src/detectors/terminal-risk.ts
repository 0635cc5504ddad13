/**
 * `terminal_risk`: a transaction at a merchant or terminal with recent confirmed fraud (a compromised
 * terminal or skimmer, a fraudulent or breached merchant, a test-and-cash-out point).
 *
 * Keyed by merchant through the merchant view (events.ts eventViews): one state per merchant (or per
 * terminal when the events carry no merchant) gets copies of its transactions AND of the labels of its
 * transactions, in order. Labels are confirmed outcomes that arrive later than the transactions they
 * label, so the detector never flags the labelled transaction itself: labels mark the merchant, and the
 * FUTURE transactions there are judged.
 *
 * State per merchant:
 *  - bad labels ('fraud' / 'chargeback') by labelled tx id, issued within lookbackMs (label time), at most
 *    maxLabels (the oldest dropped first); a tx labelled twice counts once; a 'legit' label of the same tx
 *    cancels it, whichever arrives first, while both are held (legit labels are held the same way);
 *  - transactions seen in the lookback, counted in 30 buckets of lookbackMs/30 (O(1) per event);
 *  - the same per terminal (label count and transaction buckets), for at most maxTerminals terminals
 *    (least recently seen dropped first).
 * At each level (the merchant, and the transaction's terminal) with L bad labels and N transactions:
 * rate = L / max(N, L). The level is marked when L ≥ minLabels and rate ≥ minRate (combine 'both', the
 * default) or when either holds (combine 'either'). A transaction at a marked merchant/terminal fires a
 * finding (at most one per key within cooldownMs). Every transaction pushes a RiskSignal with score
 * signalScore(r), r the largest over the two levels of min (both) / max (either) of L/minLabels and
 * rate/minRate (flow-common.ts: 0 up to half the threshold, 0.8 at it).
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Label, type Severity, type Transaction } from '../core/events.ts';
import { formatPercent, formatTime, round } from './format.ts';
import { formatSpan, num, numOrNull, plural, signalScore } from './flow-common.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft, RiskSignal } from './types.ts';

const DAY = 86_400_000;
/** Transactions are counted in this many buckets over the lookback. */
const BUCKETS = 30;
const MAX_TRIGGERS = 20;
const MAX_TX_IDS = 10;

export const terminalRiskParams = z.strictObject({
  /** Fraud/chargeback labels issued within this time (label time) mark the merchant or terminal. */
  lookbackMs: z.number().int().min(60_000).default(30 * DAY),
  /** Bad labels (distinct transactions) needed at the merchant or terminal. */
  minLabels: z.number().int().min(1).default(3),
  /** Fraud rate needed: bad labels / transactions seen there within the lookback. */
  minRate: z.number().finite().gt(0).max(1).default(0.01),
  /** 'both': labels ≥ minLabels AND rate ≥ minRate; 'either': one of them suffices (busy merchants then always fire). */
  combine: z.enum(['both', 'either']).default('both'),
  /** Bound on labels held per merchant (fraud and legit each); the oldest go first. */
  maxLabels: z.number().int().min(1).max(1_000_000).default(1000),
  /** Bound on terminals tracked per merchant; the least recently seen goes first. */
  maxTerminals: z.number().int().min(1).max(100_000).default(256),
  /** At most one finding per merchant/terminal key within this time (the signals still score every transaction). */
  cooldownMs: z.number().int().nonnegative().default(DAY),
});
export type TerminalRiskParams = z.infer<typeof terminalRiskParams>;

interface Buckets {
  starts: number[];
  counts: number[];
  total: number;
}

export interface HeldLabel {
  ts: number;
  label: 'fraud' | 'chargeback';
  source: string;
  terminal: string | null;
  /** Generation of the terminal entry it was counted in (0: not counted). */
  gen: number;
}

export interface TerminalEntry {
  gen: number;
  labels: number;
  tx: Buckets;
}

export interface TerminalRiskState {
  key: string;
  labels: Map<string, HeldLabel>;
  legit: Map<string, number>;
  tx: Buckets;
  terminals: Map<string, TerminalEntry>;
  nextGen: number;
  hwm: number | null;
  txSeen: number;
  labelsSeen: number;
  lastFindingTs: number | null;
}

interface TerminalRiskJSON {
  v: 1;
  key: string;
  labels: Array<[string, number, 'fraud' | 'chargeback', string, string | null, number]>;
  legit: Array<[string, number]>;
  tx: { starts: number[]; counts: number[] };
  terminals: Array<[string, number, number[], number[]]>;
  nextGen: number;
  hwm: number | null;
  txSeen: number;
  labelsSeen: number;
  lastFindingTs: number | null;
}

const emptyBuckets = (): Buckets => ({ starts: [], counts: [], total: 0 });

function reviveBuckets(j: unknown, what: string): Buckets {
  const o = j as { starts?: unknown; counts?: unknown } | null;
  if (!o || !Array.isArray(o.starts) || !Array.isArray(o.counts) || o.starts.length !== o.counts.length) throw new TypeError(`${what}: bad buckets`);
  const b = emptyBuckets();
  for (let i = 0; i < o.starts.length; i++) {
    b.starts.push(num(o.starts[i], what));
    const c = num(o.counts[i], what);
    b.counts.push(c);
    b.total += c;
  }
  return b;
}

interface Level {
  labels: number;
  transactions: number;
  rate: number;
  r: number;
  marked: boolean;
}

function makeInstance(params: TerminalRiskParams, ruleId: string): DetectorInstance<TerminalRiskState> {
  const { lookbackMs, minLabels, minRate, combine, maxLabels, maxTerminals, cooldownMs } = params;
  const bucketMs = Math.ceil(lookbackMs / BUCKETS);

  const newState = (key: string): TerminalRiskState => ({
    key,
    labels: new Map(),
    legit: new Map(),
    tx: emptyBuckets(),
    terminals: new Map(),
    nextGen: 1,
    hwm: null,
    txSeen: 0,
    labelsSeen: 0,
    lastFindingTs: null,
  });

  const addTx = (b: Buckets, ts: number): void => {
    const start = Math.floor(ts / bucketMs) * bucketMs;
    const n = b.starts.length;
    if (n === 0 || start > (b.starts[n - 1] as number)) {
      b.starts.push(start);
      b.counts.push(1);
    } else {
      b.counts[n - 1] = (b.counts[n - 1] as number) + 1; // same bucket, or a late one: counted in the newest
    }
    b.total += 1;
  };

  /** Drops buckets that lie entirely before now − lookbackMs. */
  const expireBuckets = (b: Buckets, now: number): void => {
    while (b.starts.length > 0 && (b.starts[0] as number) + bucketMs <= now - lookbackMs) {
      b.starts.shift();
      b.total -= b.counts.shift() as number;
    }
  };

  const uncount = (s: TerminalRiskState, l: HeldLabel): void => {
    if (l.terminal === null || l.gen === 0) return;
    const t = s.terminals.get(l.terminal);
    if (t && t.gen === l.gen && t.labels > 0) t.labels -= 1;
  };

  /** The terminal's entry (created when new, evicting the least recently seen), refreshed as most recent. */
  const terminalEntry = (s: TerminalRiskState, id: string): TerminalEntry => {
    let t = s.terminals.get(id);
    if (t) s.terminals.delete(id);
    else t = { gen: s.nextGen++, labels: 0, tx: emptyBuckets() };
    s.terminals.set(id, t);
    if (s.terminals.size > maxTerminals) s.terminals.delete(s.terminals.keys().next().value as string);
    return t;
  };

  const expire = (s: TerminalRiskState, now: number): void => {
    const cutoff = now - lookbackMs;
    for (const [id, l] of s.labels) {
      if (l.ts > cutoff) break;
      s.labels.delete(id);
      uncount(s, l);
    }
    for (const [id, ts] of s.legit) {
      if (ts > cutoff) break;
      s.legit.delete(id);
    }
    expireBuckets(s.tx, now);
    // Terminal buckets expire when their terminal is next seen (see level()): O(1) per event.
  };

  const level = (labels: number, transactions: number): Level => {
    const rate = labels > 0 ? labels / Math.max(transactions, labels) : 0;
    const a = labels / minLabels;
    const b = rate / minRate;
    const marked = combine === 'both' ? a >= 1 && b >= 1 : labels > 0 && (a >= 1 || b >= 1);
    return { labels, transactions, rate, r: combine === 'both' ? Math.min(a, b) : Math.max(a, b), marked };
  };

  const onLabel = (s: TerminalRiskState, l: Label): void => {
    s.labelsSeen += 1;
    const id = l.txId;
    if (l.label === 'legit') {
      const held = s.labels.get(id);
      if (held) {
        s.labels.delete(id);
        uncount(s, held);
      }
      s.legit.delete(id);
      s.legit.set(id, l.ts);
      if (s.legit.size > maxLabels) s.legit.delete(s.legit.keys().next().value as string);
      return;
    }
    if (s.legit.has(id) || s.labels.has(id)) return; // cancelled by a legit verdict, or already counted
    const terminal = l.terminal ?? null;
    let gen = 0;
    if (terminal !== null) {
      const t = terminalEntry(s, terminal);
      t.labels += 1;
      gen = t.gen;
    }
    s.labels.set(id, { ts: l.ts, label: l.label, source: l.source, terminal, gen });
    if (s.labels.size > maxLabels) {
      const oldest = s.labels.keys().next().value as string;
      const o = s.labels.get(oldest) as HeldLabel;
      s.labels.delete(oldest);
      uncount(s, o);
    }
  };

  const onTransaction = (s: TerminalRiskState, tx: Transaction, out: FindingDraft[], signals?: RiskSignal[]): void => {
    s.txSeen += 1;
    const ts = tx.ts;
    const now = s.hwm as number;
    addTx(s.tx, ts);
    const merchant = level(s.labels.size, s.tx.total);
    let terminal: Level | null = null;
    // The terminal level, unless the key already is the terminal (events without a merchant).
    const termId = tx.terminal !== undefined && tx.terminal !== s.key ? tx.terminal : null;
    if (termId !== null) {
      const t = terminalEntry(s, termId);
      expireBuckets(t.tx, now);
      addTx(t.tx, ts);
      terminal = level(t.labels, t.tx.total);
    }
    const top = terminal !== null && terminal.r > merchant.r ? terminal : merchant;
    const atTerminal = top === terminal;
    const where = atTerminal ? `terminal ${termId}` : s.key;
    const score = signalScore(top.r);
    if (signals && score > 0) {
      signals.push({
        detector: 'terminal_risk',
        ruleId,
        score,
        reason: `${where} has ${plural(top.labels, 'confirmed fraud label')} in ${formatSpan(lookbackMs)}, fraud rate ${formatPercent(top.rate)}`,
      });
    }
    const marked = merchant.marked || (terminal !== null && terminal.marked);
    if (!marked) return;
    if (s.lastFindingTs !== null && ts - s.lastFindingTs < cooldownMs && ts >= s.lastFindingTs) return;
    s.lastFindingTs = ts;
    const shown = terminal !== null && terminal.marked && (!merchant.marked || terminal.r >= merchant.r) ? terminal : merchant;
    const shownAtTerminal = shown === terminal;

    // Evidence (a pass over the held labels, once per finding): the labels of the level shown, newest last.
    const refs: string[] = [];
    const txIds: string[] = [];
    let lastLabelTs: number | null = null;
    let firstLabelTs: number | null = null;
    for (const [id, l] of s.labels) {
      if (shownAtTerminal && l.terminal !== termId) continue;
      refs.push(`label:${l.source}:${id}:${l.label}:${l.ts}`);
      txIds.push(id);
      if (lastLabelTs === null || l.ts > lastLabelTs) lastLabelTs = l.ts;
      if (firstLabelTs === null || l.ts < firstLabelTs) firstLabelTs = l.ts;
    }
    const ref = eventRef(tx);
    const sev: Severity = shown.r >= 4 ? 'critical' : shown.r >= 2 ? 'high' : 'medium';
    const shownWhere = shownAtTerminal ? `terminal ${termId} of ${s.key}` : s.key;
    out.push({
      severity: sev,
      score: round(shown.r, 4),
      account: tx.account,
      key: s.key,
      ts,
      windowStart: Math.min(firstLabelTs ?? ts, ts),
      windowEnd: ts,
      summary:
        `${tx.account} transacted at ${shownWhere}, which has ${plural(shown.labels, 'confirmed fraud label')} in the last ` +
        `${formatSpan(lookbackMs)} (fraud rate ${formatPercent(shown.rate)} of ${plural(shown.transactions, 'transaction')}` +
        `${lastLabelTs !== null ? `, latest ${formatTime(lastLabelTs)}` : ''})`,
      trigger: ref,
      evidence: {
        observed: {
          level: shownAtTerminal ? 'terminal' : 'merchant',
          labels: shown.labels,
          transactions: shown.transactions,
          rate: round(shown.rate, 6),
          merchantLabels: merchant.labels,
          merchantTransactions: merchant.transactions,
          merchantRate: round(merchant.rate, 6),
          terminal: termId,
          terminalLabels: terminal?.labels ?? null,
          terminalTransactions: terminal?.transactions ?? null,
          terminalRate: terminal ? round(terminal.rate, 6) : null,
          lastLabelTs,
          labelledTxIds: txIds.slice(-MAX_TX_IDS).join(','),
          amount: Math.abs(tx.amount),
          currency: tx.currency,
        },
        baseline: {
          lookbackMs,
          transactionsSeen: s.txSeen,
          labelsSeen: s.labelsSeen,
          legitLabelsHeld: s.legit.size,
          terminalsTracked: s.terminals.size,
        },
        threshold: { minLabels, minRate, combine },
        triggers: [ref, ...refs.slice(-(MAX_TRIGGERS - 1))],
      },
    });
  };

  return {
    name: 'terminal_risk',
    ruleId,
    kinds: ['transaction', 'label'],
    view: 'merchant',
    newState,
    onEvent(state: TerminalRiskState, ev: CanonicalEvent, out: FindingDraft[], signals?: RiskSignal[]): void {
      if ((ev.kind !== 'transaction' && ev.kind !== 'label') || !Number.isFinite(ev.ts)) return;
      if (state.hwm === null || ev.ts > state.hwm) state.hwm = ev.ts;
      expire(state, state.hwm);
      if (ev.kind === 'label') onLabel(state, ev);
      else onTransaction(state, ev, out, signals);
    },
    toJSON(s: TerminalRiskState): TerminalRiskJSON {
      return {
        v: 1,
        key: s.key,
        labels: [...s.labels].map(([id, l]) => [id, l.ts, l.label, l.source, l.terminal, l.gen]),
        legit: [...s.legit],
        tx: { starts: [...s.tx.starts], counts: [...s.tx.counts] },
        terminals: [...s.terminals].map(([id, t]) => [id, t.gen, [...t.tx.starts], [...t.tx.counts]]),
        nextGen: s.nextGen,
        hwm: s.hwm,
        txSeen: s.txSeen,
        labelsSeen: s.labelsSeen,
        lastFindingTs: s.lastFindingTs,
      };
    },
    fromJSON(json: unknown): TerminalRiskState {
      const j = json as Partial<TerminalRiskJSON> | null;
      const what = 'terminal_risk';
      if (!j || j.v !== 1 || typeof j.key !== 'string' || !Array.isArray(j.labels) || !Array.isArray(j.legit) || !Array.isArray(j.terminals)) {
        throw new TypeError(`${what}: state JSON is not a v1 terminal_risk state`);
      }
      const s = newState(j.key);
      s.tx = reviveBuckets(j.tx, `${what}.tx`);
      for (const e of j.terminals.slice(-maxTerminals)) {
        if (!Array.isArray(e) || typeof e[0] !== 'string') throw new TypeError(`${what}: bad terminal`);
        s.terminals.set(e[0], { gen: num(e[1], `${what}.gen`), labels: 0, tx: reviveBuckets({ starts: e[2], counts: e[3] }, `${what}.terminal`) });
      }
      for (const e of j.labels.slice(-maxLabels)) {
        if (!Array.isArray(e) || typeof e[0] !== 'string' || (e[2] !== 'fraud' && e[2] !== 'chargeback') || typeof e[3] !== 'string' || (e[4] !== null && typeof e[4] !== 'string')) {
          throw new TypeError(`${what}: bad label`);
        }
        const l: HeldLabel = { ts: num(e[1], `${what}.label.ts`), label: e[2], source: e[3], terminal: e[4], gen: num(e[5], `${what}.label.gen`) };
        s.labels.set(e[0], l);
        // Terminal label counts are recounted from the held labels (the terminal entry of the same generation).
        const t = l.terminal !== null ? s.terminals.get(l.terminal) : undefined;
        if (t && t.gen === l.gen && l.gen !== 0) t.labels += 1;
      }
      for (const e of j.legit.slice(-maxLabels)) {
        if (!Array.isArray(e) || typeof e[0] !== 'string') throw new TypeError(`${what}: bad legit label`);
        s.legit.set(e[0], num(e[1], `${what}.legit.ts`));
      }
      s.nextGen = num(j.nextGen ?? 1, `${what}.nextGen`);
      s.hwm = numOrNull(j.hwm, `${what}.hwm`);
      s.txSeen = num(j.txSeen ?? 0, `${what}.txSeen`);
      s.labelsSeen = num(j.labelsSeen ?? 0, `${what}.labelsSeen`);
      s.lastFindingTs = numOrNull(j.lastFindingTs, `${what}.lastFindingTs`);
      return s;
    },
  };
}

export const terminalRiskSpec: DetectorSpec<TerminalRiskParams, TerminalRiskState> = {
  name: 'terminal_risk',
  description:
    'A transaction at a merchant or terminal with recent confirmed fraud: at least minLabels fraud/chargeback labels ' +
    'within lookbackMs and a fraud rate of at least minRate (merchant view: labels and transactions per merchant).',
  kinds: ['transaction', 'label'],
  view: 'merchant',
  params: terminalRiskParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
