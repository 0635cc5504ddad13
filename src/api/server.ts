/**
 * The HTTP API: findings search, live alerts (WebSocket), analyst SQL, health. Built, not listening:
 * the caller listens (and closes).
 */
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Store } from '../storage/types.ts';
import type { AlertHub } from './alert-hub.ts';
import { installErrorHandling } from './errors.ts';
import { alertRoutes, type AlertRouteOptions } from './routes/alerts.ts';
import { findingRoutes } from './routes/findings.ts';
import { healthRoutes } from './routes/health.ts';
import { rulesRoutes } from './routes/rules.ts';
import { sqlRoutes } from './routes/sql.ts';
import type { RulesController } from '../detectors/rules-watch.ts';

export interface ApiDeps {
  store: Store;
  hub: AlertHub;
  /** Enables POST /api/sql for callers presenting it in x-vigil-sql-token. */
  sqlToken?: string;
  logger?: boolean | object;
  /** Default 1 MiB. */
  bodyLimit?: number;
  alerts?: AlertRouteOptions;
  /** The rules in force (GET/PUT /api/rules); absent: those routes answer 404. */
  rules?: RulesController;
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({ logger: deps.logger ?? false, bodyLimit: deps.bodyLimit ?? 1024 * 1024 });
  installErrorHandling(app);
  await app.register(websocket, { options: { maxPayload: 64 * 1024 } });
  healthRoutes(app, deps.store);
  findingRoutes(app, deps.store);
  alertRoutes(app, deps.hub, deps.alerts);
  sqlRoutes(app, deps.store, deps.sqlToken);
  rulesRoutes(app, deps.store, deps.rules);
  return app;
}
