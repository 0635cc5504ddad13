/**
 * A transaction's risk score from the signals of the rules that judged it: noisy-OR,
 * 1 − Π(1 − sᵢ), so independent weak signals add up, one certain signal gives 1, and no signal gives 0.
 * Rules keyed by another entity (views: the receiving account, the merchant) judge a copy of the
 * transaction elsewhere; each view sends its own record and the store combines them the same way.
 */
import type { Transaction } from '../core/events.ts';
import type { RiskSignal } from '../detectors/types.ts';

export interface TxRisk {
  runId: string;
  txId: string;
  source: string;
  account: string;
  ts: number;
  /** `account` for the transaction as sent, or the view (counterparty, merchant) that judged a copy. */
  view: string;
  score: number;
  /** Strongest first. */
  reasons: Array<{ ruleId: string; detector: string; score: number; reason: string }>;
  /** Ids of the findings this transaction (in this view) raised; absent when none (not stored: findings are). */
  findings?: string[];
  /** Version of the rules that judged it (when the rules come from a rules file). */
  rulesVersion?: string;
}

export function noisyOr(scores: Iterable<number>): number {
  let keep = 1;
  for (const s of scores) keep *= 1 - Math.min(1, Math.max(0, s));
  return 1 - keep;
}

export function combineRisk(tx: Transaction, view: string, signals: readonly RiskSignal[], runId: string): TxRisk {
  const reasons = signals
    .filter((s) => s.score > 0)
    .map((s) => ({ ruleId: s.ruleId, detector: s.detector, score: Math.min(1, s.score), reason: s.reason }))
    .sort((a, b) => b.score - a.score || (a.ruleId < b.ruleId ? -1 : a.ruleId > b.ruleId ? 1 : 0));
  return {
    runId,
    txId: tx.id,
    source: tx.source,
    account: tx.account,
    ts: tx.ts,
    view,
    score: Math.round(noisyOr(reasons.map((r) => r.score)) * 1e6) / 1e6,
    reasons,
  };
}

/**
 * One transaction's score over the records of its views, as ClickHouse's tx_scores computes it (noisy-OR
 * of the views' scores, 6 decimals), with every view's reasons, strongest first.
 */
export function combineViews(records: ReadonlyArray<Pick<TxRisk, 'score' | 'reasons'>>): { score: number; reasons: TxRisk['reasons'] } {
  const reasons = records
    .flatMap((r) => r.reasons)
    .sort((a, b) => b.score - a.score || (a.ruleId < b.ruleId ? -1 : a.ruleId > b.ruleId ? 1 : 0));
  return { score: Math.round(noisyOr(records.map((r) => r.score)) * 1e6) / 1e6, reasons };
}
