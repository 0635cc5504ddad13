/**
 * What `vigil replay`'s options mean beyond parsing: which mapping each input takes (by position on the
 * command line), --from/--to, and the rules of --rules. Mistakes are usage errors (exit 2) naming the
 * option and the value.
 */
import { statSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Config } from '../core/config.ts';
import { loadRules } from '../detectors/configure.ts';
import type { RuleSet } from '../detectors/rules.ts';
import { loadMapping, type Mapping } from '../feeds/mapping.ts';
import { parseTimeArg } from '../replay/time-range.ts';
import { UsageError } from './args.ts';

/** node:util parseArgs (strict, positionals allowed) with its tokens: the order of options and inputs. */
export function parseWithTokens<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true, tokens: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

type Token = { kind: 'option'; name: string; value?: string | undefined } | { kind: 'positional'; value: string } | { kind: 'option-terminator' };

/**
 * The mapping of each input, in input order: a `--mapping FILE` applies to the inputs after it, up to
 * the next `--mapping` (`--mapping none`: recordings again); one --mapping written after every input
 * applies to all of them (`vigil replay a.csv --mapping m.json`). Each mapping file is loaded once, so a
 * bad one fails here naming its key path, before any input is opened.
 */
export function inputMappings(tokens: readonly Token[]): { mappings: (Mapping | undefined)[]; paths: (string | undefined)[] } {
  const paths: (string | undefined)[] = [];
  const given: string[] = [];
  let current: string | undefined;
  for (const t of tokens) {
    if (t.kind === 'option' && t.name === 'mapping' && t.value !== undefined) {
      given.push(t.value);
      current = t.value === 'none' ? undefined : t.value;
    } else if (t.kind === 'positional') paths.push(current);
  }
  const lone = given.length === 1 ? given[0] : undefined;
  if (lone !== undefined && lone !== 'none' && !paths.some((p) => p !== undefined)) paths.fill(lone);
  const loaded = new Map<string, Mapping>();
  const mappings = paths.map((p) => {
    if (p === undefined) return undefined;
    let m = loaded.get(p);
    if (m === undefined) loaded.set(p, (m = loadMapping(p)));
    return m;
  });
  return { mappings, paths };
}

/** --from/--to as epoch ms (from inclusive, to exclusive). */
export function timeRangeArgs(from: string | undefined, to: string | undefined): { from?: number; to?: number } {
  const one = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const t = parseTimeArg(v);
    if (t === undefined) throw new UsageError(`--${name}: expected epoch milliseconds or an ISO-8601 time (e.g. 2024-08-09T00:00:00Z), got ${JSON.stringify(v)}`);
    return t;
  };
  const range = { from: one('from', from), to: one('to', to) };
  if (range.from !== undefined && range.to !== undefined && range.to <= range.from) {
    throw new UsageError(`--to: expected a time after --from (${new Date(range.from).toISOString()}), got ${JSON.stringify(to)}`);
  }
  return Object.fromEntries(Object.entries(range).filter(([, v]) => v !== undefined));
}

/**
 * The rules of the replay: --rules FILE instead of VIGIL_RULES (the config file's `detectors` overrides
 * still apply, as for VIGIL_RULES). Over Kafka the `vigil detect` workers detect, with their own rules,
 * so --rules is refused there.
 */
export function replayRules(config: Config, file: string | undefined): RuleSet {
  if (file === undefined) return loadRules(config);
  if (config.KAFKA_BROKERS) {
    throw new UsageError('--rules: with KAFKA_BROKERS set the `vigil detect` workers detect with their own rules (VIGIL_RULES); replay without KAFKA_BROKERS to try other rules');
  }
  try {
    if (!statSync(file).isFile()) throw new Error('not a file');
  } catch (e) {
    throw new UsageError(`--rules: cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return loadRules({ detectors: config.detectors, VIGIL_RULES: file });
  } catch (e) {
    throw new UsageError(`--rules: ${(e as Error).message}`); // "rules <file>: <path in the file>: <what is wrong>"
  }
}
