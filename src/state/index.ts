/**
 * The state store for a configuration: Redis when REDIS_URL is set (workers share state, any of them
 * can take over a key), else the in-process memory store.
 */
import type { StateStore } from '../detectors/types.ts';
import { MemoryStateStore } from './memory.ts';
import { RedisStateStore, type RedisStateStoreOptions } from './redis.ts';

export { MemoryStateStore } from './memory.ts';
export { RedisStateStore } from './redis.ts';

export async function openStateStore(options: { redisUrl?: string } & Omit<Partial<RedisStateStoreOptions>, 'url'> = {}): Promise<StateStore> {
  const { redisUrl, ...rest } = options;
  if (!redisUrl) return new MemoryStateStore();
  return RedisStateStore.connect({ ...rest, url: redisUrl });
}
