/**
 * Checkpoints: named tensors plus JSON state in a directory `<root>/step-<000123>/`:
 *   tensors.bin   the tensors' bytes, concatenated
 *   manifest.json { format, step, state, tensors: [{ name, dtype, shape, offset, bytes }] }
 * A checkpoint is written into a temp directory and renamed into place, so a crash never leaves a
 * half-written one; `latestCheckpoint` only sees complete ones.
 */
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { publishDirectory } from '@emseg/fs';
import { tf, type Tensor } from '@emseg/tf';

type DType = 'float32' | 'int32' | 'bool';

const FORMAT = 'emseg-checkpoint/1';

interface TensorEntry {
  name: string;
  dtype: DType;
  shape: number[];
  offset: number;
  bytes: number;
}

interface Manifest<S> {
  format: string;
  step: number;
  state: S;
  tensors: TensorEntry[];
}

export interface Checkpoint<S> {
  dir: string;
  step: number;
  state: S;
  /** Fresh tensors owned by the caller (dispose them, e.g. after assigning into variables). */
  tensors: Record<string, Tensor>;
}

export function checkpointDir(root: string, step: number): string {
  return join(root, `step-${String(step).padStart(9, '0')}`);
}

/** Writes a checkpoint atomically and keeps only the newest `keep` checkpoints under `root`. */
export async function saveCheckpoint<S>(root: string, step: number, tensors: Record<string, Tensor>, state: S, { keep = 3 } = {}): Promise<string> {
  const final = checkpointDir(root, step);
  await publishDirectory(
    final,
    async (tmp) => {
      const entries: TensorEntry[] = [];
      const chunks: Buffer[] = [];
      let offset = 0;
      for (const [name, t] of Object.entries(tensors)) {
        const data = await t.data();
        const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        entries.push({ name, dtype: t.dtype as DType, shape: t.shape, offset, bytes: buf.byteLength });
        chunks.push(buf);
        offset += buf.byteLength;
      }
      await writeFile(join(tmp, 'tensors.bin'), Buffer.concat(chunks));
      const manifest: Manifest<S> = { format: FORMAT, step, state, tensors: entries };
      await writeFile(join(tmp, 'manifest.json'), JSON.stringify(manifest));
    },
    { replace: true },
  );
  if (keep > 0) for (const old of listCheckpoints(root).slice(0, -keep)) rmSync(old.dir, { recursive: true, force: true });
  return final;
}

/** Complete checkpoints under `root`, oldest first. */
export function listCheckpoints(root: string): { dir: string; step: number }[] {
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((name) => /^step-(\d+)$/.exec(name))
    .filter((m): m is RegExpExecArray => m !== null && existsSync(join(root, m[0], 'manifest.json')))
    .map((m) => ({ dir: join(root, m[0]), step: Number(m[1]) }))
    .sort((a, b) => a.step - b.step);
}

export function latestCheckpoint(root: string): string | null {
  return listCheckpoints(root).at(-1)?.dir ?? null;
}

export function loadCheckpoint<S>(dir: string): Checkpoint<S> {
  const manifestPath = join(dir, 'manifest.json');
  let manifest: Manifest<S>;
  try {
    manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest<S>;
  } catch (err) {
    throw new Error(`cannot read checkpoint ${manifestPath}: ${(err as Error).message}`);
  }
  if (manifest.format !== FORMAT) throw new Error(`${manifestPath}: format "${manifest.format}", expected "${FORMAT}"`);
  const bin = readFileSync(join(dir, 'tensors.bin'));
  const tensors: Record<string, Tensor> = {};
  for (const e of manifest.tensors) {
    if (e.offset + e.bytes > bin.byteLength)
      throw new Error(`${dir}/tensors.bin is truncated (tensor ${e.name} needs bytes ${e.offset}..${e.offset + e.bytes}, file has ${bin.byteLength})`);
    const bytes = new Uint8Array(bin.buffer.slice(bin.byteOffset + e.offset, bin.byteOffset + e.offset + e.bytes));
    const values = e.dtype === 'float32' ? new Float32Array(bytes.buffer) : e.dtype === 'int32' ? new Int32Array(bytes.buffer) : bytes;
    tensors[e.name] = tf.tensor(values, e.shape, e.dtype);
  }
  return { dir, step: manifest.step, state: manifest.state, tensors };
}
