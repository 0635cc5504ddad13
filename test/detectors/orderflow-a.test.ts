/**
 * Order-flow detectors, group A: spoofing, layering, momentum_ignition — on a simulated market
 * (test/helpers/order-market.ts: market makers quoting both sides with frequent replaces/cancels, a ladder
 * market maker, takers on both sides, a one-sided institution with large honest orders and sweeps) with a
 * manipulating account's pattern embedded. Every expected number comes from an oracle over the event list
 * (simple-statistics for medians), never from the implementation.
 */
import * as ss from 'simple-statistics';
import { describe, expect, it } from 'vitest';
import { eventRef, findingSchema, type Order } from '../../src/core/events.ts';
import { findingId } from '../../src/core/ids.ts';
import { layeringParams, layeringSpec, PullWindow, type LayeringState, type Pulled } from '../../src/detectors/layering.ts';
import { momentumIgnitionParams, momentumIgnitionSpec, type MomentumIgnitionState } from '../../src/detectors/momentum-ignition.ts';
import { FillLog, OrderFlowBook, applyOrder, newAccountBase, type AccountBase } from '../../src/detectors/orderflow-book.ts';
import { spoofingParams, spoofingSpec, type SpoofingState } from '../../src/detectors/spoofing.ts';
import type { DetectorSpec, FindingDraft } from '../../src/detectors/types.ts';
import { detector, expectRestorable, expectWellFormed, runDetector } from '../helpers/detector-harness.ts';
import { honestMarket, pxOf, SYMBOL, VENUE, type Side } from '../helpers/order-market.ts';
import { mulberry32 } from '../helpers/random.ts';

const T0 = Date.UTC(2024, 7, 8, 12, 0, 0);
const MIN = 60_000;
const KEY = `${VENUE}:${SYMBOL}`;
const NEGATIVE_SEEDS = [1, 2, 3, 4, 5];

type AnySpec = DetectorSpec<any, any>;
const ALL: [string, AnySpec][] = [
  ['spoofing', spoofingSpec],
  ['layering', layeringSpec],
  ['momentum_ignition', momentumIgnitionSpec],
];

function run(spec: AnySpec, events: readonly Order[], params: Record<string, unknown> = {}): { findings: FindingDraft[]; state: any } {
  const r = runDetector(detector(spec, params), events);
  return { findings: r.findings, state: r.states.get(KEY) };
}

const isFill = (e: Order): boolean => e.action === 'fill';
/**
 * The events of [from, to): checkpointing every event of a whole 5-minute market is slow, so the restore
 * checks run on the minute around the manipulation (the detector starts there with an empty state).
 */
const around = (events: readonly Order[], at: number, beforeMs = 15_000, afterMs = 12_000): Order[] => events.filter((e) => e.ts >= at - beforeMs && e.ts < at + afterMs);
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
const opposite = (s: Side): Side => (s === 'buy' ? 'sell' : 'buy');

/** Checks the finding against the canonical schema with its id, as the runner would store it. */
function expectStorable(f: FindingDraft, name: string): void {
  const { trigger, ...rest } = f;
  expect(() => findingSchema.parse({ ...rest, id: findingId(name, `${name}.test`, f.key, trigger), runId: 'test', detector: name, ruleId: `${name}.test` })).not.toThrow();
  expectWellFormed(f);
  expect(f.evidence.triggers).toContain(f.trigger);
  expect(f.evidence.triggers.length).toBeLessThanOrEqual(20);
}

// ------------------------------------------------------------------ scenarios

interface SpoofScenario {
  events: Order[];
  id: string;
  side: Side;
  touchTk: number;
  tk: number;
}

/**
 * SPOOF-1 (otherwise a small taker, quiet around the episode) shows 40 one tick behind the touch and
 * cancels it; 'fill-first': it sells 3 into the bid while the order is up, then cancels (fires on the
 * cancel); 'cancel-first': a large sell, cancelled, then a buy within the window (fires on the buy fill).
 */
function spoofScenario(seed: number, variant: 'fill-first' | 'cancel-first', durationMs = 5 * MIN): SpoofScenario {
  const TS = T0 + 4 * MIN + 137;
  const sim = honestMarket(seed, T0, { 'SPOOF-1': [TS - 10_000, TS + 30_000] });
  const sc = { id: '', side: 'buy', touchTk: 0, tk: 0 } as SpoofScenario;
  if (variant === 'fill-first') {
    sim.at(TS, (s, t) => {
      sc.side = 'buy';
      sc.touchTk = s.m.best('buy') as number;
      sc.tk = sc.touchTk - 1;
      sc.id = s.m.submit(t, 'SPOOF-1', 'buy', sc.tk, 40);
    });
    sim.at(TS + 700, (s, t) => {
      s.m.submit(t, 'SPOOF-1', 'sell', s.m.best('buy', 'SPOOF-1') as number, 3, { ioc: true });
    });
    sim.at(TS + 1_600, (s, t) => {
      s.m.cancel(t, sc.id);
    });
  } else {
    sim.at(TS, (s, t) => {
      sc.side = 'sell';
      sc.touchTk = s.m.best('sell') as number;
      sc.tk = sc.touchTk + 1;
      sc.id = s.m.submit(t, 'SPOOF-1', 'sell', sc.tk, 40);
    });
    sim.at(TS + 1_200, (s, t) => {
      s.m.cancel(t, sc.id);
    });
    sim.at(TS + 2_500, (s, t) => {
      s.m.submit(t, 'SPOOF-1', 'buy', s.m.best('sell', 'SPOOF-1') as number, 3, { ioc: true });
    });
  }
  sc.events = sim.run(durationMs);
  return sc;
}

