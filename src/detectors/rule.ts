/**
 * A rule around a detector: what the rules file adds to a detector's own logic, the same for every
 * detector — scope (which events it sees), event-time lateness, cooldown, suppression, severity mapping,
 * and the rules version stamped on each finding.
 *
 * The rule's per-key state wraps the detector's: { d: detector state, wm: the key's watermark (largest
 * event time seen), late: events too late to use, cd: last finding time per finding key (cooldown) }.
 * Everything is event time, so replays behave exactly as live.
 *
 * Per event the wrapper does a few comparisons and no allocation: per-kind watermarks are an array indexed
 * by the detector's data kinds (a keyed property per event was a measurable share of the rule's cost);
 * the JSON keeps its `wk` object, keys in the order the kinds were first seen.
 */
import type { CanonicalEvent, EventKind, Severity } from '../core/events.ts';
import type { DetectorInstance, FindingDraft, RiskSignal } from './types.ts';

export interface RuleScope {
  venues?: readonly string[];
  symbols?: readonly string[];
  accounts?: readonly string[];
  segments?: readonly string[];
  sources?: readonly string[];
}

export interface SeverityMapping {
  /** Every finding of the rule gets this severity. */
  fixed?: Severity;
  /** By score, highest `min` first that the score reaches; below all: the detector's own severity. */
  byScore?: ReadonlyArray<{ min: number; severity: Severity }>;
}

export interface Suppression {
  /** Match on the finding's key, venue, symbol or account; every given field must match. */
  key?: string;
  venue?: string;
  symbol?: string;
  account?: string;
  /** Event time (epoch ms) until which matching findings are suppressed; absent: until removed. */
  until?: number;
  reason: string;
}

export interface RuleSettings {
  readonly id: string;
  readonly scope?: RuleScope;
  /** Events older than the key's watermark minus this are late: counted, not used. */
  readonly allowedLatenessMs: number;
  /** After a finding, further findings of the same finding key within this event time are dropped. */
  readonly cooldownMs: number;
  readonly severity?: SeverityMapping;
  readonly suppress?: readonly Suppression[];
  readonly rulesVersion: string;
}

export interface RuleState {
  d: unknown;
  /**
   * Largest event time seen for the key — per data kind when the detector reads several (its streams
   * come from different topics, which may run apart: one must not make the other's events late).
   */
  wm: number;
  /**
   * Per data kind (detectors reading several): watermark by the kind's index among the detector's data
   * kinds (−Infinity: none yet), and the indexes in the order first seen (the JSON's `wk` key order).
   * Present from the key's first data event, as the JSON's `wk` is.
   */
  wv?: number[];
  wo?: number[];
  late: number;
  /** Finding key → event time of its last finding (cooldown); bounded. */
  cd?: Record<string, number>;
}

/** Finding keys remembered per state for cooldown (most keys have one). */
const MAX_COOLDOWN_KEYS = 64;

export interface RuleCounters {
  late: number;
  outOfScope: number;
  cooledDown: number;
  suppressed: number;
}

export interface RuleInstance extends DetectorInstance<RuleState> {
  readonly inner: DetectorInstance;
  readonly settings: RuleSettings;
  readonly counters: RuleCounters;
}

type ScopeCheck = (ev: CanonicalEvent) => boolean;

function compileScope(scope: RuleScope | undefined): ScopeCheck | undefined {
  if (!scope) return undefined;
  const checks: ScopeCheck[] = [];
  const field = (values: readonly string[] | undefined, get: (ev: CanonicalEvent) => string | undefined): void => {
    if (!values || values.length === 0) return;
    const set = new Set(values);
    checks.push((ev) => {
      const v = get(ev);
      return v !== undefined && set.has(v);
    });
  };
  field(scope.venues, (ev) => ('venue' in ev ? ev.venue : undefined));
  field(scope.symbols, (ev) => ('symbol' in ev ? ev.symbol : undefined));
  field(scope.accounts, (ev) => ('account' in ev ? ev.account : undefined));
  field(scope.segments, (ev) => ('segment' in ev ? ev.segment : undefined));
  field(scope.sources, (ev) => ('source' in ev ? ev.source : undefined));
  if (checks.length === 0) return undefined;
  return (ev) => {
    // Status markers describe the feed, not a trade: they follow venue/symbol scopes only.
    for (const c of checks) if (!c(ev)) return false;
    return true;
  };
}

function mapSeverity(mapping: SeverityMapping | undefined, score: number, own: Severity): Severity {
  if (!mapping) return own;
  if (mapping.fixed) return mapping.fixed;
  if (mapping.byScore) {
    let best: { min: number; severity: Severity } | undefined;
    for (const m of mapping.byScore) if (score >= m.min && (!best || m.min > best.min)) best = m;
    if (best) return best.severity;
  }
  return own;
}

function suppressedBy(list: readonly Suppression[] | undefined, f: FindingDraft): Suppression | undefined {
  if (!list) return undefined;
  for (const s of list) {
    if (s.until !== undefined && f.ts >= s.until) continue;
    if (s.key !== undefined && s.key !== f.key) continue;
    if (s.venue !== undefined && s.venue !== f.venue) continue;
    if (s.symbol !== undefined && s.symbol !== f.symbol) continue;
    if (s.account !== undefined && s.account !== f.account) continue;
    return s;
  }
  return undefined;
}

