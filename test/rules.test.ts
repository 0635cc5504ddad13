import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { AlertHub } from '../src/api/alert-hub.ts';
import { buildApi } from '../src/api/server.ts';
import { ERR, VigilError } from '../src/core/errors.ts';
import type { CanonicalEvent, Finding, Trade } from '../src/core/events.ts';
import { detectorSpecs } from '../src/detectors/registry.ts';
import { applyRule, type RuleInstance } from '../src/detectors/rule.ts';
import { DEFAULT_RULES_PATH, buildRuleSet, diffRules, loadRulesFile, rulesVersion, type RulesFile } from '../src/detectors/rules.ts';
import { RulesController } from '../src/detectors/rules-watch.ts';
import type { DetectorInstance, FindingDraft } from '../src/detectors/types.ts';
import { DetectorRunner } from '../src/pipeline/detect.ts';
import { recordRuleChanges } from '../src/pipeline/roles.ts';
import { openStore } from '../src/storage/clickhouse.ts';
import type { Store } from '../src/storage/types.ts';
import { MemoryTransport } from '../src/transport/memory.ts';
import { TOPICS } from '../src/transport/types.ts';
import { mulberry32 } from './helpers/random.ts';

const T0 = Date.UTC(2024, 7, 8, 12, 0, 0);

function rulesFile(rules: unknown[]): unknown {
  return { description: 'test rules', rules };
}

/** Counts events per key; fires when a trade's qty ≥ `min` (score = qty). */
function qtyDetector(ruleId = 'q.test'): DetectorInstance<{ n: number }> {
  return {
    name: 'price_jump',
    ruleId,
    kinds: ['trade'],
    newState: () => ({ n: 0 }),
    onEvent(s, ev, out) {
      if (ev.kind !== 'trade') return;
      s.n++;
      if (ev.qty >= 5) {
        out.push({ severity: 'medium', score: ev.qty, key: `${ev.venue}:${ev.symbol}`, venue: ev.venue, symbol: ev.symbol, ts: ev.ts, windowStart: ev.ts, windowEnd: ev.ts, summary: `big trade of ${ev.qty}`, trigger: ev.tradeId, evidence: { observed: { qty: ev.qty }, baseline: { n: s.n }, threshold: { qty: 5 }, triggers: [ev.tradeId] } });
      }
    },
    toJSON: (s) => ({ n: s.n }),
    fromJSON: (j) => ({ n: (j as { n: number }).n }),
  };
}

function trade(i: number, over: Partial<Trade> = {}): Trade {
  return { kind: 'trade', venue: 'binance', symbol: 'BTC-USDT', ts: T0 + i * 1000, recvTs: T0 + i * 1000, price: 100, qty: 1, side: 'buy', tradeId: String(i), ...over };
}

function run(det: DetectorInstance, events: CanonicalEvent[]): FindingDraft[] {
  const states = new Map<string, unknown>();
  const out: FindingDraft[] = [];
  for (const ev of events) {
    const key = ev.kind === 'trade' ? `${ev.venue}:${ev.symbol}` : 'x';
    if (!states.has(key)) states.set(key, det.newState(key));
    det.onEvent(states.get(key), ev, out);
  }
  return out;
}

