/**
 * A short fingerprint of a dataset for MLflow `runs/log-inputs` (the `digest` of a dataset input):
 * it changes when a file is added, removed, renamed or resized, or when sampled content changes.
 */
import { createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DataError, describeFsError } from './errors.js';

export interface DatasetDigest {
  /** 16 hex characters (MLflow keeps dataset digests up to 36 characters). */
  readonly digest: string;
  readonly files: number;
  readonly bytes: number;
}

export interface DigestOptions {
  /** How many files (evenly spaced in the list) contribute content. Default 32. */
  readonly sampleFiles?: number;
  /** Bytes read from the start, middle and end of each sampled file. Default 1024. */
  readonly chunkBytes?: number;
  /** What a listed file that cannot be read was expected to be (default: "a dataset file listed when the dataset was opened"). */
  readonly listing?: string;
}

async function sizeOf(path: string, listing: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    throw new DataError(path, describeFsError(err), listing);
  }
}

async function contentSample(path: string, size: number, chunk: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const offsets = [...new Set([0, Math.max(0, Math.floor(size / 2) - chunk / 2), Math.max(0, size - chunk)])];
    const parts = await Promise.all(
      offsets.map(async (offset) => {
        const buf = Buffer.alloc(Math.min(chunk, size - offset));
        await handle.read(buf, 0, buf.length, offset);
        return buf;
      }),
    );
    return Buffer.concat(parts);
  } finally {
    await handle.close();
  }
}

/**
 * Digest of the files `relPaths` under `root`: SHA-256 over every relative name and size, plus a
 * content sample of a few files; the first 16 hex characters.
 *
 * @example const { digest } = await datasetDigest('data/crops', crops.files) // 'a3f9c2...'
 */
export async function datasetDigest(root: string, relPaths: readonly string[], options: DigestOptions = {}): Promise<DatasetDigest> {
  const sampleFiles = options.sampleFiles ?? 32;
  const chunk = options.chunkBytes ?? 1024;
  const hash = createHash('sha256');
  const sizes = new Float64Array(relPaths.length);
  const group = 64;
  for (let start = 0; start < relPaths.length; start += group) {
    const slice = relPaths.slice(start, start + group);
    const got = await Promise.all(slice.map((rel) => sizeOf(join(root, rel), options.listing ?? 'a dataset file listed when the dataset was opened')));
    got.forEach((size, i) => (sizes[start + i] = size));
  }
  let bytes = 0;
  relPaths.forEach((rel, i) => {
    hash.update(`${rel}\0${sizes[i]}\n`);
    bytes += sizes[i];
  });
  const n = relPaths.length;
  const picks = new Set<number>();
  for (let k = 0; k < Math.min(n, sampleFiles); k++) picks.add(Math.floor((k * n) / Math.min(n, sampleFiles)));
  for (const i of [...picks].sort((a, b) => a - b)) {
    hash.update(await contentSample(join(root, relPaths[i]), sizes[i], chunk));
  }
  return { digest: hash.digest('hex').slice(0, 16), files: n, bytes };
}
