/**
 * `marking_the_close`: an account dominates the instrument's trading just before the close, pushes the
 * price its way, and trades far more there than it usually does.
 *
 * Closes are times of day in UTC (`closeTimeUtc`: 'HH:MM' or a list); the closing window is the last
 * windowMs before each close. Per venue:symbol, fills in the window are counted once per fill (a fill
 * reported by both sides is deduplicated by (ts, fillPrice, fillQty, buyer, seller), as in wash_trade) and
 * attributed to both parties (the reporting account and counterpartyAccount): the instrument's window
 * volume V, and per account its bought and sold quantity (a self-trade counts once in its volume v).
 *
 * The window of a close is evaluated by the first order event (any account, any action) at or after the
 * close — the detector needs an event after the close; late events for an evaluated close are ignored.
 * For each account with window fills:
 *   share = v / V;  net = bought − sold;  impactBps = sign(net) × (closePx / startPx − 1) × 1e4,
 * where closePx is the last fill price before the close and startPx the last fill price before the window
 * (the window's first fill price when there was none); usual = the mean of the account's volume in the same
 * window (same close time of day) over the last baselineDays observed closes (0 for closes it did not
 * trade). A close is observed when at least one order event of the instrument fell in its window.
 * A finding fires when share ≥ minShare, impactBps ≥ minImpactBps, v ≥ volumeMultiple × usual (an account
 * that never trades at the close passes), and at least minBaselineDays earlier closes of that time were
 * observed — one finding per account per close. Severity by the weakest margin g = min(share / minShare,
 * impact / minImpactBps, v / (volumeMultiple × usual)): g ≥ 3 critical, ≥ 2 high, else medium. Score:
 * impactBps. Work per event: O(1) amortized; per close O(accounts × baselineDays × closes per day).
 */
import { z } from 'zod';
import { eventRef, type CanonicalEvent, type Order, type Severity } from '../core/events.ts';
import { formatDuration, formatFixed, formatPercent, formatTimes, priceDecimals, round } from './format.ts';
import { isMirrorFill, restoreFillIdentities, type FillIdentity } from './fill-identity.ts';
import { isNum, isNumOrNull as numOrNull, isStr } from './json-state.ts';
import { gradeAbove } from './severity.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

const DAY_MS = 86_400_000;
const MAX_TRIGGERS = 20;
const SEP = '\u0000';
const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, "must be 'HH:MM' (UTC, 24-hour)");

/** Minutes after midnight UTC of 'HH:MM'. */
function minutesOf(s: string): number {
  return Number(s.slice(0, 2)) * 60 + Number(s.slice(3, 5));
}
function closeMinutes(v: string | string[]): number[] {
  const list = typeof v === 'string' ? [v] : v;
  return [...new Set(list.map(minutesOf))].sort((a, b) => a - b);
}
function hhmmText(minute: number): string {
  return `${String(Math.floor(minute / 60)).padStart(2, '0')}:${String(minute % 60).padStart(2, '0')}`;
}

export const markingTheCloseParams = z
  .strictObject({
    /** Close time(s) of day, UTC, 'HH:MM' or a list (default: the crypto daily close at 00:00 UTC). */
    closeTimeUtc: z.union([hhmm, z.array(hhmm).min(1)]).default('00:00'),
    /** The closing window: this long before each close. */
    windowMs: z.number().int().positive().default(600_000),
    /** The account's share of the instrument's filled volume in the window that fires. */
    minShare: z.number().finite().gt(0).max(1).default(0.3),
    /** Price move over the window in the direction of the account's net trading (bps) that fires. */
    minImpactBps: z.number().finite().positive().default(20),
    /** The account's window volume must be at least this many times its usual volume in that window. */
    volumeMultiple: z.number().finite().positive().default(3),
    /** Usual volume: the mean over this many last observed closes of the same time of day. */
    baselineDays: z.number().int().min(1).max(365).default(20),
    /** No evaluation before this many earlier closes of that time were observed. */
    minBaselineDays: z.number().int().min(1).default(5),
    /** At most one finding per account within this time (a close gives at most one per account anyway). */
    cooldownMs: z.number().int().nonnegative().default(60_000),
    /** Accounts tracked per instrument (window volume and baseline); oldest-seen evicted. */
    maxAccounts: z.number().int().min(1).max(1_000_000).default(2000),
    /** Fill identities remembered to count a fill reported by both sides once. */
    maxRecentFills: z.number().int().min(1).max(1_000_000).default(4096),
    /** A fill's identity is forgotten after this much event time. */
    dedupeMs: z.number().int().positive().default(60_000),
  })
  .superRefine((p, ctx) => {
    if (p.minBaselineDays > p.baselineDays) {
      ctx.addIssue({ code: 'custom', path: ['minBaselineDays'], message: `must be <= baselineDays (${p.baselineDays})` });
    }
    const mins = closeMinutes(p.closeTimeUtc);
    let gap = DAY_MS;
    for (let i = 0; i < mins.length; i++) {
      const next = i + 1 < mins.length ? (mins[i + 1] as number) : (mins[0] as number) + 1440;
      gap = Math.min(gap, (next - (mins[i] as number)) * 60_000);
    }
    if (p.windowMs >= gap) {
      ctx.addIssue({ code: 'custom', path: ['windowMs'], message: `must be shorter than the time between closes (${gap} ms)` });
    }
  });
