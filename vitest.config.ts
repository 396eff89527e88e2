import { defineConfig } from 'vitest/config';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));
const libs = ['tf', 'data', 'models', 'training', 'segmentation', 'evaluation', 'tracking', 'config', 'fs'];
const apps = ['pretrain', 'finetune'];

/** Tests run against the TypeScript sources, so `@emseg/x` points at `libs/x/src`. */
const alias = Object.fromEntries(libs.map((name) => [`@emseg/${name}`, `${root}libs/${name}/src/index.ts`]));

/**
 * One Vitest project per Nx project. Forks, never worker threads: tfjs-node cannot be loaded
 * in a second worker thread of the same process.
 */
const project = (name: string, dir: string) => ({
  resolve: { alias },
  test: {
    name,
    root,
    include: [dir === '.' ? 'test/**/*.test.ts' : `${dir}/test/**/*.test.ts`],
    pool: 'forks' as const,
    testTimeout: 180_000,
    hookTimeout: 180_000,
  },
});

export default defineConfig({
  test: {
    projects: [...libs.map((name) => project(name, `libs/${name}`)), ...apps.map((name) => project(name, `apps/${name}`)), project('e2e', '.')],
  },
});
