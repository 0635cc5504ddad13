import { loadConfig } from '../core/config.ts';
import { ERR, VigilError } from '../core/errors.ts';
import type { SqlFormat } from '../storage/types.ts';
import { parse, UsageError } from './args.ts';
import { readServiceNote } from './service-file.ts';
import { openConfiguredStore } from './store.ts';

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
  const note = config.CLICKHOUSE_URL ? undefined : readServiceNote(config.VIGIL_DATA_DIR);
  let text: string;
  if (note) {
    text = await viaService(note.url, note.token, query, format);
  } else {
    const store = await openConfiguredStore(config);
    try {
      text = await store.sql(query, format);
    } finally {
      await store.close();
    }
  }
  process.stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`);
  return 0;
}

async function viaService(url: string, token: string, query: string, format: SqlFormat): Promise<string> {
  let res: Response;
  try {
    res = await fetch(`${url}/api/sql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-vigil-sql-token': token },
      body: JSON.stringify({ query, format }),
    });
  } catch (e) {
    throw new VigilError(ERR.STORE_LOCKED, `vigil run holds the embedded store but its API at ${url} does not answer: ${(e as Error).message}`, 503);
  }
  const body = await res.text();
  if (!res.ok) {
    let message = body;
    try {
      const j = JSON.parse(body) as { error?: { code?: string; message?: string } };
      if (j.error?.message) message = j.error.message;
    } catch {
      /* plain text error */
    }
    throw new VigilError(ERR.SQL, message, res.status);
  }
  return body;
}
