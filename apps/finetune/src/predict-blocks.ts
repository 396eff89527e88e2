/**
 * `predict` of a Zarr volume, block by block (see @emseg/segmentation's blocks): the job is planned
 * once and recorded in `<out>/.emseg-job/job.json` (input, model, tiling, halo, block shape, output
 * array), so that every engine and every rerun predicts exactly the same blocks:
 *
 * - a local pool of `--workers N` child processes (`finetune worker --job <out>`, over IPC, each
 *   with TF_NUM_INTRAOP_THREADS = cores / N unless set); with N = 1 the blocks are predicted in
 *   this process;
 * - a BullMQ queue on Redis (`--queue`, see block-queue.ts);
 * - `--shard i/n` (or SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX with
 *   EMSEG_SHARD_COUNT): this process takes every n-th block from i; shards may run at once, on any
 *   machines that share the output.
 *
 * Blocks with a done marker are skipped, so an interrupted job resumes. Progress (blocks done /
 * total, blocks/s, failures) goes to stderr and to one MLflow run per planning process (this one:
 * the job for a local pool or a queue, one run per shard; see JobRun), logged every few seconds;
 * the summary names every failed block.
 */
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { availableParallelism, hostname } from 'node:os';
import { basename, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXIT } from '@emseg/config';
import { createZarrVolume, openZarrVolume, type ZarrData, type ZarrFormat, type ZarrVolume } from '@emseg/data';
import { writeJsonAtomic } from '@emseg/fs';
import {
  blockAt,
  inferenceProblem,
  isBlockDone,
  jobFolder,
  labelBlockPass1,
  mergeBlockLabels,
  openInstanceLabels,
  planBlocks,
  prepareInstanceJob,
  predictBlock,
  probabilityLevel,
  relabelBlock,
  resolveModelDir,
  Segmenter,
  shardIndices,
  writeDoneMarker,
  type BlockPlan,
  type InferenceOptions,
  type InstanceJob,
  type MergeResult,
} from '@emseg/segmentation';
import type { Connectivity } from '@emseg/evaluation';
import { redactUri, runUiLink, Tracker, type EndStatus, type TrackedRun } from '@emseg/tracking';
import { gracefulStop, ProgressBar, runUiHint } from '@emseg/training';

/** Everything that decides what the blocks hold; equal for every engine, shard and rerun of a job. */
export interface BlockJob {
  version: 1;
  input: { path: string; dataset: string | null; scale: number | null };
  model: string;
  inference: InferenceOptions;
  halo: number;
  output: { path: string; dtype: 'uint8' | 'uint16'; format: ZarrFormat; ome: boolean; shape: number[]; chunks: number[] };
  /** Chunks per block, [z, y, x]. */
  blockChunks: number[];
  /** The optional mask store (`--mask-out`): uint8, 255 where the stored probability is at least `threshold`, 0 elsewhere; same shape, chunks and format as the output. */
  mask?: { path: string; threshold: number };
  /**
   * The optional instance labels (`--instances-out`): the connected components of the same
   * thresholded probabilities, block-wise (see @emseg/segmentation's block-instances): pass 1 per
   * block right after its probabilities, the merge and relabel once every block is done.
   */
  instances?: { path: string; threshold: number; connectivity: Connectivity; minSize: number };
}

