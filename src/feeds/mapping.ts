/**
 * Field mappings: another provider's JSON — or a CSV row on replay — onto canonical `transaction` or
 * `metric` events, configured in a JSON file instead of code (docs/feeds/mapping.md):
 *
 *   {"kind":"transaction","source":"acme","fields":{
 *      "id":"txn_id", "account":"card.pan_hash", "amount":{"path":"amt","scale":0.01},
 *      "currency":{"const":"EUR"}, "ts":{"path":"created","time":"iso8601"},
 *      "direction":{"path":"dc","map":{"D":"debit","C":"credit"}}, "channel":{"path":"chan","default":"card"}}}
 *
 * A field is a dot path (`"card.pan_hash"`; a record key that itself contains dots, like a CSV header
 * `card.pan_hash`, is found first) or an object: `path` (one path or a list: the first present wins),
 * `const`, `default` (when the value is missing, null or empty), `map` (value map, applied to the
 * value's text), `time` (epoch_s, epoch_ms, epoch_us, epoch_ns, iso8601, or a strftime-like pattern
 * such as `%Y-%m-%d %H:%M:%S`) with `timezone` (UTC, ±HH:MM or an IANA zone name; default the
 * mapping's `timezone`, else UTC), `scale` (number fields; powers of ten divide exactly) and `case`
 * (upper, lower). Values are coerced to the target field's type: numeric text to numbers for number
 * fields, numbers to text for text fields (an `mcc` of 5411 becomes "5411").
 *
 * `parseMapping` validates a mapping with zod plus semantic checks (field names, required fields,
 * constants, time formats and zones) and fails with a VigilError naming the key path
 * (`fields.amount.scale: …`). `createMapper` compiles it into a function record → canonical event that
 * validates its result with the event's zod schema and throws MalformedFrameError naming the field.
 *
 * This module also holds what every JSON event stream shares (Vigil's order-flow and transaction
 * streams, mapped provider streams): per-message sequence tracking and feed status events. And the
 * `mapped` adapter: a provider's JSON over WebSocket, mapped with a mapping file (see the end).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { ERR, VigilError } from '../core/errors.ts';
import {
  metricSchema,
  symbolSchema,
  transactionSchema,
  type CanonicalEvent,
  type Metric,
  type Transaction,
} from '../core/events.ts';
import { connectVenue, type ConnectionTuning } from './connection.ts';
import type { VenueProtocol } from './connection-types.ts';
import { checkRecvTs, parseJsonFrame, statusEvent } from './normalize-util.ts';
import { MalformedFrameError, STATUS_CHANNEL } from './types.ts';
import type { LiveFeed, LiveFeedOptions, Normalizer, RawFrame, StatusFrameData, VenueAdapter } from './types.ts';

type Json = Record<string, unknown>;

// ---------------------------------------------------------------- small helpers

export function describeValue(v: unknown): string {
  if (v === undefined) return 'missing';
  let s: string;
  if (typeof v === 'string') s = JSON.stringify(v);
  else if (v !== null && typeof v === 'object') {
    try {
      s = JSON.stringify(v);
    } catch {
      s = Array.isArray(v) ? '[…]' : '{…}'; // too deep or circular: String() would recurse too
    }
  } else s = String(v);
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
}

export function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** The value at an issue's path inside `root` (for error messages). */
function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const k of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[k];
  }
  return v;
}

function pathText(path: readonly PropertyKey[]): string {
  let s = '';
  for (const k of path) {
    if (typeof k === 'number') s += `[${k}]`;
    else s += s.length === 0 ? String(k) : `.${String(k)}`;
  }
  return s;
}

/**
 * One line per zod issue: `<prefix><path>: <message> (got <value>)`. Unknown keys are named one by
 * one (`fields.amount.scal: unknown key`).
 */
export function formatIssues(error: z.ZodError, root: unknown, prefix = ''): string {
  const parts: string[] = [];
  const join = (p: string) => (prefix.length === 0 ? p || '(root)' : p.length === 0 ? prefix : p.startsWith('[') ? `${prefix}${p}` : `${prefix}.${p}`);
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) parts.push(`${join(pathText([...issue.path, key]))}: unknown key`);
      continue;
    }
    const got = valueAt(root, issue.path);
    const shown = issue.code === 'invalid_type' && got === undefined ? '' : ` (got ${describeValue(got)})`;
    const message = issue.code === 'invalid_type' && got === undefined ? 'required' : issue.message;
    parts.push(`${join(pathText(issue.path))}: ${message}${shown}`);
  }
  return parts.join('; ');
}

// ---------------------------------------------------------------- numbers and times

const NUMERIC_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const DECIMAL_RE = /^([+-]?)(\d*)(?:\.(\d*))?$/;

/** A number from a number or numeric text (surrounding blanks allowed); NaN otherwise. */
export function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    const s = v.trim();
    if (NUMERIC_RE.test(s)) return Number(s);
  }
  return NaN;
}

/**
 * The decimal text `s` multiplied by 10^k, by moving the decimal point in the text, so the result is the
 * double nearest to the exact value (`"1723161253.937" × 10^3` is exactly 1723161253937, while
 * 1723161253.937 * 1000 is not). Exponent notation falls back to arithmetic.
 */
export function shiftDecimal(s: string, k: number): number {
  const m = DECIMAL_RE.exec(s.trim());
  if (m === null || (m[2] ?? '') + (m[3] ?? '') === '') return toNumber(s) * 10 ** k;
  const sign = m[1] ?? '';
  const int = m[2] ?? '';
  const frac = m[3] ?? '';
  const digits = int + frac;
  const point = int.length + k;
  if (point <= 0) return Number(`${sign}0.${'0'.repeat(-point)}${digits}`);
  if (point >= digits.length) return Number(`${sign}${digits}${'0'.repeat(point - digits.length)}`);
  return Number(`${sign}${digits.slice(0, point)}.${digits.slice(point)}`);
}

function epochToMs(v: unknown, k: number): number {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return NaN;
    if (k === 0) return v;
    const s = String(v);
    return s.includes('e') ? v * 10 ** k : shiftDecimal(s, k);
  }
  if (typeof v === 'string' && NUMERIC_RE.test(v.trim())) return shiftDecimal(v, k);
  return NaN;
}

