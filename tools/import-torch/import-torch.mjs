#!/usr/bin/env node
/**
 * Imports a PyTorch ResNet checkpoint (torchvision layout, as CEM500K and empanada publish their
 * encoders) into an emseg encoder bundle.
 *
 *   node tools/import-torch/import-torch.mjs CHECKPOINT --out DIR [--prefix module.encoder_q.]
 *     [--in-channels 1] [--mean 0.573 --std 0.127] [--pixel-size-nm 2.18] [--python PATH]
 *     [--trust-pickle] [--overwrite]
 *
 * Python (torch) reads the checkpoint (export_state_dict.py); libs/models maps the tensors by the
 * naming contract and writes the bundle. Needs `npx tsc -b libs/models` first (imports its dist/).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { encoderFromTorchStateDict, readTorchExport, saveEncoderBundle } from '@emseg/models';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, '..', '..');
const run = promisify(execFile);

/** The Python with torch: $EMSEG_PYTHON, else the project venv, else python3. */
export function defaultPython() {
  if (process.env.EMSEG_PYTHON) return process.env.EMSEG_PYTHON;
  const venv = join(repoRoot, '.venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

/**
 * Imports `checkpoint` into the bundle directory `out`; see import-torch.d.mts for the options.
 * @returns {Promise<import('./import-torch.d.mts').ImportTorchResult>}
 */
export async function importTorchCheckpoint(options) {
  const { checkpoint, out, prefix, inChannels = 1, pixelSizeNm = null, trustPickle = false, overwrite = false } = options;
  const python = options.python ?? defaultPython();
  if (!existsSync(checkpoint)) throw new Error(`checkpoint ${checkpoint} does not exist`);
  const exportDir = await mkdtemp(join(tmpdir(), 'emseg-torch-export-'));
  try {
    const args = [join(here, 'export_state_dict.py'), checkpoint, exportDir, ...(trustPickle ? ['--trust-pickle'] : [])];
    try {
      await run(python, args, { maxBuffer: 16 << 20 });
    } catch (err) {
      const stderr = String(err.stderr ?? '').trim();
      throw new Error(stderr || `${python} failed to run export_state_dict.py: ${err.message}`);
    }
    const exported = await readTorchExport(exportDir);
    const normalization = options.normalization ?? exported.norms;
    if (!normalization) {
      throw new Error(`${checkpoint} carries no input normalisation ("norms"); pass --mean and --std (on [0, 1] intensities)`);
    }
    const { encoder, prefix: usedPrefix, ignored, warnings } = encoderFromTorchStateDict(exported.stateDict, { prefix, inChannels });
    try {
      const meta = await saveEncoderBundle(
        out,
        encoder,
        {
          normalization,
          pixelSizeNm,
          training: {
            method: 'pytorch-import',
            config: { source: exported.source, sha256: exported.sha256, prefix: usedPrefix, ignoredKeys: ignored.length, warnings },
          },
        },
        { overwrite },
      );
      return { dir: resolve(out), meta, prefix: usedPrefix, ignored, warnings };
    } finally {
      encoder.dispose();
    }
  } finally {
    await rm(exportDir, { recursive: true, force: true });
  }
}

const USAGE = `usage: node tools/import-torch/import-torch.mjs CHECKPOINT --out DIR [--prefix P] [--in-channels N]
  [--mean M --std S] [--pixel-size-nm NM] [--python PATH] [--trust-pickle] [--overwrite]`;

/** Parses a comma-separated list of numbers ("0.5" or "0.5,0.4,0.3"). */
function numbers(flag, text) {
  const values = text.split(',').map(Number);
  if (values.some((v) => !Number.isFinite(v))) throw new Error(`--${flag} must be a number or comma-separated numbers, got "${text}"`);
  return values;
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      prefix: { type: 'string' },
      'in-channels': { type: 'string', default: '1' },
      mean: { type: 'string' },
      std: { type: 'string' },
      'pixel-size-nm': { type: 'string' },
      python: { type: 'string' },
      'trust-pickle': { type: 'boolean', default: false },
      overwrite: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return console.log(USAGE);
  if (positionals.length !== 1 || !values.out) throw new Error(`expected one CHECKPOINT and --out DIR\n${USAGE}`);
  if ((values.mean === undefined) !== (values.std === undefined)) throw new Error('--mean and --std go together');
  const inChannels = Number(values['in-channels']);
  if (!Number.isInteger(inChannels) || inChannels < 1) throw new Error(`--in-channels must be a positive integer, got ${values['in-channels']}`);
  const pixelSizeNm = values['pixel-size-nm'] === undefined ? null : numbers('pixel-size-nm', values['pixel-size-nm'])[0];
  const result = await importTorchCheckpoint({
    checkpoint: positionals[0],
    out: values.out,
    prefix: values.prefix,
    inChannels,
    normalization: values.mean === undefined ? undefined : { mean: numbers('mean', values.mean), std: numbers('std', values.std) },
    pixelSizeNm,
    python: values.python,
    trustPickle: values['trust-pickle'],
    overwrite: values.overwrite,
  });
  for (const w of result.warnings) console.warn(`warning: ${w}`);
  console.log(
    `imported ${result.meta.architecture} (prefix "${result.prefix}", ${result.ignored.length} keys ignored) -> ${result.dir}\n` +
      `normalization mean ${result.meta.normalization.mean} std ${result.meta.normalization.std}`,
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err) => {
    console.error(`import-torch: ${err.message}`);
    process.exit(1);
  });
}
