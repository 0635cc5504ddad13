/**
 * Configuration from the environment and an optional JSON file (VIGIL_CONFIG), validated with zod.
 * The file uses the same key names as the environment; the environment wins. A bad value stops
 * start-up with a message naming the key and what was expected.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { configError } from './errors.ts';

const bool = z.union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no'])]).transform((v) => v === true || v === 'true' || v === '1' || v === 'yes');
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const url = (protocols: string[]) =>
  z.string().refine((s) => {
    try {
      return protocols.includes(new URL(s).protocol);
    } catch {
      return false;
    }
  }, `a URL starting with ${protocols.join(' or ')}`);

/** One entry per key: schema, default, and what a user is told when the value is wrong. */
export const CONFIG_KEYS = {
  PORT: { schema: int(0, 65535), default: 8080, expected: 'a TCP port 0-65535', doc: 'API port' },
  HOST: { schema: z.string().min(1), default: '127.0.0.1', expected: 'a host or address to listen on', doc: 'API listen address (0.0.0.0 in containers)' },
  VIGIL_DATA_DIR: { schema: z.string().min(1), default: './data', expected: 'a directory path', doc: 'Where the embedded ClickHouse keeps its data' },
  CLICKHOUSE_URL: { schema: url(['http:', 'https:']).optional(), default: undefined, expected: 'an http(s) URL of a ClickHouse server', doc: 'Use a ClickHouse server instead of the embedded engine' },
  CLICKHOUSE_USER: { schema: z.string(), default: 'default', expected: 'a user name', doc: 'ClickHouse server user' },
  CLICKHOUSE_PASSWORD: { schema: z.string(), default: '', expected: 'a string', doc: 'ClickHouse server password' },
  CLICKHOUSE_DATABASE: { schema: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), default: 'vigil', expected: 'a database name of letters, digits and _', doc: 'Database holding Vigil tables' },
  VIGIL_FEEDS: {
    schema: z.string().regex(/^\s*[a-z0-9_-]+:[A-Za-z0-9,/_-]+(\s*;\s*[a-z0-9_-]+:[A-Za-z0-9,/_-]+)*\s*$/).optional(),
    default: undefined,
    expected: 'venue:sym1,sym2[;venue:...], e.g. binance:btcusdt,ethusdt',
    doc: 'Live feeds to connect; none means the demo replay runs',
  },
  VIGIL_DEMO: { schema: bool, default: true, expected: 'true or false', doc: 'With no live feed, replay the bundled sample in a loop' },
  VIGIL_DEMO_FILE: { schema: z.string().min(1), default: 'replays/demo-binance-btcusdt.jsonl.gz', expected: 'a replay file path', doc: 'The sample the demo replays' },
  VIGIL_LOG_LEVEL: { schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), default: 'info', expected: 'one of fatal, error, warn, info, debug, trace, silent', doc: 'Log level' },
  VIGIL_PARTITIONS: { schema: int(1, 256), default: 4, expected: 'an integer 1-256', doc: 'Partitions per topic (in-process transport)' },
  VIGIL_QUEUE_CAPACITY: { schema: int(16, 10_000_000), default: 8192, expected: 'an integer 16-10000000', doc: 'Messages a partition queue holds before senders wait' },
  VIGIL_FLUSH_ROWS: { schema: int(1, 1_000_000), default: 1000, expected: 'an integer 1-1000000', doc: 'Findings per ClickHouse insert batch' },
  VIGIL_FLUSH_MS: { schema: int(1, 600_000), default: 250, expected: 'milliseconds 1-600000', doc: 'Longest a finding waits before its batch is written' },
  VIGIL_FEED_URLS: {
    schema: z
      .string()
      .regex(/^\s*[a-z0-9_-]+=(wss?|https?):\/\/\S+?(\|(https?):\/\/\S+?)?(\s*;\s*[a-z0-9_-]+=(wss?|https?):\/\/\S+?(\|(https?):\/\/\S+?)?)*\s*$/)
      .optional(),
    default: undefined,
    expected: 'venue=wsUrl[|restUrl][;venue=…], e.g. orderflow=ws://10.0.0.5:9000/orders',
    doc: "Per-venue endpoints: your own streams (orderflow, transactions) or a venue's alternative hosts",
  },
  VIGIL_BINANCE_WS_URL: { schema: url(['ws:', 'wss:']).optional(), default: undefined, expected: 'a ws(s) URL', doc: 'Binance stream endpoint (tests point it at a local server)' },
  VIGIL_BINANCE_REST_URL: { schema: url(['http:', 'https:']).optional(), default: undefined, expected: 'an http(s) URL', doc: 'Binance REST endpoint for depth snapshots' },
  KAFKA_BROKERS: {
    schema: z.string().regex(/^\s*[A-Za-z0-9.\-\[\]:]+:\d{1,5}(\s*,\s*[A-Za-z0-9.\-\[\]:]+:\d{1,5})*\s*$/).optional(),
    default: undefined,
    expected: 'host:port[,host:port…], e.g. 127.0.0.1:9092',
    doc: 'Kafka bootstrap brokers; set, the bus is Kafka (topics per event kind), unset, the in-process transport',
  },
  KAFKA_CLIENT_ID: { schema: z.string().regex(/^[A-Za-z0-9._-]+$/), default: 'vigil', expected: 'letters, digits, . _ -', doc: 'Kafka client id (broker logs and quotas)' },
  VIGIL_KAFKA_PARTITIONS: { schema: int(1, 1024), default: 6, expected: 'an integer 1-1024', doc: 'Partitions of each Kafka topic Vigil creates (existing topics keep theirs)' },
  VIGIL_TOPIC_PREFIX: {
    schema: z.string().regex(/^[A-Za-z0-9._-]{0,100}$/),
    default: '',
    expected: 'up to 100 letters, digits, . _ -',
    doc: 'Prepended to every Kafka topic and consumer group Vigil uses (several deployments or test runs on one cluster)',
  },
  VIGIL_KAFKA_SESSION_TIMEOUT_MS: {
    schema: int(3_000, 300_000),
    default: 30_000,
    expected: 'milliseconds 3000-300000',
    doc: "Kafka consumer session timeout: how long a silent (crashed) worker keeps its partitions before the group moves them (the broker's group.min.session.timeout.ms, default 6000, is the floor)",
  },
  VIGIL_HEALTH_PORT: {
    schema: int(0, 65535).optional(),
    default: undefined,
    expected: 'a TCP port 0-65535',
    doc: 'vigil feeds and vigil detect serve GET /healthz on this port (on HOST); unset: no health endpoint',
  },
  VIGIL_STORE_BUFFER_ROWS: {
    schema: int(1, 10_000_000),
    default: 100_000,
    expected: 'an integer 1-10000000',
    doc: 'Findings (and dead letters) the store side holds in memory while ClickHouse is slow or down; beyond, they spill to a file under VIGIL_DATA_DIR/spill',
  },
  VIGIL_CONTEXT_TTL_DAYS: {
    schema: int(0, 36_500),
    default: 30,
    expected: 'whole days 0-36500 (0: keep)',
    doc: 'Days the stored market and transaction context (trades, quotes, transactions) is kept after it was stored; 0: kept for good',
  },
  REDIS_URL: { schema: url(['redis:', 'rediss:']).optional(), default: undefined, expected: 'a redis:// or rediss:// URL', doc: 'Keep detector state in Redis (namespaced by run id), so any worker can take over a key; unset: in memory' },
  VIGIL_RULES: {
    schema: z.string().min(1).optional(),
    default: undefined,
    expected: 'a rules file path (YAML or JSON)',
    doc: 'The rules file (reloaded when it changes, and through the API); unset: the shipped rules/default.yaml',
  },
  VIGIL_WEBHOOKS: {
    schema: z.string().min(1).optional(),
    default: undefined,
    expected: 'a webhooks file path (YAML or JSON)',
    doc: 'Webhooks notified of live findings (generic JSON or Slack-compatible; routing per rule and severity); read and validated at start (src/notify/config.ts); unset: none',
  },
  VIGIL_AUTH: {
    schema: z.enum(['on', 'off', 'auto']),
    default: 'auto',
    expected: 'on, off or auto',
    doc: 'API keys required on every route but /healthz; auto: off when HOST is a loopback address, on otherwise',
  },
  VIGIL_RATE_LIMIT: { schema: int(0, 1_000_000), default: 600, expected: 'requests per minute 0-1000000 (0: no limit)', doc: 'Requests per minute per API key (per client IP without one); beyond: 429 with Retry-After' },
  VIGIL_CORS_ORIGINS: {
    schema: z.string().regex(/^\s*(\*|https?:\/\/[A-Za-z0-9.\-\[\]:]+(\s*,\s*https?:\/\/[A-Za-z0-9.\-\[\]:]+)*)\s*$/).optional(),
    default: undefined,
    expected: 'comma-separated origins (https://host[:port],…) or *',
    doc: 'Browser origins allowed to call the API (CORS); unset: none',
  },
  VIGIL_BODY_LIMIT_BYTES: { schema: int(1024, 1024 * 1024 * 1024), default: 1024 * 1024, expected: 'bytes 1024-1073741824', doc: 'Largest request body the API accepts (413 beyond)' },
  VIGIL_STATE_IDLE_MS: { schema: int(1_000, 30 * 86_400_000), default: 600_000, expected: 'milliseconds 1000-2592000000', doc: 'Event time a key may stay unseen before its detector state leaves memory (restored from the store when it returns)' },
  VIGIL_SCORE_TIMEOUT_MS: { schema: int(10, 600_000), default: 2000, expected: 'milliseconds 10-600000', doc: 'How long POST /api/transactions/score waits for the risk score of its transaction (504 VIGIL_ERR_TIMEOUT beyond)' },
  VIGIL_SCORE_MAX_PENDING: { schema: int(1, 1_000_000), default: 1000, expected: 'an integer 1-1000000', doc: 'Scoring requests an API process keeps waiting at once (503 VIGIL_ERR_UNAVAILABLE beyond)' },
} as const;

