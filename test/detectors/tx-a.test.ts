/**
 * Transaction detectors, group tx-a: velocity, amount_anomaly, structuring, impossible_travel, card_testing.
 *
 * Each runs over realistic synthetic traffic (test/helpers/tx-traffic.ts: 60 accounts, 30 days, Poisson
 * arrivals with a day/night profile, log-normal amounts, merchant pools, transfers, rent and salary,
 * transit taps, train and plane trips) with constructed positives embedded; expected findings come from
 * independent oracles computed here by brute force (simple-statistics for medians and MADs).
 */
import * as ss from 'simple-statistics';
import { describe, expect, it } from 'vitest';
import { eventRef, findingSchema, type Transaction } from '../../src/core/events.ts';
import { findingId } from '../../src/core/ids.ts';
import { amountAnomalyParams, amountAnomalySpec } from '../../src/detectors/amount-anomaly.ts';
import { cardTestingParams, cardTestingSpec } from '../../src/detectors/card-testing.ts';
import { haversineKm, impossibleTravelParams, impossibleTravelSpec } from '../../src/detectors/impossible-travel.ts';
import { structuringParams, structuringSpec } from '../../src/detectors/structuring.ts';
import { decayedAdd, decayedRate, newDecayedSum, riskScore } from '../../src/detectors/tx-common.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from '../../src/detectors/types.ts';
import { velocityParams, velocitySpec } from '../../src/detectors/velocity.ts';
import { detector, expectRestorable, runDetector, type DetectorRun } from '../helpers/detector-harness.ts';
import { mulberry32 } from '../helpers/random.ts';
import { CITIES, DAY, HOUR, MIN, TX_T0, cents, embed, normal, pick, traffic, type City, type Merchant, type Profile, type Traffic } from '../helpers/tx-traffic.ts';

const SEEDS = [1, 2, 3, 4];
const cache = new Map<number, Traffic>();
function noise(seed: number): Traffic {
  let t = cache.get(seed);
  if (!t) cache.set(seed, (t = traffic(seed)));
  return t;
}

let injected = 0;
function tx(p: { account: string }, ts: number, fields: Partial<Transaction> & { amount: number }): Transaction {
  return { kind: 'transaction', source: 'bank', id: `INJ-${p.account}-${++injected}`, ts: Math.round(ts), account: p.account, currency: 'EUR', direction: 'debit', channel: 'card', ...fields };
}

const ref = (t: Transaction): string => eventRef(t);
const cityOf = (name: string): City => CITIES.find((c) => c.name === name) as City;

/** Runs through the harness, checks every signal and finding, returns the run. */
function runChecked(spec: DetectorSpec<any, any>, params: Record<string, unknown>, events: readonly Transaction[], ruleId = `${spec.name}.test`): DetectorRun {
  const det = detector(spec, params, ruleId);
  const run = runDetector(det, events);
  checkRun(spec.name, ruleId, run, events);
  return run;
}

function checkRun(name: string, ruleId: string, run: DetectorRun, events: readonly Transaction[]): void {
  for (const s of run.signals) {
    expect(s.detector).toBe(name);
    expect(s.ruleId).toBe(ruleId);
    expect(s.score).toBeGreaterThan(0);
    expect(s.score).toBeLessThanOrEqual(1);
    expect(s.reason.length).toBeGreaterThan(10);
  }
  const index = new Map(events.map((e, i) => [ref(e), i]));
  for (const f of run.findings) {
    // The triggering transaction carries a signal at or above the threshold level.
    const i = index.get(f.trigger);
    expect(i, f.trigger).toBeDefined();
    const sig = run.signalsByEvent[i as number] as DetectorRun['signals'];
    expect(Math.max(0, ...sig.map((s) => s.score))).toBeGreaterThanOrEqual(0.8);
    expect(f.ts).toBe(events[i as number]?.ts);
    expect(f.account).toBe(f.key);
    const { trigger, ...rest } = f;
    findingSchema.parse({ ...rest, id: findingId(name, ruleId, f.key, trigger), runId: 'test', detector: name, ruleId });
    expect(f.evidence.triggers).toContain(f.trigger);
  }
}

/** The account's transactions in order, with their index in `events`. */
function ofAccount(events: readonly Transaction[], account: string): Array<{ t: Transaction; i: number }> {
  const out: Array<{ t: Transaction; i: number }> = [];
  events.forEach((t, i) => {
    if (t.account === account) out.push({ t, i });
  });
  return out;
}

function subset(events: readonly Transaction[], accounts: readonly string[]): Transaction[] {
  const set = new Set(accounts);
  return events.filter((e) => set.has(e.account));
}

function homeMerchants(tr: Traffic, p: Profile): Merchant[] {
  return tr.merchants.get(p.home.name) as Merchant[];
}

/** A card payment at a merchant of the city, at the merchant's location. */
function cardAt(p: Profile, ts: number, m: Merchant, amount: number, extra: Partial<Transaction> = {}): Transaction {
  const city = cityOf(m.city);
  return tx(p, ts, { amount, currency: city.currency, merchant: m.id, terminal: `${m.id}-T1`, mcc: m.mcc, country: city.country, lat: m.lat, lon: m.lon, card: p.cards[0] as string, ...extra });
}

/** True when every geolocated card payment of the account between from and to is within 100 km of home. */
function staysHome(tr: Traffic, p: Profile, from: number, to: number): boolean {
  return tr.txs.every((t) => t.account !== p.account || t.ts < from || t.ts > to || t.channel !== 'card' || t.lat === undefined || haversineKm(t.lat, t.lon as number, p.home.lat, p.home.lon) < 100);
}

/** Signal scores of the given events (max over the rule's signals; 0 when none). */
function scoresOf(run: DetectorRun, indices: readonly number[]): number[] {
  return indices.map((i) => Math.max(0, ...(run.signalsByEvent[i] ?? []).map((s) => s.score)));
}

function expectNonDecreasing(xs: readonly number[]): void {
  for (let i = 1; i < xs.length; i++) expect(xs[i] as number).toBeGreaterThanOrEqual(xs[i - 1] as number);
}

// ================================================================ shared pieces

