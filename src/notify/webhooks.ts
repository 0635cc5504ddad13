/**
 * Webhook notifications of live findings (VIGIL_WEBHOOKS; src/notify/config.ts).
 *
 * - Only findings of run `live` are sent: a replay would page people about the past.
 * - Routing per webhook (routing.ts): minimum severity, rules, detectors, venues, symbols, accounts.
 *   An optional `suppress` hook (snoozes) is asked first; if it throws, the finding is sent (an
 *   alerting path fails open).
 * - Delivery per webhook, in order, one request at a time, from a bounded queue: when it is full new
 *   findings are dropped, counted and logged (never an unbounded queue). Each attempt has a timeout;
 *   network errors, timeouts, 408, 429 and 5xx are retried with exponential backoff and jitter (a
 *   Retry-After header is honoured, up to 10 minutes) until maxAttempts; other answers (3xx, 4xx) fail
 *   at once. Logs name the webhook, never its URL (Slack webhook URLs are secrets).
 * - Delivery is at most once across restarts: the queue is in memory. A finding may reach a receiver
 *   twice if an answer is lost (timeout after the receiver took it): receivers dedupe by
 *   `X-Vigil-Finding-Id`.
 * - `startNotifier` consumes vigil.findings in one group shared by every API process, so each finding
 *   is notified once however many replicas run; in one process (`vigil run` without Kafka)
 *   `notifyFromHub` feeds it from the alert hub instead.
 * - stop(): lets the queues drain for a grace period, then aborts what is in flight and abandons what
 *   is left (counted).
 */
import type { AlertHub, AlertSubscription } from '../api/alert-hub.ts';
import type { Finding } from '../core/events.ts';
import { TOPICS, type Subscription, type Transport } from '../transport/types.ts';
import type { WebhookConfig } from './config.ts';
import { SIGNATURE_HEADER, signBody, webhookBody } from './formats.ts';
import { compileRoute, type Route } from './routing.ts';

/** The only run whose findings are notified. */
export const LIVE_RUN = 'live';
/** The longest Retry-After honoured; beyond, the wait is cut to this. */
export const RETRY_AFTER_CAP_MS = 600_000;

export interface NotifyLog {
  info(message: string, extra?: Record<string, unknown>): void;
  warn(message: string, extra?: Record<string, unknown>): void;
}

export interface NotifierOptions {
  log?: NotifyLog;
  /** Default: the global fetch. */
  fetch?: typeof fetch;
  /** In [0, 1): the jitter (default Math.random). */
  random?: () => number;
}

export interface NotifyOptions {
  /** True: do not notify this finding (a snooze covers it). */
  suppress?: (f: Finding) => boolean;
}

export interface WebhookStats {
  name: string;
  format: WebhookConfig['format'];
  /** Findings waiting (not counting the one being delivered). */
  queued: number;
  /** 1 while a finding is being delivered (an attempt, or the wait before a retry). */
  inFlight: number;
  delivered: number;
  /** Given up: an answer that is not retried (3xx, 4xx), or maxAttempts used. */
  failed: number;
  /** Attempts after the first. */
  retries: number;
  /** Not queued: the queue was full. */
  dropped: number;
  /** Still queued or in flight when stop()'s grace period ended. */
  abandoned: number;
  /** HTTP status of the last answer, and the last failure's reason. */
  lastStatus?: number;
  lastError?: string;
}

export interface NotifierStats {
  /** Findings handed to notify(). */
  received: number;
  /** Of those, not of run `live` (never sent). */
  notLive: number;
  /** Live findings the suppress hook covered. */
  suppressed: number;
  /** Live findings no webhook's routing matched. */
  unrouted: number;
  webhooks: WebhookStats[];
}

type Outcome = { ok: true; status: number } | { ok: false; retry: boolean; status?: number; error: string; retryAfterMs?: number; aborted?: boolean };

