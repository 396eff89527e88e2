/**
 * Finding image files in dataset directories, with clear errors for the usual mistakes
 * (missing or empty directory, a stray non-image file).
 */
import { opendir } from 'node:fs/promises';
import { extname, join, relative } from 'node:path';
import { DataError, assertPathKind, describeFsError } from './errors.js';
import { IMAGE_EXTENSIONS, isImageFileName } from './image-io.js';

export interface ListImagesOptions {
  /** Descend into sub-directories (CEM500K-style trees). Default false. */
  readonly recursive?: boolean;
  /** What to do with a file that is not an image: throw (default) or skip it. */
  readonly nonImage?: 'error' | 'skip';
  /** Absolute paths to leave out (e.g. a manifest stored inside the directory). */
  readonly exclude?: readonly string[];
}

const EXPECTED = `only image files (${IMAGE_EXTENSIONS.join(', ')})`;

/** Throws a DataError unless `dir` is an existing, readable directory. */
export async function assertDirectory(dir: string, what = 'a directory of images'): Promise<void> {
  await assertPathKind(dir, 'directory', what);
}

/**
 * Image files under `dir`, as paths relative to it with `/` separators, sorted so that the order
 * does not depend on the file system. Names starting with `.` (hidden files, temporary files of
 * an interrupted atomic write) are ignored.
 *
 * @example await listImageFiles('imgs/Track1/train') // ['0.png', '1.png', ...]
 */
export async function listImageFiles(dir: string, options: ListImagesOptions = {}): Promise<string[]> {
  await assertDirectory(dir);
  const exclude = new Set(options.exclude ?? []);
  const found: string[] = [];
  const pending = [dir];
  while (pending.length > 0) {
    const current = pending.pop() as string;
    let handle;
    try {
      handle = await opendir(current, { bufferSize: 256 });
    } catch (err) {
      throw new DataError(current, describeFsError(err), 'a readable directory of images');
    }
    for await (const entry of handle) {
      if (entry.name.startsWith('.')) continue;
      const path = join(current, entry.name);
      if (exclude.has(path)) continue;
      if (entry.isDirectory()) {
        if (options.recursive) pending.push(path);
        else if (options.nonImage !== 'skip') throw new DataError(path, 'is a sub-directory', EXPECTED);
      } else if (isImageFileName(entry.name)) {
        found.push(relative(dir, path).split('\\').join('/'));
      } else if (options.nonImage !== 'skip') {
        const ext = extname(entry.name);
        throw new DataError(path, `is not an image file (extension "${ext || 'none'}")`, EXPECTED);
      }
    }
  }
  if (found.length === 0) throw new DataError(dir, 'contains no image files', `at least one image (${IMAGE_EXTENSIONS.join(', ')})`);
  return found.sort();
}

/** The file name without directory and extension: `a/b/img_01.png` -> `img_01`. */
export function fileStem(path: string): string {
  const name = path.slice(path.lastIndexOf('/') + 1);
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(0, dot) : name;
}
