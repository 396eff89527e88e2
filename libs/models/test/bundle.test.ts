import { cpSync, existsSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf, type Tensor, type Tensor4D } from '@emseg/tf';
import { loadEncoder, modelVariables, resnetEncoder, saveEncoderBundle, unet, type EncoderBundleMeta, type ResNetEncoder } from '@emseg/models';
import { parseRunsUri } from '@emseg/tracking';
import { maxAbsDiff, randomImages, tempDir } from './helpers.js';

const root = tempDir('bundle');
const good = join(root, 'good');
const meta: EncoderBundleMeta = {
  normalization: { mean: 0.573, std: 0.127 },
  pixelSizeNm: 2.18,
  training: { method: 'mocov2', dataDigest: 'sha256:abc', steps: 12, config: { lr: 0.015 }, mlflowRunId: 'run42' },
};
let original: ResNetEncoder;
let x: Tensor4D;

/** A copy of the good bundle, changed by `edit`. */
function variant(name: string, edit: (dir: string) => void): string {
  const dir = join(root, name);
  cpSync(good, dir, { recursive: true });
  edit(dir);
  return dir;
}

function editJson(dir: string, file: string, change: (json: Record<string, unknown>) => void): void {
  const json = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Record<string, unknown>;
  change(json);
  writeFileSync(join(dir, file), JSON.stringify(json));
}

beforeAll(async () => {
  original = resnetEncoder({ depth: 18, seed: 3 });
  x = randomImages([2, 64, 64, 1], 11);
  // Training-mode passes give the BN running statistics non-default values, which must survive.
  for (let i = 0; i < 2; i++) tf.dispose(original.features(randomImages([4, 64, 64, 1], i), { training: true }));
  await saveEncoderBundle(good, original, meta);
});

