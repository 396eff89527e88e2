#!/usr/bin/env node
// `npm run mlflow [-- --port 5000] [--store DIR]`: the MLflow UI for this project's runs.
//
// Starts the real MLflow tracking server (.venv/bin/mlflow, provisioned by tools/setup) on
// 127.0.0.1 with the project's store: a SQLite backend (`.emseg/mlflow/mlflow.db`) and served
// artifacts (`.emseg/mlflow/artifacts/`). This is the same store runs land in when no
// MLFLOW_TRACKING_URI is set, so every embedded run shows up here. Ctrl-C stops the server.
// Uses libs/tracking's process manager (built here if needed), so the server never outlives us.
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const USAGE = `Usage: npm run mlflow [-- --port <port>] [--store <dir>]

Starts the MLflow tracking server and UI on http://127.0.0.1:<port> for this project's runs.
  --port   TCP port on 127.0.0.1 (default 5000)
  --store  store directory (default: $EMSEG_MLFLOW_DIR or .emseg/mlflow in the workspace)
  --help   show this help`;

function fail(message, code = 1) {
  process.stderr.write(`mlflow: ${message}\n`);
  process.exit(code);
}

let values;
try {
  ({ values } = parseArgs({
    options: { port: { type: 'string', default: '5000' }, store: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  }));
} catch (err) {
  fail(`${err.message}\n\n${USAGE}`, 2);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const port = Number(values.port);
if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`--port must be an integer from 1 to 65535, got ${JSON.stringify(values.port)}`, 2);

// The library's dist is what Node can run; tsc -b is incremental, so this is quick when up to date.
const tsc = spawnSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-b', join(ROOT, 'libs', 'tracking')], { cwd: ROOT, stdio: 'inherit' });
if (tsc.status !== 0) fail('building libs/tracking failed (see above)');
const { startMlflowServer, defaultStoreDir } = await import(join(ROOT, 'libs', 'tracking', 'dist', 'index.js'));

const storeDir = values.store ? resolve(values.store) : defaultStoreDir(ROOT);
process.stdout.write(`Starting MLflow on 127.0.0.1:${port} (store ${storeDir}) ...\n`);
let server;
try {
  server = await startMlflowServer({ storeDir, port });
} catch (err) {
  fail(err.message);
}
process.stdout.write(
  `MLflow UI: ${server.uri}\n` +
    `  backend store  sqlite:///${join(storeDir, 'mlflow.db')}\n` +
    `  artifacts      ${join(storeDir, 'artifacts')}\n` +
    `  server log     ${server.logFile}\n` +
    `  started in ${(server.startupMs / 1000).toFixed(1)} s; Ctrl-C stops it.\n`,
);

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  process.stdout.write(`\n${signal}: stopping MLflow ...\n`);
  await server.stop();
  process.exit(0);
}
process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));
setInterval(() => {
  if (!server.running && !stopping) fail(`the MLflow server stopped unexpectedly; see ${server.logFile}`);
}, 1000);
