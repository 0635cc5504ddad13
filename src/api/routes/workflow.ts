/**
 * Analyst workflow on findings, and snoozes (storage: src/storage/workflow.ts):
 *   POST   /api/findings/:id/status   {status, note?, run?}        → {workflow, action}; 409 on an illegal transition
 *   POST   /api/findings/:id/assign   {assignee|null, note?, run?} → {workflow, action}
 *   POST   /api/findings/:id/notes    {note, run?}                 → 201 {action}
 *   GET    /api/findings/:id/history  ?run=                        → {items: FindingAction[]} oldest first
 *   GET    /api/snoozes               ?active=true&limit=          → {items: Snooze[]} newest first
 *   POST   /api/snoozes               {detector?, ruleId?, symbol?, venue?, account?, until, note?} → 201 Snooze
 *   DELETE /api/snoozes/:id                                         → the cancelled Snooze (idempotent)
 * Writes need role analyst, reads viewer. The actor recorded is the caller (actorOf). `run` picks the
 * run when several runs hold the finding id (default: the most recently written, as GET /api/findings/:id).
 *
 * `withWorkflow` gives GET /api/findings and /api/findings/:id each finding's `workflow`.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Finding } from '../../core/events.ts';
import { ERR, VigilError } from '../../core/errors.ts';
import type { Store } from '../../storage/types.ts';
import { OPEN_WORKFLOW, UNASSIGNED, WORKFLOW_STATUSES, workflowKey, type FindingWorkflow, type NewSnooze, type Snooze } from '../../storage/workflow.ts';
import { actorOf } from '../auth.ts';
import { FINDING_PARAMS, badParam, parseParams } from '../query-params.ts';
import type { SnoozeBook } from '../snoozes.ts';

const MAX_NOTE = 4000;

/** What each body field expects, for error messages that name the field. */
const EXPECTED: Record<string, string> = {
  status: `one of ${WORKFLOW_STATUSES.join(', ')}`,
  note: `a string of at most ${MAX_NOTE} characters`,
  run: 'a non-empty string of at most 200 characters',
  assignee: `a name of 1-200 characters (not '${UNASSIGNED}'), or null to unassign`,
  detector: 'a non-empty string of at most 200 characters',
  ruleId: 'a non-empty string of at most 200 characters',
  symbol: 'a non-empty string of at most 200 characters',
  venue: 'a non-empty string of at most 200 characters',
  account: 'a non-empty string of at most 200 characters',
  until: 'epoch milliseconds, in the future and at most 90 days ahead',
};

const name = z.string().trim().min(1).max(200);
const note = z.string().max(MAX_NOTE).optional();
const run = name.optional();

export const statusBody = z.object({ status: z.enum(WORKFLOW_STATUSES), note, run }).strict();
export const assignBody = z
  .object({
    assignee: z.union([name.refine((a) => a.toLowerCase() !== UNASSIGNED), z.null()]),
    note,
    run,
  })
  .strict();
export const noteBody = z.object({ note: z.string().trim().min(1).max(MAX_NOTE), run }).strict();
export const snoozeBody = z
  .object({ detector: name.optional(), ruleId: name.optional(), symbol: name.optional(), venue: name.optional(), account: name.optional(), until: z.number().int().nonnegative(), note })
  .strict();

export const SNOOZE_LIST_PARAMS = {
  active: { schema: z.enum(['true', 'false']).transform((v) => v === 'true'), expected: 'true or false' },
  limit: { schema: z.string().regex(/^\d{1,5}$/).transform(Number).pipe(z.number().int().min(1).max(10_000)), expected: 'an integer 1-10000' },
} as const;

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new VigilError(ERR.BAD_REQUEST, 'invalid body: expected a JSON object', 400);
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  if (issue?.code === 'unrecognized_keys') {
    const field = issue.keys[0] ?? '?';
    throw new VigilError(ERR.BAD_REQUEST, `unknown body field '${field}'`, 400, { parameter: field });
  }
  const field = String(issue?.path[0] ?? 'body');
  const got = (body as Record<string, unknown>)[field];
  const shown = got === undefined ? ' (missing)' : ` (got ${JSON.stringify(got).slice(0, 100)})`;
  throw new VigilError(ERR.BAD_REQUEST, `invalid body field '${field}': expected ${EXPECTED[field] ?? 'a valid value'}${shown}`, 400, { parameter: field });
}

