/**
 * GET /api/alerts (WebSocket): live findings filtered server-side, with `since=<lastSeenId>` resume,
 * heartbeats, and disconnection of clients too slow to keep up (close code 4008 with the reason).
 * Query parameters are validated before the upgrade, so a bad one gets an HTTP 400. The same session
 * (src/api/alert-session.ts) also serves Server-Sent Events on GET /api/alerts/stream (alerts-sse.ts).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import type { AlertHub } from '../alert-hub.ts';
import type { AlertFilter } from '../alert-filter.ts';
import { openAlertSession } from '../alert-session.ts';
import { parseAlertQuery } from '../query-params.ts';
import { alertStreamRoutes } from './alerts-sse.ts';

export interface AlertRouteOptions {
  /** Default 15 000 ms. */
  heartbeatMs?: number;
  /** After closing a slow client, how long its close handshake may take before the socket is destroyed; default 5000 ms. */
  closeGraceMs?: number;
  /** SSE (GET /api/alerts/stream): the reconnection delay sent to EventSource clients (`retry:`); default 3000 ms. */
  retryMs?: number;
}

/** Close code for a client dropped as too slow (4000-4999: application codes). */
export const SLOW_CLIENT_CLOSE_CODE = 4008;

export function alertRoutes(app: FastifyInstance, hub: AlertHub, options: AlertRouteOptions = {}): void {
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const closeGraceMs = options.closeGraceMs ?? 5_000;
  const parsed = new WeakMap<FastifyRequest, { filter: AlertFilter; since?: string }>();

  app.get(
    '/api/alerts',
    {
      websocket: true,
      config: { role: 'viewer' },
      preValidation: async (req) => {
        parsed.set(req, parseAlertQuery(req.query));
      },
    },
    (socket: WebSocket, req) => {
      const { filter, since } = parsed.get(req) ?? parseAlertQuery(req.query);
      const send = (data: string) =>
        new Promise<void>((resolve, reject) => socket.send(data, (err) => (err ? reject(err) : resolve())));
      const hangUp = (reason: string) => {
        socket.close(SLOW_CLIENT_CLOSE_CODE, reason.slice(0, 120));
        setTimeout(() => socket.terminate(), closeGraceMs).unref();
      };
      const session = openAlertSession(hub, { send, hangUp }, { filter, ...(since === undefined ? {} : { since }), heartbeatMs, log: req.log });
      socket.on('close', () => session.close());
      socket.on('error', (err) => req.log.debug({ err }, 'alert socket error'));
    },
  );
  alertStreamRoutes(app, hub, options);
}
