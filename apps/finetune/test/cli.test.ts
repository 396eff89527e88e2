/**
 * End to end through the built CLI against a real MLflow server: `urisc` trains, validates, keeps
 * the best model, predicts and scores the test split and logs all of it; `predict` and `score`
 * reproduce the test score from the files; bad input exits 1 with a one-line error.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowClient, startMlflowServer, type MlflowServer, type Run } from '@emseg/tracking';
import { buildFinetune, QUICK_CONFIG, runCli, tempDir, tinyUrisc, type CliResult } from './helpers.js';

const tmp = tempDir('cli');
let server: MlflowServer;
let client: MlflowClient;
let dataRoot: string;

const cli = (args: string[]) => runCli(args, { env: { EMSEG_FINETUNE_RUNS: join(tmp.dir, 'runs') } });

beforeAll(async () => {
  // the CLI under test is the built one
  buildFinetune();
  server = await startMlflowServer({ storeDir: join(tmp.dir, 'mlflow') });
  client = new MlflowClient({ trackingUri: server.uri });
  dataRoot = (await tinyUrisc(join(tmp.dir, 'data'), { count: { train: 2, val: 1, test: 2 } })).root;
  writeFileSync(
    join(tmp.dir, 'tiny.json'),
    JSON.stringify({
      extends: QUICK_CONFIG,
      model: { decoderChannels: [32, 16, 16, 8, 8] },
      patches: { size: 128, stride: 128, perEpoch: 8, augmentation: 'none' },
      optimizer: { lr: 0.003 },
      train: { batchSize: 2, steps: 24, checkpointEvery: 12, logEvery: 1 },
      validation: { every: 12, overlays: 1, overlaySize: 96 },
      inference: { tileSize: 128, overlap: 0 },
    }),
  );
});

afterAll(async () => {
  await server?.stop();
  tmp.cleanup();
});

describe('finetune CLI', () => {
  let urisc: CliResult;
  let run: Run;

  beforeAll(async () => {
    urisc = await cli([
      'urisc',
      '--config',
      join(tmp.dir, 'tiny.json'),
      '--data',
      dataRoot,
      '--encoder',
      'random',
      '--tracking-uri',
      server.uri,
      '--experiment',
      'finetune-e2e',
      '--run-name',
      'e2e',
      '--out',
      join(tmp.dir, 'run'),
    ]);
    const experiment = await client.getExperimentByName('finetune-e2e');
    const runs = experiment ? await client.searchRuns({ experimentIds: [experiment.experimentId] }) : [];
    run = runs[0];
  });

  it('trains, validates, scores the test split and finishes its MLflow run', () => {
    expect(urisc.status, urisc.stderr).toBe(0);
    expect(urisc.stderr).not.toMatch(/^error/m);
    expect(urisc.stdout).toMatch(/fine-tuning finished after 24\/24 steps/);
    const testF1 = Number(/test F1: +(0\.\d{4}) \(official U-RISC, mean over 2 images/.exec(urisc.stdout)?.[1]);
    expect(testF1).toBeGreaterThan(0.5); // held-out images, after 24 steps
    expect(urisc.stderr).not.toMatch(/rejected/);
    expect(run.info.runName).toBe('e2e');
    expect(run.info.status).toBe('FINISHED');
  });

  it('logs params, backend and encoder tags, datasets and metrics', async () => {
    expect(run.params['patches.size']).toBe('128');
    expect(run.params['loss.kind']).toBe('focal-dice');
    expect(run.params['encoder.ref']).toBe('random');
    expect(run.tags['emseg.encoder.source']).toBe('random');
    expect(run.tags['emseg.app']).toBe('finetune');
    expect(Object.keys(run.tags).some((k) => /tensorflow|backend/i.test(k))).toBe(true);
    expect(run.inputs.map((i) => i.dataset.name).sort()).toEqual(['urisc-track1-test', 'urisc-track1-train', 'urisc-track1-validation']);
    const metrics = Object.fromEntries(run.metrics.map((m) => [m.key, m.value]));
    for (const key of ['train_loss', 'lr', 'step_ms', 'val_f1', 'val_precision', 'val_recall', 'val_best_f1', 'test_f1', 'test_precision', 'test_recall'])
      expect(metrics, key).toHaveProperty(key);
    expect((await client.getMetricHistory(run.info.runId, 'val_f1')).map((p) => p.step).sort((a, b) => a - b)).toEqual([12, 24]);
    expect((await client.getMetricHistory(run.info.runId, 'train_loss')).length).toBe(24);
  });

  it('uploads the best model, per-image scores and validation overlays', async () => {
    const list = async (path: string) => (await client.listArtifacts(run.info.runId, path)).map((a) => a.path);
    expect(await list('model')).toEqual(expect.arrayContaining(['model/manifest.json', 'model/tensors.bin']));
    expect(await list('scores')).toEqual(expect.arrayContaining(['scores/test.csv', 'scores/test.json', 'scores/validation.csv', 'scores/validation.json']));
    expect(await list('overlays/step-000012')).toEqual(['overlays/step-000012/val-000.png']);
    const csv = readFileSync(join(tmp.dir, 'run', 'scores', 'test.csv'), 'utf8')
      .trim()
      .split('\n');
    expect(csv[0]).toBe('name,f1,precision,recall,predictedMembranePixels,predictedBackgroundPixels,prediction,groundTruth,rejected');
    expect(csv.map((l) => l.split(',')[0])).toEqual(['name', 'test-000.png', 'test-001.png', 'mean']);
  });

  it('predict + score on the written model reproduce the test F1', async () => {
    const testF1 = /test F1: +(\d\.\d{4})/.exec(urisc.stdout)![1];
    const predOut = join(tmp.dir, 'pred');
    const predict = await cli(['predict', join(dataRoot, 'imgs', 'Track1', 'test'), '--model', join(tmp.dir, 'run'), '--out', predOut]);
    expect(predict.status, predict.stderr).toBe(0);
    for (const f of ['test-000.png', 'test-001.png', 'probability/test-000.png']) expect(existsSync(join(predOut, f)), f).toBe(true);
    const score = await cli(['score', '--pred', predOut, '--labels', join(dataRoot, 'label', 'Track1', 'test'), '--json', join(tmp.dir, 's.json')]);
    expect(score.status).toBe(0);
    expect(score.stdout).toContain(`official U-RISC F1 (mean over 2 images): ${testF1}`);
    expect((JSON.parse(readFileSync(join(tmp.dir, 's.json'), 'utf8')) as { meanF1: number }).meanF1.toFixed(4)).toBe(testF1);
  });

  it('exits 1 with a one-line error for bad input', async () => {
    const bad = await cli([
      'urisc',
      '--config',
      join(tmp.dir, 'tiny.json'),
      '--data',
      join(tmp.dir, 'nowhere'),
      '--encoder',
      'random',
      '--tracking-uri',
      server.uri,
    ]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/^error: .*nowhere\/imgs\/Track1\/train: does not exist; expected the U-RISC release layout/m);
    const score = await cli(['score', '--pred', join(tmp.dir, 'nowhere'), '--labels', dataRoot]);
    expect(score.status).toBe(1);
    expect(score.stderr).toMatch(/^error: cannot list prediction folder .*nowhere/m);
  });

  it('exits 2 naming the flag when a flag is given twice or flags contradict, and states the exit codes in --help', async () => {
    const twice = await cli(['urisc', '--encoder', 'random', '--encoder', 'latest-pretrain']);
    expect(twice.status).toBe(2);
    expect(twice.stderr).toMatch(/^error: --encoder was given 2 times \("random", "latest-pretrain"\); give it once$/m);
    const both = await cli(['urisc', '--out', join(tmp.dir, 'x'), '--resume', '--overwrite']);
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/--resume and --overwrite contradict each other/);
    for (const command of ['urisc', 'predict', 'score']) {
      const help = await cli([command, '--help']);
      expect(help.status).toBe(0);
      expect(help.stdout).toMatch(/Exit codes: 0 done, 1 bad input or failed work, 2 usage error, 130 interrupted/);
      expect(help.stderr).not.toMatch(/absl|oneDNN/); // --help does not load TensorFlow
    }
  });
});
