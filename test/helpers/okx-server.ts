/**
 * A local OKX v5 public WebSocket server for live tests (127.0.0.1, port 0). It speaks the protocol the
 * way OKX does: `{"op":"subscribe","args":[{channel,instId}…]}` → one `{"event":"subscribe",…}` ack per
 * arg, and for `books` a snapshot (prevSeqId -1, checksum); `unsubscribe` likewise; the text `ping` →
 * `pong`. It keeps the authoritative book of every instrument (the strings as sent) and numbers book
 * messages with seqId/prevSeqId; `update` sends an update with the CRC32 checksum of its top 25 levels
 * to every connection subscribed to that book. Tests can lose a message (`drop`), corrupt one
 * (`corrupt`), kill every connection, and push any raw text.
 */
import type { AddressInfo } from 'node:net';
import { crc32 } from 'node:zlib';
import WebSocket, { type WebSocketServer } from 'ws';
import { listenWs, StringBook, WsTestServer, type Lvl } from './ws-test-server.ts';

export type { Lvl };

/** OKX's checksum computed independently of src/: sort the string levels, interleave the top 25, CRC32, signed. */
export function okxBookChecksum(bids: readonly Lvl[], asks: readonly Lvl[]): number {
  const parts: string[] = [];
  for (let i = 0; i < 25; i++) {
    if (i < bids.length) parts.push(bids[i]![0], bids[i]![1]);
    if (i < asks.length) parts.push(asks[i]![0], asks[i]![1]);
  }
  return crc32(Buffer.from(parts.join(':'), 'utf8')) | 0;
}

class ServerBook extends StringBook {
  seqId: number;

  constructor(bids: readonly Lvl[], asks: readonly Lvl[], seqId: number) {
    super(bids, asks);
    this.seqId = seqId;
  }

  checksum(): number {
    const s = this.sorted();
    return okxBookChecksum(s.bids, s.asks);
  }
}

interface Client {
  id: number;
  socket: WebSocket;
  /** `channel:instId` */
  subs: Set<string>;
}

const wire = (levels: readonly Lvl[]): string[][] => levels.map(([p, q]) => [p, q, '0', Number(q) === 0 ? '0' : '1']);

export interface UpdateOptions {
  /** Lost on the way: the server's book and seqId move on, nobody receives it (a gap for the client). */
  drop?: boolean;
  /** Sent with the first level's size changed, checksum of the true book: the client's book diverges. */
  corrupt?: boolean;
}

export class OkxServer extends WsTestServer<Client> {
  readonly url: string;
  /** Every text received, in order, with the connection number (1-based). */
  readonly received: { conn: number; text: string }[] = [];
  private readonly books = new Map<string, ServerBook>();
  private connCount = 0;
  private clock = 1_700_000_000_000;

