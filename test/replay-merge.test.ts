// Replay of several inputs merged by time (src/replay/merge.ts), --from/--to (src/replay/time-range.ts),
// --rules, and the run record in ClickHouse.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { inputMappings, parseWithTokens } from '../src/cli/replay-options.ts';
import type { CanonicalEvent, Metric, Trade, Transaction } from '../src/core/events.ts';
import { loadRules } from '../src/detectors/configure.ts';
import { loadRulesFile } from '../src/detectors/rules.ts';
import { binanceAdapter } from '../src/feeds/binance.ts';
import { Ingestor } from '../src/pipeline/ingest.ts';
import { formatRecordLine, readRecords } from '../src/replay/formats.ts';
import { mergeByTime } from '../src/replay/merge.ts';
import { replayFiles, type ReplaySummary } from '../src/replay/replay.ts';
import { parseTimeArg } from '../src/replay/time-range.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import { STATUS_COPY_HEADER, VIEW_HEADER, type OutgoingMessage, type Transport } from '../src/transport/types.ts';
import { HFT_CAPTURE, startVigil, stop, tempDir, vigil } from './helpers/cli.ts';

const dir = tempDir('vigil-replay-merge-');
const env = { VIGIL_DATA_DIR: join(dir, 'data') };

// ---------------------------------------------------------------- the merge itself

