/** The one table of detectors, and construction with validated parameters. */
import { ERR, VigilError } from '../core/errors.ts';
import { amountAnomalySpec } from './amount-anomaly.ts';
import { cardTestingSpec } from './card-testing.ts';
import { impossibleTravelSpec } from './impossible-travel.ts';
import { structuringSpec } from './structuring.ts';
import { velocitySpec } from './velocity.ts';
import { crossVenueDivergenceSpec } from './cross-venue-divergence.ts';
import { crossedBookSpec } from './crossed-book.ts';
import { metricAnomalySpec } from './metric-anomaly.ts';
import { volatilityShiftSpec } from './volatility-shift.ts';
import { volumeSpikeSpec } from './volume-spike.ts';
import { layeringSpec } from './layering.ts';
import { momentumIgnitionSpec } from './momentum-ignition.ts';
import { spoofingSpec } from './spoofing.ts';
import { frontRunningSpec } from './front-running.ts';
import { markingTheCloseSpec } from './marking-the-close.ts';
import { washTradeSpec } from './wash-trade.ts';
import { fanInSpec } from './fan-in.ts';
import { fanOutSpec } from './fan-out.ts';
import { disorderlyTradingSpec } from './disorderly-trading.ts';
import { feedGapSpec } from './feed-gap.ts';
import { pumpAndDumpSpec } from './pump-and-dump.ts';
import { quoteStuffingSpec } from './quote-stuffing.ts';
import { washTradePublicSpec } from './wash-trade-public.ts';
import { newCounterpartyLargeAmountSpec } from './new-counterparty-large-amount.ts';
import { rapidMovementSpec } from './rapid-movement.ts';
import { terminalRiskSpec } from './terminal-risk.ts';
import { priceJumpSpec } from './price-jump.ts';
import { spreadBlowoutSpec } from './spread-blowout.ts';
import type { DetectorInstance, DetectorSpec } from './types.ts';

/** Every detector, by public name; the order is the order of the docs and the shipped rules. */
export const detectorSpecs: Record<string, DetectorSpec<any, any>> = {
  // market data
  price_jump: priceJumpSpec,
  spread_blowout: spreadBlowoutSpec,
  feed_gap: feedGapSpec,
  crossed_book: crossedBookSpec,
  cross_venue_divergence: crossVenueDivergenceSpec,
  quote_stuffing: quoteStuffingSpec,
  pump_and_dump: pumpAndDumpSpec,
  disorderly_trading: disorderlyTradingSpec,
  wash_trade_public: washTradePublicSpec,
  volume_spike: volumeSpikeSpec,
  volatility_shift: volatilityShiftSpec,
  // order flow with accounts
  spoofing: spoofingSpec,
  layering: layeringSpec,
  momentum_ignition: momentumIgnitionSpec,
  wash_trade: washTradeSpec,
  marking_the_close: markingTheCloseSpec,
  front_running: frontRunningSpec,
  // transactions
  velocity: velocitySpec,
  amount_anomaly: amountAnomalySpec,
  structuring: structuringSpec,
  impossible_travel: impossibleTravelSpec,
  card_testing: cardTestingSpec,
  rapid_movement: rapidMovementSpec,
  fan_out: fanOutSpec,
  fan_in: fanInSpec,
  new_counterparty_large_amount: newCounterpartyLargeAmountSpec,
  terminal_risk: terminalRiskSpec,
  // metric series
  metric_anomaly: metricAnomalySpec,
};

export function detectorNames(): string[] {
  return Object.keys(detectorSpecs).sort();
}

export function getDetectorSpec(name: string): DetectorSpec<any, any> {
  const spec = Object.hasOwn(detectorSpecs, name) ? detectorSpecs[name] : undefined;
  if (!spec) {
    throw new VigilError(ERR.CONFIG, `unknown detector "${name}" (known: ${detectorNames().join(', ')})`, 400, { detector: name });
  }
  return spec;
}

/**
 * Creates a detector instance with its parameters validated (and defaulted) by the spec's zod schema.
 * Throws VigilError(ERR.CONFIG) naming the detector, the rule and each offending parameter.
 */
export function createDetector(name: string, params: unknown = {}, ruleId: string = `${name}.default`): DetectorInstance<any> {
  const spec = getDetectorSpec(name);
  const parsed = spec.params.safeParse(params ?? {});
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const keys = i.code === 'unrecognized_keys' ? i.keys : [];
      const path = i.path.length > 0 ? i.path.join('.') : keys.length > 0 ? keys.join(', ') : '(params)';
      return { param: path, message: i.message };
    });
    const text = problems.map((p) => `${p.param}: ${p.message}`).join('; ');
    throw new VigilError(ERR.CONFIG, `invalid parameters for detector ${name} (rule ${ruleId}): ${text}`, 400, {
      detector: name,
      ruleId,
      params: problems.map((p) => p.param),
      issues: problems,
    });
  }
  return spec.create(parsed.data, ruleId);
}
