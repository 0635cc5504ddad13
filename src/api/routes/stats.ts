/**
 * GET /api/stats[?from&to&bucket=1m|5m|1h|1d&by=detector|severity|symbol|venue&top=&run=&detector=…] (viewer)
 *   → { bucket, by, from, to, items: [{ t, key, count }], totals: [{ key, count }], truncated }
 * Findings counted per time bucket (event time, epoch-aligned UTC; default 1h) and key (default
 * detector), with the search's filters (detector, venue, symbol, account, minSeverity, run); every run
 * unless `run` names one. At most 10 000 buckets (without from: the latest 10 000 of the data) and the
 * `top` keys by count (default 20, at most 100; `truncated` says more matched). key is null for findings
 * without a symbol / venue.
 */
import type { FastifyInstance } from 'fastify';
import type { Store } from '../../storage/types.ts';
import { STATS_PARAMS, badParam, parseParams } from '../query-params.ts';

export function statsRoutes(app: FastifyInstance, store: Store): void {
  app.get('/api/stats', { config: { role: 'viewer' } }, async (req) => {
    const p = parseParams(STATS_PARAMS, req.query);
    if (p.minSeverity !== undefined && p.severity !== undefined && p.minSeverity !== p.severity) {
      throw badParam('severity', 'the same value as minSeverity (an alias), or only one of them', p.severity);
    }
    if (p.from !== undefined && p.to !== undefined && p.to <= p.from) throw badParam('to', `a time after from (${p.from})`, p.to);
    const list = (v: string[] | undefined) => (v && v.length > 0 ? v : undefined);
    return store.findingStats({
      bucket: p.bucket ?? '1h',
      by: p.by ?? 'detector',
      from: p.from,
      to: p.to,
      runId: p.run,
      detector: list(p.detector),
      venue: list(p.venue),
      symbol: list(p.symbol),
      account: list(p.account),
      minSeverity: p.minSeverity ?? p.severity,
      top: p.top,
    });
  });
}
