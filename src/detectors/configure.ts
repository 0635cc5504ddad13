import type { Config } from '../core/config.ts';
import { DEFAULT_RULES_PATH, buildRuleSet, loadRulesFile, withDetectorOverrides, type RuleSet } from './rules.ts';
import type { DetectorInstance } from './types.ts';

/** The rules file in force: VIGIL_RULES, or the shipped default. */
export function rulesPath(config: { VIGIL_RULES?: string | undefined }): string {
  return config.VIGIL_RULES ?? DEFAULT_RULES_PATH;
}

/**
 * The rules for a configuration: the rules file, with `detectors.<name>` of the config file (if any)
 * overriding the parameters of every rule of that detector (`{"enabled": false}` turns them off).
 * Fails with the offending key or rule named.
 */
export function loadRules(config: { detectors: Config['detectors']; VIGIL_RULES?: string | undefined }): RuleSet {
  const set = loadRulesFile(rulesPath(config));
  if (Object.keys(config.detectors).length === 0) return set;
  return buildRuleSet(withDetectorOverrides(set.file, config.detectors), `${rulesPath(config)} + config detectors`);
}

/** The detector instances (rules) for a configuration. */
export function buildDetectors(config: { detectors: Config['detectors']; VIGIL_RULES?: string | undefined }): DetectorInstance[] {
  return loadRules(config).instances;
}
