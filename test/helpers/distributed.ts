/**
 * For tests of the distributed roles: role processes (`node bin/vigil.js <role>`) with their output,
 * a multi-key canonical-events file built from the hftbacktest capture, findings read back with FINAL,
 * and a look at topics and consumer groups on the broker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { AssignerProtocol, Kafka, logLevel, Partitioners, type Admin } from 'kafkajs';
import type { Trade } from '../../src/core/events.ts';
import { captureTrades } from './capture-trades.ts';
import { HFT_CAPTURE, vigil } from './cli.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A running `vigil <role>`. */
export class RoleProcess {
  private out = '';
  private stdoutText = '';
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    child.stdout!.on('data', (d) => {
      this.out += d;
      this.stdoutText += d;
    });
    child.stderr!.on('data', (d) => (this.out += d));
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitCode = code ?? (signal ? null : code);
        resolve(code);
      }),
    );
  }

  /** stdout and stderr, interleaved. */
  get output(): string {
    return this.out;
  }

  get stdout(): string {
    return this.stdoutText;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** Waits until the output matches (returns the match), failing early when the process exits. */
  async waitFor(re: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.out);
      if (m) return m;
      if (!this.running) throw new Error(`${this.name} exited (${this.exitCode}) before printing ${re}\n${this.out.slice(-4000)}`);
      if (Date.now() > deadline) throw new Error(`${this.name}: no ${re} within ${timeoutMs} ms\n${this.out.slice(-4000)}`);
      await sleep(50);
    }
  }

  /** Sends the signal and waits for the exit (SIGKILL after timeoutMs); returns the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<number | null> {
    if (!this.running) return this.exitCode ?? null;
    this.child.kill(signal);
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }

  /** Waits for the process to end by itself. */
  async done(timeoutMs = 120_000): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} still running after ${timeoutMs} ms\n${this.out.slice(-4000)}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Starts role processes and kills whatever is left at the end. */
export class Roles {
  private readonly procs: RoleProcess[] = [];