export type ConfigKey = keyof typeof CONFIG_KEYS;
type Out<K extends ConfigKey> = z.output<(typeof CONFIG_KEYS)[K]['schema']>;

export interface FeedSpec {
  venue: string;
  symbols: string[];
}

export type Config = { [K in ConfigKey]: Out<K> } & {
  feeds: FeedSpec[];
  /** Endpoint overrides per venue, from VIGIL_FEED_URLS and the VIGIL_BINANCE_* keys. */
  endpoints: Record<string, { wsUrl?: string; restUrl?: string }>;
  /** Detector parameters by detector name, from the file's `detectors` object. */
  detectors: Record<string, Record<string, unknown>>;
  configFile?: string;
};

function parseFeeds(spec: string | undefined): FeedSpec[] {
  if (!spec) return [];
  return spec
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const [venue, list] = s.split(':') as [string, string];
      return { venue, symbols: list.split(',').map((x) => x.trim()).filter(Boolean) };
    });
}

/** Reads the configuration; throws a VIGIL_ERR_CONFIG error naming the first bad key. */
export function loadConfig(env: Record<string, string | undefined> = process.env, overrides: Partial<Record<ConfigKey, unknown>> = {}): Config {
  let file: Record<string, unknown> = {};
  const configFile = env.VIGIL_CONFIG;
  if (configFile) {
    let text: string;
    try {
      text = readFileSync(configFile, 'utf8');
    } catch (e) {
      throw configError('VIGIL_CONFIG', 'a readable JSON file', `${configFile}: ${(e as Error).message}`);
    }
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      file = parsed as Record<string, unknown>;
    } catch (e) {
      throw configError('VIGIL_CONFIG', 'a JSON object', `${configFile}: ${(e as Error).message}`);
    }
    for (const k of Object.keys(file)) {
      if (k !== 'detectors' && !(k in CONFIG_KEYS)) throw configError(k, `a known key (${Object.keys(CONFIG_KEYS).join(', ')}, detectors)`, `unknown key in ${configFile}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(CONFIG_KEYS) as [ConfigKey, (typeof CONFIG_KEYS)[ConfigKey]][]) {
    const raw = overrides[key] ?? emptyToUndefined(env[key]) ?? file[key];
    if (raw === undefined) {
      out[key] = def.default;
      continue;
    }
    const r = (def.schema as z.ZodType).safeParse(raw);
    if (!r.success) throw configError(key, def.expected, raw);
    out[key] = r.data;
  }
  const detectors = file.detectors ?? {};
  if (typeof detectors !== 'object' || detectors === null || Array.isArray(detectors)) throw configError('detectors', 'an object of detector name → parameters', detectors);
  const typed = out as { [K in ConfigKey]: Out<K> };
  return {
    ...typed,
    feeds: parseFeeds(typed.VIGIL_FEEDS),
    endpoints: parseEndpoints(typed.VIGIL_FEED_URLS, typed.VIGIL_BINANCE_WS_URL, typed.VIGIL_BINANCE_REST_URL),
    detectors: detectors as Config['detectors'],
    configFile,
  };
}

function parseEndpoints(spec: string | undefined, binanceWs?: string, binanceRest?: string): Config['endpoints'] {
  const out: Config['endpoints'] = {};
  if (binanceWs || binanceRest) out.binance = { wsUrl: binanceWs, restUrl: binanceRest };
  for (const part of (spec ?? '').split(';').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    const [wsUrl, restUrl] = part.slice(eq + 1).split('|');
    out[part.slice(0, eq)] = { wsUrl, restUrl };
  }
  return out;
}

/** Whether the API requires keys: VIGIL_AUTH, with auto meaning on unless HOST is a loopback address. */
export function authEnabled(config: Pick<Config, 'VIGIL_AUTH' | 'HOST'>): boolean {
  if (config.VIGIL_AUTH !== 'auto') return config.VIGIL_AUTH === 'on';
  return !isLoopback(config.HOST);
}

export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h);
}

/** VIGIL_CORS_ORIGINS as a list (empty: CORS off). */
export function corsOrigins(config: Pick<Config, 'VIGIL_CORS_ORIGINS'>): string[] {
  return (config.VIGIL_CORS_ORIGINS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

function emptyToUndefined(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}
