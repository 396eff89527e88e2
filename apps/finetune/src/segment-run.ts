/**
 * The `segment` command: fine-tuning on any labelled EM folder (tasks/segment.ts: images/ + masks/,
 * optional splits), validated and tested by foreground IoU. The run itself is the shared one
 * (train-run.ts), so resume, MLflow, best-model selection and the threshold choice are `urisc`'s.
 */
import { join } from 'node:path';
import { ensureDefaultData, ensureDefaultMito, MITO_CLASS_VALUES, QUICK_MITO, QUICK_MITO_STACKS, writeImage, type LabeledImages } from '@emseg/data';
import { writeFileAtomic, writeJsonAtomic } from '@emseg/fs';
import { ProgressBar } from '@emseg/training';
import { argmaxClasses, classesTask, iouTask, inferenceOptions, predictImage, Segmenter, toProbability16, type ClassEntry } from '@emseg/segmentation';
import { checkSegmentConfig, classEntries, segmentSchema, type SegmentConfig } from './config.js';
import { predictFiles } from './predict.js';
import type { FinetuneTaskModule, TaskData, TestReport } from './tasks/module.js';
import {
  classScoresCsv,
  instanceScoresCsv,
  instanceTask,
  loadSegmentTraining,
  maskScoresCsv,
  openSegmentData,
  scoreClassMasks,
  scoreInstanceMasks,
  scoreInstanceStacks,
  scoreMasks,
  vrandTask,
  type SegmentData,
} from './tasks/segment.js';
import { runTraining, type TrainArgs } from './train-run.js';

export type SegmentArgs = TrainArgs;

/** The instance label files of an instance task's data (opened with instances: true). */
function instanceFilesOf(data: SegmentTaskData): ReadonlyMap<string, string> {
  if (!data.instanceFiles) throw new Error('internal: the data were opened without instance labels');
  return data.instanceFiles;
}

type SegmentTaskData = TaskData & Pick<SegmentData, 'instanceFiles'>;

