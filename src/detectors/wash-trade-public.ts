/**
 * `wash_trade_public`: statistical signs of wash trading in public prints. Public trades carry no accounts:
 * this flags patterns that wash trading leaves, it cannot tell who traded with whom.
 *
 * Two paths per venue:symbol, each with its own cooldown (evidence.observed.path says which):
 *
 *  (a) runs — a run is a sequence of prints at one price whose sizes stay within sizeTolerance (relative)
 *      of its first print's size q0 and whose aggressor sides alternate (buy, sell, buy… or the reverse),
 *      all within runWindowMs of the run's first print. Prints at other prices or of other sizes do not
 *      break a run (other participants trade in between); a matching print with the same side as the run's
 *      last, one past runWindowMs, or one with an unknown side restarts it. Per price at most runsPerPrice
 *      runs (different q0) and per key at most maxRunPrices prices (least recently touched evicted).
 *      Fires when the run has ≥ minRun prints and its volume is ≥ minRunShare of all volume printed since the
 *      run's first print (running cumulative volume: O(1)).
 *  (b) round sizes — a print is round when its quantity is a whole multiple of roundLot. The share of round
 *      prints in the last roundWindowMs (the open slice plus the 9 before it, slices of roundWindowMs/10) is
 *      tested against the key's own share in the roundBaselineMs before that window (Jeffreys-smoothed
 *      p0 = (x₀ + 0.5) / (n₀ + 1)) with the binomial z = (x − n·p0) / √(n·p0·(1 − p0)). Fires when
 *      z ≥ roundZ, x/n − p0 ≥ minExcessShare, n ≥ minWindowTrades and n₀ ≥ minBaselineTrades; after a
 *      finding it re-arms only once the excess has faded (z < roundZ/2 or excess < minExcessShare/2).
 *
 * Trades whose slice is before the open slice (out of order beyond a slice) are counted as late and ignored.
 * Work per trade: O(1) amortized (slice moves are O(1) each; a run lookup scans ≤ runsPerPrice entries).
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Severity, type Trade } from '../core/events.ts';
import { TimeWindow } from '../stats/event-window.ts';
import { formatDuration, formatFixed, formatPercent, priceDecimals, round } from './format.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

/** Round-size slices per window. */
const SLICES = 10;
/** Refs kept as evidence (run prints, recent round prints). */
const MAX_REFS = 20;

export const washTradePublicParams = z
  .strictObject({
    /** Run path: a run's prints lie within this time of its first print. */
    runWindowMs: z.number().int().positive().default(60_000),
    /** Run path: prints in a run (same price, same size, alternating sides) that fire. */
    minRun: z.number().int().min(2).default(8),
    /** Run path: sizes match when |qty − q0| ≤ sizeTolerance × q0. */
    sizeTolerance: z.number().finite().min(0).max(0.5).default(0.001),
    /** Run path: the run's volume must be at least this share of all volume printed since its first print. */
    minRunShare: z.number().finite().min(0).max(1).default(0.3),
    /** Run path: prices with open runs remembered per key (least recently touched evicted). */
    maxRunPrices: z.number().int().min(1).max(100_000).default(256),
    /** Run path: runs of different sizes kept per price. */
    runsPerPrice: z.number().int().min(1).max(64).default(4),
    /** Round path: a quantity is round when it is a whole multiple of this lot. */
    roundLot: z.number().finite().positive().default(1),
    /** Round path: the window whose round share is tested (10 slices). */
    roundWindowMs: z.number().int().min(SLICES).default(300_000),
    /** Round path: the key's own round share is measured over this much time before the window. */
    roundBaselineMs: z.number().int().positive().default(3_600_000),
    /** Round path: binomial z of the window's round count that fires. */
    roundZ: z.number().finite().positive().default(5),
    /** Round path: the window's round share must exceed the baseline share by at least this much. */
    minExcessShare: z.number().finite().min(0).max(1).default(0.1),
    /** Round path: prints needed in the window. */
    minWindowTrades: z.number().int().min(1).default(30),
    /** Round path: prints needed in the baseline. */
    minBaselineTrades: z.number().int().min(1).default(300),
    /** At most one finding per key and path within this time. */
    cooldownMs: z.number().int().nonnegative().default(300_000),
  })
  .superRefine((p, ctx) => {
    if (p.roundWindowMs % SLICES !== 0) ctx.addIssue({ code: 'custom', path: ['roundWindowMs'], message: `must be a multiple of ${SLICES}` });
    if (p.roundBaselineMs < p.roundWindowMs) ctx.addIssue({ code: 'custom', path: ['roundBaselineMs'], message: `must be >= roundWindowMs (${p.roundWindowMs})` });
  });
