/** Severity grading shared by the market detectors. */
import type { Severity } from '../core/events.ts';

/** x against the threshold that fired: ≥ 4× critical, ≥ 2× high, else medium. */
export function gradeByMultiple(x: number, threshold: number): Severity {
  if (x >= 4 * threshold) return 'critical';
  if (x >= 2 * threshold) return 'high';
  return 'medium';
}

/** A shift factor f against the ratio a detector is tuned for: ≥ 2× critical, ≥ 1.5× high, ≥ 1× medium, else low. */
export function gradeByRatio(f: number, ratio: number): Severity {
  if (f >= 2 * ratio) return 'critical';
  if (f >= 1.5 * ratio) return 'high';
  if (f >= ratio) return 'medium';
  return 'low';
}

/** x ≥ criticalAt critical, ≥ highAt high, else medium. */
export function gradeAbove(x: number, criticalAt: number, highAt: number): Severity {
  if (x >= criticalAt) return 'critical';
  if (x >= highAt) return 'high';
  return 'medium';
}
