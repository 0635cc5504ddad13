/**
 * Detector throughput and memory, for EVERY detector of the registry (src/detectors/registry.ts), read at
 * run time: each is built with its default parameters and fed pre-generated, realistic events of the kinds
 * it handles, over many keys, the way the runner feeds it (one state per key: the message key, the
 * detector's view or its keyOf).
 *
 * - Throughput: onEvent alone on one core (states are resolved per event beforehand, untimed), best of
 *   PASSES passes of at least MIN_PASS_MS each; a pass runs rounds over the event stream with fresh states
 *   until the time is reached (checked every CHUNK events, so a slow detector stops mid-stream).
 * - Memory per active key: heap growth after creating MEM_KEYS keys' states with a few events each,
 *   divided by the keys (states kept in an array; garbage collected before and after).
 *
 * Events: one market (trades, quotes, L2 books with snapshots then diffs, order flow with accounts, feed
 * status), one payments (card, e-commerce, transfer and ATM transactions with accounts, counterparties,
 * merchants, terminals, geo, devices, labels later) and one metrics stream, generated once, deterministic.
 */
import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  eventKey,
  eventViews,
  type Book,
  type CanonicalEvent,
  type EventKind,
  type FeedStatus,
  type Label,
  type Metric,
  type Order,
  type Quote,
  type Trade,
  type Transaction,
} from '../src/core/events.ts';
import { detectorSpecs } from '../src/detectors/registry.ts';
import type { DetectorInstance, FindingDraft, RiskSignal } from '../src/detectors/types.ts';
import { fmtInt, type BenchSection } from './table.ts';
import { mulberry32 } from '../test/helpers/random.ts';

// Short passes keep `npm run bench` within its budget: best of 2 passes of at least 150 ms and one whole
// round of the stream each moves a rate by a few % at most.
const PASSES = 2;
const MIN_PASS_MS = 150;
const CHUNK = 2048;
const MEM_KEYS = 10_000;
const MEM_EVENTS_PER_KEY = 4;
/** The project's target for O(1) detectors. */
const TARGET_EVENTS_PER_SEC = 1_000_000;
const T0 = Date.UTC(2024, 7, 8, 12, 0, 0);

// ------------------------------------------------------------------ deterministic randomness

type Rng = () => number;
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)] as T;
/** Index in [0, n) skewed to the low end (a few hot keys, a long tail). */
const skewed = (rng: Rng, n: number): number => Math.floor(n * rng() ** 2.5);
const lognormal = (rng: Rng, median: number, sigma: number): number => {
  let u = 0;
  while (u === 0) u = rng();
  return median * Math.exp(sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng()));
};
const round = (x: number, step: number): number => Math.round(x / step) * step;

// ------------------------------------------------------------------ market

const VENUES = ['binance', 'coinbase', 'kraken'] as const;
const SEGMENTS = ['retail', 'institutional', 'market_maker'] as const;
/**
 * Order sizes: every account has a characteristic size (a factor of the instrument's, lognormal across
 * accounts, σ ACCOUNT_SIZE_SIGMA) and sizes its orders around it (σ ORDER_SIZE_SIGMA). The instrument's size
 * distribution is about what it was with one σ = 1 draw per order, but each account's own sizes are no
 * longer as dispersed as the whole market's: with independent draws, 1 order in 19 of EVERY account was ≥ 5×
 * that account's median size, so honest flow was full of "large orders near the touch, cancelled while the
 * account traded the other side" (spoofing fired ~2,100 times per 1M order events).
 */
const ACCOUNT_SIZE_SIGMA = 1;
const ORDER_SIZE_SIGMA = 0.4;

/** The account's size factor: fixed per account name (a hash, not the stream's generator, so no other draw moves). */
function accountSizeScale(account: string): number {
  let h = 2166136261;
  for (let i = 0; i < account.length; i++) h = Math.imul(h ^ account.charCodeAt(i), 16777619);
  return lognormal(mulberry32(h >>> 0), 1, ACCOUNT_SIZE_SIGMA);
}

interface MarketKey {
  venue: string;
  symbol: string;
  mid: number;
  tick: number;
  spreadTicks: number;
  bookSeq: number;
  needSnapshot: boolean;
  quoteSeq: number;
  tradeSeq: number;
  accounts: string[];
  open: Array<{ orderId: string; account: string; side: 'buy' | 'sell'; price: number; qty: number }>;
}

