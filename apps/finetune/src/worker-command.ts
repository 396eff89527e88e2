/**
 * The `worker` command: predicts blocks of a block prediction job (see predict-blocks.ts).
 *
 * - `worker --job <out>` is a process of `predict --workers N`'s local pool: it loads the job's
 *   model and volumes once, then predicts each block index its parent sends over IPC and answers
 *   with the outcome. A first SIGINT / SIGTERM lets the current block finish (the parent stops
 *   sending); a second exits at once (the block has no done marker, so a rerun redoes it).
 * - `worker --queue redis://HOST:PORT` takes blocks from the BullMQ queue that `predict --queue`
 *   fills (block-queue.ts), until stopped or, with `--until-empty`, until the queue is empty.
 */
import { once } from 'node:events';
import { resolve } from 'node:path';
import { EXIT } from '@emseg/config';
import { gracefulStop } from '@emseg/training';
import { BlockWorker, readJob } from './predict-blocks.js';

export interface WorkerArgs {
  job?: string;
  queue?: string;
  lockSeconds: number;
  untilEmpty: boolean;
}

export async function worker(args: WorkerArgs): Promise<number> {
  if (args.queue) {
    if (args.job) throw new Error('give --job (a local pool process) or --queue (a queue worker), not both');
    const { runQueueWorker } = await import('./block-queue.js');
    const r = await runQueueWorker(args.queue, {
      lockSeconds: args.lockSeconds,
      untilEmpty: args.untilEmpty,
      log: (line) => process.stderr.write(`${line}\n`),
    });
    process.stdout.write(`${r.predicted} block(s) predicted\n`);
    return r.interrupted ? EXIT.interrupted : EXIT.ok;
  }
  if (!args.job)
    throw new Error('name the work: --queue redis://HOST:PORT (blocks enqueued by `predict --queue`) or --job <out> (started by `predict --workers N`)');
  const send = process.send?.bind(process);
  if (!send) throw new Error('worker --job runs as a process of `predict <volume.zarr> --workers N`, which starts it (it reads block indices over IPC)');
  const job = await readJob(resolve(args.job));
  const blocks = await BlockWorker.open(job);
  const stop = gracefulStop({ log: () => undefined });
  let work = Promise.resolve();
  process.on('message', (m: { index: number }) => {
    work = work.then(async () => {
      try {
        send({ index: m.index, status: await blocks.run(m.index) });
      } catch (err) {
        send({ index: m.index, status: 'failed', message: (err as Error).message });
      }
    });
  });
  send({ status: 'ready' });
  await once(process, 'disconnect');
  await work;
  blocks.dispose();
  stop.dispose();
  return stop.requested ? EXIT.interrupted : EXIT.ok;
}