describe('tx-common', () => {
  it('riskScore: 0 up to half the threshold, 0.8 at it, rising smoothly toward 1, never outside [0, 1]', () => {
    expect(riskScore(0)).toBe(0);
    expect(riskScore(0.5)).toBe(0);
    expect(riskScore(Number.NaN)).toBe(0);
    expect(riskScore(1)).toBeCloseTo(0.8, 12);
    expect(riskScore(1.5)).toBeCloseTo(0.9, 12);
    expect(riskScore(Number.POSITIVE_INFINITY)).toBe(1);
    let prev = 0;
    for (let r = 0; r <= 10; r += 0.01) {
      const s = riskScore(r);
      expect(s).toBeGreaterThanOrEqual(prev);
      expect(s).toBeLessThanOrEqual(1);
      expect(Math.abs(s - prev)).toBeLessThan(0.04); // continuous: no jumps
      prev = s;
    }
  });

  it('decayedRate is the exponentially weighted count over the decayed span (brute force)', () => {
    const rng = mulberry32(5);
    const H = 3 * DAY;
    const d = newDecayedSum();
    const times: number[] = [];
    let t = TX_T0;
    for (let i = 0; i < 400; i++) {
      t += Math.round(-Math.log(1 - rng()) * 2 * HOUR);
      // Slightly out of order now and then: adds at an earlier time than the reference.
      const ts = i % 17 === 0 ? t - 20 * MIN : t;
      times.push(ts);
      decayedAdd(d, ts, 1, H);
    }
    const at = t + 5 * HOUR;
    const since = TX_T0 + HOUR;
    const brute = ss.sum(times.map((x) => Math.pow(2, -(at - x) / H))) / ((H / Math.LN2) * (1 - Math.pow(2, -(at - since) / H)));
    expect(decayedRate(d, at, since, H)).toBeCloseTo(brute, 12);
    // Short span against the half-life: a plain count / duration.
    const d2 = newDecayedSum();
    for (let i = 0; i < 10; i++) decayedAdd(d2, TX_T0 + i * MIN, 1, 1000 * DAY);
    expect(decayedRate(d2, TX_T0 + 10 * MIN, TX_T0, 1000 * DAY) as number).toBeCloseTo(10 / (10 * MIN), 6);
    expect(decayedRate(d2, TX_T0, TX_T0, H)).toBeNull();
  });

  it('the synthetic traffic is what the tests claim', () => {
    const { txs, profiles } = noise(1);
    expect(profiles).toHaveLength(60);
    expect(txs.length).toBeGreaterThan(8000);
    for (let i = 1; i < txs.length; i++) expect((txs[i] as Transaction).ts).toBeGreaterThanOrEqual((txs[i - 1] as Transaction).ts);
    const channels = new Set(txs.map((t) => t.channel));
    expect([...channels].sort()).toEqual(['card', 'ecommerce', 'transfer']);
    expect(new Set(txs.map((t) => t.currency)).size).toBeGreaterThanOrEqual(3);
    expect(new Set(txs.map((t) => t.merchant).filter(Boolean)).size).toBeGreaterThan(150);
    // Log-normal card amounts: the median per account is near its profile's median.
    const p = profiles.find((x) => x.ratePerDay > 8) as Profile;
    const amounts = txs.filter((t) => t.account === p.account && t.channel === 'card' && t.merchant?.startsWith('M')).map((t) => t.amount);
    expect(Math.abs(Math.log(ss.median(amounts) / p.median))).toBeLessThan(0.4);
  });
});

// ================================================================ velocity

interface VelocityOracleOpts {
  windowMs: number;
  maxCount: number;
  maxAmount: number;
  amountMinCount: number;
  baselineFactor: number;
  baselineMinCount: number;
  baselineMinAmount: number;
  halfLifeMs: number;
  minHistoryMs: number;
  mode: 'absolute' | 'baseline' | 'both';
}

/**
 * Brute force for one account's debits: at each of its transactions, the count and same-currency amount in
 * (ts − W, ts], the usual count/amount (decayed sum of what is at or before ts − W over the decayed span
 * since its first transaction), and whether a test is crossed.
 */
function velocityOracle(events: readonly Transaction[], account: string, o: VelocityOracleOpts) {
  const mine = ofAccount(events, account).filter(({ t }) => t.direction === 'debit');
  const rate = (items: Array<{ ts: number; w: number }>, b: number, first: number): number => {
    const s = ss.sum(items.filter((x) => x.ts <= b).map((x) => x.w * Math.pow(2, -(b - x.ts) / o.halfLifeMs)));
    return s / ((o.halfLifeMs / Math.LN2) * (1 - Math.pow(2, -(b - first) / o.halfLifeMs)));
  };
  return mine.map(({ t, i }, k) => {
    const upto = mine.slice(0, k + 1).map((x) => x.t);
    const inWin = upto.filter((x) => x.ts > t.ts - o.windowMs);
    const sameCur = inWin.filter((x) => x.currency === t.currency);
    const count = inWin.length;
    const amount = ss.sum(sameCur.map((x) => Math.abs(x.amount)));
    const b = t.ts - o.windowMs;
    const first = Math.min(...upto.map((x) => x.ts));
    const firstCur = Math.min(...upto.filter((x) => x.currency === t.currency).map((x) => x.ts));
    let usualCount: number | null = null;
    let usualAmount: number | null = null;
    if (b - first >= o.minHistoryMs) usualCount = rate(upto.map((x) => ({ ts: x.ts, w: 1 })), b, first) * o.windowMs;
    if (b - firstCur >= o.minHistoryMs) usualAmount = rate(upto.filter((x) => x.currency === t.currency).map((x) => ({ ts: x.ts, w: Math.abs(x.amount) })), b, firstCur) * o.windowMs;
    const abs = o.mode !== 'baseline' && (count >= o.maxCount || (count >= o.amountMinCount && amount >= o.maxAmount));
    const base =
      o.mode !== 'absolute' &&
      ((usualCount !== null && count >= o.baselineMinCount && count >= o.baselineFactor * usualCount) ||
        (usualAmount !== null && count >= o.amountMinCount && amount >= o.baselineMinAmount && amount >= o.baselineFactor * usualAmount));
    return { t, i, count, amount, usualCount, usualAmount, crossed: abs || base, window: inWin };
  });
}

const V_DEFAULTS: VelocityOracleOpts = {
  windowMs: 600_000,
  maxCount: 10,
  maxAmount: 10_000,
  amountMinCount: 3,
  baselineFactor: 5,
  baselineMinCount: 6,
  baselineMinAmount: 3_000,
  halfLifeMs: 14 * DAY,
  minHistoryMs: 7 * DAY,
  mode: 'both',
};
/** The hourly rule suggested for the shipped rules file. */
const V_HOURLY = { windowMs: 3_600_000, maxCount: 25, maxAmount: 15_000, baselineMinCount: 10, baselineMinAmount: 5_000 };

/** A card spree of n payments at random home merchants, 25–55 s apart, at the account's usual amounts. */
function spree(tr: Traffic, p: Profile, start: number, n: number, seed: number): Transaction[] {
  const rng = mulberry32(seed);
  const out: Transaction[] = [];
  let ts = start;
  for (let k = 0; k < n; k++) {
    out.push(cardAt(p, ts, pick(rng, homeMerchants(tr, p)), Math.max(1, cents(p.median * Math.exp(p.sigma * normal(rng)))), { currency: p.home.currency }));
    ts += 25_000 + Math.floor(rng() * 30_000);
  }
  return out;
}

