/**
 * A pool of worker threads that decode and augment crops (see crop-worker.ts). Results are the
 * same as in-process augmentation: every job carries its own seeds.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { AugmentationSpec } from './augment.js';
import { DataError } from './errors.js';

/** One crop to load: decode `path`, then one augmented view per seed. */
export interface CropJob {
  readonly id: number;
  readonly path: string;
  readonly seeds: readonly number[];
  readonly spec: AugmentationSpec;
  readonly size: number;
}

export interface CropJobResult {
  readonly id: number;
  readonly views?: Float32Array[];
  readonly error?: { readonly message: string; readonly path: string | null };
}

/**
 * The compiled worker script. From `dist/` it sits next to this module; when this module runs
 * from TypeScript sources (tests), the built copy in `../dist/` is used.
 */
function workerScript(): URL {
  const sibling = new URL('./crop-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(sibling))) return sibling;
  const built = new URL('../dist/crop-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(built))) return built;
  throw new Error(`the crop worker script ${fileURLToPath(sibling)} is missing; build the library first (npx tsc -b libs/data)`);
}

interface Pending {
  resolve(views: Float32Array[]): void;
  reject(err: Error): void;
}

export class CropWorkerPool {
  private readonly workers: Worker[];
  private readonly load: number[];
  private readonly pending = new Map<number, Pending & { worker: number }>();
  private nextId = 0;
  private failure: Error | null = null;

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`workers must be a positive integer, got ${size}`);
    const script = workerScript();
    this.workers = Array.from({ length: size }, (_, w) => {
      const worker = new Worker(script);
      worker.unref();
      worker.on('message', (result: CropJobResult) => this.settle(result));
      worker.on('error', (err) => this.fail(err));
      worker.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`crop worker ${w} exited with code ${code}`));
      });
      return worker;
    });
    this.load = new Array<number>(size).fill(0);
  }

  /** Decodes and augments one crop on the least busy worker. */
  run(job: Omit<CropJob, 'id'>): Promise<Float32Array[]> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const w = this.load.indexOf(Math.min(...this.load));
    this.load[w]++;
    return new Promise<Float32Array[]>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker: w });
      this.workers[w].postMessage({ ...job, id } satisfies CropJob);
    });
  }

  /** Stops all workers; jobs still running are rejected. */
  async close(): Promise<void> {
    this.fail(new Error('crop worker pool closed'));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private settle(result: CropJobResult): void {
    const job = this.pending.get(result.id);
    if (job === undefined) return;
    this.pending.delete(result.id);
    this.load[job.worker]--;
    if (result.error) {
      const { message, path } = result.error;
      const err = path === null ? new Error(message) : DataError.withMessage(path, message);
      job.reject(err);
    } else {
      job.resolve(result.views as Float32Array[]);
    }
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const job of this.pending.values()) job.reject(err);
    this.pending.clear();
  }
}
