/**
 * A small simulated order-driven market for the order-flow detector tests: a price-time-priority matching
 * engine that emits canonical `order` events the way a drop copy reports them (new, replace, cancel, and one
 * fill per side of every match, maker first), plus honest agents — market makers quoting both sides with
 * frequent replaces/cancels, a ladder market maker, takers on both sides, a one-sided institution with large
 * (honest) orders and sweeps — and a scheduler for scripted manipulation. Prices are integer ticks
 * (1 tick = 0.01 at ~100.00, i.e. 1 bp); quantities are integers, so sums are exact. Everything is seeded
 * (mulberry32) and runs in event time.
 */
import type { Order } from '../../src/core/events.ts';
import { mulberry32 } from './random.ts';

export type Side = 'buy' | 'sell';

export interface Resting {
  id: string;
  account: string;
  side: Side;
  /** Price in ticks. */
  tk: number;
  qty: number;
  rem: number;
  seq: number;
}

export const VENUE = 'xvgl';
export const SYMBOL = 'ACME-USD';
export const pxOf = (ticks: number): number => Math.round(ticks) / 100;

export class MatchingEngine {
  readonly events: Order[] = [];
  /** Best first: bids by price desc, asks by price asc; then by arrival. */
  readonly bids: Resting[] = [];
  readonly asks: Resting[] = [];
  private seq = 0;
  private nextId = 1;

  private emit(ts: number, f: Omit<Order, 'kind' | 'venue' | 'symbol' | 'ts'>): Order {
    const ev = { kind: 'order', venue: VENUE, symbol: SYMBOL, ts, ...f } as Order;
    this.events.push(ev);
    return ev;
  }

  private insert(o: Resting): void {
    const book = o.side === 'buy' ? this.bids : this.asks;
    let i = 0;
    while (i < book.length) {
      const b = book[i] as Resting;
      const better = o.side === 'buy' ? b.tk > o.tk : b.tk < o.tk;
      if (better || b.tk === o.tk) i++;
      else break;
    }
    book.splice(i, 0, o);
  }

  find(id: string): Resting | undefined {
    return this.bids.find((o) => o.id === id) ?? this.asks.find((o) => o.id === id);
  }

  /** Best price in ticks of a side, optionally ignoring one account's orders. */
  best(side: Side, exclude?: string): number | null {
    const book = side === 'buy' ? this.bids : this.asks;
    for (const o of book) if (o.account !== exclude) return o.tk;
    return null;
  }

  /** Distinct price levels (ticks) of a side, best first, with their total quantity, ignoring one account. */
  levels(side: Side, exclude?: string): { tk: number; qty: number }[] {
    const out: { tk: number; qty: number }[] = [];
    for (const o of side === 'buy' ? this.bids : this.asks) {
      if (o.account === exclude) continue;
      const last = out[out.length - 1];
      if (last && last.tk === o.tk) last.qty += o.rem;
      else out.push({ tk: o.tk, qty: o.rem });
    }
    return out;
  }

  /** A limit order (IOC: the unfilled rest is cancelled at once). Own resting orders are skipped (no self-match). */
  submit(ts: number, account: string, side: Side, tk: number, qty: number, opts: { ioc?: boolean; id?: string } = {}): string {
    const id = opts.id ?? `${account}-${this.nextId++}`;
    this.emit(ts, { orderId: id, account, side, price: pxOf(tk), qty, action: 'new' });
    let rem = qty;
    const book = side === 'buy' ? this.asks : this.bids;
    let i = 0;
    while (rem > 0 && i < book.length) {
      const m = book[i] as Resting;
      if (side === 'buy' ? m.tk > tk : m.tk < tk) break;
      if (m.account === account) {
        i++;
        continue;
      }
      const fq = Math.min(rem, m.rem);
      this.emit(ts, { orderId: m.id, account: m.account, side: m.side, price: pxOf(m.tk), qty: m.qty, action: 'fill', fillQty: fq, fillPrice: pxOf(m.tk), counterpartyAccount: account });
      this.emit(ts, { orderId: id, account, side, price: pxOf(tk), qty, action: 'fill', fillQty: fq, fillPrice: pxOf(m.tk), counterpartyAccount: m.account });
      m.rem -= fq;
      rem -= fq;
      if (m.rem <= 0) book.splice(i, 1);
      else i++;
    }
    if (rem > 0) {
      if (opts.ioc) this.emit(ts, { orderId: id, account, side, price: pxOf(tk), qty: rem, action: 'cancel' });
      else this.insert({ id, account, side, tk, qty, rem, seq: this.seq++ });
    }
    return id;
  }

