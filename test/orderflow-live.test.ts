import { afterEach, describe, expect, it } from 'vitest';
import { ERR, VigilError } from '../src/core/errors.ts';
import type { CanonicalEvent, FeedStatus, Order } from '../src/core/events.ts';
import { connectOrderFlow, createOrderFlowNormalizer, orderFlowAdapter, type OrderFlowFeedOptions } from '../src/feeds/orderflow.ts';
import { getAdapter } from '../src/feeds/registry.ts';
import { STATUS_CHANNEL, type Normalizer, type RawFrame } from '../src/feeds/types.ts';
import { TOPICS } from '../src/transport/types.ts';
import { statuses, stopLiveRuns } from './helpers/live-harness.ts';
import { startStreamRun, type StreamConnection, type StreamRun } from './helpers/orderflow-server.ts';

const T0 = 1723161253937;

function order(i: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { venue: 'xvgl', symbol: 'BTC-USDT', ts: T0 + i, orderId: `o${i}`, account: 'acc-1', side: 'buy', price: 60_000 + i, qty: 0.5, action: 'new', ...over };
}

type Run = StreamRun<ReturnType<typeof createOrderFlowNormalizer>, Order>;

afterEach(stopLiveRuns);

/** A live feed against the local server, through an Ingestor on a MemoryTransport (as `vigil run` does). */
async function start(options: Omit<OrderFlowFeedOptions, 'wsUrl' | 'signal'>, onSubscribed: (conn: StreamConnection, first: boolean) => void): Promise<Run> {
  return startStreamRun('order', onSubscribed, TOPICS.order, createOrderFlowNormalizer, (wsUrl, signal) =>
    connectOrderFlow({ ...options, wsUrl, signal }, { backoffBaseMs: 20, backoffCapMs: 100 }),
  );
}

const orders = (events: CanonicalEvent[]): Order[] => events.filter((e): e is Order => e.kind === 'order');

