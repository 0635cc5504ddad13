/**
 * Rows encoded in ClickHouse's RowBinary format for bulk inserts (Db.insertRowBinary): each row's values
 * back to back in column order, no names, no separators. Why not JSONEachRow: measured on chdb 3.4 with
 * the Binance capture's context rows (~9.8k trades, ~2.9k quotes, one insert per table), an object per
 * row, stringified, inlined into the statement and parsed back (keys and number texts) cost ~65 ms of
 * CPU; as RowBinary, ~25 ms, of which ~3.5 ms writing the bytes in one pass over the events and most of
 * the rest the two new parts themselves.
 *
 * Each value is written as the JSONEachRow path used to store it, so the stored rows are the same:
 * - string: UTF-8 bytes (a lone surrogate, which JSON could not carry, becomes U+FFFD);
 * - float64: the double itself; NaN and ±Infinity as 0 and -0 as 0 (JSON sent null, stored as the
 *   column default 0, and -0 as "0");
 * - DateTime64(3) from epoch ms: Math.round(ms) as Int64 ticks (what an integer JSON number meant);
 *   NaN and ±Infinity as 0.
 */

/** Columns of a RowBinary insert: names in payload order, each with the type its values are encoded as. */
export interface RowBinaryTable {
  /** Table name inside the store's database (a fixed identifier, never input). */
  readonly name: string;
  readonly columns: readonly (readonly [name: string, type: RowBinaryType])[];
}

/** What the writer can encode; LowCardinality(String) columns take String. */
export type RowBinaryType = 'String' | 'Float64' | "DateTime64(3, 'UTC')";

const TWO_32 = 4_294_967_296;

export class RowBinaryWriter {
  private buf: Uint8Array;
  private view: DataView;
  private pos = 0;

  constructor(capacity = 64 * 1024) {
    this.buf = new Uint8Array(Math.max(64, capacity));
    this.view = new DataView(this.buf.buffer);
  }

  /** Bytes written so far. */
  get length(): number {
    return this.pos;
  }

  string(s: string): this {
    const n = s.length;
    // ASCII (every symbol, venue, id and run seen so far) goes byte by byte: a call into Buffer costs
    // more than the copy for strings this short.
    if (n < 128) {
      this.room(1 + n);
      const b = this.buf;
      let p = this.pos + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[p++] = c;
      }
      if (i === n) {
        b[this.pos] = n;
        this.pos = p;
        return this;
      }
    }
    const bytes = Buffer.from(s, 'utf8');
    this.room(10 + bytes.length);
    let len = bytes.length;
    while (len >= 0x80) {
      this.buf[this.pos++] = (len & 0x7f) | 0x80;
      len >>>= 7;
    }
    this.buf[this.pos++] = len;
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
    return this;
  }

  float64(x: number): this {
    this.room(8);
    // x + 0 turns -0 into 0.
    this.view.setFloat64(this.pos, Number.isFinite(x) ? x + 0 : 0, true);
    this.pos += 8;
    return this;
  }

  /** DateTime64(3) from epoch milliseconds: Int64 ticks, little-endian. */
  dateTime64Ms(ms: number): this {
    this.room(8);
    let v = Math.round(ms);
    if (!Number.isFinite(v)) v = 0;
    // Two 32-bit halves: exact for every integer double in Int64's range, negative ones included.
    const hi = Math.floor(v / TWO_32);
    this.view.setUint32(this.pos, v - hi * TWO_32, true);
    this.view.setInt32(this.pos + 4, hi, true);
    this.pos += 8;
    return this;
  }

  /** The rows written (a view, not a copy). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
}
