/**
 * Plumbing shared by the local venue servers of the live tests (bybit-server.ts, okx-server.ts,
 * kraken-server.ts): a `ws` server on 127.0.0.1 with a free port, its connections (kill them all,
 * close), and a book of the venue's price and size strings.
 */
import type WebSocket from 'ws';
import { WebSocketServer } from 'ws';

/** A book level as a venue sends it: price and size text. */
export type Lvl = [string, string];

/** A WebSocket server on 127.0.0.1, port 0, once it listens. */
export async function listenWs(): Promise<WebSocketServer> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  return wss;
}

/** A test server's connections: the clients it accepted (each removed when its socket closes). */
export abstract class WsTestServer<C extends { socket: WebSocket }> {
  protected readonly clients = new Set<C>();

  protected constructor(protected readonly wss: WebSocketServer) {}

  /** Kills every connection without a close frame (a network failure). */
  dropAll(): void {
    for (const c of this.clients) c.socket.terminate();
  }

  async close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}

/** A venue's book of price → size strings, the strings as sent; size 0 removes a level. */
export class StringBook {
  readonly bids = new Map<string, string>();
  readonly asks = new Map<string, string>();

  constructor(bids: readonly Lvl[], asks: readonly Lvl[]) {
    for (const [p, q] of bids) this.bids.set(p, q);
    for (const [p, q] of asks) this.asks.set(p, q);
  }

  apply(side: 'bids' | 'asks', levels: readonly Lvl[]): void {
    const m = this[side];
    for (const [p, q] of levels) {
      if (Number(q) === 0) m.delete(p);
      else m.set(p, q);
    }
  }

  /** Bids high → low, asks low → high. */
  sorted(): { bids: Lvl[]; asks: Lvl[] } {
    return {
      bids: [...this.bids].sort((a, b) => Number(b[0]) - Number(a[0])),
      asks: [...this.asks].sort((a, b) => Number(a[0]) - Number(b[0])),
    };
  }
}
