/**
 * `benchmark`: CEM500K's evaluation protocol on one labelled task (Conrad & Narayan 2021): every
 * encoder fine-tuned with its weights frozen and trained whole, plus random init trained whole, at
 * the same config, budget and seed, each a `segment` run (child of one MLflow parent run), then one
 * results table (stdout, CSV, JSON) and a grouped bar chart of the test metric, logged to the parent.
 *
 *   <out>/<arm>/            each arm's run folder (best model, scores/test.json, ...)
 *   <out>/results.{csv,json}, <out>/results.{svg,png}
 *
 * results.json names the MLflow parent run (`parentRunId`, `experiment`), so a caller such as
 * tools/experiments/transfer.mjs can add to it, and each arm's wall time (`seconds`).
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfig } from '@emseg/config';
import { writeFileAtomic, writeJsonAtomic } from '@emseg/fs';
import { Tracker } from '@emseg/tracking';
import { segmentSchema } from './config.js';
import { barChartSpec, writeVegaLite } from './plots.js';
import { segmentModule } from './segment-run.js';
import { runTraining } from './train-run.js';
import { FINETUNE_RUNS } from './workspace.js';

export interface BenchmarkArgs {
  data?: string;
  /** Encoder references (bundle, runs:/..., latest.json, latest-pretrain); random init is always added. */
  encoders: string[];
  config: string;
  set: string[];
  out?: string;
  /** frozen: model.freezeEncoder all; finetuned: none. */
  modes: Array<'frozen' | 'finetuned'>;
  experiment: string;
  trackingUri?: string;
}

interface Arm {
  name: string;
  encoder: string;
  mode: 'frozen' | 'finetuned';
}

export interface ArmResult extends Arm {
  status: number;
  /** The validation score of the selected model and the test scores (null when the arm failed or had no test split). */
  validation: number | null;
  /** Pooled test scores; a multi-class task's `iou` / `f1` are the mean IoU / Dice of its foreground classes (no precision / recall). */
  test: { iou: number; f1: number; precision?: number; recall?: number; pq?: number } | null;
  runDir: string;
  /** Wall time of the arm's run (training, validation and test), in seconds. */
  seconds: number;
}

const log = (message: string) => process.stderr.write(`${message}\n`);

/** A short arm name from an encoder reference (its last meaningful path part). */
function encoderLabel(ref: string, index: number): string {
  if (ref === 'random') return 'random';
  const parts = ref.split(/[/\\]+/).filter((p) => p && p !== 'encoder' && p !== 'latest.json' && !p.startsWith('runs:'));
  const base = (parts[parts.length - 1] ?? `encoder${index}`).replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 40);
  return `${index + 1}-${base}`;
}

/** The arms: every encoder in every mode, then random init trained whole (the baseline). */
export function benchmarkArms(encoders: readonly string[], modes: readonly Arm['mode'][]): Arm[] {
  const arms = encoders.filter((e) => e !== 'random').flatMap((e, i) => modes.map((mode) => ({ name: `${encoderLabel(e, i)}-${mode}`, encoder: e, mode })));
  return [...arms, { name: 'random-finetuned', encoder: 'random', mode: 'finetuned' }];
}

function readResult(arm: Arm, runDir: string, status: number, seconds: number): ArmResult {
  const read = (file: string) => {
    try {
      return JSON.parse(readFileSync(join(runDir, 'scores', file), 'utf8')) as Record<string, unknown>;
    } catch {
      return null;
    }
  };
  const test = read('test.json') as {
    pooled: { iou: number; f1: number; precision: number; recall: number } | { meanIoU: number; meanDice: number };
  } | null;
  const inst = read('test-instances.json') as { mean: { pq: number } } | null;
  const validation = read('validation.json') as { chosen?: { score: number } } | null;
  return {
    ...arm,
    status,
    runDir,
    seconds,
    validation: validation?.chosen?.score ?? null,
    test: test
      ? {
          ...('meanIoU' in test.pooled ? { iou: test.pooled.meanIoU, f1: test.pooled.meanDice } : test.pooled),
          ...(inst ? { pq: inst.mean.pq } : {}),
        }
      : null,
  };
}

/** The results as CSV (one row per arm). */
export function resultsCsv(results: readonly ArmResult[]): string {
  const head = 'arm,encoder,mode,status,validation,test_iou,test_f1,test_precision,test_recall,test_pq,run_dir';
  const rows = results.map((r) =>
    [
      r.name,
      JSON.stringify(r.encoder),
      r.mode,
      r.status,
      r.validation ?? '',
      r.test?.iou ?? '',
      r.test?.f1 ?? '',
      r.test?.precision ?? '',
      r.test?.recall ?? '',
      r.test?.pq ?? '',
      JSON.stringify(r.runDir),
    ].join(','),
  );
  return `${[head, ...rows].join('\n')}\n`;
}

