/**
 * Issue 12: 3D EM volumes as multi-page TIFF stacks (one z-slice per page), read a page at a time
 * and written atomically; the single-image readers keep refusing stacks.
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { DataError, StackWriter, readImage, readStack, readStackInfo, readStackSlice, writeImage, writeStack, type GreyImage } from '@emseg/data';
import { pattern16, pattern8, tempDir } from './helpers.js';

const dir = tempDir('stack-io');

/** `depth` distinct slices of w x h (each page differs from its neighbours). */
function slices8(w: number, h: number, depth: number): GreyImage[] {
  return Array.from({ length: depth }, (_, z) => ({ width: w, height: h, bitDepth: 8 as const, data: pattern8(w, h).map((v) => (v + 41 * z) % 256) }));
}
function slices16(w: number, h: number, depth: number): GreyImage[] {
  return Array.from({ length: depth }, (_, z) => ({ width: w, height: h, bitDepth: 16 as const, data: pattern16(w, h).map((v) => (v + 9973 * z) % 65536) }));
}

const values = (image: GreyImage) => Array.from(image.data);

/** A minimal little-endian uncompressed grey TIFF with pages of the given sizes (all values 7). */
function handMadeTiff(pages: readonly { w: number; h: number; bits: 8 | 16 }[]): Buffer {
  const parts: Buffer[] = [];
  const header = Buffer.alloc(8);
  header.write('II', 0, 'latin1');
  header.writeUInt16LE(42, 2);
  parts.push(header);
  let offset = 8;
  let nextPointer = 4;
  const pointers: [number, number][] = [];
  for (const { w, h, bits } of pages) {
    const data = Buffer.alloc((w * h * bits) / 8, 7);
    const dataOffset = offset;
    parts.push(data, Buffer.alloc(data.length % 2));
    offset += data.length + (data.length % 2);
    const tags: [number, number, number][] = [
      [256, 3, w],
      [257, 3, h],
      [258, 3, bits],
      [259, 3, 1],
      [262, 3, 1],
      [273, 4, dataOffset],
      [277, 3, 1],
      [278, 3, h],
      [279, 4, data.length],
    ];
    const ifd = Buffer.alloc(2 + tags.length * 12 + 4);
    ifd.writeUInt16LE(tags.length, 0);
    tags.forEach(([tag, type, value], i) => {
      ifd.writeUInt16LE(tag, 2 + i * 12);
      ifd.writeUInt16LE(type, 4 + i * 12);
      ifd.writeUInt32LE(1, 6 + i * 12);
      if (type === 3) ifd.writeUInt16LE(value, 10 + i * 12);
      else ifd.writeUInt32LE(value, 10 + i * 12);
    });
    pointers.push([nextPointer, offset]);
    nextPointer = offset + 2 + tags.length * 12;
    parts.push(ifd);
    offset += ifd.length;
  }
  const tiff = Buffer.concat(parts);
  for (const [at, value] of pointers) tiff.writeUInt32LE(value, at);
  return tiff;
}