describe('velocity', () => {
  it('parameters: documented defaults; bad values throw', () => {
    expect(velocityParams.parse({})).toEqual({
      windowMs: 600_000,
      mode: 'both',
      maxCount: 10,
      maxAmount: 10_000,
      maxAmountByCurrency: {},
      amountMinCount: 3,
      baselineFactor: 5,
      baselineMinCount: 6,
      baselineMinAmount: 3_000,
      baselineHalfLifeMs: 14 * DAY,
      minHistoryMs: 7 * DAY,
      direction: 'debit',
      channels: [],
      maxEvents: 5_000,
      maxCurrencies: 8,
      cooldownMs: 600_000,
    });
    expect(() => velocityParams.parse({ windowMs: 0 })).toThrow(/windowMs/);
    expect(() => velocityParams.parse({ mode: 'absolute', maxCount: 0, maxAmount: 0 })).toThrow(/maxCount/);
    expect(() => velocityParams.parse({ mode: 'sometimes' })).toThrow(/mode/);
    expect(() => velocityParams.parse({ maxCount: 50, maxEvents: 20 })).toThrow(/maxEvents/);
    expect(() => velocityParams.parse({ windowMS: 1000 })).toThrow(/windowMS/);
    expect(velocityParams.parse({ mode: 'baseline', maxCount: 0, maxAmount: 0 }).mode).toBe('baseline');
  });

  it('ordinary traffic stays silent (10-min default and the hourly rule, several seeds)', () => {
    for (const seed of SEEDS) {
      const { txs } = noise(seed);
      for (const params of [{}, V_HOURLY]) {
        const run = runChecked(velocitySpec, params, txs);
        expect(run.findings, `seed ${seed} ${JSON.stringify(params)}`).toEqual([]);
        expect(run.signals.every((s) => s.score < 0.8)).toBe(true);
      }
    }
  });

  const scenario = () => {
    const tr = noise(1);
    const start = TX_T0 + 20 * DAY + 13 * HOUR + 7 * MIN;
    const p = tr.profiles.find((x) => x.home.currency === 'EUR' && x.ratePerDay > 4 && x.ratePerDay < 8 && staysHome(tr, x, start - DAY, start + DAY)) as Profile;
    const burst = spree(tr, p, start, 16, 77);
    return { tr, p, burst, events: embed(tr.txs, burst) };
  };

  it('a card spree crosses the absolute count limit once, with the right trigger and evidence', () => {
    const { p, burst, events } = scenario();
    const run = runChecked(velocitySpec, { mode: 'absolute' }, events);
    const oracle = velocityOracle(events, p.account, { ...V_DEFAULTS, mode: 'absolute' });
    const firstCross = oracle.find((x) => x.crossed);
    expect(firstCross).toBeDefined();
    const x = firstCross as (typeof oracle)[number];
    expect(x.count).toBe(10);
    expect(burst.map(ref)).toContain(ref(x.t));
    expect(run.findings).toHaveLength(1); // one per episode: the 11th…16th do not fire again
    const f = run.findings[0] as FindingDraft;
    expect(f.trigger).toBe(ref(x.t));
    expect(f.key).toBe(p.account);
    expect(f.evidence.observed.test).toBe('count_limit');
    expect(f.evidence.observed.count).toBe(x.count);
    expect(f.evidence.observed.amount as number).toBeCloseTo(x.amount, 6);
    expect(f.evidence.observed.currency).toBe('EUR');
    expect(f.evidence.threshold.maxCount).toBe(10);
    expect(f.evidence.triggers).toEqual(x.window.map(ref).slice(-20));
    expect(f.windowStart).toBe((x.window[0] as Transaction).ts);
    expect(f.score).toBeCloseTo(x.count / 10, 4);
    expect(f.severity).toBe('medium');
    expect(f.summary).toMatch(new RegExp(`^${p.account} made 10 debit transactions totalling [\\d,]+\\.\\d\\d EUR within 10 min \\(limit: 10 per 10 min; usual: \\d+\\.\\d+ per 10 min\\)$`));
  });

  it('the baseline test fires earlier, against the account’s own usual rate (oracle: decayed count)', () => {
    const { p, burst, events } = scenario();
    const oracle = velocityOracle(events, p.account, { ...V_DEFAULTS, mode: 'baseline' });
    const x = oracle.find((o) => o.crossed) as (typeof oracle)[number];
    expect(x).toBeDefined();
    expect(burst.map(ref)).toContain(ref(x.t));
    expect(x.count).toBe(6); // the account's usual is far below 6/5 per 10 min: the floor decides
    const run = runChecked(velocitySpec, { mode: 'baseline' }, events);
    expect(run.findings.map((f) => f.trigger)).toEqual([ref(x.t)]);
    const f = run.findings[0] as FindingDraft;
    expect(f.evidence.observed.test).toBe('count_baseline');
    expect(f.evidence.baseline.usualCount as number).toBeCloseTo(x.usualCount as number, 6);
    expect(f.evidence.observed.count).toBe(6);
    expect(f.summary).toMatch(/usual: 0\.\d\d per 10 min; [\d.,]+× that\)$/);
    // 'both' gives one finding for the episode: the earlier (baseline) crossing.
    const both = runChecked(velocitySpec, {}, events);
    expect(both.findings.map((g) => g.trigger)).toEqual([ref(x.t)]);
    // Signals rise through the spree and reach the threshold level at the trigger.
    const idx = burst.map((b) => events.indexOf(b));
    const scores = scoresOf(both, idx);
    const k = burst.findIndex((b) => ref(b) === f.trigger);
    expectNonDecreasing(scores.slice(0, k + 1));
    expect(scores[0]).toBeLessThan(0.1);
    expect(scores[k] as number).toBeGreaterThanOrEqual(0.8);
  });

  it('draining by transfers crosses the hourly amount limit (absolute) and, earlier, the amount baseline', () => {
    const tr = noise(2);
    const p = tr.profiles.find((x) => x.home.currency === 'EUR') as Profile;
    const start = TX_T0 + 22 * DAY + 2 * HOUR + 13 * MIN;
    const drain = [3_400, 3_150, 3_700, 3_900, 3_600].map((amount, k) => tx(p, start + k * 9 * MIN, { amount, channel: 'transfer', counterparty: 'IBAN-MULE-1' }));
    const events = embed(tr.txs, drain);
    const opts = { ...V_DEFAULTS, ...V_HOURLY };

    const abs = runChecked(velocitySpec, { ...V_HOURLY, mode: 'absolute' }, events);
    const oa = velocityOracle(events, p.account, { ...opts, mode: 'absolute' }).find((o) => o.crossed) as ReturnType<typeof velocityOracle>[number];
    expect(drain.map(ref)).toContain(ref(oa.t));
    expect(oa.amount).toBeGreaterThanOrEqual(15_000);
    expect(abs.findings.map((f) => f.trigger)).toEqual([ref(oa.t)]);
    const fa = abs.findings[0] as FindingDraft;
    expect(fa.evidence.observed.test).toBe('amount_limit');
    expect(fa.evidence.observed.amount as number).toBeCloseTo(oa.amount, 6);
    expect(fa.summary).toMatch(/within 60 min \(limit: 15,000\.00 EUR per 60 min; usual: [\d,]+\.\d\d EUR per 60 min\)$/);

    const base = runChecked(velocitySpec, { ...V_HOURLY, mode: 'baseline' }, events);
    const ob = velocityOracle(events, p.account, { ...opts, mode: 'baseline' }).find((o) => o.crossed) as ReturnType<typeof velocityOracle>[number];
    expect(drain.map(ref)).toContain(ref(ob.t));
    expect(ob.count).toBeGreaterThanOrEqual(3);
    expect(ob.amount).toBeGreaterThanOrEqual(5_000);
    expect(base.findings.map((f) => f.trigger)).toEqual([ref(ob.t)]);
    const fb = base.findings[0] as FindingDraft;
    expect(fb.evidence.observed.test).toBe('amount_baseline');
    expect(fb.evidence.baseline.usualAmount as number).toBeCloseTo(ob.usualAmount as number, 4);
  });

  it('sums amounts per currency, with a bounded currency map that never subtracts what it no longer holds', () => {
    const p = { account: 'ACC-FX' };
    const t = TX_T0 + 3 * DAY;
    const evs = [
      tx(p, t, { amount: 4_000, currency: 'EUR' }),
      tx(p, t + MIN, { amount: 3_500, currency: 'USD' }),
      tx(p, t + 2 * MIN, { amount: 3_000, currency: 'EUR' }),
      tx(p, t + 3 * MIN, { amount: 3_900, currency: 'EUR' }),
    ];
    // Per currency: EUR reaches 10,900 with 4 transactions in the window; USD never counts towards it.
    const run = runChecked(velocitySpec, { mode: 'absolute' }, evs);
    expect(run.findings.map((f) => f.trigger)).toEqual([ref(evs[3] as Transaction)]);
    expect(run.findings[0]?.evidence.observed.amount).toBe(10_900);
    expect(run.findings[0]?.evidence.observed.count).toBe(4);
    // One currency tracked: USD pushes EUR out; EUR comes back afresh (3,000 + 3,900 = 6,900: no finding), and
    // when the first EUR payment leaves the window it is not subtracted from the new EUR total.
    const one = detector(velocitySpec, { mode: 'absolute', maxCurrencies: 1 });
    const r1 = runDetector(one, [...evs, tx(p, t + 10.5 * MIN, { amount: 10, currency: 'EUR' })]);
    expect(r1.findings).toEqual([]);
    const st = r1.states.get('ACC-FX') as { curs: Map<string, { sum: number; n: number }>; win: { size: number } };
    expect([...st.curs.keys()]).toEqual(['EUR']);
    expect(st.curs.get('EUR')).toMatchObject({ sum: 6_910, n: 3 });
    expect(st.win.size).toBe(4);
  });

  it('survives checkpoints (restorable), other parameters on restore, garbage, and late events', () => {
    const { tr, p, events } = scenario();
    const few = subset(events, [p.account, ...tr.profiles.slice(0, 3).map((x) => x.account)]);
    const det = detector(velocitySpec, {});
    const straight = expectRestorable(det, few);
    expect(straight.findings).toHaveLength(1);
    // Hot reload just before the spree: the state of the 10-min rule continues under a 2-min window holding at most 3.
    const cut = few.findIndex((e) => e.id.startsWith('INJ-'));
    const a = runDetector(det, few.slice(0, cut));
    const other = detector(velocitySpec, { windowMs: 120_000, maxEvents: 3, maxCount: 3, baselineMinCount: 3 });
    for (const [k, s] of a.states) {
      const restored = other.fromJSON(JSON.parse(JSON.stringify(det.toJSON(s)))) as { win: { size: number } };
      expect(restored.win.size).toBeLessThanOrEqual(3);
      a.states.set(k, restored);
    }
    const out: FindingDraft[] = [];
    for (const ev of few.slice(cut)) {
      let st = a.states.get(ev.account);
      if (st === undefined) a.states.set(ev.account, (st = other.newState(ev.account)));
      other.onEvent(st, ev, out, []);
    }
    expect(out.filter((f) => f.key === p.account && f.evidence.observed.test === 'count_limit').length).toBeGreaterThanOrEqual(1);
    for (const f of out) expect(f.evidence.observed.count as number).toBeLessThanOrEqual(3);
    expect(() => det.fromJSON({ v: 2 })).toThrow(TypeError);
    expect(() => det.fromJSON({ v: 1, key: 'A', curs: 'x' })).toThrow(TypeError);
    expect(() => det.fromJSON(null)).toThrow(TypeError);
    // Late events (swapped within a minute) neither crash nor lose the episode.
    const late = lateShuffle(events, 31);
    const lr = runChecked(velocitySpec, {}, late);
    expect(lr.findings.filter((f) => f.key === p.account)).toHaveLength(1);
  });
});

