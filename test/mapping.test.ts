import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERR, VigilError } from '../src/core/errors.ts';
import { metricSchema, transactionSchema, type Transaction } from '../src/core/events.ts';
import {
  compileTime,
  createMapper,
  loadMapping,
  messageRecords,
  parseIsoMs,
  parseMapping,
  parseZone,
  scaleNumber,
  shiftDecimal,
  wallToUtc,
  type Mapping,
} from '../src/feeds/mapping.ts';
import { MalformedFrameError } from '../src/feeds/types.ts';

const EXAMPLES = fileURLToPath(new URL('../docs/feeds/examples/', import.meta.url));

/** A valid transaction mapping to vary. */
const BASE = {
  kind: 'transaction',
  source: 'acme',
  fields: {
    id: 'txn_id',
    account: 'card.pan_hash',
    amount: { path: 'amt', scale: 0.01 },
    currency: { const: 'EUR' },
    ts: { path: 'created', time: 'iso8601' },
    direction: { path: 'dc', map: { D: 'debit', C: 'credit' } },
    channel: { path: 'chan', default: 'card_present' },
  },
};
const ROW = { txn_id: 'x1', card: { pan_hash: 'pan-1' }, amt: '1234', created: '2024-08-08T09:15:02.120Z', dc: 'D' };

function withFields(fields: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...BASE, ...extra, fields: { ...BASE.fields, ...fields } };
}

/** A mapper of a transaction mapping, typed as such. */
function txMapper(m: unknown): (row: Record<string, unknown>) => Transaction {
  const map = createMapper(m);
  return (row) => map(row) as Transaction;
}

/** The message of the VigilError a bad mapping raises. */
function mappingError(m: unknown): string {
  try {
    parseMapping(m);
  } catch (e) {
    expect(e).toBeInstanceOf(VigilError);
    expect((e as VigilError).code).toBe(ERR.CONFIG);
    return (e as VigilError).message;
  }
  throw new Error('expected the mapping to be rejected');
}

/** The reason a mapper gives for a bad record. */
function rowError(m: unknown, row: Record<string, unknown>): string {
  const map = createMapper(m);
  try {
    map(row);
  } catch (e) {
    expect(e).toBeInstanceOf(MalformedFrameError);
    return (e as Error).message;
  }
  throw new Error('expected the record to be rejected');
}

