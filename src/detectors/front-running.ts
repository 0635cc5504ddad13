/**
 * `front_running`: the firm's own account trades ahead of a large client order, on the same side.
 *
 * Per venue:symbol (order flow), house orders are `new` orders of capacity `principal` or of an account
 * listed in `houseAccounts`; client orders are `new` orders of capacity `agency` (from other accounts).
 * A client order is LARGE when its qty ≥ sizeMultiple × the median qty of the client flow's recent orders
 * (the last maxClientSamples agency orders within clientBaselineMs, at least minClientOrders of them).
 *
 * On a large client order C (time t, side s), every house account h with a same-side order placed within
 * leadMs before it (arrived earlier, ts in (t − leadMs, t], not cancelled unfilled) has a hit, with lead ℓ =
 * the time from h's nearest such order to C. A hit alone is often chance — a house account that trades
 * all day will have orders ahead of some client orders — so the detector weighs h's hits against its own
 * activity. λ_side = h's `new` orders on that side per ms over about rateWindowMs (counted in 24 buckets of
 * rateWindowMs / 24: the current bucket and the 23 before it, from when h became observable). Under "h
 * trades independently of the clients" (Poisson), a candidate (large client order) has an h order of its
 * side within ℓ ahead with probability p(ℓ) = 1 − exp(−λ_side · ℓ). Each candidate's window reaches back at
 * most to the previous large client order (ℓ_i = min(ℓ, gap to the previous candidate); a house order before
 * that was ahead of the previous one), so the windows are disjoint and independent under that null even
 * when client orders cluster. Over the last lookbackCandidates large client orders (those observable for h;
 * fewer: padded to lookbackCandidates with the mean p, so a fresh state is not more trigger-happy), for
 * each lead threshold ℓ_j among h's hits that is at least the current hit's lead (and within its window),
 * k_j = h's hits with lead ≤ ℓ_j (within their windows) and tail_j = P(X ≥ k_j), X Poisson-binomial over the
 * candidates' p_i(ℓ_j). chance = min(1, (number of thresholds) × min_j tail_j) (Bonferroni over the
 * thresholds tried), so a few tight leads are not diluted by long-lead coincidences. A finding fires when
 * chance ≤ maxChanceProb: a single hit counts when h rarely trades and its order came just ahead; a house
 * account that trades often needs repeated tight hits.
 *
 * With requireCloseOut, the finding waits for h to close out: an opposite-side fill of h after the client
 * order's first fill and within closeOutMs of it; the finding then fires on that fill, with the P&L-like
 * difference (exit price vs the house order's average fill price, or its limit price when unfilled).
 *
 * Severity: g = log10(maxChanceProb / chance): g ≥ 2 critical, ≥ 1 high, else medium. Score:
 * −log10(chance). At most one finding per house account within cooldownMs. Bounded: maxAccounts house
 * accounts (oldest-seen evicted; an account re-created after an eviction is observable from then on; its
 * activity is 2 × 24 counters), maxOpenOrders house order records. Work per event is O(1) amortized; a
 * large client order costs O(house orders in the lead window + hits × lookbackCandidates²).
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Order, type Severity } from '../core/events.ts';
import { SortedWindow } from '../stats/sorted-window.ts';
import { TimeWindow } from '../stats/event-window.ts';
import { formatDuration, formatFixed, formatTimes, priceDecimals, round } from './format.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

/** The rate window is counted in this many buckets. */
const RATE_BUCKETS = 24;

export const frontRunningParams = z
  .strictObject({
    /** Accounts that are the firm's own, besides orders marked capacity 'principal'. */
    houseAccounts: z.array(z.string().min(1)).default([]),
    /** A house order counts when placed at most this long before the client order. */
    leadMs: z.number().int().positive().default(60_000),
    /** A client order is large at this many times the client flow's median order size. */
    sizeMultiple: z.number().finite().gt(1).default(5),
    /** No judgement before the client-size baseline holds this many orders. */
    minClientOrders: z.number().int().min(1).default(30),
    /** Client-size baseline: the last this many agency orders. */
    maxClientSamples: z.number().int().min(1).max(100_000).default(500),
    /** Client-size baseline: agency orders of the last this long (event time). */
    clientBaselineMs: z.number().int().positive().default(7 * 86_400_000),
    /** Fires when the chance of the house's timing by coincidence is at most this. */
    maxChanceProb: z.number().finite().gt(0).lt(1).default(0.0001),
    /** The last this many large client orders are weighed together (repeated hits). */
    lookbackCandidates: z.number().int().min(1).max(200).default(20),
    /** A house account's usual activity: its orders per side over about this long (24 buckets). */
    rateWindowMs: z.number().int().positive().default(4 * 3_600_000),
    /** Fire only once the house account closes out (opposite-side fill) after the client order executes. */
    requireCloseOut: z.boolean().default(false),
    /** The close-out must come within this long after the client order's first fill. */
    closeOutMs: z.number().int().positive().default(600_000),
    /** At most one finding per house account within this time. */
    cooldownMs: z.number().int().nonnegative().default(60_000),
    /** House accounts tracked per instrument; oldest-seen evicted. */
    maxAccounts: z.number().int().min(1).max(100_000).default(200),
    /** House order records kept per instrument (fills, cancels, replaces; at most leadMs old, leadMs + closeOutMs with requireCloseOut); oldest evicted. */
    maxOpenOrders: z.number().int().min(1).max(1_000_000).default(5000),
  })
  .superRefine((p, ctx) => {
    if (p.minClientOrders > p.maxClientSamples) {
      ctx.addIssue({ code: 'custom', path: ['minClientOrders'], message: `must be <= maxClientSamples (${p.maxClientSamples})` });
    }
    if (p.rateWindowMs % RATE_BUCKETS !== 0) {
      ctx.addIssue({ code: 'custom', path: ['rateWindowMs'], message: `must be a multiple of ${RATE_BUCKETS} ms` });
    }
    if (p.leadMs > p.rateWindowMs) {
      ctx.addIssue({ code: 'custom', path: ['leadMs'], message: `must be <= rateWindowMs (${p.rateWindowMs})` });
    }
  });
