import type { Config } from '../core/config.ts';
import { configError } from '../core/errors.ts';
import { createDetector, detectorSpecs } from './registry.ts';
import type { DetectorInstance } from './types.ts';

/**
 * The detector instances for a configuration: every registered detector with its defaults, overridden
 * by `detectors.<name>` in the config file; `{"enabled": false}` turns one off.
 */
export function buildDetectors(config: Pick<Config, 'detectors'>): DetectorInstance[] {
  for (const name of Object.keys(config.detectors)) {
    if (!(name in detectorSpecs)) throw configError(`detectors.${name}`, `a known detector (${Object.keys(detectorSpecs).join(', ')})`, name);
  }
  const out: DetectorInstance[] = [];
  for (const name of Object.keys(detectorSpecs)) {
    const { enabled = true, ...params } = (config.detectors[name] ?? {}) as { enabled?: unknown } & Record<string, unknown>;
    if (enabled === false) continue;
    out.push(createDetector(name, params));
  }
  return out;
}