/** Swaps neighbouring transactions less than a minute apart now and then (events up to 60 s late). */
function lateShuffle(events: readonly Transaction[], seed: number): Transaction[] {
  const rng = mulberry32(seed);
  const out = [...events];
  for (let i = 1; i < out.length; i++) {
    const a = out[i - 1] as Transaction;
    const b = out[i] as Transaction;
    if (b.ts - a.ts < 60_000 && rng() < 0.3) {
      out[i - 1] = b;
      out[i] = a;
      i++;
    }
  }
  return out;
}

// ================================================================ amount_anomaly

describe('amount_anomaly', () => {
  it('parameters: documented defaults; bad values throw', () => {
    expect(amountAnomalyParams.parse({})).toEqual({
      windowSize: 200,
      maxAgeMs: 180 * DAY,
      minHistory: 30,
      zThreshold: 5,
      minScale: 0.25,
      minAmount: 500,
      minAmountByCurrency: {},
      maxRatio: 1,
      direction: 'debit',
      channels: [],
      perChannel: true,
      maxBaselines: 8,
      cooldownMs: 600_000,
    });
    expect(() => amountAnomalyParams.parse({ minHistory: 300 })).toThrow(/minHistory/);
    expect(() => amountAnomalyParams.parse({ zThreshold: 0 })).toThrow(/zThreshold/);
    expect(() => amountAnomalyParams.parse({ minAmountByCurrency: { EUR: -1 } })).toThrow();
    expect(() => amountAnomalyParams.parse({ direction: 'up' })).toThrow(/direction/);
  });

  it('ordinary traffic stays silent (several seeds), while it is judged', () => {
    for (const seed of SEEDS) {
      const run = runChecked(amountAnomalySpec, {}, noise(seed).txs);
      expect(run.findings, `seed ${seed}`).toEqual([]);
      expect(run.signals.every((s) => s.score < 0.8)).toBe(true);
      const judged = [...run.states.values()].reduce((acc: number, s) => acc + (s as { judged: number }).judged, 0);
      expect(judged).toBeGreaterThan(5000);
    }
  });

  /** The account's card payments in its home currency before `ts` (the detector's baseline for them). */
  const history = (events: readonly Transaction[], p: Profile, ts: number): number[] =>
    events.filter((t) => t.account === p.account && t.channel === 'card' && t.direction === 'debit' && t.currency === p.home.currency && t.ts < ts).map((t) => t.amount);

  const scenario = () => {
    const tr = noise(3);
    const ts = TX_T0 + 21 * DAY + 11 * HOUR + 17 * MIN;
    const p = tr.profiles.find((x) => x.home.currency === 'EUR' && x.ratePerDay > 7) as Profile;
    const prior = history(tr.txs, p, ts);
    const logs = prior.slice(-200).map(Math.log);
    const med = ss.median(logs);
    const scale = Math.max(1.4826 * ss.medianAbsoluteDeviation(logs), 0.25);
    const amount = cents(Math.max(600, 1.3 * Math.max(...prior), Math.exp(med + 8 * scale)));
    const big = cardAt(p, ts, homeMerchants(tr, p)[5] as Merchant, amount);
    return { tr, p, big, events: embed(tr.txs, [big]), prior, logs, med, scale };
  };

  it('a large card payment fires with z, median and MAD matching simple-statistics', () => {
    const { p, big, events, prior, logs, med, scale } = scenario();
    expect(logs.length).toBeGreaterThanOrEqual(30);
    const run = runChecked(amountAnomalySpec, {}, events);
    expect(run.findings).toHaveLength(1);
    const f = run.findings[0] as FindingDraft;
    const z = (Math.log(big.amount) - med) / scale;
    expect(f.trigger).toBe(ref(big));
    expect(f.key).toBe(p.account);
    expect(f.score).toBeCloseTo(z, 4);
    expect(z).toBeGreaterThanOrEqual(5);
    expect(f.severity).toBe(z >= 10 ? 'critical' : z >= 7.5 ? 'high' : 'medium');
    const { observed, baseline, threshold } = f.evidence;
    expect(observed.amount).toBe(big.amount);
    expect(baseline.samples).toBe(logs.length);
    expect(baseline.medianLog as number).toBeCloseTo(med, 12);
    expect(baseline.madLog as number).toBeCloseTo(ss.medianAbsoluteDeviation(logs), 12);
    expect(baseline.previousMax).toBe(Math.max(...prior));
    expect(baseline.medianAmount as number).toBeCloseTo(Math.exp(med), 4);
    expect(threshold).toEqual({ z: 5, minAmount: 500, maxRatio: 1, minHistory: 30 });
    expect(f.summary).toMatch(new RegExp(`^${p.account} paid [\\d,]+\\.\\d\\d EUR \\(card, M\\d+\\), [\\d.,]+× its median of [\\d,]+\\.\\d\\d EUR over its last ${logs.length} EUR card transactions \\(robust z \\d+\\.\\d on log amounts; largest before: [\\d,]+\\.\\d\\d EUR\\)$`));
    const i = events.indexOf(big);
    expect(scoresOf(run, [i])[0] as number).toBeGreaterThan(0.8);
  });

  it('each gate holds it back: max so far, absolute floor, history; the signal rises with the amount', () => {
    const { big, events, prior, logs } = scenario();
    const timesMax = big.amount / Math.max(...prior);
    expect(runChecked(amountAnomalySpec, { maxRatio: timesMax + 0.05 }, events).findings).toEqual([]);
    expect(runChecked(amountAnomalySpec, { maxRatio: timesMax - 0.05 }, events).findings).toHaveLength(1);
    expect(runChecked(amountAnomalySpec, { minAmount: big.amount + 1 }, events).findings).toEqual([]);
    expect(runChecked(amountAnomalySpec, { minHistory: logs.length + 1, windowSize: 400 }, events).findings).toEqual([]);
    expect(runChecked(amountAnomalySpec, { channels: ['ecommerce'] }, events).findings).toEqual([]);
    // The same account paying 1×, 2×, … 64× its usual: the signal does not fall as the amount grows.
    const tr = noise(3);
    const p = tr.profiles.find((x) => x.home.currency === 'EUR' && x.ratePerDay > 7) as Profile;
    const scores: number[] = [];
    for (const mult of [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024]) {
      const one = cardAt(p, big.ts, homeMerchants(tr, p)[5] as Merchant, cents(p.median * mult));
      const evs = embed(subset(tr.txs, [p.account]), [one]);
      const r = runChecked(amountAnomalySpec, { maxRatio: 0, minAmount: 0 }, evs);
      scores.push(scoresOf(r, [evs.indexOf(one)])[0] as number);
    }
    expectNonDecreasing(scores);
    expect(scores[0]).toBe(0);
    expect(scores[scores.length - 1]).toBeGreaterThanOrEqual(0.8);
  });

  it('survives checkpoints, other parameters on restore and garbage', () => {
    const { tr, p, events } = scenario();
    const few = subset(events, [p.account, ...tr.profiles.slice(0, 3).map((x) => x.account)]);
    const det = detector(amountAnomalySpec, {});
    expect(expectRestorable(det, few).findings).toHaveLength(1);
    const a = runDetector(det, few);
    const other = detector(amountAnomalySpec, { windowSize: 20, minHistory: 10, perChannel: true });
    for (const s of a.states.values()) {
      const r = other.fromJSON(JSON.parse(JSON.stringify(det.toJSON(s)))) as { curs: Map<string, { sorted: { size: number } }> };
      for (const c of r.curs.values()) expect(c.sorted.size).toBeLessThanOrEqual(20);
    }
    const flat = detector(amountAnomalySpec, { perChannel: false });
    for (const s of a.states.values()) expect((flat.fromJSON(det.toJSON(s)) as { curs: Map<string, unknown> }).curs.size).toBe(0);
    expect(() => det.fromJSON({ v: 1, key: 'A', curs: [{ cur: 'EUR|card', ts: [1], x: [] }] })).toThrow(TypeError);
    expect(() => det.fromJSON('x')).toThrow(TypeError);
  });
});

