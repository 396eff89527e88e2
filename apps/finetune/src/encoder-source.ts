/**
 * Where the U-Net's encoder comes from: a pretrained encoder bundle (a directory or an MLflow
 * `runs:/<run_id>/<path>` URI), the newest quick pretraining of this workspace, or random init.
 * A bundle brings its input normalisation and the MLflow run that produced it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createEncoder, loadEncoder, type Encoder, type EncoderJson, type Normalization } from '@emseg/models';
import { parseRunsUri } from '@emseg/tracking';
import { LATEST_PRETRAIN } from './workspace.js';

export interface EncoderChoice {
  encoder: Encoder;
  normalization: Normalization;
  /** 'random', a bundle directory, or a runs:/ URI. */
  source: string;
  /** The MLflow run that trained the encoder, if known. */
  runId: string | null;
  /** One line for the user, e.g. "mocov2 resnet18 bundle .emseg/... (run 4f2c...)". */
  description: string;
  meta: EncoderJson | null;
}

export interface ResolveEncoderOptions {
  /** Architecture of a random encoder: a registered name (`listEncoders()`). */
  architecture: string;
  /** Normalisation of a random encoder. */
  normalization: { mean: number; std: number };
  seed: number;
  /** Downloads a runs:/ URI to a local directory (the MLflow client). */
  resolveUri?: (uri: string) => Promise<string>;
  /** Where the newest pretraining is recorded (default LATEST_PRETRAIN). */
  latestPretrain?: string;
  /** Notes for the user (default: stderr). */
  log?: (message: string) => void;
}

/** What `pretrain:moco` records when it finishes. */
export interface LatestPretrain {
  runId: string;
  trackingUri?: string;
  bundleDir: string;
  encoderUri?: string;
}

function randomEncoder(options: ResolveEncoderOptions): EncoderChoice {
  return {
    encoder: createEncoder(options.architecture, { inChannels: 1, seed: options.seed }),
    normalization: { mean: [options.normalization.mean], std: [options.normalization.std] },
    source: 'random',
    runId: null,
    description: `randomly initialised ${options.architecture}`,
    meta: null,
  };
}

/** Reads LATEST_PRETRAIN, or null when there is none; a malformed file is an error naming it. */
export function readLatestPretrain(file = LATEST_PRETRAIN): LatestPretrain | null {
  if (!existsSync(file)) return null;
  let value: Partial<LatestPretrain>;
  try {
    value = JSON.parse(readFileSync(file, 'utf8')) as Partial<LatestPretrain>;
  } catch (err) {
    throw new Error(`${file}: not valid JSON (${(err as Error).message}); delete it or run the pretraining again`);
  }
  if (typeof value.runId !== 'string' || typeof value.bundleDir !== 'string') {
    throw new Error(`${file}: expected {"runId": "...", "bundleDir": "..."} as written by pretrain:moco, got ${JSON.stringify(value)}`);
  }
  return value as LatestPretrain;
}

/**
 * The encoder for `ref`: 'random', 'latest-pretrain', a latest.json written by pretraining, a bundle
 * directory or a runs:/ URI; null is
 * an error that says how to name one. The images are grey, so a bundle must take 1-channel input.
 *
 * @example const choice = await resolveEncoder('runs:/4f2c.../encoder', { architecture: 'resnet50', normalization, seed: 0, resolveUri });
 */
export async function resolveEncoder(ref: string | null, options: ResolveEncoderOptions): Promise<EncoderChoice> {
  const log = options.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  if (ref === null) {
    throw new Error(
      'no encoder given: this configuration has model.encoder = null; pass --encoder with a bundle directory, runs:/<run_id>/encoder, "latest-pretrain" or "random"',
    );
  }
  if (ref === 'random') return randomEncoder(options);
  let bundle = ref;
  let runId: string | null = null;
  // 'latest-pretrain' reads the default record; a path to a latest.json (pretraining with
  // --out DIR/name records there, in DIR/latest.json) reads that one.
  const recordFile = ref === 'latest-pretrain' ? (options.latestPretrain ?? LATEST_PRETRAIN) : ref.endsWith('.json') ? ref : null;
  if (recordFile !== null) {
    const file = recordFile;
    if (ref !== 'latest-pretrain' && !existsSync(file))
      throw new Error(
        `--encoder ${ref}: no such file; expected a latest.json written by pretrain:moco, a bundle directory, runs:/<run_id>/encoder, "latest-pretrain" or "random"`,
      );
    const latest = readLatestPretrain(file);
    if (latest === null) {
      log(
        `encoder: no finished pretraining recorded in ${file}; using a randomly initialised ${options.architecture} (run \`nx run pretrain:moco\` first to start from a pretrained encoder)`,
      );
      return randomEncoder(options);
    }
    runId = latest.runId;
    if (existsSync(latest.bundleDir)) bundle = latest.bundleDir;
    else if (latest.encoderUri) bundle = latest.encoderUri;
    else throw new Error(`${file} names encoder bundle ${latest.bundleDir}, which no longer exists; run the pretraining again or pass --encoder`);
  }
  const loaded = await loadEncoder(bundle, { resolveUri: options.resolveUri, inChannels: 1 });
  const uriRun = bundle.startsWith('runs:') ? parseRunsUri(bundle).runId : null;
  runId = runId ?? uriRun ?? loaded.meta.training.mlflowRunId;
  const steps = loaded.meta.training.steps === null ? '' : `, ${loaded.meta.training.steps} steps`;
  if (loaded.meta.architecture !== options.architecture) {
    log(`encoder: the bundle is a ${loaded.meta.architecture}; it replaces model.architecture = ${options.architecture}`);
  }
  return {
    encoder: loaded.encoder,
    normalization: loaded.meta.normalization,
    source: bundle,
    runId,
    description: `${loaded.meta.training.method} ${loaded.meta.architecture} bundle ${loaded.dir}${steps}${runId ? ` (MLflow run ${runId})` : ''}`,
    meta: loaded.meta,
  };
}
