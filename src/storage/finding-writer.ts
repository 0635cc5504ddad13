/** The store's two batched write paths, both on the shared BatchWriter. */
import type { Finding } from '../core/events.ts';
import { BatchWriter, type BatchWriterOptions } from './batch-writer.ts';
import type { DeadLetter, Store } from './types.ts';

export type { BatchWriterOptions, WriterCounters } from './batch-writer.ts';

export class FindingWriter extends BatchWriter<Finding> {
  constructor(store: Pick<Store, 'insertFindings'>, options?: BatchWriterOptions) {
    super('finding writer', (rows) => store.insertFindings(rows), options);
  }
}

export class DeadLetterWriter extends BatchWriter<DeadLetter> {
  constructor(store: Pick<Store, 'insertDeadLetters'>, options?: BatchWriterOptions) {
    super('dead-letter writer', (rows) => store.insertDeadLetters(rows), options);
  }
}
