/**
 * Vigil's order-flow stream (adapter `orderflow`): JSON over WebSocket, one `order` event per order
 * action (new, replace, cancel, fill) with its account — like a FIX drop copy. The wire protocol is
 * documented in docs/feeds/orderflow.md:
 *
 *   client → {"type":"subscribe","symbols"?:["BTC-USDT"],"accounts"?:["acc-1"]}
 *   server → {"type":"subscribed","symbols":[…]|null,"accounts":[…]|null,"seq":0}
 *            {"type":"order","seq":1,"data":{…canonical order fields…}}
 *            {"type":"orders","seq":2,"data":[{…},{…}]}
 *            {"type":"heartbeat","ts":1723161253937,"seq":2}
 *            {"type":"error","code":"bad_subscribe","message":"…"}
 *
 * `seq` numbers the data messages of a connection (1, 2, 3…); a jump is a gap: a `stale` status event
 * `sequence gap: …` for every symbol of the stream (there is no book to reset), counted in
 * sequenceReport(). Data is validated with the canonical zod schema (this flow is far lighter than
 * market data), and a broken message names the failing field (`order.price: …`).
 *
 * The machinery here (VigilStreamNormalizer, vigilStreamProtocol) is shared with the transaction stream
 * (src/feeds/transactions.ts), which speaks the same protocol with `transaction`/`transactions`.
 */
import type { z } from 'zod';
import { ERR, VigilError } from '../core/errors.ts';
import { orderSchema, symbolSchema, type CanonicalEvent, type Order } from '../core/events.ts';
import { connectVenue, type ConnectionTuning } from './connection.ts';
import type { VenueProtocol } from './connection-types.ts';
import {
  describeValue,
  formatIssues,
  gapReason,
  isObject,
  parseIsoMs,
  parseStatusFrame,
  SequenceTracker,
  toNumber,
  type SequenceReport,
} from './mapping.ts';
import { checkRecvTs, parseJsonFrame, statusEvent } from './normalize-util.ts';
import { MalformedFrameError, STATUS_CHANNEL } from './types.ts';
import type { LiveFeed, LiveFeedOptions, Normalizer, RawFrame, VenueAdapter } from './types.ts';

export const ORDERFLOW = 'orderflow';
/** The native symbol meaning "every symbol" (a subscription without a symbols filter). */
export const ALL_SYMBOLS = '*';
/** The server sends a heartbeat at least this often; the connection is stale after STALE_AFTER_MS of silence. */
export const HEARTBEAT_INTERVAL_MS = 10_000;
export const STALE_AFTER_MS = 30_000;

type Json = Record<string, unknown>;

// ---------------------------------------------------------------- wire → canonical helpers

/** A wire time: epoch ms (number or numeric text) or ISO-8601 text. */
export function wireTime(v: unknown, ctx: string): unknown {
  if (typeof v === 'number' || v === undefined || v === null) return v;
  if (typeof v === 'string') {
    const n = toNumber(v);
    if (Number.isFinite(n)) return n;
    try {
      return parseIsoMs(v);
    } catch (err) {
      throw new MalformedFrameError(`${ctx}: ${(err as Error).message}`);
    }
  }
  return v;
}

/** Numeric text → number (the schema then checks the range); anything else is left for the schema to reject. */
export function wireNumber(v: unknown): unknown {
  return typeof v === 'string' ? toNumber(v) : v;
}

/** Safe-integer ids → text (order ids and accounts are often numeric in other systems). */
export function wireId(v: unknown): unknown {
  return typeof v === 'number' && Number.isSafeInteger(v) ? String(v) : v;
}

/**
 * One canonical event from a message's data: `prepare` coerces the wire values, the schema validates.
 * A failure names the field under `ctx` (`order.price: Too small…`).
 */
