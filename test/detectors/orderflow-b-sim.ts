/**
 * A small order-flow simulator for the orderflow-b detector tests (wash_trade, marking_the_close,
 * front_running): one instrument, event-time processes merged in time order.
 *
 * - external market makers (no capacity) refresh a bid and an ask around the mid at random intervals
 *   (cancel the old quotes, post new ones);
 * - clients (capacity agency) arrive as takers at random intervals with lognormal sizes and random sides,
 *   and trade against a market maker at its quote (sometimes against another client: a cross);
 *   occasionally a client sends a large order (several fills against both market makers);
 * - house accounts (capacity principal) trade at random times, uncorrelated with clients, and house
 *   market makers post quotes at random times;
 * - the mid follows a random walk plus the impact of each trade in its direction.
 *
 * Every trade is recorded once in `trades` (the oracle's view), and reported as fill events: by both sides
 * (drop copy of both accounts), or by the taker only with probability oneSidedProb.
 */
import type { Order } from '../../src/core/events.ts';
import { mulberry32 } from '../helpers/random.ts';

export const VENUE = 'xlon';
export const SYMBOL = 'BTC-USDT';

export interface SimTrade {
  ts: number;
  buyer: string;
  seller: string;
  qty: number;
  price: number;
  buyOrderId: string;
  sellOrderId: string;
  /** eventRefs of its fill reports. */
  refs: string[];
}

export interface FlowConfig {
  seed: number;
  /** [start, end) intervals of event time with trading. */
  sessions: Array<[number, number]>;
  startPrice?: number;
  mms?: string[];
  mmEveryMs?: number;
  clients?: string[];
  takerEveryMs?: number;
  clientMedianQty?: number;
  /** Mean time between large client orders; 0: none. */
  largeEveryMs?: number;
  /** Large orders are this many times clientMedianQty (uniform in the range). */
  largeMultiple?: [number, number];
  houses?: Array<{ account: string; everyMs: number; medianQty: number }>;
  houseMMs?: Array<{ account: string; everyMs: number }>;
  crossProb?: number;
  /** Pairs of clients that never cross with each other in the noise. */
  noCrossPairs?: Array<[string, string]>;
  /** linkedAccounts stated on the order events of an account. */
  links?: Record<string, string[]>;
  oneSidedProb?: number;
  /** Random-walk volatility per trade and impact per unit of quantity, bps. */
  volBps?: number;
  impactBpsPerQty?: number;
  halfSpreadBps?: number;
}

export interface Injection {
  ts: number;
  run: (f: Flow, ts: number) => void;
}

interface Quote {
  bidId: string | null;
  bidPx: number;
  askId: string | null;
  askPx: number;
}

const cents = (p: number): number => Math.round(p * 100) / 100;
const lots = (q: number): number => Math.max(0.001, Math.round(q * 1000) / 1000);

export class Flow {
  readonly events: Order[] = [];
  readonly trades: SimTrade[] = [];
  readonly rng: () => number;
  mid: number;
  private seq = 0;
  private ids = 0;
  private readonly cfg: Required<FlowConfig>;
  private readonly quotes = new Map<string, Quote>();
  /** Order events sorted by (ts, emission). */
  private order: Array<{ ts: number; seq: number }> = [];

  constructor(cfg: FlowConfig) {
    this.cfg = {
      startPrice: 60_000,
      mms: ['MM-1', 'MM-2'],
      mmEveryMs: 8_000,
      clients: ['CL-1', 'CL-2', 'CL-3', 'CL-4', 'CL-5', 'CL-6', 'CL-7', 'CL-8'],
      takerEveryMs: 15_000,
      clientMedianQty: 0.5,
      largeEveryMs: 0,
      largeMultiple: [10, 20],
      houses: [],
      houseMMs: [],
      crossProb: 0.1,
      noCrossPairs: [],
      links: {},
      oneSidedProb: 0.2,
      volBps: 1.5,
      impactBpsPerQty: 0.4,
      halfSpreadBps: 0.5,
      ...cfg,
    };
    this.rng = mulberry32(cfg.seed);
    this.mid = this.cfg.startPrice;
  }