// ================================================================ structuring

/** In-band (90–100% of 10,000) transactions of the account within 7 days at each of its transactions. */
function structuringOracle(events: readonly Transaction[], account: string, windowMs = 7 * DAY) {
  const inBand = ofAccount(events, account).filter(({ t }) => t.currency === 'EUR' && Math.abs(t.amount) >= 9_000 && Math.abs(t.amount) < 10_000);
  return inBand.map(({ t, i }, k) => {
    const win = inBand.slice(0, k + 1).filter((x) => x.t.ts > t.ts - windowMs).map((x) => x.t);
    return { t, i, win, count: win.length, total: ss.sum(win.map((x) => x.amount)) };
  });
}

describe('structuring', () => {
  it('parameters: documented defaults; bad values throw', () => {
    expect(structuringParams.parse({})).toEqual({
      thresholds: { USD: 10_000, EUR: 10_000, GBP: 10_000, CAD: 10_000, AUD: 10_000 },
      bandLow: 0.9,
      windowMs: 7 * DAY,
      minCount: 3,
      minTotalRatio: 1,
      direction: 'any',
      channels: [],
      maxEvents: 200,
      maxCurrencies: 4,
      cooldownMs: DAY,
    });
    expect(() => structuringParams.parse({ bandLow: 1 })).toThrow(/bandLow/);
    expect(() => structuringParams.parse({ thresholds: {} })).toThrow(/thresholds/);
    expect(() => structuringParams.parse({ minCount: 0 })).toThrow(/minCount/);
  });

  it('ordinary traffic stays silent (several seeds)', () => {
    for (const seed of SEEDS) expect(runChecked(structuringSpec, {}, noise(seed).txs).findings, `seed ${seed}`).toEqual([]);
  });

  const deposits = (p: Profile, plan: Array<[day: number, hour: number, amount: number]>, currency = 'EUR'): Transaction[] =>
    plan.map(([d, h, amount]) => tx(p, TX_T0 + d * DAY + h * HOUR, { amount, currency, direction: 'credit', channel: 'cash', terminal: 'BRANCH-12' }));

  it('three cash deposits just under 10,000 within a week fire once, with the transactions as evidence', () => {
    const tr = noise(4);
    const p = tr.profiles.find((x) => x.home.currency === 'EUR') as Profile;
    const dep = deposits(p, [[12, 10, 9_400], [13, 15, 9_750], [15, 11, 9_900], [16, 9, 9_600]]);
    const events = embed(tr.txs, dep);
    const run = runChecked(structuringSpec, {}, events);
    const oracle = structuringOracle(events, p.account);
    const x = oracle.find((o) => o.count >= 3 && o.total >= 10_000) as (typeof oracle)[number];
    expect(ref(x.t)).toBe(ref(dep[2] as Transaction));
    expect(run.findings).toHaveLength(1); // the 4th deposit is the same episode
    const f = run.findings[0] as FindingDraft;
    expect(f.trigger).toBe(ref(x.t));
    expect(f.evidence.observed.count).toBe(x.count);
    expect(f.evidence.observed.total as number).toBeCloseTo(x.total, 6);
    expect(f.evidence.observed.amounts).toBe(x.win.map((t) => t.amount.toFixed(2)).join(', '));
    expect(f.evidence.triggers).toEqual(x.win.map(ref));
    expect(f.evidence.threshold.reportingThreshold).toBe(10_000);
    expect(f.windowStart).toBe((x.win[0] as Transaction).ts);
    // 3 days and 1 hour from the first to the third deposit.
    expect(f.summary).toBe(`${p.account} made 3 transactions of 9,400.00 EUR–9,900.00 EUR, just under the 10,000.00 EUR reporting threshold, within 3.0 days (total 29,050.00 EUR)`);
    // Signals: none for the 1st (1/3 of the count), low for the 2nd, ≥ 0.8 at the 3rd.
    const s = scoresOf(run, dep.map((d) => events.indexOf(d)));
    expect(s[0]).toBe(0);
    expect(s[1] as number).toBeGreaterThan(0);
    expect(s[1] as number).toBeLessThan(0.3);
    expect(s[2] as number).toBeGreaterThanOrEqual(0.8);
    expectNonDecreasing(s);
  });

  it('stays silent when an amount is out of the band, the deposits are spread over more than the window, or the currency has no threshold', () => {
    const tr = noise(4);
    const p = tr.profiles.find((x) => x.home.currency === 'EUR') as Profile;
    const cases: Transaction[][] = [
      deposits(p, [[12, 10, 9_400], [13, 15, 8_800], [15, 11, 9_900]]),
      deposits(p, [[12, 10, 9_400], [13, 15, 10_000], [15, 11, 9_900]]), // at the threshold: reported, not structured
      deposits(p, [[5, 10, 9_400], [10, 15, 9_750], [15, 11, 9_900]]),
      deposits(p, [[12, 10, 9_400], [13, 15, 9_750], [15, 11, 9_900]], 'JPY'),
    ];
    for (const dep of cases) {
      const events = embed(tr.txs, dep);
      expect(structuringOracle(events, p.account).some((o) => o.count >= 3)).toBe(false);
      expect(runChecked(structuringSpec, {}, events).findings).toEqual([]);
    }
    // …and a 24-hour window misses the week-long pattern that the 7-day default catches.
    const week = embed(tr.txs, deposits(p, [[12, 10, 9_400], [13, 15, 9_750], [15, 11, 9_900]]));
    expect(runChecked(structuringSpec, { windowMs: DAY }, week).findings).toEqual([]);
    expect(runChecked(structuringSpec, { thresholds: { JPY: 1_000_000 } }, embed(tr.txs, cases[2] as Transaction[])).findings).toEqual([]);
  });

  it('survives checkpoints, other parameters on restore and garbage', () => {
    const tr = noise(4);
    const p = tr.profiles.find((x) => x.home.currency === 'EUR') as Profile;
    const events = embed(tr.txs, deposits(p, [[12, 10, 9_400], [13, 15, 9_750], [15, 11, 9_900], [16, 9, 9_600]]));
    const few = subset(events, [p.account, ...tr.profiles.slice(1, 4).map((x) => x.account)]);
    const det = detector(structuringSpec, {});
    expect(expectRestorable(det, few).findings).toHaveLength(1);
    const a = runDetector(det, few);
    const short = detector(structuringSpec, { windowMs: DAY });
    const s = short.fromJSON(JSON.parse(JSON.stringify(det.toJSON(a.states.get(p.account))))) as { curs: Map<string, { win: { size: number }; total: number }> };
    const eur = s.curs.get('EUR') as { win: { size: number }; total: number };
    expect(eur.win.size).toBe(0); // the last deposit is more than a day before the last transaction seen
    expect(eur.total).toBe(0);
    expect(() => det.fromJSON({ v: 1, key: 'A', curs: [{ cur: 'EUR', entries: [['x', 'y', 1]], total: 1 }] })).toThrow(TypeError);
  });
});

