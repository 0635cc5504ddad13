/**
 * A local Coinbase server for live tests, speaking both dialects on one port:
 * - the Exchange feed (subscribe `{"type":"subscribe","product_ids":[…],"channels":[…]}`): subscriptions
 *   acks, heartbeats, level2/level2_batch snapshots + l2update, ticker, matches (last_match on
 *   subscribing), the full channel with per-product `sequence`, and the REST level-3 book
 *   `GET /products/<id>/book?level=3`;
 * - Advanced Trade (subscribe `{"type":"subscribe","product_ids":[…],"channel":"level2"}`, one channel
 *   each): subscriptions, heartbeats, l2_data snapshot/update, market_trades, ticker, all with a
 *   per-connection `sequence_num`.
 * The server keeps the true books; tests make it lose messages (a skipped sequence), kill connections,
 * send raw text, and compare the client's rebuilt book with `levelBook()`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { type WebSocketServer } from 'ws';
import { listenWs, WsTestServer } from './ws-test-server.ts';

export type Lvl = [string, string];
type Json = Record<string, unknown>;

interface L3Order {
  side: 'buy' | 'sell';
  price: string;
  size: string;
}

interface Product {
  /** Level book: price text → size text. */
  bids: Map<string, string>;
  asks: Map<string, string>;
  /** Full channel: resting orders and the product's sequence. */
  orders: Map<string, L3Order>;
  sequence: number;
  lastTradeId: number;
}

export interface Received {
  conn: number;
  msg: Json;
}

interface Client {
  id: number;
  socket: WebSocket;
  /** channel → products. */
  subs: Map<string, Set<string>>;
  dialect: 'exchange' | 'advanced' | undefined;
  /** Advanced Trade's per-connection message counter. */
  seqNum: number;
  heartbeat: NodeJS.Timeout;
  heartbeatCounter: number;
}

const TIME = (): string => new Date().toISOString().replace('Z', '123Z');

export class CoinbaseServer extends WsTestServer<Client> {
  readonly received: Received[] = [];
  /** Paths (with query) of the REST requests. */
  readonly restRequests: string[] = [];
  /** Connections accepted so far. */
  connections = 0;
  readonly wsUrl: string;
  readonly restUrl: string;
  private readonly products = new Map<string, Product>();

  private constructor(
    wss: WebSocketServer,
    private readonly http: Server,
  ) {
    super(wss);
    this.wsUrl = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
    this.restUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    wss.on('connection', (socket) => this.onConnection(socket));
    http.on('request', (req, res) => this.onRest(req, res));
  }

  static async start(): Promise<CoinbaseServer> {
    const wss = await listenWs();
    const http = createServer();
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', () => resolve()));
    return new CoinbaseServer(wss, http);
  }

