import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { loadConfig } from '../core/config.ts';
import { buildDetectors } from '../detectors/configure.ts';
import { Pipeline } from '../pipeline/pipeline.ts';
import { stderrProgress } from '../replay/progress.ts';
import { loadMapping } from '../feeds/mapping.ts';
import { parseSpeed, replayFiles, type ReplaySummary } from '../replay/replay.ts';
import { parse, UsageError } from './args.ts';
import { openConfiguredStore } from './store.ts';

export const REPLAY_USAGE = `usage: vigil replay <file…> [--speed max|realtime|<N>x] [--run-id ID] [--mapping FILE] [--json]

Replays recorded files (Vigil recordings, cryptofeed or hftbacktest captures, JSON lines of canonical
events; gzip or plain, detected automatically) through the same pipeline as live. Findings are stored
with the run id. Exit code 0 when the run completed, also when some lines were malformed (they are
counted, listed and kept as dead letters).

--mapping FILE  the files are another provider's records — CSV with a header row, or JSON lines — mapped
                onto canonical transaction or metric events by a field-mapping file (docs/feeds/mapping.md);
                a row that does not map is a malformed line with its line number and reason.`;

export async function replayCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    speed: { type: 'string', default: 'max' },
    'run-id': { type: 'string' },
    mapping: { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(REPLAY_USAGE);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError(`no input file\n${REPLAY_USAGE}`);
  let speed;
  try {
    speed = parseSpeed(values.speed);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  for (const f of positionals) {
    try {
      if (!statSync(f).isFile()) throw new Error('not a file');
    } catch (e) {
      throw new UsageError(`cannot read ${f}: ${(e as Error).message}`);
    }
  }
  const runId = values['run-id'] ?? defaultRunId();
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(runId)) throw new UsageError(`--run-id: expected 1-128 characters of letters, digits and . _ : -, got ${JSON.stringify(runId)}`);
  if (runId === 'live') throw new UsageError('--run-id: "live" is reserved for live feeds');
  // A bad mapping fails before anything is opened, naming the key path.
  const mapping = values.mapping !== undefined ? loadMapping(values.mapping) : undefined;

  const config = loadConfig();
  const detectors = buildDetectors(config);
  const store = await openConfiguredStore(config);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const startedAt = Date.now();
  try {
    await store.upsertRun({ runId, status: 'running', inputs: positionals, startedAt, summary: {} });
    const pipeline = await new Pipeline({
      runId,
      detectors,
      store,
      flushRows: config.VIGIL_FLUSH_ROWS,
      flushMs: config.VIGIL_FLUSH_MS,
      partitions: config.VIGIL_PARTITIONS,
      queueCapacity: config.VIGIL_QUEUE_CAPACITY,
      redisUrl: config.REDIS_URL,
      stateIdleMs: config.VIGIL_STATE_IDLE_MS,
      ephemeralState: true, // a re-run with the same --run-id starts from fresh state
    }).start();
    const isTty = process.stderr.isTTY;
    let summary;
    try {
      summary = await replayFiles(pipeline, {
        files: positionals,
        speed,
        mapping,
        signal: abort.signal,
        progress: stderrProgress(`replay ${runId}`, {
          write: (l) => process.stderr.write(isTty ? l : `${l.replace(/^\r/, '').trimEnd()}\n`),
        }),
      });
    } catch (e) {
      await store.upsertRun({ runId, status: 'failed', inputs: positionals, startedAt, finishedAt: Date.now(), summary: { error: (e as Error).message } });
      throw e;
    } finally {
      await pipeline.close();
    }
    await store.upsertRun({ runId, status: summary.status === 'completed' ? 'completed' : 'cancelled', inputs: positionals, startedAt, finishedAt: Date.now(), summary: { ...summary } });
    if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else process.stdout.write(formatSummary(summary));
    return summary.status === 'completed' ? 0 : 130;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await store.close();
  }
}

function defaultRunId(): string {
  const d = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `replay-${d}-${randomBytes(2).toString('hex')}`;
}

const n = (x: number) => x.toLocaleString('en-US');
const list = (r: Record<string, number>) =>
  Object.entries(r)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${n(v)}`)
    .join(' · ') || '—';

export function formatSummary(s: ReplaySummary): string {
  const lines = [
    `replay ${s.runId}: ${s.status} in ${(s.durationMs / 1000).toFixed(2)} s — ${n(s.frames)} frames, ${n(s.totalEvents)} events, ${n(s.eventsPerSec)} events/s`,
    `  events     ${list(s.events)}`,
    `  ignored    ${list(s.ignored)}`,
  ];
  if (Object.keys(s.unsupported).length) lines.push(`  no adapter ${list(s.unsupported)}`);
  lines.push(`  malformed  ${n(s.malformed.count)}${s.malformed.count ? ' (kept as dead letters)' : ''}`);
  for (const m of s.malformed.first) lines.push(`    ${m.file}:${m.line}: ${m.reason}`);
  if (s.malformed.count > s.malformed.first.length) lines.push(`    … ${n(s.malformed.count - s.malformed.first.length)} more`);
  for (const [source, bySymbol] of Object.entries(s.books)) {
    for (const [symbol, r] of Object.entries(bySymbol)) {
      const what = r.check === 'checksum' ? `${source}'s checksums matched` : `top of book matched ${source}'s own`;
      const top = r.compared ? `, ${what} ${n(r.matched ?? 0)}/${n(r.compared)} (${((r.matchRate ?? 0) * 100).toFixed(3)}%)` : '';
      lines.push(`  book       ${source} ${symbol}: ${n(r.resyncs)} resyncs${top}`);
    }
  }
  lines.push(`  findings   ${list(s.findings)} (total ${n(s.totalFindings)})`);
  return `${lines.join('\n')}\n`;
}