/** A time zone: a fixed offset, or an IANA zone whose offset depends on the date. */
export type Zone = { kind: 'fixed'; offsetMs: number; name: string } | { kind: 'iana'; name: string; format: Intl.DateTimeFormat };

const OFFSET_RE = /^([+-])(\d{2}):?(\d{2})$/;
const zoneCache = new Map<string, Zone | null>();

/** `UTC`, `Z`, `GMT`, `+02:00`, `-0530` or an IANA name (`Europe/Paris`); undefined when unknown. */
export function parseZone(name: string): Zone | undefined {
  const cached = zoneCache.get(name);
  if (cached !== undefined) return cached ?? undefined;
  let zone: Zone | null = null;
  const upper = name.toUpperCase();
  if (upper === 'UTC' || upper === 'Z' || upper === 'GMT') zone = { kind: 'fixed', offsetMs: 0, name: 'UTC' };
  else {
    const m = OFFSET_RE.exec(name);
    if (m !== null) {
      const h = Number(m[2]);
      const min = Number(m[3]);
      if (h <= 23 && min <= 59) zone = { kind: 'fixed', offsetMs: (m[1] === '-' ? -1 : 1) * (h * 60 + min) * 60_000, name };
    } else if (/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(name)) {
      try {
        const format = new Intl.DateTimeFormat('en-US', {
          timeZone: name,
          hourCycle: 'h23',
          year: 'numeric',
          month: 'numeric',
          day: 'numeric',
          hour: 'numeric',
          minute: 'numeric',
          second: 'numeric',
        });
        zone = { kind: 'iana', name, format };
      } catch {
        zone = null;
      }
    }
  }
  zoneCache.set(name, zone);
  return zone ?? undefined;
}

/** The zone's offset from UTC at the instant `utcMs`, in ms. */
function offsetAt(utcMs: number, zone: Zone): number {
  if (zone.kind === 'fixed') return zone.offsetMs;
  const whole = Math.floor(utcMs / 1000) * 1000;
  const p: Record<string, number> = {};
  for (const part of zone.format.formatToParts(whole)) if (part.type !== 'literal') p[part.type] = Number(part.value);
  const wall = Date.UTC(p.year ?? 1970, (p.month ?? 1) - 1, p.day ?? 1, p.hour ?? 0, p.minute ?? 0, p.second ?? 0);
  return wall - whole;
}

const DAY_MS = 86_400_000;
const QUARTER_HOUR_MS = 900_000;
/** Per IANA zone: the offset chosen for a quarter hour of wall time (transitions fall on quarter hours). */
const wallOffsetCache = new Map<string, Map<number, number>>();

/**
 * Epoch ms of a wall-clock time (given as if it were UTC) in a zone. A time that happens twice (the
 * hour after a DST end) is the earlier instant; a time that does not exist (the DST gap) is read with
 * the offset before the change (02:30 in a 02:00→03:00 gap is 03:30 after it), like Temporal's
 * "compatible" disambiguation.
 */
export function wallToUtc(wallMs: number, zone: Zone): number {
  if (zone.kind === 'fixed') return wallMs - zone.offsetMs;
  let cache = wallOffsetCache.get(zone.name);
  if (cache === undefined) wallOffsetCache.set(zone.name, (cache = new Map()));
  const bucket = Math.floor(wallMs / QUARTER_HOUR_MS);
  const hit = cache.get(bucket);
  if (hit !== undefined) return wallMs - hit;
  const before = offsetAt(wallMs - DAY_MS, zone);
  const candidates = [before, offsetAt(wallMs, zone), offsetAt(wallMs + DAY_MS, zone)];
  let best: number | undefined;
  let chosen = before;
  for (const o of candidates) {
    const u = wallMs - o;
    if (offsetAt(u, zone) === o && (best === undefined || u < best)) {
      best = u;
      chosen = o;
    }
  }
  if (cache.size > 100_000) cache.clear();
  cache.set(bucket, chosen);
  return wallMs - chosen;
}

interface WallFields {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  /** Milliseconds, fractional allowed (from a fraction of the second). */
  ms: number;
  /** A stated UTC offset in ms (Z, +02:00); undefined means the configured zone applies. */
  offsetMs?: number;
}

function fractionMs(frac: string): number {
  if (frac.length <= 3) return Number(frac.padEnd(3, '0'));
  return Number(`${frac.slice(0, 3)}.${frac.slice(3)}`);
}

function parseOffset(s: string): number {
  if (s === 'Z' || s === 'z') return 0;
  const sign = s[0] === '-' ? -1 : 1;
  const digits = s.slice(1).replace(':', '');
  const h = Number(digits.slice(0, 2));
  const m = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
  if (h > 23 || m > 59) throw new Error(`bad UTC offset "${s}"`);
  return sign * (h * 60 + m) * 60_000;
}

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function fieldsToMs(f: WallFields, zone: Zone): number {
  const { year, month, day, hour, minute, second } = f;
  if (month < 1 || month > 12) throw new Error(`month ${month} out of range`);
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const dim = month === 2 && !leap ? 28 : (DAYS_IN_MONTH[month - 1] ?? 31);
  if (day < 1 || day > dim) throw new Error(`day ${day} out of range for ${year}-${String(month).padStart(2, '0')}`);
  if (hour > 23) throw new Error(`hour ${hour} out of range`);
  if (minute > 59) throw new Error(`minute ${minute} out of range`);
  if (second > 59) throw new Error(`second ${second} out of range`);
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, 0);
  const wall = d.getTime();
  const base = f.offsetMs !== undefined ? wall - f.offsetMs : wallToUtc(wall, zone);
  return base + f.ms;
}

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$/;

/**
 * Epoch ms of an ISO-8601 date or date-time (`2024-08-08T23:54:13.937Z`, `2024-08-08 23:54:13+02:00`,
 * `2024-08-08`); without an offset the time is read in `zone` (default UTC). Throws Error when invalid.
 */
