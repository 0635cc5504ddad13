/**
 * A local server of Vigil's JSON event streams (docs/feeds/orderflow.md, docs/feeds/transactions.md):
 * the order-flow stream (`order`/`orders`) or the transaction stream (`transaction`/`transactions`).
 * It acks subscriptions with the connection's seq, filters by the subscription (symbols/accounts for
 * orders, accounts/sources for transactions), numbers data messages per connection, and lets a test
 * skip seqs (a gap), send heartbeats and raw text, and drop connections.
 */
import type { AddressInfo } from 'node:net';
import type { WebSocket } from 'ws';
import type { LiveFeed, Normalizer } from '../../src/feeds/types.ts';
import { MemoryTransport } from '../../src/transport/memory.ts';
import { startLiveRun, type LiveRun } from './live-harness.ts';
import { listenWs } from './ws-test-server.ts';

export type StreamKind = 'order' | 'transaction';
type Json = Record<string, unknown>;

export interface Subscription {
  symbols?: string[];
  accounts?: string[];
  sources?: string[];
}

export class StreamConnection {
  /** Subscribe messages received, parsed, in order. */
  readonly subscriptions: Subscription[] = [];
  /** Every text message received (subscribe messages and anything else). */
  readonly received: string[] = [];
  /** Seq of the last data message (sent or skipped). */
  seq = 0;
  closed = false;
  private filter: Subscription | undefined;

  constructor(
    readonly index: number,
    readonly url: string,
    private readonly socket: WebSocket,
    private readonly kind: StreamKind,
  ) {}

  /** Sends each item that passes the subscription as its own message; returns how many were sent. */
  publish(items: readonly Json[]): number {
    let sent = 0;
    for (const d of items) {
      if (!this.passes(d)) continue;
      this.send({ type: this.kind, seq: ++this.seq, data: d });
      sent++;
    }
    return sent;
  }

  /** Sends the items that pass the subscription as one batch message. */
  publishBatch(items: readonly Json[]): number {
    const data = items.filter((d) => this.passes(d));
    this.send({ type: `${this.kind}s`, seq: ++this.seq, data });
    return data.length;
  }

  /** Loses `n` messages: their seqs are used but nothing is sent. */
  skip(n: number): void {
    this.seq += n;
  }

  heartbeat(ts = Date.now()): void {
    this.send({ type: 'heartbeat', ts, seq: this.seq });
  }

  /** Sends a data message with the next seq and data as given (no filtering, no checks). */
  publishRaw(data: unknown): void {
    this.send({ type: this.kind, seq: ++this.seq, data });
  }

  sendText(text: string): void {
    this.socket.send(text);
  }

  send(msg: Json): void {
    this.socket.send(JSON.stringify(msg));
  }

  /** Kills the TCP connection without a close handshake (a network failure). */
  drop(): void {
    this.socket.terminate();
  }

  onSubscribe(msg: Json): void {
    const sub: Subscription = {};
    for (const k of ['symbols', 'accounts', 'sources'] as const) {
      const v = msg[k];
      if (v === undefined) continue;
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
        this.send({ type: 'error', code: 'bad_subscribe', message: `${k} must be an array of strings` });
        return;
      }
      sub[k] = v as string[];
    }
    this.subscriptions.push(sub);
    this.filter = sub;
    const ack: Json = { type: 'subscribed' };
    const keys = this.kind === 'order' ? (['symbols', 'accounts'] as const) : (['accounts', 'sources'] as const);
    for (const k of keys) ack[k] = sub[k] ?? null;
    ack.seq = this.seq;
    this.send(ack);
  }

  private passes(d: Json): boolean {
    const f = this.filter;
    if (f === undefined) return false; // nothing before a subscription
    if (this.kind === 'order' && f.symbols !== undefined && !f.symbols.includes(String(d.symbol))) return false;
    if (f.accounts !== undefined && !f.accounts.includes(String(d.account))) return false;
    if (this.kind === 'transaction' && f.sources !== undefined && !f.sources.includes(String(d.source))) return false;
    return true;
  }
}

export interface StreamServer {
  url: string;
  connections: StreamConnection[];
  /** Resolves with the connection once it has received `count` subscriptions (default 1). */
  subscribed(index: number, count?: number): Promise<StreamConnection>;
  close(): Promise<void>;
}

/**
 * Starts a server on 127.0.0.1 (port 0). `onSubscribed` runs after each subscription is acked (on the
 * first subscription of a connection, `first` is true).
 */
export async function startStreamServer(
  kind: StreamKind,
  onSubscribed?: (conn: StreamConnection, first: boolean) => void,
  heartbeatMs?: number,
): Promise<StreamServer> {
  const wss = await listenWs();
  const waiters: { index: number; count: number; resolve: (c: StreamConnection) => void }[] = [];
  const connections: StreamConnection[] = [];
  const timers: NodeJS.Timeout[] = [];
  const check = () => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]!;
      const c = connections[w.index];
      if (c !== undefined && c.subscriptions.length >= w.count) {
        waiters.splice(i, 1);
        w.resolve(c);
      }
    }
  };
  wss.on('connection', (socket, req) => {
    const conn = new StreamConnection(connections.length, req.url ?? '', socket, kind);
    connections.push(conn);
    if (heartbeatMs !== undefined) {
      const t = setInterval(() => conn.heartbeat(), heartbeatMs);
      timers.push(t);
      socket.on('close', () => clearInterval(t));
    }
    socket.on('close', () => {
      conn.closed = true;
    });
    socket.on('message', (data) => {
      const text = data.toString();
      conn.received.push(text);
      let msg: unknown;
      try {
        msg = JSON.parse(text);
      } catch {
        conn.send({ type: 'error', code: 'bad_json', message: 'invalid JSON' });
        return;
      }
      if (msg === null || typeof msg !== 'object' || (msg as Json).type !== 'subscribe') {
        conn.send({ type: 'error', code: 'unknown_type', message: 'expected {"type":"subscribe"}' });
        return;
      }
      const before = conn.subscriptions.length;
      conn.onSubscribe(msg as Json);
      if (conn.subscriptions.length > before) {
        onSubscribed?.(conn, before === 0);
        check();
      }
    });
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/stream`,
    connections,
    subscribed(index, count = 1) {
      return new Promise((resolve) => {
        waiters.push({ index, count, resolve });
        check();
      });
    },
    async close() {
      for (const t of timers) clearInterval(t);
      for (const s of wss.clients) s.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------- driving a live feed in a test

export interface StreamRun<N extends Normalizer, E> extends LiveRun<N, E> {
  server: StreamServer;
}

/**
 * A stream server for `kind` and a live feed against it, driven as `vigil run` does
 * (test/helpers/live-harness.ts: a MemoryTransport with one partition, subscribers on vigil.dlq and on
 * the data topic `topic`). Stopping the run closes the server.
 */
export async function startStreamRun<N extends Normalizer, E>(
  kind: StreamKind,
  onSubscribed: (conn: StreamConnection, first: boolean) => void,
  topic: string,
  createNormalizer: () => N,
  connect: (wsUrl: string, signal: AbortSignal) => LiveFeed,
): Promise<StreamRun<N, E>> {
  const server = await startStreamServer(kind, onSubscribed);
  const run = await startLiveRun<N, E>({
    createNormalizer,
    connect: (signal) => connect(server.url, signal),
    transport: new MemoryTransport({ partitions: 1 }),
    dataTopic: topic,
    onStop: () => server.close(),
  });
  return Object.assign(run, { server });
}
