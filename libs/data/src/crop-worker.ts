/**
 * Worker-thread entry for UnlabeledCrops streaming: decodes a crop and augments its views off the
 * main thread, so loading overlaps with a training step (which blocks the main thread: tfjs-node
 * runs ops synchronously). Never imports TensorFlow (it cannot load in a second thread).
 */
import { parentPort } from 'node:worker_threads';
import { augmentedViews } from './augment.js';
import { DataError } from './errors.js';
import { readImage } from './image-io.js';
import type { CropJob, CropJobResult } from './crop-pool.js';

if (parentPort === null) throw new Error('crop-worker.js must run as a worker thread');
const port = parentPort;

port.on('message', (job: CropJob) => {
  readImage(job.path)
    .then((image) => {
      const views = augmentedViews(image, job.seeds, job.spec, job.size);
      const reply: CropJobResult = { id: job.id, views };
      port.postMessage(
        reply,
        views.map((v) => v.buffer as ArrayBuffer),
      );
    })
    .catch((err: unknown) => {
      const reply: CropJobResult = {
        id: job.id,
        error: { message: (err as Error).message, path: err instanceof DataError ? err.path : null },
      };
      port.postMessage(reply);
    });
});
