// Replay of another provider's CSV or JSON lines through a field mapping (src/replay/mapped-input.ts).
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ERR, VigilError } from '../src/core/errors.ts';
import type { Metric, Transaction } from '../src/core/events.ts';
import { buildDetectors } from '../src/detectors/configure.ts';
import { parseMapping } from '../src/feeds/mapping.ts';
import { Pipeline } from '../src/pipeline/pipeline.ts';
import { formatFromName, readMappedRecords } from '../src/replay/mapped-input.ts';
import type { ReplayRecord } from '../src/replay/formats.ts';
import { replayFiles, type ReplaySummary } from '../src/replay/replay.ts';
import { TOPICS, VIEW_HEADER } from '../src/transport/types.ts';
import { tempDir, vigil } from './helpers/cli.ts';

const EXAMPLES = fileURLToPath(new URL('../docs/feeds/examples/', import.meta.url));
const dir = tempDir('vigil-replay-mapped-');

const TX_MAPPING = parseMapping({
  kind: 'transaction',
  source: 'acme-csv',
  fields: {
    id: 'txn_id',
    account: 'card.pan_hash',
    amount: { path: 'amt', scale: 0.01 },
    currency: { const: 'EUR' },
    ts: { path: 'created', time: '%Y-%m-%d %H:%M:%S', timezone: 'Europe/Paris' },
    direction: { path: 'dc', map: { D: 'debit', C: 'credit' } },
    channel: { path: 'chan', default: 'card_present' },
    merchant: 'merchant',
    mcc: 'mcc',
  },
});

/** 200 data rows; rows 7, 48 and 120 are bad, and there is a blank line after row 99. */
const ROWS = 200;
const BAD = new Map<number, string>([
  [7, 'amount'],
  [48, 'columns'],
  [120, 'direction'],
]);
function transactionsCsv(): { text: string; badLines: [number, string][]; cents: number } {
  const lines = ['txn_id,card.pan_hash,amt,created,dc,chan,merchant,mcc'];
  const badLines: [number, string][] = [];
  let cents = 0;
  for (let i = 1; i <= ROWS; i++) {
    const minute = String(i % 60).padStart(2, '0');
    const hour = String(10 + Math.floor(i / 60)).padStart(2, '0');
    const amt = 100 + i;
    const merchant = i % 10 === 0 ? '"Shop, Inc."' : `m${i % 7}`;
    let row = `t${i},pan-${i % 13},${amt},2024-08-08 ${hour}:${minute}:00,${i % 3 === 0 ? 'C' : 'D'},${i % 4 === 0 ? '' : 'ecom'},${merchant},${5400 + (i % 5)}`;
    const bad = BAD.get(i);
    if (bad === 'amount') row = row.replace(`,${amt},`, ',12.3.4,');
    if (bad === 'columns') row = `t${i},pan-1,${amt}`;
    if (bad === 'direction') row = row.replace(/,[CD],/, ',Z,');
    lines.push(row);
    if (bad !== undefined) badLines.push([lines.length, bad]);
    else cents += amt;
    if (i === 99) lines.push('');
  }
  return { text: `${lines.join('\n')}\n`, badLines, cents };
}

async function replayWith(files: string[], mapping: Parameters<typeof replayFiles>[1]['mapping']): Promise<{ summary: ReplaySummary; events: (Transaction | Metric)[] }> {
  const pipeline = await new Pipeline({ runId: 'mapped', detectors: buildDetectors({ detectors: {} }) }).start();
  const events: (Transaction | Metric)[] = [];
  await pipeline.transport.subscribe<Transaction | Metric>({
    group: 'test-events',
    topics: [TOPICS.transaction, TOPICS.metric],
    // The events as sent: copies keyed by another entity (views) carry a `view` header.
    eachBatch: (b) => void events.push(...b.messages.filter((m) => m.headers?.[VIEW_HEADER] === undefined).map((m) => m.value)),
  });
  try {
    const summary = await replayFiles(pipeline, { files, speed: { mode: 'max' }, mapping });
    return { summary, events };
  } finally {
    await pipeline.close();
  }
}

