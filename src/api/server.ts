/**
 * The HTTP API: findings search, live alerts (WebSocket), analyst SQL, health. Built, not listening:
 * the caller listens (and closes).
 */
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Store } from '../storage/types.ts';
import type { AlertHub } from './alert-hub.ts';
import { installSecurity, type SecurityOptions } from './auth.ts';
import { installErrorHandling } from './errors.ts';
import { installApiDocs, markDocsPublic } from './openapi.ts';
import { alertRoutes, type AlertRouteOptions } from './routes/alerts.ts';
import { findingRoutes } from './routes/findings.ts';
import { healthRoutes, readinessRoutes } from './routes/health.ts';
import { metricsRoutes, type MetricsExposition } from './routes/metrics.ts';
import type { Readiness } from '../observability/readiness.ts';
import { keyRoutes } from './routes/keys.ts';
import { rulesRoutes } from './routes/rules.ts';
import { sqlRoutes } from './routes/sql.ts';
import type { RulesController } from '../detectors/rules-watch.ts';

export interface ApiDeps {
  store: Store;
  hub: AlertHub;
  /** The service token: an admin-equivalent credential in x-vigil-sql-token (`vigil sql`, `vigil keys`). */
  sqlToken?: string;
  logger?: boolean | object;
  /** Default 1 MiB. */
  bodyLimit?: number;
  alerts?: AlertRouteOptions;
  /** The rules in force (GET/PUT /api/rules); absent: those routes answer 404. */
  rules?: RulesController;
  /** API keys, rate limit, CORS (src/api/auth.ts); absent: auth off, no limit, no CORS. */
  security?: SecurityOptions;
  /** Serves GET /metrics (src/observability/metrics.ts); absent: no /metrics route. */
  metrics?: MetricsExposition;
  /** The process's dependency checks for GET /readyz, beside the store's ping. */
  readiness?: Readiness;
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({ logger: deps.logger ?? false, bodyLimit: deps.bodyLimit ?? 1024 * 1024 });
  installErrorHandling(app);
  await app.register(websocket, { options: { maxPayload: 64 * 1024 } }); // first: its hooks close refused upgrades
  markDocsPublic(app);
  const keys = await installSecurity(app, deps.store, deps.sqlToken, deps.security);
  await installApiDocs(app);
  healthRoutes(app, deps.store);
  readinessRoutes(app, deps.store, deps.readiness);
  if (deps.metrics) metricsRoutes(app, deps.metrics);
  findingRoutes(app, deps.store);
  alertRoutes(app, deps.hub, deps.alerts);
  sqlRoutes(app, deps.store);
  rulesRoutes(app, deps.store, deps.rules);
  keyRoutes(app, deps.store, keys);
  return app;
}