  cancel(ts: number, id: string): boolean {
    const o = this.find(id);
    if (!o) return false;
    const book = o.side === 'buy' ? this.bids : this.asks;
    book.splice(book.indexOf(o), 1);
    this.emit(ts, { orderId: id, account: o.account, side: o.side, price: pxOf(o.tk), qty: o.rem, action: 'cancel' });
    return true;
  }

  /** Moves a resting order (losing priority); `newId` makes the venue assign a new id (origOrderId). Never crosses: callers clamp. */
  replace(ts: number, id: string, tk: number, qty: number, newId?: string): string | undefined {
    const o = this.find(id);
    if (!o) return undefined;
    const book = o.side === 'buy' ? this.bids : this.asks;
    book.splice(book.indexOf(o), 1);
    const nid = newId ?? id;
    this.emit(ts, { orderId: nid, account: o.account, side: o.side, price: pxOf(tk), qty, action: 'replace', ...(newId ? { origOrderId: id } : {}) });
    this.insert({ id: nid, account: o.account, side: o.side, tk, qty, rem: qty, seq: this.seq++ });
    return nid;
  }
}

// ---------------------------------------------------------------- the simulation

export interface Agent {
  next: number;
  act(sim: Sim, t: number): void;
}

export class Sim {
  readonly m = new MatchingEngine();
  readonly rng: () => number;
  /** Fair value in ticks (a random walk; scripts may shift it: "followers"). */
  fair = 10_000;
  private readonly agents: Agent[] = [];
  private scripts: { ts: number; seq: number; fn: (sim: Sim, t: number) => void }[] = [];
  private scriptSeq = 0;
  private idSeq = 0;

  constructor(
    seed: number,
    readonly t0: number,
  ) {
    this.rng = mulberry32(seed);
  }

  uniformInt(a: number, b: number): number {
    return a + Math.floor(this.rng() * (b - a + 1));
  }
  expo(mean: number): number {
    return Math.max(1, Math.round(-Math.log(1 - this.rng()) * mean));
  }
  /** A venue-assigned id for a replace (its own namespace: never an id the engine gives a new order). */
  id(prefix: string): string {
    return `${prefix}-r${++this.idSeq}`;
  }

  add(agent: Agent): this {
    this.agents.push(agent);
    return this;
  }

  /** Runs `fn` at event time `ts` (before agents acting at the same time). */
  at(ts: number, fn: (sim: Sim, t: number) => void): this {
    this.scripts.push({ ts, seq: this.scriptSeq++, fn });
    this.scripts.sort((a, b) => a.ts - b.ts || a.seq - b.seq);
    return this;
  }

  run(durationMs: number): Order[] {
    const end = this.t0 + durationMs;
    for (;;) {
      let ai = -1;
      for (let i = 0; i < this.agents.length; i++) if (ai < 0 || (this.agents[i] as Agent).next < (this.agents[ai] as Agent).next) ai = i;
      const s = this.scripts[0];
      const ta = ai >= 0 ? (this.agents[ai] as Agent).next : Number.POSITIVE_INFINITY;
      if (s && s.ts <= ta) {
        if (s.ts >= end) break;
        this.scripts.shift();
        s.fn(this, s.ts);
        continue;
      }
      if (ta >= end) break;
      const a = this.agents[ai] as Agent;
      a.act(this, ta);
    }
    return this.m.events;
  }
}