class MarketGen {
  private orderSeq = 0;
  constructor(private readonly rng: Rng) {}

  newKey(venue: string, symbol: string, accountPool: number, accountOffset = 0): MarketKey {
    const rng = this.rng;
    const mid = lognormal(rng, 100, 2.5);
    const tick = 10 ** (Math.floor(Math.log10(mid)) - 4);
    const accounts = Array.from({ length: 12 }, () => `ACC-${accountOffset + Math.floor(rng() * accountPool)}`);
    return { venue, symbol, mid: round(mid, tick), tick, spreadTicks: 1 + Math.floor(rng() * 4), bookSeq: 1000, needSnapshot: true, quoteSeq: 0, tradeSeq: 0, accounts, open: [] };
  }

  private walk(k: MarketKey): void {
    const u = this.rng();
    if (u < 0.1) k.mid += k.tick;
    else if (u < 0.2) k.mid = Math.max(k.tick * 10, k.mid - k.tick);
  }

  trade(k: MarketKey, ts: number): Trade {
    this.walk(k);
    const rng = this.rng;
    const buy = rng() < 0.5;
    const half = (k.spreadTicks * k.tick) / 2;
    return {
      kind: 'trade',
      venue: k.venue,
      symbol: k.symbol,
      ts,
      recvTs: ts + 3,
      price: round(k.mid + (buy ? half : -half), k.tick / 2),
      qty: round(lognormal(rng, 1000 / k.mid, 1.2), 1e-6) || 1e-6,
      side: buy ? 'buy' : 'sell',
      tradeId: String(++k.tradeSeq),
    };
  }

  quote(k: MarketKey, ts: number): Quote {
    this.walk(k);
    const rng = this.rng;
    const half = (k.spreadTicks * k.tick) / 2;
    return {
      kind: 'quote',
      venue: k.venue,
      symbol: k.symbol,
      ts,
      recvTs: ts + 2,
      bidPx: round(k.mid - half, k.tick / 2),
      bidQty: round(lognormal(rng, 5000 / k.mid, 1), 1e-6),
      askPx: round(k.mid + half, k.tick / 2),
      askQty: round(lognormal(rng, 5000 / k.mid, 1), 1e-6),
      seq: ++k.quoteSeq,
    };
  }

  book(k: MarketKey, ts: number): Book {
    const rng = this.rng;
    const half = (k.spreadTicks * k.tick) / 2;
    const level = (side: 1 | -1, j: number, zero: boolean): [number, number] => [
      round(k.mid + side * (half + j * k.tick), k.tick / 2),
      zero ? 0 : round(lognormal(rng, 3000 / k.mid, 1), 1e-6),
    ];
    if (k.needSnapshot) {
      k.needSnapshot = false;
      k.bookSeq += 1;
      return {
        kind: 'book',
        venue: k.venue,
        symbol: k.symbol,
        ts,
        recvTs: ts + 5,
        seq: k.bookSeq,
        firstSeq: k.bookSeq,
        snapshot: true,
        bids: Array.from({ length: 20 }, (_, j) => level(-1, j, false)),
        asks: Array.from({ length: 20 }, (_, j) => level(1, j, false)),
      };
    }
    this.walk(k);
    const n = 1 + Math.floor(rng() * 3);
    const bids: [number, number][] = [];
    const asks: [number, number][] = [];
    for (let i = 0; i < n; i++) (rng() < 0.5 ? bids : asks).push(level(bids.length > asks.length ? 1 : -1, Math.floor(rng() * 20), rng() < 0.2));
    const firstSeq = k.bookSeq + 1;
    k.bookSeq += n;
    return { kind: 'book', venue: k.venue, symbol: k.symbol, ts, recvTs: ts + 5, seq: k.bookSeq, firstSeq, snapshot: false, bids, asks };
  }