describe('writeStack / readStack round trips', () => {
  const cases: [string, GreyImage[]][] = [
    ['8-bit', slices8(37, 23, 5)],
    ['16-bit', slices16(41, 19, 4)],
  ];
  for (const [label, slices] of cases) {
    it(`${label}: every page reads back exactly, one page per slice`, async () => {
      const path = join(dir, `round-${label}.tif`);
      await writeStack(path, slices);
      const { width, height, bitDepth } = slices[0];
      expect(await readStackInfo(path)).toEqual({ path, format: 'tiff', width, height, depth: slices.length, bitDepth, channels: 1 });
      const meta = await sharp(path).metadata();
      expect([meta.pages, meta.width, meta.height, meta.depth]).toEqual([slices.length, width, height, bitDepth === 16 ? 'ushort' : 'uchar']);
      const stack = await readStack(path);
      expect([stack.width, stack.height, stack.depth, stack.bitDepth]).toEqual([width, height, slices.length, bitDepth]);
      stack.slices.forEach((slice, z) => {
        expect(slice.data).toBeInstanceOf(bitDepth === 16 ? Uint16Array : Uint8Array);
        expect(values(slice)).toEqual(values(slices[z]));
      });
    });
  }

  it('readStackSlice decodes one middle page exactly', async () => {
    const slices = slices16(33, 17, 7);
    const path = join(dir, 'middle.tif');
    await writeStack(path, slices);
    const middle = await readStackSlice(path, 3);
    expect([middle.width, middle.height, middle.bitDepth]).toEqual([33, 17, 16]);
    expect(values(middle)).toEqual(values(slices[3]));
    expect(values(await readStackSlice(path, 6))).toEqual(values(slices[6]));
  });

  it('keeps values when the bit depth option differs from the data; refuses values that do not fit', async () => {
    const path = join(dir, 'widened.tif');
    await writeStack(path, slices8(8, 6, 3), { bitDepth: 16 });
    const wide = await readStack(path);
    expect(wide.bitDepth).toBe(16);
    expect(values(wide.slices[2])).toEqual(values(slices8(8, 6, 3)[2]));
    const ids = [0, 1].map((z) => ({ width: 4, height: 2, bitDepth: 16 as const, data: Uint16Array.from([0, 1, 2, 3, 200, 255, z, 9]) }));
    await writeStack(join(dir, 'narrowed.tif'), ids, { bitDepth: 8 });
    expect(values(await readStackSlice(join(dir, 'narrowed.tif'), 1))).toEqual([0, 1, 2, 3, 200, 255, 1, 9]);
    const big = [{ width: 2, height: 1, bitDepth: 16 as const, data: Uint16Array.from([3, 300]) }];
    await expect(writeStack(join(dir, 'too-big.tif'), big, { bitDepth: 8 })).rejects.toThrow(/too-big\.tif: slice 0 has value 300; expected values 0\.\.255/);
  });

  it('a single-page file is a stack of depth 1 (TIFF and PNG alike)', async () => {
    const image: GreyImage = { width: 12, height: 9, bitDepth: 8, data: pattern8(12, 9) };
    for (const name of ['single.tif', 'single.png']) {
      const path = join(dir, name);
      await writeImage(path, image);
      expect(await readStackInfo(path)).toMatchObject({ depth: 1, width: 12, height: 9, bitDepth: 8, format: name.endsWith('png') ? 'png' : 'tiff' });
      expect(values(await readStackSlice(path, 0))).toEqual(values(image));
      await expect(readStackSlice(path, 1)).rejects.toThrow(`${path}: has no slice z=1: the stack has 1 slice; expected an integer z from 0 to 0`);
    }
    const written = join(dir, 'depth-one.tif');
    await writeStack(written, [image]);
    expect((await readStack(written)).depth).toBe(1);
    expect(values(await readImage(written))).toEqual(values(image)); // a one-page stack is also a plain image
  });

  it('the single-image readers still refuse a written stack, naming its pages', async () => {
    const path = join(dir, 'refused-by-readImage.tif');
    await writeStack(path, slices8(16, 16, 3));
    await expect(readImage(path)).rejects.toThrow(`${path}: is a multi-page TIFF stack (3 pages)`);
  });
});

describe('stack errors name the file and what was expected', () => {
  it('a missing file', async () => {
    const path = join(dir, 'missing.tif');
    await expect(readStackInfo(path)).rejects.toThrow(DataError);
    await expect(readStackSlice(path, 0)).rejects.toThrow(`${path}: does not exist; expected a multi-page TIFF stack`);
    await expect(readStack(path)).rejects.toThrow(`${path}: does not exist`);
  });

  it('z out of range names the depth', async () => {
    const path = join(dir, 'five.tif');
    await writeStack(path, slices8(10, 10, 5));
    for (const z of [5, -1, 1.5]) {
      await expect(readStackSlice(path, z)).rejects.toThrow(`${path}: has no slice z=${z}: the stack has 5 slices; expected an integer z from 0 to 4`);
    }
  });

  it('a corrupt file, and a page of another size or bit depth than page 0', async () => {
    const junk = join(dir, 'junk.tif');
    writeFileSync(junk, 'not a tiff');
    await expect(readStackInfo(junk)).rejects.toThrow(/junk\.tif: is not a readable image stack/);
    const mixed = join(dir, 'mixed.tif');
    writeFileSync(
      mixed,
      handMadeTiff([
        { w: 8, h: 6, bits: 8 },
        { w: 5, h: 4, bits: 8 },
        { w: 8, h: 6, bits: 16 },
      ]),
    );
    expect(await readStackInfo(mixed)).toMatchObject({ width: 8, height: 6, depth: 3, bitDepth: 8 });
    expect(values(await readStackSlice(mixed, 0))).toEqual(new Array(48).fill(7));
    await expect(readStackSlice(mixed, 1)).rejects.toThrow(`${mixed}: page 1 is 5x4 8-bit; expected every page 8x6 8-bit, like page 0`);
    await expect(readStackSlice(mixed, 2)).rejects.toThrow(`${mixed}: page 2 is 8x6 16-bit`);
    await expect(readStack(mixed)).rejects.toThrow(/page 1 is 5x4/);
  });

  it('refuses bad slices or paths, writing nothing', async () => {
    const sub = join(dir, 'refused');
    await expect(writeStack(join(sub, 'a.png'), slices8(4, 4, 2))).rejects.toThrow(
      /a\.png: cannot write a stack with extension "\.png"; expected a path ending in \.tif or \.tiff/,
    );
    await expect(writeStack(join(sub, 'b.tif'), [])).rejects.toThrow(/b\.tif: no slices to write/);
    await expect(writeStack(join(sub, 'c.tif'), [...slices8(4, 4, 2), ...slices8(4, 5, 1)])).rejects.toThrow(
      /c\.tif: slice 2 is 4x5; expected every slice 4x4/,
    );
    await expect(writeStack(join(sub, 'd.tif'), [...slices8(4, 4, 1), ...slices16(4, 4, 1)])).rejects.toThrow(/d\.tif: slice 1 is 16-bit, slice 0 8-bit/);
    // libvips' largest image is 100,000,000 rows; beyond it, it would silently write one page.
    const tall = new Uint8Array(50_000_001);
    const tallSlice: GreyImage = { width: 1, height: tall.length, bitDepth: 8, data: tall };
    await expect(writeStack(join(sub, 'e.tif'), [tallSlice, tallSlice])).rejects.toThrow(
      /e\.tif: a stack of 2 slices of height 50000001 is 100000002 rows tall/,
    );
    expect(() => readdirSync(sub)).toThrow(/ENOENT/);
  });
});

