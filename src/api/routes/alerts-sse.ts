/**
 * GET /api/alerts/stream (Server-Sent Events): the live findings of WS /api/alerts for clients that
 * read HTTP streams (browsers' EventSource, curl). Same filters, same session (src/api/alert-session.ts).
 *
 * - Each message is one event: `event:` = the message type (finding, heartbeat, gap), `data:` = the same
 *   JSON as the WebSocket sends; findings also carry `id:` = the finding id, so an EventSource resumes
 *   by itself after a reconnect (it sends `Last-Event-ID`). Gap and heartbeat events carry no id and
 *   leave the client's last id as it was.
 * - Resume: `Last-Event-ID` (header) or `since` (query); the header wins, because on a reconnect the
 *   URL still holds the `since` the stream was first opened with.
 * - The stream opens with `retry:` (the reconnection delay an EventSource uses).
 * - Backpressure: a write the socket cannot take at once makes the send pending until `drain`; the
 *   hub then queues (bounded) and drops a client that stays behind. A dropped client gets a final
 *   `event: close` with the reason and the response ends (destroyed after closeGraceMs if the client
 *   does not even read that).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ERR, VigilError } from '../../core/errors.ts';
import type { AlertHub, AlertMessage, AlertSend } from '../alert-hub.ts';
import type { AlertFilter } from '../alert-filter.ts';
import { openAlertSession } from '../alert-session.ts';
import { parseAlertQuery } from '../query-params.ts';
import type { AlertRouteOptions } from './alerts.ts';

/** The last event of a stream the server ends (client too slow, server shutting down). */
export interface StreamCloseMessage {
  type: 'close';
  reason: string;
}

const LAST_EVENT_ID = 'last-event-id';

/** One SSE event for a hub message; `data` is its JSON (one line: JSON.stringify escapes newlines). */
export function sseEvent(data: string, message: AlertMessage): string {
  const id = message.type === 'finding' ? `id: ${message.finding.id.replace(/[\r\n]/g, '')}\n` : '';
  return `${id}event: ${message.type}\ndata: ${data}\n\n`;
}

function parseStreamRequest(req: FastifyRequest): { filter: AlertFilter; since?: string } {
  const parsed = parseAlertQuery(req.query);
  const header = req.headers[LAST_EVENT_ID];
  if (header === undefined || header === '') return parsed;
  const id = typeof header === 'string' ? header.trim() : '';
  if (id === '' || id.length > 200) {
    throw new VigilError(ERR.BAD_REQUEST, `invalid header 'Last-Event-ID': expected the id of the last event received, at most 200 characters`, 400, { header: 'Last-Event-ID' });
  }
  return { filter: parsed.filter, since: id };
}

export function alertStreamRoutes(app: FastifyInstance, hub: AlertHub, options: AlertRouteOptions = {}): void {
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const closeGraceMs = options.closeGraceMs ?? 5_000;
  const retryMs = options.retryMs ?? 3_000;
  const parsed = new WeakMap<FastifyRequest, { filter: AlertFilter; since?: string }>();
  /** Open streams, ended at shutdown (an open response would hold the server's close). */
  const open = new Set<(reason: string) => void>();

  app.addHook('preClose', async () => {
    for (const end of [...open]) end('server shutting down');
  });

  app.get(
    '/api/alerts/stream',
    {
      config: { role: 'viewer' },
      exposeHeadRoute: false,
      preValidation: async (req) => {
        parsed.set(req, parseStreamRequest(req));
      },
    },
    (req, reply) => {
      const { filter, since } = parsed.get(req) ?? parseStreamRequest(req);
      reply.hijack();
      const res = reply.raw;
      // CORS and rate-limit headers set by the hooks (a hijacked reply does not send them itself).
      for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) res.setHeader(name, value);
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no', // nginx: do not buffer the stream
      });
      res.write(`retry: ${retryMs}\n\n`);

      let drained: Promise<void> | undefined;
      const send: AlertSend = (data, message) => {
        if (res.destroyed || res.writableEnded) throw new Error('the client went away');
        if (res.write(sseEvent(data, message))) return;
        // Over the socket's buffer: pending until it drains, so the hub holds the rest (bounded).
        drained ??= new Promise<void>((resolve) => {
          const done = () => {
            res.off('drain', done);
            res.off('close', done);
            drained = undefined;
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
        return drained;
      };
      const hangUp = (reason: string) => {
        open.delete(end);
        if (res.destroyed || res.writableEnded) return;
        const last: StreamCloseMessage = { type: 'close', reason };
        res.end(`event: close\ndata: ${JSON.stringify(last)}\n\n`);
        const kill = setTimeout(() => res.destroy(), closeGraceMs);
        kill.unref();
        res.once('close', () => clearTimeout(kill));
      };
      // A declaration (hoisted): the hub may drop the client while replaying `since`, before the session returns.
      function end(reason: string): void {
        session.close();
        hangUp(reason);
      }
      const session = openAlertSession(hub, { send, hangUp }, { filter, ...(since === undefined ? {} : { since }), heartbeatMs, log: req.log });
      if (!session.subscription.closed) open.add(end);
      res.on('close', () => {
        open.delete(end);
        session.close();
      });
      res.on('error', (err) => req.log.debug({ err }, 'alert stream error'));
    },
  );
}