export interface ZarrPredictArgs {
  input: string;
  dataset?: string;
  scale?: number;
  out: string;
  model: string;
  inference: Partial<InferenceOptions>;
  halo?: number;
  dtype: 'uint8' | 'uint16';
  format: ZarrFormat;
  ome: boolean;
  chunks?: number[];
  blockChunks?: number[];
  workers: number;
  shard?: string;
  /** Enqueue the blocks on this Redis (BullMQ) instead of predicting them here (block-queue.ts). */
  queue?: string;
  /** Also write the thresholded mask (uint8, foreground 255) into this Zarr store, block by block. */
  maskOut?: string;
  /** Also write instance labels (connected components of the thresholded mask, uint16 or uint32) into this Zarr store. */
  instancesOut?: string;
  /** The instances' neighbour count: 6 (default), 18 or 26; 4 (default) or 8 for a 2D volume. */
  connectivity?: Connectivity;
  /** Instances of fewer voxels are dropped (default 1: keep all). */
  minSize?: number;
  /** The mask's and instances' probability threshold (default: the model's). */
  threshold?: number;
  /** With `queue`: wait for the blocks (default) or exit once they are enqueued. */
  wait?: boolean;
  /** MLflow server of the job's run (default MLFLOW_TRACKING_URI, else the project store). */
  trackingUri?: string;
  /** MLflow experiment (default MLFLOW_EXPERIMENT_NAME, else DEFAULT_PREDICT_EXPERIMENT). */
  experiment?: string;
  /** false: no MLflow run (default true). */
  tracking?: boolean;
  /** How often progress metrics go to the run (default PROGRESS_EVERY_MS). */
  progressEveryMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** A shard of the blocks: this process takes index, index + count, ... */
export interface Shard {
  index: number;
  count: number;
  /** Where it came from: '--shard', 'SLURM_ARRAY_TASK_ID', 'JOB_COMPLETION_INDEX'. */
  source: string;
}

/**
 * The shard from `--shard i/n`, else Slurm's array variables (SLURM_ARRAY_TASK_ID minus
 * SLURM_ARRAY_TASK_MIN, of SLURM_ARRAY_TASK_COUNT), else a Kubernetes Indexed Job's
 * JOB_COMPLETION_INDEX of EMSEG_SHARD_COUNT; null when none is set (all blocks).
 *
 * @example parseShard(undefined, { SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_COUNT: '4' }) // { index: 3, count: 4, source: 'SLURM_ARRAY_TASK_ID' }
 */
export function parseShard(flag: string | undefined, env: NodeJS.ProcessEnv): Shard | null {
  const whole = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v.trim()) ? Number(v) : NaN);
  const check = (index: number, count: number, source: string, shown: string): Shard => {
    if (!(count >= 1 && index >= 0 && index < count)) throw new Error(`${shown}: a shard is i/n with whole numbers 0 <= i < n`);
    return { index, count, source };
  };
  if (flag !== undefined) {
    const m = /^(\d+)\/(\d+)$/.exec(flag.trim());
    return check(m ? Number(m[1]) : NaN, m ? Number(m[2]) : NaN, '--shard', `--shard ${JSON.stringify(flag)}`);
  }
  if (env.SLURM_ARRAY_TASK_ID !== undefined) {
    const min = env.SLURM_ARRAY_TASK_MIN === undefined ? 0 : whole(env.SLURM_ARRAY_TASK_MIN);
    const id = whole(env.SLURM_ARRAY_TASK_ID);
    const count = whole(env.SLURM_ARRAY_TASK_COUNT);
    return check(
      id - min,
      count,
      'SLURM_ARRAY_TASK_ID',
      `SLURM_ARRAY_TASK_ID=${env.SLURM_ARRAY_TASK_ID} (min ${min}) of SLURM_ARRAY_TASK_COUNT=${env.SLURM_ARRAY_TASK_COUNT}`,
    );
  }
  if (env.JOB_COMPLETION_INDEX !== undefined) {
    if (env.EMSEG_SHARD_COUNT === undefined)
      throw new Error(
        `JOB_COMPLETION_INDEX=${env.JOB_COMPLETION_INDEX} is set but EMSEG_SHARD_COUNT is not: set it to the Job's completions (see deploy/k8s/predict-job.yaml)`,
      );
    return check(
      whole(env.JOB_COMPLETION_INDEX),
      whole(env.EMSEG_SHARD_COUNT),
      'JOB_COMPLETION_INDEX',
      `JOB_COMPLETION_INDEX=${env.JOB_COMPLETION_INDEX} of EMSEG_SHARD_COUNT=${env.EMSEG_SHARD_COUNT}`,
    );
  }
  return null;
}

const jobFile = (out: string) => join(jobFolder(out), 'job.json');

/** Reads the job recorded in output store `out`. */
export async function readJob(out: string): Promise<BlockJob> {
  const path = jobFile(out);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new Error(`${path} does not exist: ${out} is not the output of a block prediction job (start one with \`predict <volume.zarr> --out ${out}\`)`);
  }
  return JSON.parse(text) as BlockJob;
}

/**
 * Records `job` in its output, or checks that the job already recorded there is the same one
 * (identical JSON: a rerun or another shard), else refuses, naming what differs.
 */
async function recordJob(job: BlockJob): Promise<void> {
  const path = jobFile(job.output.path);
  const existing = await readJob(job.output.path).catch(() => null);
  if (!existing) return writeJsonAtomic(path, job);
  const keys = [...new Set([...Object.keys(existing), ...Object.keys(job)])] as (keyof BlockJob)[];
  const differs = keys.filter((k) => JSON.stringify(job[k]) !== JSON.stringify(existing[k]));
  if (differs.length > 0)
    throw new Error(
      `${path}: ${job.output.path} holds a block job with other settings (${differs.map((k) => `${k}: ${JSON.stringify(existing[k])} there, ${JSON.stringify(job[k])} now`).join('; ')}); resume it with the same options, or choose another --out`,
    );
}

