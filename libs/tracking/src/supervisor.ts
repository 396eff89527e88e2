/**
 * The watchdog that sits between us and `mlflow server`, run as `node -e SUPERVISOR_SCRIPT <argv json>`.
 *
 * It starts MLflow in a process group of its own and takes that whole group down (SIGTERM, then
 * SIGKILL after a grace period) when any of these happens:
 *  - it receives SIGTERM/SIGINT/SIGHUP (our `stop()`);
 *  - its stdin reaches end-of-file, which is what happens when the process that started it dies
 *    for any reason, SIGKILL included, because that process held the pipe's other end;
 *  - the `mlflow server` command itself exits (its uvicorn workers would otherwise linger).
 * So a server never outlives the test or training process that started it.
 *
 * It writes `[emseg-supervisor] mlflow pgid <n>` to the log so the parent knows the group.
 * Zombie processes (not reaped by an init that does not reap) do not count as alive.
 */
export const SUPERVISOR_SCRIPT = String.raw`
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const argv = JSON.parse(process.argv[1]);
const graceMs = Number(process.env.EMSEG_SUPERVISOR_GRACE_MS || 8000);
const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit'], detached: true });
const pgid = child.pid;
let stopping = false;
let childExited = false;
console.log('[emseg-supervisor] mlflow pgid ' + pgid);

function groupAlive() {
  if (fs.existsSync('/proc/self/stat')) {
    for (const entry of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let stat;
      try { stat = fs.readFileSync('/proc/' + entry + '/stat', 'utf8'); } catch { continue; }
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') return true;
    }
    return false;
  }
  try { process.kill(-pgid, 0); return true; } catch { return false; }
}

function signalGroup(signal) {
  try { process.kill(-pgid, signal); } catch {}
}

function stop(reason) {
  if (stopping) return;
  stopping = true;
  console.log('[emseg-supervisor] stopping mlflow (' + reason + ')');
  signalGroup('SIGTERM');
  const started = Date.now();
  const poll = setInterval(() => {
    if (!groupAlive() && (childExited || child.exitCode !== null || child.signalCode !== null)) {
      clearInterval(poll);
      process.exit(0);
    }
    if (Date.now() - started > graceMs) {
      signalGroup('SIGKILL');
      clearInterval(poll);
      setTimeout(() => process.exit(0), 200);
    }
  }, 50);
}

child.on('exit', (code, signal) => {
  childExited = true;
  if (!stopping) stop('mlflow server exited with ' + (signal || 'code ' + code));
});
child.on('error', (err) => {
  console.log('[emseg-supervisor] cannot start ' + argv[0] + ': ' + err.message);
  process.exit(127);
});
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGHUP', () => stop('SIGHUP'));
process.stdin.on('end', () => stop('parent process is gone'));
process.stdin.on('error', () => stop('parent process is gone'));
process.stdin.resume();
`;