describe('vigil replay --mapping of a CSV of transactions', () => {
  const csv = transactionsCsv();
  const plain = join(dir, 'transactions.csv');
  writeFileSync(plain, csv.text);
  const gz = join(dir, 'transactions-export'); // no extension: the content says CSV, the magic bytes gzip
  writeFileSync(gz, gzipSync(csv.text));

  it('maps every good row to a transaction event and reports the bad rows with their line numbers', async () => {
    const { summary, events } = await replayWith([plain], TX_MAPPING);
    expect(summary.status).toBe('completed');
    expect(summary.events.transaction).toBe(ROWS - BAD.size);
    expect(summary.totalEvents).toBe(ROWS - BAD.size);
    expect(summary.malformed.count).toBe(3);
    expect(summary.deadLetters).toBe(3);
    expect(csv.badLines.map(([l]) => l)).toEqual([8, 49, 122]);
    expect(summary.malformed.first).toEqual([
      { file: plain, line: 8, reason: 'amount (from "amt"): expected a number, got "12.3.4"' },
      { file: plain, line: 49, reason: 'CSV: Invalid Record Length: columns length is 8, got 3 on line 49' },
      { file: plain, line: 122, reason: 'direction (from "dc"): value "Z" is not in the map ("D", "C")' },
    ]);
    expect(events).toHaveLength(ROWS - BAD.size);
    const txs = events as Transaction[];
    expect(Math.round(txs.reduce((a, t) => a + t.amount, 0) * 100)).toBe(csv.cents);
    const t10 = txs.find((t) => t.id === 't10')!;
    expect(t10).toEqual({
      kind: 'transaction',
      source: 'acme-csv',
      id: 't10',
      account: 'pan-10',
      amount: 1.1,
      currency: 'EUR',
      ts: Date.UTC(2024, 7, 8, 8, 10), // 10:10 in Paris
      direction: 'debit',
      channel: 'ecom',
      merchant: 'Shop, Inc.',
      mcc: '5400',
    });
    expect(txs.find((t) => t.id === 't12')).toMatchObject({ channel: 'card_present', direction: 'credit' });
  });

  it('reads the gzip file alike (detected by the magic bytes, format from the content)', async () => {
    const { summary } = await replayWith([gz], TX_MAPPING);
    expect(summary.events.transaction).toBe(ROWS - BAD.size);
    expect(summary.malformed.first.map((m) => [m.file, m.line])).toEqual([
      [gz, 8],
      [gz, 49],
      [gz, 122],
    ]);
  });

  it('a truncated gzip file gives the rows before the cut and one malformed line for the cut', async () => {
    const cut = join(dir, 'transactions-cut.csv.gz');
    const full = gzipSync(csv.text);
    writeFileSync(cut, full.subarray(0, Math.floor(full.length * 0.6)));
    const records: ReplayRecord[] = [];
    for await (const r of readMappedRecords(cut, TX_MAPPING)) records.push(r);
    const last = records.at(-1)!;
    expect(last).toMatchObject({ type: 'malformed', reason: expect.stringMatching(/^gzip stream ends early or is corrupt/) });
    const events = records.filter((r) => r.type === 'event');
    expect(events.length).toBeGreaterThan(50);
    expect(events.length).toBeLessThan(ROWS);
  });
});

describe('vigil replay --mapping of a timestamp,value CSV of metrics (the bundled example)', () => {
  it('maps the series with its key and source constants; the "n/a" row is malformed at line 5', async () => {
    const { summary, events } = await replayWith([`${EXAMPLES}declines.csv`], `${EXAMPLES}metric-csv.json`);
    expect(summary.events.metric).toBe(4);
    expect(summary.totalEvents).toBe(4);
    expect(summary.malformed.first).toEqual([{ file: `${EXAMPLES}declines.csv`, line: 5, reason: 'value (from "value"): expected a number, got "n/a"' }]);
    expect((events as Metric[]).map((m) => [m.source, m.key, m.ts, m.value])).toEqual([
      ['payments-dashboard', 'card_auth_declines_per_min', Date.UTC(2024, 7, 8, 9, 15), 12],
      ['payments-dashboard', 'card_auth_declines_per_min', Date.UTC(2024, 7, 8, 9, 16), 9],
      ['payments-dashboard', 'card_auth_declines_per_min', Date.UTC(2024, 7, 8, 9, 17), 14.5],
      ['payments-dashboard', 'card_auth_declines_per_min', Date.UTC(2024, 7, 8, 9, 19), 11],
    ]);
  });

  it('a headerless file with csv.columns and a ; delimiter', async () => {
    const file = join(dir, 'series.txt');
    writeFileSync(file, '1723108500;1.5\n1723108560;2\n1723108620;x\n');
    const mapping = parseMapping({
      kind: 'metric',
      source: 'probe',
      csv: { delimiter: ';', columns: ['t', 'v'] },
      fields: { key: { const: 'latency_s' }, ts: { path: 't', time: 'epoch_s' }, value: 'v' },
    });
    const { summary, events } = await replayWith([file], mapping);
    expect((events as Metric[]).map((m) => [m.ts, m.value])).toEqual([
      [1723108500000, 1.5],
      [1723108560000, 2],
    ]);
    expect(summary.malformed.first).toEqual([{ file, line: 3, reason: 'value (from "v"): expected a number, got "x"' }]);
  });
});

