/**
 * `momentum_ignition`: an account sweeps the book aggressively, moving the price, then trades the other way
 * at a better price — it started the move to profit from it.
 *
 * Per venue:symbol (one state sees every account's orders of the instrument, orderflow-book.ts).
 *
 * Aggressor: with order events only, a fill is aggressive when it comes within aggressorMaxMs of its
 * order's last display (new or replace) — the order crossed the spread on arrival — or belongs to a market
 * order (price 0). A resting order filled later is passive.
 *
 * Sweep: the account's aggressive fills on one side within sweepWindowMs of the first one. Levels = the
 * most price levels one ORDER of the sweep walked through (1 + the times its fills went to a new worse
 * price: higher for a buy, lower for a sell) — several small orders taking one level each as the market
 * drifts are not a sweep; move = from the price the sweep started from to its most extreme fill, in bps
 * (across the orders of the sweep). The start is the less favourable to a finding of: the last fill price
 * before the sweep (any account) and the opposite touch when the sweep's first order arrived (best ask for
 * a buy, from the tracked live orders) — so buying at an ask that moved away from a stale last trade is
 * not a "move". A sweep qualifies with levels ≥ minLevels or move ≥ minMoveBps.
 *
 * Reversal: the same account's fills on the opposite side (aggressive or not) after the sweep's last fill
 * and within reversalWindowMs of it, at a price better than the sweep's VWAP by more than minProfitBps
 * (a sale above a buying sweep's VWAP, a purchase below a selling sweep's). When their quantity reaches
 * minReversalRatio × the sweep quantity, a finding fires on that fill. At most one finding per account
 * within cooldownMs. Work per event: O(log n) (the book's touch), O(1) for the sweep bookkeeping.
 */
import { z } from 'zod';
import type { CanonicalEvent, Order, Severity } from '../core/events.ts';
import { eventRef } from '../core/events.ts';
import { formatDuration, formatFixed, priceDecimals, round } from './format.ts';
import {
  accountBaseToJSON,
  applyOrder,
  bookFromJSON,
  bookToJSON,
  formatAvgPrice,
  formatQty,
  num,
  numOrNull,
  oppositeSide,
  OrderFlowBook,
  restoreAccountBase,
  side as parseSide,
  strArray,
  type AccountBase,
  type AccountBaseJSON,
  type LiveOrder,
  type OrderHooks,
  type OrderSide,
} from './orderflow-book.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

export const momentumIgnitionParams = z
  .strictObject({
    /** A fill within this time of its order's new/replace is aggressive (the order crossed on arrival). */
    aggressorMaxMs: z.number().int().nonnegative().default(50),
    /** Aggressive fills of one account and side within this time of the first make one sweep. */
    sweepWindowMs: z.number().int().positive().default(2_000),
    /** One order of a sweep fills at this many successively worse price levels… */
    minLevels: z.number().int().min(2).default(3),
    /** …or moves the price at least this far (bps) from the last price before it. */
    minMoveBps: z.number().finite().positive().default(10),
    /** Opposite-side fills count within this time after the sweep's last fill. */
    reversalWindowMs: z.number().int().positive().default(60_000),
    /** Opposite fills at a better price must reach this fraction of the sweep quantity. */
    minReversalRatio: z.number().finite().positive().default(0.5),
    /** Better price: beyond the sweep's VWAP by more than this (bps). */
    minProfitBps: z.number().finite().nonnegative().default(0),
    /** Accounts tracked per instrument (the least recently seen is evicted). */
    maxAccounts: z.number().int().min(1).max(100_000).default(200),
    /** Live orders tracked per account (the least recently displayed is evicted). */
    maxOpenOrders: z.number().int().min(1).max(100_000).default(50),
    /** At most one finding per account and instrument within this time. */
    cooldownMs: z.number().int().nonnegative().default(60_000),
  })
  .superRefine((p, ctx) => {
    if (p.aggressorMaxMs >= p.sweepWindowMs) {
      ctx.addIssue({ code: 'custom', path: ['aggressorMaxMs'], message: `must be < sweepWindowMs (${p.sweepWindowMs})` });
    }
  });
