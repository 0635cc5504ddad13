/**
 * The order book's sides (sorted Float64Array storage, best last) against a plain model: a map of
 * price → level, sorted on read. Random sets, removals, texts and truncations, both sides; after every
 * step the book's levels, accessors and top must equal the model's. Also decimalText, the normalizers'
 * reading of numeric text, against `+s`.
 */
import { describe, expect, it } from 'vitest';
import { OrderBook, type Level } from '../src/feeds/book/order-book.ts';
import { decimalText } from '../src/feeds/normalize-util.ts';
import { mulberry32 } from './helpers/random.ts';


/** What a side must hold: levels by price, with the text rules of the original level objects. */
class ModelSide {
  readonly levels = new Map<number, Level>();
  constructor(private readonly descending: boolean) {}

  set(price: number, qty: number, priceText?: string, qtyText?: string): boolean {
    const l = this.levels.get(price);
    if (qty === 0) return this.levels.delete(price);
    if (l) {
      l.qty = qty;
      l.qtyText = qtyText;
      l.priceText = priceText ?? l.priceText;
    } else this.levels.set(price, { price, qty, priceText, qtyText });
    return true;
  }

  sorted(): Level[] {
    return [...this.levels.values()].sort((a, b) => (this.descending ? b.price - a.price : a.price - b.price)).map((l) => ({ ...l }));
  }

  truncate(depth: number): void {
    for (const l of this.sorted().slice(depth)) this.levels.delete(l.price);
  }
}

describe('OrderBook', () => {
  it('keeps each side sorted best first, with texts, through random sets, removals and truncations', () => {
    const rng = mulberry32(7);
    const book = new OrderBook();
    const model = { bids: new ModelSide(true), asks: new ModelSide(false) };
    let removedMissing = 0;
    for (let step = 0; step < 20_000; step++) {
      const side = rng() < 0.5 ? 'bids' : 'asks';
      const u = rng();
      if (u < 0.002) {
        const depth = Math.floor(rng() * 40);
        book[side].truncate(depth);
        model[side].truncate(depth);
      } else if (u < 0.003) {
        book.clear();
        model.bids.levels.clear();
        model.asks.levels.clear();
      } else {
        // Prices clustered near a top (most changes of a real book), on a 0.5 grid.
        const price = Math.round((side === 'bids' ? 1000 - 60 * rng() ** 3 : 1000.5 + 60 * rng() ** 3) * 2) / 2;
        const qty = rng() < 0.35 ? 0 : Math.round(rng() * 1000) / 100;
        const withText = rng() < 0.3;
        const priceText = withText && rng() < 0.7 ? price.toFixed(2) : undefined;
        const qtyText = withText ? qty.toFixed(3) : undefined;
        const a = book[side].set(price, qty, priceText, qtyText);
        const b = model[side].set(price, qty, priceText, qtyText);
        expect(a).toBe(b);
        if (!a) removedMissing++;
      }
      if (step % 97 === 0 || step === 19_999) {
        for (const s of ['bids', 'asks'] as const) {
          const want = model[s].sorted();
          const got = book[s];
          expect(got.levels).toEqual(want);
          expect(got.length).toBe(want.length);
          for (let i = 0; i < want.length; i++) {
            expect(got.priceAt(i)).toBe(want[i]!.price);
            expect(got.qtyAt(i)).toBe(want[i]!.qty);
            expect(got.priceTextAt(i)).toBe(want[i]!.priceText);
            expect(got.qtyTextAt(i)).toBe(want[i]!.qtyText);
          }
          expect(got.best).toEqual(want[0]);
          expect(got.length > 0 ? got.bestPrice : undefined).toBe(want[0]?.price);
        }
        expect(book.top(5)).toEqual({ bids: model.bids.sorted().slice(0, 5), asks: model.asks.sorted().slice(0, 5) });
        const [b, a] = [model.bids.sorted()[0], model.asks.sorted()[0]];
        expect(book.crossed).toBe(b !== undefined && a !== undefined && b.price >= a.price);
      }
    }
    expect(removedMissing).toBeGreaterThan(0); // the walk did remove levels that were not there
  });

  it('grows past its initial capacity and reads the same levels back', () => {
    const book = new OrderBook();
    for (let i = 0; i < 5_000; i++) book.asks.set(100 + (i * 7919) % 5_000, i + 1);
    expect(book.asks.length).toBe(5_000);
    const prices = book.asks.levels.map((l) => l.price);
    expect(prices).toEqual([...prices].sort((x, y) => x - y));
    expect(book.asks.bestPrice).toBe(100);
  });
});

