/**
 * The encoder registry, as segmentation_models_pytorch / timm keep theirs: every encoder by name.
 * Adding a family = one file that exports its `EncoderEntry`s + one line in FAMILIES.
 */
import type { Encoder, EncoderEntry, EncoderOptions, EncoderSpec } from './encoder.js';
import { PLAIN_CONV_ENCODERS } from './plain-conv.js';
import { RESNET_ENCODERS } from './resnet.js';

const FAMILIES: readonly (readonly EncoderEntry[])[] = [RESNET_ENCODERS, PLAIN_CONV_ENCODERS];

const ENTRIES: ReadonlyMap<string, EncoderEntry> = (() => {
  const map = new Map<string, EncoderEntry>();
  for (const entry of FAMILIES.flat()) {
    if (map.has(entry.spec.name)) throw new Error(`two encoders are registered as "${entry.spec.name}"`);
    map.set(entry.spec.name, entry);
  }
  return map;
})();

/** The registered encoder names, ResNets first: `resnet18`, `resnet34`, `resnet50`, `plain-conv`, ... */
export function listEncoders(): string[] {
  return [...ENTRIES.keys()];
}

function entry(name: string): EncoderEntry {
  const found = ENTRIES.get(name);
  if (!found) throw new Error(`unknown architecture "${name}": expected one of ${listEncoders().join(', ')}`);
  return found;
}

/** What `name` builds (strides, channels, whether it has BN), without building it; throws naming the known ones. */
export function encoderSpec(name: string): EncoderSpec {
  return entry(name).spec;
}

/**
 * Builds the encoder registered as `name`.
 *
 * @example
 * const encoder = createEncoder('plain-conv', { inChannels: 1, seed: 1 });
 * const net = unet({ encoder, seed: 2 });
 */
export function createEncoder(name: string, options: EncoderOptions = {}): Encoder {
  return entry(name).create(options);
}