export function parseIsoMs(text: string, zone: Zone = UTC): number {
  const m = ISO_RE.exec(text.trim());
  if (m === null) throw new Error(`expected an ISO-8601 time like 2024-08-08T23:54:13.937Z, got ${describeValue(text)}`);
  const f: WallFields = {
    year: Number(m[1]),
    month: Number(m[2]),
    day: Number(m[3]),
    hour: m[4] === undefined ? 0 : Number(m[4]),
    minute: m[5] === undefined ? 0 : Number(m[5]),
    second: m[6] === undefined ? 0 : Number(m[6]),
    ms: m[7] === undefined ? 0 : fractionMs(m[7]),
  };
  if (m[8] !== undefined) f.offsetMs = parseOffset(m[8]);
  return fieldsToMs(f, zone);
}

const UTC: Zone = { kind: 'fixed', offsetMs: 0, name: 'UTC' };
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const MONTHS_FULL = ['january', 'february', 'march', 'april', 'may', 'june', 'july', 'august', 'september', 'october', 'november', 'december'];

/** strftime directives a time pattern may use. */
export const TIME_DIRECTIVES: Readonly<Record<string, string>> = {
  Y: 'year, 4 digits',
  y: 'year, 2 digits (69-99 → 19xx, 00-68 → 20xx)',
  m: 'month 1-12',
  b: 'month name, abbreviated (Jan)',
  h: 'month name, abbreviated (Jan)',
  B: 'month name, full (January)',
  d: 'day of the month',
  e: 'day of the month, space-padded',
  H: 'hour 0-23',
  I: 'hour 1-12 (with %p)',
  p: 'AM or PM',
  M: 'minute',
  S: 'second',
  f: 'fraction of the second, 1-9 digits',
  z: 'UTC offset: Z, +hh, +hhmm or +hh:mm',
  s: 'epoch seconds',
  T: '%H:%M:%S',
  F: '%Y-%m-%d',
  '%': 'a literal %',
};

type Setter = (f: WallFields & { pm?: boolean; hour12?: number; epochS?: string; year2?: number; named?: string }, v: string) => void;

/**
 * Compiles a strftime-like pattern into a parser of text → wall fields. Throws Error naming the
 * problem (unknown directive, no year, %I without %p…).
 */
function compilePattern(pattern: string): (text: string, zone: Zone) => number {
  let expanded = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '%' && (pattern[i + 1] === 'T' || pattern[i + 1] === 'F')) {
      expanded += pattern[i + 1] === 'T' ? '%H:%M:%S' : '%Y-%m-%d';
      i++;
    } else expanded += c;
  }
  let re = '^';
  const setters: Setter[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < expanded.length; i++) {
    const c = expanded[i] as string;
    if (c !== '%') {
      if (/\s/.test(c)) {
        while (i + 1 < expanded.length && /\s/.test(expanded[i + 1] as string)) i++;
        re += '\\s+';
      } else re += c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
      continue;
    }
    const d = expanded[++i];
    if (d === undefined) throw new Error('pattern ends with a lone %');
    if (!(d in TIME_DIRECTIVES)) throw new Error(`unknown directive %${d} (known: ${Object.keys(TIME_DIRECTIVES).map((k) => `%${k}`).join(' ')})`);
    if (d === '%') {
      re += '%';
      continue;
    }
    if (seen.has(d)) throw new Error(`directive %${d} appears twice`);
    seen.add(d);
    switch (d) {
      case 'Y':
        re += '(\\d{4})';
        setters.push((f, v) => (f.year = Number(v)));
        break;
      case 'y':
        re += '(\\d{2})';
        setters.push((f, v) => (f.year2 = Number(v)));
        break;
      case 'm':
        re += '(\\d{1,2})';
        setters.push((f, v) => (f.month = Number(v)));
        break;
      case 'b':
      case 'h':
        re += '([A-Za-z]{3})';
        setters.push((f, v) => (f.named = v.toLowerCase()));
        break;
      case 'B':
        re += '([A-Za-z]+)';
        setters.push((f, v) => (f.named = v.toLowerCase()));
        break;
      case 'd':
        re += '(\\d{1,2})';
        setters.push((f, v) => (f.day = Number(v)));
        break;
      case 'e':
        re += ' ?(\\d{1,2})';
        setters.push((f, v) => (f.day = Number(v)));
        break;
      case 'H':
        re += '(\\d{1,2})';
        setters.push((f, v) => (f.hour = Number(v)));
        break;
      case 'I':
        re += '(\\d{1,2})';
        setters.push((f, v) => (f.hour12 = Number(v)));
        break;
      case 'p':
        re += '([AaPp][Mm])';
        setters.push((f, v) => (f.pm = v.toLowerCase() === 'pm'));
        break;
      case 'M':
        re += '(\\d{1,2})';
        setters.push((f, v) => (f.minute = Number(v)));
        break;
      case 'S':
        re += '(\\d{1,2})';
        setters.push((f, v) => (f.second = Number(v)));
        break;
      case 'f':
        re += '(\\d{1,9})';
        setters.push((f, v) => (f.ms = fractionMs(v)));
        break;
      case 'z':
        re += '(Z|z|[+-]\\d{2}(?::?\\d{2})?)';
        setters.push((f, v) => (f.offsetMs = parseOffset(v)));
        break;
      case 's':
        re += '(-?\\d+(?:\\.\\d+)?)';
        setters.push((f, v) => (f.epochS = v));
        break;
    }
  }
  re += '$';
  const hasEpoch = seen.has('s');
  if (!hasEpoch) {
    if (!seen.has('Y') && !seen.has('y')) throw new Error('pattern needs a year (%Y or %y)');
    if (!seen.has('m') && !seen.has('b') && !seen.has('h') && !seen.has('B')) throw new Error('pattern needs a month (%m, %b or %B)');
    if (!seen.has('d') && !seen.has('e')) throw new Error('pattern needs a day (%d or %e)');
    if (seen.has('I') !== seen.has('p')) throw new Error('%I and %p go together');
    if (seen.has('I') && seen.has('H')) throw new Error('use either %H or %I, not both');
  }
  const regex = new RegExp(re);
  return (text, zone) => {
    const m = regex.exec(text.trim());
    if (m === null) throw new Error(`does not match the pattern "${pattern}": ${describeValue(text)}`);
    const f: WallFields & { pm?: boolean; hour12?: number; epochS?: string; year2?: number; named?: string } = {
      year: 1970,
      month: 1,
      day: 1,
      hour: 0,
      minute: 0,
      second: 0,
      ms: 0,
    };
    for (let i = 0; i < setters.length; i++) (setters[i] as Setter)(f, m[i + 1] as string);
    if (f.epochS !== undefined) return shiftDecimal(f.epochS, 3);
    if (f.year2 !== undefined) f.year = f.year2 >= 69 ? 1900 + f.year2 : 2000 + f.year2;
    if (f.named !== undefined) {
      let i = MONTHS_FULL.indexOf(f.named);
      if (i < 0) i = MONTHS.indexOf(f.named);
      if (i < 0) throw new Error(`unknown month name "${f.named}"`);
      f.month = i + 1;
    }
    if (f.hour12 !== undefined) {
      if (f.hour12 < 1 || f.hour12 > 12) throw new Error(`hour ${f.hour12} out of range 1-12`);
      f.hour = (f.hour12 % 12) + (f.pm ? 12 : 0);
    }
    return fieldsToMs(f, zone);
  };
}

