/**
 * A backtest's report for the rule owner: a table on the terminal, CSV, and one self-contained HTML file
 * (inline style and script, no external assets).
 *
 * Order: with labels, best F1 first (then recall, then fewer findings); without, the grid's order
 * (each axis as listed in the grid file, the first varying slowest).
 */
import type { BacktestReport, BacktestRow } from './backtest.ts';

export function sortedRows(r: BacktestReport): BacktestRow[] {
  const rows = [...r.settings];
  if (!r.labels) return rows;
  const f1 = (x: BacktestRow) => x.labels?.overall.f1 ?? -1;
  const recall = (x: BacktestRow) => x.labels?.overall.recall ?? -1;
  return rows.sort((a, b) => f1(b) - f1(a) || recall(b) - recall(a) || a.findings - b.findings || a.index - b.index);
}

const n = (x: number) => x.toLocaleString('en-US');
const pct = (x: number | null | undefined) => (x === null || x === undefined ? '—' : `${(x * 100).toFixed(1)}%`);
const secs = (ms: number | null | undefined) => (ms === null || ms === undefined ? '—' : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`);
const value = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
const iso = (t: number | undefined) => (t === undefined ? '—' : new Date(t).toISOString());

interface Column {
  head: string;
  cell: (row: BacktestRow) => string;
  /** Right-aligned (numbers). */
  right?: boolean;
}

function columns(r: BacktestReport): Column[] {
  const cols: Column[] = [
    { head: '#', cell: (x) => `${x.index + 1}${x.current ? '*' : ''}`, right: true },
    ...r.axes.map((a, i) => ({ head: a.name, cell: (x: BacktestRow) => value(x.values[i]), right: true })),
    { head: 'findings', cell: (x) => n(x.findings), right: true },
    { head: 'per hour', cell: (x) => (x.perHour === null ? '—' : n(x.perHour)), right: true },
  ];
  if (r.labels) {
    cols.push(
      { head: 'precision', cell: (x) => pct(x.labels?.overall.precision), right: true },
      { head: 'recall', cell: (x) => pct(x.labels?.overall.recall), right: true },
      { head: 'F1', cell: (x) => pct(x.labels?.overall.f1), right: true },
      { head: 'mean delay', cell: (x) => secs(x.labels?.overall.delayMs?.mean), right: true },
    );
  }
  return cols;
}

/** The terminal report. */
export function formatBacktest(r: BacktestReport): string {
  const span = r.spanMs > 0 ? `${(r.spanMs / 3_600_000).toFixed(2)} h of event time (${iso(r.firstTs)} → ${iso(r.lastTs)})` : 'no event time span';
  const lines = [
    `backtest of ${r.ruleIds.join(', ')} (rules ${r.rulesVersion}): ${r.settings.length} settings${r.status === 'aborted' ? ' — ABORTED' : ''}`,
    `  input      ${r.inputs.join(', ')}: ${n(r.totalEvents)} events, ${n(r.messages)} read by the varied rules, ${span}${r.malformed ? `, ${n(r.malformed)} malformed lines` : ''}`,
    `  time       parsed once in ${secs(r.parseMs)}, settings in ${secs(r.runMs)} on ${r.workers} ${r.workers === 1 ? 'thread' : 'threads'}, total ${secs(r.totalMs)}`,
  ];
  if (r.labels) lines.push(`  labels     ${r.labels.count} counting for ${r.detectors.join(', ')} from ${r.labels.file}${r.labels.graceMs ? ` (grace ${secs(r.labels.graceMs)})` : ''}; sorted by F1`);
  lines.push('');
  const cols = columns(r);
  const rows = sortedRows(r).map((x) => cols.map((c) => c.cell(x)));
  const widths = cols.map((c, i) => Math.max(c.head.length, ...rows.map((row) => (row[i] as string).length)));
  const fmt = (cells: string[]) => `  ${cells.map((c, i) => (cols[i]?.right ? c.padStart(widths[i] as number) : c.padEnd(widths[i] as number))).join('  ')}`.trimEnd();
  lines.push(fmt(cols.map((c) => c.head)));
  lines.push(`  ${widths.map((w) => '─'.repeat(w)).join('  ')}`);
  for (const row of rows) lines.push(fmt(row));
  if (r.settings.some((x) => x.current)) lines.push('', '  * the rules file as it is');
  return `${lines.join('\n')}\n`;
}

function csvCell(v: string): string {
  return /[",\n\r]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v;
}

/** One row per setting (sorted as the table), raw numbers; empty cells where a value does not exist. */
export function backtestCsv(r: BacktestReport): string {
  const head = ['setting', ...r.axes.map((a) => a.name), 'current', 'findings', 'findings_per_hour', ...r.detectors.map((d) => `findings_${d}`)];
  if (r.labels) head.push('precision', 'recall', 'f1', 'tp', 'fp', 'labels', 'detected', 'fn', 'delay_mean_ms', 'delay_p50_ms', 'delay_max_ms');
  head.push('rules_version');
  const num = (x: number | null | undefined) => (x === null || x === undefined ? '' : String(x));
  const lines = [head.map(csvCell).join(',')];
  for (const x of sortedRows(r)) {
    const cells = [String(x.index + 1), ...x.values.map(value), x.current ? 'true' : 'false', String(x.findings), num(x.perHour), ...r.detectors.map((d) => String(x.byDetector[d] ?? 0))];
    if (r.labels) {
      const s = x.labels?.overall;
      cells.push(num(s?.precision), num(s?.recall), num(s?.f1), num(s?.tp), num(s?.fp), num(s?.labels), num(s?.detected), num(s?.fn), num(s?.delayMs?.mean), num(s?.delayMs?.p50), num(s?.delayMs?.max));
    }
    cells.push(x.rulesVersion);
    lines.push(cells.map(csvCell).join(','));
  }
  return `${lines.join('\n')}\n`;
}

function esc(s: string): string {
  return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

/** A self-contained HTML page: summary, the sortable table with bars for findings per hour and F1. */
export function backtestHtml(r: BacktestReport): string {
  const cols = columns(r);
  const rows = sortedRows(r);
  const maxPerHour = Math.max(1e-9, ...rows.map((x) => x.perHour ?? 0));
  const perHourCol = cols.findIndex((c) => c.head === 'per hour');
  const f1Col = cols.findIndex((c) => c.head === 'F1');
  // Sort keys: raw numbers where the cell is one, so the click-to-sort orders 10 after 9.
  const sortKey = (x: BacktestRow, i: number): string => {
    const c = cols[i] as Column;
    if (c.head === '#') return String(x.index);
    const axis = r.axes.findIndex((a) => a.name === c.head);
    if (axis >= 0) return typeof x.values[axis] === 'number' ? String(x.values[axis]) : value(x.values[axis]);
    if (c.head === 'findings') return String(x.findings);
    if (c.head === 'per hour') return String(x.perHour ?? -1);
    const s = x.labels?.overall;
    if (c.head === 'precision') return String(s?.precision ?? -1);
    if (c.head === 'recall') return String(s?.recall ?? -1);
    if (c.head === 'F1') return String(s?.f1 ?? -1);
    if (c.head === 'mean delay') return String(s?.delayMs?.mean ?? -1);
    return c.cell(x);
  };
  const body = rows
    .map((x) => {
      const tds = cols.map((c, i) => {
        let bar = '';
        if (i === perHourCol && x.perHour !== null) bar = `<span class="bar" style="width:${((x.perHour / maxPerHour) * 100).toFixed(1)}%"></span>`;
        if (i === f1Col && x.labels?.overall.f1 != null) bar = `<span class="bar f1" style="width:${(x.labels.overall.f1 * 100).toFixed(1)}%"></span>`;
        return `<td data-k="${esc(sortKey(x, i))}"${c.right ? ' class="r"' : ''}>${bar}<span class="v">${esc(c.cell(x))}</span></td>`;
      });
      return `<tr${x.current ? ' class="cur"' : ''}>${tds.join('')}</tr>`;
    })
    .join('\n');
  const facts: Array<[string, string]> = [
    ['rules varied', r.ruleIds.join(', ')],
    ['rules version', r.rulesVersion],
    ['input', r.inputs.join(', ')],
    ['events', `${n(r.totalEvents)} (${n(r.messages)} read by the varied rules)${r.malformed ? `, ${n(r.malformed)} malformed lines` : ''}`],
    ['event time', r.spanMs > 0 ? `${iso(r.firstTs)} → ${iso(r.lastTs)} (${(r.spanMs / 3_600_000).toFixed(2)} h)` : '—'],
    ['time', `parsed once in ${secs(r.parseMs)}; ${r.settings.length} settings in ${secs(r.runMs)} on ${r.workers} thread(s)`],
  ];
  if (r.labels) facts.push(['labels', `${r.labels.count} from ${r.labels.file} (sha256 ${r.labels.hash.slice(0, 12)}${r.labels.graceMs ? `, grace ${secs(r.labels.graceMs)}` : ''}); sorted by F1`]);
  if (r.description) facts.unshift(['grid', r.description]);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Vigil backtest: ${esc(r.ruleIds.join(', '))}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24}
h1{font-size:18px;margin:0 0 12px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0 0 16px}dt{color:#57606a}dd{margin:0}
table{border-collapse:collapse}th,td{padding:4px 10px;border-bottom:1px solid #d0d7de;white-space:nowrap}
th{cursor:pointer;text-align:left;background:#f6f8fa;position:sticky;top:0}th.r,td.r{text-align:right}
td{position:relative}.bar{position:absolute;left:0;top:3px;bottom:3px;background:#ddf4ff;z-index:0}.bar.f1{background:#dafbe1}
.v{position:relative;z-index:1}tr.cur td{font-weight:600}.note{color:#57606a;margin-top:8px}
</style></head><body>
<h1>Backtest of ${esc(r.ruleIds.join(', '))}${r.status === 'aborted' ? ' (aborted)' : ''}</h1>
<dl>${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join('')}</dl>
<table id="t"><thead><tr>${cols.map((c, i) => `<th data-i="${i}"${c.right ? ' class="r"' : ''}>${esc(c.head)}</th>`).join('')}</tr></thead>
<tbody>
${body}
</tbody></table>
<p class="note">${r.settings.some((x) => x.current) ? 'Bold (*): the rules file as it is. ' : ''}Click a column to sort.</p>
<script>
document.querySelectorAll('#t th').forEach(function (th) {
  th.addEventListener('click', function () {
    var i = +th.dataset.i, tb = document.querySelector('#t tbody'), rows = Array.prototype.slice.call(tb.rows);
    var dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
    rows.sort(function (a, b) {
      var x = a.cells[i].dataset.k, y = b.cells[i].dataset.k, nx = parseFloat(x), ny = parseFloat(y);
      return dir * (isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny);
    });
    rows.forEach(function (r) { tb.appendChild(r); });
  });
});
</script>
</body></html>
`;
}