export type MomentumIgnitionParams = z.infer<typeof momentumIgnitionParams>;

/** Fill references kept per sweep and per reversal (evidence triggers). */
const MAX_REFS = 10;

/** One account's aggressive fills on one side, and the opposite fills that followed it. */
interface Sweep {
  side: OrderSide;
  t0: number;
  t1: number;
  /** The price the sweep started from (see the file comment; null when nothing was known). */
  ref: number | null;
  /** Last fill price before the first fill, and the opposite touch when the first order arrived. */
  last: number | null;
  touch: number | null;
  first: number;
  /** Most extreme fill price (highest for a buy). */
  ext: number;
  /** Most levels one order walked; the current (latest) order, its level count and its most extreme price. */
  levels: number;
  oid: string;
  olv: number;
  oext: number;
  q: number;
  n: number;
  fills: number;
  refs: string[];
  /** Opposite fills at a better price after the sweep. */
  rq: number;
  rn: number;
  rfills: number;
  rrefs: string[];
}

interface MomentumAccount extends AccountBase {
  /** The current aggressive episode per side. */
  cur: { buy: Sweep | null; sell: Sweep | null };
  /** The latest qualifying sweep per side, waiting for its reversal (may be the current one). */
  pend: { buy: Sweep | null; sell: Sweep | null };
  lastFindingTs: number | null;
}

export interface MomentumIgnitionState {
  key: string;
  book: OrderFlowBook<MomentumAccount>;
  sweeps: number;
  findings: number;
}

interface MomentumAccountJSON extends AccountBaseJSON {
  cb: Sweep | null;
  cs: Sweep | null;
  /** Pending sweep: 'cur' when it is the current episode. */
  pb: Sweep | 'cur' | null;
  ps: Sweep | 'cur' | null;
  lf: number | null;
}
interface MomentumIgnitionJSON {
  v: 1;
  key: string;
  book: unknown;
  sweeps: number;
  findings: number;
}

function sweepFromJSON(v: unknown, what: string): Sweep | null {
  if (v === null || v === undefined) return null;
  const j = v as Partial<Sweep>;
  if (typeof j !== 'object') throw new TypeError(`${what}: bad sweep`);
  return {
    side: parseSide(j.side, what),
    t0: num(j.t0, what),
    t1: num(j.t1, what),
    ref: numOrNull(j.ref, what),
    last: numOrNull(j.last, what),
    touch: numOrNull(j.touch, what),
    first: num(j.first, what),
    ext: num(j.ext, what),
    levels: num(j.levels, what),
    oid: typeof j.oid === 'string' ? j.oid : '',
    olv: num(j.olv, what),
    oext: num(j.oext, what),
    q: num(j.q, what),
    n: num(j.n, what),
    fills: num(j.fills, what),
    refs: [...strArray(j.refs, what)],
    rq: num(j.rq, what),
    rn: num(j.rn, what),
    rfills: num(j.rfills, what),
    rrefs: [...strArray(j.rrefs, what)],
  };
}
const sweepCopy = (s: Sweep | null): Sweep | null => (s === null ? null : { ...s, refs: [...s.refs], rrefs: [...s.rrefs] });

/** Price a is worse than b for an aggressor of side S (higher for a buy, lower for a sell). */
function worse(S: OrderSide, a: number, b: number): boolean {
  return S === 'buy' ? a > b : a < b;
}

function moveBpsOf(s: Sweep): number | null {
  if (s.ref === null || !(s.ref > 0)) return null;
  return ((s.side === 'buy' ? s.ext - s.ref : s.ref - s.ext) / s.ref) * 1e4;
}