  normal(): number {
    const u = Math.max(1e-12, this.rng());
    const v = this.rng();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  exp(mean: number): number {
    return -Math.log(Math.max(1e-12, 1 - this.rng())) * mean;
  }
  lognormal(median: number, sigma = 0.6): number {
    return lots(median * Math.exp(sigma * this.normal()));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rng() * xs.length)] as T;
  }
  nextId(prefix: string): string {
    this.ids += 1;
    return `${prefix}-${this.ids}`;
  }

  private emit(o: Omit<Order, 'kind' | 'venue' | 'symbol' | 'recvTs'>): Order {
    const ev: Order = { kind: 'order', venue: VENUE, symbol: SYMBOL, recvTs: o.ts + 2, ...o } as Order;
    const linked = this.cfg.links[o.account];
    if (linked && o.action === 'new') ev.linkedAccounts = [...linked];
    this.events.push(ev);
    this.order.push({ ts: o.ts, seq: this.seq++ });
    return ev;
  }

  newOrder(ts: number, account: string, side: 'buy' | 'sell', qty: number, price: number, capacity?: 'principal' | 'agency', orderId = this.nextId('o')): string {
    this.emit({ ts, orderId, account, side, price, qty, action: 'new', ...(capacity ? { capacity } : {}) });
    return orderId;
  }

  cancel(ts: number, account: string, orderId: string, side: 'buy' | 'sell', price: number, capacity?: 'principal' | 'agency'): void {
    this.emit({ ts, orderId, account, side, price, qty: 0, action: 'cancel', ...(capacity ? { capacity } : {}) });
  }

  /**
   * One trade between a taker's order and a maker's order, reported by both sides (or by the taker only).
   * Moves the mid by the trade's impact.
   */
  fill(
    ts: number,
    taker: { account: string; orderId: string; side: 'buy' | 'sell'; qty: number; price: number; capacity?: 'principal' | 'agency' },
    maker: { account: string; orderId: string; price: number; qty: number; capacity?: 'principal' | 'agency' },
    qty: number,
    price: number,
    options: { bothSides?: boolean; impact?: boolean } = {},
  ): SimTrade {
    const bothSides = options.bothSides ?? this.rng() >= this.cfg.oneSidedProb;
    const makerSide = taker.side === 'buy' ? 'sell' : 'buy';
    const refs: string[] = [];
    const t = this.emit({
      ts,
      orderId: taker.orderId,
      account: taker.account,
      side: taker.side,
      price: taker.price,
      qty: taker.qty,
      action: 'fill',
      fillQty: qty,
      fillPrice: price,
      counterpartyAccount: maker.account,
      ...(taker.capacity ? { capacity: taker.capacity } : {}),
    });
    refs.push(`order:${VENUE}:${t.orderId}:fill:${ts}`);
    if (bothSides) {
      this.emit({
        ts,
        orderId: maker.orderId,
        account: maker.account,
        side: makerSide,
        price: maker.price,
        qty: maker.qty,
        action: 'fill',
        fillQty: qty,
        fillPrice: price,
        counterpartyAccount: taker.account,
        ...(maker.capacity ? { capacity: maker.capacity } : {}),
      });
      refs.push(`order:${VENUE}:${maker.orderId}:fill:${ts}`);
    }
    const tr: SimTrade = {
      ts,
      buyer: taker.side === 'buy' ? taker.account : maker.account,
      seller: taker.side === 'buy' ? maker.account : taker.account,
      qty,
      price,
      buyOrderId: taker.side === 'buy' ? taker.orderId : maker.orderId,
      sellOrderId: taker.side === 'buy' ? maker.orderId : taker.orderId,
      refs,
    };
    this.trades.push(tr);
    if (options.impact ?? true) {
      const dir = taker.side === 'buy' ? 1 : -1;
      this.mid *= Math.exp((dir * this.cfg.impactBpsPerQty * qty + this.cfg.volBps * this.normal()) / 1e4);
    }
    return tr;
  }

  private quoteOf(mm: string): Quote {
    let q = this.quotes.get(mm);
    if (!q) this.quotes.set(mm, (q = { bidId: null, bidPx: 0, askId: null, askPx: 0 }));
    return q;
  }

  /** A market maker's (or house quoter's) quote refresh: cancel both sides, post new ones around the mid. */
  requote(ts: number, mm: string, capacity?: 'principal' | 'agency'): void {
    const q = this.quoteOf(mm);
    if (q.bidId) this.cancel(ts, mm, q.bidId, 'buy', q.bidPx, capacity);
    if (q.askId) this.cancel(ts, mm, q.askId, 'sell', q.askPx, capacity);
    const hs = this.cfg.halfSpreadBps / 1e4;
    q.bidPx = cents(this.mid * (1 - hs));
    q.askPx = cents(this.mid * (1 + hs));
    const size = lots(2 + 3 * this.rng());
    q.bidId = this.newOrder(ts, mm, 'buy', size, q.bidPx, capacity);
    q.askId = this.newOrder(ts, mm, 'sell', size, q.askPx, capacity);
  }

  /**
   * A taker's market-like order: `new`, then fills against the market makers (split across them for
   * large orders, 1 ms apart, a tick further each). Returns the taker's order id and its trades.
   */
  take(ts: number, account: string, side: 'buy' | 'sell', qty: number, capacity?: 'principal' | 'agency', options: { pieces?: number; orderId?: string } = {}): { orderId: string; trades: SimTrade[]; end: number } {
    const dir = side === 'buy' ? 1 : -1;
    const limit = cents(this.mid * (1 + (dir * 50) / 1e4));
    const orderId = this.newOrder(ts, account, side, qty, limit, capacity, options.orderId);
    const pieces = options.pieces ?? 1;
    const trades: SimTrade[] = [];
    let left = qty;
    let t = ts;
    for (let i = 0; i < pieces; i++) {
      const q = i === pieces - 1 ? lots(left) : lots(qty / pieces);
      left -= q;
      const mm = this.cfg.mms[i % this.cfg.mms.length] as string;
      const quote = this.quoteOf(mm);
      if (!quote.askId) this.requote(t, mm);
      const hs = this.cfg.halfSpreadBps / 1e4;
      const px = cents(this.mid * (1 + dir * hs));
      const makerId = (side === 'buy' ? quote.askId : quote.bidId) as string;
      trades.push(this.fill(t, { account, orderId, side, qty, price: limit, capacity }, { account: mm, orderId: makerId, price: side === 'buy' ? quote.askPx : quote.bidPx, qty: 5 }, q, px));
      t += 1;
    }
    return { orderId, trades, end: t };
  }

  /** A client crossing with another client's resting order (both agency). */
  cross(ts: number, taker: string, maker: string, side: 'buy' | 'sell', qty: number): SimTrade {
    const makerSide = side === 'buy' ? 'sell' : 'buy';
    const px = cents(this.mid);
    const makerId = this.newOrder(ts, maker, makerSide, qty, px, 'agency');
    const takerId = this.newOrder(ts + 1, taker, side, qty, px, 'agency');
    return this.fill(ts + 1, { account: taker, orderId: takerId, side, qty, price: px, capacity: 'agency' }, { account: maker, orderId: makerId, price: px, qty, capacity: 'agency' }, qty, px);
  }

  /** Runs the processes over every session, with the injections at their times, and sorts the events. */
  run(injections: Injection[] = []): Order[] {
    const c = this.cfg;
    const inj = [...injections].sort((a, b) => a.ts - b.ts);
    let ii = 0;
    for (const [start, end] of c.sessions) {
      type Proc = { next: number; fire: (t: number) => void; every: number };
      const procs: Proc[] = [];
      for (const mm of c.mms) procs.push({ next: start + this.exp(1000), every: c.mmEveryMs, fire: (t) => this.requote(t, mm) });
      procs.push({
        next: start + this.exp(c.takerEveryMs),
        every: c.takerEveryMs,
        fire: (t) => {
          const account = this.pick(c.clients);
          const side = this.rng() < 0.5 ? 'buy' : 'sell';
          const qty = this.lognormal(c.clientMedianQty);
          if (this.rng() < c.crossProb) {
            let other = this.pick(c.clients);
            const barred = (x: string): boolean =>
              x === account ||
              (c.links[account] ?? []).includes(x) ||
              (c.links[x] ?? []).includes(account) ||
              c.noCrossPairs.some(([a, b]) => (a === account && b === x) || (a === x && b === account));
            while (barred(other)) other = this.pick(c.clients);
            this.cross(t, account, other, side, qty);
          } else {
            this.take(t, account, side, qty, 'agency');
          }
        },
      });
      if (c.largeEveryMs > 0) {
        procs.push({
          next: start + this.exp(c.largeEveryMs),
          every: c.largeEveryMs,
          fire: (t) => {
            const [lo, hi] = c.largeMultiple;
            const qty = lots(c.clientMedianQty * (lo + (hi - lo) * this.rng()));
            this.take(t, this.pick(c.clients), this.rng() < 0.5 ? 'buy' : 'sell', qty, 'agency', { pieces: 3 });
          },
        });
      }
      for (const h of c.houses) {
        procs.push({
          next: start + this.exp(h.everyMs),
          every: h.everyMs,
          fire: (t) => {
            this.take(t, h.account, this.rng() < 0.5 ? 'buy' : 'sell', this.lognormal(h.medianQty), 'principal');
          },
        });
      }
      for (const h of c.houseMMs) procs.push({ next: start + this.exp(h.everyMs), every: h.everyMs, fire: (t) => this.requote(t, h.account, 'principal') });

      for (;;) {
        let p = procs[0] as Proc;
        for (const q of procs) if (q.next < p.next) p = q;
        const nextInj = inj[ii];
        if (nextInj && nextInj.ts <= p.next && nextInj.ts < end) {
          ii += 1;
          nextInj.run(this, nextInj.ts);
          continue;
        }
        if (p.next >= end) break;
        const t = Math.floor(p.next);
        p.fire(t);
        // Processes never fire twice in one ms (ids and eventRefs stay unique); a large order takes 3 ms.
        p.next = Math.max(p.next + this.exp(p.every), t + 5);
      }
    }
    while (ii < inj.length) {
      const x = inj[ii++] as Injection;
      x.run(this, x.ts);
    }
    return this.sorted();
  }

  /** Events by time, ties in emission order. */
  sorted(): Order[] {
    const idx = this.events.map((_, i) => i);
    idx.sort((a, b) => (this.order[a] as { ts: number }).ts - (this.order[b] as { ts: number }).ts || a - b);
    return idx.map((i) => this.events[i] as Order);
  }
}
