/**
 * The embedded default: with no MLFLOW_TRACKING_URI a run still lands in a real MLflow store in
 * the project directory (a server is started on it for the run's lifetime), a journal from such a
 * run syncs back into the same store, and `npm run mlflow` (tools/mlflow/serve.mjs) shows it all.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultStoreDir, freeLoopbackPort, MlflowClient, readJournal, syncJournals, Tracker } from '@emseg/tracking';
import { buildTrackingDist, liveGroupMembers, problemSink, REPO_ROOT, tempDir, waitFor } from './support.js';

const dir = tempDir('embedded');
const storeDir = join(dir, 'project', '.emseg', 'mlflow');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeAll(() => buildTrackingDist());

let finishedRunId = '';
let syncedRunId = '';

describe('the default store', () => {
  it('is .emseg/mlflow of the workspace that contains the working directory, unless EMSEG_MLFLOW_DIR says otherwise', () => {
    const workspace = join(dir, 'ws');
    mkdirSync(join(workspace, 'apps', 'finetune'), { recursive: true });
    writeFileSync(join(workspace, 'nx.json'), '{}');
    expect(defaultStoreDir(join(workspace, 'apps', 'finetune'), {})).toBe(join(workspace, '.emseg', 'mlflow'));
    expect(defaultStoreDir(workspace, { EMSEG_MLFLOW_DIR: '/srv/mlflow' })).toBe('/srv/mlflow');
    expect(defaultStoreDir(REPO_ROOT, {})).toBe(join(REPO_ROOT, '.emseg', 'mlflow'));
  });
});

describe('no MLFLOW_TRACKING_URI', () => {
  it('logs into a real local store through a server that lives exactly as long as the run', async () => {
    const sink = problemSink();
    const run = await Tracker.start({
      env: {},
      storeDir,
      handleProcessEvents: false,
      onProblem: sink.onProblem,
      experiment: 'embedded',
      runName: 'local-run',
      params: { lr: 0.015 },
    });
    const uri = run.client.trackingUri;
    expect(uri).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    for (let step = 0; step < 20; step++) run.logMetric('loss', 1 / (step + 1), step);
    await run.logArtifactData('{"depth":50}', 'encoder/config.json');
    expect((await run.end()).delivered).toBe(true);
    expect(sink.problems).toEqual([]);
    finishedRunId = run.id;
    await expect(fetch(`${uri}/health`)).rejects.toThrow(); // the embedded server stopped with the run
  });

  it('syncs a journal left by a crashed embedded server back into the same store', async () => {
    const sink = problemSink();
    const tracker = await Tracker.connect({ env: {}, storeDir, handleProcessEvents: false, onProblem: sink.onProblem });
    const server = tracker.server!;
    const run = await tracker.startRun({ experiment: 'embedded', runName: 'server-crashed' });
    for (let step = 0; step < 10; step++) run.logMetric('loss', step, step);
    await run.flush(30_000);
    process.kill(-server.pgid, 'SIGKILL');
    expect(await waitFor(() => !server.running, 15_000)).toBe(true);
    for (let step = 10; step < 40; step++) run.logMetric('loss', step, step);
    const ended = await run.end('FINISHED', { timeoutMs: 1000 });
    expect(ended.delivered).toBe(false);
    await tracker.close();
    syncedRunId = run.id;
    expect(readJournal(run.journalPath).header.embeddedStoreDir).toBe(storeDir);

    const [report] = await syncJournals([join(storeDir, 'journal')], { env: {} });
    expect(report).toMatchObject({ runId: run.id, complete: true, removed: true });
    expect(report.trackingUri).not.toBe(server.uri); // a fresh server on the same store
    expect(liveGroupMembers(server.pgid)).toEqual([]);
  });
});

describe('npm run mlflow', () => {
  it('serves the same store on the given port, shows the runs, and stops cleanly on Ctrl-C', async () => {
    const port = await freeLoopbackPort();
    const child = spawn(process.execPath, [join(REPO_ROOT, 'tools/mlflow/serve.mjs'), '--port', String(port), '--store', storeDir], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    expect(await waitFor(() => out.includes(`MLflow UI: http://127.0.0.1:${port}`) || child.exitCode !== null, 170_000), out).toBe(true);
    expect(out).toContain(`sqlite:///${join(storeDir, 'mlflow.db')}`);

    const client = new MlflowClient({ trackingUri: `http://127.0.0.1:${port}` });
    const experiment = await client.getExperimentByName('embedded');
    const runs = await client.searchRuns({ experimentIds: [experiment!.experimentId], orderBy: ['attributes.start_time ASC'] });
    expect(runs.map((r) => [r.info.runId, r.info.status])).toEqual([
      [finishedRunId, 'FINISHED'],
      [syncedRunId, 'FINISHED'],
    ]);
    expect(runs[0].params).toEqual({ lr: '0.015' });
    expect((await client.getMetricHistory(syncedRunId, 'loss')).map((p) => p.step).sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(await client.listArtifacts(finishedRunId, 'encoder')).toEqual([{ path: 'encoder/config.json', isDir: false, fileSize: 12 }]);

    child.kill('SIGINT');
    expect(await exited).toBe(0);
    await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow();
  });

  it('explains bad flags', async () => {
    const child = spawn(process.execPath, [join(REPO_ROOT, 'tools/mlflow/serve.mjs'), '--port', 'abc'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(2);
    expect(err).toContain('--port must be an integer from 1 to 65535, got "abc"');
  });
});
