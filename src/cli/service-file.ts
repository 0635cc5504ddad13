/**
 * A running `vigil run` (or `vigil api`) that holds the embedded store leaves a note in the data directory saying where
 * its API listens and the per-process token for its local SQL route, so `vigil sql` (another process,
 * which chdb would refuse the directory) can ask it instead. Readable by the owner only.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

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
