import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

/**
 * Creates directory `dir` with `files` (name -> content) atomically: everything is written into a
 * temporary sibling directory, which is then renamed to `dir`, so readers never see a partial
 * directory. An existing `dir` is an error unless `overwrite`, in which case it is swapped out
 * (renamed away, then removed) right after the new one is complete.
 */
export async function writeDirAtomic(dir: string, files: Record<string, string | Uint8Array>, options: { overwrite?: boolean } = {}): Promise<void> {
  const target = resolve(dir);
  const parent = dirname(target);
  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const temp = join(parent, `.${basename(target)}.tmp-${tag}`);
  if (existsSync(target) && !options.overwrite) {
    throw new Error(`${target} already exists; remove it or save with { overwrite: true }`);
  }
  await mkdir(parent, { recursive: true });
  await mkdir(temp);
  try {
    for (const [name, content] of Object.entries(files)) await writeFile(join(temp, name), content);
    if (existsSync(target)) {
      if (
        !(await readdir(target).then(
          () => true,
          () => false,
        ))
      )
        throw new Error(`${target} exists and is not a directory`);
      const old = join(parent, `.${basename(target)}.old-${tag}`);
      await rename(target, old);
      await rename(temp, target);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(temp, target);
    }
  } catch (err) {
    await rm(temp, { recursive: true, force: true });
    throw err;
  }
}
