/**
 * `card_testing`: many small authorisations at several different merchants within minutes — a stolen card
 * number being checked before it is used (or sold).
 *
 * Per account — or per card (`per: 'card'`; at most maxCards per account, least recently seen evicted;
 * transactions without a card share one slot) — the transactions that pass the direction and channel
 * filters with amount ≤ smallAmount (per-currency override; 0.00 verification auths included) enter a
 * TimeWindow of windowMs (at most maxEvents) together with two count maps, merchant → small auths and
 * terminal → small auths, kept in step by the window's eviction callback, so the number of distinct
 * merchants / terminals in the window is a map size: O(1) amortized per transaction.
 * distinct = distinct merchants, distinct terminals, or the larger of the two (distinctBy); a transaction
 * without merchant nor terminal counts but adds no distinct acceptor (a merchant-less one counts its
 * terminal as its merchant, and the reverse).
 * A finding fires when count ≥ minCount and distinct ≥ minDistinct — once per episode (re-armed when a
 * small auth finds the window below those limits again) and cooldownMs apart at least.
 * ratio = min(count / minCount, distinct / minDistinct); every small authorisation judged gets the risk
 * signal riskScore(ratio) (tx-common.ts); larger amounts are not judged. For context, the small auths
 * that left the window feed an event-time decayed count (half-life 7 days): the usual number per window.
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Transaction } from '../core/events.ts';
import { TimeWindow } from '../stats/event-window.ts';
import { armedFires } from './cooldown.ts';
import { formatAmount, formatDuration, formatFixed, round } from './format.ts';
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
  lruEntry,
  newDecayedSum,
  num,
  numOrNull,
  perCurrency,
  riskScore,
  str,
  strOrNull,
  trimLru,
  txAmount,
  v1Object,
  type DecayedSum,
} from './tx-common.ts';
import { savedSlots, slotObject } from './tx-slots.ts';
import { gradeAbove } from './severity.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft, RiskSignal } from './types.ts';

/** Half-life of the usual small-auth rate reported as context. */
const USUAL_HALF_LIFE_MS = 7 * 86_400_000;

export const cardTestingParams = z
  .strictObject({
    /** Sliding event-time window in which the small authorisations are gathered. */
    windowMs: z.number().int().positive().default(600_000),
    /** A "small" authorisation: amount at most this (in the transaction's currency). */
    smallAmount: z.number().finite().nonnegative().default(2),
    /** Per-currency overrides of smallAmount, e.g. { JPY: 300 }. */
    smallAmountByCurrency: currencyAmounts.default({}),
    /** At least this many small authorisations within the window. */
    minCount: z.number().int().min(2).default(5),
    /** At this many distinct merchants/terminals at least. */
    minDistinct: z.number().int().min(1).default(3),
    /** What counts as distinct: merchants, terminals, or either (the larger of the two counts). */
    distinctBy: z.enum(['merchant', 'terminal', 'either']).default('either'),
    /** Per account, or per card (card testing usually hits one card number). */
    per: z.enum(['account', 'card']).default('account'),
    /** Card channels judged, present and not present (empty: every channel). */
    channels: z.array(z.string().min(1)).default(['card', 'ecommerce', 'online', 'cnp', 'moto']),
    /** Which transactions are authorisations: 'debit' (default), 'credit' or 'any'. */
    direction: directionParam.default('debit'),
    /** Bound on the small authorisations kept per account or card. */
    maxEvents: z.number().int().min(2).max(100_000).default(500),
    /** Cards tracked per account with per 'card' (least recently seen evicted beyond). */
    maxCards: z.number().int().min(1).max(1024).default(16),
    /** At most one finding per account (per card with per 'card') within this time (besides one per episode). */
    cooldownMs: z.number().int().nonnegative().default(600_000),
  })
  .superRefine((p, ctx) => {
    if (p.minCount > p.maxEvents) ctx.addIssue({ code: 'custom', path: ['minCount'], message: `must be <= maxEvents (${p.maxEvents})` });
    if (p.minDistinct > p.minCount) ctx.addIssue({ code: 'custom', path: ['minDistinct'], message: `must be <= minCount (${p.minCount})` });
  });
export type CardTestingParams = z.infer<typeof cardTestingParams>;

interface Entry {
  ref: string;
  amount: number;
  cur: string;
  merchant: string | null;
  terminal: string | null;
}

interface Slot {
  win: TimeWindow<Entry>;
  merchants: Map<string, number>;
  terminals: Map<string, number>;
  /** Decayed count of the small auths that left the window, and the first one's time. */
  base: DecayedSum;
  firstTs: number | null;
  armed: boolean;
  lastFireTs: number | null;
  smallSeen: number;
}

