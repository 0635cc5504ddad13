// The dashboard in a real browser: `vigil run` started as a user would (demo replay, API keys on),
// headless Chromium (Debian's package) driven by playwright-core. The page asks for a key, shows a
// live alert that arrives over the WebSocket, opens it and acknowledges it; the API shows the change.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type ConsoleMessage, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DASHBOARD_ASSETS } from '../src/api/routes/dashboard.ts';
import { freePort, startVigil, stop, tempDir, vigil } from './helpers/cli.ts';

const dataDir = tempDir('vigil-dashboard-');
const shotDir = tempDir('vigil-dashboard-shots-');
let proc: ReturnType<typeof startVigil> | undefined;
let browser: Browser | undefined;
let base = '';
let key = '';

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-sync', '--disable-component-update', '--no-first-run', '--disable-quic'];

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${proc?.output().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function apiGet<T>(path: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${key}` } });
  return { status: res.status, body: (await res.json()) as T };
}

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  proc = startVigil(['run'], { VIGIL_DATA_DIR: dataDir, PORT: String(port), HOST: '127.0.0.1', VIGIL_AUTH: 'on', VIGIL_LOG_LEVEL: 'warn' });
  await waitFor('healthz', async () => ((await fetch(`${base}/healthz`)).ok ? true : undefined), 45_000);
  // An analyst key, made through the running service (as `vigil keys create` does for a user).
  const created = await vigil(['keys', 'create', '--name', 'dashboard-test', '--role', 'analyst', '--json'], { VIGIL_DATA_DIR: dataDir });
  expect(created.code, created.stderr).toBe(0);
  key = (JSON.parse(created.stdout) as { key: string }).key;
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  if (proc) await stop(proc.child, 'SIGTERM');
  rmSync(dataDir, { recursive: true, force: true });
});

describe('the dashboard files', () => {
  it('serves the fixed list of files, public, with content types, cache headers, ETag and a self-only CSP', async () => {
    const index = await fetch(`${base}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = index.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:|\*/);
    expect(index.headers.get('x-content-type-options')).toBe('nosniff');
    expect(index.headers.get('cache-control')).toBe('no-cache');
    const html = await index.text();
    // Every file the page references is served (no file outside the list is asked for).
    for (const ref of html.matchAll(/(?:src|href)="(\/dashboard\/[^"]+)"/g)) expect(Object.keys(DASHBOARD_ASSETS)).toContain(ref[1]);

    const types: Record<string, RegExp> = { '.js': /^text\/javascript/, '.mjs': /^text\/javascript/, '.css': /^text\/css/, '.svg': /^image\/svg\+xml/ };
    for (const url of Object.keys(DASHBOARD_ASSETS).filter((u) => u !== '/')) {
      const res = await fetch(`${base}${url}`);
      expect(res.status, url).toBe(200);
      expect(res.headers.get('content-type'), url).toMatch(types[url.slice(url.lastIndexOf('.'))]!);
      expect((await res.arrayBuffer()).byteLength, url).toBeGreaterThan(100);
    }
    const lib = await fetch(`${base}/dashboard/vendor/lightweight-charts.mjs`);
    expect(lib.headers.get('cache-control')).toMatch(/max-age=\d+/);
    expect(await lib.text()).toContain('createChart');

    // Revalidation: the ETag gives a 304 with no body.
    const etag = (await fetch(`${base}/dashboard/app.js`)).headers.get('etag')!;
    expect(etag).toMatch(/^".+"$/);
    const again = await fetch(`${base}/dashboard/app.js`, { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect((await again.arrayBuffer()).byteLength).toBe(0);
  });

  it('serves nothing outside the list: traversal and unknown files get no file content', async () => {
    for (const path of ['/dashboard/../package.json', '/dashboard/%2e%2e/package.json', '/dashboard/..%2fpackage.json', '/dashboard/index.html', '/dashboard/nope.js', '/dashboard/vendor/', '/package.json']) {
      const res = await fetch(`${base}${path}`);
      const text = await res.text();
      expect([401, 404], path).toContain(res.status); // unknown paths need a key before their 404 (auth is on)
      expect(text, path).not.toContain('"dependencies"');
    }
    // The data stays behind the key.
    expect((await fetch(`${base}/api/findings`)).status).toBe(401);
  });
});

