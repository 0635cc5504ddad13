/**
 * The snoozes in force, in memory, for the live alert path: findings a snooze covers are still detected
 * and stored (what the detectors said stays deterministic and auditable) but kept out of live alerts
 * and notifications by `filter`.
 *
 * `start()` loads the active snoozes and reloads them every `refreshMs` (default 5 s), which is how a
 * snooze made or cancelled through another API process (or one that expired) reaches this one; the
 * snooze routes of this process apply their change at once (`put`) and reload.
 *
 * Lookup is a few map probes per finding: snoozes are indexed by (rule id or detector) × (venue+symbol,
 * symbol on any venue, or account), and a finding probes the at most 2 × 3 keys it could match.
 */
import type { Finding } from '../core/events.ts';
import type { Store } from '../storage/types.ts';
import { snoozeActive, snoozeCovers, type Snooze } from '../storage/workflow.ts';

export interface SnoozeBookOptions {
  /** How often the active snoozes are reloaded; default 5000 ms. */
  refreshMs?: number;
  /** Where a failed reload is reported (the previous snoozes stay in force). */
  log?: (msg: string) => void;
}

type Matchable = Pick<Finding, 'detector' | 'ruleId' | 'symbol' | 'venue' | 'account'>;

const SEP = '\u0000';

function selectorKey(s: Snooze): string {
  // A snooze naming both a rule and a detector is indexed by the rule and checked for the detector.
  return s.ruleId !== null ? `r${SEP}${s.ruleId}` : `d${SEP}${s.detector ?? ''}`;
}

function entityKey(s: Snooze): string {
  // A snooze naming both a symbol and an account is indexed by the symbol and checked for the account.
  return s.symbol !== null ? `s${SEP}${s.venue ?? ''}${SEP}${s.symbol}` : `a${SEP}${s.account ?? ''}`;
}

export class SnoozeBook {
  private readonly byId = new Map<string, Snooze>();
  private readonly index = new Map<string, Snooze[]>();
  private readonly refreshMs: number;
  private timer: NodeJS.Timeout | undefined;
  private started = 0;
  private applied = 0;
  /** Findings kept out by `suppresses` and `filter` since the book was made. */
  suppressed = 0;

  constructor(
    private readonly store: Pick<Store, 'listSnoozes'>,
    private readonly options: SnoozeBookOptions = {},
  ) {
    this.refreshMs = options.refreshMs ?? 5_000;
  }

  /** Loads the active snoozes, then keeps reloading them. A failed first load rejects. */
  async start(): Promise<void> {
    await this.refresh();
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.refresh().catch((e: unknown) => this.options.log?.(`snoozes: reload failed, keeping the previous ones: ${(e as Error)?.message ?? String(e)}`));
    }, this.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Reloads the active snoozes; a reload started earlier that ends later is discarded. */
  async refresh(): Promise<void> {
    const generation = ++this.started;
    const active = await this.store.listSnoozes({ active: true, limit: 10_000 });
    if (generation <= this.applied) return;
    this.applied = generation;
    this.byId.clear();
    this.index.clear();
    for (const s of active) this.put(s);
  }

  /** Adds or replaces a snooze (a cancelled one is removed): a change made in this process applies at once. */
  put(s: Snooze): void {
    this.remove(s.id);
    if (s.cancelledAt !== null) return;
    this.byId.set(s.id, s);
    const key = `${selectorKey(s)}${SEP}${SEP}${entityKey(s)}`;
    const list = this.index.get(key);
    if (list) list.push(s);
    else this.index.set(key, [s]);
  }

  remove(id: string): void {
    const s = this.byId.get(id);
    if (!s) return;
    this.byId.delete(id);
    const key = `${selectorKey(s)}${SEP}${SEP}${entityKey(s)}`;
    const list = this.index.get(key)?.filter((x) => x.id !== id);
    if (list && list.length > 0) this.index.set(key, list);
    else this.index.delete(key);
  }

  /** The snoozes held (active when loaded; expired ones leave at the next reload). */
  get size(): number {
    return this.byId.size;
  }

  /** The snooze in force at `now` that covers the finding, if any. */
  matches(f: Matchable, now = Date.now()): Snooze | undefined {
    if (this.index.size === 0) return undefined;
    const selectors = [`r${SEP}${f.ruleId}`, `d${SEP}${f.detector}`];
    const entities: string[] = [];
    if (f.symbol !== undefined) {
      entities.push(`s${SEP}${SEP}${f.symbol}`);
      if (f.venue !== undefined) entities.push(`s${SEP}${f.venue}${SEP}${f.symbol}`);
    }
    if (f.account !== undefined) entities.push(`a${SEP}${f.account}`);
    for (const sel of selectors) {
      for (const ent of entities) {
        const list = this.index.get(`${sel}${SEP}${SEP}${ent}`);
        if (!list) continue;
        for (const s of list) if (snoozeActive(s, now) && snoozeCovers(s, f)) return s;
      }
    }
    return undefined;
  }

  /** Whether a snooze covers the finding now, counted in `suppressed` when one does (the live feed's hook). */
  suppresses(f: Matchable, now = Date.now()): boolean {
    if (this.matches(f, now) === undefined) return false;
    this.suppressed++;
    return true;
  }

  /** The findings no snooze covers (the same array when none does). */
  filter<F extends Matchable>(findings: readonly F[], now = Date.now()): F[] {
    if (this.index.size === 0) return findings as F[];
    const kept = findings.filter((f) => this.matches(f, now) === undefined);
    this.suppressed += findings.length - kept.length;
    return kept.length === findings.length ? (findings as F[]) : kept;
  }
}