/** The plan of a job's blocks. */
export const jobPlan = (job: BlockJob): BlockPlan => planBlocks(job.output.shape, job.output.chunks, job.blockChunks);

/**
 * `output`, whose writes also write the thresholded mask of the same region into `mask` (after the
 * probabilities; both before the block's done marker, so a block is done with both or redone).
 */
function withMask(output: ZarrVolume, mask: ZarrVolume, threshold: number): ZarrVolume {
  const level = probabilityLevel(threshold, output.dtype === 'uint8' ? 255 : 65535);
  const write = async (start: readonly number[], shape: readonly number[], data: ZarrData): Promise<void> => {
    await output.write(start, shape, data);
    const m = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) m[i] = data[i] >= level ? 255 : 0;
    await mask.write(start, shape, m);
  };
  // every other member (path, shape, chunks, dtype, read) is the output's
  return Object.defineProperty(Object.create(output) as ZarrVolume, 'write', { value: write });
}

/** A job's volumes and model, opened to predict its blocks. */
export class BlockWorker {
  private constructor(
    readonly job: BlockJob,
    readonly plan: BlockPlan,
    private readonly segmenter: Segmenter,
    private readonly input: ZarrVolume,
    private readonly output: ZarrVolume,
    private readonly instances: InstanceJob | null,
  ) {}

  static async open(job: BlockJob, segmenter?: Segmenter): Promise<BlockWorker> {
    const input = await openZarrVolume(job.input.path, { dataset: job.input.dataset ?? undefined, scale: job.input.scale ?? undefined });
    const probability = await openZarrVolume(job.output.path);
    const output = job.mask ? withMask(probability, await openZarrVolume(job.mask.path), job.mask.threshold) : probability;
    const instances = job.instances ? await instanceJob(job, probability) : null;
    return new BlockWorker(job, jobPlan(job), segmenter ?? Segmenter.load(job.model), input, output, instances);
  }

  /**
   * Predicts block `index` unless it is done; writes its data (probabilities, mask, pass 1 of the
   * instance labels), then its done marker.
   */
  async run(index: number, stop?: { readonly requested: boolean }): Promise<'done' | 'skipped'> {
    const block = blockAt(this.plan, index);
    if (await isBlockDone(this.job.output.path, block.id)) return 'skipped';
    const result = await predictBlock(this.segmenter, this.input, this.output, block, { inference: this.job.inference, halo: this.job.halo, stop });
    // (a block relabelled before a crash keeps its record: the rerun's identical probabilities need no new one)
    if (this.instances) await labelBlockPass1(this.instances, index);
    await writeDoneMarker(this.job.output.path, result, `${hostname()}:${process.pid}`);
    return 'done';
  }

  dispose(): void {
    this.segmenter.dispose();
  }
}

/** The block-wise labelling of a job's probabilities (same blocks and chunks as the job's output). */
function instanceJob(job: BlockJob, probability: ZarrVolume): Promise<InstanceJob> {
  const { path, threshold, connectivity, minSize } = job.instances!;
  return prepareInstanceJob(probability, path, {
    threshold,
    connectivity,
    minSize,
    chunks: job.output.chunks,
    blockChunks: job.blockChunks,
    format: job.output.format,
    ome: job.output.ome ? { name: `${basename(job.input.path)} instances` } : undefined,
  });
}

/** Blocks of the job without a done marker (all engines, all shards). */
async function blocksNotDone(job: BlockJob, plan: BlockPlan): Promise<number> {
  let left = 0;
  for (let i = 0; i < plan.count; i++) if (!(await isBlockDone(job.output.path, blockAt(plan, i).id))) left++;
  return left;
}

/**
 * Passes 2 and 3 of a job's instance labels once every block of the job is done (by any engine or
 * shard): the merge, then every block relabelled into the labels store. Returns null (doing nothing)
 * while blocks are left. Safe to run by two processes at once (both write the same files,
 * atomically) and skips what is done, so any rerun finishes an interrupted one.
 */
