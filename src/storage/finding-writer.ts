/** The store's batched write paths, all on the shared BatchWriter (with an optional spill file). */
import { join } from 'node:path';
import type { Finding } from '../core/events.ts';
import { BatchWriter, type BatchWriterOptions, type SpillOptions } from './batch-writer.ts';
import type { TxRisk } from '../pipeline/risk-score.ts';
import type { DeadLetter, RunRecord, Store } from './types.ts';

export type { BatchWriterOptions, SpillCounters, WriterCounters } from './batch-writer.ts';

/** Where the store side spills, and how much it holds in memory first. */
export interface SpillConfig {
  /** Directory of the spill files (VIGIL_DATA_DIR/spill). */
  dir: string;
  /** Rows per writer held in memory (VIGIL_STORE_BUFFER_ROWS). */
  maxBuffered: number;
}

export class FindingWriter extends BatchWriter<Finding> {
  constructor(store: Pick<Store, 'insertFindings'>, options?: BatchWriterOptions & { spill?: SpillConfig }) {
    const { spill, ...rest } = options ?? {};
    const spillOptions: SpillOptions<Finding> | undefined = spill && { path: join(spill.dir, 'findings.jsonl'), maxBuffered: spill.maxBuffered };
    super('finding writer', (rows) => store.insertFindings(rows), { ...rest, spill: spillOptions });
  }
}

type DeadLetterJson = Omit<DeadLetter, 'raw'> & { raw: string };

export class DeadLetterWriter extends BatchWriter<DeadLetter> {
  constructor(store: Pick<Store, 'insertDeadLetters'>, options?: BatchWriterOptions & { spill?: SpillConfig }) {
    const { spill, ...rest } = options ?? {};
    // The raw bytes travel base64-encoded in the spill file.
    const spillOptions: SpillOptions<DeadLetter> | undefined = spill && {
      path: join(spill.dir, 'dead-letters.jsonl'),
      maxBuffered: spill.maxBuffered,
      encode: (d) => ({ ...d, raw: d.raw.toString('base64') }) satisfies DeadLetterJson,
      decode: (v) => {
        const j = v as DeadLetterJson;
        return { ...j, raw: Buffer.from(j.raw, 'base64') };
      },
    };
    super('dead-letter writer', (rows) => store.insertDeadLetters(rows), { ...rest, spill: spillOptions });
  }
}

export class TxRiskWriter extends BatchWriter<TxRisk> {
  constructor(store: Pick<Store, 'insertTxRisk'>, options?: BatchWriterOptions & { spill?: SpillConfig }) {
    const { spill, ...rest } = options ?? {};
    const spillOptions: SpillOptions<TxRisk> | undefined = spill && { path: join(spill.dir, 'tx-risk.jsonl'), maxBuffered: spill.maxBuffered };
    super('transaction risk writer', (rows) => store.insertTxRisk(rows), { ...rest, spill: spillOptions });
  }
}

/** Run records (upserts by run id, the latest wins): few, so one upsert per record, retried like the rest. */
export class RunWriter extends BatchWriter<RunRecord> {
  constructor(store: Pick<Store, 'upsertRun'>, options?: BatchWriterOptions) {
    super(
      'run writer',
      async (rows) => {
        for (const r of rows) await store.upsertRun(r);
      },
      options,
    );
  }
}
