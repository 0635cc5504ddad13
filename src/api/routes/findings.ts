import type { FastifyInstance } from 'fastify';
import { ERR, VigilError } from '../../core/errors.ts';
import type { Store } from '../../storage/types.ts';
import { FINDING_PARAMS, badParam, parseParams, parseSearchQuery } from '../query-params.ts';
import { withWorkflow } from './workflow.ts';

/** GET /api/findings (search, keyset pages) and GET /api/findings/:id, each finding with its workflow state. */
export function findingRoutes(app: FastifyInstance, store: Store): void {
  app.get('/api/findings', { config: { role: 'viewer' } }, async (req) => {
    const page = await store.searchFindings(parseSearchQuery(req.query));
    return { items: await withWorkflow(store, page.items), nextCursor: page.nextCursor ?? null, total: page.total };
  });

  app.get<{ Params: { id: string } }>('/api/findings/:id', { config: { role: 'viewer' } }, async (req) => {
    const { run } = parseParams(FINDING_PARAMS, req.query);
    const id = req.params.id;
    if (id.length === 0 || id.length > 200) throw badParam('id', 'a finding id', id);
    const finding = await store.getFinding(id, run);
    if (!finding) throw new VigilError(ERR.NOT_FOUND, `finding ${id} not found${run === undefined ? '' : ` in run ${run}`}`, 404);
    return (await withWorkflow(store, [finding]))[0];
  });
}