function findingIdOf(req: FastifyRequest<{ Params: { id: string } }>): string {
  const id = req.params.id;
  if (id.length === 0 || id.length > 200) throw badParam('id', 'a finding id', id);
  return id;
}

async function findingOf(store: Store, id: string, run: string | undefined): Promise<Finding> {
  const finding = await store.getFinding(id, run);
  if (!finding) throw new VigilError(ERR.NOT_FOUND, `finding ${id} not found${run === undefined ? '' : ` in run ${run}`}`, 404);
  return finding;
}

/** The findings as GET /api/findings and /api/findings/:id answer them: each with its `workflow`. */
export async function withWorkflow<F extends Finding>(store: Store, findings: F[]): Promise<(F & { workflow: FindingWorkflow })[]> {
  if (findings.length === 0) return [];
  const states = await store.findingWorkflows(findings.map((f) => ({ runId: f.runId, findingId: f.id })));
  return findings.map((f) => ({ ...f, workflow: states.get(workflowKey(f.runId, f.id)) ?? { ...OPEN_WORKFLOW } }));
}

export function workflowRoutes(app: FastifyInstance, store: Store, snoozes?: SnoozeBook): void {
  const analyst = { config: { role: 'analyst' } } as const;
  const viewer = { config: { role: 'viewer' } } as const;

  app.post<{ Params: { id: string } }>('/api/findings/:id/status', analyst, async (req) => {
    const id = findingIdOf(req);
    const body = parseBody(statusBody, req.body);
    const f = await findingOf(store, id, body.run);
    return store.recordFindingAction({ runId: f.runId, findingId: f.id, actor: actorOf(req), change: { kind: 'status', to: body.status }, ...(body.note ? { note: body.note } : {}) });
  });

  app.post<{ Params: { id: string } }>('/api/findings/:id/assign', analyst, async (req) => {
    const id = findingIdOf(req);
    const body = parseBody(assignBody, req.body);
    const f = await findingOf(store, id, body.run);
    return store.recordFindingAction({ runId: f.runId, findingId: f.id, actor: actorOf(req), change: { kind: 'assign', assignee: body.assignee }, ...(body.note ? { note: body.note } : {}) });
  });

  app.post<{ Params: { id: string } }>('/api/findings/:id/notes', analyst, async (req, reply) => {
    const id = findingIdOf(req);
    const body = parseBody(noteBody, req.body);
    const f = await findingOf(store, id, body.run);
    const { action } = await store.recordFindingAction({ runId: f.runId, findingId: f.id, actor: actorOf(req), change: { kind: 'note' }, note: body.note });
    return reply.status(201).send({ action });
  });

  app.get<{ Params: { id: string } }>('/api/findings/:id/history', viewer, async (req) => {
    const id = findingIdOf(req);
    const { run } = parseParams(FINDING_PARAMS, req.query);
    const f = await findingOf(store, id, run);
    return { items: await store.findingHistory({ runId: f.runId, findingId: f.id }) };
  });

  // Snoozes: a change here reaches this process's live alerts at once (other processes: at their next reload).
  const publish = async (s: Snooze): Promise<void> => {
    if (!snoozes) return;
    snoozes.put(s);
    await snoozes.refresh().catch((e: unknown) => app.log.warn({ err: e }, 'snoozes: reload after a change failed'));
  };

  app.get('/api/snoozes', viewer, async (req) => {
    const p = parseParams(SNOOZE_LIST_PARAMS, req.query);
    return { items: await store.listSnoozes({ active: p.active ?? false, limit: p.limit ?? 1000 }) };
  });

  app.post('/api/snoozes', analyst, async (req, reply) => {
    const body = parseBody(snoozeBody, req.body);
    const s: NewSnooze = { until: body.until, createdBy: actorOf(req) };
    for (const k of ['detector', 'ruleId', 'symbol', 'venue', 'account', 'note'] as const) if (body[k] !== undefined && body[k] !== '') s[k] = body[k];
    const snooze = await store.createSnooze(s);
    await publish(snooze);
    return reply.status(201).send(snooze);
  });

  app.delete<{ Params: { id: string } }>('/api/snoozes/:id', analyst, async (req) => {
    const id = req.params.id;
    if (id.length === 0 || id.length > 200) throw badParam('id', 'a snooze id', id);
    const snooze = await store.cancelSnooze(id, actorOf(req));
    if (!snooze) throw new VigilError(ERR.NOT_FOUND, `no snooze ${id}`, 404);
    await publish(snooze);
    return snooze;
  });
}
