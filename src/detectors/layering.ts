/**
 * `layering`: an account stacks several orders at distinct price levels on one side, trades on the other
 * side, and pulls the stack — the layers made the book look heavy on one side so the account could trade
 * on the other at a better price.
 *
 * Per venue:symbol (one state sees every account's orders of the instrument, orderflow-book.ts). For each
 * account and side, the orders it cancelled ("pulled") go through a sliding window (two pointers, O(1)
 * amortized per cancel) that keeps the longest run of consecutive pulls such that:
 *   - all were pulled within pullWindowMs of each other,
 *   - all were placed within placeWindowMs of each other,
 *   - all were live together: the last placement came strictly before the first pull,
 *   - each lived between minLifetimeMs (IOC remainders are not layers) and maxLifetimeMs, and at most
 *     maxLayerOrders of them.
 * The distinct prices of the window (a count map) are the layers. When a pull brings them to ≥ minLevels,
 * the candidate is checked:
 *   - one-sidedness: layered qty ≥ minSideImbalance × the account's own liquidity on the opposite side —
 *     the larger of its live opposite qty at any layer's placement or pull, and the opposite qty it
 *     displayed (new/replace, the execution order included) in the execution window (display log,
 *     O(log n)). A two-sided market maker refreshing a ladder shows as much on the other side: not layering;
 *   - an execution of the account on the OPPOSITE side between windowMs before the first placement and
 *     windowMs after the pull (fill log, O(log n) binary search);
 *   - layered qty ≥ minLayerRatio × the executed qty.
 * The finding fires on the pull that completes the pattern, or — when the execution comes after the pull —
 * on that opposite fill (the candidate waits windowMs). The window and candidate are cleared after a finding,
 * and at most one finding per account fires within cooldownMs. Building the evidence reads the window
 * (≤ maxLayerOrders) only for candidates.
 */
import { z } from 'zod';
import type { CanonicalEvent, Order, Severity } from '../core/events.ts';
import { eventRef } from '../core/events.ts';
import { formatDuration, formatFixed, formatTimes, priceDecimals, round } from './format.ts';
import {
  accountBaseToJSON,
  applyOrder,
  bookFromJSON,
  bookToJSON,
  formatAvgPrice,
  formatQty,
  FillLog,
  num,
  numOrNull,
  oppositeSide,
  orderRef,
  OrderFlowBook,
  restoreAccountBase,
  str,
  type AccountBase,
  type AccountBaseJSON,
  type FillLogJSON,
  type LiveOrder,
  type OrderHooks,
  type OrderSide,
} from './orderflow-book.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

export const layeringParams = z
  .strictObject({
    /** Distinct price levels of pulled orders on one side that make a layering pattern. */
    minLevels: z.number().int().min(2).default(3),
    /** The layer orders were all placed within this time of each other. */
    placeWindowMs: z.number().int().positive().default(5_000),
    /** …and all pulled (cancelled) within this time of each other. */
    pullWindowMs: z.number().int().positive().default(5_000),
    /** A layer order lives at most this long (placement to cancel). */
    maxLifetimeMs: z.number().int().positive().default(30_000),
    /** Orders cancelled sooner than this after placement (IOC/FOK remainders) were never shown as layers: ignored. */
    minLifetimeMs: z.number().int().nonnegative().default(10),
    /** The opposite execution counts from this long before the first placement until this long after the pull. */
    windowMs: z.number().int().positive().default(5_000),
    /** Layered quantity must be at least this multiple of the executed quantity. */
    minLayerRatio: z.number().finite().nonnegative().default(1),
    /** Layered quantity must be at least this multiple of the account's own opposite-side liquidity, shown or live (0: off). */
    minSideImbalance: z.number().finite().nonnegative().default(3),
    /** Pulled orders kept per account and side (the sliding window's bound). */
    maxLayerOrders: z.number().int().min(2).max(1_000).default(32),
    /** Fills kept per account and side (the execution lookup). */
    maxFills: z.number().int().min(1).max(100_000).default(64),
    /** Displays (new/replace) kept per account and side (the one-sidedness check). */
    maxShown: z.number().int().min(1).max(100_000).default(128),
    /** Accounts tracked per instrument (the least recently seen is evicted). */
    maxAccounts: z.number().int().min(1).max(100_000).default(200),
    /** Live orders tracked per account (the least recently displayed is evicted). */
    maxOpenOrders: z.number().int().min(1).max(100_000).default(50),
    /** At most one finding per account and instrument within this time. */
    cooldownMs: z.number().int().nonnegative().default(60_000),
  })
  .superRefine((p, ctx) => {
    if (p.minLevels > p.maxLayerOrders) {
      ctx.addIssue({ code: 'custom', path: ['minLevels'], message: `must be <= maxLayerOrders (${p.maxLayerOrders})` });
    }
    if (p.minLifetimeMs >= p.maxLifetimeMs) {
      ctx.addIssue({ code: 'custom', path: ['minLifetimeMs'], message: `must be < maxLifetimeMs (${p.maxLifetimeMs})` });
    }
    if (p.minLevels > p.maxOpenOrders) {
      ctx.addIssue({ code: 'custom', path: ['minLevels'], message: `must be <= maxOpenOrders (${p.maxOpenOrders})` });
    }
  });
