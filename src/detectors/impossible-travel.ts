/**
 * `impossible_travel`: two consecutive geolocated transactions of an account (or of one card) too far apart
 * for the time between them.
 *
 * Per account — or per card (`per: 'card'`; at most maxCards cards per account, least recently seen
 * evicted; transactions without a card share one slot) — the last judged transaction with lat/lon is kept.
 * Transactions without lat/lon, and those of the channels in ignoreChannels (card-not-present: their
 * coordinates are the merchant's or an IP's, not the cardholder's), are not judged and don't move the
 * location. For each judged transaction with a previous location:
 *   distance = haversine great-circle distance (mean Earth radius 6,371.0088 km),
 *   elapsed  = |ts − previous ts|, floored at 1 s,   speed = distance / elapsed (km/h),
 * and a finding fires when distance ≥ minDistanceKm and speed > maxSpeedKmh (ratio ≥ 1 below), at most
 * one per slot within cooldownMs. ratio = min(speed / maxSpeedKmh, distance / minDistanceKm); every judged
 * transaction with a previous location gets the risk signal riskScore(ratio) (tx-common.ts). The location
 * moves on to the judged transaction when it is not older than the stored one (a late transaction is
 * compared, not stored). Country-only transactions are not judged (no centroid fallback). O(1) per event.
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Transaction } from '../core/events.ts';
import { fireCooling } from './cooldown.ts';
import { formatFixed, round } from './format.ts';
import { formatSpan, lruEntry, num, numOrNull, riskScore, str, strOrNull, trimLru, v1Object } from './tx-common.ts';
import { savedSlots, slotObject } from './tx-slots.ts';
import { gradeAbove } from './severity.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft, RiskSignal } from './types.ts';

/** Mean Earth radius (IUGG), km. */
export const EARTH_RADIUS_KM = 6371.0088;
/** Elapsed time is floored at this (two transactions at the same millisecond still have a finite speed). */
export const MIN_ELAPSED_MS = 1000;

/** Great-circle distance in km (haversine). */
export function haversineKm(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(a)));
}

export const impossibleTravelParams = z.strictObject({
  /** Compare consecutive transactions of the whole account, or of each card separately. */
  per: z.enum(['account', 'card']).default('account'),
  /** Implied speed above this (km/h) is impossible (900: a commercial flight, gate to gate). */
  maxSpeedKmh: z.number().finite().positive().default(900),
  /** Jumps shorter than this (km) are ignored (geocoding noise, neighbouring towns). */
  minDistanceKm: z.number().finite().nonnegative().default(100),
  /** Channels not judged (card-not-present: the coordinates are not the cardholder's). */
  ignoreChannels: z.array(z.string().min(1)).default(['ecommerce', 'online', 'cnp', 'moto', 'recurring', 'transfer']),
  /** Cards tracked per account with per 'card' (least recently seen evicted beyond). */
  maxCards: z.number().int().min(1).max(1024).default(16),
  /** At most one finding per account (per card with per 'card') within this time. */
  cooldownMs: z.number().int().nonnegative().default(600_000),
});
export type ImpossibleTravelParams = z.infer<typeof impossibleTravelParams>;

interface Loc {
  ts: number;
  lat: number;
  lon: number;
  ref: string;
  country: string | null;
  merchant: string | null;
  channel: string;
}

interface Slot {
  last: Loc | null;
  lastFireTs: number | null;
}

export interface ImpossibleTravelState {
  key: string;
  /** Slot key: '' for the account (or a transaction without a card), else the card. */
  slots: Map<string, Slot>;
  judged: number;
}

interface SlotJSON {
  k: string;
  last: Loc | null;
  lastFireTs: number | null;
}

interface ImpossibleTravelJSON {
  v: 1;
  key: string;
  per: 'account' | 'card';
  slots: SlotJSON[];
  judged: number;
}

function place(l: { lat: number; lon: number; country: string | null }): string {
  return `${formatFixed(l.lat, 3)}, ${formatFixed(l.lon, 3)}${l.country ? ` ${l.country}` : ''}`;
}