describe('mapping → transaction events', () => {
  it('maps the documented example: dot paths, scaling, constants, ISO times, value maps and defaults', () => {
    const ev = createMapper(BASE)(ROW);
    expect(ev).toEqual({
      kind: 'transaction',
      source: 'acme',
      id: 'x1',
      account: 'pan-1',
      amount: 12.34,
      currency: 'EUR',
      ts: Date.UTC(2024, 7, 8, 9, 15, 2, 120),
      direction: 'debit',
      channel: 'card_present',
    });
    expect(transactionSchema.safeParse(ev).success).toBe(true);
  });

  it('dot paths: nested objects and array indexes; a key holding the dots (a CSV header) wins; a list of paths takes the first present', () => {
    const m = withFields({ account: 'card.pan_hash', merchant: 'm.names.1', terminal: { path: ['term', 'pos.id', 'device'] } });
    const map = createMapper(m);
    expect(map({ ...ROW, m: { names: ['a', 'b'] }, pos: { id: 'p-7' } })).toMatchObject({ account: 'pan-1', merchant: 'b', terminal: 'p-7' });
    expect(map({ ...ROW, card: undefined, 'card.pan_hash': 'flat', term: '', device: 'dev-1' })).toMatchObject({ account: 'flat', terminal: 'dev-1' });
    // Optional fields whose paths are all missing are left out.
    const ev = map(ROW);
    expect('merchant' in ev || 'terminal' in ev).toBe(false);
  });

  it('numeric and text coercion by the target field type', () => {
    const m = withFields({ amount: 'amt', mcc: 'mcc', lat: 'geo.lat', lon: 'geo.lon', device: 'flag' });
    const map = createMapper(m);
    expect(map({ ...ROW, amt: ' -12.5 ', mcc: 5411, geo: { lat: '48.85', lon: 2.35 }, flag: true })).toMatchObject({ amount: -12.5, mcc: '5411', lat: 48.85, lon: 2.35, device: 'true' });
    expect(map({ ...ROW, amt: 1e3 })).toMatchObject({ amount: 1000 });
    expect(rowError(m, { ...ROW, amt: '12,5' })).toBe('amount (from "amt"): expected a number, got "12,5"');
    expect(rowError(m, { ...ROW, amt: true })).toBe('amount (from "amt"): expected a number, got true');
    expect(rowError(m, { ...ROW, mcc: { code: 1 } })).toBe('mcc (from "mcc"): expected text, got {"code":1}');
  });

  it('amount scaling: powers of ten divide exactly, other factors multiply', () => {
    expect(txMapper(withFields({ amount: { path: 'amt', scale: 0.01 } }))({ ...ROW, amt: 1234 }).amount).toBe(12.34);
    expect(txMapper(withFields({ amount: { path: 'amt', scale: 0.001 } }))({ ...ROW, amt: '7' }).amount).toBe(0.007);
    expect(txMapper(withFields({ amount: { path: 'amt', scale: 100 } }))({ ...ROW, amt: '1.5' }).amount).toBe(150);
    expect(txMapper(withFields({ amount: { path: 'amt', scale: -1 } }))({ ...ROW, amt: 20 }).amount).toBe(-20);
    expect(scaleNumber(35, 0.01)).toBe(0.35);
    expect(35 * 0.01).not.toBe(0.35); // why the division matters
    expect(txMapper(withFields({ amount: { path: 'amt', scale: 0.01 } }))({ ...ROW, amt: '35' }).amount).toBe(0.35);
    expect(scaleNumber(3, 0.5)).toBe(1.5);
  });

  it('value maps (on the value\'s text), case, constants and defaults for missing, null and empty values', () => {
    const m = withFields({
      direction: { path: 'dc', map: { D: 'debit', C: 'credit', '1': 'debit', true: 'credit' } },
      currency: { path: 'ccy', default: 'eur', case: 'upper' },
      country: { path: 'cc', case: 'lower' },
      channel: { const: 'ecom' },
    });
    const map = txMapper(m);
    expect(map({ ...ROW, dc: 1, ccy: 'usd', cc: 'FR' })).toMatchObject({ direction: 'debit', currency: 'USD', country: 'fr', channel: 'ecom' });
    expect(map({ ...ROW, dc: true, chan: 'ignored: const wins' })).toMatchObject({ direction: 'credit', currency: 'EUR', channel: 'ecom' });
    for (const ccy of [undefined, null, '', '  ']) expect(map({ ...ROW, ccy }).currency).toBe('EUR');
    expect(rowError(m, { ...ROW, dc: 'X' })).toBe('direction (from "dc"): value "X" is not in the map ("1", "D", "C", "true")');
    // A map can feed a number field, whose scale then applies.
    const sized = txMapper(withFields({ amount: { path: 'size', map: { S: 100, L: '10000' }, scale: 0.01 } }));
    expect(sized({ ...ROW, size: 'L' }).amount).toBe(100);
  });

  it('required fields that are missing name the field and its path; the event schema checks the result', () => {
    expect(rowError(BASE, { ...ROW, card: {} })).toBe('account (from "card.pan_hash"): missing');
    expect(rowError(withFields({ id: { path: ['txn_id', 'id'] } }), { ...ROW, txn_id: '' })).toBe('id (from "txn_id" or "id"): missing');
    expect(rowError(withFields({ currency: 'ccy' }), { ...ROW, ccy: 'E' })).toBe('currency: Too small: expected string to have >=3 characters (got "E")');
    expect(rowError(withFields({ lat: 'lat' }), { ...ROW, lat: 91 })).toBe('lat: Too big: expected number to be <=90 (got 91)');
    expect(rowError(BASE, { ...ROW, created: '1969-12-31T23:59:59Z' })).toBe('ts: Too small: expected number to be >=0 (got -1000)');
    expect(() => createMapper(BASE)([] as never)).toThrow('expected a record (JSON object), got []');
  });
});