export type LayeringParams = z.infer<typeof layeringParams>;

/** Cancel/fill references listed in the evidence triggers. */
const MAX_PULL_REFS = 12;
const MAX_TRIGGERS = 20;

/** A pulled (cancelled) order. */
export interface Pulled {
  id: string;
  px: number;
  /** Quantity still live when pulled. */
  q: number;
  placed: number;
  pulled: number;
  /** The account's live opposite-side qty at the order's placement or pull, whichever was larger. */
  opp: number;
}

/**
 * Consecutive pulls of one account and side that form a valid layer set (see the file comment), as a FIFO
 * with two-pointer eviction: distinct-price counts, the quantity sum and monotonic deques for the earliest
 * and latest placement, all O(1) amortized.
 */
export class PullWindow {
  private e: Pulled[] = [];
  private head = 0;
  private mn: Pulled[] = [];
  private mnHead = 0;
  private mx: Pulled[] = [];
  private mxHead = 0;
  readonly levels = new Map<number, number>();
  qty = 0;

  get size(): number {
    return this.e.length - this.head;
  }
  get minPlaced(): number {
    return (this.mn[this.mnHead] as Pulled).placed;
  }
  get maxPlaced(): number {
    return (this.mx[this.mxHead] as Pulled).placed;
  }
  get firstPulled(): number {
    return (this.e[this.head] as Pulled).pulled;
  }
  list(): Pulled[] {
    return this.e.slice(this.head);
  }

  /** Appends a pull, evicting from the front whatever cannot belong to one layer set with it. */
  push(x: Pulled, pullWindowMs: number, placeWindowMs: number, maxCount: number): void {
    while (this.size > 0) {
      const f = this.e[this.head] as Pulled;
      if (f.pulled < x.pulled - pullWindowMs || f.pulled <= x.placed) this.shift();
      else break;
    }
    this.append(x);
    while (this.size > maxCount) this.shift();
    while (this.size > 1 && this.maxPlaced - this.minPlaced > placeWindowMs) this.shift();
  }

  /** Appends without eviction (restoring a saved, valid window). */
  append(x: Pulled): void {
    this.e.push(x);
    this.levels.set(x.px, (this.levels.get(x.px) ?? 0) + 1);
    this.qty += x.q;
    while (this.mn.length > this.mnHead && (this.mn[this.mn.length - 1] as Pulled).placed >= x.placed) this.mn.pop();
    this.mn.push(x);
    while (this.mx.length > this.mxHead && (this.mx[this.mx.length - 1] as Pulled).placed <= x.placed) this.mx.pop();
    this.mx.push(x);
  }

  private shift(): void {
    const f = this.e[this.head] as Pulled;
    this.head += 1;
    const c = (this.levels.get(f.px) ?? 1) - 1;
    if (c <= 0) this.levels.delete(f.px);
    else this.levels.set(f.px, c);
    if (this.mn[this.mnHead] === f) this.mnHead += 1;
    if (this.mx[this.mxHead] === f) this.mxHead += 1;
    if (this.size === 0) {
      this.clear();
      return;
    }
    this.qty -= f.q;
    if (this.head >= 32 && this.head * 2 >= this.e.length) {
      this.e = this.e.slice(this.head);
      this.head = 0;
      this.mn = this.mn.slice(this.mnHead);
      this.mnHead = 0;
      this.mx = this.mx.slice(this.mxHead);
      this.mxHead = 0;
    }
  }

