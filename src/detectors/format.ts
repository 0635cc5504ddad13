/**
 * Number and time formatting for finding summaries: fixed decimals, `,` thousands separators, never the
 * process locale, so the same finding reads the same on every machine.
 */

export function round(x: number, decimals: number): number {
  const f = 10 ** decimals;
  const r = Math.round(x * f) / f;
  return r === 0 ? 0 : r; // no -0 in JSON-facing output
}

/** Fixed-point with `,` thousands separators; no locale involved. */
export function formatFixed(x: number, decimals: number): string {
  const s = Math.abs(x).toFixed(decimals);
  const dot = s.indexOf('.');
  const int = dot < 0 ? s : s.slice(0, dot);
  const frac = dot < 0 ? '' : s.slice(dot);
  const grouped = int.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return (x < 0 && Number(s) !== 0 ? '-' : '') + grouped + frac;
}

/** Decimals (2…8) that show both prices exactly as they are, e.g. 2 for 61850.5 and 61796. */
export function priceDecimals(a: number, b: number): number {
  for (let d = 2; d <= 8; d++) {
    if (Number(a.toFixed(d)) === a && Number(b.toFixed(d)) === b) return d;
  }
  return 8;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60_000) return `${formatFixed(ms / 1000, ms % 1000 === 0 ? 0 : 1)} s`;
  return `${formatFixed(ms / 60_000, ms % 60_000 === 0 ? 0 : 1)} min`;
}

/** "1-second", "5-minute", "250-ms". */
export function formatIntervalAdjective(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000}-minute`;
  if (ms % 1000 === 0) return `${ms / 1000}-second`;
  return `${ms}-ms`;
}

/** "1,250.00 EUR". */
export function formatAmount(x: number, currency: string): string {
  return `${formatFixed(x, 2)} ${currency}`;
}

/** 0.1234 → "12.3%". */
export function formatPercent(ratio: number, decimals = 1): string {
  return `${formatFixed(ratio * 100, decimals)}%`;
}

/** A ratio against a baseline: 7.04 → "7.0×". */
export function formatTimes(x: number): string {
  return `${formatFixed(x, x >= 100 ? 0 : 1)}×`;
}

/** Event time as ISO-8601 UTC without milliseconds when they are 0. */
export function formatTime(ts: number): string {
  const iso = new Date(ts).toISOString();
  return iso.endsWith('.000Z') ? `${iso.slice(0, -5)}Z` : iso;
}