describe('mapping → metric events', () => {
  it('a timestamp,value CSV row with key and source constants (the bundled example)', () => {
    const m = loadMapping(`${EXAMPLES}metric-csv.json`);
    const map = createMapper(m);
    // 11:15 in Paris in August is 09:15 UTC.
    expect(map({ timestamp: '2024-08-08 11:15:00', value: '12' })).toEqual({
      kind: 'metric',
      source: 'payments-dashboard',
      key: 'card_auth_declines_per_min',
      ts: Date.UTC(2024, 7, 8, 9, 15),
      value: 12,
    });
    expect(metricSchema.safeParse(map({ timestamp: '2024-01-08 11:15:00', value: 1 })).success).toBe(true);
    // In January Paris is UTC+1.
    expect(map({ timestamp: '2024-01-08 11:15:00', value: 1 }).ts).toBe(Date.UTC(2024, 0, 8, 10, 15));
    expect(rowError(m, { timestamp: '2024-08-08 11:18:00', value: 'n/a' })).toBe('value (from "value"): expected a number, got "n/a"');
    expect(rowError(m, { timestamp: '08/08/2024 11:18', value: '1' })).toBe('ts (from "timestamp"): does not match the pattern "%Y-%m-%d %H:%M:%S": "08/08/2024 11:18"');
  });

  it('source and key from the record, recvTs mapped too', () => {
    const map = createMapper({ kind: 'metric', fields: { source: 'src', key: { path: 'k', case: 'lower' }, ts: { path: 't', time: 'epoch_s' }, value: 'v', recvTs: { path: 'r', time: 'epoch_ms' } } });
    expect(map({ src: 'grafana', k: 'CPU', t: '1723108502.5', v: 0.75, r: 1723108503000 })).toEqual({
      kind: 'metric',
      source: 'grafana',
      key: 'cpu',
      ts: 1723108502500,
      recvTs: 1723108503000,
      value: 0.75,
    });
  });
});