export type MarkingTheCloseParams = z.infer<typeof markingTheCloseParams>;

interface AccountWindow {
  /** The close this window belongs to. */
  close: number;
  buy: number;
  sell: number;
  vol: number;
  fills: number;
  /** eventRefs of the newest fills (at most MAX_TRIGGERS). */
  refs: string[];
}

interface AccountState {
  win: AccountWindow | null;
  /** [close time, window volume] of earlier closes it traded in, oldest first. */
  hist: Array<[number, number]>;
  lastFindingTs: number | null;
}

export interface MarkingTheCloseState {
  key: string;
  wm: number | null;
  /** The close whose window is open or ahead; null before the first event. */
  nextClose: number | null;
  /** Any order event fell in the window. */
  saw: boolean;
  total: number;
  fills: number;
  openPx: number | null;
  openPxTs: number;
  closePx: number | null;
  closePxTs: number;
  /** Last fill before the window. */
  startPx: number | null;
  startPxTs: number;
  /** Latest fill by event time. */
  lastPx: number | null;
  lastPxTs: number;
  active: Set<string>;
  accounts: Map<string, AccountState>;
  /** Minute of day → observed closes of that time, oldest first (at most baselineDays). */
  observed: Map<number, number[]>;
  recent: Map<string, FillIdentity>;
  closes: number;
}

interface MarkingTheCloseJSON {
  v: 1;
  key: string;
  wm: number | null;
  nextClose: number | null;
  saw: boolean;
  total: number;
  fills: number;
  openPx: number | null;
  openPxTs: number | null;
  closePx: number | null;
  closePxTs: number | null;
  startPx: number | null;
  startPxTs: number | null;
  lastPx: number | null;
  lastPxTs: number | null;
  active: string[];
  accounts: Array<[string, AccountWindow | null, Array<[number, number]>, number | null]>;
  observed: Array<[number, number[]]>;
  recent: Array<[string, number, number, number]>;
  closes: number;
}

const finiteOr = (x: number | null | undefined, dflt: number): number => (typeof x === 'number' && Number.isFinite(x) ? x : dflt);
const jsonTs = (x: number): number | null => (Number.isFinite(x) ? x : null);

function qtyText(q: number): string {
  return formatFixed(q, priceDecimals(q, q));
}

