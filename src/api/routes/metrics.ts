import type { FastifyInstance } from 'fastify';

/** What /metrics serves: the Prometheus text exposition of a registry (src/observability/metrics.ts). */
export interface MetricsExposition {
  text(): Promise<string>;
  readonly contentType: string;
}

/** GET /metrics: Prometheus text format (no credential, like /healthz: scrapers need none). */
export function metricsRoutes(app: FastifyInstance, metrics: MetricsExposition): void {
  app.get('/metrics', { config: { role: 'public' } }, async (_req, reply) => {
    const body = await metrics.text();
    return reply.header('content-type', metrics.contentType).header('cache-control', 'no-store').send(body);
  });
}
