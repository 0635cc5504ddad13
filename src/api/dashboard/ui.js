// DOM helpers and formatters. Text always goes in through textContent (never innerHTML), so data
// from the API can never become markup.

/**
 * h('div', { class: 'x', dataset: { testid: 'y' }, onclick: fn }, 'text', child, …)
 * Attributes are set with setAttribute (strings), `on*` as listeners, `dataset` key by key.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (id) => document.getElementById(id);

export const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'];
export const severityRank = (s) => SEVERITIES.indexOf(s);

export const STATUS_LABELS = {
  open: 'Open',
  acknowledged: 'Acknowledged',
  resolved: 'Resolved',
  false_positive: 'False positive',
};

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** 14:03:07.120 (UTC): the feed's time of day. */
export function timeOfDay(ms) {
  const d = new Date(ms);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`;
}

/** 2024-08-09 14:03:07.120 UTC */
export function dateTime(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '—';
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${timeOfDay(ms)} UTC`;
}

/** 3 s ago, 5 min ago… */
export function ago(ms, now = Date.now()) {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Window length: 850 ms, 12.5 s, 3 min. */
export function duration(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${+(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${+(ms / 60_000).toFixed(1)} min`;
  return `${+(ms / 3_600_000).toFixed(1)} h`;
}

/** Numbers with sensible precision; anything else as JSON-ish text. */
export function value(v) {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v)) return v.toLocaleString('en-US');
    const a = Math.abs(v);
    return a >= 1000 ? v.toLocaleString('en-US', { maximumFractionDigits: 2 }) : a >= 1 ? String(+v.toFixed(4)) : String(+v.toPrecision(4));
  }
  if (v === null || v === undefined) return '—';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

/** Where a finding happened: venue:symbol, or the account. */
export function subjectOf(f) {
  if (f.symbol) return f.venue ? `${f.venue}:${f.symbol}` : f.symbol;
  if (f.account) return f.account;
  return f.key;
}

export const statusOf = (f) => f.workflow?.status ?? 'open';
