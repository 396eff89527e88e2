/**
 * The `urisc` command: one fine-tuning run, tracked in MLflow. Opens and checks the data, picks the
 * encoder, runs the loop (finetune.ts), then predicts and scores the test split with the best model.
 *
 * MLflow gets: the flattened config and data/encoder params, backend tags, the datasets (train,
 * validation, test digests), the encoder's source run (tag and link in the description), train
 * loss/lr/step time, validation F1/precision/recall/best-threshold F1 per evaluation with PNG
 * overlays, the best model (`model/`), per-image scores (`scores/*.json|csv`) and the test scores.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfig } from '@emseg/config';
import { ensureDefaultData, uriscDirectories, type LabeledImages } from '@emseg/data';
import { writeFileAtomic, writeJsonAtomic } from '@emseg/fs';
import { runUiLink, downloadArtifacts, parseRunsUri, type MlflowClient, type TrackedRun } from '@emseg/tracking';
import { checkpointsLine, ProgressBar, superviseRun, withRunDir, type GracefulStop, type RunOutcome, type RunSession } from '@emseg/training';
import { checkFinetuneConfig, finetuneSchema, type FinetuneConfig } from './config.js';
import { resolveEncoder, type EncoderChoice } from './encoder-source.js';
import { checkTileFits, finetune, inferenceOptions, Segmenter, type Evaluation } from '@emseg/segmentation';
import { predictFiles } from './predict.js';
import { scoreFolder, scoresCsv, scoresJson, type FolderScore } from './score.js';
import { loadTrainingSamples, openUriscData, uriscTask, type UriscData } from './tasks/urisc.js';
import { FINETUNE_RUNS } from './workspace.js';

export interface UriscArgs {
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

/** Every validation image must hold one inference tile; the suggested tiling passes every check. */
function checkValidationSizes(images: LabeledImages, inference: FinetuneConfig['inference']): void {
  for (const pair of images.pairs) checkTileFits(pair.image, pair.width, pair.height, inference, (name, value) => `--set inference.${name}=${value}`);
}

async function logDatasets(run: TrackedRun, data: UriscData): Promise<void> {
  const sets: Array<[string, LabeledImages | null, string]> = [
    ['train', data.train, 'training'],
    ['validation', data.validation, 'validation'],
    ['test', data.test, 'testing'],
  ];
  for (const [split, images, context] of sets) {
    if (!images || images.size === 0) continue;
    const digest = await images.digest();
    run.logInput({
      name: `urisc-${data.track}-${split}`.toLowerCase(),
      digest: digest.digest.replace(/^sha256:/, '').slice(0, 36),
      source: data.root,
      context,
    });
  }
}

function evaluationMetrics(prefix: string, e: Evaluation): Record<string, number> {
  return {
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
  };
}

function evaluationCsv(e: Evaluation): string {
  const head = 'name,f1,precision,recall,best_f1,best_threshold,predicted_membrane,rejected';
  const rows = e.images.map((r) =>
    [r.name, r.f1, r.precision, r.recall, r.bestF1, r.bestThreshold, r.predictedForeground, r.rejected ? `"${r.rejected.replaceAll('"', '""')}"` : ''].join(
      ',',
    ),
  );
  return `${head}\n${rows.join('\n')}\nmean,${e.f1},${e.precision},${e.recall},${e.bestF1},${e.bestThreshold},,\n`;
}

/** Predicts the test images with the saved model and scores them; per-image files go to outDir/scores. */
async function testScores(modelDir: string, data: UriscData, cfg: FinetuneConfig, outDir: string): Promise<{ score: FolderScore; json: string; csv: string }> {
  const dirs = uriscDirectories(data.root, 'test', data.track);
  const predDir = join(outDir, 'predictions', 'test');
  const segmenter = Segmenter.load(modelDir);
  try {
    const bar = new ProgressBar({ label: 'test', total: data.test?.size ?? 0, unit: 'img' });
    await predictFiles(segmenter, {
      inputs: [dirs.images],
      outDir: predDir,
      inference: inferenceOptions(cfg.inference),
      // The threshold validation chose for the saved model (inference.threshold if it was not validated).
      threshold: segmenter.loadedInfo?.threshold ?? cfg.inference.threshold,
      probability: 'png',
      onImage: (r) => bar.tick(1, { membrane: r.membraneFraction }),
    });
    bar.done();
  } finally {
    segmenter.dispose();
  }
  const score = await scoreFolder(predDir, dirs.labels);
  const json = join(outDir, 'scores', 'test.json');
  const csv = join(outDir, 'scores', 'test.csv');
  await writeFileAtomic(json, scoresJson(score));
  await writeFileAtomic(csv, scoresCsv(score));
  return { score, json, csv };
}

/** Runs `urisc`; returns the exit code (0 finished, 130 stopped by a signal); bad input throws. */
export async function runUrisc(args: UriscArgs): Promise<number> {
  const cfg: FinetuneConfig = loadConfig(finetuneSchema, { file: args.config, overrides: args.set });
  checkFinetuneConfig(cfg, args.config);
  const runName = args.runName ?? `unet-${cfg.model.architecture}-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}`;
  const dir = resolve(args.out ?? join(FINETUNE_RUNS, runName));
  return withRunDir({ app: 'finetune', runName, dir, resume: args.resume, overwrite: args.overwrite, log }, (session) => trainInRunDir(args, cfg, session));
}

