/**
 * Backtest against replay, as a user runs them: wall-clock time of `vigil replay <capture> --speed max`
 * (embedded store, fresh data directory) and of `vigil backtest <capture> --grid bench/grid-price-jump.yaml`
 * (10 settings of price_jump), whole commands including start-up, alternated, best of `rounds` each.
 * Target (issue 7): the 10-setting backtest in under 3× the time of one replay.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fmtMs, type BenchSection } from './table.ts';

const CAPTURE = '../shared/data/exchange_raw/hftbacktest/spot_btcusdt_20240808.gz';
const GRID = 'bench/grid-price-jump.yaml';
export const BACKTEST_TARGET_RATIO = 3;

export interface BacktestBench {
  capture: string;
  settings: number;
  replayMs: number;
  backtestMs: number;
  ratio: number;
  met: boolean;
}

function timed(args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['bin/vigil.js', ...args], { env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`vigil ${args[0]} exited ${r.status}: ${r.stderr.slice(-2000)}`);
  return ms;
}

export async function benchBacktest(rounds = 2): Promise<BacktestBench> {
  let replayMs = Infinity;
  let backtestMs = Infinity;
  for (let i = 0; i < rounds; i++) {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-bench-backtest-'));
    const env = { ...process.env, VIGIL_DATA_DIR: dir, KAFKA_BROKERS: '', REDIS_URL: '', CLICKHOUSE_URL: '' };
    try {
      replayMs = Math.min(replayMs, timed(['replay', CAPTURE, '--speed', 'max', '--run-id', `bench-${i}`, '--json'], env));
      backtestMs = Math.min(backtestMs, timed(['backtest', CAPTURE, '--grid', GRID, '--json'], env));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const ratio = backtestMs / replayMs;
  return { capture: CAPTURE, settings: 10, replayMs, backtestMs, ratio, met: ratio < BACKTEST_TARGET_RATIO };
}

export async function backtestSection(): Promise<BenchSection> {
  const r = await benchBacktest();
  return {
    id: 'backtest',
    title: 'backtest vs replay: whole commands by the clock (start-up included), best of 2 alternated runs',
    header: ['command', 'ms', 'ratio to one replay'],
    rows: [
      ['vigil replay <capture> --speed max (embedded store)', fmtMs(r.replayMs), '1.00×'],
      [`vigil backtest <capture> --grid ${GRID} (${r.settings} settings)`, fmtMs(r.backtestMs), `${r.ratio.toFixed(2)}×`],
      [`target: < ${BACKTEST_TARGET_RATIO}× one replay`, r.met ? 'met' : 'NOT met', ''],
    ],
    json: r,
  };
}