  order(k: MarketKey, ts: number): Order {
    const rng = this.rng;
    const u = rng();
    let o: MarketKey['open'][number];
    let action: Order['action'];
    let qty: number;
    let fillQty: number | undefined;
    if (k.open.length === 0 || u < 0.42 || (k.open.length < 3 && u < 0.6)) {
      const side = rng() < 0.5 ? 'buy' : 'sell';
      const away = Math.floor(rng() * 10) * k.tick + (k.spreadTicks * k.tick) / 2;
      // Drawn in the same order as ever (account, then size): the rest of the stream does not move.
      const account = pick(rng, k.accounts);
      const price = round(side === 'buy' ? k.mid - away : k.mid + away, k.tick / 2);
      const size = round(lognormal(rng, (2000 / k.mid) * accountSizeScale(account), ORDER_SIZE_SIGMA), 1e-6) || 1e-6;
      o = { orderId: `O${++this.orderSeq}`, account, side, price, qty: size };
      if (k.open.length >= 64) k.open.shift();
      k.open.push(o);
      action = 'new';
      qty = o.qty;
    } else {
      const i = Math.floor(rng() * k.open.length);
      o = k.open[i] as MarketKey['open'][number];
      qty = o.qty;
      if (u < 0.74) {
        k.open.splice(i, 1);
        action = 'cancel';
      } else if (u < 0.84) {
        o.price = round(o.price + (rng() < 0.5 ? -1 : 1) * k.tick, k.tick / 2);
        action = 'replace';
      } else {
        fillQty = rng() < 0.6 ? o.qty : round(o.qty * rng(), 1e-6);
        o.qty = round(o.qty - fillQty, 1e-6);
        if (o.qty <= 0) k.open.splice(i, 1);
        action = 'fill';
        qty = fillQty;
      }
    }
    // Built field by field (object spread is slow under the TypeScript loader).
    const h = o.account.length + o.account.charCodeAt(o.account.length - 1);
    const ev: Order = {
      kind: 'order',
      venue: k.venue,
      symbol: k.symbol,
      ts,
      recvTs: ts + 1,
      orderId: o.orderId,
      account: o.account,
      side: o.side,
      price: o.price,
      qty,
      action,
      segment: SEGMENTS[h % 3] as string,
      capacity: h % 5 === 0 ? 'agency' : 'principal',
    };
    if (h % 37 === 0) ev.linkedAccounts = [k.accounts[0] as string];
    if (fillQty !== undefined) {
      ev.fillQty = fillQty;
      ev.fillPrice = o.price;
      // The other side: another account (self-matches and linked accounts stay rare, as in real flow).
      let cp = pick(rng, k.accounts);
      if (cp === o.account) cp = `ACC-X${Math.floor(rng() * 100_000)}`;
      ev.counterpartyAccount = cp;
    }
    return ev;
  }

  status(k: MarketKey, ts: number): FeedStatus {
    const u = this.rng();
    const status: FeedStatus['status'] = u < 0.5 ? 'connected' : u < 0.6 ? 'stale' : u < 0.7 ? 'gap' : u < 0.8 ? 'disconnected' : u < 0.9 ? 'book_reset' : 'book_synced';
    if (status === 'book_reset' || status === 'disconnected') k.needSnapshot = true;
    return { kind: 'status', venue: k.venue, symbol: k.symbol, ts, recvTs: ts, status, reason: 'bench' };
  }

  next(k: MarketKey, kind: EventKind, ts: number): CanonicalEvent {
    switch (kind) {
      case 'trade':
        return this.trade(k, ts);
      case 'quote':
        return this.quote(k, ts);
      case 'book':
        return this.book(k, ts);
      case 'order':
        return this.order(k, ts);
      default:
        return this.status(k, ts);
    }
  }
}

/** ~2,000 market events/s over 240 venue:symbol keys (80 symbols on 3 venues), hot keys and a long tail. */
function marketStream(n: number): CanonicalEvent[] {
  const rng = mulberry32(1);
  const gen = new MarketGen(rng);
  const keys: MarketKey[] = [];
  for (let s = 0; s < 80; s++) for (const v of VENUES) keys.push(gen.newKey(v, `S${s}-USDT`, 3000));
  const out: CanonicalEvent[] = [];
  let ts = T0;
  for (let i = 0; i < n; i++) {
    ts += rng() < 0.5 ? 0 : 1;
    const k = keys[skewed(rng, keys.length)] as MarketKey;
    const u = rng();
    const kind: EventKind = u < 0.0005 ? 'status' : u < 0.25 ? 'trade' : u < 0.6 ? 'quote' : u < 0.8 ? 'book' : 'order';
    out.push(gen.next(k, kind, ts));
  }
  return out;
}

// ------------------------------------------------------------------ payments

const COUNTRIES = [
  ['DE', 52.52, 13.4],
  ['FR', 48.86, 2.35],
  ['NL', 52.37, 4.9],
  ['ES', 40.42, -3.7],
  ['IT', 41.9, 12.5],
  ['GB', 51.5, -0.12],
  ['US', 40.71, -74.0],
] as const;
const MCCS = ['5411', '5812', '5999', '4111', '5732', '7995', '6011', '5311'];