export const EPOCH_FORMATS = { epoch_s: 3, epoch_ms: 0, epoch_us: -3, epoch_ns: -6 } as const;
export type TimeFormat = keyof typeof EPOCH_FORMATS | 'iso8601' | 'auto' | (string & {});

/**
 * A converter raw value → epoch ms for a time format: epoch_s/ms/us/ns (numbers or numeric text),
 * iso8601, a strftime-like pattern (contains %), or `auto` (numbers are epoch ms, other text ISO-8601).
 * Throws Error for an unknown format or a bad pattern.
 */
export function compileTime(format: TimeFormat, zone: Zone = UTC): (raw: unknown) => number {
  if (Object.hasOwn(EPOCH_FORMATS, format)) {
    const k = EPOCH_FORMATS[format as keyof typeof EPOCH_FORMATS];
    return (raw) => {
      const ms = epochToMs(raw, k);
      if (Number.isNaN(ms)) throw new Error(`expected ${format} (a number), got ${describeValue(raw)}`);
      return ms;
    };
  }
  if (format === 'iso8601') {
    return (raw) => {
      if (typeof raw !== 'string') throw new Error(`expected an ISO-8601 time (text), got ${describeValue(raw)}`);
      return parseIsoMs(raw, zone);
    };
  }
  if (format === 'auto') {
    return (raw) => {
      if (typeof raw === 'number' || (typeof raw === 'string' && NUMERIC_RE.test(raw.trim()))) {
        const ms = toNumber(raw);
        if (Number.isFinite(ms)) return ms;
      }
      if (typeof raw === 'string') return parseIsoMs(raw, zone);
      throw new Error(`expected epoch ms or an ISO-8601 time, got ${describeValue(raw)}`);
    };
  }
  if (format.includes('%')) {
    const parse = compilePattern(format);
    return (raw) => {
      if (typeof raw !== 'string') throw new Error(`expected text matching "${format}", got ${describeValue(raw)}`);
      return parse(raw, zone);
    };
  }
  throw new Error(`unknown time format "${format}" (epoch_s, epoch_ms, epoch_us, epoch_ns, iso8601, or a pattern like "%Y-%m-%d %H:%M:%S")`);
}

// ---------------------------------------------------------------- the mapping file

export const MAPPING_KINDS = ['transaction', 'metric'] as const;
export type MappingKind = (typeof MAPPING_KINDS)[number];

const dotPath = z
  .string()
  .min(1)
  .refine((p) => p.split('.').every((s) => s.length > 0), 'a dot path like "card.pan_hash" (no empty segments)');
const scalar = z.union([z.string(), z.number(), z.boolean()]);

const fieldObjectSchema = z.strictObject(
  {
    path: z.union([dotPath, z.array(dotPath).min(1)]).optional(),
    const: scalar.optional(),
    default: scalar.optional(),
    time: z.string().min(1).optional(),
    timezone: z.string().min(1).optional(),
    scale: z.number().finite().optional(),
    map: z.record(z.string(), scalar).optional(),
    case: z.enum(['upper', 'lower']).optional(),
  },
  { error: (iss) => (iss.code === 'invalid_type' ? 'expected a dot path (text) or a field object {"path"|"const", …}' : undefined) },
);

/** A field: a dot path, or an object (a bare path string is read as {"path": …}). */
export const fieldSpecSchema = z.preprocess((v) => (typeof v === 'string' ? { path: v } : v), fieldObjectSchema);
export type FieldSpec = z.output<typeof fieldObjectSchema>;

export const mappingSchema = z.strictObject({
  kind: z.enum(MAPPING_KINDS),
  /** The events' `source` (unless fields.source maps it). */
  source: z.string().min(1).optional(),
  /** Free text for people reading the file. */
  description: z.string().optional(),
  /** Zone of times without an offset (default UTC): UTC, ±HH:MM, or an IANA name. */
  timezone: z.string().min(1).optional(),
  fields: z.record(z.string(), fieldSpecSchema),
  /** CSV input on replay: the delimiter (default ,) and the column names when the file has no header row. */
  csv: z
    .strictObject({
      delimiter: z.string().length(1).optional(),
      columns: z.array(z.string().min(1)).min(1).optional(),
    })
    .optional(),
  /** JSON messages (live WebSocket, JSON-lines replay). */
  stream: z
    .strictObject({
      /** Dot path of the record, or of an array of records, inside a message (default: the message itself). */
      records: dotPath.optional(),
      /** Messages whose value at `path` is one of `values` are not records (heartbeats, acks). */
      ignore: z.strictObject({ path: dotPath, values: z.array(scalar).min(1) }).optional(),
      /** Messages sent after every (re)connect; text is sent as is, anything else as JSON. */
      subscribe: z.array(z.unknown()).optional(),
      /** Dot path of a per-message sequence number (+1 per message): a gap → a status event. */
      seq: dotPath.optional(),
    })
    .optional(),
});
export type Mapping = z.output<typeof mappingSchema>;

