/**
 * One contract for both transports (in-process and Kafka), then what only Kafka has: topic layout,
 * consumer crash and takeover within a group, and a broker restart in the middle of a stream.
 * Kafka runs locally (test/global-setup.ts starts it through scripts/services.mjs); every run uses its
 * own topic prefix and deletes its topics at the end.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';
import { loadConfig } from '../src/core/config.ts';
import { createTransport } from '../src/transport/index.ts';
import { KafkaTransport, type KafkaTransportOptions } from '../src/transport/kafka.ts';
import { MemoryTransport } from '../src/transport/memory.ts';
import { TOPICS, type Batch, type TopicPartition, type Transport } from '../src/transport/types.ts';

const BROKERS = '127.0.0.1:9092';
const RUN = `vigil-test.${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
let seq = 0;
/** A name unique in this run (topics, groups). */
const uniq = (s: string) => `${s}-${++seq}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until cond() holds; fails with `what` after timeoutMs. */
async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

const admins: Array<ReturnType<Kafka['admin']>> = [];
async function adminFor(brokers = BROKERS) {
  const admin = new Kafka({ clientId: 'vigil-test', brokers: [brokers], logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  admins.push(admin);
  return admin;
}

/** Never a skip: without a broker every Kafka test fails, with the reason (the in-process ones still run). */
function requireServices(): void {
  const error = inject('servicesError');
  if (error) throw new Error(`local services are not running: ${error}`);
}

/** Kafka transports for tests: fast heartbeats and few retries, logs kept and shown when a test fails. */
const logs: string[] = [];
function kafkaTransport(options: Partial<KafkaTransportOptions> = {}): KafkaTransport {
  requireServices();
  return new KafkaTransport({
    brokers: [BROKERS],
    topicPrefix: `${RUN}.`,
    partitions: 4,
    heartbeatIntervalMs: 300,
    sessionTimeoutMs: 10_000,
    consumerRetry: { retries: 1, initialRetryTime: 100, maxRetryTime: 300 },
    maxHandlerRestarts: 1,
    logLevel: 'info',
    log: (level, message, extra) => logs.push(`${new Date().toISOString()} ${level} ${message}${extra.error ? `: ${String(extra.error)}` : ''}`),
    ...options,
  });
}

function showLogsOnFailure(): void {
  const from = logs.length;
  onTestFailed(() => {
    console.error(`kafka client log for this test:\n${logs.slice(from).slice(-200).join('\n')}`);
  });
}

afterAll(async () => {
  if (inject('servicesError')) return;
  try {
    const admin = await adminFor();
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(RUN));
    if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 30_000 });
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(RUN));
    if (groups.length > 0) await admin.deleteGroups(groups).catch(() => undefined);
  } finally {
    await Promise.allSettled(admins.map((a) => a.disconnect()));
  }
}, 60_000);

interface Harness {
  kind: 'memory' | 'kafka';
  make(): Transport;
}

const harnesses: Harness[] = [
  { kind: 'memory', make: () => new MemoryTransport({ partitions: 4, maxBatch: 7 }) },
  { kind: 'kafka', make: () => kafkaTransport({ maxBatch: 7 }) },
];

describe.each(harnesses)('Transport contract: $kind', (h) => {
  it('keeps per-key order, one partition per key, keys spread over partitions', async () => {
    showLogsOnFailure();
    const t = h.make();
    const topic = uniq('order');
    const seen = new Map<string, number[]>();
    const partitionOfKey = new Map<string, number>();
    const partitionsUsed = new Set<number>();
    await t.subscribe<number>({
      group: uniq('g'),
      topics: [topic],
      eachBatch: async (b) => {
        expect(b.topic).toBe(topic);
        expect(b.messages.length).toBeLessThanOrEqual(7);
        partitionsUsed.add(b.partition);
        for (const m of b.messages) {
          expect(partitionOfKey.get(m.key) ?? b.partition).toBe(b.partition);
          partitionOfKey.set(m.key, b.partition);
          (seen.get(m.key) ?? seen.set(m.key, []).get(m.key)!).push(m.value);
        }
        // Uneven consumer speed must not reorder a key.
        if (b.partition % 2 === 0) await sleep(1);
      },
    });
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
    for (let i = 0; i < 200; i++) await t.send(topic, keys.map((key) => ({ key, value: i })));
    await t.drain();
    expect(partitionsUsed.size).toBeGreaterThan(1);
    for (const key of keys) expect(seen.get(key), key).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(t.stats()).toMatchObject({ sent: 4000, delivered: 4000, queued: 0 });
    await t.close();
  });

  it('delivers every message to every group, offsets rising by one per partition', async () => {
    showLogsOnFailure();
    const t = h.make();
    const [a, b] = [uniq('a'), uniq('b')];
    const got: Record<string, number> = {};
    const offsets = new Map<string, number>();
    for (const group of [uniq('x'), uniq('y')]) {
      got[group] = 0;
      await t.subscribe<string>({
        group,
        topics: [a, b],
        eachBatch: (batch) => {
          for (const m of batch.messages) {
            const k = `${group}/${batch.topic}/${batch.partition}`;
            expect(m.offset).toBe((offsets.get(k) ?? m.offset - 1) + 1);
            offsets.set(k, m.offset);
          }
          got[group]! += batch.messages.length;
        },
      });
    }
    for (let i = 0; i < 10; i++) {
      await t.send(a, [{ key: `p${i}`, value: 'p' }, { key: `q${i}`, value: 'q' }]);
      await t.send(b, [{ key: `r${i}`, value: 'r' }]);
    }
    await t.drain();
    expect(Object.values(got)).toEqual([30, 30]);
    await t.close();
  });

  it('carries headers with the messages', async () => {
    showLogsOnFailure();
    const t = h.make();
    const topic = uniq('h');
    const got: Array<{ value: number; headers?: Record<string, string> }> = [];
    await t.subscribe<number>({
      group: uniq('g'),
      topics: [topic],
      eachBatch: (b) => {
        for (const m of b.messages) got.push(m.headers ? { value: m.value, headers: m.headers } : { value: m.value });
      },
    });
    await t.send(topic, [
      { key: 'k', value: 1, headers: { run: 'replay-42', source: 'file.jsonl' } },
      { key: 'k', value: 2 },
      { key: 'k', value: 3, headers: { run: 'ünïcode ✓' } },
    ]);
    await t.drain();
    expect(got).toEqual([
      { value: 1, headers: { run: 'replay-42', source: 'file.jsonl' } },
      { value: 2 },
      { value: 3, headers: { run: 'ünïcode ✓' } },
    ]);
    await t.close();
  });

  it('counts a batch as handled (and commits it) only after its handler resolved; drain waits for it', async () => {
    showLogsOnFailure();
    const t = h.make();
    const topic = uniq('slow');
    const group = uniq('g');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered = 0;
    await t.subscribe<number>({
      group,
      topics: [topic],
      eachBatch: async (b) => {
        entered += b.messages.length;
        await gate;
      },
    });
    await t.send(topic, [{ key: 'k', value: 1 }, { key: 'k', value: 2 }]);
    await until(() => entered === 2, 'the handler to get the batch');
    let drained = false;
    const drain = t.drain().then(() => (drained = true));
    await sleep(600);
    expect(drained).toBe(false);
    expect(t.stats().delivered).toBe(0);
    if (t instanceof KafkaTransport) {
      const admin = await adminFor();
      const [committed] = await admin.fetchOffsets({ groupId: `${RUN}.${group}`, topics: [`${RUN}.${topic}`] });
      // Positioned at the topic's end when the group was new (0), never past what was handled.
      expect(committed!.partitions.reduce((n, p) => n + Math.max(0, Number(p.offset)), 0)).toBe(0);
    }
    release();
    await drain;
    expect(t.stats().delivered).toBe(2);
    if (t instanceof KafkaTransport) {
      const admin = await adminFor();
      const [committed] = await admin.fetchOffsets({ groupId: `${RUN}.${group}`, topics: [`${RUN}.${topic}`] });
      expect(committed!.partitions.reduce((n, p) => n + Math.max(0, Number(p.offset)), 0)).toBe(2);
    }
    await t.close();
  });

  it('tells the consumer its partitions before their first batch', async () => {
    showLogsOnFailure();
    const t = h.make();
    const topic = uniq('assign');
    const owned = new Set<string>();
    const events: string[] = [];
    let batches = 0;
    await t.subscribe<number>({
      group: uniq('g'),
      topics: [topic],
      onAssign: async (parts: TopicPartition[]) => {
        await sleep(50); // batches wait for it
        for (const p of parts) owned.add(`${p.topic}/${p.partition}`);
        events.push(`assign ${parts.length}`);
      },
      onRevoke: (parts) => {
        for (const p of parts) owned.delete(`${p.topic}/${p.partition}`);
        events.push(`revoke ${parts.length}`);
      },
      eachBatch: (b: Batch<number>) => {
        expect(owned.has(`${b.topic}/${b.partition}`)).toBe(true);
        batches++;
      },
    });
    expect([...owned].sort()).toEqual([0, 1, 2, 3].map((p) => `${topic}/${p}`));
    await t.send(topic, Array.from({ length: 40 }, (_, i) => ({ key: `k${i}`, value: i })));
    await t.drain();
    expect(batches).toBeGreaterThan(0);
    expect(events[0]).toBe('assign 4');
    await t.close();
  });

  it('fails loudly when a handler keeps failing: drain and later sends reject with its error', async () => {
    showLogsOnFailure();
    const t = h.make();
    const topic = uniq('fail');
    let calls = 0;
    await t.subscribe<number>({
      group: uniq('g'),
      topics: [topic],
      eachBatch: (b) => {
        calls++;
        if (b.messages.some((m) => m.value === 13)) throw new Error('boom on 13');
      },
    });
    await t.send(topic, [{ key: 'k', value: 1 }]);
    await t.drain();
    await t.send(topic, [{ key: 'k', value: 13 }]);
    await expect(t.drain()).rejects.toThrow('boom on 13');
    await expect(t.send(topic, [{ key: 'k', value: 2 }])).rejects.toThrow('boom on 13');
    // Kafka retried the batch (and restarted the consumer) a bounded number of times first.
    if (h.kind === 'kafka') expect(calls).toBeGreaterThan(2);
    await t.close();
  });

  it('refuses sends after close', async () => {
    const t = h.make();
    await t.close();
    await expect(t.send('a', [{ key: 'k', value: 1 }])).rejects.toMatchObject({ code: 'VIGIL_ERR_TRANSPORT_CLOSED' });
  });
});

describe('createTransport', () => {
  it('picks Kafka when KAFKA_BROKERS is set, the in-process transport otherwise', async () => {
    const memory = createTransport(loadConfig({}));
    expect(memory).toBeInstanceOf(MemoryTransport);
    await memory.close();
    expect(createTransport({ partitions: 2 })).toBeInstanceOf(MemoryTransport);
    const config = loadConfig({ KAFKA_BROKERS: ` ${BROKERS} , 127.0.0.2:9092`, KAFKA_CLIENT_ID: 'vigil-x', VIGIL_KAFKA_PARTITIONS: '3' });
    expect(config).toMatchObject({ KAFKA_BROKERS: ` ${BROKERS} , 127.0.0.2:9092`, KAFKA_CLIENT_ID: 'vigil-x', VIGIL_KAFKA_PARTITIONS: 3 });
    const kafka = createTransport({ ...config, kafka: { topicPrefix: `${RUN}.factory.` } });
    expect(kafka.kind).toBe('kafka');
    expect(kafka).toBeInstanceOf(KafkaTransport);
    expect((kafka as KafkaTransport).partitionsOf(TOPICS.trade)).toBe(3);
    expect((kafka as KafkaTransport).kafkaTopic(TOPICS.trade)).toBe(`${RUN}.factory.${TOPICS.trade}`);
    await kafka.close();
    expect(loadConfig({}).KAFKA_CLIENT_ID).toBe('vigil');
    expect(loadConfig({}).VIGIL_KAFKA_PARTITIONS).toBe(6);
    expect(() => loadConfig({ KAFKA_BROKERS: 'localhost' })).toThrow(/KAFKA_BROKERS: expected host:port/);
    expect(() => loadConfig({ VIGIL_KAFKA_PARTITIONS: '0' })).toThrow(/VIGIL_KAFKA_PARTITIONS/);
  });
});

describe('KafkaTransport', () => {
  it('creates the event topics with the configured partition counts, other topics on first use', async () => {
    showLogsOnFailure();
    const prefix = `${RUN}.layout.`;
    const t = kafkaTransport({ topicPrefix: prefix, partitions: 3, topicPartitions: { [TOPICS.trade]: 5, custom: 2 } });
    await t.start();
    const admin = await adminFor();
    const meta = await admin.fetchTopicMetadata({ topics: Object.values(TOPICS).map((x) => prefix + x) });
    const counts = Object.fromEntries(meta.topics.map((x) => [x.name.slice(prefix.length), x.partitions.length]));
    expect(counts).toEqual(Object.fromEntries(Object.values(TOPICS).map((x) => [x, x === TOPICS.trade ? 5 : 3])));
    expect((await admin.listTopics()).includes(`${prefix}custom`)).toBe(false);
    await t.send('custom', [{ key: 'k', value: { a: 1 } }]);
    await t.send('other', [{ key: 'k', value: { a: 1 } }]);
    const more = await admin.fetchTopicMetadata({ topics: [`${prefix}custom`, `${prefix}other`] });
    expect(more.topics.map((x) => [x.name, x.partitions.length]).sort()).toEqual([
      [`${prefix}custom`, 2],
      [`${prefix}other`, 3],
    ]);
    // Creating again (another process starting) is fine.
    const again = kafkaTransport({ topicPrefix: prefix, partitions: 3 });
    await again.start();
    await again.close();
    await t.close();
  });

  it('hands a failed batch to the handler again (nothing committed) and goes on after it succeeds', async () => {
    showLogsOnFailure();
    const t = kafkaTransport({ partitions: 1, maxHandlerRestarts: 3 });
    const topic = uniq('retry');
    const seen: number[] = [];
    let failed = false;
    await t.subscribe<number>({
      group: uniq('g'),
      topics: [topic],
      eachBatch: (b) => {
        if (!failed && b.messages.some((m) => m.value === 5)) {
          failed = true;
          throw new Error('transient');
        }
        for (const m of b.messages) seen.push(m.value);
      },
    });
    await t.send(topic, Array.from({ length: 10 }, (_, i) => ({ key: 'k', value: i })));
    await t.drain();
    expect(failed).toBe(true);
    expect(seen).toEqual(Array.from({ length: 10 }, (_, i) => i));
    await t.close();
  });

  it('a consumer that crashes mid-batch: a new consumer in the group gets the uncommitted messages again', async () => {
    showLogsOnFailure();
    requireServices();
    const topic = uniq('crash');
    const group = uniq('g');
    const prefix = `${RUN}.`;
    // The first consumer is another process, killed with SIGKILL while its handler holds a batch.
    const code = `
      const { KafkaTransport } = await import(process.env.T_MODULE);
      const t = new KafkaTransport({ brokers: [process.env.T_BROKERS], topicPrefix: process.env.T_PREFIX, partitions: 2,
        sessionTimeoutMs: 6000, heartbeatIntervalMs: 300, logLevel: 'nothing' });
      await t.subscribe({ group: process.env.T_GROUP, topics: [process.env.T_TOPIC], eachBatch: async (b) => {
        process.stdout.write('BATCH ' + JSON.stringify(b.messages.map((m) => m.value)) + '\\n');
        await new Promise(() => {});
      } });
      process.stdout.write('READY\\n');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      env: {
        ...process.env,
        T_MODULE: pathToFileURL(resolve('src/transport/kafka.ts')).href,
        T_BROKERS: BROKERS,
        T_PREFIX: prefix,
        T_GROUP: group,
        T_TOPIC: topic,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
    const exited = new Promise<void>((r) => child.on('exit', () => r()));
    try {
      await until(() => out.includes('READY'), 'the child consumer to join', 45_000);
      const t = kafkaTransport({ partitions: 2, sessionTimeoutMs: 6000 });
      await t.send(topic, Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: i })));
      await until(() => out.includes('BATCH'), 'the child to get a batch');
      const held = [...out.matchAll(/BATCH (\[.*\])/g)].flatMap((m) => JSON.parse(m[1]!) as number[]);
      expect(held.length).toBeGreaterThan(0);
      child.kill('SIGKILL');
      await exited;

      const admin = await adminFor();
      const [committed] = await admin.fetchOffsets({ groupId: prefix + group, topics: [prefix + topic] });
      expect(committed!.partitions.every((p) => Number(p.offset) === 0)).toBe(true);

      const got = new Set<number>();
      await t.subscribe<number>({
        group,
        topics: [topic],
        eachBatch: (b) => {
          for (const m of b.messages) got.add(m.value);
        },
      });
      await t.drain();
      expect([...got].sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i));
      for (const v of held) expect(got.has(v)).toBe(true);
      await t.close();
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 90_000);

  it('a second consumer in the group shares the partitions and takes them all when the first leaves', async () => {
    showLogsOnFailure();
    const topic = uniq('share');
    const group = uniq('g');
    // Long session timeout: the takeover below must come from leaving the group, not from a timeout.
    const [a, b] = [kafkaTransport({ sessionTimeoutMs: 30_000 }), kafkaTransport({ sessionTimeoutMs: 30_000 })];
    const owned = { a: new Set<number>(), b: new Set<number>() };
    const got = { a: [] as number[], b: [] as number[] };
    for (const [name, t] of [['a', a], ['b', b]] as const) {
      await t.subscribe<number>({
        group,
        topics: [topic],
        onAssign: (ps) => ps.forEach((p) => owned[name].add(p.partition)),
        onRevoke: (ps) => ps.forEach((p) => owned[name].delete(p.partition)),
        eachBatch: (batch) => {
          expect(owned[name].has(batch.partition)).toBe(true);
          for (const m of batch.messages) got[name].push(m.value);
        },
      });
    }
    await until(() => owned.a.size + owned.b.size === 4 && owned.a.size > 0 && owned.b.size > 0, 'both consumers to own partitions');
    expect([...owned.a].filter((p) => owned.b.has(p))).toEqual([]);
    await b.send(topic, Array.from({ length: 40 }, (_, i) => ({ key: `k${i}`, value: i })));
    await b.drain();
    expect(got.a.length).toBeGreaterThan(0);
    expect(got.b.length).toBeGreaterThan(0);
    expect([...got.a, ...got.b].sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => i));

    const t0 = Date.now();
    await a.close();
    await until(() => owned.b.size === 4, 'b to own every partition', 20_000);
    expect(Date.now() - t0).toBeLessThan(10_000);
    const before = got.b.length;
    await b.send(topic, Array.from({ length: 40 }, (_, i) => ({ key: `k${i}`, value: 100 + i })));
    await b.drain();
    expect(got.b.slice(before).sort((x, y) => x - y)).toEqual(Array.from({ length: 40 }, (_, i) => 100 + i));
    await b.close();
  }, 90_000);

  it('makes senders wait while a consumer in this process lags too far behind', async () => {
    showLogsOnFailure();
    const t = kafkaTransport({ partitions: 1, maxLag: 200 });
    const topic = uniq('lag');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let handled = 0;
    await t.subscribe<number>({
      group: uniq('g'),
      topics: [topic],
      maxBatch: 50,
      eachBatch: async (b) => {
        await gate;
        handled += b.messages.length;
      },
    });
    let sent = 0;
    const producer = (async () => {
      for (let i = 0; i < 20; i++) {
        await t.send(topic, Array.from({ length: 50 }, (_, j) => ({ key: 'k', value: i * 50 + j })));
        sent += 50;
      }
    })();
    await sleep(3000);
    // The consumer holds its first batch: the producer stops once the lag passed 200.
    expect(sent).toBeGreaterThanOrEqual(200);
    expect(sent).toBeLessThan(1000);
    expect(t.stats().waits).toBeGreaterThan(0);
    release();
    await producer;
    await t.drain();
    expect(handled).toBe(1000);
    await t.close();
  }, 60_000);
});

