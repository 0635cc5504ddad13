/**
 * Realistic synthetic card and payment traffic for the transaction detectors' tests: many accounts, each
 * with its own home city, Poisson arrivals thinned by a day/night profile (local time), log-normal amounts
 * (its own median and spread), card payments at merchants of a pool (mostly its favourites near home, each
 * merchant with 1–3 terminals), e-commerce at online merchants (some with the merchant's head-office
 * coordinates), transfers to payees, a monthly rent and salary, commuters' transit taps, and trips — by
 * train to a nearby city or by plane to a far one — with realistic travel times (no card-present payment
 * while in transit). Deterministic for a seed (mulberry32).
 */
import type { Transaction } from '../../src/core/events.ts';
import { mulberry32 } from './random.ts';

export const MIN = 60_000;
export const HOUR = 3_600_000;
export const DAY = 86_400_000;
/** 2024-03-01T00:00:00Z */
export const TX_T0 = Date.UTC(2024, 2, 1);

export interface City {
  name: string;
  lat: number;
  lon: number;
  country: string;
  currency: string;
  /** Hours from UTC (for the day/night profile). */
  tz: number;
}

export const CITIES: readonly City[] = [
  { name: 'Paris', lat: 48.8566, lon: 2.3522, country: 'FR', currency: 'EUR', tz: 1 },
  { name: 'Lyon', lat: 45.764, lon: 4.8357, country: 'FR', currency: 'EUR', tz: 1 },
  { name: 'Berlin', lat: 52.52, lon: 13.405, country: 'DE', currency: 'EUR', tz: 1 },
  { name: 'Hamburg', lat: 53.5511, lon: 9.9937, country: 'DE', currency: 'EUR', tz: 1 },
  { name: 'Madrid', lat: 40.4168, lon: -3.7038, country: 'ES', currency: 'EUR', tz: 1 },
  { name: 'Barcelona', lat: 41.3874, lon: 2.1686, country: 'ES', currency: 'EUR', tz: 1 },
  { name: 'London', lat: 51.5074, lon: -0.1278, country: 'GB', currency: 'GBP', tz: 0 },
  { name: 'New York', lat: 40.7128, lon: -74.006, country: 'US', currency: 'USD', tz: -5 },
  { name: 'Boston', lat: 42.3601, lon: -71.0589, country: 'US', currency: 'USD', tz: -5 },
  { name: 'Chicago', lat: 41.8781, lon: -87.6298, country: 'US', currency: 'USD', tz: -6 },
];

/** Cities reachable by train from each other (a few hours). */
const TRAIN: Record<string, string[]> = {
  Paris: ['Lyon', 'London'],
  Lyon: ['Paris'],
  Berlin: ['Hamburg'],
  Hamburg: ['Berlin'],
  Madrid: ['Barcelona'],
  Barcelona: ['Madrid'],
  London: ['Paris'],
  'New York': ['Boston'],
  Boston: ['New York'],
  Chicago: [],
};

export interface Merchant {
  id: string;
  city: string;
  lat: number;
  lon: number;
  terminals: number;
  mcc: string;
}

export interface Profile {
  account: string;
  home: City;
  ratePerDay: number;
  median: number;
  sigma: number;
  cards: string[];
  favourites: Merchant[];
  commuter: boolean;
}

export interface Traffic {
  txs: Transaction[];
  profiles: Profile[];
  merchants: Map<string, Merchant[]>;
}

export function normal(rng: () => number): number {
  const u = Math.max(rng(), 1e-12);
  const v = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}
export function pick<T>(rng: () => number, xs: readonly T[]): T {
  return xs[Math.floor(rng() * xs.length)] as T;
}
export const cents = (x: number): number => Math.round(x * 100) / 100;

/** Day/night profile of card activity by local hour (acceptance probability of a Poisson candidate). */
function activity(hour: number): number {
  if (hour < 6) return 0.04;
  if (hour < 9) return 0.6;
  if (hour < 21) return 1;
  return 0.4;
}
const MEAN_ACTIVITY = (() => {
  let s = 0;
  for (let h = 0; h < 24; h++) s += activity(h);
  return s / 24;
})();

/** Offsets a point by up to `km` in a random direction. */
export function jitter(rng: () => number, lat: number, lon: number, km: number): { lat: number; lon: number } {
  const r = km * Math.sqrt(rng());
  const a = 2 * Math.PI * rng();
  const dLat = (r * Math.cos(a)) / 111.2;
  const dLon = (r * Math.sin(a)) / (111.2 * Math.cos((lat * Math.PI) / 180));
  return { lat: Math.round((lat + dLat) * 1e5) / 1e5, lon: Math.round((lon + dLon) * 1e5) / 1e5 };
}

