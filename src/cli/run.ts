import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { AlertHub } from '../api/alert-hub.ts';
import { SnoozeBook } from '../api/snoozes.ts';
import type { Finding } from '../core/events.ts';
import { securityFromConfig } from '../api/auth.ts';
import { buildApi } from '../api/server.ts';
import { authEnabled, loadConfig, type Config } from '../core/config.ts';
import type { RulesController } from '../detectors/rules-watch.ts';
import type { DetectorInstance } from '../detectors/types.ts';
import { getAdapter } from '../feeds/registry.ts';
import { withStoreFaults } from '../pipeline/fault-store.ts';
import { Ingestor } from '../pipeline/ingest.ts';
import { Pipeline } from '../pipeline/pipeline.ts';
import { scorerFor, type TransactionScorer } from '../pipeline/scoring.ts';
import { processObservability } from '../observability/metrics.ts';
import { GROUPS, markReady, recordRuleChanges, rulesController, runFeeds, spillConfig, startApiSide, startDetectSide, transportFor, watchTransport, type RoleLog } from '../pipeline/roles.ts';
import { replayFiles } from '../replay/replay.ts';
import type { Transport } from '../transport/types.ts';
import type { Store } from '../storage/types.ts';
import { webhooksFromConfig } from '../notify/config.ts';
import { startNotifications } from '../notify/webhooks.ts';
import { parse, UsageError } from './args.ts';
import { newToken, removeServiceNote, writeServiceNote } from './service-file.ts';
import { openConfiguredStore } from './store.ts';

export const RUN_USAGE = `usage: vigil run [--feed venue:sym1,sym2]… [--port N] [--host H] [--no-demo]

Runs everything in one process: feeds, detectors, the findings store and the API. With no live feed
configured it replays the bundled sample (VIGIL_DEMO_FILE) at real-time pace in a loop, as run "live".
With KAFKA_BROKERS set the parts talk through Kafka, in the groups of the separate roles (vigil feeds,
detect, api), so more workers can join; otherwise through the in-process transport.`;

type Log = { info(o: object | string, m?: string): void; error(o: object | string, m?: string): void; warn(o: object | string, m?: string): void };

export async function runCommand(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      feed: { type: 'string', multiple: true },
      port: { type: 'string' },
      host: { type: 'string' },
      'no-demo': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
    false,
  );
  if (values.help) {
    console.log(RUN_USAGE);
    return 0;
  }
  const config = loadConfig(process.env, {
    PORT: values.port,
    HOST: values.host,
    VIGIL_FEEDS: values.feed?.join(';'),
    VIGIL_DEMO: values['no-demo'] ? 'false' : undefined,
  });
  const webhooks = webhooksFromConfig(config); // a bad VIGIL_WEBHOOKS file fails before anything opens
  const rules = rulesController(config, { info: (m) => console.error(m), warn: (m) => console.error(m), error: (m) => console.error(m) }); // bad rules fail before anything opens
  for (const f of config.feeds) {
    const adapter = getAdapter(f.venue);
    if (!adapter.connect) throw new UsageError(`--feed ${f.venue}: this venue has no live connection`);
  }

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
  // Scores transactions through whichever pipeline runs (attached to it while it does).
  const scorer = scorerFor(config, rules);
  processObservability().metrics.watchScorer(scorer);
  const app = await buildApi({ store, hub, sqlToken: token, rules, scorer, snoozes, logger: { level: config.VIGIL_LOG_LEVEL }, bodyLimit: config.VIGIL_BODY_LIMIT_BYTES, security: securityFromConfig(config), ...processObservability() });
  const log = app.log as Log;
  const abort = new AbortController();
  const stop = (sig: string) => {
    if (abort.signal.aborted) return;
    log.info(`${sig}: shutting down`);
    abort.abort();
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));

  try {
    await app.listen({ port: config.PORT, host: config.HOST });
  } catch (e) {
    await store.close();
    throw e;
  }
  const port = (app.server.address() as AddressInfo).port;
  const localHost = config.HOST === '0.0.0.0' || config.HOST === '::' ? '127.0.0.1' : config.HOST;
  const url = `http://${localHost.includes(':') ? `[${localHost}]` : localHost}:${port}`;
  if (store.kind === 'embedded') writeServiceNote(config.VIGIL_DATA_DIR, { pid: process.pid, url, token });
  log.info({ url, store: store.kind, auth: authEnabled(config) ? 'on' : 'off' }, `Vigil is up: API ${url}, findings at ${url}/api/findings, live alerts on ws://${url.slice(7)}/api/alerts`);

  const kafka = config.KAFKA_BROKERS ? transportFor(config) : undefined;
  // Webhooks of live findings: on Kafka in group vigil-notify (shared with every API process), else from the hub.
  const notifications = await startNotifications(
    webhooks,
    kafka ? { transport: kafka, group: GROUPS.notify } : { hub },
    { info: (m, extra) => log.info(extra ?? {}, m), warn: (m, extra) => log.warn(extra ?? {}, m) },
    { suppress },
  );
  if (notifications) processObservability().metrics.watchNotifier(notifications.notifier);
  if (kafka || config.feeds.length > 0 || config.VIGIL_DEMO) processObservability().readiness.set('pipeline', () => false); // until it starts
  let sources: Promise<void>;
  if (kafka) sources = runOnKafka(config, kafka, store, hub, abort.signal, log, rules, scorer);
  else if (config.feeds.length > 0) sources = runLive(config, store, hub, abort.signal, log, rules, scorer);
  else if (config.VIGIL_DEMO) sources = runDemo(config, store, hub, abort.signal, log, rules, scorer);
  else {
    log.warn('no live feed configured and the demo is off: serving the API over stored findings only');
    sources = new Promise((resolve) => abort.signal.addEventListener('abort', () => resolve(), { once: true }));
  }

  let code = 0;
  try {
    await sources;
  } catch (e) {
    log.error({ err: e }, 'pipeline failed');
    code = 1;
  }
  await notifications?.stop(); // pending deliveries get a grace period, then are abandoned (counted, logged)
  if (kafka) {
    await kafka.close();
  }
  rules.close();
  hub.closeAll();
  snoozes.stop();
  await app.close();
  await store.close();
  if (store.kind === 'embedded') removeServiceNote(config.VIGIL_DATA_DIR);
  return code;
}

