/**
 * `wash_trade`: a fill whose buyer and seller are the same account, or accounts under common control.
 *
 * Order flow is keyed by venue:symbol, so one state sees every account's fills on the instrument. A fill
 * event is one side's report: `account` and `side` are the reporting side, `counterpartyAccount` the other
 * side. Buyer and seller follow from them; fills without a counterparty cannot be judged (counted only).
 *
 * A fill may be reported once per side (two events with the same ts, price and qty, account and
 * counterparty swapped). Fills are identified by (ts, fillPrice, fillQty, buyer, seller) in a bounded set of
 * recent identities (maxRecentFills, dedupeMs) that counts reports per side: a report is the mirror of an
 * already counted fill when the other side has reported that identity more often than its own side, so
 * two genuine fills with the same identity still count twice.
 *
 * Buyer and seller are linked when they are the same account (`same_account`), share a group of the `links`
 * parameter (`linked_by_config`), or when either was named in the other's `linkedAccounts` on any order
 * event of the instrument (`linked_by_event`; learned into a bounded map, maxLinkedAccounts accounts ×
 * maxLinksPerAccount links, oldest-seen evicted; links are not transitive).
 *
 * Each wash fill joins its account pair's trailing window of cooldownMs (count, quantity, notional; at most
 * maxFillsPerPair fills, at most maxPairs pairs with oldest-seen eviction). A finding fires on a wash fill
 * when the pair had no finding within cooldownMs — one per pair per cooldown window — or, with `escalate`,
 * when the window's severity has risen above the pair's last finding (a burst that keeps growing).
 * Severity: m = max(fills / highCount, qty / (highVolumeRatio × median fill qty of the instrument));
 * m ≥ 4 critical, ≥ 1 high, ≥ 0.25 medium, else low. Score: m. Work per fill: O(1) amortized (link checks
 * are bounded by maxLinksPerAccount and the account's config groups; the median is O(log n) per fill).
 */
import { z } from 'zod';
import { eventRef, severityRank, type CanonicalEvent, type Order, type Severity } from '../core/events.ts';
import { SortedWindow } from '../stats/sorted-window.ts';
import { TimeWindow } from '../stats/event-window.ts';
import { formatDuration, formatFixed, formatTimes, priceDecimals, round } from './format.ts';
import { isMirrorFill, restoreFillIdentities, type FillIdentity } from './fill-identity.ts';
import { isNum, isNumOrNull as numOrNull, isStr } from './json-state.ts';
import type { DetectorInstance, DetectorSpec, FindingDraft } from './types.ts';

export const washTradeParams = z
  .strictObject({
    /** Known groups of accounts under common control; every two accounts of a group are linked, e.g. [["ACC-1", "ACC-2"]]. */
    links: z.array(z.array(z.string().min(1)).min(2)).default([]),
    /** One finding per account pair within this time; a finding counts the pair's wash fills in the trailing window of this length. */
    cooldownMs: z.number().int().positive().default(60_000),
    /** Also fire within the cooldown when the pair's window reaches a higher severity than its last finding. */
    escalate: z.boolean().default(true),
    /** Wash fills of a pair in the window that make the finding high (a quarter of it medium, 4× critical). */
    highCount: z.number().int().positive().default(5),
    /** Wash quantity in the window, in median fills of the instrument, that makes the finding high (a quarter medium, 4× critical). */
    highVolumeRatio: z.number().finite().positive().default(20),
    /** Median fill size: the instrument's last this many (deduplicated, non-wash) fills. */
    maxFillSamples: z.number().int().min(1).max(100_000).default(500),
    /** The volume ratio is used from this many fill samples on (before: severity by count only). */
    minFillSamples: z.number().int().min(1).default(20),
    /** Fill identities remembered to count a fill reported by both sides once. */
    maxRecentFills: z.number().int().min(1).max(1_000_000).default(4096),
    /** A fill's identity is forgotten after this much event time (mirror reports arrive together). */
    dedupeMs: z.number().int().positive().default(60_000),
    /** Accounts whose learned links (linkedAccounts of order events) are kept per instrument; oldest-seen evicted. */
    maxLinkedAccounts: z.number().int().min(1).max(1_000_000).default(2000),
    /** Learned links kept per account; the oldest is dropped. */
    maxLinksPerAccount: z.number().int().min(1).max(1000).default(16),
    /** Account pairs with wash fills tracked per instrument; oldest-seen evicted. */
    maxPairs: z.number().int().min(1).max(1_000_000).default(500),
    /** Wash fills remembered per pair within the window (counts cover at most this many). */
    maxFillsPerPair: z.number().int().min(1).max(1_000_000).default(1000),
  })
  .superRefine((p, ctx) => {
    if (p.minFillSamples > p.maxFillSamples) {
      ctx.addIssue({ code: 'custom', path: ['minFillSamples'], message: `must be <= maxFillSamples (${p.maxFillSamples})` });
    }
    p.links.forEach((g, i) => {
      if (new Set(g).size !== g.length) ctx.addIssue({ code: 'custom', path: ['links', i], message: 'an account appears twice in the group' });
    });
  });