describe('BookSide.setAll', () => {
  it('gives what set() one by one gives: sorted diffs (merged in place), unsorted ones, growth, -0', () => {
    const rng = mulberry32(11);
    const book = new OrderBook();
    const one = new OrderBook();
    const model = { bids: new ModelSide(true), asks: new ModelSide(false) };
    let sortedDiffs = 0;
    let deepest = 0;
    for (let step = 0; step < 4_000; step++) {
      const side = rng() < 0.5 ? 'bids' : 'asks';
      if (rng() < 0.01) {
        book[side].clear();
        one[side].clear();
        model[side].levels.clear();
      }
      // A diff side: distinct prices spread over a deep book (sorted best first, as venues send them),
      // sometimes with repeats, sometimes shuffled; big inserts now and then to grow the storage.
      const m = rng() < 0.05 ? 200 + Math.floor(rng() * 400) : Math.floor(rng() * 40);
      const dense = rng() < 0.5;
      const prices = new Set<number>();
      while (prices.size < m) {
        const off = dense ? Math.floor(rng() * 3 * m + 1) : Math.floor(rng() * 3_000);
        prices.add(side === 'bids' ? 10_000 - off / 2 : 10_000.5 + off / 2);
      }
      let diff: Array<[number, number]> = [...prices].map((p) => [p, rng() < 0.4 ? (rng() < 0.5 ? -0 : 0) : Math.round(rng() * 1000) / 100 + 0.01]);
      diff.sort((a, b) => (side === 'bids' ? b[0] - a[0] : a[0] - b[0]));
      const u = rng();
      if (u < 0.1 && diff.length > 1) diff.push(diff[Math.floor(rng() * diff.length)]!); // a repeat: not strictly sorted
      else if (u < 0.2) diff = diff.reverse();
      else sortedDiffs++;
      book[side].setAll(diff);
      for (const [p, q] of diff) {
        one[side].set(p, q);
        model[side].set(p, q);
      }
      deepest = Math.max(deepest, book[side].length);
      if (step % 41 === 0 || step === 3_999) {
        for (const s of ['bids', 'asks'] as const) {
          const got = book[s];
          expect(got.levels).toEqual(model[s].sorted());
          expect(got.length).toBe(one[s].length);
          for (let i = 0; i < got.length; i++) {
            expect(Object.is(got.priceAt(i), one[s].priceAt(i))).toBe(true);
            expect(Object.is(got.qtyAt(i), one[s].qtyAt(i))).toBe(true);
          }
        }
      }
    }
    expect(sortedDiffs).toBeGreaterThan(3_000);
    expect(deepest).toBeGreaterThan(1_000); // well past the initial 64 levels: the storage grew in setAll
  });

  it('gives up a diff that turns out unsorted part way (a repeat, a NaN) for set() one by one, as if untouched', () => {
    for (const side of ['bids', 'asks'] as const) {
      for (const diff of [
        [[5, 1], [4, 1], [4, 2], [1, 1]],
        [[1, 1], [2, 0], [3, 1]],
        [[5, 1], [NaN, 1], [2, 1]],
        [[NaN, 1], [3, 1]],
        [[5, 0], [3, 1], [NaN, 0]],
      ] as Array<[number, number]>[]) {
        const d: Array<[number, number]> = side === 'bids' ? diff : diff.map(([p, q]) => [10 - p, q]);
        const book = new OrderBook();
        const one = new OrderBook();
        for (const b of [book, one]) for (const p of [0.5, 2, 3, 4.5, 6]) b[side].set(side === 'bids' ? p : 10 - p, 7);
        book[side].setAll(d);
        for (const [p, q] of d) one[side].set(p, q);
        expect(book[side].length).toBe(one[side].length);
        for (let i = 0; i < book[side].length; i++) {
          expect(Object.is(book[side].priceAt(i), one[side].priceAt(i))).toBe(true);
          expect(book[side].qtyAt(i)).toBe(one[side].qtyAt(i));
        }
      }
    }
  });

  it('keeps the stored price on an update (0 stays 0 under a -0 update), and the levels view while nothing changes', () => {
    const book = new OrderBook();
    book.asks.setAll([[0, 1], [1, 1], [2, 1]]);
    const view = book.asks.levels;
    book.asks.setAll([[0.5, 0], [1.5, 0], [3, 0]]); // removals of levels that are not there
    expect(book.asks.levels).toBe(view);
    book.asks.setAll([[-0, 5], [2, 0], [4, 1]]);
    expect(Object.is(book.asks.priceAt(0), 0)).toBe(true);
    expect(book.asks.levels.map((l) => [l.price, l.qty])).toEqual([[0, 5], [1, 1], [4, 1]]);
  });
});

describe('decimalText', () => {
  it('reads numeric text exactly as +s does', () => {
    const edge = ['', '.', '1.', '.5', '-1', '+1', '1e5', ' 1', '1 ', '0x10', '00', '007', '0.00000000', '58000.01000000', '123456789012345', '1234567890123456',
      '999999999999999.9', '0.1', '0.3', '9007199254740993', '99999.99999999', 'Infinity', 'NaN', '1..2', '1.2.3', '١'];
    for (const s of edge) expect(Object.is(decimalText(s), +s), JSON.stringify(s)).toBe(true);
    const rng = mulberry32(3);
    const digits = (n: number) => Array.from({ length: n }, () => Math.floor(rng() * 10)).join('');
    for (let i = 0; i < 200_000; i++) {
      const s = rng() < 0.5 ? `${digits(1 + Math.floor(rng() * 9))}.${digits(Math.floor(rng() * 10))}` : digits(1 + Math.floor(rng() * 17));
      if (!Object.is(decimalText(s), +s)) expect.fail(`${JSON.stringify(s)}: ${decimalText(s)} != ${+s}`);
    }
  });
});