// ================================================================ impossible_travel

/** Brute force: consecutive judged (card-present, geolocated) transactions per slot, speed, cooldown. */
const CNP = new Set(['ecommerce', 'online', 'cnp', 'moto', 'recurring', 'transfer']);
function travelOracle(events: readonly Transaction[], account: string, per: 'account' | 'card', ignore: ReadonlySet<string> = CNP, maxSpeed = 900, minKm = 100, cooldownMs = 600_000) {
  const judged = ofAccount(events, account).filter(({ t }) => t.lat !== undefined && t.lon !== undefined && !ignore.has(t.channel));
  const last = new Map<string, Transaction>();
  const lastFire = new Map<string, number>();
  const fires: Array<{ t: Transaction; prev: Transaction; km: number; speed: number }> = [];
  for (const { t } of judged) {
    const slot = per === 'card' ? (t.card ?? '') : '';
    const prev = last.get(slot);
    if (!prev || t.ts >= prev.ts) last.set(slot, t);
    if (!prev) continue;
    // Spherical law of cosines: an independent route to the great-circle distance.
    const r = Math.PI / 180;
    const c = Math.sin((prev.lat as number) * r) * Math.sin((t.lat as number) * r) + Math.cos((prev.lat as number) * r) * Math.cos((t.lat as number) * r) * Math.cos(((t.lon as number) - (prev.lon as number)) * r);
    const km = 6371.0088 * Math.acos(Math.min(1, Math.max(-1, c)));
    const speed = km / (Math.max(Math.abs(t.ts - prev.ts), 1000) / 3_600_000);
    if (km >= minKm && speed > maxSpeed) {
      const lf = lastFire.get(slot);
      if (lf !== undefined && t.ts - lf < cooldownMs) continue;
      lastFire.set(slot, t.ts);
      fires.push({ t, prev, km, speed });
    }
  }
  return fires;
}