describe('in the browser', () => {
  let page: Page;
  const consoleErrors: string[] = [];
  const pageErrors: string[] = [];
  let keyEntered = false;
  /** Finding ids that came in over the page's WebSocket. */
  const wsFindingIds: string[] = [];

  it('asks for the API key, sees a live alert arrive, opens it and acknowledges it', async () => {
    page = await browser!.newPage({ viewport: { width: 1440, height: 900 } });
    page.on('console', (m: ConsoleMessage) => {
      if (m.type() !== 'error') return;
      // Before a key is entered the API's 401s are expected (they are what opens the key prompt).
      if (!keyEntered && /status of 401/.test(m.text())) return;
      consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('websocket', (ws) => {
      ws.on('framereceived', (frame) => {
        const msg = JSON.parse(String(frame.payload)) as { type: string; finding?: { id: string } };
        if (msg.type === 'finding' && msg.finding) wsFindingIds.push(msg.finding.id);
      });
    });

    await page.goto(`${base}/`);
    // No key yet: the API answers 401 and the page asks for one.
    const dialog = page.getByTestId('key-dialog');
    await dialog.waitFor({ state: 'visible', timeout: 15_000 });
    await expect.poll(() => page.getByTestId('connection-state').getAttribute('data-state'), { timeout: 10_000 }).toBe('unauthorized');
    keyEntered = true;
    await page.getByTestId('key-input').fill(key);
    await page.getByTestId('key-save').click();
    await dialog.waitFor({ state: 'hidden' });
    expect(await page.evaluate("localStorage.getItem('vigil.apiKey')")).toBe(key);
    await expect.poll(() => page.getByTestId('connection-state').getAttribute('data-state'), { timeout: 15_000 }).toBe('live');

    // What the feed held once connected; the demo's first finding comes ~30 s after start.
    const before = await Promise.all((await page.getByTestId('alert-item').all()).map((item) => item.getAttribute('data-finding-id')));
    const firstLive = page.locator('[data-testid="alert-item"][data-source="live"]').first();
    await firstLive.waitFor({ state: 'visible', timeout: 90_000 });
    const id = (await firstLive.getAttribute('data-finding-id'))!;
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    const live = page.locator(`[data-testid="alert-item"][data-finding-id="${id}"]`);
    // It arrived over the WebSocket after the page loaded, and live alerts go on top of the feed.
    expect(before).not.toContain(id);
    expect(wsFindingIds).toContain(id);
    expect(await page.getByTestId('alert-item').first().getAttribute('data-source')).toBe('live');

    const stored = await waitFor(
      'the finding in the store',
      async () => {
        const r = await apiGet<{ summary: string; detector: string; workflow: { status: string } }>(`/api/findings/${id}`);
        return r.status === 200 ? r.body : undefined;
      },
      15_000,
    );
    expect(stored.workflow.status).toBe('open');

    // Open it: summary, evidence, workflow.
    await live.click();
    const detail = page.getByTestId('finding-detail');
    await detail.waitFor({ state: 'visible' });
    expect(await detail.getAttribute('data-finding-id')).toBe(id);
    expect(await page.getByTestId('detail-summary').textContent()).toBe(stored.summary);
    const observed = page.getByTestId('evidence-observed');
    await observed.waitFor();
    expect(await observed.locator('dt').allTextContents()).toContain('z');
    await expect.poll(() => page.getByTestId('workflow-status').getAttribute('data-status'), { timeout: 10_000 }).toBe('open');
    await expect.poll(() => page.getByTestId('history').textContent(), { timeout: 10_000 }).toContain('Nothing done yet');

    // The price chart drew bars (no "no prices" note) on its canvas, and the context chart rendered.
    await expect.poll(async () => Number(await page.getByTestId('price-chart').getAttribute('data-bars')), { timeout: 20_000 }).toBeGreaterThan(0);
    expect(await page.locator('#price-empty').isHidden()).toBe(true);
    await page.getByTestId('context-chart').locator('canvas').first().waitFor({ timeout: 20_000 });
    // Painted (non-transparent) pixels on the price chart's canvases; evaluated in the page (DOM types are not in this project's lib).
    const painted = await page.evaluate<number>(`(() => {
      let n = 0;
      for (const c of document.querySelectorAll('#price-chart canvas')) {
        const ctx = c.getContext('2d');
        if (!ctx || c.width === 0 || c.height === 0) continue;
        const data = ctx.getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
      }
      return n;
    })()`);
    expect(painted).toBeGreaterThan(1000);

    // Acknowledge with a note.
    await page.getByTestId('action-note').fill('looking into it');
    await page.getByTestId('action-acknowledge').click();
    await expect.poll(() => page.getByTestId('workflow-status').getAttribute('data-status'), { timeout: 15_000 }).toBe('acknowledged');
    await expect.poll(() => page.locator(`[data-testid="alert-item"][data-finding-id="${id}"]`).getAttribute('data-status'), { timeout: 10_000 }).toBe('acknowledged');
    await expect.poll(() => page.locator('[data-testid="history-item"][data-to-status="acknowledged"]').count(), { timeout: 10_000 }).toBe(1);

    // The API shows the change, by this key.
    const after = await apiGet<{ workflow: { status: string; updatedBy: string | null } }>(`/api/findings/${id}`);
    expect(after.status).toBe(200);
    expect(after.body.workflow.status).toBe('acknowledged');
    expect(after.body.workflow.updatedBy).toContain('dashboard-test');
    const history = await apiGet<{ items: { action: string; fromStatus: string | null; toStatus: string | null; note: string | null; actor: string }[] }>(`/api/findings/${id}/history`);
    expect(history.status).toBe(200);
    expect(history.body.items).toContainEqual(expect.objectContaining({ action: 'status', fromStatus: 'open', toStatus: 'acknowledged', note: 'looking into it' }));

    const shot = join(shotDir, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    process.stdout.write(`dashboard screenshot: ${shot}\n`);

    expect(pageErrors).toEqual([]);
    expect(consoleErrors).toEqual([]);
  }, 180_000);
});
