#!/usr/bin/env node
/**
 * Writes synthetic EM data with one command: a U-RISC-layout dataset (images + exact membrane
 * labels) and a CEM500K-style folder of unlabeled crops.
 *
 *   node tools/synth/synth.mjs --out out/synth                      # out/synth/{urisc,crops}
 *   node tools/synth/synth.mjs --out out/big --size 2048 --train 20 --crops 10000 --crop-size 224
 *   node tools/synth/synth.mjs --default                            # fill/print the cached default
 *
 * Needs the built library: `npx tsc -b libs/data`. Prints a JSON summary on stdout.
 */
import { join, resolve } from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { QUICK_DATA, ensureDefaultData, generateSyntheticCrops, generateSyntheticUrisc } from '@emseg/data';

const argv = await yargs(hideBin(process.argv))
  .scriptName('synth')
  .usage('$0 --out DIR [options]\n\nWrites DIR/urisc (U-RISC layout) and DIR/crops (CEM500K-style crops).')
  .option('out', { type: 'string', describe: 'output directory (must not exist or be empty)' })
  .option('default', { type: 'boolean', default: false, describe: 'generate (or reuse) the cached default data under .emseg/data instead' })
  .option('seed', { type: 'number', default: QUICK_DATA.seed, describe: 'random seed (same seed, identical files)' })
  .option('size', { type: 'number', default: QUICK_DATA.urisc.size, describe: 'U-RISC image edge in pixels' })
  .option('width', { type: 'number', describe: 'U-RISC image width (overrides --size), e.g. 9958' })
  .option('height', { type: 'number', describe: 'U-RISC image height (overrides --size), e.g. 9959' })
  .option('train', { type: 'number', default: QUICK_DATA.urisc.count.train, describe: 'training images' })
  .option('val', { type: 'number', default: QUICK_DATA.urisc.count.val, describe: 'validation images' })
  .option('test', { type: 'number', default: QUICK_DATA.urisc.count.test, describe: 'test images' })
  .option('track', { type: 'string', default: 'Track1', describe: 'U-RISC track directory name' })
  .option('crops', { type: 'number', default: QUICK_DATA.crops.count, describe: 'number of unlabeled crops (0: none)' })
  .option('crop-size', { type: 'number', default: QUICK_DATA.crops.size, describe: 'crop edge in pixels (CEM500K: 224)' })
  .check((a) => {
    if (!a.default && !a.out) throw new Error('give --out DIR (or --default for the cached default data)');
    return true;
  })
  .strict()
  .help()
  .parse();

const started = performance.now();
const seconds = () => Number(((performance.now() - started) / 1000).toFixed(2));

try {
  if (argv.default) {
    const data = await ensureDefaultData();
    console.log(
      JSON.stringify(
        { cached: !data.created, root: data.root, version: data.version, urisc: data.urisc.splits, crops: data.crops.root, seconds: seconds() },
        null,
        2,
      ),
    );
  } else {
    const out = resolve(argv.out);
    const size = argv.width !== undefined || argv.height !== undefined ? [argv.width ?? argv.size, argv.height ?? argv.size] : argv.size;
    const urisc = await generateSyntheticUrisc({
      dir: join(out, 'urisc'),
      seed: argv.seed,
      count: { train: argv.train, val: argv.val, test: argv.test },
      size,
      track: argv.track,
    });
    const uriscSeconds = seconds();
    const crops =
      argv.crops > 0 ? await generateSyntheticCrops({ dir: join(out, 'crops'), seed: argv.seed + 1, count: argv.crops, size: argv['crop-size'] }) : null;
    const fractions = Object.values(urisc.membraneFraction);
    console.log(
      JSON.stringify(
        {
          urisc: {
            root: urisc.root,
            splits: urisc.splits,
            meanMembraneFraction: fractions.reduce((s, v) => s + v, 0) / Math.max(1, fractions.length),
            seconds: uriscSeconds,
          },
          crops: crops && { root: crops.root, count: crops.count, size: crops.size, seconds: Number((seconds() - uriscSeconds).toFixed(2)) },
          seconds: seconds(),
        },
        null,
        2,
      ),
    );
  }
} catch (err) {
  console.error(`synth: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}