describe('impossible_travel', () => {
  it('parameters: documented defaults; bad values throw; haversine agrees with known distances', () => {
    expect(impossibleTravelParams.parse({})).toEqual({
      per: 'account',
      maxSpeedKmh: 900,
      minDistanceKm: 100,
      ignoreChannels: ['ecommerce', 'online', 'cnp', 'moto', 'recurring', 'transfer'],
      maxCards: 16,
      cooldownMs: 600_000,
    });
    expect(() => impossibleTravelParams.parse({ maxSpeedKmh: 0 })).toThrow(/maxSpeedKmh/);
    expect(() => impossibleTravelParams.parse({ per: 'device' })).toThrow(/per/);
    // Paris–New York ≈ 5,837 km; London–Paris ≈ 344 km (great circle).
    expect(haversineKm(48.8566, 2.3522, 40.7128, -74.006)).toBeGreaterThan(5_820);
    expect(haversineKm(48.8566, 2.3522, 40.7128, -74.006)).toBeLessThan(5_850);
    expect(haversineKm(51.5074, -0.1278, 48.8566, 2.3522)).toBeCloseTo(343.9, 0);
  });

  it('ordinary traffic with train and plane trips stays silent (several seeds, per account and per card)', () => {
    for (const seed of SEEDS) {
      const { txs } = noise(seed);
      // The noise does travel: some accounts pay far from home (> 300 km) in the period.
      const homeOf = new Map(noise(seed).profiles.map((x) => [x.account, x.home]));
      const far = new Set(
        txs
          .filter((t) => t.channel === 'card' && t.lat !== undefined && haversineKm(t.lat, t.lon as number, (homeOf.get(t.account) as City).lat, (homeOf.get(t.account) as City).lon) > 300)
          .map((t) => t.account),
      );
      expect(far.size).toBeGreaterThanOrEqual(5);
      for (const per of ['account', 'card'] as const) {
        const run = runChecked(impossibleTravelSpec, { per }, txs);
        expect(run.findings, `seed ${seed} per ${per}`).toEqual([]);
      }
    }
  });

  const scenario = () => {
    const tr = noise(2);
    const t1 = TX_T0 + 18 * DAY + 9 * HOUR + 3 * MIN;
    const p = tr.profiles.find((x) => x.home.currency === 'EUR' && staysHome(tr, x, t1 - DAY, t1 + DAY)) as Profile;
    const here = cardAt(p, t1, homeMerchants(tr, p)[2] as Merchant, 23.5);
    // An online order with the shop's head-office coordinates in between: not the cardholder's location.
    const web = tx(p, t1 + 20 * MIN, { amount: 59.9, channel: 'ecommerce', merchant: 'WEB-X', lat: 47.6062, lon: -122.3321, country: 'US', card: p.cards[0] as string });
    const ny = cardAt(p, t1 + 40 * MIN, (tr.merchants.get('New York') as Merchant[])[7] as Merchant, 180.25);
    return { tr, p, here, web, ny, events: embed(tr.txs, [here, web, ny]) };
  };

  it('a card payment in New York 40 minutes after one at home fires, with both locations and the implied speed', () => {
    const { p, here, web, ny, events } = scenario();
    const run = runChecked(impossibleTravelSpec, {}, events);
    const oracle = travelOracle(events, p.account, 'account');
    expect(run.findings.map((f) => f.trigger)).toEqual(oracle.map((o) => ref(o.t)));
    const o = oracle[0] as (typeof oracle)[number];
    expect(ref(o.t)).toBe(ref(ny));
    const f = run.findings[0] as FindingDraft;
    expect(f.evidence.triggers).toEqual([ref(o.prev), ref(ny)]);
    // The previous location is the payment at home (or a later one of the noise, near home): the online order
    // in between is not a location.
    expect(o.prev.channel).toBe('card');
    expect(o.prev.ts).toBeGreaterThanOrEqual(here.ts);
    expect(haversineKm(o.prev.lat as number, o.prev.lon as number, p.home.lat, p.home.lon)).toBeLessThan(100);
    expect(f.evidence.observed.distanceKm as number).toBeCloseTo(o.km, 2);
    expect(f.evidence.observed.elapsedMs).toBe(ny.ts - o.prev.ts);
    expect(f.evidence.observed.speedKmh as number).toBeCloseTo(o.speed, 1);
    expect(f.evidence.baseline.previousLat).toBe(o.prev.lat);
    expect(f.score).toBeCloseTo(o.speed / 900, 3);
    expect(f.severity).toBe('critical'); // > 5 × 900 km/h
    expect(f.windowStart).toBe(o.prev.ts);
    expect(f.summary).toMatch(new RegExp(`^${p.account} transacted at \\d+\\.\\d{3}, -?\\d+\\.\\d{3} [A-Z]{2} and [\\d.]+ min later at 40\\.\\d{3}, -7[34]\\.\\d{3} US, [\\d,]+ km apart: [\\d,]+ km/h implied \\(limit 900 km/h\\)$`));
    expect(scoresOf(run, [events.indexOf(ny)])[0] as number).toBeGreaterThan(0.9);
    // Judging card-not-present too, the online order's coordinates become a (false) jump.
    const all = runChecked(impossibleTravelSpec, { ignoreChannels: [] }, events);
    expect(travelOracle(events, p.account, 'account', new Set()).map((o) => ref(o.t))).toContain(ref(web));
    expect(all.findings.filter((g) => g.key === p.account).map((g) => g.trigger)).toEqual(travelOracle(events, p.account, 'account', new Set()).map((o) => ref(o.t)));
  });

  it('per card: two cards of one account used far apart at once fire per account but not per card', () => {
    const tr = noise(2);
    const t1 = TX_T0 + 9 * DAY + 12 * HOUR + 30 * MIN;
    const p = tr.profiles.find((x) => x.cards.length === 2 && staysHome(tr, x, t1 - 2 * DAY, t1 + DAY)) as Profile;
    const a = cardAt(p, t1, homeMerchants(tr, p)[0] as Merchant, 31.2, { card: p.cards[0] as string });
    // The second card (a partner's) in the nearest city 300+ km away five minutes later, and again 15 min after that;
    // it was last used there the day before (per card, nothing moved fast).
    const farCity = CITIES.filter((c) => haversineKm(c.lat, c.lon, p.home.lat, p.home.lon) > 300).sort((x, y) => haversineKm(x.lat, x.lon, p.home.lat, p.home.lon) - haversineKm(y.lat, y.lon, p.home.lat, p.home.lon))[0] as City;
    const m = (tr.merchants.get(farCity.name) as Merchant[])[3] as Merchant;
    const b0 = cardAt(p, t1 - 20 * HOUR, m, 44, { card: p.cards[1] as string });
    const b = cardAt(p, t1 + 5 * MIN, m, 12.4, { card: p.cards[1] as string });
    const b2 = cardAt(p, t1 + 20 * MIN, m, 8.1, { card: p.cards[1] as string });
    const quiet = tr.txs.filter((t) => !(t.account === p.account && t.card === p.cards[1] && t.ts > b0.ts - HOUR && t.ts < b2.ts + HOUR));
    const events = embed(quiet, [b0, a, b, b2]);
    const perAccount = runChecked(impossibleTravelSpec, {}, events);
    const perCard = runChecked(impossibleTravelSpec, { per: 'card' }, events);
    expect(perAccount.findings.map((f) => f.trigger)).toEqual(travelOracle(events, p.account, 'account').map((o) => ref(o.t)));
    expect(perCard.findings.map((f) => f.trigger)).toEqual(travelOracle(events, p.account, 'card').map((o) => ref(o.t)));
    expect(perAccount.findings.map((f) => f.trigger)).toContain(ref(b));
    expect(perCard.findings.map((f) => f.trigger)).not.toContain(ref(b));
  });

  it('a late transaction is compared with the latest location but does not replace it', () => {
    const tr = noise(3);
    const L = TX_T0 + 14 * DAY + 15 * HOUR;
    const p = tr.profiles.find((x) => x.home.currency === 'EUR' && staysHome(tr, x, L - DAY, L + DAY)) as Profile;
    const home = homeMerchants(tr, p);
    const h1 = cardAt(p, L + 30_000, home[1] as Merchant, 14.2);
    const nyLate = cardAt(p, L, (tr.merchants.get('New York') as Merchant[])[2] as Merchant, 310); // skimmed card, reported 30 s late
    const h2 = cardAt(p, L + 15 * MIN, home[4] as Merchant, 9.99);
    const sorted = embed(tr.txs, [h1, h2]);
    const events = [...sorted];
    events.splice(sorted.indexOf(h1) + 1, 0, nyLate); // arrives right after h1, carrying an earlier time
    const oracle = travelOracle(events, p.account, 'account');
    const run = runChecked(impossibleTravelSpec, {}, events);
    expect(run.findings.map((f) => f.trigger)).toEqual(oracle.map((o) => ref(o.t)));
    expect(oracle.map((o) => ref(o.t))).toContain(ref(nyLate));
    expect(oracle.map((o) => ref(o.t))).not.toContain(ref(h2)); // compared with h1 (home), not with the late one
    const f = run.findings.find((g) => g.trigger === ref(nyLate)) as FindingDraft;
    expect(f.evidence.observed.elapsedMs).toBe(30_000);
    expect(f.evidence.triggers).toEqual([ref(nyLate), ref(h1)]); // in time order
  });

  it('survives checkpoints, a change of `per` on restore and garbage', () => {
    const { tr, p, events } = scenario();
    const few = subset(events, [p.account, ...tr.profiles.slice(3, 6).map((x) => x.account)]);
    const det = detector(impossibleTravelSpec, {});
    expect(expectRestorable(det, few).findings.length).toBeGreaterThanOrEqual(1);
    expect(expectRestorable(detector(impossibleTravelSpec, { per: 'card' }), few).findings.length).toBeGreaterThanOrEqual(1);
    const a = runDetector(det, few);
    const card = detector(impossibleTravelSpec, { per: 'card' });
    expect((card.fromJSON(det.toJSON(a.states.get(p.account))) as { slots: Map<string, unknown> }).slots.size).toBe(0);
    expect(() => det.fromJSON({ v: 1, key: 'A', per: 'account', slots: [{ k: '', last: { ts: 'x' } }] })).toThrow(TypeError);
  });
});

// ================================================================ card_testing

function cardTestingOracle(events: readonly Transaction[], account: string, o = { windowMs: 600_000, small: 2, minCount: 5, minDistinct: 3 }) {
  const ch = new Set(['card', 'ecommerce', 'online', 'cnp', 'moto']);
  const small = ofAccount(events, account).filter(({ t }) => t.direction === 'debit' && ch.has(t.channel) && Math.abs(t.amount) <= o.small);
  return small.map(({ t, i }, k) => {
    const win = small.slice(0, k + 1).filter((x) => x.t.ts > t.ts - o.windowMs).map((x) => x.t);
    const merchants = new Set(win.map((x) => x.merchant ?? x.terminal).filter((x) => x !== undefined));
    const terminals = new Set(win.map((x) => x.terminal ?? x.merchant).filter((x) => x !== undefined));
    const distinct = Math.max(merchants.size, terminals.size);
    return { t, i, win, count: win.length, merchants: merchants.size, terminals: terminals.size, crossed: win.length >= o.minCount && distinct >= o.minDistinct };
  });
}

