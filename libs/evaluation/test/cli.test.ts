import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
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
});
