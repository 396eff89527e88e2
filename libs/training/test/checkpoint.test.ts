import { mkdtempSync, readdirSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tf } from '@emseg/tf';
import { latestCheckpoint, listCheckpoints, loadCheckpoint, saveCheckpoint } from '@emseg/training';

describe('checkpoints', () => {
  it('round-trips tensors of every dtype and the JSON state', async () => {
    const root = mkdtempSync(join(tmpdir(), 'emseg-ckpt-'));
    const tensors = {
      a: tf.tensor2d([
        [1.5, -2],
        [3, 4e-9],
      ]),
      b: tf.tensor1d([7, -8], 'int32'),
      c: tf.tensor1d([true, false], 'bool'),
      s: tf.scalar(2),
    };
    await saveCheckpoint(root, 12, tensors, { queuePtr: 5, order: [3, 1, 2] });
    const ck = loadCheckpoint<{ queuePtr: number; order: number[] }>(latestCheckpoint(root)!);
    expect(ck.step).toBe(12);
    expect(ck.state).toEqual({ queuePtr: 5, order: [3, 1, 2] });
    for (const [k, t] of Object.entries(tensors)) {
      expect(ck.tensors[k].dtype).toBe(t.dtype);
      expect(ck.tensors[k].shape).toEqual(t.shape);
      expect(Array.from(ck.tensors[k].dataSync())).toEqual(Array.from(t.dataSync()));
    }
    tf.dispose([...Object.values(tensors), ...Object.values(ck.tensors)]);
  });

  it('keeps the newest N, ignores unfinished temp directories, and reports truncation', async () => {
    const root = mkdtempSync(join(tmpdir(), 'emseg-ckpt-'));
    const t = tf.ones([100]);
    for (const step of [1, 2, 3, 4]) await saveCheckpoint(root, step, { t }, {}, { keep: 2 });
    expect(listCheckpoints(root).map((c) => c.step)).toEqual([3, 4]);
    expect(readdirSync(root).some((n) => n.includes('.tmp'))).toBe(false);
    truncateSync(join(latestCheckpoint(root)!, 'tensors.bin'), 10);
    expect(() => loadCheckpoint(latestCheckpoint(root)!)).toThrow(/tensors\.bin is truncated \(tensor t/);
    expect(() => loadCheckpoint(join(root, 'nope'))).toThrow(/cannot read checkpoint .*nope.*manifest\.json/);
    t.dispose();
  });
});
