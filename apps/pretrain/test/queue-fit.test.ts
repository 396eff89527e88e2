/**
 * Issue 18, part 3: MoCo's queue fits the crops. The "auto" rule (largest multiple of the batch up to
 * a quarter of the crops, at least one batch), the warning for an explicit K that is not below the
 * crop count, and the schema of moco.queueSize (a positive integer or "auto"). No training.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '@emseg/config';
import { checkMocoConfig, mocoSchema, type MocoConfig } from '../src/config.js';
import { autoQueueSize, queueSizeOf, queueSizeWarning, resolveQueueSize } from '../src/queue-fit.js';

const CONFIGS = join(__dirname, '..', '..', '..', 'configs', 'pretrain');
const load = (file: string, overrides: string[] = []): MocoConfig => loadConfig(mocoSchema, { file: join(CONFIGS, file), overrides });

describe('autoQueueSize', () => {
  it.each([
    // crops, batch, K
    [2048, 32, 512], // the quick preset on the embedded crops
    [500_000, 128, 124_928],
    [1000, 32, 224], // 250 rounded down to a multiple of 32
    [100, 32, 32], // a quarter is below one batch: one batch, still below the crop count
    [33, 32, 32],
    [32, 32, 32], // exactly one batch: the only valid K (the warning says so)
  ])('%i crops, batch %i -> K = %i', (crops, batch, k) => {
    const got = autoQueueSize(crops, batch);
    expect(got).toBe(k);
    expect(got % batch).toBe(0);
    expect(got).toBeGreaterThanOrEqual(batch);
  });

  it('refuses fewer crops than one batch, naming both numbers and the fix', () => {
    expect(() => autoQueueSize(20, 32)).toThrow(
      'moco.queueSize "auto": the 20 crops are fewer than one batch (train.batchSize 32); add crops or lower train.batchSize',
    );
  });
});

describe('queueSizeWarning', () => {
  it('is silent while K is below the crop count', () => {
    expect(queueSizeWarning(65536, 500_000, 128)).toBeNull();
    expect(queueSizeWarning(2016, 2048, 32)).toBeNull();
  });

  it('names K, the crop count, the consequence and a valid --set for an oversized K', () => {
    expect(queueSizeWarning(2048, 2048, 32)).toBe(
      "warning: moco.queueSize 2048 is not below the 2048 training crops: after one epoch a crop's own older key sits in the queue as one of its negatives, " +
        'and frozen features can get worse with more steps; use --set moco.queueSize=512 (the largest multiple of train.batchSize 32 up to a quarter of the crops; "auto" picks it)',
    );
    expect(queueSizeWarning(65536, 24, 8)).toContain('--set moco.queueSize=8 ');
  });

  it('says when no multiple of the batch fits', () => {
    expect(queueSizeWarning(32, 32, 32)).toMatch(/no multiple of train\.batchSize 32 is below 32: add crops or lower train\.batchSize$/);
  });
});

describe('moco.queueSize in the config', () => {
  it('the quick preset is "auto", resolved from the crops; cem500k keeps its 65536', () => {
    const quick = load('quick.json');
    expect(quick.moco.queueSize).toBe('auto');
    expect(() => checkMocoConfig(quick, 'quick.json')).not.toThrow();
    expect(() => queueSizeOf(quick)).toThrow(/resolved from the crop count/);
    const resolved = resolveQueueSize(quick, 2048);
    expect(resolved.moco.queueSize).toBe(512);
    expect(quick.moco.queueSize).toBe('auto'); // not mutated
    expect(load('cem500k.json').moco.queueSize).toBe(65536);
  });

  it('an explicit number and BYOL stay as they are', () => {
    const explicit = load('quick.json', ['moco.queueSize=4096']);
    expect(resolveQueueSize(explicit, 2048)).toBe(explicit);
    const byol = load('byol-quick.json');
    expect(resolveQueueSize(byol, 10)).toBe(byol);
  });

  it('accepts "auto" from --set and rejects other strings, naming the field', () => {
    expect(load('cem500k.json', ['moco.queueSize=auto']).moco.queueSize).toBe('auto');
    expect(() => load('quick.json', ['moco.queueSize=big'])).toThrow(/invalid configuration\n {2}- moco\.queueSize must be one of "auto"/);
    expect(() => load('quick.json', ['moco.queueSize=0'])).toThrow(/moco\.queueSize must be >= 1/);
  });
});