describe('rules file', () => {
  it('the shipped default rules load, cover every registered detector and document every parameter as its default', () => {
    const set = loadRulesFile(DEFAULT_RULES_PATH);
    expect(set.version).toMatch(/^[0-9a-f]{12}$/);
    const detectors = new Set(set.file.rules.map((r) => r.detector));
    for (const name of Object.keys(detectorSpecs)) expect(detectors, `default rules have no rule for ${name}`).toContain(name);
    for (const r of set.file.rules) {
      const spec = detectorSpecs[r.detector]!;
      // Spelled-out parameters are the detector's defaults: the file documents them, it does not tune them.
      const defaults = spec.params.parse({}) as Record<string, unknown>;
      for (const [k, v] of Object.entries(r.params)) expect(v, `${r.id}.params.${k}`).toEqual(defaults[k]);
    }
  });

  it('rejects unknown detectors, bad parameters, duplicate ids and unknown fields, naming the rule', () => {
    const bad = (rules: unknown[], pattern: RegExp) => {
      let err: unknown;
      try {
        buildRuleSet(rulesFile(rules), 'test.yaml');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(VigilError);
      expect((err as VigilError).code).toBe(ERR.RULES_INVALID);
      expect((err as VigilError).statusCode).toBe(400);
      expect((err as Error).message).toMatch(pattern);
    };
    bad([{ id: 'a', detector: 'nope' }], /rules\.0\.detector: unknown detector "nope" in rule a/);
    bad([{ id: 'a', detector: 'price_jump', params: { zThreshold: -1 } }], /rules\.0\.params: .*zThreshold/);
    bad([{ id: 'a', detector: 'price_jump', params: { zThresold: 7 } }], /zThresold/);
    bad([{ id: 'a', detector: 'price_jump' }, { id: 'a', detector: 'price_jump' }], /duplicate rule id "a"/);
    bad([{ id: 'a', detector: 'price_jump', colldown: 5 }], /colldown/);
    bad([{ id: 'has space', detector: 'price_jump' }], /rules\.0\.id/);
    bad([{ id: 'a', detector: 'price_jump', severity: 'urgent' }], /rules\.0\.severity/);
  });

  it('the version depends on meaning, not on key order or spelled-out defaults', () => {
    const a = buildRuleSet(rulesFile([{ id: 'a', detector: 'price_jump', params: { zThreshold: 7 } }]), 'x');
    const b = buildRuleSet({ rules: [{ params: { zThreshold: 7 }, detector: 'price_jump', id: 'a', enabled: true, cooldownMs: 0 }], description: 'test rules' }, 'x');
    const c = buildRuleSet(rulesFile([{ id: 'a', detector: 'price_jump', params: { zThreshold: 8 } }]), 'x');
    expect(a.version).toBe(b.version);
    expect(a.version).not.toBe(c.version);
    expect(rulesVersion(a.file)).toBe(a.version);
  });

  it('diffs rule by rule, down to the changed parameter', () => {
    const before = buildRuleSet(rulesFile([{ id: 'a', detector: 'price_jump', params: { zThreshold: 7 } }, { id: 'b', detector: 'price_jump' }]), 'x').file;
    const after = buildRuleSet(rulesFile([{ id: 'a', detector: 'price_jump', params: { zThreshold: 9 }, cooldownMs: 5 }, { id: 'c', detector: 'price_jump' }]), 'x').file;
    const diff = diffRules(before, after);
    expect(diff).toContainEqual({ path: 'rules.a.params.zThreshold', op: 'changed', before: 7, after: 9 });
    expect(diff).toContainEqual({ path: 'rules.a.cooldownMs', op: 'changed', before: 0, after: 5 });
    expect(diff.find((d) => d.path === 'rules.b')?.op).toBe('removed');
    expect(diff.find((d) => d.path === 'rules.c')?.op).toBe('added');
    expect(diff).toHaveLength(4);
  });
});

describe('rule settings around a detector', () => {
  const settings = { id: 'r1', allowedLatenessMs: 5_000, cooldownMs: 0, rulesVersion: 'v1' };

  it('stamps the rules version and keeps the detector, kinds and rule id', () => {
    const r = applyRule(qtyDetector(), settings);
    const out = run(r, [trade(1, { qty: 7 })]);
    expect(out).toHaveLength(1);
    expect(out[0]!.rulesVersion).toBe('v1');
    expect(r.ruleId).toBe('r1');
    expect(r.name).toBe('price_jump');
  });

  it('scope: only events of the listed venues and symbols reach the detector', () => {
    const r = applyRule(qtyDetector(), { ...settings, scope: { venues: ['okx'], symbols: ['BTC-USDT'] } });
    const out = run(r, [trade(1, { qty: 7 }), trade(2, { qty: 7, venue: 'okx' }), trade(3, { qty: 7, venue: 'okx', symbol: 'ETH-USDT' })]);
    expect(out.map((f) => f.trigger)).toEqual(['2']);
    expect(r.counters.outOfScope).toBe(2);
  });

  it('lateness: events older than the watermark minus the allowance are counted and not used', () => {
    const r = applyRule(qtyDetector(), settings);
    const states = new Map<string, ReturnType<RuleInstance['newState']>>();
    const s = r.newState('binance:BTC-USDT');
    states.set('k', s);
    const out: FindingDraft[] = [];
    r.onEvent(s, trade(100), out);
    r.onEvent(s, trade(97, { qty: 9 }), out); // 3 s late: within the 5 s allowance
    r.onEvent(s, trade(90, { qty: 9 }), out); // 10 s late
    expect(out.map((f) => f.trigger)).toEqual(['97']);
    expect(s.late).toBe(1);
    expect(r.counters.late).toBe(1);
    expect((s.d as { n: number }).n).toBe(2);
  });

  it('lateness is judged per stream for detectors reading several kinds (topics run apart), never for status markers', () => {
    const multi = { ...qtyDetector(), kinds: ['trade', 'quote', 'status'] as const } as unknown as DetectorInstance;
    const r = applyRule(multi, settings);
    const s = r.newState('k');
    const out: FindingDraft[] = [];
    r.onEvent(s, trade(100), out);
    // Quotes 90 s behind the trades: their own stream is in order, so none is late.
    const q = (i: number): CanonicalEvent => ({ kind: 'quote', venue: 'binance', symbol: 'BTC-USDT', ts: T0 + i * 1000, recvTs: T0, bidPx: 1, bidQty: 1, askPx: 2, askQty: 1 });
    r.onEvent(s, q(10), out);
    r.onEvent(s, q(11), out);
    r.onEvent(s, { kind: 'status', venue: 'binance', symbol: 'BTC-USDT', ts: T0, recvTs: T0, status: 'connected', reason: 'x' }, out);
    expect(s.late).toBe(0);
    r.onEvent(s, q(3), out); // 8 s behind its own stream: late
    r.onEvent(s, trade(90), out); // 10 s behind the trades: late
    expect(s.late).toBe(2);
    const back = r.fromJSON(JSON.parse(JSON.stringify(r.toJSON(s))));
    r.onEvent(back, q(4), out);
    expect(back.late).toBe(3);
  });

  it('cooldown per finding key, suppression until a time, severity by score', () => {
    const r = applyRule(qtyDetector(), {
      ...settings,
      cooldownMs: 10_000,
      severity: { byScore: [{ min: 8, severity: 'high' }, { min: 20, severity: 'critical' }] },
      suppress: [{ symbol: 'ETH-USDT', until: T0 + 50_000, reason: 'maintenance' }],
    });
    const out = run(r, [
      trade(1, { qty: 7 }),
      trade(5, { qty: 9 }), // cooled down (4 s after the last)
      trade(12, { qty: 9 }), // 11 s: fires, high
      trade(13, { qty: 25, symbol: 'ETH-USDT' }), // suppressed
      trade(60, { qty: 25, symbol: 'ETH-USDT' }), // suppression over: critical
    ]);
    expect(out.map((f) => [f.trigger, f.severity])).toEqual([
      ['1', 'medium'],
      ['12', 'high'],
      ['60', 'critical'],
    ]);
    expect(r.counters.cooledDown).toBe(1);
    expect(r.counters.suppressed).toBe(1);
  });

  it('state goes through JSON with the rule (watermark, lateness count, cooldowns)', () => {
    const r = applyRule(qtyDetector(), { ...settings, cooldownMs: 10_000 });
    const s = r.newState('k');
    const out: FindingDraft[] = [];
    r.onEvent(s, trade(10, { qty: 7 }), out);
    const back = r.fromJSON(JSON.parse(JSON.stringify(r.toJSON(s))));
    r.onEvent(back, trade(15, { qty: 7 }), out); // still cooling down after the restore
    r.onEvent(back, trade(1, { qty: 7 }), out); // late after the restore too
    expect(out).toHaveLength(1);
    expect(back.late).toBe(1);
    expect(() => r.fromJSON({ v: 2 })).toThrow(TypeError);
  });
});

// ---------------------------------------------------------------- hot reload mid-stream

/** A calm market with a few 12–20 bps steps; price_jump's default z threshold of 6 sees them all. */
function market(seed: number, minutes: number): Trade[] {
  const rng = mulberry32(seed);
  const out: Trade[] = [];
  let price = 50_000;
  let id = 1;
  for (let ts = T0; ts < T0 + minutes * 60_000; ts += 50 + Math.floor(rng() * 150)) {
    const u = rng();
    if (u < 0.15) price -= 0.5;
    else if (u < 0.3) price += 0.5;
    out.push({ kind: 'trade', venue: 'binance', symbol: 'BTC-USDT', ts, recvTs: ts, price, qty: 0.01, side: u < 0.5 ? 'buy' : 'sell', tradeId: String(id++) });
  }
  return out;
}

function withSteps(trades: Trade[], steps: Array<{ atMin: number; bps: number }>): Trade[] {
  return trades.map((t) => {
    let f = 1;
    for (const s of steps) if (t.ts >= T0 + s.atMin * 60_000) f *= Math.exp(s.bps / 1e4);
    return f === 1 ? t : { ...t, price: Math.round(t.price * f * 100) / 100 };
  });
}

describe('hot reload mid-stream', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vigil-rules-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function runWithReload(changeAtMin: number | undefined, newZ: number): Promise<{ findings: Finding[]; versions: string[] }> {
    const path = join(dir, `rules-${changeAtMin ?? 'none'}-${newZ}.yaml`);
    const file = (z: number) => rulesFile([{ id: 'pj', detector: 'price_jump', params: { zThreshold: z, cooldownMs: 1000 } }]);
    writeFileSync(path, toYaml(file(6)));
    const rules = new RulesController({ path });
    const transport = new MemoryTransport({ partitions: 2 });
    const findings: Finding[] = [];
    await transport.subscribe<Finding>({ group: 'sink', topics: [TOPICS.findings], eachBatch: (b) => void findings.push(...b.messages.map((m) => m.value)) });
    const runner = new DetectorRunner(transport, rules.current.instances, 'live');
    rules.onChange((_c, set) => runner.setDetectors(set.instances));
    await runner.start();
    // Steps of 15 bps at minutes 8, 12, 16 and 20: z ≈ 10–30 against a calm baseline.
    const trades = withSteps(market(7, 24), [8, 12, 16, 20].map((atMin) => ({ atMin, bps: 15 })));
    const send = async (list: Trade[]) => {
      for (let i = 0; i < list.length; i += 200) await transport.send(TOPICS.trade, list.slice(i, i + 200).map((t) => ({ key: `${t.venue}:${t.symbol}`, value: t })));
      await transport.drain();
    };
    if (changeAtMin === undefined) await send(trades);
    else {
      const cut = T0 + changeAtMin * 60_000;
      await send(trades.filter((t) => t.ts < cut));
      const { change } = await rules.replace(file(newZ), 'api:test');
      expect(change?.diff).toEqual([{ path: 'rules.pj.params.zThreshold', op: 'changed', before: 6, after: newZ }]);
      await send(trades.filter((t) => t.ts >= cut));
    }
    await runner.stop();
    await transport.close();
    rules.close();
    findings.sort((a, b) => a.ts - b.ts);
    return { findings, versions: [...new Set(findings.map((f) => f.rulesVersion!))] };
  }

  it('a threshold raised mid-stream applies from that point on, with the window state carried over', async () => {
    const base = await runWithReload(undefined, 6);
    const stepTimes = [8, 12, 16, 20].map((m) => T0 + m * 60_000);
    // Every step fires under z ≥ 6.
    for (const t of stepTimes) expect(base.findings.some((f) => f.ts >= t && f.ts < t + 2_000)).toBe(true);
    const zAt = (f: Finding) => Math.abs(Number(f.evidence.observed.z));

    // Raised to z ≥ 1000 at minute 14: the steps before still fire, none after.
    const raised = await runWithReload(14, 1000);
    const cut = T0 + 14 * 60_000;
    expect(raised.findings.filter((f) => f.ts < cut)).toEqual(base.findings.filter((f) => f.ts < cut));
    expect(raised.findings.filter((f) => f.ts >= cut)).toEqual([]);
    expect(raised.versions).toHaveLength(1);

    // Lowered to just under the weakest later step's z: every later step fires at once after the change
    // — no warm-up, so the baseline (minSamples = 20 returns) came over with the state — and the
    // findings carry the new rules version.
    const later = base.findings.filter((f) => f.ts >= cut);
    const weakest = Math.min(...later.map(zAt));
    const lowered = await runWithReload(14, Math.floor(weakest) - 1);
    const after = lowered.findings.filter((f) => f.ts >= cut);
    expect(after.length).toBeGreaterThanOrEqual(later.length);
    for (const f of later) expect(after.map((a) => a.evidence.triggers[0])).toContain(f.evidence.triggers[0]);
    expect(new Set(after.map((f) => f.rulesVersion)).size).toBe(1);
    expect(after[0]!.rulesVersion).not.toBe(base.versions[0]);
    expect(lowered.findings.filter((f) => f.ts < cut).every((f) => f.rulesVersion === base.versions[0])).toBe(true);
  });
});