interface Account {
  id: string;
  country: (typeof COUNTRIES)[number];
  devices: string[];
  ip: string;
  cards: string[];
  segment: string;
}
interface Merchant {
  id: string;
  mcc: string;
  country: (typeof COUNTRIES)[number];
  terminals: string[];
}

class PaymentGen {
  private txSeq = 0;
  /** Ring of the last 1,000 transactions (labels pick from it). */
  private recent: Transaction[] = [];
  private recentAt = 0;
  constructor(private readonly rng: Rng) {}

  account(id: string): Account {
    const rng = this.rng;
    const n = Math.floor(rng() * 1e6);
    return {
      id,
      country: pick(rng, COUNTRIES),
      devices: [`dev-${n}`, ...(rng() < 0.3 ? [`dev-${n}b`] : [])],
      ip: `10.${n % 256}.${(n >> 8) % 256}.${(n >> 16) % 256}`,
      cards: [`card-${n}`, ...(rng() < 0.2 ? [`card-${n}b`] : [])],
      segment: rng() < 0.9 ? 'retail' : 'business',
    };
  }
  merchant(id: string): Merchant {
    const rng = this.rng;
    return { id, mcc: pick(rng, MCCS), country: pick(rng, COUNTRIES), terminals: Array.from({ length: 1 + Math.floor(rng() * 3) }, (_, i) => `${id}-T${i}`) };
  }

  transaction(a: Account, m: Merchant, counterparty: string, ts: number): Transaction {
    // Built field by field: object spread is slow under the TypeScript loader and this runs ~10⁶ times.
    const rng = this.rng;
    const u = rng();
    const tx: Transaction = {
      kind: 'transaction',
      source: 'bench',
      id: `tx-${++this.txSeq}`,
      ts,
      recvTs: ts + 20,
      account: a.id,
      amount: 0,
      currency: 'EUR',
      direction: 'debit',
      channel: 'card_present',
      segment: a.segment,
    };
    const jitter = (): number => (rng() - 0.5) * 0.2;
    if (u < 0.5) {
      tx.amount = Math.round(lognormal(rng, 35, 1) * 100) / 100;
      if (rng() < 0.03) tx.direction = 'credit';
      tx.merchant = m.id;
      tx.terminal = pick(rng, m.terminals);
      tx.mcc = m.mcc;
      tx.country = m.country[0];
      tx.lat = m.country[1] + jitter();
      tx.lon = m.country[2] + jitter();
      tx.card = pick(rng, a.cards);
    } else if (u < 0.75) {
      tx.amount = Math.round(lognormal(rng, 60, 1.2) * 100) / 100;
      tx.channel = 'ecommerce';
      tx.merchant = m.id;
      tx.mcc = m.mcc;
      tx.country = a.country[0];
      tx.device = pick(rng, a.devices);
      tx.ip = a.ip;
      tx.card = pick(rng, a.cards);
    } else if (u < 0.95) {
      tx.amount = Math.round(lognormal(rng, 300, 1.3) * 100) / 100;
      tx.channel = 'transfer';
      tx.counterparty = counterparty;
      tx.country = a.country[0];
      tx.device = pick(rng, a.devices);
      tx.ip = a.ip;
    } else {
      tx.amount = round(lognormal(rng, 100, 0.6), 10) || 10;
      tx.channel = 'atm';
      tx.terminal = pick(rng, m.terminals);
      tx.country = a.country[0];
      tx.lat = a.country[1] + jitter();
      tx.lon = a.country[2] + jitter();
      tx.card = pick(rng, a.cards);
    }
    if (this.recent.length < 1000) this.recent.push(tx);
    else this.recent[this.recentAt++ % 1000] = tx;
    return tx;
  }

  /** A later verdict on a recent transaction (chargeback, fraud or legit). */
  label(ts: number, tx?: Transaction): Label | undefined {
    const t = tx ?? this.recent[Math.floor(this.rng() * this.recent.length)];
    if (!t) return undefined;
    const u = this.rng();
    const l: Label = { kind: 'label', source: 'bench', txId: t.id, ts, recvTs: ts, label: u < 0.4 ? 'fraud' : u < 0.7 ? 'chargeback' : 'legit', account: t.account };
    if (t.merchant) l.merchant = t.merchant;
    if (t.terminal) l.terminal = t.terminal;
    return l;
  }
}

