/**
 * Pipeline runs (`live` and replays), from the `runs` table (all viewer):
 *   GET /api/runs[?limit=&status=]  → { items: [RunRecord] }, newest first (limit ≤ 1000, default 100;
 *                                     status: a list of running, completed, failed, cancelled)
 *   GET /api/runs/:id               → RunRecord, or 404
 */
import type { FastifyInstance } from 'fastify';
import { ERR, VigilError } from '../../core/errors.ts';
import type { Store } from '../../storage/types.ts';
import { RUN_LIST_PARAMS, badParam, parseParams } from '../query-params.ts';

export function runRoutes(app: FastifyInstance, store: Store): void {
  app.get('/api/runs', { config: { role: 'viewer' } }, async (req) => {
    const { limit, status } = parseParams(RUN_LIST_PARAMS, req.query);
    return { items: await store.listRuns({ limit: limit ?? 100, status: status && status.length > 0 ? [...new Set(status)] : undefined }) };
  });

  app.get<{ Params: { id: string } }>('/api/runs/:id', { config: { role: 'viewer' } }, async (req) => {
    parseParams({}, req.query);
    const id = req.params.id;
    if (id.length === 0 || id.length > 200) throw badParam('id', 'a run id of at most 200 characters', id);
    const run = await store.getRun(id);
    if (!run) throw new VigilError(ERR.NOT_FOUND, `run ${id} not found`, 404);
    return run;
  });
}
