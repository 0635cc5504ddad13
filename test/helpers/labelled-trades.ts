/**
 * A small synthetic market with known price jumps, for the labelled replay and backtest tests: canonical
 * trade events, one per second per symbol, at a flat price except for jumps of ±100 bps at known times.
 * Under the rules below, price_jump fires exactly at each jump (z ≈ 200 against the 0.5 bps scale floor).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const T0 = 1_700_000_000_000;
const SECOND = 1_000;

/** Jumps: symbol, second after T0, and the price from then on. */
export const JUMPS = [
  { symbol: 'BTC-USDT', at: 40, price: 101 }, // up 99.5 bps from 100
  { symbol: 'ETH-USDT', at: 60, price: 2020 }, // up from 2000
  { symbol: 'BTC-USDT', at: 80, price: 100 }, // back down
  { symbol: 'BTC-USDT', at: 120, price: 101 }, // up again (the up-cooldown of 10 s is long over)
] as const;

/** The price_jump findings the input gives: one per jump, at the jump's trade time. */
export const EXPECTED_FINDINGS = JUMPS.map((j) => ({ key: `binance:${j.symbol}`, ts: T0 + j.at * SECOND }));

export function syntheticTrades(seconds = 150): string {
  const base: Record<string, number> = { 'BTC-USDT': 100, 'ETH-USDT': 2000 };
  const lines: string[] = [];
  for (let s = 0; s <= seconds; s++) {
    for (const symbol of ['BTC-USDT', 'ETH-USDT']) {
      const jump = JUMPS.find((j) => j.symbol === symbol && j.at === s);
      if (jump) base[symbol] = jump.price;
      const ts = T0 + s * SECOND;
      lines.push(JSON.stringify({ kind: 'trade', venue: 'binance', symbol, ts, recvTs: ts, price: base[symbol], qty: 1, side: 'buy', tradeId: `${symbol}-${s}` }));
    }
  }
  return `${lines.join('\n')}\n`;
}

/** price_jump alone, sensitive enough for a 20-interval warm-up (its other parameters at their defaults). */
export const SYNTHETIC_RULES = {
  description: 'labelled replay test',
  rules: [{ id: 'price_jump.test', detector: 'price_jump', params: { intervalMs: 1000, minSamples: 20, zThreshold: 6, minMoveBps: 5, minScaleBps: 0.5, cooldownMs: 10000 } }],
};

/** Writes the trades and the rules into dir; returns their paths. */
export function writeSynthetic(dir: string): { trades: string; rules: string } {
  const trades = join(dir, 'trades.jsonl');
  const rules = join(dir, 'rules.json');
  writeFileSync(trades, syntheticTrades());
  writeFileSync(rules, JSON.stringify(SYNTHETIC_RULES));
  return { trades, rules };
}
