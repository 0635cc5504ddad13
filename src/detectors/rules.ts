/**
 * The rules file: which detectors run, with which parameters, on what, and how their findings are
 * graded — declarative (YAML or JSON), validated with zod, reloaded without a restart.
 *
 *   rules:
 *     - id: price_jump.majors
 *       detector: price_jump
 *       params: { zThreshold: 8 }
 *       scope: { venues: [binance], symbols: [BTC-USDT, ETH-USDT] }
 *       severity: { byScore: [{ min: 16, severity: critical }] }
 *       cooldownMs: 30000
 *
 * The rules version is a hash of the validated content (defaults applied), so two files that mean the
 * same thing have the same version, and every finding says which rules produced it.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ERR, VigilError } from '../core/errors.ts';
import { severitySchema } from '../core/events.ts';
import { createDetector, detectorNames, getDetectorSpec } from './registry.ts';
import { applyRule, type RuleInstance, type RuleSettings } from './rule.ts';

/** The rules shipped with Vigil, used when VIGIL_RULES is not set. */
export const DEFAULT_RULES_PATH = fileURLToPath(new URL('../../rules/default.yaml', import.meta.url));
/** Default allowed lateness: events more than a minute behind their key's newest are late. */
export const DEFAULT_ALLOWED_LATENESS_MS = 60_000;

const nameList = z.array(z.string().min(1)).min(1);
const epochOrIso = z.union([z.number().int().nonnegative(), z.iso.datetime({ offset: true }).transform((s) => Date.parse(s))]);

export const ruleSchema = z.strictObject({
  /** Stable id: in finding ids, the API and ClickHouse. */
  id: z.string().regex(/^[A-Za-z0-9_.:-]{1,100}$/, 'letters, digits and _ . : - (at most 100)'),
  detector: z.string().min(1),
  enabled: z.boolean().default(true),
  description: z.string().optional(),
  params: z.record(z.string(), z.unknown()).default({}),
  scope: z
    .strictObject({ venues: nameList.optional(), symbols: nameList.optional(), accounts: nameList.optional(), segments: nameList.optional(), sources: nameList.optional() })
    .optional(),
  severity: z
    .union([
      severitySchema.transform((s) => ({ fixed: s })),
      z.strictObject({
        fixed: severitySchema.optional(),
        byScore: z.array(z.strictObject({ min: z.number().finite(), severity: severitySchema })).min(1).optional(),
      }),
    ])
    .optional(),
  cooldownMs: z.number().int().nonnegative().default(0),
  allowedLatenessMs: z.number().int().nonnegative().default(DEFAULT_ALLOWED_LATENESS_MS),
  suppress: z
    .array(
      z.strictObject({
        key: z.string().optional(),
        venue: z.string().optional(),
        symbol: z.string().optional(),
        account: z.string().optional(),
        until: epochOrIso.optional(),
        reason: z.string().min(1),
      }),
    )
    .default([]),
});
export type RuleDef = z.output<typeof ruleSchema>;
export type RuleInput = z.input<typeof ruleSchema>;

export const rulesFileSchema = z.strictObject({
  /** Free text shown with the version, e.g. "2026-11 tuning". */
  description: z.string().optional(),
  rules: z.array(ruleSchema),
});
export type RulesFile = z.output<typeof rulesFileSchema>;

export interface RuleSet {
  readonly version: string;
  readonly file: RulesFile;
  /** Enabled rules, validated and built. */
  readonly instances: RuleInstance[];
}

function issuesText(error: z.ZodError, prefix: string): string {
  return error.issues
    .map((i) => {
      const keys = i.code === 'unrecognized_keys' ? ` (${i.keys.join(', ')})` : '';
      return `${[prefix, ...i.path].filter((x) => x !== '').join('.')}: ${i.message}${keys}`;
    })
    .join('; ');
}

function rulesError(origin: string, message: string, details: Record<string, unknown> = {}): VigilError {
  return new VigilError(ERR.RULES_INVALID, `rules ${origin}: ${message}`, 400, { origin, ...details });
}