/** Payments per account and day: card and payment traffic, a few a day for a retail account. */
const TX_PER_ACCOUNT_DAY = 3;
const PAY_ACCOUNTS = 20_000;

/**
 * ~0.7 transactions/s over 20,000 accounts — each about 3 payments a day, as in card and payment traffic
 * (the 300,000 transactions span ~5 days) — and 2,000 merchants (a few big ones, with hundreds a day);
 * cards are used at merchants of the account's own country 99.5% of the time; transfers go to other
 * accounts or outside; 1% of transactions get a label later.
 */
function paymentStream(n: number): CanonicalEvent[] {
  const rng = mulberry32(2);
  const gen = new PaymentGen(rng);
  const accounts = Array.from({ length: PAY_ACCOUNTS }, (_, i) => gen.account(`A${i}`));
  // Uniform gaps with the mean that gives TX_PER_ACCOUNT_DAY per account (1.44 s over 20,000 accounts).
  const maxGapMs = (2 * 86_400_000) / (PAY_ACCOUNTS * TX_PER_ACCOUNT_DAY);
  const merchants = Array.from({ length: 2_000 }, (_, i) => gen.merchant(`MER${i}`));
  const byCountry = new Map<string, Merchant[]>();
  for (const m of merchants) {
    const list = byCountry.get(m.country[0]) ?? [];
    list.push(m);
    byCountry.set(m.country[0], list);
  }
  const out: CanonicalEvent[] = [];
  let ts = T0;
  while (out.length < n) {
    ts += Math.floor(rng() * maxGapMs);
    const a = accounts[Math.floor(rng() * accounts.length)] as Account;
    const local = byCountry.get(a.country[0]);
    const pool = local && rng() < 0.995 ? local : merchants;
    const m = pool[Math.floor(pool.length * rng() ** 2)] as Merchant;
    const cp = rng() < 0.7 ? `A${Math.floor(rng() * accounts.length)}` : `EXT${Math.floor(rng() * 50_000)}`;
    out.push(gen.transaction(a, m, cp, ts));
    if (rng() < 0.01) {
      const l = gen.label(ts);
      if (l) out.push(l);
    }
  }
  return out;
}

// ------------------------------------------------------------------ metrics

function metric(rng: Rng, i: number, level: number[], ts: number, key = `m${i}`): Metric {
  level[i] = (level[i] ?? 100) + (rng() - 0.5) * 2;
  return { kind: 'metric', source: i % 2 === 0 ? 'prom' : 'app', key, ts, recvTs: ts, value: Math.round(((level[i] as number) + (rng() - 0.5) * 10) * 100) / 100 };
}

/** 200 series, one value per series per second on average. */
function metricStream(n: number): CanonicalEvent[] {
  const rng = mulberry32(3);
  const level: number[] = [];
  const out: CanonicalEvent[] = [];
  let ts = T0;
  for (let i = 0; i < n; i++) {
    ts += rng() < 0.2 ? 1 : 0;
    out.push(metric(rng, Math.floor(rng() * 200), level, ts));
  }
  return out;
}

// ------------------------------------------------------------------ streams per detector

const FAMILY: Record<EventKind, 'market' | 'payments' | 'metrics'> = {
  trade: 'market',
  quote: 'market',
  book: 'market',
  order: 'market',
  status: 'market',
  transaction: 'payments',
  label: 'payments',
  metric: 'metrics',
};
const FAMILY_SIZE = { market: 500_000, payments: 300_000, metrics: 200_000 };

const familyCache = new Map<string, CanonicalEvent[]>();
function family(name: 'market' | 'payments' | 'metrics'): CanonicalEvent[] {
  let evs = familyCache.get(name);
  if (!evs) {
    evs = name === 'market' ? marketStream(FAMILY_SIZE.market) : name === 'payments' ? paymentStream(FAMILY_SIZE.payments) : metricStream(FAMILY_SIZE.metrics);
    familyCache.set(name, evs);
  }
  return evs;
}

/** The events a detector instance receives, and the state key of each (view, keyOf or message key). */
function streamFor(det: DetectorInstance): { events: CanonicalEvent[]; keys: string[] } {
  const kinds = new Set<EventKind>(det.kinds);
  const fams = [...new Set([...kinds].map((k) => FAMILY[k]))];
  let all: CanonicalEvent[] = [];
  for (const f of fams) all = all.concat(family(f).filter((e) => kinds.has(e.kind)));
  if (fams.length > 1) all.sort((a, b) => a.ts - b.ts);
  const events: CanonicalEvent[] = [];
  const keys: string[] = [];
  for (const ev of all) {
    const key = stateKey(det, ev);
    if (key === undefined) continue;
    events.push(ev);
    keys.push(key);
  }
  return { events, keys };
}

