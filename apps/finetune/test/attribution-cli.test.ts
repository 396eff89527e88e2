/**
 * Issue 14, `attribute` end to end through the built CLI with a real (tiny, briefly trained) model
 * and a real MLflow server: per-class sampling writes heat maps, tables and the S_k box plot and logs
 * the run linked to the model's run; --compare tabulates two entries (S_k in nm^2 scales with the
 * pixel size squared); bad flags exit 1 naming the flag.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LabeledImages } from '@emseg/data';
import { resnetEncoder } from '@emseg/models';
import { MlflowClient, Tracker, startMlflowServer, type MlflowServer, type Run } from '@emseg/tracking';
import { finetune } from '@emseg/segmentation';
import { Segmenter } from '@emseg/segmentation';
import { loadTrainingSamples } from '../src/tasks/urisc.js';
import { buildFinetune, runCli, taskFor, tempDir, tinyConfig, tinyUrisc } from './helpers.js';

const tmp = tempDir('attribution-cli');
let server: MlflowServer;
let client: MlflowClient;
let modelRun: string;
let modelDir: string;
let image: string;
let label: string;

async function runOf(experiment: string): Promise<Run> {
  const e = await client.getExperimentByName(experiment);
  const runs = e ? await client.searchRuns({ experimentIds: [e.experimentId] }) : [];
  expect(runs).toHaveLength(1);
  return runs[0];
}

const fast = ['--steps', '6', '--batch', '4', '--window', '64'];

const cli = (args: string[]) => runCli(['attribute', ...args]);

beforeAll(async () => {
  buildFinetune();
  server = await startMlflowServer({ storeDir: join(tmp.dir, 'mlflow') });
  client = new MlflowClient({ trackingUri: server.uri });
  // the fine-tuning's MLflow run, which the model records and the attribution run links to
  const run = await Tracker.start({ trackingUri: server.uri, experiment: 'models', runName: 'tiny-model', handleProcessEvents: false });
  modelRun = run.id;
  await run.end('FINISHED');
  const ds = await tinyUrisc(join(tmp.dir, 'data'), { count: { train: 2, val: 0, test: 1 } });
  const cfg = tinyConfig(['train.steps=24']);
  const samples = await loadTrainingSamples(await LabeledImages.open(ds.splits.train), cfg.patches.size, 0.5);
  const segmenter = Segmenter.create(
    resnetEncoder({ depth: 18, seed: 1 }),
    { mean: [0.5], std: [0.2] },
    { encoderSource: 'random', encoderRunId: null },
    { decoderChannels: cfg.model.decoderChannels, seed: 2 },
  );
  try {
    modelDir = (await finetune({ cfg, task: taskFor(cfg), segmenter, train: samples, validation: null, outDir: join(tmp.dir, 'run'), mlflowRunId: modelRun }))
      .modelDir;
  } finally {
    segmenter.dispose();
  }
  image = join(ds.splits.test.images, `${ds.splits.test.names[0]}.png`);
  label = join(ds.splits.test.labels, `${ds.splits.test.names[0]}.tiff`);
}, 300_000);

afterAll(async () => {
  await server?.stop();
  tmp.cleanup();
});

describe('attribute CLI', () => {
  it('samples true/false positives and false negatives, writes heat maps, tables and the box plot, logs the run', async () => {
    const out = join(tmp.dir, 'out-single');
    const r = await cli([
      '--model',
      join(tmp.dir, 'run'),
      '--image',
      image,
      '--label',
      label,
      '--per-class',
      '2',
      '--seed',
      '3',
      ...fast,
      '--tracking-uri',
      server.uri,
      '--experiment',
      'attr-e2e',
      '--out',
      out,
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/mean S_k per class/);
    const json = JSON.parse(readFileSync(join(out, 'attributions.json'), 'utf8'));
    const pixels = json.entries[0].pixels as Array<{ cls: string; heatmap: string; areas: Array<{ k: number; pixels: number; nm2: number }> }>;
    expect(pixels.length).toBeGreaterThan(0);
    for (const p of pixels) {
      expect(['tp', 'fp', 'fn']).toContain(p.cls);
      expect(existsSync(p.heatmap)).toBe(true);
      expect(p.areas.map((a) => a.k)).toEqual([0.01, 0.05]);
      for (const a of p.areas) expect(a.nm2).toBeCloseTo(a.pixels * 2.18 * 2.18, 6);
    }
    expect(readdirSync(join(out, 'heatmaps', 'test-000')).length).toBe(pixels.length);
    const csv = readFileSync(join(out, 'attributions.csv'), 'utf8');
    expect(csv.split('\n').filter((l) => l.startsWith('pixel,'))).toHaveLength(pixels.length);
    expect(csv).toMatch(/^class,test-000,tp,0\.01,/m);
    const png = readFileSync(join(out, 'sk-boxplot.png'));
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(readFileSync(join(out, 'sk-boxplot.svg'), 'utf8')).toMatch(/<svg/);

    const run = await runOf('attr-e2e');
    expect(run.info.status).toBe('FINISHED');
    expect(run.tags['emseg.model.runId']).toBe(modelRun);
    expect(run.tags['emseg.model.link']).toContain(modelRun);
    expect(run.tags['emseg.app']).toBe('attribution');
    const metrics = Object.fromEntries(run.metrics.map((m) => [m.key, m.value]));
    expect(metrics).toHaveProperty('completeness_error_max');
    expect(Object.keys(metrics).some((k) => /^sk_nm2_mean_(tp|fp|fn)_k0\.01$/.test(k))).toBe(true);
    const artifacts = (await client.listArtifacts(run.info.runId)).map((a) => a.path);
    for (const f of ['attributions.csv', 'attributions.json', 'sk-boxplot.png', 'heatmaps']) expect(artifacts).toContain(f);
  });

  it('--compare tabulates mean S_k of two entries; the same field at twice the pixel size is 4x the area', async () => {
    const out = join(tmp.dir, 'out-compare');
    const spec = join(tmp.dir, 'compare.json');
    const pixels = '20,30;90,100;64,64';
    writeFileSync(
      spec,
      JSON.stringify({
        entries: [
          { name: 'fine', model: join(tmp.dir, 'run'), image, pixels, pixelSize: 2.18 },
          { name: 'coarse', model: modelDir, image, pixels, pixelSize: 4.36 },
        ],
      }),
    );
    const r = await cli(['--compare', spec, ...fast, '--k', '0.01', '--tracking-uri', server.uri, '--experiment', 'attr-compare', '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/fine \(2\.18 nm\/px\)\s+coarse \(4\.36 nm\/px\)/);
    const table = JSON.parse(readFileSync(join(out, 'compare.json'), 'utf8')) as Array<{ name: string; summary: Array<{ meanNm2: number; n: number }> }>;
    expect(table.map((t) => t.name)).toEqual(['fine', 'coarse']);
    expect(table[0].summary[0].n).toBe(3);
    expect(table[1].summary[0].meanNm2 / table[0].summary[0].meanNm2).toBeCloseTo(4, 6);
    expect(existsSync(join(out, 'compare-boxplot.png'))).toBe(true);
    const run = await runOf('attr-compare');
    expect(run.tags['emseg.entry1.model.runId']).toBe(modelRun);
    const metrics = Object.fromEntries(run.metrics.map((m) => [m.key, m.value]));
    expect(metrics['coarse.sk_nm2_mean_chosen_k0.01'] / metrics['fine.sk_nm2_mean_chosen_k0.01']).toBeCloseTo(4, 4);
  });

  it('refuses bad input with one line naming the flag or file (exit 1)', async () => {
    const out = join(tmp.dir, 'out-bad');
    const cases: Array<[string[], RegExp]> = [
      [['--image', image, '--pixels', '1,1', '--window', '50'], /--window must be a positive multiple of 32/],
      [['--image', join(tmp.dir, 'missing.png'), '--pixels', '1,1'], /--image: .*missing\.png/],
      [['--image', image, '--pixels', '1;2'], /--pixels: "1" is not a pixel/],
      [['--image', image, '--pixels', '500,1', '--model', join(tmp.dir, 'run')], /--pixels: \(500, 1\) is outside the 128 x 128 image/],
      [['--image', image, '--pixels', '1,1', '--k', '2'], /--k: every threshold must be a number in \(0, 1\)/],
      [['--compare', join(tmp.dir, 'nope.json')], /--compare .*nope\.json: no such file/],
    ];
    for (const [args, message] of cases) {
      const r = await cli([...args, '--tracking-uri', server.uri, '--out', out]);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(message);
    }
  });
});
