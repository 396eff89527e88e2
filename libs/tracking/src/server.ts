/**
 * Starting and stopping a real MLflow tracking server (the project's `.venv/bin/mlflow`) on a
 * loopback port, with a SQLite backend store and proxied artifacts in one store directory:
 *
 *   <storeDir>/mlflow.db      backend store (sqlite:///<storeDir>/mlflow.db)
 *   <storeDir>/artifacts/     artifact destination served through /api/2.0/mlflow-artifacts
 *   <storeDir>/server.log     server output
 *
 * `npm run mlflow` (tools/mlflow/serve.mjs), the embedded default of `Tracker` and every test
 * suite that logs runs use this. The server runs under a watchdog (see supervisor.ts) in its own
 * process group: `stop()` ends the whole group, and so does the death of the starting process.
 *
 * @example
 *   const server = await startMlflowServer({ storeDir: '/tmp/store' });
 *   // ... log to server.uri ...
 *   await server.stop();
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findWorkspaceRoot, processAlive, withTemporaryFileSync } from '@emseg/fs';
import { MlflowServerStartError } from './errors.js';
import { SUPERVISOR_SCRIPT } from './supervisor.js';

export interface MlflowServerOptions {
  /** Directory of the SQLite store and the artifacts; created if missing. */
  storeDir: string;
  /** TCP port; default: a free loopback port. A given port that is taken is an error. */
  port?: number;
  /** Interface to bind; default 127.0.0.1. */
  host?: string;
  /** The `mlflow` executable; default {@link findMlflowExecutable}. */
  mlflowCommand?: string;
  /** Uvicorn worker processes; default 1 (enough for one training process, and quickest to start). */
  workers?: number;
  /** How long to wait for /health; default 120 s. */
  startTimeoutMs?: number;
  /** Server output; default `<storeDir>/server.log` (appended). */
  logFile?: string;
  /** `basic-auth` runs MLflow's authentication app (needs `env` with its config, see MLflow docs). */
  appName?: 'basic-auth';
  /** Extra environment for the server process. */
  env?: Record<string, string>;
  /**
   * Seed a new store with a copy of an empty database MLflow created earlier on this machine
   * (skips MLflow's schema migrations, a large part of a fresh start). Default true; the
   * environment variable EMSEG_MLFLOW_TEMPLATE=0 turns it off. See storeTemplate().
   */
  useStoreTemplate?: boolean;
}

export interface MlflowServer {
  /** `http://127.0.0.1:<port>` */
  readonly uri: string;
  readonly port: number;
  readonly storeDir: string;
  readonly logFile: string;
  /** Milliseconds from spawn to a healthy server. */
  readonly startupMs: number;
  /** Process group of the MLflow processes. */
  readonly pgid: number;
  /** True until the server has stopped (or died). */
  readonly running: boolean;
  /** Stops the whole server process group; resolves when it is gone. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Where runs land when no MLFLOW_TRACKING_URI is set, and what `npm run mlflow` shows:
 * `$EMSEG_MLFLOW_DIR`, else `<workspace root of the working directory>/.emseg/mlflow`.
 */
export function defaultStoreDir(cwd: string = process.cwd(), env: NodeJS.ProcessEnv = process.env): string {
  if (env.EMSEG_MLFLOW_DIR) return resolve(cwd, env.EMSEG_MLFLOW_DIR);
  return join(findWorkspaceRoot(cwd) ?? resolve(cwd), '.emseg', 'mlflow');
}

/**
 * The `mlflow` executable: `$EMSEG_MLFLOW_BIN`, else the project virtualenv's
 * (`<repo>/.venv/bin/mlflow`, provisioned by tools/setup), else `mlflow` on the PATH.
 */
export function findMlflowExecutable(env: NodeJS.ProcessEnv = process.env): string {
  if (env.EMSEG_MLFLOW_BIN) return env.EMSEG_MLFLOW_BIN;
  const candidates = [
    fileURLToPath(new URL('../../../.venv/bin/mlflow', import.meta.url)),
    join(findWorkspaceRoot() ?? process.cwd(), '.venv', 'bin', 'mlflow'),
  ];
  return candidates.find((c) => existsSync(c)) ?? 'mlflow';
}

/** A TCP port that was free on `host` a moment ago (the OS picks it). */
export function freeLoopbackPort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** True when nothing listens on host:port (we could bind it). */
export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolveFree) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolveFree(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolveFree(true)));
  });
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Starts `mlflow server` and waits until it answers /health. See the module comment. */
export async function startMlflowServer(options: MlflowServerOptions): Promise<MlflowServer> {
  const storeDir = resolve(options.storeDir);
  const host = options.host ?? '127.0.0.1';
  const command = options.mlflowCommand ?? findMlflowExecutable();
  if (command.includes('/') && !existsSync(command)) {
    throw new MlflowServerStartError(
      `MLflow is not installed at ${command}: run \`node tools/setup/setup.mjs\` (it installs the pinned mlflow into .venv), or set EMSEG_MLFLOW_BIN`,
      '',
    );
  }
  mkdirSync(join(storeDir, 'artifacts'), { recursive: true });
  const logFile = resolve(options.logFile ?? join(storeDir, 'server.log'));
  rotateLog(logFile);

  if (options.port !== undefined && !(await isPortFree(options.port, host))) {
    throw new MlflowServerStartError(`port ${options.port} on ${host} is already in use: stop what listens there or choose another port`, '');
  }
  const release = await acquireStartLock(storeDir, options.startTimeoutMs ?? 120_000);
  try {
    const database = join(storeDir, 'mlflow.db');
    const template = options.useStoreTemplate === false || process.env.EMSEG_MLFLOW_TEMPLATE === '0' ? undefined : storeTemplate(command);
    const fresh = !existsSync(database);
    let seeded = fresh && template !== undefined && seedFromTemplate(template, database);
    for (let attempt = 1; ; attempt++) {
      const port = options.port ?? (await freeLoopbackPort(host));
      try {
        const server = await launch({ ...options, storeDir, host, command, logFile, port });
        if (fresh && !seeded && template) saveTemplate(template, database);
        return server;
      } catch (err) {
        if (seeded) {
          // A template that this MLflow does not accept: forget it and start from scratch.
          rmSync(database, { force: true });
          rmSync(template!.path, { force: true });
          seeded = false;
          continue;
        }
        // Another process took the free port between our probe and MLflow's bind: pick again.
        const portRace = err instanceof MlflowServerStartError && /address already in use|Errno 98/i.test(err.logTail);
        if (!portRace || options.port !== undefined || attempt >= 3) throw err;
      }
    }
  } finally {
    release();
  }
}

