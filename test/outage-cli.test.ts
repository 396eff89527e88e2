/**
 * An MLflow outage in the middle of training, through the built CLIs and a real server that is
 * SIGKILLed (its whole process group) once training has started: training goes on, finishes its
 * work (validation, test scoring, the model / encoder bundle), exits 0 saying it finished, and
 * once the server is back (restarted on the same store and port) and `sync` has run, MLflow has
 * the run FINISHED with everything it logged during the outage.
 *
 * The bug this guards against: `await run.logArtifacts(...)` never settled during the outage, the
 * retry timers let Node's event loop drain, the process exited 0 mid-training, and the exit hook
 * recorded the run as FINISHED.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSyntheticCrops, generateSyntheticUrisc } from '@emseg/data';
import { MlflowClient, startMlflowServer, type MlflowServer, type Run } from '@emseg/tracking';

const ROOT = resolve(__dirname, '..');
const PRETRAIN = join(ROOT, 'apps', 'pretrain', 'dist', 'main.js');
const FINETUNE = join(ROOT, 'apps', 'finetune', 'dist', 'main.js');
const SYNC = join(ROOT, 'libs', 'tracking', 'dist', 'cli', 'sync.js');
const work = mkdtempSync(join(tmpdir(), 'emseg-outage-e2e-'));
const storeDir = join(work, 'mlflow');
/** Where the CLIs keep their journals (EMSEG_MLFLOW_DIR/journal). */
const journalDir = join(work, 'local-store', 'journal');

let server: MlflowServer;
let crops: string;
let urisc: string;

interface Cli {
  stdout(): string;
  stderr(): string;
  /** Resolves when `pattern` appears on the stream; rejects if the CLI exits first. */
  waitFor(stream: 'stdout' | 'stderr', pattern: RegExp): Promise<void>;
  exit: Promise<number | null>;
}

