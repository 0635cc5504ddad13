import { crc32 as zlibCrc32 } from 'node:zlib';

/**
 * A price-level order book for one symbol. Levels are kept sorted (bids high→low, asks low→high) in
 * arrays with binary search, so the top N needed for venue checksums is a slice, and the venue's own
 * text of each price and size is kept for checksums that hash the strings as sent (OKX, Kraken).
 */

export interface Level {
  price: number;
  qty: number;
  /** The venue's text for price and size, when the venue's checksum needs it. */
  priceText?: string;
  qtyText?: string;
}

class BookSide {
  readonly levels: Level[] = [];
  constructor(private readonly descending: boolean) {}

  /** Index of the level with this price, or where it would be inserted. */
  private search(price: number): number {
    const lv = this.levels;
    let lo = 0;
    let hi = lv.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const p = lv[mid]!.price;
      if (this.descending ? p > price : p < price) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Sets a level; qty 0 removes it. Returns false when removing a level that was not there. */
  set(price: number, qty: number, priceText?: string, qtyText?: string): boolean {
    const i = this.search(price);
    const hit = i < this.levels.length && this.levels[i]!.price === price;
    if (qty === 0) {
      if (hit) this.levels.splice(i, 1);
      return hit;
    }
    if (hit) {
      const l = this.levels[i]!;
      l.qty = qty;
      l.qtyText = qtyText;
      l.priceText = priceText ?? l.priceText;
    } else {
      this.levels.splice(i, 0, { price, qty, priceText, qtyText });
    }
    return true;
  }

  get best(): Level | undefined {
    return this.levels[0];
  }

  /** Drops levels beyond `depth` (venues that only maintain the top N, e.g. Kraken's subscribed depth). */
  truncate(depth: number): void {
    if (this.levels.length > depth) this.levels.length = depth;
  }

  clear(): void {
    this.levels.length = 0;
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
    const b = this.bids.best;
    const a = this.asks.best;
    return b !== undefined && a !== undefined && b.price >= a.price;
  }

  top(n: number): { bids: Level[]; asks: Level[] } {
    return { bids: this.bids.levels.slice(0, n), asks: this.asks.levels.slice(0, n) };
  }
}

/** CRC-32 (IEEE) of the text's UTF-8 bytes, as Kraken and OKX use for book checksums; unsigned. */
export function crc32(text: string): number {
  return zlibCrc32(text) >>> 0;
}
