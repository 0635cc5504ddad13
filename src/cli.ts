/** `vigil <command>`: the one entry point for every role. */
import { VigilError } from './core/errors.ts';
import { UsageError } from './cli/args.ts';

const USAGE = `usage: vigil <command> [options]

commands:
  run       everything in one process: feeds (or the demo replay), detectors, store, API
  replay    replay recorded files through the pipeline
  backtest  run a grid of rule parameters over recorded files (findings/h, precision/recall with labels)
  sql       read-only analyst SQL on the findings store
  keys      API keys: create, list, revoke
  record    record live feeds to gzip files for replay

distributed roles (KAFKA_BROKERS; detector state in Redis with REDIS_URL):
  feeds     live feeds → Kafka event topics
  detect    a detector worker: event topics → detectors → vigil.findings (group vigil-detect)
  api       the API and the findings store: vigil.findings → ClickHouse (group vigil-store), live alerts

\`vigil <command> --help\` for a command's options.`;

const COMMANDS: Record<string, () => Promise<(argv: string[]) => Promise<number>>> = {
  run: async () => (await import('./cli/run.ts')).runCommand,
  replay: async () => (await import('./cli/replay.ts')).replayCommand,
  backtest: async () => (await import('./cli/backtest.ts')).backtestCommand,
  sql: async () => (await import('./cli/sql.ts')).sqlCommand,
  keys: async () => (await import('./cli/keys.ts')).keysCommand,
  record: async () => (await import('./cli/record.ts')).recordCommand,
  feeds: async () => (await import('./cli/feeds.ts')).feedsCommand,
  detect: async () => (await import('./cli/detect.ts')).detectCommand,
  api: async () => (await import('./cli/api.ts')).apiCommand,
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`vigil: unknown command ${JSON.stringify(name)}\n\n${USAGE}`);
    return 2;
  }
  try {
    return await (await load())(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`vigil ${name}: ${e.message}`);
      return 2;
    }
    if (e instanceof VigilError) {
      console.error(`vigil ${name}: ${e.code}: ${e.message}`);
      return e.code === 'VIGIL_ERR_CONFIG' ? 78 : 1;
    }
    console.error(`vigil ${name}: ${(e as Error).stack ?? e}`);
    return 1;
  }
}