describe('atomic writes', () => {
  it('leave no temporary file next to the stack, also when it is replaced', async () => {
    const sub = join(dir, 'clean');
    await writeStack(join(sub, 'a.tif'), slices8(9, 7, 3));
    await writeStack(join(sub, 'a.tif'), slices16(9, 7, 2));
    expect(readdirSync(sub)).toEqual(['a.tif']);
    const back = await readStack(join(sub, 'a.tif'));
    expect([back.depth, back.bitDepth]).toEqual([2, 16]);
  });
});

describe('StackWriter (slices appended one at a time)', () => {
  it('writes what writeStack writes, and leaves only the stack behind', async () => {
    const sub = join(dir, 'streamed');
    for (const [label, slices] of [
      ['8', slices8(21, 13, 6)],
      ['16', slices16(21, 13, 5)],
    ] as const) {
      const path = join(sub, `s${label}.tif`);
      const writer = await StackWriter.open(path, { width: 21, height: 13, bitDepth: slices[0].bitDepth });
      for (const slice of slices) await writer.append(slice);
      expect(writer.depth).toBe(slices.length);
      expect(existsSync(path)).toBe(false); // nothing appears at the path before close()
      expect(readdirSync(sub).filter((n) => n.startsWith('.'))).toHaveLength(1); // the hidden spool
      const info = await writer.close();
      expect(info).toMatchObject({ depth: slices.length, width: 21, height: 13, bitDepth: slices[0].bitDepth });
      const back = await readStack(path);
      back.slices.forEach((slice, z) => expect(values(slice)).toEqual(values(slices[z])));
      await expect(writer.append(slices[0])).rejects.toThrow(/already closed/);
    }
    expect(readdirSync(sub).sort()).toEqual(['s16.tif', 's8.tif']);
  });

  it('one slice, no slices, a wrong slice and abort', async () => {
    const sub = join(dir, 'streamed-edge');
    const one = await StackWriter.open(join(sub, 'one.tif'), { width: 5, height: 4, bitDepth: 16 });
    await one.append(slices8(5, 4, 1)[0]); // values kept at 16 bits
    expect(await one.close()).toMatchObject({ depth: 1, bitDepth: 16 });
    expect(values(await readStackSlice(join(sub, 'one.tif'), 0))).toEqual(values(slices8(5, 4, 1)[0]));

    const none = await StackWriter.open(join(sub, 'none.tif'), { width: 5, height: 4, bitDepth: 8 });
    await expect(none.close()).rejects.toThrow(/none\.tif: no slices were appended/);

    const wrong = await StackWriter.open(join(sub, 'wrong.tif'), { width: 5, height: 4, bitDepth: 8 });
    await wrong.append(slices8(5, 4, 1)[0]);
    await expect(wrong.append(slices8(4, 4, 1)[0])).rejects.toThrow(/wrong\.tif: slice 1 is 4x4; expected every slice 5x4/);
    await wrong.abort();
    expect(readdirSync(sub)).toEqual(['one.tif']);
  });
});
