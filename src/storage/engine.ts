/**
 * Opens the ClickHouse engine behind the store: embedded chdb at `<dataDir>/clickhouse`, or a server
 * over HTTP. Both give the same @clickhouse/client API.
 *
 * Settings isolation (measured on chdb 3.4): chdb applies `clickhouse_settings` as session `SET`s that
 * persist after the query, and `readonly=1` cannot be undone in that session. So analyst SQL runs on a
 * throw-away chdb session on the same data directory (cheap: ~2 ms), never on the main one. Over HTTP
 * (no session id) settings are per request, so the main client serves both.
 *
 * Bulk inserts (RowBinary, see row-binary.ts) take a different road on each engine, behind
 * `Engine.bulkInsert`, so the Db over it never asks which engine runs:
 * - server: `INSERT … FORMAT RowBinary` with the bytes as the HTTP body;
 * - embedded: chdb takes an insert's data only inside the statement text, as a string (its connection
 *   decodes the body as UTF-8, which breaks binary), and even text data inline costs ~1 µs per 100
 *   bytes more than the same bytes read by the `file()` table function (measured on chdb 3.4). So the
 *   bytes go to a file of the engine's own and are read with `INSERT … SELECT * FROM file(…)`.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { createClient, type ClickHouseClient, type ClickHouseClientConfigOptions } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
import { ERR, VigilError } from '../core/errors.ts';

export interface EngineOptions {
  dataDir: string;
  url?: string;
  username?: string;
  password?: string;
  /** Raw database name (validated by the caller). */
  database: string;
  /** Backquoted database identifier. */
  databaseIdent: string;
}

