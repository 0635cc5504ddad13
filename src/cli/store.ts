import type { Config } from '../core/config.ts';
import { ERR, VigilError } from '../core/errors.ts';
import { openStore } from '../storage/clickhouse.ts';
import type { Store } from '../storage/types.ts';
import { readServiceNote, type ServiceNote } from './service-file.ts';

/** Opens the configured store; when another process holds the embedded one, says which and what to do. */
export async function openConfiguredStore(config: Config): Promise<Store> {
  try {
    return await openStore({
      dataDir: config.VIGIL_DATA_DIR,
      url: config.CLICKHOUSE_URL,
      username: config.CLICKHOUSE_USER,
      password: config.CLICKHOUSE_PASSWORD,
      database: config.CLICKHOUSE_DATABASE,
    });
  } catch (e) {
    if (e instanceof VigilError && e.code === ERR.STORE_LOCKED) {
      const note = readServiceNote(config.VIGIL_DATA_DIR);
      const who = note ? `vigil ${note.role ?? 'run'} (pid ${note.pid}, API ${note.url})` : 'another process';
      throw new VigilError(
        ERR.STORE_LOCKED,
        `the embedded store in ${config.VIGIL_DATA_DIR} is held by ${who}; the embedded engine admits one process per data directory. ` +
          `Stop it, or use another VIGIL_DATA_DIR, or set CLICKHOUSE_URL to share a ClickHouse server.`,
        503,
      );
    }
    throw e;
  }
}

/**
 * Runs `direct` on the configured store, or — when a running `vigil run` / `vigil api` holds the
 * embedded store (its note in the data directory) — `viaService` against that process's API.
 */
export async function viaServiceOrStore<T>(config: Config, viaService: (note: ServiceNote) => Promise<T>, direct: (store: Store) => Promise<T>): Promise<T> {
  const note = config.CLICKHOUSE_URL ? undefined : readServiceNote(config.VIGIL_DATA_DIR);
  if (note) return viaService(note);
  const store = await openConfiguredStore(config);
  try {
    return await direct(store);
  } finally {
    await store.close();
  }
}
