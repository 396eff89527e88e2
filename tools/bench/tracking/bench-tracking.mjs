#!/usr/bin/env node
// Benchmark of libs/tracking against a real local MLflow server; prints one JSON object.
//
//   node tools/bench/tracking/bench-tracking.mjs [--points 50000] [--steps 1500] [--step-ms 2] [--repeats 5]
//
// Measures
//  - server: startup time of `mlflow server` (fresh store, then the same store again);
//  - throughput: metric points per second through the client (logMetric -> journal -> log-batch ->
//    stored), next to raw runs/log-batch calls of 1000 points (what the server itself can take);
//  - training-loop overhead: a loop whose step is `--step-ms` of synchronous work (like a
//    tfjs-node step) plus one yield to the event loop, with and without logging 5 metrics per
//    step; the difference per step is what logging costs training (target: well under 1 ms).
//    Runs alternate to cancel drift; the median over repeats is reported, in wall-clock time and
//    in this process's CPU time (the latter includes delivering the records, and is what other
//    processes' load disturbs least).
//  - the cost of one logMetric call itself.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { values } = parseArgs({
  options: {
    points: { type: 'string', default: '50000' },
    steps: { type: 'string', default: '1500' },
    'step-ms': { type: 'string', default: '2' },
    repeats: { type: 'string', default: '5' },
  },
});
const POINTS = Number(values.points);
const STEPS = Number(values.steps);
const STEP_MS = Number(values['step-ms']);
const REPEATS = Number(values.repeats);

const tsc = spawnSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-b', join(ROOT, 'libs', 'tracking')], { cwd: ROOT, stdio: 'inherit' });
if (tsc.status !== 0) process.exit(1);
const { startMlflowServer, Tracker, MlflowClient } = await import(join(ROOT, 'libs', 'tracking', 'dist', 'index.js'));

const dir = mkdtempSync(join(tmpdir(), 'emseg-bench-tracking-'));
const storeDir = join(dir, 'store');
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const yieldToLoop = () => new Promise((r) => setImmediate(r));
const busy = (ms) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};
const load = () => loadavg()[0];

const result = {
  benchmark: 'tracking',
  node: process.version,
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model,
  loadAverageStart: load(),
  server: {},
  throughput: {},
  trainingLoop: {},
};

try {
  // ---------------------------------------------------------------- server startup
  let server = await startMlflowServer({ storeDir });
  result.server.startupMsFreshStore = server.startupMs;
  await server.stop();
  server = await startMlflowServer({ storeDir });
  result.server.startupMsExistingStore = server.startupMs;

  const options = { trackingUri: server.uri, env: {}, journalDir: join(dir, 'journal'), handleProcessEvents: false, onProblem: () => {} };

  // ---------------------------------------------------------------- raw server capacity
  const client = new MlflowClient({ trackingUri: server.uri });
  const experiment = await client.getOrCreateExperiment('bench-raw');
  const raw = await client.createRun({ experimentId: experiment.experimentId });
  const rawBatches = Math.max(5, Math.round(POINTS / 1000 / 5));
  let t = performance.now();
  for (let b = 0; b < rawBatches; b++) {
    const metrics = Array.from({ length: 1000 }, (_, i) => ({
      key: `m${i % 10}`,
      value: Math.random(),
      timestamp: Date.now(),
      step: b * 100 + Math.floor(i / 10),
    }));
    await client.logBatch(raw.info.runId, { metrics });
  }
  result.throughput.rawLogBatchPointsPerSec = Math.round((rawBatches * 1000) / ((performance.now() - t) / 1000));

  // ---------------------------------------------------------------- client throughput
  const run = await Tracker.start({ ...options, experiment: 'bench', runName: 'throughput' });
  t = performance.now();
  for (let i = 0; i < POINTS; i++) {
    run.logMetric(`m${i % 10}`, Math.random(), Math.floor(i / 10));
    if (i % 1000 === 999) await yieldToLoop();
  }
  const loggedMs = performance.now() - t;
  const flushed = await run.flush(600_000);
  const deliveredMs = performance.now() - t;
  await run.end();
  const stored = (await client.getMetricHistory(run.id, 'm0')).length * 10;
  result.throughput.points = POINTS;
  result.throughput.pointsStored = stored;
  result.throughput.delivered = flushed.delivered;
  result.throughput.clientPointsPerSec = Math.round(POINTS / (deliveredMs / 1000));
  result.throughput.loggingCallsPerSec = Math.round(POINTS / (loggedMs / 1000));

  // ---------------------------------------------------------------- logMetric call cost
  const callRun = await Tracker.start({ ...options, experiment: 'bench', runName: 'call-cost' });
  const CALLS = 10_000; // below the count that makes a call write the journal itself
  const callNs = [];
  for (let r = 0; r < 7; r++) {
    t = performance.now();
    for (let i = 0; i < CALLS; i++) callRun.logMetric('loss', i, r * CALLS + i);
    callNs.push(((performance.now() - t) * 1e6) / CALLS);
    await callRun.flush(600_000);
  }
  result.trainingLoop.logMetricCallNs = Math.round(median(callNs));
  await callRun.end();

  // ---------------------------------------------------------------- training-loop overhead
  const loop = async (runForLogging) => {
    const started = performance.now();
    const cpu = process.cpuUsage();
    for (let step = 0; step < STEPS; step++) {
      busy(STEP_MS);
      if (runForLogging) {
        runForLogging.logMetric('train/loss', 1 / (step + 1), step);
        runForLogging.logMetric('train/lr', 0.015, step);
        runForLogging.logMetric('train/grad_norm', Math.random(), step);
        runForLogging.logMetric('train/step_ms', STEP_MS, step);
        runForLogging.logMetric('train/queue_fill', step % 100, step);
      }
      await yieldToLoop();
    }
    const wallMs = performance.now() - started;
    if (runForLogging) await runForLogging.flush(600_000); // delivery's CPU work counts too
    const used = process.cpuUsage(cpu);
    return { wallMs, cpuMs: (used.user + used.system) / 1000 };
  };
  const overheads = [];
  const cpuOverheads = [];
  const baselines = [];
  for (let r = 0; r < REPEATS; r++) {
    const base = await loop(undefined);
    const loopRun = await Tracker.start({ ...options, experiment: 'bench', runName: `loop-${r}` });
    const withLogging = await loop(loopRun);
    await loopRun.end();
    baselines.push(base.wallMs / STEPS);
    overheads.push((withLogging.wallMs - base.wallMs) / STEPS);
    cpuOverheads.push((withLogging.cpuMs - base.cpuMs) / STEPS);
  }
  result.trainingLoop.steps = STEPS;
  result.trainingLoop.metricsPerStep = 5;
  result.trainingLoop.stepWorkMs = STEP_MS;
  result.trainingLoop.baselineStepMs = Number(median(baselines).toFixed(4));
  result.trainingLoop.overheadPerStepMs = Number(median(overheads).toFixed(4));
  result.trainingLoop.overheadPerStepMsAll = overheads.map((x) => Number(x.toFixed(4)));
  // CPU time this process spent on logging (timers, journal, JSON, HTTP) per step, delivery
  // included: less sensitive to other processes than the wall-clock difference.
  result.trainingLoop.cpuOverheadPerStepMs = Number(median(cpuOverheads).toFixed(4));
  result.trainingLoop.cpuOverheadPerStepMsAll = cpuOverheads.map((x) => Number(x.toFixed(4)));

  await server.stop();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
result.loadAverageEnd = load();
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
