import { statSync, writeFileSync } from 'node:fs';
import { loadConfig } from '../core/config.ts';
import { loadRules } from '../detectors/configure.ts';
import { loadMapping } from '../feeds/mapping.ts';
import { expandGrid, loadGrid, runBacktest, type BacktestReport } from '../replay/backtest.ts';
import { backtestCsv, backtestHtml, formatBacktest } from '../replay/backtest-report.ts';
import { loadLabels, parseDurationMs } from '../replay/labels.ts';
import { stderrProgress } from '../replay/progress.ts';
import { parse, UsageError } from './args.ts';
import { timeRangeArgs } from './replay-options.ts';

export const BACKTEST_USAGE = `usage: vigil backtest <file…> --grid FILE [--labels FILE [--label-grace D]] [--rules FILE] [--mapping FILE]
                      [--from T] [--to T] [--csv OUT] [--html OUT] [--json] [--workers N]

Calibrates a rule: runs it under every combination of the parameter values in the grid file over the
same input, and reports per setting the findings, findings per hour of event time and, with --labels,
precision, recall, F1 and mean detection delay (docs/backtest.md). The input is read and normalized
once; only the varied rules run per setting, with fresh state, on worker threads; nothing is stored.
A setting gives the findings \`vigil replay\` gives with those parameters in the rules file.

--grid FILE     YAML or JSON: {rule: price_jump, params: {zThreshold: [4, 5, 6], minMoveBps: [3, 5]}}
                (rule: a rule id of the rules file, or a detector name for all its rules; values: a list,
                one value, or {from, to, step}); several rules: {vary: [{rule, params}, …]}. At most 1,000
                settings.
--labels FILE   ground-truth labels (JSON lines of {start, end, key, detector?}) to score each setting by;
                the table is then sorted by F1. --label-grace D: matches up to D after a label's end.
--rules FILE    the rules the grid varies (default: VIGIL_RULES, else rules/default.yaml).
--mapping FILE  the inputs are CSV / JSON lines of another provider, all mapped by this file (docs/feeds/mapping.md).
--from T, --to T  only records in [from, to) (as vigil replay).
--csv OUT, --html OUT  also write the report as CSV / as one self-contained HTML page.
--json          the report as one JSON object on stdout instead of the table.
--workers N     worker threads (default: the machine's available parallelism; 1: no worker threads).`;

export async function backtestCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    grid: { type: 'string' },
    labels: { type: 'string' },
    'label-grace': { type: 'string' },
    rules: { type: 'string' },
    mapping: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    csv: { type: 'string' },
    html: { type: 'string' },
    json: { type: 'boolean', default: false },
    workers: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(BACKTEST_USAGE);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError(`no input file\n${BACKTEST_USAGE}`);
  if (values.grid === undefined) throw new UsageError(`--grid FILE is required\n${BACKTEST_USAGE}`);
  for (const f of [...positionals, ...(values.rules !== undefined ? [values.rules] : [])]) {
    try {
      if (!statSync(f).isFile()) throw new Error('not a file');
    } catch (e) {
      throw new UsageError(`cannot read ${f}: ${(e as Error).message}`);
    }
  }
  let workers: number | undefined;
  if (values.workers !== undefined) {
    workers = Number(values.workers);
    if (!/^\d+$/.test(values.workers) || workers < 1 || workers > 64) throw new UsageError(`--workers: expected an integer 1-64, got ${JSON.stringify(values.workers)}`);
  }
  if (values['label-grace'] !== undefined && values.labels === undefined) throw new UsageError('--label-grace needs --labels');
  const range = timeRangeArgs(values.from, values.to);

  // Everything that can be wrong with the options fails here, before the input is read.
  const config = loadConfig();
  const rules = loadRules({ detectors: config.detectors, VIGIL_RULES: values.rules ?? config.VIGIL_RULES });
  const grid = loadGrid(values.grid, rules.file);
  expandGrid(grid, rules.file);
  const labels = values.labels !== undefined ? loadLabels(values.labels) : undefined;
  const graceMs = values['label-grace'] !== undefined ? parseDurationMs(values['label-grace'], '--label-grace') : 0;
  const mapping = values.mapping !== undefined ? loadMapping(values.mapping) : undefined;

  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const isTty = process.stderr.isTTY;
  const write = (l: string) => process.stderr.write(isTty ? l : `${l.replace(/^\r/, '').trimEnd()}\n`);
  let report: BacktestReport;
  try {
    report = await runBacktest({
      files: positionals,
      rules: rules.file,
      rulesVersion: rules.version,
      grid,
      ...(labels ? { labels, graceMs } : {}),
      ...(workers !== undefined ? { workers } : {}),
      ...(mapping ? { mapping } : {}),
      ...range,
      signal: abort.signal,
      progress: stderrProgress('backtest: reading', { write }),
      onSetting: (done, total) => {
        if (isTty) process.stderr.write(`\rbacktest: ${done}/${total} settings${done === total ? '\n' : ''}`);
      },
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (values.csv !== undefined) writeFileSync(values.csv, backtestCsv(report));
  if (values.html !== undefined) writeFileSync(values.html, backtestHtml(report));
  if (values.json) process.stdout.write(`${JSON.stringify(report)}\n`);
  else {
    process.stdout.write(formatBacktest(report));
    for (const [what, path] of [['CSV', values.csv], ['HTML', values.html]] as const) if (path !== undefined) process.stdout.write(`  ${what} written to ${path}\n`);
  }
  return report.status === 'completed' ? 0 : 130;
}
