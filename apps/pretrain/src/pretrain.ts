/**
 * The MoCoV2 pretraining loop: data stream -> MocoModel steps -> checkpoints -> encoder bundle.
 * Tracking-agnostic: progress and metrics go to a `PretrainListener` (main.ts wires MLflow to it).
 */
import { join } from 'node:path';
import { tf, type Tensor } from '@emseg/tf';
import { DataError, UnlabeledCrops, imageBatchToTensor, readImageInfo, type AugmentationSpec, type DatasetDigest } from '@emseg/data';
import { saveEncoderBundle } from '@emseg/models';
import {
  Sgd,
  cosineSchedule,
  latestCheckpoint,
  loadCheckpoint,
  saveCheckpoint,
  stepSchedule,
  type GracefulStop,
  type LrSchedule,
} from '@emseg/training';
import type { MocoConfig } from './config.js';
import { MocoModel, type MocoStepResult } from './moco-model.js';
import { disposeProbeData, loadProbeData, runProbe, type ProbeData, type ProbeResult } from './probe.js';

export interface StepMetrics extends MocoStepResult {
  lr: number;
  imagesPerSec: number;
  epoch: number;
}

export interface PretrainListener {
  /** Called once the data are listed, before the first step. */
  start?(info: { crops: number; stepsPerEpoch: number; totalSteps: number; startStep: number; digest: DatasetDigest }): void | Promise<void>;
  step?(step: number, metrics: StepMetrics): void;
  checkpoint?(dir: string, step: number): void | Promise<void>;
  probe?(step: number, result: ProbeResult): void;
}

export interface PretrainOptions {
  cfg: MocoConfig;
  /** Folder of unlabeled crops (CEM500K layout: any tree of images). */
  dataDir: string;
  /** Run directory: checkpoints/, encoder/ and the crop manifest go here. */
  outDir: string;
  /** Continue from the newest checkpoint in outDir/checkpoints. */
  resume?: boolean;
  stop?: GracefulStop;
  listener?: PretrainListener;
  /** U-RISC-layout folder of a few labelled images for the linear probe (see probe.ts). */
  probeDir?: string;
  /** Extra facts for the bundle's encoder.json. */
  mlflowRunId?: string | null;
}

export interface PretrainResult {
  status: 'FINISHED' | 'KILLED';
  steps: number;
  totalSteps: number;
  lastLoss: number | null;
  bundleDir: string | null;
  checkpointDir: string;
}

interface CheckpointState {
  step: number;
  queuePtr: number;
  optimizerIterations: number;
  architecture: string;
}

function schedule(cfg: MocoConfig, stepsPerEpoch: number, totalSteps: number): LrSchedule {
  const { optimizer: o } = cfg;
  const warmupSteps = Math.round(o.warmupEpochs * stepsPerEpoch);
  return o.schedule === 'cosine'
    ? cosineSchedule(o.lr, totalSteps, { warmupSteps })
    : stepSchedule(o.lr, o.milestones.map((e) => Math.round(e * stepsPerEpoch)), o.gamma, { warmupSteps });
}

/** Crops must be at least the network's input size (RandomResizedCrop may not upsample whole images). */
async function checkCropSize(crops: UnlabeledCrops, cropSize: number): Promise<void> {
  const first = crops.path(0);
  const info = await readImageInfo(first);
  if (info.width < cropSize || info.height < cropSize) {
    throw new DataError(first, `is ${info.width} x ${info.height} pixels, smaller than data.cropSize ${cropSize}`, `crops of at least ${cropSize} x ${cropSize} (or a smaller data.cropSize)`);
  }
}

