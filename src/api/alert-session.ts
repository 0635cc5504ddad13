/**
 * One live-alert client, whatever carries it (WebSocket: routes/alerts.ts; Server-Sent Events:
 * routes/alerts-sse.ts): its hub subscription with the filter and the `since` resume, heartbeats queued
 * behind the findings, and the hang-up when the hub drops it (too slow, a failed send, shutdown).
 * The carrier only says how a message is written and how to hang up with a reason.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { AlertHub, AlertSend, AlertSubscription } from './alert-hub.ts';
import type { AlertFilter } from './alert-filter.ts';

export interface AlertSink {
  /** Writes one message; a returned promise settles when the carrier can take more (backpressure). */
  send: AlertSend;
  /** The hub dropped this client: tell it why (if it can still hear) and end the connection. */
  hangUp(reason: string): void;
}

export interface AlertSessionOptions {
  filter: AlertFilter;
  /** The last finding id the client saw. */
  since?: string;
  heartbeatMs: number;
  log: FastifyBaseLogger;
}

export interface AlertSession {
  readonly subscription: AlertSubscription;
  /** The client went away: stop heartbeats, unsubscribe. Idempotent. */
  close(): void;
}

export function openAlertSession(hub: AlertHub, sink: AlertSink, options: AlertSessionOptions): AlertSession {
  let heartbeat: NodeJS.Timeout | undefined;
  const subscription = hub.subscribe(options.filter, sink.send, {
    ...(options.since === undefined ? {} : { since: options.since }),
    onDrop: (reason) => {
      clearInterval(heartbeat);
      options.log.warn({ reason }, 'alert client dropped');
      sink.hangUp(reason);
    },
  });
  // Through the subscription's queue: a heartbeat never overtakes findings, and counts against the bound.
  heartbeat = setInterval(() => subscription.send({ type: 'heartbeat', ts: Date.now() }), options.heartbeatMs);
  heartbeat.unref();
  if (subscription.closed) clearInterval(heartbeat); // dropped while replaying `since`
  return {
    subscription,
    close() {
      clearInterval(heartbeat);
      subscription.close();
    },
  };
}
