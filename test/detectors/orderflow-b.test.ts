/**
 * orderflow-b detectors: wash_trade, marking_the_close, front_running — on simulated honest order flow
 * (market makers, client takers, crosses, house traders and house quoters; orderflow-b-sim.ts) with
 * constructed abuse embedded in it. Expected findings come from oracles computed here from the
 * simulator's own trade list and order events (simple-statistics for medians and means), not from the
 * detectors' code paths.
 */
import * as ss from 'simple-statistics';
import { describe, expect, it } from 'vitest';
import { SEVERITIES, type Order, type Severity } from '../../src/core/events.ts';
import { washTradeParams, washTradeSpec, type WashTradeState } from '../../src/detectors/wash-trade.ts';
import { markingTheCloseParams, markingTheCloseSpec } from '../../src/detectors/marking-the-close.ts';
import { frontRunningParams, frontRunningSpec, poissonBinomialTail } from '../../src/detectors/front-running.ts';
import type { FindingDraft } from '../../src/detectors/types.ts';
import { detector, expectRestorable, expectWellFormed, runDetector } from '../helpers/detector-harness.ts';
import { mulberry32 } from '../helpers/random.ts';
import { Flow, SYMBOL, VENUE, type Injection, type SimTrade } from './orderflow-b-sim.ts';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const KEY = `${VENUE}:${SYMBOL}`;

const sevRank = (s: Severity): number => SEVERITIES.indexOf(s);
const byTime = (trades: readonly SimTrade[]): SimTrade[] => trades.map((t, i) => ({ t, i })).sort((a, b) => a.t.ts - b.t.ts || a.i - b.i).map((x) => x.t);
const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);

// =====================================================================================================
// wash_trade
// =====================================================================================================

const WASH_T0 = Date.UTC(2024, 7, 8, 9, 0, 0);
const WASH_CONFIG_LINKS = [['CL-5', 'CL-6']];
const WASH_EVENT_LINKS: Record<string, string[]> = { 'CL-1': ['CL-2'] };

function washFlow(seed: number, inject: boolean): { events: Order[]; trades: SimTrade[] } {
  const f = new Flow({
    seed,
    sessions: [[WASH_T0, WASH_T0 + 2 * HOUR]],
    links: WASH_EVENT_LINKS,
    // Honest flow: accounts under common control do not trade with each other.
    noCrossPairs: [['CL-5', 'CL-6']],
  });
  const injections: Injection[] = [];
  if (inject) {
    // (a) CL-3 buys from itself six times, 10 s apart.
    for (let i = 0; i < 6; i++) injections.push({ ts: WASH_T0 + 30 * MIN + i * 10_000, run: (fl, ts) => void fl.cross(ts, 'CL-3', 'CL-3', 'buy', 0.5) });
    // (b) CL-1 (whose orders name CL-2 as linked) buys 3.0 from CL-2.
    injections.push({ ts: WASH_T0 + 60 * MIN, run: (fl, ts) => void fl.cross(ts, 'CL-1', 'CL-2', 'buy', 3) });
    // (c) CL-6 sells 1.0 to CL-5, linked by the rule's configuration only.
    injections.push({ ts: WASH_T0 + 90 * MIN, run: (fl, ts) => void fl.cross(ts, 'CL-6', 'CL-5', 'sell', 1) });
  }
  const events = f.run(injections);
  return { events, trades: byTime(f.trades) };
}

interface WashExpect {
  trigger: string;
  ts: number;
  key: string;
  buyer: string;
  seller: string;
  reason: string;
  count: number;
  qty: number;
  median: number | null;
  ratio: number | null;
  m: number;
  severity: Severity;
  escalation: boolean;
}

/** Independent oracle: wash trades from the simulator's trade list (each trade once), pair windows, cooldown and escalation. */
function washOracle(trades: readonly SimTrade[], opts: { escalate?: boolean; cooldownMs?: number } = {}): WashExpect[] {
  const cooldownMs = opts.cooldownMs ?? 60_000;
  const escalate = opts.escalate ?? true;
  const reasonOf = (b: string, s: string): string | null => {
    if (b === s) return 'same_account';
    if (WASH_CONFIG_LINKS.some((g) => g.includes(b) && g.includes(s))) return 'linked_by_config';
    if ((WASH_EVENT_LINKS[b] ?? []).includes(s) || (WASH_EVENT_LINKS[s] ?? []).includes(b)) return 'linked_by_event';
    return null;
  };
  const sizes: number[] = [];
  const pairs = new Map<string, { fills: SimTrade[]; lastTs: number | null; lastRank: number }>();
  const out: WashExpect[] = [];
  for (const tr of trades) {
    const reason = reasonOf(tr.buyer, tr.seller);
    if (reason === null) {
      sizes.push(tr.qty);
      continue;
    }
    const [a, b] = [tr.buyer, tr.seller].sort() as [string, string];
    const key = a === b ? a : `${a}|${b}`;
    let p = pairs.get(key);
    if (!p) pairs.set(key, (p = { fills: [], lastTs: null, lastRank: -1 }));
    p.fills.push(tr);
    const win = p.fills.filter((f) => f.ts > tr.ts - cooldownMs);
    const qty = sum(win.map((f) => f.qty));
    const median = sizes.length >= 20 ? ss.median(sizes.slice(-500)) : null;
    const ratio = median !== null ? qty / median : null;
    const m = Math.max(win.length / 5, ratio === null ? 0 : ratio / 20);
    const severity: Severity = m >= 4 ? 'critical' : m >= 1 ? 'high' : m >= 0.25 ? 'medium' : 'low';
    const fresh = p.lastTs === null || tr.ts - p.lastTs >= cooldownMs;
    const escalation = !fresh && escalate && sevRank(severity) > p.lastRank;
    if (!fresh && !escalation) continue;
    p.lastTs = tr.ts;
    p.lastRank = sevRank(severity);
    out.push({ trigger: tr.refs[0] as string, ts: tr.ts, key, buyer: tr.buyer, seller: tr.seller, reason, count: win.length, qty, median, ratio, m, severity, escalation });
  }
  return out;
}