export type FrontRunningParams = z.infer<typeof frontRunningParams>;

type OrderSide = 'buy' | 'sell';

/** A house order record as the JSON holds it. */
interface HouseOrderJSON {
  uid: number;
  account: string;
  orderId: string;
  side: OrderSide;
  ts: number;
  qty: number;
  price: number;
  filled: number;
  notional: number;
  cancelled: boolean;
  /** eventRef() of the order's `new`. */
  ref: string;
}

/**
 * A house order record in memory: as HouseOrderJSON, except that the ref is built when first needed (a
 * finding's evidence, the JSON; houseRef) from the venue and the id of the order's `new` — most records
 * never need it, and formatting one per house order was a large part of the cost per event.
 */
interface HouseOrder {
  uid: number;
  account: string;
  orderId: string;
  side: OrderSide;
  ts: number;
  qty: number;
  price: number;
  filled: number;
  notional: number;
  cancelled: boolean;
  /** eventRef() of the order's `new`; null until built from venue and newId. */
  ref: string | null;
  venue: string;
  newId: string;
}

/** The record's ref (built once, from the `new` event's parts, by eventRef itself). */
function houseRef(r: HouseOrder): string {
  if (r.ref === null) r.ref = eventRef({ kind: 'order', venue: r.venue, orderId: r.newId, action: 'new', ts: r.ts } as Order);
  return r.ref;
}

function houseOrderToJSON(r: HouseOrder): HouseOrderJSON {
  return {
    uid: r.uid,
    account: r.account,
    orderId: r.orderId,
    side: r.side,
    ts: r.ts,
    qty: r.qty,
    price: r.price,
    filled: r.filled,
    notional: r.notional,
    cancelled: r.cancelled,
    ref: houseRef(r),
  };
}

function houseOrderFromJSON(r: HouseOrderJSON): HouseOrder {
  return {
    uid: r.uid,
    account: r.account,
    orderId: r.orderId,
    side: r.side,
    ts: r.ts,
    qty: r.qty,
    price: r.price,
    filled: r.filled,
    notional: r.notional,
    cancelled: r.cancelled,
    ref: r.ref,
    venue: '',
    newId: '',
  };
}

function copyHouseOrder(r: HouseOrder): HouseOrder {
  return { ...r };
}

interface Hit {
  id: string;
  lead: number;
}

/** Orders per bucket of rateWindowMs / RATE_BUCKETS; `idx` = the newest bucket's index (floor(ts / bucketMs)). */
interface RateBuckets {
  idx: number | null;
  counts: number[];
}

interface HouseAccount {
  /** From when its activity is known (state start, or the last eviction before it was re-created). */
  since: number;
  buys: RateBuckets;
  sells: RateBuckets;
  hits: Hit[];
  lastFindingTs: number | null;
}

interface Candidate {
  id: string;
  account: string;
  side: OrderSide;
  ts: number;
  /** Time since the previous large client order (its lead window ends there); null for the first. */
  gap: number | null;
  qty: number;
  price: number;
  ref: string;
  firstFillTs: number | null;
}

/** A detected timing that waits for its close-out (requireCloseOut). */
interface Pending {
  house: string;
  cand: Candidate;
  order: HouseOrder;
  houseRefs: string[];
  lead: number;
  ordersAhead: number;
  hits: number;
  hitsInLookback: number;
  leadThresholdMs: number;
  thresholds: number;
  candidates: number;
  chance: number;
  p: number;
  ratePerHour: number;
  ordersInRate: number;
  rateSpanMs: number;
  usual: number;
  samples: number;
}

export interface FrontRunningState {
  key: string;
  wm: number | null;
  startTs: number | null;
  lastEvictTs: number | null;
  clientTs: TimeWindow<number>;
  clientSorted: SortedWindow;
  nextUid: number;
  /** House order records by uid (insertion order = age), and orderId → uid. */
  records: Map<number, HouseOrder>;
  index: Map<string, number>;
  /** uids of house orders of the last leadMs, per side. */
  recentBuy: TimeWindow<number>;
  recentSell: TimeWindow<number>;
  houses: Map<string, HouseAccount>;
  /** The most recently touched house account (the last key of `houses`), or null. */
  lastHouse: string | null;
  candidates: Candidate[];
  candIndex: Map<string, Candidate>;
  pending: Pending[];
  largeOrders: number;
}

interface HouseJSON {
  since: number;
  bucketMs: number;
  buys: RateBuckets;
  sells: RateBuckets;
  hits: Hit[];
  lastFindingTs: number | null;
}

