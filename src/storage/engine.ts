/**
 * Opens the ClickHouse engine behind the store: embedded chdb at `<dataDir>/clickhouse`, or a server
 * over HTTP. Both give the same @clickhouse/client API.
 *
 * Settings isolation (measured on chdb 3.4): chdb applies `clickhouse_settings` as session `SET`s that
 * persist after the query, and `readonly=1` cannot be undone in that session. So analyst SQL runs on a
 * throw-away chdb session on the same data directory (cheap: ~2 ms), never on the main one. Over HTTP
 * (no session id) settings are per request, so the main client serves both.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
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
  /** Runs `fn` on a client whose session settings cannot leak into `client`; default database set. */
  withIsolatedClient<T>(fn: (client: ClickHouseClient) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export async function openEngine(opts: EngineOptions): Promise<Engine> {
  return opts.url === undefined ? openEmbedded(opts) : openServer(opts, opts.url);
}

function openEmbedded(opts: EngineOptions): Engine {
  const path = resolve(join(opts.dataDir, 'clickhouse'));
  mkdirSync(path, { recursive: true });
  const client = createClient({ connection: connectChdb(path) });
  return {
    kind: 'embedded',
    client,
    async withIsolatedClient(fn) {
      const isolated = createClient({ connection: connectChdb(path) });
      try {
        await isolated.command({ query: `USE ${opts.databaseIdent}` });
        return await fn(isolated);
      } finally {
        await isolated.close();
      }
    },
    close: () => client.close(),
  };
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
  return { kind: 'server', client, withIsolatedClient: (fn) => fn(client), close: () => client.close() };
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