function startCli(script: string, args: string[]): Cli {
  const child = spawn(process.execPath, [script, ...args], {
    cwd: ROOT,
    env: { ...process.env, MLFLOW_TRACKING_URI: '', EMSEG_MLFLOW_DIR: dirname(journalDir), EMSEG_FINETUNE_RUNS: join(work, 'finetune-runs') },
  });
  const out = { stdout: '', stderr: '' };
  const waiters: Array<{ stream: 'stdout' | 'stderr'; pattern: RegExp; resolve: () => void }> = [];
  const check = (): void => {
    for (const w of [...waiters]) {
      if (w.pattern.test(out[w.stream])) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  child.stdout.on('data', (d: Buffer) => ((out.stdout += d.toString()), check()));
  child.stderr.on('data', (d: Buffer) => ((out.stderr += d.toString()), check()));
  const exit = new Promise<number | null>((done) => child.on('close', (code) => done(code)));
  return {
    stdout: () => out.stdout,
    stderr: () => out.stderr,
    exit,
    waitFor: (stream, pattern) =>
      Promise.race([
        new Promise<void>((resolveWait) => {
          waiters.push({ stream, pattern, resolve: resolveWait });
          check();
        }),
        exit.then((code) => {
          throw new Error(`the CLI exited (${code}) before its ${stream} showed ${pattern}\n--- stdout\n${out.stdout}\n--- stderr\n${out.stderr}`);
        }),
      ]),
  };
}

/** SIGKILL to the server's whole process group, as a crash or an OOM kill would. */
async function crashServer(): Promise<void> {
  process.kill(-server.pgid, 'SIGKILL');
  const deadline = Date.now() + 15_000;
  while (server.running && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  expect(server.running).toBe(false);
}

/**
 * Runs a CLI against the server, kills the server once `killWhen` shows on stderr, restarts it
 * (same store, same port) once `restartWhen` shows on stdout, then runs `sync` on the journals.
 */
async function trainThroughOutage(
  script: string,
  args: string[],
  killWhen: RegExp,
  restartWhen: RegExp,
): Promise<{ code: number | null; stdout: string; stderr: string; run: Run; client: MlflowClient }> {
  const cli = startCli(script, [...args, '--tracking-uri', server.uri]);
  await cli.waitFor('stderr', killWhen);
  await crashServer();
  // The whole rest of the run (validation, model, test scoring) happens with no server.
  await cli.waitFor('stdout', restartWhen);
  server = await startMlflowServer({ storeDir, port: server.port });
  const code = await cli.exit;
  const sync = spawnSync(process.execPath, [SYNC, '--journal', journalDir, '--timeout', '60'], { cwd: ROOT, encoding: 'utf8' });
  expect(sync.status, `${sync.stdout}${sync.stderr}`).toBe(0);
  const runId = /MLflow run ([0-9a-f]{32})/.exec(cli.stderr())![1];
  const client = new MlflowClient({ trackingUri: server.uri });
  return { code, stdout: cli.stdout(), stderr: cli.stderr(), run: await client.getRun(runId), client };
}

beforeAll(async () => {
  // tsc itself, not through npx (which resolves the package first: a second or two for nothing).
  const build = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-b', 'libs/tracking', 'apps/finetune', 'apps/pretrain'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  if (build.status !== 0) throw new Error(`tsc -b failed:\n${build.stdout}${build.stderr}`);
  crops = join(work, 'crops');
  urisc = join(work, 'urisc');
  [server] = await Promise.all([
    startMlflowServer({ storeDir }),
    generateSyntheticCrops({ dir: crops, seed: 21, count: 32, size: 48 }),
    generateSyntheticUrisc({ dir: urisc, seed: 22, count: { train: 2, val: 1, test: 1 }, size: 128, cellSize: 80, lowContrastFraction: 0 }),
  ]);
});

afterAll(async () => {
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('an MLflow outage mid-run', () => {
  it('finetune urisc trains on, scores the test split, exits 0, and MLflow ends up with the FINISHED run, test_f1 and the model', async () => {
    const config = join(work, 'tiny-finetune.json');
    writeFileSync(
      config,
      JSON.stringify({
        extends: join(ROOT, 'configs', 'finetune', 'quick.json'),
        model: { decoderChannels: [32, 16, 16, 8, 8] },
        patches: { size: 64, stride: 64, perEpoch: 8, augmentation: 'none' },
        train: { batchSize: 2, steps: 20, checkpointEvery: 10, logEvery: 1 },
        validation: { every: 10, overlays: 1, overlaySize: 64 },
        inference: { tileSize: 128, overlap: 0, batchSize: 1 },
      }),
    );
    const out = join(work, 'finetune-runs', 'outage');
    const { code, stdout, stderr, run, client } = await trainThroughOutage(
      FINETUNE,
      ['urisc', '--config', config, '--data', urisc, '--encoder', 'random', '--out', out, '--experiment', 'outage-e2e', '--run-name', 'finetune-outage'],
      /^encoder: /m,
      /^fine-tuning finished/m,
    );
    expect(code, stderr).toBe(0);
    // The model was logged while the server was down: deferred to the journal, not awaited.
    expect(stderr).toMatch(/artifact file\(s\) of run [0-9a-f]+ \(model\//);
    expect(stdout).toContain('fine-tuning finished after 20/20 steps');
    expect(stdout).toMatch(/^test F1: /m);
    const checkpoints = /^checkpoints:\s+(\S+)/m.exec(stdout)![1];
    expect(
      readdirSync(checkpoints).some((name) => /20/.test(name)),
      `final checkpoint in ${checkpoints}: ${readdirSync(checkpoints).join(', ')}`,
    ).toBe(true);

    expect(run.info.status).toBe('FINISHED');
    expect(run.metrics.find((m) => m.key === 'test_f1')?.value).toBeGreaterThanOrEqual(0);
    expect((await client.getMetricHistory(run.info.runId, 'train_loss')).map((p) => p.step)).toContain(20);
    expect((await client.listArtifacts(run.info.runId, 'model')).length).toBeGreaterThan(0);
    expect((await client.listArtifacts(run.info.runId, 'overlays')).map((f) => f.path)).toEqual(['overlays/step-000010', 'overlays/step-000020']);
  });

  it('pretrain moco trains on, saves and records its encoder, exits 0, and MLflow ends up with the FINISHED run and the encoder', async () => {
    const tiny = ['data.cropSize=32', 'train.batchSize=8', 'moco.queueSize=32', 'moco.mlpHidden=64', 'moco.dim=32', 'train.logEvery=1', 'train.maxSteps=8'];
    const out = join(work, 'pretrain-runs', 'outage');
    const { code, stdout, stderr, run, client } = await trainThroughOutage(
      PRETRAIN,
      ['moco', '--data', crops, '--out', out, '--experiment', 'outage-e2e', '--run-name', 'pretrain-outage', ...tiny.flatMap((s) => ['--set', s])],
      /MLflow run [0-9a-f]{32}/,
      /^pretraining finished/m,
    );
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/artifact file\(s\) of run [0-9a-f]+ \(encoder\//);
    expect(stdout).toContain('pretraining finished after 8/8 steps');
    // latest.json: where the CLI says it recorded the run (beside the run folder), else the old place.
    const recorded = /^recorded in:\s+(\S+)/m.exec(stdout)?.[1];
    const candidates = [recorded, join(dirname(out), 'latest.json'), join(ROOT, '.emseg', 'runs', 'pretrain', 'latest.json')].filter((p): p is string => !!p);
    const latest = candidates.find((p) => existsSync(p) && (JSON.parse(readFileSync(p, 'utf8')) as { runId?: string }).runId === run.info.runId);
    expect(latest, `latest.json with run ${run.info.runId} in one of ${candidates.join(', ')}`).toBeDefined();

    expect(run.info.status).toBe('FINISHED');
    expect((await client.getMetricHistory(run.info.runId, 'loss')).map((p) => p.step)).toContain(8);
    expect((await client.listArtifacts(run.info.runId, 'encoder')).length).toBeGreaterThan(0);
  });
});
