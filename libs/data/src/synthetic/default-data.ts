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
  const root = join(cacheDir, version);
  if (existsSync(root)) return describe(root, await readRecord(root), false);
  await removeStaleTemporaries(cacheDir);
  const track = spec.urisc.track ?? 'Track1';
  let record: Record_ | undefined;
  const published = await publishDirectory(root, async (tmp) => {
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
  if (!published) return describe(root, await readRecord(root), false);
  return describe(root, record as Record_, true);
}