type FieldType = 'string' | 'number' | 'time';
interface TargetField {
  type: FieldType;
  required: boolean;
  schema: z.ZodType;
}

const TIME_FIELDS: ReadonlySet<string> = new Set(['ts', 'recvTs']);

function targetFields(schema: z.ZodObject): Record<string, TargetField> {
  const out: Record<string, TargetField> = {};
  for (const [name, s] of Object.entries(schema.shape as Record<string, z.ZodType>)) {
    if (name === 'kind') continue;
    const type: FieldType = TIME_FIELDS.has(name) ? 'time' : s.safeParse(1).success ? 'number' : 'string';
    out[name] = { type, required: !s.safeParse(undefined).success, schema: s };
  }
  return out;
}

/** The fields a mapping can fill, per kind, derived from the canonical schemas. */
export const TARGET_FIELDS: Readonly<Record<MappingKind, Readonly<Record<string, TargetField>>>> = {
  transaction: targetFields(transactionSchema),
  metric: targetFields(metricSchema),
};
const SCHEMAS = { transaction: transactionSchema, metric: metricSchema } as const;

class MappingIssues {
  readonly list: string[] = [];
  add(path: string, message: string): void {
    this.list.push(`${path}: ${message}`);
  }
}

function coerceNumber(v: unknown): number {
  return typeof v === 'boolean' ? NaN : toNumber(v);
}

function coerceString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'boolean') return String(v);
  return undefined;
}

/** Semantic checks zod's shape cannot express; every issue names its key path. */
function checkMapping(m: Mapping, issues: MappingIssues): void {
  const targets = TARGET_FIELDS[m.kind];
  const names = Object.keys(targets);
  const zoneName = m.timezone;
  if (zoneName !== undefined && parseZone(zoneName) === undefined) issues.add('timezone', `unknown time zone ${JSON.stringify(zoneName)} (UTC, ±HH:MM or an IANA name like Europe/Paris)`);
  for (const [name, spec] of Object.entries(m.fields)) {
    const at = `fields.${name}`;
    const target = Object.hasOwn(targets, name) ? targets[name] : undefined;
    if (target === undefined) {
      issues.add(at, name === 'kind' ? 'kind is set by the mapping\'s "kind"' : `not a field of a ${m.kind} event (fields: ${names.join(', ')})`);
      continue;
    }
    const hasPath = spec.path !== undefined;
    const hasConst = spec.const !== undefined;
    if (!hasPath && !hasConst) issues.add(at, 'needs "path" (where the value is) or "const" (a fixed value)');
    if (hasPath && hasConst) issues.add(at, '"path" and "const" exclude each other');
    if (hasConst) {
      for (const k of ['default', 'time', 'timezone', 'scale', 'map'] as const) if (spec[k] !== undefined) issues.add(`${at}.${k}`, 'not allowed with "const"');
    }
    if (spec.time !== undefined || spec.timezone !== undefined) {
      if (target.type !== 'time') issues.add(`${at}.${spec.time !== undefined ? 'time' : 'timezone'}`, 'only ts and recvTs take a time format');
    }
    let zone: Zone = UTC;
    if (spec.timezone !== undefined) {
      const z2 = parseZone(spec.timezone);
      if (z2 === undefined) issues.add(`${at}.timezone`, `unknown time zone ${JSON.stringify(spec.timezone)} (UTC, ±HH:MM or an IANA name like Europe/Paris)`);
      else zone = z2;
    } else if (zoneName !== undefined) zone = parseZone(zoneName) ?? UTC;
    if (target.type === 'time' && spec.time !== undefined) {
      try {
        compileTime(spec.time, zone);
      } catch (err) {
        issues.add(`${at}.time`, (err as Error).message);
      }
    }
    if (spec.scale !== undefined) {
      if (target.type !== 'number') issues.add(`${at}.scale`, `only number fields can be scaled (${names.filter((n) => targets[n]?.type === 'number').join(', ')})`);
      else if (spec.scale === 0) issues.add(`${at}.scale`, 'must not be 0');
    }
    if (spec.case !== undefined && target.type !== 'string') issues.add(`${at}.case`, 'only text fields take "case"');
    // Constants, defaults and map values must be valid values of the field.
    const checkValue = (key: string, v: unknown, mode: 'final' | 'raw') => {
      const conv = convertValue(target, v, spec, zone, mode);
      if (conv.error !== undefined) {
        issues.add(key, conv.error);
        return;
      }
      const r = target.schema.safeParse(conv.value);
      if (!r.success) issues.add(key, `${r.error.issues[0]?.message ?? 'invalid'} (got ${describeValue(v)})`);
    };
    if (hasConst) checkValue(`${at}.const`, spec.const, 'final');
    if (spec.default !== undefined) checkValue(`${at}.default`, spec.default, 'final');
    // Map values go through the field's time format and scale, like values read from a record.
    if (spec.map !== undefined && (target.type !== 'time' || !issues.list.some((i) => i.startsWith(`${at}.time`)))) {
      for (const [k, v] of Object.entries(spec.map)) checkValue(`${at}.map.${k}`, v, 'raw');
    }
  }
  for (const [name, target] of Object.entries(targets)) {
    if (!target.required || Object.hasOwn(m.fields, name)) continue;
    if (name === 'source' && m.source !== undefined) continue;
    const hint = name === 'source' ? 'set the top-level "source" or map fields.source' : `map it ("${name}": "<path>") or give {"const": …}`;
    issues.add(`fields.${name}`, `required for a ${m.kind} event: ${hint}`);
  }
  if (m.source !== undefined && Object.hasOwn(m.fields, 'source')) issues.add('source', 'give either the top-level "source" or fields.source, not both');
  if (m.stream?.subscribe !== undefined) {
    m.stream.subscribe.forEach((s, i) => {
      if (s === undefined || s === null) issues.add(`stream.subscribe[${i}]`, 'expected a message (text or JSON)');
    });
  }
}

/**
 * Validates a mapping (already parsed JSON). Throws VigilError (VIGIL_ERR_CONFIG, 400) naming the key
 * path of every problem, prefixed by `where` (e.g. the file name).
 */
