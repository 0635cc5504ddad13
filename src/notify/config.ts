/**
 * The webhooks file (VIGIL_WEBHOOKS): YAML or JSON, a list of webhooks (or `{ webhooks: [...] }`),
 * validated at start: a bad file or entry stops start-up naming the key and the entry.
 *
 *   - name: ops-slack
 *     url: https://hooks.slack.com/services/…
 *     format: slack            # or json
 *     minSeverity: high        # routing (all optional; each list matches any of its values)
 *     rules: [pj-btc]
 *     detectors: [price_jump]
 *     venues: [binance]
 *     symbols: [BTC-USDT]
 *     accounts: [acct-1]
 *     headers: { authorization: Bearer … }
 *     secret: s3cret           # X-Vigil-Signature: sha256=<HMAC-SHA256 of the body>
 *     timeoutMs: 5000          # delivery (defaults below)
 *     maxAttempts: 5
 *     backoffMs: 1000
 *     maxBackoffMs: 60000
 *     queueSize: 1000
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { SEVERITIES } from '../core/events.ts';
import { ERR, VigilError } from '../core/errors.ts';

export const WEBHOOKS_KEY = 'VIGIL_WEBHOOKS';

export const WEBHOOK_DEFAULTS = {
  timeoutMs: 5_000,
  maxAttempts: 5,
  backoffMs: 1_000,
  maxBackoffMs: 60_000,
  queueSize: 1_000,
} as const;

const names = z.array(z.string().min(1).max(200)).min(1).max(1000);
const httpUrl = z.string().refine((s) => {
  try {
    const u = new URL(s);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}, 'expected an http(s) URL');
/** Header names a webhook may not set: the ones the sender computes. */
const RESERVED_HEADERS = new Set(['content-type', 'content-length', 'host', 'x-vigil-signature', 'transfer-encoding', 'connection']);

export const webhookSchema = z.strictObject({
  /** Shown in logs and delivery stats; unique in the file. */
  name: z.string().regex(/^[A-Za-z0-9_.:-]{1,100}$/, 'letters, digits and _ . : - (at most 100)'),
  url: httpUrl,
  format: z.enum(['json', 'slack']),
  minSeverity: z.enum(SEVERITIES).optional(),
  detectors: names.optional(),
  /** Rule ids. */
  rules: names.optional(),
  venues: names.optional(),
  symbols: names.optional(),
  accounts: names.optional(),
  headers: z
    .record(z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'an HTTP header name'), z.string().max(8192).regex(/^[^\r\n]*$/, 'one line'))
    .refine((h) => Object.keys(h).every((k) => !RESERVED_HEADERS.has(k.toLowerCase())), `may not set ${[...RESERVED_HEADERS].join(', ')}`)
    .optional(),
  secret: z.string().min(1).max(1024).optional(),
  timeoutMs: z.number().int().min(100).max(120_000).default(WEBHOOK_DEFAULTS.timeoutMs),
  maxAttempts: z.number().int().min(1).max(100).default(WEBHOOK_DEFAULTS.maxAttempts),
  backoffMs: z.number().int().min(1).max(600_000).default(WEBHOOK_DEFAULTS.backoffMs),
  maxBackoffMs: z.number().int().min(1).max(3_600_000).default(WEBHOOK_DEFAULTS.maxBackoffMs),
  queueSize: z.number().int().min(1).max(1_000_000).default(WEBHOOK_DEFAULTS.queueSize),
});
export type WebhookConfig = z.output<typeof webhookSchema>;
export type WebhookInput = z.input<typeof webhookSchema>;

function fail(path: string, message: string, entry?: { index: number; name?: string }): VigilError {
  const where = entry === undefined ? '' : ` webhook ${entry.index}${entry.name ? ` ("${entry.name}")` : ''}:`;
  return new VigilError(ERR.CONFIG, `invalid configuration: ${WEBHOOKS_KEY}: ${path}:${where} ${message}`, 500, { key: WEBHOOKS_KEY, path, ...(entry ? { entry: entry.name ?? entry.index } : {}) });
}

/** Validates parsed webhooks (a list, or `{ webhooks: [...] }`); `origin` names the file in errors. */
export function parseWebhooks(input: unknown, origin: string): WebhookConfig[] {
  const list = Array.isArray(input) ? input : input !== null && typeof input === 'object' && 'webhooks' in input ? (input as { webhooks: unknown }).webhooks : undefined;
  if (input === null || input === undefined) return [];
  if (!Array.isArray(list)) throw fail(origin, 'expected a list of webhooks, or an object { webhooks: [...] }');
  if (!Array.isArray(input) && Object.keys(input as object).some((k) => k !== 'webhooks')) {
    throw fail(origin, `unknown top-level key(s) ${Object.keys(input as object).filter((k) => k !== 'webhooks').join(', ')} (expected only webhooks)`);
  }
  const seen = new Set<string>();
  return list.map((raw, index) => {
    const name = raw !== null && typeof raw === 'object' && typeof (raw as { name?: unknown }).name === 'string' ? (raw as { name: string }).name : undefined;
    const r = webhookSchema.safeParse(raw);
    if (!r.success) {
      const issues = r.error.issues
        .map((i) => `${i.path.join('.') || '(entry)'}: ${i.message}${i.code === 'unrecognized_keys' ? ` (${i.keys.join(', ')})` : ''}`)
        .join('; ');
      throw fail(origin, issues, { index, ...(name === undefined ? {} : { name }) });
    }
    if (seen.has(r.data.name)) throw fail(origin, `duplicate name "${r.data.name}"`, { index, name: r.data.name });
    seen.add(r.data.name);
    if (r.data.maxBackoffMs < r.data.backoffMs) throw fail(origin, `maxBackoffMs (${r.data.maxBackoffMs}) must be >= backoffMs (${r.data.backoffMs})`, { index, name: r.data.name });
    return r.data;
  });
}

/** Reads and validates the webhooks file; throws VIGIL_ERR_CONFIG naming VIGIL_WEBHOOKS and the entry. */
export function loadWebhooksFile(path: string): WebhookConfig[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw fail(path, `cannot read the webhooks file: ${(e as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text, { maxAliasCount: 100 }); // JSON is YAML too
  } catch (e) {
    throw fail(path, `not valid YAML or JSON: ${(e as Error).message}`);
  }
  return parseWebhooks(parsed, path);
}

/** The webhooks of a configuration: none when VIGIL_WEBHOOKS is unset. */
export function webhooksFromConfig(config: { VIGIL_WEBHOOKS?: string | undefined }): WebhookConfig[] {
  return config.VIGIL_WEBHOOKS ? loadWebhooksFile(config.VIGIL_WEBHOOKS) : [];
}
