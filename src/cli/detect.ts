import { loadConfig } from '../core/config.ts';
import { RedisStateStore } from '../state/redis.ts';
import { GROUPS, requireKafka, roleLog, rulesController, shutdownSignal, startDetectSide, startHealthServer, transportFor, untilAborted, watchTransport } from '../pipeline/roles.ts';
import { parse } from './args.ts';

export const DETECT_USAGE = `usage: vigil detect

A detector worker of a distributed deployment (needs KAFKA_BROKERS): consumes the event topics in
consumer group vigil-detect, runs the configured detectors and produces findings to vigil.findings.
Start as many as there are partitions to share; Kafka gives each its partitions and moves them when a
worker comes or goes. Detector state lives in Redis (REDIS_URL), so the worker that takes partitions
over continues exactly where the previous one stopped. Each batch's findings are produced (acks=all) and
its states saved before its offsets are committed. SIGTERM/SIGINT: finishes the batch in hand, commits,
leaves the group, exits 0.`;

export async function detectCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { help: { type: 'boolean', short: 'h' } }, false);
  if (values.help) {
    console.log(DETECT_USAGE);
    return 0;
  }
  const config = loadConfig();
  requireKafka(config, 'detect');
  const log = roleLog('detect', config.VIGIL_LOG_LEVEL);
  const rules = rulesController(config, log); // bad rules fail before anything is opened
  const shutdown = shutdownSignal((sig) => log.info(`${sig}: finishing the batch in hand, committing, leaving the group`));
  const transport = transportFor(config);
  let failure: unknown;
  try {
    const side = await startDetectSide(config, transport, log, rules);
    const unwatch = watchTransport(transport, (e) => {
      failure = e;
      log.error('the transport failed for good (a batch kept failing); stopping', { error: (e as Error)?.message ?? String(e) });
      shutdown.abort();
    });
    // Healthy while the transport works and the state store is connected.
    const health = await startHealthServer(config, 'detect', () => {
      const store = side.stateStore;
      const stateStore = store instanceof RedisStateStore ? store.isReady : true;
      return { ok: !failure && stateStore, transport: !failure, stateStore, events: side.runner.counters.events };
    });
    log.info(`ready: consuming as group ${config.VIGIL_TOPIC_PREFIX}${GROUPS.detect} on ${config.KAFKA_BROKERS}, state in ${side.stateStore.kind}${health ? `, health on ${health.url}` : ''}`);
    await untilAborted(shutdown.signal);
    unwatch();
    await health?.close();
    await side.stop();
    const c = side.runner.counters;
    log.info('stopped', { events: c.events, findings: c.findings, statesLoaded: c.statesLoaded, skippedRedelivered: c.skippedRedelivered });
  } finally {
    shutdown.dispose();
    rules.close();
    await transport.close();
  }
  return failure ? 1 : 0;
}
