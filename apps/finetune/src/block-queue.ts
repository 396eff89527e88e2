/**
 * Block prediction on a job queue: BullMQ on Redis. `predict <volume.zarr> --queue redis://HOST:PORT`
 * enqueues one queue job per block not yet done (data: the output store and the block index; the
 * rest is the block job recorded in the output, see predict-blocks.ts) and waits for them;
 * `finetune worker --queue redis://...` processes them on any number of machines that see the
 * same files.
 *
 * - Retries: a failing block is tried 3 times with exponential backoff (1 s, 2 s); then it is
 *   failed, and `predict` names it and ends non-zero.
 * - Stalls: a worker killed mid-block stops renewing its lock; after `lockSeconds` another
 *   worker's stalled check puts the block back in the queue (the block has no done marker, and
 *   its chunks are rewritten whole). Tile batches yield to the event loop, so a live worker renews
 *   its lock during a long block.
 * - Queue jobs are named `<run token>.<block id>`: each `predict --queue` enqueues its own set (a
 *   block enqueued twice is predicted once; the second sees its done marker).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Queue, QueueEvents, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { blockAt } from '@emseg/segmentation';
import { gracefulStop } from '@emseg/training';
import { BlockWorker, finishInstances, jobPlan, readJob, type BlockJob } from './predict-blocks.js';

/** The queue every block job uses. */
export const QUEUE_NAME = 'emseg-blocks';

/** Attempts per block before it is failed, and the first retry's delay (doubling). */
export const ATTEMPTS = 3;
export const BACKOFF_MS = 1000;

interface BlockData {
  out: string;
  index: number;
  block: string;
  /** Set when nobody waits for the blocks (`--no-wait`): the worker that finds every block done writes the job's instance labels. */
  finish?: boolean;
}

/** Connection options for `url` (redis:// or rediss://, with optional user, password and /db). */
export function redisConnection(url: string): ConnectionOptions & { host: string; port: number } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`--queue ${JSON.stringify(url)} is not a Redis URL; expected redis://HOST:PORT`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error(`--queue ${url}: expected a redis:// or rediss:// URL, got ${u.protocol}`);
  const db = u.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) throw new Error(`--queue ${url}: the path must be a database number (redis://HOST:PORT/0), got /${db}`);
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: db ? Number(db) : 0,
    tls: u.protocol === 'rediss:' ? {} : undefined,
    maxRetriesPerRequest: null,
  };
}

/** Connects to `url` and pings it once (no retries), or throws naming the URL and the reason. */
export async function checkRedis(url: string, timeoutMs = 5000): Promise<void> {
  const client = new Redis({ ...redisConnection(url), lazyConnect: true, retryStrategy: () => null, connectTimeout: timeoutMs, maxRetriesPerRequest: 0 });
  let cause: Error | null = null;
  client.on('error', (err: Error) => (cause ??= err));
  try {
    await client.connect();
    await client.ping();
  } catch (err) {
    throw new Error(`cannot reach Redis at ${url}: ${(cause ?? (err as Error)).message}; start redis-server there (or check --queue); nothing was written`);
  } finally {
    client.disconnect();
  }
}

export interface QueueRunOptions {
  /** Wait for the blocks (default), or return once they are enqueued. */
  wait: boolean;
  /** Per finished block: null when done, else why it failed (after its last attempt). */
  onResult: (index: number, error: string | null) => void;
}

/** Enqueues `indices` of `job` on `url` and (with `wait`) resolves when each has completed or failed for good. */
export async function queueBlocks(url: string, job: BlockJob, indices: readonly number[], options: QueueRunOptions): Promise<void> {
  const connection = redisConnection(url);
  const plan = jobPlan(job);
  const token = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  const ids = new Map(indices.map((i) => [`${token}.${blockAt(plan, i).id}`, i]));
  const queue = new Queue<BlockData>(QUEUE_NAME, { connection });
  const events = options.wait ? new QueueEvents(QUEUE_NAME, { connection }) : null;
  try {
    const finished = new Promise<void>((resolve) => {
      if (!events || ids.size === 0) return resolve();
      let left = ids.size;
      const finish = (jobId: string, error: string | null) => {
        const index = ids.get(jobId);
        if (index === undefined) return;
        ids.delete(jobId);
        options.onResult(index, error);
        if (--left === 0) resolve();
      };
      events.on('completed', ({ jobId }) => finish(jobId, null));
      events.on('failed', ({ jobId, failedReason }) => finish(jobId, `failed ${ATTEMPTS} times; last: ${failedReason}`));
    });
    if (events) await events.waitUntilReady();
    await queue.addBulk(
      [...ids].map(([jobId, index]) => ({
        name: 'block',
        data: { out: job.output.path, index, block: blockAt(plan, index).id, finish: !options.wait && job.instances !== undefined },
        opts: { jobId, attempts: ATTEMPTS, backoff: { type: 'exponential', delay: BACKOFF_MS }, removeOnComplete: true, removeOnFail: { age: 7 * 24 * 3600 } },
      })),
    );
    await finished;
  } finally {
    await events?.close();
    await queue.close();
  }
}

