/** One bench section: a titled table for the terminal and the same figures as JSON. */
export interface BenchSection {
  /** Key in bench/results.json. */
  readonly id: string;
  readonly title: string;
  readonly header: string[];
  /** Cells as shown; columns after `leftColumns` are right-aligned. */
  readonly rows: string[][];
  readonly leftColumns?: number;
  /** Lines printed under the table (notes, units). */
  readonly notes?: string[];
  readonly json: unknown;
}

export const fmtInt = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '—');
export const fmtPct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : '—');
export const fmtMs = (x: number): string => (Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 1) : '—');
/** Bytes as MB (10^6), one decimal. */
export const fmtMB = (x: number): string => (Number.isFinite(x) ? `${(x / 1e6).toFixed(1)} MB` : '—');

export function printSection(s: BenchSection): void {
  const left = s.leftColumns ?? 1;
  const widths = s.header.map((h, i) => Math.max(h.length, ...s.rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i < left ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  console.log(`\n${s.title}`);
  console.log(line(s.header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of s.rows) console.log(line(r));
  for (const n of s.notes ?? []) console.log(n);
}
