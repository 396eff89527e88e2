/**
 * No lost metrics: the server dies in the middle of a run, training keeps logging, the server
 * comes back, and after the flush every metric point is on the server exactly once. A run that
 * ends while the server is down leaves a journal that the `sync` command delivers later.
 */
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowClient, startMlflowServer, Tracker, type MlflowServer, type TrackerOptions } from '@emseg/tracking';
import { buildTrackingDist, problemSink, REPO_ROOT, startTestServer, waitFor, type TestServer } from './support.js';

const run$ = promisify(execFile);
let ts: TestServer;
let server: MlflowServer;

beforeAll(async () => {
  buildTrackingDist();
  ts = await startTestServer('outage');
  server = ts.server;
});
afterAll(async () => {
  await server?.stop();
  await ts?.cleanup();
});

/** Kills the server the hard way (SIGKILL to its whole process group), as a crash would. */
async function crashServer(): Promise<void> {
  process.kill(-server.pgid, 'SIGKILL');
  expect(await waitFor(() => !server.running, 15_000)).toBe(true);
}

async function restartServer(): Promise<void> {
  server = await startMlflowServer({ storeDir: ts.server.storeDir, port: ts.server.port });
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function options(extra: Partial<TrackerOptions>): TrackerOptions {
  return {
    trackingUri: ts.server.uri,
    env: {},
    journalDir: ts.journalDir,
    handleProcessEvents: false,
    // Small in-memory limit, so the outage also exercises records that live only in the journal.
    delivery: { tickMs: 50, maxInMemory: 300, backoff: { baseMs: 100, maxMs: 1000 } },
    ...extra,
  };
}

function expectEachStepOnce(points: Array<{ step: number; value: number }>, steps: number): void {
  expect(points).toHaveLength(steps);
  const seen = new Map<number, number>();
  for (const p of points) seen.set(p.step, (seen.get(p.step) ?? 0) + 1);
  for (let step = 0; step < steps; step++) expect(seen.get(step), `step ${step}`).toBe(1);
  for (const p of points) expect(p.value).toBe(p.step * 0.5);
}

describe('the server crashes mid-run and comes back', () => {
  it('ends up with every metric point exactly once; a run that ended during the outage is delivered by `sync`', async () => {
    const sink = problemSink();
    const run = await Tracker.start({ ...options({ onProblem: sink.onProblem }), experiment: 'outage', runName: 'crash-and-recover' });
    // A second run, which will end while the server is down.
    const early = problemSink();
    const ender = await Tracker.start({ ...options({ onProblem: early.onProblem }), experiment: 'outage', runName: 'end-while-down', params: { lr: 0.01 } });
    const artifact = join(ts.dir, 'summary.json');
    writeFileSync(artifact, '{"best_f1":0.61}');

    let step = 0;
    const log = async (until: number): Promise<void> => {
      for (; step < until; step++) {
        const t0 = performance.now();
        run.logMetric('loss', step * 0.5, step);
        run.logMetric('lr', step * 0.5, step);
        if (step < 600) ender.logMetric('val/f1', step * 0.5, step);
        // Never waits for the network (a generous bound: the machine may be busy).
        expect(performance.now() - t0).toBeLessThan(1000);
        if (step % 20 === 0) await yieldToLoop();
      }
    };
    await log(400);
    expect((await run.flush(30_000)).delivered).toBe(true);
    expect((await ender.flush(30_000)).delivered).toBe(true);

    await crashServer();
    await log(2000); // 3200 + 200 records while nothing answers: most only in the journal
    // Reported once requests have failed for 5 s (one failed request is not an outage).
    expect(await waitFor(() => sink.problems.some((p) => p.kind === 'server-unavailable'), 20_000)).toBe(true);

    // The second run ends now: its records stay in the journal.
    ender.setTag('emseg.best', 'epoch-12');
    const upload = ender.logArtifact(artifact, 'reports');
    const ended = await ender.end('FINISHED', { timeoutMs: 1500 });
    expect(ended.delivered).toBe(false);
    expect(ended.pendingRecords).toBeGreaterThanOrEqual(202); // 200 points, the tag, the status
    expect(ended.journalPath).toBe(ender.journalPath);
    // The upload did not keep its caller waiting: journaled, deferred to `sync`.
    expect(await upload).toEqual({ uploaded: [], deferred: ['reports/summary.json'], failed: [] });
    const undelivered = early.problems.find((p) => p.kind === 'undelivered');
    expect(undelivered?.message).toContain(`nx run tracking:sync -- --journal ${ender.journalPath}`);
    expect(existsSync(ender.journalPath)).toBe(true);

    await restartServer();
    await log(2100);
    const done = await run.end('FINISHED');
    expect(done).toMatchObject({ delivered: true, pendingRecords: 0 });
    expect(sink.problems.map((p) => p.kind)).toContain('recovered');

    const client = new MlflowClient({ trackingUri: server.uri });
    expectEachStepOnce(await client.getMetricHistory(run.id, 'loss'), 2100);
    expectEachStepOnce(await client.getMetricHistory(run.id, 'lr'), 2100);
    expect((await client.getRun(run.id)).info.status).toBe('FINISHED');
    expect(existsSync(run.journalPath)).toBe(false);

    // Later, `sync` delivers what the second run left behind.
    const cli = join(REPO_ROOT, 'libs/tracking/dist/cli/sync.js');
    const { stdout } = await run$(process.execPath, [cli, '--journal', ts.journalDir, '--timeout', '60'], { cwd: REPO_ROOT });
    expect(stdout).toContain(`run ${ender.id}`);
    expect(stdout).toContain('complete, journal removed');
    expect(existsSync(ender.journalPath)).toBe(false);
    expectEachStepOnce(await client.getMetricHistory(ender.id, 'val/f1'), 600);
    const stored = await client.getRun(ender.id);
    expect(stored.info.status).toBe('FINISHED');
    expect(stored.tags['emseg.best']).toBe('epoch-12');
    expect(stored.params).toEqual({ lr: '0.01' });
    expect(await client.listArtifacts(ender.id, 'reports')).toEqual([{ path: 'reports/summary.json', isDir: false, fileSize: 16 }]);

    // Nothing left to do: a second sync finds no journal, exit status 0.
    const again = await run$(process.execPath, [cli, '--journal', ts.journalDir], { cwd: REPO_ROOT });
    expect(again.stdout).toContain('no journals found');
  });

  it('a training process awaiting logArtifact while the server is SIGKILLed goes on, ends with its true status, and sync delivers the rest', async () => {
    const model = join(ts.dir, 'model.bin');
    writeFileSync(model, 'weights');
    // The app's pattern: handleProcessEvents off, `await run.logArtifact(...)` mid-training.
    const script = `
      const [dist, uri, journalDir, model] = process.argv.slice(1);
      const { Tracker } = await import(dist);
      const run = await Tracker.start({ trackingUri: uri, env: {}, journalDir, experiment: 'outage', runName: 'await-artifact',
        handleProcessEvents: false, flushTimeoutMs: 2000, delivery: { tickMs: 50 } });
      console.log('run ' + run.id);
      for (let step = 0; step < 10; step++) run.logMetric('loss', step * 0.5, step);
      await run.flush(10000);
      console.log('ready');
      while (await run.client.health(500)) await new Promise((r) => setTimeout(r, 100));
      const uploaded = await run.logArtifact(model, 'model');
      console.log('artifact ' + JSON.stringify(uploaded));
      for (let step = 10; step < 20; step++) run.logMetric('loss', step * 0.5, step);
      const ended = await run.end('FINISHED');
      console.log('ended ' + ended.status + ' ' + ended.delivered);
    `;
    const child = execFile(process.execPath, [
      '--input-type=module',
      '-e',
      script,
      join(REPO_ROOT, 'libs/tracking/dist/index.js'),
      server.uri,
      ts.journalDir,
      model,
    ]);
    let stdout = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    expect(await waitFor(() => stdout.includes('ready\n'), 60_000)).toBe(true);
    await crashServer();
    const code = await exited;

    // Before: the await never settled, Node drained its event loop and exited 0 right there,
    // and the exit hook journaled the run as FINISHED.
    expect(code).toBe(0);
    expect(stdout).toContain('artifact {"uploaded":[],"deferred":["model/model.bin"],"failed":[]}');
    expect(stdout).toContain('ended FINISHED false');
    const runId = /^run (\w+)$/m.exec(stdout)![1];

    await restartServer();
    const cli = join(REPO_ROOT, 'libs/tracking/dist/cli/sync.js');
    const { stdout: synced } = await run$(process.execPath, [cli, '--journal', join(ts.journalDir, `${runId}.jsonl`), '--timeout', '60'], { cwd: REPO_ROOT });
    expect(synced).toContain('complete, journal removed');
    const client = new MlflowClient({ trackingUri: server.uri });
    expect((await client.getRun(runId)).info.status).toBe('FINISHED');
    expectEachStepOnce(await client.getMetricHistory(runId, 'loss'), 20);
    expect(await client.listArtifacts(runId, 'model')).toEqual([{ path: 'model/model.bin', isDir: false, fileSize: 7 }]);
  });
});

describe('the sync CLI', () => {
  it('states its exit codes in --help: 0 delivered, 1 not delivered or unreadable, 2 usage', async () => {
    const cli = join(REPO_ROOT, 'libs/tracking/dist/cli/sync.js');
    const exitOf = (args: string[]): Promise<{ code: number; out: string }> =>
      run$(process.execPath, [cli, ...args], { cwd: REPO_ROOT }).then(
        (r) => ({ code: 0, out: r.stdout + r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
      );
    const help = await exitOf(['--help']);
    expect(help.code).toBe(0);
    expect(help.out.replace(/\s+/g, ' ')).toContain('Exit codes: 0 done, 1 bad input or failed work, 2 usage error');
    expect((await exitOf(['--journal', ts.journalDir, '--no-such-flag'])).code).toBe(2);
    const missing = await exitOf(['--journal', join(ts.dir, 'no-such-journal.jsonl')]);
    expect(missing.code).toBe(1);
    expect(missing.out).toContain('no-such-journal.jsonl does not exist');
  });
});
