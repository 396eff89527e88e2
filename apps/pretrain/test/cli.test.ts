/**
 * The pretraining CLI end to end, against a real MLflow server started for this file:
 * what a user sees in MLflow after `nx run pretrain:moco`, and what SIGINT does.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSyntheticCrops } from '@emseg/data';
import { loadEncoder } from '@emseg/models';
import { MlflowClient, downloadArtifacts, startMlflowServer, type MlflowServer } from '@emseg/tracking';
import { latestCheckpoint } from '@emseg/training';

const MAIN = resolve(__dirname, '..', 'dist', 'main.js');
const TINY = ['data.cropSize=32', 'train.batchSize=8', 'moco.queueSize=32', 'moco.mlpHidden=64', 'moco.dim=32', 'train.logEvery=1'].flatMap((s) => [
  '--set',
  s,
]);

/** Everything this file writes lives under one temporary folder, removed at the end. */
const WORK = mkdtempSync(join(tmpdir(), 'emseg-pretrain-test-'));
afterAll(() => rmSync(WORK, { recursive: true, force: true }));

let server: MlflowServer;
let client: MlflowClient;
let crops: string;

beforeAll(async () => {
  crops = join(mkdtempSync(join(WORK, 'emseg-cli-')), 'crops');
  [server] = await Promise.all([
    startMlflowServer({ storeDir: mkdtempSync(join(WORK, 'emseg-mlflow-')) }),
    generateSyntheticCrops({ dir: crops, seed: 9, count: 64, size: 40 }),
  ]);
  client = new MlflowClient({ trackingUri: server.uri });
});
afterAll(async () => {
  await server?.stop();
});

function runCli(args: string[], { interruptAfterMs }: { interruptAfterMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [MAIN, 'moco', ...args], { env: { ...process.env, MLFLOW_TRACKING_URI: '' } });
    let stdout = '';
    let stderr = '';
    let interrupted = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      // Once the run has started, let it train a little, then press Ctrl-C.
      if (interruptAfterMs !== undefined && !interrupted && stderr.includes('MLflow run ')) {
        interrupted = true;
        setTimeout(() => child.kill('SIGINT'), interruptAfterMs);
      }
    });
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

