#!/usr/bin/env node
'use strict';
// Send a message to a workflow (whatever language runs it). The workflow receives it with
// Recv (durable.recv in Python); it need not have started yet: the message waits for it.
//
//   node send.js --workflow-id ID --message '{"approved": true}' [--topic T] [--key K]
//
// With --key, sending again with the same key delivers nothing more: safe to retry.
// Prints "sent" or "already sent" (the key was used before) and exits 0.

const { ExampleError, encode, parseCli, runMain } = require('./client');

const USAGE = `usage: node send.js --workflow-id ID --message JSON [--topic TOPIC] [--key KEY]
                    [--coordinator HOST:PORT]

Send a JSON message to a workflow.

  --workflow-id ID         the destination workflow (it need not exist yet)
  --message JSON           the message, as JSON text
  --topic TOPIC            the topic (default: the default topic)
  --key KEY                an idempotency key: a repeated send with it delivers nothing
  --coordinator HOST:PORT  the coordinator (default: $DURABLE_COORDINATOR or 127.0.0.1:50051)
  -h, --help               show this help
`;

async function main(coordinator, args) {
  if (!args['workflow-id'] || args.message === undefined) {
    throw new ExampleError('--workflow-id and --message are required (see --help)');
  }
  let message;
  try {
    message = JSON.parse(args.message);
  } catch (error) {
    throw new ExampleError(`--message is not JSON: ${error.message}`);
  }
  const reply = await coordinator.call('Send', {
    destination_workflow_id: args['workflow-id'],
    topic: args.topic,
    message: encode(message),
    idempotency_key: args.key,
  });
  console.log(reply.already_sent ? 'already sent' : 'sent');
}

const args = parseCli(USAGE, {
  coordinator: { type: 'string' },
  'workflow-id': { type: 'string' },
  message: { type: 'string' },
  topic: { type: 'string', default: '' },
  key: { type: 'string', default: '' },
});
runMain(main, args);
