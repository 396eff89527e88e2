import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { cutRegion, readImage, readImageInfo, writeImage, type GreyImage } from '@emseg/data';
import { pattern16, pattern8, tempDir } from './helpers.js';

const dir = tempDir('io');

describe('image round-trips', () => {
  const cases: [string, GreyImage][] = [
    ['8-bit PNG', { width: 37, height: 23, bitDepth: 8, data: pattern8(37, 23) }],
    ['16-bit PNG', { width: 37, height: 23, bitDepth: 16, data: pattern16(37, 23) }],
    ['8-bit TIFF', { width: 41, height: 19, bitDepth: 8, data: pattern8(41, 19) }],
    ['16-bit TIFF', { width: 41, height: 19, bitDepth: 16, data: pattern16(41, 19) }],
  ];
  for (const [label, image] of cases) {
    it(`${label}: what is written is read back exactly, with its bit depth`, async () => {
      const path = join(dir, `${label.replace(/\W/g, '_')}.${label.endsWith('PNG') ? 'png' : 'tif'}`);
      await writeImage(path, image);
      const back = await readImage(path);
      expect(back.bitDepth).toBe(image.bitDepth);
      expect([back.width, back.height]).toEqual([image.width, image.height]);
      expect(back.data).toBeInstanceOf(image.bitDepth === 16 ? Uint16Array : Uint8Array);
      expect(Array.from(back.data)).toEqual(Array.from(image.data));
      const info = await readImageInfo(path);
      expect(info).toMatchObject({ width: image.width, height: image.height, bitDepth: image.bitDepth, channels: 1 });
      expect(info.format).toBe(label.endsWith('PNG') ? 'png' : 'tiff');
    });
  }

  it('leaves no temporary files next to what it wrote', async () => {
    const sub = join(dir, 'clean');
    await writeImage(join(sub, 'a.png'), { width: 8, height: 8, bitDepth: 8, data: pattern8(8, 8) });
    await writeImage(join(sub, 'a.png'), { width: 8, height: 8, bitDepth: 8, data: pattern8(8, 8).reverse() });
    expect(readdirSync(sub)).toEqual(['a.png']);
    expect(Array.from((await readImage(join(sub, 'a.png'))).data)).toEqual(Array.from(pattern8(8, 8).reverse()));
  });

  it('refuses an unwritable format or inconsistent data, writing nothing', async () => {
    const sub = join(dir, 'refused');
    await expect(writeImage(join(sub, 'a.jpg'), { width: 2, height: 2, bitDepth: 8, data: new Uint8Array(4) })).rejects.toThrow(
      /a\.jpg.*\.png, \.tif or \.tiff/,
    );
    await expect(writeImage(join(sub, 'b.png'), { width: 3, height: 2, bitDepth: 8, data: new Uint8Array(4) })).rejects.toThrow(/b\.png.*4 values for 3x2/);
    expect(() => readdirSync(sub)).toThrow(/ENOENT/);
  });
});

