/**
 * The dashboard: a static page (src/api/dashboard/, plain ES modules, no build step) and TradingView's
 * lightweight-charts from node_modules. Only the files listed here are served, each at its own route,
 * so no request path ever reaches the file system. The files are public (a browser must load the page
 * before it can ask for a key); the data comes from the API, which checks keys.
 *
 * Every answer carries a Content-Security-Policy that allows only this origin (scripts, styles,
 * images, fetch and the alert WebSocket), an ETag (304 on If-None-Match) and a cache policy: the
 * page's own files are revalidated on every load (they change with the service), the pinned chart
 * library may be reused for an hour. Bodies are gzipped for clients that accept it.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

const DASHBOARD_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'dashboard');
const CHARTS_FILE = join(dirname(createRequire(import.meta.url).resolve('lightweight-charts/package.json')), 'dist', 'lightweight-charts.standalone.production.mjs');

const JS = 'text/javascript; charset=utf-8';

/** URL → file and content type: the complete list of what the dashboard routes serve. */
export const DASHBOARD_ASSETS: Readonly<Record<string, { file: string; type: string; cache: string }>> = {
  '/': { file: join(DASHBOARD_DIR, 'index.html'), type: 'text/html; charset=utf-8', cache: 'no-cache' },
  '/dashboard/style.css': { file: join(DASHBOARD_DIR, 'style.css'), type: 'text/css; charset=utf-8', cache: 'no-cache' },
  '/dashboard/favicon.svg': { file: join(DASHBOARD_DIR, 'favicon.svg'), type: 'image/svg+xml', cache: 'public, max-age=86400' },
  '/dashboard/app.js': { file: join(DASHBOARD_DIR, 'app.js'), type: JS, cache: 'no-cache' },
  '/dashboard/api.js': { file: join(DASHBOARD_DIR, 'api.js'), type: JS, cache: 'no-cache' },
  '/dashboard/ui.js': { file: join(DASHBOARD_DIR, 'ui.js'), type: JS, cache: 'no-cache' },
  '/dashboard/feed.js': { file: join(DASHBOARD_DIR, 'feed.js'), type: JS, cache: 'no-cache' },
  '/dashboard/charts.js': { file: join(DASHBOARD_DIR, 'charts.js'), type: JS, cache: 'no-cache' },
  '/dashboard/detail.js': { file: join(DASHBOARD_DIR, 'detail.js'), type: JS, cache: 'no-cache' },
  '/dashboard/vendor/lightweight-charts.mjs': { file: CHARTS_FILE, type: JS, cache: 'public, max-age=3600' },
};

/** Whether a route is one of the dashboard's static files (not part of the API: no OpenAPI entry). */
export function isDashboardUrl(url: string): boolean {
  return Object.hasOwn(DASHBOARD_ASSETS, url);
}

/** Only this origin: no inline script or style, no third-party host; `'self'` covers ws:/wss: to this host. */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

interface LoadedAsset {
  body: Buffer;
  gzipped?: Buffer;
  etag: string;
  type: string;
  cache: string;
}

function load(asset: { file: string; type: string; cache: string }): LoadedAsset {
  const body = readFileSync(asset.file);
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
  return { body, etag, type: asset.type, cache: asset.cache };
}

function acceptsGzip(req: FastifyRequest): boolean {
  const v = req.headers['accept-encoding'];
  return typeof v === 'string' && /\bgzip\b/.test(v);
}

function send(req: FastifyRequest, reply: FastifyReply, asset: LoadedAsset): FastifyReply {
  reply
    .header('content-type', asset.type)
    .header('cache-control', asset.cache)
    .header('etag', asset.etag)
    .header('vary', 'accept-encoding')
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY');
  const match = req.headers['if-none-match'];
  if (typeof match === 'string' && match.split(',').some((t) => t.trim() === asset.etag)) return reply.status(304).send();
  if (acceptsGzip(req) && asset.body.length > 1024) {
    asset.gzipped ??= gzipSync(asset.body); // once per asset, on first use
    return reply.header('content-encoding', 'gzip').send(asset.gzipped);
  }
  return reply.send(asset.body);
}

/** GET / (the page) and GET /dashboard/* (its files): read once at start, so a missing file fails start-up. */
export function dashboardRoutes(app: FastifyInstance): void {
  for (const [url, asset] of Object.entries(DASHBOARD_ASSETS)) {
    const loaded = load(asset);
    app.get(url, { config: { role: 'public' } }, async (req, reply) => send(req, reply, loaded));
  }
}
