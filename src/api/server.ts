/**
 * The HTTP API: findings search, live alerts (WebSocket), analyst SQL, health. Built, not listening:
 * the caller listens (and closes).
 */
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Store } from '../storage/types.ts';
import type { AlertHub } from './alert-hub.ts';
import { installSecurity, redactedRequest, type SecurityOptions } from './auth.ts';
import { installErrorHandling } from './errors.ts';
import { installApiDocs, markDocsPublic } from './openapi.ts';
import { alertRoutes, type AlertRouteOptions } from './routes/alerts.ts';
import { contextRoutes } from './routes/context.ts';
import { runRoutes } from './routes/runs.ts';
import { statsRoutes } from './routes/stats.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { findingRoutes } from './routes/findings.ts';
import { healthRoutes, readinessRoutes } from './routes/health.ts';
import { metricsRoutes, type MetricsExposition } from './routes/metrics.ts';
import type { Readiness } from '../observability/readiness.ts';
import { keyRoutes } from './routes/keys.ts';
import { rulesRoutes } from './routes/rules.ts';
import { scoreRoutes } from './routes/score.ts';
import type { TransactionScoring } from '../pipeline/scoring.ts';
import { sqlRoutes } from './routes/sql.ts';
import { workflowRoutes } from './routes/workflow.ts';
import type { SnoozeBook } from './snoozes.ts';
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
  /** Snoozes in force (src/api/snoozes.ts): the snooze routes update it at once; absent: none to update. */
  snoozes?: SnoozeBook;
  /** Scores one transaction (POST /api/transactions/score, src/pipeline/scoring.ts); absent: that route answers 503. */
  scorer?: TransactionScoring;
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({ logger: redactingLogger(deps.logger ?? false), bodyLimit: deps.bodyLimit ?? 1024 * 1024 });
  installErrorHandling(app);
  await app.register(websocket, { options: { maxPayload: 64 * 1024 } }); // first: its hooks close refused upgrades
  markDocsPublic(app);
  const keys = await installSecurity(app, deps.store, deps.sqlToken, deps.security);
  await installApiDocs(app);
  healthRoutes(app, deps.store);
  readinessRoutes(app, deps.store, deps.readiness);
  dashboardRoutes(app); // GET / and /dashboard/*: the static page (public); its data comes from the API
  if (deps.metrics) metricsRoutes(app, deps.metrics);
  findingRoutes(app, deps.store);
  workflowRoutes(app, deps.store, deps.snoozes);
  alertRoutes(app, deps.hub, deps.alerts);
  contextRoutes(app, deps.store); // GET /api/findings/:id/context, /api/instruments, /api/prices
  statsRoutes(app, deps.store); // GET /api/stats
  runRoutes(app, deps.store); // GET /api/runs, /api/runs/:id
  sqlRoutes(app, deps.store);
  rulesRoutes(app, deps.store, deps.rules);
  keyRoutes(app, deps.store, keys);
  scoreRoutes(app, deps.scorer);
  return app;
}

/** Request logs through redactedRequest: an access_token in a URL (live routes) never reaches them. */
function redactingLogger(logger: boolean | object): boolean | object {
  if (logger === false) return false;
  const options = (logger === true ? {} : logger) as { serializers?: Record<string, unknown> };
  return { ...options, serializers: { ...options.serializers, req: redactedRequest } };
}
