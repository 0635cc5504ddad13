/**
 * How events reach detectors beyond their message key: status markers in order with the data of each
 * topic, views (copies keyed by the counterparty or merchant), keyOf (one state per symbol across venues,
 * on one partition thanks to routing by symbol), and each transaction's risk score from its rules' signals.
 */
import { describe, expect, it } from 'vitest';
import type { CanonicalEvent, EventKind, EventView, FeedStatus, Quote, Trade, Transaction } from '../src/core/events.ts';
import type { DetectorInstance, FindingDraft, RiskSignal } from '../src/detectors/types.ts';
import { DetectorRunner } from '../src/pipeline/detect.ts';
import { Ingestor } from '../src/pipeline/ingest.ts';
import { noisyOr, type TxRisk } from '../src/pipeline/risk-score.ts';
import { MemoryTransport } from '../src/transport/memory.ts';
import { partitionFor } from '../src/transport/partitioner.ts';
import { TOPICS } from '../src/transport/types.ts';

const T0 = Date.UTC(2024, 7, 8, 12, 0, 0);

/** Records, per state key, what it saw (kind:ref), and optionally pushes a signal per transaction. */
function recorder(name: string, kinds: EventKind[], extra: Pick<Partial<DetectorInstance>, 'view' | 'keyOf'> & { signal?: (tx: Transaction) => number } = {}): DetectorInstance<{ key: string; seen: string[] }> & { log: Map<string, string[]> } {
  const log = new Map<string, string[]>();
  const { signal, ...rest } = extra as Partial<DetectorInstance<{ key: string; seen: string[] }>> & { signal?: (tx: Transaction) => number };
  return {
    name,
    ruleId: `${name}.r`,
    kinds,
    log,
    newState: (key) => {
      const s = { key, seen: [] as string[] };
      log.set(key, s.seen);
      return s;
    },
    onEvent(s, ev: CanonicalEvent, _out: FindingDraft[], signals?: RiskSignal[]) {
      s.seen.push(`${ev.kind}:${ev.kind === 'status' ? ev.status : ev.kind === 'transaction' ? ev.id : ev.ts - T0}`);
      if (signal && ev.kind === 'transaction' && signals) {
        const score = signal(ev);
        if (score > 0) signals.push({ detector: name, ruleId: `${name}.r`, score, reason: `${name} says ${score}` });
      }
    },
    toJSON: (s) => s,
    fromJSON: (j) => j as { key: string; seen: string[] },
    ...rest,
  };
}

async function pipeline(detectors: DetectorInstance[], events: CanonicalEvent[], partitions = 4): Promise<{ risk: TxRisk[]; runner: DetectorRunner }> {
  const transport = new MemoryTransport({ partitions });
  const risk: TxRisk[] = [];
  await transport.subscribe<TxRisk>({ group: 'risk', topics: [TOPICS.txRisk], eachBatch: (b) => void risk.push(...b.messages.map((m) => m.value)) });
  const runner = new DetectorRunner(transport, detectors, 'live');
  await runner.start();
  const ingestor = new Ingestor(transport, { batchSize: 7 });
  for (const ev of events) await ingestor.pushEvent(ev);
  await ingestor.flush();
  await transport.drain();
  await runner.stop();
  await transport.close();
  return { risk, runner };
}

const trade = (i: number, venue = 'binance'): Trade => ({ kind: 'trade', venue, symbol: 'BTC-USDT', ts: T0 + i, recvTs: T0 + i, price: 100, qty: 1, side: 'buy', tradeId: `t${i}` });
const quote = (i: number, venue = 'binance', symbol = 'BTC-USDT'): Quote => ({ kind: 'quote', venue, symbol, ts: T0 + i, recvTs: T0 + i, bidPx: 99, bidQty: 1, askPx: 101, askQty: 1 });
const status = (i: number, s: FeedStatus['status']): FeedStatus => ({ kind: 'status', venue: 'binance', symbol: 'BTC-USDT', ts: T0 + i, recvTs: T0 + i, status: s, reason: 'test' });
const tx = (id: string, account: string, over: Partial<Transaction> = {}): Transaction => ({
  kind: 'transaction', source: 'bank', id, ts: T0, account, amount: 10, currency: 'EUR', direction: 'debit', channel: 'transfer', ...over,
});