function makeInstance(params: MomentumIgnitionParams, ruleId: string): DetectorInstance<MomentumIgnitionState> {
  const p = params;
  const limits = { maxAccounts: p.maxAccounts, maxOpenOrders: p.maxOpenOrders };

  const makeAccount = (): MomentumAccount => ({
    orders: new Map(),
    liveBuy: 0,
    liveSell: 0,
    cur: { buy: null, sell: null },
    pend: { buy: null, sell: null },
    lastFindingTs: null,
  });

  const newState = (key: string): MomentumIgnitionState => ({
    key,
    book: new OrderFlowBook<MomentumAccount>(limits, makeAccount),
    sweeps: 0,
    findings: 0,
  });

  const qualifies = (s: Sweep): boolean => {
    if (s.levels >= p.minLevels) return true;
    const m = moveBpsOf(s);
    return m !== null && m >= p.minMoveBps;
  };

  const fire = (s: MomentumIgnitionState, acc: MomentumAccount, sw: Sweep, ev: Order, out: FindingDraft[]): void => {
    if (acc.lastFindingTs !== null && ev.ts - acc.lastFindingTs < p.cooldownMs && ev.ts >= acc.lastFindingTs) return;
    acc.lastFindingTs = ev.ts;
    s.findings += 1;
    const vwap = sw.n / sw.q;
    const rvwap = sw.rn / sw.rq;
    const dir = sw.side === 'buy' ? 1 : -1;
    const profitBps = ((dir * (rvwap - vwap)) / vwap) * 1e4;
    const pnl = dir * (rvwap - vwap) * Math.min(sw.rq, sw.q);
    const move = moveBpsOf(sw);
    const strength = Math.max(sw.levels / p.minLevels, move !== null ? move / p.minMoveBps : 0);
    const severity: Severity = strength >= 4 ? 'critical' : strength >= 2 ? 'high' : 'medium';
    const trigger = eventRef(ev);
    const triggers = [...sw.refs, ...sw.rrefs];
    if (!triggers.includes(trigger)) triggers.push(trigger);
    const d = priceDecimals(sw.ref ?? sw.first, sw.ext);
    const moved =
      sw.ref !== null && move !== null
        ? `${formatFixed(sw.ref, d)} → ${formatFixed(sw.ext, d)}, ${dir * move >= 0 ? '+' : ''}${formatFixed(dir * move, 1)} bps`
        : `up to ${formatFixed(sw.ext, d)}`;
    const summary =
      `${ev.account} ${sw.side === 'buy' ? 'bought' : 'sold'} ${formatQty(sw.q)} of ${ev.symbol} on ${ev.venue} aggressively ${sw.t1 === sw.t0 ? 'at once' : `within ${formatDuration(sw.t1 - sw.t0)}`}, ` +
      `up to ${sw.levels} price ${sw.levels === 1 ? 'level' : 'levels'} in one order (${moved}), then ${sw.side === 'buy' ? 'sold' : 'bought'} ${formatQty(sw.rq)} ` +
      `at ${formatAvgPrice(rvwap, sw.first, sw.ext)} within ${formatDuration(Math.max(0, ev.ts - sw.t1))}, ` +
      `${formatFixed(profitBps, 1)} bps better than its sweep's average ${formatAvgPrice(vwap, sw.first, sw.ext)}`;
    out.push({
      severity,
      score: round(strength, 4),
      venue: ev.venue,
      symbol: ev.symbol,
      account: ev.account,
      key: ev.account,
      ts: ev.ts,
      windowStart: Math.min(sw.t0, ev.ts),
      windowEnd: ev.ts,
      summary,
      trigger,
      evidence: {
        observed: {
          sweepSide: sw.side,
          sweepQty: round(sw.q, 10),
          sweepFills: sw.fills,
          sweepLevels: sw.levels,
          sweepVwap: round(vwap, 10),
          firstPrice: sw.first,
          extremePrice: sw.ext,
          moveBps: move !== null ? round(move, 4) : null,
          sweepMs: sw.t1 - sw.t0,
          reversalQty: round(sw.rq, 10),
          reversalFills: sw.rfills,
          reversalVwap: round(rvwap, 10),
          reversalDelayMs: Math.max(0, ev.ts - sw.t1),
          profitBps: round(profitBps, 4),
          pnl: round(pnl, 10),
        },
        baseline: {
          priceBefore: sw.ref,
          lastPriceBefore: sw.last,
          touchBefore: sw.touch,
        },
        threshold: {
          minLevels: p.minLevels,
          minMoveBps: p.minMoveBps,
          sweepWindowMs: p.sweepWindowMs,
          aggressorMaxMs: p.aggressorMaxMs,
          reversalWindowMs: p.reversalWindowMs,
          minReversalRatio: p.minReversalRatio,
          minProfitBps: p.minProfitBps,
        },
        triggers,
      },
    });
  };

  // The hooks are made once per instance (not per event): they read the state and the findings array of
  // the event being applied from `cur` / `curOut`, set by onOrder.
  let cur: MomentumIgnitionState | null = null;
  let curOut: FindingDraft[] = [];
  const hooks: OrderHooks<MomentumAccount> = {
    display(_acc: MomentumAccount, o: LiveOrder): void {
      const s = cur as MomentumIgnitionState;
      // The opposite touch the order arrives into (what an aggressive order starts taking from).
      const t = o.side === 'buy' ? s.book.bestAsk() : s.book.bestBid();
      o.tag = [t ?? -1];
    },
    fill(acc: MomentumAccount, o: LiveOrder | undefined, ev: Order, qty: number, px: number): void {
      const s = cur as MomentumIgnitionState;
      const S = ev.side;
      const O = oppositeSide(S);
      // eventRef(ev), built only when it is stored (most fills are neither a reversal nor aggressive).
      let ref: string | null = null;
      // 1. A reversal of a pending sweep of the other side?
      const pd = acc.pend[O];
      if (pd !== null) {
        if (ev.ts - pd.t1 > p.reversalWindowMs) acc.pend[O] = null;
        else if (ev.ts >= pd.t1) {
          const vwap = pd.n / pd.q;
          const edge = p.minProfitBps / 1e4;
          const better = O === 'buy' ? px > vwap * (1 + edge) : px < vwap * (1 - edge);
          if (better) {
            pd.rq += qty;
            pd.rn += qty * px;
            pd.rfills += 1;
            if (pd.rrefs.length < MAX_REFS - 1) {
              ref = eventRef(ev);
              if (pd.rrefs[pd.rrefs.length - 1] !== ref) pd.rrefs.push(ref);
            }
            if (pd.rq >= p.minReversalRatio * pd.q) {
              fire(s, acc, pd, ev, curOut);
              acc.pend[O] = null;
              if (acc.cur[O] === pd) acc.cur[O] = null;
            }
          }
        }
      }
      // 2. Part of an aggressive sweep on this side?
      const aggressive = o !== undefined ? ev.ts - o.upd <= p.aggressorMaxMs || !(o.px > 0) : !(ev.price > 0);
      if (!aggressive) return;
      ref ??= eventRef(ev);
      let sw = acc.cur[S];
      if (sw === null || ev.ts - sw.t0 > p.sweepWindowMs || ev.ts < sw.t0) {
        const last = s.book.priceBefore(ev.ts);
        const touch = o !== undefined && o.tag !== null && (o.tag[0] as number) > 0 ? (o.tag[0] as number) : null;
        const from = last === null ? touch : touch === null ? last : S === 'buy' ? Math.max(last, touch) : Math.min(last, touch);
        sw = {
          side: S,
          t0: ev.ts,
          t1: ev.ts,
          ref: from,
          last,
          touch,
          first: px,
          ext: px,
          levels: 1,
          oid: ev.orderId,
          olv: 1,
          oext: px,
          q: qty,
          n: qty * px,
          fills: 1,
          refs: [ref],
          rq: 0,
          rn: 0,
          rfills: 0,
          rrefs: [],
        };
        acc.cur[S] = sw;
      } else {
        if (ev.orderId !== sw.oid) {
          sw.oid = ev.orderId;
          sw.olv = 1;
          sw.oext = px;
        } else if (worse(S, px, sw.oext)) {
          sw.olv += 1;
          sw.oext = px;
        }
        if (sw.olv > sw.levels) sw.levels = sw.olv;
        if (worse(S, px, sw.ext)) sw.ext = px;
        sw.q += qty;
        sw.n += qty * px;
        sw.fills += 1;
        if (ev.ts > sw.t1) sw.t1 = ev.ts;
        if (sw.refs.length < MAX_REFS && sw.refs[sw.refs.length - 1] !== ref) sw.refs.push(ref);
      }
      if (acc.pend[S] !== sw && qualifies(sw)) {
        acc.pend[S] = sw;
        s.sweeps += 1;
      }
    },
  };

  const onOrder = (s: MomentumIgnitionState, ev: Order, out: FindingDraft[]): void => {
    cur = s;
    curOut = out;
    applyOrder(s.book, ev, hooks);
  };

  const accountToJSON = (acc: MomentumAccount): MomentumAccountJSON => ({
    ...accountBaseToJSON(acc),
    cb: sweepCopy(acc.cur.buy),
    cs: sweepCopy(acc.cur.sell),
    pb: acc.pend.buy !== null && acc.pend.buy === acc.cur.buy ? 'cur' : sweepCopy(acc.pend.buy),
    ps: acc.pend.sell !== null && acc.pend.sell === acc.cur.sell ? 'cur' : sweepCopy(acc.pend.sell),
    lf: acc.lastFindingTs,
  });

  const restoreAccount = (book: OrderFlowBook<MomentumAccount>, acc: MomentumAccount, json: unknown): void => {
    const what = 'momentum_ignition: account';
    const j = json as Partial<MomentumAccountJSON> | null;
    if (!j || typeof j !== 'object') throw new TypeError(`${what}: bad account state`);
    restoreAccountBase(book, acc, j, what);
    acc.cur = { buy: sweepFromJSON(j.cb, what), sell: sweepFromJSON(j.cs, what) };
    // A sweep that qualified under other parameters waits for its reversal only if it still qualifies.
    const keep = (sw: Sweep | null): Sweep | null => (sw !== null && qualifies(sw) ? sw : null);
    acc.pend = {
      buy: keep(j.pb === 'cur' ? acc.cur.buy : sweepFromJSON(j.pb, what)),
      sell: keep(j.ps === 'cur' ? acc.cur.sell : sweepFromJSON(j.ps, what)),
    };
    acc.lastFindingTs = numOrNull(j.lf, what);
  };

  return {
    name: 'momentum_ignition',
    ruleId,
    kinds: ['order'],
    newState,
    onEvent(state: MomentumIgnitionState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'order') onOrder(state, ev, out);
    },
    toJSON(s: MomentumIgnitionState): MomentumIgnitionJSON {
      return { v: 1, key: s.key, book: bookToJSON(s.book, accountToJSON), sweeps: s.sweeps, findings: s.findings };
    },
    fromJSON(json: unknown): MomentumIgnitionState {
      const j = json as Partial<MomentumIgnitionJSON> | null;
      if (!j || typeof j !== 'object' || j.v !== 1 || typeof j.key !== 'string') {
        throw new TypeError('momentum_ignition: state JSON is not a v1 momentum_ignition state');
      }
      const s = newState(j.key);
      s.book = bookFromJSON(j.book, limits, makeAccount, restoreAccount, 'momentum_ignition: book');
      s.sweeps = num(j.sweeps ?? 0, 'momentum_ignition: sweeps');
      s.findings = num(j.findings ?? 0, 'momentum_ignition: findings');
      return s;
    },
  };
}

export const momentumIgnitionSpec: DetectorSpec<MomentumIgnitionParams, MomentumIgnitionState> = {
  name: 'momentum_ignition',
  description:
    'Per venue:symbol order flow: an account sweeps ≥ minLevels price levels (or moves the price ≥ minMoveBps) with ' +
    'aggressive fills, then trades the opposite side at a better price than its sweep within reversalWindowMs.',
  kinds: ['order'],
  params: momentumIgnitionParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
