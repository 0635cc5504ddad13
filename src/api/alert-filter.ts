/** Server-side filters for live alerts: the same vocabulary as the findings search. */
import { severityRank, type Finding, type Severity } from '../core/events.ts';

export interface AlertFilter {
  minSeverity?: Severity;
  detector?: readonly string[];
  venue?: readonly string[];
  symbol?: readonly string[];
  account?: readonly string[];
  runId?: string;
}

/** A compiled filter: sets for the lists, so matching is O(1) per field. */
export function compileFilter(filter: AlertFilter): (f: Finding) => boolean {
  const set = (v: readonly string[] | undefined) => (v && v.length > 0 ? new Set(v) : undefined);
  const detector = set(filter.detector);
  const venue = set(filter.venue);
  const symbol = set(filter.symbol);
  const account = set(filter.account);
  const minRank = filter.minSeverity === undefined ? -1 : severityRank(filter.minSeverity);
  const runId = filter.runId;
  return (f) =>
    severityRank(f.severity) >= minRank &&
    (runId === undefined || f.runId === runId) &&
    (!detector || detector.has(f.detector)) &&
    (!venue || venue.has(f.venue ?? '')) &&
    (!symbol || symbol.has(f.symbol ?? '')) &&
    (!account || account.has(f.account ?? ''));
}
