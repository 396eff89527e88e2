import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  findWorkspaceRoot,
  processAlive,
  publishDirectory,
  temporarySibling,
  withTemporaryFile,
  withTemporaryFileSync,
  writeFileAtomic,
  writeFileAtomicSync,
  writeJsonAtomic,
  workspaceRootOf,
} from '@emseg/fs';

const WORK = mkdtempSync(join(tmpdir(), 'emseg-fs-test-'));
afterAll(() => rmSync(WORK, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(WORK, `case-${n++}`);

describe('atomic files', () => {
  it('writes text and bytes, creating parents, and leaves no temporary file', async () => {
    const dir = fresh();
    await writeFileAtomic(join(dir, 'a', 'x.txt'), 'hello');
    writeFileAtomicSync(join(dir, 'b', 'y.bin'), Uint8Array.of(1, 2, 3));
    expect(readFileSync(join(dir, 'a', 'x.txt'), 'utf8')).toBe('hello');
    expect([...readFileSync(join(dir, 'b', 'y.bin'))]).toEqual([1, 2, 3]);
    expect(readdirSync(join(dir, 'a'))).toEqual(['x.txt']);
    expect(readdirSync(join(dir, 'b'))).toEqual(['y.bin']);
  });

  it('writes pretty JSON with a final newline, replacing the old file', async () => {
    const file = join(fresh(), 'v.json');
    await writeJsonAtomic(file, { a: 1 });
    await writeJsonAtomic(file, { b: [1, Infinity] });
    expect(readFileSync(file, 'utf8')).toBe('{\n  "b": [\n    1,\n    null\n  ]\n}\n');
  });

  it('removes the temporary file and re-throws when the write fails', async () => {
    const dir = fresh();
    const boom = new Error('disk full');
    await expect(withTemporaryFile(join(dir, 'f'), async (tmp) => (writeFileSync(tmp, 'part'), Promise.reject(boom)))).rejects.toBe(boom);
    expect(() =>
      withTemporaryFileSync(
        join(dir, 'g'),
        (tmp) => (
          writeFileSync(tmp, 'part'),
          (() => {
            throw boom;
          })()
        ),
      ),
    ).toThrow(boom);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('names temporaries as hidden siblings', () => {
    expect(temporarySibling('/a/b/c.json')).toMatch(/^\/a\/b\/\.c\.json\.tmp-\d+-[0-9a-f]{8}$/);
  });
});

describe('publishDirectory', () => {
  it('publishes once; a second publisher loses and leaves nothing behind', async () => {
    const parent = fresh();
    const dir = join(parent, 'v1');
    expect(await publishDirectory(dir, async (tmp) => writeFileSync(join(tmp, 'a'), 'first'))).toBe(true);
    expect(await publishDirectory(dir, async (tmp) => writeFileSync(join(tmp, 'a'), 'second'))).toBe(false);
    expect(readFileSync(join(dir, 'a'), 'utf8')).toBe('first');
    expect(readdirSync(parent)).toEqual(['v1']);
  });

  it('replaces an existing directory with { replace: true }', async () => {
    const parent = fresh();
    const dir = join(parent, 'step-1');
    await publishDirectory(dir, async (tmp) => writeFileSync(join(tmp, 'old'), '1'));
    expect(await publishDirectory(dir, async (tmp) => writeFileSync(join(tmp, 'new'), '2'), { replace: true })).toBe(true);
    expect(readdirSync(dir)).toEqual(['new']);
    expect(readdirSync(parent)).toEqual(['step-1']);
  });

  it('cleans up and re-throws when building fails', async () => {
    const parent = fresh();
    await expect(publishDirectory(join(parent, 'd'), async () => Promise.reject(new Error('no')))).rejects.toThrow('no');
    expect(readdirSync(parent)).toEqual([]);
  });
});

describe('workspace root', () => {
  it('is the nearest directory with nx.json, from a directory or a module URL', () => {
    const root = fresh();
    mkdirSync(join(root, 'apps', 'x', 'dist'), { recursive: true });
    writeFileSync(join(root, 'nx.json'), '{}');
    const module = join(root, 'apps', 'x', 'dist', 'main.js');
    expect(findWorkspaceRoot(join(root, 'apps', 'x'))).toBe(root);
    expect(workspaceRootOf(pathToFileURL(module).href)).toBe(root);
    expect(existsSync(join(workspaceRootOf(import.meta.url), 'nx.json'))).toBe(true);
  });

  it('is undefined outside a workspace (and an error for a module there)', () => {
    expect(findWorkspaceRoot('/')).toBeUndefined();
    expect(() => workspaceRootOf(pathToFileURL('/no-workspace/main.js').href)).toThrow(/not inside a workspace/);
  });
});

describe('processAlive', () => {
  it('knows this process is alive and an unused pid is not', () => {
    expect(processAlive(process.pid)).toBe(true);
    expect(processAlive(2 ** 22 + 12345)).toBe(false);
  });
});
