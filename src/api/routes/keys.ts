/**
 * API key management (admin; a credential is needed even with auth off — an admin key or the service
 * token, which is how `vigil keys` reaches a running `vigil run` / `vigil api`):
 *   GET    /api/keys        every key (id, name, role, hint, createdAt, revokedAt), newest first
 *   POST   /api/keys        {name, role} → 201 with the key itself, shown this once
 *   DELETE /api/keys/:id    revokes the key (idempotent); effective at once in this process
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { issueApiKey } from '../../core/api-keys.ts';
import { ERR, VigilError } from '../../core/errors.ts';
import type { Store } from '../../storage/types.ts';
import type { ApiKeyCache } from '../auth.ts';

const createSchema = z.object({ name: z.string(), role: z.string() }).strict();
const admin = { config: { role: 'admin', internal: true } } as const;

export function keyRoutes(app: FastifyInstance, store: Store, cache: ApiKeyCache): void {
  app.get('/api/keys', admin, async () => ({ items: await store.listApiKeys() }));

  app.post('/api/keys', admin, async (req, reply) => {
    const parsed = createSchema.safeParse(req.body);
    if (!parsed.success) throw new VigilError(ERR.BAD_REQUEST, 'invalid body: expected a JSON object {name, role}', 400);
    const { key, info } = await issueApiKey(store, parsed.data.name, parsed.data.role);
    return reply.status(201).send({ ...info, key });
  });

  app.delete<{ Params: { id: string } }>('/api/keys/:id', admin, async (req) => {
    const revoked = await store.revokeApiKey(req.params.id);
    if (!revoked) throw new VigilError(ERR.NOT_FOUND, `no API key ${req.params.id}`, 404);
    cache.clear();
    return revoked;
  });
}