function makeInstance(params: ImpossibleTravelParams, ruleId: string): DetectorInstance<ImpossibleTravelState> {
  const { per, maxSpeedKmh, minDistanceKm, maxCards, cooldownMs } = params;
  const ignore = new Set(params.ignoreChannels);
  const newState = (key: string): ImpossibleTravelState => ({ key, slots: new Map(), judged: 0 });
  const newSlot = (): Slot => ({ last: null, lastFireTs: null });

  const onTx = (s: ImpossibleTravelState, t: Transaction, out: FindingDraft[], signals?: RiskSignal[]): void => {
    if (t.lat === undefined || t.lon === undefined || ignore.has(t.channel)) return;
    const { lat, lon, ts } = t;
    if (!Number.isFinite(lat) || !Number.isFinite(lon) || !Number.isFinite(ts)) return;
    s.judged += 1;
    const slotKey = per === 'card' ? (t.card ?? '') : '';
    const slot = lruEntry(s.slots, slotKey, per === 'card' ? maxCards : 1, newSlot);
    const ref = eventRef(t);
    const here: Loc = { ts, lat, lon, ref, country: t.country ?? null, merchant: t.merchant ?? t.terminal ?? null, channel: t.channel };
    const prev = slot.last;
    if (prev === null || ts >= prev.ts) slot.last = here;
    if (prev === null) return;

    const distanceKm = haversineKm(prev.lat, prev.lon, lat, lon);
    const elapsedMs = Math.abs(ts - prev.ts);
    const speedKmh = distanceKm / (Math.max(elapsedMs, MIN_ELAPSED_MS) / 3_600_000);
    const speedRatio = speedKmh / maxSpeedKmh;
    const ratio = Math.min(speedRatio, minDistanceKm > 0 ? distanceKm / minDistanceKm : Number.POSITIVE_INFINITY);
    const score = riskScore(ratio);
    if (signals && score > 0) {
      signals.push({
        detector: 'impossible_travel',
        ruleId,
        score,
        reason: `${formatFixed(distanceKm, 0)} km from the previous transaction in ${formatSpan(elapsedMs)} (${formatFixed(speedKmh, 0)} km/h)`,
      });
    }
    if (!(distanceKm >= minDistanceKm && speedKmh > maxSpeedKmh)) return;
    if (fireCooling(slot, ts, cooldownMs)) return;

    const [first, second] = ts >= prev.ts ? [prev, here] : [here, prev];
    const who = per === 'card' && t.card ? `${t.account} card ${t.card}` : t.account;
    const summary =
      `${who} transacted at ${place(first)} and ${formatSpan(second.ts - first.ts)} later at ${place(second)}, ` +
      `${formatFixed(distanceKm, 0)} km apart: ${formatFixed(speedKmh, 0)} km/h implied (limit ${formatFixed(maxSpeedKmh, 0)} km/h)`;
    out.push({
      severity: gradeAbove(speedRatio, 5, 2),
      score: round(speedRatio, 4),
      account: t.account,
      key: t.account,
      ts,
      windowStart: first.ts,
      windowEnd: Math.max(second.ts, ts),
      summary,
      trigger: ref,
      evidence: {
        observed: {
          distanceKm: round(distanceKm, 3),
          elapsedMs,
          speedKmh: round(speedKmh, 3),
          lat,
          lon,
          country: t.country ?? null,
          merchant: here.merchant,
          channel: t.channel,
          card: t.card ?? null,
        },
        baseline: {
          previousLat: prev.lat,
          previousLon: prev.lon,
          previousCountry: prev.country,
          previousMerchant: prev.merchant,
          previousChannel: prev.channel,
          previousTs: prev.ts,
        },
        threshold: { maxSpeedKmh, minDistanceKm, per },
        triggers: [first.ref, second.ref],
      },
    });
  };

  const locFromJSON = (x: unknown, what: string): Loc | null => {
    if (x === null || x === undefined) return null;
    const o = x as Partial<Loc>;
    if (typeof o !== 'object') throw new TypeError(`${what}: bad location`);
    return {
      ts: num(o.ts, `${what}.ts`),
      lat: num(o.lat, `${what}.lat`),
      lon: num(o.lon, `${what}.lon`),
      ref: str(o.ref, `${what}.ref`),
      country: strOrNull(o.country, `${what}.country`),
      merchant: strOrNull(o.merchant, `${what}.merchant`),
      channel: str(o.channel, `${what}.channel`),
    };
  };

  return {
    name: 'impossible_travel',
    ruleId,
    kinds: ['transaction'],
    newState,
    onEvent(state: ImpossibleTravelState, ev: CanonicalEvent, out: FindingDraft[], signals?: RiskSignal[]): void {
      if (ev.kind === 'transaction') onTx(state, ev, out, signals);
    },
    toJSON(s: ImpossibleTravelState): ImpossibleTravelJSON {
      return {
        v: 1,
        key: s.key,
        per,
        slots: [...s.slots].map(([k, sl]) => ({ k, last: sl.last ? { ...sl.last } : null, lastFireTs: sl.lastFireTs })),
        judged: s.judged,
      };
    },
    fromJSON(json: unknown): ImpossibleTravelState {
      const what = 'impossible_travel';
      const j = v1Object(json, what);
      const s = newState(j.key as string);
      // Saved under the other `per`: no slots (they mean something else); start the locations afresh.
      for (const raw of savedSlots(j, s, what, per)) {
        const o = slotObject<SlotJSON>(raw, what);
        s.slots.set(str(o.k, `${what}.slots.k`), { last: locFromJSON(o.last, `${what}.slots.last`), lastFireTs: numOrNull(o.lastFireTs, `${what}.slots.lastFireTs`) });
      }
      trimLru(s.slots, per === 'card' ? maxCards : 1);
      return s;
    },
  };
}

export const impossibleTravelSpec: DetectorSpec<ImpossibleTravelParams, ImpossibleTravelState> = {
  name: 'impossible_travel',
  description:
    'Consecutive geolocated (card-present) transactions of an account or card whose distance over elapsed time ' +
    'implies a speed above maxSpeedKmh.',
  kinds: ['transaction'],
  params: impossibleTravelParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
