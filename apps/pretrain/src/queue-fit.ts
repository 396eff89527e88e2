/**
 * MoCo's queue against the data it trains on (issue 18). A queue of K >= N keys on N crops holds at
 * least an epoch of keys, so after one epoch a crop's own older key sits in the queue as one of its
 * negatives, and frozen features get worse with more steps. The rule keeps K at most a quarter of
 * the crops: then a crop's older key is still queued when it comes again for only ~(K/N)^2 / 2 of
 * the crops (3%), and the queue keeps K/B batches of negatives (the papers' K is 1/20 of ImageNet,
 * about 1/8 of CEM500K). `moco.queueSize: "auto"` applies the rule at run start.
 */
import type { MocoConfig } from './config.js';

/** The largest multiple of `batchSize` not above a quarter of `crops`, and at least one batch (MoCo's K must be a multiple of the batch). */
export function autoQueueSize(crops: number, batchSize: number): number {
  if (crops < batchSize) {
    throw new Error(`moco.queueSize "auto": the ${crops} crops are fewer than one batch (train.batchSize ${batchSize}); add crops or lower train.batchSize`);
  }
  return Math.max(batchSize, Math.floor(crops / 4 / batchSize) * batchSize);
}

/** The warning for a queue of `queueSize` keys on `crops` crops, or null when it fits (K < crops). */
export function queueSizeWarning(queueSize: number, crops: number, batchSize: number): string | null {
  if (queueSize < crops) return null;
  const suggested = autoQueueSize(crops, batchSize);
  const fix =
    suggested < crops
      ? `use --set moco.queueSize=${suggested} (the largest multiple of train.batchSize ${batchSize} up to a quarter of the crops; "auto" picks it)`
      : `no multiple of train.batchSize ${batchSize} is below ${crops}: add crops or lower train.batchSize`;
  return (
    `warning: moco.queueSize ${queueSize} is not below the ${crops} training crops: after one epoch a crop's own older key ` +
    `sits in the queue as one of its negatives, and frozen features can get worse with more steps; ${fix}`
  );
}

/** `cfg` with a MoCo `moco.queueSize: "auto"` resolved for `crops` crops; any other config as it is. */
export function resolveQueueSize(cfg: MocoConfig, crops: number): MocoConfig {
  if (cfg.method !== 'mocov2' || cfg.moco.queueSize !== 'auto') return cfg;
  return { ...cfg, moco: { ...cfg.moco, queueSize: autoQueueSize(crops, cfg.train.batchSize) } };
}

/** K of a resolved configuration. */
export function queueSizeOf(cfg: MocoConfig): number {
  const k = cfg.moco.queueSize;
  if (k === 'auto') throw new Error('moco.queueSize "auto" is resolved from the crop count (resolveQueueSize) before MoCo is built');
  return k;
}
