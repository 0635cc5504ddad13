/**
 * Versioned schema migrations. Each migration is applied once, in version order, and recorded in
 * `schema_migrations` (version, name, applied_at). Statements use `{db}` for the database and are
 * written to be idempotent (IF NOT EXISTS), so a run interrupted between a statement and its record
 * is safe to repeat. Never edit an applied migration: add a new one.
 */
import type { Db } from './db.ts';

export interface Migration {
  version: number;
  name: string;
  statements: readonly string[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'findings',
    statements: [
      // ts is a function of the (deterministic) id, so (run_id, ts, id) identifies a finding and
      // ReplacingMergeTree collapses re-deliveries; reads use FINAL so duplicates never show.
      `CREATE TABLE IF NOT EXISTS {db}.findings (
        id String,
        run_id LowCardinality(String),
        detector LowCardinality(String),
        rule_id LowCardinality(String),
        severity LowCardinality(String),
        severity_rank UInt8 COMMENT 'info=0 low=1 medium=2 high=3 critical=4',
        score Float64,
        venue LowCardinality(String) COMMENT 'empty when absent',
        symbol LowCardinality(String) COMMENT 'empty when absent',
        account String COMMENT 'empty when absent',
        key String,
        ts DateTime64(3, 'UTC'),
        window_start DateTime64(3, 'UTC'),
        window_end DateTime64(3, 'UTC'),
        summary String,
        evidence String COMMENT 'JSON text',
        inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
        INDEX idx_id id TYPE bloom_filter GRANULARITY 4
      )
      ENGINE = ReplacingMergeTree(inserted_at)
      PARTITION BY toYYYYMM(ts)
      ORDER BY (run_id, ts, id)`,
    ],
  },
  {
    version: 2,
    name: 'dead_letters',
    statements: [
      `CREATE TABLE IF NOT EXISTS {db}.dead_letters (
        ts DateTime64(3, 'UTC'),
        run_id LowCardinality(String),
        source LowCardinality(String),
        origin String,
        reason String,
        raw String COMMENT 'base64 of the frame bytes; base64Decode(raw) gives them back',
        inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
      )
      ENGINE = MergeTree
      PARTITION BY toYYYYMM(ts)
      ORDER BY (source, ts)`,
    ],
  },
  {
    version: 3,
    name: 'runs',
    statements: [
      `CREATE TABLE IF NOT EXISTS {db}.runs (
        run_id String,
        started_at DateTime64(3, 'UTC'),
        finished_at Nullable(DateTime64(3, 'UTC')),
        status LowCardinality(String),
        inputs Array(String),
        summary String COMMENT 'JSON text',
        updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
      )
      ENGINE = ReplacingMergeTree(updated_at)
      ORDER BY run_id`,
    ],
  },
  {
    version: 4,
    name: 'rules and transaction risk',
    statements: [
      `ALTER TABLE {db}.findings ADD COLUMN IF NOT EXISTS rules_version LowCardinality(String) DEFAULT '' COMMENT 'rules file version the finding was produced under'`,
      // One row per transaction and view (the transaction as sent, and copies judged by rules keyed by the
      // counterparty or merchant); tx_scores combines them: noisy-OR of every rule's signal.
      `CREATE TABLE IF NOT EXISTS {db}.tx_risk (
        run_id LowCardinality(String),
        tx_id String,
        source LowCardinality(String),
        account String,
        ts DateTime64(3, 'UTC'),
        view LowCardinality(String),
        score Float64,
        reasons String COMMENT 'JSON array of {ruleId, detector, score, reason}, strongest first',
        inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
      )
      ENGINE = ReplacingMergeTree(inserted_at)
      PARTITION BY toYYYYMM(ts)
      ORDER BY (run_id, source, tx_id, view)`,
      `CREATE VIEW IF NOT EXISTS {db}.tx_scores AS
        SELECT run_id, source, tx_id, any(account) AS account, min(ts) AS ts,
               round(1 - exp(sum(log(greatest(1 - score, 1e-12)))), 6) AS score,
               groupArray(view) AS views, groupArray(reasons) AS reasons
        FROM {db}.tx_risk FINAL
        GROUP BY run_id, source, tx_id`,
      `CREATE TABLE IF NOT EXISTS {db}.rule_changes (
        at DateTime64(3, 'UTC'),
        version String,
        previous_version String,
        actor String COMMENT 'start, file, api:<who>',
        origin String COMMENT 'the file or request the rules came from',
        diff String COMMENT 'JSON array of {path, op, before, after}',
        rules String COMMENT 'the whole rules file after the change, JSON'
      )
      ENGINE = ReplacingMergeTree
      ORDER BY (version, previous_version, at)`,
    ],
  },
  {
    version: 5,
    name: 'api keys',
    statements: [
      // One row per key; revoking inserts the key again with state 1, which wins over state 0 whatever
      // the insert order (reads use FINAL). The key itself is never stored: only its SHA-256.
      `CREATE TABLE IF NOT EXISTS {db}.api_keys (
        id String,
        name String,
        role LowCardinality(String) COMMENT 'viewer, analyst, admin',
        key_hash String COMMENT 'hex SHA-256 of the key',
        hint String COMMENT 'the last 4 characters of the key',
        created_at DateTime64(3, 'UTC'),
        revoked_at Nullable(DateTime64(3, 'UTC')),
        state UInt8 COMMENT '0 valid, 1 revoked'
      )
      ENGINE = ReplacingMergeTree(state)
      ORDER BY id`,
    ],
  },
];

export interface MigrationResult {
  /** Versions applied by this call, in order. */
  applied: number[];
  /** The schema version after the call. */
  version: number;
}

/** Creates the database and the ledger, then applies every pending migration in order. */
export async function migrate(db: Db, migrations: readonly Migration[] = MIGRATIONS, log?: (msg: string) => void): Promise<MigrationResult> {
  assertOrdered(migrations);
  await db.command('CREATE DATABASE IF NOT EXISTS {db}');
  await db.command(`CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
  ) ENGINE = MergeTree ORDER BY version`);
  const done = new Set((await db.rows<{ version: number | string }>('SELECT DISTINCT version FROM {db}.schema_migrations')).map((r) => Number(r.version)));
  const known = Math.max(0, ...migrations.map((m) => m.version));
  const newest = Math.max(0, ...done);
  if (newest > known) log?.(`storage: database schema is at version ${newest}, newer than this build knows (${known})`);
  const applied: number[] = [];
  for (const m of migrations) {
    if (done.has(m.version)) continue;
    for (const statement of m.statements) await db.command(statement);
    await db.insert('schema_migrations', [{ version: m.version, name: m.name }]);
    applied.push(m.version);
    log?.(`storage: applied migration ${m.version} ${m.name}`);
  }
  return { applied, version: Math.max(newest, ...applied) };
}

function assertOrdered(migrations: readonly Migration[]): void {
  let last = 0;
  for (const m of migrations) {
    if (!Number.isInteger(m.version) || m.version <= last) throw new Error(`migrations must have increasing integer versions (at ${m.version} ${m.name})`);
    last = m.version;
  }
}