describe('time formats', () => {
  it('epoch seconds, ms, µs and ns from numbers and text, exactly', () => {
    expect(compileTime('epoch_s')(1723108502.937)).toBe(1723108502937);
    expect(compileTime('epoch_s')('1723108502.9375')).toBe(1723108502937.5);
    expect(compileTime('epoch_ms')('1723108502937')).toBe(1723108502937);
    expect(compileTime('epoch_ms')(1723108502937.25)).toBe(1723108502937.25);
    expect(compileTime('epoch_us')(1723108502937085)).toBe(1723108502937.085);
    expect(compileTime('epoch_us')('1723108502937085')).toBe(1723108502937.085);
    expect(compileTime('epoch_ns')('1723161253937085768')).toBe(1723161253937.085768);
    expect(() => compileTime('epoch_ms')('soon')).toThrow('expected epoch_ms (a number), got "soon"');
    expect(shiftDecimal('0.5', 3)).toBe(500);
    expect(shiftDecimal('12', -6)).toBe(0.000012);
    expect(shiftDecimal('-1.25', 1)).toBe(-12.5);
  });

  it('ISO-8601: offsets, Z, date only, fractions; without an offset the configured zone applies', () => {
    expect(parseIsoMs('2024-08-08T09:15:02.120Z')).toBe(Date.UTC(2024, 7, 8, 9, 15, 2, 120));
    expect(parseIsoMs('2024-08-08 11:15:02+02:00')).toBe(Date.UTC(2024, 7, 8, 9, 15, 2));
    expect(parseIsoMs('2024-08-08T04:15:02-0500')).toBe(Date.UTC(2024, 7, 8, 9, 15, 2));
    expect(parseIsoMs('2024-08-08')).toBe(Date.UTC(2024, 7, 8));
    expect(parseIsoMs('2024-08-08T09:15:02.123456Z')).toBe(Date.UTC(2024, 7, 8, 9, 15, 2, 123) + 0.456);
    expect(parseIsoMs('2024-08-08T11:15:02', parseZone('Europe/Paris'))).toBe(Date.UTC(2024, 7, 8, 9, 15, 2));
    expect(() => parseIsoMs('2024-02-30T00:00:00Z')).toThrow('day 30 out of range for 2024-02');
    expect(() => parseIsoMs('2024-08-08T25:00:00Z')).toThrow('hour 25 out of range');
    expect(() => parseIsoMs('08/08/2024')).toThrow(/expected an ISO-8601 time/);
    // Mapped without a time format, ts takes epoch ms or ISO text.
    const auto = txMapper(withFields({ ts: 'created' }));
    expect(auto({ ...ROW, created: 1723108502120 }).ts).toBe(1723108502120);
    expect(auto({ ...ROW, created: '1723108502120' }).ts).toBe(1723108502120);
    expect(auto({ ...ROW, created: '2024-08-08T09:15:02.120Z' }).ts).toBe(1723108502120);
  });

  it('strftime-like patterns with a time zone: fixed offsets, IANA zones across DST, %z, month names, 12-hour clocks', () => {
    const paris = parseZone('Europe/Paris')!;
    const p = compileTime('%Y-%m-%d %H:%M:%S', paris);
    expect(p('2024-07-01 12:00:00')).toBe(Date.UTC(2024, 6, 1, 10));
    expect(p('2024-12-01 12:00:00')).toBe(Date.UTC(2024, 11, 1, 11));
    // 02:30 on 2024-03-31 does not exist in Paris (02:00 → 03:00): read with the offset before, as 03:30.
    expect(p('2024-03-31 02:30:00')).toBe(Date.UTC(2024, 2, 31, 1, 30));
    // 02:30 on 2024-10-27 happens twice: the earlier instant.
    expect(p('2024-10-27 02:30:00')).toBe(Date.UTC(2024, 9, 27, 0, 30));
    expect(compileTime('%Y-%m-%d %H:%M', parseZone('+05:30'))('2024-08-08 14:45')).toBe(Date.UTC(2024, 7, 8, 9, 15));
    expect(compileTime('%d/%b/%Y:%H:%M:%S %z', paris)('08/Aug/2024:02:15:00 -0700')).toBe(Date.UTC(2024, 7, 8, 9, 15));
    expect(compileTime('%B %e, %Y %I:%M %p')('August  8, 2024 12:05 AM')).toBe(Date.UTC(2024, 7, 8, 0, 5));
    expect(compileTime('%m/%d/%y %I:%M:%S %p')('8/8/24 1:05:00 pm')).toBe(Date.UTC(2024, 7, 8, 13, 5));
    expect(compileTime('%y%m%d')('691231')).toBe(Date.UTC(1969, 11, 31));
    expect(compileTime('%FT%T.%f')('2024-08-08T09:15:02.5')).toBe(Date.UTC(2024, 7, 8, 9, 15, 2, 500));
    expect(compileTime('%s')('1723108502.25')).toBe(1723108502250);
    expect(compileTime('%Y-%m-%d 100%%')('2024-08-08 100%')).toBe(Date.UTC(2024, 7, 8));
    expect(() => compileTime('%Y-%m-%d')('2024-13-01')).toThrow('month 13 out of range');
    expect(() => compileTime('%d %b %Y')('1 Foo 2024')).toThrow('unknown month name "foo"');
    // The mapping's top-level timezone is the default of every time field.
    const m = withFields({ ts: { path: 'created', time: '%Y-%m-%d %H:%M:%S' } }, { timezone: 'America/New_York' });
    expect(createMapper(m)({ ...ROW, created: '2024-08-08 05:15:02' }).ts).toBe(Date.UTC(2024, 7, 8, 9, 15, 2));
    expect(wallToUtc(Date.UTC(2024, 7, 8, 5), parseZone('America/New_York')!)).toBe(Date.UTC(2024, 7, 8, 9));
    expect(parseZone('Mars/Olympus')).toBeUndefined();
    expect(parseZone('+25:00')).toBeUndefined();
  });
});

