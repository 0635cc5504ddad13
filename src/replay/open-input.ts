/**
 * Opening a recorded input file for streaming, plain or gzip (detected by the magic bytes 1f 8b, not the
 * name). Shared by the recording reader (formats.ts) and the mapped-input reader (mapped-input.ts).
 */
import { open, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { ERR, VigilError } from '../core/errors.ts';

/**
 * Bytes per chunk read (and per gunzip output chunk). Over ~1 MB (Node's EXTERN_APEX, 0xFBEE9 bytes) an
 * ASCII chunk decodes as latin1 into an external string, with no copy into the JS heap: ~6x cheaper
 * than UTF-8 decoding 256 KB chunks, which was the largest cost of reading a recording (formats.ts).
 */
export const READ_CHUNK_BYTES = 2 << 20;

export interface OpenedFile {
  /** The file started with the gzip magic bytes; `stream` is the gunzipped content. */
  gzip: boolean;
  /** The (decompressed) content. */
  stream: Readable;
  /** Set when the gunzip stream failed (truncated or corrupt file). */
  gzipError(): Error | undefined;
  /** Destroys the streams and closes the file; never throws for an already-closed file. */
  close(): Promise<void>;
}

/**
 * Opens `path` for reading, gunzipping it when it starts with 1f 8b. A missing file is a NOT_FOUND
 * VigilError, a directory an INPUT_FORMAT one. `onBytes` is told the size of every chunk read from disk
 * (compressed bytes for gzip), for progress and ETA.
 */
export async function openInputFile(path: string, onBytes?: (n: number) => void): Promise<OpenedFile> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw new VigilError(ERR.NOT_FOUND, `${path}: no such file`, 404, { file: path });
    if (e.code === 'EISDIR') throw new VigilError(ERR.INPUT_FORMAT, `${path}: is a directory`, 400, { file: path });
    throw err;
  }
  const head = Buffer.alloc(2);
  let bytesRead: number;
  try {
    ({ bytesRead } = await fh.read(head, 0, 2, 0));
  } catch (err) {
    await fh.close();
    if ((err as NodeJS.ErrnoException).code === 'EISDIR') throw new VigilError(ERR.INPUT_FORMAT, `${path}: is a directory`, 400, { file: path });
    throw err;
  }
  const gzip = bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
  const raw = fh.createReadStream({ start: 0, highWaterMark: READ_CHUNK_BYTES });
  if (onBytes) raw.on('data', (chunk) => onBytes(chunk.length));
  let input: Readable = raw;
  let gzError: Error | undefined;
  if (gzip) {
    const gunzip = createGunzip({ chunkSize: READ_CHUNK_BYTES });
    gunzip.on('error', (err) => {
      gzError = err;
    });
    raw.on('error', (err) => gunzip.destroy(err));
    input = raw.pipe(gunzip);
  }
  return {
    gzip,
    stream: input,
    gzipError: () => gzError,
    async close() {
      input.destroy();
      raw.destroy();
      await fh.close().catch(() => undefined);
    },
  };
}
