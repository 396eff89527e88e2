/**
 * A training step that blocks Node's event loop for longer than the server's keep-alive timeout
 * (uvicorn: 5 s) is a normal event, not an outage. While the loop is blocked the server closes the
 * idle pooled connection; without care, the next request goes out on it before Node has read the
 * close and fails with "UND_ERR_SOCKET: other side closed" (verified against the real server).
 *
 * The test server runs with a 1 s keep-alive timeout (UVICORN_TIMEOUT_KEEP_ALIVE, read by the
 * uvicorn command MLflow starts) instead of the default 5 s, so each block lasts 2.5 s, not 6.5 s:
 * the same close-while-blocked sequence, in less time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MlflowClient, Tracker } from '@emseg/tracking';
import { problemSink, startTestServer, type TestServer } from './support.js';

let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer('keepalive', { env: { UVICORN_TIMEOUT_KEEP_ALIVE: String(KEEP_ALIVE_S) } });
});
afterAll(async () => ts?.cleanup());

/** Blocks the event loop, as a long synchronous training step does. */
function blockEventLoop(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The test server's keep-alive timeout (uvicorn's default is 5 s). */
const KEEP_ALIVE_S = 1;
/** Longer than the server's keep-alive timeout, with the same 1.5 s of slack as 6.5 s has over 5 s. */
const LONGER_THAN_KEEP_ALIVE_MS = KEEP_ALIVE_S * 1000 + 1500;

describe('idle keep-alive connections closed by the server while the event loop is blocked', () => {
  it('a request right after the block succeeds (on a fresh connection)', async () => {
    const client = new MlflowClient({ trackingUri: ts.server.uri });
    for (let i = 0; i < 2; i++) {
      await client.getExperimentByName('Default'); // leaves an idle pooled connection
      blockEventLoop(LONGER_THAN_KEEP_ALIVE_MS);
      await expect(client.getExperimentByName('Default')).resolves.toMatchObject({ experimentId: '0' });
    }
  });

  it('a run delivers after the block without reporting any problem', async () => {
    const sink = problemSink();
    const run = await Tracker.start({
      trackingUri: ts.server.uri,
      env: {},
      journalDir: ts.journalDir,
      handleProcessEvents: false,
      onProblem: sink.onProblem,
      delivery: { tickMs: 50 },
      experiment: 'keepalive',
    });
    run.logMetric('loss', 1, 0);
    expect((await run.flush(10_000)).delivered).toBe(true);
    blockEventLoop(LONGER_THAN_KEEP_ALIVE_MS);
    run.logMetric('loss', 0.5, 1);
    // The timer tick that sends this point runs before Node reads the socket's close.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await run.end('FINISHED')).toMatchObject({ delivered: true });
    expect(sink.problems).toEqual([]);
    const client = new MlflowClient({ trackingUri: ts.server.uri });
    expect((await client.getMetricHistory(run.id, 'loss')).map((p) => p.step)).toEqual([0, 1]);
  });
});
