/**
 * Detector state in Redis, so any worker can take over a key.
 *
 * Keys: `vigil:<runId>:state:<detector>:<ruleId>:<key>` (a JSON string per state, expiring
 * `stateTtlMs` after its last save) and `vigil:<runId>:claim:<name>` (claims, SET NX PX) — every key
 * is namespaced by run id, so a replay never mixes state with live (`%` and `:` inside run id, detector
 * and rule id are percent-encoded, so one run's namespace can't contain another's). One more key,
 * `vigil:epoch`, marks the server's dataset (see below).
 *
 * Round trips: load = one MGET, save = one MULTI/EXEC of SETs (a batch's states land all or none),
 * delete = one DEL.
 *
 * While Redis is unreachable the client reconnects with capped exponential backoff (and jitter), and
 * every operation waits for the connection and retries until `maxWaitMs` has passed, then rejects with
 * VIGIL_ERR_STORE. Retrying is safe: saves and deletes are idempotent, loads read only, and a claim
 * carries a unique token so a retry recognizes its own earlier success whose reply was lost.
 *
 * After a reconnect the store tells its listeners (the detector runners), which re-save every state
 * they hold in memory: a Redis that restarted without persistence has lost everything, and one that
 * restored an older snapshot holds stale states. `dataLost` says whether the dataset is provably new
 * (the `vigil:epoch` marker written at first connect is gone or different); the store then also
 * re-asserts the unexpired claims this process holds.
 */
import { randomBytes } from 'node:crypto';
import type { RedisClientType } from 'redis';
import { ERR, VigilError } from '../core/errors.ts';
import type { StateRef, StateStore, StateStoreReconnect } from '../detectors/types.ts';

export interface RedisStateStoreOptions {
  /** redis:// or rediss:// URL. */
  url: string;
  /** How long an operation waits for Redis (reconnects and retries included) before it rejects. */
  maxWaitMs?: number;
  /** Reconnect backoff: min(backoffBaseMs · 2^attempt, backoffCapMs), plus up to 20 % jitter. */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /**
   * A state key expires this long after its last save (0: never). Keeps Redis from collecting the
   * states of finished replays; far longer than any key stays idle in practice. Default 7 days.
   */
  stateTtlMs?: number;
  /** Connection events (disconnect, reconnect, data loss). */
  log?: (message: string, extra?: Record<string, unknown>) => void;
}

export interface RedisStateStoreCounters {
  /** Times the connection came back after being lost. */
  reconnects: number;
  /** Of those, times the server's dataset was new (restart without persistence, FLUSHALL). */
  dataLosses: number;
  /** Operation attempts that failed on the connection and were retried. */
  retries: number;
  /** Connection errors seen (each failed reconnect attempt counts). */
  connectionErrors: number;
}

type Client = RedisClientType;
type RedisModule = typeof import('redis');

const EPOCH_KEY = 'vigil:epoch';
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Escapes glob characters for SCAN MATCH. */
const globEscape = (s: string): string => s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);

/**
 * Run id, detector and rule id stand between `:` separators, so `%` and `:` in them are percent-encoded
 * (usual ids contain neither and appear as they are): run `a:b`'s keys can never pass for run `a`'s.
 * The key (venue:symbol, …) comes last and is kept as it is.
 */
const part = (s: string): string => (/[%:]/.test(s) ? s.replace(/%/g, '%25').replace(/:/g, '%3A') : s);
export const stateRedisKey = (r: StateRef): string => `vigil:${part(r.runId)}:state:${part(r.detector)}:${part(r.ruleId)}:${r.key}`;
export const claimRedisKey = (runId: string, name: string): string => `vigil:${part(runId)}:claim:${name}`;