describe('bad mappings fail naming the key path', () => {
  it.each([
    ['not an object', 'nope', '(root): Invalid input: expected object, received string'],
    ['an unknown kind', { ...BASE, kind: 'trade' }, 'kind: Invalid option: expected one of "transaction"|"metric" (got "trade")'],
    ['no fields', { kind: 'metric', source: 's' }, 'fields: required'],
    ['an unknown top-level key', { ...BASE, feilds: {} }, 'feilds: unknown key'],
    ['an unknown key in a field', withFields({ amount: { path: 'amt', scal: 0.01 } }), 'fields.amount.scal: unknown key'],
    ['a field of the wrong type', withFields({ amount: 5 }), 'fields.amount: expected a dot path (text) or a field object'],
    ['a scale that is not a number', withFields({ amount: { path: 'amt', scale: 'cents' } }), 'fields.amount.scale: Invalid input: expected number, received string (got "cents")'],
    ['an empty path segment', withFields({ account: 'card..pan' }), 'fields.account.path: a dot path like "card.pan_hash" (no empty segments)'],
    ['a bad case', withFields({ currency: { path: 'c', case: 'title' } }), 'fields.currency.case: Invalid option: expected one of "upper"|"lower" (got "title")'],
    ['a csv delimiter of two characters', { ...BASE, csv: { delimiter: ';;' } }, 'csv.delimiter: Too big: expected string to have exactly 1 characters (got ";;")'],
    ['an ignore rule without values', { ...BASE, stream: { ignore: { path: 'type' } } }, 'stream.ignore.values: required'],
    ['a field the event does not have', withFields({ amout: 'amt' }), 'fields.amout: not a field of a transaction event (fields: source, id, ts, recvTs, account'],
    ['fields.kind', withFields({ kind: { const: 'metric' } }), 'fields.kind: kind is set by the mapping\'s "kind"'],
    ['neither path nor const', withFields({ amount: { scale: 0.01 } }), 'fields.amount: needs "path" (where the value is) or "const" (a fixed value)'],
    ['path and const', withFields({ currency: { path: 'c', const: 'EUR' } }), 'fields.currency: "path" and "const" exclude each other'],
    ['const with a scale', withFields({ amount: { const: 5, scale: 0.01 } }), 'fields.amount.scale: not allowed with "const"'],
    ['a time format on a text field', withFields({ merchant: { path: 'm', time: 'iso8601' } }), 'fields.merchant.time: only ts and recvTs take a time format'],
    ['an unknown time format', withFields({ ts: { path: 'created', time: 'rfc2822' } }), 'fields.ts.time: unknown time format "rfc2822"'],
    ['an unknown directive', withFields({ ts: { path: 'created', time: '%Y-%m-%d %Q' } }), 'fields.ts.time: unknown directive %Q'],
    ['a pattern without a year', withFields({ ts: { path: 'created', time: '%m-%d %H:%M' } }), 'fields.ts.time: pattern needs a year (%Y or %y)'],
    ['%I without %p', withFields({ ts: { path: 'created', time: '%Y-%m-%d %I:%M' } }), 'fields.ts.time: %I and %p go together'],
    ['an unknown field time zone', withFields({ ts: { path: 'created', time: 'iso8601', timezone: 'Mars/Olympus' } }), 'fields.ts.timezone: unknown time zone "Mars/Olympus"'],
    ['an unknown top-level time zone', { ...BASE, timezone: 'CEST+2' }, 'timezone: unknown time zone "CEST+2"'],
    ['a scaled text field', withFields({ currency: { path: 'c', scale: 2 } }), 'fields.currency.scale: only number fields can be scaled (amount, lat, lon)'],
    ['a zero scale', withFields({ amount: { path: 'amt', scale: 0 } }), 'fields.amount.scale: must not be 0'],
    ['case on a number field', withFields({ amount: { path: 'amt', case: 'upper' } }), 'fields.amount.case: only text fields take "case"'],
    ['a constant of the wrong type', withFields({ amount: { const: 'lots' } }), 'fields.amount.const: expected a number, got "lots"'],
    ['a constant the event rejects', withFields({ currency: { const: 'E' } }), 'fields.currency.const: Too small: expected string to have >=3 characters (got "E")'],
    ['a bad default', withFields({ channel: { path: 'chan', default: '' } }), 'fields.channel.default: Too small: expected string to have >=1 characters (got "")'],
    ['a map value the event rejects', withFields({ direction: { path: 'dc', map: { D: 'debitt' } } }), 'fields.direction.map.D: Invalid option: expected one of "debit"|"credit" (got "debitt")'],
    ['a map value that is no number', withFields({ amount: { path: 'a', map: { big: 'many' } } }), 'fields.amount.map.big: expected a number, got "many"'],
    ['a required field not mapped', { ...BASE, fields: Object.fromEntries(Object.entries(BASE.fields).filter(([k]) => k !== 'channel')) }, 'fields.channel: required for a transaction event: map it ("channel": "<path>") or give {"const": …}'],
    ['no source at all', { ...BASE, source: undefined }, 'fields.source: required for a transaction event: set the top-level "source" or map fields.source'],
    ['two sources', withFields({ source: 'src' }), 'source: give either the top-level "source" or fields.source, not both'],
    ['a metric without value', { kind: 'metric', source: 's', fields: { key: { const: 'k' }, ts: 't' } }, 'fields.value: required for a metric event'],
  ])('%s', (_name, mapping, expected) => {
    const message = mappingError(mapping);
    expect(message.startsWith('mapping: ')).toBe(true);
    expect(message).toContain(expected);
  });

  it('reports every problem at once', () => {
    const message = mappingError(withFields({ amount: { path: 'amt', scale: 0 }, currency: { path: 'c', const: 'EUR' }, mcc: { path: 'm', time: 'iso8601' } }));
    expect(message.split('; ')).toEqual([
      'mapping: fields.amount.scale: must not be 0',
      'fields.currency: "path" and "const" exclude each other',
      'fields.mcc.time: only ts and recvTs take a time format',
    ]);
  });

  it('loadMapping names the file: missing, invalid JSON, bad content', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vigil-mapping-'));
    expect(() => loadMapping(join(dir, 'none.json'))).toThrow(`mapping ${join(dir, 'none.json')}: no such file`);
    writeFileSync(join(dir, 'broken.json'), '{"kind":');
    expect(() => loadMapping(join(dir, 'broken.json'))).toThrow(new RegExp(`^mapping ${join(dir, 'broken.json')}: invalid JSON: `));
    writeFileSync(join(dir, 'bad.json'), JSON.stringify(withFields({ amount: { path: 'amt', scale: 'x' } })));
    let err: unknown;
    try {
      loadMapping(join(dir, 'bad.json'));
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: ERR.CONFIG, statusCode: 400, message: `mapping ${join(dir, 'bad.json')}: fields.amount.scale: Invalid input: expected number, received string (got "x")` });
  });
});

