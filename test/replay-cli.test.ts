// The acceptance path for replay, as a user runs it: separate `vigil` processes on one data directory.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { HFT_CAPTURE, tempDir, vigil } from './helpers/cli.ts';

const dataDir = tempDir();
const env = { VIGIL_DATA_DIR: dataDir };

interface Summary {
  runId: string;
  status: string;
  events: Record<string, number>;
  malformed: { count: number; first: { file: string; line: number; reason: string }[] };
  findings: Record<string, number>;
  books: Record<string, Record<string, { resyncs: number; dropped?: number; compared?: number; matched?: number }>>;
  totalFindings: number;
  deadLetters: number;
}

async function replay(args: string[], e = env): Promise<Summary> {
  const r = await vigil(['replay', ...args, '--json'], e);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Summary;
}

async function sqlLines(query: string, e = env): Promise<string[]> {
  const r = await vigil(['sql', query, '--format', 'tsv'], e);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim().split('\n').slice(1);
}

describe('vigil replay of the hftbacktest Binance capture', () => {
  let first: Summary;

  it('completes with the events the capture holds, and stores as many findings as it reports', async () => {
    first = await replay([HFT_CAPTURE, '--speed', 'max', '--run-id', 't1']);
    expect(first.status).toBe('completed');
    expect(first.events).toMatchObject({ trade: 9757, quote: 28040, book: 3450, status: 1 });
    // The README's 3,451 depth updates and the snapshot, all accounted for: the snapshot and 3,449 diffs as
    // book events, and the 2 diffs the snapshot already covered, dropped as Binance's sync procedure says.
    expect(first.books.binance!['BTC-USDT']).toMatchObject({ resyncs: 0, dropped: 2, compared: 3449, matched: 3449 });
    expect(first.events.book! + first.books.binance!['BTC-USDT']!.dropped!).toBe(3451 + 1);
    expect(first.malformed.count).toBe(0);
    expect(first.totalFindings).toBeGreaterThan(0);
    expect(first.findings.price_jump).toBeGreaterThan(0);
    expect(Object.values(first.findings).reduce((a, b) => a + b, 0)).toBe(first.totalFindings);
    const [count] = await sqlLines("SELECT count() FROM findings FINAL WHERE run_id = 't1'");
    expect(Number(count)).toBe(first.totalFindings);
    const [snapshots] = await sqlLines("SELECT 1"); // the store answers plain SQL too
    expect(snapshots).toBe('1');
  });

  it('a second replay with the same run id leaves the count unchanged', async () => {
    const again = await replay([HFT_CAPTURE, '--run-id', 't1']);
    expect(again.totalFindings).toBe(first.totalFindings);
    const [count] = await sqlLines("SELECT count() FROM findings FINAL WHERE run_id = 't1'");
    expect(Number(count)).toBe(first.totalFindings);
  });

  it('a replay into a fresh data directory gives the same set of finding ids', async () => {
    const ids = await sqlLines("SELECT id FROM findings FINAL WHERE run_id = 't1' ORDER BY id");
    const fresh = { VIGIL_DATA_DIR: tempDir() };
    await replay([HFT_CAPTURE, '--run-id', 'other'], fresh);
    const freshIds = await sqlLines("SELECT id FROM findings FINAL WHERE run_id = 'other' ORDER BY id", fresh);
    expect(freshIds).toEqual(ids);
    expect(ids.length).toBe(first.totalFindings);
  });

  it('counts malformed lines with line numbers, keeps them as dead letters, processes the rest and exits 0', async () => {
    const lines = gunzipSync(readFileSync(HFT_CAPTURE)).toString('utf8').split('\n').slice(0, 2000);
    lines.splice(10, 0, 'garbage without a timestamp');
    lines.splice(20, 0, '1723161254087896568 {"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"abc","q":"1","T":1,"m":true}}');
    lines.splice(30, 0, '1723161254087896568 {"stream":"btcusdt@trade","data":');
    const file = join(dataDir, 'broken.gz');
    writeFileSync(file, gzipSync(lines.join('\n')));
    const s = await replay([file, '--run-id', 'broken']);
    expect(s.status).toBe('completed');
    expect(s.malformed.count).toBe(3);
    expect(s.malformed.first.map((m) => m.line)).toEqual([11, 21, 31]);
    for (const m of s.malformed.first) expect(m.file).toBe(file);
    expect(s.malformed.first[1]!.reason).toMatch(/price/i);
    expect(s.deadLetters).toBe(3);
    const total = Object.values(s.events).reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(1900);
    const [dl] = await sqlLines("SELECT count() FROM dead_letters WHERE run_id = 'broken'");
    expect(Number(dl)).toBe(3);
  });

  it('fails clearly on a missing file and on a bad --speed', async () => {
    const missing = await vigil(['replay', join(dataDir, 'nope.gz')], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read .*nope\.gz/);
    const speed = await vigil(['replay', HFT_CAPTURE, '--speed', 'fast'], env);
    expect(speed.code).toBe(2);
    expect(speed.stderr).toMatch(/--speed: expected max, realtime or <N>x/);
  });

  it('sql refuses writes', async () => {
    const r = await vigil(['sql', "DROP TABLE findings"], env);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/VIGIL_ERR_SQL/);
    const [count] = await sqlLines("SELECT count() FROM findings FINAL WHERE run_id = 't1'");
    expect(Number(count)).toBe(first.totalFindings);
  });
});