export function parseMapping(input: unknown, where = 'mapping'): Mapping {
  const r = mappingSchema.safeParse(input);
  if (!r.success) {
    const message = formatIssues(r.error, input);
    throw new VigilError(ERR.CONFIG, `${where}: ${message}`, 400, { issues: r.error.issues.map((i) => pathText(i.path)) });
  }
  const issues = new MappingIssues();
  checkMapping(r.data, issues);
  if (issues.list.length > 0) throw new VigilError(ERR.CONFIG, `${where}: ${issues.list.join('; ')}`, 400, { issues: issues.list });
  return r.data;
}

/** Reads and validates a mapping file; errors name the file and the key path. */
export function loadMapping(path: string): Mapping {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new VigilError(e.code === 'ENOENT' ? ERR.NOT_FOUND : ERR.CONFIG, `mapping ${path}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`, e.code === 'ENOENT' ? 404 : 400, { file: path });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new VigilError(ERR.CONFIG, `mapping ${path}: invalid JSON: ${(err as Error).message}`, 400, { file: path });
  }
  return parseMapping(json, `mapping ${path}`);
}

// ---------------------------------------------------------------- the mapper

function isMissing(v: unknown): boolean {
  return v === undefined || v === null || (typeof v === 'string' && v.trim().length === 0);
}

/**
 * One value converted to the target field's type. `final` values (const, default) are read as they
 * are: times as epoch ms or ISO-8601, numbers unscaled. `raw` values (what a map yields) go through the
 * field's time format and scale like values read from a record.
 */
function convertValue(target: TargetField, raw: unknown, spec: FieldSpec, zone: Zone, mode: 'final' | 'raw'): { value?: unknown; error?: string } {
  if (target.type === 'time') {
    try {
      return { value: compileTime(mode === 'final' ? 'auto' : (spec.time ?? 'auto'), zone)(raw) };
    } catch (err) {
      return { error: (err as Error).message };
    }
  }
  if (target.type === 'number') {
    let n = coerceNumber(raw);
    if (!Number.isFinite(n)) return { error: `expected a number, got ${describeValue(raw)}` };
    if (mode === 'raw' && spec.scale !== undefined && spec.scale !== 0) n = scaleNumber(n, spec.scale);
    return { value: n };
  }
  let s = coerceString(raw);
  if (s === undefined) return { error: `expected text, got ${describeValue(raw)}` };
  if (spec.case === 'upper') s = s.toUpperCase();
  else if (spec.case === 'lower') s = s.toLowerCase();
  return { value: s };
}

/** n × scale; a scale of 10^-k divides by 10^k, so 1234 × 0.01 is exactly 12.34. */
export function scaleNumber(n: number, scale: number): number {
  if (scale > 0 && scale < 1) {
    const k = Math.round(-Math.log10(scale));
    if (k > 0 && k <= 22 && Number(`1e-${k}`) === scale) return n / Number(`1e${k}`);
  }
  return n * scale;
}

type Getter = (rec: Json) => unknown;

function compilePath(path: string): Getter {
  const segs = path.split('.');
  if (segs.length === 1) return (rec) => rec[path];
  return (rec) => {
    // A key that itself holds the dots (a CSV header "card.pan_hash") wins over traversal.
    if (Object.hasOwn(rec, path)) return rec[path];
    let v: unknown = rec;
    for (const s of segs) {
      if (v === null || typeof v !== 'object') return undefined;
      v = (v as Json)[s];
    }
    return v;
  };
}

type FieldFn = (rec: Json) => unknown;

function compileField(name: string, target: TargetField, spec: FieldSpec, mapping: Mapping): FieldFn {
  const zone = parseZone(spec.timezone ?? mapping.timezone ?? 'UTC') ?? UTC;
  if (spec.const !== undefined) {
    const v = convertValue(target, spec.const, spec, zone, 'final').value;
    return () => v;
  }
  const paths = spec.path === undefined ? [] : Array.isArray(spec.path) ? spec.path : [spec.path];
  const getters = paths.map(compilePath);
  const from = paths.length === 1 ? `from "${paths[0]}"` : `from ${paths.map((p) => `"${p}"`).join(' or ')}`;
  const label = `${name} (${from})`;
  const dflt = spec.default === undefined ? undefined : convertValue(target, spec.default, spec, zone, 'final').value;
  const map = spec.map;
  const mapKeys = map === undefined ? '' : Object.keys(map).map((k) => JSON.stringify(k)).join(', ');
  const time = target.type === 'time' ? compileTime(spec.time ?? 'auto', zone) : undefined;
  const scale = spec.scale;
  const kase = spec.case;
  const required = target.required;
  return (rec) => {
    let raw: unknown;
    for (let i = 0; i < getters.length; i++) {
      raw = (getters[i] as Getter)(rec);
      if (!isMissing(raw)) break;
    }
    if (isMissing(raw)) {
      if (dflt !== undefined) return dflt;
      if (required) throw new MalformedFrameError(`${label}: missing`);
      return undefined;
    }
    if (map !== undefined) {
      const key = coerceString(raw);
      if (key === undefined || !Object.hasOwn(map, key)) {
        throw new MalformedFrameError(`${label}: value ${describeValue(raw)} is not in the map (${mapKeys})`);
      }
      raw = map[key];
    }
    if (time !== undefined) {
      try {
        return time(raw);
      } catch (err) {
        throw new MalformedFrameError(`${label}: ${(err as Error).message}`);
      }
    }
    if (target.type === 'number') {
      const n = coerceNumber(raw);
      if (!Number.isFinite(n)) throw new MalformedFrameError(`${label}: expected a number, got ${describeValue(raw)}`);
      return scale === undefined ? n : scaleNumber(n, scale);
    }
    const s = coerceString(raw);
    if (s === undefined) throw new MalformedFrameError(`${label}: expected text, got ${describeValue(raw)}`);
    return kase === 'upper' ? s.toUpperCase() : kase === 'lower' ? s.toLowerCase() : s;
  };
}

export type MappedEvent = Transaction | Metric;
export type Mapper = (record: Record<string, unknown>) => MappedEvent;

