import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket, { WebSocketServer, type ServerOptions } from 'ws';
import { ERR } from '../src/core/errors.ts';
import { FetchCancelledError, backoffDelay, connectVenue, type ConnectionTuning } from '../src/feeds/connection.ts';
import type { ConnectionContext, VenueProtocol } from '../src/feeds/connection-types.ts';
import { STATUS_CHANNEL, type LiveFeed, type RawFrame, type StatusFrameData } from '../src/feeds/types.ts';

// ---------------------------------------------------------------- a generic venue server

interface ServerConn {
  index: number;
  url: string;
  socket: WebSocket;
  openedAt: number;
  /** Text messages the client sent, with the time they arrived. */
  messages: { at: number; text: string }[];
  pings: number;
  closeCode: number | undefined;
  closedAt: number | undefined;
}

interface TestServer {
  url: string;
  conns: ServerConn[];
  /** Times of rejected handshakes (reject()). */
  rejected: number[];
  /** While > 0, handshakes are refused with HTTP 503 (and this counts down). */
  refuse: number;
  close(): Promise<void>;
}

async function startServer(onConnection: (c: ServerConn) => void, opts: ServerOptions = {}): Promise<TestServer> {
  const server: TestServer = {
    url: '',
    conns: [],
    rejected: [],
    refuse: 0,
    async close() {
      for (const s of wss.clients) s.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    ...opts,
    verifyClient: (_info, cb) => {
      if (server.refuse > 0) {
        server.refuse--;
        server.rejected.push(Date.now());
        cb(false, 503, 'try later');
      } else cb(true);
    },
  });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  server.url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  wss.on('connection', (socket, req) => {
    const c: ServerConn = { index: server.conns.length, url: req.url ?? '', socket, openedAt: Date.now(), messages: [], pings: 0, closeCode: undefined, closedAt: undefined };
    server.conns.push(c);
    socket.on('message', (d) => c.messages.push({ at: Date.now(), text: d.toString() }));
    socket.on('ping', () => c.pings++);
    socket.on('close', (code) => {
      c.closeCode = code;
      c.closedAt = Date.now();
    });
    onConnection(c);
  });
  servers.push(server);
  return server;
}

const servers: TestServer[] = [];
const httpServers: Server[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  while (servers.length > 0) await servers.pop()!.close();
  while (httpServers.length > 0) {
    const h = httpServers.pop()!;
    h.closeAllConnections();
    await new Promise<void>((r) => h.close(() => r()));
  }
});

// ---------------------------------------------------------------- a generic venue protocol

function protocol(over: Partial<VenueProtocol> = {}): VenueProtocol & { resyncs: string[] } {
  const resyncs: string[] = [];
  return {
    venue: 'testvenue',
    defaultWsUrl: 'ws://127.0.0.1:1',
    defaultRestUrl: 'http://127.0.0.1:1',
    nativeSymbols: (symbols) => symbols.map((s) => s.toUpperCase()),
    url: (wsUrl, symbols) => `${wsUrl}/feed?n=${symbols.length}`,
    subscribeMessages: (symbols) => symbols.map((s) => JSON.stringify({ op: 'subscribe', symbol: s })),
    resync(symbol, ctx) {
      resyncs.push(symbol);
      ctx.send(JSON.stringify({ op: 'unsubscribe', symbol }));
      ctx.send(JSON.stringify({ op: 'subscribe', symbol }));
    },
    resyncs,
    ...over,
  };
}

/** Fast, deterministic backoff: delay = base/2 · 2^attempt (jitter at its minimum). */
const FAST: ConnectionTuning = { backoffBaseMs: 200, backoffCapMs: 2_000, random: () => 0, closeGraceMs: 200 };

function status(f: RawFrame): StatusFrameData & { origin?: string } {
  return { ...(JSON.parse(f.data) as StatusFrameData), origin: f.origin };
}

