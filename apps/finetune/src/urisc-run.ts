/**
 * The `urisc` command: fine-tuning on U-RISC-layout data (imgs/<track>/..., label/<track>/...),
 * validated and tested with the official U-RISC F1 and submission rules (tasks/urisc.ts). The run
 * itself is the shared one (train-run.ts).
 */
import { join } from 'node:path';
import { ensureDefaultData, uriscDirectories } from '@emseg/data';
import { writeFileAtomic } from '@emseg/fs';
import { ProgressBar } from '@emseg/training';
import { inferenceOptions, Segmenter } from '@emseg/segmentation';
import { checkFinetuneConfig, finetuneSchema, type FinetuneConfig } from './config.js';
import { predictFiles } from './predict.js';
import { scoreFolder, scoresCsv, scoresJson } from './score.js';
import type { FinetuneTaskModule, TaskData } from './tasks/module.js';
import { loadTrainingSamples, openUriscData, uriscTask } from './tasks/urisc.js';
import { runTraining, type TrainArgs } from './train-run.js';

export type UriscArgs = TrainArgs;

/** U-RISC as a task module of the shared fine-tuning run. */
export const uriscModule: FinetuneTaskModule<FinetuneConfig> = {
  name: 'urisc',
  schema: finetuneSchema,
  check: checkFinetuneConfig,
  embeddedData: async (cfg, log) => {
    const embedded = await ensureDefaultData();
    cfg.data.track = embedded.urisc.track;
    const { splits } = embedded.urisc;
    log(
      `data: embedded synthetic U-RISC (${embedded.spec.urisc.size} px; ${splits.train.names.length} train, ${splits.val.names.length} val, ${splits.test.names.length} test) in ${embedded.urisc.root}${embedded.created ? ' (generated now)' : ''}`,
    );
    return embedded.urisc.root;
  },
  open: async (root, cfg): Promise<TaskData & { track: string }> => {
    const data = await openUriscData(root, { ...cfg.data, seed: cfg.train.seed });
    return { ...data, datasetName: `urisc-${data.track}`, description: `${data.root} (${data.track})` };
  },
  loadTraining: (data, cfg) => loadTrainingSamples(data.train, cfg.patches.size, cfg.data.maxMembraneFraction, cfg.patches.stride),
  validationTask: (cfg) => uriscTask({ maxMembraneFraction: cfg.data.maxMembraneFraction }),
  test: async (modelDir, data, cfg, outDir, log) => {
    if (cfg.data.polarity !== 'black-foreground') {
      log('test: not scored: the official U-RISC F1 reads labels with membrane black (data.polarity black-foreground); `segment` scores any polarity');
      return null;
    }
    const dirs = uriscDirectories(data.root, 'test', cfg.data.track);
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
    const csv = join(outDir, 'scores', 'test.csv');
    await writeFileAtomic(join(outDir, 'scores', 'test.json'), scoresJson(score));
    await writeFileAtomic(csv, scoresCsv(score));
    return {
      metrics: { f1: score.meanF1, precision: score.meanPrecision, recall: score.meanRecall },
      lines: [`test F1:        ${score.meanF1.toFixed(4)} (official U-RISC, mean over ${score.images.length} images; per image in ${csv})`],
      warnings: score.images.filter((r) => r.rejected).map((r) => `test prediction rejected by the U-RISC format check (scored 0): ${r.rejected}`),
    };
  },
};

/** Runs `urisc`; returns the exit code (0 finished, 130 stopped by a signal); bad input throws. */
export const runUrisc = (args: UriscArgs): Promise<number> => runTraining(uriscModule, args);
