/**
 * Issue 10: one prediction that fails the U-RISC submission rules no longer aborts a folder. It
 * scores 0, is flagged with its reason in the table and JSON, counts as 0 in the mean, and the
 * CLI warns and exits 0; only when every prediction is rejected does it exit 1. `finetune score`
 * follows the same rule (apps/finetune/test/score-errors.test.ts).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_CODES_HELP } from '@emseg/config';
import { rejectionReport, uriscFolderScore } from '@emseg/evaluation';
import { FIXTURES } from './helpers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI = join(ROOT, 'libs/evaluation/dist/cli.js');
const tmp = mkdtempSync(join(tmpdir(), 'emseg-eval-rejected-'));
const fixture = (f: string) => join(FIXTURES, 'urisc', f);

/** A folder of copies: `{ name in folder: fixture path }`. */
function folder(name: string, files: Record<string, string>): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  for (const [to, from] of Object.entries(files)) copyFileSync(fixture(from), join(dir, to));
  return dir;
}

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

let gt: string;
let mixed: string;
let rejected: string;

beforeAll(() => {
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-b', 'libs/evaluation'], { cwd: ROOT });
  // all 56 x 48: one ground truth for both names, a good prediction and two the rules reject
  gt = folder('gt', { 'a.png': 'gt/img01.png', 'b.png': 'gt/img01.png' });
  mixed = folder('mixed', { 'a.png': 'pred/img01.png', 'b.png': 'bad/not-binary.png' });
  rejected = folder('rejected', { 'a.png': 'bad/low-ratio.png', 'b.png': 'bad/not-binary.png' });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('U-RISC folder score with rejected predictions', () => {
  it('uriscFolderScore scores a rejected prediction 0 with its reason and counts it in the mean', async () => {
    const result = await uriscFolderScore(mixed, gt);
    const [good, bad] = result.images;
    expect(good.rejected).toBeNull();
    expect(good.f1).toBeGreaterThan(0);
    expect([bad.f1, bad.precision, bad.recall]).toEqual([0, 0, 0]);
    expect(bad.rejected).toMatch(new RegExp(`^${join(mixed, 'b.png')}: not binarized`));
    expect(result.rejected).toBe(1);
    expect(result.meanF1).toBe(good.f1 / 2);
    expect(rejectionReport(result.images)).toEqual({ warnings: [`warning: rejected, scored 0: ${bad.rejected}`], error: null });
    expect(rejectionReport((await uriscFolderScore(rejected, gt)).images).error).toMatch(/^nothing was scorable: all 2 prediction\(s\) were rejected/);
  });

  it('the CLI scores the rest of the folder, flags the rejected one in table and JSON, warns, exits 0', async () => {
    const json = join(tmp, 'mixed.json');
    const r = cli(['--pred', mixed, '--gt', gt, '--metrics', 'f1,vrand', '--json', json, '--quiet']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^warning: rejected, scored 0: ${join(mixed, 'b.png')}: not binarized`, 'm'));
    expect(r.stdout).toMatch(/^b\.png\s+0\.0000\s+0\.0000\s+0\.0000\s+\S+\s+REJECTED$/m);
    expect(r.stdout).toMatch(/^mean of 2\s.*1 rejected$/m);
    expect(r.stdout).toContain(`rejected (F1 0): ${join(mixed, 'b.png')}: not binarized`);
    const out = JSON.parse(readFileSync(json, 'utf8')) as {
      summary: { f1: number; rejected: number };
      images: { f1: number; vRand: number; rejected: string | null }[];
    };
    expect(out.summary.rejected).toBe(1);
    expect(out.summary.f1).toBe(out.images[0].f1 / 2);
    expect(out.images[0].rejected).toBeNull();
    expect(out.images[1].rejected).toMatch(/not binarized/);
    expect(out.images[1].vRand).toBeGreaterThan(0); // the other metrics still score it
  });

  it('the CLI exits 1 when every prediction is rejected, saying nothing was scorable', () => {
    const r = cli(['--pred', rejected, '--gt', gt, '--quiet']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`warning: rejected, scored 0: ${join(rejected, 'a.png')}: background/membrane ratio`);
    expect(r.stderr).toMatch(/^error: nothing was scorable: all 2 prediction\(s\) were rejected/m);
  });

  it('--help states the exit codes', () => {
    const help = cli(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain(EXIT_CODES_HELP);
  });
});
