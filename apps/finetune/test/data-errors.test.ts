/**
 * The bad inputs of issue 7 give clear errors that name the file or field and the fix: missing
 * labels, inverted label polarity (membrane fraction above 50%), images smaller than a patch, a
 * folder that is not in the U-RISC layout, and inconsistent configurations.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '@emseg/config';
import { type SyntheticUriscDataset } from '@emseg/data';
import { checkFinetuneConfig, finetuneSchema } from '../src/config.js';
import { loadTrainingSamples, openUriscData, type UriscDataOptions } from '../src/tasks/urisc.js';
import { QUICK_CONFIG, tempDir, tinyConfig, tinyUrisc } from './helpers.js';

const tmp = tempDir('errors');
const options: UriscDataOptions = { track: 'Track1', polarity: 'black-foreground', labelThreshold: 128, holdout: 1, seed: 0 };
let ds: SyntheticUriscDataset;

beforeAll(async () => {
  ds = await tinyUrisc(join(tmp.dir, 'urisc'), { count: { train: 3, val: 1, test: 1 } });
});

afterAll(() => tmp.cleanup());

describe('U-RISC data checks', () => {
  it('opens train, val and test splits of the release layout', async () => {
    const data = await openUriscData(ds.root, options);
    expect([data.train.size, data.validation.size, data.test?.size]).toEqual([3, 1, 1]);
    expect(data.validationSource).toBe('val');
  });

  it('holds validation images out of train when there is no val split (Track 2)', async () => {
    const t2 = await tinyUrisc(join(tmp.dir, 'track2'), { count: { train: 3, val: 0, test: 0 } });
    const data = await openUriscData(t2.root, { ...options, holdout: 1 });
    expect(data.validationSource).toBe('holdout');
    expect([data.train.size, data.validation.size]).toEqual([2, 1]);
    expect(data.test).toBeNull();
    expect(data.train.names).not.toContain(data.validation.names[0]);
  });

  it('names a training image without a label', async () => {
    const copy = await tinyUrisc(join(tmp.dir, 'missing'), { count: { train: 2, val: 1, test: 0 } });
    rmSync(join(copy.splits.train.labels, 'train-001.tiff'));
    await expect(openUriscData(copy.root, options)).rejects.toThrow(
      `${join(copy.splits.train.images, 'train-001.png')}: image has no label named "train-001.*" in ${copy.splits.train.labels}; expected every image to have a label with the same stem`,
    );
  });

  it('detects inverted labels by their membrane fraction and says how to fix the polarity', async () => {
    const data = await openUriscData(ds.root, { ...options, polarity: 'white-foreground' });
    await expect(loadTrainingSamples(data.train, 64, 0.5)).rejects.toThrow(
      new RegExp(
        `${join(ds.splits.train.labels, 'train-000.tiff')}: \\d+\\.\\d% of the pixels are membrane when read as white-foreground with data.labelThreshold 128 \\(values \\d+\\.\\.\\d+\\), more than 50% \\(data\\.maxMembraneFraction\\): the label polarity looks inverted; .*--set data.polarity=black-foreground`,
      ),
    );
  });

  it('refuses training images smaller than a patch', async () => {
    const data = await openUriscData(ds.root, options);
    await expect(loadTrainingSamples(data.train, 256, 0.5)).rejects.toThrow(
      `${join(ds.splits.train.images, 'train-000.png')}: is 128 x 128 pixels, smaller than the training patch (256 x 256); expected images of at least 256 x 256 pixels, or a smaller patches.size (--set patches.size=128)`,
    );
  });

  it('explains the expected layout when --data is not a U-RISC release', async () => {
    writeFileSync(join(tmp.dir, 'note.txt'), 'not data');
    await expect(openUriscData(tmp.dir, options)).rejects.toThrow(
      /imgs\/Track1\/train: does not exist; expected the U-RISC release layout .*imgs\/Track1\/\{train,val,test\}/,
    );
    await expect(openUriscData(ds.root, { ...options, track: 'Track2' })).rejects.toThrow(/imgs\/Track2\/train: does not exist.*data.track/);
  });
});

describe('configuration checks', () => {
  it('the shipped configs load and pass the cross-field checks', () => {
    for (const name of ['quick', 'track1', 'track2']) {
      const file = join(QUICK_CONFIG, '..', `${name}.json`);
      expect(() => checkFinetuneConfig(loadConfig(finetuneSchema, { file }), file)).not.toThrow();
    }
    const track1 = loadConfig(finetuneSchema, { file: join(QUICK_CONFIG, '..', 'track1.json') });
    expect([
      track1.model.architecture,
      track1.patches.size,
      track1.patches.stride,
      track1.loss.kind,
      track1.loss.gamma,
      track1.loss.lambda,
      track1.optimizer.kind,
    ]).toEqual(['resnet50', 1024, 512, 'focal-dice', 2, 1, 'adam']);
  });

  it('names every bad field', () => {
    expect(() => tinyConfig(['patches.size=100'])).toThrow(/patches.size must be multiple of 32/);
    expect(() => tinyConfig(['patches.stride=128'])).toThrow(/patches.stride \(128\) must not exceed patches.size \(64\)/);
    expect(() => tinyConfig(['inference.overlap=128'])).toThrow(/inference.overlap \(128\) must be smaller than inference.tileSize \(128\)/);
    expect(() => tinyConfig(['optimizer.weightDecay=0.01'])).toThrow(/optimizer.weightDecay \(0.01\) needs optimizer.kind "adamw"/);
    expect(() => tinyConfig(['model.unfreezeAfter=10'])).toThrow(/model.unfreezeAfter \(10\) needs a frozen encoder/);
    expect(() => tinyConfig(['loss.kind=dice'])).toThrow(/loss.kind must be one of "focal-dice", "bce"/);
  });
});
