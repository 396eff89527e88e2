/**
 * A resumed run is a new MLflow run (params such as train.steps may change, and MLflow params are
 * immutable). These helpers keep the lineage honest: the new run names the run it continues, a
 * predecessor left RUNNING by a killed process (SIGKILL, power loss) is closed as KILLED and points
 * forward, and a configuration that changed between the two is said out loud and logged.
 */
import { existsSync, readFileSync } from 'node:fs';
import { configChanges, type JsonObject } from '@emseg/config';
import { experimentUiUrl, runUiUrl, type TrackedRun } from '@emseg/tracking';
import type { RunDirClaim } from './run-dir.js';

export interface ConfigChange {
  key: string;
  from: string | null;
  to: string | null;
}

/** The config keys that differ from the `config.json` an earlier run left at `path` ([] if none). */
export function changedSinceLastRun(path: string, cfg: object): ConfigChange[] {
  if (!existsSync(path)) return [];
  try {
    return configChanges(JSON.parse(readFileSync(path, 'utf8')) as JsonObject, cfg as JsonObject);
  } catch (err) {
    throw new Error(
      `${path}: cannot read the interrupted run's configuration (${(err as Error).message}); it is needed to resume: restore it or start a new run`,
    );
  }
}

/** One line per change, e.g. `train.steps: 40 -> 80`. */
export function describeChanges(changes: readonly ConfigChange[]): string {
  return changes.map((c) => `${c.key}: ${c.from ?? '(absent)'} -> ${c.to ?? '(absent)'}`).join('; ');
}

/**
 * Tags `run` with the run it resumes (`emseg.resumedFrom`) and the config changes
 * (`emseg.resume.configChanges`); closes a predecessor still RUNNING on the same server as KILLED
 * and tags it `emseg.resumedBy`. Never throws: tracking trouble is logged, training goes on.
 * Returns the predecessor's run id, if any.
 */
export async function linkResumedRun(
  run: TrackedRun,
  claim: RunDirClaim,
  changes: readonly ConfigChange[],
  log: (message: string) => void,
): Promise<string | null> {
  const previous = claim.previous?.runs.at(-1);
  if (changes.length > 0) run.setTag('emseg.resume.configChanges', JSON.stringify(changes));
  if (!previous) return null;
  run.setTag('emseg.resumedFrom', previous.runId);
  if (previous.trackingUri.replace(/\/+$/, '') !== run.client.trackingUri.replace(/\/+$/, '')) {
    log(`resuming MLflow run ${previous.runId} of ${previous.trackingUri}; this run is on another server, so that run is left as it is`);
    return previous.runId;
  }
  try {
    const old = await run.client.getRun(previous.runId);
    await run.client.setTag(previous.runId, 'emseg.resumedBy', run.id);
    if (old.info.status === 'RUNNING') {
      await run.client.updateRun(previous.runId, { status: 'KILLED', endTime: Date.now() });
      await run.client.setTag(previous.runId, 'emseg.endReason', `its process ended without closing the run (killed?); continued by run ${run.id}`);
      log(`MLflow run ${previous.runId} was still RUNNING (its process died without ending it): marked KILLED and linked to this run`);
    }
  } catch (err) {
    log(`could not update the interrupted MLflow run ${previous.runId} (${(err as Error).message}); this run still records it as emseg.resumedFrom`);
  }
  return previous.runId;
}

/**
 * Where to look at a run: its page and the experiment's runs table on the tracking server, or, for
 * the project store (whose server stops with the run), the command that serves it again.
 */
export function runUiHint(run: TrackedRun, trackingUriFlag: string | undefined): string {
  const external = Boolean(trackingUriFlag || process.env.MLFLOW_TRACKING_URI);
  const uri = external ? run.client.trackingUri : 'http://127.0.0.1:5000';
  const pages = `${runUiUrl(uri, run.experimentId, run.id)} (all runs: ${experimentUiUrl(uri, run.experimentId)})`;
  return external ? pages : `npm run mlflow, then ${pages}`;
}