describe('card_testing', () => {
  it('parameters: documented defaults; bad values throw', () => {
    expect(cardTestingParams.parse({})).toEqual({
      windowMs: 600_000,
      smallAmount: 2,
      smallAmountByCurrency: {},
      minCount: 5,
      minDistinct: 3,
      distinctBy: 'either',
      per: 'account',
      channels: ['card', 'ecommerce', 'online', 'cnp', 'moto'],
      direction: 'debit',
      maxEvents: 500,
      maxCards: 16,
      cooldownMs: 600_000,
    });
    expect(() => cardTestingParams.parse({ minDistinct: 6 })).toThrow(/minDistinct/);
    expect(() => cardTestingParams.parse({ smallAmount: -1 })).toThrow(/smallAmount/);
    expect(() => cardTestingParams.parse({ distinctBy: 'mcc' })).toThrow(/distinctBy/);
  });

  it('ordinary traffic (with transit taps and coffees under 2.00) stays silent (several seeds)', () => {
    for (const seed of SEEDS) {
      const { txs } = noise(seed);
      expect(txs.filter((t) => t.amount <= 2).length).toBeGreaterThan(200);
      for (const per of ['account', 'card'] as const) expect(runChecked(cardTestingSpec, { per }, txs).findings, `seed ${seed}`).toEqual([]);
    }
  });

  const scenario = (seed = 1) => {
    const tr = noise(seed);
    const p = tr.profiles.find((x) => x.cards.length === 2) as Profile;
    const start = TX_T0 + 10 * DAY + 3 * HOUR + 12 * MIN;
    const amounts = [1.0, 0.0, 1.99, 0.5, 1.25, 0.01, 1.75, 0.99];
    const shops = ['WEB901', 'WEB902', 'WEB901', 'WEB903', 'WEB904', 'WEB905', 'WEB902', 'WEB906'];
    const rng = mulberry32(seed);
    let ts = start;
    const probes = amounts.map((amount, k) => {
      ts += 35_000 + Math.floor(rng() * 35_000);
      return tx(p, ts, { amount, currency: p.home.currency, channel: 'ecommerce', merchant: shops[k] as string, card: p.cards[1] as string, ip: '203.0.113.9' });
    });
    return { tr, p, probes, events: embed(tr.txs, probes) };
  };

  it('small authorisations at several online shops within minutes fire once, with count, shops and ids', () => {
    const { p, probes, events } = scenario();
    const run = runChecked(cardTestingSpec, {}, events);
    const oracle = cardTestingOracle(events, p.account);
    const x = oracle.find((o) => o.crossed) as (typeof oracle)[number];
    expect(probes.map(ref)).toContain(ref(x.t));
    expect(run.findings).toHaveLength(1);
    const f = run.findings[0] as FindingDraft;
    expect(f.trigger).toBe(ref(x.t));
    expect(f.evidence.observed.count).toBe(x.count);
    expect(f.evidence.observed.distinctMerchants).toBe(x.merchants);
    expect(f.evidence.observed.distinctTerminals).toBe(x.terminals);
    expect(f.evidence.triggers).toEqual(x.win.map(ref));
    expect(f.evidence.observed.amounts).toBe(x.win.map((t) => Math.abs(t.amount).toFixed(2)).join(', '));
    expect(f.windowStart).toBe((x.win[0] as Transaction).ts);
    expect(f.summary).toMatch(new RegExp(`^${p.account} made ${x.count} authorisations of at most 2\\.00 ${p.home.currency} at ${x.merchants} merchants within [\\d.]+ min \\(usual: ([\\d.]+ per 10 min|none before)\\)$`));
    const s = scoresOf(run, probes.map((q) => events.indexOf(q)));
    const k = probes.findIndex((q) => ref(q) === f.trigger);
    expectNonDecreasing(s.slice(0, k + 1));
    expect(s[k] as number).toBeGreaterThanOrEqual(0.8);
    // Per card: the same (all on the second card).
    const perCard = runChecked(cardTestingSpec, { per: 'card' }, events);
    expect(perCard.findings.map((g) => g.trigger)).toEqual([f.trigger]);
    expect(perCard.findings[0]?.summary).toContain(`${p.account} card ${p.cards[1]}`);
  });

  it('stays silent for small payments at too few merchants, too slowly, or above the small amount', () => {
    const { tr, p, probes } = scenario();
    const twoShops = probes.map((q, k) => ({ ...q, merchant: k % 2 === 0 ? 'WEB901' : 'WEB902' }));
    const slow = probes.map((q, k) => ({ ...q, ts: q.ts + k * 4 * MIN }));
    const bigger = probes.map((q) => ({ ...q, amount: q.amount + 2.5 }));
    for (const variant of [twoShops, slow, bigger]) {
      const events = embed(tr.txs, variant);
      expect(cardTestingOracle(events, p.account).some((o) => o.crossed)).toBe(false);
      expect(runChecked(cardTestingSpec, {}, events).findings).toEqual([]);
    }
    // Distinct shops count within the window only: three shops early, then five small auths at two shops
    // more than ten minutes later.
    const t0 = (probes[0] as Transaction).ts;
    const early = ['WEB901', 'WEB902', 'WEB903'].map((m, k) => ({ ...(probes[k] as Transaction), ts: t0 + k * 40_000, merchant: m }));
    const later = [3, 4, 5, 6, 7].map((k, j) => ({ ...(probes[k] as Transaction), ts: t0 + 11 * MIN + j * 40_000, merchant: j % 2 === 0 ? 'WEB904' : 'WEB905' }));
    const split = embed(tr.txs, [...early, ...later]);
    expect(cardTestingOracle(split, p.account).some((o) => o.crossed)).toBe(false);
    expect(cardTestingOracle(split, p.account).some((o) => o.count >= 5)).toBe(true);
    expect(runChecked(cardTestingSpec, {}, split).findings).toEqual([]);
    // distinctBy 'terminal' with one terminal for all shops: one acceptor.
    const oneTerminal = embed(tr.txs, probes.map((q) => ({ ...q, terminal: 'PSP-GW-1' })));
    expect(runChecked(cardTestingSpec, { distinctBy: 'terminal' }, oneTerminal).findings).toEqual([]);
    expect(runChecked(cardTestingSpec, { distinctBy: 'merchant' }, oneTerminal).findings).toHaveLength(1);
  });

  it('survives checkpoints, other parameters on restore and garbage', () => {
    const { tr, p, events } = scenario();
    const few = subset(events, [p.account, ...tr.profiles.slice(0, 3).map((x) => x.account)]);
    for (const per of ['account', 'card'] as const) expect(expectRestorable(detector(cardTestingSpec, { per }), few).findings).toHaveLength(1);
    const det = detector(cardTestingSpec, {});
    const probesEnd = few.findIndex((e) => e.id.startsWith('INJ-')) + 8;
    const a = runDetector(det, few.slice(0, probesEnd));
    const other = detector(cardTestingSpec, { windowMs: 60_000, maxEvents: 2, minCount: 2, minDistinct: 1 });
    const s = other.fromJSON(JSON.parse(JSON.stringify(det.toJSON(a.states.get(p.account))))) as { slots: Map<string, { win: { size: number }; merchants: Map<string, number> }> };
    const sl = s.slots.get('') as { win: { size: number }; merchants: Map<string, number> };
    expect(sl.win.size).toBeLessThanOrEqual(2);
    expect([...sl.merchants.values()].reduce((x, y) => x + y, 0)).toBeLessThanOrEqual(sl.win.size);
    expect(() => det.fromJSON({ v: 1, key: 'A', per: 'account', slots: [{ k: '', entries: [[1]] }] })).toThrow(TypeError);
    // Late events: no crash, the episode is still found.
    expect(runChecked(cardTestingSpec, {}, lateShuffle(events, 5)).findings.filter((f) => f.key === p.account)).toHaveLength(1);
  });
});

// Keep the detector instance type in use for the harness typing.
export type { DetectorInstance };