describe('colour and JPEG inputs become one grey channel', () => {
  it('reads grey-valued RGB and RGBA PNGs as the same grey values', async () => {
    const grey = pattern8(16, 9);
    const rgb = new Uint8Array(16 * 9 * 3);
    const rgba = new Uint8Array(16 * 9 * 4);
    grey.forEach((v, i) => {
      rgb.set([v, v, v], 3 * i);
      rgba.set([v, v, v, 255 - v], 4 * i);
    });
    await sharp(rgb, { raw: { width: 16, height: 9, channels: 3 } })
      .png()
      .toFile(join(dir, 'rgb.png'));
    await sharp(rgba, { raw: { width: 16, height: 9, channels: 4 } })
      .png()
      .toFile(join(dir, 'rgba.png'));
    for (const name of ['rgb.png', 'rgba.png']) {
      const img = await readImage(join(dir, name));
      expect(img.bitDepth).toBe(8);
      expect(Math.max(...Array.from(img.data, (v, i) => Math.abs(v - grey[i])))).toBeLessThanOrEqual(1);
    }
    expect((await readImageInfo(join(dir, 'rgba.png'))).channels).toBe(4);
  });

  it('weights colour channels as luminance (green brighter than blue)', async () => {
    const px = new Uint8Array([0, 255, 0, 0, 0, 255]);
    await sharp(px, { raw: { width: 2, height: 1, channels: 3 } })
      .png()
      .toFile(join(dir, 'gb.png'));
    const img = await readImage(join(dir, 'gb.png'));
    expect(img.data[0]).toBeGreaterThan(img.data[1] + 100);
  });

  it('reads 16-bit RGB as 16-bit grey', async () => {
    const rgb = Uint16Array.from({ length: 4 * 3 * 3 }, (_, i) => Math.floor(i / 3) * 5000);
    await sharp(rgb, { raw: { width: 4, height: 3, channels: 3 } })
      .toColourspace('rgb16')
      .png()
      .toFile(join(dir, 'rgb16.png'));
    const img = await readImage(join(dir, 'rgb16.png'));
    expect(img.bitDepth).toBe(16);
    expect(img.data[11]).toBeGreaterThan(50000);
    expect(img.data[0]).toBeLessThan(1000);
  });

  it('decodes JPEG (lossy, so within a few grey levels)', async () => {
    const smooth = Uint8Array.from({ length: 32 * 32 }, (_, i) => 60 + (i % 32) * 4);
    await sharp(smooth, { raw: { width: 32, height: 32, channels: 1 } })
      .jpeg({ quality: 95 })
      .toFile(join(dir, 'g.jpg'));
    const img = await readImage(join(dir, 'g.jpg'));
    expect((await readImageInfo(join(dir, 'g.jpg'))).format).toBe('jpeg');
    expect(Math.max(...Array.from(img.data, (v, i) => Math.abs(v - smooth[i])))).toBeLessThanOrEqual(6);
  });
});

describe('region reads', () => {
  it('returns exactly the pixels of that rectangle, for PNG and tiled TIFF', async () => {
    const width = 300;
    const height = 200;
    const data = pattern16(width, height);
    await writeImage(join(dir, 'big.png'), { width, height, bitDepth: 16, data });
    await sharp(data, { raw: { width, height, channels: 1 } })
      .toColourspace('grey16')
      .tiff({ tile: true, tileWidth: 64, tileHeight: 64, compression: 'lzw' })
      .toFile(join(dir, 'tiled.tif'));
    const rect = { x: 70, y: 130, width: 100, height: 50 };
    for (const name of ['big.png', 'tiled.tif']) {
      const region = await readImage(join(dir, name), { region: rect });
      expect([region.width, region.height, region.bitDepth]).toEqual([100, 50, 16]);
      expect(Array.from(region.data)).toEqual(Array.from(cutRegion(data, width, height, rect)));
    }
  });

  it('rejects a region outside the image, naming the file and sizes', async () => {
    await expect(readImage(join(dir, 'big.png'), { region: { x: 250, y: 0, width: 100, height: 10 } })).rejects.toThrow(
      /big\.png: region x=250 y=0 100x10 is outside the 300x200 image/,
    );
  });
});

describe('corrupt files', () => {
  it('names the file and what was expected for a truncated PNG', async () => {
    const path = join(dir, 'whole.png');
    await writeImage(path, { width: 64, height: 64, bitDepth: 8, data: pattern8(64, 64) });
    const { readFileSync } = await import('node:fs');
    const bytes = readFileSync(path);
    writeFileSync(join(dir, 'cut.png'), bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    await expect(readImage(join(dir, 'cut.png'))).rejects.toThrow(/cut\.png: is not a readable image .*expected a complete, uncorrupted PNG, TIFF or JPEG/);
  });
});
