import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { AlertHub } from '../api/alert-hub.ts';
import { buildApi } from '../api/server.ts';
import { loadConfig, type Config } from '../core/config.ts';
import { buildDetectors } from '../detectors/configure.ts';
import { getAdapter } from '../feeds/registry.ts';
import { Pipeline } from '../pipeline/pipeline.ts';
import { replayFiles } from '../replay/replay.ts';
import type { Store } from '../storage/types.ts';
import { parse, UsageError } from './args.ts';
import { newToken, removeServiceNote, writeServiceNote } from './service-file.ts';
import { openConfiguredStore } from './store.ts';

export const RUN_USAGE = `usage: vigil run [--feed venue:sym1,sym2]… [--port N] [--host H] [--no-demo]

Runs everything in one process: feeds, detectors, the findings store and the API. With no live feed
configured it replays the bundled sample (VIGIL_DEMO_FILE) at real-time pace in a loop, as run "live".`;

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
  buildDetectors(config); // fail on bad detector parameters before opening anything
  for (const f of config.feeds) {
    const adapter = getAdapter(f.venue);
    if (!adapter.connect) throw new UsageError(`--feed ${f.venue}: this venue has no live connection`);
  }

  const store = await openConfiguredStore(config);
  const hub = new AlertHub();
  const token = newToken();
  const app = await buildApi({ store, hub, sqlToken: token, logger: { level: config.VIGIL_LOG_LEVEL } });
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
  log.info({ url, store: store.kind }, `Vigil is up: API ${url}, findings at ${url}/api/findings, live alerts on ws://${url.slice(7)}/api/alerts`);

  let sources: Promise<void>;
  if (config.feeds.length > 0) sources = runLive(config, store, hub, abort.signal, log);
  else if (config.VIGIL_DEMO) sources = runDemo(config, store, hub, abort.signal, log);
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
  hub.closeAll();
  await app.close();
  await store.close();
  if (store.kind === 'embedded') removeServiceNote(config.VIGIL_DATA_DIR);
  return code;
}

function pipelineFor(config: Config, store: Store, hub: AlertHub, runId: string, batchSize?: number, state: { redisUrl?: string; stateIdleMs?: number } = {}): Pipeline {
  return new Pipeline({
    ...state,
    runId,
    detectors: buildDetectors(config),
    store,
    hub,
    flushRows: config.VIGIL_FLUSH_ROWS,
    flushMs: config.VIGIL_FLUSH_MS,
    partitions: config.VIGIL_PARTITIONS,
    queueCapacity: config.VIGIL_QUEUE_CAPACITY,
    ingest: batchSize ? { batchSize } : undefined,
  });
}

/** The demo: the bundled sample at real-time pace, rebased to now, with fresh detector state each loop. */
async function runDemo(config: Config, store: Store, hub: AlertHub, signal: AbortSignal, log: Log): Promise<void> {
  const file = config.VIGIL_DEMO_FILE;
  if (!existsSync(file)) throw new UsageError(`VIGIL_DEMO_FILE: ${file} does not exist (run from the checkout, or set VIGIL_DEMO_FILE)`);
  log.info(`no live feed configured: replaying ${file} at real-time pace in a loop (run id "live")`);
  for (let loop = 1; !signal.aborted; loop++) {
    // Fresh state per loop: the sample's last price must not read as a jump against its first.
    const pipeline = await pipelineFor(config, store, hub, 'live', 64).start();
    try {
      const s = await replayFiles(pipeline, { files: [file], speed: { mode: 'paced', factor: 1 }, rebaseToNow: true, signal });
      log.info({ loop, events: s.totalEvents, findings: s.findings }, `demo loop ${loop} done`);
    } finally {
      await pipeline.close();
    }
  }
}

async function runLive(config: Config, store: Store, hub: AlertHub, signal: AbortSignal, log: Log): Promise<void> {
  // Live detector state goes to Redis when configured (the demo keeps its fresh in-memory state per loop).
  const pipeline = await pipelineFor(config, store, hub, 'live', 1, { redisUrl: config.REDIS_URL, stateIdleMs: config.VIGIL_STATE_IDLE_MS }).start();
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
    await pipeline.close();
  }
}
