import { createHash } from 'node:crypto';

/**
 * A finding's id: 128 bits of SHA-256 over the parts that identify it (detector, rule, key, trigger).
 * No run id and no wall clock go in, so the same input gives the same id live or replayed; storage keys
 * rows by (run_id, id) so runs never overwrite each other.
 */
export function findingId(detector: string, ruleId: string, key: string, trigger: string): string {
  return createHash('sha256').update(`${detector}\u0000${ruleId}\u0000${key}\u0000${trigger}`).digest('hex').slice(0, 32);
}