function expectWashFindings(findings: readonly FindingDraft[], expected: readonly WashExpect[]): void {
  expect(findings.map((f) => [f.trigger, f.key])).toEqual(expected.map((e) => [e.trigger, e.key]));
  findings.forEach((f, i) => {
    const e = expected[i] as WashExpect;
    const o = f.evidence.observed;
    expect(f.ts).toBe(e.ts);
    expect(f.venue).toBe(VENUE);
    expect(f.symbol).toBe(SYMBOL);
    expect(o.buyer).toBe(e.buyer);
    expect(o.seller).toBe(e.seller);
    expect(o.linkReason).toBe(e.reason);
    expect(o.fillsInWindow).toBe(e.count);
    expect(o.qtyInWindow as number).toBeCloseTo(e.qty, 8);
    expect(o.escalation).toBe(e.escalation);
    expect(f.evidence.baseline.medianFillQty).toBe(e.median);
    if (e.ratio === null) expect(o.volumeRatio).toBeNull();
    else expect(o.volumeRatio as number).toBeCloseTo(e.ratio, 3);
    expect(f.score).toBeCloseTo(e.m, 3);
    expect(f.severity).toBe(e.severity);
    expect(f.evidence.triggers).toContain(e.trigger);
    expect(f.evidence.triggers.length).toBe(Math.min(20, e.count));
    expectWellFormed(f);
  });
}

describe('wash_trade', () => {
  const params = { links: WASH_CONFIG_LINKS };

  it('parameters: defaults parse, bad values throw', () => {
    const d = washTradeParams.parse({});
    expect(d).toEqual({
      links: [],
      cooldownMs: 60_000,
      escalate: true,
      highCount: 5,
      highVolumeRatio: 20,
      maxFillSamples: 500,
      minFillSamples: 20,
      maxRecentFills: 4096,
      dedupeMs: 60_000,
      maxLinkedAccounts: 2000,
      maxLinksPerAccount: 16,
      maxPairs: 500,
      maxFillsPerPair: 1000,
    });
    expect(washTradeSpec.name).toBe('wash_trade');
    expect(washTradeSpec.kinds).toEqual(['order']);
    expect(() => washTradeParams.parse({ cooldownMs: 0 })).toThrow();
    expect(() => washTradeParams.parse({ links: [['A']] })).toThrow();
    expect(() => washTradeParams.parse({ links: [['A', 'A']] })).toThrow(/twice/);
    expect(() => washTradeParams.parse({ minFillSamples: 600 })).toThrow(/maxFillSamples/);
    expect(() => washTradeParams.parse({ highCount: 2.5 })).toThrow();
    expect(() => washTradeParams.parse({ cooldownMS: 1 })).toThrow();
  });

  it('finds self-trades, event-linked and config-linked pairs embedded in honest flow, as the oracle does', () => {
    const { events, trades } = washFlow(7, true);
    const expected = washOracle(trades);
    const det = detector(washTradeSpec, params);
    const { findings, states } = runDetector(det, events);
    // The oracle's view of what was embedded: the CL-3 burst (first fill, then escalations), CL-1|CL-2, CL-5|CL-6.
    expect(new Set(expected.map((e) => e.key))).toEqual(new Set(['CL-3', 'CL-1|CL-2', 'CL-5|CL-6']));
    expect(expected.filter((e) => e.key === 'CL-3').length).toBeGreaterThanOrEqual(2);
    expect(expected.some((e) => e.escalation)).toBe(true);
    expectWashFindings(findings, expected);

    const self = findings.filter((f) => f.key === 'CL-3');
    expect(self[0]?.summary).toMatch(/^CL-3 traded with itself on BTC-USDT \(xlon\): 1 wash fill of 0\.50 within 1 min/);
    expect(self.at(-1)?.severity).toBe('high'); // 5 fills in a minute = highCount
    const linked = findings.find((f) => f.key === 'CL-1|CL-2') as FindingDraft;
    expect(linked.summary).toMatch(/^CL-1 and CL-2 \(linked by their order events\) traded with each other/);
    expect(findings.find((f) => f.key === 'CL-5|CL-6')?.evidence.observed.linkReason).toBe('linked_by_config');

    // Both sides' reports were seen, and counted once.
    const s = states.get(KEY) as WashTradeState;
    expect(s.mirrors).toBeGreaterThan(100);
    expect(s.fills - s.mirrors).toBe(trades.length);
    expect(s.noCounterparty).toBe(0);
  });

  it('without escalation: one finding per pair per cooldown window', () => {
    const { events, trades } = washFlow(7, true);
    const expected = washOracle(trades, { escalate: false });
    const { findings } = runDetector(detector(washTradeSpec, { ...params, escalate: false }), events);
    expectWashFindings(findings, expected);
    expect(findings.filter((f) => f.key === 'CL-3')).toHaveLength(1);
  });

  it('honest flow stays silent (several seeds)', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const { events, trades } = washFlow(seed, false);
      expect(washOracle(trades)).toEqual([]);
      const { findings, states } = runDetector(detector(washTradeSpec, params), events);
      expect(findings, `seed ${seed}`).toEqual([]);
      const s = states.get(KEY) as WashTradeState;
      expect(s.fills).toBeGreaterThan(500);
      expect(s.washFills).toBe(0);
      expect(s.links.get('CL-2')).toEqual(['CL-1']); // learned, symmetric
    }
  });

  it('two genuine identical self-trades count twice; both sides of each count once', () => {
    const mk = (orderId: string, side: 'buy' | 'sell', ts: number): Order => ({
      kind: 'order', venue: VENUE, symbol: SYMBOL, ts, orderId, account: 'A', side, price: 100, qty: 1, action: 'fill', fillQty: 1, fillPrice: 100, counterpartyAccount: 'A',
    });
    const ts = WASH_T0;
    const events = [mk('b1', 'buy', ts), mk('s1', 'sell', ts), mk('b2', 'buy', ts), mk('s2', 'sell', ts), mk('b3', 'buy', ts + 1)];
    const { findings, states } = runDetector(detector(washTradeSpec, { cooldownMs: 60_000, escalate: false }), events);
    expect(findings).toHaveLength(1);
    expect((states.get(KEY) as WashTradeState).washFills).toBe(3);
    expect((states.get(KEY) as WashTradeState).mirrors).toBe(2);
    // With escalation the second genuine fill raises the pair to medium (2 fills = 0.4 × highCount): a second finding.
    const { findings: esc } = runDetector(detector(washTradeSpec), events);
    expect(esc.map((f) => [f.trigger, f.evidence.observed.fillsInWindow, f.severity, f.evidence.observed.escalation])).toEqual([
      [`order:${VENUE}:b1:fill:${ts}`, 1, 'low', false],
      [`order:${VENUE}:b2:fill:${ts}`, 2, 'medium', true],
    ]);
  });

  it('state survives checkpoints; garbage is refused; other parameters accept the JSON', () => {
    const { events } = washFlow(7, true);
    const det = detector(washTradeSpec, params);
    const run = expectRestorable(det, events);
    expect(run.findings.length).toBeGreaterThanOrEqual(3);
    expect(() => det.fromJSON(null)).toThrow(TypeError);
    expect(() => det.fromJSON({ v: 2 })).toThrow(TypeError);
    expect(() => det.fromJSON({ ...(det.toJSON(det.newState(KEY)) as object), pairs: [{ a: 1 }] })).toThrow(TypeError);
    // Hot reload: a state written with other bounds is trimmed under the new ones and continues.
    const half = runDetector(det, events.slice(0, Math.floor(events.length * 0.6)));
    const json = JSON.parse(JSON.stringify(det.toJSON(half.states.get(KEY))));
    const tight = detector(washTradeSpec, { ...params, maxFillSamples: 50, minFillSamples: 10, cooldownMs: 5_000, maxRecentFills: 10 });
    const s = tight.fromJSON(json) as WashTradeState;
    expect(s.sorted.size).toBe(50);
    expect(s.recent.size).toBeLessThanOrEqual(10);
    const out: FindingDraft[] = [];
    for (const ev of events.slice(Math.floor(events.length * 0.6))) tight.onEvent(s, ev, out);
    expect(out.length).toBeGreaterThan(0);
  });
});

