// The newcomer's path: `vigil run` with nothing configured replays the bundled sample in real time.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { freePort, startVigil, stop, tempDir, vigil } from './helpers/cli.ts';

const dataDir = tempDir();
let port: number;
let proc: ReturnType<typeof startVigil>;

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

afterAll(async () => {
  if (proc) await stop(proc.child, 'SIGKILL');
});

describe('vigil run on the embedded default', () => {
  it('serves /healthz, streams live alerts and stores findings within 60 s', async () => {
    port = await freePort();
    const started = Date.now();
    proc = startVigil(['run'], { VIGIL_DATA_DIR: dataDir, PORT: String(port), VIGIL_LOG_LEVEL: 'info' });
    await waitFor('healthz', async () => ((await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200 ? true : undefined), 30_000);

    const ws = new WebSocket(`ws://127.0.0.1:${port}/api/alerts`);
    const alert = new Promise<{ type: string; finding: { id: string; detector: string; runId: string; ts: number } }>((resolve, reject) => {
      ws.on('message', (data) => {
        const msg = JSON.parse(String(data));
        if (msg.type === 'finding') resolve(msg);
      });
      ws.on('error', reject);
    });
    const got = await Promise.race([alert, new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`no alert in 60 s\n${proc.output()}`)), 60_000))]);
    expect(got.finding.detector).toBe('price_jump');
    expect(got.finding.runId).toBe('live');
    // The demo is rebased to now: the finding's event time is within the last minute.
    expect(Math.abs(Date.now() - got.finding.ts)).toBeLessThan(60_000);
    ws.close();

    const page = await waitFor(
      'a stored finding',
      async () => {
        const r = (await (await fetch(`http://127.0.0.1:${port}/api/findings?run=live`)).json()) as { items: { id: string }[]; total: number };
        return r.items.length > 0 ? r : undefined;
      },
      10_000,
    );
    expect(page.total).toBeGreaterThan(0);
    expect(page.items.map((f) => f.id)).toContain(got.finding.id);
    expect(Date.now() - started).toBeLessThan(60_000);
  }, 90_000);

  it('answers vigil sql through the running service, and refuses a second process on its store clearly', async () => {
    const r = await vigil(['sql', "SELECT count() FROM findings FINAL WHERE run_id = 'live'", '--format', 'tsv'], { VIGIL_DATA_DIR: dataDir });
    expect(r.code, r.stderr).toBe(0);
    expect(Number(r.stdout.trim().split('\n')[1])).toBeGreaterThan(0);

    const rep = await vigil(['replay', 'replays/demo-binance-btcusdt.jsonl.gz', '--run-id', 'x'], { VIGIL_DATA_DIR: dataDir });
    expect(rep.code).toBe(1);
    expect(rep.stderr).toMatch(/VIGIL_ERR_STORE_LOCKED: .*held by vigil run \(pid \d+/);
  }, 60_000);

  it('shuts down cleanly on SIGTERM, flushing findings', async () => {
    const code = await stop(proc.child, 'SIGTERM');
    expect(code).toBe(0);
    expect(existsSync(join(dataDir, 'vigil-service.json'))).toBe(false);
    const r = await vigil(['sql', "SELECT count() FROM findings FINAL WHERE run_id = 'live'", '--format', 'tsv'], { VIGIL_DATA_DIR: dataDir });
    expect(r.code, r.stderr).toBe(0);
    expect(Number(r.stdout.trim().split('\n')[1])).toBeGreaterThan(0);
  }, 60_000);
});
