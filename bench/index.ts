/**
 * `npm run bench`: runs the sections, prints each one's detail table as it finishes, then ONE summary
 * table, and writes the same figures as JSON to bench/results.json (`summary` plus every section's own).
 *
 *   npm run bench                      replay, feeds, detectors, alerts, scoring, backtest (about 2 minutes)
 *   npm run bench -- replay detectors  only the named sections
 *   npm run bench -- all               every section, Kafka too
 *
 * The Kafka section (end to end through a broker, Redis state) is opt-in: it needs the services up
 * (`npm run services`) and mostly measures the broker; name it (`kafka`) or say `all` to run it.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { benchAlertLatency, type AlertLatency } from './alerts.ts';
import { backtestSection, type BacktestBench } from './backtest.ts';
import { detectorsSection, type DetectorBenchRow } from './detectors.ts';
import { benchFeeds, type FeedBenchRow } from './feeds.ts';
import { kafkaSection } from './kafka.ts';
import { replaySection, SLOW_FILE_CREATE_US, type ReplayBench } from './replay.ts';
import { scoringSection, type ScoringBenchResult } from './scoring.ts';
import { fmtInt, fmtMB, fmtMs, fmtPct, printSection, type BenchSection } from './table.ts';

/** The whole default run must stay under this on a 2-core machine. */
const BUDGET_S = 300;

async function feedsSection(): Promise<BenchSection> {
  const feeds = await benchFeeds();
  return {
    id: 'feeds',
    title: 'parse + normalize, per venue (ratio = share of plain JSON.parse throughput on the same frames)',
    header: ['venue', 'input', 'frames', 'events', 'JSON.parse frames/s', 'normalize frames/s', 'ratio'],
    leftColumns: 2,
    rows: feeds.map((r) => [r.venue, r.input, fmtInt(r.frames), fmtInt(r.events), fmtInt(r.jsonParseFramesPerSec), fmtInt(r.normalizeFramesPerSec), fmtPct(r.ratio)]),
    json: feeds,
  };
}

async function alertsSection(): Promise<BenchSection> {
  const r = await benchAlertLatency();
  return {
    id: 'alerts',
    title: 'alert delivery latency: trade handed to the in-process pipeline → finding received by a WebSocket client of the API',
    header: ['findings', 'trades', 'p50 ms', 'p99 ms', 'max ms', 'longest loop stall ms'],
    rows: [[fmtInt(r.samples), fmtInt(r.events), fmtMs(r.p50Ms), fmtMs(r.p99Ms), fmtMs(r.maxMs), fmtMs(r.loopDelayMaxMs)]],
    notes: ['  bench/alerts.ts: price_jump on a paced synthetic trade stream; embedded ClickHouse inserts share the event loop, as in `vigil run`.'],
    json: r,
  };
}

interface SectionSpec {
  run: () => Promise<BenchSection | BenchSection[]>;
  /** Runs only when named (or with `all`). */
  optIn?: string;
}

/** Sections in the order they run; each is a module of its own (bench/<id>.ts). */
const SECTIONS: Record<string, SectionSpec> = {
  replay: { run: replaySection },
  feeds: { run: feedsSection },
  detectors: { run: detectorsSection },
  alerts: { run: alertsSection },
  scoring: { run: () => scoringSection() },
  backtest: { run: backtestSection },
  kafka: { run: kafkaSection, optIn: 'needs Kafka and Redis (npm run services); run with `npm run bench -- kafka` or `-- all`' },
};

// ------------------------------------------------------------------ summary

