/** The trades of the Binance BTCUSDT capture (hftbacktest, 2024-08-08) as canonical events, for the detector tests. */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import type { Trade } from '../../src/core/events.ts';

/** hftbacktest's Binance collector: `<local_receive_time_ns> <raw JSON>` lines, gzip. */
export const HFT_CAPTURE = new URL('../../../shared/data/exchange_raw/hftbacktest/spot_btcusdt_20240808.gz', import.meta.url).pathname;

/** Every `trade` frame of the capture as a canonical trade (venue binance, BTC-USDT), in capture order. */
export function captureTrades(path: string = HFT_CAPTURE): Trade[] {
  const text = gunzipSync(readFileSync(path)).toString('utf8');
  const trades: Trade[] = [];
  for (const line of text.split('\n')) {
    if (line.length === 0) continue;
    const sp = line.indexOf(' ');
    const recvNs = BigInt(line.slice(0, sp));
    const msg = JSON.parse(line.slice(sp + 1)) as { data?: { e?: string; T: number; p: string; q: string; t: number; m: boolean } };
    const d = msg.data;
    if (d?.e !== 'trade') continue;
    trades.push({
      kind: 'trade',
      venue: 'binance',
      symbol: 'BTC-USDT',
      ts: d.T,
      recvTs: Number(recvNs / 1_000_000n),
      price: Number(d.p),
      qty: Number(d.q),
      side: d.m ? 'sell' : 'buy',
      tradeId: String(d.t),
    });
  }
  return trades;
}
