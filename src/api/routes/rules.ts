/**
 * The rules in force and their history:
 *   GET  /api/rules            the rules file in force (validated, defaults applied), its version, path,
 *                              and the last reload error if the file on disk is invalid
 *   PUT  /api/rules            replaces the rules (JSON body: the rules file, or YAML text with
 *                              content-type application/yaml): validated, written to the rules file,
 *                              applied without a restart; 400 VIGIL_ERR_RULES_INVALID names the problem
 *   GET/PUT/DELETE /api/rules/:id, POST /api/rules   one rule: read, create or replace, remove, add
 *                              (409 when it exists) — the file in force with that edit, then as PUT
 *   POST /api/rules/reload     reads the rules file again (after an edit, when file watching is off)
 *   GET  /api/rules/changes    the recorded changes, newest first (?limit=1..1000)
 * Without a rules controller (a process that runs no rules) the routes answer 404.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ERR, VigilError } from '../../core/errors.ts';
import { parseRulesText, type RulesFile } from '../../detectors/rules.ts';
import type { RulesController } from '../../detectors/rules-watch.ts';
import type { Store } from '../../storage/types.ts';
import { actorOf } from '../auth.ts';

const limitSchema = z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }).strict();

export function rulesRoutes(app: FastifyInstance, store: Store, rules: RulesController | undefined): void {
  const controller = (): RulesController => {
    if (!rules) throw new VigilError(ERR.NOT_FOUND, 'this process runs no rules', 404);
    return rules;
  };
  // YAML bodies arrive as text; the rules parser reads them (JSON bodies are parsed by fastify).
  app.addContentTypeParser(['application/yaml', 'application/x-yaml', 'text/yaml'], { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, parseRulesText(body as string, 'request'));
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  app.get('/api/rules', { config: { role: 'viewer' } }, async () => {
    const c = controller();
    const set = c.current;
    return {
      version: set.version,
      path: c.path,
      loadedAt: new Date(c.loadedAt).toISOString(),
      rules: set.file,
      active: set.instances.map((r) => ({ id: r.ruleId, detector: r.name })),
      ...(c.lastError ? { lastError: { at: new Date(c.lastError.at).toISOString(), message: c.lastError.message } } : {}),
    };
  });

  app.put('/api/rules', { config: { role: 'admin' } }, async (req) => {
    const c = controller();
    if (req.body === undefined || req.body === null || typeof req.body !== 'object') {
      throw new VigilError(ERR.RULES_INVALID, 'expected the rules file as a JSON object (or YAML with content-type application/yaml)', 400);
    }
    const { set, change } = await c.replace(req.body, actorOf(req));
    return { version: set.version, changed: change !== undefined, diff: change?.diff ?? [] };
  });

  // One rule at a time: the rules file in force with that rule added, replaced or removed, then the same
  // path as PUT /api/rules (validated, written, applied without a restart, recorded with its diff).
  const ruleBody = (body: unknown, id?: string): Record<string, unknown> => {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new VigilError(ERR.RULES_INVALID, 'expected one rule as a JSON object {id, detector, params?, …}', 400);
    const rule = { ...(body as Record<string, unknown>) };
    if (id !== undefined) {
      if (rule.id !== undefined && rule.id !== id) throw new VigilError(ERR.RULES_INVALID, `the body's id '${String(rule.id)}' is not the URL's '${id}'`, 400, { parameter: 'id' });
      rule.id = id;
    }
    return rule;
  };
  const withRules = async (req: FastifyRequest, edit: (rules: RulesFile['rules']) => RulesFile['rules']) => {
    const c = controller();
    const file = c.current.file;
    const { set, change } = await c.replace({ ...file, rules: edit([...file.rules]) }, actorOf(req));
    return { version: set.version, changed: change !== undefined, diff: change?.diff ?? [] };
  };
  const find = (id: string) => {
    const rule = controller().current.file.rules.find((r) => r.id === id);
    if (!rule) throw new VigilError(ERR.NOT_FOUND, `no rule '${id}' in the rules in force`, 404);
    return rule;
  };

  app.get<{ Params: { id: string } }>('/api/rules/:id', { config: { role: 'viewer' } }, async (req) => {
    const rule = find(req.params.id);
    const c = controller();
    return { version: c.current.version, rule, active: c.current.instances.some((r) => r.ruleId === rule.id) };
  });

  app.post('/api/rules', { config: { role: 'admin' } }, async (req, reply) => {
    const rule = ruleBody(req.body);
    if (typeof rule.id === 'string' && controller().current.file.rules.some((r) => r.id === rule.id)) {
      throw new VigilError(ERR.CONFLICT, `a rule '${rule.id}' exists already: PUT /api/rules/${rule.id} replaces it`, 409);
    }
    const out = await withRules(req, (rules) => [...rules, rule as RulesFile['rules'][number]]);
    return reply.status(201).send(out);
  });

  app.put<{ Params: { id: string } }>('/api/rules/:id', { config: { role: 'admin' } }, async (req) => {
    const rule = ruleBody(req.body, req.params.id) as RulesFile['rules'][number];
    return withRules(req, (rules) => {
      const i = rules.findIndex((r) => r.id === req.params.id);
      if (i < 0) rules.push(rule);
      else rules[i] = rule;
      return rules;
    });
  });

  app.delete<{ Params: { id: string } }>('/api/rules/:id', { config: { role: 'admin' } }, async (req) => {
    find(req.params.id);
    return withRules(req, (rules) => rules.filter((r) => r.id !== req.params.id));
  });

  app.post('/api/rules/reload', { config: { role: 'admin' } }, async (req) => {
    const change = await controller().reload(actorOf(req));
    return { version: controller().current.version, changed: change !== undefined, diff: change?.diff ?? [] };
  });

  app.get('/api/rules/changes', { config: { role: 'viewer' } }, async (req) => {
    const parsed = limitSchema.safeParse(req.query);
    if (!parsed.success) throw new VigilError(ERR.BAD_REQUEST, `invalid query: ${parsed.error.issues[0]?.path.join('.') || 'query'}: expected limit 1-1000`, 400);
    return { items: await store.listRuleChanges({ limit: parsed.data.limit }) };
  });
}
