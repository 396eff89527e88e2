/**
 * Shared fixtures of the finetune tests: tiny synthetic U-RISC datasets on disk (real PNG/TIFF files
 * decoded by sharp) and small configurations built through the real config loader.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import * as zarr from 'zarrita';
import FileSystemStore from '@zarrita/storage/fs';
import type { Run } from '@emseg/tracking';
import { loadConfig } from '@emseg/config';
import { generateSyntheticUrisc, openZarrVolume, type SyntheticUriscDataset } from '@emseg/data';
import { connectedInstances, type Connectivity } from '@emseg/evaluation';
import { checkFinetuneConfig, finetuneSchema, type FinetuneConfig } from '../src/config.js';
import { uriscTask } from '../src/tasks/urisc.js';
import { WORKSPACE } from '../src/workspace.js';
import { resnetEncoder } from '@emseg/models';
import { probabilityLevel, Segmenter } from '@emseg/segmentation';

export const QUICK_CONFIG = join(WORKSPACE, 'configs', 'finetune', 'quick.json');

/** A fresh temporary directory; remove it with `cleanup()`. */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `emseg-finetune-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A U-RISC-layout synthetic dataset (Track1 folders) of `size` px images, ~8% membrane. */
export function tinyUrisc(
  dir: string,
  options: { size?: number; seed?: number; count?: { train: number; val: number; test: number } } = {},
): Promise<SyntheticUriscDataset> {
  return generateSyntheticUrisc({
    dir,
    seed: options.seed ?? 7,
    count: options.count ?? { train: 2, val: 1, test: 1 },
    size: options.size ?? 128,
    cellSize: 80,
    lowContrastFraction: 0,
  });
}

/**
 * The quick config with a tiny model and run: ResNet-18 under a narrow decoder, 64 px patches, no
 * augmentation, whole-image tiles of 128. `overrides` are `--set` strings applied last.
 */
export function tinyConfig(overrides: string[] = []): FinetuneConfig {
  const cfg = loadConfig(finetuneSchema, {
    file: QUICK_CONFIG,
    overrides: [
      'model.encoder=random',
      'model.decoderChannels=[32,16,16,8,8]',
      'patches.size=64',
      'patches.stride=64',
      'patches.perEpoch=8',
      'patches.augmentation=none',
      'train.batchSize=2',
      'train.steps=4',
      'train.checkpointEvery=100',
      'validation.every=0',
      'validation.overlays=0',
      'inference.tileSize=128',
      'inference.overlap=0',
      'inference.batchSize=1',
      ...overrides,
    ],
  });
  checkFinetuneConfig(cfg, 'test config');
  return cfg;
}

/** The U-RISC validation rules under `cfg`, as `urisc` runs them. */
export const taskFor = (cfg: FinetuneConfig) => uriscTask({ maxMembraneFraction: cfg.data.maxMembraneFraction });

/** The built CLI the end-to-end tests run. */
export const FINETUNE_MAIN = join(WORKSPACE, 'apps', 'finetune', 'dist', 'main.js');

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Extra environment (MLFLOW_TRACKING_URI is cleared unless given). */
  env?: Record<string, string>;
  /** Run as this uid/gid (permission tests as root). */
  uid?: number;
  timeoutMs?: number;
  /** Called with all of stdout so far, on every chunk. */
  onStdout?: (stdout: string, child: ChildProcess) => void;
}

/**
 * Starts the built CLI in a child process (asynchronously, so this process keeps serving the
 * sockets of a test MLflow server); `done` resolves with its exit status and output.
 */
export function startCli(args: string[], options: CliOptions = {}): { child: ChildProcess; done: Promise<CliResult>; stderr: () => string } {
  const child = spawn(process.execPath, [FINETUNE_MAIN, ...args], {
    cwd: WORKSPACE,
    env: { ...process.env, MLFLOW_TRACKING_URI: '', ...options.env },
    timeout: options.timeoutMs ?? 170_000,
    uid: options.uid,
    gid: options.uid,
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    options.onStdout?.(stdout, child);
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
  return { child, done, stderr: () => stderr };
}

/** Runs the built CLI to the end (see startCli). */
export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return startCli(args, options).done;
}

/** Builds apps/finetune (the CLI tests run its dist/). */
export function buildFinetune(): void {
  const build = spawnSync('npx', ['tsc', '-b', 'apps/finetune'], { cwd: WORKSPACE, encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`tsc -b apps/finetune failed:\n${build.stdout}${build.stderr}`);
}

/**
 * Saves an untrained ResNet-18 U-Net with a small decoder (32/16/16/8/8), tiled at 64 px with
 * overlap 16, as a model directory under `root` (what `predict --model` loads); returns its path.
 */
export async function saveTinyModel(root: string): Promise<string> {
  const segmenter = Segmenter.create(
    resnetEncoder({ depth: 18, seed: 1 }),
    { mean: [0.5], std: [0.2] },
    { encoderSource: 'random', encoderRunId: null },
    { decoderChannels: [32, 16, 16, 8, 8], seed: 2 },
  );
  try {
    return await segmenter.save(
      root,
      segmenter.info({
        threshold: 0.5,
        inference: { tileSize: 64, overlap: 16, window: 'gaussian', batchSize: 2, flipTta: false },
        step: 0,
        valF1: null,
        mlflowRunId: null,
        task: 'iou',
        metric: 'iou',
        valScore: null,
      }),
    );
  } finally {
    segmenter.dispose();
  }
}

/** Every file under `dir` (relative path -> bytes), the hidden job state `.emseg-job` excluded: a Zarr store's chunks. */
export function chunkFiles(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name === '.emseg-job') continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else files.set(relative(dir, p), readFileSync(p));
    }
  };
  walk(dir);
  return files;
}

/** The latest value of metric `key` of an MLflow run. */
export const metric = (run: Run, key: string) => run.metrics.find((m) => m.key === key)?.value;

/** A synthetic uint8 test volume [D, H, W] in chunks of 2 x 32 x 32, written by plain zarrita (v3, uncompressed). */
export async function writeTestVolume(path: string, [D, H, W]: [number, number, number]): Promise<void> {
  const arr = await zarr.create(new FileSystemStore(path), { shape: [D, H, W], chunkShape: [2, 32, 32], dtype: 'uint8' });
  const data = Uint8Array.from({ length: D * H * W }, (_, i) => (i * 7 + Math.floor(i / W) * 13 + ((i >> 4) ^ (i >> 9)) * 29) % 256);
  await zarr.set(arr, null, { data, shape: [D, H, W], stride: [H * W, W, 1] });
}

/** The reference instance labels of a block job's probabilities: one connectedInstances of the whole thresholded volume. */
export async function wholeVolumeInstances(
  out: string,
  o: { threshold: number; connectivity: Connectivity; minSize: number },
): Promise<{ data: ArrayLike<number>; count: number }> {
  const probabilities = await openZarrVolume(out);
  const [depth, height, width] = probabilities.shape;
  const q = await probabilities.read([0, 0, 0], probabilities.shape);
  const level = probabilityLevel(o.threshold, 255);
  return connectedInstances(
    { width, height, depth, data: Uint8Array.from(q, (v) => (v >= level ? 1 : 0)) },
    { connectivity: o.connectivity, minSize: o.minSize, ids: 'uint32' },
  );
}