async function trainInRunDir(args: UriscArgs, cfg: FinetuneConfig, session: RunSession): Promise<number> {
  const outDir = session.dir;
  let dataRoot = args.data;
  if (!dataRoot) {
    const embedded = await ensureDefaultData();
    dataRoot = embedded.urisc.root;
    cfg.data.track = embedded.urisc.track;
    log(
      `data: embedded synthetic U-RISC (${embedded.spec.urisc.size} px; ${embedded.urisc.splits.train.names.length} train, ${embedded.urisc.splits.val.names.length} val, ${embedded.urisc.splits.test.names.length} test) in ${dataRoot}${embedded.created ? ' (generated now)' : ''}`,
    );
  }
  const data = await openUriscData(dataRoot, { ...cfg.data, seed: cfg.train.seed });
  checkValidationSizes(data.validation, cfg.inference);
  const samples = await loadTrainingSamples(data.train, cfg.patches.size, cfg.data.maxMembraneFraction, cfg.patches.stride);
  log(
    `data: ${data.train.size} train, ${data.validation.size} validation (${data.validationSource === 'val' ? 'val split' : 'held out of train'}), ${data.test?.size ?? 0} test images`,
  );

  const encoderRef = args.encoder ?? cfg.model.encoder;
  const run: TrackedRun = await session.startRun({
    experiment: args.experiment,
    trackingUri: args.trackingUri,
    cfg,
    configFile: args.config,
    description: `U-Net fine-tuning on ${data.root} (${data.track})`,
    params: { 'data.root': data.root, 'encoder.ref': encoderRef ?? 'null' },
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
      'emseg.encoder.source': choice.source,
      'emseg.encoder.architecture': choice.encoder.architecture,
      ...(choice.runId ? { 'emseg.encoder.runId': choice.runId } : {}),
      ...(link ? { 'emseg.encoder.link': link } : {}),
      'mlflow.note.content': [
        `U-Net (${choice.encoder.architecture} encoder) fine-tuned on ${data.root} (${data.track}).`,
        `Encoder: ${choice.source === 'random' ? 'random init' : `\`${choice.source}\``}${choice.runId ? `, from run ${link ? `[${choice.runId}](${link})` : choice.runId}` : ''}.`,
      ].join('\n\n'),
    });
    run.logParams({ 'encoder.architecture': choice.encoder.architecture, 'encoder.normalization': JSON.stringify(choice.normalization) });
    await logDatasets(run, data);
    segmenter = Segmenter.create(
      choice.encoder,
      choice.normalization,
      { encoderSource: choice.source, encoderRunId: choice.runId },
      { decoderChannels: cfg.model.decoderChannels, seed: cfg.model.seed },
    );

    const result = await finetune({
      cfg,
      task: uriscTask({ maxMembraneFraction: cfg.data.maxMembraneFraction }),
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
          log(
            `\nstep ${step}: validation F1 ${e.f1.toFixed(4)} (P ${e.precision.toFixed(3)}, R ${e.recall.toFixed(3)}; best-threshold F1 ${e.bestF1.toFixed(4)} at ${e.bestThreshold})${e.chosen.threshold !== cfg.inference.threshold ? `; chosen threshold ${e.chosen.threshold}: F1 ${e.chosen.f1.toFixed(4)}` : ''}${best ? ' - best so far, saved' : ''}${e.images.some((r) => r.rejected) ? ' [some predictions fail the U-RISC format check: F1 0]' : ''}`,
          );
          if (e.overlays.length)
            await run.logArtifacts(join(outDir, 'overlays', `step-${String(step).padStart(6, '0')}`), `overlays/step-${String(step).padStart(6, '0')}`);
          if (best)
            run.setTags({ 'emseg.best.step': String(step), 'emseg.best.valF1': e.chosen.f1.toFixed(6), 'emseg.best.threshold': String(e.chosen.threshold) });
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
    let test: { score: FolderScore } | null = null;
    if (result.status === 'FINISHED' && data.test && args.test && cfg.data.polarity !== 'black-foreground') {
      log('test: not scored: the official U-RISC F1 reads labels with membrane black (data.polarity black-foreground)');
    } else if (result.status === 'FINISHED' && data.test && args.test) {
      test = await testScores(result.modelDir, data, cfg, outDir);
      run.logMetrics({ test_f1: test.score.meanF1, test_precision: test.score.meanPrecision, test_recall: test.score.meanRecall }, result.steps);
      for (const r of test.score.images) if (r.rejected) log(`warning: test prediction rejected by the U-RISC format check (scored 0): ${r.rejected}`);
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
          ? `best model:     step ${best.step}, validation F1 ${best.f1.toFixed(4)} at threshold ${best.threshold ?? cfg.inference.threshold} (best-threshold F1 ${best.bestF1.toFixed(4)})`
          : 'best model:     not validated (the final weights)',
        ...(test
          ? [
              `test F1:        ${test.score.meanF1.toFixed(4)} (official U-RISC, mean over ${test.score.images.length} images; per image in ${join(outDir, 'scores', 'test.csv')})`,
            ]
          : []),
        `model:          ${result.modelDir}  (MLflow: runs:/${run.id}/model)`,
        `final model:    ${result.finalModelDir}  (MLflow: runs:/${run.id}/final-model)`,
        checkpointsLine(result.checkpointDir, result.status, outDir),
      ],
    };
  }
}
