/**
 * In-process fan-out of findings to live subscribers (WebSocket clients).
 *
 * - Filters run server-side, per subscriber.
 * - Each subscriber has a bounded queue. `send` may return a promise that settles when the transport
 *   has taken the message (for a WebSocket: written to the socket); at most `maxInFlight` sends are
 *   outstanding, the rest wait in the queue. When the queue holds more than `maxQueue` messages or
 *   `maxQueueBytes` (queued + in flight), the subscriber is dropped with a reason instead of growing.
 * - A ring buffer keeps the last `bufferSize` published findings so a reconnecting client can pass the
 *   last id it saw (`since`) and get what it missed first; if that id has left the buffer it gets a
 *   `gap` message and then everything buffered that matches its filter.
 * Each message is serialized once per publish and shared by every subscriber.
 */
import type { Finding } from '../core/events.ts';
import { compileFilter, type AlertFilter } from './alert-filter.ts';

export type { AlertFilter } from './alert-filter.ts';

export type AlertMessage =
  | { type: 'finding'; finding: Finding }
  | { type: 'heartbeat'; ts: number }
  | { type: 'gap'; since: string; buffered: number; message: string };

/** Delivers one serialized message; a returned promise settles when the transport has taken it. */
export type AlertSend = (data: string, message: AlertMessage) => void | Promise<void>;

export interface AlertHubOptions {
  /** Findings kept for `since` resumes; default 10 000. */
  bufferSize?: number;
  /** Messages a subscriber may have queued; default 10 000. */
  maxQueue?: number;
  /** Serialized size (string length) a subscriber may have queued or in flight; default 16 MiB. */
  maxQueueBytes?: number;
  /** Sends awaiting their transport at once; default 64. */
  maxInFlight?: number;
  /** Findings to keep out of the live feed (snoozes, src/api/snoozes.ts); they are still stored. */
  suppress?: (finding: Finding) => boolean;
}

export interface SubscribeOptions {
  /** The last finding id the client saw. */
  since?: string;
  /** Called once if the hub drops the subscriber (slow consumer, failed send). */
  onDrop?: (reason: string) => void;
}

export interface AlertSubscription {
  readonly id: number;
  readonly closed: boolean;
  /** Messages waiting (not yet handed to `send`). */
  readonly queued: number;
  /** Queue a control message (heartbeat…) behind the findings already queued. */
  send(message: AlertMessage): void;
  /** Unsubscribes; idempotent. */
  close(): void;
}

export interface AlertHubStats {
  published: number;
  subscribers: number;
  /** Subscribers dropped by the hub. */
  dropped: number;
}

interface Entry {
  finding: Finding;
  data: string;
}

export class AlertHub {
  readonly bufferSize: number;
  private readonly maxQueue: number;
  private readonly maxQueueBytes: number;
  private readonly maxInFlight: number;
  private readonly suppress: ((finding: Finding) => boolean) | undefined;
  private readonly ring: (Entry | undefined)[];
  private ringStart = 0;
  private ringSize = 0;
  private readonly subs = new Set<Subscriber>();
  private nextId = 1;
  private published = 0;
  private dropped = 0;

  constructor(options: AlertHubOptions = {}) {
    this.bufferSize = options.bufferSize ?? 10_000;
    this.maxQueue = options.maxQueue ?? 10_000;
    this.maxQueueBytes = options.maxQueueBytes ?? 16 * 1024 * 1024;
    this.maxInFlight = options.maxInFlight ?? 64;
    this.suppress = options.suppress;
    this.ring = new Array<Entry | undefined>(this.bufferSize);
  }

  get stats(): AlertHubStats {
    return { published: this.published, subscribers: this.subs.size, dropped: this.dropped };
  }

  publish(findings: readonly Finding[]): void {
    for (const finding of findings) {
      if (this.suppress?.(finding)) continue;
      const entry = { finding, data: JSON.stringify({ type: 'finding', finding } satisfies AlertMessage) };
      this.remember(entry);
      this.published++;
      for (const s of this.subs) if (s.matches(finding)) s.enqueue(entry.data, { type: 'finding', finding });
    }
  }

  subscribe(filter: AlertFilter, send: AlertSend, options: SubscribeOptions = {}): AlertSubscription {
    const sub = new Subscriber(this.nextId++, compileFilter(filter), send, this.limits(), (s, reason) => this.drop(s, reason), options.onDrop, (s) => this.subs.delete(s));
    this.subs.add(sub);
    if (options.since !== undefined) this.replay(sub, options.since);
    return sub;
  }

