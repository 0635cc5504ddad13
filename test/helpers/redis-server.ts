/**
 * A private redis-server for tests that stop and restart Redis: shutting down the shared instance on
 * 6379 would pull it from under every other test file running at the same time.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { createClient } from 'redis';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export class PrivateRedis {
  private child: ChildProcess | undefined;
  private constructor(readonly port: number) {}

  static async start(): Promise<PrivateRedis> {
    const r = new PrivateRedis(await freePort());
    await r.up();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts the server (nothing on disk: --save "" --appendonly no) and waits until it answers PING. */
  async up(): Promise<void> {
    const child = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(this.port), '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    this.child = child;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`redis-server on ${this.port} exited with ${child.exitCode}`);
      if (this.cli('ping').stdout.trim() === 'PONG') return;
      if (Date.now() > deadline) throw new Error(`redis-server on ${this.port} did not answer within 10 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** `redis-cli shutdown nosave`, then waits for the process to be gone. */
  async shutdown(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    this.cli('shutdown', 'nosave');
    await exited;
  }

  cli(...args: string[]): { status: number | null; stdout: string } {
    const r = spawnSync('redis-cli', ['-p', String(this.port), ...args], { encoding: 'utf8', timeout: 5_000 });
    return { status: r.status, stdout: r.stdout ?? '' };
  }

  /** Kills the server if it still runs (test teardown). */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  }
}

/** A plain client on a URL, for inspecting what the store wrote. */
export async function inspector(url: string) {
  const c = createClient({ url });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}