/** Retry-After: delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d{1,10}$/.test(v)) return Math.min(Number(v) * 1000, RETRY_AFTER_CAP_MS);
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.min(Math.max(0, at - now), RETRY_AFTER_CAP_MS) : undefined;
}

/** Resolves true after ms, or false as soon as the signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    timer.unref();
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

class WebhookSender {
  readonly stats: WebhookStats;
  private queue: (Finding | undefined)[] = [];
  private head = 0;
  private running = false;
  private accepting = true;
  private overflowing = 0;
  private idle: (() => void)[] = [];
  private readonly stopping = new AbortController();

  constructor(
    readonly config: WebhookConfig,
    private readonly fetchImpl: typeof fetch,
    private readonly random: () => number,
    private readonly log: NotifyLog | undefined,
  ) {
    this.stats = { name: config.name, format: config.format, queued: 0, inFlight: 0, delivered: 0, failed: 0, retries: 0, dropped: 0, abandoned: 0 };
  }

  private get length(): number {
    return this.queue.length - this.head;
  }

  enqueue(f: Finding): void {
    if (!this.accepting) {
      this.stats.abandoned++;
      return;
    }
    if (this.length >= this.config.queueSize) {
      this.stats.dropped++;
      if (this.overflowing++ === 0) {
        this.log?.warn(`webhook ${this.config.name}: queue full (${this.config.queueSize} findings waiting); dropping new findings until it drains`, { webhook: this.config.name });
      }
      return;
    }
    if (this.overflowing > 0) {
      this.log?.warn(`webhook ${this.config.name}: queue accepting again; ${this.overflowing} findings were dropped`, { webhook: this.config.name, dropped: this.overflowing });
      this.overflowing = 0;
    }
    this.queue.push(f);
    this.stats.queued = this.length;
    if (!this.running) void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.length > 0 && !this.stopping.signal.aborted) {
        const f = this.queue[this.head]!;
        this.queue[this.head++] = undefined; // released as it leaves
        if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue = this.queue.slice(this.head);
          this.head = 0;
        }
        this.stats.queued = this.length;
        this.stats.inFlight = 1;
        await this.deliver(f);
        this.stats.inFlight = 0;
      }
    } finally {
      this.running = false;
      this.stats.inFlight = 0;
      for (const w of this.idle.splice(0)) w();
    }
  }

  private async deliver(f: Finding): Promise<void> {
    const { maxAttempts, name } = this.config;
    for (let attempt = 1; ; attempt++) {
      if (attempt > 1) this.stats.retries++;
      const outcome = await this.attempt(f, attempt);
      if (outcome.ok) {
        this.stats.delivered++;
        this.stats.lastStatus = outcome.status;
        return;
      }
      if (outcome.status !== undefined) this.stats.lastStatus = outcome.status;
      if (outcome.aborted) {
        this.stats.abandoned++;
        return;
      }
      this.stats.lastError = outcome.error;
      if (!outcome.retry || attempt >= maxAttempts) {
        this.stats.failed++;
        const why = outcome.retry ? `gave up after ${attempt} attempts` : 'not retried';
        this.log?.warn(`webhook ${name}: finding ${f.id} not delivered (${why}): ${outcome.error}`, { webhook: name, finding: f.id, attempts: attempt, status: outcome.status });
        return;
      }
      const delay = outcome.retryAfterMs ?? this.backoff(attempt);
      if (!(await sleep(delay, this.stopping.signal))) {
        this.stats.abandoned++;
        return;
      }
    }
  }

  /** Exponential, capped, with jitter: half fixed, half random (retries of many findings spread out). */
  private backoff(attempt: number): number {
    const d = Math.min(this.config.maxBackoffMs, this.config.backoffMs * 2 ** (attempt - 1));
    return d / 2 + this.random() * (d / 2);
  }

  private async attempt(f: Finding, attempt: number): Promise<Outcome> {
    const { url, format, secret, headers, timeoutMs } = this.config;
    const body = webhookBody(format, f, Date.now());
    const h: Record<string, string> = {
      'user-agent': 'vigil-webhooks',
      ...headers,
      'content-type': 'application/json',
      'x-vigil-event': 'finding',
      'x-vigil-finding-id': f.id,
      'x-vigil-attempt': String(attempt),
    };
    if (secret) h[SIGNATURE_HEADER] = signBody(secret, body);
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), timeoutMs);
    const onStop = () => ctrl.abort();
    this.stopping.signal.addEventListener('abort', onStop, { once: true });
    try {
      const res = await this.fetchImpl(url, { method: 'POST', headers: h, body, signal: ctrl.signal, redirect: 'manual' });
      await res.body?.cancel().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status };
      const retry = res.status === 408 || res.status === 429 || res.status >= 500;
      const after = retry ? retryAfterMs(res.headers.get('retry-after')) : undefined;
      return { ok: false, retry, status: res.status, error: `HTTP ${res.status}`, ...(after === undefined ? {} : { retryAfterMs: after }) };
    } catch (e) {
      if (this.stopping.signal.aborted) return { ok: false, retry: false, aborted: true, error: 'stopped' };
      if (ctrl.signal.aborted) return { ok: false, retry: true, error: `timed out after ${timeoutMs} ms` };
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      return { ok: false, retry: true, error: cause?.code ?? cause?.message ?? (e as Error).message };
    } finally {
      clearTimeout(timer);
      this.stopping.signal.removeEventListener('abort', onStop);
    }
  }

  /** Drains for up to graceMs, then aborts what is in flight and abandons the rest. */
  async stop(graceMs: number): Promise<void> {
    this.accepting = false;
    if (this.running) {
      const idle = new Promise<void>((r) => this.idle.push(r));
      const timer = setTimeout(() => this.stopping.abort(), graceMs);
      await idle;
      clearTimeout(timer);
    }
    this.stopping.abort();
    this.stats.abandoned += this.length;
    this.queue = [];
    this.head = 0;
    this.stats.queued = 0;
  }
}

