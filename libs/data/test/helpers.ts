import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

/** A fresh temporary directory, removed after the test file. */
export function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `emseg-data-${label}-`));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Every file and directory under `dir` (relative paths), for "nothing half-written" checks. */
export function treeOf(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).map(String).sort();
}

/** A deterministic 8-bit test pattern with distinct neighbouring values. */
export function pattern8(width: number, height: number): Uint8Array {
  return Uint8Array.from({ length: width * height }, (_, i) => (i * 37 + (i % width) * 11) % 256);
}

/** A deterministic 16-bit test pattern using the whole range. */
export function pattern16(width: number, height: number): Uint16Array {
  return Uint16Array.from({ length: width * height }, (_, i) => (i * 4099 + 17) % 65536);
}
