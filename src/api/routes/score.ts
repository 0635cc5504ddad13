/**
 * POST /api/transactions/score (analyst): one canonical transaction in, its risk score out —
 * `{ eventId, account, score, reasons: [{ detector, ruleId, score, summary }], findings, rulesVersion, latencyMs }`.
 * The transaction goes through the streaming path and counts in its account's state like a streamed one
 * (src/pipeline/scoring.ts). A repeated transaction id gets the first answer again, with the header
 * `idempotent-replayed: true`, and is not counted twice; the same id with another body is a 409.
 * 400 names the first bad field; 413 beyond SCORE_BODY_LIMIT; 503 when this process does not score (or
 * too many requests wait); 504 when no score came back within VIGIL_SCORE_TIMEOUT_MS.
 */
import type { FastifyInstance } from 'fastify';
import type { z } from 'zod';
import { ERR, VigilError } from '../../core/errors.ts';
import { transactionSchema } from '../../core/events.ts';
import type { TransactionScoring } from '../../pipeline/scoring.ts';

/** A transaction is a few hundred bytes; anything near this is not one. */
export const SCORE_BODY_LIMIT = 16 * 1024;

const bodySchema = transactionSchema.strict();

function badField(issue: z.core.$ZodIssue | undefined): VigilError {
  if (issue === undefined) return new VigilError(ERR.BAD_REQUEST, 'invalid body: expected one transaction event', 400, { parameter: 'body' });
  const unknownKeys = issue.code === 'unrecognized_keys' ? issue.keys : undefined;
  const field = unknownKeys?.[0] ?? (issue.path.length > 0 ? issue.path.join('.') : 'body');
  const message = unknownKeys ? `unknown field (a canonical transaction has ${Object.keys(transactionSchema.shape).join(', ')})` : issue.message;
  return new VigilError(ERR.BAD_REQUEST, `invalid body field '${field}': ${message}`, 400, { parameter: field });
}

export function scoreRoutes(app: FastifyInstance, scorer: TransactionScoring | undefined): void {
  const bodyLimit = Math.min(SCORE_BODY_LIMIT, app.initialConfig.bodyLimit ?? SCORE_BODY_LIMIT);
  app.post('/api/transactions/score', { config: { role: 'analyst' }, bodyLimit }, async (req, reply) => {
    if (!scorer) throw new VigilError(ERR.UNAVAILABLE, 'transaction scoring is not available in this process', 503);
    const body = req.body;
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new VigilError(ERR.BAD_REQUEST, "invalid body: expected one transaction event as a JSON object ({kind: 'transaction', source, id, ts, account, amount, currency, direction, channel, …})", 400, { parameter: 'body' });
    }
    const parsed = bodySchema.safeParse(body);
    if (!parsed.success) throw badField(parsed.error.issues[0]);
    const { result, replayed } = await scorer.score(parsed.data);
    if (replayed) void reply.header('idempotent-replayed', 'true');
    return result;
  });
}