/** What the spoofing finding must say, computed from the events alone. */
function spoofOracle(sc: SpoofScenario, p = spoofingParams.parse({})) {
  const ev = sc.events;
  const iD = ev.findIndex((e) => e.orderId === sc.id && e.action === 'new');
  const display = ev[iD] as Order;
  const sizes = (pred: (e: Order) => boolean): number[] =>
    ev
      .slice(0, iD)
      .filter((e) => (e.action === 'new' || e.action === 'replace') && e.qty > 0 && e.ts > display.ts - p.sizeWindowMs && pred(e))
      .map((e) => e.qty)
      .slice(-p.maxSizeSamples);
  const inst = sizes(() => true);
  const own = sizes((e) => e.account === 'SPOOF-1');
  const instMed = ss.median(inst);
  const accMed = own.length >= p.minSizeSamples ? ss.median(own) : null;
  const usual = Math.max(accMed ?? 0, p.instrumentFloor * instMed);
  const iC = ev.findIndex((e) => e.orderId === sc.id && e.action === 'cancel');
  const cancel = ev[iC] as Order;
  const oppSide = opposite(sc.side);
  const oppFill = (e: Order): boolean => e.account === 'SPOOF-1' && isFill(e) && e.side === oppSide && e.ts >= display.ts - p.windowMs;
  let iT = iC;
  if (!ev.slice(0, iC).some(oppFill)) iT = ev.findIndex((e, i) => i > iC && oppFill(e) && e.ts <= cancel.ts + p.windowMs);
  const trigger = ev[iT] as Order;
  const fills = ev.slice(0, iT + 1).filter(oppFill);
  const fq = sum(fills.map((e) => e.fillQty as number));
  const touch = pxOf(sc.touchTk);
  const px = pxOf(sc.tk);
  return {
    display,
    cancel,
    trigger,
    fills,
    usual,
    instMed,
    accMed,
    accSamples: own.length,
    qty: display.qty,
    distanceBps: ((sc.side === 'buy' ? touch - px : px - touch) / touch) * 1e4,
    lifetimeMs: cancel.ts - display.ts,
    oppositeQty: fq,
    oppositeVwap: sum(fills.map((e) => (e.fillQty as number) * (e.fillPrice as number))) / fq,
  };
}

interface LayerScenario {
  events: Order[];
  ids: string[];
}

/**
 * LAYER-1 stacks 4 sells 2–5 ticks above the best ask (8, 9, 10, 11) within 300 ms, buys 3 with an IOC
 * ('between': 700 ms in, before the pull; 'after': 2 s in, after the pull) and pulls the stack from 1 s on.
 */
function layerScenario(seed: number, variant: 'between' | 'after', durationMs = 5 * MIN): LayerScenario {
  const TS = T0 + 4 * MIN + 211;
  const sim = honestMarket(seed, T0, { 'LAYER-1': [TS - 10_000, TS + 30_000] });
  const sc: LayerScenario = { events: [], ids: [] };
  let base = 0;
  for (let k = 0; k < 4; k++) {
    sim.at(TS + 100 * k, (s, t) => {
      if (k === 0) base = s.m.best('sell') as number;
      sc.ids.push(s.m.submit(t, 'LAYER-1', 'sell', base + 2 + k, 8 + k));
    });
  }
  sim.at(variant === 'between' ? TS + 700 : TS + 2_000, (s, t) => {
    s.m.submit(t, 'LAYER-1', 'buy', s.m.best('sell', 'LAYER-1') as number, 3, { ioc: true });
  });
  for (let k = 0; k < 4; k++) {
    sim.at(TS + 1_000 + 100 * k, (s, t) => {
      s.m.cancel(t, sc.ids[k] as string);
    });
  }
  sc.events = sim.run(durationMs);
  return sc;
}

function layerOracle(sc: LayerScenario, p = layeringParams.parse({})) {
  const ev = sc.events;
  const cancelIdx = ev.flatMap((e, i) => (e.action === 'cancel' && sc.ids.includes(e.orderId) ? [i] : []));
  const lastPull = ev[cancelIdx[cancelIdx.length - 1] as number] as Order;
  const firstNew = ev.find((e) => e.orderId === sc.ids[0] && e.action === 'new') as Order;
  const buyFill = (e: Order): boolean => e.account === 'LAYER-1' && isFill(e) && e.side === 'buy';
  const execBeforePull = ev.slice(0, cancelIdx[p.minLevels - 1]).some((e) => buyFill(e) && e.ts >= firstNew.ts - p.windowMs);
  // Fires on the minLevels-th pull when the execution came first, else on the first buy fill after the pulls.
  const iT = execBeforePull ? (cancelIdx[p.minLevels - 1] as number) : ev.findIndex((e, i) => i > (cancelIdx[cancelIdx.length - 1] as number) && buyFill(e));
  const pulls = cancelIdx.filter((i) => i <= iT).map((i) => ev[i] as Order);
  const placed = pulls.map((c) => (ev.find((e) => e.orderId === c.orderId && e.action === 'new') as Order).ts);
  const from = Math.min(...placed) - p.windowMs;
  const trigger = ev[iT] as Order;
  const upto = ev.slice(0, iT + 1);
  const fills = upto.filter((e) => buyFill(e) && e.ts >= from);
  const executed = sum(fills.map((e) => e.fillQty as number));
  const shownBuys = sum(upto.filter((e) => e.account === 'LAYER-1' && e.side === 'buy' && (e.action === 'new' || e.action === 'replace') && e.ts >= from).map((e) => e.qty));
  return {
    trigger,
    pulls,
    lastPull,
    levels: new Set(pulls.map((c) => c.price)).size,
    layered: sum(pulls.map((c) => c.qty)),
    executed,
    vwap: sum(fills.map((e) => (e.fillQty as number) * (e.fillPrice as number))) / executed,
    fills,
    shownBuys,
    firstPlaced: Math.min(...placed),
  };
}

interface MomoScenario {
  events: Order[];
  sweepId: string;
  q: number;
  ts: number;
  /** Best ask (ticks) when the sweep arrived. */
  askTk: number;
}

/**
 * MOMO-1 buys through the first three ask levels and into the fourth with one IOC; the fair value follows
 * (market makers re-quote higher), MOMO-1 offers the sweep's quantity one tick above its sweep 1 s later,
 * and momentum buyers (FOLLOW-*) lift the offers over the next seconds.
 */