describe('price_jump across a rules change of its interval', () => {
  it('a longer interval after a reload does not turn the next trades into late ones', () => {
    const short = detectorSpecs.price_jump!.create(detectorSpecs.price_jump!.params.parse({ intervalMs: 1000 }), 'pj');
    const long = detectorSpecs.price_jump!.create(detectorSpecs.price_jump!.params.parse({ intervalMs: 5000 }), 'pj');
    const trades = market(3, 10);
    const half = trades.findIndex((t) => t.ts >= T0 + 5 * 60_000);
    let s = short.newState('binance:BTC-USDT');
    const out: FindingDraft[] = [];
    for (const t of trades.slice(0, half)) short.onEvent(s, t, out);
    s = long.fromJSON(JSON.parse(JSON.stringify(short.toJSON(s))));
    for (const t of trades.slice(half)) long.onEvent(s, t, out);
    const st = s as unknown as { late: number; trades: number };
    expect(st.late).toBe(0);
    expect(st.trades).toBe(trades.length);
  });
});

describe('rules file watching and the rules API', () => {
  let dir: string;
  let store: Store;
  let app: FastifyInstance;
  let controller: RulesController;
  let path: string;
  let base: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vigil-rules-api-'));
    path = join(dir, 'rules.yaml');
    writeFileSync(path, toYaml(rulesFile([{ id: 'pj', detector: 'price_jump' }])));
    store = await openStore({ dataDir: join(dir, 'data') });
    controller = new RulesController({ path, debounceMs: 50 });
    recordRuleChanges(controller, store, () => undefined);
    await controller.announce();
    controller.watch();
    app = await buildApi({ store, hub: new AlertHub(), rules: controller });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    controller?.close();
    await app?.close();
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const until = async (check: () => boolean | Promise<boolean>, ms = 5_000) => {
    const end = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > end) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  it('GET /api/rules shows the rules in force and their version', async () => {
    const body = (await (await fetch(`${base}/api/rules`)).json()) as { version: string; rules: RulesFile; active: unknown[]; path: string };
    expect(body.version).toBe(controller.current.version);
    expect(body.rules.rules[0]!.id).toBe('pj');
    expect(body.active).toEqual([{ id: 'pj', detector: 'price_jump' }]);
    expect(body.path).toBe(path);
  });

  it('an edit of the file on disk applies without a restart; an invalid edit changes nothing and is reported', async () => {
    const v0 = controller.current.version;
    writeFileSync(path, toYaml(rulesFile([{ id: 'pj', detector: 'price_jump', params: { zThreshold: 9 } }])));
    await until(() => controller.current.version !== v0);
    expect((controller.current.instances[0]!.inner as unknown as { name: string }).name).toBe('price_jump');
    const v1 = controller.current.version;
    writeFileSync(path, 'rules: [{ id: pj, detector: price_jump, params: { zThreshold: -3 } }]');
    await until(() => controller.lastError !== undefined);
    expect(controller.current.version).toBe(v1);
    const body = (await (await fetch(`${base}/api/rules`)).json()) as { lastError?: { message: string } };
    expect(body.lastError?.message).toMatch(/zThreshold/);
  });

  it('PUT /api/rules validates, writes the file and applies; a bad body is a 400 naming the problem', async () => {
    const next = rulesFile([{ id: 'pj', detector: 'price_jump', params: { zThreshold: 11 } }, { id: 'pj.eth', detector: 'price_jump', scope: { symbols: ['ETH-USDT'] } }]);
    const res = await fetch(`${base}/api/rules`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(next) });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { version: string; changed: boolean; diff: Array<{ path: string }> };
    expect(body.changed).toBe(true);
    expect(body.version).toBe(controller.current.version);
    expect(body.diff.map((d) => d.path)).toContain('rules.pj.params.zThreshold');
    expect(controller.current.instances.map((r) => r.ruleId)).toEqual(['pj', 'pj.eth']);
    // The file on disk holds the same rules.
    expect(loadRulesFile(path).version).toBe(body.version);

    const bad = await fetch(`${base}/api/rules`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rulesFile([{ id: 'x', detector: 'nope' }])) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: ERR.RULES_INVALID, message: expect.stringMatching(/unknown detector "nope"/) });
    expect(controller.current.version).toBe(body.version);

    const yaml = await fetch(`${base}/api/rules`, { method: 'PUT', headers: { 'content-type': 'application/yaml' }, body: 'rules:\n  - id: only\n    detector: price_jump\n' });
    expect(yaml.status).toBe(200);
    expect(controller.current.instances.map((r) => r.ruleId)).toEqual(['only']);
  });

  it('one rule at a time: POST adds (409 when it exists), GET reads, PUT replaces or adds, DELETE removes; each applied at once', async () => {
    const send = (method: string, url: string, body?: unknown) =>
      fetch(`${base}${url}`, { method, ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }) });
    const ids = () => controller.current.instances.map((r) => r.ruleId);
    const before = ids();
    const added = await send('POST', '/api/rules', { id: 'pj.crud', detector: 'price_jump', params: { zThreshold: 7 } });
    expect(added.status).toBe(201);
    expect(((await added.json()) as { version: string }).version).toBe(controller.current.version);
    expect(ids()).toEqual([...before, 'pj.crud']);
    expect((await send('POST', '/api/rules', { id: 'pj.crud', detector: 'price_jump' })).status).toBe(409);

    const read = (await (await send('GET', '/api/rules/pj.crud')).json()) as { rule: { params: { zThreshold: number } }; active: boolean };
    expect(read.rule.params.zThreshold).toBe(7);
    expect(read.active).toBe(true);
    expect((await send('GET', '/api/rules/nope')).status).toBe(404);

    const replaced = await send('PUT', '/api/rules/pj.crud', { detector: 'price_jump', params: { zThreshold: 12 }, enabled: false });
    expect(replaced.status).toBe(200);
    expect(((await replaced.json()) as { diff: Array<{ path: string }> }).diff.map((d) => d.path)).toContain('rules.pj.crud.params.zThreshold');
    expect(ids()).toEqual(before); // disabled: not running
    expect(((await (await send('GET', '/api/rules/pj.crud')).json()) as { active: boolean }).active).toBe(false);
    // A body whose id is not the URL's, and an invalid rule, change nothing.
    const v = controller.current.version;
    expect((await send('PUT', '/api/rules/pj.crud', { id: 'other', detector: 'price_jump' })).status).toBe(400);
    const invalid = await send('PUT', '/api/rules/pj.crud', { detector: 'price_jump', params: { zThreshold: -1 } });
    expect(invalid.status).toBe(400);
    expect(((await invalid.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: ERR.RULES_INVALID, message: expect.stringMatching(/zThreshold/) });
    expect(controller.current.version).toBe(v);

    expect((await send('DELETE', '/api/rules/pj.crud')).status).toBe(200);
    expect(controller.current.file.rules.map((r) => r.id)).not.toContain('pj.crud');
    expect((await send('DELETE', '/api/rules/pj.crud')).status).toBe(404);
    expect(loadRulesFile(path).version).toBe(controller.current.version);
  });

  it('every change is recorded in ClickHouse with when, what and the diff', async () => {
    await until(async () => (await store.listRuleChanges()).length >= 4);
    const changes = await store.listRuleChanges();
    expect(changes[0]!.version).toBe(controller.current.version);
    expect(changes.map((c) => c.actor)).toEqual(expect.arrayContaining(['start', 'file', 'api']));
    const fromFile = changes.find((c) => c.actor === 'file')!;
    expect(fromFile.diff).toContainEqual({ path: 'rules.pj.params.zThreshold', op: 'added', after: 9 });
    for (let i = 0; i + 1 < changes.length; i++) expect(changes[i]!.previousVersion).toBe(changes[i + 1]!.version);
    const api = (await (await fetch(`${base}/api/rules/changes?limit=2`)).json()) as { items: unknown[] };
    expect(api.items).toHaveLength(2);
    expect((await fetch(`${base}/api/rules/changes?limit=0`)).status).toBe(400);
    expect(readFileSync(path, 'utf8')).toMatch(/Written by Vigil \(api\)/);
  });
});
