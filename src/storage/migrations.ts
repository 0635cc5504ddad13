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
  {
    version: 6,
    name: 'workflow',
    statements: [
      // Analyst workflow (src/storage/workflow.ts). Each change is one row in an append-only audit table;
      // a materialized view derives the current state from it, so one insert writes both and they never
      // disagree. Every action row carries the status and assignee after it; notes change no state.
      `CREATE TABLE IF NOT EXISTS {db}.finding_actions (
        ts DateTime64(3, 'UTC'),
        run_id LowCardinality(String),
        finding_id String,
        seq UInt64 COMMENT 'orders the actions of one finding; the state version',
        actor String,
        action LowCardinality(String) COMMENT 'status, assign, note',
        from_status LowCardinality(String),
        to_status LowCardinality(String) COMMENT 'status after the action',
        assignee Nullable(String) COMMENT 'assignee after the action',
        note String COMMENT 'empty when none'
      )
      ENGINE = MergeTree
      ORDER BY (run_id, finding_id, seq)`,
      `CREATE TABLE IF NOT EXISTS {db}.finding_workflow (
        run_id LowCardinality(String),
        finding_id String,
        status LowCardinality(String),
        assignee Nullable(String),
        updated_at DateTime64(3, 'UTC'),
        updated_by String,
        version UInt64
      )
      ENGINE = ReplacingMergeTree(version)
      ORDER BY (run_id, finding_id)`,
      `CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.finding_workflow_mv TO {db}.finding_workflow AS
        SELECT run_id, finding_id, to_status AS status, assignee, ts AS updated_at, actor AS updated_by, seq AS version
        FROM {db}.finding_actions WHERE action != 'note'`,
      // Snoozes: every create and cancel is a row of snooze_actions (the whole snooze, who, when); the
      // view keeps one row per snooze, the cancelled copy (state 1) winning whatever the insert order.
      `CREATE TABLE IF NOT EXISTS {db}.snooze_actions (
        ts DateTime64(3, 'UTC'),
        snooze_id String,
        actor String,
        action LowCardinality(String) COMMENT 'create, cancel',
        detector Nullable(String),
        rule_id Nullable(String),
        symbol Nullable(String),
        venue Nullable(String),
        account Nullable(String),
        until DateTime64(3, 'UTC'),
        created_at DateTime64(3, 'UTC'),
        created_by String,
        note Nullable(String)
      )
      ENGINE = MergeTree
      ORDER BY (snooze_id, ts)`,
      `CREATE TABLE IF NOT EXISTS {db}.snoozes (
        id String,
        detector Nullable(String),
        rule_id Nullable(String),
        symbol Nullable(String),
        venue Nullable(String),
        account Nullable(String),
        until DateTime64(3, 'UTC'),
        created_at DateTime64(3, 'UTC'),
        created_by String,
        note Nullable(String),
        cancelled_at Nullable(DateTime64(3, 'UTC')),
        cancelled_by Nullable(String),
        state UInt8 COMMENT '0 in force or expired, 1 cancelled'
      )
      ENGINE = ReplacingMergeTree(state)
      ORDER BY id`,
      `CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.snoozes_mv TO {db}.snoozes AS
        SELECT snooze_id AS id, detector, rule_id, symbol, venue, account, until, created_at, created_by, note,
          if(action = 'cancel', toNullable(ts), NULL) AS cancelled_at,
          if(action = 'cancel', toNullable(actor), NULL) AS cancelled_by,
          toUInt8(action = 'cancel') AS state
        FROM {db}.snooze_actions`,
    ],
  },
  {
    version: 7,
    name: 'market_events',
    statements: [
      // Market and transaction context around findings (src/storage/context-writer.ts, context-query.ts).
      // Ordered for the context queries: an instrument (one venue, or all venues of a symbol) or an
      // account over a time range within a run. ReplacingMergeTree on the natural key: a re-delivered or
      // re-replayed event collapses (reads use FINAL). The TTL counts from when a row was stored, not its
      // event time (a replay of an old capture would expire at once); the store sets it from
      // VIGIL_CONTEXT_TTL_DAYS at start (setContextTtl). Quotes are thinned before they get here.
      `CREATE TABLE IF NOT EXISTS {db}.trades (
        run_id LowCardinality(String),
        venue LowCardinality(String),
        symbol LowCardinality(String),
        ts DateTime64(3, 'UTC'),
        trade_id String,
        price Float64,
        qty Float64,
        side LowCardinality(String) COMMENT 'the aggressor: buy, sell, unknown',
        inserted_at DateTime DEFAULT now()
      )
      ENGINE = ReplacingMergeTree
      PARTITION BY toYYYYMM(ts)
      ORDER BY (run_id, symbol, venue, ts, trade_id)
      TTL inserted_at + toIntervalDay(30)`,
      `CREATE TABLE IF NOT EXISTS {db}.quotes (
        run_id LowCardinality(String),
        venue LowCardinality(String),
        symbol LowCardinality(String),
        ts DateTime64(3, 'UTC'),
        bid Float64,
        ask Float64,
        bid_size Float64,
        ask_size Float64,
        inserted_at DateTime DEFAULT now()
      )
      ENGINE = ReplacingMergeTree
      PARTITION BY toYYYYMM(ts)
      ORDER BY (run_id, symbol, venue, ts)
      TTL inserted_at + toIntervalDay(30)`,
      `CREATE TABLE IF NOT EXISTS {db}.transactions (
        run_id LowCardinality(String),
        source LowCardinality(String),
        tx_id String,
        ts DateTime64(3, 'UTC'),
        account String,
        counterparty String COMMENT 'empty when absent',
        merchant String COMMENT 'empty when absent',
        terminal String COMMENT 'empty when absent',
        amount Float64,
        currency LowCardinality(String),
        direction LowCardinality(String),
        channel LowCardinality(String),
        country LowCardinality(String) COMMENT 'empty when absent',
        inserted_at DateTime DEFAULT now(),
        INDEX idx_counterparty counterparty TYPE bloom_filter GRANULARITY 4
      )
      ENGINE = ReplacingMergeTree
      PARTITION BY toYYYYMM(ts)
      ORDER BY (run_id, account, ts, source, tx_id)
      TTL inserted_at + toIntervalDay(30)`,
    ],
  },
  {
    version: 8,
    name: 'runs_detail',
    statements: [
      // What a run was asked to do and what it did, as columns for SQL (the summary JSON keeps the rest:
      // events by kind, findings per detector, events/s…). Defaults cover rows written before.
      `ALTER TABLE {db}.runs ADD COLUMN IF NOT EXISTS rules_version LowCardinality(String) DEFAULT '' COMMENT 'rules the run detected with; empty when unknown'`,
      `ALTER TABLE {db}.runs ADD COLUMN IF NOT EXISTS options String DEFAULT '{}' COMMENT 'JSON: speed, time range, rules file, mappings…'`,
      `ALTER TABLE {db}.runs ADD COLUMN IF NOT EXISTS events UInt64 DEFAULT 0 COMMENT 'canonical events processed'`,
      `ALTER TABLE {db}.runs ADD COLUMN IF NOT EXISTS findings UInt64 DEFAULT 0 COMMENT 'findings emitted'`,
      `ALTER TABLE {db}.runs ADD COLUMN IF NOT EXISTS duration_ms UInt64 DEFAULT 0 COMMENT 'wall-clock duration; 0 while running'`,
    ],
  },
  {
    version: 9,
    name: 'label_scores',
    statements: [
      // How a replay's findings scored against a labels file (src/replay/labels.ts): one row per detector
      // and one (detector '*') for all. Keyed by run, detector and labels file, so scoring a run again
      // against the same labels replaces its rows (reads use FINAL).
      `CREATE TABLE IF NOT EXISTS {db}.label_scores (
        run_id String,
        detector LowCardinality(String) COMMENT 'a detector, or * for every finding and label',
        findings UInt64,
        tp UInt64 COMMENT 'findings that matched a label',
        fp UInt64 COMMENT 'findings that matched none',
        labels UInt64 COMMENT 'labels that count for the detector (naming it or none)',
        detected UInt64,
        fn UInt64 COMMENT 'labels no finding matched',
        precision Nullable(Float64) COMMENT 'tp / findings; NULL without findings',
        recall Nullable(Float64) COMMENT 'detected / labels; NULL without labels',
        f1 Nullable(Float64),
        delay_mean_ms Nullable(Float64) COMMENT 'first matching finding ts - label start, over detected labels',
        delay_p50_ms Nullable(Float64),
        delay_max_ms Nullable(Float64),
        grace_ms UInt64 COMMENT 'findings up to this long after a label end still match it',
        labels_file String,
        labels_hash String COMMENT 'SHA-256 of the labels file',
        scored_at DateTime64(3, 'UTC')
      )
      ENGINE = ReplacingMergeTree(scored_at)
      ORDER BY (run_id, labels_hash, detector)`,
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