function rawDistanceKm(a: { lat: number; lon: number }, b: { lat: number; lon: number }): number {
  // Equirectangular is plenty for planning travel times here.
  const rad = Math.PI / 180;
  const x = (b.lon - a.lon) * rad * Math.cos(((a.lat + b.lat) / 2) * rad);
  const y = (b.lat - a.lat) * rad;
  return Math.sqrt(x * x + y * y) * 6371;
}

interface Stay {
  from: number;
  to: number;
  city: City;
}

const MCCS = ['5411', '5812', '5814', '5912', '5541', '5999', '5651', '5732'];

export function makeMerchants(rng: () => number): Map<string, Merchant[]> {
  const byCity = new Map<string, Merchant[]>();
  let n = 0;
  for (const c of CITIES) {
    const list: Merchant[] = [];
    for (let i = 0; i < 40; i++) {
      const p = jitter(rng, c.lat, c.lon, 15);
      list.push({ id: `M${String(++n).padStart(4, '0')}`, city: c.name, lat: p.lat, lon: p.lon, terminals: 1 + Math.floor(rng() * 3), mcc: pick(rng, MCCS) });
    }
    byCity.set(c.name, list);
  }
  return byCity;
}

const ONLINE_HQ = [
  { lat: 53.3498, lon: -6.2603, country: 'IE' },
  { lat: 49.6116, lon: 6.1319, country: 'LU' },
  { lat: 47.6062, lon: -122.3321, country: 'US' },
  { lat: 37.3875, lon: -122.0575, country: 'US' },
  { lat: 52.3676, lon: 4.9041, country: 'NL' },
];

export interface TrafficOptions {
  accounts?: number;
  days?: number;
  start?: number;
  /** Account id prefix. */
  prefix?: string;
}

