// Step 1: npm packages. Install scripts stay off because @tensorflow/tfjs-node's script
// downloads libtensorflow from a bucket that is unreachable offline; native-tf.mjs does
// that part instead. Skipped when package.json files and the lockfile are unchanged.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, hashOf, readStamp, run, writeAtomic } from './util.mjs';

function manifestFiles() {
  const files = [join(ROOT, 'package.json'), join(ROOT, 'package-lock.json')];
  for (const group of ['libs', 'apps']) {
    for (const name of readdirSync(join(ROOT, group))) files.push(join(ROOT, group, name, 'package.json'));
  }
  return files.filter((f) => existsSync(f));
}

export async function ensureNpmPackages() {
  const stampPath = join(ROOT, 'node_modules', '.emseg-npm-stamp');
  const want = hashOf(...manifestFiles());
  if (readStamp(stampPath) === want) return 'up to date';
  run('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund'], {
    fix: 'check that the npm registry is reachable (`npm ping`) and that package.json is valid JSON',
  });
  writeAtomic(stampPath, hashOf(...manifestFiles()));
  return 'installed';
}