describe('vigil replay --mapping of provider JSON lines (the bundled card-processor example)', () => {
  it('maps records (several per line too), skips heartbeats and acks, reports the bad record with its line', async () => {
    const file = `${EXAMPLES}card-processor.jsonl`;
    const records: ReplayRecord[] = [];
    for await (const r of readMappedRecords(file, `${EXAMPLES}card-processor.json`)) records.push(r);
    expect(records.map((r) => [r.type, r.line])).toEqual([
      ['skip', 1],
      ['event', 2],
      ['event', 3],
      ['skip', 4],
      ['event', 5],
      ['malformed', 6],
      ['event', 7],
      ['event', 7],
    ]);
    const { summary, events } = await replayWith([file], `${EXAMPLES}card-processor.json`);
    expect(summary.events.transaction).toBe(5);
    expect(summary.malformed.first).toEqual([{ file, line: 6, reason: 'direction (from "dc"): value "X" is not in the map ("D", "C")' }]);
    expect((events as Transaction[]).map((t) => t.id).sort()).toEqual(['a-1001', 'a-1002', 'a-1003', 'a-1005', 'a-1006']);
  });

  it('broken JSON lines and records that are not objects are malformed; the run goes on', async () => {
    const file = join(dir, 'broken.jsonl');
    const good = readFileSync(`${EXAMPLES}card-processor.jsonl`, 'utf8').split('\n')[1]!;
    writeFileSync(file, `${good}\n{"event":"auth","txn":\n{"event":"auth","txn":[1,{"txn_id":"z"}]}\n{"event":"auth"}\n${good.replace('a-1001', 'a-2001')}\n`);
    const records: ReplayRecord[] = [];
    for await (const r of readMappedRecords(file, `${EXAMPLES}card-processor.json`)) records.push(r);
    expect(records.map((r) => (r.type === 'malformed' ? `${r.line} ${r.reason}` : `${r.line} ${r.type}`))).toEqual([
      '1 event',
      expect.stringMatching(/^2 invalid JSON: /),
      '3 records[0]: expected a record (JSON object), got 1',
      '3 records[1]: account (from "card.pan_hash"): missing',
      "4 txn: missing (the message's records)",
      '5 event',
    ]);
  });
});

describe('mapped input: format detection and errors', () => {
  it('takes the format from the name, else from the content', async () => {
    expect(formatFromName('a.csv')).toBe('csv');
    expect(formatFromName('a.TSV.gz')).toBe('csv');
    expect(formatFromName('a.jsonl.gz')).toBe('jsonl');
    expect(formatFromName('a.ndjson')).toBe('jsonl');
    expect(formatFromName('a.log')).toBeUndefined();
    // JSON lines under a neutral name, gzip-compressed.
    const file = join(dir, 'provider-dump');
    copyFileSync(`${EXAMPLES}card-processor.jsonl`, join(dir, 'tmp.jsonl'));
    writeFileSync(file, gzipSync(readFileSync(join(dir, 'tmp.jsonl'))));
    const { summary } = await replayWith([file], `${EXAMPLES}card-processor.json`);
    expect(summary.events.transaction).toBe(5);
    // An empty file has no rows.
    const empty = join(dir, 'empty.csv');
    writeFileSync(empty, '');
    const r = await replayWith([empty], TX_MAPPING);
    expect(r.summary.totalEvents).toBe(0);
    expect(r.summary.malformed.count).toBe(0);
  });

  it('a bad mapping fails the replay before any row, naming the key path; a missing file names the file', async () => {
    const bad = join(dir, 'bad-mapping.json');
    writeFileSync(bad, JSON.stringify({ kind: 'metric', source: 's', fields: { key: { const: 'k' }, ts: { path: 't', time: '%Y-%Q' }, value: 'v' } }));
    await expect(replayWith([`${EXAMPLES}declines.csv`], bad)).rejects.toMatchObject({ code: ERR.CONFIG, message: `mapping ${bad}: fields.ts.time: unknown directive %Q (known: %Y %y %m %b %h %B %d %e %H %I %p %M %S %f %z %s %T %F %%)` });
    const missing = readMappedRecords(join(dir, 'nope.csv'), TX_MAPPING);
    await expect(missing.next()).rejects.toSatisfy((e: unknown) => e instanceof VigilError && e.code === ERR.NOT_FOUND && e.message === `${join(dir, 'nope.csv')}: no such file`);
  });
});

describe('the vigil replay command with --mapping', () => {
  const env = { VIGIL_DATA_DIR: join(dir, 'data') };

  it('replays the example metric CSV and prints the summary with the malformed line', async () => {
    const r = await vigil(['replay', '--mapping', `${EXAMPLES}metric-csv.json`, `${EXAMPLES}declines.csv`, '--run-id', 'm1', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as ReplaySummary;
    expect(s.events.metric).toBe(4);
    expect(s.malformed).toEqual({ count: 1, first: [{ file: `${EXAMPLES}declines.csv`, line: 5, reason: 'value (from "value"): expected a number, got "n/a"' }] });
  });

  it('a bad mapping exits 78 naming the key path; --help documents the flag', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ kind: 'metric', source: 's', fields: { key: { const: 'k' }, ts: 't', value: { path: 'v', scale: 'x' } } }));
    const r = await vigil(['replay', '--mapping', bad, `${EXAMPLES}declines.csv`], env);
    expect(r.code).toBe(78);
    expect(r.stderr).toContain(`VIGIL_ERR_CONFIG: mapping ${bad}: fields.value.scale: Invalid input: expected number, received string (got "x")`);
    const help = await vigil(['replay', '--help'], env);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('[--mapping FILE]');
    expect(help.stdout).toContain('--mapping FILE  the files are another provider');
  });
});
