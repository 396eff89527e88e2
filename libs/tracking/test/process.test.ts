/**
 * Runs end properly when the training process is interrupted or crashes: SIGINT ends the run as
 * KILLED with everything logged so far, an uncaught error ends it as FAILED, and a process killed
 * with SIGKILL leaves a journal that `sync` delivers, ending the orphaned run as KILLED.
 * The training process is a real child Node process using the built library, as apps do.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowClient, syncJournal } from '@emseg/tracking';
import { buildTrackingDist, REPO_ROOT, startTestServer, type TestServer } from './support.js';

let ts: TestServer;
let client: MlflowClient;

beforeAll(async () => {
  buildTrackingDist();
  ts = await startTestServer('process');
  client = new MlflowClient({ trackingUri: ts.server.uri });
});
afterAll(async () => ts?.cleanup());

/**
 * A training loop in a child process: logs `loss` every 5 ms and prints, per step, whether the
 * run still accepted it. Mode 'crash' throws after 50 steps; 'flush' flushes at step 100.
 */
const TRAINER = `
const [dist, uri, journalDir, mode] = process.argv.slice(1);
const { Tracker } = await import(dist);
const run = await Tracker.start({ trackingUri: uri, env: {}, journalDir, experiment: 'process-events', runName: mode, delivery: { tickMs: 50 } });
console.log('run ' + run.id + ' ' + run.journalPath);
let step = 0;
async function train() {
  for (;;) {
    const accepted = run.lifecycle === 'running';
    run.logMetric('loss', step * 0.5, step);
    console.log('logged ' + step + ' ' + accepted);
    step++;
    if (mode === 'crash' && step === 50) throw new Error('boom: out of memory in conv2d');
    if (mode === 'flush' && step === 101) { await run.flush(30000); console.log('flushed'); }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
train();
`;

interface Trainer {
  runId: string;
  journal: string;
  accepted: number[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
  /** Resolves when a line matching `pattern` was printed. */
  waitFor(pattern: RegExp): Promise<void>;
  kill(signal: NodeJS.Signals): void;
}

async function startTrainer(mode: string): Promise<Trainer> {
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', TRAINER, join(REPO_ROOT, 'libs/tracking/dist/index.js'), ts.server.uri, ts.journalDir, mode],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const lines: string[] = [];
  const waiters: Array<{ pattern: RegExp; resolve: () => void }> = [];
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  let partial = '';
  child.stdout.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const complete = partial.split('\n');
    partial = complete.pop() ?? '';
    for (const line of complete) {
      lines.push(line);
      for (const w of waiters.filter((x) => x.pattern.test(line))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  const waitFor = (pattern: RegExp): Promise<void> =>
    lines.some((l) => pattern.test(l))
      ? Promise.resolve()
      : Promise.race([
          new Promise<void>((resolve) => waiters.push({ pattern, resolve })),
          exit.then((e) => {
            throw new Error(`trainer exited (${e.code ?? e.signal}) before printing ${pattern}:\n${e.stderr}`);
          }),
        ]);
  await waitFor(/^run /);
  const [, runId, journal] = lines.find((l) => l.startsWith('run '))!.split(' ');
  return {
    runId,
    journal,
    get accepted() {
      return lines.filter((l) => /^logged \d+ true$/.test(l)).map((l) => Number(l.split(' ')[1]));
    },
    exit,
    waitFor,
    kill: (signal) => child.kill(signal),
  };
}

async function steps(runId: string): Promise<number[]> {
  return (await client.getMetricHistory(runId, 'loss')).map((p) => p.step).sort((a, b) => a - b);
}

describe('process events end runs', () => {
  it('SIGINT ends the run as KILLED with every point logged before it, and the process still dies of SIGINT', async () => {
    const trainer = await startTrainer('sigint');
    await trainer.waitFor(/^logged 120 /);
    trainer.kill('SIGINT');
    const exit = await trainer.exit;
    expect(exit.signal).toBe('SIGINT');
    expect(exit.stderr).toContain('SIGINT: ending 1 MLflow run(s) as KILLED');
    const run = await client.getRun(trainer.runId);
    expect(run.info.status).toBe('KILLED');
    expect(run.info.endTime).toBeGreaterThan(run.info.startTime);
    expect(run.tags['emseg.error']).toBe('received SIGINT');
    const accepted = trainer.accepted;
    expect(accepted.length).toBeGreaterThan(120);
    expect(await steps(trainer.runId)).toEqual(accepted);
  });

  it('an uncaught error ends the run as FAILED with the error, prints it, and exits 1', async () => {
    const trainer = await startTrainer('crash');
    const exit = await trainer.exit;
    expect(exit.code).toBe(1);
    expect(exit.stderr).toContain('boom: out of memory in conv2d');
    const run = await client.getRun(trainer.runId);
    expect(run.info.status).toBe('FAILED');
    expect(run.tags['emseg.error']).toContain('Error: boom: out of memory in conv2d');
    expect(await steps(trainer.runId)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('after SIGKILL, sync delivers the journal and ends the orphaned run as KILLED', async () => {
    const trainer = await startTrainer('flush');
    await trainer.waitFor(/^flushed$/);
    await trainer.waitFor(/^logged 250 /);
    trainer.kill('SIGKILL');
    await trainer.exit;
    expect((await client.getRun(trainer.runId)).info.status).toBe('RUNNING');

    const report = await syncJournal(trainer.journal, { env: {} });
    expect(report).toMatchObject({ runId: trainer.runId, complete: true, removed: true, endedAs: 'KILLED' });
    expect((await client.getRun(trainer.runId)).info.status).toBe('KILLED');
    // Everything journaled before the kill is there once: a gap-free prefix of the steps,
    // at least up to the flush; at most the last timer tick (50 ms) was never journaled.
    const stored = await steps(trainer.runId);
    expect(stored.length).toBeGreaterThanOrEqual(101);
    expect(stored).toEqual(Array.from({ length: stored.length }, (_, i) => i));
  });

  it('a process that exits without ending its run (exit code 0) records it FAILED with the reason, never FINISHED', async () => {
    // Returns from its work without end(): Node drains the event loop and exits 0.
    const script = `
      const [dist, uri, journalDir] = process.argv.slice(1);
      const { Tracker } = await import(dist);
      const run = await Tracker.start({ trackingUri: uri, env: {}, journalDir, experiment: 'process-events', runName: 'never-ended', handleProcessEvents: false });
      console.log('run ' + run.id + ' ' + run.journalPath);
      run.logMetric('loss', 0.5, 1);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, join(REPO_ROOT, 'libs/tracking/dist/index.js'), ts.server.uri, ts.journalDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    expect(stderr).toContain('was never ended: recorded as FAILED');
    const [, runId, journal] = /^run (\w+) (\S+)$/m.exec(stdout)!;

    const report = await syncJournal(journal, { env: {} });
    expect(report).toMatchObject({ complete: true });
    expect(report.endedAs).toBeUndefined(); // the journal itself says FAILED
    const run = await client.getRun(runId);
    expect(run.info.status).toBe('FAILED');
    expect(run.tags['emseg.error']).toBe('the process exited (exit code 0) before ending the run');
    expect(await steps(runId)).toEqual([1]);
  });
});
