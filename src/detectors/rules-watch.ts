/**
 * The rules in force, and their changes: loaded at start, reloaded when the file changes on disk (any
 * editor's way of saving: in place or by rename) and when the API replaces or reloads them. A file that
 * fails validation changes nothing: the rules in force stay, and the error is kept for the API to show.
 * Each change that takes effect goes to the listeners with its diff — the runner swaps its detectors,
 * the store side records it.
 */
import { watch, type FSWatcher } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { buildRuleSet, diffRules, loadRulesFile, withDetectorOverrides, type RuleChange, type RuleSet } from './rules.ts';

export interface RulesControllerOptions {
  path: string;
  /** `detectors.<name>` of the config file, applied over the file's rules. */
  overrides?: Record<string, Record<string, unknown>>;
  /** Called for each change that takes effect (also the initial load, actor `start`). */
  onChange?: (change: RuleChange, set: RuleSet) => void | Promise<void>;
  log?: (message: string, extra?: Record<string, unknown>) => void;
  /** Quiet time after a file event before reading (editors write in several steps). */
  debounceMs?: number;
}

export class RulesController {
  private set_: RuleSet;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners: Array<NonNullable<RulesControllerOptions['onChange']>> = [];
  /** The last reload that failed (cleared by the next one that works). */
  lastError: { at: number; message: string } | undefined;
  loadedAt: number;
  /** Serializes reloads and replacements. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: RulesControllerOptions) {
    this.set_ = this.read();
    this.loadedAt = Date.now();
    if (options.onChange) this.listeners.push(options.onChange);
  }

  get current(): RuleSet {
    return this.set_;
  }

  get path(): string {
    return this.options.path;
  }

  /** Adds a listener; returns its removal. */
  onChange(listener: NonNullable<RulesControllerOptions['onChange']>): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** The initial load as a change (actor `start`), for listeners that record it. */
  async announce(): Promise<void> {
    await this.emit({ at: Date.now(), version: this.set_.version, actor: 'start', origin: this.options.path, diff: diffRules(undefined, this.set_.file), rules: this.set_.file }, this.set_);
  }

  private read(): RuleSet {
    const set = loadRulesFile(this.options.path);
    const overrides = this.options.overrides ?? {};
    if (Object.keys(overrides).length === 0) return set;
    return buildRuleSet(withDetectorOverrides(set.file, overrides), `${this.options.path} + config detectors`);
  }

  private async emit(change: RuleChange, set: RuleSet): Promise<void> {
    for (const l of [...this.listeners]) await l(change, set);
  }

  private async apply(next: RuleSet, actor: string, origin: string): Promise<RuleChange | undefined> {
    const prev = this.set_;
    if (next.version === prev.version) return undefined;
    const change: RuleChange = { at: Date.now(), version: next.version, previousVersion: prev.version, actor, origin, diff: diffRules(prev.file, next.file), rules: next.file };
    this.set_ = next;
    this.loadedAt = change.at;
    this.lastError = undefined;
    this.options.log?.(`rules ${prev.version} → ${next.version} (${actor}): ${change.diff.length} change(s)`, { diff: change.diff.map((d) => `${d.op} ${d.path}`) });
    await this.emit(change, next);
    return change;
  }

  /** Reads the file again; resolves with the change, or undefined when nothing changed. Rejects when invalid. */
  reload(actor = 'file'): Promise<RuleChange | undefined> {
    const run = this.chain.then(async () => {
      let next: RuleSet;
      try {
        next = this.read();
      } catch (err) {
        this.lastError = { at: Date.now(), message: (err as Error).message };
        throw err;
      }
      return this.apply(next, actor, this.options.path);
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /**
   * Validates new rules (parsed file content), writes them to the rules file (atomically: a temporary
   * file renamed over it) and applies them. Invalid rules change nothing and reject.
   */
  replace(input: unknown, actor: string): Promise<{ set: RuleSet; change: RuleChange | undefined }> {
    const run = this.chain.then(async () => {
      const next = buildRuleSet(input, 'request');
      const tmp = `${this.options.path}.${process.pid}.tmp`;
      await writeFile(tmp, `# Written by Vigil (${actor}) at ${new Date().toISOString()}\n${toYaml(input)}`, 'utf8');
      await rename(tmp, this.options.path);
      // The overrides of the config file still apply on top of what was written.
      const applied = Object.keys(this.options.overrides ?? {}).length === 0 ? next : this.read();
      return { set: applied, change: await this.apply(applied, actor, this.options.path) };
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Reloads on file changes until close(). */
  watch(): void {
    if (this.watcher) return;
    const name = basename(this.options.path);
    // The directory, not the file: editors that save by rename replace the file's inode.
    this.watcher = watch(dirname(this.options.path), (_event, file) => {
      if (file !== null && file !== name) return;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        this.reload('file').catch((err: unknown) => this.options.log?.(`rules file ${this.options.path} not applied: ${(err as Error).message}`));
      }, this.options.debounceMs ?? 150);
    });
    this.watcher.unref();
  }

  close(): void {
    clearTimeout(this.timer);
    this.watcher?.close();
    this.watcher = undefined;
  }
}