interface FrontRunningJSON {
  v: 1;
  key: string;
  wm: number | null;
  startTs: number | null;
  lastEvictTs: number | null;
  clientHorizon: number | null;
  /** Client-size samples: age (horizon − ts) and qty, oldest first. */
  clientAge: number[];
  clientQty: number[];
  nextUid: number;
  records: HouseOrderJSON[];
  index: Array<[string, number]>;
  recentBuyHorizon: number | null;
  recentBuy: Array<[number, number]>;
  recentSellHorizon: number | null;
  recentSell: Array<[number, number]>;
  houses: Array<[string, HouseJSON]>;
  candidates: Candidate[];
  pending: PendingJSON[];
  largeOrders: number;
}

type PendingJSON = Omit<Pending, 'order'> & { order: HouseOrderJSON };

const MAX_TRIGGERS = 20;
const MIN_CHANCE = 1e-300;

function isStr(x: unknown): x is string {
  return typeof x === 'string';
}
function isNum(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}
function numOrNull(x: unknown): x is number | null {
  return x === null || isNum(x);
}
function isSide(x: unknown): x is OrderSide {
  return x === 'buy' || x === 'sell';
}

/** P(X ≥ k) for X a sum of independent Bernoulli(p_i) (Poisson-binomial), by dynamic programming. */
export function poissonBinomialTail(ps: readonly number[], k: number): number {
  if (k <= 0) return 1;
  if (k > ps.length) return 0;
  // dp[j] = P(exactly j successes so far), j = 0..k−1; `tail` accumulates P(≥ k) exactly.
  const dp = new Float64Array(k);
  dp[0] = 1;
  let tail = 0;
  for (const p of ps) {
    tail += (dp[k - 1] as number) * p;
    for (let j = k - 1; j >= 1; j--) dp[j] = (dp[j] as number) * (1 - p) + (dp[j - 1] as number) * p;
    dp[0] = (dp[0] as number) * (1 - p);
  }
  return Math.min(1, Math.max(0, tail));
}

function severityFor(g: number): Severity {
  if (g >= 2) return 'critical';
  if (g >= 1) return 'high';
  return 'medium';
}

function qtyText(q: number): string {
  return formatFixed(q, priceDecimals(q, q));
}

function chanceText(chance: number): string {
  if (chance <= 1e-9) return 'less than 1 in 1,000,000,000';
  return `1 in ${formatFixed(Math.max(1, Math.round(1 / chance)), 0)}`;
}

function isHouseOrder(x: unknown): x is HouseOrderJSON {
  const o = x as HouseOrderJSON | null;
  return (
    !!o &&
    isNum(o.uid) &&
    isStr(o.account) &&
    isStr(o.orderId) &&
    isSide(o.side) &&
    isNum(o.ts) &&
    isNum(o.qty) &&
    isNum(o.price) &&
    isNum(o.filled) &&
    isNum(o.notional) &&
    typeof o.cancelled === 'boolean' &&
    isStr(o.ref)
  );
}

function isCandidate(x: unknown): x is Candidate {
  const c = x as Candidate | null;
  return !!c && isStr(c.id) && isStr(c.account) && isSide(c.side) && isNum(c.ts) && numOrNull(c.gap) && isNum(c.qty) && isNum(c.price) && isStr(c.ref) && numOrNull(c.firstFillTs);
}

