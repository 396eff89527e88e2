/**
 * Issue 10, item 6: labels with no membrane, all membrane, or membranes on the wrong side of the
 * threshold are refused, for train and validation images, naming the file, its foreground fraction
 * and the reading in force (polarity, threshold); the fix each message suggests is applied here
 * through the real config loader and must then pass. "Inverted polarity" only where flipping works.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '@emseg/config';
import { readImage, writeImage } from '@emseg/data';
import { checkFinetuneConfig, finetuneSchema } from '../src/config.js';
import { loadTrainingSamples, openUriscData } from '../src/tasks/urisc.js';
import { QUICK_CONFIG, tempDir, tinyUrisc } from './helpers.js';

const tmp = tempDir('labels');
afterAll(() => tmp.cleanup());

/** Opens and loads as `finetune urisc` does, with `--set` overrides applied by the config loader. */
async function openAsUrisc(root: string, overrides: string[] = []): Promise<void> {
  const cfg = loadConfig(finetuneSchema, { file: QUICK_CONFIG, overrides: ['patches.size=64', 'patches.stride=64', ...overrides] });
  checkFinetuneConfig(cfg, 'test');
  const data = await openUriscData(root, { ...cfg.data, seed: 0 });
  await loadTrainingSamples(data.train, cfg.patches.size, cfg.data.maxMembraneFraction);
}

/** The `--set key=value` overrides a message suggests. */
const suggested = (message: string) => [...message.matchAll(/--set (\S+=[^\s)]+)/g)].map((m) => m[1]);

/**
 * A fresh dataset whose labels have their values mapped by `f`: all of them, or only `only`.
 * Returns the first label checked (validation labels are checked when the data are opened).
 */
async function withLabels(name: string, f: (v: number) => number, only?: 'train-000' | 'val-000'): Promise<{ root: string; label: string; image: string }> {
  const ds = await tinyUrisc(join(tmp.dir, name), { count: { train: 2, val: 1, test: 0 } });
  const { train, val } = ds.splits;
  const all = [join(val.labels, 'val-000.tiff'), join(train.labels, 'train-000.tiff'), join(train.labels, 'train-001.tiff')];
  for (const label of all.filter((l) => only === undefined || l.endsWith(`${only}.tiff`))) {
    const original = await readImage(label);
    await writeImage(label, { ...original, data: original.data.map(f) });
  }
  const first = only ?? 'val-000';
  const dirs = first.startsWith('val') ? val : train;
  return { root: ds.root, label: join(dirs.labels, `${first}.tiff`), image: join(dirs.images, `${first}.png`) };
}

async function refusal(root: string, overrides: string[] = []): Promise<string> {
  const err = await openAsUrisc(root, overrides).then(
    () => null,
    (e: Error) => e,
  );
  expect(err, 'the label should have been refused').not.toBeNull();
  return (err as Error).message;
}

describe('labels without a plausible membrane fraction', () => {
  it('an all-white label (no membrane) is refused, naming file, 0%, the reading and "wrong file"', async () => {
    const { root, label, image } = await withLabels('white', () => 255);
    const message = await refusal(root);
    expect(message).toBe(
      `${label}: no pixel is membrane (0% foreground) when read as black-foreground with data.labelThreshold 128 (every pixel has the value 255); ` +
        `expected membranes on some but at most 50% of the pixels (U-RISC: ~5%, black on white); no polarity or threshold gives that, so check that this is the right label file for ${image}`,
    );
    expect(message).not.toMatch(/inverted/);
  });

  it('an all-black label is "every pixel is membrane (100%)", not "inverted polarity"', async () => {
    const { root, label } = await withLabels('black', () => 0);
    const message = await refusal(root);
    expect(message).toMatch(
      new RegExp(
        `^${label}: every pixel is membrane \\(100% foreground\\) when read as black-foreground with data.labelThreshold 128 \\(every pixel has the value 0\\)`,
      ),
    );
    expect(message).not.toMatch(/inverted|--set/);
    // The fix the old message gave (flip the polarity) would give 0% membrane: it is refused too.
    expect(await refusal(root, ['data.polarity="white-foreground"'])).toMatch(/no pixel is membrane \(0% foreground\) when read as white-foreground/);
  });

  it('grey membranes above the threshold (150 on 255): refused with a threshold that works', async () => {
    const { root, label } = await withLabels('grey', (v) => (v < 128 ? 150 : 255));
    const message = await refusal(root);
    expect(message).toMatch(
      new RegExp(`^${label}: no pixel is membrane \\(0% foreground\\) when read as black-foreground with data.labelThreshold 128 \\(values 150\\.\\.255\\)`),
    );
    expect(message).not.toMatch(/inverted/);
    expect(suggested(message)).toEqual(['data.labelThreshold=203']);
    await openAsUrisc(root, suggested(message));
  });

  it('light membranes on a grey background (255 on 150): both polarity and threshold are suggested, and work', async () => {
    const { root } = await withLabels('light', (v) => (v < 128 ? 255 : 150));
    const message = await refusal(root);
    expect(message).toMatch(/no pixel is membrane \(0% foreground\)/);
    expect(suggested(message)).toEqual(['data.polarity=white-foreground', 'data.labelThreshold=203']);
    await openAsUrisc(root, suggested(message));
  });

  it('a really inverted label (white membranes) keeps the polarity hint, and the hint works', async () => {
    const { root, label } = await withLabels('inverted', (v) => 255 - v);
    const message = await refusal(root);
    expect(message).toMatch(
      new RegExp(
        `^${label}: \\d+\\.\\d% of the pixels are membrane when read as black-foreground .*: the label polarity looks inverted; .*--set data.polarity=white-foreground`,
      ),
    );
    expect(suggested(message)).toEqual(['data.polarity=white-foreground']);
    await openAsUrisc(root, suggested(message));
  });

  it('a training label with no membrane is refused too (the check is not only at validation)', async () => {
    const { root, label } = await withLabels('train-white', () => 255, 'train-000');
    expect(await refusal(root)).toMatch(new RegExp(`^${label}: no pixel is membrane \\(0% foreground\\)`));
  });

  it('an all-white validation label is refused when the data are opened, before any training', async () => {
    const { root, label } = await withLabels('val-white', () => 255, 'val-000');
    const cfg = loadConfig(finetuneSchema, { file: QUICK_CONFIG });
    await expect(openUriscData(root, { ...cfg.data, seed: 0 })).rejects.toThrow(
      `${label}: no pixel is membrane (0% foreground) when read as black-foreground with data.labelThreshold 128 (every pixel has the value 255)`,
    );
  });
});