/** The fair value's random walk: ±1 tick with probability `p` each side every `stepMs`. */
export function fairWalk(sim: Sim, stepMs = 250, p = 0.12): Agent {
  return {
    next: sim.t0 + stepMs,
    act(s, t) {
      const u = s.rng();
      if (u < p) s.fair -= 1;
      else if (u < 2 * p) s.fair += 1;
      this.next = t + stepMs;
    },
  };
}

/**
 * A market maker quoting `levels` price levels per side around the fair value (best level `halfSpread`
 * ticks away), sizes uniform in [minQty, maxQty], requoting every ~requoteMs (exponential). Modes:
 * 'replace' moves orders with replace (alternating same id / venue-assigned id), 'cancel' cancels and
 * re-enters the orders that moved, 'cancelAll' cancels the whole ladder (bids, then asks) and re-enters it.
 */
export function marketMaker(
  sim: Sim,
  account: string,
  o: { levels?: number; halfSpread?: number; minQty?: number; maxQty?: number; requoteMs?: number; mode?: 'replace' | 'cancel' | 'cancelAll' } = {},
): Agent {
  const levels = o.levels ?? 1;
  const hs = o.halfSpread ?? 1;
  const [minQ, maxQ] = [o.minQty ?? 1, o.maxQty ?? 5];
  const mode = o.mode ?? 'replace';
  const requote = o.requoteMs ?? 400;
  const ids: Record<Side, (string | null)[]> = { buy: Array(levels).fill(null), sell: Array(levels).fill(null) };
  let flip = false;
  return {
    next: sim.t0 + sim.uniformInt(1, requote),
    act(s, t) {
      const m = s.m;
      if (mode === 'cancelAll') {
        for (const side of ['buy', 'sell'] as const) {
          for (let i = 0; i < levels; i++) {
            const id = ids[side][i];
            if (id) m.cancel(t, id);
            ids[side][i] = null;
          }
        }
      }
      for (const side of ['buy', 'sell'] as const) {
        // Never cross the other side, its own orders included (a large quote of its own may sit there).
        const other = m.best(side === 'buy' ? 'sell' : 'buy');
        for (let i = 0; i < levels; i++) {
          let tk = side === 'buy' ? s.fair - hs - i : s.fair + hs + i;
          if (other !== null) tk = side === 'buy' ? Math.min(tk, other - 1 - i) : Math.max(tk, other + 1 + i);
          const id = ids[side][i] ?? null;
          const live = id !== null ? m.find(id) : undefined;
          const qty = s.uniformInt(minQ, maxQ);
          if (!live) {
            ids[side][i] = m.submit(t, account, side, tk, qty);
            continue;
          }
          if (live.tk === tk && s.rng() < 0.7) continue;
          if (mode === 'replace') {
            flip = !flip;
            ids[side][i] = m.replace(t, live.id, tk, qty, flip ? s.id(account) : undefined) ?? null;
          } else {
            m.cancel(t, live.id);
            ids[side][i] = m.submit(t, account, side, tk, qty);
          }
        }
      }
      this.next = t + s.expo(requote);
    },
  };
}

/** A taker: every ~intervalMs an IOC order of uniform size on a random (or fixed) side, limit `walk` ticks through the touch. */
export function taker(
  sim: Sim,
  account: string,
  o: { intervalMs?: number; minQty?: number; maxQty?: number; side?: Side; walk?: number; quiet?: [number, number] } = {},
): Agent {
  const interval = o.intervalMs ?? 4_000;
  return {
    next: sim.t0 + sim.expo(interval),
    act(s, t) {
      if (o.quiet && t >= o.quiet[0] && t < o.quiet[1]) {
        this.next = o.quiet[1] + s.expo(interval);
        return;
      }
      const side: Side = o.side ?? (s.rng() < 0.5 ? 'buy' : 'sell');
      const qty = s.uniformInt(o.minQty ?? 1, o.maxQty ?? 3);
      const opp = s.m.best(side === 'buy' ? 'sell' : 'buy', account);
      if (opp !== null) s.m.submit(t, account, side, side === 'buy' ? opp + (o.walk ?? 1) : opp - (o.walk ?? 1), qty, { ioc: true });
      this.next = t + s.expo(interval);
    },
  };
}

