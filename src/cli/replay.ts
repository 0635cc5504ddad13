import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { loadConfig, type Config } from '../core/config.ts';
import type { Finding } from '../core/events.ts';
import { ERR, VigilError } from '../core/errors.ts';
import type { DetectorInstance } from '../detectors/types.ts';
import { Pipeline } from '../pipeline/pipeline.ts';
import { detectorTopics } from '../pipeline/detect.ts';
import { Ingestor } from '../pipeline/ingest.ts';
import type { KafkaGroups, OffsetTargets } from '../pipeline/kafka-groups.ts';
import { GROUPS, kafkaGroups, RunHeaderTransport, transportFor } from '../pipeline/roles.ts';
import { RUNS_TOPIC } from '../pipeline/store-side.ts';
import { stderrProgress } from '../replay/progress.ts';
import { formatLabelReport, LabelScorer, labelScoreRows, loadLabels, parseDurationMs, scoreFindingsOn, type LabelReport } from '../replay/labels.ts';
import type { Mapping } from '../feeds/mapping.ts';
import { parseSpeed, replayFiles, type ReplaySummary, type Speed } from '../replay/replay.ts';
import type { RunRecord } from '../storage/types.ts';
import { TOPICS, type Transport } from '../transport/types.ts';
import { UsageError } from './args.ts';
import { inputMappings, parseWithTokens, replayRules, timeRangeArgs } from './replay-options.ts';
import { openConfiguredStore } from './store.ts';

export const REPLAY_USAGE = `usage: vigil replay <file…> [--speed max|realtime|<N>x] [--run-id ID] [--mapping FILE] [--from T] [--to T] [--rules FILE] [--labels FILE [--label-grace D]] [--json]

Replays recorded files (Vigil recordings, cryptofeed or hftbacktest captures, JSON lines of canonical
events; gzip or plain, detected automatically) through the same pipeline as live. Findings are stored
with the run id. Exit code 0 when the run completed, also when some lines were malformed (they are
counted, listed and kept as dead letters).

--mapping FILE  the files are another provider's records — CSV with a header row, or JSON lines — mapped
                onto canonical transaction or metric events by a field-mapping file (docs/feeds/mapping.md);
                a row that does not map is a malformed line with its line number and reason. It applies to
                the files after it, up to the next --mapping (\`--mapping none\`: recordings again); one
                --mapping after every file applies to them all.
--from T, --to T  only records in [from, to): epoch ms or ISO-8601 (2024-08-08T12:00:00Z; no offset = UTC).
                Frames received before --from still go through their venue's normalizer, so books are
                right at --from, but none of their events reaches the detectors.
--rules FILE    detect with this rules file instead of VIGIL_RULES (see rules/default.yaml); its version
                is in the summary and the run record.
--labels FILE   score the run's findings against ground-truth labels (JSON lines of {start, end, key,
                detector?}; docs/backtest.md): precision, recall, F1 and detection delay per detector, in
                the summary, in --json (\`labels\`) and in ClickHouse \`label_scores\` (local runs).
--label-grace D findings up to D after a label's end still match it (500, 500ms, 30s, 5m; default 0).
--no-context    do not store the run's trades, quotes and transactions (the context of its findings and
                the prices of /api/prices): for benchmarks of detection alone. Local runs only.

Several files are merged by time into one stream, one record at a time (each file is read lazily):
recordings by receive time, canonical events and mapped records by their event time; a malformed line
keeps its place in its file. Each file must be in time order itself (a file that is not stays in its
own order); ties go to the file given first. The run is recorded in ClickHouse table \`runs\` (status,
inputs, options, rules version, events, findings, duration; summary JSON); the same --run-id replaces it.

With KAFKA_BROKERS set, the replay goes through the distributed roles: frames are normalized here and
the events produced to Kafka with the run id in their \`run\` header; \`vigil detect\` workers detect and
\`vigil api\` stores (this process opens no store). It then waits until the detect group has handled
every event it sent and the store group has stored every finding they gave, and prints the summary,
findings counted off vigil.findings for the run. Detector state of the run stays in Redis (it expires);
re-using a --run-id continues that state.`;

