#!/usr/bin/env node
'use strict';
// List the coordinator's cron schedules, from protos/durable/v1/schedules.proto alone:
// ScheduleService.ListSchedules, a page at a time.
//
//   node schedules.js [--workflow NAME] [--json] [--page-size 100] [--coordinator HOST:PORT]
//
// For each schedule, by name:
//
//   schedule: nightly-report
//     cron: 0 2 * * * (Europe/Paris)
//     workflow: reports.nightly
//     paused: no
//     next ticks: 2026-12-07T01:00:00Z, 2026-12-08T01:00:00Z, ...
//
// (a `queue:` line too when the schedule enqueues on a queue; no next ticks while paused).
// With --json, one JSON object per schedule and line instead. Exit 0, or 2 with one line on
// stderr when the coordinator cannot be reached or refuses the call.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { CALL_TIMEOUT_SECONDS, ExampleError, RpcError, parseCli, runMain } = require('./client');

// schedules.proto imports durable/v1/coordinator.proto: both resolve from protos/.
const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'protos');
const packageDefinition = protoLoader.loadSync('durable/v1/schedules.proto', {
  includeDirs: [PROTO_ROOT],
  keepCase: true,
  enums: String,
  longs: Number,
  defaults: true,
  oneofs: true,
});
const ScheduleService = grpc.loadPackageDefinition(packageDefinition).durable.v1.ScheduleService;

const USAGE = `usage: node schedules.js [--workflow NAME] [--json] [--page-size N]
                         [--coordinator HOST:PORT]

List the coordinator's cron schedules: name, cron expression, time zone, workflow,
paused or not, and the next tick times.

  --workflow NAME          only the schedules that start this workflow
  --json                   one JSON object per schedule and line
  --page-size N            schedules per ListSchedules call, 1-1000 (default: 100)
  --coordinator HOST:PORT  the coordinator (default: $DURABLE_COORDINATOR or 127.0.0.1:50051)
  -h, --help               show this help
`;

/** A google.protobuf.Timestamp as RFC 3339 UTC, without fractions when whole seconds. */
function rfc3339(stamp) {
  const iso = new Date(stamp.seconds * 1000 + Math.floor(stamp.nanos / 1e6)).toISOString();
  return iso.replace('.000Z', 'Z');
}

/** Every schedule, following next_page_token to the last page. */
async function listSchedules(stub, workflowName, pageSize) {
  const found = [];
  let pageToken = '';
  do {
    const request = { page_size: pageSize, page_token: pageToken, workflow_name: workflowName };
    const reply = await new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + CALL_TIMEOUT_SECONDS * 1000);
      stub.ListSchedules(request, { deadline }, (error, response) => {
        if (error) reject(new RpcError('ListSchedules', error));
        else resolve(response);
      });
    });
    found.push(...reply.schedules);
    pageToken = reply.next_page_token;
  } while (pageToken);
  return found;
}

function summary(schedule) {
  const spec = schedule.spec;
  return {
    name: spec.name,
    cron: spec.cron,
    time_zone: spec.time_zone,
    workflow: spec.workflow_name,
    queue: spec.queue_name || null,
    catch_up: spec.catch_up,
    paused: schedule.paused,
    next_ticks: schedule.next_tick_times.map(rfc3339),
  };
}

async function main(coordinator, args) {
  const pageSize = Number(args['page-size']);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
    throw new ExampleError(`--page-size must be 1-1000, not ${args['page-size']}`);
  }
  const stub = new ScheduleService(coordinator.address, grpc.credentials.createInsecure());
  try {
    const schedules = (await listSchedules(stub, args.workflow, pageSize)).map(summary);
    if (args.json) {
      for (const schedule of schedules) console.log(JSON.stringify(schedule));
      return;
    }
    if (schedules.length === 0) {
      console.log('no schedules');
      return;
    }
    for (const s of schedules) {
      console.log(`schedule: ${s.name}`);
      console.log(`  cron: ${s.cron} (${s.time_zone})`);
      console.log(`  workflow: ${s.workflow}`);
      if (s.queue) console.log(`  queue: ${s.queue}`);
      console.log(`  paused: ${s.paused ? 'yes' : 'no'}`);
      console.log(`  next ticks: ${s.next_ticks.join(', ') || 'none'}`);
    }
  } finally {
    stub.close();
  }
}

const args = parseCli(USAGE, {
  coordinator: { type: 'string' },
  workflow: { type: 'string', default: '' },
  json: { type: 'boolean', default: false },
  'page-size': { type: 'string', default: '100' },
});
runMain(main, args);
