/**
 * Issue 15 part 1: Zarr I/O through zarrita. Reads stores written by zarr-python (fixtures/zarr,
 * made by make_zarr_fixtures.py: v2 Blosc, v3 zstd, an OME-Zarr 0.4 image with two scales),
 * writes arrays (v3 and v2, optionally as an OME-Zarr image) that zarrita reads back, and names the
 * path in every refusal.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as zarr from 'zarrita';
import FileSystemStore from '@zarrita/storage/fs';
import { describe, expect, it } from 'vitest';
import { DataError, createZarrVolume, openZarrVolume } from '@emseg/data';
import { tempDir } from './helpers.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/zarr/', import.meta.url));
const dir = tempDir('zarr-io');

/** The fixture generator's value: (31 z + 7 y + 3 x) mod `modulo`. */
const value = (z: number, y: number, x: number, modulo: number) => (31 * z + 7 * y + 3 * x) % modulo;

/** Expected C-order values of a region of a fixture. */
function region(start: number[], shape: number[], f: (z: number, y: number, x: number) => number): number[] {
  const out: number[] = [];
  for (let z = start[0]; z < start[0] + shape[0]; z++)
    for (let y = start[1]; y < start[1] + shape[1]; y++) for (let x = start[2]; x < start[2] + shape[2]; x++) out.push(f(z, y, x));
  return out;
}

describe('openZarrVolume reads zarr-python stores', () => {
  it('a v2 uint16 array with Blosc compression, a region across chunk edges', async () => {
    const vol = await openZarrVolume(join(FIXTURES, 'v2-uint16.zarr'));
    expect([vol.format, vol.dtype, vol.shape, vol.chunks]).toEqual([2, 'uint16', [3, 20, 24], [2, 8, 10]]);
    const data = await vol.read([1, 5, 7], [2, 9, 15]);
    expect(data).toBeInstanceOf(Uint16Array);
    expect(Array.from(data)).toEqual(region([1, 5, 7], [2, 9, 15], (z, y, x) => (value(z, y, x, 65536) * 97) % 65536));
  });

  it('a v3 float32 array (zstd)', async () => {
    const vol = await openZarrVolume(join(FIXTURES, 'v3-float32.zarr'));
    expect([vol.format, vol.dtype, vol.shape]).toEqual([3, 'float32', [2, 16, 18]]);
    const data = await vol.read([0, 0, 0], [2, 16, 18]);
    expect(Array.from(data)).toEqual(region([0, 0, 0], [2, 16, 18], (z, y, x) => Math.fround(value(z, y, x, 256) / 255)));
  });

  it('an OME-Zarr image: scale 0 by default, --scale picks a level; the size-1 channel axis is dropped', async () => {
    const path = join(FIXTURES, 'ome-v2.zarr');
    const full = await openZarrVolume(path);
    expect([full.path, full.shape, full.chunks, full.dtype]).toEqual([join(path, '0'), [4, 32, 32], [2, 16, 16], 'uint8']);
    expect(Array.from(await full.read([3, 30, 0], [1, 2, 32]))).toEqual(region([3, 30, 0], [1, 2, 32], (z, y, x) => value(z, y, x, 256)));
    const half = await openZarrVolume(path, { scale: 1 });
    expect(half.shape).toEqual([4, 16, 16]);
    expect(Array.from(await half.read([2, 3, 4], [1, 1, 3]))).toEqual([value(2, 6, 8, 256), value(2, 6, 10, 256), value(2, 6, 12, 256)]);
  });

  it('a 2D array inside a group, named by its dataset path', async () => {
    const vol = await openZarrVolume(join(FIXTURES, 'group-v3.zarr'), { dataset: 'raw' });
    expect([vol.shape, vol.dtype]).toEqual([[10, 12], 'uint8']);
    expect(Array.from(await vol.read([9, 10], [1, 2]))).toEqual([value(0, 9, 10, 256), value(0, 9, 11, 256)]);
  });
});