export async function finishInstances(job: BlockJob, onBlock?: () => void): Promise<MergeResult | null> {
  if (!job.instances) return null;
  const plan = jobPlan(job);
  // from the last block down: blocks run roughly in index order, so while a job runs the check
  // stops at once (a queue worker asks after each of its blocks)
  for (let i = plan.count - 1; i >= 0; i--) if (!(await isBlockDone(job.output.path, blockAt(plan, i).id))) return null;
  const labelling = await instanceJob(job, await openZarrVolume(job.output.path));
  const { merge } = await mergeBlockLabels(labelling);
  const labels = await openInstanceLabels(labelling);
  for (let i = 0; i < plan.count; i++) {
    await relabelBlock(labelling, i, labels);
    onBlock?.();
  }
  return merge;
}

const parsePositive = (v: number, flag: string) => {
  if (!(Number.isInteger(v) && v >= 1)) throw new Error(`${flag} must be a positive whole number, got ${v}`);
  return v;
};

/** Plans the job: opens the input, settles the output's chunks and the tiling, records the job and creates the output array. */
async function planJob(args: ZarrPredictArgs, segmenter: Segmenter): Promise<BlockJob> {
  const input = await openZarrVolume(args.input, { dataset: args.dataset, scale: args.scale });
  const info = segmenter.loadedInfo!;
  const inference: InferenceOptions = { ...info.inference, ...Object.fromEntries(Object.entries(args.inference).filter(([, v]) => v !== undefined)) };
  const problem = inferenceProblem(inference);
  if (problem) throw new Error(problem);
  const shape = input.shape;
  const chunks = args.chunks ?? input.chunks;
  if (chunks.length !== shape.length)
    throw new Error(`--chunks ${chunks.join(',')} has ${chunks.length} sizes; ${input.path} has ${shape.length} dimensions [${shape.join(', ')}]`);
  chunks.forEach((c) => parsePositive(c, '--chunks'));
  const [cy, cx] = chunks.slice(-2);
  const k = args.blockChunks ?? [1, Math.max(1, Math.ceil(inference.tileSize / cy)), Math.max(1, Math.ceil(inference.tileSize / cx))];
  k.forEach((c) => parsePositive(c, '--block-chunks'));
  const halo = args.halo ?? inference.overlap;
  if (!(Number.isInteger(halo) && halo >= 0)) throw new Error(`--halo must be a whole number of pixels, got ${halo}`);
  const small = shape.slice(-2).some((n) => n < inference.tileSize);
  if (small)
    throw new Error(
      `${input.path}: its slices are ${shape.slice(-2).join(' x ')} pixels, smaller than the inference tile (${inference.tileSize}); use a smaller --tile-size`,
    );
  const job: BlockJob = {
    version: 1,
    input: { path: resolve(args.input), dataset: args.dataset ?? null, scale: args.scale ?? null },
    model: resolve(resolveModelDir(args.model)),
    inference,
    halo,
    output: { path: resolve(args.out), dtype: args.dtype, format: args.format, ome: args.ome, shape, chunks },
    blockChunks: k,
  };
  const inside = (path: string, dir: string) => {
    const rel = relative(resolve(dir), path);
    return rel === '' || (!rel.startsWith('..') && !rel.startsWith('/'));
  };
  if (inside(job.output.path, args.input)) throw new Error(`--out ${args.out} is inside the input ${args.input}: choose an output outside it`);
  const threshold = args.threshold ?? info.threshold;
  if ((args.maskOut !== undefined || args.instancesOut !== undefined) && !(threshold >= 0 && threshold <= 1))
    throw new Error(`--threshold must be a probability in [0, 1], got ${threshold}`);
  /** A store of its own beside the input, the probabilities and the other stores. */
  const separate = (flag: string, given: string, others: [string, string][]) => {
    const path = resolve(given);
    if (inside(path, args.input)) throw new Error(`${flag} ${given} is inside the input ${args.input}: choose a store outside it`);
    for (const [other, at] of others)
      if (inside(path, at) || inside(at, path)) throw new Error(`${flag} ${given} and ${other} overlap: ${flag} is a Zarr store of its own, beside ${other}`);
    return path;
  };
  if (args.maskOut !== undefined) job.mask = { path: separate('--mask-out', args.maskOut, [[`--out ${args.out}`, job.output.path]]), threshold };
  if (args.instancesOut !== undefined) {
    const others: [string, string][] = [
      [`--out ${args.out}`, job.output.path],
      ...(job.mask ? [[`--mask-out ${args.maskOut}`, job.mask.path] as [string, string]] : []),
    ];
    const depth = shape.length === 3 ? shape[0] : 1;
    const connectivity = args.connectivity ?? (depth > 1 ? 6 : 4);
    const allowed = depth > 1 ? [6, 18, 26] : [4, 8];
    if (!allowed.includes(connectivity))
      throw new Error(`--connectivity ${connectivity}: a ${depth > 1 ? '3D' : '2D'} volume's instances take ${allowed.join(', ')} neighbours`);
    const minSize = args.minSize ?? 1;
    if (!(Number.isInteger(minSize) && minSize >= 1)) throw new Error(`--min-size must be a positive whole number of voxels, got ${minSize}`);
    job.instances = { path: separate('--instances-out', args.instancesOut, others), threshold, connectivity, minSize };
  }
  await createZarrVolume(job.output.path, {
    shape,
    chunks,
    dtype: args.dtype,
    format: args.format,
    ome: args.ome ? { name: basename(args.input) } : undefined,
    attributes: { emseg: { kind: 'foreground probability', scale: args.dtype === 'uint8' ? 255 : 65535, model: job.model } },
  });
  await recordJob(job);
  if (job.mask) {
    const max = args.dtype === 'uint8' ? 255 : 65535;
    await createZarrVolume(job.mask.path, {
      shape,
      chunks,
      dtype: 'uint8',
      format: args.format,
      ome: args.ome ? { name: `${basename(args.input)} mask` } : undefined,
      attributes: {
        emseg: {
          kind: 'foreground mask',
          foreground: 255,
          threshold: job.mask.threshold,
          rule: `255 where the probability stored in ${job.output.path} is >= ${probabilityLevel(job.mask.threshold, max)} / ${max}`,
          probability: job.output.path,
          model: job.model,
        },
      },
    });
  }
  // checks the labels store (a labelling job there with other settings is refused) and creates its provisional ids
  if (job.instances) await instanceJob(job, await openZarrVolume(job.output.path));
  return job;
}