/**
 * An honest one-sided institution (buys only): every ~intervalMs either shows a large bid at the touch
 * and cancels it after 1–4 s (changed its mind), or sweeps the asks with a large IOC through `sweepTicks`.
 */
export function institution(sim: Sim, account: string, o: { intervalMs?: number; largeQty?: number; sweepQty?: number; sweepTicks?: number } = {}): Agent {
  const interval = o.intervalMs ?? 25_000;
  return {
    next: sim.t0 + sim.expo(interval),
    act(s, t) {
      const m = s.m;
      if (s.rng() < 0.6) {
        const bid = m.best('buy', account);
        if (bid !== null) {
          const id = m.submit(t, account, 'buy', bid, o.largeQty ?? 50);
          s.at(t + s.uniformInt(1_000, 4_000), (s2, t2) => {
            s2.m.cancel(t2, id);
          });
        }
      } else {
        const ask = m.best('sell', account);
        if (ask !== null) m.submit(t, account, 'buy', ask + (o.sweepTicks ?? 4), o.sweepQty ?? 30, { ioc: true });
      }
      this.next = t + s.expo(interval);
    },
  };
}

/** A market maker's occasional large resting quote that stays 15–30 s (honest size, not cancelled quickly). */
export function largeQuoter(sim: Sim, account: string, o: { intervalMs?: number; qty?: number } = {}): Agent {
  const interval = o.intervalMs ?? 40_000;
  return {
    next: sim.t0 + sim.expo(interval),
    act(s, t) {
      const side: Side = s.rng() < 0.5 ? 'buy' : 'sell';
      const touch = s.m.best(side, account);
      if (touch !== null) {
        const id = s.m.submit(t, account, side, touch, o.qty ?? 40);
        s.at(t + s.uniformInt(15_000, 30_000), (s2, t2) => {
          s2.m.cancel(t2, id);
        });
      }
      this.next = t + s.expo(interval);
    },
  };
}

/** Accounts of the honest market (the manipulators trade like small takers too, in every scenario). */
export const MANIPULATORS = ['SPOOF-1', 'LAYER-1', 'MOMO-1'] as const;

/**
 * The honest market (`quiet`: a manipulator's small taking pauses in that event-time range): 3 single-level market makers (replace / cancel modes), a 3-level ladder market
 * maker that cancels and re-enters its whole ladder, 4 takers on both sides, an institution that only buys
 * (large bids it cancels, sweeps), a large resting quoter, and the manipulator accounts as small takers.
 */
export function honestMarket(seed: number, t0: number, quiet: Partial<Record<(typeof MANIPULATORS)[number], [number, number]>> = {}): Sim {
  const sim = new Sim(seed, t0);
  sim.add(fairWalk(sim));
  sim.add(marketMaker(sim, 'MM-A', { halfSpread: 1, minQty: 2, maxQty: 6, requoteMs: 300, mode: 'replace' }));
  sim.add(marketMaker(sim, 'MM-B', { halfSpread: 1, minQty: 1, maxQty: 5, requoteMs: 500, mode: 'cancel' }));
  sim.add(marketMaker(sim, 'MM-C', { levels: 2, halfSpread: 2, minQty: 2, maxQty: 8, requoteMs: 700, mode: 'replace' }));
  sim.add(marketMaker(sim, 'MM-L', { levels: 3, halfSpread: 2, minQty: 2, maxQty: 6, requoteMs: 1_500, mode: 'cancelAll' }));
  for (const [i, acc] of ['TK-1', 'TK-2', 'TK-3', 'TK-4'].entries()) sim.add(taker(sim, acc, { intervalMs: 3_000 + 500 * i, minQty: 1, maxQty: 4 }));
  sim.add(institution(sim, 'INST-1'));
  sim.add(largeQuoter(sim, 'MM-B'));
  for (const acc of MANIPULATORS) sim.add(taker(sim, acc, { intervalMs: 5_000, minQty: 1, maxQty: 2, ...(quiet[acc] ? { quiet: quiet[acc] } : {}) }));
  return sim;
}
