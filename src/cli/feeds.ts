import { loadConfig } from '../core/config.ts';
import { getAdapter } from '../feeds/registry.ts';
import { Ingestor } from '../pipeline/ingest.ts';
import { requireKafka, roleLog, runFeeds, shutdownSignal, startHealthServer, transportFor, watchTransport } from '../pipeline/roles.ts';
import { parse, UsageError } from './args.ts';

export const FEEDS_USAGE = `usage: vigil feeds [--feed venue:sym1,sym2]…

The feed role of a distributed deployment (needs KAFKA_BROKERS): connects the live feeds (VIGIL_FEEDS, or
--feed), normalizes their frames and produces canonical events to the event topics (broken frames to
vigil.dlq). No detectors, no store. SIGTERM/SIGINT: closes the connections, sends what was normalized,
exits 0.`;

export async function feedsCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { feed: { type: 'string', multiple: true }, help: { type: 'boolean', short: 'h' } }, false);
  if (values.help) {
    console.log(FEEDS_USAGE);
    return 0;
  }
  const config = loadConfig(process.env, { VIGIL_FEEDS: values.feed?.join(';') });
  requireKafka(config, 'feeds');
  if (config.feeds.length === 0) throw new UsageError(`no feed configured: set VIGIL_FEEDS or pass --feed venue:symbols\n${FEEDS_USAGE}`);
  for (const f of config.feeds) {
    if (!getAdapter(f.venue).connect) throw new UsageError(`--feed ${f.venue}: this venue has no live connection`);
  }
  const log = roleLog('feeds', config.VIGIL_LOG_LEVEL);
  const shutdown = shutdownSignal((sig) => log.info(`${sig}: closing the feeds, sending what was normalized`));
  const transport = transportFor(config);
  // One frame's events leave at once (live): nothing waits in the ingestor for a batch to fill.
  const ingestor = new Ingestor(transport, { batchSize: 1 });
  let failure: unknown;
  const unwatch = watchTransport(transport, (e) => {
    failure = e;
    shutdown.abort();
  });
  let health: Awaited<ReturnType<typeof startHealthServer>>;
  try {
    health = await startHealthServer(config, 'feeds', () => ({ ok: !failure, transport: !failure, frames: ingestor.counters.frames }));
    log.info(`ready: producing to ${config.KAFKA_BROKERS}${config.VIGIL_TOPIC_PREFIX ? ` (topic prefix ${config.VIGIL_TOPIC_PREFIX})` : ''}${health ? `, health on ${health.url}` : ''}`);
    await runFeeds(config, ingestor, shutdown.signal, log);
  } catch (e) {
    failure ??= e;
  } finally {
    await health?.close();
    unwatch();
    shutdown.dispose();
    await transport.close();
  }
  const c = ingestor.counters;
  const events = Object.values(c.events).reduce((a, b) => a + b, 0);
  if (failure) {
    log.error('stopped on a failure', { error: (failure as Error)?.message ?? String(failure) });
    return 1;
  }
  log.info(`stopped: ${c.frames} frames, ${events} events sent`, { events: c.events, sent: events, malformed: c.malformed });
  return 0;
}