  /** Drops every subscriber (e.g. at shutdown). */
  closeAll(reason = 'server shutting down'): void {
    for (const s of [...this.subs]) this.drop(s, reason);
  }

  private limits(): Limits {
    return { maxQueue: this.maxQueue, maxQueueBytes: this.maxQueueBytes, maxInFlight: this.maxInFlight };
  }

  private drop(sub: Subscriber, reason: string): void {
    if (!this.subs.delete(sub)) return;
    this.dropped++;
    sub.dropped(reason);
  }

  private remember(entry: Entry): void {
    if (this.bufferSize === 0) return;
    if (this.ringSize < this.bufferSize) {
      this.ring[(this.ringStart + this.ringSize) % this.bufferSize] = entry;
      this.ringSize++;
    } else {
      this.ring[this.ringStart] = entry;
      this.ringStart = (this.ringStart + 1) % this.bufferSize;
    }
  }

  private at(i: number): Entry {
    return this.ring[(this.ringStart + i) % this.bufferSize]!;
  }

  private replay(sub: Subscriber, since: string): void {
    let from = -1;
    for (let i = this.ringSize - 1; i >= 0; i--) {
      if (this.at(i).finding.id === since) {
        from = i + 1;
        break;
      }
    }
    if (from === -1) {
      from = 0;
      const message = `finding ${since} is no longer buffered (the hub keeps the last ${this.bufferSize}); sending the ${this.ringSize} buffered findings that match; query /api/findings for older ones`;
      const gap: AlertMessage = { type: 'gap', since, buffered: this.ringSize, message };
      sub.enqueue(JSON.stringify(gap), gap);
    }
    for (let i = from; i < this.ringSize; i++) {
      const e = this.at(i);
      if (sub.matches(e.finding)) sub.enqueue(e.data, { type: 'finding', finding: e.finding });
    }
  }
}

interface Limits {
  maxQueue: number;
  maxQueueBytes: number;
  maxInFlight: number;
}

class Subscriber implements AlertSubscription {
  closed = false;
  private queue: { data: string; message: AlertMessage }[] = [];
  private queuedBytes = 0;
  private inFlight = 0;
  private inFlightBytes = 0;

  constructor(
    readonly id: number,
    readonly matches: (f: Finding) => boolean,
    private readonly sink: AlertSend,
    private readonly limits: Limits,
    private readonly requestDrop: (s: Subscriber, reason: string) => void,
    private readonly onDrop: ((reason: string) => void) | undefined,
    private readonly unsubscribe: (s: Subscriber) => void,
  ) {}

  get queued(): number {
    return this.queue.length;
  }

  send(message: AlertMessage): void {
    this.enqueue(JSON.stringify(message), message);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.clear();
    this.unsubscribe(this);
  }

  enqueue(data: string, message: AlertMessage): void {
    if (this.closed) return;
    this.queue.push({ data, message });
    this.queuedBytes += data.length;
    if (this.queued > this.limits.maxQueue) return this.requestDrop(this, `slow consumer: more than ${this.limits.maxQueue} messages queued`);
    if (this.queuedBytes + this.inFlightBytes > this.limits.maxQueueBytes) {
      return this.requestDrop(this, `slow consumer: more than ${this.limits.maxQueueBytes} bytes queued`);
    }
    this.pump();
  }

  /** Called by the hub after removing the subscriber. */
  dropped(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.clear();
    this.onDrop?.(reason);
  }

  private pump(): void {
    while (!this.closed && this.queued > 0 && this.inFlight < this.limits.maxInFlight) {
      const item = this.queue.shift()!;
      this.queuedBytes -= item.data.length;
      let result: void | Promise<void>;
      try {
        result = this.sink(item.data, item.message);
      } catch (e) {
        return this.requestDrop(this, `send failed: ${(e as Error).message}`);
      }
      if (result instanceof Promise) {
        const bytes = item.data.length;
        this.inFlight++;
        this.inFlightBytes += bytes;
        result.then(
          () => {
            this.inFlight--;
            this.inFlightBytes -= bytes;
            this.pump();
          },
          (e: unknown) => this.requestDrop(this, `send failed: ${(e as Error)?.message ?? String(e)}`),
        );
      }
    }
  }

  private clear(): void {
    this.queue = [];
    this.queuedBytes = 0;
  }
}
