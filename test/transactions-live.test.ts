import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { ERR, VigilError } from '../src/core/errors.ts';
import type { CanonicalEvent, FeedStatus, Transaction } from '../src/core/events.ts';
import { connectMapped, MAPPING_CHANNEL_PREFIX, MappedNormalizer, mappedAdapter } from '../src/feeds/mapping.ts';
import { getAdapter } from '../src/feeds/registry.ts';
import {
  connectTransactions,
  createTransactionsNormalizer,
  transactionsAdapter,
  TX_STREAM_SYMBOL,
  type TransactionFeedOptions,
} from '../src/feeds/transactions.ts';
import { STATUS_CHANNEL, type RawFrame } from '../src/feeds/types.ts';
import { MemoryTransport } from '../src/transport/memory.ts';
import { TOPICS } from '../src/transport/types.ts';
import { atStopLiveRuns, startLiveRun, statuses, stopLiveRuns } from './helpers/live-harness.ts';
import { startStreamRun, type StreamConnection, type StreamRun } from './helpers/orderflow-server.ts';

const T0 = 1723108502120;
const EXAMPLES = fileURLToPath(new URL('../docs/feeds/examples/', import.meta.url));

function tx(i: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { source: 'acme', id: `t${i}`, ts: T0 + i, account: 'acc-1', amount: 10 + i, currency: 'EUR', direction: 'debit', channel: 'card_present', ...over };
}

type Run = StreamRun<ReturnType<typeof createTransactionsNormalizer>, Transaction>;

afterEach(stopLiveRuns);

async function start(options: Omit<TransactionFeedOptions, 'wsUrl' | 'signal'>, onSubscribed: (conn: StreamConnection, first: boolean) => void): Promise<Run> {
  return startStreamRun('transaction', onSubscribed, TOPICS.transaction, createTransactionsNormalizer, (wsUrl, signal) =>
    connectTransactions({ ...options, wsUrl, signal }, { backoffBaseMs: 20, backoffCapMs: 100 }),
  );
}

const txs = (events: CanonicalEvent[]): Transaction[] => events.filter((e): e is Transaction => e.kind === 'transaction');

