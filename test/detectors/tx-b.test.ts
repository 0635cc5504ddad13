/**
 * Payment-flow detectors (group tx-b): rapid_movement, fan_out, fan_in, new_counterparty_large_amount,
 * terminal_risk — on a simulated retail bank: many accounts with salaries from external employers, card
 * payments at merchants with terminals, bills to billers, rent to landlords, transfers between friends
 * (both legs), a few honest new payees, and fraud/chargeback/legit labels at a realistic base rate arriving
 * days after their transactions. Constructed positives are embedded in that traffic; every expected number
 * comes from a brute-force oracle in this file (simple-statistics for the median), not from the detectors.
 */
import * as ss from 'simple-statistics';
import { describe, expect, it } from 'vitest';
import { eventRef, type CanonicalEvent, type Label, type Transaction } from '../../src/core/events.ts';
import { fanInParams, fanInSpec } from '../../src/detectors/fan-in.ts';
import { fanOutParams, fanOutSpec, type FanState } from '../../src/detectors/fan-out.ts';
import { signalScore } from '../../src/detectors/flow-common.ts';
import { newCounterpartyLargeAmountParams, newCounterpartyLargeAmountSpec } from '../../src/detectors/new-counterparty-large-amount.ts';
import { rapidMovementParams, rapidMovementSpec } from '../../src/detectors/rapid-movement.ts';
import { terminalRiskParams, terminalRiskSpec } from '../../src/detectors/terminal-risk.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from '../../src/detectors/types.ts';
import { DistinctCountWindow } from '../../src/stats/distinct-count-window.ts';
import { detector, expectRestorable, expectWellFormed, runDetector, stateKeyOf } from '../helpers/detector-harness.ts';
import { mulberry32 } from '../helpers/random.ts';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const T0 = Date.UTC(2024, 2, 1); // 2024-03-01T00:00:00Z
const DAYS = 45;
const cents = (x: number): number => Math.round(x * 100) / 100;
const pad = (n: number, w = 4): string => String(n).padStart(w, '0');
const accId = (i: number): string => `ACC-${pad(i)}`;

// ------------------------------------------------------------------ the simulated bank

interface Merchant {
  id: string;
  mcc: string;
  terminals: string[];
}

const MERCHANTS: Merchant[] = Array.from({ length: 15 }, (_, i) => {
  const id = `MER-${pad(i + 1, 2)}`;
  return { id, mcc: ['5411', '5812', '5541', '5999', '4111'][i % 5] as string, terminals: Array.from({ length: 1 + (i % 4) }, (_, t) => `${id}-T${t + 1}`) };
});

interface World {
  events: CanonicalEvent[];
  accounts: string[];
}

class Builder {
  private seq = 0;
  readonly events: CanonicalEvent[] = [];
  constructor(readonly prefix: string) {}
  tx(p: Omit<Transaction, 'kind' | 'source' | 'id' | 'currency' | 'channel'> & { channel?: string; id?: string }): Transaction {
    const t: Transaction = { kind: 'transaction', source: 'bank', id: p.id ?? `${this.prefix}${++this.seq}`, currency: 'EUR', channel: 'transfer', ...p };
    this.events.push(t);
    return t;
  }
  label(of: Transaction, ts: number, label: Label['label']): Label {
    const l: Label = { kind: 'label', source: 'bank', txId: of.id, ts, label, account: of.account };
    if (of.merchant !== undefined) l.merchant = of.merchant;
    if (of.terminal !== undefined) l.terminal = of.terminal;
    this.events.push(l);
    return l;
  }
  /** Money between two accounts of the bank: the payer's debit and the receiver's credit. */
  transfer(ts: number, from: string, to: string, amount: number): Transaction {
    const d = this.tx({ ts, account: from, counterparty: to, amount, direction: 'debit' });
    this.tx({ ts, account: to, counterparty: from, amount, direction: 'credit' });
    return d;
  }
}

function sorted(events: CanonicalEvent[]): CanonicalEvent[] {
  return events.map((e, i) => [e, i] as const).sort((a, b) => a[0].ts - b[0].ts || a[1] - b[1]).map(([e]) => e);
}

/**
 * Ordinary traffic: `accounts` retail accounts over DAYS days. Rates per account: 1–4 card payments a day at
 * the merchants (5–150 EUR), a monthly salary (2,000–4,500 EUR) from one of 20 external employers, a monthly
 * rent (600–1,400 EUR) to its own landlord, 3–5 billers paid every ~10 days each (20–150 EUR), transfers to
 * 2–3 friends (~1 a week, 10–200 EUR, both legs), and for ~15% of accounts one honest new payee (50–450 EUR).
 * Card payments get a fraud/chargeback label with probability labelRate and a legit label with 2×labelRate,
 * issued 2–20 days later.
 */
function bank(seed: number, opts: { accounts?: number; labelRate?: number } = {}): World & { b: Builder } {
  const n = opts.accounts ?? 150;
  const labelRate = opts.labelRate ?? 0.0005;
  const rng = mulberry32(seed);
  const b = new Builder(`S${seed}-`);
  const end = T0 + DAYS * DAY;
  const accounts = Array.from({ length: n }, (_, i) => accId(i + 1));
  const within = (day: number, fromH = 7, toH = 22): number => T0 + day * DAY + Math.floor((fromH + rng() * (toH - fromH)) * HOUR);
  for (let i = 0; i < n; i++) {
    const acc = accounts[i] as string;
    const cardPerDay = 1 + rng() * 3;
    const cardScale = 15 + rng() * 45;
    const salary = cents(2000 + rng() * 2500);
    const salaryDay = Math.floor(rng() * 28);
    const employer = `EMP-${pad(1 + Math.floor(rng() * 20), 2)}`;
    const rent = cents(600 + rng() * 800);
    const rentDay = Math.floor(rng() * 28);
    const landlord = `LL-${pad(i + 1)}`;
    const billers = Array.from({ length: 3 + Math.floor(rng() * 3) }, () => `BILL-${pad(1 + Math.floor(rng() * 12), 2)}`);
    const friends = Array.from({ length: 2 + Math.floor(rng() * 2) }, () => accounts[Math.floor(rng() * n)] as string).filter((f) => f !== acc);
    for (let day = 0; day < DAYS; day++) {
      // card payments
      let k = Math.floor(cardPerDay) + (rng() < cardPerDay % 1 ? 1 : 0);
      while (k-- > 0) {
        const m = MERCHANTS[Math.floor(rng() * MERCHANTS.length)] as Merchant;
        const t = b.tx({
          ts: within(day),
          account: acc,
          amount: cents(Math.min(150, Math.max(5, cardScale * (0.2 + 1.8 * rng())))),
          direction: 'debit',
          channel: 'card',
          merchant: m.id,
          terminal: m.terminals[Math.floor(rng() * m.terminals.length)] as string,
          mcc: m.mcc,
          country: 'DE',
          card: `${acc}-C1`,
        });
        const u = rng();
        if (u < labelRate) b.label(t, t.ts + 2 * DAY + Math.floor(rng() * 18 * DAY), rng() < 0.5 ? 'fraud' : 'chargeback');
        else if (u < 3 * labelRate) b.label(t, t.ts + 2 * DAY + Math.floor(rng() * 18 * DAY), 'legit');
      }
      if (day % 30 === salaryDay) b.tx({ ts: within(day, 5, 9), account: acc, counterparty: employer, amount: salary, direction: 'credit' });
      if (day % 30 === rentDay) b.tx({ ts: within(day), account: acc, counterparty: landlord, amount: rent, direction: 'debit' });
      for (const biller of billers) {
        if (rng() < 0.1) b.tx({ ts: within(day), account: acc, counterparty: biller, amount: cents(20 + rng() * 130), direction: 'debit' });
      }
      if (friends.length > 0 && rng() < 0.15) {
        b.transfer(within(day, 8, 23), acc, friends[Math.floor(rng() * friends.length)] as string, cents(10 + rng() * 190));
      }
    }
    if (rng() < 0.15) {
      b.tx({ ts: within(Math.floor(rng() * DAYS)), account: acc, counterparty: `NEWP-${pad(i + 1)}`, amount: cents(50 + rng() * 400), direction: 'debit' });
    }
  }
  b.events.splice(0, b.events.length, ...b.events.filter((e) => e.ts < end));
  return { b, events: sorted(b.events), accounts };
}

