/**
 * Issue 10, item 5, end to end through pretrainMoco: a corrupt crop stops the run before the first
 * step (naming the file, the log and the config key that skips it), data.badCrops "skip" trains
 * without it and says so, and a resume after crops changed names <out>/crops.manifest and the fix,
 * then warns that the crop order changes once the manifest is rebuilt.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '@emseg/config';
import { generateSyntheticCrops } from '@emseg/data';
import type { GracefulStop } from '@emseg/training';
import { mocoSchema, type MocoConfig } from '../src/config.js';
import { pretrainMoco } from '../src/pretrain.js';

const QUICK = join(__dirname, '..', '..', '..', 'configs', 'pretrain', 'quick.json');
const WORK = mkdtempSync(join(tmpdir(), 'emseg-pretrain-crops-'));
afterAll(() => rmSync(WORK, { recursive: true, force: true }));

function tinyConfig(extra: string[] = []): MocoConfig {
  return loadConfig(mocoSchema, {
    file: QUICK,
    overrides: [
      'data.cropSize=32',
      'train.batchSize=8',
      'moco.queueSize=32',
      'moco.mlpHidden=32',
      'moco.dim=16',
      'moco.shuffleGroups=2',
      'train.checkpointEvery=1',
      'probe.every=0',
      ...extra,
    ],
  });
}

let clean: string;
beforeAll(async () => {
  clean = join(WORK, 'clean');
  await generateSyntheticCrops({ dir: clean, seed: 5, count: 24, size: 40, sources: 2 });
});

/** A copy of the clean crops plus one file of garbage bytes. */
function withCorruptCrop(name: string): { root: string; corrupt: string } {
  const root = join(WORK, name);
  cpSync(clean, root, { recursive: true });
  const corrupt = join(root, 'source-00', 'broken.png');
  writeFileSync(corrupt, 'not a PNG at all');
  return { root, corrupt };
}

describe('crops are checked when the manifest is built', () => {
  it('data.badCrops "fail" (the default) stops before the first step, naming the file, the log and the fix', async () => {
    const { root, corrupt } = withCorruptCrop('fail');
    const out = mkdtempSync(join(WORK, 'out-'));
    let steps = 0;
    const cfg = tinyConfig(['train.maxSteps=2']);
    expect(cfg.data.badCrops).toBe('fail');
    const run = pretrainMoco({ cfg, dataDir: root, outDir: out, listener: { step: () => void steps++ } });
    await expect(run).rejects.toThrow(`${root}: 1 of 25 crops fail the header check`);
    const message = await run.catch((e: Error) => e.message);
    expect(message).toContain(`${corrupt}: is not a readable image`);
    expect(message).toContain(`or train without them with --set data.badCrops=skip; all 1 are listed in ${join(out, 'bad-crops.log')}`);
    expect(steps).toBe(0);
    expect(readFileSync(join(out, 'bad-crops.log'), 'utf8')).toContain(`${corrupt}: is not a readable image`);
    expect(existsSync(join(out, 'crops.manifest'))).toBe(false);
  });

  it('data.badCrops "skip" trains without the bad crop, counts it in a warning and lists it in the log', async () => {
    const { root, corrupt } = withCorruptCrop('skip');
    const out = mkdtempSync(join(WORK, 'out-'));
    const warnings: string[] = [];
    let crops = 0;
    const result = await pretrainMoco({
      cfg: tinyConfig(['train.maxSteps=1', 'data.badCrops="skip"']),
      dataDir: root,
      outDir: out,
      listener: { warn: (m) => void warnings.push(m), start: (info) => void (crops = info.crops) },
    });
    expect(result.status).toBe('FINISHED');
    expect(crops).toBe(24);
    expect(warnings).toEqual([
      `warning: left out 1 of 25 crops that fail the header check (data.badCrops "skip"); they are listed in ${join(out, 'bad-crops.log')}`,
    ]);
    expect(readFileSync(join(out, 'bad-crops.log'), 'utf8')).toContain(corrupt);
    expect(readFileSync(join(out, 'crops.manifest'), 'utf8')).not.toContain('broken.png');
  });
});

describe('resume after the crops changed', () => {
  it('names <out>/crops.manifest and the fix, then warns that the crop order changes once it is rebuilt', async () => {
    const root = join(WORK, 'resume');
    cpSync(clean, root, { recursive: true });
    const out = mkdtempSync(join(WORK, 'out-'));
    const cfg = tinyConfig(['train.maxSteps=4']);
    let steps = 0;
    const stop: GracefulStop = {
      get requested() {
        return steps >= 2;
      },
      signal: null,
      dispose() {},
    };
    const first = await pretrainMoco({ cfg, dataDir: root, outDir: out, stop, listener: { step: () => void steps++ } });
    expect(first.status).toBe('KILLED');

    const removed = join(root, 'source-01', '0000023.png');
    expect(existsSync(removed)).toBe(true);
    rmSync(removed);
    const manifest = join(out, 'crops.manifest');
    await expect(pretrainMoco({ cfg, dataDir: root, outDir: out, resume: true })).rejects.toThrow(
      `${removed}: does not exist; expected a crop listed in the manifest ${manifest}; if crops were removed or added on purpose, delete the manifest so the crops are listed again (the crop order of the remaining epochs then changes)`,
    );

    rmSync(manifest); // the fix the message gives
    const warnings: string[] = [];
    const resumed = await pretrainMoco({ cfg, dataDir: root, outDir: out, resume: true, listener: { warn: (m) => void warnings.push(m) } });
    expect(resumed.status).toBe('FINISHED');
    expect(resumed.steps).toBe(4);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      new RegExp(
        `^warning: the crops in ${root} \\(23 crops, digest [0-9a-f]{16}\\) are not those checkpoint \\S+ was trained on \\(24 crops, digest [0-9a-f]{16}\\): the remaining epochs see a different crop order`,
      ),
    );
  });
});