// =====================================================================================================
// marking_the_close
// =====================================================================================================

const MTC_DAYS = 10;
/** Closes at 00:00 UTC (the default close time): MTC_FIRST_CLOSE + d days. */
const MTC_FIRST_CLOSE = Date.UTC(2024, 7, 2, 0, 0, 0);
const mtcClose = (d: number): number => MTC_FIRST_CLOSE + d * DAY;
const orderRef = (e: Order): string => `order:${e.venue}:${e.orderId}:${e.action}:${e.ts}`;

/** Ten days of trading around the daily close (40 min before to 5 min after); CL-7 marks the last close when asked. */
function mtcFlow(seed: number, manipulate: boolean): { events: Order[]; trades: SimTrade[] } {
  const sessions: Array<[number, number]> = [];
  for (let d = 0; d < MTC_DAYS; d++) sessions.push([mtcClose(d) - 40 * MIN, mtcClose(d) + 5 * MIN]);
  const f = new Flow({ seed, sessions, mmEveryMs: 20_000, takerEveryMs: 15_000 });
  const injections: Injection[] = [];
  if (manipulate) {
    // In the last 8 minutes CL-7 buys 4.0 every 20 s at the market: 24 buys pushing the price up.
    const close = mtcClose(MTC_DAYS - 1);
    for (let i = 0; i < 24; i++) injections.push({ ts: close - 8 * MIN + i * 20_000, run: (fl, ts) => void fl.take(ts, 'CL-7', 'buy', 4, 'agency') });
  }
  const events = f.run(injections);
  return { events, trades: byTime(f.trades) };
}

interface MtcExpect {
  account: string;
  close: number;
  trigger: string;
  ts: number;
  share: number;
  impactBps: number;
  vol: number;
  buy: number;
  sell: number;
  total: number;
  startPx: number;
  closePx: number;
  usual: number;
  baselineCloses: number;
}

/** Independent oracle over the simulator's trades and events, closes evaluated by the first event at or after them. */
function mtcOracle(
  events: readonly Order[],
  trades: readonly SimTrade[],
  closes: readonly number[],
  p: { windowMs?: number; minShare?: number; minImpactBps?: number; volumeMultiple?: number; baselineDays?: number; minBaselineDays?: number } = {},
): MtcExpect[] {
  const windowMs = p.windowMs ?? 10 * MIN;
  const minShare = p.minShare ?? 0.3;
  const minImpactBps = p.minImpactBps ?? 20;
  const k = p.volumeMultiple ?? 3;
  const baselineDays = p.baselineDays ?? 20;
  const minBaselineDays = p.minBaselineDays ?? 5;
  const history: Array<Map<string, number>> = []; // per observed close: account → window volume
  const out: MtcExpect[] = [];
  for (const c of closes) {
    const ws = c - windowMs;
    const after = events.find((e) => e.ts >= c);
    if (!after) continue; // never evaluated
    if (!events.some((e) => e.ts >= ws && e.ts < c)) continue; // not observed
    const win = trades.filter((t) => t.ts >= ws && t.ts < c);
    const vol = new Map<string, { vol: number; buy: number; sell: number }>();
    const acc = (a: string) => {
      let v = vol.get(a);
      if (!v) vol.set(a, (v = { vol: 0, buy: 0, sell: 0 }));
      return v;
    };
    for (const t of win) {
      acc(t.buyer).buy += t.qty;
      acc(t.seller).sell += t.qty;
      acc(t.buyer).vol += t.qty;
      if (t.seller !== t.buyer) acc(t.seller).vol += t.qty;
    }
    const total = sum(win.map((t) => t.qty));
    const before = trades.filter((t) => t.ts < ws);
    const startPx = before.length > 0 ? (before.at(-1) as SimTrade).price : win[0]?.price;
    const closePx = win.at(-1)?.price;
    const prior = history.slice(-baselineDays);
    if (prior.length >= minBaselineDays && total > 0 && startPx !== undefined && closePx !== undefined) {
      for (const [a, v] of vol) {
        const share = v.vol / total;
        const net = v.buy - v.sell;
        if (net === 0) continue;
        const impactBps = Math.sign(net) * (closePx / startPx - 1) * 1e4;
        const usual = ss.mean(prior.map((h) => h.get(a) ?? 0));
        if (share >= minShare && impactBps >= minImpactBps && v.vol >= k * usual) {
          out.push({ account: a, close: c, trigger: orderRef(after), ts: after.ts, share, impactBps, vol: v.vol, buy: v.buy, sell: v.sell, total, startPx, closePx, usual, baselineCloses: prior.length });
        }
      }
    }
    history.push(new Map([...vol].map(([a, v]) => [a, v.vol])));
  }
  return out;
}

