/**
 * A local Kraken WebSocket v2 server for live tests (the `ws` package on 127.0.0.1, port 0).
 *
 * It speaks the public v2 protocol the way Kraken documents it:
 * - on connect a `status` channel message; `{"method":"ping"}` → `{"method":"pong"}` with req_id;
 * - `subscribe` / `unsubscribe` with one ack per symbol (`{"method":"subscribe","result":{…},"success":true}`),
 *   errors for unknown pairs (`success:false`);
 * - `instrument` snapshot with each pair's price/qty precision; `ticker` (BBO) snapshot and an update
 *   whenever the best bid/offer changes; `trade` snapshot (last 50) and updates;
 * - `book`: a full book per pair kept by the server (more levels than the subscribed depth), of which
 *   the client sees the top `depth`. Updates carry only the changes inside that view, `qty: 0` only for
 *   levels that left the book (a level pushed beyond the depth by an insert is not announced: the client
 *   truncates), and the levels that come into view when one inside it is removed. Every snapshot and
 *   update carries the CRC32 of the top 10 levels, computed here independently of Vigil's code.
 * Numbers are written as JSON number literals with the pair's full precision (`0.50000000`), as
 * Kraken does; a pair with `trimZeros` is written the way a JSON serialiser would (`0.5`).
 *
 * Prices and quantities are held as integers (ticks and lots) so the server never rounds.
 */
import type { AddressInfo } from 'node:net';
import { crc32 } from 'node:zlib';
import WebSocket, { type WebSocketServer } from 'ws';
import { mulberry32 } from './random.ts';
import { listenWs, WsTestServer } from './ws-test-server.ts';

export interface PairSpec {
  /** v2 name, e.g. BTC/USD. */
  symbol: string;
  pricePrecision: number;
  qtyPrecision: number;
  /** Mid price, in price units. */
  mid: number;
  /** Write number literals without trailing zeros (as JSON.stringify would). */
  trimZeros?: boolean;
}

export interface ServerOptions {
  pairs: PairSpec[];
  /** Levels per side of the server's full book (more than any depth a client subscribes with). */
  levels?: number;
  /** Heartbeat period per connection; 0 = none. */
  heartbeatMs?: number;
  seed?: number;
}

type Json = Record<string, unknown>;

export interface Received {
  conn: number;
  msg: Json;
}

interface Sub {
  book?: number; // depth
  ticker?: boolean;
  trade?: boolean;
}

interface PairState {
  spec: PairSpec;
  /** price ticks → qty lots */
  bids: Map<number, number>;
  asks: Map<number, number>;
  tradeId: number;
  trades: string[]; // rendered trade objects, last 50
  corruptNext: number;
}

interface Client {
  id: number;
  socket: WebSocket;
  subs: Map<string, Sub>;
  timer?: NodeJS.Timeout;
}

/** Integer `n` with `d` implied decimals → text with exactly `d` decimals. */
export function fixed(n: number, d: number): string {
  const s = String(n).padStart(d + 1, '0');
  return d === 0 ? s : `${s.slice(0, s.length - d)}.${s.slice(s.length - d)}`;
}