  start(name: string, args: string[], env: Record<string, string>): RoleProcess {
    const child = spawn(process.execPath, ['bin/vigil.js', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const p = new RoleProcess(name, child);
    this.procs.push(p);
    return p;
  }

  /** The output of every process, for a failing test's report. */
  outputs(): string {
    return this.procs.map((p) => `===== ${p.name}${p.running ? ' (running)' : ''}\n${p.output.slice(-6000)}`).join('\n');
  }

  async killAll(): Promise<void> {
    await Promise.all(this.procs.splice(0).map((p) => p.stop('SIGKILL', 5_000)));
  }
}

/** The capture's trades as canonical events (one reader for every test). */
export { captureTrades };

export const MULTI_KEYS = ['binance:BTC-USDT', 'mirror:BTC-USDT', 'binance:ETH-USDT', 'mirror:ETH-USDT', 'other:SOL-USDT', 'other:XRP-USDT'];

/**
 * Six keys from the capture's trades (renamed, rescaled, mirrored: every move reversed), merged in
 * event-time order (per key in capture order), written as canonical-event JSON lines.
 */
export function writeMultiKeyEvents(path: string): { events: number; perKey: number } {
  const btc = captureTrades();
  const r2 = (x: number) => Math.round(x * 100) / 100;
  const all: Trade[] = [
    ...btc,
    ...btc.map((t) => ({ ...t, venue: 'mirror', price: r2(1e9 / t.price) })),
    ...btc.map((t) => ({ ...t, symbol: 'ETH-USDT', price: r2(t.price / 20) })),
    ...btc.map((t) => ({ ...t, venue: 'mirror', symbol: 'ETH-USDT', price: r2(5e7 / t.price) })),
    ...btc.map((t) => ({ ...t, venue: 'other', symbol: 'SOL-USDT', price: r2(t.price / 400) })),
    ...btc.map((t) => ({ ...t, venue: 'other', symbol: 'XRP-USDT', price: Math.round(t.price * 1e-5 * 1e6) / 1e6 })),
  ].sort((a, b) => a.ts - b.ts);
  writeFileSync(path, `${all.map((e) => JSON.stringify(e)).join('\n')}\n`);
  return { events: all.length, perKey: btc.length };
}

/** A finding row as read back (run id left out, so runs compare). */
export type FindingRow = Record<string, unknown>;

/** The run's findings from the store in dataDir, with FINAL (through the API holding it, if one does). */
export async function storedFindings(dataDir: string, runId: string, env: Record<string, string> = {}): Promise<FindingRow[]> {
  const query = `SELECT id, detector, rule_id, severity, score, venue, symbol, account, key, toUnixTimestamp64Milli(ts) AS ts_ms,
    toUnixTimestamp64Milli(window_start) AS window_start_ms, toUnixTimestamp64Milli(window_end) AS window_end_ms, summary, evidence
    FROM findings FINAL WHERE run_id = '${runId}' ORDER BY key, ts_ms, id`;
  const r = await vigil(['sql', query, '--format', 'jsonl'], { ...env, VIGIL_DATA_DIR: dataDir, KAFKA_BROKERS: '' });
  if (r.code !== 0) throw new Error(`vigil sql failed (${r.code}): ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .map((l) => JSON.parse(l) as FindingRow);
}

/** Rows of any SQL on the store in dataDir (JSON lines). */
export async function sqlRows(dataDir: string, query: string): Promise<FindingRow[]> {
  const r = await vigil(['sql', query, '--format', 'jsonl'], { VIGIL_DATA_DIR: dataDir, KAFKA_BROKERS: '' });
  if (r.code !== 0) throw new Error(`vigil sql failed (${r.code}): ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .map((l) => JSON.parse(l) as FindingRow);
}

/** Topics and groups on one broker (names with the test's prefix). */
export class BrokerProbe {
  private admin?: Admin;
  private readonly kafka: Kafka;

  constructor(brokers: string) {
    this.kafka = new Kafka({ clientId: 'vigil-test-probe', brokers: [brokers], logLevel: logLevel.NOTHING, retry: { retries: 3, initialRetryTime: 100 } });
  }

  private async a(): Promise<Admin> {
    if (!this.admin) {
      const admin = this.kafka.admin();
      await admin.connect();
      this.admin = admin;
    }
    return this.admin;
  }

  /** Messages in the topic (sum of end offsets); 0 while it does not exist or the broker is away. */
  async count(topic: string): Promise<number> {
    try {
      const ends = await (await this.a()).fetchTopicOffsets(topic);
      return ends.reduce((n, e) => n + Number(e.high), 0);
    } catch {
      return 0;
    }
  }

  async waitCount(topic: string, atLeast: number, timeoutMs = 60_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const n = await this.count(topic);
      if (n >= atLeast) return n;
      if (Date.now() > deadline) throw new Error(`${topic}: ${n} messages, waited for ${atLeast}`);
      await sleep(50);
    }
  }

  /** Messages of the topic the group has not committed (a partition never committed counts from its start). */
  async lag(group: string, topic: string): Promise<number> {
    const admin = await this.a();
    const ends = await admin.fetchTopicOffsets(topic);
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    let lag = 0;
    for (const e of ends) {
      const c = Number(committed?.partitions.find((p) => p.partition === e.partition)?.offset ?? -1);
      lag += Math.max(0, Number(e.high) - (c >= 0 ? c : Number(e.low)));
    }
    return lag;
  }

  /** The group's members (by client id) and the partitions each holds of the topic. */
  async assignment(group: string, topic: string): Promise<Map<string, number[]>> {
    const { groups } = await (await this.a()).describeGroups([group]);
    const out = new Map<string, number[]>();
    for (const m of groups[0]?.members ?? []) {
      const decoded = AssignerProtocol.MemberAssignment.decode(m.memberAssignment);
      out.set(m.clientId, decoded?.assignment[topic] ?? []);
    }
    return out;
  }

  /** Waits until the group has `members` members, each holding partitions of the topic. */
  async waitMembers(group: string, topic: string, members: number, timeoutMs = 60_000): Promise<Map<string, number[]>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const a = await this.assignment(group, topic).catch(() => new Map<string, number[]>());
      if (a.size === members && [...a.values()].every((p) => p.length > 0)) return a;
      if (Date.now() > deadline) throw new Error(`group ${group}: ${JSON.stringify([...a])}, waited for ${members} members with partitions`);
      await sleep(200);
    }
  }

  async deleteTopicsWithPrefix(prefix: string): Promise<void> {
    const admin = await this.a();
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
    if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 30_000 });
    const { groups } = await admin.listGroups();
    const ours = groups.map((g) => g.groupId).filter((g) => g.startsWith(prefix));
    if (ours.length > 0) await admin.deleteGroups(ours).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.admin?.disconnect().catch(() => undefined);
    this.admin = undefined;
  }
}

/** The partition Kafka (Java-compatible murmur2, as the transport's producer) puts a key on. */
export function kafkaPartition(key: string, partitions: number): number {
  const partitioner = Partitioners.DefaultPartitioner();
  const partitionMetadata = Array.from({ length: partitions }, (_, i) => ({ partitionId: i, leader: 1, replicas: [1], isr: [1], partitionErrorCode: 0 }));
  return partitioner({ topic: 't', partitionMetadata, message: { key, value: '' } });
}
