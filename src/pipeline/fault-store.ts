/**
 * TEST HOOK (not a configuration key): `VIGIL_FAULT_STORE_FLAG=<path>` in the environment of a role that
 * owns the findings store (`vigil api`, `vigil run`). While a file exists at that path, the store's
 * writes (findings, dead letters, runs, context, workflow, API keys…) and its ping fail as if ClickHouse were unreachable; reads go
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
  // Every write fails while the flag exists, whatever its name says it writes; reads go through. By
  // name, so a Store method added later is covered without touching this hook.
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (prop === 'ping') return async () => !existsSync(flag) && (await target.ping());
      if (typeof prop === 'string' && WRITE_METHOD.test(prop)) {
        return async (...args: unknown[]) => {
          check(prop);
          return fn.apply(target, args);
        };
      }
      return fn.bind(target);
    },
  });
}

const WRITE_METHOD = /^(insert|upsert|create|revoke|record|cancel)/;
