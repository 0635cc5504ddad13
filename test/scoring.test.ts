/**
 * Synchronous scoring (POST /api/transactions/score, src/pipeline/scoring.ts): the transaction goes
 * through the streaming path, so its score equals what the stream gives, it sees the account's streamed
 * history and counts for what comes after; validation, body limit, timeout, pending limit, repeated ids;
 * and the same over real Kafka with the detectors on another transport.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AlertHub } from '../src/api/alert-hub.ts';
import { buildApi } from '../src/api/server.ts';
import { eventViews, type Finding, type Transaction } from '../src/core/events.ts';
import { loadRules } from '../src/detectors/configure.ts';
import { DetectorRunner, allDetectorTopics } from '../src/pipeline/detect.ts';
import { Pipeline } from '../src/pipeline/pipeline.ts';
import { combineViews, type TxRisk } from '../src/pipeline/risk-score.ts';
import { TransactionScorer, type ScoreResult } from '../src/pipeline/scoring.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import type { Store } from '../src/storage/types.ts';
import { KafkaTransport } from '../src/transport/kafka.ts';
import { MemoryTransport } from '../src/transport/memory.ts';
import { TOPICS, type Transport } from '../src/transport/types.ts';

const T0 = Date.UTC(2024, 7, 8, 12, 0, 0);
const URL_ = '/api/transactions/score';

/** The i-th payment of an account: every 30 s, card payments at its own merchants, every fourth a transfer to a payee. */
function tx(account: string, i: number, over: Partial<Transaction> = {}): Transaction {
  const transfer = i % 4 === 3;
  return {
    kind: 'transaction',
    source: 'bank',
    id: `${account}-${i}`,
    ts: T0 + i * 30_000,
    account,
    amount: 120 + i,
    currency: 'EUR',
    direction: 'debit',
    channel: transfer ? 'transfer' : 'card',
    ...(transfer ? { counterparty: `PAYEE-${account}` } : { merchant: `M-${account}-${i % 3}`, country: 'FR' }),
    ...over,
  };
}

/** Everything a transport carries on the risk and findings topics. */
async function collect(transport: Transport, group: string): Promise<{ risks: TxRisk[]; findings: Map<string, Finding> }> {
  const risks: TxRisk[] = [];
  const findings = new Map<string, Finding>();
  await transport.subscribe<TxRisk | Finding>({
    group,
    topics: [TOPICS.txRisk, TOPICS.findings],
    eachBatch: (b) => {
      for (const m of b.messages) {
        if (b.topic === TOPICS.txRisk) risks.push(m.value as TxRisk);
        else findings.set((m.value as Finding).id, m.value as Finding);
      }
    },
  });
  return { risks, findings };
}

/** What the stream says of one transaction: its records combined as tx_scores does. */
function fromStream(risks: readonly TxRisk[], id: string) {
  const records = risks.filter((r) => r.txId === id);
  const { score, reasons } = combineViews(records);
  return {
    views: records.map((r) => r.view).sort(),
    score,
    reasons: reasons.map((r) => ({ detector: r.detector, ruleId: r.ruleId, score: r.score, summary: r.reason })),
    findingIds: records.flatMap((r) => r.findings ?? []).sort(),
  };
}

let dir: string;
let store: Store;
let pipeline: Pipeline;
let scorer: TransactionScorer;
let app: FastifyInstance;
let seen: { risks: TxRisk[]; findings: Map<string, Finding> };
const others: Array<{ close(): Promise<unknown> }> = [];
const rulesVersion = loadRules({ detectors: {} }).version;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vigil-scoring-'));
  store = await openStore({ dataDir: join(dir, 'data') });
  pipeline = new Pipeline({ runId: 'live', detectors: loadRules({ detectors: {} }).instances, store });
  await pipeline.start();
  seen = await collect(pipeline.transport, 'test-seen');
  scorer = new TransactionScorer({ timeoutMs: 10_000 });
  await scorer.attach(pipeline.transport);
  app = await buildApi({ store, hub: new AlertHub(), scorer });
}, 60_000);

