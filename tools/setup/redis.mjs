// Step 4: redis-server, the real Redis the BullMQ queue tests start on 127.0.0.1 (never a mock),
// from the Debian packages: present -> nothing to do; missing and root with apt-get -> installed
// (apt-get update first when the package lists do not know it); otherwise a warning that says how
// to install it (the queue tests then fail naming it; everything else works without it).
import { spawnSync } from 'node:child_process';
import { run } from './util.mjs';

/** redis-server's version line, or null when it is not installed. */
function redisVersion() {
  const res = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  return res.status === 0 ? (res.stdout.trim().match(/v=(\S+)/)?.[1] ?? 'unknown version') : null;
}

export async function ensureRedisServer() {
  const found = redisVersion();
  if (found) return `redis-server ${found} present`;
  const canApt = process.getuid?.() === 0 && spawnSync('apt-get', ['--version']).status === 0;
  if (!canApt) {
    console.error(
      '[setup] WARNING: redis-server is not installed; the block-queue tests need it. Install it: `sudo apt-get install -y redis-server` (or your OS package).',
    );
    return 'missing (not installed: no root or no apt-get)';
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const fix = 'check that the Debian mirrors are reachable (`apt-get update`), or install redis-server yourself';
  const known = spawnSync('apt-cache', ['show', 'redis-server'], { stdio: 'ignore' }).status === 0;
  if (!known) run('apt-get', ['update', '-qq'], { env, fix, quiet: true });
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'redis-server'], { env, fix, quiet: true });
  return `installed redis-server ${redisVersion() ?? '(version unknown)'}`;
}