function momoScenario(seed: number, durationMs = 5.5 * MIN): MomoScenario {
  const TS = T0 + 4 * MIN + 307;
  const sim = honestMarket(seed, T0, { 'MOMO-1': [TS - 10_000, TS + 70_000] });
  const sc: MomoScenario = { events: [], sweepId: '', q: 0, ts: TS, askTk: 0 };
  let limit = 0;
  sim.at(TS, (s, t) => {
    const lv = s.m.levels('sell');
    const q = (lv[0]?.qty ?? 0) + (lv[1]?.qty ?? 0) + (lv[2]?.qty ?? 0) + 1;
    limit = lv[3]?.tk ?? (lv[2]?.tk as number) + 1;
    sc.q = q;
    sc.askTk = lv[0]?.tk as number;
    sc.sweepId = s.m.submit(t, 'MOMO-1', 'buy', limit, q, { ioc: true });
    s.fair = limit + 2;
  });
  sim.at(TS + 1_000, (s, t) => {
    s.m.submit(t, 'MOMO-1', 'sell', limit + 1, sc.q);
  });
  for (let k = 0; k < 6; k++) {
    sim.at(TS + 1_500 + 900 * k, (s, t) => {
      const ask = s.m.best('sell');
      if (ask !== null) s.m.submit(t, `FOLLOW-${(k % 3) + 1}`, 'buy', ask + 1, Math.ceil(sc.q / 5), { ioc: true });
    });
  }
  sc.events = sim.run(durationMs);
  return sc;
}

function momoOracle(sc: MomoScenario, p = momentumIgnitionParams.parse({})) {
  const ev = sc.events;
  const sweep = ev.filter((e) => e.account === 'MOMO-1' && isFill(e) && e.side === 'buy' && e.ts >= sc.ts && e.ts <= sc.ts + p.sweepWindowMs);
  const prices = sweep.map((e) => e.fillPrice as number);
  let levels = 1;
  for (let i = 1; i < prices.length; i++) if ((prices[i] as number) > Math.max(...prices.slice(0, i))) levels++;
  const q = sum(sweep.map((e) => e.fillQty as number));
  const vwap = sum(sweep.map((e) => (e.fillQty as number) * (e.fillPrice as number))) / q;
  const ext = Math.max(...prices);
  const refEv = [...ev].reverse().find((e) => isFill(e) && e.ts < sc.ts) as Order;
  const last = refEv.fillPrice as number;
  const ref = Math.max(last, pxOf(sc.askTk)); // the less favourable start of the two
  const t1 = Math.max(...sweep.map((e) => e.ts));
  let cum = 0;
  const rev: Order[] = [];
  let trigger: Order | undefined;
  for (const e of ev) {
    if (e.account !== 'MOMO-1' || !isFill(e) || e.side !== 'sell' || e.ts < t1 || e.ts - t1 > p.reversalWindowMs) continue;
    if (!((e.fillPrice as number) > vwap)) continue;
    cum += e.fillQty as number;
    rev.push(e);
    if (cum >= p.minReversalRatio * q) {
      trigger = e;
      break;
    }
  }
  const rq = sum(rev.map((e) => e.fillQty as number));
  const rvwap = sum(rev.map((e) => (e.fillQty as number) * (e.fillPrice as number))) / rq;
  return { sweep, levels, q, vwap, ext, ref, last, moveBps: ((ext - ref) / ref) * 1e4, t1, rev, rq, rvwap, trigger };
}

// ------------------------------------------------------------------ parameters