/** Generates the traffic of `accounts` accounts over `days` days, sorted by time. */
export function traffic(seed: number, options: TrafficOptions = {}): Traffic {
  const { accounts = 60, days = 30, start = TX_T0, prefix = 'ACC-' } = options;
  const rng = mulberry32(seed);
  const merchants = makeMerchants(mulberry32(seed ^ 0x5eed));
  const end = start + days * DAY;
  const txs: Transaction[] = [];
  const profiles: Profile[] = [];
  for (let a = 0; a < accounts; a++) {
    const account = `${prefix}${String(a + 1).padStart(3, '0')}`;
    // Most accounts live in Europe, some in the US.
    const home = rng() < 0.75 ? (CITIES[Math.floor(rng() * 7)] as City) : (CITIES[7 + Math.floor(rng() * 3)] as City);
    const local = merchants.get(home.name) as Merchant[];
    const favourites: Merchant[] = [];
    while (favourites.length < 12) {
      const m = pick(rng, local);
      if (!favourites.includes(m)) favourites.push(m);
    }
    const cards = rng() < 0.3 ? [`${account}-C1`, `${account}-C2`] : [`${account}-C1`];
    const p: Profile = {
      account,
      home,
      ratePerDay: 2 + rng() * 10,
      median: Math.exp(Math.log(12) + rng() * Math.log(8)), // 12 … 96
      sigma: 0.6 + rng() * 0.5,
      cards,
      favourites,
      commuter: rng() < 0.3,
    };
    profiles.push(p);
    const homePoint = jitter(rng, home.lat, home.lon, 8);

    // Trips: at most one, by train (nearby city) or plane (far city), 2–5 days.
    const stays: Stay[] = [];
    const u = rng();
    if (u < 0.5 && days >= 12) {
      const byTrain = u < 0.25 && (TRAIN[home.name] ?? []).length > 0;
      const destName = byTrain ? pick(rng, TRAIN[home.name] as string[]) : pick(rng, CITIES.filter((c) => c.name !== home.name)).name;
      const dest = CITIES.find((c) => c.name === destName) as City;
      const dist = rawDistanceKm(home, dest);
      const travelMs = (byTrain ? dist / 250 + 0.5 + rng() : dist / 800 + 1.5 + rng() * 2) * HOUR;
      const depart = start + (3 + Math.floor(rng() * (days - 10))) * DAY + (7 + rng() * 10) * HOUR;
      const arrive = depart + travelMs;
      const leave = arrive + (2 + rng() * 3) * DAY;
      const back = leave + travelMs;
      stays.push({ from: start, to: depart, city: home }, { from: arrive, to: leave, city: dest }, { from: back, to: end, city: home });
    } else {
      stays.push({ from: start, to: end, city: home });
    }
    const cityAt = (ts: number): City | null => {
      for (const s of stays) if (ts >= s.from && ts <= s.to) return s.city;
      return null; // in transit
    };

    let seq = 0;
    const emit = (t: Omit<Transaction, 'kind' | 'source' | 'id' | 'account' | 'segment'>): void => {
      txs.push({ kind: 'transaction', source: 'bank', id: `${account}-${++seq}`, account, segment: 'retail', ...t });
    };
    const payees = [`IBAN-${account}-P1`, `IBAN-${account}-P2`, `IBAN-${account}-P3`];

    // Poisson arrivals thinned by the local day/night profile.
    const lambdaMax = p.ratePerDay / MEAN_ACTIVITY / DAY;
    let ts = start;
    for (;;) {
      ts += Math.max(1000, Math.round(-Math.log(Math.max(rng(), 1e-12)) / lambdaMax));
      if (ts >= end) break;
      const city = cityAt(ts);
      const tz = (city ?? home).tz;
      const hour = (((new Date(ts).getUTCHours() + tz) % 24) + 24) % 24;
      if (rng() >= activity(hour)) continue;
      const c = rng();
      const card = pick(rng, cards);
      if (c < 0.7 && city !== null) {
        const atHome = city.name === home.name;
        const m = atHome && rng() < 0.75 ? pick(rng, favourites) : pick(rng, merchants.get(city.name) as Merchant[]);
        const pt = jitter(rng, m.lat, m.lon, 0.05);
        emit({
          ts,
          amount: Math.max(0.5, cents(p.median * Math.exp(p.sigma * normal(rng)))),
          currency: city.currency,
          direction: 'debit',
          channel: 'card',
          merchant: m.id,
          terminal: `${m.id}-T${1 + Math.floor(rng() * m.terminals)}`,
          mcc: m.mcc,
          country: city.country,
          lat: pt.lat,
          lon: pt.lon,
          card,
        });
      } else if (c < 0.92 || city === null) {
        const o = Math.floor(rng() * 40);
        const hq = ONLINE_HQ[o % ONLINE_HQ.length] as (typeof ONLINE_HQ)[number];
        const located = rng() < 0.5;
        emit({
          ts,
          amount: Math.max(0.5, cents(p.median * 1.5 * Math.exp(p.sigma * normal(rng)))),
          currency: home.currency,
          direction: 'debit',
          channel: 'ecommerce',
          merchant: `WEB${String(o + 1).padStart(3, '0')}`,
          mcc: '5999',
          ...(located ? { lat: hq.lat, lon: hq.lon, country: hq.country } : {}),
          ip: `10.${a}.0.${1 + Math.floor(rng() * 200)}`,
          card,
        });
      } else {
        emit({
          ts,
          amount: cents(250 * Math.exp(0.9 * normal(rng))),
          currency: home.currency,
          direction: 'debit',
          channel: 'transfer',
          counterparty: pick(rng, payees),
        });
      }
    }

    // Salary (credit) on the 1st, rent (debit) on the 3rd of every month in range.
    const salary = cents(1800 + rng() * 3200);
    const rent = cents(600 + rng() * 1000);
    for (let d = 0; d < days; d++) {
      const day = start + d * DAY;
      const dom = new Date(day).getUTCDate();
      if (dom === 1) emit({ ts: day + 6 * HOUR + Math.floor(rng() * HOUR), amount: salary, currency: home.currency, direction: 'credit', channel: 'transfer', counterparty: `EMPLOYER-${account}` });
      if (dom === 3) emit({ ts: day + 8 * HOUR + Math.floor(rng() * HOUR), amount: rent, currency: home.currency, direction: 'debit', channel: 'transfer', counterparty: `LANDLORD-${account}` });
      // Commuters tap in and out of transit on weekdays at home.
      const dow = new Date(day).getUTCDay();
      if (p.commuter && dow >= 1 && dow <= 5) {
        for (const h of [8, 18]) {
          const tt = day + (h - home.tz) * HOUR + Math.floor(rng() * HOUR);
          if (cityAt(tt)?.name !== home.name) continue;
          const st = jitter(rng, homePoint.lat, homePoint.lon, 5);
          emit({ ts: tt, amount: 1.9, currency: home.currency, direction: 'debit', channel: 'card', merchant: `TRANSIT-${home.name}`, terminal: `TRANSIT-${home.name}-G${1 + Math.floor(rng() * 50)}`, mcc: '4111', country: home.country, lat: st.lat, lon: st.lon, card: cards[0] as string });
        }
      }
    }
  }
  return { txs: sortTxs(txs), profiles, merchants };
}

/** Sorts by time (stable: ties keep their order). */
export function sortTxs(txs: Transaction[]): Transaction[] {
  return txs
    .map((t, i) => ({ t, i }))
    .sort((x, y) => x.t.ts - y.t.ts || x.i - y.i)
    .map((x) => x.t);
}

/** Merges injected transactions into traffic, sorted by time (injected ones after noise at equal times). */
export function embed(noise: readonly Transaction[], injected: readonly Transaction[]): Transaction[] {
  return sortTxs([...noise, ...injected]);
}