/** Binary segmentation of a generic labelled folder as a task module of the shared fine-tuning run. */
export const segmentModule: FinetuneTaskModule<SegmentConfig, SegmentTaskData> = {
  name: 'segment',
  schema: segmentSchema,
  check: checkSegmentConfig,
  embeddedData: async (cfg, log) => {
    if (cfg.metric === 'vrand') {
      // membranes: the embedded synthetic U-RISC data (membrane black), which segment reads in its release layout
      const embedded = await ensureDefaultData();
      cfg.data.polarity = 'black-foreground';
      const { splits } = embedded.urisc;
      log(
        `data: embedded synthetic membranes (U-RISC layout, ${embedded.spec.urisc.size} px; ${splits.train.names.length} train, ${splits.val.names.length} val, ${splits.test.names.length} test; membrane black) in ${embedded.urisc.root}`,
      );
      return embedded.urisc.root;
    }
    const classes = cfg.data.classes !== null;
    if (classes)
      cfg.data.classes = {
        [MITO_CLASS_VALUES.background]: 'background',
        [MITO_CLASS_VALUES.granule]: 'granule',
        [MITO_CLASS_VALUES.mitochondrion]: 'mitochondrion',
      };
    // the instance task's embedded data are 3D stacks (instances scored in 3D, as empanada's), the others 2D images
    const embedded = await ensureDefaultMito(cfg.instances ? QUICK_MITO_STACKS : { ...QUICK_MITO, classes });
    cfg.data.polarity = 'white-foreground';
    const { count: counts } = embedded;
    const masks = classes
      ? `class maps: ${JSON.stringify(cfg.data.classes)}`
      : cfg.instances
        ? 'masks white-foreground, 16-bit instance ids'
        : 'masks white-foreground';
    const what = embedded.depth ? `stacks of ${embedded.depth} slices of ${embedded.size} px` : `${embedded.size} px`;
    log(
      `data: embedded synthetic mitochondria (${what}; ${counts.train} train, ${counts.val} val, ${counts.test} test; ${masks}) in ${embedded.root}${embedded.created ? ' (generated now)' : ''}`,
    );
    return embedded.root;
  },
  open: async (root, cfg) => {
    const classes = classEntries(cfg);
    const data = await openSegmentData(root, {
      ...cfg.data,
      seed: cfg.train.seed,
      instances: cfg.instances !== null,
      classes: classes?.map((c) => c.value) ?? null,
    });
    const kind = cfg.instances
      ? `instances by ${cfg.instances.method}`
      : classes
        ? `${classes.length} classes (${classes.map((c) => `${c.value} ${c.name}`).join(', ')})`
        : `${cfg.data.polarity} masks`;
    return { ...data, datasetName: 'segment', description: `${data.root} (${data.layout} layout, ${kind})` };
  },
  loadTraining: (data, cfg) => loadSegmentTraining(data.train, cfg.patches.size, cfg.data.maxForegroundFraction),
  classes: classEntries,
  validationTask: (cfg, data) =>
    cfg.data.classes !== null ? classesTask : cfg.instances ? instanceTask(cfg.instances, instanceFilesOf(data)) : cfg.metric === 'vrand' ? vrandTask : iouTask,
  test: async (modelDir, data, cfg, outDir) => {
    const test = data.test;
    if (test === null) return null;
    const predDir = join(outDir, 'predictions', 'test');
    const segmenter = Segmenter.load(modelDir);
    const written = new Map<string, string>();
    try {
      const bar = new ProgressBar({ label: 'test', total: test.size, unit: test.pairs.some((p) => p.slice) ? 'slice' : 'img' });
      const threshold = segmenter.loadedInfo?.threshold ?? cfg.inference.threshold;
      const inference = inferenceOptions(cfg.inference);
      if (test.pairs.some((p) => p.slice)) {
        // stacks: every slice predicted as its own image, written as <stem>-z<z>.png
        for (let i = 0; i < test.size; i++) {
          const pair = test.pairs[i];
          const { image } = await test.load(i);
          const predicted = await predictImage(segmenter, image, inference, pair.image);
          const { mask, probability } = sliceOutputs(predicted, segmenter.classMap, threshold);
          const file = join(predDir, `${pair.name}.png`);
          await writeImage(join(predDir, 'probability', `${pair.name}.png`), toProbability16(probability, image.width, image.height), { compressionLevel: 3 });
          await writeImage(file, { width: image.width, height: image.height, bitDepth: 8, data: mask });
          written.set(pair.name, file);
          bar.tick(1);
        }
      } else {
        const predicted = await predictFiles(segmenter, {
          inputs: test.pairs.map((p) => p.image),
          outDir: predDir,
          inference,
          threshold,
          probability: 'png',
          format: 'mask',
          onImage: (r) => bar.tick(1, { foreground: r.membraneFraction }),
        });
        for (const p of predicted) written.set(p.name, p.submission);
      }
      bar.done();
    } finally {
      segmenter.dispose();
    }
    const classes = classEntries(cfg);
    if (classes !== null) return testClasses(written, test, classes, outDir);
    const score = await scoreMasks(written, test, { membranes: cfg.metric === 'vrand' });
    const csv = join(outDir, 'scores', 'test.csv');
    await writeJsonAtomic(join(outDir, 'scores', 'test.json'), { protocol: 'pixel', ...score });
    await writeFileAtomic(csv, maskScoresCsv(score));
    const { pooled, mean } = score;
    const report = {
      metrics: {
        iou: pooled.iou,
        f1: pooled.f1,
        precision: pooled.precision,
        recall: pooled.recall,
        iou_mean: mean.iou,
        f1_mean: mean.f1,
      } as Record<string, number>,
      lines: [
        `test IoU:       ${pooled.iou.toFixed(4)} (all ${score.images.length} images' pixels pooled; mean per image ${mean.iou.toFixed(4)}; per image in ${csv})`,
        `test F1:        ${pooled.f1.toFixed(4)} (Dice; P ${pooled.precision.toFixed(3)}, R ${pooled.recall.toFixed(3)})`,
      ],
      warnings: [],
    };
    if (score.mean.vRand !== undefined && score.mean.vInfo !== undefined) {
      Object.assign(report.metrics, { vrand: score.mean.vRand, vinfo: score.mean.vInfo });
      report.lines.unshift(
        `test V-Rand:    ${score.mean.vRand.toFixed(4)} (V-Info ${score.mean.vInfo.toFixed(4)}; ISBI 2012, foreground-restricted, mean over ${score.images.length} images)`,
      );
    }
    if (cfg.instances) {
      const stacks = test.pairs.some((p) => p.slice);
      const score = stacks ? scoreInstanceStacks : scoreInstanceMasks;
      const inst = await score(written, test, instanceFilesOf(data), cfg.instances, join(predDir, 'instances'));
      const instCsv = join(outDir, 'scores', 'test-instances.csv');
      await writeJsonAtomic(join(outDir, 'scores', 'test-instances.json'), { protocol: 'instances', instances: cfg.instances, ...inst });
      await writeFileAtomic(instCsv, instanceScoresCsv(inst));
      const m = inst.mean;
      Object.assign(report.metrics, { pq: m.pq, sq: m.sq, rq: m.rq, f1_at_50: m.f1At50, f1_at_75: m.f1At75 });
      report.lines.unshift(
        `test PQ:        ${m.pq.toFixed(4)} (SQ ${m.sq.toFixed(3)}, RQ ${m.rq.toFixed(3)}; F1 at IoU 0.5 ${m.f1At50.toFixed(4)}, at 0.75 ${m.f1At75.toFixed(4)}; mean over ${inst.images.length} ${stacks ? 'stacks, instances in 3D' : 'images'}, instances by ${cfg.instances.method} in ${join(predDir, 'instances')}; per image in ${instCsv})`,
      );
    }
    return report;
  },
};

