#!/usr/bin/env node
'use strict';
// Follow one event of any workflow (whatever language runs it) and print each value as
// JSON on its own line: the current value first, then every later one, in order.
//
//   node watch.js --workflow-id ID --key progress [--timeout 60] [--after-version N]
//
// Ends with exit code 0 once the workflow has finished and every value it set was printed,
// or 1 when --timeout passes first (a line on stderr says so). The workflow need not exist
// yet. To resume after a disconnect without missing or repeating a value, pass the last
// version seen (printed on stderr with --versions) as --after-version.

const {
  EXIT_TIMEOUT,
  ExampleError,
  decodeOrRaw,
  parseCli,
  runMain,
  seconds,
} = require('./client');

const USAGE = `usage: node watch.js --workflow-id ID --key KEY [--coordinator HOST:PORT]
                     [--timeout 60] [--after-version N] [--versions]

Print each value of a workflow's event as one line of JSON, until the workflow finishes
(exit 0) or the timeout passes (exit 1).

  --workflow-id ID         the workflow (it need not exist yet)
  --key KEY                the event key
  --coordinator HOST:PORT  the coordinator (default: $DURABLE_COORDINATOR or 127.0.0.1:50051)
  --timeout S              how long to follow (default: 60)
  --after-version N        only values after version N (default: 0, the current value on)
  --versions               also print each value's version on stderr
  -h, --help               show this help
`;

async function main(coordinator, args) {
  if (!args['workflow-id'] || !args.key) {
    throw new ExampleError('--workflow-id and --key are required (see --help)');
  }
  const timeout = seconds('--timeout', args.timeout);
  const afterVersion = Number(args['after-version']);
  if (!Number.isSafeInteger(afterVersion) || afterVersion < 0) {
    throw new ExampleError(`--after-version must be an integer >= 0, not ${args['after-version']}`);
  }
  const messages = coordinator.getEvent(args['workflow-id'], args.key, {
    seconds: timeout,
    follow: true,
    afterVersion,
  });
  for await (const message of messages) {
    switch (message.outcome) {
      case 'event':
        console.log(JSON.stringify(decodeOrRaw(message.event.value)));
        if (args.versions) process.stderr.write(`version ${message.event.version}\n`);
        break;
      case 'workflow_finished':
        return; // the last message: every value has been printed
      case 'timed_out':
        throw new ExampleError(
          `timed out after ${timeout}s before the workflow finished`,
          EXIT_TIMEOUT,
        );
      default:
        throw new ExampleError(`unexpected GetEvent message ${JSON.stringify(message)}`);
    }
  }
  throw new ExampleError('the GetEvent stream ended without workflow_finished or timed_out');
}

const args = parseCli(USAGE, {
  coordinator: { type: 'string' },
  'workflow-id': { type: 'string' },
  key: { type: 'string' },
  timeout: { type: 'string', default: '60' },
  'after-version': { type: 'string', default: '0' },
  versions: { type: 'boolean', default: false },
});
runMain(main, args);
