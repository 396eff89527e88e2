/**
 * The embedded default data: a synthetic U-RISC-layout dataset and a CEM500K-style crop folder,
 * generated on first use into `.emseg/data/<version-hash>/` and reused afterwards. The whole
 * directory is published with one atomic rename, so a crash never leaves a half dataset, and
 * two processes racing to create it both end up using one complete copy.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { publishDirectory, writeJsonAtomic } from '@emseg/fs';
import { DataError, describeFsError } from '../errors.js';
import {
  generateSyntheticCrops,
  generateSyntheticUrisc,
  SYNTHETIC_GENERATOR_VERSION,
  syntheticUriscAt,
  type SyntheticCropsDataset,
  type SyntheticUriscDataset,
  type UriscSplit,
} from './generate.js';
import { generateSyntheticMito, generateSyntheticMitoStack, SYNTHETIC_MITO_VERSION } from './mito.js';

/** What to generate; its hash (with the generator version) names the cache directory. */
export interface DefaultDataSpec {
  readonly seed: number;
  readonly urisc: {
    readonly size: number;
    readonly count: { readonly train: number; readonly val: number; readonly test: number };
    readonly track?: string;
  };
  readonly crops: { readonly count: number; readonly size: number };
}

/** The quickstart's data: 8 + 2 + 2 U-RISC-layout images of 1024 x 1024 and 2048 crops of 128 x 128. */
export const QUICK_DATA: DefaultDataSpec = {
  seed: 2022,
  urisc: { size: 1024, count: { train: 8, val: 2, test: 2 } },
  crops: { count: 2048, size: 128 },
};

export interface DefaultData {
  /** `.emseg/data/<version>`. */
  readonly root: string;
  /** 12 hex characters naming this generator version + spec. */
  readonly version: string;
  readonly spec: DefaultDataSpec;
  readonly urisc: SyntheticUriscDataset;
  readonly crops: SyntheticCropsDataset;
  /** true if this call generated the data, false if it was already cached. */
  readonly created: boolean;
}

interface Record_ {
  readonly version: string;
  readonly generatorVersion: number;
  readonly spec: DefaultDataSpec;
  readonly track: string;
  readonly names: Record<UriscSplit, string[]>;
  readonly membraneFraction: Record<string, number>;
}

const RECORD_FILE = 'dataset.json';

/** The workspace's `.emseg/data`, or `$EMSEG_DATA_DIR`, or `./.emseg/data` outside a workspace. */
export function defaultDataCacheDir(): string {
  if (process.env.EMSEG_DATA_DIR) return resolve(process.env.EMSEG_DATA_DIR);
  const workspace = fileURLToPath(new URL('../../../../', import.meta.url));
  const root = existsSync(join(workspace, 'nx.json')) ? workspace : process.cwd();
  return join(root, '.emseg', 'data');
}

/** Cache directory name for a spec: a hash of the generator version and the spec. */
export function defaultDataVersion(spec: DefaultDataSpec): string {
  const canonical = JSON.stringify({ generator: SYNTHETIC_GENERATOR_VERSION, spec }, Object.keys(flatKeys(spec)).sort());
  return createHash('sha256').update(canonical).digest('hex').slice(0, 12);
}

/** Every key appearing at any depth (for a canonical, key-order-independent JSON). */
function flatKeys(value: unknown, into: Record<string, true> = { generator: true, spec: true }): Record<string, true> {
  if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      into[k] = true;
      flatKeys(v, into);
    }
  }
  return into;
}

function describe(root: string, record: Record_, created: boolean): DefaultData {
  const urisc = syntheticUriscAt(join(root, 'urisc'), record.track, record.names, record.membraneFraction);
  const crops = { root: join(root, 'crops'), count: record.spec.crops.count, size: record.spec.crops.size };
  return { root, version: record.version, spec: record.spec, urisc, crops, created };
}

async function readRecord(root: string): Promise<Record_> {
  const file = join(root, RECORD_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new DataError(file, describeFsError(err), `the record of a complete dataset; delete ${root} to regenerate it`);
  }
  return JSON.parse(text) as Record_;
}

/** Removes temporary directories left by generators that crashed (their process is gone). */
async function removeStaleTemporaries(cacheDir: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(cacheDir);
  } catch {
    return;
  }
  for (const name of entries) {
    const match = /\.tmp-(\d+)-[0-9a-f]+$/.exec(name);
    if (match === null) continue;
    const pid = Number(match[1]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (err) {
      alive = (err as NodeJS.ErrnoException).code === 'EPERM';
    }
    if (!alive) await rm(join(cacheDir, name), { recursive: true, force: true });
  }
}

