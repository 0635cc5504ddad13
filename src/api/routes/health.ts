import type { FastifyInstance } from 'fastify';
import type { Store } from '../../storage/types.ts';
import { Readiness } from '../../observability/readiness.ts';

/** GET /healthz: 200 when the store answers, 503 when it does not. */
export function healthRoutes(app: FastifyInstance, store: Store): void {
  app.get('/healthz', { config: { role: 'public' } }, async (_req, reply) => {
    const ok = await store.ping().catch(() => false);
    return reply.status(ok ? 200 : 503).send({ status: ok ? 'ok' : 'unavailable', store: ok });
  });
}

/**
 * GET /readyz: 200 when every dependency answers — the store's ping and the process's own checks
 * (transport not failed, Redis state store connected, pipeline started…); else 503 naming those down:
 * `{status: "unavailable", down: ["store"], checks: {store: false, …}}`. /healthz stays liveness.
 */
export function readinessRoutes(app: FastifyInstance, store: Store, readiness?: Readiness): void {
  app.get('/readyz', { config: { role: 'public' } }, async (_req, reply) => {
    const storeCheck = async () => store.ping().catch(() => false);
    const report = readiness ? await readiness.report({ store: storeCheck }) : await new Readiness().report({ store: storeCheck });
    return reply.status(report.ready ? 200 : 503).send({ status: report.ready ? 'ready' : 'unavailable', down: report.down, checks: report.checks });
  });
}
