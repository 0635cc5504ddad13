/**
 * One error shape for every route: `{ error: { code, message } }`. VigilError keeps its status and
 * code; zod errors are 400; fastify's own client errors (bad JSON, body too large, wrong content type)
 * keep their 4xx status; anything else is a 500 VIGIL_ERR_INTERNAL that says nothing of its cause
 * (the cause goes to the log).
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import { ZodError } from 'zod';
import { ERR, VigilError } from '../core/errors.ts';

export interface ErrorBody {
  error: { code: string; message: string };
}

export function toErrorReply(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof VigilError) return { status: err.statusCode, body: { error: { code: err.code, message: err.message } } };
  if (err instanceof ZodError) {
    const issue = err.issues[0];
    const where = issue && issue.path.length > 0 ? `'${issue.path.join('.')}': ` : '';
    return { status: 400, body: { error: { code: ERR.BAD_REQUEST, message: `invalid request: ${where}${issue?.message ?? 'invalid value'}` } } };
  }
  const fe = err as Partial<FastifyError>;
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  if (status >= 400 && status < 500) {
    const code = status === 413 ? ERR.PAYLOAD_TOO_LARGE : status === 404 ? ERR.NOT_FOUND : ERR.BAD_REQUEST;
    return { status, body: { error: { code, message: fe.message ?? 'bad request' } } };
  }
  return { status: 500, body: { error: { code: ERR.INTERNAL, message: 'internal error' } } };
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err, req, reply) => {
    const { status, body } = toErrorReply(err);
    if (status >= 500) req.log.error({ err }, 'request failed');
    return reply.status(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    const body: ErrorBody = { error: { code: ERR.NOT_FOUND, message: `no route ${req.method} ${req.url.split('?')[0]}` } };
    return reply.status(404).send(body);
  });
}
