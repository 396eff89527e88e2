/** Where the workspace is: the nearest directory holding nx.json. */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The workspace root: the nearest directory at or above `from` that holds nx.json, or undefined.
 * @example findWorkspaceRoot() // the workspace of the working directory, e.g. '/work/emseg'
 */
export function findWorkspaceRoot(from: string = process.cwd()): string | undefined {
  let dir = resolve(from);
  for (;;) {
    if (existsSync(join(dir, 'nx.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * The workspace a module belongs to (from its source or its build output alike); throws if the
 * module lies outside any workspace.
 * @example export const WORKSPACE = workspaceRootOf(import.meta.url);
 */
export function workspaceRootOf(moduleUrl: string): string {
  const file = fileURLToPath(moduleUrl);
  const root = findWorkspaceRoot(dirname(file));
  if (root === undefined) throw new Error(`${file} is not inside a workspace (no nx.json above it)`);
  return root;
}
