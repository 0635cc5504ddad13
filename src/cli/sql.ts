import { loadConfig } from '../core/config.ts';
import { ERR } from '../core/errors.ts';
import type { SqlFormat } from '../storage/types.ts';
import { parse, UsageError } from './args.ts';
import { requestService } from './service-file.ts';
import { viaServiceOrStore } from './store.ts';

export const SQL_USAGE = `usage: vigil sql "<query>" [--format pretty|tsv|csv|json|jsonl]

Runs read-only analyst SQL on the configured store: a ClickHouse server (CLICKHOUSE_URL), else the
embedded store in VIGIL_DATA_DIR — through the running \`vigil run\` when it holds that store.
Tables: findings (read with FINAL), dead_letters, runs.`;

const FORMATS: Record<string, SqlFormat> = {
  pretty: 'PrettyCompact',
  tsv: 'TabSeparatedWithNames',
  csv: 'CSVWithNames',
  json: 'JSON',
  jsonl: 'JSONEachRow',
};

export async function sqlCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    format: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(SQL_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(`expected exactly one query argument\n${SQL_USAGE}`);
  const query = positionals[0]!;
  const formatName = values.format ?? (process.stdout.isTTY ? 'pretty' : 'tsv');
  const format = FORMATS[formatName];
  if (!format) throw new UsageError(`--format: expected one of ${Object.keys(FORMATS).join(', ')}, got ${JSON.stringify(formatName)}`);

  const config = loadConfig();
  const text = await viaServiceOrStore(
    config,
    (note) => requestService(note, 'POST', '/api/sql', { query, format }, ERR.SQL),
    (store) => store.sql(query, format),
  );
  process.stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`);
  return 0;
}