describe('order-flow detectors (group A): parameters', () => {
  it('parse({}) gives the documented defaults', () => {
    expect(spoofingParams.parse({})).toEqual({
      sizeMultiple: 5,
      maxSizeSamples: 100,
      sizeWindowMs: 3_600_000,
      minSizeSamples: 20,
      instrumentFloor: 1,
      nearTouchBps: 10,
      maxLifetimeMs: 10_000,
      minLifetimeMs: 10,
      windowMs: 5_000,
      maxFills: 64,
      maxAccounts: 200,
      maxOpenOrders: 50,
      cooldownMs: 60_000,
    });
    expect(layeringParams.parse({})).toEqual({
      minLevels: 3,
      placeWindowMs: 5_000,
      pullWindowMs: 5_000,
      maxLifetimeMs: 30_000,
      minLifetimeMs: 10,
      windowMs: 5_000,
      minLayerRatio: 1,
      minSideImbalance: 3,
      maxLayerOrders: 32,
      maxFills: 64,
      maxShown: 128,
      maxAccounts: 200,
      maxOpenOrders: 50,
      cooldownMs: 60_000,
    });
    expect(momentumIgnitionParams.parse({})).toEqual({
      aggressorMaxMs: 50,
      sweepWindowMs: 2_000,
      minLevels: 3,
      minMoveBps: 10,
      reversalWindowMs: 60_000,
      minReversalRatio: 0.5,
      minProfitBps: 0,
      maxAccounts: 200,
      maxOpenOrders: 50,
      cooldownMs: 60_000,
    });
    expect([spoofingSpec.name, layeringSpec.name, momentumIgnitionSpec.name]).toEqual(['spoofing', 'layering', 'momentum_ignition']);
    for (const [, spec] of ALL) expect(spec.kinds).toEqual(['order']);
  });

  it('bad values, unknown keys and inconsistent combinations throw', () => {
    expect(() => spoofingParams.parse({ sizeMultiple: 1 })).toThrow(/sizeMultiple/);
    expect(() => spoofingParams.parse({ minSizeSamples: 200 })).toThrow(/minSizeSamples/);
    expect(() => spoofingParams.parse({ minLifetimeMs: 10_000 })).toThrow(/minLifetimeMs/);
    expect(() => spoofingParams.parse({ nearTouchBps: -1 })).toThrow(/nearTouchBps/);
    expect(() => spoofingParams.parse({ sizeMultiplier: 5 })).toThrow(/sizeMultiplier/);
    expect(() => layeringParams.parse({ minLevels: 1 })).toThrow(/minLevels/);
    expect(() => layeringParams.parse({ minLevels: 40 })).toThrow(/minLevels/);
    expect(() => layeringParams.parse({ pullWindowMs: 0 })).toThrow(/pullWindowMs/);
    expect(() => momentumIgnitionParams.parse({ minReversalRatio: 0 })).toThrow(/minReversalRatio/);
    expect(() => momentumIgnitionParams.parse({ aggressorMaxMs: 5_000 })).toThrow(/aggressorMaxMs/);
    expect(() => momentumIgnitionParams.parse({ cooldownMs: 'long' })).toThrow(/cooldownMs/);
  });

  it('fromJSON rejects garbage and accepts state written under other parameters (hot reload), trimming it', () => {
    const sc = spoofScenario(7, 'fill-first', 3 * MIN);
    for (const [name, spec] of ALL) {
      const det = detector(spec);
      expect(() => det.fromJSON(null)).toThrow(TypeError);
      expect(() => det.fromJSON({ v: 2, key: KEY })).toThrow(TypeError);
      expect(() => det.fromJSON({ v: 1, key: KEY, book: { a: 'x' } })).toThrow(TypeError);
      const { state } = run(spec, sc.events);
      const json = JSON.parse(JSON.stringify(det.toJSON(state)));
      expect(() => det.fromJSON({ ...json, book: { ...json.book, a: [['ACC', { o: [['id', 'x']] }]] } }), name).toThrow(TypeError);
      const small = detector(spec, { maxAccounts: 3, maxOpenOrders: 3 });
      const restored = small.fromJSON(json) as { book: OrderFlowBook<AccountBase> };
      expect(restored.book.accounts.size).toBe(3);
      // The three most recently seen accounts survive, in their recency order.
      expect([...restored.book.accounts.keys()]).toEqual([...(state.book as OrderFlowBook<AccountBase>).accounts.keys()].slice(-3));
      for (const acc of restored.book.accounts.values()) expect(acc.orders.size).toBeLessThanOrEqual(3);
      // …and it continues under its own parameters.
      const out: FindingDraft[] = [];
      for (const e of spoofScenario(8, 'fill-first', 2 * MIN).events) small.onEvent(restored, { ...e, ts: e.ts + 3 * MIN }, out);
      expect(restored.book.accounts.size).toBeLessThanOrEqual(3);
    }
  });
});

// ------------------------------------------------------------------ spoofing