function makeInstance(params: MarkingTheCloseParams, ruleId: string): DetectorInstance<MarkingTheCloseState> {
  const { windowMs, minShare, minImpactBps, volumeMultiple, baselineDays, minBaselineDays, cooldownMs, maxAccounts, maxRecentFills, dedupeMs } = params;
  const minutes = closeMinutes(params.closeTimeUtc);
  const maxHist = baselineDays * minutes.length;

  /** The first close strictly after ts. */
  const closeAfter = (ts: number): number => {
    const day = Math.floor(ts / DAY_MS) * DAY_MS;
    for (const m of minutes) {
      const c = day + m * 60_000;
      if (c > ts) return c;
    }
    return day + DAY_MS + (minutes[0] as number) * 60_000;
  };
  const minuteOfDay = (c: number): number => Math.round((((c % DAY_MS) + DAY_MS) % DAY_MS) / 60_000);

  const newState = (key: string): MarkingTheCloseState => ({
    key,
    wm: null,
    nextClose: null,
    saw: false,
    total: 0,
    fills: 0,
    openPx: null,
    openPxTs: Number.POSITIVE_INFINITY,
    closePx: null,
    closePxTs: Number.NEGATIVE_INFINITY,
    startPx: null,
    startPxTs: Number.NEGATIVE_INFINITY,
    lastPx: null,
    lastPxTs: Number.NEGATIVE_INFINITY,
    active: new Set(),
    accounts: new Map(),
    observed: new Map(),
    recent: new Map(),
    closes: 0,
  });

  const resetWindow = (s: MarkingTheCloseState): void => {
    s.saw = false;
    s.total = 0;
    s.fills = 0;
    s.openPx = null;
    s.openPxTs = Number.POSITIVE_INFINITY;
    s.closePx = null;
    s.closePxTs = Number.NEGATIVE_INFINITY;
    s.active.clear();
    // Every fill seen so far is before the next window (windows are shorter than the time between closes).
    s.startPx = s.lastPx;
    s.startPxTs = s.lastPxTs;
  };

  /** The account's state, refreshed as most recently seen, with its window moved to the open close. */
  const touch = (s: MarkingTheCloseState, a: string, close: number): AccountState => {
    let st = s.accounts.get(a);
    if (st) s.accounts.delete(a);
    else st = { win: null, hist: [], lastFindingTs: null };
    s.accounts.set(a, st);
    while (s.accounts.size > maxAccounts) {
      const oldest = s.accounts.keys().next().value as string;
      s.accounts.delete(oldest);
      s.active.delete(oldest);
    }
    if (!st.win || st.win.close !== close) st.win = { close, buy: 0, sell: 0, vol: 0, fills: 0, refs: [] };
    s.active.add(a);
    return st;
  };

  const onFill = (s: MarkingTheCloseState, o: Order, inWindow: boolean, close: number): void => {
    const q = o.fillQty;
    const px = o.fillPrice;
    if (q === undefined || px === undefined || !(q > 0) || !(px > 0)) return;
    const ts = o.ts;
    const buySide = o.side === 'buy';
    const cp = o.counterpartyAccount && o.counterpartyAccount.length > 0 ? o.counterpartyAccount : null;
    const buyer = buySide ? o.account : cp;
    const seller = buySide ? cp : o.account;
    const id = `${ts}${SEP}${px}${SEP}${q}${SEP}${buyer ?? ''}${SEP}${seller ?? ''}`;
    if (isMirrorFill(s.recent, id, ts, buySide, s.wm as number, maxRecentFills, dedupeMs)) return;

    if (ts >= s.lastPxTs) {
      s.lastPx = px;
      s.lastPxTs = ts;
    }
    if (!inWindow) {
      if (ts < close - windowMs && ts >= s.startPxTs) {
        s.startPx = px;
        s.startPxTs = ts;
      }
      return;
    }
    s.total += q;
    s.fills += 1;
    if (ts >= s.closePxTs) {
      s.closePx = px;
      s.closePxTs = ts;
    }
    if (ts < s.openPxTs) {
      s.openPx = px;
      s.openPxTs = ts;
    }
    const ref = eventRef(o);
    const add = (a: string, buy: boolean, countVol: boolean): void => {
      const w = touch(s, a, close).win as AccountWindow;
      if (buy) w.buy += q;
      else w.sell += q;
      if (countVol) {
        w.vol += q;
        w.fills += 1;
        w.refs.push(ref);
        if (w.refs.length > MAX_TRIGGERS) w.refs.shift();
      }
    };
    if (buyer !== null) add(buyer, true, true);
    if (seller !== null) add(seller, false, seller !== buyer);
  };

  const evaluate = (s: MarkingTheCloseState, close: number, ev: Order, out: FindingDraft[]): void => {
    if (!s.saw) return; // the flow was not live in the window: not an observed close
    s.closes += 1;
    const minute = minuteOfDay(close);
    let obs = s.observed.get(minute);
    if (!obs) s.observed.set(minute, (obs = []));
    const refPx = s.startPx ?? s.openPx;
    const ws = close - windowMs;
    if (obs.length >= minBaselineDays && s.total > 0 && s.closePx !== null && refPx !== null) {
      const since = obs[0] as number;
      const closePx = s.closePx;
      const moveBps = (closePx / refPx - 1) * 1e4;
      for (const a of s.active) {
        const st = s.accounts.get(a);
        const w = st?.win;
        if (!st || !w || w.close !== close || !(w.vol > 0)) continue;
        const share = w.vol / s.total;
        if (!(share >= minShare)) continue;
        const net = w.buy - w.sell;
        if (net === 0) continue;
        const dir = net > 0 ? 1 : -1;
        const impactBps = dir * moveBps;
        if (!(impactBps >= minImpactBps)) continue;
        let sum = 0;
        let days = 0;
        for (const [c, v] of st.hist) {
          if (c >= since && minuteOfDay(c) === minute) {
            sum += v;
            days += 1;
          }
        }
        const usual = sum / obs.length;
        if (!(w.vol >= volumeMultiple * usual)) continue;
        if (st.lastFindingTs !== null && ev.ts - st.lastFindingTs < cooldownMs) continue;
        st.lastFindingTs = ev.ts;
        const ratio = usual > 0 ? w.vol / usual : null;
        const g = Math.min(share / minShare, impactBps / minImpactBps, ratio === null ? Number.POSITIVE_INFINITY : ratio / volumeMultiple);
        const closeText = hhmmText(minute);
        const d = priceDecimals(refPx, closePx);
        const summary =
          `${a} ${dir > 0 ? 'bought' : 'sold'} on net and made ${formatPercent(share)} of ${ev.symbol}'s volume on ${ev.venue} ` +
          `in the ${formatDuration(windowMs)} before the ${closeText} UTC close (${qtyText(round(w.vol, 8))} of ${qtyText(round(s.total, 8))}), ` +
          `while the price moved ${formatFixed(Math.abs(moveBps), 1)} bps ${moveBps > 0 ? 'up' : 'down'} (${formatFixed(refPx, d)} → ${formatFixed(closePx, d)}); ` +
          (ratio === null ? `it had not traded in that window on the last ${obs.length} days` : `${formatTimes(ratio)} its usual ${qtyText(round(usual, 4))} in that window`);
        out.push({
          severity: gradeAbove(g, 3, 2),
          score: round(impactBps, 4),
          venue: ev.venue,
          symbol: ev.symbol,
          account: a,
          key: a,
          ts: ev.ts,
          windowStart: ws,
          windowEnd: close,
          summary,
          trigger: eventRef(ev),
          evidence: {
            observed: {
              share: round(share, 6),
              impactBps: round(impactBps, 4),
              accountQty: round(w.vol, 10),
              boughtQty: round(w.buy, 10),
              soldQty: round(w.sell, 10),
              netQty: round(net, 10),
              netSide: dir > 0 ? 'buy' : 'sell',
              accountFills: w.fills,
              instrumentQty: round(s.total, 10),
              instrumentFills: s.fills,
              startPrice: refPx,
              closePrice: closePx,
              volumeRatio: ratio === null ? null : round(ratio, 4),
              close: closeText,
            },
            baseline: {
              usualQty: round(usual, 10),
              baselineCloses: obs.length,
              closesTraded: days,
            },
            threshold: { minShare, minImpactBps, volumeMultiple, windowMs },
            triggers: [...w.refs],
          },
        });
      }
    }
    // The close joins the baselines (accounts without window fills: 0 for this close).
    for (const a of s.active) {
      const st = s.accounts.get(a);
      const w = st?.win;
      if (!st || !w || w.close !== close || !(w.vol > 0)) continue;
      st.hist.push([close, w.vol]);
      if (st.hist.length > maxHist) st.hist.shift();
    }
    obs.push(close);
    if (obs.length > baselineDays) obs.shift();
  };

  const onOrder = (s: MarkingTheCloseState, o: Order, out: FindingDraft[]): void => {
    const ts = o.ts;
    if (s.wm === null || ts > s.wm) s.wm = ts;
    if (s.nextClose === null) s.nextClose = closeAfter(ts);
    if (ts >= s.nextClose) {
      evaluate(s, s.nextClose, o, out);
      s.nextClose = closeAfter(ts);
      resetWindow(s);
    }
    const close = s.nextClose;
    const inWindow = ts >= close - windowMs && ts < close;
    if (inWindow) s.saw = true;
    if (o.action === 'fill') onFill(s, o, inWindow, close);
  };

  return {
    name: 'marking_the_close',
    ruleId,
    kinds: ['order'],
    newState,
    onEvent(state: MarkingTheCloseState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind === 'order' && Number.isFinite(ev.ts)) onOrder(state, ev, out);
    },
    toJSON(s: MarkingTheCloseState): MarkingTheCloseJSON {
      return {
        v: 1,
        key: s.key,
        wm: s.wm,
        nextClose: s.nextClose,
        saw: s.saw,
        total: s.total,
        fills: s.fills,
        openPx: s.openPx,
        openPxTs: jsonTs(s.openPxTs),
        closePx: s.closePx,
        closePxTs: jsonTs(s.closePxTs),
        startPx: s.startPx,
        startPxTs: jsonTs(s.startPxTs),
        lastPx: s.lastPx,
        lastPxTs: jsonTs(s.lastPxTs),
        active: [...s.active],
        accounts: [...s.accounts].map(([a, st]) => [a, st.win ? { ...st.win, refs: [...st.win.refs] } : null, st.hist.map(([c, v]) => [c, v] as [number, number]), st.lastFindingTs]),
        observed: [...s.observed].map(([m, list]) => [m, [...list]]),
        recent: [...s.recent].map(([k, v]) => [k, v.ts, v.b, v.s]),
        closes: s.closes,
      };
    },
    fromJSON(json: unknown): MarkingTheCloseState {
      const j = json as Partial<MarkingTheCloseJSON> | null;
      if (
        !j ||
        j.v !== 1 ||
        !isStr(j.key) ||
        !numOrNull(j.wm ?? null) ||
        !numOrNull(j.nextClose ?? null) ||
        !Array.isArray(j.active) ||
        !Array.isArray(j.accounts) ||
        !Array.isArray(j.observed) ||
        !Array.isArray(j.recent) ||
        !isNum(j.total) ||
        !isNum(j.fills)
      ) {
        throw new TypeError('marking_the_close: state JSON is not a v1 marking_the_close state');
      }
      const s = newState(j.key);
      s.wm = j.wm ?? null;
      s.closes = isNum(j.closes) ? j.closes : 0;
      s.lastPx = numOrNull(j.lastPx) ? j.lastPx : null;
      s.lastPxTs = finiteOr(j.lastPxTs, Number.NEGATIVE_INFINITY);
      s.startPx = numOrNull(j.startPx) ? j.startPx : null;
      s.startPxTs = finiteOr(j.startPxTs, Number.NEGATIVE_INFINITY);
      for (const e of j.accounts) {
        if (!Array.isArray(e) || !isStr(e[0]) || !Array.isArray(e[2]) || !numOrNull(e[3])) throw new TypeError('marking_the_close: bad account in state JSON');
        const w = e[1];
        let win: AccountWindow | null = null;
        if (w !== null) {
          if (!w || !isNum(w.close) || !isNum(w.buy) || !isNum(w.sell) || !isNum(w.vol) || !isNum(w.fills) || !Array.isArray(w.refs) || !w.refs.every(isStr)) {
            throw new TypeError('marking_the_close: bad account window in state JSON');
          }
          win = { close: w.close, buy: w.buy, sell: w.sell, vol: w.vol, fills: w.fills, refs: w.refs.slice(-MAX_TRIGGERS) };
        }
        const hist: Array<[number, number]> = [];
        for (const h of e[2]) {
          if (!Array.isArray(h) || !isNum(h[0]) || !isNum(h[1])) throw new TypeError('marking_the_close: bad account history in state JSON');
          hist.push([h[0], h[1]]);
        }
        s.accounts.set(e[0], { win, hist: hist.slice(-maxHist), lastFindingTs: e[3] });
      }
      while (s.accounts.size > maxAccounts) s.accounts.delete(s.accounts.keys().next().value as string);
      for (const e of j.observed) {
        if (!Array.isArray(e) || !isNum(e[0]) || !Array.isArray(e[1]) || !e[1].every(isNum)) throw new TypeError('marking_the_close: bad observed closes in state JSON');
        if (minutes.includes(e[0])) s.observed.set(e[0], e[1].slice(-baselineDays));
      }
      restoreFillIdentities(s.recent, j.recent, maxRecentFills, 'marking_the_close');

      const nextClose = j.nextClose ?? null;
      if (nextClose !== null && minutes.includes(minuteOfDay(nextClose))) {
        // The open window continues (under a changed windowMs it keeps what it counted so far).
        s.nextClose = nextClose;
        s.saw = j.saw === true;
        s.total = j.total;
        s.fills = j.fills;
        s.openPx = numOrNull(j.openPx) ? j.openPx : null;
        s.openPxTs = finiteOr(j.openPxTs, Number.POSITIVE_INFINITY);
        s.closePx = numOrNull(j.closePx) ? j.closePx : null;
        s.closePxTs = finiteOr(j.closePxTs, Number.NEGATIVE_INFINITY);
        for (const a of j.active) if (isStr(a) && s.accounts.has(a)) s.active.add(a);
      } else if (nextClose !== null && s.wm !== null) {
        // Other close times: the open window is dropped; the next close under the new schedule follows.
        s.nextClose = closeAfter(s.wm);
        s.startPx = s.lastPx;
        s.startPxTs = s.lastPxTs;
      }
      return s;
    },
  };
}

export const markingTheCloseSpec: DetectorSpec<MarkingTheCloseParams, MarkingTheCloseState> = {
  name: 'marking_the_close',
  description:
    "An account's share of the instrument's filled volume in the window before a daily close, the price move in its net direction, " +
    'and its volume against its usual volume in that window on earlier days; evaluated by the first order event after the close.',
  kinds: ['order'],
  params: markingTheCloseParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