/** An empty MLflow database made by this machine's MLflow, and the Python that made it. */
interface StoreTemplate {
  path: string;
  python: string;
}

/**
 * Where the template database for this `mlflow` executable lives: the user cache
 * (`$XDG_CACHE_HOME/emseg` or `~/.cache/emseg`), keyed by the executable's path, size and mtime, so
 * reinstalling MLflow gives a new template. Undefined when the executable is not a Python console
 * script we can locate (then stores are simply created the normal way).
 */
function storeTemplate(command: string): StoreTemplate | undefined {
  try {
    const executable = realpathSync(command);
    const shebang = /^#!(\S+python[\d.]*)\s*$/m.exec(readFileSync(executable, 'utf8').split('\n', 1)[0]);
    if (!shebang || !existsSync(shebang[1])) return undefined;
    const stat = statSync(executable);
    const key = createHash('sha256').update(`${executable}\0${stat.size}\0${stat.mtimeMs}`).digest('hex').slice(0, 16);
    const cache = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
    return { path: join(cache, 'emseg', 'mlflow-store-template', `${key}.db`), python: shebang[1] };
  } catch {
    return undefined;
  }
}

function seedFromTemplate(template: StoreTemplate, database: string): boolean {
  if (!existsSync(template.path)) return false;
  try {
    withTemporaryFileSync(database, (tmp) => copyFileSync(template.path, tmp));
    return true;
  } catch {
    return false;
  }
}

/**
 * Saves the database MLflow just created (and migrated) as the template, with SQLite's online
 * backup (consistent while the server runs). Synchronous and done before the caller gets the
 * server, so no client request has written to the database yet (takes ~0.1 s, once per machine).
 */
function saveTemplate(template: StoreTemplate, database: string): void {
  const script =
    'import os, sqlite3, sys\n' +
    'src, dst = sys.argv[1], sys.argv[2]\n' +
    'os.makedirs(os.path.dirname(dst), exist_ok=True)\n' +
    'tmp = dst + ".%d.tmp" % os.getpid()\n' +
    'a = sqlite3.connect(src); b = sqlite3.connect(tmp)\n' +
    'a.backup(b); b.close(); a.close()\n' +
    'os.replace(tmp, dst)\n';
  try {
    spawnSync(template.python, ['-c', script, database, template.path], { stdio: 'ignore', timeout: 30_000 });
  } catch {
    // Only an optimisation.
  }
}

interface LaunchOptions extends MlflowServerOptions {
  storeDir: string;
  host: string;
  command: string;
  logFile: string;
  port: number;
}

