import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LabeledImages, UnlabeledCrops, defaultDataVersion, ensureDefaultData, type DefaultDataSpec } from '@emseg/data';
import { tempDir } from './helpers.js';

const cacheDir = join(tempDir('default'), 'data');
const tiny: DefaultDataSpec = { seed: 5, urisc: { size: 64, count: { train: 2, val: 1, test: 1 } }, crops: { count: 12, size: 32 } };

describe('ensureDefaultData', () => {
  it('generates on first use and reuses the cached copy afterwards', async () => {
    const first = await ensureDefaultData(tiny, { cacheDir });
    expect(first.created).toBe(true);
    expect(first.root).toBe(join(cacheDir, first.version));
    expect(first.version).toMatch(/^[0-9a-f]{12}$/);
    const train = await LabeledImages.open(first.urisc.splits.train);
    expect(train.size).toBe(2);
    expect((await UnlabeledCrops.open(first.crops.root)).size).toBe(12);

    const second = await ensureDefaultData(tiny, { cacheDir });
    expect(second.created).toBe(false);
    expect(second.urisc).toEqual(first.urisc);
    expect(second.crops).toEqual(first.crops);
    expect(readdirSync(cacheDir)).toEqual([first.version]);
  });

  it('names the cache by generator version and spec (key order does not matter)', () => {
    const reordered = { crops: { size: 32, count: 12 }, urisc: { count: { test: 1, val: 1, train: 2 }, size: 64 }, seed: 5 };
    expect(defaultDataVersion(reordered)).toBe(defaultDataVersion(tiny));
    expect(defaultDataVersion({ ...tiny, seed: 6 })).not.toBe(defaultDataVersion(tiny));
  });

  it('lets concurrent callers share one complete copy', async () => {
    const spec = { ...tiny, seed: 11 };
    const results = await Promise.all([ensureDefaultData(spec, { cacheDir }), ensureDefaultData(spec, { cacheDir })]);
    expect(results[0].root).toBe(results[1].root);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(readdirSync(cacheDir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('cleans up the temporary directory of a crashed generator', async () => {
    // A pid that cannot be running: above the kernel's pid_max.
    const stale = join(cacheDir, `.${defaultDataVersion({ ...tiny, seed: 12 })}.tmp-99999999-deadbeef`);
    mkdirSync(join(stale, 'urisc'), { recursive: true });
    await ensureDefaultData({ ...tiny, seed: 12 }, { cacheDir });
    expect(existsSync(stale)).toBe(false);
  });
});