function expectMtcFindings(findings: readonly FindingDraft[], expected: readonly MtcExpect[]): void {
  expect(findings.map((f) => [f.key, f.trigger])).toEqual(expected.map((e) => [e.account, e.trigger]));
  findings.forEach((f, i) => {
    const e = expected[i] as MtcExpect;
    const o = f.evidence.observed;
    expect(f.account).toBe(e.account);
    expect(f.ts).toBe(e.ts);
    expect(f.windowStart).toBe(e.close - 10 * MIN);
    expect(f.windowEnd).toBe(e.close);
    expect(o.share as number).toBeCloseTo(e.share, 5);
    expect(o.impactBps as number).toBeCloseTo(e.impactBps, 3);
    expect(f.score).toBeCloseTo(e.impactBps, 3);
    expect(o.accountQty as number).toBeCloseTo(e.vol, 8);
    expect(o.boughtQty as number).toBeCloseTo(e.buy, 8);
    expect(o.soldQty as number).toBeCloseTo(e.sell, 8);
    expect(o.netSide).toBe(e.buy > e.sell ? 'buy' : 'sell');
    expect(o.instrumentQty as number).toBeCloseTo(e.total, 8);
    expect(o.startPrice).toBe(e.startPx);
    expect(o.closePrice).toBe(e.closePx);
    expect(f.evidence.baseline.usualQty as number).toBeCloseTo(e.usual, 8);
    expect(f.evidence.baseline.baselineCloses).toBe(e.baselineCloses);
    if (e.usual === 0) expect(o.volumeRatio).toBeNull();
    else expect(o.volumeRatio as number).toBeCloseTo(e.vol / e.usual, 3);
    const g = Math.min(e.share / 0.3, e.impactBps / 20, e.usual === 0 ? Infinity : e.vol / e.usual / 3);
    expect(f.severity).toBe(g >= 3 ? 'critical' : g >= 2 ? 'high' : 'medium');
    expect(f.evidence.triggers.length).toBeGreaterThan(0);
    expectWellFormed(f);
  });
}