/** True when nothing accepts connections on 127.0.0.1:port. */
function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      done(false);
    });
    socket.once('error', () => done(true));
  });
}

/** The parts of scripts/services.mjs this file uses (plain JS, loaded at run time). */
interface KafkaInstance {
  name: string;
  brokers: string;
}
interface ServicesApi {
  kafkaInstance(o: { name: string; port: number; controllerPort: number; heapMb?: number }): KafkaInstance;
  startKafka(inst: KafkaInstance): Promise<{ pid?: number; ms: number }>;
  stopKafka(inst: KafkaInstance): Promise<{ stopped: boolean; ms: number }>;
}

describe('KafkaTransport across a broker restart', () => {
  let services: ServicesApi;
  let inst: KafkaInstance;

  beforeAll(async () => {
    requireServices();
    const url = pathToFileURL(resolve('scripts/services.mjs')).href;
    services = (await import(url)) as ServicesApi;
    // Its own broker, so stopping it disturbs no other test; on ports nothing else listens on (a broker
    // another checkout left running there would not be ours to stop).
    let port = 19092;
    while (!(await portFree(port)) || !(await portFree(port + 1))) {
      port += 100;
      if (port > 20_000) throw new Error('no free port pair for the restart-test broker in 19092-19993');
    }
    inst = services.kafkaInstance({ name: 'kafka-restart-test', port, controllerPort: port + 1, heapMb: 384 });
    const started = await services.startKafka(inst);
    expect(started.pid).toBeDefined();
  }, 180_000);

  afterAll(async () => {
    if (!services) return;
    try {
      // Its data stays for the next run (no new format): only this run's topics go.
      const admin = await adminFor(inst.brokers);
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(RUN));
      if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 30_000 });
    } finally {
      await services.stopKafka(inst);
    }
  }, 90_000);

  it('producer and consumer recover and every message is delivered (at least once)', async () => {
    showLogsOnFailure();
    const t = kafkaTransport({ brokers: [inst.brokers], partitions: 3, sessionTimeoutMs: 10_000 });
    const topic = uniq('restart');
    const count = new Map<number, number>();
    const byKey = new Map<string, number[]>();
    await t.subscribe<number>({
      group: uniq('g'),
      topics: [topic],
      eachBatch: (b) => {
        for (const m of b.messages) {
          count.set(m.value, (count.get(m.value) ?? 0) + 1);
          (byKey.get(m.key) ?? byKey.set(m.key, []).get(m.key)!).push(m.value);
        }
      },
    });
    const rounds = 60;
    const perRound = 50;
    let sentRounds = 0;
    let slowest = 0;
    const producer = (async () => {
      for (let i = 0; i < rounds; i++) {
        const t0 = Date.now();
        await t.send(topic, Array.from({ length: perRound }, (_, j) => ({ key: `k${j % 10}`, value: i * perRound + j })));
        slowest = Math.max(slowest, Date.now() - t0);
        sentRounds++;
        await sleep(50);
      }
    })();
    await until(() => sentRounds >= 15 && count.size > 0, 'the stream to flow');
    const stoppedAt = sentRounds;
    const stopped = await services.stopKafka(inst);
    expect(stopped.stopped).toBe(true);
    await sleep(1000); // the broker stays away a moment: sends and fetches fail meanwhile
    await services.startKafka(inst);
    await producer;
    await t.drain();
    expect(stoppedAt).toBeLessThan(rounds);
    // A send waited for the broker to come back instead of failing.
    expect(slowest).toBeGreaterThan(1000);
    const total = rounds * perRound;
    expect(count.size).toBe(total);
    for (let v = 0; v < total; v++) expect(count.get(v), `value ${v}`).toBeGreaterThanOrEqual(1);
    // Re-deliveries repeat a stretch; the first time each value arrives is still in key order.
    for (const [key, values] of byKey) {
      const first = values.filter((v, i) => values.indexOf(v) === i);
      expect(first, key).toEqual([...first].sort((x, y) => x - y));
    }
    await t.close();
  }, 180_000);
});
