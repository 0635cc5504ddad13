/** Type guards and field checks for the detectors' fromJSON (state restore; never on the hot path). */
import { num, strOrNull } from './market-common.ts';

export function isNum(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x);
}

export function isNumOrNull(x: unknown): x is number | null {
  return x === null || isNum(x);
}

export function isStr(x: unknown): x is string {
  return typeof x === 'string';
}

/** The finite number x, else null. */
export function finiteOrNull(x: unknown): number | null {
  return typeof x === 'number' && Number.isFinite(x) ? x : null;
}

/**
 * A time or value kept as NaN while there is none, saved as null. Hot per-event fields are numbers rather
 * than `number | null`: a field that may hold null keeps numbers boxed, so every store of a new value
 * allocated one (per quote, per rule); a number-only field is updated in place.
 */
export function nullIfNaN(x: number): number | null {
  return Number.isNaN(x) ? null : x;
}

/** Throws `${prefix}.${k} must be a number` for the first of keys that is not a finite number in o. */
export function requireNums(o: Record<string, unknown>, keys: readonly string[], prefix: string): void {
  for (const k of keys) {
    if (!isNum(o[k])) throw new TypeError(`${prefix}.${k} must be a number`);
  }
}

/** Field k of a saved object: a finite number (message `${prefix}.${k} must be a finite number`). */
export function fieldNum(o: Record<string, unknown>, k: string, prefix: string): number {
  return num(o[k], `${prefix}.${k}`);
}

/** Field k of a saved object: a string (null or absent: `${prefix}.${k} must be a string`). */
export function fieldStr(o: Record<string, unknown>, k: string, prefix: string): string {
  const v = strOrNull(o[k], `${prefix}.${k}`);
  if (v === null) throw new TypeError(`${prefix}.${k} must be a string`);
  return v;
}