function trim(s: string): string {
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

function digits(s: string): string {
  return s.replace('.', '').replace(/^0+/, '');
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace('Z', '123Z'); // microseconds, as Kraken writes them
}

export class KrakenServer extends WsTestServer<Client> {
  readonly received: Received[] = [];
  /** Connections accepted so far. */
  connections = 0;
  private readonly pairs = new Map<string, PairState>();
  private readonly rand: () => number;
  private readonly heartbeatMs: number;

  private constructor(wss: WebSocketServer, options: ServerOptions) {
    super(wss);
    this.rand = mulberry32(options.seed ?? 7);
    this.heartbeatMs = options.heartbeatMs ?? 0;
    const levels = options.levels ?? 120;
    for (const spec of options.pairs) {
      const p: PairState = { spec, bids: new Map(), asks: new Map(), tradeId: 1000, trades: [], corruptNext: 0 };
      const midTicks = Math.round(spec.mid * 10 ** spec.pricePrecision);
      for (let i = 0; i < levels; i++) {
        p.bids.set(midTicks - 1 - i * 2, this.lots(spec));
        p.asks.set(midTicks + 1 + i * 2, this.lots(spec));
      }
      this.pairs.set(spec.symbol, p);
    }
    wss.on('connection', (socket) => this.accept(socket));
  }

  static async start(options: ServerOptions): Promise<KrakenServer> {
    return new KrakenServer(await listenWs(), options);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.wss.address() as AddressInfo).port}`;
  }

  /** Messages the clients sent, parsed. */
  messages(filter: (m: Json) => boolean = () => true): Json[] {
    return this.received.map((r) => r.msg).filter(filter);
  }

  private lots(spec: PairSpec): number {
    // 0.001 .. 5 units, with the pair's qty precision (at least one lot)
    return Math.max(1, Math.round((0.001 + this.rand() * 5) * 10 ** spec.qtyPrecision));
  }

  private accept(socket: WebSocket): void {
    const client: Client = { id: ++this.connections, socket, subs: new Map() };
    this.clients.add(client);
    socket.on('close', () => {
      this.clients.delete(client);
      if (client.timer) clearInterval(client.timer);
    });
    socket.on('message', (data) => this.onMessage(client, data.toString()));
    this.send(client, JSON.stringify({
      channel: 'status',
      type: 'update',
      data: [{ api_version: 'v2', connection_id: 1234567890 + client.id, system: 'online', version: '2.0.9' }],
    }));
    if (this.heartbeatMs > 0) {
      client.timer = setInterval(() => this.send(client, '{"channel":"heartbeat"}'), this.heartbeatMs);
      client.timer.unref();
    }
  }

  private send(client: Client, text: string): void {
    if (client.socket.readyState === WebSocket.OPEN) client.socket.send(text);
  }

  private onMessage(client: Client, text: string): void {
    let msg: Json;
    try {
      msg = JSON.parse(text) as Json;
    } catch {
      this.send(client, JSON.stringify({ error: 'Malformed request', success: false, time_in: iso(Date.now()), time_out: iso(Date.now()) }));
      return;
    }
    this.received.push({ conn: client.id, msg });
    const now = iso(Date.now());
    const reqId = msg.req_id;
    if (msg.method === 'ping') {
      this.send(client, JSON.stringify({ method: 'pong', req_id: reqId, time_in: now, time_out: now }));
      return;
    }
    if (msg.method !== 'subscribe' && msg.method !== 'unsubscribe') return;
    const params = (msg.params ?? {}) as Json;
    const channel = params.channel as string;
    if (channel === 'instrument') {
      this.send(client, JSON.stringify({ method: msg.method, result: { channel: 'instrument', snapshot: true }, success: true, time_in: now, time_out: now, req_id: reqId }));
      if (msg.method === 'subscribe') this.send(client, this.instrumentSnapshot());
      return;
    }
    const symbols = (params.symbol ?? []) as string[];
    for (const symbol of symbols) {
      const p = this.pairs.get(symbol);
      if (p === undefined) {
        this.send(client, JSON.stringify({ error: `Currency pair not supported ${symbol}`, method: msg.method, req_id: reqId, success: false, symbol, time_in: now, time_out: now }));
        continue;
      }
      const sub = client.subs.get(symbol) ?? {};
      client.subs.set(symbol, sub);
      const subscribe = msg.method === 'subscribe';
      if (channel === 'book') {
        const depth = typeof params.depth === 'number' ? params.depth : 10;
        this.send(client, JSON.stringify({ method: msg.method, result: { channel: 'book', depth, snapshot: true, symbol }, success: true, time_in: now, time_out: now, req_id: reqId }));
        if (subscribe) {
          sub.book = depth;
          this.send(client, this.bookSnapshot(p, depth));
        } else {
          delete sub.book;
        }
      } else if (channel === 'ticker') {
        this.send(client, JSON.stringify({ method: msg.method, result: { channel: 'ticker', event_trigger: 'bbo', snapshot: true, symbol }, success: true, time_in: now, time_out: now, req_id: reqId }));
        sub.ticker = subscribe;
        if (subscribe) this.send(client, this.ticker(p, 'snapshot'));
      } else if (channel === 'trade') {
        this.send(client, JSON.stringify({ method: msg.method, result: { channel: 'trade', snapshot: params.snapshot === true, symbol }, success: true, time_in: now, time_out: now, req_id: reqId }));
        sub.trade = subscribe;
        if (subscribe && params.snapshot === true && p.trades.length > 0) {
          this.send(client, `{"channel":"trade","type":"snapshot","data":[${p.trades.join(',')}]}`);
        }
      }
    }
  }

  private instrumentSnapshot(): string {
    const pairs = [...this.pairs.values()].map(({ spec }) => {
      const [base, quote] = spec.symbol.split('/');
      return {
        symbol: spec.symbol,
        base,
        quote,
        status: 'online',
        qty_precision: spec.qtyPrecision,
        qty_increment: 10 ** -spec.qtyPrecision,
        price_precision: spec.pricePrecision,
        price_increment: 10 ** -spec.pricePrecision,
        cost_precision: 5,
        marginable: false,
        has_index: true,
        qty_min: 0.0001,
      };
    });
    return JSON.stringify({ channel: 'instrument', type: 'snapshot', data: { assets: [], pairs } });
  }

  // ------------------------------------------------------------ books

  private sorted(p: PairState, side: 'bids' | 'asks'): [number, number][] {
    const m = p[side];
    return [...m.entries()].sort((a, b) => (side === 'bids' ? b[0] - a[0] : a[0] - b[0]));
  }

  private view(p: PairState, depth: number): { bids: [number, number][]; asks: [number, number][] } {
    return { bids: this.sorted(p, 'bids').slice(0, depth), asks: this.sorted(p, 'asks').slice(0, depth) };
  }

  private num(p: PairState, n: number, d: number): string {
    const s = fixed(n, d);
    return p.spec.trimZeros ? trim(s) : s;
  }

  private levelsJson(p: PairState, levels: [number, number][]): string {
    return levels.map(([px, q]) => `{"price":${this.num(p, px, p.spec.pricePrecision)},"qty":${this.num(p, q, p.spec.qtyPrecision)}}`).join(',');
  }

  /** Kraken's CRC32: top 10 asks ascending then top 10 bids descending, digits of price then qty. */
  checksum(symbol: string): number {
    const p = this.pairs.get(symbol)!;
    const v = this.view(p, 10);
    let s = '';
    for (const [px, q] of [...v.asks, ...v.bids]) s += digits(fixed(px, p.spec.pricePrecision)) + digits(fixed(q, p.spec.qtyPrecision));
    return crc32(s) >>> 0;
  }

  private bookSnapshot(p: PairState, depth: number): string {
    const v = this.view(p, depth);
    return `{"channel":"book","type":"snapshot","data":[{"symbol":"${p.spec.symbol}","bids":[${this.levelsJson(p, v.bids)}],"asks":[${this.levelsJson(p, v.asks)}],"checksum":${this.checksum(p.spec.symbol)},"timestamp":"${iso(Date.now())}"}]}`;
  }

  private ticker(p: PairState, type: 'snapshot' | 'update'): string {
    const v = this.view(p, 1);
    const [b, a] = [v.bids[0]!, v.asks[0]!];
    const pp = p.spec.pricePrecision;
    const qp = p.spec.qtyPrecision;
    return `{"channel":"ticker","type":"${type}","data":[{"symbol":"${p.spec.symbol}","bid":${this.num(p, b[0], pp)},"bid_qty":${this.num(p, b[1], qp)},"ask":${this.num(p, a[0], pp)},"ask_qty":${this.num(p, a[1], qp)},"last":${this.num(p, a[0], pp)},"volume":1234.5,"vwap":${this.num(p, a[0], pp)},"low":${this.num(p, b[0], pp)},"high":${this.num(p, a[0], pp)},"change":0.0,"change_pct":0.0,"timestamp":"${iso(Date.now())}"}]}`;
  }

  /** The top `depth` levels the server publishes for a pair, as numbers. */
  book(symbol: string, depth: number): { bids: [number, number][]; asks: [number, number][] } {
    const p = this.pairs.get(symbol)!;
    const v = this.view(p, depth);
    const conv = (l: [number, number]): [number, number] => [Number(fixed(l[0], p.spec.pricePrecision)), Number(fixed(l[1], p.spec.qtyPrecision))];
    return { bids: v.bids.map(conv), asks: v.asks.map(conv) };
  }

  /** The next book update for the pair carries a wrong checksum. */
  corruptNext(symbol: string): void {
    this.pairs.get(symbol)!.corruptNext++;
  }

  /**
   * Changes the pair's full book (`changes` random mutations near the top: size changes, new levels,
   * removals, a new best price now and then) and publishes the update to every client subscribed to
   * its book, with the top-of-book ticker when the BBO moved.
   */
  mutate(symbol: string, changes = 3): void {
    const p = this.pairs.get(symbol)!;
    const depths = new Set<number>();
    for (const c of this.clients) {
      const d = c.subs.get(symbol)?.book;
      if (d !== undefined) depths.add(d);
    }
    const before = new Map<number, ReturnType<KrakenServer['view']>>();
    for (const d of depths) before.set(d, this.view(p, d));
    const bboBefore = JSON.stringify(this.view(p, 1));
    for (let i = 0; i < changes; i++) this.mutateOnce(p);
    const ts = iso(Date.now());
    let checksum = this.checksum(symbol);
    if (p.corruptNext > 0) {
      p.corruptNext--;
      checksum = (checksum + 1) >>> 0;
    }
    const updates = new Map<number, string>();
    for (const d of depths) {
      const b = before.get(d)!;
      const a = this.view(p, d);
      const diff = (side: 'bids' | 'asks'): [number, number][] => {
        const out: [number, number][] = [];
        const was = new Map(b[side]);
        const now = new Map(a[side]);
        for (const [px] of b[side]) if (!now.has(px) && !p[side].has(px)) out.push([px, 0]); // removed from the book
        for (const [px, q] of a[side]) if (was.get(px) !== q) out.push([px, q]); // new in view, or new size
        return out;
      };
      const bids = diff('bids');
      const asks = diff('asks');
      updates.set(d, `{"channel":"book","type":"update","data":[{"symbol":"${symbol}","bids":[${this.levelsJson(p, bids)}],"asks":[${this.levelsJson(p, asks)}],"checksum":${checksum},"timestamp":"${ts}"}]}`);
    }
    const bboMoved = JSON.stringify(this.view(p, 1)) !== bboBefore;
    for (const c of this.clients) {
      const sub = c.subs.get(symbol);
      if (sub?.book !== undefined) this.send(c, updates.get(sub.book)!);
      if (sub?.ticker === true && bboMoved) this.send(c, this.ticker(p, 'update'));
    }
  }

  private mutateOnce(p: PairState): void {
    const side: 'bids' | 'asks' = this.rand() < 0.5 ? 'bids' : 'asks';
    const levels = this.sorted(p, side);
    const r = this.rand();
    const best = levels[0]![0];
    const otherBest = this.sorted(p, side === 'bids' ? 'asks' : 'bids')[0]![0];
    const dir = side === 'bids' ? -1 : 1; // away from the spread
    if (r < 0.4) {
      const [px] = levels[Math.floor(this.rand() * Math.min(15, levels.length))]!;
      p[side].set(px, this.lots(p.spec));
    } else if (r < 0.65 && levels.length > 30) {
      const [px] = levels[Math.floor(this.rand() * Math.min(15, levels.length))]!;
      p[side].delete(px);
    } else if (r < 0.9) {
      // a new level among the top 20 (odd offsets fill the gaps between existing levels)
      const px = best + dir * (1 + Math.floor(this.rand() * 40));
      if (!p[side].has(px)) p[side].set(px, this.lots(p.spec));
    } else {
      // a better price, never crossing the other side
      const px = best - dir;
      if (side === 'bids' ? px < otherBest : px > otherBest) p[side].set(px, this.lots(p.spec));
    }
  }

  /** A trade (taker side, at the touch), published to trade subscribers and kept for snapshots. */
  trade(symbol: string, side: 'buy' | 'sell'): number {
    const p = this.pairs.get(symbol)!;
    const v = this.view(p, 1);
    const [px, q] = side === 'buy' ? v.asks[0]! : v.bids[0]!;
    const id = ++p.tradeId;
    const t = `{"symbol":"${symbol}","side":"${side}","price":${this.num(p, px, p.spec.pricePrecision)},"qty":${this.num(p, Math.max(1, Math.floor(q / 2)), p.spec.qtyPrecision)},"ord_type":"market","trade_id":${id},"timestamp":"${iso(Date.now())}"}`;
    p.trades.push(t);
    if (p.trades.length > 50) p.trades.shift();
    for (const c of this.clients) if (c.subs.get(symbol)?.trade === true) this.send(c, `{"channel":"trade","type":"update","data":[${t}]}`);
    return id;
  }

  /** Sends a text frame to every client. */
  broadcast(text: string): void {
    for (const c of this.clients) this.send(c, text);
  }

  get openClients(): number {
    return this.clients.size;
  }

  override async close(): Promise<void> {
    for (const c of this.clients) if (c.timer) clearInterval(c.timer);
    await super.close();
  }
}