/** A pipeline running the rules in force, and following their changes until it closes. */
async function startPipeline(
  config: Config,
  store: Store,
  hub: AlertHub,
  rules: RulesController,
  scorer: TransactionScorer,
  batchSize?: number,
  state: { redisUrl?: string; stateIdleMs?: number } = {},
): Promise<{ pipeline: Pipeline; close: () => Promise<void> }> {
  const pipeline = pipelineFor(config, store, hub, 'live', rules.current.instances, batchSize, state);
  await pipeline.start();
  await scorer.attach(pipeline.transport);
  const off = rules.onChange((_change, set) => pipeline.detectors.setDetectors(set.instances));
  const unready = markReady({ pipeline: true, stateStore: pipeline.detectors.store, transport: pipeline.transport });
  return {
    pipeline,
    close: async () => {
      unready();
      off();
      await scorer.detach();
      await pipeline.close();
    },
  };
}

function pipelineFor(config: Config, store: Store, hub: AlertHub, runId: string, detectors: readonly DetectorInstance[], batchSize?: number, state: { redisUrl?: string; stateIdleMs?: number } = {}): Pipeline {
  return new Pipeline({
    ...state,
    runId,
    detectors,
    store,
    hub,
    flushRows: config.VIGIL_FLUSH_ROWS,
    flushMs: config.VIGIL_FLUSH_MS,
    partitions: config.VIGIL_PARTITIONS,
    queueCapacity: config.VIGIL_QUEUE_CAPACITY,
    ingest: batchSize ? { batchSize } : undefined,
    spill: spillConfig(config),
    metrics: processObservability().metrics,
    log: (m) => console.error(m),
  });
}

/** The demo: the bundled sample at real-time pace, rebased to now, with fresh detector state each loop. */
async function runDemo(config: Config, store: Store, hub: AlertHub, signal: AbortSignal, log: Log, rules: RulesController, scorer: TransactionScorer): Promise<void> {
  const file = config.VIGIL_DEMO_FILE;
  if (!existsSync(file)) throw new UsageError(`VIGIL_DEMO_FILE: ${file} does not exist (run from the checkout, or set VIGIL_DEMO_FILE)`);
  log.info(`no live feed configured: replaying ${file} at real-time pace in a loop (run id "live")`);
  for (let loop = 1; !signal.aborted; loop++) {
    // Fresh state per loop: the sample's last price must not read as a jump against its first.
    const { pipeline, close } = await startPipeline(config, store, hub, rules, scorer, 64);
    try {
      const s = await replayFiles(pipeline, { files: [file], speed: { mode: 'paced', factor: 1 }, rebaseToNow: true, signal });
      log.info({ loop, events: s.totalEvents, findings: s.findings }, `demo loop ${loop} done`);
    } finally {
      await close();
    }
  }
}