export interface QueueWorkerOptions {
  /** Lock of a block (a killed worker's block is picked up again after it). */
  lockSeconds: number;
  /** Exit when the queue holds no waiting, delayed or active block (instead of waiting for more). */
  untilEmpty: boolean;
  log: (line: string) => void;
}

/**
 * Processes blocks from the queue on `url`, one at a time, until SIGINT/SIGTERM (the current
 * block is finished first) or, with `untilEmpty`, until the queue is empty. Keeps one job's model
 * loaded at a time. Resolves with the number of blocks predicted.
 */
export async function runQueueWorker(url: string, options: QueueWorkerOptions): Promise<{ predicted: number; interrupted: boolean }> {
  await checkRedis(url);
  const connection = redisConnection(url);
  let current: { out: string; worker: BlockWorker } | null = null;
  let predicted = 0;
  let busy = false;
  const yieldOnly = { requested: false };
  const name = `${hostname()}:${process.pid}`;
  const lockDuration = options.lockSeconds * 1000;
  /** Predicts one queued block (loading its job's model and volumes when the job changes). */
  async function predictQueued(job: Job<BlockData>): Promise<string> {
    const { out, index, block } = job.data;
    if (current?.out !== out) {
      current?.worker.dispose();
      current = null;
      current = { out, worker: await BlockWorker.open(await readJob(out)) };
    }
    const t0 = performance.now();
    options.log(`${name}: block ${block} of ${out} started (attempt ${job.attemptsMade + 1})`);
    const status = await current.worker.run(index, yieldOnly);
    if (status === 'done') predicted++;
    options.log(`${name}: block ${block} of ${out} ${status} in ${((performance.now() - t0) / 1000).toFixed(1)} s (attempt ${job.attemptsMade + 1})`);
    if (job.data.finish) {
      const merge = await finishInstances(current.worker.job);
      if (merge) options.log(`${name}: every block of ${out} is done: ${merge.count} instance(s) -> ${current.worker.job.instances?.path}`);
    }
    return status;
  }
  const worker = new Worker<BlockData>(
    QUEUE_NAME,
    async (job) => {
      busy = true;
      try {
        return await predictQueued(job);
      } finally {
        busy = false;
      }
    },
    { connection, concurrency: 1, lockDuration, stalledInterval: Math.max(1000, lockDuration / 2), maxStalledCount: 2 },
  );
  worker.on('failed', (job, err) =>
    options.log(`${name}: block ${job?.data.block ?? '?'} failed (attempt ${job?.attemptsMade ?? '?'} of ${ATTEMPTS}): ${err.message}`),
  );
  worker.on('error', (err) => options.log(`${name}: queue error: ${err.message}`));
  const queue = new Queue<BlockData>(QUEUE_NAME, { connection });
  const stop = gracefulStop({ log: () => options.log(`${name}: stopping after the current block`) });
  try {
    await worker.waitUntilReady();
    options.log(`${name}: waiting for blocks on ${url} (queue ${QUEUE_NAME})`);
    for (;;) {
      await new Promise((r) => setTimeout(r, 500));
      if (stop.requested) break;
      if (options.untilEmpty && !worker.isRunning()) break;
      // (while a block runs the queue is not empty: no need to ask Redis)
      if (options.untilEmpty && !busy) {
        const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children');
        if (Object.values(counts).every((n) => n === 0)) break;
      }
    }
    await worker.close();
  } finally {
    stop.dispose();
    await queue.close();
    (current as { worker: BlockWorker } | null)?.worker.dispose();
  }
  return { predicted, interrupted: stop.requested };
}