/** A predicted slice's mask (binary: foreground 255 at `threshold`; classes: each class's value) and its foreground probability. */
function sliceOutputs(predicted: Float32Array, classMap: readonly ClassEntry[] | null, threshold: number): { mask: Uint8Array; probability: Float32Array } {
  if (classMap === null) return { mask: Uint8Array.from(predicted, (p) => (p >= threshold ? 255 : 0)), probability: predicted };
  const k = classMap.length;
  const mask = Uint8Array.from(argmaxClasses(predicted, k), (c) => classMap[c].value);
  return { mask, probability: Float32Array.from({ length: mask.length }, (_, i) => 1 - predicted[i * k]) };
}

/** Scores a multi-class test split's class maps: mean IoU of the foreground classes, pooled and per image, and every class's IoU. */
async function testClasses(written: ReadonlyMap<string, string>, test: LabeledImages, classes: readonly ClassEntry[], outDir: string): Promise<TestReport> {
  const score = await scoreClassMasks(written, test, classes);
  const csv = join(outDir, 'scores', 'test.csv');
  await writeJsonAtomic(join(outDir, 'scores', 'test.json'), { protocol: 'classes', ...score });
  await writeFileAtomic(csv, classScoresCsv(score));
  const slug = (n: string) => n.replace(/[^A-Za-z0-9]+/g, '_').toLowerCase();
  const { pooled, mean } = score;
  const perClass = pooled.perClass.map((c) => `${c.name} ${c.iou.toFixed(4)}`).join(', ');
  return {
    metrics: {
      miou: pooled.meanIoU,
      mdice: pooled.meanDice,
      miou_mean: mean.meanIoU,
      ...Object.fromEntries(pooled.perClass.flatMap((c) => [[`iou_${slug(c.name)}`, c.iou] as const, [`dice_${slug(c.name)}`, c.dice] as const])),
    },
    lines: [
      `test mIoU:      ${pooled.meanIoU.toFixed(4)} (mean IoU of the ${classes.length - 1} foreground classes, all ${score.images.length} images' pixels pooled; mean per image ${mean.meanIoU.toFixed(4)}; per image in ${csv})`,
      `test IoU:       ${perClass} (per class, pooled; Dice mean ${pooled.meanDice.toFixed(4)})`,
    ],
    warnings: [],
  };
}

/** Runs `segment`; returns the exit code (0 finished, 130 stopped by a signal); bad input throws. */
export const runSegment = (args: SegmentArgs): Promise<number> => runTraining(segmentModule, args);
