/**
 * Who may call what: API keys with roles, the service token, rate limiting and CORS.
 *
 * Every route declares the least role it needs in its route config, next to the route:
 * `{ config: { role: 'viewer' } }` (viewer < analyst < admin; `public`: no key — /healthz, /readyz,
 * /metrics, the CORS preflight). One onRequest hook checks it. With auth on, every non-public route needs `Authorization: Bearer <key>` or
 * `x-api-key: <key>`: 401 VIGIL_ERR_UNAUTHORIZED without a key or with an unknown or revoked one, 403
 * VIGIL_ERR_FORBIDDEN for a role too low — and for a route that declares no role (fail closed); an
 * unknown path needs a viewer key before it gets its 404. Routes marked `internal` (SQL, key
 * management) need a credential even with auth off. The per-process service token (`x-vigil-sql-token`,
 * which `vigil sql` and `vigil keys` read from <dataDir>/vigil-service.json) is an admin-equivalent
 * credential; a wrong one is a 403.
 *
 * Keys are looked up by their SHA-256 through a cache (default 5 s): a revocation made through this
 * process takes effect at once (the cache is cleared); one made elsewhere (another API process on a
 * shared ClickHouse, or `vigil keys revoke` against the store directly) within the cache time.
 *
 * Rate limit (@fastify/rate-limit, in memory, per process): N requests per minute per key, or per
 * client IP without a (valid) key — failed authentications count against the IP. Beyond: 429
 * VIGIL_ERR_RATE_LIMITED with Retry-After. Public routes are not limited.
 */
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyContextConfig, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SERVICE_TOKEN_HEADER, hashApiKey, roleAtLeast, type ApiKeyInfo, type Role } from '../core/api-keys.ts';
import { authEnabled, corsOrigins, type Config } from '../core/config.ts';
import { ERR, VigilError } from '../core/errors.ts';
import type { Store } from '../storage/types.ts';

export type RouteRole = Role | 'public';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The least role a caller needs; `public`: no credential. None declared: refused when auth is on. */
    role?: RouteRole;
    /** Needs a credential (service token or API key) even with auth off. */
    internal?: boolean;
  }
}

export { SERVICE_TOKEN_HEADER };
export const API_KEY_HEADER = 'x-api-key';
/**
 * The query parameter carrying an API key, accepted only on the live routes below: browsers cannot set
 * headers on a WebSocket or an EventSource. Anywhere else it is refused (401), so keys do not spread
 * into URLs (proxy logs, browser history) beyond where they are unavoidable; logs redact it.
 */
export const ACCESS_TOKEN_PARAM = 'access_token';
export const QUERY_TOKEN_ROUTES: ReadonlySet<string> = new Set(['GET /api/alerts', 'GET /api/alerts/stream']);
export const KEY_CACHE_MS = 5_000;

export interface SecurityOptions {
  /** Require API keys (VIGIL_AUTH). */
  auth: boolean;
  /** Requests per minute per key (per IP without one); 0 or absent: no limit. */
  rateLimitPerMinute?: number;
  /** Browser origins allowed (CORS); empty or absent: no CORS headers. `*`: any. */
  corsOrigins?: string[];
  /** How long a key lookup is reused; default 5 s. */
  keyCacheMs?: number;
}

export function securityFromConfig(config: Config): SecurityOptions {
  return { auth: authEnabled(config), rateLimitPerMinute: config.VIGIL_RATE_LIMIT, corsOrigins: corsOrigins(config) };
}

export interface Principal {
  kind: 'key' | 'service';
  id: string;
  name: string;
  role: Role;
}

const SERVICE: Principal = { kind: 'service', id: 'service', name: 'service', role: 'admin' };
const principals = new WeakMap<FastifyRequest, Principal>();

/** The authenticated caller of a request, if any. */
export function principalOf(req: FastifyRequest): Principal | undefined {
  return principals.get(req);
}

/** `api`, or `api:<key name>` for a request made with a key (recorded as the actor of rules changes). */
export function actorOf(req: FastifyRequest): string {
  const p = principals.get(req);
  return p ? `api:${p.name}` : 'api';
}

/** Key lookups by hash, reused for `ttlMs`; bounded in size (oldest first out). */
export class ApiKeyCache {
  private readonly entries = new Map<string, { at: number; value: Promise<ApiKeyInfo | undefined> }>();

