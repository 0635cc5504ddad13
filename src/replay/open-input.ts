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
  readonly stream: Readable;
  /**
   * A plain file only (not gzip), instead of `stream`: its next chunk, undefined at the end. The chunk is
   * a view of a reused buffer, valid until the next call: read it at once. Reusing two buffers (one
   * being read ahead) instead of a new 2 MB one per chunk halves the external memory a replay churns
   * through, which is what makes V8 run full collections while reading.
   */
  nextChunk?: () => Promise<Buffer | undefined>;
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
  let raw: Readable | undefined;
  let input: Readable | undefined;
  let gzError: Error | undefined;
  // Created on first use: a plain file read with nextChunk needs no stream.
  const stream = (): Readable => {
    if (input !== undefined) return input;
    const r = fh.createReadStream({ start: 0, highWaterMark: READ_CHUNK_BYTES });
    raw = r;
    if (onBytes) r.on('data', (chunk) => onBytes(chunk.length));
    input = r;
    if (gzip) {
      const gunzip = createGunzip({ chunkSize: READ_CHUNK_BYTES });
      gunzip.on('error', (err) => {
        gzError = err;
      });
      r.on('error', (err) => gunzip.destroy(err));
      input = r.pipe(gunzip);
    }
    return input;
  };
  if (gzip) stream(); // as soon as opened, as before
  return {
    gzip,
    get stream() {
      return stream();
    },
    nextChunk: gzip ? undefined : plainChunks(fh, onBytes),
    gzipError: () => gzError,
    async close() {
      input?.destroy();
      raw?.destroy();
      await fh.close().catch(() => undefined);
    },
  };
}

/** OpenedFile.nextChunk of a plain file: two reused buffers, the next chunk read ahead while one is parsed. */
function plainChunks(fh: FileHandle, onBytes: ((n: number) => void) | undefined): () => Promise<Buffer | undefined> {
  const buffers = [Buffer.allocUnsafe(READ_CHUNK_BYTES), Buffer.allocUnsafe(READ_CHUNK_BYTES)];
  let which = 0;
  let position = 0;
  let ahead: Promise<{ bytesRead: number }> | undefined;
  const readInto = (buf: Buffer) => {
    const p = fh.read(buf, 0, buf.length, position);
    p.catch(() => undefined); // a read ahead nobody awaits (the reader stopped early) must not be an unhandled rejection
    return p;
  };
  return async () => {
    const buf = buffers[which]!;
    const { bytesRead } = await (ahead ?? readInto(buf));
    ahead = undefined;
    if (bytesRead === 0) return undefined;
    position += bytesRead;
    onBytes?.(bytesRead);
    which ^= 1;
    ahead = readInto(buffers[which]!);
    return buf.subarray(0, bytesRead);
  };
}
