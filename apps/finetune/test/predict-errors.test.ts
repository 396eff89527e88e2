/**
 * Issue 10, `predict`: nothing lost, nothing silent. Through the built CLI with a real (tiny,
 * briefly trained) model and real images: an output folder holding an input is refused before the
 * model loads; an --out that cannot be written fails up front naming it; a too-small image gets a
 * tile suggestion that works when applied; unreadable inputs are all named before anything is
 * predicted; an image that fails mid-run is reported and the others written (exit 1); SIGINT stops
 * after the current tile batch with a summary (exit 130).
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LabeledImages, readImage, writeImage, type GreyImage } from '@emseg/data';
import { resnetEncoder } from '@emseg/models';
import { finetune } from '@emseg/segmentation';
import { Segmenter } from '@emseg/segmentation';
import { loadTrainingSamples } from '../src/tasks/urisc.js';
import { buildFinetune, type CliOptions, runCli, taskFor, tempDir, tinyConfig, tinyUrisc } from './helpers.js';

const tmp = tempDir('predict-errors');
let model: string;

/** A grey test image with structure (so the model has something to segment). */
function pattern(width: number, height: number, seed = 1): GreyImage {
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = (x * 7 + y * 13 + seed * 31 + ((x >> 4) ^ (y >> 4)) * 40) % 256;
  return { width, height, bitDepth: 8, data };
}

/** A folder of PNGs `name -> size` (square). */
async function imageFolder(name: string, sizes: Record<string, number>): Promise<string> {
  const dir = join(tmp.dir, name);
  for (const [file, size] of Object.entries(sizes)) await writeImage(join(dir, file), pattern(size, size, file.length));
  return dir;
}

const snapshot = (dir: string) => Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f)).toString('base64')]));

const cli = (args: string[], options: Pick<CliOptions, 'uid' | 'onStdout'> = {}) => runCli(args, options);

beforeAll(async () => {
  // the CLI under test is the built one
  buildFinetune();
  // a real model, trained for a few steps (its saved tiling: tile 128, overlap 0)
  const ds = await tinyUrisc(join(tmp.dir, 'data'), { count: { train: 2, val: 0, test: 0 } });
  const cfg = tinyConfig();
  const samples = await loadTrainingSamples(await LabeledImages.open(ds.splits.train), cfg.patches.size, 0.5);
  const segmenter = Segmenter.create(
    resnetEncoder({ depth: 18, seed: 1 }),
    { mean: [0.5], std: [0.2] },
    { encoderSource: 'random', encoderRunId: null },
    { decoderChannels: cfg.model.decoderChannels, seed: 2 },
  );
  try {
    model = (await finetune({ cfg, task: taskFor(cfg), segmenter, train: samples, validation: null, outDir: join(tmp.dir, 'run') })).modelDir;
  } finally {
    segmenter.dispose();
  }
});

afterAll(() => tmp.cleanup());

describe('predict never writes over an input', () => {
  it('refuses --out equal to the input folder (also via a symlink or ..), before loading the model', async () => {
    const input = await imageFolder('inputs', { 'a.png': 128, 'b.png': 128 });
    const before = snapshot(input);
    symlinkSync(input, join(tmp.dir, 'link'));
    for (let out of [input, join(tmp.dir, 'link'), `${input}/../inputs`, tmp.dir]) {
      // --model nowhere: the refusal must come before the model is even looked for
      const r = await cli(['predict', input, '--model', join(tmp.dir, 'nowhere'), '--out', out]);
      out = resolvePath(out);
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(
          `^error: ${out}: output folder holds the input image ${join(input, 'a.png')}.*; expected an --out folder that holds none of the inputs`,
          'm',
        ),
      );
      expect(r.stderr).not.toMatch(/nowhere/);
    }
    // an output file that would be an input: predicting inputs/a.png into inputs/
    const file = await cli(['predict', join(input, 'a.png'), '--model', model, '--out', input]);
    expect(file.status).toBe(1);
    expect(file.stderr).toContain(`output folder holds the input image ${join(input, 'a.png')}`);
    expect(snapshot(input)).toEqual(before);
  });
});

describe('predict checks its output folder before predicting', () => {
  it('names an --out under a regular file', async () => {
    const input = await imageFolder('in-notdir', { 'a.png': 128 });
    writeFileSync(join(tmp.dir, 'plain-file'), 'x');
    const out = join(tmp.dir, 'plain-file', 'pred');
    const r = await cli(['predict', input, '--model', join(tmp.dir, 'nowhere'), '--out', out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `^error: ${out}: cannot be created: it or one of its parents is a file, not a folder; expected a folder that can be created and written \\(--out\\)$`,
        'm',
      ),
    );
    expect(r.stderr).not.toMatch(/ENOTDIR/);
  });

  it('names an --out without write permission', async () => {
    const input = await imageFolder('in-readonly', { 'a.png': 128 });
    const out = join(tmp.dir, 'readonly');
    mkdirSync(out);
    chmodSync(out, 0o555);
    // root writes anywhere: run the CLI as an unprivileged user then (it only needs to read)
    const uid = process.getuid?.() === 0 ? 65534 : undefined;
    if (uid !== undefined) chmodSync(tmp.dir, 0o755);
    const r = await cli(['predict', input, '--model', join(tmp.dir, 'nowhere'), '--out', join(out, 'pred')], { uid });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`^error: ${join(out, 'pred')}: is not writable \\(permission denied\\); expected a folder that can be created and written`, 'm'),
    );
  });
});

