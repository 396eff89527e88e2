/**
 * The linear probe refuses a label with no membrane (all white) instead of fitting and scoring a
 * meaningless probe, naming the label file.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateSyntheticUrisc, greyImage, writeImage } from '@emseg/data';
import { disposeProbeData, loadProbeData } from '../src/probe.js';

const WORK = mkdtempSync(join(tmpdir(), 'emseg-probe-labels-'));
afterAll(() => rmSync(WORK, { recursive: true, force: true }));

describe('probe labels', () => {
  it('loads plausible labels and refuses an empty one, naming it', async () => {
    const dir = join(WORK, 'urisc');
    await generateSyntheticUrisc({ dir, seed: 3, count: { train: 1, val: 1, test: 0 }, size: 128, cellSize: 40 });
    disposeProbeData(await loadProbeData(dir, { patchSize: 64, mean: 0.573, std: 0.127 }));
    const labels = join(dir, 'label', 'Track1', 'val');
    const name = readdirSync(labels)[0]!;
    await writeImage(join(labels, name), greyImage(128, 128, new Uint8Array(128 * 128).fill(255)));
    await expect(loadProbeData(dir, { patchSize: 64, mean: 0.573, std: 0.127 })).rejects.toThrow(
      new RegExp(`${join(labels, name)}: no pixel is membrane when read as black-foreground`),
    );
  });
});
