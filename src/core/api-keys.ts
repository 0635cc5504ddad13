/**
 * API keys and roles. A key is `vgl_` + 32 random bytes (base64url): shown once at creation, stored
 * only as its SHA-256 (hex) with an id, a name, a role and its last 4 characters as a hint.
 * Roles are ordered: viewer < analyst < admin.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Store } from '../storage/types.ts';
import { ERR, VigilError } from './errors.ts';

export const ROLES = ['viewer', 'analyst', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export const KEY_PREFIX = 'vgl_';

/** The header of the per-process service token (admin-equivalent on its API; `vigil sql`, `vigil keys`). */
export const SERVICE_TOKEN_HEADER = 'x-vigil-sql-token';

export function isRole(v: unknown): v is Role {
  return typeof v === 'string' && (ROLES as readonly string[]).includes(v);
}

/** Whether `have` may do what `need` may. */
export function roleAtLeast(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

/** What is stored about a key (never the key itself). */
export interface ApiKeyInfo {
  id: string;
  name: string;
  role: Role;
  /** The key's last 4 characters, to tell keys apart. */
  hint: string;
  createdAt: number;
  /** Absent while the key is valid. */
  revokedAt?: number;
}

/** A row to store for a new key: its info and the SHA-256 of the key. */
export interface NewApiKey extends Omit<ApiKeyInfo, 'revokedAt'> {
  keyHash: string;
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export function generateApiKey(): { key: string; keyHash: string; hint: string } {
  const key = `${KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { key, keyHash: hashApiKey(key), hint: key.slice(-4) };
}

const NAME = /^[\p{L}\p{N} ._@:\/-]{1,100}$/u;

/** Validates name and role, stores a new key, and returns it with the key (the only time it exists). */
export async function issueApiKey(store: Pick<Store, 'createApiKey'>, name: string, role: string): Promise<{ key: string; info: ApiKeyInfo }> {
  if (!NAME.test(name)) throw new VigilError(ERR.BAD_REQUEST, `invalid key name ${JSON.stringify(name)}: expected 1-100 letters, digits, spaces or . _ @ : / -`, 400, { parameter: 'name' });
  if (!isRole(role)) throw new VigilError(ERR.BAD_REQUEST, `invalid role ${JSON.stringify(role)}: expected one of ${ROLES.join(', ')}`, 400, { parameter: 'role' });
  const { key, keyHash, hint } = generateApiKey();
  const info: ApiKeyInfo = { id: `key_${randomBytes(8).toString('hex')}`, name, role, hint, createdAt: Date.now() };
  await store.createApiKey({ ...info, keyHash });
  return { key, info };
}