export interface CardTestingState {
  key: string;
  slots: Map<string, Slot>;
  judged: number;
}

type EntryJSON = [ref: string, ts: number, amount: number, cur: string, merchant: string | null, terminal: string | null];

interface SlotJSON {
  k: string;
  horizon: number | null;
  entries: EntryJSON[];
  base: DecayedSum;
  firstTs: number | null;
  armed: boolean;
  lastFireTs: number | null;
  smallSeen: number;
}

interface CardTestingJSON {
  v: 1;
  key: string;
  per: 'account' | 'card';
  slots: SlotJSON[];
  judged: number;
}

function inc(m: Map<string, number>, k: string | null): void {
  if (k !== null) m.set(k, (m.get(k) ?? 0) + 1);
}
function dec(m: Map<string, number>, k: string | null): void {
  if (k === null) return;
  const n = (m.get(k) ?? 0) - 1;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}

function makeInstance(params: CardTestingParams, ruleId: string): DetectorInstance<CardTestingState> {
  const { windowMs, smallAmount, smallAmountByCurrency, minCount, minDistinct, distinctBy, per, direction, maxEvents, maxCards, cooldownMs } = params;
  const channels = new Set(params.channels);
  const dur = formatDuration(windowMs);

  const newState = (key: string): CardTestingState => ({ key, slots: new Map(), judged: 0 });
  const newSlot = (): Slot => ({
    win: new TimeWindow<Entry>(windowMs, maxEvents),
    merchants: new Map(),
    terminals: new Map(),
    base: newDecayedSum(),
    firstTs: null,
    armed: true,
    lastFireTs: null,
    smallSeen: 0,
  });
  const evictor =
    (sl: Slot) =>
    (e: Entry, ts: number): void => {
      dec(sl.merchants, e.merchant);
      dec(sl.terminals, e.terminal);
      decayedAdd(sl.base, ts, 1, USUAL_HALF_LIFE_MS);
    };
  const distinctOf = (sl: Slot): number =>
    distinctBy === 'merchant' ? sl.merchants.size : distinctBy === 'terminal' ? sl.terminals.size : Math.max(sl.merchants.size, sl.terminals.size);
  const addEntry = (sl: Slot, ts: number, e: Entry): void => {
    sl.win.push(ts, e, evictor(sl));
    inc(sl.merchants, e.merchant);
    inc(sl.terminals, e.terminal);
  };

  const onTx = (s: CardTestingState, t: Transaction, out: FindingDraft[], signals?: RiskSignal[]): void => {
    if (!directionMatches(direction, t) || !channelMatches(channels, t.channel)) return;
    const amount = txAmount(t);
    const ts = t.ts;
    if (!Number.isFinite(amount) || !Number.isFinite(ts)) return;
    const limit = perCurrency(smallAmountByCurrency, t.currency, smallAmount);
    if (!(amount <= limit)) return;
    s.judged += 1;
    const slotKey = per === 'card' ? (t.card ?? '') : '';
    const sl = lruEntry(s.slots, slotKey, per === 'card' ? maxCards : 1, newSlot);
    if (sl.firstTs === null || ts < sl.firstTs) sl.firstTs = ts;
    sl.smallSeen += 1;
    const ref = eventRef(t);
    const merchant = t.merchant ?? t.terminal ?? null;
    const terminal = t.terminal ?? t.merchant ?? null;
    addEntry(sl, ts, { ref, amount, cur: t.currency, merchant, terminal });

    const count = sl.win.size;
    const distinct = distinctOf(sl);
    const countRatio = count / minCount;
    const ratio = Math.min(countRatio, distinct / minDistinct);
    const score = riskScore(ratio);
    const acceptors = distinctBy === 'terminal' ? 'terminals' : 'merchants';
    if (signals && score > 0) {
      signals.push({
        detector: 'card_testing',
        ruleId,
        score,
        reason: `${count} authorisations of at most ${formatAmount(limit, t.currency)} at ${distinct} ${acceptors} within ${dur}`,
      });
    }
    if (!(ratio >= 1)) {
      sl.armed = true;
      return;
    }
    if (!armedFires(sl, ts, cooldownMs)) return;

    const items: Array<{ ref: string; ts: number; amount: number; currency: string; merchant: string | null; terminal: string | null }> = [];
    for (let i = Math.max(0, count - MAX_TRIGGERS); i < count; i++) {
      const { ts: ets, value: e } = sl.win.at(i);
      items.push({ ref: e.ref, ts: ets, amount: e.amount, currency: e.cur, merchant: e.merchant, terminal: e.terminal });
    }
    const start = Math.min(sl.win.oldestTs ?? ts, ts);
    const windowStartB = sl.win.horizon - windowMs;
    const rate = decayedRate(sl.base, windowStartB, sl.firstTs, USUAL_HALF_LIFE_MS);
    const usual = rate === null ? null : rate * windowMs;
    const who = per === 'card' && t.card ? `${t.account} card ${t.card}` : t.account;
    const summary =
      `${who} made ${count} authorisations of at most ${formatAmount(limit, t.currency)} at ${distinct} ${acceptors} within ` +
      `${formatDuration(ts - start)} (usual: ${usual === null ? 'none before' : `${formatFixed(usual, usual < 1 ? 2 : 1)} per ${dur}`})`;
    out.push({
      severity: gradeAbove(countRatio, 4, 2),
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
          distinctMerchants: sl.merchants.size,
          distinctTerminals: sl.terminals.size,
          amounts: items.map((x) => x.amount.toFixed(2)).join(', '),
          total: round(
            items.reduce((a, x) => a + x.amount, 0),
            6,
          ),
          spanMs: ts - start,
          card: t.card ?? null,
        },
        baseline: {
          usualPerWindow: usual === null ? null : round(usual, 6),
          smallAuthsSeen: sl.smallSeen,
          historyMs: sl.firstTs === null ? 0 : Math.max(0, windowStartB - sl.firstTs),
        },
        threshold: { smallAmount: limit, minCount, minDistinct, distinctBy, windowMs },
        triggers: items.map((x) => x.ref),
        transactions: items,
      },
    });
  };

  return {
    name: 'card_testing',
    ruleId,
    kinds: ['transaction'],
    newState,
    onEvent(state: CardTestingState, ev: CanonicalEvent, out: FindingDraft[], signals?: RiskSignal[]): void {
      if (ev.kind === 'transaction') onTx(state, ev, out, signals);
    },
    toJSON(s: CardTestingState): CardTestingJSON {
      return {
        v: 1,
        key: s.key,
        per,
        slots: [...s.slots].map(([k, sl]) => {
          const w = sl.win.toJSON();
          return {
            k,
            horizon: w.horizon,
            entries: w.values.map((e, i): EntryJSON => [e.ref, w.ts[i] as number, e.amount, e.cur, e.merchant, e.terminal]),
            base: { ...sl.base },
            firstTs: sl.firstTs,
            armed: sl.armed,
            lastFireTs: sl.lastFireTs,
            smallSeen: sl.smallSeen,
          };
        }),
        judged: s.judged,
      };
    },
    fromJSON(json: unknown): CardTestingState {
      const what = 'card_testing';
      const j = v1Object(json, what);
      const s = newState(j.key as string);
      // Saved under the other `per`: no slots (they mean something else); start afresh.
      for (const raw of savedSlots(j, s, what, per)) {
        const o = slotObject<SlotJSON>(raw, what);
        const sl = newSlot();
        sl.base = decayedFromJSON(o.base, what);
        sl.firstTs = numOrNull(o.firstTs, `${what}.slots.firstTs`);
        sl.armed = o.armed !== false;
        sl.lastFireTs = numOrNull(o.lastFireTs, `${what}.slots.lastFireTs`);
        sl.smallSeen = num(o.smallSeen ?? 0, `${what}.slots.smallSeen`);
        // Rebuilt under the current window parameters (the same contents when they are unchanged).
        for (const e of arr(o.entries, `${what}.slots.entries`)) {
          const a = arr(e, `${what}.slots.entries[]`);
          addEntry(sl, num(a[1], `${what}.entries.ts`), {
            ref: str(a[0], `${what}.entries.ref`),
            amount: num(a[2], `${what}.entries.amount`),
            cur: str(a[3], `${what}.entries.cur`),
            merchant: strOrNull(a[4], `${what}.entries.merchant`),
            terminal: strOrNull(a[5], `${what}.entries.terminal`),
          });
        }
        const horizon = numOrNull(o.horizon, `${what}.slots.horizon`);
        if (horizon !== null) sl.win.expire(horizon, evictor(sl));
        s.slots.set(str(o.k, `${what}.slots.k`), sl);
      }
      trimLru(s.slots, per === 'card' ? maxCards : 1);
      return s;
    },
  };
}

export const cardTestingSpec: DetectorSpec<CardTestingParams, CardTestingState> = {
  name: 'card_testing',
  description:
    'Many small card authorisations at several distinct merchants or terminals within a short window, per account ' +
    'or per card; one finding per episode.',
  kinds: ['transaction'],
  params: cardTestingParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