const isTx = (e: CanonicalEvent): e is Transaction => e.kind === 'transaction';

// ------------------------------------------------------------------ constructed positives

const MULE = accId(7);
const MULE_HALF = accId(11);
const MULE_SMALL = accId(13);
const FANNER = accId(21);
const RECEIVER = accId(31);
const EXT_RECEIVER = accId(32);
const PAYEE_VICTIM = accId(61);
const RENT_PAYER = accId(62);
const RISKY_MERCHANT = 'MER-03';
const RISKY_TERMINAL = 'MER-03-T2';

interface Scenario extends World {
  rapid: { credit: Transaction; debits: Transaction[] };
  fanOut: Transaction[];
  fanIn: Transaction[];
  newPayee: Transaction;
  badLabels: Label[];
}

function scenario(seed: number): Scenario {
  const w = bank(seed);
  const b = w.b;
  const drop = (acc: string, from: number, to: number): void => {
    b.events.splice(0, b.events.length, ...b.events.filter((e) => !(isTx(e) && e.account === acc && e.ts >= from && e.ts <= to)));
  };

  // rapid_movement: 5,000 in from outside, 4,600 out to four beneficiaries within 50 min (the account quiet ±2 h otherwise).
  const tIn = T0 + 40 * DAY + 14 * HOUR + 3 * MIN;
  for (const a of [MULE, MULE_HALF, MULE_SMALL]) drop(a, tIn - 2 * HOUR, tIn + 2 * HOUR);
  const credit = b.tx({ ts: tIn, account: MULE, counterparty: 'EXT-SRC-1', amount: 5000, direction: 'credit' });
  const debits = [
    [7, 2000, 'BEN-1'],
    [19, 1500, 'BEN-2'],
    [33, 800, 'BEN-3'],
    [50, 300, 'BEN-4'],
  ].map(([m, amt, cp]) => b.tx({ ts: tIn + (m as number) * MIN, account: MULE, counterparty: cp as string, amount: amt as number, direction: 'debit' }));
  // Controls: half of a large credit moved on; all of a credit below minAmount moved on.
  b.tx({ ts: tIn, account: MULE_HALF, counterparty: 'EXT-SRC-2', amount: 5000, direction: 'credit' });
  b.tx({ ts: tIn + 20 * MIN, account: MULE_HALF, counterparty: 'BEN-5', amount: 2500, direction: 'debit' });
  b.tx({ ts: tIn, account: MULE_SMALL, counterparty: 'EXT-SRC-3', amount: 900, direction: 'credit' });
  b.tx({ ts: tIn + 10 * MIN, account: MULE_SMALL, counterparty: 'BEN-6', amount: 900, direction: 'debit' });

  // fan_out: 14 distinct new beneficiaries in 39 minutes.
  const tF = T0 + 41 * DAY + 10 * HOUR + 1 * MIN;
  const rng = mulberry32(seed * 7 + 1);
  const fanOut = Array.from({ length: 14 }, (_, k) =>
    b.tx({ ts: tF + k * 3 * MIN, account: FANNER, counterparty: `MB-${pad(k + 1, 2)}`, amount: cents(150 + rng() * 750), direction: 'debit' }),
  );

  // fan_in: 12 accounts of the bank pay RECEIVER within 44 minutes (both legs); EXT_RECEIVER gets 15 credits from outside only.
  const tR = T0 + 42 * DAY + 9 * HOUR + 2 * MIN;
  const fanIn = Array.from({ length: 12 }, (_, k) => b.transfer(tR + k * 4 * MIN, accId(40 + k), RECEIVER, cents(200 + rng() * 700)));
  for (let k = 0; k < 15; k++) b.tx({ ts: tR + k * 3 * MIN, account: EXT_RECEIVER, counterparty: `EXT-P-${k}`, amount: cents(200 + rng() * 700), direction: 'credit' });

  // new_counterparty_large_amount: 4,000 to a never-paid payee; control: 5,000 to the account's own landlord.
  const tN = T0 + 43 * DAY + 11 * HOUR + 4 * MIN;
  const newPayee = b.tx({ ts: tN, account: PAYEE_VICTIM, counterparty: 'NEW-BENEF-1', amount: 4000, direction: 'debit', channel: 'online' });
  b.tx({ ts: tN, account: RENT_PAYER, counterparty: `LL-${RENT_PAYER.slice(4)}`, amount: 5000, direction: 'debit' });

  // terminal_risk: five card payments at one terminal of MER-03 (days 10–20) are confirmed fraud days later;
  // the first one's label is then overturned (legit).
  // (Noise labels at that terminal are removed, so the evidence below is exactly the constructed labels.)
  b.events.splice(0, b.events.length, ...b.events.filter((e) => !(e.kind === 'label' && e.terminal === RISKY_TERMINAL)));
  const atTerminal = b.events.filter((e): e is Transaction => isTx(e) && e.terminal === RISKY_TERMINAL && e.ts >= T0 + 10 * DAY && e.ts < T0 + 20 * DAY);
  const picked = [0, 3, 6, 9, 12].map((i) => atTerminal[i] as Transaction);
  const badLabels = picked.map((t, i) => b.label(t, T0 + (24 + i) * DAY + 3 * HOUR + i * 17 * MIN, i % 2 === 0 ? 'fraud' : 'chargeback'));
  b.label(picked[0] as Transaction, (badLabels[2] as Label).ts + 1 * MIN, 'legit');

  return { events: sorted(b.events), accounts: w.accounts, rapid: { credit, debits }, fanOut, fanIn, newPayee, badLabels };
}

