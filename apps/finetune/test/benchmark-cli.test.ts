/**
 * Issue 12 part 6, end to end through the built CLI against a real MLflow server: `benchmark` runs
 * CEM500K's protocol (one encoder frozen and fine-tuned, plus random init) as child runs of one
 * parent run, and writes a results table, CSV, JSON and a bar chart that it logs to the parent.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSyntheticMito, readImageInfo } from '@emseg/data';
import { resnetEncoder, saveEncoderBundle } from '@emseg/models';
import { MlflowClient, startMlflowServer, type MlflowServer } from '@emseg/tracking';
import { DEFAULT_SEGMENT_CONFIG } from '../src/workspace.js';
import { buildFinetune, runCli, tempDir, type CliResult } from './helpers.js';

const tmp = tempDir('benchmark-cli');
let server: MlflowServer;
let client: MlflowClient;
let result: CliResult;
const out = join(tmp.dir, 'bench');

beforeAll(async () => {
  buildFinetune();
  server = await startMlflowServer({ storeDir: join(tmp.dir, 'mlflow') });
  client = new MlflowClient({ trackingUri: server.uri });
  const data = join(tmp.dir, 'mito');
  await generateSyntheticMito({ dir: data, seed: 5, size: 128, count: { train: 2, val: 1, test: 1 } });
  const encoder = resnetEncoder({ depth: 18, seed: 3 });
  await saveEncoderBundle(join(tmp.dir, 'enc'), encoder, { normalization: { mean: 0.5, std: 0.2 }, training: { method: 'mocov2', steps: 1 } });
  encoder.dispose();
  writeFileSync(
    join(tmp.dir, 'tiny.json'),
    JSON.stringify({
      extends: DEFAULT_SEGMENT_CONFIG,
      model: { decoderChannels: [32, 16, 16, 8, 8] },
      patches: { size: 64, stride: 64, perEpoch: 8, augmentation: 'none' },
      train: { batchSize: 2, steps: 6, checkpointEvery: 6, logEvery: 1 },
      validation: { every: 6, overlays: 0 },
      inference: { tileSize: 128, overlap: 0 },
    }),
  );
  result = await runCli(
    [
      'benchmark',
      '--encoders',
      join(tmp.dir, 'enc'),
      '--data',
      data,
      '--config',
      join(tmp.dir, 'tiny.json'),
      '--out',
      out,
      '--tracking-uri',
      server.uri,
      '--experiment',
      'bench-e2e',
    ],
    { env: { EMSEG_FINETUNE_RUNS: join(tmp.dir, 'runs') } },
  );
});

afterAll(async () => {
  await server?.stop();
  tmp.cleanup();
});

describe('finetune benchmark', () => {
  it('runs the three arms and prints the results table', () => {
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/arm +val iou +test IoU +test F1/);
    for (const arm of ['1-enc-frozen', '1-enc-finetuned', 'random-finetuned'])
      expect(result.stdout).toMatch(new RegExp(`^${arm} +0\\.\\d{4} +0\\.\\d{4} +0\\.\\d{4}$`, 'm'));
  });

  it('writes CSV, JSON and the bar chart from the arms test scores', async () => {
    const json = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
      experiment: string;
      parentRunId: string;
      arms: Array<{ name: string; mode: string; seconds: number; test: { iou: number } }>;
    };
    expect(json.experiment).toBe('bench-e2e');
    expect(json.parentRunId).toMatch(/^[0-9a-f]{32}$/);
    expect(result.stderr).toContain(`MLflow parent run ${json.parentRunId}`);
    for (const arm of json.arms) expect(arm.seconds).toBeGreaterThan(0);
    expect(json.arms.map((a) => [a.name, a.mode])).toEqual([
      ['1-enc-frozen', 'frozen'],
      ['1-enc-finetuned', 'finetuned'],
      ['random-finetuned', 'finetuned'],
    ]);
    for (const arm of json.arms) {
      const test = JSON.parse(readFileSync(join(out, arm.name, 'scores', 'test.json'), 'utf8')) as { pooled: { iou: number } };
      expect(arm.test.iou).toBe(test.pooled.iou);
    }
    expect(readFileSync(join(out, 'results.csv'), 'utf8').split('\n')[0]).toMatch(/^arm,encoder,mode,status,validation,test_iou/);
    const png = await readImageInfo(join(out, 'results.png'));
    expect(png.width).toBeGreaterThan(100);
  });

  it('logs one parent run with a child run per arm, the frozen arm with a frozen encoder', async () => {
    const experiment = await client.getExperimentByName('bench-e2e');
    const runs = await client.searchRuns({ experimentIds: [experiment!.experimentId] });
    const parent = runs.find((r) => r.tags['emseg.benchmark'] === 'cem500k-protocol')!;
    expect(parent.info.status).toBe('FINISHED');
    // results.json names this parent run, for callers that add to it (tools/experiments/transfer.mjs)
    expect((JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { parentRunId: string }).parentRunId).toBe(parent.info.runId);
    const children = runs.filter((r) => r.tags['mlflow.parentRunId'] === parent.info.runId);
    expect(children.map((r) => r.info.runName).sort()).toEqual(['1-enc-finetuned', '1-enc-frozen', 'random-finetuned']);
    expect(children.find((r) => r.info.runName === '1-enc-frozen')!.params['model.freezeEncoder']).toBe('all');
    expect(children.find((r) => r.info.runName === 'random-finetuned')!.tags['emseg.encoder.source']).toBe('random');
    const artifacts = (await client.listArtifacts(parent.info.runId, 'results')).map((a) => a.path).sort();
    expect(artifacts).toEqual(['results/results.csv', 'results/results.json', 'results/results.png', 'results/results.svg']);
  });
});