function makeInstance(params: FrontRunningParams, ruleId: string): DetectorInstance<FrontRunningState> {
  const {
    leadMs,
    sizeMultiple,
    minClientOrders,
    maxClientSamples,
    clientBaselineMs,
    maxChanceProb,
    lookbackCandidates,
    rateWindowMs,
    requireCloseOut,
    closeOutMs,
    cooldownMs,
    maxAccounts,
    maxOpenOrders,
  } = params;
  const houseSet = new Set(params.houseAccounts);
  const maxPending = 4 * lookbackCandidates;
  /** House order records serve the lead window, and with requireCloseOut the entry price at the close-out. */
  const recordMs = requireCloseOut ? leadMs + closeOutMs : leadMs;

  const bucketMs = rateWindowMs / RATE_BUCKETS;
  const newBuckets = (): RateBuckets => ({ idx: null, counts: new Array<number>(RATE_BUCKETS).fill(0) });
  /** Moves the buckets forward to index b (clearing those that fall out). */
  const advance = (r: RateBuckets, b: number): void => {
    if (r.idx === null) {
      r.idx = b;
      return;
    }
    if (b <= r.idx) return;
    const steps = Math.min(RATE_BUCKETS, b - r.idx);
    for (let i = 1; i <= steps; i++) r.counts[(((r.idx + i) % RATE_BUCKETS) + RATE_BUCKETS) % RATE_BUCKETS] = 0;
    r.idx = b;
  };
  const countOrder = (r: RateBuckets, ts: number): void => {
    const b = Math.floor(ts / bucketMs);
    advance(r, b);
    if (b <= (r.idx as number) - RATE_BUCKETS) return; // older than the window
    const k = ((b % RATE_BUCKETS) + RATE_BUCKETS) % RATE_BUCKETS;
    r.counts[k] = (r.counts[k] as number) + 1;
  };
  const newHouse = (since: number): HouseAccount => ({
    since,
    buys: newBuckets(),
    sells: newBuckets(),
    hits: [],
    lastFindingTs: null,
  });

  const newState = (key: string): FrontRunningState => ({
    key,
    wm: null,
    startTs: null,
    lastEvictTs: null,
    clientTs: new TimeWindow<number>(clientBaselineMs, maxClientSamples),
    clientSorted: new SortedWindow(maxClientSamples),
    nextUid: 1,
    records: new Map(),
    index: new Map(),
    recentBuy: new TimeWindow<number>(leadMs, maxOpenOrders),
    recentSell: new TimeWindow<number>(leadMs, maxOpenOrders),
    houses: new Map(),
    lastHouse: null,
    candidates: [],
    candIndex: new Map(),
    pending: [],
    largeOrders: 0,
  });

  const isHouse = (o: Order): boolean => o.capacity === 'principal' || houseSet.has(o.account);

  const touchHouse = (s: FrontRunningState, account: string): HouseAccount => {
    let h = s.houses.get(account);
    // Already the most recently touched: nothing moves.
    if (h && account === s.lastHouse) return h;
    if (h) s.houses.delete(account);
    else h = newHouse(s.lastEvictTs ?? (s.startTs as number));
    s.houses.set(account, h);
    s.lastHouse = account;
    while (s.houses.size > maxAccounts) {
      s.houses.delete(s.houses.keys().next().value as string);
      s.lastEvictTs = s.wm;
    }
    return h;
  };

  const recordOf = (s: FrontRunningState, orderId: string, account: string): HouseOrder | undefined => {
    const uid = s.index.get(orderId);
    const rec = uid === undefined ? undefined : s.records.get(uid);
    return rec && rec.account === account ? rec : undefined;
  };

  /** Same-side new orders of h per ms over its observable part of the rate window. */
  const rateOf = (h: HouseAccount, side: OrderSide, t: number): { rate: number; n: number; span: number } => {
    const r = side === 'buy' ? h.buys : h.sells;
    advance(r, Math.floor(t / bucketMs));
    let n = 0;
    for (const c of r.counts) n += c;
    const windowStart = r.idx === null ? t : (r.idx - RATE_BUCKETS + 1) * bucketMs;
    const span = Math.max(leadMs, t - Math.max(h.since, windowStart));
    return { rate: n / span, n, span };
  };

  const onHouseNew = (s: FrontRunningState, o: Order): void => {
    const uid = s.nextUid++;
    const rec: HouseOrder = {
      uid,
      account: o.account,
      orderId: o.orderId,
      side: o.side,
      ts: o.ts,
      qty: o.qty,
      price: o.price,
      filled: 0,
      notional: 0,
      cancelled: false,
      ref: null,
      venue: o.venue,
      newId: o.orderId,
    };
    s.records.set(uid, rec);
    s.index.set(o.orderId, uid);
    // Records serve the lead window and the close-out: older ones go (front = oldest placed; the Map's
    // key is the record's uid).
    const keepFrom = (s.wm as number) - recordMs;
    for (;;) {
      const old = s.records.values().next().value as HouseOrder | undefined;
      if (old === undefined || (s.records.size <= maxOpenOrders && old.ts >= keepFrom)) break;
      s.records.delete(old.uid);
      if (s.index.get(old.orderId) === old.uid) s.index.delete(old.orderId);
    }
    (o.side === 'buy' ? s.recentBuy : s.recentSell).push(o.ts, uid);
    const h = touchHouse(s, o.account);
    countOrder(o.side === 'buy' ? h.buys : h.sells, o.ts);
  };

  const emit = (
    s: FrontRunningState,
    pd: Pending,
    at: Order,
    out: FindingDraft[],
    closeOut: { fill: Order; entryPx: number | null } | null,
  ): void => {
    const h = s.houses.get(pd.house);
    if (h) h.lastFindingTs = at.ts;
    const { cand, order } = pd;
    const chance = Math.max(pd.chance, MIN_CHANCE);
    const g = Math.log10(maxChanceProb / chance);
    const sizeRatio = pd.usual > 0 ? cand.qty / pd.usual : null;
    const dir = order.side === 'buy' ? 1 : -1;
    let pnlPerUnit: number | null = null;
    let pnlBps: number | null = null;
    if (closeOut && closeOut.entryPx !== null && closeOut.fill.fillPrice !== undefined) {
      pnlPerUnit = dir * (closeOut.fill.fillPrice - closeOut.entryPx);
      pnlBps = dir * (closeOut.fill.fillPrice / closeOut.entryPx - 1) * 1e4;
    }
    const triggers = pd.houseRefs.slice(0, MAX_TRIGGERS - (closeOut ? 2 : 1));
    triggers.push(cand.ref);
    if (closeOut) triggers.push(eventRef(closeOut.fill));
    const verb = order.side === 'buy' ? 'buy' : 'sell';
    let summary =
      `House account ${pd.house} placed a ${verb} of ${qtyText(order.qty)} ${at.symbol} on ${at.venue} ${formatDuration(pd.lead)} before client ${cand.account}'s ` +
      `${verb} order of ${qtyText(cand.qty)}${sizeRatio !== null ? ` (${formatTimes(sizeRatio)} the usual client order)` : ''}; ` +
      `${pd.hits} of the last ${pd.candidates} large client order${pd.candidates === 1 ? '' : 's'} had one of its orders at most ${formatDuration(pd.leadThresholdMs)} ahead, ` +
      `a ${chanceText(chance)} coincidence at its usual activity`;
    if (closeOut) {
      const f = closeOut.fill;
      const px = f.fillPrice as number;
      summary +=
        `; it then ${f.side === 'buy' ? 'bought' : 'sold'} ${qtyText(f.fillQty as number)} at ${formatFixed(px, priceDecimals(px, px))}` +
        (pnlBps !== null ? ` (${pnlBps >= 0 ? '+' : ''}${formatFixed(pnlBps, 1)} bps against its entry)` : '') +
        ` ${formatDuration(f.ts - (cand.firstFillTs ?? cand.ts))} after the client order executed`;
    }
    const rec = s.records.get(order.uid);
    const cur = rec && rec.orderId === order.orderId ? rec : order;
    out.push({
      severity: severityFor(g),
      score: round(-Math.log10(chance), 4),
      venue: at.venue,
      symbol: at.symbol,
      account: pd.house,
      key: pd.house,
      ts: at.ts,
      windowStart: Math.min(order.ts, at.ts),
      windowEnd: at.ts,
      summary,
      trigger: eventRef(at),
      evidence: {
        observed: {
          houseAccount: pd.house,
          houseOrderId: order.orderId,
          houseOrderTs: order.ts,
          houseSide: order.side,
          houseQty: order.qty,
          housePrice: order.price,
          houseFilledQty: round(cur.filled, 10),
          leadMs: pd.lead,
          houseOrdersAhead: pd.ordersAhead,
          clientAccount: cand.account,
          clientOrderId: cand.id,
          clientOrderTs: cand.ts,
          clientQty: cand.qty,
          clientPrice: cand.price,
          sizeRatio: sizeRatio === null ? null : round(sizeRatio, 4),
          hits: pd.hits,
          hitsInLookback: pd.hitsInLookback,
          leadThresholdMs: pd.leadThresholdMs,
          thresholdsTried: pd.thresholds,
          candidates: pd.candidates,
          chance: pd.chance,
          closeOutOrderId: closeOut ? closeOut.fill.orderId : null,
          closeOutTs: closeOut ? closeOut.fill.ts : null,
          closeOutQty: closeOut ? (closeOut.fill.fillQty as number) : null,
          closeOutPrice: closeOut ? (closeOut.fill.fillPrice as number) : null,
          entryPrice: closeOut ? closeOut.entryPx : null,
          pnlPerUnit: pnlPerUnit === null ? null : round(pnlPerUnit, 10),
          pnlBps: pnlBps === null ? null : round(pnlBps, 4),
        },
        baseline: {
          usualClientQty: pd.usual,
          clientSamples: pd.samples,
          houseOrdersPerHour: round(pd.ratePerHour, 6),
          houseOrdersInRateWindow: pd.ordersInRate,
          rateSpanMs: pd.rateSpanMs,
          chancePerCandidate: pd.p,
        },
        threshold: { sizeMultiple, leadMs, maxChanceProb, lookbackCandidates, requireCloseOut, closeOutMs },
        triggers,
      },
    });
  };

  // Eviction from the client-size window, made once per instance: acts on `clientOf`, set right before.
  let clientOf: FrontRunningState | null = null;
  const evictClient = (v: number): void => {
    (clientOf as FrontRunningState).clientSorted.remove(v);
  };

  const onClientNew = (s: FrontRunningState, o: Order, out: FindingDraft[]): void => {
    const t = o.ts;
    const samples = s.clientSorted.size;
    const usual = samples >= minClientOrders ? s.clientSorted.median() : Number.NaN;
    const large = usual > 0 && o.qty >= sizeMultiple * usual;
    clientOf = s;
    s.clientTs.push(t, o.qty, evictClient);
    s.clientSorted.insert(o.qty);
    if (!large) return;
    s.largeOrders += 1;

    const prev = s.candidates.at(-1);
    const gap = prev === undefined ? null : Math.max(0, t - prev.ts);
    const cand: Candidate = { id: o.orderId, account: o.account, side: o.side, ts: t, gap, qty: o.qty, price: o.price, ref: eventRef(o), firstFillTs: null };
    s.candidates.push(cand);
    s.candIndex.set(cand.id, cand);
    while (s.candidates.length > lookbackCandidates) {
      const old = s.candidates.shift() as Candidate;
      if (s.candIndex.get(old.id) === old) s.candIndex.delete(old.id);
    }

    // House orders ahead, same side, grouped by account (nearest first).
    const recent = o.side === 'buy' ? s.recentBuy : s.recentSell;
    recent.expire(t);
    const ahead = new Map<string, HouseOrder[]>();
    for (let i = recent.size - 1; i >= 0; i--) {
      const rec = s.records.get(recent.at(i).value);
      if (!rec || rec.side !== o.side || rec.account === o.account) continue;
      if (rec.ts > t || rec.ts <= t - leadMs) continue;
      if (rec.cancelled && rec.filled === 0) continue;
      const list = ahead.get(rec.account);
      if (list) list.push(rec);
      else ahead.set(rec.account, [rec]);
    }
    for (const [account, list] of ahead) {
      const h = s.houses.get(account);
      if (!h) continue;
      // Nearest order ahead: the largest ts (ties: the later placed).
      let near = list[0] as HouseOrder;
      for (const r of list) if (r.ts > near.ts || (r.ts === near.ts && r.uid > near.uid)) near = r;
      const lead = t - near.ts;
      // Hits among the candidates still in the lookback (and observable for h).
      const inLook = new Set<string>();
      for (const c of s.candidates) if (c.ts >= h.since) inLook.add(c.id);
      h.hits = h.hits.filter((x) => s.candIndex.has(x.id) && x.id !== cand.id);
      h.hits.push({ id: cand.id, lead });
      if (h.hits.length > lookbackCandidates) h.hits.splice(0, h.hits.length - lookbackCandidates);
      // Each candidate's window reaches back at most to the previous large client order, so the windows
      // are disjoint and, for a house trading independently of clients, independent.
      const look: Candidate[] = [];
      for (const c of s.candidates) if (inLook.has(c.id)) look.push(c);
      const leadOf = new Map<string, number>();
      for (const x of h.hits) if (inLook.has(x.id)) leadOf.set(x.id, Math.max(1, x.lead));
      const reach = (c: Candidate, ell: number): number => (c.gap === null ? ell : Math.min(ell, c.gap));
      const buyRate = rateOf(h, 'buy', t);
      const sellRate = rateOf(h, 'sell', t);
      // Scan the lead thresholds that include this hit: k_j hits within ℓ_j, tail P(X ≥ k_j) at p(ℓ_j).
      const own = Math.max(1, lead);
      const leads = [...new Set(leadOf.values())].filter((l) => l >= own).sort((a, b) => a - b);
      let best = Number.POSITIVE_INFINITY;
      let bestEll = own;
      let bestK = 0;
      let bestP = 0;
      let thresholds = 0;
      for (const ell of leads) {
        let k = 0;
        const ps: number[] = [];
        for (const c of look) {
          const r = reach(c, ell);
          ps.push(1 - Math.exp(-(c.side === 'buy' ? buyRate : sellRate).rate * r));
          const l = leadOf.get(c.id);
          if (l !== undefined && l <= r) k += 1;
        }
        if (k === 0 || (leadOf.get(cand.id) as number) > reach(cand, ell)) continue; // this hit is not within its own window
        thresholds += 1;
        if (ps.length < lookbackCandidates) {
          const mean = ps.reduce((a, b) => a + b, 0) / Math.max(1, ps.length);
          while (ps.length < lookbackCandidates) ps.push(mean);
        }
        const tail = poissonBinomialTail(ps, k);
        if (tail < best) {
          best = tail;
          bestEll = ell;
          bestK = k;
          bestP = 1 - Math.exp(-(o.side === 'buy' ? buyRate : sellRate).rate * reach(cand, ell));
        }
      }
      const hitsInLookback = leadOf.size;
      if (thresholds === 0 || !inLook.has(cand.id)) continue; // not observable for h (before it became observable)
      const observed = inLook.size;
      const chance = Math.min(1, best * thresholds);
      if (!(chance <= maxChanceProb)) continue;
      if (h.lastFindingTs !== null && t - h.lastFindingTs < cooldownMs) continue;
      const sideRate = o.side === 'buy' ? buyRate : sellRate;
      const sorted = [...list].sort((a, b) => b.ts - a.ts || b.uid - a.uid);
      const pd: Pending = {
        house: account,
        cand,
        order: copyHouseOrder(near),
        houseRefs: sorted.map(houseRef),
        lead,
        ordersAhead: list.length,
        hits: bestK,
        hitsInLookback,
        leadThresholdMs: bestEll,
        thresholds,
        candidates: observed,
        chance,
        p: bestP,
        ratePerHour: sideRate.rate * 3_600_000,
        ordersInRate: sideRate.n,
        rateSpanMs: sideRate.span,
        usual,
        samples,
      };
      if (!requireCloseOut) {
        emit(s, pd, o, out, null);
        continue;
      }
      s.pending.push(pd);
      if (s.pending.length > maxPending) s.pending.shift();
    }
  };

  const onHouseFill = (s: FrontRunningState, o: Order, out: FindingDraft[]): void => {
    const q = o.fillQty;
    const px = o.fillPrice;
    if (q === undefined || px === undefined || !(q > 0) || !(px > 0)) return;
    const rec = recordOf(s, o.orderId, o.account);
    if (rec) {
      rec.filled += q;
      rec.notional += q * px;
    }
    if (!requireCloseOut || s.pending.length === 0) return;
    // Drop what can no longer close out, then look for this account's open timing on the other side.
    const now = s.wm as number;
    s.pending = s.pending.filter((pd) => now - (pd.cand.firstFillTs ?? pd.cand.ts) <= closeOutMs);
    const i = s.pending.findIndex(
      (pd) =>
        pd.house === o.account &&
        pd.order.side !== o.side &&
        pd.cand.firstFillTs !== null &&
        o.ts >= pd.cand.firstFillTs &&
        o.ts - pd.cand.firstFillTs <= closeOutMs,
    );
    if (i < 0) return;
    const pd = s.pending[i] as Pending;
    s.pending.splice(i, 1);
    const h = s.houses.get(pd.house);
    if (h && h.lastFindingTs !== null && o.ts - h.lastFindingTs < cooldownMs) return;
    const cur = s.records.get(pd.order.uid);
    const entry = cur && cur.orderId === pd.order.orderId ? cur : pd.order;
    const entryPx = entry.filled > 0 ? entry.notional / entry.filled : entry.price > 0 ? entry.price : null;
    emit(s, pd, o, out, { fill: o, entryPx });
  };

  const onOrder = (s: FrontRunningState, o: Order, out: FindingDraft[]): void => {
    if (s.startTs === null) s.startTs = o.ts;
    if (s.wm === null || o.ts > s.wm) s.wm = o.ts;
    const house = isHouse(o);
    switch (o.action) {
      case 'new':
        if (house) onHouseNew(s, o);
        else if (o.capacity === 'agency') onClientNew(s, o, out);
        return;
      case 'replace': {
        if (!house) return;
        const rec = recordOf(s, o.origOrderId ?? o.orderId, o.account);
        if (!rec) return;
        rec.qty = o.qty;
        rec.price = o.price;
        if (o.origOrderId !== undefined && o.origOrderId !== o.orderId) {
          if (s.index.get(rec.orderId) === rec.uid) s.index.delete(rec.orderId);
          rec.orderId = o.orderId;
          s.index.set(o.orderId, rec.uid);
        }
        return;
      }
      case 'cancel': {
        if (!house) return;
        const rec = recordOf(s, o.orderId, o.account);
        if (rec) rec.cancelled = true;
        return;
      }
      case 'fill': {
        if (house) {
          onHouseFill(s, o, out);
          return;
        }
        const c = s.candIndex.get(o.orderId);
        if (c && c.account === o.account && (c.firstFillTs === null || o.ts < c.firstFillTs)) {
          c.firstFillTs = o.ts;
          for (const pd of s.pending) if (pd.cand.id === c.id && pd.cand.account === c.account) pd.cand.firstFillTs = o.ts;
        }
        return;
      }
    }
  };

  const windowFrom = (w: TimeWindow<number>, horizon: unknown, ts: unknown, vals: (i: number) => number, what: string): void => {
    if (!Array.isArray(ts)) throw new TypeError(`front_running: bad ${what} in state JSON`);
    for (let i = 0; i < ts.length; i++) {
      const t = ts[i];
      const v = vals(i);
      if (!isNum(t) || !isNum(v)) throw new TypeError(`front_running: bad ${what} in state JSON`);
      w.push(t, v);
    }
    if (isNum(horizon)) w.expire(horizon);
  };

  return {
    name: 'front_running',
    ruleId,
    kinds: ['order'],
    newState,
    onEvent(state: FrontRunningState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'order' && Number.isFinite(ev.ts)) onOrder(state, ev, out);
    },
    toJSON(s: FrontRunningState): FrontRunningJSON {
      const cw = s.clientTs.toJSON();
      const rb = s.recentBuy.toJSON();
      const rs = s.recentSell.toJSON();
      return {
        v: 1,
        key: s.key,
        wm: s.wm,
        startTs: s.startTs,
        lastEvictTs: s.lastEvictTs,
        clientHorizon: cw.horizon,
        clientAge: cw.ts.map((t) => (cw.horizon as number) - t),
        clientQty: cw.values,
        nextUid: s.nextUid,
        records: [...s.records.values()].map(houseOrderToJSON),
        index: [...s.index],
        recentBuyHorizon: rb.horizon,
        recentBuy: rb.ts.map((t, i) => [t, rb.values[i] as number]),
        recentSellHorizon: rs.horizon,
        recentSell: rs.ts.map((t, i) => [t, rs.values[i] as number]),
        houses: [...s.houses].map(([a, h]) => {
          const copy = (r: RateBuckets): RateBuckets => ({ idx: r.idx, counts: [...r.counts] });
          return [a, { since: h.since, bucketMs, buys: copy(h.buys), sells: copy(h.sells), hits: h.hits.map((x) => ({ ...x })), lastFindingTs: h.lastFindingTs }];
        }),
        candidates: s.candidates.map((c) => ({ ...c })),
        pending: s.pending.map((pd) => ({ ...pd, cand: { ...pd.cand }, order: houseOrderToJSON(pd.order), houseRefs: [...pd.houseRefs] })),
        largeOrders: s.largeOrders,
      };
    },
    fromJSON(json: unknown): FrontRunningState {
      const j = json as Partial<FrontRunningJSON> | null;
      if (
        !j ||
        j.v !== 1 ||
        !isStr(j.key) ||
        !numOrNull(j.wm ?? null) ||
        !numOrNull(j.startTs ?? null) ||
        !Array.isArray(j.clientAge) ||
        !Array.isArray(j.clientQty) ||
        j.clientAge.length !== j.clientQty.length ||
        (j.clientAge.length > 0 && !isNum(j.clientHorizon)) ||
        !Array.isArray(j.records) ||
        !Array.isArray(j.index) ||
        !Array.isArray(j.recentBuy) ||
        !Array.isArray(j.recentSell) ||
        !Array.isArray(j.houses) ||
        !Array.isArray(j.candidates) ||
        !Array.isArray(j.pending) ||
        !isNum(j.nextUid)
      ) {
        throw new TypeError('front_running: state JSON is not a v1 front_running state');
      }
      const s = newState(j.key);
      s.wm = j.wm ?? null;
      s.startTs = j.startTs ?? null;
      s.lastEvictTs = numOrNull(j.lastEvictTs) ? j.lastEvictTs : null;
      s.nextUid = j.nextUid;
      s.largeOrders = isNum(j.largeOrders) ? j.largeOrders : 0;
      // The baseline under the current bounds (the newest samples), its sorted copy built in one sort.
      const clientQty = j.clientQty;
      for (let i = 0; i < j.clientAge.length; i++) {
        const age = j.clientAge[i];
        const q = clientQty[i];
        const t = isNum(age) ? (j.clientHorizon as number) - age : Number.NaN;
        if (!isNum(t) || !isNum(q)) throw new TypeError('front_running: bad client sample in state JSON');
        s.clientTs.push(t, q);
      }
      if (isNum(j.clientHorizon)) s.clientTs.expire(j.clientHorizon);
      s.clientSorted = SortedWindow.fromJSON({ capacity: maxClientSamples, values: s.clientTs.toJSON().values.sort((a, b) => a - b) });
      for (const r of j.records) {
        if (!isHouseOrder(r)) throw new TypeError('front_running: bad house order in state JSON');
        s.records.set(r.uid, houseOrderFromJSON(r));
      }
      while (s.records.size > maxOpenOrders) s.records.delete(s.records.keys().next().value as number);
      for (const e of j.index) {
        if (!Array.isArray(e) || !isStr(e[0]) || !isNum(e[1])) throw new TypeError('front_running: bad order index in state JSON');
        if (s.records.has(e[1])) s.index.set(e[0], e[1]);
      }
      const rb = j.recentBuy;
      const rs = j.recentSell;
      windowFrom(s.recentBuy, j.recentBuyHorizon, rb.map((e) => (Array.isArray(e) ? e[0] : null)), (i) => (rb[i] as [number, number])[1], 'recent orders');
      windowFrom(s.recentSell, j.recentSellHorizon, rs.map((e) => (Array.isArray(e) ? e[0] : null)), (i) => (rs[i] as [number, number])[1], 'recent orders');
      for (const e of j.houses) {
        if (!Array.isArray(e) || !isStr(e[0]) || !e[1]) throw new TypeError('front_running: bad house account in state JSON');
        const hj = e[1];
        if (!isNum(hj.since) || !Array.isArray(hj.hits) || !numOrNull(hj.lastFindingTs)) throw new TypeError('front_running: bad house account in state JSON');
        const bucketsOk = (r: unknown): r is RateBuckets => {
          const x = r as RateBuckets | null;
          return !!x && numOrNull(x.idx) && Array.isArray(x.counts) && x.counts.length === RATE_BUCKETS && x.counts.every(isNum);
        };
        if (!bucketsOk(hj.buys) || !bucketsOk(hj.sells)) throw new TypeError('front_running: bad house activity in state JSON');
        let h: HouseAccount;
        if (hj.bucketMs === bucketMs) {
          h = newHouse(hj.since);
          h.buys = { idx: hj.buys.idx, counts: [...hj.buys.counts] };
          h.sells = { idx: hj.sells.idx, counts: [...hj.sells.counts] };
        } else {
          // Another rate window: the counts do not convert; the account is observable from now on.
          h = newHouse(Math.max(hj.since, s.wm ?? hj.since));
        }
        for (const x of hj.hits) {
          if (!x || !isStr(x.id) || !isNum(x.lead)) throw new TypeError('front_running: bad hit in state JSON');
          h.hits.push({ id: x.id, lead: x.lead });
        }
        h.hits = h.hits.slice(-lookbackCandidates);
        h.lastFindingTs = hj.lastFindingTs;
        s.houses.set(e[0], h);
      }
      while (s.houses.size > maxAccounts) {
        s.houses.delete(s.houses.keys().next().value as string);
        s.lastEvictTs = s.wm;
      }
      for (const a of s.houses.keys()) s.lastHouse = a;
      for (const c of j.candidates) {
        if (!isCandidate(c)) throw new TypeError('front_running: bad candidate in state JSON');
        const cand = { ...c };
        s.candidates.push(cand);
        s.candIndex.set(cand.id, cand);
      }
      while (s.candidates.length > lookbackCandidates) {
        const old = s.candidates.shift() as Candidate;
        if (s.candIndex.get(old.id) === old) s.candIndex.delete(old.id);
      }
      for (const p of j.pending as unknown as Array<Record<string, unknown>>) {
        const cand = p.cand;
        if (!p || !isStr(p.house) || !isCandidate(cand) || !isHouseOrder(p.order) || !Array.isArray(p.houseRefs) || !p.houseRefs.every(isStr)) {
          throw new TypeError('front_running: bad pending timing in state JSON');
        }
        for (const k of ['lead', 'ordersAhead', 'hits', 'hitsInLookback', 'leadThresholdMs', 'thresholds', 'candidates', 'chance', 'p', 'ratePerHour', 'ordersInRate', 'rateSpanMs', 'usual', 'samples'] as const) {
          if (!isNum(p[k])) throw new TypeError('front_running: bad pending timing in state JSON');
        }
        s.pending.push({
          house: p.house,
          cand: { ...cand },
          order: houseOrderFromJSON(p.order),
          houseRefs: [...p.houseRefs],
          lead: p.lead as number,
          ordersAhead: p.ordersAhead as number,
          hits: p.hits as number,
          hitsInLookback: p.hitsInLookback as number,
          leadThresholdMs: p.leadThresholdMs as number,
          thresholds: p.thresholds as number,
          candidates: p.candidates as number,
          chance: p.chance as number,
          p: p.p as number,
          ratePerHour: p.ratePerHour as number,
          ordersInRate: p.ordersInRate as number,
          rateSpanMs: p.rateSpanMs as number,
          usual: p.usual as number,
          samples: p.samples as number,
        });
      }
      if (!requireCloseOut) s.pending = [];
      if (s.pending.length > maxPending) s.pending.splice(0, s.pending.length - maxPending);
      return s;
    },
  };
}

export const frontRunningSpec: DetectorSpec<FrontRunningParams, FrontRunningState> = {
  name: 'front_running',
  description:
    'A house (principal) order on the same side shortly before a large client (agency) order on the same venue:symbol, weighed against ' +
    "the house account's own activity (chance of such timing by coincidence); optionally only once the house closes out after the client order executes.",
  kinds: ['order'],
  params: frontRunningParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