describe('spoofing', () => {
  it('fires on the cancel of a large order shown near the touch while the account sold on the other side', () => {
    const sc = spoofScenario(11, 'fill-first');
    const o = spoofOracle(sc);
    const { findings } = run(spoofingSpec, sc.events);
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;
    expect(o.trigger).toBe(o.cancel);
    expect(f.trigger).toBe(eventRef(o.cancel));
    expect(f.ts).toBe(o.cancel.ts);
    expect([f.key, f.account, f.venue, f.symbol]).toEqual(['SPOOF-1', 'SPOOF-1', VENUE, SYMBOL]);
    const { observed, baseline, threshold, triggers } = f.evidence;
    expect(observed.orderId).toBe(sc.id);
    expect(observed.side).toBe('buy');
    expect(observed.oppositeSide).toBe('sell');
    expect(observed.qty).toBe(40);
    expect(observed.price).toBe(pxOf(sc.tk));
    expect(observed.distanceBps as number).toBeCloseTo(o.distanceBps, 4);
    expect(o.distanceBps).toBeGreaterThan(0.9); // one tick behind the touch, ≈ 1 bp
    expect(observed.lifetimeMs).toBe(o.lifetimeMs);
    expect(baseline.instrumentMedianQty).toBe(o.instMed);
    expect(baseline.accountMedianQty).toBe(o.accMed);
    expect(baseline.accountSamples).toBe(o.accSamples);
    expect(baseline.usualQty as number).toBeCloseTo(o.usual, 9);
    expect(observed.sizeMultiple as number).toBeCloseTo(40 / o.usual, 3);
    expect(f.score).toBeCloseTo(40 / o.usual, 3);
    expect(observed.oppositeFills).toBe(o.fills.length);
    expect(observed.oppositeQty as number).toBeCloseTo(o.oppositeQty, 9);
    expect(observed.oppositeVwap as number).toBeCloseTo(o.oppositeVwap, 8);
    expect(observed.spoofToFilledRatio as number).toBeCloseTo(40 / o.oppositeQty, 3);
    expect(threshold).toEqual({ sizeMultiple: 5, nearTouchBps: 10, maxLifetimeMs: 10_000, windowMs: 5_000, instrumentFloor: 1 });
    expect(triggers[0]).toBe(eventRef(o.display));
    expect(triggers).toContain(eventRef(o.cancel));
    for (const fill of o.fills) expect(triggers).toContain(eventRef(fill));
    const multiple = 40 / o.usual;
    expect(f.severity).toBe(multiple >= 20 ? 'critical' : multiple >= 10 ? 'high' : 'medium');
    expect(f.windowEnd).toBe(o.cancel.ts);
    expect(f.windowStart).toBe(Math.min(o.display.ts, ...o.fills.map((e) => e.ts)));
    expect(f.summary).toMatch(/^SPOOF-1 showed a buy order of 40 on ACME-USD at xvgl \(\d+\.\d× its usual [\d.]+, \d\.\d bps from the touch\) and cancelled it after 1\.6 s, while selling \d+ at \d+\.\d{4} on the other side$/);
    expectStorable(f, 'spoofing');
  });

  it('fires on the opposite fill when it comes after the cancel, within the window', () => {
    const sc = spoofScenario(12, 'cancel-first');
    const o = spoofOracle(sc);
    const { findings } = run(spoofingSpec, sc.events);
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;
    expect(o.trigger.action).toBe('fill');
    expect(f.trigger).toBe(eventRef(o.trigger));
    expect(f.ts).toBe(o.trigger.ts);
    expect(f.evidence.observed.firedOn).toBe('fill');
    expect(f.evidence.observed.side).toBe('sell');
    expect(f.evidence.observed.lifetimeMs).toBe(1_200);
    expect(f.evidence.observed.oppositeQty as number).toBeCloseTo(o.oppositeQty, 9);
    expect(f.evidence.observed.distanceBps as number).toBeCloseTo(o.distanceBps, 4);
    expect(f.evidence.baseline.usualQty as number).toBeCloseTo(o.usual, 9);
    expect(f.summary).toMatch(/^SPOOF-1 showed a sell order of 40 .* while buying \d+ at /);
    expectStorable(f, 'spoofing');
  });

  it('stays silent when a threshold is not met (the assertions above can fail)', () => {
    const sc = spoofScenario(11, 'fill-first');
    const o = spoofOracle(sc);
    expect(run(spoofingSpec, sc.events, { maxLifetimeMs: 1_500 }).findings).toEqual([]); // lived 1.6 s
    expect(run(spoofingSpec, sc.events, { sizeMultiple: Math.ceil(40 / o.usual) + 1 }).findings).toEqual([]);
    expect(run(spoofingSpec, sc.events, { nearTouchBps: 0.5 }).findings).toEqual([]); // it sat ≈ 1 bp behind
    expect(run(spoofingSpec, sc.events, { instrumentFloor: 40 / o.instMed + 0.01 }).findings).toEqual([]); // not large for the market
    const late = spoofScenario(12, 'cancel-first');
    expect(run(spoofingSpec, late.events, { windowMs: 1_000 }).findings).toEqual([]); // the purchase came 1.3 s after the cancel
    expect(run(spoofingSpec, late.events, { windowMs: 1_400 }).findings).toHaveLength(1);
  });

  it('a hot reload between display and cancel re-judges the marked order under the new parameters', () => {
    const sc = spoofScenario(11, 'fill-first');
    const o = spoofOracle(sc);
    const cut = sc.events.indexOf(o.display) + 1;
    const a = detector(spoofingSpec);
    const st = a.newState(KEY);
    for (const e of sc.events.slice(0, cut)) a.onEvent(st, e, []);
    const json = JSON.parse(JSON.stringify(a.toJSON(st)));
    const cases: [Record<string, unknown>, number][] = [
      [{}, 1],
      [{ sizeMultiple: 40 / o.usual + 0.1 }, 0],
      [{ nearTouchBps: 0.5 }, 0],
      [{ nearTouchBps: 2, cooldownMs: 1_000 }, 1],
    ];
    for (const [params, n] of cases) {
      const b = detector(spoofingSpec, params);
      const restored = b.fromJSON(json);
      const out: FindingDraft[] = [];
      for (const e of sc.events.slice(cut)) b.onEvent(restored, e, out);
      expect(out.map((f) => f.trigger), JSON.stringify(params)).toEqual(n === 1 ? [eventRef(o.cancel)] : []);
    }
  });

  it('honest flow — large orders that rest, large orders cancelled without opposite fills — stays silent', () => {
    for (const seed of NEGATIVE_SEEDS) {
      const events = honestMarket(seed, T0).run(6 * MIN);
      const { findings, state } = run(spoofingSpec, events);
      expect(findings, `seed ${seed}`).toEqual([]);
      // It was evaluating: honest large orders near the touch were marked (and then rested, or had no opposite fills).
      expect((state as SpoofingState).marked, `seed ${seed}`).toBeGreaterThan(3);
    }
  });

  it('checkpoint/restore at any point gives the same findings', () => {
    for (const [seed, variant] of [[11, 'fill-first'], [12, 'cancel-first']] as const) {
      const sc = spoofScenario(seed, variant);
      const o = spoofOracle(sc);
      const r = expectRestorable(detector(spoofingSpec), around(sc.events, o.display.ts));
      expect(r.findings.map((f) => f.trigger)).toEqual([eventRef(o.trigger)]);
    }
  });
});

// ------------------------------------------------------------------ layering

