import { stat } from 'node:fs/promises';

/**
 * Bad data on disk: a corrupt image, a missing label, a size mismatch... The message names the file
 * (or directory) and says what was expected, e.g.
 * `data/label/a.tiff: image is 16-bit; expected an 8-bit label (0 = membrane, 255 = background)`.
 */
export class DataError extends Error {
  /** The file or directory at fault. */
  readonly path: string;

  constructor(path: string, problem: string, expected?: string) {
    super(`${path}: ${problem}${expected === undefined ? '' : `; expected ${expected}`}`);
    this.name = 'DataError';
    this.path = path;
  }

  /** Rebuilds an error whose full message is already known (e.g. sent back from a worker thread). */
  static withMessage(path: string, message: string): DataError {
    const err = new DataError(path, '');
    err.message = message;
    return err;
  }
}

/** A human-readable reason for a failed file-system call (`ENOENT` -> "does not exist"). */
export function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
      return 'does not exist';
    case 'EACCES':
    case 'EPERM':
      return 'cannot be read (permission denied)';
    case 'ENOTDIR':
      return 'is not reachable (a parent of it is a file, not a directory)';
    case 'EISDIR':
      return 'is a directory, not a file';
    default:
      return `cannot be read (${code ?? (err as Error).message})`;
  }
}

/** Throws a DataError (naming `path` and `expected`) unless `path` exists and is a `kind`. */
export async function assertPathKind(path: string, kind: 'file' | 'directory', expected: string): Promise<void> {
  let found;
  try {
    found = await stat(path);
  } catch (err) {
    throw new DataError(path, describeFsError(err), expected);
  }
  if (kind === 'file' && !found.isFile()) throw new DataError(path, 'is a directory, not a file', expected);
  if (kind === 'directory' && !found.isDirectory()) throw new DataError(path, 'is a file, not a directory', expected);
}