export type WashTradePublicParams = z.infer<typeof washTradePublicParams>;

/** A run as the JSON holds it. */
export interface RunJSON {
  q0: number;
  lastSide: 'buy' | 'sell';
  count: number;
  volume: number;
  startTs: number;
  lastTs: number;
  /** Cumulative key volume before the run's first print. */
  cumBefore: number;
  /** Refs of the run's first MAX_REFS prints. */
  refs: string[];
}

/**
 * A run in memory: as RunJSON, except that the refs are kept as their parts — eventRef() of print i is
 * `pre + refs[i]` (the trade id behind the key's "trade:venue:symbol:" prefix; pre '' = full refs). Nearly
 * every print starts a run, and formatting a ref string for each of them was most of the cost per trade:
 * the strings are built only for a finding or the JSON (runRefs).
 */
export interface Run {
  q0: number;
  lastSide: 'buy' | 'sell';
  count: number;
  volume: number;
  startTs: number;
  lastTs: number;
  cumBefore: number;
  pre: string;
  refs: string[];
}

/**
 * A price's runs, linked into the key's list of prices from least to most recently touched: touching a
 * price moves its entry to the tail by relinking (a Map delete + set per touch, to keep the Map's order,
 * and an iterator to find its first key, were most of the cost per trade).
 */
export interface PriceRuns {
  price: number;
  list: Run[];
  prev: PriceRuns | null;
  next: PriceRuns | null;
}

export interface WashTradePublicState {
  key: string;
  cumVol: number;
  /**
   * Price → its runs. Keyed by the number itself (String(price) in the JSON): the same keys as strings for
   * every finite price, without formatting a string per trade.
   */
  runs: PriceIndex;
  /** The prices' entries, least recently touched first (the JSON's order), and the most recently touched. */
  runsHead: PriceRuns | null;
  runsTail: PriceRuns | null;
  /** Ref prefix of the last trade's venue and symbol (refPrefix); '' = not known yet, or refs kept in full. */
  refPre: string;
  refVenue: string;
  refSymbol: string;
  /** Round path: open slice and its counts. */
  sliceIdx: number | null;
  sliceN: number;
  sliceR: number;
  /** Closed slices of the window ([n, r] by slice start) and of the baseline before it, with running sums. */
  recent: TimeWindow<[number, number]>;
  base: TimeWindow<[number, number]>;
  recentN: number;
  recentR: number;
  baseN: number;
  baseR: number;
  /** The latest round prints (ts, ref), at most MAX_REFS. */
  roundRefs: Array<[number, string]>;
  lastRunFireTs: number | null;
  lastRoundFireTs: number | null;
  /** The round path fired and the excess has not faded since (z < roundZ/2 or excess < minExcessShare/2 re-arms it). */
  roundActive: boolean;
  trades: number;
  late: number;
}

interface WashTradePublicJSON {
  v: 1;
  key: string;
  roundWindowMs: number;
  cumVol: number;
  runs: Array<[string, RunJSON[]]>;
  sliceIdx: number | null;
  sliceN: number;
  sliceR: number;
  recent: unknown;
  base: unknown;
  roundRefs: Array<[number, string]>;
  lastRunFireTs: number | null;
  lastRoundFireTs: number | null;
  roundActive: boolean;
  trades: number;
  late: number;
}

function severityFor(x: number, threshold: number): Severity {
  if (x >= 4 * threshold) return 'critical';
  if (x >= 2 * threshold) return 'high';
  return 'medium';
}

const isNum = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
const isNumOrNull = (x: unknown): x is number | null => x === null || isNum(x);

