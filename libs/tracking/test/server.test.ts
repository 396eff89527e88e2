/**
 * The MLflow server process manager: a real `mlflow server` starts on a free loopback port with a
 * SQLite store, stops with its whole process group, never outlives the process that started it,
 * and fails with a clear error when it cannot start.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowClient, MlflowServerStartError, startMlflowServer } from '@emseg/tracking';
import { buildTrackingDist, liveGroupMembers, REPO_ROOT, tempDir, waitFor } from './support.js';

const dir = tempDir('server');
// A private cache, so this file sees the empty-store template being made and then used.
process.env.XDG_CACHE_HOME = join(dir, 'cache');
const templateDir = join(dir, 'cache', 'emseg', 'mlflow-store-template');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('startMlflowServer', () => {
  beforeAll(() => buildTrackingDist());

  it('serves a SQLite store with proxied artifacts, and stop() ends every process of the group', async () => {
    const storeDir = join(dir, 'store');
    const server = await startMlflowServer({ storeDir });
    try {
      expect(server.uri).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      console.log(`[server.test] mlflow server healthy after ${server.startupMs} ms`);
      const health = await fetch(`${server.uri}/health`);
      expect(health.status).toBe(200);
      expect(existsSync(join(storeDir, 'mlflow.db'))).toBe(true);
      expect(readFileSync(server.logFile, 'utf8')).toContain(`--port ${server.port}`);
      const client = new MlflowClient({ trackingUri: server.uri });
      const experiment = await client.getOrCreateExperiment('server-test');
      expect(experiment.artifactLocation).toBe(`mlflow-artifacts:/${experiment.experimentId}`);
      expect(liveGroupMembers(server.pgid).length).toBeGreaterThan(0);
      // The freshly migrated, still empty database became the template for new stores.
      expect(readdirSync(templateDir).filter((f) => f.endsWith('.db'))).toHaveLength(1);
    } finally {
      await server.stop();
    }
    expect(server.running).toBe(false);
    expect(liveGroupMembers(server.pgid)).toEqual([]);
    await expect(fetch(`${server.uri}/health`)).rejects.toThrow();
    await server.stop(); // idempotent
  });

  it('dies with the process that started it, even when that process is SIGKILLed', async () => {
    const script = `
      const { startMlflowServer } = await import(${JSON.stringify(join(REPO_ROOT, 'libs/tracking/dist/index.js'))});
      const server = await startMlflowServer({ storeDir: ${JSON.stringify(join(dir, 'orphan-store'))} });
      console.log(JSON.stringify({ pgid: server.pgid, uri: server.uri }));
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]);
      });
      child.on('exit', (code) => reject(new Error(`child exited early with ${code}`)));
    });
    const { pgid, uri } = JSON.parse(line) as { pgid: number; uri: string };
    expect((await fetch(`${uri}/health`)).status).toBe(200);
    // This store was seeded from the template: it holds only MLflow's Default experiment, not the
    // 'server-test' experiment the template's source store got right after it was copied.
    const seeded = await fetch(`${uri}/api/2.0/mlflow/experiments/search?max_results=100`);
    const { experiments } = (await seeded.json()) as { experiments: Array<{ name: string; artifact_location: string }> };
    expect(experiments).toEqual([expect.objectContaining({ name: 'Default', artifact_location: 'mlflow-artifacts:/0' })]);
    child.kill('SIGKILL');
    const gone = await waitFor(() => liveGroupMembers(pgid).length === 0, 20_000);
    expect(gone).toBe(true);
  });

  it('refuses a port that is taken, naming it', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const address = blocker.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    try {
      await expect(startMlflowServer({ storeDir: join(dir, 'taken'), port })).rejects.toThrow(new RegExp(`port ${port} on 127.0.0.1 is already in use`));
    } finally {
      blocker.close();
    }
  });

  it('says how to install MLflow when the executable is missing', async () => {
    await expect(startMlflowServer({ storeDir: join(dir, 'missing'), mlflowCommand: join(dir, 'no-such', 'mlflow') })).rejects.toThrow(
      /MLflow is not installed at .*no-such\/mlflow: run `node tools\/setup\/setup\.mjs`/,
    );
  });

  it('reports a server that exits during startup, with the end of its log', async () => {
    // The venv's Python in place of `mlflow`: `python server ...` exits at once with an error.
    const python = join(REPO_ROOT, '.venv', 'bin', 'python');
    const err = await startMlflowServer({ storeDir: join(dir, 'bad'), mlflowCommand: python }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MlflowServerStartError);
    const startError = err as MlflowServerStartError;
    expect(startError.message).toMatch(/mlflow server exited during startup on http:\/\/127\.0\.0\.1:\d+ \(store .*bad, log .*server\.log\)/);
    expect(startError.logTail).toContain("can't open file");
    expect(startError.message).toContain('last lines of the server log');
  });
});