export function validateData<T>(schema: z.ZodType<T>, data: unknown, recvTs: number, ctx: string, kind: string, prepare: (d: Json, c: Json) => void): T {
  if (!isObject(data)) throw new MalformedFrameError(`${ctx}: expected an object with the ${kind}'s fields, got ${describeValue(data)}`);
  if (data.kind !== undefined && data.kind !== kind) throw new MalformedFrameError(`${ctx}.kind: expected "${kind}", got ${describeValue(data.kind)}`);
  const c: Json = { ...data, kind, recvTs };
  prepare(data, c);
  const r = schema.safeParse(c);
  if (!r.success) throw new MalformedFrameError(formatIssues(r.error, data, ctx));
  return r.data;
}

export function toOrder(data: unknown, recvTs: number, ctx: string): Order {
  const order = validateData(orderSchema, data, recvTs, ctx, 'order', (d, c) => {
    if (typeof d.symbol === 'string') c.symbol = d.symbol.trim().toUpperCase();
    c.ts = wireTime(d.ts, `${ctx}.ts`);
    for (const k of ['price', 'qty', 'fillQty', 'fillPrice'] as const) if (d[k] !== undefined) c[k] = wireNumber(d[k]);
    for (const k of ['orderId', 'account', 'origOrderId', 'counterpartyAccount'] as const) if (d[k] !== undefined) c[k] = wireId(d[k]);
  });
  if (order.action === 'fill' && (order.fillQty === undefined || order.fillPrice === undefined)) {
    throw new MalformedFrameError(`${ctx}.${order.fillQty === undefined ? 'fillQty' : 'fillPrice'}: required for action "fill"`);
  }
  return order;
}

// ---------------------------------------------------------------- the shared stream normalizer

export interface VigilStreamSpec<E extends CanonicalEvent> {
  /** Adapter name: RawFrame.source and the venue of the status events. */
  venue: string;
  /** Message type of one event and of a batch (`order`, `orders`). */
  one: string;
  many: string;
  toEvent(data: unknown, recvTs: number, ctx: string): E;
  /** The instrument of an event, for the status events of a gap (order flow). */
  symbolOf?(ev: E): string;
  /** Status symbols of a stream without instruments (transactions: a pseudo-instrument). */
  fixedSymbols?: readonly string[];
}

/**
 * Normalizer of Vigil's JSON event streams. Status frames → a status event per symbol of the stream;
 * data messages → events; a seq gap → a `stale` status event per symbol (reason `sequence gap: …`)
 * before the message's events; heartbeats, acks → ignored labels; error frames and broken messages →
 * MalformedFrameError.
 */
export class VigilStreamNormalizer<E extends CanonicalEvent> implements Normalizer {
  readonly venue: string;
  readonly seq = new SequenceTracker();
  /** Symbols named by the connection (status frames), without the ALL_SYMBOLS wildcard. */
  private subscribed: string[] = [];
  private readonly seen = new Set<string>();
  /** Gaps found in frames that then failed: reported with the next good frame. */
  private pending: { reason: string; recvTs: number }[] = [];

  constructor(private readonly spec: VigilStreamSpec<E>) {
    this.venue = spec.venue;
  }

  sequenceReport(): SequenceReport {
    return { gaps: this.seq.gaps, missed: this.seq.missed };
  }

  /** Every symbol of the stream: fixed ones, or the subscribed ones and those seen in events. */
  private streamSymbols(): string[] {
    if (this.spec.fixedSymbols !== undefined) return [...this.spec.fixedSymbols];
    const all = new Set(this.subscribed);
    for (const s of this.seen) all.add(s);
    return [...all].sort();
  }

  normalize(frame: RawFrame, out: CanonicalEvent[]): string | undefined {
    const start = out.length;
    const label = this.normalizeFrame(frame, out);
    if (this.pending.length === 0) return label;
    const statuses: CanonicalEvent[] = [];
    for (const p of this.pending) for (const s of this.streamSymbols()) statuses.push(statusEvent(this.venue, s, 'gap', p.reason, p.recvTs, p.recvTs));
    this.pending = [];
    out.splice(start, 0, ...statuses);
    return undefined;
  }

