/**
 * One fine-tuning run of a task module (tasks/module.ts: `urisc`, `segment`), tracked in MLflow.
 * Opens and checks the data, picks the encoder, runs the loop (@emseg/segmentation finetune), then
 * predicts and scores the test split with the best model, as the task module does it.
 *
 * MLflow gets: the flattened config and data/encoder params, backend tags, the task (`emseg.task`),
 * the datasets (train, validation, test digests), the encoder's source run (tag and link in the
 * description), train loss/lr/step time, validation scores per evaluation (the task's metric, F1,
 * precision, recall, best-threshold F1, at the configured and the chosen threshold) with PNG
 * overlays, the best model (`model/`), the final model, per-image scores (`scores/`) and the test scores.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfig } from '@emseg/config';
import type { LabeledImages } from '@emseg/data';
import { writeFileAtomic, writeJsonAtomic } from '@emseg/fs';
import { runUiLink, downloadArtifacts, parseRunsUri, type MlflowClient, type TrackedRun } from '@emseg/tracking';
import { checkpointsLine, ProgressBar, superviseRun, withRunDir, type GracefulStop, type RunOutcome, type RunSession } from '@emseg/training';
import { resolveEncoder, type EncoderChoice } from './encoder-source.js';
import { checkTileFits, finetune, Segmenter, type Evaluation, type SegmentationConfig } from '@emseg/segmentation';
import type { FinetuneTaskModule, TaskData, TestReport } from './tasks/module.js';
import { FINETUNE_RUNS } from './workspace.js';

export interface TrainArgs {
  config: string;
  data?: string;
  encoder?: string;
  set: string[];
  out?: string;
  resume: boolean;
  overwrite: boolean;
  /** Where to record the finished run for `predict` (default: latest.json beside the run folder). */
  latest?: string;
  test: boolean;
  experiment: string;
  runName?: string;
  trackingUri?: string;
  /** Extra MLflow tags (a benchmark's `mlflow.parentRunId`). */
  tags?: Record<string, string>;
}

export { DEFAULT_CONFIG } from './workspace.js';

const log = (message: string) => process.stderr.write(`${message}\n`);

/** Downloads `runs:/<id>/<path>` artifacts through `client` into `dir`. */
export function runsUriResolver(client: MlflowClient, dir: string): (uri: string) => Promise<string> {
  return async (uri) => {
    const { runId, path } = parseRunsUri(uri);
    return downloadArtifacts(client, runId, path, join(dir, runId));
  };
}

/** How a metric is written in log lines. */
export const METRIC_LABEL: Record<string, string> = { f1: 'F1', iou: 'IoU', pq: 'PQ', vrand: 'V-Rand', miou: 'mIoU' };

/** Every validation image must hold one inference tile; the suggested tiling passes every check. */
function checkValidationSizes(images: LabeledImages, inference: SegmentationConfig['inference']): void {
  for (const pair of images.pairs) checkTileFits(pair.image, pair.width, pair.height, inference, (name, value) => `--set inference.${name}=${value}`);
}

async function logDatasets(run: TrackedRun, data: TaskData): Promise<void> {
  const sets: Array<[string, LabeledImages | null, string]> = [
    ['train', data.train, 'training'],
    ['validation', data.validation, 'validation'],
    ['test', data.test, 'testing'],
  ];
  for (const [split, images, context] of sets) {
    if (!images || images.size === 0) continue;
    const digest = await images.digest();
    run.logInput({
      name: `${data.datasetName}-${split}`.toLowerCase(),
      digest: digest.digest.replace(/^sha256:/, '').slice(0, 36),
      source: data.root,
      context,
    });
  }
}

function evaluationMetrics(prefix: string, e: Evaluation): Record<string, number> {
  return {
    ...(e.metric !== 'f1' ? { [`${prefix}_${e.metric}`]: e.score, [`${prefix}_${e.metric}_chosen`]: e.chosen.score } : {}),
    [`${prefix}_f1`]: e.f1,
    [`${prefix}_precision`]: e.precision,
    [`${prefix}_recall`]: e.recall,
    [`${prefix}_best_f1`]: e.bestF1,
    [`${prefix}_best_threshold`]: e.bestThreshold,
    [`${prefix}_f1_chosen`]: e.chosen.f1,
    [`${prefix}_precision_chosen`]: e.chosen.precision,
    [`${prefix}_recall_chosen`]: e.chosen.recall,
    [`${prefix}_threshold`]: e.chosen.threshold,
    [`${prefix}_seconds`]: e.seconds,
    // multi-class: every class's IoU over the validation pixels
    ...Object.fromEntries((e.classes ?? []).map((c) => [`${prefix}_iou_${c.name.replace(/[^A-Za-z0-9]+/g, '_').toLowerCase()}`, c.iou])),
  };
}