describe('marking_the_close', () => {
  const closes = Array.from({ length: MTC_DAYS }, (_, d) => mtcClose(d));

  it('parameters: defaults parse, bad values throw', () => {
    expect(markingTheCloseParams.parse({})).toEqual({
      closeTimeUtc: '00:00',
      windowMs: 600_000,
      minShare: 0.3,
      minImpactBps: 20,
      volumeMultiple: 3,
      baselineDays: 20,
      minBaselineDays: 5,
      cooldownMs: 60_000,
      maxAccounts: 2000,
      maxRecentFills: 4096,
      dedupeMs: 60_000,
    });
    expect(markingTheCloseSpec.name).toBe('marking_the_close');
    expect(markingTheCloseSpec.kinds).toEqual(['order']);
    expect(markingTheCloseParams.parse({ closeTimeUtc: ['16:30', '12:00'] }).closeTimeUtc).toEqual(['16:30', '12:00']);
    expect(() => markingTheCloseParams.parse({ closeTimeUtc: '24:00' })).toThrow(/HH:MM/);
    expect(() => markingTheCloseParams.parse({ closeTimeUtc: '4pm' })).toThrow();
    expect(() => markingTheCloseParams.parse({ closeTimeUtc: [] })).toThrow();
    expect(() => markingTheCloseParams.parse({ closeTimeUtc: ['00:00', '00:05'] })).toThrow(/windowMs/);
    expect(() => markingTheCloseParams.parse({ minShare: 1.5 })).toThrow();
    expect(() => markingTheCloseParams.parse({ minBaselineDays: 30 })).toThrow(/baselineDays/);
    expect(() => markingTheCloseParams.parse({ windowMs: -1 })).toThrow();
  });

  it('finds the account that marks the close in honest flow, as the oracle does', () => {
    const { events, trades } = mtcFlow(3, true);
    const expected = mtcOracle(events, trades, closes);
    expect(expected.map((e) => [e.account, e.close])).toEqual([['CL-7', mtcClose(MTC_DAYS - 1)]]);
    const { findings } = runDetector(detector(markingTheCloseSpec), events);
    expectMtcFindings(findings, expected);
    const f = findings[0] as FindingDraft;
    expect(f.summary).toMatch(/^CL-7 bought on net and made \d+\.\d% of BTC-USDT's volume on xlon in the 10 min before the 00:00 UTC close \([\d.,]+ of [\d.,]+\), while the price moved \d+\.\d bps up \([\d,]+\.\d\d → [\d,]+\.\d\d\); \d+\.\d× its usual \d+\.\d{1,4} in that window$/);
    // The evidence lists CL-7's own fills of the window (newest 20).
    const cl7 = trades.filter((t) => t.ts >= mtcClose(MTC_DAYS - 1) - 10 * MIN && t.ts < mtcClose(MTC_DAYS - 1) && (t.buyer === 'CL-7' || t.seller === 'CL-7'));
    expect(f.evidence.triggers).toEqual(cl7.slice(-20).map((t) => t.refs[0]));
  });

  it('honest flow stays silent (several seeds)', () => {
    let loose = 0;
    for (const seed of [1, 2, 3, 4]) {
      const { events, trades } = mtcFlow(seed, false);
      expect(mtcOracle(events, trades, closes), `oracle, seed ${seed}`).toEqual([]);
      const { findings, states } = runDetector(detector(markingTheCloseSpec), events);
      expect(findings, `seed ${seed}`).toEqual([]);
      expect((states.get(KEY) as { closes: number }).closes).toBe(MTC_DAYS);
      loose += runDetector(detector(markingTheCloseSpec, { minImpactBps: 8, volumeMultiple: 1.5, minShare: 0.2 }), events).findings.length;
    }
    // Not vacuous: with looser thresholds the same honest flow does produce candidates.
    expect(loose).toBeGreaterThan(0);
  });

  it('needs an event after the close; close times of other days without flow are not observed', () => {
    const { events, trades } = mtcFlow(3, true);
    const last = mtcClose(MTC_DAYS - 1);
    const cut = events.filter((e) => e.ts < last);
    expect(runDetector(detector(markingTheCloseSpec), cut).findings).toEqual([]);
    const late = { ...(events.find((e) => e.ts >= last) as Order), ts: last + 3 * HOUR };
    const one = runDetector(detector(markingTheCloseSpec), [...cut, late]).findings;
    expect(one).toHaveLength(1);
    expect(one[0]?.trigger).toBe(orderRef(late));
    // A noon close as well: its windows had no flow, so it never counts; the midnight finding is the same.
    const both = runDetector(detector(markingTheCloseSpec, { closeTimeUtc: ['12:00', '00:00'] }), events).findings;
    const expected = mtcOracle(events, trades, closes);
    expectMtcFindings(both, expected);
    // Too little history (minBaselineDays above the days seen): silent.
    expect(runDetector(detector(markingTheCloseSpec, { minBaselineDays: 10, baselineDays: 20 }), events).findings).toEqual([]);
  });

  it('state survives checkpoints; garbage is refused; other close times accept the JSON', () => {
    const { events } = mtcFlow(3, true);
    const det = detector(markingTheCloseSpec);
    const run = expectRestorable(det, events);
    expect(run.findings).toHaveLength(1);
    expect(() => det.fromJSON(undefined)).toThrow(TypeError);
    expect(() => det.fromJSON({ v: 1, key: KEY })).toThrow(TypeError);
    expect(() => det.fromJSON({ ...(det.toJSON(det.newState(KEY)) as object), accounts: [['A', { close: 'x' }, [], null]] })).toThrow(TypeError);
    // Hot reload onto another close time: the open window is dropped, the history kept, and it continues.
    const cutAt = events.findIndex((e) => e.ts >= mtcClose(MTC_DAYS - 1) - 5 * MIN);
    const half = runDetector(det, events.slice(0, cutAt));
    const json = JSON.parse(JSON.stringify(det.toJSON(half.states.get(KEY))));
    const other = detector(markingTheCloseSpec, { closeTimeUtc: '23:59', windowMs: 5 * MIN });
    const s = other.fromJSON(json) as { nextClose: number; saw: boolean };
    expect(s.nextClose).toBe(mtcClose(MTC_DAYS - 1) - MIN);
    expect(s.saw).toBe(false);
    const out: FindingDraft[] = [];
    for (const ev of events.slice(cutAt)) other.onEvent(s, ev, out);
    expect(out).toEqual([]); // no observed 23:59 closes before: no baseline
    // The same parameters continue the window exactly.
    const same = det.fromJSON(json);
    const out2: FindingDraft[] = [];
    for (const ev of events.slice(cutAt)) det.onEvent(same, ev, out2);
    expect(out2).toEqual(run.findings);
  });
});

// =====================================================================================================
// front_running
// =====================================================================================================

const FR_T0 = Date.UTC(2024, 7, 8, 8, 0, 0);
const FR_END = FR_T0 + 7 * HOUR;

interface FrInject {
  /** HOUSE-1 (trades every ~6 min at random) buys ahead of three large client buys, 1.5 s before each. */
  repeat?: boolean;
  /** HOUSE-2 (trades every ~3 h) sells 20 ms before one large client sell (an algorithm reacting to the client's order). */
  rare?: boolean;
  /** HOUSE-1 sells out 45 s after each client order it ran ahead of. */
  closeOut?: boolean;
}

/** A trading day: client takers, large client orders every ~20 min, a random house trader, a rare one and a house quoter. */
function frFlow(seed: number, inject: FrInject = {}): { events: Order[]; trades: SimTrade[] } {
  const f = new Flow({
    seed,
    sessions: [[FR_T0, FR_END]],
    mmEveryMs: 60_000,
    takerEveryMs: 15_000,
    largeEveryMs: 20 * MIN,
    houses: [
      { account: 'HOUSE-1', everyMs: 6 * MIN, medianQty: 1 },
      { account: 'HOUSE-2', everyMs: 3 * HOUR, medianQty: 1 },
    ],
    houseMMs: [{ account: 'HOUSE-MM', everyMs: 30_000 }],
  });
  const inj: Injection[] = [];
  if (inject.repeat) {
    for (let i = 0; i < 3; i++) {
      const t = FR_T0 + (3 + i) * HOUR + 17_000;
      inj.push({ ts: t, run: (fl, ts) => void fl.take(ts, 'HOUSE-1', 'buy', 2, 'principal') });
      inj.push({ ts: t + 1_500, run: (fl, ts) => void fl.take(ts, 'CL-4', 'buy', 8, 'agency', { pieces: 3 }) });
      if (inject.closeOut) inj.push({ ts: t + 1_500 + 45_000, run: (fl, ts) => void fl.take(ts, 'HOUSE-1', 'sell', 2, 'principal') });
    }
  }
  if (inject.rare) {
    const t = FR_T0 + 6 * HOUR + 33_000;
    inj.push({ ts: t, run: (fl, ts) => void fl.take(ts, 'HOUSE-2', 'sell', 1.5, 'principal') });
    inj.push({ ts: t + 20, run: (fl, ts) => void fl.take(ts, 'CL-6', 'sell', 9, 'agency', { pieces: 3 }) });
  }
  const events = f.run(inj);
  return { events, trades: byTime(f.trades) };
}

/** P(X ≥ k) for independent Bernoulli trials, by grouping equal probabilities into binomials and convolving exact pmfs. */
function tailByBinomials(ps: readonly number[], k: number): number {
  const groups = new Map<number, number>();
  for (const p of ps) groups.set(p, (groups.get(p) ?? 0) + 1);
  let dist = [1];
  for (const [p, n] of groups) {
    const pmf: number[] = [];
    for (let j = 0; j <= n; j++) {
      let c = 1;
      for (let i = 1; i <= j; i++) c = (c * (n - j + i)) / i;
      pmf.push(c * p ** j * (1 - p) ** (n - j));
    }
    const next = new Array<number>(dist.length + n).fill(0);
    dist.forEach((a, i) => pmf.forEach((b, j) => (next[i + j] = (next[i + j] as number) + a * b)));
    dist = next;
  }
  return sum(dist.slice(k));
}

interface FrExpect {
  house: string;
  trigger: string;
  ts: number;
  clientOrderId: string;
  clientQty: number;
  houseOrderId: string;
  lead: number;
  leadThreshold: number;
  ordersAhead: number;
  hits: number;
  candidates: number;
  chance: number;
  usual: number;
  samples: number;
  ratePerHour: number;
  closeOut: { orderId: string; price: number; entry: number; pnlBps: number } | null;
}

interface FrOptions {
  requireCloseOut?: boolean;
  maxChanceProb?: number;
  leadMs?: number;
}

/** Independent oracle over the order events (defaults of the detector unless given). */
function frOracle(events: readonly Order[], o: FrOptions = {}): { expected: FrExpect[]; coincidences: number; large: number } {
  const leadMs = o.leadMs ?? 60_000;
  const alpha = o.maxChanceProb ?? 0.0001;
  const M = 20;
  const rateWindowMs = 4 * HOUR;
  const closeOutMs = 10 * MIN;
  const cooldownMs = 60_000;
  const startTs = (events[0] as Order).ts;
  const isHouse = (e: Order): boolean => e.capacity === 'principal';
  const clientQty: number[] = [];
  const cands: Array<{ id: string; account: string; side: string; ts: number; gap: number | null; qty: number; firstFill: number | null }> = [];
  const hitsBy = new Map<string, Array<{ id: string; lead: number }>>();
  const lastFinding = new Map<string, number>();
  const pending: Array<FrExpect & { side: string; cand: (typeof cands)[number] }> = [];
  const expected: FrExpect[] = [];
  let coincidences = 0;
  let large = 0;
  events.forEach((e, idx) => {
    if (e.action === 'new' && !isHouse(e) && e.capacity === 'agency') {
      const base = clientQty.slice(-500);
      const usual = base.length >= 30 ? ss.median(base) : NaN;
      clientQty.push(e.qty);
      if (!(e.qty >= 5 * usual)) return;
      large += 1;
      const prevCand = cands.at(-1);
      const cand = { id: e.orderId, account: e.account, side: e.side, ts: e.ts, gap: prevCand ? e.ts - prevCand.ts : null, qty: e.qty, firstFill: null };
      cands.push(cand);
      const look = cands.slice(-M);
      const t = e.ts;
      const before = events.slice(0, idx);
      const ahead = before.filter((h) => h.action === 'new' && isHouse(h) && h.side === e.side && h.account !== e.account && h.ts > t - leadMs && h.ts <= t);
      const live = ahead.filter((h) => {
        const cancelled = before.some((x) => x.action === 'cancel' && x.orderId === h.orderId);
        const filled = before.some((x) => x.action === 'fill' && x.orderId === h.orderId);
        return !cancelled || filled;
      });
      for (const house of [...new Set(live.map((h) => h.account))].sort()) {
        const mine = live.filter((h) => h.account === house);
        const near = mine.reduce((a, b) => (b.ts >= a.ts ? b : a));
        const lead = t - near.ts;
        coincidences += 1;
        const hits = [...(hitsBy.get(house) ?? []).filter((x) => look.some((c) => c.id === x.id)), { id: cand.id, lead }];
        hitsBy.set(house, hits);
        const bucketMs = rateWindowMs / 24;
        const rate = (side: string): { rate: number; n: number; span: number } => {
          const cur = Math.floor(t / bucketMs);
          const n = before.filter((h) => h.action === 'new' && h.account === house && h.side === side && Math.floor(h.ts / bucketMs) > cur - 24).length;
          const span = Math.max(leadMs, t - Math.max(startTs, (cur - 23) * bucketMs));
          return { rate: n / span, n, span };
        };
        const rb = rate('buy');
        const rs = rate('sell');
        // Every lead threshold at least this hit's lead; each candidate's window reaches back at most to the previous one.
        const leadOf = new Map(hits.map((x) => [x.id, Math.max(1, x.lead)]));
        const reach = (c: (typeof cands)[number], ell: number): number => (c.gap === null ? ell : Math.min(ell, c.gap));
        const thresholds: number[] = [];
        let best = { tail: Infinity, ell: 0, k: 0 };
        for (const ell of [...new Set(leadOf.values())].filter((l) => l >= Math.max(1, lead)).sort((a, b) => a - b)) {
          if ((leadOf.get(cand.id) as number) > reach(cand, ell)) continue;
          const k = look.filter((c) => leadOf.has(c.id) && (leadOf.get(c.id) as number) <= reach(c, ell)).length;
          thresholds.push(ell);
          const ps = look.map((c) => 1 - Math.exp(-(c.side === 'buy' ? rb : rs).rate * reach(c, ell)));
          const mean = ss.mean(ps);
          while (ps.length < M) ps.push(mean);
          const tail = tailByBinomials(ps, k);
          if (tail < best.tail) best = { tail, ell, k };
        }
        const chance = Math.min(1, best.tail * thresholds.length);
        if (!(chance <= alpha)) continue;
        const last = lastFinding.get(house);
        if (last !== undefined && t - last < cooldownMs) continue;
        const x: FrExpect = {
          house,
          trigger: orderRef(e),
          ts: t,
          clientOrderId: e.orderId,
          clientQty: e.qty,
          houseOrderId: near.orderId,
          lead,
          leadThreshold: best.ell,
          ordersAhead: mine.length,
          hits: best.k,
          candidates: look.length,
          chance,
          usual,
          samples: base.length,
          ratePerHour: (e.side === 'buy' ? rb : rs).rate * HOUR,
          closeOut: null,
        };
        if (o.requireCloseOut) pending.push({ ...x, side: e.side, cand });
        else {
          expected.push(x);
          lastFinding.set(house, t);
        }
      }
      return;
    }
    if (e.action !== 'fill') return;
    if (!isHouse(e)) {
      const c = cands.slice(-M).find((x) => x.id === e.orderId && x.account === e.account);
      if (c && (c.firstFill === null || e.ts < c.firstFill)) c.firstFill = e.ts;
      return;
    }
    if (!o.requireCloseOut) return;
    for (let i = pending.length - 1; i >= 0; i--) {
      const p = pending[i] as (typeof pending)[number];
      if (e.ts - (p.cand.firstFill ?? p.cand.ts) > closeOutMs) pending.splice(i, 1);
    }
    const i = pending.findIndex((p) => p.house === e.account && p.side !== e.side && p.cand.firstFill !== null && e.ts >= p.cand.firstFill && e.ts - p.cand.firstFill <= closeOutMs);
    if (i < 0) return;
    const p = pending.splice(i, 1)[0] as (typeof pending)[number];
    const last = lastFinding.get(p.house);
    if (last !== undefined && e.ts - last < cooldownMs) return;
    const entryFills = events.slice(0, idx).filter((x) => x.action === 'fill' && x.orderId === p.houseOrderId && x.account === p.house);
    const entry = entryFills.length > 0 ? sum(entryFills.map((x) => (x.fillQty as number) * (x.fillPrice as number))) / sum(entryFills.map((x) => x.fillQty as number)) : (events.find((x) => x.orderId === p.houseOrderId) as Order).price;
    const dir = p.side === 'buy' ? 1 : -1;
    const { side: _s, cand: _c, ...rest } = p;
    expected.push({ ...rest, trigger: orderRef(e), ts: e.ts, closeOut: { orderId: e.orderId, price: e.fillPrice as number, entry, pnlBps: dir * ((e.fillPrice as number) / entry - 1) * 1e4 } });
    lastFinding.set(p.house, e.ts);
  });
  return { expected, coincidences, large };
}

function expectFrFindings(findings: readonly FindingDraft[], expected: readonly FrExpect[], alpha = 0.0001): void {
  expect(findings.map((f) => [f.key, f.trigger])).toEqual(expected.map((e) => [e.house, e.trigger]));
  findings.forEach((f, i) => {
    const e = expected[i] as FrExpect;
    const o = f.evidence.observed;
    expect(f.account).toBe(e.house);
    expect(f.ts).toBe(e.ts);
    expect(o.clientOrderId).toBe(e.clientOrderId);
    expect(o.clientQty).toBe(e.clientQty);
    expect(o.houseOrderId).toBe(e.houseOrderId);
    expect(o.leadMs).toBe(e.lead);
    expect(o.houseOrdersAhead).toBe(e.ordersAhead);
    expect(o.hits).toBe(e.hits);
    expect(o.leadThresholdMs).toBe(e.leadThreshold);
    expect(o.candidates).toBe(e.candidates);
    expect(Math.abs(Math.log((o.chance as number) / e.chance))).toBeLessThan(1e-6);
    expect(f.score).toBeCloseTo(-Math.log10(e.chance), 3);
    const g = Math.log10(alpha / e.chance);
    expect(f.severity).toBe(g >= 2 ? 'critical' : g >= 1 ? 'high' : 'medium');
    expect(f.evidence.baseline.usualClientQty).toBe(e.usual);
    expect(f.evidence.baseline.clientSamples).toBe(e.samples);
    expect(f.evidence.baseline.houseOrdersPerHour as number).toBeCloseTo(e.ratePerHour, 5);
    expect(o.sizeRatio as number).toBeCloseTo(e.clientQty / e.usual, 3);
    if (e.closeOut) {
      expect(o.closeOutOrderId).toBe(e.closeOut.orderId);
      expect(o.closeOutPrice).toBe(e.closeOut.price);
      expect(o.entryPrice as number).toBeCloseTo(e.closeOut.entry, 8);
      expect(o.pnlBps as number).toBeCloseTo(e.closeOut.pnlBps, 3);
      expect(f.evidence.triggers.at(-1)).toBe(f.trigger);
    } else {
      expect(o.closeOutOrderId).toBeNull();
      expect(o.pnlBps).toBeNull();
      expect(f.evidence.triggers.at(-1)).toBe(f.trigger);
    }
    expect(f.evidence.triggers[0]).toMatch(new RegExp(`^order:${VENUE}:${e.houseOrderId}:new:`));
    expectWellFormed(f);
  });
}

describe('front_running', () => {
  it('parameters: defaults parse, bad values throw', () => {
    expect(frontRunningParams.parse({})).toEqual({
      houseAccounts: [],
      leadMs: 60_000,
      sizeMultiple: 5,
      minClientOrders: 30,
      maxClientSamples: 500,
      clientBaselineMs: 604_800_000,
      maxChanceProb: 0.0001,
      lookbackCandidates: 20,
      rateWindowMs: 14_400_000,
      requireCloseOut: false,
      closeOutMs: 600_000,
      cooldownMs: 60_000,
      maxAccounts: 200,
      maxOpenOrders: 5000,
    });
    expect(frontRunningSpec.name).toBe('front_running');
    expect(frontRunningSpec.kinds).toEqual(['order']);
    expect(() => frontRunningParams.parse({ maxChanceProb: 0 })).toThrow();
    expect(() => frontRunningParams.parse({ maxChanceProb: 1 })).toThrow();
    expect(() => frontRunningParams.parse({ sizeMultiple: 1 })).toThrow();
    expect(() => frontRunningParams.parse({ minClientOrders: 600 })).toThrow(/maxClientSamples/);
    expect(() => frontRunningParams.parse({ leadMs: 5 * HOUR })).toThrow(/rateWindowMs/);
    expect(() => frontRunningParams.parse({ rateWindowMs: 1_000_001 })).toThrow(/multiple of 24/);
    expect(() => frontRunningParams.parse({ houseAccounts: 'HOUSE-1' })).toThrow();
  });

  it('the Poisson-binomial tail matches grouped exact binomials', () => {
    const rng = mulberry32(5);
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + Math.floor(rng() * 25);
      const levels = [rng() * 0.2, rng() * 0.01, rng() * 0.5];
      const ps = Array.from({ length: n }, () => levels[Math.floor(rng() * 3)] as number);
      const k = Math.floor(rng() * (n + 2));
      const a = poissonBinomialTail(ps, k);
      const b = tailByBinomials(ps, k);
      expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-12 + 1e-9 * b);
    }
    expect(poissonBinomialTail([0.5, 0.5], 0)).toBe(1);
    expect(poissonBinomialTail([0.5, 0.5], 3)).toBe(0);
    expect(poissonBinomialTail([0.5, 0.5], 2)).toBeCloseTo(0.25, 15);
  });

  it('finds a repeat front-runner and a rare one in a trading day, as the oracle does', () => {
    const { events } = frFlow(11, { repeat: true, rare: true });
    const { expected, coincidences, large } = frOracle(events);
    expect(large).toBeGreaterThan(20); // more than the lookback
    expect(coincidences).toBeGreaterThan(expected.length); // house orders ahead by chance exist, and are not flagged
    const houses = expected.map((e) => e.house);
    expect(houses).toContain('HOUSE-1');
    expect(houses).toContain('HOUSE-2');
    expect(houses).not.toContain('HOUSE-MM');
    const { findings } = runDetector(detector(frontRunningSpec), events);
    expectFrFindings(findings, expected);
    // HOUSE-1: caught on a repeat, on one of the client orders it ran ahead of (1.5 s lead).
    const h1 = findings.find((f) => f.key === 'HOUSE-1') as FindingDraft;
    expect(h1.evidence.observed.leadMs).toBe(1_500);
    expect(h1.evidence.observed.hits as number).toBeGreaterThanOrEqual(2);
    expect(h1.evidence.observed.clientAccount).toBe('CL-4');
    // HOUSE-2: a single hit, 20 ms ahead, by an account that rarely trades.
    const h2 = findings.find((f) => f.key === 'HOUSE-2') as FindingDraft;
    expect(h2.evidence.observed.leadMs).toBe(20);
    expect(h2.evidence.observed.hits).toBe(1);
    expect(h2.summary).toMatch(/^House account HOUSE-2 placed a sell of 1\.50 BTC-USDT on xlon 20 ms before client CL-6's sell order of 9\.00 \(\d+\.\d× the usual client order\); 1 of the last \d+ large client orders? had one of its orders at most 20 ms ahead, a 1 in [\d,]+ coincidence at its usual activity$/);
  });

  it('with requireCloseOut: fires on the close-out fill, with the P&L-like difference', () => {
    const { events } = frFlow(11, { repeat: true, rare: true, closeOut: true });
    const { expected } = frOracle(events, { requireCloseOut: true });
    expect(expected.map((e) => e.house)).toEqual(['HOUSE-1']); // HOUSE-2 never closed out
    const { findings } = runDetector(detector(frontRunningSpec, { requireCloseOut: true }), events);
    expectFrFindings(findings, expected);
    const f = findings[0] as FindingDraft;
    expect(f.summary).toMatch(/; it then sold 2\.00 at [\d,]+\.\d\d \([+-]\d+\.\d bps against its entry\) \d+(\.\d)? s after the client order executed$/);
    // Without the close-outs nothing fires in that mode.
    const none = runDetector(detector(frontRunningSpec, { requireCloseOut: true }), frFlow(11, { repeat: true, rare: true }).events);
    expect(none.findings).toEqual([]);
  });

  it('honest flow stays silent (several seeds), though house orders do land ahead of large client orders', () => {
    let coincidences = 0;
    for (const seed of [1, 2, 3, 4, 5]) {
      const { events } = frFlow(seed);
      const oracle = frOracle(events);
      expect(oracle.expected, `oracle, seed ${seed}`).toEqual([]);
      coincidences += oracle.coincidences;
      const { findings } = runDetector(detector(frontRunningSpec), events);
      expect(findings, `seed ${seed}`).toEqual([]);
      // A naive rule (any same-side house order within the lead) would have fired on all of these.
      expect(runDetector(detector(frontRunningSpec, { maxChanceProb: 0.999999 }), events).findings.length).toBeGreaterThan(0);
    }
    expect(coincidences).toBeGreaterThan(20);
  });

  it('houseAccounts marks accounts without a capacity as house', () => {
    const { events } = frFlow(11, { rare: true });
    const stripped = events.map((e) => (e.account === 'HOUSE-2' ? (({ capacity: _c, ...rest }) => rest as Order)(e) : e));
    expect(runDetector(detector(frontRunningSpec), stripped).findings.some((f) => f.key === 'HOUSE-2')).toBe(false);
    expect(runDetector(detector(frontRunningSpec, { houseAccounts: ['HOUSE-2'] }), stripped).findings.some((f) => f.key === 'HOUSE-2')).toBe(true);
  });

  it('state survives checkpoints; garbage is refused; other parameters accept the JSON', () => {
    const { events } = frFlow(11, { repeat: true, rare: true, closeOut: true });
    const run = expectRestorable(detector(frontRunningSpec), events);
    expect(run.findings.length).toBeGreaterThan(0);
    // requireCloseOut (timings pending their close-out), cut right before and after each trigger and elsewhere.
    const closing = detector(frontRunningSpec, { requireCloseOut: true });
    const whole = runDetector(closing, events).findings;
    expect(whole.length).toBeGreaterThan(0);
    const cuts = [1, Math.floor(events.length / 3), Math.floor(events.length / 2)];
    for (const f of whole) {
      const i = events.findIndex((e) => e.ts === f.ts);
      cuts.push(i, i + 1, i - 30, i - 200);
    }
    for (const cut of cuts) {
      const first = runDetector(closing, events.slice(0, cut));
      const restored = closing.fromJSON(JSON.parse(JSON.stringify(closing.toJSON(first.states.get(KEY)))));
      const out: FindingDraft[] = [];
      for (const ev of events.slice(cut)) closing.onEvent(restored, ev, out);
      expect([...first.findings, ...out], `cut at ${cut}`).toEqual(whole);
    }
    const det = detector(frontRunningSpec);
    expect(() => det.fromJSON('x')).toThrow(TypeError);
    expect(() => det.fromJSON({ ...(det.toJSON(det.newState(KEY)) as object), records: [{ uid: 'a' }] })).toThrow(TypeError);
    const half = runDetector(det, events.slice(0, Math.floor(events.length / 2)));
    const json = JSON.parse(JSON.stringify(det.toJSON(half.states.get(KEY))));
    const other = detector(frontRunningSpec, { lookbackCandidates: 5, maxClientSamples: 100, maxAccounts: 2, maxOpenOrders: 10 });
    const s = other.fromJSON(json) as { candidates: unknown[]; clientSorted: { size: number }; houses: Map<string, unknown>; records: Map<number, unknown> };
    expect(s.candidates.length).toBeLessThanOrEqual(5);
    expect(s.clientSorted.size).toBe(100);
    expect(s.houses.size).toBeLessThanOrEqual(2);
    expect(s.records.size).toBeLessThanOrEqual(10);
    const out: FindingDraft[] = [];
    for (const ev of events.slice(Math.floor(events.length / 2))) other.onEvent(s, ev, out);
    for (const f of out) expectWellFormed(f);
  });
});

