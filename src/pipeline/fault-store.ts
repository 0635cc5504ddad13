/**
 * TEST HOOK (not a configuration key): `VIGIL_FAULT_STORE_FLAG=<path>` in the environment of a role that
 * owns the findings store (`vigil api`, `vigil run`). While a file exists at that path, the store's
 * writes (findings, dead letters, runs, API keys) and its ping fail as if ClickHouse were unreachable; reads go
 * through. The integration tests (test/distributed.test.ts) create and remove the file to take the store
 * "down" for a while. Without the variable the store is returned as it is.
 */
import { existsSync } from 'node:fs';
import { ERR, VigilError } from '../core/errors.ts';
import type { Store } from '../storage/types.ts';

export const FAULT_STORE_FLAG_ENV = 'VIGIL_FAULT_STORE_FLAG';

export function withStoreFaults(store: Store, env: Record<string, string | undefined> = process.env): Store {
  const flag = env[FAULT_STORE_FLAG_ENV];
  if (!flag) return store;
  const check = (what: string): void => {
    if (existsSync(flag)) throw new VigilError(ERR.STORE, `${what}: ClickHouse unavailable (fault injected: ${flag} exists)`, 503);
  };
  return {
    kind: store.kind,
    insertFindings: async (rows) => {
      check('insert findings');
      await store.insertFindings(rows);
    },
    insertDeadLetters: async (rows) => {
      check('insert dead letters');
      await store.insertDeadLetters(rows);
    },
    insertTxRisk: async (rows) => {
      check('insert transaction risk');
      await store.insertTxRisk(rows);
    },
    insertRuleChanges: async (rows) => {
      check('insert rule changes');
      await store.insertRuleChanges(rows);
    },
    listRuleChanges: (o) => store.listRuleChanges(o),
    upsertRun: async (run) => {
      check('upsert run');
      await store.upsertRun(run);
    },
    ping: async () => !existsSync(flag) && (await store.ping()),
    searchFindings: (q) => store.searchFindings(q),
    getFinding: (id, runId) => store.getFinding(id, runId),
    sql: (q, format, limits) => store.sql(q, format, limits),
    listRuns: (o) => store.listRuns(o),
    listDeadLetters: (q) => store.listDeadLetters(q),
    createApiKey: async (key) => {
      check('create API key');
      await store.createApiKey(key);
    },
    listApiKeys: () => store.listApiKeys(),
    revokeApiKey: async (id, at) => {
      check('revoke API key');
      return store.revokeApiKey(id, at);
    },
    findApiKeyByHash: (hash) => store.findApiKeyByHash(hash),
    close: () => store.close(),
  };
}
