import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SEVERITIES, severityRank, type Finding, type Severity } from '../src/core/events.ts';
import { ERR, VigilError } from '../src/core/errors.ts';
import { findingId } from '../src/core/ids.ts';
import { createClient } from '@clickhouse/client';
import { openStore } from '../src/storage/clickhouse.ts';
import { ContextStore } from '../src/storage/context-query.ts';
import { Db } from '../src/storage/db.ts';
import { openEngine } from '../src/storage/engine.ts';
import { RowBinaryWriter } from '../src/storage/row-binary.ts';
import { DeadLetterWriter, FindingWriter } from '../src/storage/finding-writer.ts';
import { MIGRATIONS, migrate } from '../src/storage/migrations.ts';
import type { DeadLetter, FindingQuery, Store } from '../src/storage/types.ts';

const T0 = Date.UTC(2024, 7, 9, 0, 0, 0);

function finding(n: number, over: Partial<Finding> = {}): Finding {
  const f: Finding = {
    id: findingId('price-jump', 'z8', `k${n}`, `t${n}`),
    runId: 'run-a',
    detector: 'price-jump',
    ruleId: 'z8',
    severity: 'medium',
    score: 1 + n / 7,
    venue: 'binance',
    symbol: 'BTC-USDT',
    key: `binance:BTC-USDT`,
    ts: T0 + n * 1000,
    windowStart: T0 + n * 1000 - 60_000,
    windowEnd: T0 + n * 1000,
    summary: `finding ${n}`,
    evidence: { observed: { z: n, ok: true, note: 'x' }, baseline: { median: 0, mad: null }, threshold: { z: 8 }, triggers: [`trade:binance:BTC-USDT:${n}`], extra: { nested: [1, 'two'] } },
    ...over,
  };
  return f;
}

/** A varied data set: every filter has something to select and something to reject. */
function dataset(): Finding[] {
  const detectors = ['price-jump', 'spread', 'wash-trade'];
  const venues = ['binance', 'okx', undefined];
  const symbols = ['BTC-USDT', 'ETH-USDT'];
  const accounts = ['acct-1', 'acct-2', undefined, undefined];
  const out: Finding[] = [];
  for (let n = 0; n < 48; n++) {
    const f = finding(n, {
      detector: detectors[n % 3]!,
      severity: SEVERITIES[n % 5]!,
      runId: n % 4 === 0 ? 'run-b' : 'run-a',
      // Several findings share a timestamp so ordering must fall back to id.
      ts: T0 + Math.floor(n / 3) * 1000,
    });
    const venue = venues[n % 3];
    const account = accounts[n % 4];
    delete f.venue;
    if (venue) f.venue = venue;
    f.symbol = symbols[n % 2]!;
    if (account) f.account = account;
    out.push(f);
  }
  // The same deterministic id in two runs: both are distinct rows.
  out.push({ ...out[5]!, runId: 'run-c' });
  return out;
}

function sortKey(order: 'asc' | 'desc') {
  return (a: Finding, b: Finding) => {
    const c = a.ts - b.ts || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) || (a.runId < b.runId ? -1 : a.runId > b.runId ? 1 : 0);
    return order === 'asc' ? c : -c;
  };
}

let dir: string;
let store: Store;
const logs: string[] = [];
const data = dataset();
const byKey = (f: Finding) => `${f.runId}/${f.id}`;

async function searchAll(q: Omit<FindingQuery, 'limit' | 'cursor'>, limit = 1000): Promise<{ items: Finding[]; totals: number[] }> {
  const items: Finding[] = [];
  const totals: number[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 1000; pages++) {
    const page = await store.searchFindings({ ...q, limit, ...(cursor ? { cursor } : {}) });
    items.push(...page.items);
    totals.push(page.total);
    if (!page.nextCursor) break;
    cursor = page.nextCursor;
  }
  return { items, totals };
}

async function expectSearch(q: Omit<FindingQuery, 'limit' | 'cursor'>, predicate: (f: Finding) => boolean): Promise<Finding[]> {
  const expected = data.filter(predicate).sort(sortKey(q.order ?? 'desc'));
  const { items, totals } = await searchAll(q);
  expect(items.map(byKey)).toEqual(expected.map(byKey));
  expect(totals[0]).toBe(expected.length);
  return items;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-storage-'));
  store = await openStore({ dataDir: dir, log: (m) => logs.push(m) });
  await store.insertFindings(data);
});

