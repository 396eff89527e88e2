import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tf, type NamedTensorMap, type Tensor } from '@emseg/tf';
import { RESNET_DEPTHS, resnetSpec, type ResNetDepth } from './architecture.js';
import { resnetEncoder, type ResNetEncoder } from './resnet.js';
import { assignWeights } from './variables.js';

/**
 * PyTorch ResNet state_dicts (torchvision layout) -> emseg encoders. The mapping is the naming
 * contract of README.md: module `layer1.0.conv1` is layer `layer1_0_conv1`; conv `weight`
 * [out, in, kh, kw] becomes `kernel` [kh, kw, in, out]; BN `weight`, `bias`, `running_mean`,
 * `running_var` become `gamma`, `beta`, `moving_mean`, `moving_variance`.
 */

/** One tensor of a state_dict: torch shape and float32 data in C order. */
export interface TorchTensor {
  shape: number[];
  data: Float32Array;
}

/** What tools/import-torch/export_state_dict.py wrote: manifest.json + tensors.bin. */
export interface TorchExport {
  stateDict: Map<string, TorchTensor>;
  /** Input normalisation the checkpoint carries ("norms"), or null. */
  norms: { mean: number[]; std: number[] } | null;
  source: string;
  sha256: string;
}

/** Reads an export directory (format "emseg-torch-state-dict" version 1). */
export async function readTorchExport(dir: string): Promise<TorchExport> {
  const manifestFile = join(dir, 'manifest.json');
  const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as {
    format?: string;
    version?: number;
    source: string;
    sha256: string;
    norms: TorchExport['norms'];
    tensors: Array<{ name: string; shape: number[]; offset: number }>;
  };
  if (manifest.format !== 'emseg-torch-state-dict' || manifest.version !== 1) {
    throw new Error(`${manifestFile}: expected format emseg-torch-state-dict version 1, got ${manifest.format} ${manifest.version}`);
  }
  const bytes = await readFile(join(dir, 'tensors.bin'));
  const stateDict = new Map<string, TorchTensor>();
  for (const t of manifest.tensors) {
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (t.offset + size * 4 > bytes.byteLength) throw new Error(`${dir}/tensors.bin is truncated at tensor ${t.name}`);
    const data = new Float32Array(size);
    new Uint8Array(data.buffer).set(bytes.subarray(t.offset, t.offset + size * 4));
    stateDict.set(t.name, { shape: t.shape, data });
  }
  return { stateDict, norms: manifest.norms, source: manifest.source, sha256: manifest.sha256 };
}

const STEM_KEY = 'conv1.weight';
const ENCODER_MODULE = /^(conv1|bn1|layer[1-4])(\.|$)/;
/**
 * Heads that are dropped: the classifier (torchvision `fc`) or a MoCo projection MLP in its place, and
 * SwAV's `projection_head` and `prototypes` (`prototypes0`, `prototypes1`, ... with several heads).
 */
const HEAD_MODULE = /^(fc|projection_head|prototypes\d*)(\.|$)/;

/**
 * The key prefix in front of the ResNet (`module.encoder_q.`, `module.`, `encoder.`, or '').
 * Found from the stem conv `<prefix>conv1.weight` (a 4-D tensor with a 7x7 kernel); with several
 * candidates (a MoCo checkpoint holds both encoders), the query encoder wins.
 */
export function detectTorchPrefix(keys: Iterable<string>, shapes: (key: string) => number[]): string {
  const candidates: string[] = [];
  for (const key of keys) {
    if (!key.endsWith(STEM_KEY)) continue;
    const prefix = key.slice(0, -STEM_KEY.length);
    const shape = shapes(key);
    if ((prefix === '' || prefix.endsWith('.')) && !/layer\d/.test(prefix) && shape.length === 4 && shape[2] === 7 && shape[3] === 7) {
      candidates.push(prefix);
    }
  }
  if (candidates.length === 1) return candidates[0];
  if (candidates.length === 0) throw new Error(`no ResNet found in the state_dict: no key ends in "${STEM_KEY}" with a 7x7 kernel`);
  const query = candidates.filter((p) => /(^|\.)encoder_q\.$/.test(p));
  if (query.length === 1) return query[0];
  throw new Error(`several ResNets in the state_dict (prefixes ${candidates.map((p) => `"${p}"`).join(', ')}); choose one with --prefix`);
}