export class RedisStateStore implements StateStore {
  readonly kind = 'redis' as const;
  readonly byReference = false;
  readonly counters: RedisStateStoreCounters = { reconnects: 0, dataLosses: 0, retries: 0, connectionErrors: 0 };
  /** The client, created by open(): the redis package loads only when a Redis store is used (~200 ms). */
  private clientOrNone: Client | undefined;
  private errorReply: RedisModule['ErrorReply'] | undefined;
  private readonly url: string;
  private opening: Promise<void> | undefined;
  /** Set from a reconnect until its dataset check is done and the listeners are told. */
  private recovering: Promise<void> | undefined;
  private readonly maxWaitMs: number;
  private readonly backoffBaseMs: number;
  private readonly backoffCapMs: number;
  private readonly stateTtlMs: number;
  private readonly log: (message: string, extra?: Record<string, unknown>) => void;
  private readonly listeners = new Set<(info: StateStoreReconnect) => void>();
  private readyWaiters: Array<() => void> = [];
  private everReady = false;
  private connected = false;
  private closed = false;
  /** The `vigil:epoch` value this process last saw; a different one after a reconnect = new dataset. */
  private epoch: string | undefined;
  /** Unexpired claims this process holds (re-asserted after a data loss): redis key → token, expiry. */
  private readonly ownClaims = new Map<string, { token: string; until: number }>();
  private claimsPruneAt = 1024;
  private readonly instanceId = randomBytes(6).toString('hex');
  private claimSeq = 0;
  private lastErrorLog = 0;

  constructor(options: RedisStateStoreOptions) {
    this.url = options.url;
    this.maxWaitMs = options.maxWaitMs ?? 30_000;
    this.backoffBaseMs = options.backoffBaseMs ?? 50;
    this.backoffCapMs = options.backoffCapMs ?? 2_000;
    this.stateTtlMs = options.stateTtlMs ?? 7 * 24 * 3_600_000;
    this.log = options.log ?? (() => undefined);
  }

  private get client(): Client {
    if (!this.clientOrNone) throw new VigilError(ERR.STORE, 'state store: not opened');
    return this.clientOrNone;
  }

  private createClient(redis: RedisModule): Client {
    const client = redis.createClient({
      url: this.url,
      // Commands fail fast while disconnected; run() waits for the connection and retries them, with a bound.
      disableOfflineQueue: true,
      socket: {
        connectTimeout: 5_000,
        reconnectStrategy: (retries: number) => this.backoff(retries),
      },
    });
    client.on('error', (err: unknown) => {
      this.counters.connectionErrors++;
      // One line per second at most while Redis stays down.
      const now = Date.now();
      if (now - this.lastErrorLog >= 1_000) {
        this.lastErrorLog = now;
        this.log('state store: Redis connection error (reconnecting)', { error: (err as Error)?.message ?? String(err) });
      }
    });
    client.on('end', () => {
      this.connected = false;
    });
    client.on('reconnecting', () => {
      this.connected = false;
    });
    client.on('ready', () => {
      this.connected = true;
      // After a reconnect, operations wait until the dataset is checked and the listeners know, so no
      // save can complete (and let offsets be committed) before the runners are told to save everything again.
      if (this.everReady) {
        const recovering = this.afterReconnect().finally(() => {
          if (this.recovering === recovering) this.recovering = undefined;
        });
        this.recovering = recovering;
      }
      this.everReady = true;
      const waiters = this.readyWaiters;
      this.readyWaiters = [];
      for (const w of waiters) w();
    });
    return client;
  }

  /** A connected store (waits up to maxWaitMs for Redis to be reachable). */
  static async connect(options: RedisStateStoreOptions): Promise<RedisStateStore> {
    const store = new RedisStateStore(options);
    await store.open();
    return store;
  }

  /** Connects (waiting up to maxWaitMs for Redis to be reachable) and marks the dataset. Idempotent. */
  open(): Promise<void> {
    this.opening ??= this.doOpen();
    return this.opening;
  }

