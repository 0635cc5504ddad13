/**
 * Which findings a webhook gets: every filter it sets must match (a list matches any of its values);
 * one that sets none gets every live finding. Severity and the alert filters mean what they mean on
 * the live API (src/api/alert-filter.ts); `rules` matches the finding's rule id.
 */
import { compileFilter } from '../api/alert-filter.ts';
import type { Finding } from '../core/events.ts';
import type { WebhookConfig } from './config.ts';

export type Route = (f: Finding) => boolean;

export function compileRoute(w: Pick<WebhookConfig, 'minSeverity' | 'detectors' | 'rules' | 'venues' | 'symbols' | 'accounts'>): Route {
  const filter = compileFilter({
    ...(w.minSeverity ? { minSeverity: w.minSeverity } : {}),
    ...(w.detectors ? { detector: w.detectors } : {}),
    ...(w.venues ? { venue: w.venues } : {}),
    ...(w.symbols ? { symbol: w.symbols } : {}),
    ...(w.accounts ? { account: w.accounts } : {}),
  });
  const rules = w.rules && w.rules.length > 0 ? new Set(w.rules) : undefined;
  return rules ? (f) => rules.has(f.ruleId) && filter(f) : filter;
}
