import { MemoryTransport, type MemoryTransportOptions } from './memory.ts';
import type { Transport } from './types.ts';

export * from './types.ts';
export { MemoryTransport } from './memory.ts';

/** The transport for a configuration. Only the in-process one exists so far; Kafka plugs in here. */
export function createTransport(options: MemoryTransportOptions = {}): Transport {
  return new MemoryTransport(options);
}