/** Events of the keys (as the detector keys them) in `keys`, for the restore checks. */
function ofKeys(det: DetectorInstance, events: readonly CanonicalEvent[], keys: readonly string[]): CanonicalEvent[] {
  const set = new Set(keys);
  return events.filter((e) => {
    const k = stateKeyOf(det, e);
    return k !== undefined && set.has(k);
  });
}

/** Noise signals stay below the threshold's 0.8; every signal is a valid [0, 1] score with a reason. */
function expectQuietSignals(run: ReturnType<typeof runDetector>, name: string): void {
  for (const s of run.signals) {
    expect(s.detector).toBe(name);
    expect(s.score).toBeGreaterThan(0);
    expect(s.score).toBeLessThan(0.8);
    expect(s.reason.length).toBeGreaterThan(10);
  }
}

const SEEDS = [101, 202, 303];
const POSITIVE_SEED = 7;
const positive = scenario(POSITIVE_SEED);

// ------------------------------------------------------------------ shared pieces

describe('signalScore and DistinctCountWindow', () => {
  it('signalScore: 0 up to half the threshold, 0.8 at it, rising toward 1, monotone', () => {
    expect(signalScore(0)).toBe(0);
    expect(signalScore(0.5)).toBe(0);
    expect(signalScore(1)).toBe(0.8);
    expect(signalScore(2)).toBeCloseTo(0.9, 10);
    expect(signalScore(Number.POSITIVE_INFINITY)).toBe(1);
    expect(signalScore(Number.NaN)).toBe(0);
    let prev = 0;
    for (let r = 0; r <= 10; r += 0.01) {
      const s = signalScore(r);
      expect(s).toBeGreaterThanOrEqual(prev);
      expect(s).toBeLessThanOrEqual(1);
      prev = s;
    }
  });

  it('DistinctCountWindow matches a brute-force count (random ids, gaps, count bound, JSON round trips)', () => {
    for (const seed of [1, 2, 3, 4]) {
      const rng = mulberry32(seed);
      const span = 1000 + Math.floor(rng() * 5000);
      const maxCount = 5 + Math.floor(rng() * 60);
      let w = new DistinctCountWindow<number>(span, maxCount);
      const all: Array<{ ts: number; id: string }> = [];
      let ts = 0;
      for (let i = 0; i < 3000; i++) {
        ts += rng() < 0.05 ? Math.floor(rng() * 3 * span) : Math.floor(rng() * 200);
        const id = `c${Math.floor(rng() * (rng() < 0.5 ? 8 : 80))}`;
        // Timestamps never decrease, so the window is a suffix of `all` (its newest maxCount at most).
        const live = all.slice(-(maxCount - 1)).filter((s) => s.ts > ts - span);
        const expectNew = !live.some((s) => s.id === id);
        expect(w.push(ts, id, i)).toBe(expectNew);
        all.push({ ts, id });
        const inWindow = all.slice(-maxCount).filter((s) => s.ts > ts - span);
        expect(w.size).toBe(inWindow.length);
        expect(w.distinct).toBe(new Set(inWindow.map((s) => s.id)).size);
        if (i % 97 === 0) w = DistinctCountWindow.fromJSON(JSON.parse(JSON.stringify(w.toJSON())), (v) => v as number);
      }
      expect(() => DistinctCountWindow.fromJSON({ spanMs: 1 }, (v) => v)).toThrow(TypeError);
    }
  });
});

// ------------------------------------------------------------------ noise stays silent

describe('ordinary traffic gives no finding (several seeds)', () => {
  const specs: Array<DetectorSpec<any, any>> = [rapidMovementSpec, fanOutSpec, fanInSpec, newCounterpartyLargeAmountSpec, terminalRiskSpec];
  for (const seed of SEEDS) {
    it(`seed ${seed}`, () => {
      const w = bank(seed);
      expect(w.events.length).toBeGreaterThan(15_000);
      expect(w.events.filter((e) => e.kind === 'label').length).toBeGreaterThan(5);
      for (const spec of specs) {
        const run = runDetector(detector(spec), w.events);
        expect(run.findings, spec.name).toEqual([]);
        expectQuietSignals(run, spec.name);
        expect(run.states.size).toBeGreaterThan(10); // it saw the traffic
      }
    });
  }
});

// ------------------------------------------------------------------ rapid_movement

