/**
 * `fan_in`: many distinct senders pay one account within a short window (the collection leg of a mule
 * account, a scam's receiving account, a compromised-credentials cash-out point).
 *
 * Keyed by the RECEIVING account through the counterparty view (events.ts eventViews): the state of
 * account R gets a copy of every transaction whose counterparty is R. The copies that are payments INTO R
 * are the payers' debits (account = payer, direction debit, counterparty = R); those are counted, the
 * distinct id being the payer's account. Credits in this view are someone else's incoming money that
 * names R as its sender (R paying out), so they are ignored.
 *
 * The engine is fan_out's (fan-out.ts): D = distinct payers in (ts − windowMs, ts], the baseline is the
 * receiver's busiest tumbling window of the last baselineMs (closed windows that no longer overlap the
 * sliding one), T = max(minDistinct, ceil(peakFactor · peak)); a finding fires on the payment that brings
 * D to ≥ T from a payer new to the window, at most once per cooldownMs; every counted payment pushes a
 * RiskSignal with score signalScore(D / T).
 *
 * Blind spot: a payment recorded only as the receiver's own credit (the payer is at another bank, so
 * there is no payer debit in the stream) arrives in the primary view keyed by the receiver, never in this
 * view, and is not counted.
 */
import { fanParamsSchema, makeFanInstance, type FanParams, type FanState } from './fan-out.ts';
import { plural } from './flow-common.ts';
import type { DetectorSpec } from './types.ts';

export const fanInParams = fanParamsSchema({ minDistinct: 10 });
export type FanInParams = FanParams;

export const fanInSpec: DetectorSpec<FanInParams, FanState> = {
  name: 'fan_in',
  description:
    'Many distinct senders pay one account within a short window: at least minDistinct, and at least ' +
    'peakFactor × its busiest window of the last baselineMs (counterparty view: the state is the receiver).',
  kinds: ['transaction'],
  view: 'counterparty',
  params: fanInParams,
  create: (params, ruleId) =>
    makeFanInstance(params, ruleId, {
      name: 'fan_in',
      view: 'counterparty',
      // Only the payers' debits naming this receiver; a self-transfer is not a distinct sender.
      idOf: (tx, key) => (tx.counterparty === key && tx.account !== key ? tx.account : undefined),
      verb: (n) => `received payments from ${plural(n, 'distinct sender')}`,
      idLabel: 'newSender',
    }),
};