/** The experiment of block prediction runs unless --experiment / MLFLOW_EXPERIMENT_NAME name one. */
export const DEFAULT_PREDICT_EXPERIMENT = 'emseg-predict';
/** How often a job's run gets its progress metrics. */
export const PROGRESS_EVERY_MS = 5000;

/**
 * A job's id: a digest of its recorded settings (job.json), the same for every engine, shard and
 * rerun of the job; its runs carry it as tag `emseg.predict.job` (with the output path as
 * `emseg.predict.output`), so that the runs of one job group in the MLflow UI.
 */
export const jobId = (job: BlockJob): string => createHash('sha256').update(JSON.stringify(job)).digest('hex').slice(0, 12);

/** How this process predicts its blocks. */
export type BlockEngine = 'local' | 'local-pool' | 'queue' | 'shard';

/** Counts of this process's share of the job (all blocks, or its shard's). */
interface BlockCounts {
  /** Blocks of this process's share. */
  total: number;
  /** Done before this process started (skipped). */
  alreadyDone: number;
  /** Predicted by this process (or its pool / the queue's workers). */
  done: number;
  failed: number;
}

/**
 * The MLflow run of one prediction process: params (input, model, tiling, halo, chunks, block
 * shape, engine, workers or shard), tags linking the job and the model's run, and progress metrics
 * (blocks_done of blocks_total, blocks_per_second, failures) on a timer, never per tile or block,
 * so that logging costs the prediction nothing; ended FINISHED, FAILED (failed or unrun blocks, or
 * an error) or KILLED (SIGINT / SIGTERM).
 */
class JobRun {
  private readonly timer: NodeJS.Timeout;
  private readonly t0 = performance.now();

  private constructor(
    readonly run: TrackedRun,
    private readonly counts: BlockCounts,
    everyMs: number,
  ) {
    this.timer = setInterval(() => this.log(), everyMs);
    this.timer.unref();
    this.log();
  }