describe('rapid_movement', () => {
  it('fires on the debit that moves 80% of a 5,000 EUR credit out within the hour, with the evidence', () => {
    const det = detector(rapidMovementSpec);
    const run = runDetector(det, positive.events);
    // Oracle: the MULE's debits after the credit, in order, consumed first-in first-out; the first whose running
    // total reaches 80% of the credit triggers (no other credit of the MULE is pending within the hour).
    const { credit, debits } = positive.rapid;
    let cum = 0;
    let k = -1;
    for (let i = 0; i < debits.length; i++) {
      cum += Math.min((debits[i] as Transaction).amount, credit.amount - cum);
      if (cum >= 0.8 * credit.amount) {
        k = i;
        break;
      }
    }
    expect(k).toBeGreaterThan(0);
    const trigger = debits[k] as Transaction;
    expect(run.findings).toHaveLength(1); // not the controls, nothing from the noise
    const f = run.findings[0] as FindingDraft;
    expect(f.trigger).toBe(eventRef(trigger));
    expect(f.key).toBe(MULE);
    expect(f.account).toBe(MULE);
    expect(f.ts).toBe(trigger.ts);
    expect(f.windowStart).toBe(credit.ts);
    const o = f.evidence.observed;
    expect(o.inAmount).toBe(credit.amount);
    expect(o.outAmount).toBeCloseTo(ss.sum(debits.slice(0, k + 1).map((d) => d.amount)), 6);
    expect(o.fraction).toBeCloseTo(ss.sum(debits.slice(0, k + 1).map((d) => d.amount)) / credit.amount, 4);
    expect(o.holdMs).toBe(trigger.ts - credit.ts);
    expect(o.outPayments).toBe(k + 1);
    expect(o.inTx).toBe(eventRef(credit));
    expect(f.evidence.triggers).toEqual([eventRef(credit), ...debits.slice(0, k + 1).map(eventRef)]);
    expect(f.evidence.threshold).toEqual({ passThroughFraction: 0.8, minAmount: 1000, maxHoldMs: HOUR });
    // 5,000 < 10 × minAmount and a hold above maxHoldMs / 4: medium.
    expect(f.severity).toBe('medium');
    expect(f.score).toBe(o.fraction);
    expect(f.summary).toMatch(/^ACC-0007 moved 4,300\.00 EUR \(86\.0%\) of a 5,000\.00 EUR credit from EXT-SRC-1 out again within 33 min in 3 payments$/);
    // The trigger's signal is at or past the threshold; earlier debits rise toward it.
    const idx = positive.events.indexOf(trigger);
    expect(run.signalsByEvent[idx]?.[0]?.score).toBeGreaterThanOrEqual(0.8);
    const first = run.signalsByEvent[positive.events.indexOf(debits[0] as Transaction)] ?? [];
    expect(first).toEqual([]); // 40% of the credit: r = 0.5, nothing unusual yet
    const second = run.signalsByEvent[positive.events.indexOf(debits[1] as Transaction)]?.[0];
    expect(second?.score).toBeCloseTo(signalScore(0.7 / 0.8), 4);
    // The half-moved control gets a low signal only.
    const half = positive.events.find((e) => isTx(e) && e.account === MULE_HALF && e.counterparty === 'BEN-5') as Transaction;
    expect(run.signalsByEvent[positive.events.indexOf(half)]?.[0]?.score).toBeCloseTo(signalScore(0.5 / 0.8), 4);
  });

  it('respects maxHoldMs, minAmount and cooldown', () => {
    const b = new Builder('r');
    const t = T0;
    b.tx({ ts: t, account: 'A', counterparty: 'X', amount: 2000, direction: 'credit' });
    b.tx({ ts: t + 61 * MIN, account: 'A', counterparty: 'Y', amount: 2000, direction: 'debit' }); // too late
    b.tx({ ts: t + 2 * HOUR, account: 'A', counterparty: 'X', amount: 2000, direction: 'credit' });
    b.tx({ ts: t + 2 * HOUR + 5 * MIN, account: 'A', counterparty: 'Y', amount: 1700, direction: 'debit' }); // 85%: fires
    b.tx({ ts: t + 2 * HOUR + 6 * MIN, account: 'A', counterparty: 'X', amount: 3000, direction: 'credit' });
    b.tx({ ts: t + 2 * HOUR + 8 * MIN, account: 'A', counterparty: 'Y', amount: 3000, direction: 'debit' }); // 100% but cooldown
    b.tx({ ts: t + 3 * HOUR, account: 'A', counterparty: 'X', amount: 20_000, direction: 'credit' });
    b.tx({ ts: t + 3 * HOUR + 4 * MIN, account: 'A', counterparty: 'Y', amount: 19_000, direction: 'debit' }); // big and fast: critical
    const run = runDetector(detector(rapidMovementSpec), b.events);
    expect(run.findings.map((f) => [f.ts, f.severity])).toEqual([
      [t + 2 * HOUR + 5 * MIN, 'high'], // hold 5 min ≤ 15 min
      [t + 3 * HOUR + 4 * MIN, 'critical'],
    ]);
    expect(runDetector(detector(rapidMovementSpec, { minAmount: 2500 }), b.events).findings).toHaveLength(2); // the 3,000 and the 20,000
    expect(runDetector(detector(rapidMovementSpec, { cooldownMs: 0 }), b.events).findings).toHaveLength(3);
    expect(runDetector(detector(rapidMovementSpec, { maxHoldMs: 2 * HOUR, cooldownMs: 0 }), b.events).findings[0]?.ts).toBe(t + 61 * MIN);
  });

  it('restores exactly (checkpoint at every cut) on the positive scenario', () => {
    const det = detector(rapidMovementSpec);
    const run = expectRestorable(det, ofKeys(det, positive.events, [MULE, MULE_HALF, MULE_SMALL, accId(1), accId(2)]));
    expect(run.findings).toHaveLength(1);
  });

  it('parameters: defaults, bad values, garbage state', () => {
    expect(rapidMovementParams.parse({})).toEqual({ maxHoldMs: HOUR, passThroughFraction: 0.8, minAmount: 1000, maxPending: 50, cooldownMs: 600_000 });
    expect(() => rapidMovementParams.parse({ passThroughFraction: 1.5 })).toThrow();
    expect(() => rapidMovementParams.parse({ maxHoldMs: 0 })).toThrow();
    expect(() => rapidMovementParams.parse({ holdMs: 1 })).toThrow();
    expect(() => detector(rapidMovementSpec).fromJSON({ v: 2 })).toThrow(TypeError);
    expect(() => detector(rapidMovementSpec).fromJSON({ v: 1, key: 'A', pending: [{ ref: 1 }] })).toThrow(TypeError);
  });
});

// ------------------------------------------------------------------ fan_out / fan_in oracle

interface Counted {
  ts: number;
  id: string;
  ev: Transaction;
}

/**
 * Brute force: for each counted payment in order, D = distinct ids in (ts − W, ts]; peak = max over closed
 * epoch-aligned windows [b, b + W) with b + 2W ≤ ts and b > ts − baseline of the distinct ids in them;
 * T = max(minDistinct, ceil(2 · peak)). Fires when D ≥ T, the id is new to the window, and no finding within
 * the cooldown.
 */