  override async close(): Promise<void> {
    for (const c of this.clients) clearInterval(c.heartbeat);
    await super.close();
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  // ---------------------------------------------------------------- state

  private product(id: string): Product {
    let p = this.products.get(id);
    if (p === undefined) {
      p = { bids: new Map(), asks: new Map(), orders: new Map(), sequence: 1000, lastTradeId: 0 };
      this.products.set(id, p);
    }
    return p;
  }

  /** Sets a product's level book (Exchange level2 and Advanced Trade level2). */
  setBook(id: string, bids: Lvl[], asks: Lvl[]): void {
    const p = this.product(id);
    p.bids = new Map(bids);
    p.asks = new Map(asks);
  }

  /** Starts a product's full-channel book at `sequence` with these resting orders. */
  setOrders(id: string, sequence: number, orders: [string, L3Order][]): void {
    const p = this.product(id);
    p.orders = new Map(orders);
    p.sequence = sequence;
  }

  /** The true level book, as numbers, best first. */
  levelBook(id: string): { bids: [number, number][]; asks: [number, number][] } {
    const p = this.product(id);
    const num = (m: Map<string, string>): [number, number][] => [...m].map(([px, q]): [number, number] => [Number(px), Number(q)]).filter((l) => l[1] > 0);
    return { bids: num(p.bids).sort((a, b) => b[0] - a[0]), asks: num(p.asks).sort((a, b) => a[0] - b[0]) };
  }

  /** The full-channel book aggregated by level (summed in integer units of 1e-8). */
  l3LevelBook(id: string): { bids: [number, number][]; asks: [number, number][] } {
    const p = this.product(id);
    const agg = { buy: new Map<number, number>(), sell: new Map<number, number>() };
    for (const o of p.orders.values()) {
      const px = Number(o.price);
      const m = agg[o.side];
      m.set(px, (m.get(px) ?? 0) + Math.round(Number(o.size) * 1e8));
    }
    const out = (m: Map<number, number>): [number, number][] => [...m].filter((l) => l[1] > 0).map(([px, u]): [number, number] => [px, u / 1e8]);
    return { bids: out(agg.buy).sort((a, b) => b[0] - a[0]), asks: out(agg.sell).sort((a, b) => a[0] - b[0]) };
  }

  sequence(id: string): number {
    return this.product(id).sequence;
  }

  // ---------------------------------------------------------------- connections

  /** Sends text as is to every connection. */
  sendRaw(text: string): void {
    for (const c of this.clients) c.socket.send(text);
  }

  /** Subscribe/unsubscribe messages received, optionally from one dialect. */
  subscribes(type: 'subscribe' | 'unsubscribe'): Received[] {
    return this.received.filter((r) => r.msg.type === type);
  }

  private onConnection(socket: WebSocket): void {
    const client: Client = {
      id: ++this.connections,
      socket,
      subs: new Map(),
      dialect: undefined,
      seqNum: 0,
      heartbeatCounter: 0,
      heartbeat: setInterval(() => this.heartbeats(client), 250),
    };
    this.clients.add(client);
    socket.on('message', (data) => {
      let msg: Json;
      try {
        msg = JSON.parse(data.toString()) as Json;
      } catch {
        socket.send(JSON.stringify({ type: 'error', message: 'Malformed JSON' }));
        return;
      }
      this.received.push({ conn: client.id, msg });
      if (msg.type !== 'subscribe' && msg.type !== 'unsubscribe') {
        socket.send(JSON.stringify({ type: 'error', message: `unknown type ${String(msg.type)}` }));
        return;
      }
      if (typeof msg.channel === 'string') this.advancedSubscribe(client, msg);
      else this.exchangeSubscribe(client, msg);
    });
    socket.on('close', () => {
      clearInterval(client.heartbeat);
      this.clients.delete(client);
    });
  }

  private send(c: Client, msg: Json): void {
    if (c.socket.readyState === WebSocket.OPEN) c.socket.send(JSON.stringify(msg));
  }

  private subscribed(c: Client, channel: string, product: string): boolean {
    return c.subs.get(channel)?.has(product) === true;
  }

  private heartbeats(c: Client): void {
    if (c.dialect === 'exchange') {
      for (const product of c.subs.get('heartbeat') ?? []) {
        const p = this.product(product);
        this.send(c, { type: 'heartbeat', last_trade_id: p.lastTradeId, product_id: product, sequence: p.sequence, time: TIME() });
      }
    } else if (c.dialect === 'advanced' && (c.subs.get('heartbeats')?.size ?? 0) > 0) {
      this.advancedSend(c, 'heartbeats', [{ current_time: new Date().toISOString(), heartbeat_counter: String(++c.heartbeatCounter) }]);
    }
  }

  // ---------------------------------------------------------------- Exchange feed

  private exchangeSubscribe(c: Client, msg: Json): void {
    c.dialect = 'exchange';
    const rootProducts = Array.isArray(msg.product_ids) ? (msg.product_ids as string[]) : [];
    const channels = Array.isArray(msg.channels) ? msg.channels : [];
    const added: [string, string][] = [];
    for (const ch of channels) {
      const name = typeof ch === 'string' ? ch : String((ch as Json).name);
      const products = typeof ch === 'string' ? rootProducts : ((ch as Json).product_ids as string[]);
      let set = c.subs.get(name);
      if (set === undefined) c.subs.set(name, (set = new Set()));
      for (const product of products) {
        if (msg.type === 'subscribe') {
          if (!set.has(product)) added.push([name, product]);
          set.add(product);
        } else set.delete(product);
      }
    }
    this.send(c, {
      type: 'subscriptions',
      channels: [...c.subs].filter(([, s]) => s.size > 0).map(([name, s]) => ({ name, product_ids: [...s] })),
    });
    for (const [name, product] of added) {
      const p = this.product(product);
      if (name === 'level2' || name === 'level2_batch') {
        this.send(c, { type: 'snapshot', product_id: product, bids: [...p.bids], asks: [...p.asks] });
      } else if (name === 'matches' && p.lastTradeId > 0) {
        this.send(c, { type: 'last_match', trade_id: p.lastTradeId, maker_order_id: 'm', taker_order_id: 't', side: 'sell', size: '0.01', price: '1', product_id: product, sequence: p.sequence, time: TIME() });
      }
    }
  }

  /** Changes levels and sends one l2update to level2 / level2_batch subscribers. */
  l2update(product: string, changes: [side: 'buy' | 'sell', price: string, size: string][], time: string = TIME()): void {
    const p = this.product(product);
    for (const [side, px, size] of changes) {
      const m = side === 'buy' ? p.bids : p.asks;
      if (Number(size) === 0) m.delete(px);
      else m.set(px, size);
    }
    const msg = { type: 'l2update', product_id: product, changes, time };
    for (const c of this.clients) if (this.subscribed(c, 'level2', product) || this.subscribed(c, 'level2_batch', product)) this.send(c, msg);
  }

  /** A ticker with the current best bid/ask of the level book. */
  ticker(product: string): void {
    const b = this.levelBook(product);
    const p = this.product(product);
    const msg = {
      type: 'ticker',
      sequence: p.sequence,
      product_id: product,
      price: String(b.asks[0]?.[0] ?? 1),
      best_bid: String(b.bids[0]?.[0] ?? 0),
      best_bid_size: String(b.bids[0]?.[1] ?? 0),
      best_ask: String(b.asks[0]?.[0] ?? 0),
      best_ask_size: String(b.asks[0]?.[1] ?? 0),
      side: 'buy',
      time: TIME(),
      trade_id: p.lastTradeId,
      last_size: '0.01',
    };
    for (const c of this.clients) if (this.subscribed(c, 'ticker', product)) this.send(c, msg);
  }

  /** A trade on the matches channel (side = the maker's). */
  match(product: string, makerSide: 'buy' | 'sell', price: string, size: string): number {
    const p = this.product(product);
    const tradeId = ++p.lastTradeId;
    const msg = { type: 'match', trade_id: tradeId, maker_order_id: 'm', taker_order_id: 't', side: makerSide, size, price, product_id: product, sequence: ++p.sequence, time: TIME() };
    for (const c of this.clients) if (this.subscribed(c, 'matches', product)) this.send(c, msg);
    return tradeId;
  }

  /**
   * One full-channel message: the next sequence, applied to the true order book, sent to full
   * subscribers unless `lose` (the client then sees a gap).
   */
  full(product: string, type: 'received' | 'open' | 'done' | 'match' | 'change', fields: Json, lose = false): number {
    const p = this.product(product);
    const sequence = ++p.sequence;
    if (type === 'open') {
      p.orders.set(String(fields.order_id), { side: fields.side as 'buy' | 'sell', price: String(fields.price), size: String(fields.remaining_size) });
    } else if (type === 'done') {
      p.orders.delete(String(fields.order_id));
    } else if (type === 'match') {
      const o = p.orders.get(String(fields.maker_order_id));
      if (o !== undefined) o.size = ((Math.round(Number(o.size) * 1e8) - Math.round(Number(fields.size) * 1e8)) / 1e8).toFixed(8);
      fields = { trade_id: ++p.lastTradeId, ...fields };
    } else if (type === 'change') {
      const o = p.orders.get(String(fields.order_id));
      if (o !== undefined) o.size = String(fields.new_size);
    }
    if (!lose) {
      const msg = { type, product_id: product, sequence, time: TIME(), ...fields };
      for (const c of this.clients) if (this.subscribed(c, 'full', product)) this.send(c, msg);
    }
    return sequence;
  }

  private onRest(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    this.restRequests.push(`${url.pathname}${url.search}`);
    const m = /^\/products\/([^/]+)\/book$/.exec(url.pathname);
    if (m === null || url.searchParams.get('level') !== '3' || !this.products.has(m[1]!)) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"NotFound"}');
      return;
    }
    const p = this.product(m[1]!);
    const side = (s: 'buy' | 'sell'): [string, string, string][] =>
      [...p.orders]
        .filter(([, o]) => o.side === s && Number(o.size) > 0)
        .sort((a, b) => (s === 'buy' ? Number(b[1].price) - Number(a[1].price) : Number(a[1].price) - Number(b[1].price)))
        .map(([orderId, o]): [string, string, string] => [o.price, o.size, orderId]);
    res.writeHead(200, { 'content-type': 'application/json' }).end(
      JSON.stringify({ bids: side('buy'), asks: side('sell'), sequence: p.sequence, auction_mode: false, auction: null, time: TIME() }),
    );
  }

  // ---------------------------------------------------------------- Advanced Trade

  private advancedSend(c: Client, channel: string, events: unknown[], lose = false): void {
    const sequence_num = c.seqNum++;
    if (!lose) this.send(c, { channel, client_id: '', timestamp: TIME(), sequence_num, events });
  }

  private advancedSubscribe(c: Client, msg: Json): void {
    c.dialect = 'advanced';
    const channel = String(msg.channel);
    const products = Array.isArray(msg.product_ids) ? (msg.product_ids as string[]) : [];
    let set = c.subs.get(channel);
    if (set === undefined) c.subs.set(channel, (set = new Set()));
    const added: string[] = [];
    for (const product of products) {
      if (msg.type === 'subscribe') {
        if (!set.has(product)) added.push(product);
        set.add(product);
      } else set.delete(product);
    }
    const subscriptions: Record<string, string[]> = {};
    for (const [name, s] of c.subs) if (s.size > 0) subscriptions[name] = [...s];
    this.advancedSend(c, 'subscriptions', [{ subscriptions }]);
    for (const product of added) {
      const p = this.product(product);
      if (channel === 'level2') {
        const updates = [
          ...[...p.bids].map(([px, q]) => ({ side: 'bid', event_time: '1970-01-01T00:00:00Z', price_level: px, new_quantity: q })),
          ...[...p.asks].map(([px, q]) => ({ side: 'offer', event_time: '1970-01-01T00:00:00Z', price_level: px, new_quantity: q })),
        ];
        this.advancedSend(c, 'l2_data', [{ type: 'snapshot', product_id: product, updates }]);
      } else if (channel === 'market_trades') {
        const trades =
          p.lastTradeId > 0 ? [{ trade_id: String(p.lastTradeId), product_id: product, price: '1', size: '0.01', side: 'BUY', time: TIME() }] : [];
        this.advancedSend(c, 'market_trades', [{ type: 'snapshot', trades }]);
      }
    }
  }

  /**
   * A level2 update for one product: applied to the true book and sent to level2 subscribers; with
   * `lose` the message consumes its sequence_num but is not sent.
   */
  advancedL2(product: string, updates: [side: 'bid' | 'offer', price: string, qty: string][], lose = false): void {
    const p = this.product(product);
    for (const [side, px, q] of updates) {
      const m = side === 'bid' ? p.bids : p.asks;
      if (Number(q) === 0) m.delete(px);
      else m.set(px, q);
    }
    const events = [
      { type: 'update', product_id: product, updates: updates.map(([side, px, q]) => ({ side, event_time: TIME(), price_level: px, new_quantity: q })) },
    ];
    for (const c of this.clients) if (c.dialect === 'advanced' && this.subscribed(c, 'level2', product)) this.advancedSend(c, 'l2_data', events, lose);
  }

  /** Sends a message of `channel` with these events (as given, even broken) and the next sequence_num; returns the text of the first. */
  advancedBroadcast(channel: string, events: unknown[]): string {
    let text = '';
    for (const c of this.clients) {
      if (c.dialect !== 'advanced') continue;
      const t = JSON.stringify({ channel, client_id: '', timestamp: TIME(), sequence_num: c.seqNum++, events });
      if (text === '') text = t;
      c.socket.send(t);
    }
    return text;
  }

  /** A trade on market_trades (side = the taker's). */
  advancedTrade(product: string, side: 'BUY' | 'SELL', price: string, size: string): string {
    const p = this.product(product);
    const tradeId = String(++p.lastTradeId);
    const events = [{ type: 'update', trades: [{ trade_id: tradeId, product_id: product, price, size, side, time: TIME() }] }];
    for (const c of this.clients) if (c.dialect === 'advanced' && this.subscribed(c, 'market_trades', product)) this.advancedSend(c, 'market_trades', events);
    return tradeId;
  }

  /** A ticker with the book's best bid/ask and sizes. */
  advancedTicker(product: string): void {
    const b = this.levelBook(product);
    const tickers = [
      {
        type: 'ticker',
        product_id: product,
        price: String(b.asks[0]?.[0] ?? 1),
        best_bid: String(b.bids[0]?.[0] ?? 0),
        best_bid_quantity: String(b.bids[0]?.[1] ?? 0),
        best_ask: String(b.asks[0]?.[0] ?? 0),
        best_ask_quantity: String(b.asks[0]?.[1] ?? 0),
      },
    ];
    for (const c of this.clients) if (c.dialect === 'advanced' && this.subscribed(c, 'ticker', product)) this.advancedSend(c, 'ticker', [{ type: 'update', tickers }]);
  }
}
