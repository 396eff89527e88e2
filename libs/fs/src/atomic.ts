/**
 * Crash-safe writes: data goes to a temporary name in the same directory and is renamed into
 * place, so a reader sees either the old state or the complete new one, never a half-written file.
 * Async for code that awaits anyway; `...Sync` twins for code that must not yield (journals, spools).
 *
 * @example
 *   await writeJsonAtomic('out/scores.json', { f1: 0.91 });
 *   await withTemporaryFile('out/image.png', (tmp) => sharp(pixels, raw).png().toFile(tmp));
 *   await publishDirectory('cache/v1', async (tmp) => writeFile(join(tmp, 'a.bin'), bytes));
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** A temporary path next to `path` (same directory, so the final rename is atomic). */
export function temporarySibling(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** The text `writeJsonAtomic` writes: pretty JSON (2 spaces) and a final newline. */
function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** Writes `data` to `path` atomically (temp file + rename); creates parent directories. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await withTemporaryFile(path, (tmp) => writeFile(tmp, data));
}

/** {@link writeFileAtomic}, synchronously. */
export function writeFileAtomicSync(path: string, data: string | Uint8Array): void {
  withTemporaryFileSync(path, (tmp) => writeFileSync(tmp, data));
}

/**
 * Writes `value` as pretty JSON (and a final newline) to `path` atomically. Non-finite numbers
 * become `null`, as `JSON.stringify` writes them.
 */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, jsonText(value));
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

/** {@link withTemporaryFile}, synchronously. */
export function withTemporaryFileSync(path: string, write: (tmp: string) => unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = temporarySibling(path);
  try {
    write(tmp);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

export interface PublishOptions {
  /**
   * Replace an existing `dir` (it is renamed aside, the new copy renamed in, then the old one
   * removed). Default false: the first published copy wins.
   */
  replace?: boolean;
}

/**
 * Builds a directory atomically: `build(tmpDir)` fills a temporary sibling directory, which is then
 * renamed to `dir`. On failure nothing is left behind. Without `replace`, `dir` must not exist yet
 * (or be empty): returns false, and discards the new copy, if another process published `dir`
 * first. With `replace`, an existing `dir` gives way to the new copy.
 */
export async function publishDirectory(dir: string, build: (tmpDir: string) => Promise<void>, { replace = false }: PublishOptions = {}): Promise<boolean> {
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
    if (replace) await swapInto(tmp, dir);
    else await rename(tmp, dir);
    return true;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    const code = (err as NodeJS.ErrnoException).code;
    if (!replace && (code === 'ENOTEMPTY' || code === 'EEXIST')) return false;
    throw err;
  }
}

/** Renames directory `fresh` to `dir`, moving an existing `dir` aside first and removing it after. */
async function swapInto(fresh: string, dir: string): Promise<void> {
  const old = `${fresh}.old`;
  let moved = true;
  try {
    await rename(dir, old);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    moved = false;
  }
  try {
    await rename(fresh, dir);
  } catch (err) {
    if (moved) await rename(old, dir);
    throw err;
  }
  if (moved) await rm(old, { recursive: true, force: true });
}