function fanOracle(items: Counted[], p = { W: HOUR, minDistinct: 10, peakFactor: 2, baseline: 35 * DAY, cooldown: 10 * MIN }) {
  const fired: Array<{ ev: Transaction; distinct: number; peak: number; threshold: number; payments: number; amount: number; active: number; firstIds: Transaction[] }> = [];
  let last: number | null = null;
  items.forEach((it, i) => {
    const ts = it.ts;
    const win = items.slice(0, i + 1).filter((x) => x.ts > ts - p.W);
    const distinct = new Set(win.map((x) => x.id)).size;
    const isNew = !win.slice(0, -1).some((x) => x.id === it.id);
    const buckets = new Map<number, Set<string>>();
    for (const x of items.slice(0, i + 1)) {
      const bs = Math.floor(x.ts / p.W) * p.W;
      if (bs + 2 * p.W <= ts && bs > ts - p.baseline) {
        if (!buckets.has(bs)) buckets.set(bs, new Set());
        buckets.get(bs)?.add(x.id);
      }
    }
    const peak = buckets.size > 0 ? Math.max(...[...buckets.values()].map((s) => s.size)) : 0;
    const threshold = Math.max(p.minDistinct, Math.ceil(p.peakFactor * peak));
    if (distinct >= threshold && isNew && (last === null || ts - last >= p.cooldown)) {
      last = ts;
      const seen = new Set<string>();
      const firstIds = win.filter((x) => (seen.has(x.id) ? false : (seen.add(x.id), true))).map((x) => x.ev);
      fired.push({ ev: it.ev, distinct, peak, threshold, payments: win.length, amount: ss.sum(win.map((x) => Math.abs(x.ev.amount))), active: buckets.size, firstIds });
    }
  });
  return fired;
}

function checkFanFinding(f: FindingDraft, o: ReturnType<typeof fanOracle>[number], key: string): void {
  expect(f.trigger).toBe(eventRef(o.ev));
  expect(f.ts).toBe(o.ev.ts);
  expect(f.key).toBe(key);
  expect(f.account).toBe(key);
  expect(f.evidence.observed.distinct).toBe(o.distinct);
  expect(f.evidence.observed.payments).toBe(o.payments);
  expect(f.evidence.observed.amount).toBeCloseTo(o.amount, 2);
  expect(f.evidence.baseline.peakDistinct).toBe(o.peak);
  expect(f.evidence.baseline.activeWindows).toBe(o.active);
  expect(f.evidence.threshold.distinct).toBe(o.threshold);
  expect(f.evidence.triggers).toEqual(o.firstIds.slice(-20).map(eventRef));
  expect(f.windowStart).toBe(Math.min(...o.firstIds.map((t) => t.ts)));
  expect(f.score).toBeCloseTo(o.distinct / Math.max(o.peak, 1), 4);
}

describe('fan_out', () => {
  it('fires when an account pays 10+ distinct counterparties within an hour, matching the brute-force oracle', () => {
    const run = runDetector(detector(fanOutSpec), positive.events);
    const items: Counted[] = positive.events
      .filter((e): e is Transaction => isTx(e) && e.account === FANNER && e.direction === 'debit' && e.counterparty !== undefined)
      .map((ev) => ({ ts: ev.ts, id: ev.counterparty as string, ev }));
    const expected = fanOracle(items);
    expect(expected.length).toBeGreaterThanOrEqual(1);
    expect(expected.every((o) => positive.fanOut.includes(o.ev))).toBe(true);
    expect(run.findings).toHaveLength(expected.length); // and nothing else in the bank
    run.findings.forEach((f, i) => checkFanFinding(f, expected[i] as ReturnType<typeof fanOracle>[number], FANNER));
    const f = run.findings[0] as FindingDraft;
    expect(f.evidence.observed.newCounterparty).toBe(expected[0]?.ev.counterparty);
    expect(f.summary).toMatch(/^ACC-0021 paid 10 distinct counterparties within 1 h \(\d+ payments, [\d,]+\.\d\d EUR\); its busiest 1 h in the last 35 days: \d+$/);
    expect(run.signalsByEvent[positive.events.indexOf(expected[0]?.ev as Transaction)]?.[0]?.score).toBeGreaterThanOrEqual(0.8);
  });

  it('the baseline raises the bar: an account that usually pays 8 distinct payees an hour needs 16', () => {
    const b = new Builder('f');
    // Two weeks of a business paying 8 suppliers in one morning hour every day.
    for (let d = 0; d < 14; d++) for (let k = 0; k < 8; k++) b.tx({ ts: T0 + d * DAY + 9 * HOUR + k * 5 * MIN, account: 'BIZ', counterparty: `SUP-${k}`, amount: 500, direction: 'debit' });
    // Day 14: 17 distinct (fires at the 16th); day 15: 25 distinct (silent: that hour of 17 is now the peak, 2 × 17 = 34).
    for (let k = 0; k < 17; k++) b.tx({ ts: T0 + 14 * DAY + 9 * HOUR + k * 3 * MIN, account: 'BIZ', counterparty: `Q-${k}`, amount: 500, direction: 'debit' });
    for (let k = 0; k < 25; k++) b.tx({ ts: T0 + 15 * DAY + 9 * HOUR + k * 2 * MIN, account: 'BIZ', counterparty: `R-${k}`, amount: 500, direction: 'debit' });
    const run = runDetector(detector(fanOutSpec), b.events);
    const items = b.events.filter(isTx).map((ev) => ({ ts: ev.ts, id: ev.counterparty as string, ev }));
    const expected = fanOracle(items);
    expect(expected.map((o) => o.threshold)).toEqual([16]);
    expect(run.findings).toHaveLength(1);
    checkFanFinding(run.findings[0] as FindingDraft, expected[0] as ReturnType<typeof fanOracle>[number], 'BIZ');
    // With the cold-start guard, nothing fires before the account is old enough.
    expect(runDetector(detector(fanOutSpec, { minHistoryMs: 20 * DAY }), b.events).findings).toEqual([]);
  });

  it('restores exactly on the positive scenario', () => {
    const det = detector(fanOutSpec);
    const run = expectRestorable(det, ofKeys(det, positive.events, [FANNER, accId(1), accId(2)]));
    expect(run.findings.length).toBeGreaterThanOrEqual(1);
  });

  it('parameters: defaults, bad values', () => {
    expect(fanOutParams.parse({})).toEqual({ windowMs: HOUR, minDistinct: 10, peakFactor: 2, baselineMs: 35 * DAY, minHistoryMs: 0, maxEvents: 2000, cooldownMs: 600_000 });
    expect(() => fanOutParams.parse({ minDistinct: 1 })).toThrow();
    expect(() => fanOutParams.parse({ baselineMs: HOUR })).toThrow(/baselineMs/);
    expect(() => fanOutParams.parse({ maxEvents: 10, minDistinct: 20 })).toThrow(/maxEvents/);
    expect(() => detector(fanOutSpec).fromJSON({ v: 1, key: 'A' })).toThrow(TypeError);
  });
});