export type WashTradeParams = z.infer<typeof washTradeParams>;

export type LinkReason = 'same_account' | 'linked_by_config' | 'linked_by_event';

interface WashFill {
  q: number;
  px: number;
  ref: string;
}

interface PairState {
  a: string;
  b: string;
  reason: LinkReason;
  fills: TimeWindow<WashFill>;
  qty: number;
  notional: number;
  lastTs: number | null;
  lastRank: number;
}

export interface WashTradeState {
  key: string;
  /** Largest event time seen. */
  wm: number | null;
  /** Learned links: account → linked accounts (oldest first); Map order = oldest-seen first. */
  links: Map<string, string[]>;
  recent: Map<string, FillIdentity>;
  sizes: TimeWindow<number>;
  sorted: SortedWindow;
  pairs: Map<string, PairState>;
  fills: number;
  mirrors: number;
  washFills: number;
  noCounterparty: number;
}

interface PairJSON {
  a: string;
  b: string;
  reason: LinkReason;
  horizon: number | null;
  ts: number[];
  fills: WashFill[];
  qty: number;
  notional: number;
  lastTs: number | null;
  lastRank: number;
}

interface WashTradeJSON {
  v: 1;
  key: string;
  wm: number | null;
  links: Array<[string, string[]]>;
  recent: Array<[string, number, number, number]>;
  /** The fill-size baseline, oldest first (bounded by count only, so no times). */
  sizes: number[];
  pairs: PairJSON[];
  fills: number;
  mirrors: number;
  washFills: number;
  noCounterparty: number;
}

/** Size samples are bounded by count only; the span is effectively unbounded. */
const SIZE_SPAN_MS = Number.MAX_SAFE_INTEGER;
const MAX_TRIGGERS = 20;
const SEP = '\u0000';
const REASONS: readonly LinkReason[] = ['same_account', 'linked_by_config', 'linked_by_event'];

function severityFor(m: number): Severity {
  if (m >= 4) return 'critical';
  if (m >= 1) return 'high';
  if (m >= 0.25) return 'medium';
  return 'low';
}

/** Decimals (2…8) that show a quantity exactly as it is. */
function qtyText(q: number): string {
  return formatFixed(q, priceDecimals(q, q));
}


