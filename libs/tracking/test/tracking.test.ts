/**
 * Runs logged through the client, read back through the real server's REST API: every param,
 * tag, metric point, dataset input and artifact byte; nested runs, search, downloads by runs:/
 * URI; idempotent replays; bad input; secrets.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  experimentUiUrl,
  freeLoopbackPort,
  MlflowApiError,
  MlflowClient,
  MlflowUnreachableError,
  NotMlflowServerError,
  readJournal,
  runUiUrl,
  syncJournal,
  Tracker,
  TrackingInputError,
  type TrackedRun,
  type TrackerOptions,
} from '@emseg/tracking';
import { problemSink, startTestServer, type TestServer } from './support.js';

let ts: TestServer;
let client: MlflowClient;

beforeAll(async () => {
  ts = await startTestServer('tracking');
  client = new MlflowClient({ trackingUri: ts.server.uri });
});
afterAll(async () => ts?.cleanup());

function options(extra: Partial<TrackerOptions> = {}): TrackerOptions {
  return { trackingUri: ts.server.uri, env: {}, journalDir: ts.journalDir, handleProcessEvents: false, ...extra };
}

describe('a run reads back exactly as it was logged', () => {
  let run: TrackedRun;
  const files = () => join(ts.dir, 'files');
  const bundle = () => join(files(), 'encoder-bundle');
  let bigBytes: Buffer;
  let smallBytes: Buffer;

  beforeAll(async () => {
    mkdirSync(join(bundle(), 'weights'), { recursive: true });
    bigBytes = randomBytes(3 * 1024 * 1024 + 17);
    smallBytes = randomBytes(1000);
    writeFileSync(join(files(), 'checkpoint.bin'), bigBytes);
    writeFileSync(join(bundle(), 'model.json'), '{"format":"emseg-encoder"}');
    writeFileSync(join(bundle(), 'weights', 'group1-shard1of1.bin'), smallBytes);
    writeFileSync(join(files(), 'preview.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]));

    const sink = problemSink();
    run = await Tracker.start({
      ...options({ onProblem: sink.onProblem }),
      experiment: 'roundtrip',
      runName: 'unet-r50-roundtrip',
      description: 'U-Net with a MoCoV2 encoder',
      tags: { 'emseg.backend.name': 'tensorflow', 'emseg.kind': 'finetune' },
      params: { lr: 0.001, batch_size: 16, milestones: [120, 160], encoder: 'resnet50' },
    });
    for (let step = 0; step < 1500; step++) {
      run.logMetric('train/loss', 1 / (step + 1), step);
      if (step % 100 === 0) run.logMetrics({ 'val/f1': step / 1500, 'val/loss': 2 - step / 1500 }, step);
      if (step % 250 === 0) await new Promise(setImmediate);
    }
    run.logMetric('diverged', NaN, 3);
    run.logParams({ lr: 0.001, 'aug.flip': true }); // same lr again: fine
    run.setTags({ 'emseg.phase': 'done' });
    run.logInput({ name: 'urisc-track2-train', digest: 'a1b2c3d4', source: '/data/urisc/Track2/train', context: 'training' });
    run.logInput({ name: 'urisc-track2-train', digest: 'a1b2c3d4', source: '/data/urisc/Track2/train', context: 'training' });
    const uploads = await Promise.all([
      run.logArtifact(join(files(), 'checkpoint.bin'), 'checkpoints'),
      run.logArtifact(bundle(), 'encoders'),
      run.logArtifact(join(files(), 'preview.png')),
      run.logArtifactData(JSON.stringify({ lr: 0.001 }), 'config/run.json'),
    ]);
    expect(uploads.flatMap((u) => u.failed)).toEqual([]);
    const ended = await run.end('FINISHED');
    expect(ended).toMatchObject({ status: 'FINISHED', delivered: true, pendingRecords: 0, pendingArtifacts: 0 });
    expect(sink.problems).toEqual([]);
  });

  it('has its status, params and tags', async () => {
    const stored = await client.getRun(run.id);
    expect(stored.info.status).toBe('FINISHED');
    expect(stored.info.endTime).toBeGreaterThanOrEqual(stored.info.startTime);
    expect(stored.info.runName).toBe('unet-r50-roundtrip');
    expect(stored.params).toEqual({ lr: '0.001', batch_size: '16', milestones: '[120,160]', encoder: 'resnet50', 'aug.flip': 'true' });
    expect(stored.tags).toMatchObject({
      'mlflow.runName': 'unet-r50-roundtrip',
      'mlflow.note.content': 'U-Net with a MoCoV2 encoder',
      'mlflow.source.type': 'LOCAL',
      'emseg.backend.name': 'tensorflow',
      'emseg.kind': 'finetune',
      'emseg.phase': 'done',
    });
    expect(stored.tags['mlflow.user']).toBeTruthy();
    expect(stored.tags['mlflow.source.name']).toBeTruthy();
    expect(stored.tags['mlflow.source.git.commit']).toMatch(/^[0-9a-f]{40}$/);
  });

  it('has every metric point once, with its value and step', async () => {
    const loss = await client.getMetricHistory(run.id, 'train/loss');
    expect(loss).toHaveLength(1500);
    const byStep = new Map(loss.map((p) => [p.step, p.value]));
    for (let step = 0; step < 1500; step++) expect(byStep.get(step)).toBe(1 / (step + 1));
    const f1 = await client.getMetricHistory(run.id, 'val/f1');
    expect(f1.map((p) => p.step)).toEqual(Array.from({ length: 15 }, (_, i) => i * 100));
    const nan = await client.getMetricHistory(run.id, 'diverged');
    expect(nan).toHaveLength(1);
    expect(nan[0].value).toBeNaN();
  });

  it('has its dataset input once', async () => {
    const stored = await client.getRun(run.id);
    expect(stored.inputs).toEqual([
      {
        dataset: { name: 'urisc-track2-train', digest: 'a1b2c3d4', sourceType: 'local', source: '{"uri":"/data/urisc/Track2/train"}' },
        tags: { 'mlflow.data.context': 'training' },
      },
    ]);
  });

  it('has every artifact byte for byte, and downloads them by run id and runs:/ URI', async () => {
    const listing = await client.listArtifacts(run.id);
    expect(listing.map((f) => f.path).sort()).toEqual(['checkpoints', 'config', 'encoders', 'preview.png']);
    const dest = join(ts.dir, 'download');
    const tracker = await Tracker.connect(options());
    try {
      const checkpoint = await tracker.downloadArtifacts(run.id, 'checkpoints/checkpoint.bin', dest);
      expect(checkpoint).toBe(join(dest, 'checkpoints', 'checkpoint.bin'));
      expect(readFileSync(checkpoint).equals(bigBytes)).toBe(true);
      const encoder = await tracker.downloadRunsUri(`runs:/${run.id}/encoders/encoder-bundle`, dest);
      expect(encoder).toBe(join(dest, 'encoders', 'encoder-bundle'));
      expect(readFileSync(join(encoder, 'model.json'), 'utf8')).toBe('{"format":"emseg-encoder"}');
      expect(readFileSync(join(encoder, 'weights', 'group1-shard1of1.bin')).equals(smallBytes)).toBe(true);
      expect(readFileSync(await tracker.downloadArtifacts(run.id, 'config/run.json', dest), 'utf8')).toBe('{"lr":0.001}');
      expect(readFileSync(await tracker.downloadArtifacts(run.id, 'preview.png', dest))[0]).toBe(0x89);
      await expect(tracker.downloadArtifacts(run.id, 'nothing/here.bin', dest)).rejects.toThrow(`run ${run.id} has no artifact 'nothing/here.bin'`);
    } finally {
      await tracker.close();
    }
  });

  it('deleted its journal once everything was delivered', () => {
    expect(existsSync(run.journalPath)).toBe(false);
  });
});

describe('nesting, search and lookup', () => {
  it('nests child runs under a parent and finds them again', async () => {
    const tracker = await Tracker.connect(options());
    const parent = await tracker.startRun({ experiment: 'sweep', runName: 'sweep', tags: { 'emseg.kind': 'sweep' } });
    const childA = await parent.startChild({ runName: 'lr-1e-3', params: { lr: 0.001 } });
    const childB = await parent.startChild({ runName: 'lr-1e-2', params: { lr: 0.01 } });
    childA.logMetric('val/f1', 0.61, 10);
    childB.logMetric('val/f1', 0.57, 10);
    await childA.end();
    // childB is still open: ending the parent ends it with the parent's status.
    await parent.end('FINISHED');
    await tracker.close();

    const children = await client.searchRuns({
      experimentIds: [parent.experimentId],
      filter: `tags.mlflow.parentRunId = '${parent.id}'`,
      orderBy: ['metrics.`val/f1` DESC'],
    });
    expect(children.map((r) => r.info.runName)).toEqual(['lr-1e-3', 'lr-1e-2']);
    expect(children.map((r) => r.info.status)).toEqual(['FINISHED', 'FINISHED']);
    expect(children[0].metrics).toEqual([expect.objectContaining({ key: 'val/f1', value: 0.61, step: 10 })]);
    const byKind = await client.searchRuns({ experimentIds: [parent.experimentId], filter: `tags."emseg.kind" = 'sweep'` });
    expect(byKind.map((r) => r.info.runId)).toEqual([parent.id]);
  });
});

describe('duplicate delivery stores nothing twice', () => {
  it('replaying a fully delivered journal (all acknowledgements lost) changes nothing on the server', async () => {
    const run = await Tracker.start({ ...options({ keepJournal: true }), experiment: 'replay', params: { seed: 7 } });
    for (let step = 0; step < 300; step++) run.logMetric('loss', Math.sin(step), step);
    run.logMetric('loss', 0.5, 300);
    run.logMetric('loss', 0.5, 300, Date.now() + 1); // a different point at the same step (new timestamp): kept
    run.setTag('phase', 'train');
    run.logInput({ name: 'cem500k', digest: 'ffee', source: '/data/cem500k' });
    const notes = join(ts.dir, 'notes.txt');
    writeFileSync(notes, 'abc');
    await run.logArtifact(notes);
    const ended = await run.end();
    expect(ended.delivered).toBe(true);
    const before = await client.getRun(run.id);
    const historyBefore = await client.getMetricHistory(run.id, 'loss');
    expect(historyBefore).toHaveLength(302);

    // Simulate a crash after delivery but before the acknowledgements reached the disk.
    const lines = readFileSync(run.journalPath, 'utf8')
      .split('\n')
      .filter((l) => !/^\{"(ack|done)"/.test(l));
    writeFileSync(run.journalPath, lines.join('\n'));
    const state = readJournal(run.journalPath);
    expect(state.pendingRecords.length).toBeGreaterThan(300);
    expect(state.pendingArtifacts.map((a) => a.artifactPath)).toEqual(['notes.txt']);
    const report = await syncJournal(run.journalPath, { env: {}, keep: true });
    expect(report).toMatchObject({ complete: true, deliveredRecords: state.pendingRecords.length, uploadedArtifacts: 1, rejectedRecords: 0 });
    expect(report.problems).toEqual([]);

    const after = await client.getRun(run.id);
    expect(await client.getMetricHistory(run.id, 'loss')).toEqual(historyBefore);
    expect(after.params).toEqual(before.params);
    expect(after.tags).toEqual(before.tags);
    expect(after.inputs).toEqual(before.inputs);
    expect(after.info.status).toBe('FINISHED');
    expect(after.info.endTime).toBe(before.info.endTime);
    expect(await client.listArtifacts(run.id)).toEqual([{ path: 'notes.txt', isDir: false, fileSize: 3 }]);
    rmSync(run.journalPath);
  });
});

describe('artifacts are pinned when logged', () => {
  it('uploads the content a file had when logArtifact was called, even if it is atomically replaced before the upload', async () => {
    const dir = join(ts.dir, 'pinned');
    mkdirSync(dir, { recursive: true });
    const small = join(dir, 'last.json');
    const big = join(dir, 'last.ckpt');
    const v1 = randomBytes(2 * 1024 * 1024);
    writeFileSync(small, 'epoch 1');
    writeFileSync(big, v1);
    const run = await Tracker.start({ ...options(), experiment: 'pinned' });
    const uploads = [run.logArtifact(small, 'ckpt'), run.logArtifact(big, 'ckpt')];
    // The next epoch overwrites both, the way checkpoints are written (temp file + rename).
    writeFileSync(`${small}.tmp`, 'epoch 2');
    renameSync(`${small}.tmp`, small);
    writeFileSync(`${big}.tmp`, randomBytes(1024));
    renameSync(`${big}.tmp`, big);
    const results = await Promise.all(uploads);
    expect(results.map((r) => r.uploaded)).toEqual([['ckpt/last.json'], ['ckpt/last.ckpt']]);
    await run.end();
    const dest = join(ts.dir, 'pinned-download');
    await client.downloadArtifact(run.artifactUri, 'ckpt/last.json', join(dest, 'last.json'));
    await client.downloadArtifact(run.artifactUri, 'ckpt/last.ckpt', join(dest, 'last.ckpt'));
    expect(readFileSync(join(dest, 'last.json'), 'utf8')).toBe('epoch 1');
    expect(readFileSync(join(dest, 'last.ckpt')).equals(v1)).toBe(true);
  });
});

describe('bad input', () => {
  it('fails start() with a clear error and creates no run when a name or param is invalid', async () => {
    const cases: Array<[Parameters<typeof Tracker.start>[0], RegExp]> = [
      [{ experiment: 'bad-start', params: { 'lr@1': 1 } }, /invalid param key "lr@1": names may only contain/],
      [{ experiment: 'bad-start', params: { notes: 'x'.repeat(6001) } }, /invalid param 'notes' .*6001 characters, MLflow's limit is 6000/],
      [{ experiment: 'bad-start', tags: { 'a/../b': 'x' } }, /invalid tag key "a\/\.\.\/b".*resolves to "b"/],
      [{ experiment: '' }, /invalid experiment name "": expected a non-empty string/],
      [{ experiment: 'bad-start', parentRunId: 'not a run id' }, /invalid parentRunId "not a run id"/],
    ];
    for (const [extra, message] of cases) {
      await expect(Tracker.start({ ...options(), ...extra })).rejects.toThrow(message);
    }
    await expect(Tracker.start({ ...options(), experiment: 'bad-start', params: { 'x y!': 1 } })).rejects.toBeInstanceOf(TrackingInputError);
    expect(await client.getExperimentByName('bad-start')).toBeUndefined();
  });

  it('never throws from training-side calls: bad keys, values and steps are reported and dropped', async () => {
    const sink = problemSink();
    const run = await Tracker.start({ ...options({ onProblem: sink.onProblem }), experiment: 'bad-calls' });
    const calls: Array<() => unknown> = [
      () => run.logMetric('val loss!', 1, 0),
      () => run.logMetric('loss', 'high' as unknown as number, 0),
      () => run.logMetric('loss', 1, 0.5),
      () => run.logParam('comment', 'y'.repeat(7000)),
      () => run.logParam('bad/../key', 1),
      () => run.setTag('t', 'z'.repeat(9000)),
      () => run.logInput({ name: 'd', digest: 'x'.repeat(40), source: '/d' }),
      () => run.logMetric('loss', 0.3, 1),
    ];
    for (const call of calls) expect(call).not.toThrow();
    run.logParam('lr', 0.1);
    run.logParam('lr', 0.2); // params are immutable
    const missing = await run.logArtifact(join(ts.dir, 'no-such-file.bin'));
    expect(missing.uploaded).toEqual([]);
    expect(missing.failed[0].reason).toContain('no-such-file.bin');
    const badPath = await run.logArtifactData('x', '../escape.txt');
    expect(badPath.failed).toHaveLength(1);
    await run.end();
    expect(() => run.logMetric('loss', 1, 2)).not.toThrow();

    const kinds = sink.problems.map((p) => p.kind);
    expect(kinds.filter((k) => k === 'invalid-input').length).toBeGreaterThanOrEqual(8);
    expect(kinds).toContain('rejected');
    expect(kinds).toContain('after-end');
    const text = sink.problems.map((p) => p.message).join('\n');
    expect(text).toContain('invalid metric key "val loss!"');
    expect(text).toContain("invalid metric 'loss' step 0.5: expected an integer");
    expect(text).toContain("invalid param 'comment'");
    expect(text).toContain("param 'lr' of run");
    expect(text).toContain('digest');

    const stored = await client.getRun(run.id);
    expect(stored.params).toEqual({ lr: '0.1' });
    expect(await client.getMetricHistory(run.id, 'loss')).toEqual([expect.objectContaining({ value: 0.3, step: 1 })]);
  });

  it('reports an unreachable tracking URI at start clearly and quickly', async () => {
    const port = await freeLoopbackPort(); // nothing listens there
    const started = Date.now();
    const err = await Tracker.start({ ...options({ trackingUri: `http://127.0.0.1:${port}`, connectTimeoutMs: 1500 }), experiment: 'x' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MlflowUnreachableError);
    const message = (err as Error).message;
    expect(message).toContain(`cannot reach the MLflow tracking server at http://127.0.0.1:${port}`);
    expect(message).toContain('ECONNREFUSED');
    expect(message).toContain('npm run mlflow');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('says a URI that answers with an HTML 404 page is not an MLflow server, without printing the page', async () => {
    const page = '<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1>' + 'x'.repeat(2000) + '</body></html>';
    const web: Server = createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page);
    });
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    const uri = `http://127.0.0.1:${(web.address() as AddressInfo).port}`;
    try {
      const err = await Tracker.start({ ...options({ trackingUri: uri }), experiment: 'x' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(NotMlflowServerError);
      const message = (err as Error).message;
      expect(message).toContain(`${uri} does not look like an MLflow tracking server`);
      expect(message).toContain('answered 404 with an HTML page (text/html; charset=utf-8)');
      expect(message).toContain('MLFLOW_TRACKING_URI');
      expect(message).not.toContain('<');
      expect(message.length).toBeLessThan(500);
    } finally {
      await new Promise((resolve) => web.close(resolve));
    }
  });

  it('refuses a non-http tracking URI from the environment with a hint', async () => {
    await expect(Tracker.start({ env: { MLFLOW_TRACKING_URI: 'file:///tmp/mlruns' }, handleProcessEvents: false })).rejects.toThrow(/needs an http\(s\) URL/);
  });

  it('turns server-side refusals into MlflowApiError with the endpoint and MLflow error code', async () => {
    const err = await client.getRun('0123456789abcdef0123456789abcdef').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MlflowApiError);
    expect((err as MlflowApiError).status).toBe(404);
    expect((err as MlflowApiError).errorCode).toBe('RESOURCE_DOES_NOT_EXIST');
    expect((err as Error).message).toContain('GET runs/get');
  });
});

describe('the MLflow UI', () => {
  it('opens emseg experiments as model training (experiment kind tag), also existing ones without the tag', async () => {
    const run = await Tracker.start({ ...options(), experiment: 'ui-kind-new' });
    await run.end();
    expect((await client.getExperimentByName('ui-kind-new'))?.tags['mlflow.experimentKind']).toBe('custom_model_development');

    const untagged = await client.createExperiment('ui-kind-existing');
    expect((await client.getExperiment(untagged)).tags['mlflow.experimentKind']).toBeUndefined();
    await (await Tracker.start({ ...options(), experiment: 'ui-kind-existing' })).end();
    expect((await client.getExperiment(untagged)).tags['mlflow.experimentKind']).toBe('custom_model_development');

    // A kind someone chose is kept.
    const chosen = await client.createExperiment('ui-kind-chosen', { 'mlflow.experimentKind': 'genai_development' });
    await (await Tracker.start({ ...options(), experiment: 'ui-kind-chosen' })).end();
    expect((await client.getExperiment(chosen)).tags['mlflow.experimentKind']).toBe('genai_development');
  });

  it('links to a run and to the runs table of its experiment', () => {
    expect(runUiUrl('http://127.0.0.1:5000/', '7', 'ab12cd')).toBe('http://127.0.0.1:5000/#/experiments/7/runs/ab12cd');
    expect(experimentUiUrl('http://127.0.0.1:5000', '7')).toBe('http://127.0.0.1:5000/#/experiments/7/runs');
    expect(runUiUrl('https://user:secret@mlflow.example.org/prefix', '7', 'ab12cd')).toBe('https://mlflow.example.org/prefix/#/experiments/7/runs/ab12cd');
  });
});

describe('secrets', () => {
  it('keeps the token and password out of params, tags, journal, problems and errors', async () => {
    const token = 'tok-9f8e7d6c5b4a';
    const password = 'pw-hunter2-xyz';
    const sink = problemSink();
    const run = await Tracker.start({
      ...options({ token, keepJournal: true, onProblem: sink.onProblem }),
      experiment: 'secrets',
      params: { command: `train --token ${token}`, db_password: password, lr: 0.1 },
      tags: { note: `password is ${token}` },
    });
    run.logParam('api_key', 'abcd-1234-efgh');
    run.logMetric(`bad ${token}!`, 1, 0);
    await run.end();
    const stored = await client.getRun(run.id);
    expect(stored.params).toEqual({ command: 'train --token ***', db_password: '***', lr: '0.1', api_key: '***' });
    expect(stored.tags.note).toBe('password is ***');
    const everything = [JSON.stringify(stored), readFileSync(run.journalPath, 'utf8'), JSON.stringify(sink.problems)].join('\n');
    expect(everything).not.toContain(token);
    expect(everything).not.toContain(password);
    expect(everything).not.toContain('abcd-1234-efgh');
    rmSync(run.journalPath);
  });
});