describe('fan_in', () => {
  it('keyed by the receiver through the counterparty view, counts distinct payers, matching the oracle', () => {
    const det = detector(fanInSpec);
    expect(det.view).toBe('counterparty');
    const run = runDetector(det, positive.events);
    // Oracle: every payer's debit naming RECEIVER as counterparty (the credit legs are not counted).
    const items: Counted[] = positive.events
      .filter((e): e is Transaction => isTx(e) && e.counterparty === RECEIVER && e.direction === 'debit' && e.account !== RECEIVER)
      .map((ev) => ({ ts: ev.ts, id: ev.account, ev }));
    const expected = fanOracle(items);
    expect(expected.length).toBeGreaterThanOrEqual(1);
    expect(expected.every((o) => positive.fanIn.includes(o.ev))).toBe(true);
    expect(run.findings).toHaveLength(expected.length);
    run.findings.forEach((f, i) => checkFanFinding(f, expected[i] as ReturnType<typeof fanOracle>[number], RECEIVER));
    expect(run.findings[0]?.evidence.observed.newSender).toBe(expected[0]?.ev.account);
    expect(run.findings[0]?.summary).toMatch(/^ACC-0031 received payments from 10 distinct senders within 1 h \(\d+ payments, [\d,]+\.\d\d EUR\); (its busiest 1 h in the last 35 days: \d+|no earlier payments in the last 35 days)$/);
    // The state of the receiver exists under its own key; the payer's signal is on the payer's debit.
    expect(run.states.has(RECEIVER)).toBe(true);
    expect(run.signalsByEvent[positive.events.indexOf(expected[0]?.ev as Transaction)]?.[0]?.score).toBeGreaterThanOrEqual(0.8);
  });

  it('blind spot: payments seen only as the receiver’s own credits (payers at other banks) are not counted', () => {
    const run = runDetector(detector(fanInSpec), positive.events);
    expect(run.findings.some((f) => f.key === EXT_RECEIVER)).toBe(false);
    // Those credits are copied to the external payers' keys (their counterparty), where credits are ignored.
    const credits = positive.events.filter((e) => isTx(e) && e.account === EXT_RECEIVER && e.counterparty?.startsWith('EXT-P-'));
    expect(credits).toHaveLength(15);
    const alone = runDetector(detector(fanInSpec), credits);
    expect(alone.findings).toEqual([]);
    expect([...alone.states.keys()].every((k) => k.startsWith('EXT-P-'))).toBe(true);
    for (const s of alone.states.values()) expect((s as FanState).debits).toBe(0);
  });

  it('restores exactly on the positive scenario', () => {
    const det = detector(fanInSpec);
    const run = expectRestorable(det, ofKeys(det, positive.events, [RECEIVER, 'BILL-01', 'BILL-02', accId(3)]));
    expect(run.findings.length).toBeGreaterThanOrEqual(1);
  });

  it('parameters: defaults, bad values', () => {
    expect(fanInParams.parse({})).toEqual(fanOutParams.parse({}));
    expect(() => fanInParams.parse({ peakFactor: 0.5 })).toThrow();
    expect(() => fanInParams.parse({ windowMs: -1 })).toThrow();
  });
});

// ------------------------------------------------------------------ new_counterparty_large_amount

describe('new_counterparty_large_amount', () => {
  it('fires on a large payment to a never-paid counterparty, with the usual amount from the account’s debits', () => {
    const run = runDetector(detector(newCounterpartyLargeAmountSpec), positive.events);
    const t = positive.newPayee;
    // The other constructed scenarios (mule payouts, fan-out beneficiaries, fan-in payers) are large payments to
    // new payees too and may fire; nothing from the noise does, nor the 5,000 rent to the known landlord.
    const constructed = new Set(
      [...positive.rapid.debits, ...positive.fanOut, ...positive.fanIn, t].map(eventRef).concat(
        positive.events.filter((e) => isTx(e) && /^BEN-/.test(e.counterparty ?? '')).map(eventRef),
      ),
    );
    for (const f of run.findings) expect(constructed.has(f.trigger), f.summary).toBe(true);
    expect(run.findings.some((f) => f.key === RENT_PAYER)).toBe(false);
    const mine = run.findings.filter((f) => f.key === PAYEE_VICTIM);
    expect(mine).toHaveLength(1);
    const f = mine[0] as FindingDraft;
    expect(f.trigger).toBe(eventRef(t));
    expect(f.key).toBe(PAYEE_VICTIM);
    expect(f.account).toBe(PAYEE_VICTIM);
    // Oracle: the account's earlier debits (≤ 200 most recent within 90 days), their median, the payees seen.
    const prior = positive.events.filter((e): e is Transaction => isTx(e) && e.account === PAYEE_VICTIM && e.direction === 'debit' && e.ts <= t.ts && e !== t);
    const idx = positive.events.indexOf(t);
    const before = prior.filter((e) => positive.events.indexOf(e) < idx);
    const baseline = before.filter((e) => e.ts > t.ts - 90 * DAY).slice(-200).map((e) => e.amount);
    const usual = ss.median(baseline);
    const known = new Set(before.map((e) => e.counterparty).filter((c) => c !== undefined));
    expect(known.has('NEW-BENEF-1')).toBe(false);
    const o = f.evidence;
    expect(o.baseline.usualAmount).toBe(usual);
    expect(o.baseline.mad).toBe(ss.medianAbsoluteDeviation(baseline));
    expect(o.baseline.samples).toBe(baseline.length);
    expect(o.baseline.knownCounterparties).toBe(known.size);
    expect(o.baseline.debitsSeen).toBe(before.length);
    expect(o.baseline.historyMs).toBe(t.ts - (before[0] as Transaction).ts);
    expect(o.observed.amount).toBe(4000);
    expect(o.observed.counterparty).toBe('NEW-BENEF-1');
    expect(o.observed.ratio).toBeCloseTo(4000 / usual, 4);
    expect(f.score).toBeCloseTo(4000 / usual, 4);
    const ratio = 4000 / usual;
    expect(f.severity).toBe(ratio >= 20 ? 'critical' : ratio >= 10 ? 'high' : 'medium');
    expect(o.triggers).toEqual([eventRef(t)]);
    expect(f.summary).toMatch(/^ACC-0061 paid 4,000\.00 EUR to NEW-BENEF-1, a counterparty it has not paid before, [\d.]+× its usual debit of [\d,]+\.\d\d EUR \(\d+ known counterparties\)$/);
    expect(run.signalsByEvent[idx]?.[0]?.score).toBeGreaterThanOrEqual(0.8);
  });

  it('known counterparties are bounded: one forgotten counts as new again', () => {
    const b = new Builder('n');
    for (let d = 0; d < 40; d++) b.tx({ ts: T0 + d * DAY, account: 'A', counterparty: `P-${d % 5}`, amount: 50, direction: 'debit' });
    b.tx({ ts: T0 + 40 * DAY, account: 'A', counterparty: 'P-0', amount: 1000, direction: 'debit' }); // known: silent
    b.tx({ ts: T0 + 41 * DAY, account: 'A', counterparty: 'P-9', amount: 400, direction: 'debit' }); // new but < minAmount
    b.tx({ ts: T0 + 42 * DAY, account: 'A', counterparty: 'P-8', amount: 1000, direction: 'debit' }); // fires
    expect(runDetector(detector(newCounterpartyLargeAmountSpec), b.events).findings.map((f) => f.ts)).toEqual([T0 + 42 * DAY]);
    // Remembering only 3 payees: P-0 (last paid day 35) was pushed out by P-2, P-3, P-4 → it counts as new.
    expect(runDetector(detector(newCounterpartyLargeAmountSpec, { maxKnown: 3 }), b.events).findings.map((f) => f.ts)).toEqual([T0 + 40 * DAY, T0 + 42 * DAY]);
    // Too young an account is not judged.
    expect(runDetector(detector(newCounterpartyLargeAmountSpec, { minHistoryMs: 50 * DAY }), b.events).findings).toEqual([]);
  });

  it('restores exactly on the positive scenario', () => {
    const det = detector(newCounterpartyLargeAmountSpec);
    const run = expectRestorable(det, ofKeys(det, positive.events, [PAYEE_VICTIM, RENT_PAYER, MULE, accId(5)]));
    expect(run.findings).toHaveLength(4);
  });

  it('parameters: defaults, bad values', () => {
    expect(newCounterpartyLargeAmountParams.parse({})).toEqual({
      multiple: 5,
      minAmount: 500,
      minHistory: 10,
      minHistoryMs: 35 * DAY,
      baselineMs: 90 * DAY,
      maxSamples: 200,
      maxKnown: 500,
      cooldownMs: 600_000,
    });
    expect(() => newCounterpartyLargeAmountParams.parse({ multiple: 1 })).toThrow();
    expect(() => newCounterpartyLargeAmountParams.parse({ minHistory: 300 })).toThrow(/minHistory/);
    expect(() => detector(newCounterpartyLargeAmountSpec).fromJSON({ v: 1, key: 'A', known: [[1, 2]], amountTs: [], amounts: [] })).toThrow(TypeError);
  });
});