export class Notifier {
  private readonly senders: { route: Route; sender: WebhookSender }[];
  private readonly counts = { received: 0, notLive: 0, suppressed: 0, unrouted: 0 };
  private readonly log: NotifyLog | undefined;

  constructor(webhooks: readonly WebhookConfig[], options: NotifierOptions = {}) {
    const fetchImpl = options.fetch ?? fetch;
    const random = options.random ?? Math.random;
    this.log = options.log;
    this.senders = webhooks.map((w) => ({ route: compileRoute(w), sender: new WebhookSender(w, fetchImpl, random, options.log) }));
  }

  /** Webhooks configured. */
  get size(): number {
    return this.senders.length;
  }

  /** Queues each live, routed, unsuppressed finding for its webhooks; never waits. */
  notify(findings: readonly Finding[], options: NotifyOptions = {}): void {
    for (const f of findings) {
      this.counts.received++;
      if (f.runId !== LIVE_RUN) {
        this.counts.notLive++;
        continue;
      }
      if (options.suppress && this.suppressed(f, options.suppress)) {
        this.counts.suppressed++;
        continue;
      }
      let routed = false;
      for (const s of this.senders) {
        if (!s.route(f)) continue;
        routed = true;
        s.sender.enqueue(f);
      }
      if (!routed) this.counts.unrouted++;
    }
  }

  private suppressed(f: Finding, suppress: (f: Finding) => boolean): boolean {
    try {
      return suppress(f);
    } catch (e) {
      this.log?.warn(`notifications: the suppress hook failed for finding ${f.id}; notifying it: ${(e as Error).message}`);
      return false;
    }
  }

  /** Delivery counters, read when scraped (for /metrics). */
  get stats(): NotifierStats {
    return { ...this.counts, webhooks: this.senders.map((s) => ({ ...s.sender.stats })) };
  }

  /**
   * Stops accepting; lets the queues drain for up to graceMs (default 5 s), then aborts in-flight
   * requests and abandons pending retries and queued findings. Returns how many were abandoned.
   */
  async stop(options: { graceMs?: number } = {}): Promise<{ abandoned: number }> {
    const before = this.senders.reduce((n, s) => n + s.sender.stats.abandoned, 0);
    await Promise.all(this.senders.map((s) => s.sender.stop(options.graceMs ?? 5_000)));
    const abandoned = this.senders.reduce((n, s) => n + s.sender.stats.abandoned, 0) - before;
    if (abandoned > 0) this.log?.warn(`notifications: ${abandoned} findings not delivered at shutdown (grace period over)`, { abandoned });
    return { abandoned };
  }
}

/**
 * The notifier as a consumer of vigil.findings in `group`: one group shared by every API process (on
 * Kafka each finding then reaches one of them). A batch resolves once its findings are queued.
 */
export function startNotifier(transport: Transport, notifier: Notifier, group: string, options: NotifyOptions = {}): Promise<Subscription> {
  return transport.subscribe<Finding>({
    group,
    topics: [TOPICS.findings],
    eachBatch: (b) => {
      notifier.notify(
        b.messages.map((m) => m.value),
        options,
      );
    },
  });
}

/** In one process without Kafka: the notifier fed from the alert hub (every live finding published). */
export function notifyFromHub(hub: AlertHub, notifier: Notifier, options: NotifyOptions = {}): AlertSubscription {
  return hub.subscribe({ runId: LIVE_RUN }, (_data, message) => {
    if (message.type === 'finding') notifier.notify([message.finding], options);
  });
}

/** Notifications as `vigil run` and `vigil api` run them: the notifier and what feeds it. */
export interface Notifications {
  readonly notifier: Notifier;
  /** Stops the feed, then the notifier (queues drain for up to graceMs, default 5 s; the rest is abandoned). */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts the notifier for the configured webhooks (none: undefined), fed from vigil.findings in a
 * shared group (Kafka) or from the alert hub (one process).
 */
export async function startNotifications(
  webhooks: readonly WebhookConfig[],
  source: { transport: Transport; group: string } | { hub: AlertHub },
  log: NotifyLog,
  options: NotifyOptions = {},
): Promise<Notifications | undefined> {
  if (webhooks.length === 0) return undefined;
  const notifier = new Notifier(webhooks, { log });
  const feed = 'hub' in source ? notifyFromHub(source.hub, notifier, options) : await startNotifier(source.transport, notifier, source.group, options);
  log.info(`notifying live findings to ${webhooks.length} webhook(s): ${webhooks.map((w) => `${w.name} (${w.format})`).join(', ')}`);
  return {
    notifier,
    async stop(graceMs = 5_000) {
      if ('close' in feed) feed.close();
      else await feed.stop();
      await notifier.stop({ graceMs });
    },
  };
}
