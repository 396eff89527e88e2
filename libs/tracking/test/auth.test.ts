/**
 * Credentials against MLflow's real basic-auth app: a wrong token or password fails at start with
 * a clear error that never repeats the secret; the right username/password (from the
 * MLFLOW_TRACKING_* environment) logs and reads back.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowApiError, MlflowClient, Tracker } from '@emseg/tracking';
import { problemSink, startTestServer, tempDir, type TestServer } from './support.js';

const ADMIN_PASSWORD = 'adm1n-Passw0rd-emseg';
let ts: TestServer;

beforeAll(async () => {
  const configDir = tempDir('auth-config');
  const ini = join(configDir, 'basic_auth.ini');
  writeFileSync(
    ini,
    [
      '[mlflow]',
      'default_permission = EDIT',
      `database_uri = sqlite:///${join(configDir, 'basic_auth.db')}`,
      'admin_username = admin',
      'authorization_function = mlflow.server.auth:authenticate_request_basic_auth',
      '',
    ].join('\n'),
  );
  ts = await startTestServer('auth', {
    appName: 'basic-auth',
    env: { MLFLOW_AUTH_CONFIG_PATH: ini, MLFLOW_AUTH_ADMIN_PASSWORD: ADMIN_PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY: 'emseg-test-csrf-key' },
  });
});
afterAll(async () => ts?.cleanup());

async function startError(env: NodeJS.ProcessEnv): Promise<Error> {
  const err = await Tracker.start({
    env: { MLFLOW_TRACKING_URI: ts.server.uri, ...env },
    journalDir: ts.journalDir,
    handleProcessEvents: false,
    experiment: 'auth',
  }).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof Error)) throw new Error('expected start() to fail');
  return err;
}

describe('credentials', () => {
  it('refuses a wrong token with a clear 401 error that does not contain the token', async () => {
    const token = 'wrong-token-abcdef123456';
    const err = await startError({ MLFLOW_TRACKING_TOKEN: token });
    expect(err).toBeInstanceOf(MlflowApiError);
    expect((err as MlflowApiError).status).toBe(401);
    expect(err.message).toContain(`MLflow server ${ts.server.uri} answered 401`);
    expect(err.message).toContain('check MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD');
    expect(err.message).not.toContain(token);
  });

  it('refuses a wrong password the same way, without the password', async () => {
    const err = await startError({ MLFLOW_TRACKING_USERNAME: 'admin', MLFLOW_TRACKING_PASSWORD: 'not-the-password-42' });
    expect((err as MlflowApiError).status).toBe(401);
    expect(err.message).not.toContain('not-the-password-42');
  });

  it('logs with the right username and password from the environment, and keeps them out of the run', async () => {
    const sink = problemSink();
    const run = await Tracker.start({
      env: {
        MLFLOW_TRACKING_URI: ts.server.uri,
        MLFLOW_TRACKING_USERNAME: 'admin',
        MLFLOW_TRACKING_PASSWORD: ADMIN_PASSWORD,
        MLFLOW_EXPERIMENT_NAME: 'auth-ok',
      },
      journalDir: ts.journalDir,
      handleProcessEvents: false,
      onProblem: sink.onProblem,
      params: { note: `logged in with ${ADMIN_PASSWORD}` },
    });
    run.logMetric('loss', 0.25, 1);
    await run.logArtifactData('ok', 'auth.txt');
    expect((await run.end()).delivered).toBe(true);
    expect(sink.problems).toEqual([]);

    const client = new MlflowClient({ trackingUri: ts.server.uri, username: 'admin', password: ADMIN_PASSWORD });
    const stored = await client.getRun(run.id);
    expect((await client.getExperiment(run.experimentId)).name).toBe('auth-ok');
    expect(stored.params).toEqual({ note: 'logged in with ***' });
    expect(await client.getMetricHistory(run.id, 'loss')).toEqual([expect.objectContaining({ value: 0.25, step: 1 })]);
    expect(await client.listArtifacts(run.id)).toEqual([{ path: 'auth.txt', isDir: false, fileSize: 2 }]);
    // Without credentials the same server refuses to answer.
    await expect(new MlflowClient({ trackingUri: ts.server.uri }).getRun(run.id)).rejects.toMatchObject({ status: 401 });
  });
});
