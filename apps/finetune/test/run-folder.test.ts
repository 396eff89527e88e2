/**
 * A run folder belongs to one run, through the built CLI and a real MLflow server:
 *   - a fresh run into a used --out is refused (the old run's files stay), --overwrite clears it,
 *     and the model MLflow gets is the new run's own;
 *   - a live run's folder is locked against a second process;
 *   - after SIGKILL, --resume closes the orphaned RUNNING run as KILLED, links both runs, and says
 *     that train.steps changed;
 *   - latest.json goes beside the run folder, not into the workspace's default runs;
 *   - every checkpoint and the final model predict, beside the best model.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadArtifacts, MlflowClient, startMlflowServer, type MlflowServer, type Run } from '@emseg/tracking';
import { buildFinetune, QUICK_CONFIG, startCli, tempDir, tinyUrisc } from './helpers.js';

const tmp = tempDir('run-folder');
const RUNS = join(tmp.dir, 'default-runs');
let server: MlflowServer;
let client: MlflowClient;
let dataRoot: string;
let config: string;

const start = (args: string[]) => startCli(args, { env: { EMSEG_FINETUNE_RUNS: RUNS } });
const cli = (args: string[]) => start(args).done;
const urisc = (out: string, ...extra: string[]) =>
  cli([
    'urisc',
    '--config',
    config,
    '--data',
    dataRoot,
    '--encoder',
    'random',
    '--tracking-uri',
    server.uri,
    '--experiment',
    'run-folder',
    '--no-test',
    '--out',
    out,
    ...extra,
  ]);

async function runsByName(): Promise<Map<string, Run>> {
  const experiment = await client.getExperimentByName('run-folder');
  const runs = experiment ? await client.searchRuns({ experimentIds: [experiment.experimentId] }) : [];
  return new Map(runs.map((r) => [r.info.runId, r]));
}

const stepsIn = (dir: string) =>
  existsSync(dir)
    ? readdirSync(dir)
        .filter((n) => /^step-\d+$/.test(n))
        .map((n) => Number(n.slice(5)))
    : [];

beforeAll(async () => {
  buildFinetune();
  server = await startMlflowServer({ storeDir: join(tmp.dir, 'mlflow') });
  client = new MlflowClient({ trackingUri: server.uri });
  dataRoot = (await tinyUrisc(join(tmp.dir, 'data'), { count: { train: 2, val: 1, test: 1 } })).root;
  config = join(tmp.dir, 'tiny.json');
  writeFileSync(
    config,
    JSON.stringify({
      extends: QUICK_CONFIG,
      model: { decoderChannels: [32, 16, 16, 8, 8] },
      patches: { size: 64, stride: 64, perEpoch: 8, augmentation: 'none' },
      train: { batchSize: 2, steps: 8, checkpointEvery: 2, logEvery: 1 },
      validation: { every: 4, overlays: 0 },
      inference: { tileSize: 128, overlap: 0, batchSize: 1 },
    }),
  );
});

afterAll(async () => {
  await server?.stop();
  tmp.cleanup();
});

describe('a run folder belongs to one run', () => {
  const out = join(tmp.dir, 'experiment-a', 'r1');

  it('finishes a run with best, final and checkpoints, and records latest.json beside its folder', async () => {
    const r = await urisc(out);
    expect(r.status, r.stderr).toBe(0);
    expect(stepsIn(join(out, 'final'))).toEqual([8]);
    expect(stepsIn(join(out, 'best'))).toHaveLength(1);
    expect(stepsIn(join(out, 'checkpoints'))).toEqual([4, 6, 8]);
    const latest = JSON.parse(readFileSync(join(tmp.dir, 'experiment-a', 'latest.json'), 'utf8'));
    expect(latest.outDir).toBe(out);
    expect(existsSync(join(RUNS, 'latest.json'))).toBe(false); // the default runs' latest is untouched
    expect(r.stdout).toMatch(new RegExp(`see the run: +${server.uri}/#/experiments/\\d+/runs/${latest.runId}`));
    const artifacts = (await client.listArtifacts(latest.runId)).map((a) => a.path);
    expect(artifacts).toEqual(expect.arrayContaining(['model', 'final-model']));
  });

  it('predicts from any checkpoint and from the final model', async () => {
    for (const model of [join(out, 'checkpoints', 'step-000000004'), join(out, 'final')]) {
      const pred = join(tmp.dir, `pred-${model.split('/').at(-1)}`);
      const r = await cli(['predict', join(dataRoot, 'imgs', 'Track1', 'test'), '--model', model, '--out', pred, '--probability', 'none']);
      expect(r.status, r.stderr).toBe(0);
      expect(readdirSync(pred).filter((n) => n.endsWith('.png'))).toHaveLength(1);
    }
  });

  it('refuses a fresh run into the used folder and leaves the old run alone; --overwrite starts over', async () => {
    const before = readFileSync(join(out, 'run.json'), 'utf8');
    const refused = await urisc(out, '--set', 'train.steps=4');
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/already holds the finetune run .*pass --resume to continue it, --overwrite to clear it/);
    expect(readFileSync(join(out, 'run.json'), 'utf8')).toBe(before);
    expect(stepsIn(join(out, 'checkpoints'))).toEqual([4, 6, 8]);

    const fresh = await urisc(out, '--overwrite', '--set', 'train.steps=4');
    expect(fresh.status, fresh.stderr).toBe(0);
    expect(fresh.stderr).toContain('--overwrite: cleared');
    expect(stepsIn(join(out, 'checkpoints'))).toEqual([2, 4]);
    expect(stepsIn(join(out, 'final'))).toEqual([4]);
    // The MLflow model of the new run is the new run's own (at most step 4), not the old step-8 one.
    const runId = JSON.parse(readFileSync(join(tmp.dir, 'experiment-a', 'latest.json'), 'utf8')).runId as string;
    const local = await downloadArtifacts(client, runId, 'model/manifest.json', join(tmp.dir, 'download'));
    expect(JSON.parse(readFileSync(local, 'utf8')).step).toBeLessThanOrEqual(4);
  });

  it('locks a live run against a second process; after SIGKILL, --resume closes and links the orphaned run', async () => {
    const killedOut = join(tmp.dir, 'experiment-b', 'r2');
    const first = start([
      'urisc',
      '--config',
      config,
      '--data',
      dataRoot,
      '--encoder',
      'random',
      '--tracking-uri',
      server.uri,
      '--experiment',
      'run-folder',
      '--no-test',
      '--out',
      killedOut,
      '--set',
      'train.steps=400',
      '--set',
      'validation.every=0',
    ]);
    const deadline = Date.now() + 120_000;
    while (stepsIn(join(killedOut, 'checkpoints')).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(stepsIn(join(killedOut, 'checkpoints')).length).toBeGreaterThan(0);

    const second = await urisc(killedOut, '--resume');
    expect(second.status).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`in use by finetune process ${first.child.pid}`));

    first.child.kill('SIGKILL');
    await first.done;
    const orphanId = (JSON.parse(readFileSync(join(killedOut, 'run.json'), 'utf8')).runs as Array<{ runId: string }>).at(-1)!.runId;
    expect((await client.getRun(orphanId)).info.status).toBe('RUNNING');

    const resumed = await urisc(killedOut, '--resume', '--set', 'train.steps=12', '--set', 'validation.every=0');
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stderr).toMatch(/the configuration differs from the interrupted run's: train\.steps: 400 -> 12/);
    expect(resumed.stderr, resumed.stderr).toContain(`MLflow run ${orphanId} was still RUNNING`);
    const runs = await runsByName();
    const orphan = runs.get(orphanId)!;
    expect(orphan.info.status).toBe('KILLED');
    const newId = orphan.tags['emseg.resumedBy'];
    expect(newId).toBeDefined();
    const tags = runs.get(newId!)!.tags;
    expect(tags['emseg.resumedFrom']).toBe(orphanId);
    expect(JSON.parse(tags['emseg.resume.configChanges']!)).toEqual([{ key: 'train.steps', from: '400', to: '12' }]);
  });
});