/** Stable JSON (sorted object keys) for hashing and diffs. */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) if ((v as Record<string, unknown>)[k] !== undefined) out[k] = canonical((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

export function rulesVersion(file: RulesFile): string {
  return createHash('sha256').update(JSON.stringify(canonical(file))).digest('hex').slice(0, 12);
}

/** Parses rules text: YAML (JSON is YAML too). */
export function parseRulesText(text: string, origin: string): unknown {
  try {
    return parseYaml(text, { maxAliasCount: 100 });
  } catch (err) {
    throw rulesError(origin, `not valid YAML or JSON: ${(err as Error).message}`);
  }
}

/**
 * Validates rules (an object as parsed from the file) and builds their detector instances: unknown
 * detectors, bad parameters and duplicate ids fail here, naming the rule, before anything runs.
 */
export function buildRuleSet(input: unknown, origin: string): RuleSet {
  const parsed = rulesFileSchema.safeParse(input);
  if (!parsed.success) throw rulesError(origin, issuesText(parsed.error, ''));
  const file = parsed.data;
  const seen = new Set<string>();
  const version = rulesVersion(file);
  const instances: RuleInstance[] = [];
  file.rules.forEach((rule, i) => {
    if (seen.has(rule.id)) throw rulesError(origin, `rules.${i}.id: duplicate rule id "${rule.id}"`, { ruleId: rule.id });
    seen.add(rule.id);
    if (!detectorNames().includes(rule.detector)) {
      throw rulesError(origin, `rules.${i}.detector: unknown detector "${rule.detector}" in rule ${rule.id} (known: ${detectorNames().join(', ')})`, { ruleId: rule.id });
    }
    let inner;
    try {
      inner = createDetector(rule.detector, rule.params, rule.id);
    } catch (err) {
      throw rulesError(origin, `rules.${i}.params: ${(err as Error).message}`, { ruleId: rule.id });
    }
    if (!rule.enabled) return;
    const settings: RuleSettings = {
      id: rule.id,
      allowedLatenessMs: rule.allowedLatenessMs,
      cooldownMs: rule.cooldownMs,
      rulesVersion: version,
      ...(rule.scope ? { scope: rule.scope } : {}),
      ...(rule.severity ? { severity: rule.severity } : {}),
      ...(rule.suppress.length > 0 ? { suppress: rule.suppress } : {}),
    };
    instances.push(applyRule(inner, settings));
  });
  return { version, file, instances };
}

export function loadRulesFile(path: string): RuleSet {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new VigilError(ERR.CONFIG, `VIGIL_RULES: cannot read rules file ${path}: ${(err as Error).message}`, 500, { key: 'VIGIL_RULES', path });
  }
  return buildRuleSet(parseRulesText(text, path), path);
}

/** Applies `detectors.<name>` overrides of the config file to every rule of that detector. */
export function withDetectorOverrides(file: RulesFile, overrides: Record<string, Record<string, unknown>>): unknown {
  if (Object.keys(overrides).length === 0) return file;
  for (const name of Object.keys(overrides)) getDetectorSpec(name); // unknown names fail here
  return {
    ...file,
    rules: file.rules.map((r) => {
      const o = overrides[r.detector];
      if (!o) return r;
      const { enabled, ...params } = o as { enabled?: boolean } & Record<string, unknown>;
      return { ...r, ...(enabled === false ? { enabled: false } : {}), params: { ...r.params, ...params } };
    }),
  };
}

// ---------------------------------------------------------------- diffs

/** One change of the rules in force (at start, from the file, through the API). */
export interface RuleChange {
  /** Wall time of the change. */
  at: number;
  version: string;
  previousVersion?: string;
  /** `start`, `file` (edited on disk), `api` or `api:<who>`. */
  actor: string;
  /** The file (or request) the rules came from. */
  origin: string;
  diff: RuleDiffEntry[];
  /** The rules file after the change (validated, defaults applied). */
  rules: unknown;
}

export interface RuleDiffEntry {
  /** `rules.<id>` or `rules.<id>.params.zThreshold`, `description`. */
  path: string;
  op: 'added' | 'removed' | 'changed';
  before?: unknown;
  after?: unknown;
}

function diffValues(path: string, a: unknown, b: unknown, out: RuleDiffEntry[]): void {
  const ca = canonical(a);
  const cb = canonical(b);
  if (JSON.stringify(ca) === JSON.stringify(cb)) return;
  const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObj(ca) && isObj(cb)) {
    for (const k of new Set([...Object.keys(ca), ...Object.keys(cb)])) {
      if (!(k in ca)) out.push({ path: `${path}.${k}`, op: 'added', after: cb[k] });
      else if (!(k in cb)) out.push({ path: `${path}.${k}`, op: 'removed', before: ca[k] });
      else diffValues(`${path}.${k}`, ca[k], cb[k], out);
    }
    return;
  }
  out.push({ path, op: 'changed', before: ca, after: cb });
}

/** What changed between two rules files, rule by rule (rules matched by id). */
export function diffRules(before: RulesFile | undefined, after: RulesFile): RuleDiffEntry[] {
  const out: RuleDiffEntry[] = [];
  if ((before?.description ?? null) !== (after.description ?? null)) out.push({ path: 'description', op: before?.description === undefined ? 'added' : 'changed', before: before?.description, after: after.description });
  const old = new Map((before?.rules ?? []).map((r) => [r.id, r]));
  const now = new Map(after.rules.map((r) => [r.id, r]));
  for (const [id, r] of now) {
    const o = old.get(id);
    if (!o) out.push({ path: `rules.${id}`, op: 'added', after: canonical(r) });
    else diffValues(`rules.${id}`, o, r, out);
  }
  for (const [id, r] of old) if (!now.has(id)) out.push({ path: `rules.${id}`, op: 'removed', before: canonical(r) });
  return out;
}