function statuses(frames: readonly RawFrame[]): (StatusFrameData & { origin?: string })[] {
  return frames.filter((f) => f.channel === STATUS_CHANNEL).map(status);
}

/** Iterates until `stop` returns true (then aborts), with a timeout that aborts too. */
async function collect(feed: LiveFeed, ctrl: AbortController, stop: (frames: RawFrame[]) => boolean, timeoutMs = 10_000): Promise<RawFrame[]> {
  const frames: RawFrame[] = [];
  const timer = setTimeout(() => ctrl.abort(), timeoutMs);
  try {
    for await (const f of feed) {
      frames.push(f);
      if (stop(frames)) ctrl.abort();
    }
  } finally {
    clearTimeout(timer);
  }
  return frames;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- tests

describe('connectVenue: connect, status, subscribe', () => {
  it('opens the protocol URL, emits connected, sends the subscribe messages, yields frames with source and origin', async () => {
    const server = await startServer((c) => {
      c.socket.on('message', (d) => {
        const m = JSON.parse(d.toString()) as { symbol: string };
        c.socket.send(JSON.stringify({ ack: m.symbol }));
      });
    });
    const ctrl = new AbortController();
    const feed = connectVenue(protocol(), { symbols: ['aaa', 'bbb', 'aaa'], wsUrl: server.url, signal: ctrl.signal }, FAST);
    const got = await collect(feed, ctrl, (fs) => fs.length >= 3);
    expect(server.conns.map((c) => c.url)).toEqual(['/feed?n=2']); // duplicates removed
    expect(server.conns[0]!.messages.map((m) => m.text)).toEqual(['{"op":"subscribe","symbol":"AAA"}', '{"op":"subscribe","symbol":"BBB"}']);
    expect(got[0]).toMatchObject({ source: 'testvenue', channel: STATUS_CHANNEL, origin: 'testvenue:ws#1' });
    expect(status(got[0]!)).toMatchObject({ status: 'connected', reason: 'initial connect', symbols: ['AAA', 'BBB'] });
    expect(got.slice(1).map((f) => f.data)).toEqual(['{"ack":"AAA"}', '{"ack":"BBB"}']);
    for (const f of got.slice(1)) {
      expect(f).toMatchObject({ source: 'testvenue', origin: 'testvenue:ws#1' });
      expect(f.channel).toBeUndefined();
    }
    await vi.waitFor(() => expect(server.conns[0]!.closeCode).toBe(1000), { timeout: 3_000 });
  });

  it('sends subscribe messages no faster than subscribeRatePerSec', async () => {
    const server = await startServer(() => {});
    const ctrl = new AbortController();
    const symbols = Array.from({ length: 8 }, (_, i) => `s${i}`);
    const feed = connectVenue(protocol({ subscribeRatePerSec: 20 }), { symbols, wsUrl: server.url, signal: ctrl.signal }, FAST);
    const it = feed[Symbol.asyncIterator]();
    await it.next(); // connected
    await vi.waitFor(() => expect(server.conns[0]?.messages).toHaveLength(8), { timeout: 5_000 });
    const at = server.conns[0]!.messages.map((m) => m.at);
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    // 20/s → one every 50 ms (a few ms of slack for the clocks of two sockets).
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(45);
    expect(at.at(-1)! - at[0]!).toBeGreaterThanOrEqual(7 * 50 - 10);
    expect(at.at(-1)! - at[0]!).toBeLessThan(7 * 50 + 400); // and not much slower
    // The first goes out at once.
    expect(at[0]! - server.conns[0]!.openedAt).toBeLessThan(100);
    // The default is 5 per second.
    ctrl.abort();
    await it.return?.();

    const ctrl2 = new AbortController();
    const feed2 = connectVenue(protocol(), { symbols: ['a', 'b', 'c'], wsUrl: server.url, signal: ctrl2.signal }, FAST);
    const it2 = feed2[Symbol.asyncIterator]();
    await it2.next();
    await vi.waitFor(() => expect(server.conns[1]?.messages).toHaveLength(3), { timeout: 5_000 });
    const at2 = server.conns[1]!.messages.map((m) => m.at);
    expect(at2[1]! - at2[0]!).toBeGreaterThanOrEqual(190);
    expect(at2[2]! - at2[1]!).toBeGreaterThanOrEqual(190);
    ctrl2.abort();
  });

  it('rejects unusable symbols on the first next() without connecting', async () => {
    const server = await startServer(() => {});
    const p = protocol({
      nativeSymbols: (s) => {
        if (s.includes('bad')) throw new Error('cannot subscribe to bad');
        return s;
      },
    });
    for (const symbols of [[], ['bad']]) {
      const it = connectVenue(p, { symbols, wsUrl: server.url }, FAST)[Symbol.asyncIterator]();
      await expect(it.next()).rejects.toMatchObject({ code: ERR.FEED, statusCode: 400 });
    }
    expect(server.conns).toHaveLength(0);
  });

  it('lets onFrame hide frames, reply and emit', async () => {
    const server = await startServer((c) => {
      c.socket.send('{"type":"ping","n":1}');
      c.socket.send('{"type":"data","n":2}');
    });
    const ctrl = new AbortController();
    const p = protocol({
      subscribeMessages: () => [],
      onFrame(data, ctx) {
        if (data.includes('"ping"')) {
          ctx.send('{"type":"pong","n":1}');
          ctx.emit('{"note":"saw a ping"}', 'test:note');
          return false;
        }
        return undefined;
      },
    });
    const got = await collect(connectVenue(p, { symbols: ['x'], wsUrl: server.url, signal: ctrl.signal }, FAST), ctrl, (fs) => fs.length >= 3);
    expect(got.map((f) => [f.channel, f.data])).toEqual([
      [STATUS_CHANNEL, expect.stringContaining('connected')],
      ['test:note', '{"note":"saw a ping"}'],
      [undefined, '{"type":"data","n":2}'],
    ]);
    expect(got[1]!.origin).toBe('testvenue:ws#1 test:note');
    await vi.waitFor(() => expect(server.conns[0]!.messages.map((m) => m.text)).toEqual(['{"type":"pong","n":1}']));
  });
});

describe('connectVenue: failures and reconnects', () => {
  it('reconnects with backoff after a server-side terminate, re-subscribes, and reports the disconnect', async () => {
    const server = await startServer((c) => {
      c.socket.send(`{"conn":${c.index}}`);
      if (c.index === 0) setTimeout(() => c.socket.terminate(), 100);
    });
    const ctrl = new AbortController();
    const logs: string[] = [];
    const feed = connectVenue(protocol(), { symbols: ['aaa'], wsUrl: server.url, signal: ctrl.signal, log: (m) => logs.push(m) }, FAST);
    const got = await collect(feed, ctrl, (fs) => fs.some((f) => f.data === '{"conn":1}'));
    expect(server.conns).toHaveLength(2);
    for (const c of server.conns) await vi.waitFor(() => expect(c.messages.map((m) => m.text)).toEqual(['{"op":"subscribe","symbol":"AAA"}']));
    // connected, {"conn":0}, disconnected (abnormal close), connected, {"conn":1}
    expect(got.map((f) => (f.channel === STATUS_CHANNEL ? status(f).status : f.data))).toEqual(['connected', '{"conn":0}', 'disconnected', 'connected', '{"conn":1}']);
    const st = statuses(got);
    expect(st[1]).toMatchObject({ reason: expect.stringMatching(/^closed \(1006/), symbols: ['AAA'], origin: 'testvenue:ws#1' });
    expect(st[2]).toMatchObject({ reason: 'reconnect', origin: 'testvenue:ws#2' });
    // The connection delivered frames, so the backoff starts at attempt 0: 100 ms (base 200, minimum jitter).
    const downAt = server.conns[0]!.closedAt!;
    const gap = server.conns[1]!.openedAt - downAt;
    expect(gap).toBeGreaterThanOrEqual(95);
    expect(gap).toBeLessThan(600);
    expect(logs.filter((l) => l.includes('reconnecting'))).toHaveLength(1);
  });

  it('backs off exponentially while the venue refuses, and starts over after a connection that delivered frames', async () => {
    const server = await startServer((c) => {
      c.socket.send('{"hello":1}');
      setTimeout(() => c.socket.terminate(), 50);
    });
    server.refuse = 4;
    const ctrl = new AbortController();
    const feed = connectVenue(protocol(), { symbols: ['aaa'], wsUrl: server.url, signal: ctrl.signal }, FAST);
    const t0 = Date.now();
    const got = await collect(feed, ctrl, () => server.conns.length >= 2, 15_000);
    // Refused at ~0, +100, +200, +400 ms (100·2^k), then accepted after another 800 ms.
    const tries = [...server.rejected, server.conns[0]!.openedAt];
    expect(tries[0]! - t0).toBeLessThan(100);
    const gaps = tries.slice(1).map((t, i) => t - tries[i]!);
    const expected = [100, 200, 400, 800];
    gaps.forEach((g, i) => {
      expect(g).toBeGreaterThanOrEqual(expected[i]! - 5);
      expect(g).toBeLessThan(expected[i]! + 250);
    });
    // The first accepted connection delivered a frame: after its loss the delay is back to 100 ms.
    const again = server.conns[1]!.openedAt - server.conns[0]!.closedAt!;
    expect(again).toBeGreaterThanOrEqual(95);
    expect(again).toBeLessThan(400);
    // No status frames for handshakes that never opened; one disconnected for the connection that did.
    expect(statuses(got).map((s) => s.status)).toEqual(['connected', 'disconnected', 'connected']);
  });

  it('caps the backoff and keeps it within [d/2, d]', () => {
    for (let a = 0; a < 40; a++) {
      const d = Math.min(30_000, 500 * 2 ** a);
      expect(backoffDelay(a, () => 0)).toBe(d / 2);
      expect(backoffDelay(a, () => 0.999999)).toBeLessThanOrEqual(d);
    }
    expect(backoffDelay(3, () => 0.5, 100, 1_000)).toBe(600);
  });

  it('stale watchdog: no frame for staleAfterMs → stale, disconnected, reconnect', async () => {
    const server = await startServer((c) => {
      if (c.index > 0) c.socket.send('{"back":true}');
    });
    const ctrl = new AbortController();
    const feed = connectVenue(protocol({ staleAfterMs: 300 }), { symbols: ['aaa'], wsUrl: server.url, signal: ctrl.signal }, FAST);
    const t0 = Date.now();
    const got = await collect(feed, ctrl, (fs) => fs.some((f) => f.data === '{"back":true}'));
    const st = statuses(got);
    expect(st.map((s) => s.status)).toEqual(['connected', 'stale', 'disconnected', 'connected']);
    expect(st[1]!.reason).toMatch(/^no frame for \d+ ms$/);
    expect(Number(/(\d+) ms/.exec(st[1]!.reason)![1])).toBeGreaterThanOrEqual(300);
    expect(st[2]!.reason).toMatch(/^stale: no frame for/);
    const staleAt = got.find((f) => f.channel === STATUS_CHANNEL && f.data.includes('"stale"'))!.recvTs;
    expect(staleAt - t0).toBeGreaterThanOrEqual(300);
    expect(staleAt - t0).toBeLessThan(1_000);
    expect(server.conns).toHaveLength(2);
  });

  it('a connection that keeps sending is not stale', async () => {
    const server = await startServer((c) => {
      const t = setInterval(() => c.socket.readyState === WebSocket.OPEN && c.socket.send('{"tick":1}'), 50);
      c.socket.on('close', () => clearInterval(t));
    });
    const ctrl = new AbortController();
    const feed = connectVenue(protocol({ staleAfterMs: 250 }), { symbols: ['aaa'], wsUrl: server.url, signal: ctrl.signal }, FAST);
    setTimeout(() => ctrl.abort(), 1_000);
    const got = await collect(feed, ctrl, () => false);
    expect(statuses(got).map((s) => s.status)).toEqual(['connected']);
    expect(got.length).toBeGreaterThan(10);
    expect(server.conns).toHaveLength(1);
  });

  it('sends WebSocket pings; a missing pong terminates and reconnects', async () => {
    // This server never answers pings and sends one frame at open; the stale limit is far away, so
    // only the pong check can notice.
    const server = await startServer((c) => c.socket.send(`{"c":${c.index}}`), { autoPong: false });
    const ctrl = new AbortController();
    const feed = connectVenue(protocol({ wsPingIntervalMs: 150, staleAfterMs: 10_000 }), { symbols: ['aaa'], wsUrl: server.url, signal: ctrl.signal }, FAST);
    const got = await collect(feed, ctrl, (fs) => fs.some((f) => f.data === '{"c":1}'));
    const st = statuses(got);
    expect(st.map((s) => s.status)).toEqual(['connected', 'disconnected', 'connected']);
    expect(st[1]!.reason).toBe('no pong within 150 ms');
    expect(server.conns[0]!.pings).toBe(1); // one ping, no pong, dead at the next tick
    const lifetime = server.conns[0]!.closedAt! - server.conns[0]!.openedAt;
    expect(lifetime).toBeGreaterThanOrEqual(290);
    expect(lifetime).toBeLessThan(1_000);
  });

  it('frames prove the socket alive too (a pong may queue behind data)', async () => {
    const server = await startServer(
      (c) => {
        const t = setInterval(() => c.socket.readyState === WebSocket.OPEN && c.socket.send('{"tick":1}'), 30);
        c.socket.on('close', () => clearInterval(t));
      },
      { autoPong: false },
    );
    const ctrl = new AbortController();
    const feed = connectVenue(protocol({ wsPingIntervalMs: 100 }), { symbols: ['aaa'], wsUrl: server.url, signal: ctrl.signal }, FAST);
    setTimeout(() => ctrl.abort(), 700);
    const got = await collect(feed, ctrl, () => false);
    expect(statuses(got).map((s) => s.status)).toEqual(['connected']);
    expect(server.conns).toHaveLength(1);
    expect(server.conns[0]!.pings).toBeGreaterThanOrEqual(4);
  });

  it('a venue that answers pings stays connected', async () => {
    const server = await startServer((c) => {
      const t = setInterval(() => c.socket.readyState === WebSocket.OPEN && c.socket.send('{"tick":1}'), 40);
      c.socket.on('close', () => clearInterval(t));
    });
    const ctrl = new AbortController();
    const feed = connectVenue(protocol({ wsPingIntervalMs: 100 }), { symbols: ['aaa'], wsUrl: server.url, signal: ctrl.signal }, FAST);
    setTimeout(() => ctrl.abort(), 800);
    const got = await collect(feed, ctrl, () => false);
    expect(statuses(got).map((s) => s.status)).toEqual(['connected']);
    expect(server.conns).toHaveLength(1);
    expect(server.conns[0]!.pings).toBeGreaterThanOrEqual(5);
  });

  it('sends the application ping on its period', async () => {
    const server = await startServer(() => {});
    const ctrl = new AbortController();
    const p = protocol({ subscribeMessages: () => [], appPing: { intervalMs: 100, message: 'ping' }, subscribeRatePerSec: 50 });
    const feed = connectVenue(p, { symbols: ['aaa'], wsUrl: server.url, signal: ctrl.signal }, FAST);
    setTimeout(() => ctrl.abort(), 650);
    await collect(feed, ctrl, () => false);
    const msgs = server.conns[0]!.messages;
    expect(msgs.every((m) => m.text === 'ping')).toBe(true);
    expect(msgs.length).toBeGreaterThanOrEqual(5);
    expect(msgs.length).toBeLessThanOrEqual(7);
    const gaps = msgs.slice(1).map((m, i) => m.at - msgs[i]!.at);
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(80);
  });
});

describe('connectVenue: planned reconnect', () => {
  it('opens the successor first, then retires the old connection, with status frames between their frames', async () => {
    const server = await startServer((c) => {
      let n = 0;
      const t = setInterval(() => c.socket.readyState === WebSocket.OPEN && c.socket.send(`{"c":${c.index},"n":${n++}}`), 20);
      c.socket.on('close', () => clearInterval(t));
    });
    const ctrl = new AbortController();
    const logs: string[] = [];
    const feed = connectVenue(protocol({ maxConnectionMs: 400 }), { symbols: ['aaa'], wsUrl: server.url, signal: ctrl.signal, log: (m) => logs.push(m) }, FAST);
    const got = await collect(feed, ctrl, (fs) => fs.filter((f) => f.data.startsWith('{"c":1')).length >= 5);

    expect(server.conns).toHaveLength(2);
    const [a, b] = server.conns as [ServerConn, ServerConn];
    // The successor was open before the old connection closed, and the old one was closed cleanly by us.
    expect(b.openedAt).toBeLessThanOrEqual(a.closedAt!);
    expect(a.closeCode).toBe(1000);
    expect(a.closedAt! - a.openedAt).toBeGreaterThanOrEqual(390);
    // Both subscribed.
    expect(b.messages.map((m) => m.text)).toEqual(['{"op":"subscribe","symbol":"AAA"}']);

    const kinds = got.map((f) => (f.channel === STATUS_CHANNEL ? status(f).status : JSON.parse(f.data).c === 0 ? 'a' : 'b'));
    const iDisc = kinds.indexOf('disconnected');
    expect(kinds[0]).toBe('connected');
    expect(kinds.slice(1, iDisc).every((k) => k === 'a')).toBe(true);
    expect(iDisc).toBeGreaterThan(5);
    expect(kinds[iDisc + 1]).toBe('connected');
    expect(kinds.slice(iDisc + 2).every((k) => k === 'b')).toBe(true);
    const st = statuses(got);
    expect(st[1]).toMatchObject({ status: 'disconnected', reason: 'planned reconnect', origin: 'testvenue:ws#1' });
    expect(st[2]).toMatchObject({ status: 'connected', reason: 'planned reconnect', origin: 'testvenue:ws#2' });
    // The old connection's frames are in order and none is lost before the switch.
    const aNs = got.filter((f) => f.data.startsWith('{"c":0')).map((f) => JSON.parse(f.data).n as number);
    expect(aNs).toEqual(aNs.map((_, i) => i));
    expect(logs.some((l) => l.includes('planned reconnect'))).toBe(true);
  });

  it('keeps the old connection when the successor cannot open, and retries the switch', async () => {
    const server = await startServer((c) => {
      const t = setInterval(() => c.socket.readyState === WebSocket.OPEN && c.socket.send(`{"c":${c.index}}`), 20);
      c.socket.on('close', () => clearInterval(t));
      if (c.index === 0) server.refuse = 2; // the next two handshakes fail
    });
    const ctrl = new AbortController();
    const feed = connectVenue(protocol({ maxConnectionMs: 200 }), { symbols: ['aaa'], wsUrl: server.url, signal: ctrl.signal }, FAST);
    const got = await collect(feed, ctrl, (fs) => fs.some((f) => f.data === '{"c":1}'));
    expect(server.rejected).toHaveLength(2);
    expect(server.conns).toHaveLength(2);
    // The old connection delivered throughout: no disconnect until the switch.
    expect(statuses(got).map((s) => [s.status, s.reason])).toEqual([
      ['connected', 'initial connect'],
      ['disconnected', 'planned reconnect'],
      ['connected', 'planned reconnect'],
    ]);
    expect(server.conns[0]!.closeCode).toBe(1000);
  });
});

describe('connectVenue: abort, backpressure, resync, fetch', () => {
  it('ends the iteration at once on abort (waiting for a frame, or waiting to reconnect) and closes with 1000', async () => {
    const server = await startServer(() => {});
    const ctrl = new AbortController();
    const it = connectVenue(protocol(), { symbols: ['aaa'], wsUrl: server.url, signal: ctrl.signal }, FAST)[Symbol.asyncIterator]();
    expect((await it.next()).value?.channel).toBe(STATUS_CHANNEL);
    const pending = it.next();
    setTimeout(() => ctrl.abort(), 50);
    const t0 = Date.now();
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(Date.now() - t0).toBeLessThan(500);
    await vi.waitFor(() => expect(server.conns[0]!.closeCode).toBe(1000), { timeout: 3_000 });

    // Nobody listening: retries until aborted, then ends promptly.
    const dead = await startServer(() => {});
    const deadUrl = dead.url;
    await dead.close();
    const ctrl2 = new AbortController();
    const logs: string[] = [];
    const feed2 = connectVenue(protocol(), { symbols: ['aaa'], wsUrl: deadUrl, signal: ctrl2.signal, log: (m) => logs.push(m) }, { ...FAST, backoffBaseMs: 2_000 });
    setTimeout(() => ctrl2.abort(), 300);
    const t1 = Date.now();
    expect(await collect(feed2, ctrl2, () => false)).toEqual([]);
    expect(Date.now() - t1).toBeLessThan(900); // the 1 s backoff sleep was cut short
    expect(logs.filter((l) => l.includes('reconnecting'))).toHaveLength(1);

    // Already aborted: nothing, no connection.
    expect(await collect(connectVenue(protocol(), { symbols: ['aaa'], wsUrl: server.url, signal: AbortSignal.abort() }, FAST), new AbortController(), () => false)).toEqual([]);
    expect(server.conns).toHaveLength(1);
  });

  it('breaking out of the loop closes the socket', async () => {
    const server = await startServer((c) => c.socket.send('{"x":1}'));
    for await (const f of connectVenue(protocol(), { symbols: ['aaa'], wsUrl: server.url }, FAST)) {
      if (f.channel !== STATUS_CHANNEL) break;
    }
    await vi.waitFor(() => expect(server.conns[0]!.closeCode).toBe(1000), { timeout: 3_000 });
  });

  it('pauses the socket when the consumer is slow and loses nothing', async () => {
    const pause = vi.spyOn(WebSocket.prototype, 'pause');
    const resume = vi.spyOn(WebSocket.prototype, 'resume');
    const total = 4_000;
    const pad = 'y'.repeat(8_000);
    let serverSocket: WebSocket | undefined;
    const server = await startServer((c) => {
      serverSocket = c.socket;
      for (let i = 0; i < total; i++) c.socket.send(`{"i":${i},"pad":"${pad}"}`);
    });
    const ctrl = new AbortController();
    // A short stale limit: while paused the watchdog must not fire (we are not reading, so silence proves nothing).
    const p = protocol({ staleAfterMs: 150, wsPingIntervalMs: 200 });
    const it = connectVenue(p, { symbols: ['aaa'], wsUrl: server.url, signal: ctrl.signal }, { ...FAST, queueHighWater: 200, queueLowWater: 50 })[Symbol.asyncIterator]();
    expect((await it.next()).value?.channel).toBe(STATUS_CHANNEL);
    expect((await it.next()).value?.data).toContain('"i":0,');
    await sleep(600); // stalled consumer
    expect(pause).toHaveBeenCalled();
    expect(serverSocket!.bufferedAmount).toBeGreaterThan(0); // the rest waits on the server's side
    let expected = 1;
    let inOrder = true;
    const statusFrames: string[] = [];
    while (expected < total) {
      const r = await it.next();
      if (r.done) break;
      if (r.value.channel === STATUS_CHANNEL) {
        statusFrames.push(r.value.data);
        if (statusFrames.length > 3) break;
        continue;
      }
      if (!r.value.data.startsWith(`{"i":${expected},`)) inOrder = false;
      expected++;
    }
    expect(statusFrames).toEqual([]); // no reconnect (no false stale or dead-socket detection)
    expect(expected).toBe(total);
    expect(inOrder).toBe(true);
    expect(resume).toHaveBeenCalled();
    expect(server.conns).toHaveLength(1);
    ctrl.abort();
    expect(await it.next()).toEqual({ done: true, value: undefined });
  });

  it('resync(symbol) calls the protocol with the current connection; before start or while down it is ignored', async () => {
    const server = await startServer(() => {});
    const ctrl = new AbortController();
    const p = protocol({ subscribeRatePerSec: 50 });
    const feed = connectVenue(p, { symbols: ['aaa', 'bbb'], wsUrl: server.url, signal: ctrl.signal }, FAST);
    feed.resync('AAA', 'too early');
    expect(p.resyncs).toEqual([]);
    const it = feed[Symbol.asyncIterator]();
    await it.next();
    feed.resync('BBB', 'gap');
    expect(p.resyncs).toEqual(['BBB']);
    await vi.waitFor(() => expect(server.conns[0]!.messages).toHaveLength(4));
    expect(server.conns[0]!.messages.slice(2).map((m) => m.text)).toEqual(['{"op":"unsubscribe","symbol":"BBB"}', '{"op":"subscribe","symbol":"BBB"}']);
    ctrl.abort();
    await it.next();
  });

  it('ctx.fetchText retries server errors with backoff, fails fast on 4xx, and is cancelled when the connection ends', async () => {
    let hits = 0;
    const http = createServer((req, res) => {
      if (req.url === '/flaky') {
        hits++;
        if (hits <= 2) res.writeHead(500).end('busy');
        else res.writeHead(200).end('{"ok":true}');
      } else if (req.url === '/slow') {
        // never answers
      } else res.writeHead(404).end('no such path');
    });
    httpServers.push(http);
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
    const restUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
    const server = await startServer(() => {});
    let ctx: ConnectionContext | undefined;
    const p = protocol({ subscribeMessages: () => [], onOpen: (c) => (ctx = c) });
    const ctrl = new AbortController();
    const it = connectVenue(p, { symbols: ['aaa'], wsUrl: server.url, restUrl: `${restUrl}/`, signal: ctrl.signal }, { ...FAST, backoffBaseMs: 100 })[Symbol.asyncIterator]();
    await it.next();
    expect(ctx!.restUrl).toBe(restUrl); // trailing slash removed
    const t0 = Date.now();
    expect(await ctx!.fetchText(`${restUrl}/flaky`)).toBe('{"ok":true}');
    expect(hits).toBe(3);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(50 + 100 - 10);
    await expect(ctx!.fetchText(`${restUrl}/missing`)).rejects.toThrow(/HTTP 404: no such path/);
    const slow = ctx!.fetchText(`${restUrl}/slow`);
    setTimeout(() => ctrl.abort(), 100);
    await expect(slow).rejects.toBeInstanceOf(FetchCancelledError);
    await it.next();
  });

  it('can be iterated only once', async () => {
    const feed = connectVenue(protocol(), { symbols: ['aaa'], signal: AbortSignal.abort() }, FAST);
    feed[Symbol.asyncIterator]();
    expect(() => feed[Symbol.asyncIterator]()).toThrow(/only once/);
  });
});