/** A quantity with up to 8 decimals, trailing zeros dropped: 0.01, 100, 1.5. */
function formatQty(q: number): string {
  const f = formatFixed(q, 8);
  return f.includes('.') ? f.replace(/\.?0+$/, '') : f;
}

/**
 * The prefix `pre` with eventRef(t) === pre + t.tradeId ("trade:venue:symbol:"), cached in the state for
 * the last venue and symbol seen; '' when eventRef does not have that form (refs are then kept in full).
 */
function refPrefix(s: WashTradePublicState, t: Trade): string {
  if (t.venue === s.refVenue && t.symbol === s.refSymbol) return s.refPre;
  const full = eventRef(t);
  const pre = `trade:${t.venue}:${t.symbol}:`;
  s.refVenue = t.venue;
  s.refSymbol = t.symbol;
  s.refPre = pre + t.tradeId === full ? pre : '';
  return s.refPre;
}

/** The run's part of a print's ref (see Run). */
function refPart(pre: string, t: Trade): string {
  return pre === '' ? eventRef(t) : t.tradeId;
}

/** The run's refs in full. */
function runRefs(r: Run): string[] {
  const pre = r.pre;
  if (pre === '') return [...r.refs];
  const out = new Array<string>(r.refs.length);
  for (let i = 0; i < r.refs.length; i++) out[i] = pre + (r.refs[i] as string);
  return out;
}

/** Appends a print's ref (prefix pre, part `part`), switching the run to full refs when the prefix differs. */
function pushRef(r: Run, pre: string, part: string): void {
  if (r.pre === pre) {
    r.refs.push(part);
    return;
  }
  r.refs = runRefs(r);
  r.pre = '';
  r.refs.push(pre + part);
}

/** A run started by one print. */
function newRun(qty: number, side: 'buy' | 'sell', ts: number, cumBefore: number, pre: string, part: string): Run {
  return { q0: qty, lastSide: side, count: 1, volume: qty, startTs: ts, lastTs: ts, cumBefore, pre, refs: [part] };
}

/** newRun's values written into an existing run (its refs array reused). */
function restartRun(r: Run, qty: number, side: 'buy' | 'sell', ts: number, cumBefore: number, pre: string, part: string): void {
  r.q0 = qty;
  r.lastSide = side;
  r.count = 1;
  r.volume = qty;
  r.startTs = ts;
  r.lastTs = ts;
  r.cumBefore = cumBefore;
  r.pre = pre;
  // A new array unless it already holds one ref (setting an array's length is a runtime call).
  if (r.refs.length === 1) r.refs[0] = part;
  else r.refs = [part];
}

/** Scratch for a price's bits (PriceIndex's hash). */
const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);

/**
 * Price → its runs, as a Map<number, PriceRuns> with the same key semantics (SameValueZero: −0 is +0, NaN
 * one key), but open addressing on the price's bits (linear probing, deletion by backward shift): a Map
 * keyed by numbers hashes and compares boxed numbers, a measurable share of the cost per trade. Grows by
 * doubling while more than half full; size is bounded by maxRunPrices.
 */
export class PriceIndex {
  private keys = new Float64Array(16);
  private vals: Array<PriceRuns | undefined> = new Array<PriceRuns | undefined>(16).fill(undefined);
  private mask = 15;
  size = 0;

  /** Home slot of x. */
  private slot(x: number): number {
    if (x !== x) return 0; // every NaN alike
    f64[0] = x === 0 ? 0 : x; // −0 as +0
    let h = Math.imul((u32[0] as number) ^ Math.imul(u32[1] as number, 0x9e3779b1), 0x85ebca6b);
    h ^= h >>> 15;
    return h & this.mask;
  }

  get(x: number): PriceRuns | undefined {
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    for (let i = this.slot(x); ; i = (i + 1) & mask) {
      const v = vals[i];
      if (v === undefined) return undefined;
      const k = keys[i] as number;
      if (k === x || (k !== k && x !== x)) return v;
    }
  }

