#!/usr/bin/env node
'use strict';
// Data processing with live progress, in Node.js, from the .proto alone.
//
// This program *is* the workflow's runner: it drives `examples.node.process_data` through
// the raw RPCs (StartWorkflow, SetEvent, RunStep, FinishWorkflow), replaying whatever a
// previous run recorded. Meanwhile a watcher in the same program follows the "progress"
// event (GetEvent with follow) and prints each value as it is set. It prints:
//
//   workflow: data-1f0c...
//   progress: 50%
//   progress: 100%
//   status: complete
//   result: done
//
// Run it again with the same --workflow-id and nothing runs again: the workflow is
// finished, the watcher shows the last progress value and the recorded result comes back.

const { randomUUID } = require('node:crypto');
const {
  EXIT_TIMEOUT,
  ExampleError,
  decode,
  parseCli,
  runMain,
  seconds,
  sleep,
} = require('./client');
const { WorkflowRun, awaitResult, readEvent } = require('./workflow');

const WORKFLOW_NAME = 'examples.node.process_data';

const USAGE = `usage: node progress.js [--coordinator HOST:PORT] [--workflow-id ID] [--data TEXT]
                        [--step-seconds 0.5] [--timeout 60] [--verbose]

Run the process_data workflow through the raw RPCs and watch its progress live.

  --coordinator HOST:PORT  the coordinator (default: $DURABLE_COORDINATOR or 127.0.0.1:50051)
  --workflow-id ID         workflow ID; reuse one to resume it or get its recorded result
                           (default: a new one)
  --data TEXT              the input (default: "The Quick  Brown Fox"); a workflow that
                           exists keeps the input it was first started with
  --step-seconds S         how long each step works, so progress is visible (default: 0.5)
  --timeout S              longest wait for events and the result (default: 60)
  --verbose                print each checkpoint on stderr: "step 2 step step_one: ran"
  -h, --help               show this help
`;

// ---------------------------------------------------------------------------------------
// Steps: plain functions whose outputs the coordinator records once per workflow.
// ---------------------------------------------------------------------------------------

/** Step one: normalise the input (the sleep stands in for real work). */
async function stepOne(data, stepSeconds) {
  await sleep(stepSeconds);
  return data.split(/\s+/).filter(Boolean).join(' ').toLowerCase();
}

/** Step two: analyse the cleaned text. */
async function stepTwo(text, stepSeconds) {
  await sleep(stepSeconds);
  return text.split(' ').filter(Boolean).length;
}

// ---------------------------------------------------------------------------------------
// The workflow: deterministic code; each checkpoint takes the next position from 1.
// ---------------------------------------------------------------------------------------

async function processData(run, input, { stepSeconds, watcherShowing }) {
  if (!input || typeof input.data !== 'string') {
    throw new ExampleError(`workflow ${run.workflowId} input is not {"data": "..."}`);
  }
  // Checkpoints take positions 1-6 in the order the code reaches them.
  await run.setEvent('status', 'processing'); // 1
  const cleaned = await run.step('step_one', () => stepOne(input.data, stepSeconds)); // 2
  await run.setEvent('progress', 50); // 3
  await run.step('step_two', () => stepTwo(cleaned, stepSeconds)); // 4
  // Demo only: publish the next value once the watcher shows one, so the output is the
  // same on every run, even with --step-seconds 0. Real workflows never wait for their
  // readers; a watcher that comes late simply starts from the current value.
  await watcherShowing;
  await run.setEvent('progress', 100); // 5
  await run.setEvent('status', 'complete'); // 6
  return 'done';
}

/**
 * Follow "progress" (the current value, then each later one) and print it. `done` settles
 * when the workflow has finished and every value was shown; `showing` once one value is.
 */
function watchProgress(coordinator, workflowId, timeout) {
  let shown;
  let notShown;
  const showing = new Promise((resolve, reject) => {
    shown = resolve;
    notShown = reject;
  });
  showing.catch(() => {}); // only the workflow body waits on it, and only while it runs
  const done = (async () => {
    try {
      for await (const message of coordinator.getEvent(workflowId, 'progress', {
        seconds: timeout,
        follow: true,
      })) {
        if (message.outcome === 'event') {
          console.log(`progress: ${decode(message.event.value)}%`);
          shown();
        } else if (message.outcome === 'timed_out') {
          throw new ExampleError(
            `progress: workflow not finished within ${timeout}s`,
            EXIT_TIMEOUT,
          );
        }
        // 'workflow_finished' is the last message: the loop ends.
      }
    } finally {
      notShown(new ExampleError('the progress watcher stopped before showing a value'));
    }
  })();
  return { done, showing };
}

async function main(coordinator, args) {
  const stepSeconds = seconds('--step-seconds', args['step-seconds']);
  const timeout = seconds('--timeout', args.timeout);
  const workflowId = args['workflow-id'] || `data-${randomUUID()}`;
  const onStep = args.verbose
    ? (stepId, kind, name, how) => process.stderr.write(`step ${stepId} ${kind} ${name}: ${how}\n`)
    : undefined;

  const input = { data: args.data };
  const run = await WorkflowRun.start(coordinator, workflowId, WORKFLOW_NAME, input, { onStep });
  console.log(`workflow: ${run.workflowId}`);

  const watcher = watchProgress(coordinator, run.workflowId, timeout);
  // Run (or resume) the workflow here while the watcher follows it; a finished workflow is
  // not run again.
  const body = run.execute((r, input) =>
    processData(r, input, { stepSeconds, watcherShowing: watcher.showing }),
  );
  await Promise.all([body, watcher.done]);

  // GetEvent without follow: the latest value, from anyone who knows the workflow ID.
  const status = await readEvent(coordinator, run.workflowId, 'status', timeout);
  if (!status.found) throw new ExampleError(status.reason, EXIT_TIMEOUT);
  console.log(`status: ${status.value}`);

  // The recorded result, as any process would read it.
  console.log(`result: ${await awaitResult(coordinator, run.workflowId, timeout)}`);
}

const args = parseCli(USAGE, {
  coordinator: { type: 'string' },
  'workflow-id': { type: 'string' },
  data: { type: 'string', default: 'The Quick  Brown Fox' },
  'step-seconds': { type: 'string', default: '0.5' },
  timeout: { type: 'string', default: '60' },
  verbose: { type: 'boolean', default: false },
});
runMain(main, args);
