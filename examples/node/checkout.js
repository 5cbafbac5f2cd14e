#!/usr/bin/env node
'use strict';
// Checkout, in Node.js, from the .proto alone: a workflow hands the caller a value (a
// payment URL) while it keeps running.
//
// The workflow `examples.node.checkout` creates a payment (step 1), publishes its URL as
// the "paymentURL" event (step 2), then waits for the payment (step 3) and finishes with
// its outcome. This program runs the workflow in the background and, as the caller, reads
// the URL with GetEvent as soon as it is set, long before the workflow finishes:
//
//   workflow: checkout-order-3fa2...
//   payment URL: https://pay.example/order-3fa2...
//   result: success
//
// The workflow ID defaults to "checkout-<order id>", so checking out the same order twice
// runs one workflow: the second run gets the first one's URL and result.

const { randomUUID } = require('node:crypto');
const { EXIT_TIMEOUT, ExampleError, parseCli, runMain, seconds, sleep } = require('./client');
const { WorkflowRun, awaitResult, readEvent } = require('./workflow');

const WORKFLOW_NAME = 'examples.node.checkout';

const USAGE = `usage: node checkout.js [--coordinator HOST:PORT] [--workflow-id ID] [--order-id ID]
                        [--step-seconds 0.5] [--timeout 60]

Start a checkout workflow, print its payment URL, then its result.

  --coordinator HOST:PORT  the coordinator (default: $DURABLE_COORDINATOR or 127.0.0.1:50051)
  --workflow-id ID         workflow ID (default: checkout-<order id>)
  --order-id ID            order to check out (default: a new one)
  --step-seconds S         how long the payment takes (default: 0.5)
  --timeout S              longest wait for the URL and the result (default: 60)
  -h, --help               show this help
`;

/** Step: ask the (fake) payment provider for a payment page; returns its URL. */
async function createPayment(order) {
  return `https://pay.example/${order.order_id}`;
}

/** Step: stand-in for waiting until the customer has paid at `url`. */
async function waitForPayment(url, stepSeconds) {
  await sleep(stepSeconds);
  return 'success';
}

async function checkout(run, order, { stepSeconds }) {
  if (!order || typeof order.order_id !== 'string') {
    throw new ExampleError(`workflow ${run.workflowId} input is not an order`);
  }
  const url = await run.step('create_payment', () => createPayment(order)); // position 1
  // Publish the URL now, while the workflow goes on to wait for the payment.
  await run.setEvent('paymentURL', url); // 2
  return run.step('wait_for_payment', () => waitForPayment(url, stepSeconds)); // 3
}

async function main(coordinator, args) {
  const stepSeconds = seconds('--step-seconds', args['step-seconds']);
  const timeout = seconds('--timeout', args.timeout);
  const order = { order_id: args['order-id'] || `order-${randomUUID()}`, amount_cents: 4200 };
  const workflowId = args['workflow-id'] || `checkout-${order.order_id}`;

  const run = await WorkflowRun.start(coordinator, workflowId, WORKFLOW_NAME, order);
  console.log(`workflow: ${run.workflowId}`);
  // The workflow runs in the background of this process (unless it already finished)...
  const body = run.execute((r, input) => checkout(r, input, { stepSeconds }));

  // ...while the caller blocks until it sets "paymentURL".
  const caller = (async () => {
    const url = await readEvent(coordinator, run.workflowId, 'paymentURL', timeout);
    if (!url.found) throw new ExampleError(`no payment URL: ${url.reason}`, EXIT_TIMEOUT);
    console.log(`payment URL: ${url.value}`);
    // Meanwhile the workflow waits for the payment; its result is the outcome.
    console.log(`result: ${await awaitResult(coordinator, run.workflowId, timeout)}`);
  })();
  await Promise.all([body, caller]);
}

const args = parseCli(USAGE, {
  coordinator: { type: 'string' },
  'workflow-id': { type: 'string' },
  'order-id': { type: 'string' },
  'step-seconds': { type: 'string', default: '0.5' },
  timeout: { type: 'string', default: '60' },
});
runMain(main, args);