afterAll(async () => {
  await app?.close();
  await scorer?.detach();
  await pipeline?.close();
  for (const o of others) await o.close().catch(() => undefined);
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function post(target: FastifyInstance, body: unknown): Promise<{ status: number; json: any; replayed: boolean }> {
  const res = await target.inject({ method: 'POST', url: URL_, payload: body as object });
  return { status: res.statusCode, json: res.json(), replayed: res.headers['idempotent-replayed'] === 'true' };
}

describe('embedded pipeline', () => {
  it('a sequence of POSTs scores each transaction as the stream does (same reasons, same finding ids), and tx_scores agrees', async () => {
    const txs = Array.from({ length: 14 }, (_, i) => tx('ACC-A', i));
    const answers: ScoreResult[] = [];
    for (const t of txs) {
      const r = await post(app, t);
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      expect(r.replayed).toBe(false);
      answers.push(r.json as ScoreResult);
    }

    // The same transactions as a stream through a pipeline of their own.
    const stream = new Pipeline({ runId: 'live', detectors: loadRules({ detectors: {} }).instances });
    await stream.start();
    const streamed = await collect(stream.transport, 'test-stream');
    for (const t of txs) await stream.ingestor.pushEvent(structuredClone(t));
    await stream.drain();
    await stream.close();

    for (const [i, t] of txs.entries()) {
      const a = answers[i] as ScoreResult;
      const want = fromStream(streamed.risks, t.id);
      expect(want.views).toHaveLength(1 + (eventViews(t)?.length ?? 0));
      expect({ eventId: a.eventId, account: a.account, score: a.score, reasons: a.reasons }, t.id).toEqual({ eventId: t.id, account: 'ACC-A', score: want.score, reasons: want.reasons });
      expect(a.findings.map((f) => f.id).sort(), t.id).toEqual(want.findingIds);
      expect(a.rulesVersion).toBe(rulesVersion);
      expect(a.latencyMs).toBeGreaterThan(0);
    }
    // Velocity state was built across the POSTs: the 10th in 10 minutes reaches the limit of 10.
    const velocity = answers.map((a) => a.reasons.find((r) => r.detector === 'velocity'));
    expect(velocity[9]?.summary).toMatch(/^10 /);
    expect(velocity[9]!.score).toBeGreaterThan(velocity[7]?.score ?? 0);
    const fired = answers.flatMap((a) => a.findings).filter((f) => f.detector === 'velocity');
    expect(fired).toHaveLength(1);
    expect(fired[0]!.id).toBe(answers[9]!.findings.find((f) => f.detector === 'velocity')?.id);
    expect([...streamed.findings.values()].filter((f) => f.detector === 'velocity').map((f) => f.id)).toEqual([fired[0]!.id]);

    // Stored scores: one tx_risk row per view, combined by tx_scores into the score the API answered.
    await pipeline.drain();
    const rows = (await store.sql("SELECT tx_id, score, length(views) AS views FROM tx_scores WHERE run_id = 'live' AND account = 'ACC-A' ORDER BY tx_id", 'JSONEachRow'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { tx_id: string; score: number; views: number });
    expect(rows).toHaveLength(txs.length);
    for (const [i, t] of txs.entries()) {
      const row = rows.find((r) => r.tx_id === t.id)!;
      expect(Number(row.views)).toBe(1 + (eventViews(t)?.length ?? 0));
      expect(Number(row.score)).toBeCloseTo(answers[i]!.score, 5);
    }
  }, 60_000);

  it('shares state with the stream: a POST sees the streamed history, and counts for the transactions streamed after it; a repeated id does not count twice', async () => {
    for (let i = 0; i < 9; i++) await pipeline.ingestor.pushEvent(tx('ACC-B', i));
    await pipeline.drain();
    const streamedReason = fromStream(seen.risks, 'ACC-B-8').reasons.find((r) => r.detector === 'velocity');
    expect(streamedReason?.summary).toMatch(/^9 /);

    // The 10th in 10 minutes, POSTed: it counts the 9 streamed ones and reaches the limit.
    const posted = await post(app, tx('ACC-B', 9));
    expect(posted.status).toBe(200);
    const answer = posted.json as ScoreResult;
    expect(answer.reasons.find((r) => r.detector === 'velocity')?.summary).toMatch(/^10 /);
    expect(answer.findings.map((f) => f.detector)).toContain('velocity');
    expect(answer.score).toBeGreaterThan(0);

    // The same transaction again: the same answer, replayed, and not counted again…
    const again = await post(app, tx('ACC-B', 9));
    expect(again.status).toBe(200);
    expect(again.replayed).toBe(true);
    expect({ ...again.json, latencyMs: 0 }).toEqual({ ...answer, latencyMs: 0 });
    // …the same id with another body is a conflict.
    const changed = await post(app, tx('ACC-B', 9, { amount: 999 }));
    expect(changed.status).toBe(409);
    expect(changed.json.error.code).toBe('VIGIL_ERR_CONFLICT');

    // The next streamed transaction counts the POSTed one (once): 11 in the window.
    await pipeline.ingestor.pushEvent(tx('ACC-B', 10));
    await pipeline.drain();
    expect(fromStream(seen.risks, 'ACC-B-10').reasons.find((r) => r.detector === 'velocity')?.summary).toMatch(/^11 /);
  }, 60_000);
});

describe('refusals', () => {
  it('400 names the bad field; 413 beyond the body limit', async () => {
    const good = tx('ACC-V', 0);
    const cases: Array<[unknown, string]> = [
      [{ ...good, amount: 'ten' }, 'amount'],
      [(({ account: _a, ...rest }) => rest)(good), 'account'],
      [{ ...good, ammount: 5 }, 'ammount'],
      [{ ...good, kind: 'trade' }, 'kind'],
      [{ ...good, lat: 123 }, 'lat'],
      [{ ...good, direction: 'sideways' }, 'direction'],
    ];
    for (const [body, field] of cases) {
      const r = await post(app, body);
      expect(r.status, field).toBe(400);
      expect(r.json.error.code).toBe('VIGIL_ERR_BAD_REQUEST');
      expect(r.json.error.message).toContain(`'${field}'`);
    }
    const notOne = await post(app, [good]);
    expect(notOne.status).toBe(400);
    expect(notOne.json.error.message).toMatch(/one transaction event as a JSON object/);
    const big = await app.inject({ method: 'POST', url: URL_, payload: { ...good, device: 'x'.repeat(20_000) } });
    expect(big.statusCode).toBe(413);
    expect(big.json().error.code).toBe('VIGIL_ERR_PAYLOAD_TOO_LARGE');
    expect(scorer.counters.published).toBeGreaterThan(0);
  });

  it('504 when no score comes back in time (no detectors), 503 beyond the pending limit and without a scorer', async () => {
    const bare = new MemoryTransport({ partitions: 2 });
    const lonely = new TransactionScorer({ timeoutMs: 300, maxPending: 1 });
    await lonely.attach(bare);
    const api = await buildApi({ store, hub: new AlertHub(), scorer: lonely });
    others.push(api, { close: () => lonely.detach() }, bare);

    const [first, second] = await Promise.all([post(api, tx('ACC-T', 0)), post(api, tx('ACC-T', 1))]);
    expect(first.status).toBe(504);
    expect(first.json.error.code).toBe('VIGIL_ERR_TIMEOUT');
    expect(first.json.error.message).toMatch(/within 300 ms.*detectors/);
    expect(second.status).toBe(503);
    expect(second.json.error.code).toBe('VIGIL_ERR_UNAVAILABLE');
    expect(second.json.error.message).toMatch(/VIGIL_SCORE_MAX_PENDING/);
    expect(lonely.pending).toBe(0);

    const none = await buildApi({ store, hub: new AlertHub() });
    others.push(none);
    const r = await post(none, tx('ACC-T', 2));
    expect(r.status).toBe(503);
    expect(r.json.error.code).toBe('VIGIL_ERR_UNAVAILABLE');
  });
});

describe('over Kafka', () => {
  it('the API side and a detector worker on separate Kafka transports: the POST gets its score', async () => {
    const error = inject('servicesError');
    if (error) throw new Error(`local services are not running: ${error}`);
    const prefix = `vigil-test-score.${Date.now().toString(36)}${randomBytes(3).toString('hex')}.`;
    const kafka = (clientId: string) =>
      new KafkaTransport({ brokers: ['127.0.0.1:9092'], clientId, topicPrefix: prefix, partitions: 2, heartbeatIntervalMs: 300, sessionTimeoutMs: 10_000, logLevel: 'nothing' });
    const admin = new Kafka({ clientId: 'vigil-test', brokers: ['127.0.0.1:9092'], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    const apiSide = kafka('score-api');
    const detectSide = kafka('score-detect');
    const runner = new DetectorRunner(detectSide, loadRules({ detectors: {} }).instances, 'live', { group: 'vigil-detect', topics: allDetectorTopics() });
    const remote = new TransactionScorer({ timeoutMs: 15_000, group: 'vigil-score-test', deleteGroup: (g) => admin.deleteGroups([prefix + g]).then(() => undefined) });
    try {
      await runner.start();
      await remote.attach(apiSide);
      const api = await buildApi({ store, hub: new AlertHub(), scorer: remote });
      others.push(api);
      const answers: ScoreResult[] = [];
      for (let i = 0; i < 10; i++) {
        const r = await post(api, tx('ACC-K', i));
        expect(r.status, JSON.stringify(r.json)).toBe(200);
        answers.push(r.json as ScoreResult);
      }
      // The worker elsewhere kept the account's state: the 10th reaches the velocity limit.
      const last = answers[9]!;
      expect(last.eventId).toBe('ACC-K-9');
      expect(last.reasons.find((r) => r.detector === 'velocity')?.summary).toMatch(/^10 /);
      expect(last.findings.map((f) => f.detector)).toContain('velocity');
      expect(last.rulesVersion).toBe(rulesVersion);
    } finally {
      await remote.detach();
      await runner.stop();
      await apiSide.close();
      await detectSide.close();
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
      if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 30_000 }).catch(() => undefined);
      await admin.deleteGroups([`${prefix}vigil-detect`]).catch(() => undefined);
      await admin.disconnect();
    }
  }, 90_000);
});
