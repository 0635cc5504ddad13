/**
 * Recent fill identities of the order-based detectors (wash_trade, marking_the_close): a venue reports a
 * fill once per side, so the same fill id seen from the other side is its mirror, not a new fill.
 */

export interface FillIdentity {
  ts: number;
  /** Times seen from the buy side and from the sell side. */
  b: number;
  s: number;
}

/**
 * Records one side of fill `id`; true when it is the mirror of a side already seen. A new id is added and
 * the map trimmed by count (maxRecentFills) and by age (older than now − dedupeMs) from the front: map order
 * is arrival order, close to time order.
 */
export function isMirrorFill(
  recent: Map<string, FillIdentity>,
  id: string,
  ts: number,
  buySide: boolean,
  now: number,
  maxRecentFills: number,
  dedupeMs: number,
): boolean {
  const e = recent.get(id);
  if (e) {
    if (buySide) {
      const mirror = e.b < e.s;
      e.b += 1;
      return mirror;
    }
    const mirror = e.s < e.b;
    e.s += 1;
    return mirror;
  }
  recent.set(id, { ts, b: buySide ? 1 : 0, s: buySide ? 0 : 1 });
  while (recent.size > maxRecentFills) recent.delete(recent.keys().next().value as string);
  for (const [k, v] of recent) {
    if (v.ts > now - dedupeMs) break;
    recent.delete(k);
  }
  return false;
}

/** Restores saved [id, ts, b, s] entries (throws `${what}: bad fill identity in state JSON`), keeping the newest maxRecentFills. */
export function restoreFillIdentities(recent: Map<string, FillIdentity>, saved: readonly unknown[], maxRecentFills: number, what: string): void {
  for (const e of saved) {
    if (
      !Array.isArray(e) ||
      typeof e[0] !== 'string' ||
      !(typeof e[1] === 'number' && Number.isFinite(e[1])) ||
      !(typeof e[2] === 'number' && Number.isFinite(e[2])) ||
      !(typeof e[3] === 'number' && Number.isFinite(e[3]))
    ) {
      throw new TypeError(`${what}: bad fill identity in state JSON`);
    }
    recent.set(e[0], { ts: e[1], b: e[2], s: e[3] });
  }
  while (recent.size > maxRecentFills) recent.delete(recent.keys().next().value as string);
}
