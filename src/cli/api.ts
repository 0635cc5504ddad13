import type { AddressInfo } from 'node:net';
import { AlertHub } from '../api/alert-hub.ts';
import { SnoozeBook } from '../api/snoozes.ts';
import type { Finding } from '../core/events.ts';
import { securityFromConfig } from '../api/auth.ts';
import { buildApi } from '../api/server.ts';
import { authEnabled, loadConfig } from '../core/config.ts';
import { withStoreFaults } from '../pipeline/fault-store.ts';
import { processObservability } from '../observability/metrics.ts';
import { scorerFor } from '../pipeline/scoring.ts';
import { GROUPS, markReady, recordRuleChanges, requireKafka, rulesController, shutdownSignal, startApiSide, transportFor, untilAborted, watchTransport, type ApiSide, type RoleLog } from '../pipeline/roles.ts';
import { webhooksFromConfig } from '../notify/config.ts';
import { startNotifications, type Notifications } from '../notify/webhooks.ts';
import { parse } from './args.ts';
import { newToken, removeServiceNote, writeServiceNote } from './service-file.ts';
import { openConfiguredStore } from './store.ts';

export const API_USAGE = `usage: vigil api [--port N] [--host H]

The API role of a distributed deployment (needs KAFKA_BROKERS): serves the API and owns the findings
store. Consumes vigil.findings (and vigil.dlq, vigil.runs) in consumer group vigil-store and writes them
to ClickHouse; a batch's offsets are committed only once it is stored, so a ClickHouse outage loses
nothing (the writer retries with backoff; beyond VIGIL_STORE_BUFFER_ROWS rows in memory it spills to
VIGIL_DATA_DIR/spill). Live alerts come from vigil.findings in a group of this process's own.
SIGTERM/SIGINT: stops consuming, stores what it holds, commits, exits 0.`;

export async function apiCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { port: { type: 'string' }, host: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, false);
  if (values.help) {
    console.log(API_USAGE);
    return 0;
  }
  const config = loadConfig(process.env, { PORT: values.port, HOST: values.host });
  requireKafka(config, 'api');
  const webhooks = webhooksFromConfig(config); // a bad VIGIL_WEBHOOKS file fails before anything opens
  // The API role serves and records the rules (the detect workers watch the same file and apply them).
  const rules = rulesController(config, { info: (m) => console.error(m), warn: (m) => console.error(m), error: (m) => console.error(m) });
  const store = withStoreFaults(await openConfiguredStore(config));
  // The context tables' TTL follows the setting; a store that refuses the change keeps its TTL and serves on.
  await store.setContextTtl(config.VIGIL_CONTEXT_TTL_DAYS).catch((e: unknown) => console.error(`storage: could not set the context TTL (VIGIL_CONTEXT_TTL_DAYS): ${(e as Error).message}`));
  recordRuleChanges(rules, store, (m) => console.error(m));
  await rules.announce();
  // Snoozed findings are stored but kept out of live alerts and webhooks (src/api/snoozes.ts).
  const snoozes = new SnoozeBook(store, { log: (m) => console.error(m) });
  await snoozes.start();
  const hub = new AlertHub({ suppress: (f) => snoozes.suppresses(f) }); // counted once, here
  const suppress = (f: Finding): boolean => snoozes.matches(f) !== undefined;
  processObservability().metrics.watchSnoozes(snoozes);
  const token = newToken();
  // POST /api/transactions/score: published to the event topics, answered from vigil.tx.risk (the detect workers' records).
  const scorer = scorerFor(config, rules);
  processObservability().metrics.watchScorer(scorer);
  const app = await buildApi({ store, hub, sqlToken: token, rules, scorer, snoozes, logger: { level: config.VIGIL_LOG_LEVEL }, bodyLimit: config.VIGIL_BODY_LIMIT_BYTES, security: securityFromConfig(config), ...processObservability() });
  const log = app.log as unknown as { info(o: object | string, m?: string): void; warn(o: object | string, m?: string): void; error(o: object | string, m?: string): void };
  const roleLog: RoleLog = {
    info: (m, extra) => log.info(extra ?? {}, m),
    warn: (m, extra) => log.warn(extra ?? {}, m),
    error: (m, extra) => log.error(extra ?? {}, m),
  };
  const shutdown = shutdownSignal((sig) => log.info(`${sig}: stopping consumption, storing what is held, committing`));
  const transport = transportFor(config);
  let side: ApiSide | undefined;
  let notifications: Notifications | undefined;
  let failure: unknown;
  let code = 0;
  try {
    // Consuming first, listening after: a healthy /healthz means the store group has joined (a group
    // new to vigil.findings starts at its end, so in a fresh deployment the producers wait for that).
    side = await startApiSide(config, transport, store, hub, roleLog);
    // Webhooks: group vigil-notify, shared by every API process (each finding is notified once).
    notifications = await startNotifications(webhooks, { transport, group: GROUPS.notify }, roleLog, { suppress });
    if (notifications) processObservability().metrics.watchNotifier(notifications.notifier);
    await scorer.attach(transport);
    markReady({ transport }); // and the store's ping, always checked by /readyz
    await app.listen({ port: config.PORT, host: config.HOST });
    const port = (app.server.address() as AddressInfo).port;
    const localHost = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST;
    const url = `http://${localHost.includes(':') ? `[${localHost}]` : localHost}:${port}`;
    if (store.kind === 'embedded') writeServiceNote(config.VIGIL_DATA_DIR, { pid: process.pid, url, token, role: 'api' });
    const unwatch = watchTransport(transport, (e) => {
      failure = e;
      roleLog.error('the transport failed for good (a batch kept failing); stopping', { error: (e as Error)?.message ?? String(e) });
      shutdown.abort();
    });
    log.info({ url, store: store.kind, auth: authEnabled(config) ? 'on' : 'off' }, `ready: API ${url}, storing findings as group ${config.VIGIL_TOPIC_PREFIX}${GROUPS.store} from ${config.KAFKA_BROKERS}`);
    await untilAborted(shutdown.signal);
    unwatch();
  } catch (e) {
    failure ??= e;
  } finally {
    shutdown.dispose();
    rules.close();
    await scorer.detach();
    await notifications?.stop(); // pending deliveries get a grace period, then are abandoned (counted, logged)
    if (side) {
      const { kept, lost } = await side.stop();
      const w = side.storeSide.findingWriter?.counters;
      log.info({ stored: w?.written, kept, lost }, kept > 0 ? `stopped; ${kept} rows the store did not take stay in the spill file (and uncommitted on Kafka)` : 'stopped; everything consumed is stored');
    }
    await transport.close();
    hub.closeAll();
    snoozes.stop();
    await app.close();
    await store.close();
    if (store.kind === 'embedded') removeServiceNote(config.VIGIL_DATA_DIR);
  }
  if (failure) {
    // A start-up error is the caller's to report (exit code by kind); a transport failure is logged already.
    if (!side) throw failure;
    code = 1;
  }
  return code;
}
