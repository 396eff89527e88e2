/**
 * Crash-safe writes: data goes to a temporary name in the same directory and is renamed into
 * place, so a reader sees either the old state or the complete new one, never a half-written file.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** A temporary path next to `path` (same directory, so the final rename is atomic). */
export function temporarySibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Writes `data` to `path` atomically (temp file + rename); creates parent directories. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await withTemporaryFile(path, (tmp) => writeFile(tmp, data));
}

/**
 * Lets `write(tmp)` produce a file at a temporary sibling of `path`, then renames it to `path`.
 * If `write` throws, the temporary file is removed and the error re-thrown.
 */
export async function withTemporaryFile(path: string, write: (tmp: string) => Promise<unknown>): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = temporarySibling(path);
  try {
    await write(tmp);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/**
 * Builds a directory atomically: `build(tmpDir)` fills a temporary sibling directory, which is then
 * renamed to `dir`. `dir` must not exist yet (or be empty). On failure nothing is left behind.
 * Returns false, and discards the new copy, if another process published `dir` first.
 */
export async function publishDirectory(dir: string, build: (tmpDir: string) => Promise<void>): Promise<boolean> {
  await mkdir(dirname(dir), { recursive: true });
  const tmp = temporarySibling(dir);
  try {
    await mkdir(tmp);
    await build(tmp);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  try {
    await rename(tmp, dir);
    return true;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
    throw err;
  }
}