describe('predict suggests a tile that works', () => {
  it('applying the suggested tile size (and overlap) to a small image succeeds', async () => {
    const input = await imageFolder('small', { 'big.png': 128, 'tiny.png': 40 });
    const out = join(tmp.dir, 'pred-small');
    const base = ['predict', input, '--model', model, '--out', out];
    const r = await cli([...base, '--overlap', '64']);
    expect(r.status).toBe(1);
    const suggestion = /or a smaller tile \(([^)]*)\)/.exec(r.stderr)?.[1];
    expect(suggestion, r.stderr).toBe('--tile-size 32 --overlap 16');
    expect(r.stderr).toContain(`${join(input, 'tiny.png')}: is 40 x 40 pixels, smaller than the inference tile (128 x 128)`);
    // refused before any image was predicted
    expect(existsSync(join(out, 'big.png'))).toBe(false);
    const applied = await cli([...base, ...suggestion!.split(' ')]);
    expect(applied.status, applied.stderr).toBe(0);
    expect((await readImage(join(out, 'tiny.png'))).width).toBe(40);
  });

  it('says when no tile fits an image under 32 pixels', async () => {
    const input = await imageFolder('minute', { 'dot.png': 20 });
    const r = await cli(['predict', input, '--model', model, '--out', join(tmp.dir, 'pred-minute')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      `${join(input, 'dot.png')}: is 20 x 20 pixels, smaller than the inference tile (128 x 128); expected images of at least 32 x 32 pixels, the U-Net's smallest input (no tile fits this one)`,
    );
  });
});

describe('predict over a folder with bad images', () => {
  it('names every unreadable input before predicting anything', async () => {
    const input = await imageFolder('corrupt-headers', { 'a.png': 128 });
    writeFileSync(join(input, 'b.png'), 'not a png');
    writeFileSync(join(input, 'c.tif'), Buffer.alloc(64));
    const out = join(tmp.dir, 'pred-corrupt-headers');
    const r = await cli(['predict', input, '--model', join(tmp.dir, 'nowhere'), '--out', out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^error: 2 of 3 input image\(s\) cannot be read, so nothing was predicted:/m);
    expect(r.stderr).toContain(`${join(input, 'b.png')}: is not a readable image`);
    expect(r.stderr).toContain(`${join(input, 'c.tif')}: is not a readable image`);
    expect(existsSync(join(out, 'a.png'))).toBe(false);
  });

  it('predicts the good images when one fails to decode, then says what was and was not written (exit 1)', async () => {
    const input = await imageFolder('truncated', { 'a.png': 128, 'b.png': 128, 'c.png': 128 });
    const whole = readFileSync(join(input, 'b.png'));
    writeFileSync(join(input, 'b.png'), whole.subarray(0, whole.length >> 1)); // header intact, pixels cut
    const out = join(tmp.dir, 'pred-truncated');
    const r = await cli(['predict', input, '--model', model, '--out', out]);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toContain(`error: ${join(input, 'b.png')}: is not a readable image`);
    expect(r.stdout).toContain(`summary: 2 of 3 image(s) written to ${out}; 1 failed; 0 not predicted`);
    expect(r.stdout).toContain(`  written: ${join(input, 'a.png')} -> ${join(out, 'a.png')}`);
    expect(r.stdout).toContain(`  written: ${join(input, 'c.png')} -> ${join(out, 'c.png')}`);
    expect(r.stdout).toMatch(new RegExp(`^  failed: ${join(input, 'b.png')}: is not a readable image`, 'm'));
    expect(readdirSync(out).sort()).toEqual(['a.png', 'c.png', 'probability']);
  });
});

describe('predict on SIGINT', () => {
  it('stops after the current tile batch, lists what was written and what was not, exits 130', async () => {
    // 256 px images in 32 px tiles with flip TTA: 64 x 4 forward passes each, seconds per image
    const input = await imageFolder('many', { 'a.png': 256, 'b.png': 256, 'c.png': 256 });
    const out = join(tmp.dir, 'pred-many');
    let signalled = false;
    const r = await cli(['predict', input, '--model', model, '--out', out, '--tile-size', '32', '--tta'], {
      onStdout: (stdout, child) => {
        if (!signalled && stdout.includes(`-> ${join(out, 'a.png')}`)) {
          signalled = true;
          child.kill('SIGINT');
        }
      },
    });
    expect(signalled, r.stdout + r.stderr).toBe(true);
    expect(r.status, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/SIGINT received: stopping after the current tile batch/);
    expect(r.stdout).toMatch(new RegExp(`summary: 1 of 3 image\\(s\\) written to ${out}; 0 failed; 2 not predicted \\(stopped by SIGINT\\)`));
    expect(r.stdout).toContain(`  written: ${join(input, 'a.png')} -> ${join(out, 'a.png')}`);
    expect(r.stdout).toContain(`  not predicted: ${join(input, 'b.png')}`);
    expect(r.stdout).toContain(`  not predicted: ${join(input, 'c.png')}`);
    // what was written is complete; nothing half-written is left
    expect(readdirSync(out).sort()).toEqual(['a.png', 'probability']);
    expect(readdirSync(join(out, 'probability'))).toEqual(['a.png']);
    expect((await readImage(join(out, 'a.png'))).width).toBe(256);
  });
});
