#!/usr/bin/env node
/**
 * `nx run tracking:sync -- --journal PATH`: delivers what runs left in their journals.
 * Exit status: 0 when every journal is complete, 1 when something is still waiting, 2 on bad usage.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { EXIT, EXIT_CODES_HELP } from '@emseg/config';
import { TrackingError } from '../errors.js';
import { syncJournals } from '../sync.js';

const argv = await yargs(hideBin(process.argv))
  .scriptName('nx run tracking:sync --')
  .usage('$0 --journal <file|dir> [...]')
  .epilogue(
    'Replays MLflow run journals (.emseg/mlflow/journal/<run id>.jsonl): sends the metrics, params, tags, dataset inputs, ' +
      'artifacts and final status that a run could not deliver itself. Safe to repeat: nothing is stored twice. Journals of ' +
      'runs that used the embedded server go back into the same local store; others go to the server they name ' +
      '(credentials from MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD).\n\n' +
      `${EXIT_CODES_HELP} Here 1 means some journal is not fully delivered (or could not be read).`,
  )
  .version(false)
  .option('journal', { type: 'string', array: true, demandOption: true, describe: 'journal file, or a directory of them' })
  .option('tracking-uri', { type: 'string', describe: 'send to this server instead of the one the journal names' })
  .option('timeout', { type: 'number', default: 120, describe: 'seconds to keep retrying each journal' })
  .option('keep', { type: 'boolean', default: false, describe: 'keep journals after everything was delivered' })
  .option('force', { type: 'boolean', default: false, describe: 'replay even if the writing process still runs' })
  .option('orphan-status', {
    choices: ['KILLED', 'FAILED', 'FINISHED', 'none'] as const,
    default: 'KILLED' as const,
    describe: 'status for runs whose process died before ending them',
  })
  .option('json', { type: 'boolean', default: false, describe: 'print the reports as JSON' })
  .example('$0 --journal .emseg/mlflow/journal', 'replay every journal of the local store')
  .strict()
  .help()
  .fail((message, err, y) => {
    if (err) throw err;
    process.stderr.write(`${y.help()}\n\n${message}\n`);
    process.exit(EXIT.usage);
  })
  .parseAsync();

try {
  const orphan = argv['orphan-status'];
  const reports = await syncJournals(argv.journal, {
    trackingUri: argv['tracking-uri'],
    timeoutMs: argv.timeout * 1000,
    keep: argv.keep,
    force: argv.force,
    orphanStatus: orphan === 'none' ? false : orphan,
    onProblem: (p) => process.stderr.write(`[sync] ${p.message}\n`),
  });
  if (argv.json) process.stdout.write(`${JSON.stringify(reports, null, 2)}\n`);
  else {
    if (reports.length === 0) process.stdout.write('no journals found\n');
    for (const r of reports) {
      const state = r.complete
        ? r.removed
          ? 'complete, journal removed'
          : 'complete'
        : `INCOMPLETE: ${r.pendingRecords} records, ${r.pendingArtifacts} artifacts still waiting`;
      process.stdout.write(
        `${r.journal}: run ${r.runId} on ${r.trackingUri}: ${r.deliveredRecords}/${r.waitingRecords} records, ${r.uploadedArtifacts}/${r.waitingArtifacts} artifacts delivered` +
          `${r.rejectedRecords ? ` (${r.rejectedRecords} refused by the server)` : ''}${r.endedAs ? `, ended as ${r.endedAs}` : ''}; ${state}\n`,
      );
    }
  }
  process.exitCode = reports.every((r) => r.complete) ? EXIT.ok : EXIT.failed;
} catch (err) {
  if (err instanceof TrackingError) {
    process.stderr.write(`sync: ${err.message}\n`);
    process.exitCode = EXIT.failed;
  } else throw err;
}