describe('layering', () => {
  it('fires on the pull that completes minLevels layers after the account bought on the other side', () => {
    const sc = layerScenario(21, 'between');
    const o = layerOracle(sc);
    const { findings } = run(layeringSpec, sc.events);
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;
    expect(o.trigger.action).toBe('cancel');
    expect(f.trigger).toBe(eventRef(o.trigger));
    expect(f.ts).toBe(o.trigger.ts);
    expect([f.key, f.account, f.venue, f.symbol]).toEqual(['LAYER-1', 'LAYER-1', VENUE, SYMBOL]);
    const { observed, baseline, triggers } = f.evidence;
    expect(observed.side).toBe('sell');
    expect(observed.levels).toBe(3);
    expect(o.levels).toBe(3);
    expect(observed.layerOrders).toBe(o.pulls.length);
    expect(observed.layeredQty).toBe(o.layered);
    expect(observed.executedSide).toBe('buy');
    expect(observed.executedQty).toBe(o.executed);
    expect(observed.executedFills).toBe(o.fills.length);
    expect(observed.executedVwap as number).toBeCloseTo(o.vwap, 8);
    expect(observed.layerToExecutedRatio as number).toBeCloseTo(o.layered / o.executed, 3);
    expect(f.score).toBeCloseTo(o.layered / o.executed, 3);
    expect(observed.firstPlacedTs).toBe(o.firstPlaced);
    expect(observed.placeSpanMs).toBe(200);
    expect(observed.pullSpanMs).toBe(200);
    expect(observed.prices).toBe(o.pulls.map((c) => c.price.toFixed(2)).join(', '));
    expect(baseline.oppositeShownQty).toBe(o.shownBuys);
    expect(baseline.oppositeLiveQty).toBe(0);
    for (const c of o.pulls) expect(triggers).toContain(eventRef(c));
    for (const fill of o.fills) expect(triggers).toContain(eventRef(fill));
    expect(f.windowStart).toBe(Math.min(o.firstPlaced, ...o.fills.map((e) => e.ts)));
    expect(f.severity).toBe(o.layered / o.executed >= 10 ? 'high' : 'medium');
    expect(f.summary).toMatch(/^LAYER-1 layered 3 sell price levels on ACME-USD at xvgl \(\d+ at \d+\.\d\d–\d+\.\d\d\), bought \d+ at \d+\.\d{4} on the other side, and pulled the layers within 1\.2 s of placing them \(\d+\.\d× the executed quantity\)$/);
    expectStorable(f, 'layering');
  });

  it('fires on the opposite execution when it comes after the pull, with every pulled level', () => {
    const sc = layerScenario(22, 'after');
    const o = layerOracle(sc);
    const { findings } = run(layeringSpec, sc.events);
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;
    expect(o.trigger.action).toBe('fill');
    expect(f.trigger).toBe(eventRef(o.trigger));
    expect(f.evidence.observed.firedOn).toBe('fill');
    expect(f.evidence.observed.levels).toBe(o.levels);
    expect(o.levels).toBe(4);
    expect(f.evidence.observed.layeredQty).toBe(o.layered);
    expect(f.evidence.observed.executedQty).toBe(o.executed);
    expect(f.evidence.observed.lastPulledTs).toBe(o.lastPull.ts);
    expectStorable(f, 'layering');
  });

  it('stays silent when a threshold is not met', () => {
    const sc = layerScenario(21, 'between');
    const o = layerOracle(sc);
    // Every layer pulled (the stack keeps growing after the minLevels-th pull).
    const stack = sum(sc.events.filter((e) => e.action === 'cancel' && sc.ids.includes(e.orderId)).map((e) => e.qty));
    expect(run(layeringSpec, sc.events, { minLevels: 5 }).findings).toEqual([]); // 4 layers
    expect(run(layeringSpec, sc.events, { minLevels: 4 }).findings).toHaveLength(1);
    expect(run(layeringSpec, sc.events, { minSideImbalance: Math.ceil(stack / o.shownBuys) + 1 }).findings).toEqual([]);
    expect(run(layeringSpec, sc.events, { minLayerRatio: Math.ceil(stack / o.executed) + 1 }).findings).toEqual([]);
    expect(run(layeringSpec, sc.events, { placeWindowMs: 100 }).findings).toEqual([]); // placed over 300 ms: 2 levels at most
    const after = layerScenario(22, 'after');
    expect(run(layeringSpec, after.events, { windowMs: 500 }).findings).toEqual([]); // bought 700 ms after the last pull
  });

  it('honest flow — including a two-sided ladder market maker that cancels and re-enters — stays silent', () => {
    for (const seed of NEGATIVE_SEEDS) {
      const events = honestMarket(seed, T0).run(6 * MIN);
      const { findings, state } = run(layeringSpec, events);
      expect(findings, `seed ${seed}`).toEqual([]);
      // The ladder maker's pulls are layer candidates; the one-sidedness check is what clears them.
      expect((state as LayeringState).candidates, `seed ${seed}`).toBeGreaterThan(50);
      const loose = run(layeringSpec, events, { minSideImbalance: 0 }).findings;
      expect(loose.length, `seed ${seed}`).toBeGreaterThan(0);
      expect(new Set(loose.map((f) => f.account))).toEqual(new Set(['MM-L']));
    }
  });

  it('checkpoint/restore at any point gives the same findings', () => {
    for (const [seed, variant] of [[21, 'between'], [22, 'after']] as const) {
      const sc = layerScenario(seed, variant);
      const o = layerOracle(sc);
      const r = expectRestorable(detector(layeringSpec), around(sc.events, o.firstPlaced));
      expect(r.findings.map((f) => f.trigger)).toEqual([eventRef(o.trigger)]);
    }
  });
});

// ------------------------------------------------------------------ momentum ignition