describe('the bundled example mappings', () => {
  it('load and map their sample records', () => {
    const card = loadMapping(`${EXAMPLES}card-processor.json`);
    expect(card.kind).toBe('transaction');
    expect(card.stream).toMatchObject({ records: 'txn', seq: 'seq' });
    const metric: Mapping = loadMapping(`${EXAMPLES}metric-csv.json`);
    expect(metric.kind).toBe('metric');
    const map = createMapper(card);
    const msg = { event: 'auth', seq: 1, txn: { txn_id: 'a-1', card: { pan_hash: 'p' }, merchant: { acct: 'm', mcc: 5411, country: 'fr' }, amount_minor: 1250, created: '2024-08-08T09:15:02Z', dc: 'C', entry_mode: 'moto' } };
    const got = messageRecords(card, msg);
    expect(got).toEqual({ records: [msg.txn] });
    expect(map((got as { records: Record<string, unknown>[] }).records[0]!)).toEqual({
      kind: 'transaction',
      source: 'acme',
      id: 'a-1',
      account: 'p',
      counterparty: 'm',
      amount: 12.5,
      currency: 'EUR',
      ts: Date.UTC(2024, 7, 8, 9, 15, 2),
      direction: 'credit',
      channel: 'card_not_present',
      mcc: '5411',
      country: 'FR',
    });
  });

  it('message rules: ignored messages, records arrays, a missing records path', () => {
    const card = loadMapping(`${EXAMPLES}card-processor.json`);
    expect(messageRecords(card, { event: 'hb' })).toEqual({ ignored: 'hb' });
    expect(messageRecords(card, { event: 'auth', txn: [{ a: 1 }, { a: 2 }] })).toEqual({ records: [{ a: 1 }, { a: 2 }] });
    expect(() => messageRecords(card, { event: 'auth' })).toThrow('txn: missing (the message\'s records)');
    expect(() => messageRecords(card, [1])).toThrow('expected a JSON object holding "txn", got [1]');
    expect(messageRecords(parseMapping(BASE), { any: 1 })).toEqual({ records: [{ any: 1 }] });
  });
});

