/**
 * State restore of the transaction detectors kept per account or per card (card_testing,
 * impossible_travel): `judged` and the saved per-slot objects.
 */
import { arr, num } from './tx-common.ts';

/**
 * Restores `judged` and returns the saved slots to rebuild — none when they were saved under the other
 * `per` (they mean something else there; the detector starts afresh).
 */
export function savedSlots(j: Record<string, unknown>, s: { judged: number }, what: string, per: string): unknown[] {
  s.judged = num(j.judged ?? 0, `${what}.judged`);
  const slots = arr(j.slots, `${what}.slots`);
  return j.per === per ? slots : [];
}

/** One saved slot, which must be an object. */
export function slotObject<T>(raw: unknown, what: string): Partial<T> {
  const o = raw as Partial<T> | null;
  if (!o || typeof o !== 'object') throw new TypeError(`${what}: bad slot`);
  return o;
}
