/**
 * A local Bybit v5 public WebSocket server for live tests (127.0.0.1, port 0), one endpoint per category
 * like Bybit: `/v5/public/spot` and `/v5/public/linear` (any other path is refused). It answers
 * `{"op":"subscribe","args":[topics]}` with one ack per request (`success:false` and Bybit's ret_msg for
 * a topic it does not know), sends the book snapshot on an `orderbook.50.<sym>` subscription and, on
 * linear, a ticker snapshot on `tickers.<sym>`; `{"op":"ping"}` gets the pong of the category (spot:
 * `{"success":true,"ret_msg":"pong",…,"op":"ping"}`, linear: `{"op":"pong",…}`). It keeps the
 * authoritative book per `<category>/<SYMBOL>` with Bybit's update id `u` (+1 per message) and sends
 * deltas to subscribed connections. Tests can lose a delta (`drop`), restart the "service" (a snapshot
 * with u=1), kill every connection, and push any raw text.
 */
import type { AddressInfo } from 'node:net';
import WebSocket, { type WebSocketServer } from 'ws';
import { listenWs, StringBook, WsTestServer, type Lvl } from './ws-test-server.ts';

export type { Lvl };
export type Category = 'spot' | 'linear';

class ServerBook extends StringBook {
  u: number;
  seq: number;

  constructor(bids: readonly Lvl[], asks: readonly Lvl[], u: number) {
    super(bids, asks);
    this.u = u;
    this.seq = u * 10;
  }
}

interface Client {
  id: number;
  category: Category;
  socket: WebSocket;
  topics: Set<string>;
}

export interface Request {
  conn: number;
  category: Category;
  op: string;
  args: string[];
}

export class BybitServer extends WsTestServer<Client> {
  /** The base the client appends its category to. */
  readonly url: string;
  /** Every text received, in order. */
  readonly received: { conn: number; category: Category; text: string }[] = [];
  /** Paths of every connection attempt, in order. */
  readonly paths: string[] = [];
  private readonly books = new Map<string, ServerBook>();
  private connCount = 0;
  private clock = 1_700_000_000_000;