function stateKey(det: DetectorInstance, ev: CanonicalEvent): string | undefined {
  if (det.view !== undefined) return eventViews(ev)?.find((v) => v.view === det.view)?.key;
  return det.keyOf ? det.keyOf(ev) : eventKey(ev);
}

/** A few events of the detector's kinds for key number i (distinct venue:symbol / account / counterparty / merchant / series per i). */
function keyEvents(det: DetectorInstance, i: number, gens: { market: MarketGen; pay: PaymentGen; rng: Rng }, level: number[]): CanonicalEvent[] {
  const kinds = det.kinds.filter((k) => k !== 'status');
  const list: EventKind[] = kinds.length > 0 ? kinds : ['status'];
  const out: CanonicalEvent[] = [];
  let ts = T0 + i;
  let mk: MarketKey | undefined;
  let acct: Account | undefined;
  let merch: Merchant | undefined;
  let lastTx: Transaction | undefined;
  for (let e = 0; e < MEM_EVENTS_PER_KEY; e++) {
    const kind = list[e % list.length] as EventKind;
    ts += 250;
    if (FAMILY[kind] === 'market') {
      mk ??= gens.market.newKey('bench', `K${i}-USDT`, 50, i);
      if (kind === 'book' && e === 0) mk.needSnapshot = true;
      out.push(gens.market.next(mk, kind, ts));
    } else if (kind === 'transaction') {
      acct ??= gens.pay.account(`M${i}`);
      merch ??= gens.pay.merchant(`MER${i}`);
      lastTx = gens.pay.transaction(acct, merch, `CP${i}`, ts);
      if (det.view === 'counterparty' && lastTx.counterparty === undefined) {
        lastTx.channel = 'transfer';
        lastTx.counterparty = `CP${i}`;
      }
      if (det.view === 'merchant' && lastTx.merchant === undefined) lastTx.merchant = merch.id;
      out.push(lastTx);
    } else if (kind === 'label') {
      acct ??= gens.pay.account(`M${i}`);
      merch ??= gens.pay.merchant(`MER${i}`);
      const tx = lastTx ?? gens.pay.transaction(acct, merch, `CP${i}`, ts - 100);
      if (tx.merchant === undefined) tx.merchant = merch.id;
      const l = gens.pay.label(ts, tx);
      if (l) out.push(l);
    } else out.push(metric(gens.rng, i, level, ts, `k${i}`));
  }
  return out;
}

// ------------------------------------------------------------------ measurement

type GcFn = () => void;
function findGc(): { gc: GcFn | undefined; method: string } {
  const g = (globalThis as { gc?: GcFn }).gc;
  if (typeof g === 'function') return { gc: g, method: 'global.gc (node --expose-gc)' };
  try {
    setFlagsFromString('--expose-gc');
    const fn = runInNewContext('gc') as GcFn;
    if (typeof fn === 'function') return { gc: fn, method: 'gc exposed at run time (v8.setFlagsFromString --expose-gc)' };
  } catch {
    // fall through
  }
  return { gc: undefined, method: 'settle loop (no gc available: heap sampled after allocation churn, approximate)' };
}

async function settledHeap(gc: GcFn | undefined): Promise<number> {
  if (gc) {
    gc();
    return process.memoryUsage().heapUsed;
  }
  // No gc: churn short-lived garbage and wait, until heapUsed stops falling.
  let last = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 20; i++) {
    let junk: unknown[] = [];
    for (let j = 0; j < 200_000; j++) junk.push({ j });
    junk = [];
    await new Promise((r) => setTimeout(r, 20));
    const h = process.memoryUsage().heapUsed;
    if (h >= last * 0.999 && junk.length === 0) return Math.min(h, last);
    last = h;
  }
  return last;
}

