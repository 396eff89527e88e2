/**
 * Issue 12, end to end through the built CLI against a real MLflow server: `segment` trains on a
 * generic labelled folder (synthetic mitochondria, white masks), validates and selects by IoU,
 * predicts the test split as masks and scores them, and logs it all; `predict` on the saved model
 * writes masks (foreground 255) by default, which score as the run's test did; with an
 * `instances` section the same run validates and selects by PQ and writes scored instance labels.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSyntheticMito, generateSyntheticMitoStack, LabeledImages, readImage, readStack } from '@emseg/data';
import { classScores, instanceScores } from '@emseg/evaluation';
import { MlflowClient, startMlflowServer, type MlflowServer, type Run } from '@emseg/tracking';
import { scoreMasks } from '../src/tasks/segment.js';
import { DEFAULT_SEGMENT_CONFIG } from '../src/workspace.js';
import { buildFinetune, runCli, tempDir, tinyUrisc, type CliResult } from './helpers.js';

const tmp = tempDir('segment-cli');
let server: MlflowServer;
let client: MlflowClient;
let dataRoot: string;

const cli = (args: string[]) => runCli(args, { env: { EMSEG_FINETUNE_RUNS: join(tmp.dir, 'runs') } });

/** `segment` with `config` on `data` into `out`, tracked in the test server's experiment segment-e2e. */
const segment = (config: string, data: string, out: string, extra: string[] = []) =>
  cli([
    'segment',
    '--config',
    join(tmp.dir, config),
    '--data',
    data,
    '--tracking-uri',
    server.uri,
    '--experiment',
    'segment-e2e',
    '--out',
    join(tmp.dir, out),
    ...extra,
  ]);

beforeAll(async () => {
  buildFinetune();
  server = await startMlflowServer({ storeDir: join(tmp.dir, 'mlflow') });
  client = new MlflowClient({ trackingUri: server.uri });
  dataRoot = join(tmp.dir, 'mito');
  await generateSyntheticMito({ dir: dataRoot, seed: 3, size: 128, count: { train: 3, val: 1, test: 2 } });
  writeFileSync(
    join(tmp.dir, 'tiny.json'),
    JSON.stringify({
      extends: DEFAULT_SEGMENT_CONFIG,
      model: { encoder: 'random', decoderChannels: [32, 16, 16, 8, 8] },
      patches: { size: 64, stride: 64, perEpoch: 8, augmentation: 'none' },
      optimizer: { lr: 0.003 },
      train: { batchSize: 4, steps: 30, checkpointEvery: 15, logEvery: 1 },
      validation: { every: 15, overlays: 1, overlaySize: 96 },
      inference: { tileSize: 128, overlap: 0 },
    }),
  );
  writeFileSync(
    join(tmp.dir, 'instances.json'),
    JSON.stringify({ extends: join(tmp.dir, 'tiny.json'), instances: { method: 'watershed', connectivity: 4, minSize: 8, minDistance: 3 } }),
  );
});

afterAll(async () => {
  await server?.stop();
  tmp.cleanup();
});

