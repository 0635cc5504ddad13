import type { FastifyInstance } from 'fastify';
import type { Store } from '../../storage/types.ts';

/** GET /healthz: 200 when the store answers, 503 when it does not. */
export function healthRoutes(app: FastifyInstance, store: Store): void {
  app.get('/healthz', async (_req, reply) => {
    const ok = await store.ping().catch(() => false);
    return reply.status(ok ? 200 : 503).send({ status: ok ? 'ok' : 'unavailable', store: ok });
  });
}