  /** Adds x → e; x must not be present. */
  set(x: number, e: PriceRuns): void {
    if ((this.size + 1) * 2 > this.vals.length) this.grow();
    let i = this.slot(x);
    while (this.vals[i] !== undefined) i = (i + 1) & this.mask;
    this.keys[i] = x;
    this.vals[i] = e;
    this.size += 1;
  }

  delete(x: number): void {
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    let i = this.slot(x);
    for (;;) {
      const v = vals[i];
      if (v === undefined) return;
      const k = keys[i] as number;
      if (k === x || (k !== k && x !== x)) break;
      i = (i + 1) & mask;
    }
    // Backward shift: later entries of the cluster whose home slot is not cyclically in (i, j] move up.
    for (let j = (i + 1) & mask; vals[j] !== undefined; j = (j + 1) & mask) {
      const h = this.slot(keys[j] as number);
      const stays = i <= j ? i < h && h <= j : i < h || h <= j;
      if (stays) continue;
      keys[i] = keys[j] as number;
      vals[i] = vals[j];
      i = j;
    }
    vals[i] = undefined;
    this.size -= 1;
  }

  private grow(): void {
    const keys = this.keys;
    const vals = this.vals;
    const cap = vals.length * 2;
    this.keys = new Float64Array(cap);
    this.vals = new Array<PriceRuns | undefined>(cap).fill(undefined);
    this.mask = cap - 1;
    this.size = 0;
    for (let i = 0; i < vals.length; i++) {
      const v = vals[i];
      if (v !== undefined) this.set(keys[i] as number, v);
    }
  }
}

/** Appends e at the tail (most recently touched) of the state's price list. */
function linkLast(s: WashTradePublicState, e: PriceRuns): void {
  e.prev = s.runsTail;
  e.next = null;
  if (s.runsTail === null) s.runsHead = e;
  else s.runsTail.next = e;
  s.runsTail = e;
}

function unlink(s: WashTradePublicState, e: PriceRuns): void {
  if (e.prev === null) s.runsHead = e.next;
  else e.prev.next = e.next;
  if (e.next === null) s.runsTail = e.prev;
  else e.next.prev = e.prev;
  e.prev = e.next = null;
}

/** qty is a whole multiple of lot (relative tolerance for binary fractions such as 0.1). */
export function isRoundQty(qty: number, lot: number): boolean {
  if (!(qty > 0)) return false;
  const k = qty / lot;
  const n = Math.round(k);
  return n >= 1 && Math.abs(k - n) <= 1e-9 * Math.max(1, k);
}

/** The prices' runs, least recently touched first. */
function runsJSON(s: WashTradePublicState): Array<[string, RunJSON[]]> {
  const out: Array<[string, RunJSON[]]> = [];
  for (let e = s.runsHead; e !== null; e = e.next) out.push([String(e.price), e.list.map(runToJSON)]);
  return out;
}

function runToJSON(r: Run): RunJSON {
  return { q0: r.q0, lastSide: r.lastSide, count: r.count, volume: r.volume, startTs: r.startTs, lastTs: r.lastTs, cumBefore: r.cumBefore, refs: runRefs(r) };
}