export async function replayCommand(argv: string[]): Promise<number> {
  const { values, positionals, tokens } = parseWithTokens(argv, {
    speed: { type: 'string', default: 'max' },
    'run-id': { type: 'string' },
    mapping: { type: 'string', multiple: true },
    from: { type: 'string' },
    to: { type: 'string' },
    rules: { type: 'string' },
    labels: { type: 'string' },
    'label-grace': { type: 'string' },
    json: { type: 'boolean', default: false },
    'no-context': { type: 'boolean', default: false },
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
  const { mappings, paths: mappingPaths } = inputMappings(tokens);
  const range = timeRangeArgs(values.from, values.to);
  // Labels too: a bad line fails here with file:line and the reason.
  if (values['label-grace'] !== undefined && values.labels === undefined) throw new UsageError('--label-grace needs --labels');
  const labels = values.labels !== undefined ? loadLabels(values.labels) : undefined;
  const scorer = labels && new LabelScorer(labels, values['label-grace'] !== undefined ? parseDurationMs(values['label-grace'], '--label-grace') : 0);

  const config = loadConfig();
  const rules = replayRules(config, values.rules);
  const detectors = rules.instances;
  // What the run was asked to do, for its record in `runs`.
  const runOptions: Record<string, unknown> = {
    speed: values.speed,
    ...range,
    ...(values.rules !== undefined ? { rules: values.rules } : {}),
    ...(mappingPaths.some((p) => p !== undefined) ? { mappings: Object.fromEntries(positionals.map((f, i) => [f, mappingPaths[i] ?? null])) } : {}),
  };
  if (config.KAFKA_BROKERS) return replayOverKafka(config, detectors, { files: positionals, runId, speed, mappings, range, runOptions, json: values.json, scorer });
  const store = await openConfiguredStore(config);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const startedAt = Date.now();
  const runBase = { runId, inputs: positionals, startedAt, rulesVersion: rules.version, options: runOptions };
  try {
    await store.upsertRun({ ...runBase, status: 'running', summary: {} });
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
      storeContext: !values['no-context'],
    }).start();
    const isTty = process.stderr.isTTY;
    let summary;
    // Subscribed before any event is sent; the pipeline's drain waits for it too.
    const scoring = scorer && (await scoreFindingsOn(pipeline.transport, runId, scorer));
    try {
      summary = await replayFiles(pipeline, {
        files: positionals,
        speed,
        mappings,
        ...range,
        signal: abort.signal,
        progress: stderrProgress(`replay ${runId}`, {
          write: (l) => process.stderr.write(isTty ? l : `${l.replace(/^\r/, '').trimEnd()}\n`),
        }),
      });
    } catch (e) {
      const finishedAt = Date.now();
      await store.upsertRun({ ...runBase, status: 'failed', finishedAt, durationMs: finishedAt - startedAt, summary: { error: (e as Error).message } });
      throw e;
    } finally {
      await scoring?.stop();
      await pipeline.close();
    }
    summary.rulesVersion ??= rules.version; // also with no rule enabled
    const scored = scorer?.report();
    if (scored) await store.insertLabelScores(labelScoreRows(runId, scored));
    return await finishRun(summary, scored, values.json, (end) => store.upsertRun({ ...runBase, ...end })); // awaited: the finally closes the store
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await store.close();
  }
}

