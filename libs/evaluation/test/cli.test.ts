import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cellMaskFromGrey, isbiScores, probabilityFromGrey, readGrey8 } from '@emseg/evaluation';
import { FIXTURES, loadFixture } from './helpers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI = join(ROOT, 'libs/evaluation/dist/cli.js');
const PRED = join(FIXTURES, 'urisc', 'pred');
const GT = join(FIXTURES, 'urisc', 'gt');
const tmp = mkdtempSync(join(tmpdir(), 'emseg-eval-cli-'));

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  // the CLI runs from the built dist/, as the Nx `score` target does
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-b', 'libs/evaluation'], { cwd: ROOT });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('score CLI', () => {
  it('prints the U-RISC folder score and writes the same numbers to JSON', () => {
    const out = join(tmp, 'nested', 'scores.json');
    const r = cli(['--pred', PRED, '--gt', GT, '--metrics', 'f1,vrand,vinfo,randerror,assd', '--json', out, '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const fixture = loadFixture<{ meanF1: number }>('urisc.json');
    expect(r.stdout).toMatch(/^image\s+F1\s+precision\s+recall\s+V_Rand\s+V_Info\s+Rand err\s+ASSD px\s+ASSD nm/);
    expect(r.stdout).toContain(`mean of 3`);
    expect(r.stdout).toContain(fixture.meanF1.toFixed(4));
    const json = JSON.parse(readFileSync(out, 'utf8')) as {
      protocol: string;
      summary: { f1: number; vRand: number; vInfo: number; assd: number; assdNm: number; images: number };
      images: { name: string; f1: number }[];
      isbiCurve: { threshold: number }[];
    };
    expect(json.protocol).toBe('urisc');
    expect(json.summary.images).toBe(3);
    expect(json.summary.f1).toBeCloseTo(fixture.meanF1, 15);
    expect(json.summary.assdNm).toBeCloseTo(json.summary.assd * 2.18, 12);
    expect(json.summary.vRand).toBeGreaterThan(0.2);
    expect(json.summary.vInfo).toBeGreaterThan(0); // the gapped predictions merge cells: low, but not the degenerate 0
    expect(json.isbiCurve).toHaveLength(11);
    // atomic write: no temp file left beside the output
    expect(readdirSync(join(tmp, 'nested'))).toEqual(['scores.json']);
  });

  it('ISBI scores of a folder are the per-threshold mean over images, best threshold taken', async () => {
    const out = join(tmp, 'isbi.json');
    expect(cli(['--pred', PRED, '--gt', GT, '--metrics', 'vrand', '--json', out, '--quiet']).status).toBe(0);
    const json = JSON.parse(readFileSync(out, 'utf8')) as { summary: { vRand: number } };
    const slices = [];
    for (const name of ['img01.png', 'img02.png', 'img03.png']) {
      const pred = await readGrey8(join(PRED, name));
      const gt = await readGrey8(join(GT, name === 'img02.png' ? 'img02.tiff' : name));
      slices.push({ cellProbability: probabilityFromGrey(pred), trueCells: cellMaskFromGrey(gt) });
    }
    expect(json.summary.vRand).toBeCloseTo(isbiScores(slices).vRand, 14);
  });

  it('scores a single pair under the pixel protocol', () => {
    const r = cli(['--pred', join(PRED, 'img01.png'), '--gt', join(GT, 'img01.png'), '--protocol', 'pixel', '--quiet']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/image\s+F1\s+precision\s+recall\s+IoU/);
    expect(r.stdout).toContain('img01.png');
  });

  it('bad input exits 1 with a message naming the file', () => {
    const bad = join(FIXTURES, 'urisc', 'bad', 'not-binary.png');
    const r = cli(['--pred', bad, '--gt', join(GT, 'img01.png'), '--quiet']);
    expect(r.status).toBe(1); // the only prediction is rejected: nothing was scorable
    expect(r.stderr).toContain(`warning: rejected, scored 0: ${bad}: not binarized`);
    expect(r.stderr).toMatch(/^error: nothing was scorable/m);
    const missing = cli(['--pred', join(tmp, 'nowhere'), '--gt', GT]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/prediction path .*nowhere does not exist/);
    const mixed = cli(['--pred', PRED, '--gt', join(GT, 'img01.png')]);
    expect(mixed.stderr).toMatch(/both be folders or both be files/);
  });

  it('usage errors exit 2 with help; --help documents the metrics', () => {
    const unknown = cli(['--pred', PRED, '--gt', GT, '--protocol', 'nope']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/Invalid values/);
    expect(cli(['--pred', PRED, '--gt', GT, '--metrics', 'f1,dice']).stderr).toMatch(/unknown metric "dice"/);
    const help = cli(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('f1, vrand, vinfo, randerror, assd');
  });

  it('definition command prints the criteria of each image', () => {
    const out = join(tmp, 'def.json');
    const r = cli(['definition', '--images', PRED, '--json', out]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/image\s+Brenner\/px\s+SMD2\/px\s+Variance\/px\s+Vollath\/px/);
    const json = JSON.parse(readFileSync(out, 'utf8')) as { images: { name: string; criteria: { brenner: number } }[] };
    expect(json.images.map((i) => i.name)).toEqual(['img01.png', 'img02.png', 'img03.png']);
    expect(json.images[0].criteria.brenner).toBeGreaterThan(0);
  });

  it('classes command: per-class IoU and Dice of class-map folders, pixels pooled, as scikit-learn on all pixels', async () => {
    // the fixture's 4-class case (scikit-learn), its maps cut into two files of 20 rows each
    const fx = loadFixture<{
      classes: Array<{
        name: string;
        width: number;
        height: number;
        true: number[];
        pred: number[];
        expected: { iou: number[]; dice: number[]; meanIoU: number };
      }>;
    }>('instances.json');
    const c = fx.classes.find((k) => k.name === '4-classes')!;
    const runs = (r: number[]) => r.flatMap((v, k) => (k % 2 === 0 ? Array<number>(r[k + 1]).fill(v) : []));
    const half = c.height / 2;
    for (const [dir, values] of [
      ['cls-pred', runs(c.pred)],
      ['cls-gt', runs(c.true)],
    ] as const) {
      mkdirSync(join(tmp, dir), { recursive: true });
      for (const k of [0, 1]) {
        const data = Uint8Array.from(values.slice(k * half * c.width, (k + 1) * half * c.width));
        await sharp(data, { raw: { width: c.width, height: half, channels: 1 } })
          .png()
          .toFile(join(tmp, dir, `part${k}.png`));
      }
    }
    const out = join(tmp, 'classes.json');
    const r = cli(['classes', '--pred', join(tmp, 'cls-pred'), '--gt', join(tmp, 'cls-gt'), '--json', out, '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^class\s+IoU\s+Dice\s+precision\s+recall/);
    expect(r.stdout).toContain(c.expected.meanIoU.toFixed(4));
    const json = JSON.parse(readFileSync(out, 'utf8')) as {
      classes: number[];
      images: unknown[];
      pooled: { perClass: { iou: number; dice: number }[]; meanIoU: number };
    };
    expect(json.classes).toEqual([0, 1, 2, 3]);
    expect(json.images).toHaveLength(2);
    json.pooled.perClass.forEach((k, i) => {
      expect(k.iou).toBeCloseTo(c.expected.iou[i], 12);
      expect(k.dice).toBeCloseTo(c.expected.dice[i], 12);
    });
    expect(json.pooled.meanIoU).toBeCloseTo(c.expected.meanIoU, 12);
    const bad = cli(['classes', '--pred', join(tmp, 'cls-pred'), '--gt', join(tmp, 'cls-gt'), '--classes', '0,1,x']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('--classes: "x" is not a class value');
  });
});