describe('finetune segment', () => {
  let result: CliResult;
  let run: Run;

  beforeAll(async () => {
    result = await segment('tiny.json', dataRoot, 'run', ['--run-name', 'seg']);
    const experiment = await client.getExperimentByName('segment-e2e');
    run = (experiment ? await client.searchRuns({ experimentIds: [experiment.experimentId] }) : [])[0];
  });

  it('trains, validates by IoU, scores the test masks and finishes its MLflow run', () => {
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/step 15: validation IoU 0\.\d{4} \(F1 0\.\d{4}, P /);
    expect(result.stdout).toMatch(/best model: +step \d+, validation IoU 0\.\d{4} at threshold/);
    const iou = Number(/test IoU: +(0\.\d{4}) \(all 2 images' pixels pooled/.exec(result.stdout)?.[1]);
    expect(iou).toBeGreaterThan(0.3); // held-out images after 30 steps of a tiny model
    expect(run.info.status).toBe('FINISHED');
    expect(run.tags['emseg.task']).toBe('segment');
    expect(run.tags['emseg.task.metric']).toBe('iou');
    expect(run.inputs.map((i) => i.dataset.name).sort()).toEqual(['segment-test', 'segment-train', 'segment-validation']);
    const metrics = new Map(run.metrics.map((m) => [m.key, m.value]));
    for (const key of ['val_iou', 'val_iou_chosen', 'val_f1', 'val_threshold', 'test_iou', 'test_f1', 'test_iou_mean'])
      expect(metrics.has(key), key).toBe(true);
    expect(metrics.get('test_iou')).toBeCloseTo(iou, 4);
  });

  it('writes masks (foreground 255) whose scores are the logged test scores', async () => {
    const predDir = join(tmp.dir, 'run', 'predictions', 'test');
    const test = await LabeledImages.open({ images: join(dataRoot, 'test', 'images'), labels: join(dataRoot, 'test', 'masks'), polarity: 'white-foreground' });
    const files = new Map(test.names.map((n) => [n, join(predDir, `${n}.png`)]));
    const mask = await readImage(files.get(test.names[0])!);
    expect(new Set(mask.data)).toEqual(new Set([0, 255]));
    const score = await scoreMasks(files, test);
    const logged = JSON.parse(readFileSync(join(tmp.dir, 'run', 'scores', 'test.json'), 'utf8')) as { pooled: { iou: number } };
    expect(score.pooled.iou).toBe(logged.pooled.iou);
  });

  it('predict on the saved model writes masks by default, as the run did', async () => {
    const out = join(tmp.dir, 'predicted');
    const r = await cli(['predict', join(dataRoot, 'test', 'images'), '--model', join(tmp.dir, 'run'), '--out', out, '--probability', 'none']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/model: resnet18 U-Net \(iou; step \d+, validation iou 0\.\d{4}, F1 0\.\d{4}\).*masks \(foreground white 255\)/);
    for (const name of ['test-000', 'test-001']) {
      const a = await readImage(join(out, `${name}.png`));
      const b = await readImage(join(tmp.dir, 'run', 'predictions', 'test', `${name}.png`));
      expect(Buffer.from(a.data).equals(Buffer.from(b.data))).toBe(true);
    }
  });

  it('runs an instance task: validates and selects by PQ, writes 16-bit instance labels and scores them', async () => {
    const r = await segment('instances.json', dataRoot, 'inst', ['--run-name', 'inst']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/step 15: validation PQ 0\.\d{4} \(F1 0\.\d{4}, P /);
    expect(r.stdout).toMatch(/best model: +step \d+, validation PQ 0\.\d{4}/);
    const pq = Number(/test PQ: +(0\.\d{4}) \(SQ /.exec(r.stdout)?.[1]);
    expect(pq).toBeGreaterThan(0.2);
    const scores = JSON.parse(readFileSync(join(tmp.dir, 'inst', 'scores', 'test-instances.json'), 'utf8')) as {
      mean: { pq: number };
      images: Array<{ prediction: string; groundTruth: string; pq: number }>;
    };
    expect(scores.mean.pq).toBeCloseTo(pq, 4);
    // the written instance labels rescore to what the run logged
    for (const image of scores.images) {
      const predicted = await readImage(image.prediction);
      const truth = await readImage(image.groundTruth);
      expect(predicted.bitDepth).toBe(16);
      const toLabels = (g: typeof predicted) => ({ width: g.width, height: g.height, data: Uint16Array.from(g.data) });
      expect(instanceScores(toLabels(truth), toLabels(predicted)).pq).toBe(image.pq);
    }
    const experiment = await client.getExperimentByName('segment-e2e');
    const runs = await client.searchRuns({ experimentIds: [experiment!.experimentId] });
    const inst = runs.find((x) => x.info.runName === 'inst')!;
    expect(inst.tags['emseg.task.metric']).toBe('pq');
    const metrics = new Map(inst.metrics.map((m) => [m.key, m.value]));
    for (const key of ['val_pq', 'val_pq_chosen', 'test_pq', 'test_f1_at_50', 'test_f1_at_75', 'test_iou']) expect(metrics.has(key), key).toBe(true);
  });

  it('trains on 3D stacks slice by slice and scores every test slice', async () => {
    const stacks = join(tmp.dir, 'mito3d');
    await generateSyntheticMitoStack({ dir: stacks, seed: 4, size: 128, depth: 4, count: { train: 2, val: 1, test: 1 } });
    const r = await segment('tiny.json', stacks, 'run3d');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/data: 8 train, 4 validation \(val split\), 4 test images/);
    expect(r.stdout).toMatch(/test IoU: +0\.\d{4} \(all 4 images' pixels pooled/);
    const csv = readFileSync(join(tmp.dir, 'run3d', 'scores', 'test.csv'), 'utf8').split('\n');
    expect(csv.slice(1, 5).map((l) => l.split(',')[0])).toEqual(['test-000-z000', 'test-000-z001', 'test-000-z002', 'test-000-z003']);
  });

  it('runs an instance task on 3D stacks: instances cut and scored in 3D per test stack, written as 16-bit instance stacks', async () => {
    const stacks = join(tmp.dir, 'mito3d-instances');
    await generateSyntheticMitoStack({ dir: stacks, seed: 5, size: 128, depth: 4, count: { train: 2, val: 1, test: 1 } });
    const r = await segment('instances.json', stacks, 'inst3d');
    expect(r.status, r.stderr).toBe(0);
    const pq = Number(/test PQ: +(0\.\d{4}) \(SQ .*mean over 1 stacks, instances in 3D/.exec(r.stdout)?.[1]);
    expect(pq).toBeGreaterThan(0);
    const scores = JSON.parse(readFileSync(join(tmp.dir, 'inst3d', 'scores', 'test-instances.json'), 'utf8')) as {
      images: Array<{ name: string; prediction: string; groundTruth: string; pq: number; trueInstances: number }>;
    };
    expect(scores.images.map((i) => i.name)).toEqual(['test-000']);
    // the written instance stack rescores, in 3D, to what the run logged; ids run across slices
    const [image] = scores.images;
    const volume = async (path: string) => {
      const s = await readStack(path);
      const data = new Uint16Array(s.width * s.height * s.depth);
      s.slices.forEach((slice, z) => data.set(slice.data, z * s.width * s.height));
      return { width: s.width, height: s.height, depth: s.depth, data, bitDepth: s.bitDepth };
    };
    const predicted = await volume(image.prediction);
    const truth = await volume(image.groundTruth);
    expect(predicted.bitDepth).toBe(16);
    expect(predicted.depth).toBe(4);
    expect(instanceScores(truth, predicted).pq).toBe(image.pq);
    expect(image.trueInstances).toBe(new Set(truth.data.filter((v) => v > 0)).size);
  });

  it('reads the U-RISC release layout and validates, selects and tests membranes by V-Rand', async () => {
    const urisc = (await tinyUrisc(join(tmp.dir, 'urisc'), { count: { train: 2, val: 1, test: 1 } })).root;
    const r = await segment('tiny.json', urisc, 'membranes', [
      '--set',
      'metric=vrand',
      '--set',
      'data.polarity=black-foreground',
      '--set',
      'data.maxForegroundFraction=0.5',
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/step 15: validation V-Rand 0\.\d{4} \(F1 0\.\d{4}, P /);
    const vrand = Number(/test V-Rand: +(0\.\d{4}) \(V-Info 0\.\d{4}; ISBI 2012/.exec(r.stdout)?.[1]);
    expect(vrand).toBeGreaterThan(0);
    const csv = readFileSync(join(tmp.dir, 'membranes', 'scores', 'test.csv'), 'utf8').split('\n');
    expect(csv[0]).toContain('v_rand,v_info');
  });

  it('runs a multi-class task: ce-dice, validates and selects by mean class IoU, writes class maps that rescore to the logged per-class IoU', async () => {
    const classesRoot = join(tmp.dir, 'mito-classes');
    await generateSyntheticMito({ dir: classesRoot, seed: 3, size: 128, count: { train: 3, val: 1, test: 2 }, classes: true });
    writeFileSync(
      join(tmp.dir, 'classes.json'),
      JSON.stringify({
        extends: join(tmp.dir, 'tiny.json'),
        data: { classes: { '0': 'background', '128': 'granule', '255': 'mitochondrion' } },
        loss: { kind: 'ce-dice' },
        // softmax over 3 classes starts slower than focal + dice on one (measured: mIoU 0.01 at step 30, 0.30 at 60)
        train: { steps: 60, checkpointEvery: 30 },
        validation: { every: 30 },
      }),
    );
    const r = await segment('classes.json', classesRoot, 'classes', ['--run-name', 'classes']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/step 30: validation mIoU 0\.\d{4} /);
    expect(r.stdout).toMatch(/best model: +step \d+, validation mIoU 0\.\d{4}/);
    const miou = Number(/test mIoU: +(0\.\d{4}) \(mean IoU of the 2 foreground classes/.exec(r.stdout)?.[1]);
    expect(miou).toBeGreaterThan(0.15);
    // the written class maps hold class values only and, pooled, rescore (classScores, fixture-checked against scikit-learn) to the logged IoUs
    const test = await LabeledImages.open({ images: join(classesRoot, 'test', 'images'), labels: join(classesRoot, 'test', 'masks'), classes: [0, 128, 255] });
    const predicted: number[] = [];
    const truth: number[] = [];
    for (const name of test.names) {
      const p = await readImage(join(tmp.dir, 'classes', 'predictions', 'test', `${name}.png`));
      for (const v of p.data) expect([0, 128, 255]).toContain(v);
      predicted.push(...p.data);
      truth.push(...(await readImage(join(classesRoot, 'test', 'masks', `${name}.png`))).data);
    }
    const all = classScores(
      { width: truth.length, height: 1, data: Uint8Array.from(truth) },
      { width: predicted.length, height: 1, data: Uint8Array.from(predicted) },
      { classes: [0, 128, 255] },
    );
    const experiment = await client.getExperimentByName('segment-e2e');
    const runs = await client.searchRuns({ experimentIds: [experiment!.experimentId] });
    const run = runs.find((x) => x.info.runName === 'classes')!;
    expect(run.tags['emseg.task.metric']).toBe('miou');
    const metrics = new Map(run.metrics.map((m) => [m.key, m.value]));
    for (const key of ['val_miou', 'val_iou_background', 'val_iou_granule', 'val_iou_mitochondrion', 'test_miou', 'test_miou_mean'])
      expect(metrics.has(key), key).toBe(true);
    expect(metrics.get('test_iou_background')).toBeCloseTo(all.perClass[0].iou, 6);
    expect(metrics.get('test_iou_granule')).toBeCloseTo(all.perClass[1].iou, 6);
    expect(metrics.get('test_iou_mitochondrion')).toBeCloseTo(all.perClass[2].iou, 6);
    expect(metrics.get('test_miou')).toBeCloseTo((all.perClass[1].iou + all.perClass[2].iou) / 2, 6);
    // predict on the saved model writes the same class maps
    const out = join(tmp.dir, 'classes-predicted');
    const p = await cli(['predict', join(classesRoot, 'test', 'images'), '--model', join(tmp.dir, 'classes'), '--out', out, '--probability', 'none']);
    expect(p.status, p.stderr).toBe(0);
    expect(p.stderr).toMatch(/class maps \(background 0, granule 128, mitochondrion 255\)/);
    const a = await readImage(join(out, 'test-000.png'));
    const b = await readImage(join(tmp.dir, 'classes', 'predictions', 'test', 'test-000.png'));
    expect(Buffer.from(a.data).equals(Buffer.from(b.data))).toBe(true);
  });

  it('names the mask and the value outside the class map, and the loss a class map needs', async () => {
    const bad = await segment('classes.json', dataRoot, 'bad-classes', ['--set', 'data.classes={"0":"background","128":"granule"}']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/masks\/train-000\.png: has label value 255 at x \d+, y \d+ \(\d+ pixel\(s\)\), which is not in the class map/);
    const loss = await segment('classes.json', dataRoot, 'bad-loss', ['--set', 'loss.kind=focal-dice']);
    expect(loss.status).toBe(1);
    expect(loss.stderr).toMatch(/data\.classes makes a multi-class task, which needs loss\.kind "ce-dice"/);
  });

  it('names a folder in no known layout and exits 1', async () => {
    const r = await cli(['segment', '--config', join(tmp.dir, 'tiny.json'), '--data', join(tmp.dir, 'nowhere'), '--out', join(tmp.dir, 'bad')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${join(tmp.dir, 'nowhere')}: does not exist`);
  });
});
