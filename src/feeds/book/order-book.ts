import { crc32 as zlibCrc32 } from 'node:zlib';

/**
 * A price-level order book for one symbol. Each side keeps its levels sorted in one Float64Array of
 * (price, qty) pairs, worst first and best last, with binary search: most changes land near the top, so
 * an insert or removal moves only the levels above it, and moving plain doubles needs no GC write
 * barriers (an array of level objects in old space pays one per moved element, which made book
 * building the costliest part of a replay). The top N needed for venue checksums is read with
 * priceAt/qtyAt (0 = best). The venue's own text of each price and size, kept for checksums that hash
 * the strings as sent (OKX, Kraken), lives in a map by price, only for venues that give it.
 */

export interface Level {
  price: number;
  qty: number;
  /** The venue's text for price and size, when the venue's checksum needs it. */
  priceText?: string;
  qtyText?: string;
}

interface LevelText {
  priceText: string | undefined;
  qtyText: string | undefined;
}

const INITIAL_LEVELS = 64;
/**
 * Shifts of up to this many doubles are a plain loop: copyWithin is a call into the runtime that costs
 * as much as moving a few dozen doubles by hand.
 */
const LOOP_SHIFT = 32;

class BookSide {
  /** (price, qty) of level k at [2k, 2k+1]; k = 0 is the worst level, k = n-1 the best. */
  private data = new Float64Array(2 * INITIAL_LEVELS);
  private n = 0;
  /** Venue texts by price, once a venue gave any. */
  private texts: Map<number, LevelText> | undefined;
  /** setAll()'s working space, kept between calls. */
  private plan = new Int32Array(64);
  private written = new Float64Array(32);
  /** `levels` as last materialized; dropped on every change. */
  private view: Level[] | undefined;

  constructor(private readonly descending: boolean) {}

  /** Levels on this side. */
  get length(): number {
    return this.n;
  }

  /** Price of the i-th level from the top (0 = best), for 0 <= i < length. */
  priceAt(i: number): number {
    return this.data[2 * (this.n - 1 - i)]!;
  }

  qtyAt(i: number): number {
    return this.data[2 * (this.n - 1 - i) + 1]!;
  }

  /** The venue's text of the i-th level's price / size from the top, when it gave one. */
  priceTextAt(i: number): string | undefined {
    return this.texts?.get(this.priceAt(i))?.priceText;
  }

  qtyTextAt(i: number): string | undefined {
    return this.texts?.get(this.priceAt(i))?.qtyText;
  }

  /** The i-th level from the top (0 = best), as a fresh object. */
  levelAt(i: number): Level {
    const price = this.priceAt(i);
    const t = this.texts?.get(price);
    return { price, qty: this.qtyAt(i), priceText: t?.priceText, qtyText: t?.qtyText };
  }

  /** Every level, best first (a copy, built once per change of the side: not for hot paths). */
  get levels(): readonly Level[] {
    if (this.view === undefined) {
      const out = new Array<Level>(this.n);
      for (let i = 0; i < this.n; i++) out[i] = this.levelAt(i);
      this.view = out;
    }
    return this.view;
  }