/** Depth from the number of blocks per stage and the block kind. */
function inferDepth(modules: Set<string>): ResNetDepth {
  const counts = [1, 2, 3, 4].map((stage) => {
    let n = 0;
    while (modules.has(`layer${stage}.${n}.conv1`)) n++;
    return n;
  });
  const bottleneck = modules.has('layer1.0.conv3');
  for (const depth of RESNET_DEPTHS) {
    const spec = resnetSpec(depth);
    if (spec.blocks.join() === counts.join() && (spec.block === 'bottleneck') === bottleneck) return depth;
  }
  throw new Error(
    `the state_dict is a ResNet with ${counts.join('/')} ${bottleneck ? 'bottleneck' : 'basic'} blocks, which is not one of resnet${RESNET_DEPTHS.join(', resnet')}`,
  );
}

const BN_NAMES: Record<string, string> = { weight: 'gamma', bias: 'beta', running_mean: 'moving_mean', running_var: 'moving_variance' };

export interface TorchImportOptions {
  /** Key prefix in front of the ResNet; detected when omitted. */
  prefix?: string;
  /** Input channels of the encoder to build (default 1). A 3-channel conv1 is summed to 1 channel. */
  inChannels?: number;
}

export interface TorchImportResult {
  encoder: ResNetEncoder;
  prefix: string;
  /** Keys that were not imported: other prefixes (MoCo key encoder, queue), heads (fc, SwAV projection_head / prototypes). */
  ignored: string[];
  /** Things a user should know, e.g. a summed RGB stem. */
  warnings: string[];
}

/**
 * Builds an encoder whose weights are those of a torchvision-layout ResNet state_dict.
 * Every ResNet tensor must map to a weight of the built encoder and vice versa; anything else
 * under the prefix except a head (HEAD_MODULE) is an error (it would mean a different architecture).
 */
export function encoderFromTorchStateDict(stateDict: Map<string, TorchTensor>, options: TorchImportOptions = {}): TorchImportResult {
  const shapeOf = (key: string) => stateDict.get(key)?.shape ?? [];
  const prefix = options.prefix ?? detectTorchPrefix(stateDict.keys(), shapeOf);
  if (!stateDict.has(`${prefix}${STEM_KEY}`)) throw new Error(`no key "${prefix}${STEM_KEY}" in the state_dict (prefix "${prefix}")`);
  const ignored: string[] = [];
  const warnings: string[] = [];
  const encoderKeys: string[] = [];
  for (const key of stateDict.keys()) {
    const local = key.startsWith(prefix) ? key.slice(prefix.length) : null;
    if (local === null || HEAD_MODULE.test(local)) ignored.push(key);
    else if (ENCODER_MODULE.test(local)) encoderKeys.push(local);
    else {
      throw new Error(
        `state_dict key "${key}" is not part of a torchvision ResNet encoder (expected conv1, bn1, layer1-4 or a head: fc, projection_head, prototypes under "${prefix}")`,
      );
    }
  }
  const modules = new Set(encoderKeys.map((k) => k.slice(0, k.lastIndexOf('.'))));
  const depth = inferDepth(modules);
  const inChannels = options.inChannels ?? 1;
  const stemChannels = shapeOf(`${prefix}${STEM_KEY}`)[1];
  if (stemChannels !== inChannels && !(stemChannels === 3 && inChannels === 1)) {
    throw new Error(`conv1 takes ${stemChannels} input channels; cannot import it as a ${inChannels}-channel encoder`);
  }

  const encoder = resnetEncoder({ depth, inChannels, initialize: false });
  const weights: NamedTensorMap = {};
  try {
    for (const local of encoderKeys) {
      const t = stateDict.get(prefix + local)!;
      const dot = local.lastIndexOf('.');
      const layer = local.slice(0, dot).replace(/\./g, '_');
      const param = local.slice(dot + 1);
      if (t.shape.length === 4 && param === 'weight') {
        weights[`${layer}/kernel`] = tf.tidy(() => {
          let kernel: Tensor = tf.tensor(t.data, t.shape, 'float32').transpose([2, 3, 1, 0]); // OIHW -> HWIO
          if (layer === 'conv1' && stemChannels !== inChannels) kernel = kernel.sum(2, true);
          return kernel;
        });
      } else if (t.shape.length === 1 && param in BN_NAMES) {
        weights[`${layer}/${BN_NAMES[param]}`] = tf.tensor(t.data, t.shape, 'float32');
      } else {
        throw new Error(`state_dict key "${prefix}${local}" with shape [${t.shape}] is neither a conv weight nor a BN parameter`);
      }
    }
    if (stemChannels !== inChannels) {
      warnings.push(`conv1 has ${stemChannels} input channels (RGB); summed over them for a ${inChannels}-channel (grey) encoder`);
    }
    assignWeights(encoder.model, weights, `PyTorch state_dict (prefix "${prefix}", resnet${depth})`);
  } catch (err) {
    encoder.dispose();
    throw err;
  } finally {
    tf.dispose(weights);
  }
  return { encoder, prefix, ignored, warnings };
}