/** Wraps a detector instance in its rule's settings. */
export function applyRule(inner: DetectorInstance, settings: RuleSettings): RuleInstance {
  const inScope = compileScope(settings.scope);
  const { allowedLatenessMs, cooldownMs, severity, suppress, rulesVersion } = settings;
  const counters: RuleCounters = { late: 0, outOfScope: 0, cooledDown: 0, suppressed: 0 };
  const drafts: FindingDraft[] = [];
  const dataKinds: readonly EventKind[] = inner.kinds.filter((k) => k !== 'status');
  const perKind = dataKinds.length > 1;
  const kind0 = dataKinds[0];
  const kind1 = dataKinds[1];

  /** The detector's drafts of one event through cooldown, suppression and severity mapping into `out`. */
  const emit = (state: RuleState, out: FindingDraft[]): void => {
    for (const f of drafts) {
      if (cooldownMs > 0) {
        const cd = (state.cd ??= {});
        const last = cd[f.key];
        if (last !== undefined && f.ts - last < cooldownMs && f.ts >= last) {
          counters.cooledDown++;
          continue;
        }
        if (last === undefined) {
          const keys = Object.keys(cd);
          if (keys.length >= MAX_COOLDOWN_KEYS) {
            let oldest = keys[0] as string;
            for (const k of keys) if ((cd[k] as number) < (cd[oldest] as number)) oldest = k;
            delete cd[oldest];
          }
        }
        cd[f.key] = f.ts;
      }
      if (suppressedBy(suppress, f)) {
        counters.suppressed++;
        continue;
      }
      f.severity = mapSeverity(severity, f.score, f.severity);
      f.rulesVersion = rulesVersion;
      out.push(f);
    }
    drafts.length = 0;
  };

  /** The key's per-kind watermarks, on its first data event. */
  const newKindWatermarks = (state: RuleState): number[] => {
    state.wo = [];
    return (state.wv = dataKinds.map(() => Number.NEGATIVE_INFINITY));
  };

  const instance: RuleInstance = {
    name: inner.name,
    ruleId: settings.id,
    kinds: inner.kinds,
    inner,
    settings,
    counters,
    newState: (key) => ({ d: inner.newState(key), wm: Number.NEGATIVE_INFINITY, late: 0 }),
    onEvent(state: RuleState, ev: CanonicalEvent, out: FindingDraft[], signals?: RiskSignal[]): void {
      if (inScope !== undefined && !inScope(ev)) {
        counters.outOfScope++;
        return;
      }
      const ts = ev.ts;
      // Status markers are Vigil's own, copied into each stream: never late.
      if (ev.kind !== 'status') {
        if (perKind) {
          const kind = ev.kind;
          const i = kind === kind0 ? 0 : kind === kind1 ? 1 : dataKinds.indexOf(kind);
          const wv = state.wv ?? newKindWatermarks(state);
          if (i >= 0) {
            const wm = wv[i] as number;
            if (ts > wm) {
              if (wm === Number.NEGATIVE_INFINITY) (state.wo as number[]).push(i);
              wv[i] = ts;
            } else if (ts < wm - allowedLatenessMs) {
              state.late++;
              counters.late++;
              return;
            }
          }
        }
        if (ts > state.wm) state.wm = ts;
        else if (!perKind && ts < state.wm - allowedLatenessMs) {
          state.late++;
          counters.late++;
          return;
        }
      }
      inner.onEvent(state.d, ev, drafts, signals);
      if (drafts.length === 0) return;
      emit(state, out);
    },
    toJSON: (s) => {
      const j: Record<string, unknown> = { v: 1, d: inner.toJSON(s.d), wm: Number.isFinite(s.wm) ? s.wm : null, late: s.late };
      if (s.cd) j.cd = s.cd;
      if (s.wv && s.wo) {
        const wk: Record<string, number> = {};
        for (const i of s.wo) wk[dataKinds[i] as string] = s.wv[i] as number;
        j.wk = wk;
      }
      return j;
    },
    fromJSON(json: unknown): RuleState {
      const j = json as { v?: number; d?: unknown; wm?: number | null; late?: number; cd?: Record<string, number>; wk?: Record<string, number> } | null;
      if (!j || j.v !== 1 || !('d' in j)) throw new TypeError(`${inner.name}: state JSON is not a v1 rule state`);
      const s: RuleState = { d: inner.fromJSON(j.d), wm: typeof j.wm === 'number' ? j.wm : Number.NEGATIVE_INFINITY, late: j.late ?? 0 };
      if (j.cd) s.cd = { ...j.cd };
      if (j.wk) {
        const wv = newKindWatermarks(s);
        for (const [kind, ts] of Object.entries(j.wk)) {
          const i = dataKinds.indexOf(kind as EventKind);
          if (i < 0 || typeof ts !== 'number' || wv[i] !== Number.NEGATIVE_INFINITY) continue; // not a data kind of this detector
          wv[i] = ts;
          (s.wo as number[]).push(i);
        }
      }
      return s;
    },
  };
  if (inner.view !== undefined) (instance as { view?: DetectorInstance['view'] }).view = inner.view;
  if (inner.keyOf) instance.keyOf = inner.keyOf.bind(inner);
  return instance;
}
