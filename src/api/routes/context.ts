/**
 * A finding's surroundings and the stored prices (all viewer):
 *   GET /api/findings/:id/context[?run=&before=&after=&limit=]
 *       → { finding, window: {from, to}, kind: market|account, trades, quotes, transactions, truncated }
 *       the trades and quotes of the finding's instrument (every venue's when it names none), or its
 *       account's transactions as payer or counterparty, from windowStart − before to windowEnd + after
 *       (default margin max(60 s, the window's length), at most 24 h); at most `limit` (≤ 5000, default
 *       2000) of each, the ones nearest the finding's time when there are more.
 *   GET /api/instruments[?run=&limit=]  → { items: [{ venue, symbol, trades, lastTs }] }, most trades first
 *   GET /api/prices?venue=&symbol=[&from=&to=&interval=&run=]
 *       → { interval, source: trades|quotes|null, from, to, items: [{ t, open, high, low, close, volume }] }
 *       OHLC per interval (1s, 5s, 1m default, 5m, 1h) from the stored trades, mid quotes when the range
 *       has none; at most 10 000 intervals (without from: the latest 10 000 of the data).
 * Instruments and prices read run `live` unless `run` names another.
 */
import type { FastifyInstance } from 'fastify';
import { ERR, VigilError } from '../../core/errors.ts';
import type { Store } from '../../storage/types.ts';
import { CONTEXT_PARAMS, INSTRUMENT_PARAMS, PRICE_PARAMS, badParam, parseParams } from '../query-params.ts';

export function contextRoutes(app: FastifyInstance, store: Store): void {
  app.get<{ Params: { id: string } }>('/api/findings/:id/context', { config: { role: 'viewer' } }, async (req) => {
    const { run, before, after, limit } = parseParams(CONTEXT_PARAMS, req.query);
    const id = req.params.id;
    if (id.length === 0 || id.length > 200) throw badParam('id', 'a finding id', id);
    const finding = await store.getFinding(id, run);
    if (!finding) throw new VigilError(ERR.NOT_FOUND, `finding ${id} not found${run === undefined ? '' : ` in run ${run}`}`, 404);
    return store.getFindingContext(finding, { before, after, limit });
  });

  app.get('/api/instruments', { config: { role: 'viewer' } }, async (req) => {
    const { run, limit } = parseParams(INSTRUMENT_PARAMS, req.query);
    return { items: await store.listInstruments({ runId: run ?? 'live', limit }) };
  });

  app.get('/api/prices', { config: { role: 'viewer' } }, async (req) => {
    const p = parseParams(PRICE_PARAMS, req.query);
    if (p.venue === undefined) throw badParam('venue', 'the venue of the instrument (required)');
    if (p.symbol === undefined) throw badParam('symbol', 'the symbol of the instrument (required)');
    if (p.from !== undefined && p.to !== undefined && p.to <= p.from) throw badParam('to', `a time after from (${p.from})`, p.to);
    return store.priceBuckets({ runId: p.run ?? 'live', venue: p.venue, symbol: p.symbol, interval: p.interval ?? '1m', from: p.from, to: p.to });
  });
}