export interface Engine {
  readonly kind: 'embedded' | 'server';
  readonly client: ClickHouseClient;
  /** One insert statement of RowBinary rows, the engine's own way (see above). */
  readonly bulkInsert: BulkInsert;
  /** Runs `fn` on a client whose session settings cannot leak into `client`; default database set. */
  withIsolatedClient<T>(fn: (client: ClickHouseClient) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * One insert statement of RowBinary rows. `table` is database-qualified and `columns` a column list,
 * both fixed identifiers; `structure` names the columns with the types their bytes are encoded as.
 */
export type BulkInsert = (table: string, columns: string, structure: string, payload: Uint8Array) => Promise<void>;

/**
 * Settings of every bulk insert, in the statement (query-scoped on both engines). The tables bulk rows go
 * to (trades, quotes, transactions) are ReplacingMergeTrees read with FINAL, which collapses duplicates
 * across inserts anyway; collapsing those within one insert as well (optimize_on_insert) cost ~5 ms of
 * CPU per context batch of a replay (chdb 3.4) for nothing a reader sees.
 */
const BULK_INSERT_SETTINGS = 'optimize_on_insert = 0';

export async function openEngine(opts: EngineOptions): Promise<Engine> {
  return opts.url === undefined ? openEmbedded(opts) : openServer(opts, opts.url);
}

function openEmbedded(opts: EngineOptions): Engine {
  const path = resolve(join(opts.dataDir, 'clickhouse'));
  mkdirSync(path, { recursive: true });
  const client = createClient({ connection: connectChdb(path) });
  let files: string;
  try {
    files = insertFilesDir(path);
  } catch (e) {
    void client.close().catch(() => undefined);
    throw new VigilError(ERR.STORE, `cannot prepare the embedded ClickHouse at ${path}: ${(e as Error)?.message ?? String(e)}`, 503);
  }
  let seq = 0;
  const bulkInsert: BulkInsert = async (table, columns, structure, payload) => {
    const file = join(files, `${++seq}.bin`);
    // Written and removed synchronously: a page-cache write of a batch (~0.5 ms for 10k context rows)
    // costs far less CPU than the promise API's thread-pool round trips (measured ~8 ms per insert of
    // 10k trades, chdb 3.4), and the insert itself still runs off the event loop.
    writeFileSync(file, payload);
    try {
      await client.command({
        query: `INSERT INTO ${table} (${columns}) SELECT * FROM file({path:String}, 'RowBinary', {structure:String}) SETTINGS ${BULK_INSERT_SETTINGS}`,
        query_params: { path: file, structure },
      });
    } finally {
      rmSync(file, { force: true });
    }
  };
  return {
    kind: 'embedded',
    client,
    bulkInsert,
    async withIsolatedClient(fn) {
      const isolated = createClient({ connection: connectChdb(path) });
      try {
        await isolated.command({ query: `USE ${opts.databaseIdent}` });
        return await fn(isolated);
      } finally {
        await isolated.close();
      }
    },
    async close() {
      try {
        await client.close();
      } finally {
        liveInsertDirs.delete(files);
        rmSync(files, { recursive: true, force: true });
      }
    },
  };
}

/** This process's directories of insert files (the engines open now). */
const liveInsertDirs = new Set<string>();

/**
 * A directory of the engine's own for its insert files, under the data directory. Holding the chdb
 * connection means no other process uses this data directory, so any other directory there is left
 * by an engine that is gone (a crash between writing a file and removing it): removed here.
 */
function insertFilesDir(path: string): string {
  const root = join(path, 'vigil-insert');
  mkdirSync(root, { recursive: true });
  for (const name of readdirSync(root)) {
    const stale = join(root, name);
    if (!liveInsertDirs.has(stale)) rmSync(stale, { recursive: true, force: true });
  }
  const dir = mkdtempSync(join(root, 'engine-'));
  liveInsertDirs.add(dir);
  return dir;
}

async function openServer(opts: EngineOptions, url: string): Promise<Engine> {
  const auth = { url, username: opts.username ?? 'default', password: opts.password ?? '' };
  // The default database must exist before a client can name it.
  const bootstrap = createClient(auth);
  try {
    await bootstrap.command({ query: `CREATE DATABASE IF NOT EXISTS ${opts.databaseIdent}` });
  } catch (e) {
    throw new VigilError(ERR.STORE, `cannot reach ClickHouse at ${redact(url)}: ${(e as Error).message}`, 503);
  } finally {
    await bootstrap.close();
  }
  const client = createClient({ ...auth, database: opts.database });
  const bulkInsert: BulkInsert = async (table, columns, _structure, payload) => {
    const result = await client.exec({
      query: `INSERT INTO ${table} (${columns}) SETTINGS ${BULK_INSERT_SETTINGS} FORMAT RowBinary`,
      values: Readable.from([Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)], { objectMode: false }),
    });
    // The (empty) response is read to its end so the connection goes back to the pool.
    result.stream.resume();
    await finished(result.stream);
  };
  return { kind: 'server', client, bulkInsert, withIsolatedClient: (fn) => fn(client), close: () => client.close() };
}

/** chdb's Connection is typed against @clickhouse/client-common 1.23.0, the client against its own
 * bundled copy; they are the same contract (chdb re-exports it verbatim), so the cast is sound. */
type ClientConnection = NonNullable<ClickHouseClientConfigOptions['connection']>;

function connectChdb(path: string): ClientConnection {
  try {
    return createChdbConnection({ path }) as unknown as ClientConnection;
  } catch (e) {
    const message = (e as Error)?.message ?? String(e);
    if (isLockError(message, path)) {
      throw new VigilError(ERR.STORE_LOCKED, `another process holds the data directory ${path}; stop it (or point VIGIL_DATA_DIR elsewhere), or talk to it through its API`, 503);
    }
    throw new VigilError(ERR.STORE, `cannot open the embedded ClickHouse at ${path}: ${message}`, 503);
  }
}

/**
 * chdb reports a directory locked by another process only on stderr ("Cannot lock file …/status");
 * the thrown error just says "Failed to create connection". The status file names the holder's PID.
 */
function isLockError(message: string, path: string): boolean {
  if (/cannot lock file|another server instance|already running/i.test(message)) return true;
  if (!/failed to create connection/i.test(message)) return false;
  let status: string;
  try {
    status = readFileSync(join(path, 'status'), 'utf8');
  } catch {
    return false;
  }
  const pid = Number(/PID:\s*(\d+)/.exec(status)?.[1]);
  if (!Number.isInteger(pid) || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return '<invalid url>';
  }
}