function evaluationCsv(e: Evaluation): string {
  const extra = e.metric !== 'f1';
  const head = `name,${extra ? `${e.metric},` : ''}f1,precision,recall,best_f1,best_threshold,predicted_foreground,rejected`;
  const rows = e.images.map((r) =>
    [
      r.name,
      ...(extra ? [r.score] : []),
      r.f1,
      r.precision,
      r.recall,
      r.bestF1,
      r.bestThreshold,
      r.predictedForeground,
      r.rejected ? `"${r.rejected.replaceAll('"', '""')}"` : '',
    ].join(','),
  );
  return `${head}\n${rows.join('\n')}\nmean,${extra ? `${e.score},` : ''}${e.f1},${e.precision},${e.recall},${e.bestF1},${e.bestThreshold},,\n`;
}

/**
 * Runs one fine-tuning of `module` (the `urisc` and `segment` commands); returns the exit code
 * (0 finished, 130 stopped by a signal); bad input throws.
 */
export async function runTraining<C extends SegmentationConfig, D extends TaskData>(module: FinetuneTaskModule<C, D>, args: TrainArgs): Promise<number> {
  const cfg: C = loadConfig(module.schema, { file: args.config, overrides: args.set });
  module.check(cfg, args.config);
  const runName = args.runName ?? `unet-${cfg.model.architecture}-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}`;
  const dir = resolve(args.out ?? join(FINETUNE_RUNS, runName));
  return withRunDir({ app: 'finetune', runName, dir, resume: args.resume, overwrite: args.overwrite, log }, (session) =>
    trainInRunDir(module, args, cfg, session),
  );
}

