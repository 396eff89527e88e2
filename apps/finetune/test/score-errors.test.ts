/**
 * Issue 10, `finetune score`: a prediction the U-RISC rules reject scores 0 and is flagged with its
 * reason in the table, JSON and CSV, with a warning line, and the rest of the folder is scored
 * (exit 0); when every prediction is rejected nothing was scorable and the command exits 1.
 * The same rule as the evaluation CLI's (libs/evaluation/test/rejected.test.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeImage, type GreyImage } from '@emseg/data';
import { buildFinetune, runCli, tempDir } from './helpers.js';

const tmp = tempDir('score-errors');

/** 64 x 64, membrane (0) on every 16th row and column (12%), background 255; `grey` replaces the left half of the background. */
function grid(grey = 255): GreyImage {
  const data = new Uint8Array(64 * 64);
  for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) data[y * 64 + x] = x % 16 === 0 || y % 16 === 0 ? 0 : x < 32 ? grey : 255;
  return { width: 64, height: 64, bitDepth: 8, data };
}

const labels = join(tmp.dir, 'labels');
const mixed = join(tmp.dir, 'mixed');
const rejected = join(tmp.dir, 'rejected');

const cli = (args: string[]) => runCli(args, { timeoutMs: 120_000 });

beforeAll(async () => {
  buildFinetune();
  for (const name of ['a', 'b']) await writeImage(join(labels, `${name}.tiff`), grid());
  await writeImage(join(mixed, 'a.png'), grid()); // perfect: F1 1
  await writeImage(join(mixed, 'b.png'), grid(200)); // three grey values: not binarized
  await writeImage(join(rejected, 'a.png'), grid(200));
  await writeImage(join(rejected, 'b.png'), { width: 64, height: 64, bitDepth: 8, data: new Uint8Array(64 * 64) }); // all membrane: ratio 0
});

afterAll(() => tmp.cleanup());

describe('finetune score with rejected predictions', () => {
  it('scores a rejected prediction 0, flags it with the reason everywhere, warns, and exits 0', async () => {
    const json = join(tmp.dir, 'mixed.json');
    const csv = join(tmp.dir, 'mixed.csv');
    const r = await cli(['score', '--pred', mixed, '--labels', labels, '--json', json, '--csv', csv]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^warning: rejected, scored 0: ${join(mixed, 'b.png')}: not binarized: 3 distinct grey values`, 'm'));
    expect(r.stderr).not.toMatch(/^error/m);
    expect(r.stdout).toMatch(/^b\.png\s+0\.0000\s+0\.0000\s+0\.0000\s+REJECTED/m);
    expect(r.stdout).toContain('official U-RISC F1 (mean over 2 images): 0.5000');
    const scores = JSON.parse(readFileSync(json, 'utf8')) as {
      meanF1: number;
      rejected: number;
      images: { name: string; f1: number; rejected: string | null }[];
    };
    expect(scores.meanF1).toBe(0.5);
    expect(scores.rejected).toBe(1);
    expect(scores.images.map((i) => [i.name, i.f1, i.rejected?.includes('not binarized') ?? null])).toEqual([
      ['a.png', 1, null],
      ['b.png', 0, true],
    ]);
    const rows = readFileSync(csv, 'utf8').trim().split('\n');
    expect(rows[2]).toMatch(/^b\.png,0,0,0,.*not binarized/);
    expect(rows[3]).toMatch(/^mean,0\.5,.*,1 rejected \(counted as 0\)$/);
  });

  it('exits 1 saying so when every prediction is rejected', async () => {
    const json = join(tmp.dir, 'rejected.json');
    const r = await cli(['score', '--pred', rejected, '--labels', labels, '--json', json]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`warning: rejected, scored 0: ${join(rejected, 'a.png')}: not binarized`);
    expect(r.stderr).toContain(`warning: rejected, scored 0: ${join(rejected, 'b.png')}: background/membrane ratio is 0.000`);
    expect(r.stderr).toMatch(/^error: nothing was scorable: all 2 prediction\(s\) were rejected by the U-RISC submission rules/m);
    // the per-image reasons are still written
    expect((JSON.parse(readFileSync(json, 'utf8')) as { rejected: number }).rejected).toBe(2);
  });
});