  clear(): void {
    this.e = [];
    this.head = 0;
    this.mn = [];
    this.mnHead = 0;
    this.mx = [];
    this.mxHead = 0;
    this.levels.clear();
    this.qty = 0;
  }
}

interface LayerCandidate {
  side: OrderSide;
  layers: Pulled[];
  qty: number;
  levels: number;
  minPlaced: number;
  maxPlaced: number;
  firstPulled: number;
  lastPulled: number;
  maxOpp: number;
}

interface LayerAccount extends AccountBase {
  pulls: { buy: PullWindow; sell: PullWindow };
  fills: { buy: FillLog; sell: FillLog };
  /** Displays (new/replace) per side, as a log with cumulative quantity. */
  shown: { buy: FillLog; sell: FillLog };
  /** A layer set waiting (until lastPulled + windowMs) for an opposite execution, per side. */
  pending: { buy: LayerCandidate | null; sell: LayerCandidate | null };
  lastFindingTs: number | null;
}

export interface LayeringState {
  key: string;
  book: OrderFlowBook<LayerAccount>;
  candidates: number;
  findings: number;
}

type PulledJSON = [string, number, number, number, number, number];
interface CandidateJSON {
  side: OrderSide;
  layers: PulledJSON[];
  qty: number;
  levels: number;
  minPlaced: number;
  maxPlaced: number;
  firstPulled: number;
  lastPulled: number;
  maxOpp: number;
}
interface LayerAccountJSON extends AccountBaseJSON {
  pb: { e: PulledJSON[]; q: number };
  ps: { e: PulledJSON[]; q: number };
  fb: FillLogJSON;
  fs: FillLogJSON;
  db: FillLogJSON;
  ds: FillLogJSON;
  cb: CandidateJSON | null;
  cs: CandidateJSON | null;
  lf: number | null;
}
interface LayeringJSON {
  v: 1;
  key: string;
  book: unknown;
  candidates: number;
  findings: number;
}

const pulledToJSON = (x: Pulled): PulledJSON => [x.id, x.px, x.q, x.placed, x.pulled, x.opp];
function pulledFromJSON(v: unknown, what: string): Pulled {
  if (!Array.isArray(v) || v.length !== 6) throw new TypeError(`${what}: bad pulled order`);
  return { id: str(v[0], what), px: num(v[1], what), q: num(v[2], what), placed: num(v[3], what), pulled: num(v[4], what), opp: num(v[5], what) };
}