describe('transactions live connection against a local stream server', () => {
  it('subscribes with the account (the feed\'s "symbols") and source filters and turns messages and batches into transaction events', async () => {
    const run = await start({ symbols: ['acc-1', 'acc-2'], sources: ['acme'] }, (conn) => {
      conn.publish([
        tx(1, { counterparty: 'm-1', merchant: 'Corner Shop', terminal: 't-9', mcc: 5411, country: 'FR', lat: 48.85, lon: 2.35 }),
        tx(2, { account: 'acc-3' }), // not subscribed
        tx(3, { account: 'acc-2', source: 'other' }), // other source
        tx(4, { account: 'acc-2', amount: '-25.5', direction: 'credit', ts: '2024-08-08T09:15:02.124Z', device: 'd-1', ip: '203.0.113.7' }),
      ]);
      conn.publishBatch([tx(5), tx(6, { account: 'acc-9' }), tx(7, { account: 'acc-2', id: 777 })]);
      conn.heartbeat();
    });
    await run.until(() => txs(run.events).length >= 4 && run.ignored.includes('heartbeat'));
    await run.stop();

    expect(run.server.connections[0]!.received).toEqual(['{"type":"subscribe","accounts":["acc-1","acc-2"],"sources":["acme"]}']);
    expect(JSON.parse(run.frames[1]!.data)).toEqual({ type: 'subscribed', accounts: ['acc-1', 'acc-2'], sources: ['acme'], seq: 0 });
    expect(statuses(run.events).map((s) => [s.venue, s.symbol, s.status, s.reason])).toEqual([['transactions', TX_STREAM_SYMBOL, 'connected', 'initial connect']]);
    const got = txs(run.events);
    expect(got).toHaveLength(4);
    const recvTs = run.frames[2]!.recvTs;
    expect(got[0]).toEqual({
      kind: 'transaction',
      source: 'acme',
      id: 't1',
      ts: T0 + 1,
      recvTs,
      account: 'acc-1',
      counterparty: 'm-1',
      amount: 11,
      currency: 'EUR',
      direction: 'debit',
      channel: 'card_present',
      merchant: 'Corner Shop',
      terminal: 't-9',
      mcc: '5411',
      country: 'FR',
      lat: 48.85,
      lon: 2.35,
    });
    expect(got.slice(1).map((t) => [t.id, t.account, t.amount, t.direction, t.ts])).toEqual([
      ['t4', 'acc-2', -25.5, 'credit', T0 + 4],
      ['t5', 'acc-1', 15, 'debit', T0 + 5],
      ['777', 'acc-2', 17, 'debit', T0 + 7],
    ]);
    expect(got[1]).toMatchObject({ device: 'd-1', ip: '203.0.113.7' });
    expect(run.ignored).toEqual(['subscribed', 'heartbeat']);
    expect(run.dlq).toEqual([]);
    expect(run.onTopic.map((t) => t.id)).toEqual(['t1', 't4', 't5', '777']);
  });

  it('a dropped connection reconnects and re-subscribes; the stream reports disconnected and connected under TX-STREAM', async () => {
    let i = 0;
    const run = await start({ symbols: ['all'] }, (conn) => {
      conn.publish([tx(++i), tx(++i)]);
      if (conn.index === 0) setTimeout(() => conn.drop(), 30);
    });
    await run.until(() => txs(run.events).length >= 4);
    await run.stop();

    expect(run.server.connections).toHaveLength(2);
    // `all` means no account filter.
    for (const c of run.server.connections) expect(c.received).toEqual(['{"type":"subscribe"}']);
    expect(statuses(run.events).map((s) => [s.symbol, s.status, s.reason.replace(/\(1006.*\)/, '(1006)')])).toEqual([
      [TX_STREAM_SYMBOL, 'connected', 'initial connect'],
      [TX_STREAM_SYMBOL, 'disconnected', 'closed (1006)'],
      [TX_STREAM_SYMBOL, 'connected', 'reconnect'],
    ]);
    expect(txs(run.events).map((t) => t.id)).toEqual(['t1', 't2', 't3', 't4']);
    expect(run.normalizer.sequenceReport()).toEqual({ gaps: 0, missed: 0 });
  });

  it('a sequence gap → a gap status "sequence gap" for TX-STREAM, counted', async () => {
    const run = await start({ symbols: [] }, (conn) => {
      conn.publish([tx(1)]);
      conn.skip(2);
      conn.publishBatch([tx(4), tx(5)]);
    });
    await run.until(() => txs(run.events).length >= 3);
    await run.stop();
    expect(run.events.map((e) => (e.kind === 'transaction' ? e.id : `${(e as FeedStatus).symbol} ${(e as FeedStatus).status}: ${(e as FeedStatus).reason}`))).toEqual([
      `${TX_STREAM_SYMBOL} connected: initial connect`,
      't1',
      `${TX_STREAM_SYMBOL} gap: sequence gap: 2 messages missed (seq 2 to 3 never arrived)`,
      't4',
      't5',
    ]);
    expect(run.normalizer.sequenceReport()).toEqual({ gaps: 1, missed: 2 });
  });

  it('malformed messages become dead letters naming the field, and the feed continues', async () => {
    const run = await start({ symbols: ['all'] }, (conn) => {
      conn.publishRaw(tx(1, { amount: 'abc' }));
      conn.publishRaw(tx(2, { currency: 'E' }));
      conn.publishBatch([tx(3), tx(4, { direction: 'sideways' })]);
      conn.sendText('{"type":"refund","seq":9}');
      conn.publish([tx(5)]);
    });
    await run.until(() => txs(run.events).length >= 1 && run.dlq.length >= 4);
    await run.stop();
    expect(run.dlq.map((d) => d.reason)).toEqual([
      'transaction.amount: Invalid input: expected number, received NaN (got "abc")',
      'transaction.currency: Too small: expected string to have >=3 characters (got "E")',
      'transactions[1].direction: Invalid option: expected one of "debit"|"credit" (got "sideways")',
      'unknown message type "refund" (expected transaction, transactions, heartbeat, subscribed or error)',
    ]);
    expect(run.dlq[0]!.raw).toBe(JSON.stringify({ type: 'transaction', seq: 1, data: tx(1, { amount: 'abc' }) }));
    expect(run.dlq.every((d) => d.source === 'transactions' && d.origin === 'transactions:ws#1')).toBe(true);
    expect(run.onTopic.map((t) => t.id)).toEqual(['t5']);
    expect(run.normalizer.sequenceReport()).toEqual({ gaps: 0, missed: 0 });
  });

  it('requires the stream URL (a clear configuration error)', () => {
    let err: unknown;
    try {
      transactionsAdapter.connect!({ symbols: ['all'] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VigilError);
    expect(err).toMatchObject({ code: ERR.CONFIG, message: expect.stringContaining('--feed transactions needs') });
    expect(getAdapter('transactions')).toBe(transactionsAdapter);
    expect(getAdapter('mapped')).toBe(mappedAdapter);
  });
});

// ---------------------------------------------------------------- a provider's own format: the mapped adapter

const CARD_MAPPING = `${EXAMPLES}card-processor.json`;
const CARD_LINES = readFileSync(`${EXAMPLES}card-processor.jsonl`, 'utf8').trim().split('\n');

describe('mapped adapter: a provider JSON stream through a mapping file', () => {
  it('sends the mapping\'s subscribe message, maps records, ignores heartbeats, reports a seq gap and dead-letters a bad record; a recording replays alike', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((r) => wss.once('listening', () => r()));
    const received: string[] = [];
    wss.on('connection', (socket) => {
      socket.on('message', (d) => {
        received.push(d.toString());
        for (const line of CARD_LINES) socket.send(line); // ack, 5 auth messages (one bad record), a heartbeat
        socket.send(JSON.stringify({ event: 'auth', seq: 8, txn: { txn_id: 'a-1008', card: { pan_hash: 'pan-1' }, amount_minor: 1, created: '2024-08-08T10:00:00Z', dc: 'C', entry_mode: 'chip' } }));
      });
    });
    atStopLiveRuns(() => new Promise<void>((r) => wss.close(() => r())));
    const normalizer = new MappedNormalizer();
    const run = await startLiveRun<MappedNormalizer, Transaction>({
      createNormalizer: () => normalizer,
      connect: (signal) => connectMapped({ symbols: [], wsUrl: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, mapping: CARD_MAPPING, signal }),
      transport: new MemoryTransport({ partitions: 1 }),
      dataTopic: TOPICS.transaction,
    });
    await run.until(() => txs(run.events).length >= 6 && run.dlq.length >= 1);
    await run.stop();

    expect(received).toEqual(['{"op":"subscribe","channel":"authorizations"}']);
    expect(run.ignored).toEqual(['subscribed', 'hb']);
    const data = run.frames.filter((f) => f.channel !== STATUS_CHANNEL);
    expect(data.map((f) => f.channel)).toEqual(CARD_LINES.map(() => `${MAPPING_CHANNEL_PREFIX}${CARD_MAPPING}`).concat(`${MAPPING_CHANNEL_PREFIX}${CARD_MAPPING}`));
    expect(data.map((f) => f.data)).toEqual([...CARD_LINES, expect.stringContaining('a-1008')]);

    const got = txs(run.events);
    expect(got.map((t) => [t.id, t.account, t.amount, t.currency, t.direction, t.channel, t.ts])).toEqual([
      ['a-1001', 'pan-7f3a', 12.5, 'EUR', 'debit', 'card_present', Date.UTC(2024, 7, 8, 9, 15, 2, 120)],
      ['a-1002', 'pan-7f3a', 899.99, 'EUR', 'debit', 'card_not_present', Date.UTC(2024, 7, 8, 9, 15, 40)],
      ['a-1003', 'pan-11c0', 5, 'EUR', 'credit', 'card_present', Date.UTC(2024, 7, 8, 7, 16)],
      ['a-1005', 'pan-9d2e', 1, 'EUR', 'debit', 'card_present', Date.UTC(2024, 7, 8, 9, 18)],
      ['a-1006', 'pan-9d2e', 1, 'EUR', 'debit', 'card_present', Date.UTC(2024, 7, 8, 9, 18, 1)],
      ['a-1008', 'pan-1', 0.01, 'EUR', 'credit', 'card_present', Date.UTC(2024, 7, 8, 10)],
    ]);
    expect(got[0]).toMatchObject({ source: 'acme', counterparty: 'm-42', merchant: 'Corner Shop', terminal: 't-9', mcc: '5411', country: 'FR', lat: 48.8566, lon: 2.3522 });
    expect(got[0]!.recvTs).toBe(data[1]!.recvTs);
    expect(run.dlq).toEqual([
      expect.objectContaining({ source: 'mapped', reason: 'direction (from "dc"): value "X" is not in the map ("D", "C")', raw: CARD_LINES[5] }),
    ]);
    expect(statuses(run.events).map((s) => [s.venue, s.symbol, s.status, s.reason])).toEqual([
      ['mapped', 'ACME-STREAM', 'connected', 'initial connect'],
      ['mapped', 'ACME-STREAM', 'gap', 'sequence gap: 2 messages missed (seq 6 to 7 never arrived)'],
    ]);
    expect(normalizer.sequenceReport()).toEqual({ [CARD_MAPPING]: { gaps: 1, missed: 2 } });

    // The frames as a recording would hold them replay to the same events through a fresh normalizer.
    const again = new MappedNormalizer();
    const replayed: CanonicalEvent[] = [];
    for (const f of run.frames as RawFrame[]) {
      const out: CanonicalEvent[] = [];
      try {
        again.normalize(f, out);
      } catch {
        continue;
      }
      replayed.push(...out);
    }
    expect(replayed).toEqual(run.events);
  });

  it('needs a URL and a valid mapping file', () => {
    expect(() => connectMapped({ symbols: [], mapping: CARD_MAPPING })).toThrow(/--feed mapped needs the provider's WebSocket URL/);
    expect(() => connectMapped({ symbols: [], wsUrl: 'ws://127.0.0.1:9' } as never)).toThrow(/needs a mapping file/);
    expect(() => connectMapped({ symbols: [], wsUrl: 'ws://127.0.0.1:9', mapping: `${EXAMPLES}nope.json` })).toThrow(/nope\.json: no such file/);
    const n = new MappedNormalizer();
    expect(() => n.normalize({ recvTs: 1, source: 'mapped', data: '{}' }, [])).toThrow(/mapped frame without its mapping/);
    expect(() => n.normalize({ recvTs: 1, source: 'mapped', data: '{}', channel: `${MAPPING_CHANNEL_PREFIX}${EXAMPLES}nope.json` }, [])).toThrow(/no such file/);
  });
});
