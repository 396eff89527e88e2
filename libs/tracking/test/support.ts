/**
 * Test support: a real MLflow server per test file in a temporary store, and small helpers.
 * Servers run under the library's watchdog, so they die with the test process in any case.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMlflowServer, type MlflowServer, type MlflowServerOptions, type TrackingProblem } from '@emseg/tracking';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** A fresh temporary directory, removed by `cleanup()`. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `emseg-tracking-${prefix}-`));
}

export interface TestServer {
  server: MlflowServer;
  dir: string;
  /** A journal directory unique to this file. */
  journalDir: string;
  cleanup(): Promise<void>;
}

/** Starts a real MLflow server on a free loopback port with its store in a temp directory. */
export async function startTestServer(prefix: string, options: Partial<MlflowServerOptions> = {}): Promise<TestServer> {
  const dir = tempDir(prefix);
  const server = await startMlflowServer({ storeDir: join(dir, 'store'), ...options });
  return {
    server,
    dir,
    journalDir: join(dir, 'journal'),
    async cleanup() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Collects problems instead of printing them. */
export function problemSink(): { problems: TrackingProblem[]; onProblem: (p: TrackingProblem) => void } {
  const problems: TrackingProblem[] = [];
  return { problems, onProblem: (p) => problems.push(p) };
}

/** Builds libs/tracking/dist (child-process tests run the compiled library, as apps do). */
export function buildTrackingDist(): void {
  execFileSync(join(REPO_ROOT, 'node_modules', '.bin', 'tsc'), ['-b', join(REPO_ROOT, 'libs', 'tracking')], { cwd: REPO_ROOT, stdio: 'pipe' });
}

/** Processes (not zombies) whose process group is `pgid`, from /proc. */
export function liveGroupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') out.push(Number(entry));
  }
  return out;
}

/** Polls `check` every 100 ms until it returns true or `timeoutMs` passes. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return check();
}
