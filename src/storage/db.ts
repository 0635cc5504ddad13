/**
 * A thin wrapper over a @clickhouse/client instance: the three calls the store needs, each mapping
 * engine errors to VigilError(ERR.STORE). Never passes `clickhouse_settings`: chdb applies them as
 * session-wide `SET`s that outlive the query (measured: a `readonly` setting would poison every later
 * write), so ordinary queries carry none. Values travel only as `{name:Type}` query parameters.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { ERR, VigilError } from '../core/errors.ts';
import type { BulkInsert } from './engine.ts';
import type { RowBinaryTable } from './row-binary.ts';

export class Db {
  constructor(
    readonly client: ClickHouseClient,
    /** Backquoted database identifier, safe to splice into SQL (validated at open). */
    readonly database: string,
    /** The engine's RowBinary insert (Engine.bulkInsert); insertRowBinary needs it. */
    private readonly bulkInsert?: BulkInsert,
  ) {}

  /** `{db}` in a statement stands for the database identifier. */
  sql(statement: string): string {
    return statement.replaceAll('{db}', this.database);
  }

  async command(statement: string, params?: Record<string, unknown>): Promise<void> {
    await wrap('command', () => this.client.command({ query: this.sql(statement), query_params: params }));
  }

  async rows<T>(statement: string, params?: Record<string, unknown>): Promise<T[]> {
    return wrap('query', async () => {
      const rs = await this.client.query({ query: this.sql(statement), format: 'JSONEachRow', query_params: params });
      return rs.json<T>();
    });
  }

  async insert(table: string, values: readonly object[]): Promise<void> {
    if (values.length === 0) return;
    await wrap('insert', () => this.client.insert({ table: `${this.database}.${table}`, values: values as object[], format: 'JSONEachRow' }));
  }

  /** Rows encoded by a RowBinaryWriter, in `table`'s column order: one insert statement, on either engine. */
  async insertRowBinary(table: RowBinaryTable, payload: Uint8Array): Promise<void> {
    if (payload.length === 0) return;
    const insert = this.bulkInsert;
    if (insert === undefined) throw new VigilError(ERR.STORE, 'store insert failed: this Db was made without a bulk insert (pass the engine\'s)', 503);
    const columns = table.columns.map(([name]) => name).join(', ');
    const structure = table.columns.map(([name, type]) => `${name} ${type}`).join(', ');
    await wrap('insert', () => insert(`${this.database}.${table.name}`, columns, structure, payload));
  }
}

export function quoteIdentifier(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    throw new VigilError(ERR.CONFIG, `invalid database name ${JSON.stringify(name)}: expected letters, digits and _`, 500);
  }
  return `\`${name}\``;
}

async function wrap<T>(op: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof VigilError) throw e;
    throw new VigilError(ERR.STORE, `store ${op} failed: ${(e as Error)?.message ?? String(e)}`, 503, { cause: e });
  }
}