function makeInstance(params: WashTradePublicParams, ruleId: string): DetectorInstance<WashTradePublicState> {
  const p = params;
  const sliceMs = p.roundWindowMs / SLICES;
  const baseSlices = Math.ceil(p.roundBaselineMs / sliceMs) + 1;

  const newState = (key: string): WashTradePublicState => {
    const s: WashTradePublicState = {
      key,
      cumVol: 0,
      runs: new PriceIndex(),
      runsHead: null,
      runsTail: null,
      refPre: '',
      refVenue: '',
      refSymbol: '',
      sliceIdx: null,
      sliceN: 0,
      sliceR: 0,
      recent: new TimeWindow<[number, number]>(p.roundWindowMs, SLICES),
      base: new TimeWindow<[number, number]>(p.roundBaselineMs, baseSlices),
      recentN: 0,
      recentR: 0,
      baseN: 0,
      baseR: 0,
      roundRefs: [],
      lastRunFireTs: null,
      lastRoundFireTs: null,
      roundActive: false,
      trades: 0,
      late: 0,
    };
    return s;
  };

  // Eviction callbacks made once per instance (not per call): they act on `cur`, the state whose windows
  // are being pushed or expired, set right before.
  let cur: WashTradePublicState | null = null;
  const evictBase = (v: [number, number]): void => {
    const s = cur as WashTradePublicState;
    s.baseN -= v[0];
    s.baseR -= v[1];
  };
  /** A slice leaving the window moves into the baseline. */
  const evictRecent = (v: [number, number], ts: number): void => {
    const s = cur as WashTradePublicState;
    s.recentN -= v[0];
    s.recentR -= v[1];
    s.base.push(ts, v, evictBase);
    s.baseN += v[0];
    s.baseR += v[1];
  };

  /** Moves the open slice to idx (closing the open one into the window). */
  const openSlice = (s: WashTradePublicState, idx: number): void => {
    cur = s;
    if (s.sliceIdx !== null && (s.sliceN > 0 || s.sliceR > 0)) {
      s.recent.push(s.sliceIdx * sliceMs, [s.sliceN, s.sliceR], evictRecent);
      s.recentN += s.sliceN;
      s.recentR += s.sliceR;
    }
    s.recent.expire(idx * sliceMs, evictRecent);
    s.base.expire(idx * sliceMs - (p.roundWindowMs - sliceMs), evictBase);
    s.sliceIdx = idx;
    s.sliceN = 0;
    s.sliceR = 0;
  };

  // ------------------------------------------------------------------ path (a): runs

  const onRunPath = (s: WashTradePublicState, t: Trade, out: FindingDraft[]): void => {
    const ts = t.ts;
    const qty = t.qty;
    if (!(qty > 0)) return;
    const side = t.side;
    if (side !== 'buy' && side !== 'sell') return;
    const pk = t.price;
    // The price's runs, made the most recently touched unless they already are. A new price beyond
    // maxRunPrices drops the least recently touched one.
    let e = s.runs.get(pk);
    if (e === undefined) {
      const head = s.runsHead;
      if (s.runs.size >= p.maxRunPrices && head !== null) {
        unlink(s, head);
        s.runs.delete(head.price);
      }
      e = { price: pk, list: [], prev: null, next: null };
      s.runs.set(pk, e);
      linkLast(s, e);
    } else if (e !== s.runsTail) {
      unlink(s, e);
      linkLast(s, e);
    }
    const list = e.list;
    let run: Run | undefined;
    let at = -1;
    for (let i = 0; i < list.length; i++) {
      const r = list[i] as Run;
      if (Math.abs(qty - r.q0) <= p.sizeTolerance * r.q0) {
        run = r;
        at = i;
        break;
      }
    }
    const pre = refPrefix(s, t);
    const part = refPart(pre, t);
    if (run === undefined) {
      if (list.length < p.runsPerPrice) {
        run = newRun(qty, side, ts, s.cumVol - qty, pre, part);
        list.push(run);
      } else {
        // Full: the run touched longest ago is dropped (the first with the smallest lastTs, the new run last). When that is an existing run,
        // its object is reused for the new one, moved to the end (no allocation per print on a busy price).
        let oldest = 0;
        for (let i = 1; i < list.length; i++) if ((list[i] as Run).lastTs < (list[oldest] as Run).lastTs) oldest = i;
        if (ts < (list[oldest] as Run).lastTs) {
          run = newRun(qty, side, ts, s.cumVol - qty, pre, part); // the oldest itself: dropped at once, list unchanged
        } else {
          run = list[oldest] as Run;
          for (let i = oldest + 1; i < list.length; i++) list[i - 1] = list[i] as Run;
          list[list.length - 1] = run;
          restartRun(run, qty, side, ts, s.cumVol - qty, pre, part);
        }
      }
    } else if (run.lastSide === side || ts - run.startTs > p.runWindowMs || ts < run.lastTs) {
      // The run restarts at this print: reset in place (nothing else holds a Run), not a new object per print.
      restartRun(run, qty, side, ts, s.cumVol - qty, pre, part);
    } else {
      run.count += 1;
      run.volume += qty;
      run.lastSide = side;
      run.lastTs = ts;
      if (run.refs.length < MAX_REFS) pushRef(run, pre, part);
    }

    if (run.count < p.minRun) return;
    const windowVolume = s.cumVol - run.cumBefore;
    const share = windowVolume > 0 ? run.volume / windowVolume : 0;
    if (share < p.minRunShare) return;
    if (s.lastRunFireTs !== null && ts - s.lastRunFireTs < p.cooldownMs) return;
    s.lastRunFireTs = ts;
    const ref = pre + part;
    const refs = runRefs(run);
    const dec = priceDecimals(t.price, t.price);
    const trigger = `${ref}#run`;
    out.push({
      severity: severityFor(run.count * share, p.minRun * Math.max(p.minRunShare, 0.05)),
      score: round(run.count * share, 4),
      venue: t.venue,
      symbol: t.symbol,
      key: `${t.venue}:${t.symbol}`,
      ts,
      windowStart: Math.min(run.startTs, ts),
      windowEnd: ts,
      summary:
        `${t.symbol} on ${t.venue} printed ${run.count} trades of ${formatQty(run.q0)} at ${formatFixed(t.price, dec)} ` +
        `with alternating buy/sell aggressors within ${formatDuration(ts - run.startTs)}, ${formatPercent(share)} of the volume traded meanwhile`,
      trigger,
      evidence: {
        observed: {
          path: 'runs',
          price: t.price,
          size: run.q0,
          runLength: run.count,
          runVolume: round(run.volume, 10),
          windowVolume: round(windowVolume, 10),
          share: round(share, 6),
          startTs: run.startTs,
          firstSide: run.count % 2 === 1 ? run.lastSide : run.lastSide === 'buy' ? 'sell' : 'buy',
          spanMs: ts - run.startTs,
        },
        baseline: { note: 'public prints carry no accounts: a pattern, not proof of common ownership', windowVolumeSince: run.startTs },
        threshold: { minRun: p.minRun, minRunShare: p.minRunShare, sizeTolerance: p.sizeTolerance, runWindowMs: p.runWindowMs },
        triggers: refs.includes(ref) ? refs : [...refs.slice(0, MAX_REFS - 1), ref],
      },
    });
  };

  // ------------------------------------------------------------------ path (b): round sizes

  const onRoundPath = (s: WashTradePublicState, t: Trade, round_: boolean, out: FindingDraft[]): void => {
    const ts = t.ts;
    s.sliceN += 1;
    if (round_) {
      s.sliceR += 1;
      s.roundRefs.push([ts, eventRef(t)]);
      if (s.roundRefs.length > MAX_REFS) s.roundRefs.shift();
    }
    if (!round_ && !s.roundActive) return; // only a round print can raise the share
    const n = s.recentN + s.sliceN;
    const x = s.recentR + s.sliceR;
    if (n < p.minWindowTrades || s.baseN < p.minBaselineTrades) {
      s.roundActive = false;
      return;
    }
    const p0 = (s.baseR + 0.5) / (s.baseN + 1);
    const share = x / n;
    const zScore = (x - n * p0) / Math.sqrt(n * p0 * (1 - p0));
    if (s.roundActive) {
      // One episode, one finding: the path re-arms once the excess has faded.
      if (zScore < p.roundZ / 2 || share - p0 < p.minExcessShare / 2) s.roundActive = false;
      return;
    }
    if (share - p0 < p.minExcessShare) return;
    if (!(zScore >= p.roundZ)) return;
    if (s.lastRoundFireTs !== null && ts - s.lastRoundFireTs < p.cooldownMs) return;
    s.lastRoundFireTs = ts;
    s.roundActive = true;
    const windowStart = ((s.sliceIdx as number) - (SLICES - 1)) * sliceMs;
    const ref = eventRef(t);
    const refs = s.roundRefs.filter(([rts]) => rts >= windowStart).map(([, r]) => r);
    out.push({
      severity: severityFor(zScore, p.roundZ),
      score: round(zScore, 4),
      venue: t.venue,
      symbol: t.symbol,
      key: `${t.venue}:${t.symbol}`,
      ts,
      windowStart: Math.min(windowStart, ts),
      windowEnd: ts,
      summary:
        `${t.symbol} on ${t.venue} had ${x} of ${n} prints (${formatPercent(share)}) in whole multiples of ${formatQty(p.roundLot)} ` +
        `within ${formatDuration(p.roundWindowMs)}, against its usual ${formatPercent(p0)} (z ${formatFixed(zScore, 1)})`,
      trigger: `${ref}#round`,
      evidence: {
        observed: { path: 'round_sizes', trades: n, roundTrades: x, share: round(share, 6), z: round(zScore, 4), roundLot: p.roundLot },
        baseline: { share: round(p0, 8), trades: s.baseN, roundTrades: s.baseR, spanMs: p.roundBaselineMs },
        threshold: { z: p.roundZ, minExcessShare: p.minExcessShare, minWindowTrades: p.minWindowTrades, minBaselineTrades: p.minBaselineTrades },
        triggers: refs.length > 0 ? refs : [ref],
      },
    });
  };

  const onTrade = (s: WashTradePublicState, t: Trade, out: FindingDraft[]): void => {
    const ts = t.ts;
    if (!(t.price > 0) || !Number.isFinite(t.price) || !Number.isFinite(ts) || !(t.qty >= 0) || !Number.isFinite(t.qty)) return;
    const idx = Math.floor(ts / sliceMs);
    if (s.sliceIdx !== null && idx < s.sliceIdx) {
      s.late += 1;
      return;
    }
    s.trades += 1;
    if (s.sliceIdx === null || idx > s.sliceIdx) openSlice(s, idx);
    s.cumVol += t.qty;
    onRunPath(s, t, out);
    onRoundPath(s, t, isRoundQty(t.qty, p.roundLot), out);
  };

  return {
    name: 'wash_trade_public',
    ruleId,
    kinds: ['trade'],
    newState,
    onEvent(state: WashTradePublicState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'trade') onTrade(state, ev, out);
    },
    toJSON(s: WashTradePublicState): WashTradePublicJSON {
      return {
        v: 1,
        key: s.key,
        roundWindowMs: p.roundWindowMs,
        cumVol: s.cumVol,
        runs: runsJSON(s),
        sliceIdx: s.sliceIdx,
        sliceN: s.sliceN,
        sliceR: s.sliceR,
        recent: s.recent.toJSON(),
        base: s.base.toJSON(),
        roundRefs: s.roundRefs.map(([a, b]) => [a, b]),
        lastRunFireTs: s.lastRunFireTs,
        lastRoundFireTs: s.lastRoundFireTs,
        roundActive: s.roundActive,
        trades: s.trades,
        late: s.late,
      };
    },
    fromJSON(json: unknown): WashTradePublicState {
      const j = json as Partial<WashTradePublicJSON> | null;
      if (
        !j ||
        j.v !== 1 ||
        typeof j.key !== 'string' ||
        !Array.isArray(j.runs) ||
        !Array.isArray(j.roundRefs) ||
        !isNumOrNull(j.sliceIdx) ||
        !isNumOrNull(j.lastRunFireTs) ||
        !isNumOrNull(j.lastRoundFireTs) ||
        ![j.cumVol, j.sliceN, j.sliceR, j.trades, j.late, j.roundWindowMs].every(isNum)
      ) {
        throw new TypeError('wash_trade_public: state JSON is not a v1 wash_trade_public state');
      }
      const s = newState(j.key);
      s.cumVol = j.cumVol as number;
      s.trades = j.trades as number;
      s.late = j.late as number;
      s.lastRunFireTs = j.lastRunFireTs as number | null;
      s.lastRoundFireTs = j.lastRoundFireTs as number | null;
      s.roundActive = j.roundActive === true;

      // Runs, trimmed to this instance's bounds (the most recently touched prices and runs kept).
      const entries = j.runs.slice(-p.maxRunPrices);
      for (const e of entries) {
        if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || !Array.isArray(e[1])) throw new TypeError('wash_trade_public: runs must be [price, Run[]] pairs');
        const list: Run[] = [];
        for (const r of e[1] as unknown[]) {
          const o = r as Record<string, unknown> | null;
          if (
            !o ||
            ![o.q0, o.count, o.volume, o.startTs, o.lastTs, o.cumBefore].every(isNum) ||
            (o.lastSide !== 'buy' && o.lastSide !== 'sell') ||
            !Array.isArray(o.refs) ||
            !o.refs.every((x) => typeof x === 'string')
          ) {
            throw new TypeError('wash_trade_public: malformed run');
          }
          const x = o as unknown as RunJSON;
          list.push({ q0: x.q0, lastSide: x.lastSide, count: x.count, volume: x.volume, startTs: x.startTs, lastTs: x.lastTs, cumBefore: x.cumBefore, pre: '', refs: x.refs.slice(0, MAX_REFS) });
        }
        while (list.length > p.runsPerPrice) {
          let oldest = 0;
          for (let i = 1; i < list.length; i++) if ((list[i] as Run).lastTs < (list[oldest] as Run).lastTs) oldest = i;
          list.splice(oldest, 1);
        }
        // Keys are String(price) of finite prices, which Number() turns back into exactly that price. A
        // repeated key replaces the runs and keeps its place (as Map.set does).
        const price = Number(e[0]);
        const known = s.runs.get(price);
        if (known !== undefined) known.list = list;
        else {
          const entry: PriceRuns = { price, list, prev: null, next: null };
          s.runs.set(price, entry);
          linkLast(s, entry);
        }
      }
      for (const r of j.roundRefs) {
        if (!Array.isArray(r) || r.length !== 2 || !isNum(r[0]) || typeof r[1] !== 'string') throw new TypeError('wash_trade_public: roundRefs must be [ts, ref] pairs');
        s.roundRefs.push([r[0], r[1]]);
      }
      s.roundRefs = s.roundRefs.slice(-MAX_REFS);

      const revive = (x: unknown): [number, number] => {
        if (!Array.isArray(x) || x.length !== 2 || !isNum(x[0]) || !isNum(x[1])) throw new TypeError('wash_trade_public: slices must be [n, r] pairs');
        return [x[0], x[1]];
      };
      const recent = TimeWindow.fromJSON(j.recent, revive);
      const base = TimeWindow.fromJSON(j.base, revive);
      cur = s;
      if (j.roundWindowMs === p.roundWindowMs) {
        // Same slices: rebuild through this instance's bounds (a changed baseline span trims the baseline).
        for (const e of base.entries()) {
          s.base.push(e.ts, e.value, evictBase);
          s.baseN += e.value[0];
          s.baseR += e.value[1];
        }
        if (Number.isFinite(base.horizon)) s.base.expire(base.horizon, evictBase);
        for (const e of recent.entries()) {
          s.recent.push(e.ts, e.value, evictRecent);
          s.recentN += e.value[0];
          s.recentR += e.value[1];
        }
        if (Number.isFinite(recent.horizon)) s.recent.expire(recent.horizon, evictRecent);
        s.sliceIdx = j.sliceIdx as number | null;
        s.sliceN = j.sliceN as number;
        s.sliceR = j.sliceR as number;
      } else {
        // Slices of another length: everything counted so far becomes baseline (one entry at the newest
        // slice start), the window starts empty.
        const n = base.entries();
        let bn = 0;
        let br = 0;
        let last: number | undefined;
        for (const e of n) {
          bn += e.value[0];
          br += e.value[1];
        }
        for (const e of recent.entries()) {
          bn += e.value[0];
          br += e.value[1];
          last = e.ts;
        }
        bn += j.sliceN as number;
        br += j.sliceR as number;
        if (bn > 0) {
          const at = last ?? base.newestTs ?? 0;
          s.base.push(at, [bn, br], evictBase);
          s.baseN = bn;
          s.baseR = br;
        }
        s.sliceIdx = null;
      }
      return s;
    },
  };
}

export const washTradePublicSpec: DetectorSpec<WashTradePublicParams, WashTradePublicState> = {
  name: 'wash_trade_public',
  description:
    'Patterns of wash trading in public prints (no accounts): runs of same-size prints at one price with alternating ' +
    'aggressor sides that make up much of the volume, and an excess share of round-lot sizes against the key\'s own baseline.',
  kinds: ['trade'],
  params: washTradePublicParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