export interface DetectorBenchRow {
  detector: string;
  kinds: string[];
  /** What the state is keyed by: message key, view or keyOf. */
  keyedBy: string;
  /** Events of its kinds in the stream, and distinct state keys among them. */
  streamEvents: number;
  streamKeys: number;
  eventsPerSec: number;
  nsPerEvent: number;
  findingsPerMillionEvents: number;
  signalsPerMillionEvents: number;
  bytesPerKey: number | null;
  memKeys: number;
  meetsTarget: boolean;
  /** Wall time this detector's measurements took (throughput, memory). */
  benchMs: number;
  throughputMs: number;
  memoryMs: number;
  error?: string;
}

function timePasses(det: DetectorInstance, events: CanonicalEvent[], keys: string[]): { eventsPerSec: number; findings: number; signals: number; processed: number } {
  let best = 0;
  let findings = 0;
  let signals = 0;
  let processed = 0;
  const out: FindingDraft[] = [];
  const sig: RiskSignal[] = [];
  const stateOf: unknown[] = new Array(CHUNK);
  for (let p = 0; p < PASSES; p++) {
    let ms = 0;
    let n = 0;
    let rounds = 0;
    // At least one whole round per pass: a slow rule cut off after its first events would be measured on
    // the stream's start alone (fresh states), not on the stream.
    while (ms < MIN_PASS_MS || rounds === 0) {
      // A round: fresh states, the stream from the start; each chunk's states are resolved (untimed), then
      // the chunk is timed.
      const states = new Map<string, unknown>();
      rounds++;
      for (let i = 0; i < events.length && (ms < MIN_PASS_MS || rounds === 1); ) {
        const start = i;
        const end = Math.min(events.length, i + CHUNK);
        for (let j = start; j < end; j++) {
          const k = keys[j] as string;
          let s = states.get(k);
          if (s === undefined) states.set(k, (s = det.newState(k)));
          stateOf[j - start] = s;
        }
        const t = performance.now();
        for (; i < end; i++) det.onEvent(stateOf[i - start], events[i] as CanonicalEvent, out, sig);
        ms += performance.now() - t;
        n += end - start;
        if (p === 0) {
          findings += out.length;
          signals += sig.length;
          processed += end - start;
        }
        out.length = 0;
        sig.length = 0;
      }
    }
    best = Math.max(best, n / (ms / 1000));
  }
  stateOf.length = 0;
  return { eventsPerSec: best, findings, signals, processed };
}

async function memoryPerKey(det: DetectorInstance, gc: GcFn | undefined): Promise<{ bytesPerKey: number; keys: number }> {
  const gens = { market: new MarketGen(mulberry32(11)), pay: new PaymentGen(mulberry32(12)), rng: mulberry32(13) };
  const level: number[] = [];
  const out: FindingDraft[] = [];
  const sig: RiskSignal[] = [];
  const keyIndex = new Map<string, number>();
  const states: unknown[] = [];
  const before = await settledHeap(gc);
  for (let i = 0; i < MEM_KEYS; i++) {
    for (const ev of keyEvents(det, i, gens, level)) {
      const k = stateKey(det, ev);
      if (k === undefined) continue;
      let idx = keyIndex.get(k);
      if (idx === undefined) {
        idx = states.length;
        keyIndex.set(k, idx);
        states.push(det.newState(k));
      }
      det.onEvent(states[idx], ev, out, sig);
      out.length = 0;
      sig.length = 0;
    }
  }
  // The index is bench scaffolding, not detector state: drop it before measuring.
  const keys = states.length;
  keyIndex.clear();
  level.length = 0;
  const after = await settledHeap(gc);
  if (states.length < 0) console.log(states); // keep `states` alive until after the measurement
  return { bytesPerKey: keys > 0 ? Math.max(0, (after - before) / keys) : 0, keys };
}