  private async doOpen(): Promise<void> {
    if (this.closed) throw new VigilError(ERR.STORE, 'state store: the store is closed');
    const redis = await import('redis');
    this.errorReply = redis.ErrorReply;
    const client = (this.clientOrNone = this.createClient(redis));
    const connecting = client.connect();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        connecting,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new VigilError(ERR.STORE, `state store: Redis at ${redactUrl(this.url)} not reachable within ${this.maxWaitMs} ms`)), this.maxWaitMs);
        }),
      ]);
    } catch (e) {
      this.closed = true;
      client.destroy();
      connecting.catch(() => undefined);
      throw e instanceof VigilError ? e : new VigilError(ERR.STORE, `state store: cannot connect to Redis at ${redactUrl(this.url)}: ${(e as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
    this.epoch = await this.run('mark dataset', () => this.readEpoch(), true);
  }

  private backoff(retries: number): number {
    const base = Math.min(this.backoffBaseMs * 2 ** Math.min(retries, 20), this.backoffCapMs);
    return Math.round(base * (1 + 0.2 * Math.random()));
  }

  /** SET NX then GET: the first process after a (re)start of the dataset writes a fresh epoch, all read it. */
  private async readEpoch(): Promise<string> {
    const mine = `${Date.now()}-${this.instanceId}`;
    const [, got] = (await this.client.multi().set(EPOCH_KEY, mine, { condition: 'NX' }).get(EPOCH_KEY).exec()) as unknown as [unknown, string | null];
    return got ?? mine;
  }

  private async afterReconnect(): Promise<void> {
    this.counters.reconnects++;
    let dataLost = true; // when the check itself fails, assume the worst
    try {
      const epoch = await this.run('check dataset', () => this.readEpoch(), true);
      dataLost = epoch !== this.epoch;
      this.epoch = epoch;
      if (dataLost) await this.reassertClaims();
    } catch (e) {
      this.log('state store: dataset check after reconnect failed', { error: (e as Error).message });
    }
    if (dataLost) this.counters.dataLosses++;
    this.log(`state store: Redis reconnected${dataLost ? ' with a new dataset: held states are saved again' : ''}`);
    for (const l of this.listeners) {
      try {
        l({ dataLost });
      } catch (e) {
        this.log('state store: reconnect listener failed', { error: (e as Error).message });
      }
    }
  }

  private async reassertClaims(): Promise<void> {
    const held: Array<[string, string, number]> = [];
    for (const [key, c] of this.ownClaims) {
      if (c.until <= Date.now()) this.ownClaims.delete(key);
      else held.push([key, c.token, c.until]);
    }
    if (held.length === 0) return;
    await this.run(
      're-assert claims',
      () => {
        const multi = this.client.multi();
        const now = Date.now();
        for (const [key, token, until] of held) multi.set(key, token, { condition: 'NX', expiration: { type: 'PX', value: Math.max(1, until - now) } });
        return multi.exec();
      },
      true,
    );
  }

  private waitReady(deadline: number, what: string): Promise<void> {
    if (this.connected && this.clientOrNone?.isReady) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.readyWaiters = this.readyWaiters.filter((w) => w !== onReady);
        reject(this.unavailable(what));
      }, Math.max(0, deadline - Date.now()));
      const onReady = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.readyWaiters.push(onReady);
    });
  }

  private unavailable(what: string, cause?: unknown): VigilError {
    const why = cause ? `: ${(cause as Error).message ?? String(cause)}` : '';
    return new VigilError(ERR.STORE, `state store: ${what}: Redis unavailable for ${this.maxWaitMs} ms${why}`);
  }

  /**
   * Runs op (opening the store first), waiting for the connection and, after a reconnect, for the
   * dataset check; retries connection failures until maxWaitMs has passed. `internal`: the store's own
   * calls from open() and the reconnect check, which must not wait for themselves.
   */
  private async run<T>(what: string, op: (attempt: number) => Promise<T>, internal = false): Promise<T> {
    const deadline = Date.now() + this.maxWaitMs;
    if (!internal) await this.open();
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw new VigilError(ERR.STORE, `state store: ${what}: the store is closed`);
      await this.waitReady(deadline, what);
      if (!internal && this.recovering) await this.recovering;
      if (this.closed) throw new VigilError(ERR.STORE, `state store: ${what}: the store is closed`);
      try {
        return await op(attempt);
      } catch (e) {
        // A reply from the server (wrong type, OOM, …) is not a connection problem: retrying won't help.
        if (this.errorReply && e instanceof this.errorReply) throw new VigilError(ERR.STORE, `state store: ${what}: ${e.message}`);
        if (this.closed) throw new VigilError(ERR.STORE, `state store: ${what}: the store is closed`);
        if (Date.now() >= deadline) throw this.unavailable(what, e);
        this.counters.retries++;
        // Still marked ready: the failure came first; give the client a moment to notice.
        if (this.client.isReady) await sleep(Math.min(this.backoff(attempt), Math.max(0, deadline - Date.now())));
      }
    }
  }

  async load(refs: readonly StateRef[]): Promise<Array<unknown | undefined>> {
    if (refs.length === 0) return [];
    const keys = refs.map(stateRedisKey);
    const values = await this.run('load', () => this.client.mGet(keys));
    return values.map((v) => (v === null || v === undefined ? undefined : (JSON.parse(v) as unknown)));
  }

  async save(entries: ReadonlyArray<{ readonly ref: StateRef; readonly state: unknown }>): Promise<void> {
    if (entries.length === 0) return;
    // Serialized now: the call saves the states as they are at this moment, whatever happens while it retries.
    const pairs = entries.map((e) => [stateRedisKey(e.ref), JSON.stringify(e.state)] as const);
    const ttl = this.stateTtlMs;
    await this.run('save', () => {
      const multi = this.client.multi();
      for (const [k, v] of pairs) {
        if (ttl > 0) multi.set(k, v, { expiration: { type: 'PX', value: ttl } });
        else multi.set(k, v);
      }
      return multi.exec();
    });
  }

  async delete(refs: readonly StateRef[]): Promise<void> {
    if (refs.length === 0) return;
    const keys = refs.map(stateRedisKey);
    await this.run('delete', () => this.client.del(keys));
  }

  async claim(runId: string, name: string, ttlMs: number): Promise<boolean> {
    if (!(ttlMs > 0)) throw new RangeError(`claim: ttlMs must be a positive number of milliseconds, got ${ttlMs}`);
    const px = Math.ceil(ttlMs);
    const key = claimRedisKey(runId, name);
    const token = `${this.instanceId}:${++this.claimSeq}`;
    const took = await this.run('claim', async (attempt) => {
      const r = await this.client.set(key, token, { condition: 'NX', expiration: { type: 'PX', value: px } });
      if (r === 'OK') return true;
      // A retry after a lost reply: the first attempt may have taken it.
      return attempt > 0 && (await this.client.get(key)) === token;
    });
    if (took) {
      const now = Date.now();
      this.ownClaims.set(key, { token, until: now + px });
      if (this.ownClaims.size >= this.claimsPruneAt) {
        for (const [k, c] of this.ownClaims) if (c.until <= now) this.ownClaims.delete(k);
        this.claimsPruneAt = Math.max(1024, 2 * this.ownClaims.size);
      }
    }
    return took;
  }

  async clear(runId: string): Promise<number> {
    const prefix = `vigil:${globEscape(part(runId))}:`;
    let n = 0;
    for (const kind of ['state', 'claim']) {
      n += await this.run('clear', async () => {
        let removed = 0;
        for await (const keys of this.client.scanIterator({ MATCH: `${prefix}${kind}:*`, COUNT: 1000 })) {
          if (keys.length > 0) removed += await this.client.unlink(keys);
        }
        return removed;
      });
    }
    const claimPrefix = claimRedisKey(runId, '');
    for (const k of this.ownClaims.keys()) if (k.startsWith(claimPrefix)) this.ownClaims.delete(k);
    return n;
  }

  onReconnect(listener: (info: StateStoreReconnect) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Connected right now (operations issued now go straight out). */
  get isReady(): boolean {
    return this.connected && this.clientOrNone?.isReady === true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    for (const w of this.readyWaiters) w();
    this.readyWaiters = [];
    const client = this.clientOrNone;
    if (!client) return;
    if (client.isReady) {
      try {
        await client.close();
        return;
      } catch {
        // fall through to destroy
      }
    }
    client.destroy();
  }
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}