/** The results as an aligned text table. */
export function resultsTable(results: readonly ArmResult[], metric: string): string {
  const width = Math.max(4, ...results.map((r) => r.name.length));
  const f = (v: number | null | undefined) => (v === null || v === undefined ? '   -  ' : v.toFixed(4));
  const line = (a: string, b: string, c: string, d: string) => `${a.padEnd(width)}  ${b.padStart(10)}  ${c.padStart(8)}  ${d.padStart(8)}`;
  return [
    line('arm', `val ${metric}`, 'test IoU', 'test F1'),
    ...results.map((r) => line(r.name, f(r.validation), f(r.test?.iou), f(r.test?.f1)) + (r.status !== 0 ? `  (exit ${r.status})` : '')),
  ].join('\n');
}

/** Runs the benchmark; exit code 0 when every arm finished, 1 if one failed, 130 when stopped. */
export async function runBenchmark(args: BenchmarkArgs): Promise<number> {
  if (args.encoders.length === 0) throw new Error('name at least one encoder to compare with random init (--encoders A,B,...)');
  const cfg = loadConfig(segmentSchema, { file: args.config, overrides: args.set });
  const metric = cfg.instances ? 'pq' : cfg.data.classes ? 'miou' : cfg.metric;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const out = resolve(args.out ?? join(FINETUNE_RUNS, `benchmark-${stamp}`));
  const arms = benchmarkArms(args.encoders, args.modes);
  const parent = await Tracker.start({
    trackingUri: args.trackingUri,
    experiment: args.experiment,
    runName: `benchmark-${stamp}`,
    description: `CEM500K protocol: ${arms.length} arms (${arms.map((a) => a.name).join(', ')}) on ${args.data ?? 'the embedded data'}, config ${args.config}`,
    tags: { 'emseg.app': 'finetune', 'emseg.benchmark': 'cem500k-protocol', 'emseg.outDir': out },
    params: { encoders: args.encoders.join(','), modes: args.modes.join(','), config: resolve(args.config), sets: args.set.join(' ') },
  });
  log(`benchmark: ${arms.length} arms into ${out}; MLflow parent run ${parent.id}`);
  const results: ArmResult[] = [];
  let stopped = false;
  try {
    for (const [k, arm] of arms.entries()) {
      log(`\nbenchmark arm ${k + 1}/${arms.length}: ${arm.name} (encoder ${arm.encoder}, ${arm.mode})`);
      const runDir = join(out, arm.name);
      const started = performance.now();
      let status: number;
      try {
        status = await runTraining(segmentModule, {
          config: args.config,
          data: args.data,
          encoder: arm.encoder,
          set: [...args.set, `model.freezeEncoder=${arm.mode === 'frozen' ? 'all' : 'none'}`],
          out: runDir,
          resume: false,
          overwrite: false,
          latest: join(runDir, 'latest.json'),
          test: true,
          experiment: args.experiment,
          runName: arm.name,
          trackingUri: parent.client.trackingUri,
          tags: { 'mlflow.parentRunId': parent.id, 'emseg.benchmark.arm': arm.name },
        });
      } catch (err) {
        log(`error: arm ${arm.name} failed: ${(err as Error).message}`);
        status = 1;
      }
      results.push(readResult(arm, runDir, status, (performance.now() - started) / 1000));
      const r = results[results.length - 1];
      if (r.test) parent.logMetrics({ [`${arm.name}_test_iou`]: r.test.iou, ...(r.test.pq !== undefined ? { [`${arm.name}_test_pq`]: r.test.pq } : {}) });
      if (status === 130) {
        stopped = true;
        break;
      }
    }
    const table = resultsTable(results, metric);
    process.stdout.write(`\n${table}\n`);
    await writeFileAtomic(join(out, 'results.csv'), resultsCsv(results));
    await writeJsonAtomic(join(out, 'results.json'), {
      protocol: 'cem500k',
      metric,
      config: resolve(args.config),
      sets: args.set,
      data: args.data ? resolve(args.data) : null,
      experiment: args.experiment,
      parentRunId: parent.id,
      arms: results,
    });
    const bars = results
      .filter((r) => r.test)
      .map((r) => ({
        group: r.encoder === 'random' ? 'random init' : r.name.replace(/-(frozen|finetuned)$/, ''),
        series: r.mode,
        value: r.test!.pq ?? r.test!.iou,
      }));
    const chart = await writeVegaLite(
      join(out, 'results'),
      barChartSpec(bars, 'CEM500K protocol: test score per encoder', cfg.instances ? 'test PQ' : 'test IoU'),
    );
    for (const file of [join(out, 'results.csv'), join(out, 'results.json'), chart.svg, chart.png]) await parent.logArtifact(file, 'results');
    const failed = results.some((r) => r.status !== 0 && r.status !== 130);
    await parent.end(stopped ? 'KILLED' : failed ? 'FAILED' : 'FINISHED');
    process.stdout.write(`results: ${join(out, 'results.csv')}, ${join(out, 'results.json')}, ${chart.png} (MLflow parent run ${parent.id})\n`);
    return stopped ? 130 : failed ? 1 : 0;
  } catch (err) {
    await parent.end('FAILED');
    throw err;
  }
}