  private normalizeFrame(frame: RawFrame, out: CanonicalEvent[]): string | undefined {
    const recvTs = checkRecvTs(frame);
    if (frame.channel === STATUS_CHANNEL) {
      const st = parseStatusFrame(frame);
      // A new connection numbers its messages from 1; a lost one ends its numbering.
      this.seq.reset();
      if (this.spec.fixedSymbols === undefined) this.subscribed = st.symbols.filter((s) => s !== ALL_SYMBOLS && symbolSchema.safeParse(s).success);
      for (const s of this.streamSymbols()) out.push(statusEvent(this.venue, s, st.status, st.reason, recvTs, recvTs));
      return undefined;
    }
    const msg = parseJsonFrame(frame);
    if (!isObject(msg) || typeof msg.type !== 'string') {
      throw new MalformedFrameError(`expected a message {"type":…}, got ${describeValue(frame.data)}`);
    }
    const { one, many } = this.spec;
    switch (msg.type) {
      case one:
      case many: {
        const missed = this.seq.data(msg.seq, msg.type);
        let events: E[];
        try {
          events = msg.type === one ? [this.spec.toEvent(msg.data, recvTs, one)] : this.batch(msg.data, recvTs);
        } catch (err) {
          if (missed > 0) {
            // The gap is real even though this message is broken: report it with the next good frame.
            this.pending.push({ reason: this.gapReason(missed, (msg.seq as number) - missed), recvTs });
            if (err instanceof MalformedFrameError) throw new MalformedFrameError(`${err.message} (after a sequence gap of ${missed})`);
          }
          throw err;
        }
        const symbolOf = this.spec.symbolOf;
        if (symbolOf !== undefined) for (const ev of events) this.seen.add(symbolOf(ev));
        if (missed > 0) this.gapStatus(missed, (msg.seq as number) - missed, recvTs, out);
        for (const ev of events) out.push(ev);
        return undefined;
      }
      case 'heartbeat': {
        if (typeof msg.ts !== 'number' || !(msg.ts >= 0) || msg.ts === Infinity) {
          throw new MalformedFrameError(`heartbeat.ts must be epoch ms, got ${describeValue(msg.ts)}`);
        }
        if (msg.seq === undefined) return 'heartbeat';
        const missed = this.seq.position(msg.seq, 'heartbeat', false);
        if (missed === 0) return 'heartbeat';
        this.gapStatus(missed, (msg.seq as number) - missed + 1, recvTs, out);
        return undefined;
      }
      case 'subscribed': {
        if (msg.seq === undefined) return 'subscribed';
        const missed = this.seq.position(msg.seq, 'subscribed', true);
        if (missed === 0) return 'subscribed';
        this.gapStatus(missed, (msg.seq as number) - missed + 1, recvTs, out);
        return undefined;
      }
      case 'error':
        throw new MalformedFrameError(`server error ${describeValue(msg.code)}: ${typeof msg.message === 'string' ? msg.message : describeValue(msg.message)}`);
      default:
        throw new MalformedFrameError(`unknown message type ${describeValue(msg.type)} (expected ${one}, ${many}, heartbeat, subscribed or error)`);
    }
  }

  private batch(data: unknown, recvTs: number): E[] {
    if (!Array.isArray(data)) throw new MalformedFrameError(`${this.spec.many}: data must be an array, got ${describeValue(data)}`);
    const events: E[] = new Array<E>(data.length);
    for (let i = 0; i < data.length; i++) events[i] = this.spec.toEvent(data[i], recvTs, `${this.spec.many}[${i}]`);
    return events;
  }

  private gapReason(missed: number, firstLost: number): string {
    return gapReason(missed, missed === 1 ? `seq ${firstLost} never arrived` : `seq ${firstLost} to ${firstLost + missed - 1} never arrived`);
  }

  /** Status events for `missed` lost messages, the first of which had seq `firstLost`. */
  private gapStatus(missed: number, firstLost: number, recvTs: number, out: CanonicalEvent[]): void {
    const reason = this.gapReason(missed, firstLost);
    for (const s of this.streamSymbols()) out.push(statusEvent(this.venue, s, 'gap', reason, recvTs, recvTs));
  }
}

// ---------------------------------------------------------------- the shared live protocol