/** Records the run's end (with the label scores in its summary), prints the summary, and gives the exit code. */
async function finishRun(
  summary: ReplaySummary,
  scored: LabelReport | undefined,
  json: boolean | undefined,
  record: (end: Pick<RunRecord, 'status' | 'finishedAt' | 'events' | 'findings' | 'durationMs' | 'summary'>) => Promise<unknown>,
): Promise<number> {
  const out = scored ? { ...summary, labels: scored } : summary;
  await record({
    status: summary.status === 'completed' ? 'completed' : 'cancelled',
    finishedAt: Date.now(),
    events: summary.totalEvents,
    findings: summary.totalFindings,
    durationMs: summary.durationMs,
    summary: { ...out },
  });
  if (json) process.stdout.write(`${JSON.stringify(out)}\n`);
  else process.stdout.write(formatSummary(summary) + (scored ? formatLabelReport(scored) : ''));
  return summary.status === 'completed' ? 0 : 130;
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
      const dropped = r.dropped ? `, ${n(r.dropped)} updates older than the snapshot dropped` : '';
      lines.push(`  book       ${source} ${symbol}: ${n(r.resyncs)} resyncs${dropped}${top}`);
    }
  }
  lines.push(`  findings   ${list(s.findings)} (total ${n(s.totalFindings)})${s.rulesVersion ? `, rules ${s.rulesVersion}` : ''}`);
  if (s.timeRange) {
    const r = s.timeRange;
    const at = (t: number | undefined) => (t === undefined ? '…' : new Date(t).toISOString());
    lines.push(`  range      ${at(r.from)} – ${at(r.to)}: ${n(r.skippedBefore)} records before and ${n(r.skippedAfter)} after skipped, ${n(r.warmupFrames)} frames before normalized for books only`);
  }
  if (s.lateEvents) lines.push(`  late       ${list(s.lateEvents)} (events behind their key's newest by more than the rule's allowed lateness: counted, not used)`);
  return `${lines.join('\n')}\n`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Retries a broker call until it answers (a broker restart) or the signal aborts. */
async function untilAnswered<T>(fn: () => Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  for (let delay = 100; ; delay = Math.min(2000, delay * 2)) {
    try {
      return await fn();
    } catch (e) {
      if (signal.aborted) return undefined;
      process.stderr.write(`replay: Kafka not answering (${(e as Error).message}); retrying\n`);
      await sleep(delay);
    }
  }
}

/** Waits (up to a minute) until the group has consumers or has consumed the topics before. */
async function requireGroup(groups: KafkaGroups, group: string, topics: string[], who: string, config: Config, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + 60_000;
  let told = false;
  let error: string | undefined;
  for (;;) {
    if (signal.aborted) return;
    try {
      if ((await groups.members(group)) > 0 || (await groups.hasCommitted(group, topics))) return;
      error = undefined;
    } catch (e) {
      error = (e as Error).message; // broker busy or restarting: ask again
    }
    if (Date.now() > deadline) {
      if (error) throw new VigilError(ERR.INTERNAL, `Kafka at ${config.KAFKA_BROKERS} does not answer: ${error}`);
      throw new VigilError(
        ERR.INTERNAL,
        `no \`${who}\` has joined consumer group ${config.VIGIL_TOPIC_PREFIX}${group} on ${config.KAFKA_BROKERS} yet; start it before replaying (a group new to a topic starts at its end, so events sent before would never be read)`,
      );
    }
    if (!told && Date.now() > deadline - 55_000) {
      told = true;
      process.stderr.write(`replay: waiting for a \`${who}\` to join group ${config.VIGIL_TOPIC_PREFIX}${group}…\n`);
    }
    await sleep(250);
  }
}

function merge(a: OffsetTargets, b: OffsetTargets): OffsetTargets {
  return new Map([...a, ...b]);
}