function makeInstance(params: LayeringParams, ruleId: string): DetectorInstance<LayeringState> {
  const p = params;
  const fillSpan = p.pullWindowMs + p.maxLifetimeMs + 2 * p.windowMs;
  const limits = { maxAccounts: p.maxAccounts, maxOpenOrders: p.maxOpenOrders };

  const makeAccount = (): LayerAccount => ({
    orders: new Map(),
    liveBuy: 0,
    liveSell: 0,
    pulls: { buy: new PullWindow(), sell: new PullWindow() },
    fills: { buy: new FillLog(fillSpan, p.maxFills), sell: new FillLog(fillSpan, p.maxFills) },
    shown: { buy: new FillLog(fillSpan, p.maxShown), sell: new FillLog(fillSpan, p.maxShown) },
    pending: { buy: null, sell: null },
    lastFindingTs: null,
  });

  const newState = (key: string): LayeringState => ({
    key,
    book: new OrderFlowBook<LayerAccount>(limits, makeAccount),
    candidates: 0,
    findings: 0,
  });

  const severityFor = (levels: number, ratio: number): Severity => {
    let rank = 0;
    if (levels >= 2 * p.minLevels) rank += 1;
    if (ratio >= 10 * Math.max(1, p.minLayerRatio)) rank += 1;
    return rank === 0 ? 'medium' : rank === 1 ? 'high' : 'critical';
  };

  /** Fires when the account's opposite executions complete the candidate; returns 'fired', 'wait' (none yet) or 'no'. */
  const tryFire = (s: LayeringState, acc: LayerAccount, c: LayerCandidate, ev: Order, out: FindingDraft[]): 'fired' | 'wait' | 'no' => {
    const oppSide = oppositeSide(c.side);
    const log = acc.fills[oppSide];
    const from = c.minPlaced - p.windowMs;
    const r = log.range(from, ev.ts);
    const shown = acc.shown[oppSide].range(from, ev.ts).qty;
    const oppRest = Math.max(c.maxOpp, shown);
    if (p.minSideImbalance > 0 && c.qty < p.minSideImbalance * oppRest) return 'no';
    if (r.count === 0) return 'wait';
    if (c.qty < p.minLayerRatio * r.qty) return 'no';
    if (acc.lastFindingTs !== null && ev.ts - acc.lastFindingTs < p.cooldownMs && ev.ts >= acc.lastFindingTs) return 'no';
    acc.lastFindingTs = ev.ts;
    s.findings += 1;

    const ratio = c.qty / r.qty;
    const vwap = r.notional / r.qty;
    const trigger = eventRef(ev);
    const triggers: string[] = [];
    for (const l of c.layers.slice(-MAX_PULL_REFS)) triggers.push(orderRef(ev.venue, l.id, 'cancel', l.pulled));
    const fills: { orderId: string; ts: number; qty: number; price: number }[] = [];
    let firstFillTs = Number.POSITIVE_INFINITY;
    for (let i = r.first; i < r.first + r.count; i++) {
      const f = log.at(i);
      if (f.ts < firstFillTs) firstFillTs = f.ts;
      if (fills.length < MAX_TRIGGERS) fills.push({ orderId: f.value.id, ts: f.ts, qty: f.value.q, price: f.value.p });
      const ref = orderRef(ev.venue, f.value.id, 'fill', f.ts);
      if (triggers.length < MAX_TRIGGERS - 1 && triggers[triggers.length - 1] !== ref) triggers.push(ref);
    }
    if (!triggers.includes(trigger)) triggers.push(trigger);
    const prices = [...new Set(c.layers.map((l) => l.px))].sort((a, b) => (c.side === 'buy' ? b - a : a - b));
    const d = priceDecimals(prices[0] as number, prices[prices.length - 1] as number);
    const summary =
      `${ev.account} layered ${c.levels} ${c.side} price levels on ${ev.symbol} at ${ev.venue} ` +
      `(${formatQty(round(c.qty, 8))} at ${formatFixed(prices[0] as number, d)}–${formatFixed(prices[prices.length - 1] as number, d)}), ` +
      `${oppSide === 'sell' ? 'sold' : 'bought'} ${formatQty(round(r.qty, 8))} at ${formatAvgPrice(vwap, prices[0] as number, prices[prices.length - 1] as number)} on the other side, ` +
      `and pulled the layers within ${formatDuration(Math.max(0, c.lastPulled - c.minPlaced))} of placing them (${formatTimes(ratio)} the executed quantity)`;
    out.push({
      severity: severityFor(c.levels, ratio),
      score: round(ratio, 4),
      venue: ev.venue,
      symbol: ev.symbol,
      account: ev.account,
      key: ev.account,
      ts: ev.ts,
      windowStart: Math.min(c.minPlaced, firstFillTs, ev.ts),
      windowEnd: ev.ts,
      summary,
      trigger,
      evidence: {
        observed: {
          side: c.side,
          levels: c.levels,
          layerOrders: c.layers.length,
          prices: prices.map((x) => formatFixed(x, d)).join(', '),
          layeredQty: round(c.qty, 10),
          executedSide: oppSide,
          executedQty: round(r.qty, 10),
          executedFills: r.count,
          executedVwap: round(vwap, 10),
          layerToExecutedRatio: round(ratio, 4),
          placeSpanMs: c.maxPlaced - c.minPlaced,
          pullSpanMs: c.lastPulled - c.firstPulled,
          firstPlacedTs: c.minPlaced,
          lastPulledTs: c.lastPulled,
          firedOn: ev.action,
        },
        baseline: {
          oppositeLiveQty: round(c.maxOpp, 10),
          oppositeShownQty: round(shown, 10),
          oppositeQty: round(oppRest, 10),
          sideImbalance: oppRest > 0 ? round(c.qty / oppRest, 4) : null,
        },
        threshold: {
          minLevels: p.minLevels,
          placeWindowMs: p.placeWindowMs,
          pullWindowMs: p.pullWindowMs,
          windowMs: p.windowMs,
          minLayerRatio: p.minLayerRatio,
          minSideImbalance: p.minSideImbalance,
        },
        triggers,
        layers: c.layers.map((l) => ({ orderId: l.id, price: l.px, qty: l.q, placedTs: l.placed, pulledTs: l.pulled })),
        executions: fills,
      },
    });
    return 'fired';
  };

  // The hooks are made once per instance (not per event): they read the state and the findings array of
  // the event being applied from `cur` / `curOut`, set by onOrder.
  let cur: LayeringState | null = null;
  let curOut: FindingDraft[] = [];
  const hooks: OrderHooks<LayerAccount> = {
    display(acc: LayerAccount, o: LiveOrder, ev: Order): void {
      if (o.qty > 0) acc.shown[o.side].add(ev.ts, o.id, o.qty, o.px);
    },
    cancel(acc: LayerAccount, o: LiveOrder | undefined, ev: Order): void {
      if (!o || !(o.rem > 0) || !(o.px > 0)) return;
      const life = ev.ts - o.ts;
      if (life > p.maxLifetimeMs || life < p.minLifetimeMs) return;
      const s = cur as LayeringState;
      const w = acc.pulls[o.side];
      const opp = Math.max(o.opp, s.book.liveOn(acc, oppositeSide(o.side)));
      w.push({ id: o.id, px: o.px, q: o.rem, placed: o.ts, pulled: ev.ts, opp }, p.pullWindowMs, p.placeWindowMs, p.maxLayerOrders);
      if (w.levels.size < p.minLevels) return;
      const layers = w.list();
      let maxOpp = 0;
      for (const l of layers) if (l.opp > maxOpp) maxOpp = l.opp;
      s.candidates += 1;
      const c: LayerCandidate = {
        side: o.side,
        layers,
        qty: w.qty,
        levels: w.levels.size,
        minPlaced: w.minPlaced,
        maxPlaced: w.maxPlaced,
        firstPulled: w.firstPulled,
        lastPulled: ev.ts,
        maxOpp,
      };
      const res = tryFire(s, acc, c, ev, curOut);
      if (res === 'wait') {
        acc.pending[o.side] = c;
        return;
      }
      acc.pending[o.side] = null;
      if (res === 'fired') w.clear();
    },
    fill(acc: LayerAccount, _o: LiveOrder | undefined, ev: Order, qty: number, px: number): void {
      acc.fills[ev.side].add(ev.ts, ev.orderId, qty, px);
      const layerSide = oppositeSide(ev.side);
      const c = acc.pending[layerSide];
      if (c === null) return;
      if (ev.ts > c.lastPulled + p.windowMs) {
        acc.pending[layerSide] = null;
        return;
      }
      const res = tryFire(cur as LayeringState, acc, c, ev, curOut);
      if (res === 'wait') return;
      acc.pending[layerSide] = null;
      if (res === 'fired') acc.pulls[layerSide].clear();
    },
  };

  const onOrder = (s: LayeringState, ev: Order, out: FindingDraft[]): void => {
    cur = s;
    curOut = out;
    applyOrder(s.book, ev, hooks);
  };

  const candidateToJSON = (c: LayerCandidate | null): CandidateJSON | null =>
    c === null ? null : { ...c, layers: c.layers.map(pulledToJSON) };
  const candidateFromJSON = (v: unknown, what: string): LayerCandidate | null => {
    if (v === null || v === undefined) return null;
    const j = v as Partial<CandidateJSON>;
    if (typeof j !== 'object' || !Array.isArray(j.layers) || (j.side !== 'buy' && j.side !== 'sell')) throw new TypeError(`${what}: bad candidate`);
    return {
      side: j.side,
      layers: j.layers.map((x) => pulledFromJSON(x, what)),
      qty: num(j.qty, what),
      levels: num(j.levels, what),
      minPlaced: num(j.minPlaced, what),
      maxPlaced: num(j.maxPlaced, what),
      firstPulled: num(j.firstPulled, what),
      lastPulled: num(j.lastPulled, what),
      maxOpp: num(j.maxOpp, what),
    };
  };
  const windowFromJSON = (v: unknown, what: string): PullWindow => {
    const j = v as { e?: unknown; q?: unknown } | null;
    if (!j || typeof j !== 'object' || !Array.isArray(j.e)) throw new TypeError(`${what}: bad pull window`);
    const w = new PullWindow();
    const saved = j.e.map((x) => pulledFromJSON(x, what)).filter((x) => x.pulled - x.placed <= p.maxLifetimeMs && x.pulled - x.placed >= p.minLifetimeMs);
    for (const x of saved) w.push(x, p.pullWindowMs, p.placeWindowMs, p.maxLayerOrders);
    // The saved running sum is exact for the saved window; after trimming under other parameters, the rebuilt one holds.
    if (w.size === j.e.length) w.qty = num(j.q, what);
    return w;
  };

  const accountToJSON = (acc: LayerAccount): LayerAccountJSON => ({
    ...accountBaseToJSON(acc),
    pb: { e: acc.pulls.buy.list().map(pulledToJSON), q: acc.pulls.buy.qty },
    ps: { e: acc.pulls.sell.list().map(pulledToJSON), q: acc.pulls.sell.qty },
    fb: acc.fills.buy.toJSON(),
    fs: acc.fills.sell.toJSON(),
    db: acc.shown.buy.toJSON(),
    ds: acc.shown.sell.toJSON(),
    cb: candidateToJSON(acc.pending.buy),
    cs: candidateToJSON(acc.pending.sell),
    lf: acc.lastFindingTs,
  });

  const restoreAccount = (book: OrderFlowBook<LayerAccount>, acc: LayerAccount, json: unknown): void => {
    const what = 'layering: account';
    const j = json as Partial<LayerAccountJSON> | null;
    if (!j || typeof j !== 'object') throw new TypeError(`${what}: bad account state`);
    restoreAccountBase(book, acc, j, what);
    acc.pulls = { buy: windowFromJSON(j.pb, what), sell: windowFromJSON(j.ps, what) };
    acc.fills = { buy: FillLog.fromJSON(j.fb, fillSpan, p.maxFills, what), sell: FillLog.fromJSON(j.fs, fillSpan, p.maxFills, what) };
    acc.shown = { buy: FillLog.fromJSON(j.db, fillSpan, p.maxShown, what), sell: FillLog.fromJSON(j.ds, fillSpan, p.maxShown, what) };
    const keep = (c: LayerCandidate | null): LayerCandidate | null => (c !== null && c.levels >= p.minLevels ? c : null);
    acc.pending = { buy: keep(candidateFromJSON(j.cb, what)), sell: keep(candidateFromJSON(j.cs, what)) };
    acc.lastFindingTs = numOrNull(j.lf, what);
  };

  return {
    name: 'layering',
    ruleId,
    kinds: ['order'],
    newState,
    onEvent(state: LayeringState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'order') onOrder(state, ev, out);
    },
    toJSON(s: LayeringState): LayeringJSON {
      return { v: 1, key: s.key, book: bookToJSON(s.book, accountToJSON), candidates: s.candidates, findings: s.findings };
    },
    fromJSON(json: unknown): LayeringState {
      const j = json as Partial<LayeringJSON> | null;
      if (!j || typeof j !== 'object' || j.v !== 1 || typeof j.key !== 'string') throw new TypeError('layering: state JSON is not a v1 layering state');
      const s = newState(j.key);
      s.book = bookFromJSON(j.book, limits, makeAccount, restoreAccount, 'layering: book');
      s.candidates = num(j.candidates ?? 0, 'layering: candidates');
      s.findings = num(j.findings ?? 0, 'layering: findings');
      return s;
    },
  };
}

export const layeringSpec: DetectorSpec<LayeringParams, LayeringState> = {
  name: 'layering',
  description:
    'Per venue:symbol order flow: an account places orders at ≥ minLevels distinct prices on one side, live together, ' +
    'trades on the opposite side, and pulls them within pullWindowMs.',
  kinds: ['order'],
  params: layeringParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