export async function benchDetectors(): Promise<{ rows: DetectorBenchRow[]; gcMethod: string }> {
  const { gc, method } = findGc();
  const rows: DetectorBenchRow[] = [];
  const instances = new Map<DetectorBenchRow, DetectorInstance>();
  // Throughput of every detector first (on the shared streams), then memory with the streams dropped, so the
  // collections before and after each measurement are quick and the heap holds little else.
  // VIGIL_BENCH_DETECTORS=a,b limits the section to those detectors (profiling one at a time).
  const only = process.env.VIGIL_BENCH_DETECTORS?.split(',').filter(Boolean);
  for (const name of Object.keys(detectorSpecs).sort()) {
    if (only && !only.includes(name)) continue;
    const spec = detectorSpecs[name] as (typeof detectorSpecs)[string];
    const row: DetectorBenchRow = {
      detector: name,
      kinds: [...spec.kinds],
      keyedBy: 'message key',
      streamEvents: 0,
      streamKeys: 0,
      eventsPerSec: 0,
      nsPerEvent: 0,
      findingsPerMillionEvents: 0,
      signalsPerMillionEvents: 0,
      bytesPerKey: null,
      memKeys: 0,
      meetsTarget: false,
      benchMs: 0,
      throughputMs: 0,
      memoryMs: 0,
    };
    rows.push(row);
    const started = performance.now();
    try {
      const det = spec.create(spec.params.parse({}), `${name}.bench`);
      instances.set(row, det);
      row.kinds = [...det.kinds];
      row.keyedBy = det.view !== undefined ? `view ${det.view}` : det.keyOf ? 'keyOf' : 'message key';
      const { events, keys } = streamFor(det);
      row.streamEvents = events.length;
      row.streamKeys = new Set(keys).size;
      if (events.length === 0) throw new Error('no events of its kinds');
      const t = timePasses(det, events, keys);
      row.eventsPerSec = Math.round(t.eventsPerSec);
      row.nsPerEvent = Math.round((1e9 / t.eventsPerSec) * 10) / 10;
      row.findingsPerMillionEvents = Math.round((t.findings / Math.max(1, t.processed)) * 1e6 * 10) / 10;
      row.signalsPerMillionEvents = Math.round((t.signals / Math.max(1, t.processed)) * 1e6 * 10) / 10;
      row.meetsTarget = t.eventsPerSec >= TARGET_EVENTS_PER_SEC;
    } catch (e) {
      row.error = e instanceof Error ? e.message : String(e);
      instances.delete(row);
    }
    row.throughputMs = Math.round(performance.now() - started);
  }
  familyCache.clear();
  for (const row of rows) {
    const det = instances.get(row);
    if (!det) continue;
    const started = performance.now();
    try {
      const m = await memoryPerKey(det, gc);
      row.bytesPerKey = Math.round(m.bytesPerKey);
      row.memKeys = m.keys;
    } catch (e) {
      row.error = `memory: ${e instanceof Error ? e.message : String(e)}`;
    }
    row.memoryMs = Math.round(performance.now() - started);
    row.benchMs = row.throughputMs + row.memoryMs;
  }
  return { rows, gcMethod: method };
}

export async function detectorsSection(): Promise<BenchSection> {
  const { rows, gcMethod } = await benchDetectors();
  return {
    id: 'detectors',
    title: `detectors: onEvent throughput on one core (default parameters, realistic events of each detector's kinds) and memory per active key`,
    header: ['detector', 'kinds', 'state key', 'events/s', 'ns/event', 'findings/1M ev', 'bytes/key', `≥ ${fmtInt(TARGET_EVENTS_PER_SEC)}/s`],
    leftColumns: 3,
    rows: rows.map((r) =>
      r.error
        ? [r.detector, r.kinds.join(','), r.keyedBy, 'error', r.error.slice(0, 60), '', '', '']
        : [
            r.detector,
            r.kinds.join(','),
            r.keyedBy,
            fmtInt(r.eventsPerSec),
            r.nsPerEvent.toFixed(1),
            r.findingsPerMillionEvents.toFixed(1),
            r.bytesPerKey === null ? '-' : fmtInt(r.bytesPerKey),
            r.meetsTarget ? 'yes' : 'no',
          ],
    ),
    notes: [
      `events/s: best of ${PASSES} passes of >= ${MIN_PASS_MS} ms; state lookup excluded (resolved per event beforehand), findings and signals collected.`,
      `streams: market ${fmtInt(FAMILY_SIZE.market)} events over 240 venue:symbol keys, payments ${fmtInt(FAMILY_SIZE.payments)} over 20,000 accounts / 2,000 merchants, metrics ${fmtInt(FAMILY_SIZE.metrics)} over 200 series; each detector gets its kinds.`,
      `bytes/key: heap growth after ${fmtInt(MEM_KEYS)} keys' states with ${MEM_EVENTS_PER_KEY} events each, divided by the keys; heap measured with ${gcMethod}.`,
      `target: >= ${fmtInt(TARGET_EVENTS_PER_SEC)} events/s for O(1) detectors.`,
    ],
    json: { gcMethod, passes: PASSES, minPassMs: MIN_PASS_MS, memKeys: MEM_KEYS, memEventsPerKey: MEM_EVENTS_PER_KEY, target: TARGET_EVENTS_PER_SEC, rows },
  };
}