interface Summary {
  capture: string | null;
  jsonParseFramesPerSec: number | null;
  /** Each replay stage: frames/s and its share of the JSON.parse ceiling. */
  replayStages: Record<string, { framesPerSec: number; ratio: number }> | null;
  replayTarget: { ratio: number; met: boolean } | null;
  /** CPU µs per new file before the replay stages (bench/replay.ts probeFileCreation). */
  replayFileCreateUs: number | null;
  detectorEventsPerSec: { onCapture: number; perRuleMedian: number; perRuleMin: number; slowestRule: string } | null;
  clickhouseInsertRowsPerSec: number | null;
  memoryPer100kKeysBytes: { perRuleMedian: number; perRuleMax: number; largestRule: string } | null;
  alertLatencyMs: { p50: number; p99: number } | null;
  scoringLatencyMs: { p50: number; p99: number; requestsPerSec: number } | null;
  kafka: { eventsPerSec: number; p50: number; p99: number } | null;
  backtest: { replayMs: number; backtestMs: number; ratio: number; met: boolean } | null;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function summarize(results: Record<string, unknown>): Summary {
  const replay = results.replay as ReplayBench | undefined;
  const det = results.detectors as { rows: DetectorBenchRow[] } | undefined;
  const alerts = results.alerts as AlertLatency | undefined;
  const scoring = results.scoring as ScoringBenchResult | undefined;
  const backtest = results.backtest as BacktestBench | undefined;
  const kafka = results.kafka as { eventsPerSecToLastFindingWritten: number; latencyMs: { written: { p50: number; p99: number } } } | undefined;
  const rules = (det?.rows ?? []).filter((r) => r.error === undefined);
  const withMem = rules.filter((r) => r.bytesPerKey !== null);
  const slowest = rules.reduce<DetectorBenchRow | undefined>((a, r) => (a === undefined || r.eventsPerSec < a.eventsPerSec ? r : a), undefined);
  const largest = withMem.reduce<DetectorBenchRow | undefined>((a, r) => (a === undefined || r.bytesPerKey! > a.bytesPerKey! ? r : a), undefined);
  const onCapture = replay?.detectorEventsPerSec;
  return {
    capture: replay?.capture ?? null,
    jsonParseFramesPerSec: replay?.stages[0]?.framesPerSec ?? null,
    replayStages: replay ? Object.fromEntries(replay.stages.map((s) => [s.id, { framesPerSec: s.framesPerSec, ratio: s.ratio }])) : null,
    replayTarget: replay?.target ?? null,
    replayFileCreateUs: replay?.fileCreateUs ?? null,
    detectorEventsPerSec:
      slowest || onCapture !== undefined
        ? {
            onCapture: onCapture ?? NaN,
            perRuleMedian: Math.round(median(rules.map((r) => r.eventsPerSec))),
            perRuleMin: slowest?.eventsPerSec ?? NaN,
            slowestRule: slowest?.detector ?? '',
          }
        : null,
    clickhouseInsertRowsPerSec: replay?.clickhouseInsert.rowsPerSec ?? null,
    memoryPer100kKeysBytes: largest
      ? { perRuleMedian: Math.round(median(withMem.map((r) => r.bytesPerKey!)) * 100_000), perRuleMax: largest.bytesPerKey! * 100_000, largestRule: largest.detector }
      : null,
    alertLatencyMs: alerts ? { p50: alerts.p50Ms, p99: alerts.p99Ms } : null,
    scoringLatencyMs: scoring ? { p50: scoring.p50Ms, p99: scoring.p99Ms, requestsPerSec: scoring.rps } : null,
    kafka: kafka ? { eventsPerSec: kafka.eventsPerSecToLastFindingWritten, p50: kafka.latencyMs.written.p50, p99: kafka.latencyMs.written.p99 } : null,
    backtest: backtest ? { replayMs: backtest.replayMs, backtestMs: backtest.backtestMs, ratio: backtest.ratio, met: backtest.met } : null,
  };
}

function summarySection(s: Summary, ran: string[], skipped: Record<string, string>, seconds: number): BenchSection {
  const notRun = (id: string) => (SECTIONS[id]?.optIn && !ran.includes(id) ? `not run (opt-in: npm run bench -- ${id})` : 'not run');
  const rows: string[][] = [];
  const stage = (id: string, label: string) => {
    const st = s.replayStages?.[id];
    rows.push([label, st ? `${fmtInt(st.framesPerSec)} frames/s` : notRun('replay'), st ? fmtPct(st.ratio) : '']);
  };
  stage('json_parse', 'JSON.parse ceiling (the capture\'s frames, same bytes)');
  stage('normalize', '  parse + normalize');
  stage('book', '  + book (depth sync, book building)');
  stage('detectors', '  + detectors (all default rules, in-process)');
  stage('full_replay', '  full embedded replay, ClickHouse writes (replayFiles → Pipeline → chdb)');
  stage('full_replay_no_context', "    the same without storing findings' market context (--no-context)");
  if (s.replayTarget) rows.push([`  target: full replay >= ${fmtPct(s.replayTarget.ratio)} of the ceiling`, s.replayTarget.met ? 'met' : 'NOT met', '']);
  const fc = s.replayFileCreateUs;
  if (fc !== null) rows.push(['  file creation before the replay stages (CPU per new file)', `${fmtInt(fc)} µs${fc > SLOW_FILE_CREATE_US ? ' (slow: see the replay notes)' : ''}`, '']);
  const d = s.detectorEventsPerSec;
  rows.push(['detector events/s: on the capture (rule deliveries)', d && Number.isFinite(d.onCapture) ? fmtInt(d.onCapture) : notRun('replay'), '']);
  rows.push(['detector events/s: per rule, median / slowest', d && d.slowestRule ? `${fmtInt(d.perRuleMedian)} / ${fmtInt(d.perRuleMin)} (${d.slowestRule})` : notRun('detectors'), '']);
  rows.push(['ClickHouse insert rows/s (findings rows, chdb)', s.clickhouseInsertRowsPerSec !== null ? fmtInt(s.clickhouseInsertRowsPerSec) : notRun('replay'), '']);
  const m = s.memoryPer100kKeysBytes;
  rows.push(['memory per 100k keys, per rule: median / largest', m ? `${fmtMB(m.perRuleMedian)} / ${fmtMB(m.perRuleMax)} (${m.largestRule})` : notRun('detectors'), '']);
  const a = s.alertLatencyMs;
  rows.push(['alert latency p50 / p99 (trade in → WebSocket client)', a ? `${fmtMs(a.p50)} / ${fmtMs(a.p99)} ms` : notRun('alerts'), '']);
  const sc = s.scoringLatencyMs;
  rows.push(['scoring latency p50 / p99 (POST /api/transactions/score)', sc ? `${fmtMs(sc.p50)} / ${fmtMs(sc.p99)} ms, ${fmtInt(sc.requestsPerSec)} req/s` : notRun('scoring'), '']);
  const b = s.backtest;
  rows.push(['10-setting backtest vs one replay (commands, by the clock)', b ? `${fmtMs(b.backtestMs)} vs ${fmtMs(b.replayMs)} ms: ${b.ratio.toFixed(2)}× (target < 3×: ${b.met ? 'met' : 'NOT met'})` : notRun('backtest'), '']);
  const k = s.kafka;
  rows.push(['Kafka end to end: events/s, event → stored p50 / p99', k ? `${fmtInt(k.eventsPerSec)}, ${fmtMs(k.p50)} / ${fmtMs(k.p99)} ms` : notRun('kafka'), '']);
  const load = loadavg()
    .map((x) => x.toFixed(1))
    .join(' ');
  return {
    id: 'summary',
    title: `SUMMARY (${process.version}${process.execArgv.filter((a) => a.startsWith('--max-')).map((a) => ` ${a}`).join('')}, ${availableParallelism()} cores, load average ${load}; sections: ${ran.join(', ')}; ${seconds.toFixed(0)} s)`,
    header: ['measure', 'value', 'of JSON.parse'],
    rows,
    notes: [
      '  frames/s per second of process CPU time on the capture held in memory (bench/replay.ts); details in the tables above and bench/results.json.',
      ...Object.entries(skipped)
        .filter(([id]) => SECTIONS[id]?.optIn !== undefined)
        .map(([id, why]) => `  ${id}: ${why}.`),
      ...(seconds > BUDGET_S ? [`  WARNING: took ${seconds.toFixed(0)} s, over the ${BUDGET_S} s budget.`] : []),
    ],
    json: s,
  };
}

// ------------------------------------------------------------------ run

const args = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const all = args.includes('all');
const named = args.filter((a) => a !== 'all');
for (const w of named) if (!(w in SECTIONS)) throw new Error(`unknown bench section "${w}" (known: ${Object.keys(SECTIONS).join(', ')}, all)`);
const started = performance.now();
const results: Record<string, unknown> = {};
const ran: string[] = [];
const skipped: Record<string, string> = {};
const timings: Record<string, number> = {};
for (const [id, spec] of Object.entries(SECTIONS)) {
  const wanted = named.length > 0 ? named.includes(id) : all || spec.optIn === undefined;
  if (!wanted) {
    skipped[id] = spec.optIn ?? 'not named';
    continue;
  }
  const t = performance.now();
  const out = await spec.run();
  timings[id] = Math.round((performance.now() - t) / 100) / 10;
  ran.push(id);
  for (const s of Array.isArray(out) ? out : [out]) {
    printSection(s);
    results[s.id] = s.json;
  }
}
const seconds = (performance.now() - started) / 1000;
const summary = summarySection(summarize(results), ran, skipped, seconds);
printSection(summary);
writeFileSync(
  'bench/results.json',
  `${JSON.stringify({ date: new Date().toISOString(), node: process.version, cores: availableParallelism(), loadavg: loadavg(), seconds: Math.round(seconds), sectionSeconds: timings, skipped, summary: summary.json, ...results }, null, 2)}\n`,
);
console.log(`\nwritten bench/results.json; ${seconds.toFixed(1)} s in all`);
process.exit(0); // sections may leave clients (Kafka, Redis) with sockets in their teardown