afterAll(async () => {
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('migrations', () => {
  it('applies each migration once, in order, and reopening applies nothing', async () => {
    expect(logs.filter((l) => l.includes('applied migration'))).toEqual(MIGRATIONS.map((m) => `storage: applied migration ${m.version} ${m.name}`));
    await store.close();
    logs.length = 0;
    store = await openStore({ dataDir: dir, log: (m) => logs.push(m) });
    expect(logs.some((l) => l.includes('applied migration'))).toBe(false);
    const ledger = await store.sql('SELECT version, name, count() AS n FROM schema_migrations GROUP BY version, name ORDER BY version', 'JSONEachRow');
    expect(ledger.trim().split('\n').map((l) => JSON.parse(l) as unknown)).toEqual(MIGRATIONS.map((m) => ({ version: m.version, name: m.name, n: 1 })));
    // Data survived the reopen.
    expect((await store.searchFindings({ limit: 1 })).total).toBe(data.length);
  });

  it('skips applied versions and records new ones (runner against a fake Db)', async () => {
    const commands: string[] = [];
    const inserted: unknown[] = [];
    const fake = {
      command: async (s: string) => void commands.push(s),
      rows: async () => [{ version: 1 }, { version: '2' }],
      insert: async (_t: string, rows: readonly object[]) => void inserted.push(...rows),
    } as unknown as Db;
    const next = MIGRATIONS.length + 1;
    const extra = [...MIGRATIONS, { version: next, name: 'next', statements: ['CREATE TABLE {db}.next (a UInt8) ENGINE = Memory'] }];
    const result = await migrate(fake, extra);
    const pending = MIGRATIONS.filter((m) => m.version > 2);
    expect(result).toEqual({ applied: [...pending.map((m) => m.version), next], version: next });
    expect(inserted).toEqual([...pending.map((m) => ({ version: m.version, name: m.name })), { version: next, name: 'next' }]);
    // Versions 1 and 2 (findings, dead letters) were applied already: not run again.
    expect(commands.some((c) => c.includes('CREATE TABLE IF NOT EXISTS {db}.findings') || c.includes('{db}.dead_letters'))).toBe(false);
    await expect(migrate(fake, [MIGRATIONS[1]!, MIGRATIONS[0]!])).rejects.toThrow(/increasing/);
  });
});

describe('findings round trip', () => {
  it('get returns exactly what was inserted, including absent optional fields', async () => {
    for (const f of [data[0]!, data[2]!, data[7]!]) {
      expect(await store.getFinding(f.id, f.runId)).toStrictEqual(f);
    }
    const noVenue = data.find((f) => f.venue === undefined && f.account === undefined)!;
    const got = await store.getFinding(noVenue.id, noVenue.runId);
    expect(got).toStrictEqual(noVenue);
    expect(got && 'venue' in got).toBe(false);
    expect(await store.getFinding('f'.repeat(32))).toBeUndefined();
  });

  it('getFinding without a run gives the most recently written run, with a run that run', async () => {
    const twin = data[5]!;
    expect((await store.getFinding(twin.id, 'run-a'))?.runId).toBe('run-a');
    expect((await store.getFinding(twin.id, 'run-c'))?.runId).toBe('run-c');
    await new Promise((r) => setTimeout(r, 5));
    await store.insertFindings([{ ...twin, runId: 'run-a', summary: 'rewritten' }]);
    const latest = await store.getFinding(twin.id);
    expect(latest?.runId).toBe('run-a');
    expect(latest?.summary).toBe('rewritten');
    await store.insertFindings([{ ...twin, runId: 'run-a' }]);
  });

  it('a re-delivered finding is stored once', async () => {
    const before = (await store.searchFindings({ limit: 1 })).total;
    await store.insertFindings([data[10]!, data[11]!]);
    await store.insertFindings([data[10]!]);
    expect((await store.searchFindings({ limit: 1 })).total).toBe(before);
    const hits = await store.searchFindings({ limit: 10, runId: data[10]!.runId, from: data[10]!.ts, to: data[10]!.ts + 1 });
    expect(hits.items.filter((f) => f.id === data[10]!.id)).toHaveLength(1);
    const raw = await store.sql(`SELECT count() FROM findings FINAL WHERE id = '${data[10]!.id}'`, 'TabSeparatedWithNames');
    expect(raw.trim().split('\n')[1]).toBe('1');
  });
});

describe('searchFindings filters', () => {
  it('no filter: everything, newest first', async () => {
    await expectSearch({}, () => true);
  });
  it('detector (several values)', async () => {
    await expectSearch({ detector: ['spread', 'wash-trade'] }, (f) => f.detector === 'spread' || f.detector === 'wash-trade');
  });
  it('venue', async () => {
    await expectSearch({ venue: ['okx'] }, (f) => f.venue === 'okx');
  });
  it('symbol', async () => {
    await expectSearch({ symbol: ['ETH-USDT'] }, (f) => f.symbol === 'ETH-USDT');
  });
  it('account', async () => {
    await expectSearch({ account: ['acct-2'] }, (f) => f.account === 'acct-2');
  });
  it('minSeverity, for every level', async () => {
    for (const s of SEVERITIES) await expectSearch({ minSeverity: s }, (f) => severityRank(f.severity) >= severityRank(s as Severity));
  });
  it('from inclusive, to exclusive', async () => {
    const from = T0 + 3000;
    const to = T0 + 9000;
    const items = await expectSearch({ from, to }, (f) => f.ts >= from && f.ts < to);
    expect(items.some((f) => f.ts === from)).toBe(true);
    expect(items.some((f) => f.ts === to)).toBe(false);
  });
  it('runId', async () => {
    await expectSearch({ runId: 'run-b' }, (f) => f.runId === 'run-b');
    await expectSearch({ runId: 'run-c' }, (f) => f.runId === 'run-c');
  });
  it('all filters combined, oldest first', async () => {
    await expectSearch(
      { detector: ['price-jump', 'spread'], venue: ['binance', 'okx'], symbol: ['BTC-USDT'], minSeverity: 'low', runId: 'run-a', from: T0, to: T0 + 40_000, order: 'asc' },
      (f) => ['price-jump', 'spread'].includes(f.detector) && ['binance', 'okx'].includes(f.venue ?? '') && f.symbol === 'BTC-USDT' && severityRank(f.severity) >= 1 && f.runId === 'run-a' && f.ts >= T0 && f.ts < T0 + 40_000,
    );
  });
  it('both orders are exact reverses by (ts, id, run)', async () => {
    const asc = await expectSearch({ order: 'asc' }, () => true);
    const desc = await expectSearch({ order: 'desc' }, () => true);
    expect(asc.map(byKey)).toEqual([...desc].reverse().map(byKey));
  });
});

describe('pagination', () => {
  it('walks every row exactly once in both orders, with a stable total', async () => {
    for (const order of ['desc', 'asc'] as const) {
      const { items, totals } = await searchAll({ order }, 7);
      expect(items).toHaveLength(data.length);
      expect(new Set(items.map(byKey)).size).toBe(data.length);
      expect(items.map(byKey)).toEqual([...data].sort(sortKey(order)).map(byKey));
      expect(totals).toHaveLength(Math.ceil(data.length / 7));
      expect(new Set(totals)).toEqual(new Set([data.length]));
    }
  });

  it('pages with filters and no next cursor on the last page', async () => {
    const page1 = await store.searchFindings({ limit: 3, runId: 'run-b' });
    expect(page1.items).toHaveLength(3);
    expect(page1.nextCursor).toBeTypeOf('string');
    const all = await store.searchFindings({ limit: 1000, runId: 'run-b' });
    expect(all.nextCursor).toBeUndefined();
    expect(all.total).toBe(page1.total);
  });

  it('a bad cursor is a 400', async () => {
    const cursors = ['not a cursor!', Buffer.from('{"t":"x"}').toString('base64url'), Buffer.from('[1,2]').toString('base64url'), 'AAAA'];
    for (const cursor of cursors) {
      const err = await store.searchFindings({ limit: 5, cursor }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VigilError);
      expect((err as VigilError).code).toBe(ERR.BAD_REQUEST);
      expect((err as VigilError).statusCode).toBe(400);
    }
    const asc = await store.searchFindings({ limit: 2, order: 'asc' });
    await expect(store.searchFindings({ limit: 2, order: 'desc', cursor: asc.nextCursor! })).rejects.toMatchObject({ code: ERR.BAD_REQUEST, statusCode: 400 });
  });

  it('a bad limit is a 400', async () => {
    for (const limit of [0, 1001, 1.5]) await expect(store.searchFindings({ limit })).rejects.toMatchObject({ code: ERR.BAD_REQUEST, statusCode: 400 });
  });
});

describe('injection', () => {
  it('filter values are data, never SQL', async () => {
    const attempts = ["x' OR 1=1 --", "') OR 1=1 --", "x'; DROP TABLE findings; --", 'x\\', "'", '{symbol:String}'];
    for (const a of attempts) {
      expect((await store.searchFindings({ limit: 10, symbol: [a] })).total).toBe(0);
      expect((await store.searchFindings({ limit: 10, detector: [a], venue: [a] })).total).toBe(0);
      expect((await store.searchFindings({ limit: 10, runId: a })).total).toBe(0);
      expect(await store.getFinding(a, a)).toBeUndefined();
    }
    expect((await store.searchFindings({ limit: 1 })).total).toBe(data.length);
  });

  it('a finding whose fields look like SQL round-trips as text', async () => {
    const f = finding(900, { runId: "r' OR 1=1 --", symbol: "x' OR 1=1 --", summary: "'); DROP TABLE findings; --" });
    await store.insertFindings([f]);
    expect(await store.getFinding(f.id, f.runId)).toStrictEqual(f);
    const page = await store.searchFindings({ limit: 5, symbol: ["x' OR 1=1 --"] });
    expect(page.items.map(byKey)).toEqual([byKey(f)]);
    await store.sql('SELECT 1', 'JSON'); // still alive
    expect((await store.searchFindings({ limit: 1, runId: 'run-a' })).total).toBe(data.filter((d) => d.runId === 'run-a').length);
  });
});

describe('analyst sql', () => {
  it('answers reads in every format', async () => {
    expect(await store.sql('SELECT 1 AS x', 'TabSeparatedWithNames')).toBe('x\n1\n');
    expect(await store.sql('SELECT 1 AS x', 'CSVWithNames')).toBe('"x"\n1\n');
    expect(await store.sql('SELECT 1 AS x', 'JSONEachRow')).toBe('{"x":1}\n');
    expect(JSON.parse(await store.sql('SELECT 1 AS x', 'JSON')).data).toEqual([{ x: 1 }]);
    expect(await store.sql('SELECT 1 AS x', 'PrettyCompact')).toContain('x');
    expect(await store.sql("SELECT ';' AS s; -- trailing comment", 'TabSeparatedWithNames')).toBe('s\n;\n');
    expect(await store.sql('SELECT count() AS n FROM findings', 'JSONEachRow')).toMatch(/"n":\d+/);
  });

  it('refuses writes, DDL and several statements, and the data is intact', async () => {
    const refused = [
      "INSERT INTO findings (id) VALUES ('x')",
      'DROP TABLE findings',
      'CREATE TABLE t (a UInt8) ENGINE = Memory',
      'TRUNCATE TABLE findings',
      'ALTER TABLE findings DELETE WHERE 1',
      'SELECT 1; DROP TABLE findings',
      'SELECT 1; SELECT 2',
      "SELECT ';'; INSERT INTO findings (id) VALUES ('x')",
      'SET readonly = 0',
      'SELECT number FROM numbers(100) SETTINGS max_result_rows = 100000',
      "SELECT * FROM file('/etc/hostname', 'LineAsString')",
      `SELECT 1 INTO OUTFILE '${join(dir, 'out.txt')}'`,
      '   -- nothing\n',
    ];
    for (const q of refused) {
      const err = await store.sql(q, 'TabSeparatedWithNames', { maxRows: 10 }).catch((e: unknown) => e);
      expect(err, q).toBeInstanceOf(VigilError);
      expect((err as VigilError).code, q).toBe(ERR.SQL);
      expect((err as VigilError).statusCode, q).toBe(400);
    }
    expect(existsSync(join(dir, 'out.txt'))).toBe(false);
    expect((await store.searchFindings({ limit: 1 })).total).toBeGreaterThanOrEqual(data.length);
  });

  it('the engine itself is read-only: what passes the pre-check still cannot write or lift limits', async () => {
    const reads = ["SELECT * FROM file('x.csv', 'CSV', 'a String')", "SELECT * FROM url('http://127.0.0.1:9/x', 'CSV', 'a String')", 'SELECT number FROM numbers(5) SETTINGS max_result_rows = 100000'];
    for (const q of reads) {
      await expect(store.sql(q, 'TabSeparatedWithNames', { maxRows: 10 }), q).rejects.toMatchObject({ code: ERR.SQL, message: expect.stringMatching(/readonly/i) });
    }
  });

  it('enforces the row limit by refusing, and leaves writes working afterwards', async () => {
    expect((await store.sql('SELECT number FROM numbers(10)', 'TabSeparatedWithNames', { maxRows: 10 })).trim().split('\n')).toHaveLength(11);
    await expect(store.sql('SELECT number FROM numbers(11)', 'TabSeparatedWithNames', { maxRows: 10 })).rejects.toMatchObject({ code: ERR.SQL, message: expect.stringMatching(/limit/i) });
    await expect(store.sql('SELECT number FROM numbers(20000)', 'JSONEachRow')).rejects.toMatchObject({ code: ERR.SQL });
    // Settings of analyst queries must not leak into the store's own session.
    const f = finding(901, { runId: 'after-sql' });
    await store.insertFindings([f]);
    expect(await store.getFinding(f.id, 'after-sql')).toStrictEqual(f);
  });

  it('enforces the time limit', async () => {
    const started = Date.now();
    await expect(store.sql('SELECT count() FROM numbers(100000000000)', 'JSON', { maxSeconds: 1 })).rejects.toMatchObject({ code: ERR.SQL, message: expect.stringMatching(/timeout|time/i) });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('reports engine errors as VIGIL_ERR_SQL 400', async () => {
    await expect(store.sql('SELECT nope FROM findings', 'JSON')).rejects.toMatchObject({ code: ERR.SQL, statusCode: 400, message: expect.stringContaining('nope') });
  });
});

describe('dead letters and runs', () => {
  it('raw bytes round-trip exactly, including invalid UTF-8 and NUL', async () => {
    const letters: DeadLetter[] = [
      { ts: T0 + 1, source: 'binance', origin: 'wss://x/ws', reason: 'bad json', raw: Buffer.from([0xff, 0x00, 0xc3, 0x28, 0x0a, 0x22, 0x5c]), runId: 'dl-run' },
      { ts: T0 + 2, source: 'binance', origin: 'file.jsonl', reason: 'schema', raw: Buffer.from('{"e":"trade","p":"é"}\n', 'utf8'), runId: 'dl-run' },
      { ts: T0 + 3, source: 'okx', origin: 'wss://y', reason: 'empty', raw: Buffer.alloc(0), runId: 'dl-run' },
    ];
    await store.insertDeadLetters(letters);
    const back = await store.listDeadLetters({ runId: 'dl-run' });
    expect(back).toHaveLength(3);
    back.forEach((d, i) => {
      const want = letters[i]!;
      expect({ ...d, raw: d.raw.toString('hex') }).toEqual({ ...want, raw: want.raw.toString('hex') });
      expect(Buffer.compare(d.raw, want.raw)).toBe(0);
    });
    expect(await store.listDeadLetters({ runId: 'dl-run', source: 'okx' })).toHaveLength(1);
    const hex = await store.sql("SELECT hex(base64Decode(raw)) FROM dead_letters WHERE run_id = 'dl-run' ORDER BY ts LIMIT 1", 'TabSeparatedWithNames');
    expect(hex.trim().split('\n')[1]).toBe('FF00C3280A225C');
  });

  it('upsertRun keeps the latest version; listRuns is newest first', async () => {
    await store.upsertRun({ runId: 'r-old', startedAt: T0, status: 'completed', finishedAt: T0 + 10, inputs: ['a.jsonl'], summary: { findings: 1 } });
    await store.upsertRun({ runId: 'r-new', startedAt: T0 + 100, status: 'running', inputs: ['live:binance'], summary: {} });
    await store.upsertRun({ runId: 'r-new', startedAt: T0 + 100, status: 'completed', finishedAt: T0 + 500, inputs: ['live:binance'], summary: { findings: 7, note: 'done' } });
    const runs = await store.listRuns();
    expect(runs.map((r) => r.runId)).toEqual(['r-new', 'r-old']);
    expect(runs[0]).toStrictEqual({ runId: 'r-new', startedAt: T0 + 100, finishedAt: T0 + 500, status: 'completed', inputs: ['live:binance'], summary: { findings: 7, note: 'done' } });
    await store.upsertRun({ runId: 'r-open', startedAt: T0 + 200, status: 'running', inputs: [], summary: {} });
    expect((await store.listRuns({ limit: 1 }))[0]).toStrictEqual({ runId: 'r-open', startedAt: T0 + 200, status: 'running', inputs: [], summary: {} });
  });
});

describe('FindingWriter / DeadLetterWriter', () => {
  function memoryStore(opts: { failTimes?: number; delayMs?: number } = {}) {
    const batches: Finding[][] = [];
    let fails = opts.failTimes ?? 0;
    return {
      batches,
      insertFindings: async (rows: readonly Finding[]) => {
        if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
        if (fails > 0) {
          fails--;
          throw new Error('transient');
        }
        batches.push([...rows]);
      },
    };
  }
  const rows = (n: number, from = 0) => Array.from({ length: n }, (_, i) => finding(2000 + from + i, { runId: 'writer' }));
  const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

  it('flushes by size', async () => {
    const s = memoryStore();
    const w = new FindingWriter(s, { maxRows: 3, maxDelayMs: 60_000 });
    w.write(rows(4));
    w.write(rows(3, 4));
    await tick(20);
    expect(s.batches.map((b) => b.length)).toEqual([3, 3]);
    expect(w.counters).toEqual({ written: 6, flushes: 2, errors: 0, pending: 1 });
    await w.close();
    expect(s.batches.map((b) => b.length)).toEqual([3, 3, 1]);
    expect(s.batches.flat().map((f) => f.id)).toEqual(rows(7).map((f) => f.id));
  });

  it('flushes by time', async () => {
    const s = memoryStore();
    const w = new FindingWriter(s, { maxRows: 1000, maxDelayMs: 150 });
    const started = Date.now();
    w.write(rows(2));
    await tick(0);
    expect(s.batches).toHaveLength(0);
    while (s.batches.length === 0 && Date.now() - started < 5000) await tick(5);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(s.batches.map((b) => b.length)).toEqual([2]);
    expect(w.counters).toMatchObject({ written: 2, flushes: 1, pending: 0 });
    await w.close();
  });

  it('flushes on close and refuses writes after it', async () => {
    const s = memoryStore({ delayMs: 20 });
    const w = new FindingWriter(s, { maxRows: 1000, maxDelayMs: 60_000 });
    w.write(rows(5));
    expect(s.batches).toHaveLength(0);
    await w.close();
    expect(s.batches.flat()).toHaveLength(5);
    expect(() => w.write(rows(1))).toThrow(/closed/);
    await w.close();
  });

  it('flush() resolves only once everything written before it is stored', async () => {
    const s = memoryStore({ delayMs: 30 });
    const w = new FindingWriter(s, { maxRows: 2, maxDelayMs: 60_000 });
    w.write(rows(5));
    const flushed = w.flush();
    w.write(rows(1, 5));
    await flushed;
    expect(s.batches.flat().length).toBeGreaterThanOrEqual(5);
    expect(s.batches.flat().slice(0, 5).map((f) => f.id)).toEqual(rows(5).map((f) => f.id));
    await w.close();
    expect(s.batches.flat()).toHaveLength(6);
  });

  it('retries a failing insert with backoff and loses nothing (real store)', async () => {
    let failures = 2;
    const flaky: Pick<Store, 'insertFindings'> = {
      insertFindings: async (r) => {
        if (failures > 0) {
          failures--;
          throw new Error('ClickHouse unavailable');
        }
        await store.insertFindings(r);
      },
    };
    const messages: string[] = [];
    const w = new FindingWriter(flaky, { maxRows: 100, maxDelayMs: 10, retryBaseMs: 10, log: (m) => messages.push(m) });
    const batch = rows(25).map((f) => ({ ...f, runId: 'writer-retry' }));
    w.write(batch);
    await w.flush();
    expect(w.counters).toEqual({ written: 25, flushes: 1, errors: 2, pending: 0 });
    expect(messages).toHaveLength(2);
    expect(messages[0]).toMatch(/attempt 1.*ClickHouse unavailable/);
    const stored = await store.searchFindings({ limit: 100, runId: 'writer-retry', order: 'asc' });
    expect(stored.total).toBe(25);
    expect(stored.items.map((f) => f.id).sort()).toEqual(batch.map((f) => f.id).sort());
    await w.close();
  });

  it('DeadLetterWriter batches into the store the same way', async () => {
    const w = new DeadLetterWriter(store, { maxRows: 2, maxDelayMs: 10_000 });
    const letters = Array.from({ length: 3 }, (_, i): DeadLetter => ({ ts: T0 + i, source: 'dlw', origin: 'o', reason: 'r', raw: Buffer.from([i, 255]), runId: 'dlw-run' }));
    w.write(letters);
    await w.close();
    expect(w.counters).toMatchObject({ written: 3, flushes: 2 });
    const back = await store.listDeadLetters({ runId: 'dlw-run' });
    expect(back.map((d) => d.raw.toString('hex'))).toEqual(['00ff', '01ff', '02ff']);
  });
});

describe('RowBinary bulk inserts', () => {
  it('RowBinaryWriter writes each value as the JSON insert stored it, growing as needed', () => {
    const w = new RowBinaryWriter(1);
    w.string('ab').string('é€').string('x'.repeat(200)).string('a\ud800').string('');
    w.float64(1.5).float64(-0).float64(NaN).float64(-Infinity).float64(5e-324);
    for (const t of [0, -1, 1723075200123.5, 2 ** 62, -(2 ** 53), NaN]) w.dateTime64Ms(t);
    const str = (s: string) => {
      const b = Buffer.from(s, 'utf8');
      return Buffer.concat([Buffer.from(b.length < 128 ? [b.length] : [(b.length & 0x7f) | 0x80, b.length >> 7]), b]);
    };
    const f64 = (x: number) => {
      const b = Buffer.alloc(8);
      b.writeDoubleLE(x);
      return b;
    };
    const i64 = (x: bigint) => {
      const b = Buffer.alloc(8);
      b.writeBigInt64LE(x);
      return b;
    };
    const expected = Buffer.concat([
      str('ab'),
      str('é€'),
      str('x'.repeat(200)),
      str('a\ufffd'),
      str(''),
      f64(1.5),
      f64(0),
      f64(0),
      f64(0),
      f64(5e-324),
      i64(0n),
      i64(-1n),
      i64(1723075200124n),
      i64(2n ** 62n),
      i64(-(2n ** 53n)),
      i64(0n),
    ]);
    expect(Buffer.from(w.bytes()).toString('hex')).toBe(expected.toString('hex'));
    expect(w.length).toBe(expected.length);
    expect(str('x'.repeat(200)).subarray(0, 2).toString('hex')).toBe('c801'); // the length as a two-byte varint
  });

  it('on a server: one INSERT … FORMAT RowBinary per table present, the rows as the HTTP body', async () => {
    const requests: { query: string | null; body: Buffer }[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        requests.push({ query: new URL(req.url ?? '/', 'http://x').searchParams.get('query'), body: Buffer.concat(chunks) });
        res.writeHead(200, { 'X-ClickHouse-Summary': '{}' });
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const engine = await openEngine({ dataDir: dir, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, database: 'vigil', databaseIdent: '`vigil`' });
    try {
      requests.length = 0;
      const T = Date.UTC(2024, 7, 8);
      await new ContextStore(new Db(engine.client, '`vigil`', engine.bulkInsert)).insert([
        { runId: 'r', event: { kind: 'trade', venue: 'binance', symbol: 'BTC-USDT', ts: T, recvTs: T, price: 61837.63, qty: 0.5, side: 'buy', tradeId: '3735683259' } },
        { runId: 'r', event: { kind: 'quote', venue: 'binance', symbol: 'BTC-USDT', ts: T + 1, recvTs: T, bidPx: 1, bidQty: 2, askPx: 3, askQty: 4 } },
        { runId: 'r', event: { kind: 'trade', venue: 'okx', symbol: 'ETH-USDT', ts: T + 2, recvTs: T, price: 2500, qty: 1, side: 'sell', tradeId: 'x\ty' } },
      ]);
      const sent = Object.fromEntries(requests.map((r) => [r.query, r.body.toString('hex')]));
      const trades = new RowBinaryWriter()
        .string('r').string('binance').string('BTC-USDT').dateTime64Ms(T).string('3735683259').float64(61837.63).float64(0.5).string('buy')
        .string('r').string('okx').string('ETH-USDT').dateTime64Ms(T + 2).string('x\ty').float64(2500).float64(1).string('sell');
      const quotes = new RowBinaryWriter().string('r').string('binance').string('BTC-USDT').dateTime64Ms(T + 1).float64(1).float64(3).float64(2).float64(4);
      expect(sent).toEqual({
        'INSERT INTO `vigil`.trades (run_id, venue, symbol, ts, trade_id, price, qty, side) SETTINGS optimize_on_insert = 0 FORMAT RowBinary': Buffer.from(trades.bytes()).toString('hex'),
        'INSERT INTO `vigil`.quotes (run_id, venue, symbol, ts, bid, ask, bid_size, ask_size) SETTINGS optimize_on_insert = 0 FORMAT RowBinary': Buffer.from(quotes.bytes()).toString('hex'),
      });
    } finally {
      await engine.close();
      server.close();
    }
  });

  it('embedded: the insert file is gone once read; a directory left by a crash goes at the next open', async () => {
    const root = join(dir, 'clickhouse', 'vigil-insert');
    const T = Date.UTC(2024, 7, 8);
    await store.insertContext([{ runId: 'files', event: { kind: 'trade', venue: 'binance', symbol: 'BTC-USDT', ts: T, recvTs: T, price: 1, qty: 1, side: 'buy', tradeId: '1' } }]);
    const live = readdirSync(root);
    expect(live).toHaveLength(1);
    expect(readdirSync(join(root, live[0]!))).toEqual([]);
    expect(JSON.parse(await store.sql(`SELECT count() AS n FROM trades WHERE run_id = 'files'`, 'JSONEachRow'))).toEqual({ n: 1 });
    mkdirSync(join(root, 'engine-crashed'));
    writeFileSync(join(root, 'engine-crashed', '7.bin'), 'x');
    const engine = await openEngine({ dataDir: dir, database: 'vigil', databaseIdent: '`vigil`' });
    try {
      expect(existsSync(join(root, 'engine-crashed'))).toBe(false);
      expect(readdirSync(root)).toHaveLength(2);
      expect(readdirSync(root)).toContain(live[0]);
    } finally {
      await engine.close();
    }
    expect(readdirSync(root)).toEqual(live);
  });

  it('embedded: duplicates within one insert (not collapsed at insert) read once, the last one winning, through FINAL and merges', async () => {
    const T = Date.UTC(2024, 7, 8);
    const trade = (price: number, tradeId: string, ts = T) => ({ runId: 'dups', event: { kind: 'trade' as const, venue: 'binance', symbol: 'BTC-USDT', ts, recvTs: ts, price, qty: 1, side: 'buy' as const, tradeId } });
    const quote = (bidPx: number) => ({ runId: 'dups', event: { kind: 'quote' as const, venue: 'binance', symbol: 'BTC-USDT', ts: T + 5, recvTs: T, bidPx, bidQty: 1, askPx: bidPx + 1, askQty: 1 } });
    await store.insertContext([trade(1, '7'), quote(10), trade(2, '8', T + 1), trade(3, '7'), quote(20)]);
    const count = async (table: string, final: boolean) =>
      Number((JSON.parse(await store.sql(`SELECT count() AS n FROM ${table} ${final ? 'FINAL' : ''} WHERE run_id = 'dups'`, 'JSONEachRow')) as { n: string }).n);
    expect([await count('trades', true), await count('quotes', true)]).toEqual([2, 1]);
    const finding = { ...data[0]!, runId: 'dups', venue: 'binance', symbol: 'BTC-USDT', ts: T, windowStart: T, windowEnd: T + 5 };
    const ctx = await store.getFindingContext(finding, { before: 0, after: 0 });
    expect(ctx.trades.map((t) => [t.ts, t.price])).toEqual([[T, 3], [T + 1, 2]]);
    expect(ctx.quotes.map((q) => q.bid)).toEqual([20]);
    // Another part, then a merge: the rows stored for good are the collapsed ones.
    await store.insertContext([trade(4, '9', T + 2)]);
    const optimize = await openEngine({ dataDir: dir, database: 'vigil', databaseIdent: '`vigil`' });
    try {
      await optimize.client.command({ query: 'OPTIMIZE TABLE `vigil`.trades FINAL' });
      await optimize.client.command({ query: 'OPTIMIZE TABLE `vigil`.quotes FINAL' });
    } finally {
      await optimize.close();
    }
    expect([await count('trades', false), await count('quotes', false)]).toEqual([3, 1]);
    const rows = await store.sql(`SELECT trade_id, price FROM trades WHERE run_id = 'dups' ORDER BY trade_id`, 'JSONEachRow');
    expect(rows.trim().split('\n').map((l) => JSON.parse(l) as unknown)).toEqual([{ trade_id: '7', price: 3 }, { trade_id: '8', price: 2 }, { trade_id: '9', price: 4 }]);
  });

  it('a Db made without the engine bulk insert: a store error', async () => {
    const client = createClient({ url: 'http://127.0.0.1:9' });
    try {
      const err = await new Db(client, '`vigil`').insertRowBinary({ name: 'trades', columns: [['run_id', 'String']] }, new Uint8Array([1, 0x61])).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VigilError);
      expect(err).toMatchObject({ code: ERR.STORE });
    } finally {
      await client.close();
    }
  });
});

describe('locking', () => {
  it('a second process opening the same data directory gets VIGIL_ERR_STORE_LOCKED', () => {
    const script = join(dir, 'open-locked.mts');
    writeFileSync(
      script,
      `import { openStore } from ${JSON.stringify(resolve('src/storage/clickhouse.ts'))};
       try { const s = await openStore({ dataDir: ${JSON.stringify(dir)} }); await s.close(); console.log(JSON.stringify({ opened: true })); }
       catch (e) { console.log(JSON.stringify({ code: e.code, statusCode: e.statusCode, message: e.message })); }`,
    );
    const child = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 60_000 });
    const line = child.stdout.trim().split('\n').pop() ?? '';
    const result = JSON.parse(line) as { code?: string; statusCode?: number; message?: string };
    expect(result.code).toBe(ERR.STORE_LOCKED);
    expect(result.statusCode).toBe(503);
    expect(result.message).toContain(join(dir, 'clickhouse'));
    expect(result.message).toMatch(/another process/);
  });
});