describe('encoder bundle round trip', () => {
  it('writes encoder.json, model.json and weights.bin atomically (no temporary directories left)', () => {
    expect(readdirSync(good).sort()).toEqual(['encoder.json', 'model.json', 'weights.bin']);
    expect(readdirSync(root).filter((n) => n.startsWith('.'))).toEqual([]);
    const json = JSON.parse(readFileSync(join(good, 'encoder.json'), 'utf8'));
    expect(json).toMatchObject({
      formatVersion: 1,
      architecture: 'resnet18',
      inputChannels: 1,
      featureStrides: [2, 4, 8, 16, 32],
      featureChannels: [64, 64, 128, 256, 512],
      normalization: { mean: [0.573], std: [0.127] },
      pixelSizeNm: 2.18,
      training: { method: 'mocov2', dataDigest: 'sha256:abc', steps: 12, config: { lr: 0.015 }, mlflowRunId: 'run42' },
      weights: { format: 'tfjs-layers', modelJson: 'model.json' },
    });
  });

  it('save -> load gives identical weights (BN statistics included) and identical features', async () => {
    const { encoder, meta: loadedMeta, dir } = await loadEncoder(good, { inChannels: 1 });
    expect(dir).toBe(good);
    expect(loadedMeta.training.mlflowRunId).toBe('run42');
    expect(loadedMeta.normalization).toEqual({ mean: [0.573], std: [0.127] });
    const a = modelVariables(original.model);
    const b = modelVariables(encoder.model);
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    expect(a['bn1/moving_mean'].dataSync().some((v) => v !== 0)).toBe(true);
    for (const name of Object.keys(a)) expect(maxAbsDiff(a[name], b[name]), name).toBe(0);
    const before = original.features(x);
    const after = encoder.features(x);
    before.forEach((f, i) => expect(maxAbsDiff(f, after[i])).toBe(0));
    tf.dispose([before, after]);

    // The loaded encoder's variables carry uniqueness suffixes (conv1/kernel_2): saving it again
    // must still write the contract names.
    expect(encoder.model.weights[0].name).not.toBe('conv1/kernel');
    const resaved = join(root, 'resaved');
    await saveEncoderBundle(resaved, encoder, meta);
    const manifest = JSON.parse(readFileSync(join(resaved, 'model.json'), 'utf8')).weightsManifest[0].weights as Array<{ name: string }>;
    expect(manifest.map((w) => w.name).sort()).toEqual(Object.keys(a).sort());
    encoder.dispose();
  });

  it('a loaded encoder drives a U-Net, and a fixed input size can be asked for', async () => {
    const { encoder } = await loadEncoder(good, { inputSize: [64, 64] });
    expect(encoder.model.inputs[0].shape).toEqual([null, 64, 64, 1]);
    const net = unet({ encoder, seed: 1 });
    const logits = net.forward(x);
    expect(logits.shape).toEqual([2, 64, 64, 1]);
    expect(maxAbsDiff(modelVariables(net.model)['layer2_0_conv1/kernel'], modelVariables(original.model)['layer2_0_conv1/kernel'])).toBe(0);
    logits.dispose();
    net.dispose();
  });

  it('model.json is plain TensorFlow.js: tf.loadLayersModel reads it and predicts the same features', async () => {
    const model = await tf.loadLayersModel(`file://${join(good, 'model.json')}`);
    const stock = model.predict(x) as Tensor[];
    const ours = original.features(x);
    ours.forEach((f, i) => expect(maxAbsDiff(f, stock[i])).toBeLessThan(1e-5));
    tf.dispose([stock, ours]);
    model.dispose();
  });

  it('refuses to overwrite unless asked, and then replaces the bundle', async () => {
    const dir = join(root, 'replaced');
    await saveEncoderBundle(dir, original, meta);
    await expect(saveEncoderBundle(dir, original, meta)).rejects.toThrow(`${dir} already exists; remove it or save with { overwrite: true }`);
    await saveEncoderBundle(dir, original, { ...meta, training: { method: 'random-init' } }, { overwrite: true });
    const { meta: replaced, encoder } = await loadEncoder(dir);
    expect(replaced.training).toEqual({ method: 'random-init', dataDigest: null, steps: null, config: null, mlflowRunId: null });
    encoder.dispose();
    expect(readdirSync(root).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('validates the metadata when saving', async () => {
    const dir = join(root, 'never');
    await expect(saveEncoderBundle(dir, original, { ...meta, normalization: { mean: 0.5, std: 0 } })).rejects.toThrow(
      'field normalization.std must be an array of 1 finite positive number(s)',
    );
    await expect(saveEncoderBundle(dir, original, { ...meta, normalization: { mean: [0.5, 0.5], std: 0.2 } })).rejects.toThrow(
      'field normalization.mean must be an array of 1 finite number(s) (one per input channel), got [0.5,0.5]',
    );
    expect(existsSync(dir)).toBe(false);
  });
});

describe('loadEncoder references', () => {
  it('resolves runs:/ URIs through the injected resolver', async () => {
    const asked: string[] = [];
    const resolveUri = async (uri: string) => {
      asked.push(uri);
      return good;
    };
    const { encoder, dir } = await loadEncoder('runs:/0123abcd/encoder', { resolveUri });
    expect(asked).toEqual(['runs:/0123abcd/encoder']);
    expect(dir).toBe(good);
    encoder.dispose();
  });

  it('explains what to do with a runs:/ URI and no resolver, malformed URIs and other schemes', async () => {
    await expect(loadEncoder('runs:/0123abcd/encoder')).rejects.toThrow(
      'encoder reference "runs:/0123abcd/encoder" is an MLflow runs:/ URI, but no resolver was given',
    );
    await expect(loadEncoder('s3://bucket/encoder')).rejects.toThrow('encoder reference "s3://bucket/encoder" is a URI, but no resolver was given');
    // With a resolver, the URI's syntax is checked by the one runs:/ parser (the tracking lib's), before anything is downloaded.
    const resolveUri = async (uri: string) => {
      parseRunsUri(uri);
      throw new Error('not reached');
    };
    await expect(loadEncoder('runs:/', { resolveUri })).rejects.toThrow("expected 'runs:/<run_id>/<artifact path>'");
    await expect(loadEncoder('s3://bucket/encoder', { resolveUri })).rejects.toThrow("expected 'runs:/<run_id>/<artifact path>'");
  });
});

describe('bad bundles give clear errors', () => {
  it('a missing directory or encoder.json', async () => {
    await expect(loadEncoder(join(root, 'nope'))).rejects.toThrow(`encoder bundle ${join(root, 'nope')} does not exist or is not a directory`);
    const dir = variant('no-json', (d) => rmSync(join(d, 'encoder.json')));
    await expect(loadEncoder(dir)).rejects.toThrow(`${dir} is not an encoder bundle: encoder.json is missing`);
  });

  it('invalid JSON and an unsupported format version', async () => {
    const broken = variant('broken-json', (d) => writeFileSync(join(d, 'encoder.json'), '{"formatVersion": 1,'));
    await expect(loadEncoder(broken)).rejects.toThrow(`${join(broken, 'encoder.json')}: not valid JSON`);
    const v2 = variant('v2', (d) => editJson(d, 'encoder.json', (j) => (j.formatVersion = 2)));
    await expect(loadEncoder(v2)).rejects.toThrow('formatVersion 2 is not supported; this emseg reads encoder bundles of formatVersion 1');
  });

  it('an unknown architecture, or one that does not match the weights', async () => {
    const unknown = variant('resnet101', (d) => editJson(d, 'encoder.json', (j) => (j.architecture = 'resnet101')));
    await expect(loadEncoder(unknown)).rejects.toThrow('unknown architecture "resnet101": expected one of resnet18, resnet34, resnet50');
    const wrongChannels = variant('r50-channels', (d) => editJson(d, 'encoder.json', (j) => (j.architecture = 'resnet50')));
    await expect(loadEncoder(wrongChannels)).rejects.toThrow('field featureChannels must be [64,256,512,1024,2048] for resnet50');
    // ResNet-34 declares the same channels as ResNet-18, so only the weights can tell.
    const wrongArch = variant('r34', (d) => editJson(d, 'encoder.json', (j) => (j.architecture = 'resnet34')));
    await expect(loadEncoder(wrongArch)).rejects.toThrow(/\(resnet34\): missing 80 weight\(s\) the resnet34_encoder model needs: layer1_2_conv1\/kernel/);
  });

  it('input channels that differ from the images or from the weights', async () => {
    await expect(loadEncoder(good, { inChannels: 3 })).rejects.toThrow(`encoder bundle ${good} takes 1-channel input, but the images have 3 channel(s)`);
    const rgb = variant('rgb', (d) =>
      editJson(d, 'encoder.json', (j) => {
        j.inputChannels = 3;
        j.normalization = { mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2] };
      }),
    );
    await expect(loadEncoder(rgb)).rejects.toThrow('weight conv1/kernel has shape [7,7,1,64] but the model expects [7,7,3,64]');
    const badNorm = variant('norm', (d) => editJson(d, 'encoder.json', (j) => (j.normalization = { mean: [0.5], std: [-1] })));
    await expect(loadEncoder(badNorm)).rejects.toThrow(
      `${join(badNorm, 'encoder.json')}: field normalization.std must be an array of 1 finite positive number(s)`,
    );
  });

  it('missing or truncated weight files', async () => {
    const noBin = variant('no-bin', (d) => rmSync(join(d, 'weights.bin')));
    await expect(loadEncoder(noBin)).rejects.toThrow(`encoder bundle ${noBin}: weights file weights.bin (listed in model.json) is missing`);
    const noModel = variant('no-model', (d) => rmSync(join(d, 'model.json')));
    await expect(loadEncoder(noModel)).rejects.toThrow(`encoder bundle ${noModel}: weights file model.json is missing`);
    const short = variant('short', (d) => truncateSync(join(d, 'weights.bin'), 1000));
    await expect(loadEncoder(short)).rejects.toThrow(/weight files hold 1000 bytes but model.json describes \d+ \(truncated/);
  });
});