/**
 * Compiles a mapping (validated here, see parseMapping) into record → canonical event. The result is
 * validated with the event's zod schema; a bad record throws MalformedFrameError naming the field
 * (`amount (from "amt"): expected a number, got "abc"`, `direction: Invalid option…`).
 */
export function createMapper(mapping: Mapping | unknown): Mapper {
  const m = parseMapping(mapping);
  const targets = TARGET_FIELDS[m.kind];
  const schema = SCHEMAS[m.kind];
  const fields: { name: string; fn: FieldFn }[] = [];
  for (const [name, spec] of Object.entries(m.fields)) fields.push({ name, fn: compileField(name, targets[name] as TargetField, spec, m) });
  const kind = m.kind;
  const source = m.source;
  return (record) => {
    if (!isObject(record)) throw new MalformedFrameError(`expected a record (JSON object), got ${describeValue(record)}`);
    const out: Json = { kind };
    if (source !== undefined) out.source = source;
    for (const f of fields) {
      const v = f.fn(record);
      if (v !== undefined) out[f.name] = v;
    }
    const r = schema.safeParse(out);
    if (!r.success) throw new MalformedFrameError(formatIssues(r.error, out));
    return r.data;
  };
}

/** What a JSON message holds for a mapping: records, or the label of a message that is not one. */
export type MessageRecords = { ignored: string } | { records: unknown[] };

/** Applies the mapping's `stream` rules (ignore, records) to one parsed JSON message. */
export function messageRecords(mapping: Mapping, msg: unknown): MessageRecords {
  const stream = mapping.stream;
  if (stream?.ignore !== undefined && isObject(msg)) {
    const v = compilePath(stream.ignore.path)(msg);
    if (v !== undefined && stream.ignore.values.some((x) => x === v)) return { ignored: String(v) };
  }
  if (stream?.records === undefined) return { records: [msg] };
  if (!isObject(msg)) throw new MalformedFrameError(`expected a JSON object holding "${stream.records}", got ${describeValue(msg)}`);
  const inner = compilePath(stream.records)(msg);
  if (inner === undefined) throw new MalformedFrameError(`${stream.records}: missing (the message's records)`);
  return { records: Array.isArray(inner) ? inner : [inner] };
}

/** The value at a mapping's dot path in a record (CSV header keys with dots first). */
export function valueAtPath(rec: Json, path: string): unknown {
  return compilePath(path)(rec);
}

// ---------------------------------------------------------------- shared by the JSON event streams

/**
 * Per-message sequence numbers of a stream (Vigil's order-flow and transaction streams, mapped
 * streams with `stream.seq`): +1 per data message. A jump forward is a gap (messages lost); a repeat or
 * a step back is a broken message. `reset()` on every new connection: each starts its own numbering.
 */
export class SequenceTracker {
  /** The seq of the last data message seen (or the server's stated position), if any. */
  last: number | undefined;
  /** Gaps seen, and the messages they lost. */
  gaps = 0;
  missed = 0;

  reset(): void {
    this.last = undefined;
  }

  /** A data message's seq. Returns how many messages were lost right before it (0: none). */
  data(seq: unknown, ctx: string): number {
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) {
      throw new MalformedFrameError(`${ctx}: seq must be a positive integer, got ${describeValue(seq)}`);
    }
    const last = this.last;
    if (last !== undefined && seq <= last) throw new MalformedFrameError(`${ctx}: seq ${seq} repeats or goes back (last was ${last})`);
    this.last = seq;
    if (last === undefined || seq === last + 1) return 0;
    return this.gap(seq - last - 1);
  }

  /**
   * The server's stated position — the seq of the last data message it sent (heartbeats; acks with
   * `rebase` true, which also follow a re-subscribe). Returns the messages lost (0: none).
   */
  position(seq: unknown, ctx: string, rebase: boolean): number {
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
      throw new MalformedFrameError(`${ctx}: seq must be a non-negative integer, got ${describeValue(seq)}`);
    }
    const last = this.last;
    if (last === undefined || rebase) {
      this.last = seq;
      return last !== undefined && seq > last ? this.gap(seq - last) : 0;
    }
    if (seq < last) throw new MalformedFrameError(`${ctx}: seq ${seq} is behind the last message (${last})`);
    this.last = seq;
    return seq > last ? this.gap(seq - last) : 0;
  }

  private gap(missed: number): number {
    this.gaps++;
    this.missed += missed;
    return missed;
  }
}

export interface SequenceReport {
  gaps: number;
  missed: number;
}

const STATUSES: ReadonlySet<string> = new Set(['connected', 'disconnected', 'stale']);

/** The data of a STATUS_CHANNEL frame; throws MalformedFrameError when it is not one. */
export function parseStatusFrame(frame: RawFrame): StatusFrameData {
  let d: unknown;
  try {
    d = JSON.parse(frame.data);
  } catch (err) {
    throw new MalformedFrameError(`status frame: invalid JSON: ${(err as Error).message}`);
  }
  if (!isObject(d) || typeof d.status !== 'string' || !STATUSES.has(d.status) || typeof d.reason !== 'string' || !Array.isArray(d.symbols)) {
    throw new MalformedFrameError(`status frame: expected {status, reason, symbols}, got ${describeValue(frame.data)}`);
  }
  if (!d.symbols.every((s) => typeof s === 'string')) throw new MalformedFrameError('status frame: symbols must be text');
  return d as unknown as StatusFrameData;
}

/** Reason of the status events a sequence gap produces. */
export function gapReason(missed: number, where: string): string {
  return `sequence gap: ${missed} message${missed === 1 ? '' : 's'} missed (${where})`;
}

// ---------------------------------------------------------------- the `mapped` adapter

/** Adapter name (RawFrame.source) of mapped provider streams. */
export const MAPPED = 'mapped';
/** RawFrame.channel of a mapped frame: `mapping:<absolute path of the mapping file>`. */
export const MAPPING_CHANNEL_PREFIX = 'mapping:';

/**
 * The pseudo-instrument under which a stream without instruments (transactions, metrics) reports its
 * feed status: the status schema is keyed by venue:symbol. `acme` → `ACME-STREAM`.
 */