async function trainInRunDir<C extends SegmentationConfig, D extends TaskData>(
  module: FinetuneTaskModule<C, D>,
  args: TrainArgs,
  cfg: C,
  session: RunSession,
): Promise<number> {
  const outDir = session.dir;
  const dataRoot = args.data ?? (await module.embeddedData(cfg, log));
  const data = await module.open(dataRoot, cfg);
  checkValidationSizes(data.validation, cfg.inference);
  const samples = await module.loadTraining(data, cfg);
  const task = module.validationTask(cfg, data);
  const metric = METRIC_LABEL[task.metric] ?? task.metric;
  log(
    `data: ${data.train.size} train, ${data.validation.size} validation (${data.validationSource === 'val' ? 'val split' : 'held out of train'}), ${data.test?.size ?? 0} test images`,
  );

  const encoderRef = args.encoder ?? cfg.model.encoder;
  const run: TrackedRun = await session.startRun({
    experiment: args.experiment,
    trackingUri: args.trackingUri,
    cfg,
    configFile: args.config,
    description: `U-Net fine-tuning (${module.name}) on ${data.description}`,
    params: { 'data.root': data.root, 'encoder.ref': encoderRef ?? 'null' },
    tags: args.tags,
  });
  let bar: ProgressBar | undefined;
  let choice: EncoderChoice | undefined;
  let segmenter: Segmenter | undefined;
  try {
    return await superviseRun(run, { trackingUri: args.trackingUri, onFailure: () => bar?.done('(failed)') }, (stop) => trainAndReport(stop));
  } finally {
    if (segmenter) segmenter.dispose();
    else choice?.encoder.dispose();
  }

  async function trainAndReport(stop: GracefulStop): Promise<RunOutcome> {
    choice = await resolveEncoder(encoderRef, {
      architecture: cfg.model.architecture,
      normalization: cfg.model.normalization,
      seed: cfg.model.seed,
      resolveUri: runsUriResolver(run.client, join(outDir, 'downloads')),
      log,
    });
    log(`encoder: ${choice.description}`);
    const link = choice.runId ? await runUiLink(run.client, choice.runId) : null;
    run.setTags({
      'emseg.task': module.name,
      'emseg.task.metric': task.metric,
      'emseg.encoder.source': choice.source,
      'emseg.encoder.architecture': choice.encoder.architecture,
      ...(choice.runId ? { 'emseg.encoder.runId': choice.runId } : {}),
      ...(link ? { 'emseg.encoder.link': link } : {}),
      'mlflow.note.content': [
        `U-Net (${choice.encoder.architecture} encoder) fine-tuned (${module.name}) on ${data.description}.`,
        `Encoder: ${choice.source === 'random' ? 'random init' : `\`${choice.source}\``}${choice.runId ? `, from run ${link ? `[${choice.runId}](${link})` : choice.runId}` : ''}.`,
      ].join('\n\n'),
    });
    run.logParams({ 'encoder.architecture': choice.encoder.architecture, 'encoder.normalization': JSON.stringify(choice.normalization) });
    await logDatasets(run, data);
    segmenter = Segmenter.create(
      choice.encoder,
      choice.normalization,
      { encoderSource: choice.source, encoderRunId: choice.runId },
      { decoderChannels: cfg.model.decoderChannels, seed: cfg.model.seed, classes: module.classes?.(cfg) ?? null },
    );

    const result = await finetune({
      cfg,
      task,
      segmenter,
      train: samples,
      validation: data.validation,
      outDir,
      resume: args.resume,
      stop,
      mlflowRunId: run.id,
      listener: {
        start: ({ totalSteps, startStep, batchesPerEpoch }) => {
          run.logParams({ 'train.batchesPerEpoch': batchesPerEpoch });
          bar = new ProgressBar({ label: 'finetune', total: totalSteps, unit: 'patch', start: startStep });
        },
        step: (step, m) => {
          if (step % cfg.train.logEvery === 0 || step === 1)
            run.logMetrics({ train_loss: m.loss, lr: m.lr, step_ms: m.stepMs, data_ms: m.dataMs, epoch: m.epoch }, step);
          bar?.tick(cfg.train.batchSize, { loss: m.loss, lr: m.lr });
        },
        evaluation: async (step, e, best) => {
          run.logMetrics(evaluationMetrics('val', e), step);
          const f1 = task.metric === 'f1' ? '' : `F1 ${e.f1.toFixed(4)}, `;
          log(
            `\nstep ${step}: validation ${metric} ${e.score.toFixed(4)} (${f1}P ${e.precision.toFixed(3)}, R ${e.recall.toFixed(3)}; ${e.classes ? `IoU ${e.classes.map((c) => `${c.name} ${c.iou.toFixed(3)}`).join(', ')}` : `best-threshold F1 ${e.bestF1.toFixed(4)} at ${e.bestThreshold}`})${e.chosen.threshold !== cfg.inference.threshold ? `; chosen threshold ${e.chosen.threshold}: ${metric} ${e.chosen.score.toFixed(4)}` : ''}${best ? ' - best so far, saved' : ''}${e.images.some((r) => r.rejected) ? ` [some predictions fail the ${module.name} format check: scored 0]` : ''}`,
          );
          if (e.overlays.length)
            await run.logArtifacts(join(outDir, 'overlays', `step-${String(step).padStart(6, '0')}`), `overlays/step-${String(step).padStart(6, '0')}`);
          if (best)
            run.setTags({
              'emseg.best.step': String(step),
              'emseg.best.valF1': e.chosen.f1.toFixed(6),
              ...(task.metric !== 'f1' ? { [`emseg.best.val${metric}`]: e.chosen.score.toFixed(6) } : {}),
              'emseg.best.threshold': String(e.chosen.threshold),
            });
        },
        note: (m) => log(`\n${m}`),
      },
    });
    bar?.done(result.status === 'KILLED' ? '(stopped)' : '');
    bar = undefined;
    await run.logArtifacts(result.modelDir, 'model');
    await run.logArtifacts(result.finalModelDir, 'final-model');
    if (result.lastEvaluation) {
      await writeJsonAtomic(join(outDir, 'scores', 'validation.json'), result.lastEvaluation);
      await writeFileAtomic(join(outDir, 'scores', 'validation.csv'), evaluationCsv(result.lastEvaluation));
    }
    let test: TestReport | null = null;
    if (result.status === 'FINISHED' && data.test && args.test) {
      test = await module.test(result.modelDir, data, cfg, outDir, log);
      if (test) {
        run.logMetrics(Object.fromEntries(Object.entries(test.metrics).map(([k, v]) => [`test_${k}`, v])), result.steps);
        for (const w of test.warnings) log(`warning: ${w}`);
      }
    }
    if (existsSync(join(outDir, 'scores'))) await run.logArtifacts(join(outDir, 'scores'), 'scores');
    if (result.status === 'FINISHED') {
      await session.recordLatest({ modelDir: result.modelDir, modelUri: `runs:/${run.id}/model` }, args.latest);
    }
    const best = result.best;
    return {
      status: result.status,
      summary: [
        `fine-tuning ${result.status.toLowerCase()} after ${result.steps}/${result.totalSteps} steps (last loss ${result.lastLoss?.toFixed(4) ?? 'n/a'})`,
        `encoder:        ${choice.description}`,
        best
          ? `best model:     step ${best.step}, validation ${metric} ${(best.score ?? best.f1).toFixed(4)} ${task.metric === 'miou' ? '(most probable class)' : `at threshold ${best.threshold ?? cfg.inference.threshold} (best-threshold F1 ${best.bestF1.toFixed(4)})`}`
          : 'best model:     not validated (the final weights)',
        ...(test?.lines ?? []),
        `model:          ${result.modelDir}  (MLflow: runs:/${run.id}/model)`,
        `final model:    ${result.finalModelDir}  (MLflow: runs:/${run.id}/final-model)`,
        checkpointsLine(result.checkpointDir, result.status, outDir),
      ],
    };
  }
}