// ------------------------------------------------------------------ terminal_risk

/**
 * Brute force for one merchant key: events in order; held bad labels = fraud/chargeback labels issued in
 * (now − 30 d, now] whose transaction has no legit label issued in that span; transactions counted in
 * 1-day buckets that end after now − 30 d. A level (merchant, or the transaction's terminal) is marked with
 * ≥ 3 labels and rate = labels / max(transactions, labels) ≥ 1%; one finding per day (the cooldown).
 */
function terminalOracle(events: readonly CanonicalEvent[], key: string) {
  const L = 30 * DAY;
  const bucket = Math.ceil(L / 30);
  const mine = events.filter((e) => (e.kind === 'transaction' || e.kind === 'label') && (e.merchant ?? e.terminal) === key);
  const labels: Label[] = [];
  const txs: Transaction[] = [];
  const fired: Array<{ ev: Transaction; m: { labels: number; tx: number }; t: { labels: number; tx: number } | null }> = [];
  let last: number | null = null;
  let now = Number.NEGATIVE_INFINITY;
  for (const e of mine) {
    now = Math.max(now, e.ts);
    if (e.kind === 'label') {
      labels.push(e);
      continue;
    }
    const tx = e as Transaction;
    txs.push(tx);
    const live = labels.filter((l) => l.ts > now - L);
    const legit = new Set(live.filter((l) => l.label === 'legit').map((l) => l.txId));
    const bad = new Map<string, Label>();
    for (const l of live) if (l.label !== 'legit' && !legit.has(l.txId) && !bad.has(l.txId)) bad.set(l.txId, l);
    const inLookback = (t: Transaction): boolean => Math.floor(t.ts / bucket) * bucket + bucket > now - L;
    const m = { labels: bad.size, tx: txs.filter(inLookback).length };
    const t = tx.terminal ? { labels: [...bad.values()].filter((l) => l.terminal === tx.terminal).length, tx: txs.filter((x) => x.terminal === tx.terminal && inLookback(x)).length } : null;
    const marked = (x: { labels: number; tx: number }): boolean => x.labels >= 3 && x.labels / Math.max(x.tx, x.labels) >= 0.01;
    if ((marked(m) || (t !== null && marked(t))) && (last === null || tx.ts - last >= DAY)) {
      last = tx.ts;
      fired.push({ ev: tx, m, t });
    }
  }
  return fired;
}