export async function pretrainMoco(opts: PretrainOptions): Promise<PretrainResult> {
  const { cfg, outDir } = opts;
  const crops = await UnlabeledCrops.open(opts.dataDir, { manifest: join(outDir, 'crops.manifest') });
  await checkCropSize(crops, cfg.data.cropSize);
  const stepsPerEpoch = Math.floor(crops.size / cfg.train.batchSize);
  if (stepsPerEpoch === 0) {
    throw new DataError(crops.root, `has ${crops.size} crops, fewer than one batch (train.batchSize ${cfg.train.batchSize})`, 'at least one batch of crops');
  }
  const epochSteps = Math.ceil(cfg.train.epochs * stepsPerEpoch);
  const totalSteps = cfg.train.maxSteps === null ? epochSteps : Math.min(cfg.train.maxSteps, epochSteps);
  const lrAt = schedule(cfg, stepsPerEpoch, totalSteps);
  const ckptRoot = join(outDir, 'checkpoints');

  const model = new MocoModel(cfg);
  const optimizer = new Sgd(cfg.optimizer.momentum, cfg.optimizer.weightDecay);
  let step = 0;
  let probeData: ProbeData | null = null;
  try {
    if (opts.probeDir) probeData = await loadProbeData(opts.probeDir, { patchSize: cfg.probe.patchSize, mean: cfg.data.mean, std: cfg.data.std });
    const probe = () => {
      if (probeData) opts.listener?.probe?.(step, runProbe(model.query.encoder, probeData, { steps: cfg.probe.steps }));
    };
    if (opts.resume) step = restore(model, optimizer, ckptRoot, cfg);
    const digest = await crops.digest();
    await opts.listener?.start?.({ crops: crops.size, stepsPerEpoch, totalSteps, startStep: step, digest });

    const norm = { mean: cfg.data.mean, std: cfg.data.std };
    let lastLoss: number | null = null;
    let lastSaved = step;
    const save = async () => {
      const dir = await saveCheckpoint(ckptRoot, step, checkpointTensors(model, optimizer), {
        step,
        queuePtr: model.queue.ptr,
        optimizerIterations: optimizer.iterations,
        architecture: cfg.encoder.architecture,
      } satisfies CheckpointState);
      lastSaved = step;
      await opts.listener?.checkpoint?.(dir, step);
    };

    outer: while (step < totalSteps) {
      const epoch = Math.floor(step / stepsPerEpoch);
      const skip = step - epoch * stepsPerEpoch;
      const stream = crops.stream({
        seed: cfg.train.seed,
        epoch,
        batchSize: cfg.train.batchSize,
        size: cfg.data.cropSize,
        views: 2,
        augmentation: cfg.augmentation as AugmentationSpec,
        prefetch: cfg.data.prefetch,
      });
      let t0 = performance.now();
      for await (const batch of stream) {
        if (batch.index < skip) continue;
        const [q, k] = batch.views.map((v) => imageBatchToTensor(v, norm));
        const lr = lrAt(step);
        const result = model.step(q, k, optimizer, lr, cfg.train.seed * 1_000_003 + step);
        tf.dispose([q, k]);
        step++;
        lastLoss = result.loss;
        const now = performance.now();
        opts.listener?.step?.(step, { ...result, lr, epoch, imagesPerSec: (cfg.train.batchSize * 1000) / (now - t0) });
        t0 = now;
        if (!Number.isFinite(result.loss)) throw new Error(`loss became ${result.loss} at step ${step}; lower optimizer.lr (now ${cfg.optimizer.lr})`);
        if (step % cfg.train.checkpointEvery === 0) await save();
        if (cfg.probe.every > 0 && step % cfg.probe.every === 0 && step < totalSteps) probe();
        if (opts.stop?.requested || step >= totalSteps) break outer;
      }
    }
    if (lastSaved !== step || latestCheckpoint(ckptRoot) === null) await save();
    probe();
    const killed = Boolean(opts.stop?.requested) && step < totalSteps;
    const bundleDir = join(outDir, 'encoder');
    await saveEncoderBundle(
      bundleDir,
      model.query.encoder,
      {
        normalization: { mean: cfg.data.mean, std: cfg.data.std },
        pixelSizeNm: cfg.data.pixelSizeNm,
        training: { method: 'mocov2', dataDigest: digest.digest, steps: step, config: cfg as unknown as Record<string, unknown>, mlflowRunId: opts.mlflowRunId ?? null },
      },
      { overwrite: true },
    );
    return { status: killed ? 'KILLED' : 'FINISHED', steps: step, totalSteps, lastLoss, bundleDir, checkpointDir: ckptRoot };
  } finally {
    if (probeData) disposeProbeData(probeData);
    model.dispose();
    optimizer.dispose();
  }
}

function checkpointTensors(model: MocoModel, optimizer: Sgd): Record<string, Tensor> {
  const out: Record<string, Tensor> = { queue: model.queue.keys };
  for (const [name, v] of Object.entries(model.allVariables(model.query))) out[`query/${name}`] = v;
  for (const [name, v] of Object.entries(model.allVariables(model.key))) out[`key/${name}`] = v;
  for (const [name, t] of Object.entries(optimizer.state().slots)) out[`optimizer/${name}`] = t;
  return out;
}

/** Loads the newest checkpoint into the model and optimizer; returns its step (0 if none). */
function restore(model: MocoModel, optimizer: Sgd, root: string, cfg: MocoConfig): number {
  const dir = latestCheckpoint(root);
  if (dir === null) {
    process.stderr.write(`--resume: no checkpoint under ${root}; starting from step 0\n`);
    return 0;
  }
  const ck = loadCheckpoint<CheckpointState>(dir);
  try {
    if (ck.state.architecture !== cfg.encoder.architecture) {
      throw new Error(`checkpoint ${dir} is a ${ck.state.architecture}, but the config asks for ${cfg.encoder.architecture}`);
    }
    for (const [prefix, branch] of [['query', model.query], ['key', model.key]] as const) {
      for (const [name, v] of Object.entries(model.allVariables(branch))) {
        const t = ck.tensors[`${prefix}/${name}`];
        if (!t) throw new Error(`checkpoint ${dir} has no ${prefix}/${name}`);
        v.assign(t);
      }
    }
    model.queue.load(ck.tensors.queue, ck.state.queuePtr);
    const slots = Object.fromEntries(Object.entries(ck.tensors).filter(([k]) => k.startsWith('optimizer/')).map(([k, t]) => [k.slice('optimizer/'.length), t]));
    optimizer.restore({ iterations: ck.state.optimizerIterations, slots });
    return ck.step;
  } finally {
    tf.dispose(Object.values(ck.tensors));
  }
}
