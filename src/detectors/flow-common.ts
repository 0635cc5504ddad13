/**
 * Small helpers shared by the payment-flow detectors (rapid_movement, fan_out, fan_in,
 * new_counterparty_large_amount, terminal_risk): the RiskSignal score mapping and long-span wording.
 */
import { formatFixed, round } from './format.ts';

/**
 * Maps r = observed / threshold (1 = exactly at the rule's threshold) to a RiskSignal score in [0, 1]:
 *   r ≤ 0.5      → 0 (nothing unusual: no signal is pushed)
 *   0.5 < r < 1  → 0.8 · ((r − 0.5) / 0.5)²   (rises smoothly from 0 to 0.8)
 *   r ≥ 1        → 1 − 0.2 / r                 (0.8 at the threshold, → 1 as r grows: 0.9 at 2×, 0.95 at 4×)
 * Continuous and non-decreasing in r; rounded to 4 decimals so checkpointed runs compare exactly.
 */
export function signalScore(r: number): number {
  if (!(r > 0.5)) return 0;
  if (r < 1) {
    const u = (r - 0.5) / 0.5;
    return round(0.8 * u * u, 4);
  }
  if (!Number.isFinite(r)) return 1;
  return round(1 - 0.2 / r, 4);
}

/** A span for summaries: "45 s", "20 min", "1 h", "2.5 h", "30 days". */
export function formatSpan(ms: number): string {
  if (ms < 60_000) return `${formatFixed(Math.max(0, ms) / 1000, ms % 1000 === 0 ? 0 : 1)} s`;
  if (ms < 3_600_000) return `${formatFixed(ms / 60_000, ms % 60_000 === 0 ? 0 : 1)} min`;
  if (ms < 2 * 86_400_000) return `${formatFixed(ms / 3_600_000, ms % 3_600_000 === 0 ? 0 : 1)} h`;
  const days = ms / 86_400_000;
  return `${formatFixed(days, ms % 86_400_000 === 0 ? 0 : 1)} days`;
}

/** Plural helper: plural(1, 'debit') = "1 debit", plural(3, 'debit') = "3 debits". */
export function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}

/** Validates a finite number (or null) in restored JSON. */
export function num(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError(`${what}: expected a finite number`);
  return v;
}

export function numOrNull(v: unknown, what: string): number | null {
  if (v === null || v === undefined) return null;
  return num(v, what);
}
