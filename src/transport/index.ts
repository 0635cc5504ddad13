import type { Config } from '../core/config.ts';
import { KafkaTransport, type KafkaTransportOptions } from './kafka.ts';
import { MemoryTransport, type MemoryTransportOptions } from './memory.ts';
import type { Transport } from './types.ts';

export * from './types.ts';
export { MemoryTransport } from './memory.ts';
export { KafkaTransport } from './kafka.ts';

/** The configuration keys that choose and shape the transport. */
export type TransportConfig = Partial<Pick<Config, 'KAFKA_BROKERS' | 'KAFKA_CLIENT_ID' | 'VIGIL_KAFKA_PARTITIONS' | 'VIGIL_PARTITIONS' | 'VIGIL_QUEUE_CAPACITY'>>;

/**
 * The transport for a configuration: Kafka when KAFKA_BROKERS is set, the in-process one otherwise.
 * Memory options (partitions, queueCapacity, maxBatch) given directly still work, as before; `kafka`
 * adds or overrides Kafka options (topic prefix, retries…).
 */
export function createTransport(
  config: TransportConfig & MemoryTransportOptions & { kafka?: Partial<KafkaTransportOptions> } = {},
): Transport {
  if (config.KAFKA_BROKERS) {
    return new KafkaTransport({
      brokers: config.KAFKA_BROKERS.split(',').map((b) => b.trim()).filter(Boolean),
      clientId: config.KAFKA_CLIENT_ID ?? 'vigil',
      partitions: config.VIGIL_KAFKA_PARTITIONS ?? 6,
      maxBatch: config.maxBatch,
      ...config.kafka,
    });
  }
  return new MemoryTransport({
    partitions: config.partitions ?? config.VIGIL_PARTITIONS,
    queueCapacity: config.queueCapacity ?? config.VIGIL_QUEUE_CAPACITY,
    maxBatch: config.maxBatch,
  });
}
