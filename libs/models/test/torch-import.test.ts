import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '@emseg/tf';
import { encoderFromTorchStateDict, loadEncoder, readTorchExport, resnetEncoder, type TorchTensor } from '@emseg/models';
// The importer is a workspace tool (tools/ is no Nx project); this test is its test.
// eslint-disable-next-line @nx/enforce-module-boundaries
import { importTorchCheckpoint } from '../../../tools/import-torch/import-torch.mjs';
import { maxAbsDiff, tempDir } from './helpers.js';

const repo = resolve(import.meta.dirname, '..', '..', '..');
const tools = join(repo, 'tools', 'import-torch');
const python = join(repo, '.venv', 'bin', 'python');
const run = promisify(execFile);
const work = tempDir('torch');

/** The project venv (torch 2.13) is provisioned by tools/setup; wait for it rather than skip. */
async function waitForVenv(timeoutMs: number): Promise<void> {
  const stamp = join(repo, '.venv', '.emseg-stamp');
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(stamp)) {
    if (Date.now() > deadline) throw new Error(`${stamp} did not appear: run \`node tools/setup/setup.mjs\` to provision the Python venv with torch`);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function py(script: string, ...args: string[]): Promise<string> {
  const { stdout } = await run(python, [join(tools, script), ...args], { maxBuffer: 64 << 20 });
  return stdout;
}

function float32(file: string): Float32Array {
  const b = readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** Features of the bundle at `bundle` on the reference input, against PyTorch's, as max |difference| per stride. */
async function compareWithTorch(reference: string, bundle: string): Promise<{ shapes: number[][]; diffs: number[] }> {
  const spec = JSON.parse(readFileSync(join(reference, 'features.json'), 'utf8')) as {
    input: number[];
    features: Array<{ file: string; shape: number[] }>;
  };
  const { encoder } = await loadEncoder(bundle);
  const [b, h, w, c] = spec.input;
  const x = tf.tensor4d(float32(join(reference, 'input.bin')), [b, h, w, c]);
  const ours = encoder.features(x);
  const torch = spec.features.map((f) => tf.tensor(float32(join(reference, f.file)), f.shape));
  const result = { shapes: ours.map((f) => f.shape), diffs: ours.map((f, i) => maxAbsDiff(f, torch[i])) };
  expect(result.shapes).toEqual(spec.features.map((f) => f.shape));
  tf.dispose([x, ours, torch]);
  encoder.dispose();
  return result;
}

const moco = join(work, 'moco18');
const rgb = join(work, 'rgb18');
let torchKeys: Record<string, Record<string, number[]>>;
let rgbStateDict: Map<string, TorchTensor>;

// Python starts slowly (importing torch), so the fixtures are made once, in parallel.
beforeAll(async () => {
  await waitForVenv(120_000);
  const [keys] = await Promise.all([
    py('reference_features.py', '--list-keys'),
    py('reference_features.py', moco, '--depth', '18', '--moco', '--size', '64', '64', '--batch', '2'),
    py('reference_features.py', rgb, '--depth', '18', '--in-channels', '3', '--grey', '--size', '45', '37', '--batch', '1').then(() =>
      py('export_state_dict.py', join(rgb, 'checkpoint.pth'), join(rgb, 'export')),
    ),
  ]);
  torchKeys = JSON.parse(keys) as typeof torchKeys;
  rgbStateDict = (await readTorchExport(join(rgb, 'export'))).stateDict;
}, 180_000);

describe('naming contract', () => {
  it('every torchvision state_dict tensor of ResNet-18/34/50 maps to exactly one encoder weight of the transposed shape', async () => {
    for (const depth of [18, 34, 50] as const) {
      const expected: Record<string, number[]> = {};
      for (const [key, shape] of Object.entries(torchKeys[depth])) {
        if (key.startsWith('fc.') || key.endsWith('num_batches_tracked')) continue;
        const dot = key.lastIndexOf('.');
        const layer = key.slice(0, dot).replace(/\./g, '_');
        const param = key.slice(dot + 1);
        const name = { weight: shape.length === 4 ? 'kernel' : 'gamma', bias: 'beta', running_mean: 'moving_mean', running_var: 'moving_variance' }[param];
        expected[`${layer}/${name}`] = shape.length === 4 ? [shape[2], shape[3], shape[1], shape[0]] : shape;
      }
      const encoder = resnetEncoder({ depth, inChannels: 3, initialize: false });
      const actual = Object.fromEntries(encoder.model.weights.map((w) => [w.originalName, w.shape]));
      expect(actual).toEqual(expected);
      encoder.dispose();
    }
  });
});

describe('import-torch', () => {
  it("imports a MoCo checkpoint (module.encoder_q.*) whose features equal PyTorch's at all 5 strides within 1e-4", async () => {
    const ref = moco;
    const result = await importTorchCheckpoint({ checkpoint: join(ref, 'checkpoint.pth'), out: join(ref, 'bundle'), python });
    expect(result.prefix).toBe('module.encoder_q.');
    expect(result.warnings).toEqual([]);
    expect(result.ignored).toEqual(
      expect.arrayContaining(['module.encoder_k.conv1.weight', 'module.queue', 'module.encoder_q.fc.0.weight', 'module.encoder_q.fc.2.bias']),
    );
    expect(result.ignored.some((k) => k.startsWith('module.encoder_q.') && !k.includes('.fc.'))).toBe(false);
    expect(result.meta).toMatchObject({ architecture: 'resnet18', inputChannels: 1, normalization: { mean: [0.58], std: [0.13] } });
    expect(result.meta.training).toMatchObject({ method: 'pytorch-import', config: { prefix: 'module.encoder_q.' } });

    const { shapes, diffs } = await compareWithTorch(ref, result.dir);
    expect(shapes.map((s) => s.slice(1))).toEqual([
      [32, 32, 64],
      [16, 16, 64],
      [8, 8, 128],
      [4, 4, 256],
      [2, 2, 512],
    ]);
    for (const d of diffs) expect(d).toBeLessThan(1e-4);
  });

  it('sums a 3-channel stem to 1 channel with a warning; odd input sizes match too', async () => {
    const ref = rgb;
    const result = await importTorchCheckpoint({
      checkpoint: join(ref, 'checkpoint.pth'),
      out: join(ref, 'bundle'),
      python,
      normalization: { mean: 0.5, std: 0.25 },
      pixelSizeNm: 4,
    });
    expect(result.prefix).toBe('');
    expect(result.warnings).toEqual(['conv1 has 3 input channels (RGB); summed over them for a 1-channel (grey) encoder']);
    expect(result.meta).toMatchObject({ inputChannels: 1, pixelSizeNm: 4, normalization: { mean: [0.5], std: [0.25] } });
    const { diffs } = await compareWithTorch(ref, result.dir);
    for (const d of diffs) expect(d).toBeLessThan(1e-4);

    await expect(importTorchCheckpoint({ checkpoint: join(ref, 'checkpoint.pth'), out: join(ref, 'again'), python })).rejects.toThrow(
      'carries no input normalisation ("norms"); pass --mean and --std',
    );
  });

  it('reports unreadable checkpoints clearly', async () => {
    await expect(importTorchCheckpoint({ checkpoint: join(work, 'missing.pth'), out: join(work, 'x'), python })).rejects.toThrow(
      `checkpoint ${join(work, 'missing.pth')} does not exist`,
    );
    const junk = join(work, 'junk.pth');
    writeFileSync(junk, 'this is not a checkpoint');
    await expect(importTorchCheckpoint({ checkpoint: junk, out: join(work, 'y'), python })).rejects.toThrow(/export_state_dict: cannot read .*junk\.pth/);
  });
});

describe('encoderFromTorchStateDict', () => {
  const edited = (edit: (m: Map<string, TorchTensor>) => void) => {
    const copy = new Map(rgbStateDict);
    edit(copy);
    return copy;
  };

  it('names the missing tensor when one is absent', () => {
    const sd = edited((m) => m.delete('layer4.1.bn2.running_var'));
    expect(() => encoderFromTorchStateDict(sd)).toThrow(/missing 1 weight\(s\) the resnet18_encoder model needs: layer4_1_bn2\/moving_variance/);
  });

  it('rejects keys that are not part of a ResNet encoder and block counts of other depths', () => {
    const extra = edited((m) => m.set('layer5.0.conv1.weight', rgbStateDict.get('layer4.0.conv1.weight')!));
    expect(() => encoderFromTorchStateDict(extra)).toThrow('state_dict key "layer5.0.conv1.weight" is not part of a torchvision ResNet encoder');
    const shallow = edited((m) => [...m.keys()].filter((k) => k.startsWith('layer3.1.')).forEach((k) => m.delete(k)));
    expect(() => encoderFromTorchStateDict(shallow)).toThrow(
      'the state_dict is a ResNet with 2/2/1/2 basic blocks, which is not one of resnet18, resnet34, resnet50',
    );
  });

  it('asks for a prefix when several ResNets are present, and refuses impossible channel counts', () => {
    const two = new Map([...rgbStateDict].flatMap(([k, v]) => [[`a.${k}`, v] as const, [`b.${k}`, v] as const]));
    expect(() => encoderFromTorchStateDict(two)).toThrow('several ResNets in the state_dict (prefixes "a.", "b."); choose one with --prefix');
    const picked = encoderFromTorchStateDict(two, { prefix: 'b.' });
    expect(picked.ignored.every((k) => k.startsWith('a.') || k.startsWith('b.fc.'))).toBe(true);
    picked.encoder.dispose();
    expect(() => encoderFromTorchStateDict(rgbStateDict, { inChannels: 2 })).toThrow('conv1 takes 3 input channels; cannot import it as a 2-channel encoder');
  });
});