  static async start(
    args: ZarrPredictArgs,
    job: BlockJob,
    plan: BlockPlan,
    shard: Shard | null,
    engine: BlockEngine,
    workers: number,
    counts: BlockCounts,
    modelRunId: string | null,
  ): Promise<JobRun> {
    const experiment = args.experiment ?? (args.env ?? process.env).MLFLOW_EXPERIMENT_NAME?.trim() ?? '';
    const id = jobId(job);
    const { inference } = job;
    const run = await Tracker.start({
      trackingUri: args.trackingUri,
      env: args.env,
      experiment: experiment === '' ? DEFAULT_PREDICT_EXPERIMENT : experiment,
      runName: `predict-${basename(job.output.path)}-${shard ? `shard-${shard.index}-of-${shard.count}` : engine}`,
      // the command ends the run itself: KILLED once the blocks in progress are done
      handleProcessEvents: false,
      description: `Block-wise prediction of ${job.input.path} into ${job.output.path}: ${shard ? `shard ${shard.index}/${shard.count} of ` : ''}${plan.count} blocks of ${plan.blockShape.join(' x ')} (${engine}).`,
      tags: {
        'emseg.app': 'finetune',
        'emseg.predict.job': id,
        'emseg.predict.output': job.output.path,
        'emseg.predict.engine': engine,
        ...(shard ? { 'emseg.predict.shard': String(shard.index), 'emseg.predict.shardCount': String(shard.count) } : {}),
        ...(modelRunId ? { 'emseg.model.runId': modelRunId } : {}),
      },
      params: {
        input: job.input.path,
        'input.dataset': job.input.dataset ?? 'none',
        scale: job.input.scale ?? 0,
        shape: job.output.shape.join(','),
        model: job.model,
        tile: inference.tileSize,
        overlap: inference.overlap,
        window: inference.window,
        batch_size: inference.batchSize,
        flip_tta: inference.flipTta,
        halo: job.halo,
        chunks: job.output.chunks.join(','),
        block_chunks: job.blockChunks.join(','),
        block_shape: plan.blockShape.join(','),
        output: job.output.path,
        dtype: job.output.dtype,
        engine,
        workers,
        shard: shard ? `${shard.index}/${shard.count}` : 'none',
        'shard.source': shard?.source ?? 'none',
        queue: args.queue ? redactUri(args.queue) : 'none',
        'blocks.job': plan.count,
        'blocks.total': counts.total,
        'blocks.already_done': counts.alreadyDone,
        mask: job.mask?.path ?? 'none',
        instances: job.instances?.path ?? 'none',
        ...(job.mask || job.instances ? { threshold: (job.mask ?? job.instances)!.threshold } : {}),
        ...(job.instances ? { connectivity: job.instances.connectivity, min_size: job.instances.minSize } : {}),
        job_id: id,
      },
    });
    if (modelRunId) {
      const link = await runUiLink(run.client, modelRunId);
      if (link) run.setTag('emseg.model.link', link);
    }
    process.stderr.write(`MLflow run ${run.id} at ${run.client.trackingUri} (job ${id}); see it: ${runUiHint(run, args.trackingUri)}\n`);
    return new JobRun(run, counts, args.progressEveryMs ?? PROGRESS_EVERY_MS);
  }

  /** Logs the progress so far (step: whole seconds since the start). */
  log(): void {
    const seconds = (performance.now() - this.t0) / 1000;
    const c = this.counts;
    this.run.logMetrics(
      {
        blocks_done: c.alreadyDone + c.done,
        blocks_total: c.total,
        blocks_predicted: c.done,
        blocks_per_second: seconds > 0 ? c.done / seconds : 0,
        failures: c.failed,
      },
      Math.round(seconds),
    );
  }

  /** Logs the last progress and ends the run. */
  async end(status: EndStatus, reason?: string): Promise<void> {
    clearInterval(this.timer);
    this.log();
    await this.run.end(status, reason ? { reason } : {});
  }
}

/** What a local worker process sends back for a block. */
type WorkerReply = { index: number; status: 'done' | 'skipped' } | { index: number; status: 'failed'; message: string } | { status: 'ready' };

/** The built CLI (main.js beside this file), which the pool forks as `worker --job <out>`. */
const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));