async function launch(options: LaunchOptions): Promise<MlflowServer> {
  const { storeDir, host, port, logFile, command } = options;
  const args = [
    'server',
    '--host',
    host,
    '--port',
    String(port),
    '--backend-store-uri',
    `sqlite:///${join(storeDir, 'mlflow.db')}`,
    '--artifacts-destination',
    join(storeDir, 'artifacts'),
    '--serve-artifacts',
    '--workers',
    String(options.workers ?? 1),
  ];
  if (options.appName) args.push('--app-name', options.appName);

  const logFd = openSync(logFile, 'a');
  const logStart = statSync(logFile).size;
  writeSync(logFd, `\n=== ${new Date().toISOString()} emseg: ${command} ${args.join(' ')}\n`);
  const started = performance.now();
  let supervisor: ChildProcess;
  try {
    supervisor = spawn(process.execPath, ['-e', SUPERVISOR_SCRIPT, JSON.stringify([command, ...args])], {
      cwd: storeDir,
      detached: true,
      stdio: ['pipe', logFd, logFd],
      env: {
        ...process.env,
        // Job execution (GenAI scorers) is not used here and costs processes and startup time.
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION: 'false',
        PYTHONUNBUFFERED: '1',
        ...options.env,
      },
    });
  } finally {
    closeSync(logFd);
  }
  let exited = false;
  const exitedPromise = new Promise<void>((resolveExit) => {
    supervisor.once('exit', () => {
      exited = true;
      live.delete(supervisor);
      resolveExit();
    });
  });
  supervisor.unref();
  (supervisor.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  live.add(supervisor);
  installExitHook();

  const uri = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const ready = new RegExp(`(running on|Listening at:?) https?://\\S+:${port}\\b`);
  const deadline = Date.now() + (options.startTimeoutMs ?? 120_000);
  let pgid = 0;
  for (;;) {
    const log = readFrom(logFile, logStart);
    const pgidMatch = /\[emseg-supervisor\] mlflow pgid (\d+)/.exec(log);
    if (pgidMatch) pgid = Number(pgidMatch[1]);
    if (exited) {
      throw new MlflowServerStartError(`mlflow server exited during startup on ${uri} (store ${storeDir}, log ${logFile})`, tail(log, 25));
    }
    if (ready.test(log) && (await healthy(uri))) break;
    if (Date.now() > deadline) {
      await stopSupervisor(supervisor, exitedPromise, pgid);
      throw new MlflowServerStartError(
        `mlflow server on ${uri} did not become healthy within ${options.startTimeoutMs ?? 120_000} ms (store ${storeDir}, log ${logFile})`,
        tail(readFrom(logFile, logStart), 25),
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const startupMs = Math.round(performance.now() - started);

  let stopping: Promise<void> | undefined;
  return {
    uri,
    port,
    storeDir,
    logFile,
    startupMs,
    pgid,
    get running() {
      return !exited;
    },
    stop() {
      stopping ??= stopSupervisor(supervisor, exitedPromise, pgid);
      return stopping;
    },
  };
}

async function stopSupervisor(supervisor: ChildProcess, exitedPromise: Promise<void>, pgid: number): Promise<void> {
  if (supervisor.exitCode !== null || supervisor.signalCode !== null) return;
  // The supervisor is unref'd while it runs; waiting for it to exit must keep this process alive,
  // or `await server.stop()` returns to an empty event loop and the process quits mid-await.
  supervisor.ref();
  try {
    supervisor.kill('SIGTERM');
  } catch {
    // already gone
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 15_000)));
  const outcome = await Promise.race([exitedPromise, timeout]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    for (const target of [pgid > 0 ? -pgid : 0, supervisor.pid ?? 0]) {
      try {
        if (target !== 0) process.kill(target, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await Promise.race([exitedPromise, new Promise((r) => setTimeout(r, 2000))]);
  }
}

/** Last resort when this process exits without stopping its servers (the stdin watchdog also fires). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const supervisor of live) {
      try {
        supervisor.kill('SIGTERM');
      } catch {
        // gone
      }
    }
  });
}

async function healthy(uri: string): Promise<boolean> {
  try {
    const res = await fetch(`${uri}/health`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

function readFrom(path: string, offset: number): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = statSync(path).size;
    if (size <= offset) return '';
    const buffer = Buffer.alloc(Math.min(size - offset, 4 << 20));
    const n = readSync(fd, buffer, 0, buffer.length, offset);
    return buffer.toString('utf8', 0, n);
  } finally {
    closeSync(fd);
  }
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Keeps server.log under 10 MB: the old one becomes server.log.1. */
function rotateLog(logFile: string): void {
  mkdirSync(dirname(logFile), { recursive: true });
  try {
    if (statSync(logFile).size > 10 * 1024 * 1024) renameSync(logFile, `${logFile}.1`);
  } catch {
    // no log yet
  }
}

/**
 * Serialises server startups on one store, so two processes never create or migrate the same
 * SQLite database at once. A lock older than the start timeout is considered abandoned.
 */
async function acquireStartLock(storeDir: string, timeoutMs: number): Promise<() => void> {
  const lock = join(storeDir, '.server-start.lock');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(lock, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let stale = false;
    try {
      const holder = Number(readFileSync(lock, 'utf8'));
      stale = Date.now() - statSync(lock).mtimeMs > timeoutMs || (holder > 0 && !processAlive(holder));
    } catch {
      continue;
    }
    if (stale) rmSync(lock, { force: true });
    else if (Date.now() > deadline) throw new MlflowServerStartError(`another process is starting an MLflow server on ${storeDir} (lock ${lock})`, '');
    else await new Promise((r) => setTimeout(r, 200));
  }
}
