/**
 * What a webhook receives. Two formats:
 * - `json`: `{ type: 'finding', finding, sentAt }` — the finding as the API serves it, with no links
 *   (receivers build their own from the id), `sentAt` = wall time of this attempt.
 * - `slack`: a Slack-compatible `{ text, blocks }` (incoming webhooks; Mattermost and others accept it):
 *   severity, summary, detector, rule and key.
 * With a secret, every request carries `X-Vigil-Signature: sha256=<hex HMAC-SHA256 of the exact body>`.
 */
import { createHmac } from 'node:crypto';
import type { Finding, Severity } from '../core/events.ts';

export type WebhookFormat = 'json' | 'slack';

export const SIGNATURE_HEADER = 'x-vigil-signature';

export interface JsonEnvelope {
  type: 'finding';
  finding: Finding;
  sentAt: number;
}

export interface SlackMessage {
  text: string;
  blocks: unknown[];
}

const SEVERITY_MARK: Record<Severity, string> = {
  info: ':information_source:',
  low: ':large_blue_circle:',
  medium: ':large_yellow_circle:',
  high: ':large_orange_circle:',
  critical: ':red_circle:',
};

/** Slack mrkdwn: &, < and > are control characters (links, mentions); everything else is text. */
function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Slack caps a section's text at 3000 characters. */
function cap(s: string, n = 2900): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

export function slackMessage(f: Finding): SlackMessage {
  const sev = f.severity.toUpperCase();
  const where = [f.venue, f.symbol, f.account].filter((x): x is string => typeof x === 'string' && x !== '').join(' · ');
  const fields = [
    `*Severity*\n${SEVERITY_MARK[f.severity]} ${sev}`,
    `*Detector*\n${esc(f.detector)} (rule ${esc(f.ruleId)})`,
    `*Key*\n${esc(f.key)}`,
    `*Time*\n<!date^${Math.floor(f.ts / 1000)}^{date_short_pretty} {time_secs}|${new Date(f.ts).toISOString()}>`,
  ];
  if (where) fields.push(`*Where*\n${esc(where)}`);
  fields.push(`*Finding*\n\`${f.id}\`${f.runId === 'live' ? '' : ` (run ${esc(f.runId)})`}`);
  return {
    // The notification text (and what clients without blocks show).
    text: cap(`[${sev}] ${f.detector}: ${f.summary} (${f.key})`),
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: cap(`${SEVERITY_MARK[f.severity]} *${sev}* — ${esc(f.summary)}`) } },
      { type: 'section', fields: fields.map((text) => ({ type: 'mrkdwn', text: cap(text, 1900) })) },
    ],
  };
}

/** The request body for one attempt. */
export function webhookBody(format: WebhookFormat, finding: Finding, sentAt: number): string {
  if (format === 'slack') return JSON.stringify(slackMessage(finding));
  return JSON.stringify({ type: 'finding', finding, sentAt } satisfies JsonEnvelope);
}

/** `sha256=<hex>`: HMAC-SHA256 of the body with the webhook's secret (receivers recompute and compare). */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}