describe('emseg-pretrain moco', () => {
  it('logs params, backend tags, the dataset, per-step metrics and a reusable encoder bundle to MLflow', async () => {
    const out = mkdtempSync(join(WORK, 'emseg-cli-run-'));
    const { code, stdout, stderr } = await runCli([
      '--data',
      crops,
      '--out',
      out,
      '--tracking-uri',
      server.uri,
      '--experiment',
      'cli-test',
      '--run-name',
      'tiny',
      ...TINY,
      '--set',
      'train.maxSteps=4',
    ]);
    expect(code, stderr).toBe(0);
    const runId = /runs:\/([0-9a-f]+)\/encoder/.exec(stdout)![1];
    const run = await client.getRun(runId);
    expect(run.info.status).toBe('FINISHED');
    expect(run.info.runName).toBe('tiny');
    expect(run.params['moco.queueSize']).toBe('32');
    expect(run.params['moco.temperature']).toBe('0.2');
    expect(run.params['optimizer.weightDecay']).toBe('0.0001');
    expect(run.params.data).toBe(crops);
    expect(run.tags['emseg.method']).toBe('mocov2');
    expect(run.tags['emseg.backend.native']).toBe('true');
    expect(run.tags['emseg.backend.tensorflowVersion']).toMatch(/^\d+\.\d+/);
    expect(run.inputs.map((i) => i.dataset.name)).toEqual(['unlabeled-crops']);
    const loss = await client.getMetricHistory(runId, 'loss');
    expect(loss.map((p) => p.step).sort((a, b) => a - b)).toEqual([1, 2, 3, 4]);
    for (const key of ['lr', 'images_per_sec', 'pos_sim', 'neg_sim']) expect((await client.getMetricHistory(runId, key)).length).toBe(4);
    const listed = (await client.listArtifacts(runId, 'encoder')).map((a) => a.path).sort();
    expect(listed).toEqual(['encoder/encoder.json', 'encoder/model.json', 'encoder/weights.bin']);
    // Another EM task picks the encoder up by its MLflow URI.
    const dest = mkdtempSync(join(WORK, 'emseg-dl-'));
    const loaded = await loadEncoder(`runs:/${runId}/encoder`, {
      resolveUri: async (uri) => downloadArtifacts(client, uri.split('/')[1], uri.split('/').slice(2).join('/'), dest),
    });
    expect(loaded.meta.training.method).toBe('mocov2');
    expect(loaded.meta.training.mlflowRunId).toBe(runId);
    expect(loaded.meta.normalization).toEqual({ mean: [0.573], std: [0.127] });
    loaded.encoder.dispose();
  });

  it('--set method=byol pretrains with BYOL: tagged, its metrics logged, a byol bundle', async () => {
    const out = mkdtempSync(join(WORK, 'emseg-cli-byol-'));
    const byol = ['method=byol', 'byol.projectorHidden=64', 'byol.dim=32', 'byol.predictorHidden=64', 'train.maxSteps=3'].flatMap((s) => ['--set', s]);
    const { code, stdout, stderr } = await runCli(['--data', crops, '--out', out, '--tracking-uri', server.uri, '--experiment', 'cli-test', ...TINY, ...byol]);
    expect(code, stderr).toBe(0);
    const runId = /runs:\/([0-9a-f]+)\/encoder/.exec(stdout)![1];
    const run = await client.getRun(runId);
    expect(run.tags['emseg.method']).toBe('byol');
    expect(run.info.runName).toMatch(/^byol-resnet18-/);
    expect(run.params['byol.dim']).toBe('32');
    for (const key of ['loss', 'z_std', 'momentum']) expect((await client.getMetricHistory(runId, key)).length).toBe(3);
    const dest = mkdtempSync(join(WORK, 'emseg-dl-'));
    const loaded = await loadEncoder(`runs:/${runId}/encoder`, {
      resolveUri: async (uri) => downloadArtifacts(client, uri.split('/')[1], uri.split('/').slice(2).join('/'), dest),
    });
    expect(loaded.meta.training.method).toBe('byol');
    loaded.encoder.dispose();
  });

  it('on SIGINT saves a checkpoint, ends the run KILLED, and --resume continues it', async () => {
    const out = mkdtempSync(join(WORK, 'emseg-cli-int-'));
    const args = [
      '--data',
      crops,
      '--out',
      out,
      '--tracking-uri',
      server.uri,
      '--experiment',
      'cli-test',
      ...TINY,
      '--set',
      'train.epochs=100',
      '--set',
      'train.maxSteps=200',
      '--set',
      'train.checkpointEvery=1000',
    ];
    // 2 s after the run started: a few steps done (about 0.3 s each), SIGINT lands mid-training.
    const first = await runCli(args, { interruptAfterMs: 2000 });
    expect(first.code, first.stderr).toBe(130);
    expect(first.stderr).toMatch(/SIGINT received: finishing this step/);
    const ckpt = latestCheckpoint(join(out, 'checkpoints'));
    expect(ckpt).not.toBeNull();
    const runId = /runs:\/([0-9a-f]+)\/encoder/.exec(first.stdout)![1];
    expect((await client.getRun(runId)).info.status).toBe('KILLED');
    expect(existsSync(join(out, 'encoder', 'encoder.json'))).toBe(true);

    const stepDone = Number(/step-0*(\d+)$/.exec(ckpt!)![1]);
    const second = await runCli([...args.map((a) => (a === 'train.maxSteps=200' ? `train.maxSteps=${stepDone + 2}` : a)), '--resume']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain(`after ${stepDone + 2}/${stepDone + 2} steps`);
    const resumedId = /runs:\/([0-9a-f]+)\/encoder/.exec(second.stdout)![1];
    expect((await client.getRun(resumedId)).tags['emseg.resumedFrom']).toBe(runId);
  });

  it('explains bad arguments', async () => {
    const res = await runCli(['--resume']);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/--resume needs --out DIR/);
    const bad = await runCli(['--data', crops, '--tracking-uri', server.uri, '--set', 'moco.temperature=0']);
    expect(bad.code).toBe(1); // bad input (a config value) is 1; 2 is for usage errors
    const twice = await runCli(['--out', 'a', '--out', 'b']);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toMatch(/--out was given 2 times \("a", "b"\); give it once/);
    expect(bad.stderr).toMatch(/moco\.temperature must be > 0/);
  });
});