  private constructor(wss: WebSocketServer) {
    super(wss);
    this.url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/v5/public`;
    wss.on('connection', (socket, req) => this.accept(socket, req.url ?? ''));
  }

  /** Books by `<category>/<SYMBOL>`, e.g. `linear/BTCUSDT`. */
  static async start(books: Record<string, { bids: Lvl[]; asks: Lvl[] }>): Promise<BybitServer> {
    const server = new BybitServer(await listenWs());
    let u = 500;
    for (const [key, b] of Object.entries(books)) server.books.set(key, new ServerBook(b.bids, b.asks, (u += 500)));
    return server;
  }

  get connections(): number {
    return this.connCount;
  }

  requests(): Request[] {
    return this.received
      .map((r) => ({ r, msg: JSON.parse(r.text) as { op: string; args?: string[] } }))
      .filter(({ msg }) => msg.op !== 'ping')
      .map(({ r, msg }) => ({ conn: r.conn, category: r.category, op: msg.op, args: msg.args ?? [] }));
  }

  /** The server's book, sorted (bids high→low, asks low→high). */
  book(key: string): { bids: Lvl[]; asks: Lvl[] } {
    return this.mustBook(key).sorted();
  }

  /** The current update id of a book. */
  updateId(key: string): number {
    return this.mustBook(key).u;
  }

  private mustBook(key: string): ServerBook {
    const b = this.books.get(key);
    if (b === undefined) throw new Error(`bybit-server: no book for ${key}`);
    return b;
  }

  private now(): number {
    this.clock += 5;
    return this.clock;
  }

  private accept(socket: WebSocket, path: string): void {
    this.paths.push(path);
    const m = /^\/v5\/public\/(spot|linear)$/.exec(path);
    if (m === null) {
      socket.close(1008, 'unknown endpoint');
      return;
    }
    const category = m[1] as Category;
    const client: Client = { id: ++this.connCount, category, socket, topics: new Set() };
    this.clients.add(client);
    socket.on('close', () => this.clients.delete(client));
    socket.on('message', (data) => this.onMessage(client, data.toString()));
  }

  private onMessage(client: Client, text: string): void {
    this.received.push({ conn: client.id, category: client.category, text });
    const socket = client.socket;
    let req: { op?: string; args?: string[]; req_id?: string };
    try {
      req = JSON.parse(text) as typeof req;
    } catch {
      socket.send(JSON.stringify({ success: false, ret_msg: `error:invalid json,${text}`, conn_id: `c${client.id}`, op: '' }));
      return;
    }
    const conn_id = `c${client.id}`;
    if (req.op === 'ping') {
      if (client.category === 'spot') socket.send(JSON.stringify({ success: true, ret_msg: 'pong', conn_id, req_id: '', op: 'ping' }));
      else socket.send(JSON.stringify({ req_id: '', op: 'pong', args: [String(this.now())], conn_id }));
      return;
    }
    const args = req.args ?? [];
    if (req.op === 'subscribe') {
      const unknown = args.find((t) => this.books.get(`${client.category}/${t.slice(t.lastIndexOf('.') + 1)}`) === undefined);
      if (unknown !== undefined) {
        socket.send(JSON.stringify({ success: false, ret_msg: `error:handler not found,topic:${unknown}`, conn_id, req_id: '', op: 'subscribe' }));
        return;
      }
      for (const t of args) client.topics.add(t);
      socket.send(JSON.stringify({ success: true, ret_msg: '', conn_id, req_id: '', op: 'subscribe' }));
      for (const t of args) {
        const sym = t.slice(t.lastIndexOf('.') + 1);
        const key = `${client.category}/${sym}`;
        if (t.startsWith('orderbook.')) socket.send(this.snapshotText(t, key));
        if (t.startsWith('tickers.') && client.category === 'linear') socket.send(this.tickerText(key, 'snapshot'));
      }
    } else if (req.op === 'unsubscribe') {
      for (const t of args) client.topics.delete(t);
      socket.send(JSON.stringify({ success: true, ret_msg: '', conn_id, req_id: '', op: 'unsubscribe' }));
    }
  }

  private snapshotText(topic: string, key: string): string {
    const b = this.mustBook(key);
    const s = b.sorted();
    const ts = this.now();
    const sym = key.slice(key.indexOf('/') + 1);
    return JSON.stringify({ topic, type: 'snapshot', ts, data: { s: sym, b: s.bids, a: s.asks, u: b.u, seq: b.seq }, cts: ts - 2 });
  }

  private tickerText(key: string, type: 'snapshot' | 'delta', only?: readonly ('bid' | 'ask')[]): string {
    const s = this.book(key);
    const sym = key.slice(key.indexOf('/') + 1);
    const data: Record<string, string> = { symbol: sym };
    if (type === 'snapshot') Object.assign(data, { tickDirection: 'PlusTick', lastPrice: s.bids[0]?.[0] ?? '0', markPrice: s.bids[0]?.[0] ?? '0', fundingRate: '0.0001' });
    if (only === undefined || only.includes('bid')) Object.assign(data, { bid1Price: s.bids[0]?.[0] ?? '', bid1Size: s.bids[0]?.[1] ?? '' });
    if (only === undefined || only.includes('ask')) Object.assign(data, { ask1Price: s.asks[0]?.[0] ?? '', ask1Size: s.asks[0]?.[1] ?? '' });
    return JSON.stringify({ topic: `tickers.${sym}`, type, data, cs: this.now() * 3, ts: this.now() });
  }

  private sendTo(category: Category, topic: string, text: string): void {
    for (const c of this.clients) if (c.category === category && c.topics.has(topic) && c.socket.readyState === WebSocket.OPEN) c.socket.send(text);
  }

  private split(key: string): { category: Category; sym: string } {
    const [category, sym] = key.split('/') as [Category, string];
    return { category, sym };
  }

  /** Applies a change to the server's book and sends the delta (unless dropped): u + 1. */
  update(key: string, change: { bids?: Lvl[]; asks?: Lvl[] }, opts: { drop?: boolean } = {}): void {
    const b = this.mustBook(key);
    b.apply('bids', change.bids ?? []);
    b.apply('asks', change.asks ?? []);
    b.u += 1;
    b.seq += 7;
    if (opts.drop === true) return;
    const { category, sym } = this.split(key);
    const topic = `orderbook.50.${sym}`;
    const ts = this.now();
    this.sendTo(category, topic, JSON.stringify({ topic, type: 'delta', ts, data: { s: sym, b: change.bids ?? [], a: change.asks ?? [], u: b.u, seq: b.seq }, cts: ts - 2 }));
  }

  /** Bybit restarted its book service: a snapshot with u=1, deltas go on from there. */
  restart(key: string, change: { bids?: Lvl[]; asks?: Lvl[] } = {}): void {
    const b = this.mustBook(key);
    b.apply('bids', change.bids ?? []);
    b.apply('asks', change.asks ?? []);
    b.u = 1;
    const { category, sym } = this.split(key);
    const topic = `orderbook.50.${sym}`;
    this.sendTo(category, topic, this.snapshotText(topic, key));
  }

  /** A linear ticker delta with the book's current best bid and/or ask. */
  tickerDelta(key: string, only?: readonly ('bid' | 'ask')[]): void {
    const { category, sym } = this.split(key);
    this.sendTo(category, `tickers.${sym}`, this.tickerText(key, 'delta', only));
  }

  trade(key: string, id: string, p: string, v: string, S: 'Buy' | 'Sell'): void {
    const { category, sym } = this.split(key);
    const ts = this.now();
    const t: Record<string, unknown> = { T: ts - 1, s: sym, S, v, p, i: id, BT: false };
    if (category === 'linear') t.L = 'PlusTick';
    this.sendTo(category, `publicTrade.${sym}`, JSON.stringify({ topic: `publicTrade.${sym}`, type: 'snapshot', ts, data: [t] }));
  }

  /** Raw text to every open connection of a category. */
  broadcast(category: Category, text: string): void {
    for (const c of this.clients) if (c.category === category && c.socket.readyState === WebSocket.OPEN) c.socket.send(text);
  }

}
