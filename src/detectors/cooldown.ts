/** Cooldowns shared by the detectors. */

/**
 * Per-direction cooldown: true when a finding of this direction fired within cooldownMs before ts (and not
 * after ts); otherwise records ts as the direction's last finding and returns false.
 */
export function directionCooling(s: { lastUpTs: number | null; lastDownTs: number | null }, up: boolean, ts: number, cooldownMs: number): boolean {
  const last = up ? s.lastUpTs : s.lastDownTs;
  if (last !== null && ts >= last && ts - last < cooldownMs) return true;
  if (up) s.lastUpTs = ts;
  else s.lastDownTs = ts;
  return false;
}

/**
 * Per-key cooldown on `lastFindingTs`: true when a finding fired within cooldownMs before ts (and not after
 * ts); otherwise records ts as the last finding and returns false.
 */
export function findingCooling(s: { lastFindingTs: number | null }, ts: number, cooldownMs: number): boolean {
  const last = s.lastFindingTs;
  if (last !== null && ts - last < cooldownMs && ts >= last) return true;
  s.lastFindingTs = ts;
  return false;
}

/** The same on `lastFireTs` (per slot). */
export function fireCooling(s: { lastFireTs: number | null }, ts: number, cooldownMs: number): boolean {
  const last = s.lastFireTs;
  if (last !== null && ts >= last && ts - last < cooldownMs) return true;
  s.lastFireTs = ts;
  return false;
}

/**
 * One finding per episode (the caller re-arms the slot when the condition lapses) and none within
 * cooldownMs of the previous: true when it may fire, and then the slot is disarmed and ts recorded.
 */
export function armedFires(s: { armed: boolean; lastFireTs: number | null }, ts: number, cooldownMs: number): boolean {
  if (!s.armed || fireCooling(s, ts, cooldownMs)) return false;
  s.armed = false;
  return true;
}
