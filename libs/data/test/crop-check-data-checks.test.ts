/**
 * Issue 10, item 5: when the crop manifest is built, every crop's header is checked, so a corrupt
 * crop stops the run at the start (or is left out with badCrops 'skip'), not when its batch comes up;
 * a crop listed in a reused manifest but gone is named together with the manifest and the fix.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BadCropsError, UnlabeledCrops, checkCrop, writeImage } from '@emseg/data';
import { pattern8, tempDir } from './helpers.js';

const dir = tempDir('crop-check');
const W = 32;

/** Five good crops and four bad ones: garbage bytes, a truncated PNG, an empty file, one too small. */
async function cropTree(root: string): Promise<string[]> {
  for (let i = 0; i < 5; i++) await writeImage(join(root, 'a', `good-${i}.png`), { width: W, height: W, bitDepth: 8, data: pattern8(W, W) });
  writeFileSync(join(root, 'a', 'garbage.png'), 'not an image');
  const png = readFileSync(join(root, 'a', 'good-0.png'));
  writeFileSync(join(root, 'a', 'truncated.png'), png.subarray(0, Math.floor(png.length / 2)));
  writeFileSync(join(root, 'a', 'empty.tif'), '');
  await writeImage(join(root, 'a', 'small.png'), { width: 16, height: W, bitDepth: 8, data: pattern8(16, W) });
  return ['a/empty.tif', 'a/garbage.png', 'a/small.png', 'a/truncated.png'];
}

describe('header check of every crop when the listing is built', () => {
  it('checkCrop passes a good crop and names what is wrong with each bad one', async () => {
    const root = join(dir, 'one');
    await cropTree(root);
    expect(await checkCrop(join(root, 'a', 'good-0.png'), W)).toBeNull();
    expect(await checkCrop(join(root, 'a', 'garbage.png'))).toMatch(/garbage\.png: is not a readable image .*expected a complete, uncorrupted/);
    expect(await checkCrop(join(root, 'a', 'truncated.png'))).toMatch(/truncated\.png: does not end with the PNG end chunk \(IEND\): the file is truncated/);
    expect(await checkCrop(join(root, 'a', 'empty.tif'))).toMatch(/empty\.tif: is not a readable image/);
    expect(await checkCrop(join(root, 'a', 'small.png'), W)).toMatch(/small\.png: is 16 x 32 pixels, smaller than 32 x 32/);
  });

  it('fails by default, listing every bad crop by path, and writes no manifest', async () => {
    const root = join(dir, 'fail');
    const bad = await cropTree(root);
    const manifest = join(dir, 'fail.manifest');
    const err = await UnlabeledCrops.open(root, { manifest, minSize: W }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadCropsError);
    expect((err as BadCropsError).bad.map((b) => b.file)).toEqual(bad);
    expect((err as Error).message).toMatch(new RegExp(`^${root}: 4 of 9 crops fail the header check; expected only readable single-image crops`));
    for (const f of bad) expect((err as Error).message).toContain(join(root, f));
    expect(() => readFileSync(manifest)).toThrow(/ENOENT/);
  });

  it("with badCrops 'skip' leaves them out of the crops and the manifest, and says which", async () => {
    const root = join(dir, 'skip');
    const bad = await cropTree(root);
    const manifest = join(dir, 'skip.manifest');
    const crops = await UnlabeledCrops.open(root, { manifest, minSize: W, badCrops: 'skip' });
    expect(crops.files).toEqual(['a/good-0.png', 'a/good-1.png', 'a/good-2.png', 'a/good-3.png', 'a/good-4.png']);
    expect(crops.headerCheck?.checked).toBe(9);
    expect(crops.headerCheck?.skipped.map((b) => b.file)).toEqual(bad);
    expect(
      readFileSync(manifest, 'utf8')
        .split('\n')
        .filter((l) => l && !l.startsWith('#')),
    ).toEqual(crops.files);
    // Reading the manifest back does not check again (resume stays fast) and keeps the same crops.
    const again = await UnlabeledCrops.open(root, { manifest, badCrops: 'skip' });
    expect(again.headerCheck).toBeNull();
    expect(again.files).toEqual(crops.files);
  });

  it('a crop listed in a reused manifest but deleted is named with the manifest and how to rebuild it', async () => {
    const root = join(dir, 'gone');
    await cropTree(root);
    const manifest = join(dir, 'gone.manifest');
    await UnlabeledCrops.open(root, { manifest, badCrops: 'skip', minSize: W });
    rmSync(join(root, 'a', 'good-3.png'));
    const crops = await UnlabeledCrops.open(root, { manifest });
    await expect(crops.digest()).rejects.toThrow(
      `${join(root, 'a', 'good-3.png')}: does not exist; expected a crop listed in the manifest ${manifest}; if crops were removed or added on purpose, delete the manifest so the crops are listed again (the crop order of the remaining epochs then changes)`,
    );
    rmSync(manifest);
    expect((await UnlabeledCrops.open(root, { manifest, badCrops: 'skip', minSize: W })).size).toBe(4);
  });
});
