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

class BookSide {
  /** (price, qty) of level k at [2k, 2k+1]; k = 0 is the worst level, k = n-1 the best. */
  private data = new Float64Array(2 * INITIAL_LEVELS);
  private n = 0;
  /** Venue texts by price, once a venue gave any. */
  private texts: Map<number, LevelText> | undefined;
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
  private search(price: number): number {
    const d = this.data;
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const p = d[2 * mid]!;
      // Worst first: bids ascending, asks descending.
      if (this.descending ? p < price : p > price) lo = mid + 1;
      else hi = mid;
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
      d.copyWithin(2 * k, 2 * k + 2, 2 * n);
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
      g.copyWithin(2 * k + 2, 2 * k, 2 * n);
      g[2 * k] = price;
      g[2 * k + 1] = qty;
      this.n = n + 1;
    }
    if (priceText !== undefined || qtyText !== undefined || this.texts !== undefined) this.setText(price, hit, priceText, qtyText);
    return true;
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