/** Runs `indices` on `n` worker processes; `onResult` per block. Resolves when all are done or stop is requested. */
async function runPool(
  out: string,
  indices: readonly number[],
  n: number,
  stop: { readonly requested: boolean },
  onResult: (index: number, error: string | null) => void,
): Promise<void> {
  const queue = [...indices];
  await Promise.all(
    Array.from({ length: Math.min(n, queue.length) }, async (_, w) => {
      // the cores shared out between the workers, unless the caller sized TensorFlow's pools
      const threads = process.env.TF_NUM_INTRAOP_THREADS ?? String(Math.max(1, Math.floor(availableParallelism() / n)));
      const env = { ...process.env, EMSEG_WORKER: String(w), TF_NUM_INTRAOP_THREADS: threads };
      const child = fork(MAIN, ['worker', '--job', out], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env });
      let current: number | null = null;
      await new Promise<void>((done) => {
        const next = () => {
          current = stop.requested ? null : (queue.shift() ?? null);
          if (current === null) child.disconnect();
          else child.send({ index: current });
        };
        child.on('message', (m: WorkerReply) => {
          if (m.status === 'ready') return next();
          onResult(m.index, m.status === 'failed' ? m.message : null);
          next();
        });
        // a worker that ends fails its block (if any); the rest of its share goes to the others
        const end = (why: string) => {
          if (current !== null) onResult(current, `worker process ${child.pid ?? '?'} ${why} during the block`);
          current = null;
          done();
        };
        child.on('exit', (code, signal) => end(`ended (${signal ?? `exit ${code}`})`));
        child.on('error', (err) => end(`failed (${err.message})`));
      });
    }),
  );
}

/** {@link finishInstances} with a progress bar and a summary line (or why it waits for other shards). */
async function writeInstances(job: BlockJob, plan: BlockPlan): Promise<MergeResult | null> {
  const left = await blocksNotDone(job, plan);
  if (left > 0) {
    process.stdout.write(
      `instance labels: ${left} of ${plan.count} blocks of the job are not done yet (other shards); the last shard to finish writes them, as does any rerun once all are done\n`,
    );
    return null;
  }
  const t0 = performance.now();
  process.stderr.write(`instance labels: merging the components of ${plan.count} blocks\n`);
  const bar = new ProgressBar({ label: 'relabel', total: plan.count, unit: 'block' });
  const merge = await finishInstances(job, () => bar.tick(1));
  bar.done();
  if (merge)
    process.stdout.write(
      `${merge.count} instance(s) (${merge.provisional} block components merged, ${merge.dtype}) in ${((performance.now() - t0) / 1000).toFixed(1)} s -> ${job.instances!.path}\n`,
    );
  return merge;
}

