/**
 * POST /api/sql: analyst SQL against the store (read-only, row and time limits enforced by the
 * store). Needs an analyst key, or the per-process service token in `x-vigil-sql-token` (checked by
 * the auth hook, src/api/auth.ts), even with auth off; with auth off and no token configured the
 * route answers 404. This is how `vigil sql` reaches a running `vigil run` that holds the embedded store.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { ERR, VigilError } from '../../core/errors.ts';
import { SQL_FORMATS, type SqlFormat, type Store } from '../../storage/types.ts';

const bodySchema = z
  .object({
    query: z.string().min(1).max(100_000),
    format: z.enum(SQL_FORMATS as [SqlFormat, ...SqlFormat[]]).default('TabSeparatedWithNames'),
  })
  .strict();

const EXPECTED: Record<string, string> = {
  query: 'a SQL string of 1-100000 characters',
  format: `one of ${SQL_FORMATS.join(', ')}`,
  body: 'a JSON object {query, format?}',
};

const CONTENT_TYPES: Record<SqlFormat, string> = {
  JSON: 'application/json; charset=utf-8',
  JSONEachRow: 'application/x-ndjson; charset=utf-8',
  CSVWithNames: 'text/csv; charset=utf-8',
  TabSeparatedWithNames: 'text/tab-separated-values; charset=utf-8',
  PrettyCompact: 'text/plain; charset=utf-8',
};

export function sqlRoutes(app: FastifyInstance, store: Store): void {
  app.post('/api/sql', { config: { role: 'analyst', internal: true } }, async (req, reply) => {
    const parsed = bodySchema.safeParse(req.body);
    if (!parsed.success) {
      const field = String(parsed.error.issues[0]?.path[0] ?? 'body');
      throw new VigilError(ERR.BAD_REQUEST, `invalid body field '${field}': expected ${EXPECTED[field] ?? EXPECTED.body}`, 400, { parameter: field });
    }
    const text = await store.sql(parsed.data.query, parsed.data.format);
    return reply.type(CONTENT_TYPES[parsed.data.format]).send(text);
  });
}