describe('terminal_risk', () => {
  it('labels mark the compromised terminal; later transactions there fire, matching the oracle', () => {
    const det = detector(terminalRiskSpec);
    expect(det.view).toBe('merchant');
    const run = runDetector(det, positive.events);
    const expected = terminalOracle(positive.events, RISKY_MERCHANT);
    expect(expected.length).toBeGreaterThanOrEqual(3);
    expect(run.findings).toHaveLength(expected.length); // nothing at any other merchant
    run.findings.forEach((f, i) => {
      const o = expected[i] as (typeof expected)[number];
      expect(f.trigger).toBe(eventRef(o.ev));
      expect(f.key).toBe(RISKY_MERCHANT);
      expect(f.account).toBe(o.ev.account);
      expect(f.evidence.observed.merchantLabels).toBe(o.m.labels);
      expect(f.evidence.observed.merchantTransactions).toBe(o.m.tx);
      expect(f.evidence.observed.terminal).toBe(o.ev.terminal);
      expect(f.evidence.observed.terminalLabels).toBe(o.t?.labels);
      expect(f.evidence.observed.terminalTransactions).toBe(o.t?.tx);
      expect(f.evidence.observed.level).toBe('terminal'); // the merchant's rate stays under 1%
      expect(f.evidence.observed.rate).toBeCloseTo((o.t?.labels as number) / (o.t?.tx as number), 6);
    });
    // The first finding comes after the fourth label (the legit verdict cancelled the first one right after the third).
    const first = run.findings[0] as FindingDraft;
    const [, , l3, l4] = positive.badLabels as [Label, Label, Label, Label];
    expect(first.ts).toBeGreaterThan(l4.ts);
    expect(expected[0]?.ev.ts).toBeGreaterThan(l4.ts);
    expect(first.evidence.observed.labels).toBe(3);
    expect(first.evidence.observed.lastLabelTs).toBe(l4.ts);
    const heldIds = positive.badLabels.slice(1, 4).map((l) => l.txId);
    expect(first.evidence.observed.labelledTxIds).toBe(heldIds.join(','));
    expect(first.evidence.triggers).toEqual([first.trigger, ...positive.badLabels.slice(1, 4).map(eventRef)]);
    expect(first.windowStart).toBe(positive.badLabels[1]?.ts);
    expect(first.summary).toMatch(/^ACC-\d{4} transacted at terminal MER-03-T2 of MER-03, which has 3 confirmed fraud labels in the last 30 days \(fraud rate \d+\.\d% of \d+ transactions, latest 2024-03-\d\dT\d\d:\d\d:\d\dZ\)$/);
    // The labelled transactions themselves are never flagged: they happened before their labels.
    for (const l of positive.badLabels) expect(run.findings.some((f) => f.trigger === `tx:bank:${l.txId}`)).toBe(false);
    // Between the third label and the legit verdict the terminal was briefly marked only if a payment happened there.
    expect(l3.ts).toBeLessThan(l4.ts);
    // Every transaction at the terminal after the mark scores ≥ 0.8; at other terminals of MER-03 less.
    const idx = positive.events.indexOf(expected[0]?.ev as Transaction);
    expect(run.signalsByEvent[idx]?.[0]?.score).toBeGreaterThanOrEqual(0.8);
    const otherTerminal = positive.events.findIndex((e, i) => i > idx && isTx(e) && e.merchant === RISKY_MERCHANT && e.terminal !== RISKY_TERMINAL);
    expect(run.signalsByEvent[otherTerminal]?.[0]?.score ?? 0).toBeLessThan(0.8);
  });

  it('a terminal without a merchant is its own key; legit cancels; the lookback expires labels', () => {
    const b = new Builder('a');
    const atm = (ts: number, acc: string): Transaction => b.tx({ ts, account: acc, amount: 200, direction: 'debit', channel: 'atm', terminal: 'ATM-77' });
    const victims = [0, 1, 2, 3].map((i) => atm(T0 + i * HOUR, `V${i}`));
    for (let i = 0; i < 20; i++) atm(T0 + DAY + i * HOUR, `C${i}`);
    victims.forEach((v, i) => b.label(v, T0 + 2 * DAY + i * HOUR, 'fraud'));
    b.label(victims[0] as Transaction, T0 + 2 * DAY + 30 * MIN, 'legit'); // cancels the first while both are held
    const after = atm(T0 + 3 * DAY, 'Z1'); // 3 labels of 24 transactions: fires
    const late = atm(T0 + 40 * DAY, 'Z2'); // labels expired
    const events = sorted(b.events);
    const run = runDetector(detector(terminalRiskSpec), events);
    expect(run.findings.map((f) => [f.trigger, f.key, f.account])).toEqual([[eventRef(after), 'ATM-77', 'Z1']]);
    expect(run.findings[0]?.evidence.observed.level).toBe('merchant'); // the key itself; no separate terminal level
    expect(run.findings[0]?.evidence.observed.labels).toBe(3);
    expect(run.findings[0]?.evidence.observed.transactions).toBe(25);
    expect(run.findings[0]?.summary).toMatch(/^Z1 transacted at ATM-77, which has 3 confirmed fraud labels in the last 30 days \(fraud rate 12\.0% of 25 transactions, latest /);
    expect(run.signalsByEvent[events.indexOf(late)]).toEqual([]);
    // minLabels 5: 'both' needs 5 labels; 'either' is satisfied by the 12% rate alone.
    expect(runDetector(detector(terminalRiskSpec, { minLabels: 5 }), events).findings).toEqual([]);
    expect(runDetector(detector(terminalRiskSpec, { minLabels: 5, combine: 'either' }), events).findings).toHaveLength(1);
  });

  it('restores exactly on the positive scenario', () => {
    const det = detector(terminalRiskSpec);
    const run = expectRestorable(det, ofKeys(det, positive.events, [RISKY_MERCHANT, 'MER-01']));
    expect(run.findings.length).toBeGreaterThanOrEqual(1);
  });

  it('parameters: defaults, bad values', () => {
    expect(terminalRiskParams.parse({})).toEqual({ lookbackMs: 30 * DAY, minLabels: 3, minRate: 0.01, combine: 'both', maxLabels: 1000, maxTerminals: 256, cooldownMs: DAY });
    expect(() => terminalRiskParams.parse({ minRate: 0 })).toThrow();
    expect(() => terminalRiskParams.parse({ combine: 'any' })).toThrow();
    expect(() => detector(terminalRiskSpec).fromJSON({ v: 1, key: 'M', labels: [['x', 1, 'maybe', 's', null, 0]], legit: [], terminals: [], tx: { starts: [], counts: [] } })).toThrow(TypeError);
  });
});

// ------------------------------------------------------------------ hot reload

describe('state written under other parameters (hot reload) is accepted and trimmed', () => {
  const cases: Array<[DetectorSpec<any, any>, Record<string, unknown>, Record<string, unknown>]> = [
    [rapidMovementSpec, {}, { maxPending: 2, maxHoldMs: 30 * MIN }],
    [fanOutSpec, {}, { windowMs: 2 * HOUR, maxEvents: 20, minDistinct: 12 }],
    [fanInSpec, {}, { windowMs: 30 * MIN, baselineMs: 7 * DAY }],
    [newCounterpartyLargeAmountSpec, {}, { maxKnown: 3, maxSamples: 20, baselineMs: 10 * DAY }],
    [terminalRiskSpec, {}, { lookbackMs: 10 * DAY, maxLabels: 2, maxTerminals: 1, minLabels: 2 }],
  ];
  for (const [spec, a, bParams] of cases) {
    it(spec.name, () => {
      const d1 = detector(spec, a);
      const d2 = detector(spec, bParams);
      const cut = Math.floor(positive.events.length * 0.9);
      const first = runDetector(d1, positive.events.slice(0, cut));
      const states = new Map<string, unknown>();
      for (const [k, s] of first.states) states.set(k, d2.fromJSON(JSON.parse(JSON.stringify(d1.toJSON(s)))));
      const findings: FindingDraft[] = [];
      for (const ev of positive.events.slice(cut)) {
        const key = stateKeyOf(d2, ev);
        if (key === undefined) continue;
        let s = states.get(key);
        if (s === undefined) states.set(key, (s = d2.newState(key)));
        d2.onEvent(s, ev, findings, []);
      }
      for (const f of findings) expectWellFormed(f);
      // The restored states serialize under the new bounds and restore again identically.
      for (const s of states.values()) {
        const j = JSON.parse(JSON.stringify(d2.toJSON(s)));
        expect(d2.toJSON(d2.fromJSON(j))).toEqual(j);
      }
    });
  }
});