async function runLive(config: Config, store: Store, hub: AlertHub, signal: AbortSignal, log: Log, rules: RulesController, scorer: TransactionScorer): Promise<void> {
  // Live detector state goes to Redis when configured (the demo keeps its fresh in-memory state per loop).
  const { pipeline, close } = await startPipeline(config, store, hub, rules, scorer, 1, { redisUrl: config.REDIS_URL, stateIdleMs: config.VIGIL_STATE_IDLE_MS });
  // One connection per venue, carrying all its symbols.
  const byVenue = new Map<string, string[]>();
  for (const f of config.feeds) byVenue.set(f.venue, [...(byVenue.get(f.venue) ?? []), ...f.symbols]);
  try {
    await Promise.all(
      [...byVenue].map(async ([venue, symbols]) => {
        const adapter = getAdapter(venue);
        log.info(`connecting ${venue}: ${symbols.join(', ')}`);
        const feed = adapter.connect!({ symbols, ...config.endpoints[venue], signal, log: (m, extra) => log.info(extra ?? {}, m) });
        // The live normalizer's resync requests (gap, checksum mismatch) go back to its connection.
        pipeline.ingestor.setNormalizer(adapter.name, adapter.createNormalizer({ requestResync: (symbol, reason) => feed.resync(symbol, reason) }));
        for await (const frame of feed) await pipeline.ingestor.push(frame);
      }),
    );
  } finally {
    await close();
  }
}

/**
 * Everything in one process over Kafka: the API role's store side and alerts, a detect worker and the
 * sources (live feeds, or the demo loop as run "live"), in the same groups as the separate roles.
 */
async function runOnKafka(config: Config, transport: Transport, store: Store, hub: AlertHub, signal: AbortSignal, log: Log, rules: RulesController, scorer: TransactionScorer): Promise<void> {
  const roleLog: RoleLog = {
    info: (m, extra) => log.info(extra ?? {}, m),
    warn: (m, extra) => log.warn(extra ?? {}, m),
    error: (m, extra) => log.error(extra ?? {}, m),
  };
  const api = await startApiSide(config, transport, store, hub, roleLog);
  let detect;
  try {
    detect = await startDetectSide(config, transport, roleLog, rules);
  } catch (e) {
    await api.stop();
    throw e;
  }
  let failure: unknown;
  const unready = markReady({ pipeline: true, stateStore: detect.stateStore, transport });
  const stopOnFailure = new AbortController();
  const unwatch = watchTransport(transport, (e) => {
    failure = e;
    stopOnFailure.abort();
  });
  const sourceSignal = AbortSignal.any([signal, stopOnFailure.signal]);
  log.info(`running on Kafka ${config.KAFKA_BROKERS}: feeds → detect → store in one process`);
  try {
    await scorer.attach(transport);
    if (config.feeds.length > 0) {
      await runFeeds(config, new Ingestor(transport, { batchSize: 1 }), sourceSignal, roleLog);
    } else if (config.VIGIL_DEMO) {
      const file = config.VIGIL_DEMO_FILE;
      if (!existsSync(file)) throw new UsageError(`VIGIL_DEMO_FILE: ${file} does not exist (run from the checkout, or set VIGIL_DEMO_FILE)`);
      log.info(`no live feed configured: replaying ${file} at real-time pace in a loop (run id "live"); detector state carries over between loops`);
      for (let loop = 1; !sourceSignal.aborted; loop++) {
        const ingestor = new Ingestor(transport, { batchSize: 64, metrics: processObservability().metrics });
        const runner = detect.runner;
        const target = { runId: 'live', ingestor, drain: () => ingestor.flush(), deadLetters: 0, detectors: runner };
        const s = await replayFiles(target, { files: [file], speed: { mode: 'paced', factor: 1 }, rebaseToNow: true, signal: sourceSignal });
        ingestor.detachMetrics();
        log.info({ loop, events: s.totalEvents }, `demo loop ${loop} done`);
      }
    } else {
      log.warn('no live feed configured and the demo is off: storing what other roles produce');
      await new Promise<void>((resolve) => sourceSignal.addEventListener('abort', () => resolve(), { once: true }));
    }
  } finally {
    unwatch();
    unready();
    await scorer.detach();
    // Detection first (its last findings go out), then give the store side a moment to take them.
    await detect.stop();
    if (!failure) {
      await Promise.race([transport.drain().catch(() => undefined), new Promise((r) => setTimeout(r, 15_000).unref())]);
    }
    const { kept, lost } = await api.stop();
    log.info({ kept, lost }, kept > 0 ? `stopped; ${kept} rows the store did not take stay in the spill file (and uncommitted on Kafka)` : 'stopped; everything consumed is stored');
  }
  if (failure) throw failure;
}