function makeInstance(params: WashTradeParams, ruleId: string): DetectorInstance<WashTradeState> {
  const {
    cooldownMs,
    escalate,
    highCount,
    highVolumeRatio,
    maxFillSamples,
    minFillSamples,
    maxRecentFills,
    dedupeMs,
    maxLinkedAccounts,
    maxLinksPerAccount,
    maxPairs,
    maxFillsPerPair,
  } = params;

  // Config groups: account → indices of its groups.
  const groupsOf = new Map<string, number[]>();
  params.links.forEach((g, i) => {
    for (const a of g) {
      const list = groupsOf.get(a);
      if (list) list.push(i);
      else groupsOf.set(a, [i]);
    }
  });
  const linkedByConfig = (a: string, b: string): boolean => {
    const ga = groupsOf.get(a);
    const gb = groupsOf.get(b);
    if (!ga || !gb) return false;
    for (const g of ga) if (gb.includes(g)) return true;
    return false;
  };

  const newPair = (a: string, b: string, reason: LinkReason): PairState => ({
    a,
    b,
    reason,
    fills: new TimeWindow<WashFill>(cooldownMs, maxFillsPerPair),
    qty: 0,
    notional: 0,
    lastTs: null,
    lastRank: -1,
  });

  const newState = (key: string): WashTradeState => ({
    key,
    wm: null,
    links: new Map(),
    recent: new Map(),
    sizes: new TimeWindow<number>(SIZE_SPAN_MS, maxFillSamples),
    sorted: new SortedWindow(maxFillSamples),
    pairs: new Map(),
    fills: 0,
    mirrors: 0,
    washFills: 0,
    noCounterparty: 0,
  });

  const learnOne = (s: WashTradeState, x: string, y: string): void => {
    const list = s.links.get(x);
    if (list) {
      s.links.delete(x); // re-inserted below: most recently seen last
      if (!list.includes(y)) {
        list.push(y);
        if (list.length > maxLinksPerAccount) list.shift();
      }
      s.links.set(x, list);
    } else {
      s.links.set(x, [y]);
    }
    while (s.links.size > maxLinkedAccounts) {
      const oldest = s.links.keys().next().value as string;
      s.links.delete(oldest);
    }
  };

  const learnLinks = (s: WashTradeState, o: Order): void => {
    const linked = o.linkedAccounts;
    if (!linked || linked.length === 0) return;
    // Bounded work per event: at most maxLinksPerAccount links of one event are learned.
    let n = 0;
    for (const other of linked) {
      if (other === o.account || other.length === 0) continue;
      if (n++ >= maxLinksPerAccount) break;
      learnOne(s, o.account, other);
      learnOne(s, other, o.account);
    }
  };

  const linkReason = (s: WashTradeState, buyer: string, seller: string): LinkReason | null => {
    if (buyer === seller) return 'same_account';
    if (linkedByConfig(buyer, seller)) return 'linked_by_config';
    if (s.links.get(buyer)?.includes(seller) || s.links.get(seller)?.includes(buyer)) return 'linked_by_event';
    return null;
  };

  const addSize = (s: WashTradeState, q: number): void => {
    s.sizes.push(0, q, (v) => {
      s.sorted.remove(v);
    });
    s.sorted.insert(q);
  };

  /** True when this report is the other side's report of a fill already counted. */
  const onFill = (s: WashTradeState, o: Order, out: FindingDraft[]): void => {
    const q = o.fillQty;
    const px = o.fillPrice;
    if (q === undefined || px === undefined || !(q > 0) || !(px > 0)) return;
    s.fills += 1;
    const ts = o.ts;
    const now = s.wm as number;
    const cp = o.counterpartyAccount;
    if (cp === undefined || cp.length === 0) {
      s.noCounterparty += 1;
      addSize(s, q);
      return;
    }
    const buySide = o.side === 'buy';
    const buyer = buySide ? o.account : cp;
    const seller = buySide ? cp : o.account;
    const id = `${ts}${SEP}${px}${SEP}${q}${SEP}${buyer}${SEP}${seller}`;
    if (isMirrorFill(s.recent, id, ts, buySide, now, maxRecentFills, dedupeMs)) {
      s.mirrors += 1;
      return;
    }
    const reason = linkReason(s, buyer, seller);
    if (reason === null) {
      addSize(s, q);
      return;
    }
    s.washFills += 1;

    const [a, b] = buyer <= seller ? [buyer, seller] : [seller, buyer];
    const pk = `${a}${SEP}${b}`;
    let p = s.pairs.get(pk);
    if (p) s.pairs.delete(pk);
    else p = newPair(a, b, reason);
    s.pairs.set(pk, p);
    while (s.pairs.size > maxPairs) s.pairs.delete(s.pairs.keys().next().value as string);
    p.reason = reason;
    const pair = p;
    const evict = (f: WashFill): void => {
      pair.qty -= f.q;
      pair.notional -= f.q * f.px;
    };
    const ref = eventRef(o);
    p.fills.push(ts, { q, px, ref }, evict);
    p.qty += q;
    p.notional += q * px;
    p.fills.expire(now, evict);
    if (p.fills.size === 0) {
      // The fill itself is older than the window (a late report): nothing to judge.
      p.qty = 0;
      p.notional = 0;
      return;
    }

    const count = p.fills.size;
    const median = s.sorted.size >= minFillSamples ? s.sorted.median() : null;
    const volumeRatio = median !== null && median > 0 ? p.qty / median : null;
    const m = Math.max(count / highCount, volumeRatio === null ? 0 : volumeRatio / highVolumeRatio);
    const severity = severityFor(m);
    const rank = severityRank(severity);
    const fresh = p.lastTs === null || ts - p.lastTs >= cooldownMs;
    const escalation = !fresh && escalate && rank > p.lastRank;
    if (!fresh && !escalation) return;
    p.lastTs = ts;
    p.lastRank = rank;

    const triggers: string[] = [];
    for (let i = Math.max(0, count - MAX_TRIGGERS); i < count; i++) triggers.push(p.fills.at(i).value.ref);
    if (!triggers.includes(ref)) {
      if (triggers.length >= MAX_TRIGGERS) triggers.shift();
      triggers.push(ref);
    }
    const windowStart = Math.min(p.fills.oldestTs as number, ts);
    const who =
      reason === 'same_account'
        ? `${a} traded with itself`
        : `${a} and ${b} (${reason === 'linked_by_config' ? 'linked by config' : 'linked by their order events'}) traded with each other`;
    const summary =
      `${who} on ${o.symbol} (${o.venue}): ${count} wash fill${count === 1 ? '' : 's'} of ${qtyText(round(p.qty, 8))} ` +
      `within ${formatDuration(cooldownMs)}${volumeRatio !== null ? ` (${formatTimes(volumeRatio)} the median fill)` : ''}, ` +
      `the last ${qtyText(q)} at ${formatFixed(px, priceDecimals(px, px))}${escalation ? ', escalating' : ''}`;
    out.push({
      severity,
      score: round(m, 4),
      venue: o.venue,
      symbol: o.symbol,
      account: a,
      key: a === b ? a : `${a}|${b}`,
      ts,
      windowStart,
      windowEnd: Math.max(ts, windowStart),
      summary,
      trigger: ref,
      evidence: {
        observed: {
          buyer,
          seller,
          linkReason: reason,
          qty: q,
          price: px,
          fillsInWindow: count,
          qtyInWindow: round(p.qty, 10),
          notionalInWindow: round(p.notional, 8),
          volumeRatio: volumeRatio === null ? null : round(volumeRatio, 4),
          escalation,
        },
        baseline: {
          medianFillQty: median,
          fillSamples: s.sorted.size,
        },
        threshold: { highCount, highVolumeRatio, cooldownMs },
        triggers,
      },
    });
  };

  const pairFromJSON = (j: PairJSON): PairState => {
    if (
      !j ||
      !isStr(j.a) ||
      !isStr(j.b) ||
      !REASONS.includes(j.reason) ||
      !Array.isArray(j.ts) ||
      !Array.isArray(j.fills) ||
      j.ts.length !== j.fills.length ||
      !isNum(j.qty) ||
      !isNum(j.notional) ||
      !numOrNull(j.lastTs) ||
      !isNum(j.lastRank)
    ) {
      throw new TypeError('wash_trade: bad pair in state JSON');
    }
    const p = newPair(j.a, j.b, j.reason);
    let evicted = 0;
    const evict = (): void => {
      evicted += 1;
    };
    let qty = 0;
    let notional = 0;
    for (let i = 0; i < j.ts.length; i++) {
      const f = j.fills[i] as WashFill;
      const t = j.ts[i];
      if (!isNum(t) || !f || !isNum(f.q) || !isNum(f.px) || !isStr(f.ref)) throw new TypeError('wash_trade: bad wash fill in state JSON');
      p.fills.push(t, { q: f.q, px: f.px, ref: f.ref }, evict);
      qty += f.q;
      notional += f.q * f.px;
    }
    if (isNum(j.horizon)) p.fills.expire(j.horizon, evict);
    if (evicted === 0) {
      // Same window as saved: continue the running sums exactly.
      p.qty = j.qty;
      p.notional = j.notional;
    } else {
      // Other parameters trimmed the window: sum what is left.
      qty = 0;
      notional = 0;
      for (let i = 0; i < p.fills.size; i++) {
        const f = p.fills.at(i).value;
        qty += f.q;
        notional += f.q * f.px;
      }
      p.qty = qty;
      p.notional = notional;
    }
    p.lastTs = j.lastTs;
    p.lastRank = j.lastRank;
    return p;
  };

  return {
    name: 'wash_trade',
    ruleId,
    kinds: ['order'],
    newState,
    onEvent(state: WashTradeState, ev: CanonicalEvent, out: FindingDraft[]): void {
      if (ev.kind !== 'order' || !Number.isFinite(ev.ts)) return;
      if (state.wm === null || ev.ts > state.wm) state.wm = ev.ts;
      learnLinks(state, ev);
      if (ev.action === 'fill') onFill(state, ev, out);
    },
    toJSON(s: WashTradeState): WashTradeJSON {
      const pairs: PairJSON[] = [];
      for (const p of s.pairs.values()) {
        const w = p.fills.toJSON();
        pairs.push({ a: p.a, b: p.b, reason: p.reason, horizon: w.horizon, ts: w.ts, fills: w.values.map((f) => ({ ...f })), qty: p.qty, notional: p.notional, lastTs: p.lastTs, lastRank: p.lastRank });
      }
      return {
        v: 1,
        key: s.key,
        wm: s.wm,
        links: [...s.links].map(([k, v]) => [k, [...v]]),
        recent: [...s.recent].map(([k, v]) => [k, v.ts, v.b, v.s]),
        sizes: s.sizes.toJSON().values,
        pairs,
        fills: s.fills,
        mirrors: s.mirrors,
        washFills: s.washFills,
        noCounterparty: s.noCounterparty,
      };
    },
    fromJSON(json: unknown): WashTradeState {
      const j = json as Partial<WashTradeJSON> | null;
      if (
        !j ||
        j.v !== 1 ||
        !isStr(j.key) ||
        !numOrNull(j.wm ?? null) ||
        !Array.isArray(j.links) ||
        !Array.isArray(j.recent) ||
        !Array.isArray(j.sizes) ||
        !Array.isArray(j.pairs)
      ) {
        throw new TypeError('wash_trade: state JSON is not a v1 wash_trade state');
      }
      const s = newState(j.key);
      s.wm = j.wm ?? null;
      for (const e of j.links) {
        if (!Array.isArray(e) || !isStr(e[0]) || !Array.isArray(e[1]) || !e[1].every(isStr)) throw new TypeError('wash_trade: bad link in state JSON');
        s.links.set(e[0], e[1].slice(-maxLinksPerAccount));
      }
      while (s.links.size > maxLinkedAccounts) s.links.delete(s.links.keys().next().value as string);
      restoreFillIdentities(s.recent, j.recent, maxRecentFills, 'wash_trade');
      // The newest samples under the current bound; the sorted copy built in one sort.
      for (const q of j.sizes) {
        if (!isNum(q)) throw new TypeError('wash_trade: bad fill size in state JSON');
        s.sizes.push(0, q);
      }
      s.sorted = SortedWindow.fromJSON({ capacity: maxFillSamples, values: s.sizes.toJSON().values.sort((a, b) => a - b) });
      for (const pj of j.pairs) {
        const p = pairFromJSON(pj);
        s.pairs.set(`${p.a}${SEP}${p.b}`, p);
      }
      while (s.pairs.size > maxPairs) s.pairs.delete(s.pairs.keys().next().value as string);
      s.fills = isNum(j.fills) ? j.fills : 0;
      s.mirrors = isNum(j.mirrors) ? j.mirrors : 0;
      s.washFills = isNum(j.washFills) ? j.washFills : 0;
      s.noCounterparty = isNum(j.noCounterparty) ? j.noCounterparty : 0;
      return s;
    },
  };
}

export const washTradeSpec: DetectorSpec<WashTradeParams, WashTradeState> = {
  name: 'wash_trade',
  description:
    'Fills per venue:symbol whose buyer and seller are the same account or linked accounts (linkedAccounts on order events, ' +
    'or the links parameter); one finding per account pair per cooldown window, graded by wash fills and volume in it.',
  kinds: ['order'],
  params: washTradeParams,
  create: (params, ruleId) => makeInstance(params, ruleId),
};