/** `predict` of a Zarr volume: plan, record, predict the (shard's) blocks not done yet, summarise. */
export async function predictZarr(args: ZarrPredictArgs): Promise<number> {
  const shard = parseShard(args.shard, args.env ?? process.env);
  parsePositive(args.workers, '--workers');
  if (args.queue && args.workers !== 1)
    throw new Error(`--workers ${args.workers} is the local pool; with --queue, start \`finetune worker --queue ${args.queue}\` processes instead`);
  // an unreachable queue is refused before anything is written
  const queueing = args.queue ? await import('./block-queue.js') : null;
  if (args.queue) await queueing!.checkRedis(args.queue);
  const segmenter = Segmenter.load(args.model);
  let job: BlockJob;
  try {
    job = await planJob(args, segmenter);
  } catch (err) {
    segmenter.dispose();
    throw err;
  }
  const plan = jobPlan(job);
  const mine = shard ? shardIndices(plan.count, shard) : Array.from({ length: plan.count }, (_, i) => i);
  const todo: number[] = [];
  for (const i of mine) if (!(await isBlockDone(job.output.path, blockAt(plan, i).id))) todo.push(i);
  const { inference } = job;
  process.stderr.write(
    `blocks: ${plan.count} of ${plan.blockShape.join(' x ')} (z, y, x; chunks ${job.output.chunks.join(' x ')}, halo ${job.halo}) over ${plan.shape.join(' x ')}${shard ? `; shard ${shard.index}/${shard.count} (${shard.source}): ${mine.length}` : ''}; ${mine.length - todo.length} already done, ${todo.length} to predict ${args.queue ? `by the workers of ${args.queue}` : `with ${Math.min(args.workers, Math.max(1, todo.length))} worker(s)`}; tiles ${inference.tileSize} overlap ${inference.overlap}; ${job.output.dtype} probabilities -> ${job.output.path}${job.mask ? `, mask (threshold ${job.mask.threshold}) -> ${job.mask.path}` : ''}${job.instances ? `, instances (threshold ${job.instances.threshold}, ${job.instances.connectivity}-connected, min ${job.instances.minSize} voxels) -> ${job.instances.path}` : ''}\n`,
  );
  const pooled = !args.queue && args.workers > 1 && todo.length > 1;
  const engine: BlockEngine = args.queue ? 'queue' : shard ? 'shard' : pooled ? 'local-pool' : 'local';
  const counts: BlockCounts = { total: mine.length, alreadyDone: mine.length - todo.length, done: 0, failed: 0 };
  // (from here on, a signal stops the job and ends its run KILLED, while the run starts included)
  let signals = 0;
  const stop = gracefulStop({
    log: (m) =>
      process.stderr.write(
        `\n${signals++ === 0 ? `${stop.signal ?? 'signal'} received: stopping after the blocks in progress; a rerun resumes (send it again to exit at once)` : m}\n`,
      ),
  });
  let tracked: JobRun | null = null;
  if (args.tracking ?? true) {
    try {
      tracked = await JobRun.start(args, job, plan, shard, engine, args.workers, counts, segmenter.loadedInfo?.mlflowRunId ?? null);
    } catch (err) {
      stop.dispose();
      segmenter.dispose();
      throw err;
    }
  }
  const failed = new Map<number, string>();
  const bar = todo.length > 0 && (!args.queue || (args.wait ?? true)) ? new ProgressBar({ label: 'blocks', total: todo.length, unit: 'block' }) : undefined;
  const onResult = (index: number, error: string | null) => {
    if (error) {
      failed.set(index, error);
      counts.failed++;
      process.stderr.write(`\nerror: block ${blockAt(plan, index).id}: ${error}\n`);
    } else counts.done++;
    bar?.tick(1, { failed: failed.size });
  };
  try {
    if (queueing) {
      segmenter.dispose();
      await queueing.queueBlocks(args.queue!, job, todo, { wait: args.wait ?? true, onResult });
      // (with nothing left to enqueue, --no-wait goes on: a rerun then finishes the instance labels here)
      if (!(args.wait ?? true) && todo.length > 0) {
        tracked?.run.logMetric('blocks_enqueued', todo.length);
        tracked?.run.setTag('emseg.predict.wait', 'false');
        await tracked?.end('FINISHED');
        process.stdout.write(
          `${todo.length} block(s) enqueued on ${args.queue}; run \`finetune worker --queue ${args.queue}\` to predict them${job.instances ? ` (the worker that finishes the last block writes the instance labels)` : ''}\n`,
        );
        return EXIT.ok;
      }
    } else if (pooled) {
      segmenter.dispose();
      await runPool(job.output.path, todo, args.workers, stop, onResult);
    } else {
      const worker = await BlockWorker.open(job, segmenter);
      try {
        for (const i of todo) {
          if (stop.requested) break;
          try {
            await worker.run(i, stop);
            onResult(i, null);
          } catch (err) {
            if (stop.requested) break;
            onResult(i, (err as Error).message);
          }
        }
      } finally {
        worker.dispose();
      }
    }
  } catch (err) {
    bar?.done();
    stop.dispose();
    await tracked?.end('FAILED', (err as Error).message);
    throw err;
  }
  bar?.done();
  stop.dispose();
  const { done } = counts;
  const notRun = todo.length - done - failed.size;
  process.stdout.write(
    `${done} block(s) predicted, ${mine.length - todo.length} already done, ${failed.size} failed${notRun > 0 ? `, ${notRun} not run` : ''} -> ${job.output.path}\n`,
  );
  for (const [i, why] of failed) process.stdout.write(`  failed: block ${blockAt(plan, i).id} (index ${i}): ${why}\n`);
  if (job.instances && !stop.requested && failed.size === 0 && notRun === 0) {
    try {
      const merge = await writeInstances(job, plan);
      if (merge) tracked?.run.logMetrics({ instances: merge.count, instances_provisional: merge.provisional });
    } catch (err) {
      await tracked?.end('FAILED', `instance labels: ${(err as Error).message}`);
      throw err;
    }
  }
  const failedIds = [...failed.keys()].map((i) => blockAt(plan, i).id);
  if (tracked) {
    if (failedIds.length > 0) tracked.run.setTag('emseg.predict.failedBlocks', failedIds.join(' ').slice(0, 4000));
    await tracked.end(
      stop.requested ? 'KILLED' : failed.size > 0 || notRun > 0 ? 'FAILED' : 'FINISHED',
      stop.requested
        ? `stopped by ${stop.signal ?? 'a signal'} (${notRun} block(s) not run; a rerun resumes)`
        : failed.size > 0
          ? `${failed.size} block(s) failed: ${failedIds.join(', ').slice(0, 1000)}`
          : notRun > 0
            ? `${notRun} block(s) not run`
            : undefined,
    );
  }
  if (stop.requested) return EXIT.interrupted;
  return failed.size > 0 || notRun > 0 ? EXIT.failed : EXIT.ok;
}