describe('the mapped normalizer on mutated provider frames', () => {
  it('throws only MalformedFrameError (never anything else) and maps the frames that stay valid', async () => {
    const { MappedNormalizer, MAPPING_CHANNEL_PREFIX } = await import('../src/feeds/mapping.ts');
    const { readFileSync } = await import('node:fs');
    const lines = readFileSync(`${EXAMPLES}card-processor.jsonl`, 'utf8').trim().split('\n');
    const channel = `${MAPPING_CHANNEL_PREFIX}${EXAMPLES}card-processor.json`;
    let seed = 12345; // mulberry32
    const r = () => {
      seed = (seed + 0x6d2b79f5) >>> 0;
      let t = seed;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const swaps = ['null', '[]', '{}', '"x"', '1e400', '-1', 'true', '""', '[[[[[]]]]]'];
    const n = new MappedNormalizer();
    let rejected = 0;
    let events = 0;
    for (let i = 0; i < 5000; i++) {
      // Increasing seqs, so the sequence check lets the records through to the mapper.
      const base = lines[Math.floor(r() * lines.length)]!.replace(/"seq":\d+/, `"seq":${i + 1}`);
      const k = Math.floor(r() * 4);
      let data = base;
      if (k === 0) data = base.slice(0, Math.floor(r() * base.length));
      else if (k === 1) {
        const vals = [...base.matchAll(/:("[^"]*"|-?[\d.]+|true|false)/g)];
        const m = vals[Math.floor(r() * vals.length)];
        if (m) data = `${base.slice(0, m.index! + 1)}${swaps[Math.floor(r() * swaps.length)]}${base.slice(m.index! + m[0].length)}`;
      } else if (k === 2) {
        const a = base.split('');
        for (let j = 0; j < 3; j++) a[Math.floor(r() * a.length)] = String.fromCharCode(32 + Math.floor(r() * 95));
        data = a.join('');
      }
      const out: import('../src/core/events.ts').CanonicalEvent[] = [];
      try {
        n.normalize({ recvTs: 1_723_108_000_000 + i, source: 'mapped', data, channel }, out);
        events += out.length;
      } catch (e) {
        expect(e, String(e)).toBeInstanceOf(MalformedFrameError);
        rejected++;
      }
    }
    // Seeded: the same counts every run; both paths are exercised at scale.
    expect(rejected).toBeGreaterThan(250);
    expect(events).toBeGreaterThan(1000);
  });
});
