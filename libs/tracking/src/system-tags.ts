/**
 * The tags MLflow's UI knows, filled in for every run: who ran it, what script, which git commit.
 * Apps add backend information themselves (`backendTags()` from @emseg/tf), since this library
 * does not load TensorFlow.
 */
import { execFileSync } from 'node:child_process';
import { hostname, userInfo } from 'node:os';
import { relative, isAbsolute } from 'node:path';

export const TAG = {
  runName: 'mlflow.runName',
  user: 'mlflow.user',
  sourceName: 'mlflow.source.name',
  sourceType: 'mlflow.source.type',
  gitCommit: 'mlflow.source.git.commit',
  note: 'mlflow.note.content',
  parentRunId: 'mlflow.parentRunId',
  /** The error that ended a run as FAILED (ours, not MLflow's). */
  error: 'emseg.error',
} as const;

/** The user name: $USER / $LOGNAME, else the OS account, else 'unknown'. */
export function currentUser(env: NodeJS.ProcessEnv = process.env): string {
  if (env.USER) return env.USER;
  if (env.LOGNAME) return env.LOGNAME;
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

/** The entry script relative to the working directory (`apps/pretrain/dist/main.js`), or `node`. */
export function currentSource(cwd: string = process.cwd()): string {
  const script = process.argv[1];
  if (!script) return 'node';
  if (!isAbsolute(script)) return script;
  const rel = relative(cwd, script);
  return rel.startsWith('..') ? script : rel;
}

/** `git rev-parse HEAD` in `cwd`, or undefined outside a repository or without git. */
export function gitCommit(cwd: string = process.cwd()): string | undefined {
  try {
    const out = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, stdio: ['ignore', 'pipe', 'ignore'], timeout: 3000 })
      .toString()
      .trim();
    return /^[0-9a-f]{40}$/.test(out) ? out : undefined;
  } catch {
    return undefined;
  }
}

/** Tags set on every new run. */
export function systemTags(options: { description?: string; sourceName?: string; parentRunId?: string }): Record<string, string> {
  const tags: Record<string, string> = {
    [TAG.user]: currentUser(),
    [TAG.sourceName]: options.sourceName ?? currentSource(),
    [TAG.sourceType]: 'LOCAL',
    'emseg.host': hostname(),
    'emseg.node': process.version,
  };
  const commit = gitCommit();
  if (commit) tags[TAG.gitCommit] = commit;
  if (options.description) tags[TAG.note] = options.description;
  if (options.parentRunId) tags[TAG.parentRunId] = options.parentRunId;
  return tags;
}
