/**
 * Issue 12 part 4, `predict` of 3D stacks through the built CLI: a multi-page TIFF is predicted
 * as a stack (default `--stack stack`, or `--stack orthoplane`) into `<out>/<stem>.tif` (8-bit
 * mask stack) and `<out>/probability/<stem>.tif` (16-bit), exactly as the library's predictStack
 * writes them, beside 2D images predicted as before; nothing hidden is left in the output folder.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readImage, readStack, writeImage, writeStack, type GreyImage } from '@emseg/data';
import { predictStack, Segmenter, type StackMode } from '@emseg/segmentation';
import { buildFinetune, runCli, saveTinyModel, startCli, tempDir } from './helpers.js';

const tmp = tempDir('predict-stack');
const [D, H, W] = [5, 64, 96];
let model: string;
let inputs: string;

function slice(z: number): GreyImage {
  const data = new Uint8Array(W * H);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[y * W + x] = (x * 5 + y * 11 + z * 23 + ((x >> 3) ^ (y >> 3) ^ z) * 37) % 256;
  return { width: W, height: H, bitDepth: 8, data };
}

beforeAll(async () => {
  buildFinetune();
  model = await saveTinyModel(join(tmp.dir, 'model'));
  inputs = join(tmp.dir, 'inputs');
  await writeStack(
    join(inputs, 'vol.tif'),
    Array.from({ length: D }, (_, z) => slice(z)),
  );
  await writeImage(join(inputs, 'flat.png'), slice(0));
});

afterAll(() => tmp.cleanup());

/** What predictStack writes for the saved model, for comparison. */
async function expected(mode: StackMode): Promise<{ mask: GreyImage[]; probability: GreyImage[] }> {
  const segmenter = Segmenter.load(model);
  const out = join(tmp.dir, `library-${mode}`);
  try {
    await predictStack(segmenter, join(inputs, 'vol.tif'), {
      mode,
      inference: segmenter.loadedInfo!.inference,
      threshold: 0.5,
      maskOut: join(out, 'vol.tif'),
      probabilityOut: join(out, 'probability.tif'),
    });
  } finally {
    segmenter.dispose();
  }
  return { mask: [...(await readStack(join(out, 'vol.tif'))).slices], probability: [...(await readStack(join(out, 'probability.tif'))).slices] };
}

const hidden = (dir: string) => readdirSync(dir).filter((f) => f.startsWith('.'));
const values = (slices: readonly GreyImage[]) => slices.map((s) => Array.from(s.data));

describe('predict with a stack input', () => {
  it('--stack orthoplane writes the mask and probability stacks predictStack writes, and the 2D image as before', async () => {
    const out = join(tmp.dir, 'out-ortho');
    const r = await runCli(['predict', inputs, '--model', model, '--out', out, '--stack', 'orthoplane']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('1 stack(s) in orthoplane mode, as mask stacks (foreground white 255)');
    expect(r.stdout).toMatch(
      new RegExp(
        `^vol: ${W} x ${H} x ${D} stack \\(orthoplane\\), [0-9.]+% foreground, .* slices/s\\) -> ${join(out, 'vol.tif')} \\(\\+ ${join(out, 'probability', 'vol.tif')}\\)$`,
        'm',
      ),
    );
    expect(r.stdout).toContain(`2 image(s) predicted into ${out}`);
    const mask = await readStack(join(out, 'vol.tif'));
    const probability = await readStack(join(out, 'probability', 'vol.tif'));
    expect([mask.depth, mask.width, mask.height, mask.bitDepth]).toEqual([D, W, H, 8]);
    expect([probability.depth, probability.bitDepth]).toEqual([D, 16]);
    const want = await expected('orthoplane');
    expect(values(mask.slices)).toEqual(values(want.mask));
    expect(values(probability.slices)).toEqual(values(want.probability));
    // the 2D input: a mask PNG and a probability PNG, as predict always wrote them
    expect((await readImage(join(out, 'flat.png'))).width).toBe(W);
    expect(existsSync(join(out, 'probability', 'flat.png'))).toBe(true);
    expect(hidden(out)).toEqual([]);
    expect(hidden(join(out, 'probability'))).toEqual([]);
  });

  it('predicts slice by slice by default; --probability none writes only the mask stack', async () => {
    const out = join(tmp.dir, 'out-stack');
    const r = await runCli(['predict', join(inputs, 'vol.tif'), '--model', model, '--out', out, '--probability', 'none']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`vol: ${W} x ${H} x ${D} stack (stack)`);
    expect(readdirSync(out)).toEqual(['vol.tif']);
    expect(values((await readStack(join(out, 'vol.tif'))).slices)).toEqual(values((await expected('stack')).mask));
  });

  it('SIGINT during an orthoplane stops with exit 130, the stack not predicted and no scratch left', async () => {
    const out = join(tmp.dir, 'out-sigint');
    const run = startCli(['predict', join(inputs, 'vol.tif'), '--model', model, '--out', out, '--stack', 'orthoplane']);
    // the model line comes just before prediction starts (the signal handler is in place by then)
    const poll = setInterval(() => {
      if (run.stderr().includes('model:')) {
        clearInterval(poll);
        setTimeout(() => run.child.kill('SIGINT'), 300);
      }
    }, 20);
    const r = await run.done;
    clearInterval(poll);
    expect(r.status, r.stderr).toBe(130);
    expect(r.stdout).toContain(`summary: 0 of 1 image(s) written to ${out}; 0 failed; 1 not predicted (stopped by SIGINT)`);
    expect(r.stdout).toContain(`  not predicted: ${join(inputs, 'vol.tif')}`);
    expect(readdirSync(out)).toEqual(['probability']);
    expect(readdirSync(join(out, 'probability'))).toEqual([]);
  });

  it('refuses a stack whose slices are smaller than the tile before predicting, naming it', async () => {
    const out = join(tmp.dir, 'out-small');
    const r = await runCli(['predict', join(inputs, 'vol.tif'), '--model', model, '--out', out, '--tile-size', '128']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${join(inputs, 'vol.tif')}: is ${W} x ${H} pixels, smaller than the inference tile (128 x 128)`);
    expect(readdirSync(out)).toEqual(['probability']);
  });
});