  /** Storage index of the level with this price, or where it would be inserted (storage is worst first). */
  private search(price: number, from = 0): number {
    const d = this.data;
    let lo = from;
    let hi = this.n;
    // Worst first: bids ascending, asks descending. One loop per order: no test of the side per step.
    if (this.descending) {
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (d[2 * mid]! < price) lo = mid + 1;
        else hi = mid;
      }
    } else {
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (d[2 * mid]! > price) lo = mid + 1;
        else hi = mid;
      }
    }
    return lo;
  }

  /** Sets a level; qty 0 removes it. Returns false when removing a level that was not there. */
  set(price: number, qty: number, priceText?: string, qtyText?: string): boolean {
    const k = this.search(price);
    const d = this.data;
    const n = this.n;
    const hit = k < n && d[2 * k] === price;
    if (qty === 0) {
      if (!hit) return false;
      const end = 2 * n;
      if (end - 2 * k - 2 <= LOOP_SHIFT) for (let i = 2 * k; i < end - 2; i++) d[i] = d[i + 2]!;
      else d.copyWithin(2 * k, 2 * k + 2, end);
      this.n = n - 1;
      this.texts?.delete(price);
      this.view = undefined;
      return true;
    }
    this.view = undefined;
    if (hit) {
      d[2 * k + 1] = qty;
    } else {
      if (2 * n === d.length) {
        const grown = new Float64Array(2 * d.length);
        grown.set(d);
        this.data = grown;
      }
      const g = this.data;
      if (2 * n - 2 * k <= LOOP_SHIFT) for (let i = 2 * n - 1; i >= 2 * k; i--) g[i + 2] = g[i]!;
      else g.copyWithin(2 * k + 2, 2 * k, 2 * n);
      g[2 * k] = price;
      g[2 * k + 1] = qty;
      this.n = n + 1;
    }
    if (priceText !== undefined || qtyText !== undefined || this.texts !== undefined) this.setText(price, hit, priceText, qtyText);
    return true;
  }

  /**
   * Sets each [price, qty] in turn, exactly as set(price, qty) one after the other. A venue sends a diff
   * side sorted best first, its levels spread over the book (a Binance diff's ~18 per side reach ~1,000
   * levels deep): set() one by one shifts every level above each insert or removal, which made book
   * updates the costliest part of a Binance replay. Sorted, the diff is applied in place in one go: first
   * where each of its levels goes, then each stretch of untouched levels between two of them moves once
   * by the net count of inserts minus removals below it (mostly small, often 0: no move at all), then the
   * diff's levels are written. Unsorted input (or a side with venue texts) takes set() one by one.
   */
  setAll(levels: ReadonlyArray<readonly [number, number]>): void {
    const m = levels.length;
    if (m < 2 || this.texts !== undefined) {
      this.setEach(levels);
      return;
    }
    if (this.plan.length < 4 * m) this.plan = new Int32Array(4 * m);
    if (this.written.length < 2 * m) this.written = new Float64Array(2 * m);
    const plan = this.plan; // per diff level t (storage order): run start, run end, run shift, final slot (-1: none)
    const written = this.written; // per diff level t: price and size written at its final slot
    const n = this.n;
    const descending = this.descending;
    let d = this.data;
    let shift = 0;
    let lo = 0;
    let changed = false;
    let prev = NaN;
    // Pass 1, storage order (worst first = the diff from its end): where each level goes. It changes
    // nothing but the working space, so it can still give up for set() one by one.
    for (let j = m - 1, t = 0; j >= 0; j--, t++) {
      const l = levels[j]!;
      const price = l[0];
      const qty = l[1];
      // Prices strictly worst to best here (no repeats, no NaN), or one by one: only then is applying
      // them in one go the same as one after the other.
      if (t > 0 && !(descending ? price > prev : price < prev)) {
        this.setEach(levels);
        return;
      }
      prev = price;
      const k = this.search(price, lo);
      const hit = k < n && d[2 * k] === price;
      let slot = -1;
      if (qty !== 0) {
        slot = k + shift;
        // An update keeps the stored price (as set() does) and takes the size.
        written[2 * t] = hit ? d[2 * k]! : price;
        written[2 * t + 1] = qty;
        if (!hit) shift++;
        changed = true;
      } else if (hit) {
        shift--;
        changed = true;
      }
      lo = hit ? k + 1 : k;
      // The untouched run above this level, up to the next one's position (filled in below).
      plan[4 * t] = lo;
      plan[4 * t + 2] = shift;
      plan[4 * t + 3] = slot;
      if (t > 0) plan[4 * (t - 1) + 1] = k;
    }
    plan[4 * (m - 1) + 1] = n;
    const total = n + shift;
    if (2 * total > d.length) {
      const grown = new Float64Array(2 ** Math.ceil(Math.log2(2 * total)));
      grown.set(d);
      this.data = d = grown;
    }
    // Pass 2: runs shifted up move top first, runs shifted down bottom first, so that no run lands on
    // one not moved yet (shifts of neighbouring runs differ by at most 1, a slot taken or freed).
    for (let t = m - 1; t >= 0; t--) {
      const sh = plan[4 * t + 2]!;
      if (sh > 0) this.move(d, plan[4 * t]!, plan[4 * t + 1]!, sh);
    }
    for (let t = 0; t < m; t++) {
      const sh = plan[4 * t + 2]!;
      if (sh < 0) this.move(d, plan[4 * t]!, plan[4 * t + 1]!, sh);
    }
    // Pass 3: the diff's levels.
    for (let t = 0; t < m; t++) {
      const slot = plan[4 * t + 3]!;
      if (slot < 0) continue;
      d[2 * slot] = written[2 * t]!;
      d[2 * slot + 1] = written[2 * t + 1]!;
    }
    this.n = total;
    if (changed) this.view = undefined;
  }

  /** Levels [from, to) moved by `shift` slots. */
  private move(d: Float64Array, from: number, to: number, shift: number): void {
    const len = 2 * (to - from);
    if (len <= 0) return;
    const a = 2 * from;
    const s = 2 * shift;
    if (len > LOOP_SHIFT) d.copyWithin(a + s, a, a + len);
    else if (s > 0) for (let i = a + len - 1; i >= a; i--) d[i + s] = d[i]!;
    else for (let i = a; i < a + len; i++) d[i + s] = d[i]!;
  }

  /** set() for each level in turn. */
  private setEach(levels: ReadonlyArray<readonly [number, number]>): void {
    for (let j = 0; j < levels.length; j++) {
      const l = levels[j]!;
      this.set(l[0], l[1]);
    }
  }

  /** As a level object did: a new level takes both texts as given; an update takes the new size text, and the new price text if any. */
  private setText(price: number, hit: boolean, priceText: string | undefined, qtyText: string | undefined): void {
    const texts = (this.texts ??= new Map());
    const t = hit ? texts.get(price) : undefined;
    if (t === undefined) {
      if (priceText !== undefined || qtyText !== undefined) texts.set(price, { priceText, qtyText });
      else texts.delete(price);
    } else {
      t.qtyText = qtyText;
      if (priceText !== undefined) t.priceText = priceText;
    }
  }

  get best(): Level | undefined {
    return this.n > 0 ? this.levelAt(0) : undefined;
  }

  /** Best price, NaN when the side is empty. */
  get bestPrice(): number {
    return this.n > 0 ? this.data[2 * this.n - 2]! : NaN;
  }

  /** Size at the best price, NaN when the side is empty. */
  get bestQty(): number {
    return this.n > 0 ? this.data[2 * this.n - 1]! : NaN;
  }

  /** Drops levels beyond `depth` (venues that only maintain the top N, e.g. Kraken's subscribed depth). */
  truncate(depth: number): void {
    const drop = this.n - depth;
    if (drop <= 0) return;
    const d = this.data;
    if (this.texts !== undefined) for (let k = 0; k < drop; k++) this.texts.delete(d[2 * k]!);
    d.copyWithin(0, 2 * drop, 2 * this.n);
    this.n = depth;
    this.view = undefined;
  }

  clear(): void {
    this.n = 0;
    this.texts?.clear();
    this.view = undefined;
  }
}

export class OrderBook {
  readonly bids = new BookSide(true);
  readonly asks = new BookSide(false);
  /** Venue sequence / update id of the last change applied. */
  seq = 0;
  /** True once a snapshot has been applied and every delta since was in sequence. */
  synced = false;

  clear(): void {
    this.bids.clear();
    this.asks.clear();
    this.seq = 0;
    this.synced = false;
  }

  get bestBid(): Level | undefined {
    return this.bids.best;
  }

  get bestAsk(): Level | undefined {
    return this.asks.best;
  }

  /** True when the best bid is at or above the best ask. */
  get crossed(): boolean {
    return this.bids.length > 0 && this.asks.length > 0 && this.bids.bestPrice >= this.asks.bestPrice;
  }

  top(n: number): { bids: Level[]; asks: Level[] } {
    const side = (s: BookSide) => Array.from({ length: Math.min(n, s.length) }, (_, i) => s.levelAt(i));
    return { bids: side(this.bids), asks: side(this.asks) };
  }
}

/** CRC-32 (IEEE) of the text's UTF-8 bytes, as Kraken and OKX use for book checksums; unsigned. */
export function crc32(text: string): number {
  return zlibCrc32(text) >>> 0;
}