/** The subscribe message of a Vigil stream: filters are left out when they are not given. */
export function subscribeMessage(filters: Record<string, readonly string[] | undefined>): string {
  const msg: Json = { type: 'subscribe' };
  for (const [k, v] of Object.entries(filters)) if (v !== undefined && v.length > 0) msg[k] = [...v];
  return JSON.stringify(msg);
}

export interface VigilStreamProtocolSpec {
  venue: string;
  nativeSymbols(symbols: string[]): string[];
  /** The subscribe message for the connection's native symbols. */
  subscribe(symbols: readonly string[]): string;
}

/**
 * The VenueProtocol of a Vigil JSON stream: the URL as given, one subscribe message per connection
 * (re-sent after every reconnect by the base), heartbeats keep it fresh. `resync` sends the subscribe
 * message again: the server acks with its current seq, which re-bases the sequence check.
 */
export function vigilStreamProtocol(spec: VigilStreamProtocolSpec): VenueProtocol {
  let lastSymbols: readonly string[] = [];
  return {
    venue: spec.venue,
    defaultWsUrl: '',
    nativeSymbols: (symbols) => spec.nativeSymbols(symbols),
    url: (wsUrl) => wsUrl,
    subscribeMessages(symbols) {
      lastSymbols = symbols;
      return [spec.subscribe(symbols)];
    },
    staleAfterMs: STALE_AFTER_MS,
    resync(_symbol, ctx) {
      ctx.send(spec.subscribe(lastSymbols));
    },
  };
}

/** Throws the configuration error of a stream whose URL was not given. */
export function requireWsUrl(options: LiveFeedOptions, venue: string): void {
  if (typeof options.wsUrl !== 'string' || options.wsUrl.length === 0) {
    throw new VigilError(
      ERR.CONFIG,
      `--feed ${venue} needs the stream's WebSocket URL: set VIGIL_FEED_URLS=${venue}=ws://host:port/path (there is no public default)`,
      400,
      { key: 'VIGIL_FEED_URLS', venue },
    );
  }
}

// ---------------------------------------------------------------- order flow

function isAll(symbols: readonly string[]): boolean {
  return symbols.length === 0 || symbols.some((s) => s === ALL_SYMBOLS || s.toLowerCase() === 'all');
}

/** `btc-usdt` → `BTC-USDT`; `all`, `*` or nothing → every symbol (`*`). Throws for a non-canonical symbol. */
export function orderFlowSymbols(symbols: readonly string[]): string[] {
  if (isAll(symbols)) return [ALL_SYMBOLS];
  return symbols.map((s) => {
    const c = s.trim().toUpperCase();
    if (!symbolSchema.safeParse(c).success) throw new Error(`"${s}" is not a canonical symbol BASE-QUOTE (e.g. BTC-USDT), nor "all"`);
    return c;
  });
}

export interface OrderFlowFeedOptions extends LiveFeedOptions {
  /** Only these accounts' orders (default: all the server allows). */
  accounts?: string[];
}

export function orderFlowProtocol(accounts?: readonly string[]): VenueProtocol {
  return vigilStreamProtocol({
    venue: ORDERFLOW,
    nativeSymbols: orderFlowSymbols,
    subscribe: (symbols) => subscribeMessage({ symbols: symbols.includes(ALL_SYMBOLS) ? undefined : symbols, accounts: accounts?.length ? accounts : undefined }),
  });
}

export function createOrderFlowNormalizer(): VigilStreamNormalizer<Order> {
  return new VigilStreamNormalizer<Order>({ venue: ORDERFLOW, one: 'order', many: 'orders', toEvent: toOrder, symbolOf: (o) => o.symbol });
}

/** Connects to the order-flow stream at options.wsUrl (required). */
export function connectOrderFlow(options: OrderFlowFeedOptions, tuning?: ConnectionTuning): LiveFeed {
  requireWsUrl(options, ORDERFLOW);
  return connectVenue(orderFlowProtocol(options.accounts), options, tuning);
}

export const orderFlowAdapter: VenueAdapter = {
  name: ORDERFLOW,
  createNormalizer: () => createOrderFlowNormalizer(),
  connect: (options) => connectOrderFlow(options),
};