async function* items(times: number[], log?: { pulled: number; closed: boolean }): AsyncGenerator<{ time: number; i: number }> {
  try {
    for (let i = 0; i < times.length; i++) {
      if (log) log.pulled++;
      yield { time: times[i]!, i };
    }
  } finally {
    if (log) log.closed = true;
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('mergeByTime', () => {
  it('merges sorted inputs like a stable sort on (time, input, position)', async () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const inputs = Array.from({ length: 6 }, () => {
      let t = 0;
      return Array.from({ length: Math.floor(rnd() * 300) }, () => (t += Math.floor(rnd() * 4))); // many ties
    });
    inputs.push([]); // an empty input
    const tagged = inputs.map((times, input) => times.map((time, i) => ({ time, input, i })));
    const expected = tagged.flat().sort((a, b) => a.time - b.time || a.input - b.input || a.i - b.i);
    const got = await collect(mergeByTime(tagged.map((xs) => (async function* () { yield* xs; })())));
    expect(got).toEqual(expected);
  });

  it('keeps an input that is out of order in its own order', async () => {
    const got = await collect(mergeByTime([items([1, 5, 3, 7]), items([2, 4, 6])]));
    expect(got.map((x) => x.time)).toEqual([1, 2, 4, 5, 3, 6, 7]);
  });

  it('reads each input lazily (one record ahead) and closes every input when the consumer stops', async () => {
    const logs = [0, 1, 2].map(() => ({ pulled: 0, closed: false }));
    const merged = mergeByTime([items([0, 3, 6, 9, 12], logs[0]), items([1, 4, 7, 10], logs[1]), items([2, 5, 8], logs[2])]);
    let n = 0;
    for await (const x of merged) {
      n++;
      // Every input has been read at most one record past what was handed out.
      for (const [k, l] of logs.entries()) expect(l.pulled).toBeLessThanOrEqual(Math.floor(n / 3) + (k < n % 3 ? 1 : 0) + 1);
      if (x.time === 5) break;
    }
    expect(logs.map((l) => l.closed)).toEqual([true, true, true]);
  });

  it('propagates an input failure after closing the other inputs', async () => {
    const log = { pulled: 0, closed: false };
    async function* failing(): AsyncGenerator<{ time: number }> {
      yield { time: 1 };
      throw new Error('disk gone');
    }
    await expect(collect(mergeByTime([items([0, 2, 4], log), failing()]))).rejects.toThrow('disk gone');
    expect(log.closed).toBe(true);
  });
});

// ---------------------------------------------------------------- three inputs of three formats

const B = Date.UTC(2024, 7, 8, 12, 0, 0);
const pad = (n: number) => String(n).padStart(2, '0');
const wall = (t: number) => {
  const d = new Date(t);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
};

interface Expected {
  time: number;
  input: number;
  line: number;
  id: string;
  /** A malformed line (no event). */
  bad?: boolean;
}

/**
 * 0: a gzip Vigil recording of Binance trades (meta line first), receive times every 1.5 s, exchange
 *    times 40 ms earlier; 1: a CSV of transactions, seconds resolution, every 2 s, one bad row;
 * 2: gzip provider JSON lines of metrics through a mapping, every 0.7 s. Ties across all three at B.
 */
function writeInputs(): { files: string[]; maps: string[]; expected: Expected[] } {
  const expected: Expected[] = [];
  const rec = [JSON.stringify({ v: 1, meta: { recorder: 'test' } })];
  for (let k = 0; k < 20; k++) {
    const recvTs = B + k * 1500;
    const T = recvTs - 40;
    const data = JSON.stringify({ stream: 'btcusdt@trade', data: { e: 'trade', E: T, s: 'BTCUSDT', t: 5000 + k, p: (60000 + k).toFixed(2), q: '0.01000', T, m: k % 2 === 0, M: true } });
    rec.push(formatRecordLine({ recvTs, source: 'binance', data }));
    expected.push({ time: recvTs, input: 0, line: rec.length, id: `trade:${5000 + k}` });
  }
  const csv = ['id,account,cents,at,dc'];
  for (let j = 0; j < 15; j++) {
    const ts = B + j * 2000;
    csv.push(j === 4 ? `x${j},acc-${j % 3},12.3.4,${wall(ts)},D` : `x${j},acc-${j % 3},${1000 + j},${wall(ts)},${j % 2 ? 'C' : 'D'}`);
    expected.push({ time: ts, input: 1, line: csv.length, id: `tx:x${j}`, ...(j === 4 ? { bad: true } : {}) });
  }
  const jsonl: string[] = [];
  for (let m = 0; m < 40; m++) {
    const ts = B + m * 700;
    jsonl.push(JSON.stringify({ t: ts, v: m % 5 }));
    expected.push({ time: ts, input: 2, line: jsonl.length, id: `metric:${ts}` });
  }
  const files = [join(dir, 'trades.jsonl.gz'), join(dir, 'tx.csv'), join(dir, 'metrics.jsonl.gz')];
  writeFileSync(files[0]!, gzipSync(`${rec.join('\n')}\n`));
  writeFileSync(files[1]!, `${csv.join('\n')}\n`);
  writeFileSync(files[2]!, gzipSync(`${jsonl.join('\n')}\n`));
  const maps = [join(dir, 'tx-map.json'), join(dir, 'metric-map.json')];
  writeFileSync(
    maps[0]!,
    JSON.stringify({
      kind: 'transaction',
      source: 'bank-csv',
      fields: {
        id: 'id',
        account: 'account',
        amount: { path: 'cents', scale: 0.01 },
        currency: { const: 'EUR' },
        ts: { path: 'at', time: '%Y-%m-%d %H:%M:%S' },
        direction: { path: 'dc', map: { D: 'debit', C: 'credit' } },
        channel: { const: 'card_present' },
      },
    }),
  );
  writeFileSync(maps[1]!, JSON.stringify({ kind: 'metric', source: 'dash', fields: { key: { const: 'queue_depth' }, ts: { path: 't', time: 'epoch_ms' }, value: 'v' } }));
  // The merge's order: time, then input, then line.
  expected.sort((a, b) => a.time - b.time || a.input - b.input || a.line - b.line);
  return { files, maps, expected };
}

const inputs = writeInputs();

function idOf(ev: CanonicalEvent): string {
  if (ev.kind === 'trade') return `trade:${(ev as Trade).tradeId}`;
  if (ev.kind === 'transaction') return `tx:${(ev as Transaction).id}`;
  if (ev.kind === 'metric') return `metric:${(ev as Metric).ts}`;
  return `${ev.kind}:?`;
}

/** A replay target whose ingestor sends each event at once (batch size 1) to a transport that logs the order. */
function orderTarget() {
  const order: CanonicalEvent[] = [];
  const dlq: unknown[] = [];
  const transport = {
    kind: 'memory',
    async send<T>(topic: string, messages: readonly OutgoingMessage<T>[]) {
      for (const m of messages) {
        if (topic === 'vigil.dlq') dlq.push(m.value);
        else if (m.headers?.[VIEW_HEADER] === undefined && m.headers?.[STATUS_COPY_HEADER] === undefined) order.push(m.value as CanonicalEvent);
      }
    },
  } as unknown as Transport;
  const ingestor = new Ingestor(transport, { batchSize: 1 });
  const target = { runId: 'order', ingestor, drain: () => ingestor.flush(), deadLetters: 0, detectors: { counters: { findings: {} } } };
  return { target, order, dlq };
}

describe('three inputs of three formats, merged by time', () => {
  const mappings = [undefined, inputs.maps[0], inputs.maps[1]];

  it('come out in the order of (time, input, line), the bad row a dead letter in its place', async () => {
    const { target, order, dlq } = orderTarget();
    const s = await replayFiles(target, { files: inputs.files, mappings, speed: { mode: 'max' } });
    const good = inputs.expected.filter((e) => !e.bad);
    expect(order.map(idOf)).toEqual(good.map((e) => e.id));
    expect(order.length).toBe(20 + 14 + 40);
    // The three-way tie at B: recording, then CSV, then JSON lines.
    expect(order.slice(0, 3).map(idOf)).toEqual(['trade:5000', 'tx:x0', `metric:${B}`]);
    // Trades carry the exchange time; the merge used the receive time, 40 ms later.
    expect(order.find((e) => e.kind === 'trade')!.ts).toBe(B - 40);
    expect(s.malformed.count).toBe(1);
    expect(s.malformed.first[0]).toMatchObject({ file: inputs.files[1], line: 6 });
    expect(dlq).toHaveLength(1);
  });

  it('--from/--to select by record time exactly as a brute-force filter of the inputs does', async () => {
    const from = B + 5_000;
    const to = B + 20_000;
    const { target, order } = orderTarget();
    const s = await replayFiles(target, { files: inputs.files, mappings, speed: { mode: 'max' }, from, to });
    const inRange = (e: Expected) => e.time >= from && e.time < to;
    expect(order.map(idOf)).toEqual(inputs.expected.filter((e) => inRange(e) && !e.bad).map((e) => e.id));
    const before = inputs.expected.filter((e) => e.time < from);
    // Frames before `from` warm the normalizer up; event lines before it are skipped (the bad row takes
    // the time of the row before it, B + 6 s: in range, a dead letter); frame inputs stop at their
    // first frame ≥ to, event inputs are read to the end.
    expect(s.timeRange).toEqual({
      from,
      to,
      warmupFrames: before.filter((e) => e.input === 0).length,
      skippedBefore: before.filter((e) => e.input !== 0).length,
      skippedAfter: inputs.expected.filter((e) => e.time >= to && e.input !== 0).length,
    });
    expect(s.malformed.count).toBe(1);
  });
});

// ---------------------------------------------------------------- --from/--to cutting into a Binance depth stream

interface Normalized {
  recvTs: number;
  events: CanonicalEvent[];
}

/** Every frame of the capture through one normalizer, with the events each gave. */
async function normalizeCapture(file: string, keep: (recvTs: number) => boolean = () => true): Promise<Normalized[]> {
  const n = binanceAdapter.createNormalizer();
  const out: Normalized[] = [];
  for await (const r of readRecords(file)) {
    if (r.type !== 'frame' || !keep(r.frame.recvTs)) continue;
    const events: CanonicalEvent[] = [];
    n.normalize(r.frame, events);
    out.push({ recvTs: r.frame.recvTs, events });
  }
  return out;
}

const countKinds = (evs: CanonicalEvent[]) => evs.reduce<Record<string, number>>((a, e) => ((a[e.kind] = (a[e.kind] ?? 0) + 1), a), {});

describe('--from/--to on a Binance capture (book snapshot at the start, depth diffs after)', () => {
  it('gives exactly the events the whole capture gives from the frames in range: the book stays in sync', async () => {
    const all = await normalizeCapture(HFT_CAPTURE);
    const from = Math.floor(all[0]!.recvTs) + 120_000;
    const to = from + 90_000;
    const expected = all.filter((f) => f.recvTs >= from && f.recvTs < to).flatMap((f) => f.events);
    expect(countKinds(expected).book).toBeGreaterThan(500);

    const { target, order } = orderTarget();
    const s = await replayFiles(target, { files: [HFT_CAPTURE], speed: { mode: 'max' }, from, to });
    expect(order).toEqual(expected); // the same events, in order: book diffs applied on the synced book
    for (const e of order) expect(e.recvTs! >= from && e.recvTs! < to).toBe(true); // nothing from before `from`
    expect(s.events).toMatchObject(countKinds(expected));
    expect(s.timeRange!.warmupFrames).toBe(all.filter((f) => f.recvTs < from).length);
    expect(s.books.binance!['BTC-USDT']).toMatchObject({ resyncs: 0 });

    // Why the warm-up: dropping the frames before `from` leaves the diffs without their snapshot, and
    // the book never syncs (no book events at all).
    const naive = (await normalizeCapture(HFT_CAPTURE, (t) => t >= from && t < to)).flatMap((f) => f.events);
    expect(countKinds(naive).book ?? 0).toBe(0);
  });

  it('parses --from/--to like the API: epoch ms or ISO-8601, no offset = UTC', () => {
    expect(parseTimeArg('1723161373937')).toBe(1723161373937);
    expect(parseTimeArg('2024-08-08T23:56:13.937Z')).toBe(Date.UTC(2024, 7, 8, 23, 56, 13, 937));
    expect(parseTimeArg('2024-08-08 23:56:13')).toBe(Date.UTC(2024, 7, 8, 23, 56, 13));
    expect(parseTimeArg('2024-08-09T01:56:13+02:00')).toBe(Date.UTC(2024, 7, 8, 23, 56, 13));
    expect(parseTimeArg('yesterday')).toBeUndefined();
  });
});

// ---------------------------------------------------------------- the command: mappings per input, --rules, run records

interface RunRow {
  run_id: string;
  status: string;
  inputs: string[];
  rules_version: string;
  options: string;
  events: string | number;
  findings: string | number;
  duration_ms: string | number;
  finished: number;
  summary: string;
}

async function replay(args: string[]): Promise<ReplaySummary> {
  const r = await vigil(['replay', ...args, '--json'], env);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as ReplaySummary;
}

async function sqlRows<T>(query: string): Promise<T[]> {
  const r = await vigil(['sql', query, '--format', 'jsonl'], env);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim() === '' ? [] : r.stdout.trim().split('\n').map((l) => JSON.parse(l) as T);
}

const runRows = (runId: string) =>
  sqlRows<RunRow>(
    `SELECT run_id, status, inputs, rules_version, options, events, findings, duration_ms, finished_at IS NOT NULL AS finished, summary FROM runs FINAL WHERE run_id = '${runId}'`,
  );

/** The first 15,000 lines of the Binance capture (about two minutes of market), gzip. */
const part = join(dir, 'btcusdt-part.gz');
writeFileSync(part, gzipSync(gunzipSync(readFileSync(HFT_CAPTURE)).toString('utf8').split('\n').slice(0, 15_000).join('\n')));

/** Only price_jump, far more sensitive than the shipped rule. */
const fastRules = join(dir, 'fast.json');
writeFileSync(
  fastRules,
  JSON.stringify({
    description: 'sensitive price jumps',
    rules: [{ id: 'price_jump.fast', detector: 'price_jump', params: { intervalMs: 1000, windowMs: 120000, maxSamples: 200, minSamples: 10, zThreshold: 3, minMoveBps: 0.5, cooldownMs: 2000 } }],
  }),
);

describe('run records (migration 8, runs_detail)', () => {
  it('carry rules version, options, counts and duration through upsertRun / listRuns / getRun; older records read back without them', async () => {
    const store = await openStore({ dataDir: tempDir('vigil-runs-detail-') });
    try {
      const base = { runId: 'd1', startedAt: B, inputs: ['a.gz', 'b.csv'], summary: {} };
      await store.upsertRun({ ...base, status: 'running', rulesVersion: 'abc123def456', options: { speed: 'max', from: B } });
      const done = { ...base, status: 'completed' as const, finishedAt: B + 5_000, rulesVersion: 'abc123def456', options: { speed: 'max', from: B }, events: 1234, findings: 7, durationMs: 4_321, summary: { totalEvents: 1234 } };
      await store.upsertRun(done);
      expect(await store.getRun('d1')).toStrictEqual(done);
      await store.upsertRun({ runId: 'd0', startedAt: B - 1, status: 'completed', inputs: [], summary: {} });
      expect((await store.listRuns()).find((r) => r.runId === 'd0')).toStrictEqual({ runId: 'd0', startedAt: B - 1, status: 'completed', inputs: [], summary: {} });
    } finally {
      await store.close();
    }
  });
});

describe('vigil replay with several inputs, --rules and --from/--to: the run record', () => {
  it('gives each input the --mapping before it (none: a recording again); a lone --mapping after every input applies to all', () => {
    const [m1, m2] = inputs.maps as [string, string];
    const spec = { mapping: { type: 'string', multiple: true }, 'run-id': { type: 'string' } } as const;
    const of = (argv: string[]) => inputMappings(parseWithTokens(argv, spec).tokens).paths;
    expect(of(['a', '--mapping', m1, 'b', 'c', '--mapping', 'none', 'd', '--mapping', m2, 'e'])).toEqual([undefined, m1, m1, undefined, m2]);
    expect(of(['a', 'b', '--mapping', m1, '--run-id', 'x'])).toEqual([m1, m1]);
    expect(of(['--run-id', 'x', 'a', '--mapping', m1, '--mapping', m2])).toEqual([undefined]);
    const { mappings } = inputMappings(parseWithTokens(['--mapping', m1, 'a', 'b'], spec).tokens);
    expect(mappings[0]).toBe(mappings[1]); // loaded once
    expect(mappings[0]).toMatchObject({ kind: 'transaction', source: 'bank-csv' });
  });

  it('replays a recording, a mapped CSV and mapped JSON lines merged, and records the run', async () => {
    const [rec, csv, jsonl] = inputs.files as [string, string, string];
    const s = await replay([rec, '--mapping', inputs.maps[0]!, csv, '--mapping', inputs.maps[1]!, jsonl, '--run-id', 'merge']);
    expect(s.status).toBe('completed');
    expect(s.events).toMatchObject({ trade: 20, transaction: 14, metric: 40 });
    expect(s.malformed.count).toBe(1);
    const defaultVersion = loadRules({ detectors: {} }).version;
    expect(s.rulesVersion).toBe(defaultVersion);
    const [row, ...more] = await runRows('merge');
    expect(more).toHaveLength(0);
    expect(row).toMatchObject({ run_id: 'merge', status: 'completed', inputs: inputs.files, rules_version: defaultVersion, finished: 1 });
    expect(Number(row!.events)).toBe(s.totalEvents);
    expect(Number(row!.findings)).toBe(s.totalFindings);
    expect(Number(row!.duration_ms)).toBe(s.durationMs);
    expect(JSON.parse(row!.options)).toEqual({ speed: 'max', mappings: { [rec]: null, [csv]: inputs.maps[0], [jsonl]: inputs.maps[1] } });
    expect(JSON.parse(row!.summary)).toMatchObject({ runId: 'merge', totalEvents: s.totalEvents, eventsPerSec: s.eventsPerSec, findings: s.findings });
  });

  it('--rules detects with another rules file: other findings, its version in the summary, findings and run record; the same --run-id replaces the record', async () => {
    const byDefault = await replay([part, '--run-id', 'rules']);
    const fastVersion = loadRulesFile(fastRules).version;
    expect(byDefault.rulesVersion).not.toBe(fastVersion);
    expect((await runRows('rules'))[0]).toMatchObject({ rules_version: byDefault.rulesVersion, status: 'completed' });

    const fast = await replay([part, '--rules', fastRules, '--run-id', 'rules', '--from', '2024-08-08T23:54:40Z', '--to', String(Date.UTC(2024, 7, 8, 23, 56, 0))]);
    expect(fast.rulesVersion).toBe(fastVersion);
    expect(Object.keys(fast.findings)).toEqual(['price_jump']);
    expect(fast.findings.price_jump).toBeGreaterThan((byDefault.findings.price_jump ?? 0) + 3);
    const stored = await sqlRows<{ v: string; n: string | number }>(`SELECT rules_version AS v, count() AS n FROM findings FINAL WHERE run_id = 'rules' AND rule_id = 'price_jump.fast' GROUP BY v`);
    expect(stored.map((r) => [r.v, Number(r.n)])).toEqual([[fastVersion, fast.totalFindings]]);
    // One record for the run id: the second run's.
    const rows = await runRows('rules');
    expect(rows).toHaveLength(1);
    const from = Date.UTC(2024, 7, 8, 23, 54, 40);
    const to = Date.UTC(2024, 7, 8, 23, 56, 0);
    expect(rows[0]).toMatchObject({ rules_version: fastVersion, status: 'completed' });
    expect(JSON.parse(rows[0]!.options)).toEqual({ speed: 'max', from, to, rules: fastRules });
    expect(Number(rows[0]!.findings)).toBe(fast.totalFindings);
    // The range, against a brute-force filter of the same file.
    const expected = (await normalizeCapture(part)).filter((f) => f.recvTs >= from && f.recvTs < to).flatMap((f) => f.events);
    expect(fast.events).toMatchObject(countKinds(expected));
    expect(fast.totalEvents).toBe(expected.length);
    expect(Number(rows[0]!.events)).toBe(expected.length);
  });

  it('refuses a bad --rules file, a missing one and bad times with exit code 2, naming them', async () => {
    const bad = join(dir, 'bad-rules.yaml');
    writeFileSync(bad, 'rules:\n  - id: x\n    detector: no_such_detector\n');
    const r = await vigil(['replay', part, '--rules', bad], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--rules: rules ${bad}: rules.0.detector: unknown detector "no_such_detector"`);
    const missing = await vigil(['replay', part, '--rules', join(dir, 'nope.yaml')], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--rules: cannot read .*nope\.yaml/);
    const time = await vigil(['replay', part, '--from', 'noon'], env);
    expect(time.code).toBe(2);
    expect(time.stderr).toContain('--from: expected epoch milliseconds or an ISO-8601 time');
    const order = await vigil(['replay', part, '--from', '2024-08-08T12:00:00Z', '--to', '2024-08-08T11:00:00Z'], env);
    expect(order.code).toBe(2);
    expect(order.stderr).toContain('--to: expected a time after --from');
  });

  it('SIGINT cancels the run: exit 130, the record says cancelled with what was done', async () => {
    const p = startVigil(['replay', HFT_CAPTURE, '--speed', '2x', '--run-id', 'sig', '--json'], env);
    const t0 = Date.now();
    // Progress lines (non-TTY: one per second after 2 s) show it is under way.
    while (!/replay sig: [\d,]+ events/.test(p.output()) && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 100));
    expect(await stop(p.child, 'SIGINT')).toBe(130);
    const [row] = await runRows('sig');
    expect(row).toMatchObject({ status: 'cancelled', finished: 1 });
    expect(Number(row!.events)).toBeGreaterThan(0);
    expect(Number(row!.events)).toBeLessThan(41_248);
    expect(JSON.parse(row!.summary)).toMatchObject({ status: 'aborted' });
  });
});
