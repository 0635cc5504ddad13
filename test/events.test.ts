import { describe, expect, it } from 'vitest';
import { eventKey, eventRef, eventSchema, findingSchema, severityRank, type CanonicalEvent } from '../src/core/events.ts';
import { findingId } from '../src/core/ids.ts';

const trade = { kind: 'trade', venue: 'binance', symbol: 'BTC-USDT', ts: 1723161255342, recvTs: 1723161254087.9, price: 61837.63, qty: 0.02, side: 'sell', tradeId: '3735683259' };
const examples: Record<string, unknown> = {
  trade,
  quote: { kind: 'quote', venue: 'binance', symbol: 'BTC-USDT', ts: 1, recvTs: 1, bidPx: 1, bidQty: 2, askPx: 1.1, askQty: 3, seq: 5 },
  book: { kind: 'book', venue: 'binance', symbol: 'BTC-USDT', ts: 1, recvTs: 1, seq: 10, firstSeq: 8, snapshot: false, bids: [[1, 2]], asks: [[1.1, 0]] },
  order: { kind: 'order', venue: 'internal', symbol: 'ETH-USD', ts: 1, orderId: 'o1', account: 'acc', side: 'buy', price: 10, qty: 1, action: 'fill', fillQty: 1, fillPrice: 10, counterpartyAccount: 'acc2' },
  transaction: { kind: 'transaction', source: 'cards', id: 't1', ts: 1, account: 'a1', amount: 12.5, currency: 'EUR', direction: 'debit', channel: 'card', mcc: '5411', lat: 48.85, lon: 2.35 },
  metric: { kind: 'metric', source: 'gw', key: 'latency', ts: 1, value: 3.2 },
};

describe('canonical events', () => {
  it.each(Object.entries(examples))('%s parses', (_k, ev) => {
    expect(eventSchema.parse(ev)).toEqual(ev);
  });

  it.each([
    ['lower-case symbol', { ...trade, symbol: 'btcusdt' }],
    ['symbol without quote', { ...trade, symbol: 'BTC' }],
    ['negative price', { ...trade, price: -1 }],
    ['NaN qty', { ...trade, qty: Number.NaN }],
    ['bad side', { ...trade, side: 'long' }],
    ['missing tradeId', { ...trade, tradeId: undefined }],
    ['unknown kind', { ...trade, kind: 'tick' }],
    ['book level not a pair', { ...(examples.book as object), bids: [[1]] }],
    ['transaction direction', { ...(examples.transaction as object), direction: 'sideways' }],
    ['latitude out of range', { ...(examples.transaction as object), lat: 91 }],
  ])('rejects %s', (_why, ev) => {
    expect(eventSchema.safeParse(ev).success).toBe(false);
  });

  it('keys market data by venue:symbol, transactions by account, metrics by source:key', () => {
    expect(eventKey(eventSchema.parse(trade))).toBe('binance:BTC-USDT');
    expect(eventKey(eventSchema.parse(examples.transaction))).toBe('a1');
    expect(eventKey(eventSchema.parse(examples.metric))).toBe('gw:latency');
    expect(eventRef(eventSchema.parse(trade) as CanonicalEvent)).toBe('trade:binance:BTC-USDT:3735683259');
  });
});

describe('findings', () => {
  const base = {
    runId: 'live', detector: 'price_jump', ruleId: 'price_jump.default', severity: 'high', score: 12.5, venue: 'binance', symbol: 'BTC-USDT', key: 'binance:BTC-USDT',
    ts: 2, windowStart: 1, windowEnd: 2, summary: 'BTC-USDT jumped', evidence: { observed: { z: 12.5 }, baseline: { mad: 0.1 }, threshold: { z: 6 }, triggers: ['trade:binance:BTC-USDT:1'] },
  };
  it('ids are deterministic, 128-bit hex, and differ by any part', () => {
    const id = findingId('price_jump', 'r', 'k', 't');
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(findingId('price_jump', 'r', 'k', 't')).toBe(id);
    expect(new Set([id, findingId('price_jum', 'pr', 'k', 't'), findingId('price_jump', 'r', 'k2', 't'), findingId('price_jump', 'r', 'k', 't2')]).size).toBe(4);
  });
  it('schema accepts a finding and rejects a bad severity or id', () => {
    const f = { ...base, id: findingId('price_jump', 'r', 'k', 't') };
    expect(findingSchema.parse(f)).toEqual(f);
    expect(findingSchema.safeParse({ ...f, severity: 'urgent' }).success).toBe(false);
    expect(findingSchema.safeParse({ ...f, id: 'xyz' }).success).toBe(false);
  });
  it('ranks severities', () => {
    expect(severityRank('info')).toBeLessThan(severityRank('low'));
    expect(severityRank('high')).toBeLessThan(severityRank('critical'));
  });
});