/** `vigil replay` with KAFKA_BROKERS: frames normalized here, events to Kafka, findings from the roles. */
async function replayOverKafka(
  config: Config,
  detectors: DetectorInstance[],
  opts: {
    files: string[];
    runId: string;
    speed: Speed;
    mappings: (Mapping | undefined)[];
    range: { from?: number; to?: number };
    runOptions: Record<string, unknown>;
    json: boolean;
    scorer?: LabelScorer;
  },
): Promise<number> {
  const { runId, files } = opts;
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const transport: Transport = transportFor(config);
  const groups = kafkaGroups(config);
  const counter = `vigil-replay-${runId}`;
  const eventTopics = detectorTopics(detectors);
  const startedAt = Date.now();
  /** Finding ids of this run seen on vigil.findings, by detector (re-deliveries counted once). */
  const seen = new Set<string>();
  const findings: Record<string, number> = Object.fromEntries(detectors.map((d) => [d.name, 0]));
  const run = (r: Omit<RunRecord, 'runId' | 'inputs' | 'startedAt'>) =>
    transport.send<RunRecord>(RUNS_TOPIC, [{ key: runId, value: { runId, inputs: files, startedAt, options: opts.runOptions, ...r } }]);
  const waitFor = async (group: string, targets: OffsetTargets, what: string) =>
    groups.waitCaughtUp(group, targets, {
      signal: abort.signal,
      onWait: (behind, error) =>
        process.stderr.write(`replay ${runId}: waiting for ${what} (group ${config.VIGIL_TOPIC_PREFIX}${group}): ${behind === undefined ? `broker not answering: ${error}` : `${behind} messages to go`}\n`),
    });
  try {
    await requireGroup(groups, GROUPS.detect, eventTopics, 'vigil detect', config, abort.signal);
    await requireGroup(groups, GROUPS.store, [TOPICS.findings], 'vigil api', config, abort.signal);
    // Counts the run's findings off the topic: subscribed before anything is sent (a new group starts at the end).
    const sub = await transport.subscribe<Finding>({
      group: counter,
      topics: [TOPICS.findings],
      eachBatch: (b) => {
        for (const m of b.messages) {
          const f = m.value;
          if (f.runId !== runId || seen.has(f.id)) continue;
          seen.add(f.id);
          findings[f.detector] = (findings[f.detector] ?? 0) + 1;
          opts.scorer?.add(f);
        }
      },
    });
    await run({ status: 'running', summary: {} });
    const ingestor = new Ingestor(new RunHeaderTransport(transport, runId));
    const target = {
      runId,
      ingestor,
      get deadLetters() {
        return ingestor.counters.malformed;
      },
      detectors: { counters: { findings } },
      async drain() {
        await ingestor.flush();
        // 1. The detect group past every event sent (it commits only after producing the findings).
        const events = await untilAnswered(() => groups.ends(eventTopics), abort.signal);
        if (!events || !(await waitFor(GROUPS.detect, events, 'the detect workers'))) return;
        // 2. The store group past every finding there is now (so every one of this run) and every dead letter.
        const out = await untilAnswered(async () => merge(await groups.ends([TOPICS.findings]), await groups.ends([TOPICS.dlq])), abort.signal);
        if (!out || !(await waitFor(GROUPS.store, out, 'the store (vigil api)'))) return;
        // 3. This process's own count of them.
        const ends = new Map([...out].filter(([t]) => t === TOPICS.findings));
        await waitFor(counter, ends, 'the findings count');
      },
    };
    const isTty = process.stderr.isTTY;
    let summary: ReplaySummary;
    try {
      summary = await replayFiles(target, {
        files,
        speed: opts.speed,
        mappings: opts.mappings,
        ...opts.range,
        signal: abort.signal,
        progress: stderrProgress(`replay ${runId}`, {
          write: (l) => process.stderr.write(isTty ? l : `${l.replace(/^\r/, '').trimEnd()}\n`),
        }),
      });
    } catch (e) {
      await run({ status: 'failed', finishedAt: Date.now(), summary: { error: (e as Error).message } }).catch(() => undefined);
      throw e;
    } finally {
      await sub.stop();
      await groups.deleteGroup(counter);
    }
    // Aborted while waiting for the roles: the findings are not all counted.
    if (abort.signal.aborted) summary.status = 'aborted';
    // No store in this process: the scores travel in the run's summary (ClickHouse runs.summary).
    return await finishRun(summary, opts.scorer?.report(), opts.json, run); // awaited: the finally closes the transport
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await transport.close();
    await groups.close();
  }
}
