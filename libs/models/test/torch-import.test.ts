import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
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

/** Features of the bundle at `bundle` on the reference input, against PyTorch's: max |difference| and max |PyTorch feature| per stride. */
async function compareWithTorch(reference: string, bundle: string): Promise<{ shapes: number[][]; diffs: number[]; scales: number[] }> {
  const spec = JSON.parse(readFileSync(join(reference, 'features.json'), 'utf8')) as {
    input: number[];
    features: Array<{ file: string; shape: number[] }>;
  };
  const { encoder } = await loadEncoder(bundle);
  const [b, h, w, c] = spec.input;
  const x = tf.tensor4d(float32(join(reference, 'input.bin')), [b, h, w, c]);
  const ours = encoder.features(x);
  const torch = spec.features.map((f) => tf.tensor(float32(join(reference, f.file)), f.shape));
  const result = {
    shapes: ours.map((f) => f.shape),
    diffs: ours.map((f, i) => maxAbsDiff(f, torch[i])),
    scales: torch.map((f) => tf.tidy(() => f.abs().max().dataSync()[0])),
  };
  expect(result.shapes).toEqual(spec.features.map((f) => f.shape));
  tf.dispose([x, ours, torch]);
  encoder.dispose();
  return result;
}

const moco = join(work, 'moco18');
const rgb = join(work, 'rgb18');
// Stand-ins for the released CEM checkpoints, laid out as cem-dataset's pretraining scripts save them.
const cemMoco = join(work, 'cem-mocov2');
const cemSwav = join(work, 'cem-swav');
const CEM_MOCO_FILE = 'cem500k_mocov2_resnet50_200ep.pth.tar';
const CEM_SWAV_FILE = 'cem1.5m_swav_resnet50_200ep_balanced.pth.tar';
let torchKeys: Record<string, Record<string, number[]>>;
let rgbStateDict: Map<string, TorchTensor>;
let swavStateDict: Map<string, TorchTensor>;

// Python starts slowly (importing torch), so the fixtures are made once, in parallel.
beforeAll(async () => {
  await waitForVenv(120_000);
  const [keys] = await Promise.all([
    py('reference_features.py', '--list-keys'),
    py('reference_features.py', moco, '--depth', '18', '--moco', '--size', '64', '64', '--batch', '2'),
    py('reference_features.py', rgb, '--depth', '18', '--in-channels', '3', '--grey', '--size', '45', '37', '--batch', '1').then(() =>
      py('export_state_dict.py', join(rgb, 'checkpoint.pth'), join(rgb, 'export')),
    ),
    // The MoCo one in torch's pre-1.6 (non-zip) format, the SwAV one in the zip format: both must load with weights_only.
    py('cem_checkpoints.py', cemMoco, '--layout', 'mocov2', '--legacy-format', '--size', '64', '64'),
    py('cem_checkpoints.py', cemSwav, '--layout', 'swav', '--size', '64', '64').then(() =>
      py('export_state_dict.py', join(cemSwav, CEM_SWAV_FILE), join(cemSwav, 'export')),
    ),
  ]);
  torchKeys = JSON.parse(keys) as typeof torchKeys;
  rgbStateDict = (await readTorchExport(join(rgb, 'export'))).stateDict;
  swavStateDict = (await readTorchExport(join(cemSwav, 'export'))).stateDict;
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

describe('import-torch: the released CEM ResNet-50 checkpoints (layouts of cem-dataset pretraining/)', () => {
  /** Float tensors of a torchvision ResNet-50 backbone (no fc, no counters): what must be imported. */
  const backboneKeys = () => Object.keys(torchKeys[50]).filter((k) => !k.startsWith('fc.') && !k.endsWith('num_batches_tracked'));
  const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

  it(`${CEM_MOCO_FILE}: the query encoder (module.encoder_q.), key encoder + MLP head + queue ignored, norms carried, features equal PyTorch's`, async () => {
    const checkpoint = join(cemMoco, CEM_MOCO_FILE);
    const result = await importTorchCheckpoint({ checkpoint, out: join(cemMoco, 'bundle'), python });
    expect(result.prefix).toBe('module.encoder_q.');
    expect(result.warnings).toEqual([]);
    const head = ['fc.0.weight', 'fc.0.bias', 'fc.2.weight', 'fc.2.bias'];
    const expectedIgnored = [
      ...[...backboneKeys(), ...head].map((k) => `module.encoder_k.${k}`),
      ...head.map((k) => `module.encoder_q.${k}`),
      'module.queue', // module.queue_ptr and the num_batches_tracked counters are int64: not exported at all
    ];
    expect([...result.ignored].sort()).toEqual(expectedIgnored.sort());
    expect(result.meta).toMatchObject({ architecture: 'resnet50', inputChannels: 1, normalization: { mean: [0.57287007], std: [0.12740536] } });
    expect(result.meta.training).toMatchObject({
      method: 'pytorch-import',
      config: { prefix: 'module.encoder_q.', sha256: sha256(checkpoint), ignoredKeys: expectedIgnored.length },
    });

    const { shapes, diffs, scales } = await compareWithTorch(cemMoco, result.dir);
    expect(shapes.map((s) => s.slice(1))).toEqual([
      [32, 32, 64],
      [16, 16, 256],
      [8, 8, 512],
      [4, 4, 1024],
      [2, 2, 2048],
    ]);
    // ResNet-50's deep maps reach |x| ~ 70 here: float32 rounding bounds the difference relative to that scale.
    diffs.forEach((d, i) => expect(d / scales[i]).toBeLessThan(1e-5));
  });

  it(`${CEM_SWAV_FILE}: the backbone under module., projection_head + prototypes ignored, norms carried, features equal SwAV's forward`, async () => {
    const checkpoint = join(cemSwav, CEM_SWAV_FILE);
    const result = await importTorchCheckpoint({ checkpoint, out: join(cemSwav, 'bundle'), python });
    expect(result.prefix).toBe('module.');
    expect(result.warnings).toEqual([]);
    const heads = [
      ...['0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean', '1.running_var', '3.weight', '3.bias'].map((k) => `projection_head.${k}`),
      'prototypes.weight',
    ];
    expect([...result.ignored].sort()).toEqual(heads.map((k) => `module.${k}`).sort());
    expect(result.meta).toMatchObject({ architecture: 'resnet50', inputChannels: 1, normalization: { mean: [0.57571], std: [0.12765] } });
    expect(result.meta.training).toMatchObject({ method: 'pytorch-import', config: { prefix: 'module.', sha256: sha256(checkpoint) } });
    // The reference is SwAV's own stem (zero pad 1, conv1 with padding 2), which is torchvision's padding 3.
    const { diffs, scales } = await compareWithTorch(cemSwav, result.dir);
    expect(diffs).toHaveLength(5);
    diffs.forEach((d, i) => expect(d / scales[i]).toBeLessThan(1e-5));

    // The same state_dict with "module." stripped (the keys empanada's encoder_pretraining expects) imports the same way.
    const stripped = new Map([...swavStateDict].map(([k, v]) => [k.replace(/^module\./, ''), v] as const));
    const plain = encoderFromTorchStateDict(stripped);
    expect(plain.prefix).toBe('');
    expect([...plain.ignored].sort()).toEqual([...heads].sort());
    expect(plain.encoder.model.weights).toHaveLength(backboneKeys().length);
    plain.encoder.dispose();
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