describe('openZarrVolume refuses, naming the path', () => {
  const refusal = async (path: string, options: Parameters<typeof openZarrVolume>[1], message: RegExp) => {
    const err = await openZarrVolume(path, options).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataError);
    expect((err as DataError).message).toMatch(message);
  };
  const group = join(FIXTURES, 'group-v3.zarr');

  it('a folder that is no Zarr node, a missing path, a file', async () => {
    await refusal(FIXTURES, {}, new RegExp(`^${FIXTURES}: is not a Zarr array or group; expected a Zarr array or group: a directory holding zarr.json`));
    await refusal(join(dir, 'missing.zarr'), {}, /missing\.zarr: does not exist; expected a Zarr array or group/);
    await refusal(join(FIXTURES, 'make_zarr_fixtures.py'), {}, /make_zarr_fixtures\.py: is a file, not a directory/);
  });

  it('a plain group, listing the arrays it holds', async () => {
    await refusal(
      group,
      {},
      new RegExp(
        `^${group}: is a Zarr group, not an array, and has no OME-Zarr multiscales metadata; expected an array: name one inside it with the dataset \\(it holds: four-d, int64, raw\\)`,
      ),
    );
  });

  it('an unsupported dtype, too many dimensions, a scale that does not exist or a scale of a plain array', async () => {
    await refusal(
      group,
      { dataset: 'int64' },
      new RegExp(`^${join(group, 'int64')}: has dtype int64; expected an array of uint8, uint16, float32 grey values`),
    );
    await refusal(
      group,
      { dataset: 'four-d' },
      new RegExp(`^${join(group, 'four-d')}: has 4 dimension\\(s\\) \\[2, 2, 4, 4\\]; expected 2 \\(y, x\\) or 3 \\(z, y, x\\)`),
    );
    await refusal(join(FIXTURES, 'ome-v2.zarr'), { scale: 2 }, /ome-v2\.zarr: has 2 OME-Zarr scale level\(s\) \(0, 1\); scale 2 does not exist/);
    await refusal(join(FIXTURES, 'v2-uint16.zarr'), { scale: 1 }, /v2-uint16\.zarr: is a plain Zarr array; scale 1 needs an OME-Zarr image/);
  });

  it('a region outside the array or of the wrong rank', async () => {
    const vol = await openZarrVolume(join(FIXTURES, 'v2-uint16.zarr'));
    await expect(vol.read([2, 0, 0], [2, 1, 1])).rejects.toThrow(
      /v2-uint16\.zarr: region start \[2, 0, 0\] shape \[2, 1, 1\] is outside the array's shape \[3, 20, 24\]/,
    );
    await expect(vol.read([0, 0], [1, 1])).rejects.toThrow(/v2-uint16\.zarr: region of 2 \/ 2 dimensions for an array of 3/);
  });
});