  constructor(
    private readonly store: Pick<Store, 'findApiKeyByHash'>,
    readonly ttlMs = KEY_CACHE_MS,
    private readonly maxEntries = 10_000,
  ) {}

  find(keyHash: string): Promise<ApiKeyInfo | undefined> {
    const now = Date.now();
    const hit = this.entries.get(keyHash);
    if (hit && now - hit.at < this.ttlMs) return hit.value;
    this.entries.delete(keyHash);
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    const value = this.store.findApiKeyByHash(keyHash);
    this.entries.set(keyHash, { at: now, value });
    value.catch(() => {
      if (this.entries.get(keyHash)?.value === value) this.entries.delete(keyHash);
    });
    return value;
  }

  clear(): void {
    this.entries.clear();
  }
}

export interface RegisteredRoute {
  method: string;
  url: string;
  role: RouteRole | undefined;
}
const registries = new WeakMap<FastifyInstance, RegisteredRoute[]>();

/** Every route registered on an app built by buildApi, with its declared role. */
export function registeredRoutes(app: FastifyInstance): readonly RegisteredRoute[] {
  return registries.get(app) ?? [];
}

type Outcome = { principal: Principal } | { error: VigilError };

/** Installs CORS, the rate limiter and the auth hook; call before registering routes. */
export async function installSecurity(app: FastifyInstance, store: Store, serviceToken: string | undefined, options: SecurityOptions = { auth: false }): Promise<ApiKeyCache> {
  const cache = new ApiKeyCache(store, options.keyCacheMs ?? KEY_CACHE_MS);
  const routes: RegisteredRoute[] = [];
  registries.set(app, routes);
  app.addHook('onRoute', (r) => {
    // The CORS preflight route: browsers send preflights without credentials.
    if (r.url === '*' && r.method === 'OPTIONS' && r.config?.role === undefined) r.config = { ...r.config, role: 'public' };
    for (const method of [r.method].flat()) routes.push({ method, url: r.url, role: r.config?.role });
  });

  const origins = options.corsOrigins ?? [];
  if (origins.length > 0) {
    await app.register(cors, {
      origin: origins.includes('*') ? '*' : origins,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'],
      allowedHeaders: ['authorization', API_KEY_HEADER, 'content-type', 'last-event-id'],
      exposedHeaders: ['retry-after', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'],
      maxAge: 600,
    });
  }

  const perMinute = options.rateLimitPerMinute ?? 0;
  let limit: ((req: FastifyRequest) => ReturnType<ReturnType<FastifyInstance['createRateLimit']>>) | undefined;
  if (perMinute > 0) {
    await app.register(rateLimit, { global: false });
    limit = app.createRateLimit({
      max: perMinute,
      timeWindow: 60_000,
      keyGenerator: (req) => {
        const p = principals.get(req);
        return p ? `key:${p.id}` : `ip:${req.ip}`;
      },
    });
  }

  const authenticate = async (req: FastifyRequest): Promise<Outcome> => {
    const token = header(req, SERVICE_TOKEN_HEADER);
    if (token !== undefined) {
      if (serviceToken && sameSecret(token, serviceToken)) return { principal: SERVICE };
      return { error: new VigilError(ERR.FORBIDDEN, `wrong ${SERVICE_TOKEN_HEADER}`, 403) };
    }
    let key = header(req, API_KEY_HEADER);
    const authorization = header(req, 'authorization');
    if (key === undefined && authorization !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
      if (!m) return { error: new VigilError(ERR.UNAUTHORIZED, 'Authorization: expected "Bearer <API key>"', 401) };
      key = m[1]!;
    }
    if (key === undefined) {
      const fromQuery = queryToken(req);
      if (fromQuery !== undefined && !QUERY_TOKEN_ROUTES.has(`${req.method} ${req.routeOptions.url}`)) {
        return { error: new VigilError(ERR.UNAUTHORIZED, `${ACCESS_TOKEN_PARAM} in the query string is accepted only on ${[...QUERY_TOKEN_ROUTES].join(' and ')}: send "Authorization: Bearer <key>"`, 401) };
      }
      if (fromQuery === null) return { error: new VigilError(ERR.UNAUTHORIZED, `${ACCESS_TOKEN_PARAM}: expected one API key`, 401) };
      key = fromQuery;
    }
    if (key === undefined) return { error: new VigilError(ERR.UNAUTHORIZED, `missing API key: send "Authorization: Bearer <key>" or "${API_KEY_HEADER}: <key>"`, 401) };
    const info = await cache.find(hashApiKey(key));
    if (!info) return { error: new VigilError(ERR.UNAUTHORIZED, 'unknown API key', 401) };
    if (info.revokedAt !== undefined) return { error: new VigilError(ERR.UNAUTHORIZED, `API key ${info.id} was revoked`, 401) };
    return { principal: { kind: 'key', id: info.id, name: info.name, role: info.role } };
  };

  app.addHook('onRequest', async (req, reply) => {
    const config: FastifyContextConfig = req.is404 ? { role: 'viewer' } : req.routeOptions.config;
    const role = config.role;
    if (role === 'public') return;
    const enforce = options.auth || config.internal === true;
    if (enforce && !options.auth && !serviceToken) {
      throw new VigilError(ERR.NOT_FOUND, `${req.method} ${req.routeOptions.url} is disabled: it needs a credential, and this process has neither API keys (VIGIL_AUTH) nor a service token`, 404);
    }
    const outcome = enforce ? await authenticate(req) : undefined;
    if (outcome && 'principal' in outcome) principals.set(req, outcome.principal);
    if (limit) await applyLimit(limit, req, reply);
    if (!outcome) return;
    if ('error' in outcome) throw outcome.error;
    const who = outcome.principal;
    if (role === undefined) throw new VigilError(ERR.FORBIDDEN, `${req.method} ${req.routeOptions.url} declares no role: refused`, 403);
    if (!roleAtLeast(who.role, role)) {
      throw new VigilError(ERR.FORBIDDEN, `${req.method} ${req.routeOptions.url} needs role ${role}; key ${who.id} (${who.name}) has role ${who.role}`, 403);
    }
  });

  if (options.auth) {
    app.addHook('onReady', async () => {
      const keys = await store.listApiKeys().catch(() => undefined);
      if (keys && !keys.some((k) => k.revokedAt === undefined)) {
        app.log.warn('API auth is on and no API key exists yet: create the first admin key with `vigil keys create --role admin` (run where VIGIL_DATA_DIR / CLICKHOUSE_URL point at this store)');
      }
    });
  }
  return cache;
}

async function applyLimit(limit: (req: FastifyRequest) => ReturnType<ReturnType<FastifyInstance['createRateLimit']>>, req: FastifyRequest, reply: FastifyReply): Promise<void> {
  const r = await limit(req);
  if (r.isAllowed) return;
  reply.header('x-ratelimit-limit', r.max).header('x-ratelimit-remaining', r.remaining).header('x-ratelimit-reset', r.ttlInSeconds);
  if (!r.isExceeded) return;
  reply.header('retry-after', r.ttlInSeconds);
  throw new VigilError(ERR.RATE_LIMITED, `rate limit of ${r.max} requests per minute exceeded; retry in ${r.ttlInSeconds} s`, 429);
}

/** The access_token query parameter: undefined when absent, null when not one non-empty string. */
function queryToken(req: FastifyRequest): string | null | undefined {
  const q = req.query as Record<string, unknown> | undefined;
  const v = q?.[ACCESS_TOKEN_PARAM];
  if (v === undefined) return undefined;
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : null;
}

/**
 * Fastify's request log serializer, with the access_token query parameter's value replaced: the URL
 * of every request is logged ("incoming request"), and a key must never reach the logs.
 */
export function redactedRequest(req: FastifyRequest): Record<string, unknown> {
  return {
    method: req.method,
    url: redactAccessToken(req.url),
    version: req.headers?.['accept-version'],
    host: req.host,
    remoteAddress: req.ip,
    remotePort: req.socket ? req.socket.remotePort : undefined,
  };
}

/** A URL with the value of every access_token parameter (its name decoded as the query parser does) replaced by [redacted]. */
export function redactAccessToken(url: string): string {
  const q = url.indexOf('?');
  if (q === -1) return url;
  const parts = url.slice(q + 1).split('&').map((part) => {
    const eq = part.indexOf('=');
    const name = eq === -1 ? part : part.slice(0, eq);
    return decodedName(name) === ACCESS_TOKEN_PARAM ? `${name}=[redacted]` : part;
  });
  return `${url.slice(0, q + 1)}${parts.join('&')}`;
}

function decodedName(name: string): string {
  try {
    return decodeURIComponent(name.replace(/\+/g, ' '));
  } catch {
    return name;
  }
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s.trim() === '' ? undefined : s.trim();
}

function sameSecret(given: string, expected: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}
