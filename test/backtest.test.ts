// Backtests: grid files and their errors, findings equal to a `vigil replay` under the setting's rules
// file (in this thread and on worker threads), and the report (table, CSV, HTML, JSON) with labels.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Finding } from '../src/core/events.ts';
import { buildRuleSet, loadRulesFile, rulesFileSchema, type RulesFile } from '../src/detectors/rules.ts';
import { expandGrid, parseGrid, runBacktest, settingInstances, settingRulesFile, type BacktestReport } from '../src/replay/backtest.ts';
import { HFT_CAPTURE, tempDir, vigil } from './helpers/cli.ts';
import { SYNTHETIC_RULES, T0, writeSynthetic } from './helpers/labelled-trades.ts';

const defaults = loadRulesFile('rules/default.yaml');
const grid = (text: unknown, rules: RulesFile = defaults.file) => parseGrid(JSON.stringify(text), 'g.json', rules);

describe('grid file', () => {
  it('resolves a detector name to its rule and expands the product, the first axis slowest', () => {
    const g = grid({ rule: 'price_jump', params: { zThreshold: [4, 6], minMoveBps: [3, 5] } });
    expect(g.ruleIds).toEqual(['price_jump.default']);
    expect(g.detectors).toEqual(['price_jump']);
    const settings = expandGrid(g, defaults.file);
    expect(settings.map((s) => s.values)).toEqual([[4, 3], [4, 5], [6, 3], [6, 5]]);
    // The shipped rule has zThreshold 6, minMoveBps 5: the last setting is the rules file as it is.
    expect(settings.map((s) => s.current)).toEqual([false, false, false, true]);
    expect(settings[1]!.params['price_jump.default']).toMatchObject({ zThreshold: 4, minMoveBps: 5, intervalMs: 1000 });
  });

  it('takes ranges and single values, and several rules at once (names qualified by rule)', () => {
    const g = grid({
      vary: [
        { rule: 'price_jump.default', params: { zThreshold: { from: 4, to: 5, step: 0.5 }, minMoveBps: 3 } },
        { rule: 'disorderly_trading', params: { minMoveBps: [10, 20] } },
      ],
    });
    expect(g.axes.map((a) => [a.param, a.values])).toEqual([['zThreshold', [4, 4.5, 5]], ['minMoveBps', [3]], ['minMoveBps', [10, 20]]]);
    expect(g.ruleIds).toEqual(['price_jump.default', 'disorderly_trading.default']);
    expect(expandGrid(g, defaults.file)).toHaveLength(6);
  });

  it.each([
    ['an unknown rule', { rule: 'price_jmp', params: { zThreshold: [4] } }, /grid g\.json: rule: "price_jmp" is neither a rule id nor a detector of the rules file \(rules: price_jump\.default, /],
    ['an empty list', { rule: 'price_jump', params: { zThreshold: [] } }, /grid g\.json: params\.zThreshold: at least one value/],
    ['no parameter', { rule: 'price_jump', params: {} }, /grid g\.json: params: at least one parameter/],
    ['an unknown field', { rule: 'price_jump', params: { zThreshold: [4] }, extra: 1 }, /grid g\.json: .*extra/],
    ['too many settings', { rule: 'price_jump', params: { zThreshold: { from: 1, to: 100, step: 1 }, minMoveBps: { from: 0, to: 10, step: 1 } } }, /grid g\.json: 1,100 settings \(zThreshold: 100 × minMoveBps: 11\); at most 1000/],
    ['a range going down', { rule: 'price_jump', params: { zThreshold: { from: 5, to: 4, step: 1 } } }, /"to" \(4\) is below "from" \(5\)/],
  ])('refuses %s', (_what, text, message) => {
    expect(() => grid(text)).toThrow(message);
  });

  it('refuses a value the detector refuses, naming the setting and the parameter', () => {
    const g = grid({ rule: 'price_jump', params: { zThreshold: [4, -1] } });
    expect(() => expandGrid(g, defaults.file)).toThrow(/grid setting zThreshold=-1: invalid parameters for detector price_jump \(rule price_jump\.default\): zThreshold: /);
    const unknown = grid({ rule: 'price_jump', params: { zThreshhold: [4] } });
    expect(() => expandGrid(unknown, defaults.file)).toThrow(/zThreshhold/);
  });

  it('a setting is stamped with the version of its whole rules file, as a replay under that file would be', () => {
    const g = grid({ rule: 'price_jump', params: { zThreshold: [4] } });
    const [setting] = expandGrid(g, defaults.file);
    const file = settingRulesFile(defaults.file, setting!.params);
    const { instances, rulesVersion } = settingInstances(defaults.file, g.ruleIds, setting!.params);
    // Through a file on disk, as `vigil replay` reads it.
    expect(rulesVersion).toBe(buildRuleSet(JSON.parse(JSON.stringify(file)), 'x').version);
    expect(rulesVersion).not.toBe(defaults.version);
    expect(instances.map((i) => i.ruleId)).toEqual(['price_jump.default']);
  });
});

/** A replay's findings of one detector, as stored. */
async function storedFindings(env: Record<string, string>, runId: string, detector: string): Promise<string[]> {
  const r = await vigil(['sql', `SELECT id, toUnixTimestamp64Milli(ts), key, score, severity, rules_version, summary FROM findings FINAL WHERE run_id = '${runId}' AND detector = '${detector}' ORDER BY id`, '--format', 'tsv'], env);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim().split('\n').slice(1);
}

const asRows = (list: readonly Finding[]) =>
  list.map((f) => [f.id, f.ts, f.key, f.score, f.severity, f.rulesVersion, f.summary].join('\t')).sort();

describe('backtest on the Binance capture', () => {
  const dir = tempDir();
  const env = { VIGIL_DATA_DIR: join(dir, 'data') };
  const g = grid({ rule: 'price_jump', params: { zThreshold: [6], minMoveBps: [3, 5] } });
  let report: BacktestReport;

  it('gives per setting the findings of a vigil replay under a rules file with those parameters', async () => {
    report = await runBacktest({ files: [HFT_CAPTURE], rules: defaults.file, rulesVersion: defaults.version, grid: g, workers: 1, keepFindings: true });
    expect(report.status).toBe('completed');
    expect(report.events).toMatchObject({ trade: 9757, quote: 28040, book: 3450, status: 1 });
    // price_jump reads the trades topic: the trades and the status marker's copy.
    expect(report.messages).toBe(9758);
    const [loose, strict] = report.settings;
    // The two settings differ, so the comparison below tells them apart.
    expect(loose!.findings).toBeGreaterThan(strict!.findings);
    expect(strict!.findings).toBeGreaterThan(0);
    for (const row of report.settings) {
      const rules = join(dir, `rules-${row.index}.json`);
      writeFileSync(rules, JSON.stringify(settingRulesFile(defaults.file, row.params)));
      const runId = `bt-${row.index}`;
      const r = await vigil(['replay', HFT_CAPTURE, '--run-id', runId, '--json'], { ...env, VIGIL_RULES: rules });
      expect(r.code, r.stderr).toBe(0);
      const replayed = JSON.parse(r.stdout) as { findings: Record<string, number>; rulesVersion: string };
      expect(replayed.rulesVersion).toBe(row.rulesVersion);
      expect(replayed.findings.price_jump).toBe(row.findings);
      expect(asRows(row.list!)).toEqual(await storedFindings(env, runId, 'price_jump'));
    }
    // Findings per hour of event time: the capture spans ~346 s.
    expect(report.spanMs).toBeGreaterThan(340_000);
    expect(loose!.perHour).toBeCloseTo(loose!.findings / (report.spanMs / 3_600_000), 1);
  });

  it('worker threads give the very same findings', async () => {
    const onWorkers = await runBacktest({
      files: [HFT_CAPTURE], rules: defaults.file, rulesVersion: defaults.version, grid: g,
      workers: 2, workerAfterMs: 0, mainThreadRuns: false, keepFindings: true,
    });
    expect(onWorkers.settings.map((s) => s.thread)).toEqual([expect.stringMatching(/^worker-\d$/), expect.stringMatching(/^worker-\d$/)]);
    expect(onWorkers.settings.map((s) => asRows(s.list!))).toEqual(report.settings.map((s) => asRows(s.list!)));
  });
});

describe('vigil backtest with labels', () => {
  const dir = tempDir();
  const { trades, rules } = writeSynthetic(dir);
  const gridFile = join(dir, 'grid.yaml');
  // 50 bps lets the 99.5 bps jumps through; 150 bps none.
  writeFileSync(gridFile, 'description: minimum move\nrule: price_jump.test\nparams:\n  minMoveBps: [150, 50]\n');
  const labelsFile = join(dir, 'labels.jsonl');
  // As in test/labels.test.ts: jumps (findings) at 40 s (BTC), 60 s (ETH), 80 s (BTC), 120 s (BTC) after T0.
  writeFileSync(
    labelsFile,
    [
      { start: T0 + 38_000, end: T0 + 42_000, key: 'binance:BTC-USDT', detector: 'price_jump' }, // L1: 40 s, delay 2 s
      { start: T0 + 70_000, end: T0 + 79_000, key: 'BTC-USDT' }, // L2: 80 s with the 2 s grace, delay 10 s
      { start: T0 + 100_000, end: T0 + 110_000, key: 'ETH-USDT' }, // L3: missed
      { start: T0 + 55_000, end: T0 + 65_000, key: 'binance:ETH-USDT', detector: 'spread_blowout' }, // L4: not price_jump's: left out
    ]
      .map((l) => JSON.stringify(l))
      .join('\n'),
  );
  const csv = join(dir, 'out.csv');
  const html = join(dir, 'out.html');

  it('reports findings per hour and precision/recall per setting, sorted by F1, as JSON, CSV and HTML', async () => {
    const r = await vigil(['backtest', trades, '--grid', gridFile, '--rules', rules, '--labels', labelsFile, '--label-grace', '2s', '--csv', csv, '--html', html, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as BacktestReport;
    expect(report).toMatchObject({ status: 'completed', ruleIds: ['price_jump.test'], totalEvents: 302, spanMs: 150_000, labels: { count: 3, graceMs: 2000 } });
    const [tight, loose] = report.settings;
    expect(tight).toMatchObject({ values: [150], findings: 0, perHour: 0 });
    // Labels counting for price_jump: L1, L2, L3 (L4 names spread_blowout). With 150 bps: no findings →
    // precision undefined, recall 0/3.
    expect(tight!.labels!.overall).toMatchObject({ findings: 0, precision: null, recall: 0, f1: null, delayMs: null });
    // With 50 bps: 4 findings in 150 s = 96 per hour; tp 2 (40 s in L1, 80 s in L2 + grace) → precision 0.5;
    // detected L1, L2 of 3 → recall 2/3; F1 = 4/7; delays 2 s and 10 s → mean 6 s.
    expect(loose).toMatchObject({ values: [50], findings: 4, perHour: 96 });
    expect(loose!.labels!.overall).toMatchObject({ tp: 2, fp: 2, labels: 3, detected: 2, precision: 0.5, recall: 0.666667, f1: 0.571429, delayMs: { mean: 6000, p50: 2000, max: 10000 } });
    // The setting equal to the rules file (minMoveBps 5 there) is neither.
    expect(report.settings.every((s) => !s.current)).toBe(true);

    const lines = readFileSync(csv, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('setting,minMoveBps,current,findings,findings_per_hour,findings_price_jump,precision,recall,f1,tp,fp,labels,detected,fn,delay_mean_ms,delay_p50_ms,delay_max_ms,rules_version');
    // Best F1 first: setting 2 (50 bps), then setting 1 (150 bps, F1 empty).
    expect(lines[1]).toBe(`2,50,false,4,96,4,0.5,0.666667,0.571429,2,2,3,2,1,6000,2000,10000,${loose!.rulesVersion}`);
    expect(lines[2]).toBe(`1,150,false,0,0,0,,0,,0,0,3,0,3,,,,${tight!.rulesVersion}`);

    const page = readFileSync(html, 'utf8');
    expect(page).toMatch(/^<!doctype html>/);
    expect(page).toContain('minimum move');
    expect(page).toMatch(/<td data-k="0\.571429" class="r"><span class="bar f1" style="width:57\.1%"><\/span><span class="v">57\.1%<\/span><\/td>/);
    // Self-contained: nothing loaded from elsewhere.
    expect(page).not.toMatch(/\b(src|href)=|@import|url\(/);
  });

  it('prints the table on the terminal', async () => {
    const r = await vigil(['backtest', trades, '--grid', gridFile, '--rules', rules, '--labels', labelsFile]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/backtest of price_jump\.test \(rules [0-9a-f]{12}\): 2 settings/);
    expect(r.stdout).toMatch(/#\s+minMoveBps\s+findings\s+per hour\s+precision\s+recall\s+F1\s+mean delay/);
    // Without grace: tp 1 of 4 (25.0%), detected 1 of 3 (33.3%), F1 2/7 (28.6%), delay 2 s.
    expect(r.stdout).toMatch(/\n\s+2\s+50\s+4\s+96\s+25\.0%\s+33\.3%\s+28\.6%\s+2\.00 s\n\s+1\s+150\s+0\s+0\s+—\s+0\.0%\s+—\s+—\n/);
  });

  it('fails clearly on a bad grid and on missing options', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'rule: price_jump.test\nparams:\n  minMoveBps: [-3]\n');
    const r = await vigil(['backtest', trades, '--grid', bad, '--rules', rules]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/grid setting minMoveBps=-3: invalid parameters for detector price_jump/);
    const none = await vigil(['backtest', trades]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/--grid FILE is required/);
    const workers = await vigil(['backtest', trades, '--grid', gridFile, '--workers', '0']);
    expect(workers.code).toBe(2);
    expect(workers.stderr).toMatch(/--workers: expected an integer 1-64/);
    expect(SYNTHETIC_RULES.rules[0]!.id).toBe('price_jump.test');
  });
});

describe('rules file schema round trip', () => {
  it('a validated rules file validates to itself (what settingRulesFile builds on)', () => {
    expect(rulesFileSchema.parse(defaults.file)).toEqual(defaults.file);
  });
});