describe('orderflow live connection against a local stream server', () => {
  it('subscribes with the symbol and account filters and turns new/replace/cancel/fill messages and batches into order events', async () => {
    const run = await start({ symbols: ['btc-usdt', 'ETH-USDT'], accounts: ['acc-1'] }, (conn) => {
      conn.publish([
        order(1),
        order(2, { action: 'replace', orderId: 'o2', origOrderId: 'o1', price: 60_001.5 }),
        order(3, { account: 'acc-2' }), // filtered out by the server
        order(4, { action: 'cancel', orderId: 'o2' }),
        order(5, { action: 'fill', side: 'sell', symbol: 'ETH-USDT', price: 3000, fillQty: 0.25, fillPrice: 2999.5, counterpartyAccount: 'acc-9' }),
      ]);
      conn.publishBatch([order(6, { symbol: 'ETH-USDT' }), order(7, { account: 'acc-3' }), order(8, { side: 'sell', price: '60010', qty: '1.25', ts: '2024-08-09T00:00:00.008Z' })]);
      conn.heartbeat(T0 + 100);
    });
    await run.until(() => orders(run.events).length >= 6);
    await run.until(() => run.ignored.includes('heartbeat'));
    await run.stop();

    expect(run.server.connections).toHaveLength(1);
    expect(run.server.connections[0]!.received).toEqual(['{"type":"subscribe","symbols":["BTC-USDT","ETH-USDT"],"accounts":["acc-1"]}']);
    // The first frame is the connection's status frame, then the server's ack.
    expect(run.frames[0]).toMatchObject({ source: 'orderflow', channel: STATUS_CHANNEL });
    expect(JSON.parse(run.frames[1]!.data)).toEqual({ type: 'subscribed', symbols: ['BTC-USDT', 'ETH-USDT'], accounts: ['acc-1'], seq: 0 });
    expect(run.ignored).toEqual(['subscribed', 'heartbeat']);

    const recvTs = run.frames[2]!.recvTs;
    expect(statuses(run.events).map((s) => [s.venue, s.symbol, s.status, s.reason])).toEqual([
      ['orderflow', 'BTC-USDT', 'connected', 'initial connect'],
      ['orderflow', 'ETH-USDT', 'connected', 'initial connect'],
    ]);
    const got = orders(run.events);
    expect(got.map((o) => [o.orderId, o.action, o.symbol, o.account, o.side, o.price, o.qty, o.ts])).toEqual([
      ['o1', 'new', 'BTC-USDT', 'acc-1', 'buy', 60_001, 0.5, T0 + 1],
      ['o2', 'replace', 'BTC-USDT', 'acc-1', 'buy', 60_001.5, 0.5, T0 + 2],
      ['o2', 'cancel', 'BTC-USDT', 'acc-1', 'buy', 60_004, 0.5, T0 + 4],
      ['o5', 'fill', 'ETH-USDT', 'acc-1', 'sell', 3000, 0.5, T0 + 5],
      ['o6', 'new', 'ETH-USDT', 'acc-1', 'buy', 60_006, 0.5, T0 + 6],
      ['o8', 'new', 'BTC-USDT', 'acc-1', 'sell', 60_010, 1.25, Date.UTC(2024, 7, 9, 0, 0, 0, 8)],
    ]);
    expect(got[1]!.origOrderId).toBe('o1');
    expect(got[3]).toMatchObject({ fillQty: 0.25, fillPrice: 2999.5, counterpartyAccount: 'acc-9', venue: 'xvgl' });
    expect(got[0]!.recvTs).toBe(recvTs);
    expect(run.normalizer.sequenceReport()).toEqual({ gaps: 0, missed: 0 });
    expect(run.dlq).toEqual([]);
    // The same events went onto vigil.orders.
    expect(run.onTopic.map((o) => `${o.orderId}:${o.action}`)).toEqual(['o1:new', 'o2:replace', 'o2:cancel', 'o5:fill', 'o6:new', 'o8:new']);
  });

  it('a dropped connection reconnects, re-subscribes with the same filters and reports disconnected/connected; seq restarts without a false gap', async () => {
    let n = 0;
    const run = await start({ symbols: ['BTC-USDT'], accounts: ['acc-1'] }, (conn) => {
      if (conn.index === 0) {
        conn.publish([order(++n), order(++n)]);
        setTimeout(() => conn.drop(), 30);
      } else {
        conn.publish([order(++n), order(++n)]);
        conn.heartbeat();
      }
    });
    await run.until(() => orders(run.events).length >= 4);
    await run.until(() => run.ignored.filter((l) => l === 'heartbeat').length >= 1);
    await run.stop();

    expect(run.server.connections).toHaveLength(2);
    for (const c of run.server.connections) expect(c.received).toEqual(['{"type":"subscribe","symbols":["BTC-USDT"],"accounts":["acc-1"]}']);
    const st = statuses(run.events);
    expect(st.map((s) => [s.symbol, s.status])).toEqual([
      ['BTC-USDT', 'connected'],
      ['BTC-USDT', 'disconnected'],
      ['BTC-USDT', 'connected'],
    ]);
    expect(st[1]!.reason).toMatch(/^closed \(1006/);
    expect(st[2]!.reason).toBe('reconnect');
    expect(orders(run.events).map((o) => o.orderId)).toEqual(['o1', 'o2', 'o3', 'o4']);
    // The second connection's messages start again at seq 1: not a repeat, not a gap.
    expect(run.frames.filter((f) => f.channel === undefined && f.data.includes('"type":"order"')).map((f) => JSON.parse(f.data).seq)).toEqual([1, 2, 1, 2]);
    expect(run.normalizer.sequenceReport()).toEqual({ gaps: 0, missed: 0 });
    expect(run.dlq).toEqual([]);
  });

  it('a sequence gap → a gap status "sequence gap" for every symbol of the stream, counted; no reconnect', async () => {
    const run = await start({ symbols: ['all'] }, (conn) => {
      conn.publish([order(1), order(2, { symbol: 'ETH-USDT' })]);
      conn.skip(3); // seq 3, 4, 5 lost
      conn.publish([order(6)]);
      conn.skip(1); // seq 7 lost, noticed by the heartbeat that states seq 7
      conn.heartbeat();
      conn.publish([order(8, { symbol: 'SOL-USDT' })]);
    });
    await run.until(() => orders(run.events).length >= 4);
    await run.stop();

    expect(run.server.connections).toHaveLength(1);
    // `all` subscribes without a symbols filter.
    expect(run.server.connections[0]!.received).toEqual(['{"type":"subscribe"}']);
    expect(run.events.map((e) => (e.kind === 'order' ? `order ${e.orderId}` : `${e.kind} ${(e as FeedStatus).symbol} ${(e as FeedStatus).status} ${(e as FeedStatus).reason}`))).toEqual([
      // Nothing seen yet at connect: a subscription to all symbols names none.
      'order o1',
      'order o2',
      'status BTC-USDT gap sequence gap: 3 messages missed (seq 3 to 5 never arrived)',
      'status ETH-USDT gap sequence gap: 3 messages missed (seq 3 to 5 never arrived)',
      'order o6',
      'status BTC-USDT gap sequence gap: 1 message missed (seq 7 never arrived)',
      'status ETH-USDT gap sequence gap: 1 message missed (seq 7 never arrived)',
      'order o8',
    ]);
    expect(run.normalizer.sequenceReport()).toEqual({ gaps: 2, missed: 4 });
    expect(run.dlq).toEqual([]);
    expect(run.ingestor.counters.events.status).toBe(4);
  });

  it('a malformed message becomes a dead letter with the failing field and the raw text, and the feed continues', async () => {
    const bad = JSON.stringify({ type: 'order', seq: 2, data: order(2, { price: 'abc' }) });
    const run = await start({ symbols: ['BTC-USDT'] }, (conn) => {
      conn.publish([order(1)]);
      conn.seq++;
      conn.sendText(bad);
      conn.sendText('{"type":"order","seq":3,"data":');
      conn.seq++;
      conn.publishRaw(order(4, { side: 'both' }));
      conn.publish([order(5)]);
    });
    await run.until(() => orders(run.events).length >= 2);
    await run.until(() => run.dlq.length >= 3);
    await run.stop();

    expect(run.dlq.map((d) => [d.source, d.reason])).toEqual([
      ['orderflow', 'order.price: Invalid input: expected number, received NaN (got "abc")'],
      ['orderflow', expect.stringMatching(/^invalid JSON: /)],
      // The unreadable message had seq 3: the next one shows the gap.
      ['orderflow', 'order.side: Invalid option: expected one of "buy"|"sell" (got "both") (after a sequence gap of 1)'],
    ]);
    expect(run.dlq[0]!.raw).toBe(bad);
    expect(run.dlq[1]!.raw).toBe('{"type":"order","seq":3,"data":');
    expect(run.dlq[0]!.origin).toBe('orderflow:ws#1');
    expect(run.ingestor.counters.malformed).toBe(3);
    expect(run.onTopic.map((o) => o.orderId)).toEqual(['o1', 'o5']);
    // A readable broken message consumed its seq (no gap after seq 2); the unreadable seq 3 is a gap,
    // reported with the next good frame since the frame that revealed it was broken too.
    expect(run.normalizer.sequenceReport()).toEqual({ gaps: 1, missed: 1 });
    expect(run.events.map((e) => (e.kind === 'order' ? e.orderId : `${(e as FeedStatus).status}: ${(e as FeedStatus).reason}`))).toEqual([
      'connected: initial connect',
      'o1',
      'gap: sequence gap: 1 message missed (seq 3 never arrived)',
      'o5',
    ]);
  });

  it('requires the stream URL (a clear configuration error) and rejects non-canonical symbols', async () => {
    let err: unknown;
    try {
      orderFlowAdapter.connect!({ symbols: ['BTC-USDT'] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VigilError);
    expect((err as VigilError).code).toBe(ERR.CONFIG);
    expect((err as VigilError).message).toContain('--feed orderflow');
    expect((err as VigilError).message).toContain('VIGIL_FEED_URLS=orderflow=');

    const feed = orderFlowAdapter.connect!({ symbols: ['btcusdt'], wsUrl: 'ws://127.0.0.1:9' });
    await expect(feed[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: ERR.FEED, message: expect.stringContaining('"btcusdt" is not a canonical symbol') });
    expect(getAdapter('orderflow')).toBe(orderFlowAdapter);
  });
});

describe('orderflow normalizer on hand-made frames', () => {
  const frame = (data: unknown, extra: Partial<RawFrame> = {}): RawFrame => ({ recvTs: T0 + 1000, source: 'orderflow', data: typeof data === 'string' ? data : JSON.stringify(data), ...extra });
  const run = (n: Normalizer, data: unknown, extra: Partial<RawFrame> = {}) => {
    const out: CanonicalEvent[] = [];
    const label = n.normalize(frame(data, extra), out);
    return { out, label };
  };
  const reason = (n: Normalizer, data: unknown): string => {
    try {
      run(n, data);
    } catch (e) {
      expect((e as Error).name).toBe('MalformedFrameError');
      return (e as Error).message;
    }
    throw new Error('expected a MalformedFrameError');
  };

  it('maps a full order with every optional field and coerces numeric text, numeric ids and ISO times', () => {
    const n = createOrderFlowNormalizer();
    const { out, label } = run(n, {
      type: 'order',
      seq: 1,
      data: { venue: 'xvgl', symbol: 'btc-usdt', ts: '2024-08-08T23:54:13.937Z', orderId: 12345, account: 77, side: 'sell', price: '60000.5', qty: '2', action: 'fill', fillQty: '1.5', fillPrice: 60000.25, counterpartyAccount: 'c-1', extra: 'dropped' },
    });
    expect(label).toBeUndefined();
    expect(out).toEqual([
      {
        kind: 'order',
        venue: 'xvgl',
        symbol: 'BTC-USDT',
        ts: Date.UTC(2024, 7, 8, 23, 54, 13, 937),
        recvTs: T0 + 1000,
        orderId: '12345',
        account: '77',
        side: 'sell',
        price: 60000.5,
        qty: 2,
        action: 'fill',
        fillQty: 1.5,
        fillPrice: 60000.25,
        counterpartyAccount: 'c-1',
      },
    ]);
  });

  it('names the failing field, the batch index and protocol problems', () => {
    const n = createOrderFlowNormalizer();
    expect(reason(n, { type: 'orders', seq: 1, data: [order(1), order(2, { side: 'x' })] })).toBe('orders[1].side: Invalid option: expected one of "buy"|"sell" (got "x")');
    expect(reason(n, { type: 'order', seq: 2, data: order(3, { action: 'fill' }) })).toBe('order.fillQty: required for action "fill"');
    expect(reason(n, { type: 'order', seq: 3, data: order(4, { symbol: 'BTCUSDT' }) })).toBe('order.symbol: symbol must be BASE-QUOTE, e.g. BTC-USDT (got "BTCUSDT")');
    expect(reason(n, { type: 'order', seq: 4, data: order(5, { orderId: undefined }) })).toBe('order.orderId: required');
    expect(reason(n, { type: 'order', seq: 5, data: order(6, { ts: 'yesterday' }) })).toMatch(/^order\.ts: expected an ISO-8601 time/);
    expect(reason(n, { type: 'order', seq: 6, data: order(7, { kind: 'trade' }) })).toBe('order.kind: expected "order", got "trade"');
    expect(reason(n, { type: 'order', seq: 7, data: 'x' })).toBe('order: expected an object with the order\'s fields, got "x"');
    expect(reason(n, { type: 'orders', seq: 8, data: {} })).toBe('orders: data must be an array, got {}');
    expect(reason(n, { type: 'order', data: order(9) })).toBe('order: seq must be a positive integer, got missing');
    expect(reason(n, { type: 'order', seq: 8, data: order(9) })).toBe('order: seq 8 repeats or goes back (last was 8)');
    expect(reason(n, { type: 'heartbeat' })).toBe('heartbeat.ts must be epoch ms, got missing');
    expect(reason(n, { type: 'heartbeat', ts: T0, seq: 3 })).toBe('heartbeat: seq 3 is behind the last message (8)');
    expect(reason(n, { type: 'error', code: 'bad_subscribe', message: 'symbols must be an array' })).toBe('server error "bad_subscribe": symbols must be an array');
    expect(reason(n, { type: 'trade' })).toBe('unknown message type "trade" (expected order, orders, heartbeat, subscribed or error)');
    expect(reason(n, [1, 2])).toBe('expected a message {"type":…}, got "[1,2]"');
    // A gap and a broken message in one frame: the reason says both.
    expect(reason(n, { type: 'order', seq: 10, data: order(10, { qty: -1 }) })).toBe('order.qty: Too small: expected number to be >=0 (got -1) (after a sequence gap of 1)');
    expect(n.sequenceReport()).toEqual({ gaps: 1, missed: 1 });
    // The gap's status goes out with the next good frame, before its events.
    const next = run(n, { type: 'order', seq: 11, data: order(11) });
    expect(next.out.map((e) => (e.kind === 'status' ? `${e.symbol} ${e.status} ${e.reason}` : e.kind))).toEqual(['BTC-USDT gap sequence gap: 1 message missed (seq 9 never arrived)', 'order']);
    expect(next.out[0]!.recvTs).toBe(T0 + 1000);
  });

  it('labels acks and heartbeats; a status frame resets the numbering and names subscribed and seen symbols', () => {
    const n = createOrderFlowNormalizer();
    expect(run(n, { type: 'subscribed', symbols: null, accounts: null, seq: 0 }).label).toBe('subscribed');
    expect(run(n, { type: 'order', seq: 1, data: order(1, { symbol: 'ETH-USDT' }) }).out).toHaveLength(1);
    expect(run(n, { type: 'heartbeat', ts: T0, seq: 1 }).label).toBe('heartbeat');
    expect(run(n, { type: 'heartbeat', ts: T0 }).label).toBe('heartbeat');
    const status = run(n, { status: 'disconnected', reason: 'closed (1006)', symbols: ['*'] }, { channel: STATUS_CHANNEL });
    expect(status.out.map((e) => [(e as FeedStatus).symbol, (e as FeedStatus).status, (e as FeedStatus).reason])).toEqual([['ETH-USDT', 'disconnected', 'closed (1006)']]);
    const connected = run(n, { status: 'connected', reason: 'reconnect', symbols: ['BTC-USDT'] }, { channel: STATUS_CHANNEL });
    expect(connected.out.map((e) => (e as FeedStatus).symbol)).toEqual(['BTC-USDT', 'ETH-USDT']);
    // The new connection starts at seq 1 again.
    expect(run(n, { type: 'order', seq: 1, data: order(2) }).out).toHaveLength(1);
    expect(n.sequenceReport()).toEqual({ gaps: 0, missed: 0 });
    expect(() => run(n, '{"status":"up"}', { channel: STATUS_CHANNEL })).toThrow(/status frame: expected \{status, reason, symbols\}/);
  });
});
