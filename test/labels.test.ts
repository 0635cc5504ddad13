// Ground-truth labels: the file format and its errors, the scoring rule, and a labelled `vigil replay`
// whose precision, recall, F1 and delays are worked out by hand below.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStore } from '../src/storage/clickhouse.ts';
import { LabelScorer, loadLabels, parseDurationMs, parseLabels, type LabelSet } from '../src/replay/labels.ts';
import { tempDir, vigil } from './helpers/cli.ts';
import { EXPECTED_FINDINGS, T0, writeSynthetic } from './helpers/labelled-trades.ts';

const s = (n: number) => T0 + n * 1000;

describe('labels file', () => {
  it('reads epoch ms and ISO times, an optional detector, skips blank lines and keeps line numbers', () => {
    const text = [
      JSON.stringify({ start: s(1), end: s(2), key: 'binance:BTC-USDT', detector: 'price_jump', id: 'a' }),
      '',
      JSON.stringify({ start: new Date(s(3)).toISOString(), end: '2023-11-14T22:13:25+00:00', key: 'acct-1', note: 'n' }),
    ].join('\n');
    const labels = parseLabels(text, 'l.jsonl');
    expect(labels).toEqual([
      { line: 1, start: s(1), end: s(2), key: 'binance:BTC-USDT', detector: 'price_jump', id: 'a' },
      { line: 3, start: s(3), end: Date.parse('2023-11-14T22:13:25Z'), key: 'acct-1' },
    ]);
  });

  it.each([
    ['not JSON', '{"start": 1, "end": 2, "key": "k"}\n{"start": 1,', /^labels l\.jsonl:2: not JSON/],
    ['a missing key', '{"start": 1, "end": 2}', /^labels l\.jsonl:1: key: /],
    ['an unknown field', '{"start": 1, "end": 2, "key": "k", "detecter": "price_jump"}', /^labels l\.jsonl:1: .*detecter/],
    ['an ISO time without a zone', '{"start": "2024-08-09T00:00:00", "end": 2, "key": "k"}', /^labels l\.jsonl:1: start: expected epoch ms or an ISO-8601 time with a zone/],
    ['end before start', '{"start": 5, "end": 2, "key": "k"}', /^labels l\.jsonl:1: end \(.*\) is before start/],
    ['an unknown detector', '{"start": 1, "end": 2, "key": "k", "detector": "price_jmp"}', /^labels l\.jsonl:1: detector: unknown detector "price_jmp" \(known: .*price_jump/],
    ['no labels at all', '\n\n', /^labels l\.jsonl: no labels/],
  ])('fails on %s, naming the file and line', (_what, text, message) => {
    expect(() => parseLabels(text, 'l.jsonl')).toThrow(message);
  });

  it('hashes the file (SHA-256 of its bytes) and names a missing file', () => {
    const dir = tempDir();
    const file = join(dir, 'l.jsonl');
    writeFileSync(file, '{"start": 1, "end": 2, "key": "k"}\n');
    const first = loadLabels(file).hash;
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    writeFileSync(file, '{"start": 1, "end": 3, "key": "k"}\n');
    expect(loadLabels(file).hash).not.toBe(first);
    expect(() => loadLabels(join(dir, 'missing.jsonl'))).toThrow(/^labels .*missing\.jsonl: cannot read/);
  });

  it('grace durations', () => {
    expect(parseDurationMs('500', '--label-grace')).toBe(500);
    expect(parseDurationMs('2s', '--label-grace')).toBe(2000);
    expect(parseDurationMs('1.5m', '--label-grace')).toBe(90_000);
    expect(() => parseDurationMs('soon', '--label-grace')).toThrow(/--label-grace: expected a duration/);
  });
});

describe('scoring', () => {
  const set = (labels: LabelSet['labels']): LabelSet => ({ file: 'mem', hash: 'h', labels });

  it('matches on key, symbol or account; on the named detector; within [start, end + grace]', () => {
    const scorer = new LabelScorer(
      set([
        { line: 1, start: s(10), end: s(20), key: 'acct-1' }, // by account
        { line: 2, start: s(10), end: s(20), key: 'ETH-USDT', detector: 'price_jump' }, // by symbol, price_jump only
        { line: 3, start: s(30), end: s(31), key: 'binance:BTC-USDT' }, // by key; ends 1 s before the finding
      ]),
      1_000,
    );
    scorer.add({ detector: 'velocity', key: 'acct-1', account: 'acct-1', ts: s(15) }); // tp (label 1), delay 5 s
    scorer.add({ detector: 'volume_spike', key: 'binance:ETH-USDT', symbol: 'ETH-USDT', ts: s(12) }); // fp: label 2 names price_jump
    scorer.add({ detector: 'price_jump', key: 'binance:ETH-USDT', symbol: 'ETH-USDT', ts: s(11) }); // tp (label 2), delay 1 s
    scorer.add({ detector: 'price_jump', key: 'binance:BTC-USDT', symbol: 'BTC-USDT', ts: s(32) }); // tp (label 3 + 1 s grace), delay 2 s
    scorer.add({ detector: 'price_jump', key: 'binance:BTC-USDT', symbol: 'BTC-USDT', ts: s(32) + 1 }); // fp: past the grace
    const r = scorer.report();
    // price_jump: 3 findings, 2 matched → precision 2/3; labels counting: all 3 (two unnamed, one naming it), all detected.
    expect(r.byDetector.price_jump).toMatchObject({ findings: 3, tp: 2, fp: 1, labels: 3, detected: 2, fn: 1, precision: 0.666667, recall: 0.666667 });
    // velocity: 1 finding, matched; labels counting: the 2 unnamed ones, 1 detected.
    expect(r.byDetector.velocity).toMatchObject({ findings: 1, tp: 1, labels: 2, detected: 1, precision: 1, recall: 0.5, delayMs: { mean: 5000, p50: 5000, max: 5000 } });
    expect(r.byDetector.volume_spike).toMatchObject({ findings: 1, tp: 0, precision: 0, recall: 0, f1: 0, delayMs: null });
    // All: 5 findings, 3 matched; 3 labels, all detected; delays 5 s, 1 s, 2 s → mean 2.667 s, p50 (2nd of 3) 2 s, max 5 s.
    expect(r.overall).toMatchObject({ findings: 5, tp: 3, fp: 2, labels: 3, detected: 3, fn: 0, precision: 0.6, recall: 1, f1: 0.75, delayMs: { mean: 2666.667, p50: 2000, max: 5000 } });
  });

  it('scoped to some detectors (a backtest): other findings ignored, labels naming others left out', () => {
    const scorer = new LabelScorer(
      set([
        { line: 1, start: s(0), end: s(10), key: 'k' },
        { line: 2, start: s(0), end: s(10), key: 'k', detector: 'spoofing' },
      ]),
      0,
      ['price_jump'],
    );
    scorer.add({ detector: 'spoofing', key: 'k', ts: s(5) });
    const r = scorer.report();
    expect(r.count).toBe(1);
    expect(Object.keys(r.byDetector)).toEqual(['price_jump']);
    expect(r.byDetector.price_jump).toMatchObject({ findings: 0, labels: 1, detected: 0, precision: null, recall: 0, f1: null });
  });
});

describe('vigil replay --labels', () => {
  const dir = tempDir();
  const env = { VIGIL_DATA_DIR: join(dir, 'data') };
  const { trades, rules } = writeSynthetic(dir);
  const labelsFile = join(dir, 'labels.jsonl');
  // The replay finds 4 price jumps (test/helpers/labelled-trades.ts): F1 BTC at 40 s, F2 ETH at 60 s,
  // F3 BTC at 80 s, F4 BTC at 120 s (seconds after T0). The labels:
  writeFileSync(
    labelsFile,
    [
      { start: s(38), end: s(42), key: 'binance:BTC-USDT', detector: 'price_jump' }, // L1: F1 inside → detected, delay 2 s
      { start: s(70), end: s(79), key: 'BTC-USDT' }, // L2: F3 at 80 s is 1 s past the end; with 2 s grace → detected, delay 10 s
      { start: new Date(s(100)).toISOString(), end: new Date(s(110)).toISOString(), key: 'ETH-USDT' }, // L3: nothing then → missed
      { start: s(55), end: s(65), key: 'binance:ETH-USDT', detector: 'spread_blowout' }, // L4: F2 is price_jump, not spread_blowout → missed
    ]
      .map((l) => JSON.stringify(l))
      .join('\n'),
  );

  it('scores by hand: precision, recall, F1 and delay per detector, in --json, the summary and ClickHouse', async () => {
    const r = await vigil(['replay', trades, '--run-id', 'lab1', '--labels', labelsFile, '--label-grace', '2s', '--json'], { ...env, VIGIL_RULES: rules });
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { findings: Record<string, number>; labels: Record<string, any> };
    expect(summary.findings.price_jump).toBe(EXPECTED_FINDINGS.length);
    const { labels } = summary;
    expect(labels).toMatchObject({ file: labelsFile, graceMs: 2000, count: 4 });
    expect(labels.hash).toBe(loadLabels(labelsFile).hash);
    // price_jump: findings F1-F4; F1 matches L1, F3 matches L2 (grace) → tp 2, fp 2 (F2: L4 names another
    // detector; F4: no label) → precision 2/4 = 0.5. Labels counting for it: L1 (names it), L2, L3 (name
    // none) = 3; detected L1, L2 → recall 2/3. F1 = 2·0.5·(2/3) / (0.5 + 2/3) = 4/7 = 0.571429.
    // Delays: L1 40 − 38 = 2 s, L2 80 − 70 = 10 s → mean 6 s, p50 (1st of 2) 2 s, max 10 s.
    expect(labels.byDetector.price_jump).toEqual({
      detector: 'price_jump', findings: 4, tp: 2, fp: 2, labels: 3, detected: 2, fn: 1,
      precision: 0.5, recall: 0.666667, f1: 0.571429, delayMs: { mean: 6000, p50: 2000, max: 10000 },
    });
    // spread_blowout (named by L4, no findings): labels L4, L2, L3 = 3, none detected → recall 0, precision undefined.
    expect(labels.byDetector.spread_blowout).toEqual({
      detector: 'spread_blowout', findings: 0, tp: 0, fp: 0, labels: 3, detected: 0, fn: 3, precision: null, recall: 0, f1: null, delayMs: null,
    });
    // All: 4 findings, 2 matched → 0.5; 4 labels, 2 detected (L1, L2) → 0.5; F1 0.5; same delays.
    expect(labels.overall).toEqual({
      detector: '*', findings: 4, tp: 2, fp: 2, labels: 4, detected: 2, fn: 2, precision: 0.5, recall: 0.5, f1: 0.5, delayMs: { mean: 6000, p50: 2000, max: 10000 },
    });

    // The same, as rows of label_scores.
    const q = await vigil(['sql', "SELECT detector, findings, tp, fp, labels, detected, fn, precision, recall, f1, delay_mean_ms, delay_p50_ms, delay_max_ms, grace_ms, labels_hash FROM label_scores FINAL WHERE run_id = 'lab1' ORDER BY detector", '--format', 'tsv'], env);
    expect(q.code, q.stderr).toBe(0);
    const rows = q.stdout.trim().split('\n').slice(1).map((l) => l.split('\t'));
    expect(rows.map((x) => x.slice(0, 14))).toEqual([
      ['*', '4', '2', '2', '4', '2', '2', '0.5', '0.5', '0.5', '6000', '2000', '10000', '2000'],
      ['price_jump', '4', '2', '2', '3', '2', '1', '0.5', '0.666667', '0.571429', '6000', '2000', '10000', '2000'],
      ['spread_blowout', '0', '0', '0', '3', '0', '3', '\\N', '0', '\\N', '\\N', '\\N', '\\N', '2000'],
    ]);
    for (const x of rows) expect(x[14]).toBe(labels.hash);

    // And through the Store, '*' last.
    const store = await openStore({ dataDir: env.VIGIL_DATA_DIR });
    try {
      const stored = await store.listLabelScores('lab1');
      expect(stored.map((x) => [x.detector, x.precision, x.recall, x.f1, x.delayP50Ms, x.labelsFile])).toEqual([
        ['price_jump', 0.5, 0.666667, 0.571429, 2000, labelsFile],
        ['spread_blowout', null, 0, null, null, labelsFile],
        ['*', 0.5, 0.5, 0.5, 2000, labelsFile],
      ]);
    } finally {
      await store.close();
    }
  });

  it('without grace, F3 falls outside L2: one detection less; the human summary shows the scores', async () => {
    const r = await vigil(['replay', trades, '--run-id', 'lab2', '--labels', labelsFile], { ...env, VIGIL_RULES: rules });
    expect(r.code, r.stderr).toBe(0);
    // price_jump: tp 1 (F1) of 4 → 25.0%; detected 1 (L1) of 3 → 33.3%; F1 = 2·0.25·(1/3)/(0.25 + 1/3) = 2/7 = 28.6%; delay 2 s.
    expect(r.stdout).toMatch(/labels {5}4 from .*labels\.jsonl, sha256 [0-9a-f]{12}/);
    expect(r.stdout).toMatch(/price_jump +precision 25\.0% \(1\/4\) · recall 33\.3% \(1\/3\) · F1 28\.6%, delay mean 2\.00 s p50 2\.00 s max 2\.00 s/);
    expect(r.stdout).toMatch(/all +precision 25\.0% \(1\/4\) · recall 25\.0% \(1\/4\) · F1 25\.0%/);
  });

  it('a bad labels file stops the replay before it starts, naming file and line', async () => {
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"start": 1, "end": 2, "key": "k"}\n{"start": 3, "end": 2, "key": "k"}\n');
    const r = await vigil(['replay', trades, '--run-id', 'lab3', '--labels', bad], { ...env, VIGIL_RULES: rules });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`labels ${bad}:2: end`);
    const grace = await vigil(['replay', trades, '--label-grace', '2s'], { ...env, VIGIL_RULES: rules });
    expect(grace.code).toBe(2);
    expect(grace.stderr).toMatch(/--label-grace needs --labels/);
    const runs = await vigil(['sql', "SELECT count() FROM runs WHERE run_id = 'lab3'", '--format', 'tsv'], env);
    expect(runs.stdout.trim().split('\n')[1]).toBe('0');
  });
});