describe('createZarrVolume and chunk-aligned writes', () => {
  const ramp = (n: number, modulo: number) => Uint16Array.from({ length: n }, (_, i) => (i * 37) % modulo);

  it('a v3 uint16 array (shape not a multiple of the chunks) written in aligned regions reads back through plain zarrita', async () => {
    const path = join(dir, 'out-v3.zarr');
    const vol = await createZarrVolume(path, { shape: [3, 20, 30], chunks: [2, 8, 16], dtype: 'uint16' });
    expect([vol.format, vol.path, vol.shape, vol.chunks]).toEqual([3, path, [3, 20, 30], [2, 8, 16]]);
    const a = ramp(2 * 16 * 30, 65536);
    await vol.write([0, 0, 0], [2, 16, 30], a);
    const b = ramp(1 * 4 * 14, 5000);
    await vol.write([2, 16, 16], [1, 4, 14], b);
    const arr = await zarr.open(new FileSystemStore(path), { kind: 'array' });
    expect(arr.dtype).toBe('uint16');
    const all = await zarr.get(arr);
    expect(Array.from((await zarr.get(arr, [zarr.slice(0, 2), zarr.slice(0, 16), null])).data)).toEqual(Array.from(a));
    expect(Array.from((await zarr.get(arr, [2, zarr.slice(16, 20), zarr.slice(16, 30)])).data)).toEqual(Array.from(b));
    expect(Array.from((await zarr.get(arr, [2, zarr.slice(0, 16), null])).data).every((v) => v === 0)).toBe(true);
    expect(all.shape).toEqual([3, 20, 30]);
    // every file written atomically: no temporary left
    const hidden = (d: string): string[] =>
      readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? hidden(join(d, e.name)) : e.name.startsWith('.') ? [e.name] : []));
    expect(hidden(path)).toEqual([]);
  });

  it('an OME-Zarr (v3, 0.5) single-scale image that openZarrVolume opens as its array', async () => {
    const path = join(dir, 'out-ome.zarr');
    await createZarrVolume(path, { shape: [2, 8, 8], chunks: [1, 8, 8], dtype: 'uint8', ome: { name: 'membrane' } });
    const meta = JSON.parse(readFileSync(join(path, 'zarr.json'), 'utf8')) as {
      node_type: string;
      attributes: { ome: { version: string; multiscales: { name: string; axes: { name: string }[]; datasets: { path: string }[] }[] } };
    };
    expect(meta.node_type).toBe('group');
    const [image] = meta.attributes.ome.multiscales;
    expect([meta.attributes.ome.version, image.name, image.axes.map((a) => a.name), image.datasets.map((d) => d.path)]).toEqual([
      '0.5',
      'membrane',
      ['z', 'y', 'x'],
      ['0'],
    ]);
    const vol = await openZarrVolume(path);
    expect(vol.path).toBe(join(path, '0'));
    await vol.write([1, 0, 0], [1, 8, 8], new Uint8Array(64).fill(200));
    expect(Array.from(await vol.read([1, 7, 6], [1, 1, 2]))).toEqual([200, 200]);
  });

  it('a v2 array (and OME-Zarr 0.4 image) that zarr v2 readers open', async () => {
    const path = join(dir, 'out-v2.zarr');
    const vol = await createZarrVolume(path, { shape: [10, 12], chunks: [5, 6], dtype: 'uint8', format: 2, ome: {} });
    expect(existsSync(join(path, '.zgroup')) && existsSync(join(path, '0', '.zarray'))).toBe(true);
    expect((JSON.parse(readFileSync(join(path, '.zattrs'), 'utf8')) as { multiscales: { version: string }[] }).multiscales[0].version).toBe('0.4');
    await vol.write([5, 6], [5, 6], new Uint8Array(30).fill(9));
    const arr = await zarr.open.v2(new FileSystemStore(join(path, '0')), { kind: 'array' });
    expect(Array.from((await zarr.get(arr, [9, zarr.slice(10, 12)])).data)).toEqual([9, 9]);
    expect(vol.format).toBe(2);
  });

  it('reuses an identical existing array, refuses a different one and misaligned or mistyped writes', async () => {
    const path = join(dir, 'out-reuse.zarr');
    const options = { shape: [4, 16, 16], chunks: [2, 8, 8], dtype: 'uint8' as const };
    const first = await createZarrVolume(path, options);
    await first.write([0, 0, 0], [2, 8, 8], new Uint8Array(128).fill(5));
    const again = await createZarrVolume(path, options);
    expect(Array.from(await again.read([0, 0, 0], [1, 1, 1]))).toEqual([5]);
    await expect(createZarrVolume(path, { ...options, dtype: 'uint16' })).rejects.toThrow(
      new RegExp(
        `^${path}: already holds a Zarr v3 uint8 array \\[4, 16, 16\\] in chunks \\[2, 8, 8\\]; expected a v3 uint16 array \\[4, 16, 16\\] in chunks \\[2, 8, 8\\]: choose another output or remove it`,
      ),
    );
    await expect(first.write([0, 4, 0], [2, 8, 8], new Uint8Array(128))).rejects.toThrow(
      /out-reuse\.zarr: region start \[0, 4, 0\] shape \[2, 8, 8\] is not aligned to the chunks \[2, 8, 8\]/,
    );
    await expect(first.write([0, 0, 0], [2, 8, 8], new Uint16Array(128))).rejects.toThrow(/out-reuse\.zarr: write of a Uint16Array to a uint8 array/);
    await expect(createZarrVolume(join(dir, 'bad.zarr'), { ...options, dtype: 'float32' as 'uint8' })).rejects.toThrow(
      /bad\.zarr: output dtype "float32"; expected uint8, uint16 or uint32/,
    );
  });

  it('uint32 label arrays (v3 and v2): written, read back, opened only with labels', async () => {
    for (const format of [3, 2] as const) {
      const path = join(dir, `labels-v${format}.zarr`);
      const vol = await createZarrVolume(path, { shape: [2, 6, 5], chunks: [1, 4, 4], dtype: 'uint32', format });
      const ids = Uint32Array.from({ length: 60 }, (_, i) => i * 100_000_007);
      await vol.write([0, 0, 0], [2, 6, 5], ids);
      expect(Array.from(await vol.read([0, 0, 0], [2, 6, 5]))).toEqual(Array.from(ids));
      expect((await openZarrVolume(path, { labels: true })).dtype).toBe('uint32');
      await expect(openZarrVolume(path)).rejects.toThrow(/has dtype uint32; expected an array of uint8, uint16, float32 grey values/);
      await expect(vol.write([0, 0, 0], [1, 4, 4], new Uint16Array(16))).rejects.toThrow(/write of a Uint16Array to a uint32 array/);
    }
  });
});