/**
 * The directory `cacheDir/<version>`, generated by `generate` (into a temporary directory that is
 * published with one atomic rename) unless it exists; returns whether this call generated it.
 */
async function ensureCached(cacheDir: string, version: string, generate: (tmp: string) => Promise<void>): Promise<{ root: string; created: boolean }> {
  const root = join(cacheDir, version);
  if (existsSync(root)) return { root, created: false };
  await removeStaleTemporaries(cacheDir);
  const published = await publishDirectory(root, generate);
  return { root, created: published };
}

/**
 * Paths of the default synthetic data, generating it on first use (a few seconds for QUICK_DATA).
 *
 * @example
 * const data = await ensureDefaultData();
 * const train = await LabeledImages.open(data.urisc.splits.train);
 * const crops = await UnlabeledCrops.open(data.crops.root);
 */
export async function ensureDefaultData(spec: DefaultDataSpec = QUICK_DATA, options: { cacheDir?: string } = {}): Promise<DefaultData> {
  const cacheDir = resolve(options.cacheDir ?? defaultDataCacheDir());
  const version = defaultDataVersion(spec);
  const track = spec.urisc.track ?? 'Track1';
  let record: Record_ | undefined;
  const { root, created } = await ensureCached(cacheDir, version, async (tmp) => {
    const urisc = await generateSyntheticUrisc({ dir: join(tmp, 'urisc'), seed: spec.seed, count: spec.urisc.count, size: spec.urisc.size, track });
    await generateSyntheticCrops({ dir: join(tmp, 'crops'), seed: spec.seed + 1, count: spec.crops.count, size: spec.crops.size });
    const names = {
      train: [...urisc.splits.train.names],
      val: [...urisc.splits.val.names],
      test: [...urisc.splits.test.names],
    };
    record = { version, generatorVersion: SYNTHETIC_GENERATOR_VERSION, spec, track, names, membraneFraction: urisc.membraneFraction };
    await writeJsonAtomic(join(tmp, RECORD_FILE), record);
  });
  return describe(root, created && record ? record : await readRecord(root), created);
}

/** The embedded mitochondria-like task of `segment`: what to generate. */
export interface DefaultMitoSpec {
  readonly seed: number;
  readonly size: number;
  readonly count: { readonly train: number; readonly val: number; readonly test: number };
  /** Masks as 3-class maps (background 0, granule 128, mitochondrion 255; see MITO_CLASS_VALUES). Default false. */
  readonly classes?: boolean;
  /** 3D: every split's images as multi-page TIFF stacks of this many slices (`count` stacks per split). */
  readonly depth?: number;
}

/** `segment`'s default data: 6 + 2 + 2 images of 512 x 512 (train/val/test, images + masks + instances). */
export const QUICK_MITO: DefaultMitoSpec = { seed: 7, size: 512, count: { train: 6, val: 2, test: 2 } };

/** `segment`'s default 3D data (the instance task's): 2 + 1 + 1 stacks of 12 slices of 512 x 512, as multi-page TIFFs. */
export const QUICK_MITO_STACKS: DefaultMitoSpec = { seed: 11, size: 512, depth: 12, count: { train: 2, val: 1, test: 1 } };

export interface DefaultMito extends DefaultMitoSpec {
  /** `.emseg/data/mito-<version>`: {train,val,test}/{images,masks,instances}. */
  readonly root: string;
  readonly created: boolean;
}

/**
 * The embedded synthetic mitochondria of `segment`, generated on first use (about a second) into
 * the data cache and reused afterwards, published atomically like {@link ensureDefaultData}.
 */
export async function ensureDefaultMito(spec: DefaultMitoSpec = QUICK_MITO, options: { cacheDir?: string } = {}): Promise<DefaultMito> {
  const cacheDir = resolve(options.cacheDir ?? defaultDataCacheDir());
  const canonical = JSON.stringify({
    generator: SYNTHETIC_MITO_VERSION,
    seed: spec.seed,
    size: spec.size,
    count: spec.count,
    ...(spec.classes ? { classes: true } : {}),
  });
  const version = `mito-${createHash('sha256').update(canonical).digest('hex').slice(0, 12)}`;
  const { root, created } = await ensureCached(cacheDir, version, async (tmp) => {
    if (spec.depth) await generateSyntheticMitoStack({ dir: tmp, seed: spec.seed, size: spec.size, depth: spec.depth, count: spec.count });
    else await generateSyntheticMito({ dir: tmp, seed: spec.seed, size: spec.size, count: spec.count, classes: spec.classes });
  });
  return { ...spec, root, created };
}