export function streamSymbol(name: string): string {
  const base = name.toUpperCase().replace(/[^A-Z0-9]/g, '');
  return `${base.length > 0 ? base : 'MAPPED'}-STREAM`;
}

interface LoadedMapping {
  mapping: Mapping;
  mapper: Mapper;
  seq: SequenceTracker | undefined;
  symbol: string;
}

/**
 * Normalizer of mapped frames: the mapping is named by the frame's channel (so a recording of a mapped
 * feed replays through the same mapping), loaded once per file. Status frames → one status event per
 * stream symbol (venue `mapped`); a gap in `stream.seq` → a `stale` status event `sequence gap…`.
 */
export class MappedNormalizer implements Normalizer {
  readonly venue = MAPPED;
  private readonly loaded = new Map<string, LoadedMapping | Error>();

  private mappingFor(path: string): LoadedMapping {
    let l = this.loaded.get(path);
    if (l === undefined) {
      try {
        const mapping = loadMapping(path);
        l = { mapping, mapper: createMapper(mapping), seq: mapping.stream?.seq !== undefined ? new SequenceTracker() : undefined, symbol: streamSymbol(mapping.source ?? MAPPED) };
      } catch (err) {
        l = err as Error;
      }
      this.loaded.set(path, l);
    }
    if (l instanceof Error) throw new MalformedFrameError(l.message);
    return l;
  }

  /** Sequence figures per mapping file (only mappings with `stream.seq`). */
  sequenceReport(): Record<string, SequenceReport> {
    const out: Record<string, SequenceReport> = {};
    for (const [path, l] of this.loaded) if (!(l instanceof Error) && l.seq !== undefined) out[path] = { gaps: l.seq.gaps, missed: l.seq.missed };
    return out;
  }

  normalize(frame: RawFrame, out: CanonicalEvent[]): string | undefined {
    const recvTs = checkRecvTs(frame);
    const channel = frame.channel;
    if (channel === STATUS_CHANNEL) {
      const st = parseStatusFrame(frame);
      for (const l of this.loaded.values()) if (!(l instanceof Error) && st.symbols.includes(l.symbol)) l.seq?.reset();
      for (const s of st.symbols) if (symbolSchema.safeParse(s).success) out.push(statusEvent(MAPPED, s, st.status, st.reason, recvTs, recvTs));
      return undefined;
    }
    if (channel === undefined || !channel.startsWith(MAPPING_CHANNEL_PREFIX)) {
      throw new MalformedFrameError(`mapped frame without its mapping (channel "${MAPPING_CHANNEL_PREFIX}<file>"), got channel ${describeValue(channel)}`);
    }
    const l = this.mappingFor(channel.slice(MAPPING_CHANNEL_PREFIX.length));
    const msg = parseJsonFrame(frame);
    const got = messageRecords(l.mapping, msg);
    if ('ignored' in got) return got.ignored;
    let missed = 0;
    if (l.seq !== undefined) missed = l.seq.data(isObject(msg) ? valueAtPath(msg, l.mapping.stream?.seq as string) : undefined, 'message');
    const events: CanonicalEvent[] = [];
    const multi = got.records.length > 1;
    got.records.forEach((rec, i) => {
      try {
        const ev = l.mapper(rec as Json);
        if (ev.recvTs === undefined) ev.recvTs = recvTs;
        events.push(ev);
      } catch (err) {
        if (err instanceof MalformedFrameError && multi) throw new MalformedFrameError(`records[${i}]: ${err.message}`);
        throw err;
      }
    });
    if (missed > 0) {
      const first = (l.seq?.last ?? 0) - missed;
      const lost = missed === 1 ? `seq ${first} never arrived` : `seq ${first} to ${first + missed - 1} never arrived`;
      out.push(statusEvent(MAPPED, l.symbol, 'gap', gapReason(missed, lost), recvTs, recvTs));
    }
    for (const ev of events) out.push(ev);
    return undefined;
  }
}

export interface MappedFeedOptions extends LiveFeedOptions {
  /** Path of the mapping file (required). */
  mapping: string;
}

/** The VenueProtocol of a provider stream described by a mapping file. */
export function mappedProtocol(mappingPath: string, mapping: Mapping): VenueProtocol {
  const channel = `${MAPPING_CHANNEL_PREFIX}${resolve(mappingPath)}`;
  const subscribe = (mapping.stream?.subscribe ?? []).map((m) => (typeof m === 'string' ? m : JSON.stringify(m)));
  const symbol = streamSymbol(mapping.source ?? MAPPED);
  return {
    venue: MAPPED,
    defaultWsUrl: '',
    nativeSymbols: () => [symbol],
    url: (wsUrl) => wsUrl,
    subscribeMessages: () => subscribe,
    // Every received frame goes into the stream tagged with its mapping, so a recording replays alike.
    onFrame(data, ctx) {
      ctx.emit(data, channel);
      return false;
    },
    resync(_symbol, ctx) {
      for (const m of subscribe) ctx.send(m);
    },
  };
}

/** Connects to a provider's JSON WebSocket stream; options.wsUrl and options.mapping are required. */
export function connectMapped(options: MappedFeedOptions, tuning?: ConnectionTuning): LiveFeed {
  if (options.wsUrl === undefined || options.wsUrl.length === 0) {
    throw new VigilError(ERR.CONFIG, '--feed mapped needs the provider\'s WebSocket URL (VIGIL_FEED_URLS=mapped=ws://host:port/path)', 400, { key: 'VIGIL_FEED_URLS' });
  }
  if (typeof options.mapping !== 'string' || options.mapping.length === 0) {
    throw new VigilError(ERR.CONFIG, '--feed mapped needs a mapping file (options.mapping)', 400, { key: 'mapping' });
  }
  const mapping = loadMapping(options.mapping);
  return connectVenue(mappedProtocol(options.mapping, mapping), options, tuning);
}

export const mappedAdapter: VenueAdapter = {
  name: MAPPED,
  createNormalizer: () => new MappedNormalizer(),
  connect: (options) => connectMapped(options as MappedFeedOptions),
};