describe('status markers', () => {
  it('reach a detector in order within each of its data streams, never from the status topic alone', async () => {
    const onTrades = recorder('a', ['trade', 'status']);
    const onQuotes = recorder('b', ['quote', 'status']);
    const noStatus = recorder('c', ['trade']);
    const events: CanonicalEvent[] = [trade(1), quote(2), status(3, 'disconnected'), trade(4), status(5, 'connected'), quote(6), trade(7)];
    await pipeline([onTrades, onQuotes, noStatus], events);
    expect(onTrades.log.get('binance:BTC-USDT')).toEqual(['trade:1', 'status:disconnected', 'trade:4', 'status:connected', 'trade:7']);
    expect(onQuotes.log.get('binance:BTC-USDT')).toEqual(['quote:2', 'status:disconnected', 'status:connected', 'quote:6']);
    expect(noStatus.log.get('binance:BTC-USDT')).toEqual(['trade:1', 'trade:4', 'trade:7']);
  });
});

describe('keyOf and routing by symbol', () => {
  it('every venue of one symbol lands on one partition, so a state keyed by symbol sees them all in order', async () => {
    const venues = ['binance', 'okx', 'kraken', 'coinbase', 'bybit'];
    // With 8 partitions the venue:symbol keys themselves spread over several partitions…
    expect(new Set(venues.map((v) => partitionFor(`${v}:BTC-USDT`, 8))).size).toBeGreaterThan(1);
    const bySymbol = recorder('d', ['quote'], { keyOf: (ev) => (ev as Quote).symbol });
    const events = Array.from({ length: 50 }, (_, i) => quote(i, venues[i % venues.length], i % 2 === 0 ? 'BTC-USDT' : 'ETH-USDT'));
    await pipeline([bySymbol], events, 8);
    // …but the symbol's state got every venue's quotes, in the order they were sent.
    expect(bySymbol.log.get('BTC-USDT')).toEqual(events.filter((e) => (e as Quote).symbol === 'BTC-USDT').map((e) => `quote:${e.ts - T0}`));
    expect(bySymbol.log.get('ETH-USDT')).toHaveLength(25);
  });
});

describe('views', () => {
  it('a counterparty view keys copies by the receiver; a merchant view gets transactions and labels; the primary view is unchanged', async () => {
    const primary = recorder('p', ['transaction']);
    const byReceiver = recorder('r', ['transaction'], { view: 'counterparty' as EventView });
    const byMerchant = recorder('m', ['transaction', 'label'], { view: 'merchant' as EventView });
    const events: CanonicalEvent[] = [
      tx('1', 'A', { counterparty: 'Z' }),
      tx('2', 'B', { counterparty: 'Z', merchant: 'M1' }),
      tx('3', 'C', { terminal: 'T9' }),
      { kind: 'label', source: 'chargebacks', txId: '2', ts: T0 + 5, label: 'fraud', account: 'B', merchant: 'M1' },
    ];
    await pipeline([primary, byReceiver, byMerchant], events);
    expect(Object.fromEntries(primary.log)).toEqual({ A: ['transaction:1'], B: ['transaction:2'], C: ['transaction:3'] });
    expect(Object.fromEntries(byReceiver.log)).toEqual({ Z: ['transaction:1', 'transaction:2'] });
    expect(Object.fromEntries(byMerchant.log)).toEqual({ M1: ['transaction:2', 'label:5'], T9: ['transaction:3'] });
  });
});

describe('transaction risk scores', () => {
  it('every transaction gets one score per view, the noisy-OR of its rules’ signals, with reasons strongest first', async () => {
    const a = recorder('velocity', ['transaction'], { signal: (t) => (t.amount > 100 ? 0.5 : 0) });
    const b = recorder('amount_anomaly', ['transaction'], { signal: (t) => (t.amount > 1000 ? 0.8 : 0) });
    const c = recorder('fan_in', ['transaction'], { view: 'counterparty' as EventView, signal: () => 0.3 });
    const events: CanonicalEvent[] = [tx('small', 'A'), tx('mid', 'A', { amount: 500 }), tx('big', 'B', { amount: 5000, counterparty: 'Z' })];
    const { risk, runner } = await pipeline([a, b, c], events);
    const by = (id: string, view: string) => risk.find((r) => r.txId === id && r.view === view);
    expect(risk).toHaveLength(4);
    expect(by('small', 'account')).toMatchObject({ score: 0, reasons: [], account: 'A' });
    expect(by('mid', 'account')).toMatchObject({ score: 0.5, reasons: [{ detector: 'velocity', score: 0.5 }] });
    const big = by('big', 'account')!;
    expect(big.score).toBeCloseTo(noisyOr([0.5, 0.8]), 9);
    expect(big.score).toBeCloseTo(0.9, 9);
    expect(big.reasons.map((r) => r.detector)).toEqual(['amount_anomaly', 'velocity']);
    expect(by('big', 'counterparty')).toMatchObject({ score: 0.3, account: 'B', reasons: [{ detector: 'fan_in', reason: 'fan_in says 0.3' }] });
    expect(runner.counters.riskScores).toBe(4);
  });
});
