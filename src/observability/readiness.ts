/**
 * Readiness (`GET /readyz`): named dependency checks, all of which must answer for the process to take
 * traffic. Liveness (`/healthz`) stays separate: a process whose store is down is alive but not ready.
 */

/** True when the dependency answers. A check that throws or takes longer than the timeout is down. */
export type ReadinessCheck = () => boolean | Promise<boolean>;

export interface ReadinessReport {
  ready: boolean;
  /** Every dependency checked, and whether it answered. */
  checks: Record<string, boolean>;
  /** The dependencies that did not answer. */
  down: string[];
}

export class Readiness {
  private readonly checks = new Map<string, ReadinessCheck>();

  /** Adds (or replaces) a named check; returns its removal. */
  set(name: string, check: ReadinessCheck): () => void {
    this.checks.set(name, check);
    return () => {
      if (this.checks.get(name) === check) this.checks.delete(name);
    };
  }

  delete(name: string): void {
    this.checks.delete(name);
  }

  names(): string[] {
    return [...this.checks.keys()];
  }

  /** Runs every check (concurrently, each bounded by timeoutMs). `extra` checks run too (e.g. the store ping). */
  async report(extra: Record<string, ReadinessCheck> = {}, timeoutMs = 2_000): Promise<ReadinessReport> {
    const all = [...Object.entries(extra), ...this.checks];
    const results = await Promise.all(all.map(([, check]) => runCheck(check, timeoutMs)));
    const checks: Record<string, boolean> = {};
    all.forEach(([name], i) => (checks[name] = results[i] as boolean));
    const down = Object.keys(checks).filter((n) => !checks[n]);
    return { ready: down.length === 0, checks, down };
  }
}

async function runCheck(check: ReadinessCheck, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      Promise.resolve().then(check).then((v) => v === true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
        timer.unref();
      }),
    ]);
  } catch {
    return false;
  } finally {
    if (timer) clearTimeout(timer);
  }
}
