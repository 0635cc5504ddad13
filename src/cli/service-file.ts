/**
 * A running `vigil run` (or `vigil api`) that holds the embedded store leaves a note in the data directory saying where
 * its API listens and the per-process service token, so `vigil sql` and `vigil keys` (other processes,
 * which chdb would refuse the directory) can ask it instead. Readable by the owner only.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { SERVICE_TOKEN_HEADER } from '../core/api-keys.ts';
import { ERR, VigilError } from '../core/errors.ts';

export interface ServiceNote {
  pid: number;
  url: string;
  token: string;
  /** The command holding the store: run (default) or api. */
  role?: string;
}

const NAME = 'vigil-service.json';

export function newToken(): string {
  return randomBytes(24).toString('hex');
}

export function writeServiceNote(dataDir: string, note: ServiceNote): string {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, NAME);
  writeFileSync(path, JSON.stringify(note), { mode: 0o600 });
  return path;
}

export function removeServiceNote(dataDir: string, pid = process.pid): void {
  const note = readServiceNote(dataDir, false);
  if (note && note.pid === pid) rmSync(join(dataDir, NAME), { force: true });
}

/** The note of a live service; a note left by a dead process is ignored. */
export function readServiceNote(dataDir: string, requireAlive = true): ServiceNote | undefined {
  let note: ServiceNote;
  try {
    note = JSON.parse(readFileSync(join(dataDir, NAME), 'utf8')) as ServiceNote;
  } catch {
    return undefined;
  }
  if (requireAlive && !isAlive(note.pid)) return undefined;
  return note;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Calls the service a note points at, with its token; returns the response text of a 2xx, else throws
 * a VigilError with the service's code (else `errorCode`), message and status.
 */
export async function requestService(note: ServiceNote, method: string, path: string, body: unknown, errorCode: string): Promise<string> {
  let res: Response;
  try {
    res = await fetch(`${note.url}${path}`, {
      method,
      headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), [SERVICE_TOKEN_HEADER]: note.token },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (e) {
    throw new VigilError(ERR.STORE_LOCKED, `vigil ${note.role ?? 'run'} holds the embedded store but its API at ${note.url} does not answer: ${(e as Error).message}`, 503);
  }
  const text = await res.text();
  if (!res.ok) {
    let message = text;
    let code = errorCode;
    try {
      const j = JSON.parse(text) as { error?: { code?: string; message?: string } };
      if (j.error?.message) message = j.error.message;
      if (j.error?.code?.startsWith('VIGIL_ERR_')) code = j.error.code;
    } catch {
      /* plain text error */
    }
    throw new VigilError(code, message, res.status);
  }
  return text;
}