describe('momentum_ignition', () => {
  it('fires when the sweeping account sells above its sweep price', () => {
    const sc = momoScenario(31);
    const o = momoOracle(sc);
    expect(o.trigger).toBeDefined();
    const { findings } = run(momentumIgnitionSpec, sc.events);
    expect(findings).toHaveLength(1);
    const f = findings[0] as FindingDraft;
    const trigger = o.trigger as Order;
    expect(f.trigger).toBe(eventRef(trigger));
    expect(f.ts).toBe(trigger.ts);
    expect([f.key, f.account, f.venue, f.symbol]).toEqual(['MOMO-1', 'MOMO-1', VENUE, SYMBOL]);
    const { observed, baseline, triggers } = f.evidence;
    expect(observed.sweepSide).toBe('buy');
    expect(observed.sweepQty).toBe(o.q);
    expect(o.q).toBe(sc.q); // the IOC filled completely
    expect(observed.sweepLevels).toBe(o.levels);
    expect(o.levels).toBeGreaterThanOrEqual(4);
    expect(observed.sweepFills).toBe(o.sweep.length);
    expect(observed.sweepVwap as number).toBeCloseTo(o.vwap, 8);
    expect(observed.extremePrice).toBe(o.ext);
    expect(baseline.priceBefore).toBe(o.ref);
    expect(baseline.lastPriceBefore).toBe(o.last);
    expect(baseline.touchBefore).toBe(pxOf(sc.askTk));
    expect(observed.moveBps as number).toBeCloseTo(o.moveBps, 3);
    expect(observed.reversalQty).toBe(o.rq);
    expect(observed.reversalFills).toBe(o.rev.length);
    expect(observed.reversalVwap as number).toBeCloseTo(o.rvwap, 8);
    expect(observed.profitBps as number).toBeCloseTo(((o.rvwap - o.vwap) / o.vwap) * 1e4, 3);
    expect(observed.profitBps as number).toBeGreaterThan(0);
    expect(observed.pnl as number).toBeCloseTo((o.rvwap - o.vwap) * Math.min(o.rq, o.q), 6);
    expect(observed.reversalDelayMs).toBe(trigger.ts - o.t1);
    const strength = Math.max(o.levels / 3, o.moveBps / 10);
    expect(f.score).toBeCloseTo(strength, 3);
    expect(f.severity).toBe(strength >= 4 ? 'critical' : strength >= 2 ? 'high' : 'medium');
    for (const e of o.sweep) expect(triggers).toContain(eventRef(e));
    for (const e of o.rev) expect(triggers).toContain(eventRef(e));
    expect(f.windowStart).toBe(sc.ts);
    expect(f.summary).toMatch(/^MOMO-1 bought \d+ of ACME-USD on xvgl aggressively at once, up to \d price levels in one order \(\d+\.\d\d → \d+\.\d\d, \+\d+\.\d bps\), then sold \d+ at \d+\.\d{4} within \d+(\.\d)? s, \d+\.\d bps better than its sweep's average \d+\.\d{4}$/);
    expectStorable(f, 'momentum_ignition');
  });

  it('stays silent when a threshold is not met', () => {
    const sc = momoScenario(31);
    const o = momoOracle(sc);
    expect(run(momentumIgnitionSpec, sc.events, { minReversalRatio: 5 }).findings).toEqual([]);
    expect(run(momentumIgnitionSpec, sc.events, { minLevels: o.levels + 1, minMoveBps: 100 }).findings).toEqual([]);
    // The move alone qualifies (so low a minMoveBps lets some honest taking qualify too).
    expect(run(momentumIgnitionSpec, sc.events, { minLevels: 20, minMoveBps: o.moveBps - 0.01 }).findings.map((f) => f.trigger)).toContain(eventRef(o.trigger as Order));
    expect(run(momentumIgnitionSpec, sc.events, { reversalWindowMs: 1_400 }).findings).toEqual([]); // first sale 1.5 s after
    expect(run(momentumIgnitionSpec, sc.events, { minProfitBps: Math.ceil(Math.max(...o.rev.map((e) => (((e.fillPrice as number) - o.vwap) / o.vwap) * 1e4))) + 1 }).findings).toEqual([]);
    // A resting order filled later is passive: with a 0-ms aggressor window the same-ms IOC fills still count…
    expect(run(momentumIgnitionSpec, sc.events, { aggressorMaxMs: 0 }).findings).toHaveLength(1);
  });

  it('honest flow — including a one-sided institution that sweeps the book — stays silent', () => {
    for (const seed of NEGATIVE_SEEDS) {
      const events = honestMarket(seed, T0).run(6 * MIN);
      const { findings, state } = run(momentumIgnitionSpec, events);
      expect(findings, `seed ${seed}`).toEqual([]);
      expect((state as MomentumIgnitionState).sweeps, `seed ${seed}`).toBeGreaterThan(0); // the institution's sweeps qualify
    }
  });

  it('checkpoint/restore at any point gives the same findings', () => {
    const sc = momoScenario(31);
    const o = momoOracle(sc);
    const r = expectRestorable(detector(momentumIgnitionSpec), around(sc.events, sc.ts));
    expect(r.findings.map((f) => f.trigger)).toEqual([eventRef(o.trigger as Order)]);
  });
});

// ------------------------------------------------------------------ specificity and bounds

describe('order-flow detectors (group A) together', () => {
  it('each manipulation is found by its own detector only', () => {
    const scenarios: [string, Order[]][] = [
      ['spoofing', spoofScenario(11, 'fill-first').events],
      ['layering', layerScenario(21, 'between').events],
      ['momentum_ignition', momoScenario(31).events],
    ];
    for (const [expected, events] of scenarios) {
      for (const [name, spec] of ALL) expect(run(spec, events).findings.length, `${name} on the ${expected} scenario`).toBe(name === expected ? 1 : 0);
    }
  });

  it('memory per instrument is bounded by the parameters', () => {
    const events = honestMarket(41, T0).run(3 * MIN);
    for (const [name, spec] of ALL) {
      const { state } = run(spec, events, { maxAccounts: 5, maxOpenOrders: 3 });
      const book = state.book as OrderFlowBook<AccountBase>;
      expect(book.accounts.size, name).toBe(5);
      let live = 0;
      for (const acc of book.accounts.values()) {
        expect(acc.orders.size).toBeLessThanOrEqual(3);
        live += acc.orders.size;
      }
      expect(book.bids.size + book.asks.size).toBe(live);
    }
  });
});

// ------------------------------------------------------------------ building blocks, against brute force

describe('order-flow building blocks', () => {
  it('the book tracks live orders and the touch like a brute-force book', () => {
    const rng = mulberry32(5);
    const book = new OrderFlowBook<AccountBase>({ maxAccounts: 1_000, maxOpenOrders: 1_000 }, newAccountBase);
    const live = new Map<string, { side: Side; px: number; rem: number; account: string }>();
    let ts = T0;
    for (let i = 0; i < 4_000; i++) {
      ts += Math.floor(rng() * 20);
      const account = `A${Math.floor(rng() * 6)}`;
      const ids = [...live.keys()].filter((k) => live.get(k)?.account === account);
      const u = rng();
      const base = { kind: 'order', venue: VENUE, symbol: SYMBOL, ts, account } as const;
      if (u < 0.45 || ids.length === 0) {
        const side: Side = rng() < 0.5 ? 'buy' : 'sell';
        const px = pxOf(10_000 + (side === 'buy' ? -1 : 1) * Math.floor(1 + rng() * 10));
        const qty = 1 + Math.floor(rng() * 5);
        const orderId = `o${i}`;
        applyOrder(book, { ...base, orderId, side, price: px, qty, action: 'new' }, {});
        live.set(orderId, { side, px, rem: qty, account });
      } else {
        const id = ids[Math.floor(rng() * ids.length)] as string;
        const o = live.get(id) as { side: Side; px: number; rem: number; account: string };
        if (u < 0.65) {
          applyOrder(book, { ...base, orderId: id, side: o.side, price: o.px, qty: o.rem, action: 'cancel' }, {});
          live.delete(id);
        } else if (u < 0.8) {
          const px = pxOf(Math.round(o.px * 100) + (rng() < 0.5 ? -1 : 1));
          const nid = rng() < 0.5 ? id : `${id}r${i}`;
          applyOrder(book, { ...base, orderId: nid, ...(nid !== id ? { origOrderId: id } : {}), side: o.side, price: px, qty: o.rem, action: 'replace' }, {});
          live.delete(id);
          live.set(nid, { ...o, px });
        } else {
          const q = Math.min(o.rem, 1 + Math.floor(rng() * 3));
          applyOrder(book, { ...base, orderId: id, side: o.side, price: o.px, qty: o.rem, action: 'fill', fillQty: q, fillPrice: o.px }, {});
          o.rem -= q;
          if (o.rem <= 0) live.delete(id);
        }
      }
      const bids = [...live.values()].filter((o) => o.side === 'buy').map((o) => o.px);
      const asks = [...live.values()].filter((o) => o.side === 'sell').map((o) => o.px);
      expect(book.bestBid()).toBe(bids.length ? Math.max(...bids) : null);
      expect(book.bestAsk()).toBe(asks.length ? Math.min(...asks) : null);
    }
    let n = 0;
    for (const acc of book.accounts.values()) {
      n += acc.orders.size;
      const buy = sum([...acc.orders.values()].filter((o) => o.side === 'buy').map((o) => o.rem));
      expect(acc.liveBuy).toBeCloseTo(buy, 9);
    }
    expect(n).toBe(live.size);
  });

  it('the touch falls back to the last fill price when the tracked book is crossed or a side is empty', () => {
    const book = new OrderFlowBook<AccountBase>({ maxAccounts: 10, maxOpenOrders: 10 }, newAccountBase);
    const base = { kind: 'order', venue: VENUE, symbol: SYMBOL, account: 'A', qty: 1 } as const;
    expect(book.touch('buy')).toBeNull();
    applyOrder(book, { ...base, ts: T0, orderId: 'b1', side: 'buy', price: 100, action: 'new' }, {});
    expect(book.touch('buy')).toBe(100);
    expect(book.touch('sell')).toBe(100); // no asks and no fill yet: the other side
    applyOrder(book, { ...base, ts: T0 + 1, orderId: 'x', side: 'sell', price: 0, action: 'fill', fillQty: 1, fillPrice: 100.5 }, {});
    expect(book.touch('sell')).toBe(100.5);
    applyOrder(book, { ...base, ts: T0 + 2, orderId: 's1', side: 'sell', price: 99.5, action: 'new' }, {}); // crossed: a stale order somewhere
    expect(book.touch('buy')).toBe(100.5);
    expect(book.distanceBps('buy', 100.4)).toBeCloseTo(((100.5 - 100.4) / 100.5) * 1e4, 9);
    expect(book.distanceBps('sell', 100.4)).toBe(0); // through the touch
    expect(book.priceBefore(T0 + 1)).toBeNull();
    expect(book.priceBefore(T0 + 2)).toBe(100.5);
  });

  it('FillLog range sums equal brute force', () => {
    const rng = mulberry32(9);
    const log = new FillLog(10_000, 50);
    const all: { ts: number; q: number; p: number }[] = [];
    let ts = T0;
    for (let i = 0; i < 2_000; i++) {
      ts += Math.floor(rng() * 400);
      const q = 1 + Math.floor(rng() * 9);
      const p = 100 + Math.floor(rng() * 10) / 100;
      log.add(ts, `f${i}`, q, p);
      all.push({ ts, q, p });
      const kept = all.filter((f) => f.ts > ts - 10_000).slice(-50);
      const t0 = ts - Math.floor(rng() * 12_000);
      const t1 = t0 + Math.floor(rng() * 8_000);
      const inRange = kept.filter((f) => f.ts >= t0 && f.ts <= t1);
      const r = log.range(t0, t1);
      expect(r.count).toBe(inRange.length);
      expect(r.qty).toBeCloseTo(sum(inRange.map((f) => f.q)), 6);
      expect(r.notional).toBeCloseTo(sum(inRange.map((f) => f.q * f.p)), 4);
    }
  });

  it('PullWindow keeps the longest run of pulls that can be one layer set (brute force)', () => {
    const rng = mulberry32(13);
    const P = { pull: 1_000, place: 800, max: 6 };
    const w = new PullWindow();
    const all: Pulled[] = [];
    let ts = T0;
    for (let i = 0; i < 3_000; i++) {
      ts += Math.floor(rng() * 300);
      const x: Pulled = { id: `p${i}`, px: 100 + Math.floor(rng() * 5), q: 1 + Math.floor(rng() * 4), placed: ts - Math.floor(rng() * 1_500), pulled: ts, opp: 0 };
      w.push(x, P.pull, P.place, P.max);
      all.push(x);
      // Longest suffix whose pulls span ≤ pull, placements span ≤ place, every placement before every pull, ≤ max entries.
      let k = all.length - 1;
      while (k > 0) {
        const cand = all.slice(k - 1);
        const placed = cand.map((c) => c.placed);
        const pulled = cand.map((c) => c.pulled);
        const ok =
          cand.length <= P.max &&
          Math.max(...pulled) - Math.min(...pulled) <= P.pull &&
          Math.max(...placed) - Math.min(...placed) <= P.place &&
          Math.max(...placed) < Math.min(...pulled);
        if (!ok) break;
        k--;
      }
      const expected = all.slice(k);
      expect(w.list().map((c) => c.id)).toEqual(expected.map((c) => c.id));
      expect(w.levels.size).toBe(new Set(expected.map((c) => c.px)).size);
      expect(w.qty).toBe(sum(expected.map((c) => c.q)));
      expect(w.minPlaced).toBe(Math.min(...expected.map((c) => c.placed)));
      expect(w.maxPlaced).toBe(Math.max(...expected.map((c) => c.placed)));
    }
  });
});
