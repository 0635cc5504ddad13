/** Progress of a long replay on stderr: events, events/s and, when the share done is known, an ETA. */
import { performance } from 'node:perf_hooks';
import type { IngestCounters } from '../pipeline/ingest.ts';

export interface ProgressReporter {
  /** `fraction`: share of the input read so far (0..1), when known. */
  tick(counters: IngestCounters, fraction?: number): void;
  done(): void;
}

export interface ProgressOptions {
  /** Quiet for runs shorter than this. */
  afterMs?: number;
  everyMs?: number;
  write?: (line: string) => void;
}

export function stderrProgress(label: string, options: ProgressOptions = {}): ProgressReporter {
  const start = performance.now();
  const afterMs = options.afterMs ?? 2000;
  const everyMs = options.everyMs ?? 1000;
  const write = options.write ?? ((l: string) => process.stderr.write(l));
  let next = start + afterMs;
  let printed = false;
  let calls = 0;
  return {
    tick(c, f) {
      // performance.now() is cheap but not free: look at the clock every 256 frames.
      if ((++calls & 255) !== 0) return;
      const now = performance.now();
      if (now < next) return;
      next = now + everyMs;
      const events = Object.values(c.events).reduce((a, b) => a + b, 0);
      const secs = (now - start) / 1000;
      const rate = events / secs;
      let tail = '';
      if (f !== undefined && f > 0 && f <= 1) {
        const eta = (secs / f) * (1 - f);
        tail = ` ${(f * 100).toFixed(1)}% ETA ${eta.toFixed(0)}s`;
      }
      write(`\r${label}: ${events.toLocaleString('en-US')} events, ${Math.round(rate).toLocaleString('en-US')} events/s${tail}   `);
      printed = true;
    },
    done() {
      if (printed) write('\n');
    },
  };
}