  private constructor(wss: WebSocketServer) {
    super(wss);
    this.url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/ws/v5/public`;
    wss.on('connection', (socket) => this.accept(socket));
  }

  static async start(books: Record<string, { bids: Lvl[]; asks: Lvl[] }>): Promise<OkxServer> {
    const server = new OkxServer(await listenWs());
    let seq = 1000;
    for (const [instId, b] of Object.entries(books)) server.books.set(instId, new ServerBook(b.bids, b.asks, (seq += 1000)));
    return server;
  }

  /** Connections accepted so far. */
  get connections(): number {
    return this.connCount;
  }

  get openConnections(): number {
    return [...this.clients].filter((c) => c.socket.readyState === WebSocket.OPEN).length;
  }

  /** Parsed JSON requests (not pings) received. */
  requests(): { conn: number; op: string; args: { channel: string; instId: string }[] }[] {
    return this.received
      .filter((r) => r.text.startsWith('{'))
      .map((r) => ({ conn: r.conn, ...(JSON.parse(r.text) as { op: string; args: { channel: string; instId: string }[] }) }));
  }

  /** The server's book of an instrument, sorted (bids high→low, asks low→high), strings as sent. */
  book(instId: string): { bids: Lvl[]; asks: Lvl[] } {
    return this.mustBook(instId).sorted();
  }

  private mustBook(instId: string): ServerBook {
    const b = this.books.get(instId);
    if (b === undefined) throw new Error(`okx-server: no book for ${instId}`);
    return b;
  }

  private now(): string {
    this.clock += 7;
    return String(this.clock);
  }

  private accept(socket: WebSocket): void {
    const client: Client = { id: ++this.connCount, socket, subs: new Set() };
    this.clients.add(client);
    socket.on('close', () => this.clients.delete(client));
    socket.on('message', (data) => {
      const text = data.toString();
      this.received.push({ conn: client.id, text });
      if (text === 'ping') {
        socket.send('pong');
        return;
      }
      let req: { op?: string; args?: { channel: string; instId: string }[] };
      try {
        req = JSON.parse(text) as typeof req;
      } catch {
        socket.send(JSON.stringify({ event: 'error', code: '60012', msg: `Invalid request: ${text}`, connId: `c${client.id}` }));
        return;
      }
      for (const arg of req.args ?? []) {
        const key = `${arg.channel}:${arg.instId}`;
        if (req.op === 'subscribe') {
          client.subs.add(key);
          socket.send(JSON.stringify({ event: 'subscribe', arg, connId: `c${client.id}` }));
          if (arg.channel === 'books') this.sendSnapshot(client, arg.instId);
        } else if (req.op === 'unsubscribe') {
          client.subs.delete(key);
          socket.send(JSON.stringify({ event: 'unsubscribe', arg, connId: `c${client.id}` }));
        }
      }
    });
  }

  private sendSnapshot(client: Client, instId: string): void {
    const b = this.mustBook(instId);
    const s = b.sorted();
    const msg = {
      arg: { channel: 'books', instId },
      action: 'snapshot',
      data: [{ asks: wire(s.asks), bids: wire(s.bids), ts: this.now(), checksum: b.checksum(), prevSeqId: -1, seqId: b.seqId }],
    };
    client.socket.send(JSON.stringify(msg));
  }

  private subscribers(key: string): Client[] {
    return [...this.clients].filter((c) => c.subs.has(key) && c.socket.readyState === WebSocket.OPEN);
  }

  /** Applies a change to the server's book and sends the update (unless dropped). */
  update(instId: string, change: { bids?: Lvl[]; asks?: Lvl[] }, opts: UpdateOptions = {}): void {
    const b = this.mustBook(instId);
    const bids = change.bids ?? [];
    const asks = change.asks ?? [];
    b.apply('bids', bids);
    b.apply('asks', asks);
    const prevSeqId = b.seqId;
    b.seqId += 1 + (b.seqId % 3); // OKX's seqIds increase, not necessarily by one
    if (opts.drop === true) return;
    let sentBids = bids;
    let sentAsks = asks;
    if (opts.corrupt === true) {
      const first = (bids.length > 0 ? bids : asks)[0];
      if (first === undefined) throw new Error('okx-server: nothing to corrupt');
      const bad: Lvl = [first[0], String(Number(first[1]) + 1)];
      if (bids.length > 0) sentBids = [bad, ...bids.slice(1)];
      else sentAsks = [bad, ...asks.slice(1)];
    }
    const msg = {
      arg: { channel: 'books', instId },
      action: 'update',
      data: [{ asks: wire(sentAsks), bids: wire(sentBids), ts: this.now(), checksum: b.checksum(), prevSeqId, seqId: b.seqId }],
    };
    this.broadcastTo(`books:${instId}`, JSON.stringify(msg));
  }

  /** OKX's keep-alive book message: empty sides, seqId = prevSeqId. */
  keepalive(instId: string): void {
    const b = this.mustBook(instId);
    const msg = { arg: { channel: 'books', instId }, action: 'update', data: [{ asks: [], bids: [], ts: this.now(), checksum: b.checksum(), prevSeqId: b.seqId, seqId: b.seqId }] };
    this.broadcastTo(`books:${instId}`, JSON.stringify(msg));
  }

  trade(instId: string, tradeId: string, px: string, sz: string, side: 'buy' | 'sell'): void {
    const msg = { arg: { channel: 'trades', instId }, data: [{ instId, tradeId, px, sz, side, ts: this.now() }] };
    this.broadcastTo(`trades:${instId}`, JSON.stringify(msg));
  }

  /** A ticker with the server book's best bid/ask. */
  ticker(instId: string): void {
    const s = this.book(instId);
    const [bidPx, bidSz] = s.bids[0] ?? ['', ''];
    const [askPx, askSz] = s.asks[0] ?? ['', ''];
    const msg = { arg: { channel: 'tickers', instId }, data: [{ instType: 'SPOT', instId, last: bidPx, lastSz: '1', askPx, askSz, bidPx, bidSz, ts: this.now() }] };
    this.broadcastTo(`tickers:${instId}`, JSON.stringify(msg));
  }

  private broadcastTo(key: string, text: string): void {
    for (const c of this.subscribers(key)) c.socket.send(text);
  }

  /** Raw text to every open connection. */
  broadcast(text: string): void {
    for (const c of this.clients) if (c.socket.readyState === WebSocket.OPEN) c.socket.send(text);
  }

}
