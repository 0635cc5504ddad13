/** Times as people type them: epoch milliseconds or ISO-8601 (the API's from/to, `vigil replay --from/--to`). */

const ISO = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

/** Epoch ms from epoch milliseconds or ISO-8601 (a date-time without an offset is UTC); undefined when neither. */
export function parseTime(s: string): number | undefined {
  if (/^\d{1,15}$/.test(s)) return Number(s);
  const m = ISO.exec(s);
  if (!m) return undefined;
  const hasTime = s.length > 10;
  const t = Date.parse(hasTime && m[1] === undefined ? `${s.replace(' ', 'T')}Z` : s.replace(' ', 'T'));
  return Number.isFinite(t) && t >= 0 ? t : undefined;
}
