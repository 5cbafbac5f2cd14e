'use strict';
// Shared helpers for the Node examples: the CoordinatorService stub loaded at run time from
// protos/durable/v1/coordinator.proto, a deadline on every call, JSON payloads, and errors
// that carry the gRPC status code. Nothing here is generated: the .proto is the only input.
//
// Field names stay as the proto spells them (keepCase: workflow_id, step_id, ...), enums
// are their names ('WORKFLOW_STATUS_SUCCESS'), and each oneof shows which member is set in
// a virtual field named after the oneof (e.g. `outcome: 'event'`).

const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'protos');
const PROTO_FILE = 'durable/v1/coordinator.proto';

const DEFAULT_COORDINATOR = '127.0.0.1:50051';
// Deadline of every call that does not wait on purpose.
const CALL_TIMEOUT_SECONDS = 30;
// Extra deadline on calls that wait server-side (GetEvent, AwaitWorkflow), beyond the wait:
// the server answers `timed_out` itself when the wait passes, before the deadline.
const WAIT_MARGIN_SECONDS = 10;

// Exit codes shared by the examples.
const EXIT_TIMEOUT = 1; // a wait passed its timeout
const EXIT_FAILED = 2; // the coordinator could not be reached, refused a call, or data was bad

const packageDefinition = protoLoader.loadSync(PROTO_FILE, {
  // google/protobuf/{duration,timestamp}.proto come with proto-loader (protobufjs).
  includeDirs: [PROTO_ROOT],
  keepCase: true,
  enums: String,
  // int64 fields (event versions, timestamps' seconds) as JS numbers: they stay far below
  // 2^53 here. Use `longs: String` if yours might not.
  longs: Number,
  defaults: true,
  oneofs: true,
});
const proto = grpc.loadPackageDefinition(packageDefinition);
const CoordinatorService = proto.durable.v1.CoordinatorService;

/** A failed call: the RPC's name, its gRPC status code and the server's message. */
class RpcError extends Error {
  constructor(method, cause) {
    const codeName = grpc.status[cause.code] ?? String(cause.code);
    super(`${method}: ${codeName}: ${cause.details || cause.message}`);
    this.name = 'RpcError';
    this.method = method;
    this.code = cause.code;
    this.codeName = codeName;
    this.details = cause.details;
    this.metadata = cause.metadata;
  }
}

/** An error with a message fit for the one line the examples print before exiting. */
class ExampleError extends Error {
  constructor(message, exitCode = EXIT_FAILED) {
    super(message);
    this.name = 'ExampleError';
    this.exitCode = exitCode;
  }
}

function coordinatorAddress(flag) {
  return flag || process.env.DURABLE_COORDINATOR || DEFAULT_COORDINATOR;
}

/** A connection to the coordinator: promise-returning calls, each with a deadline. */
class Coordinator {
  constructor(address) {
    this.address = address;
    this.stub = new CoordinatorService(address, grpc.credentials.createInsecure());
  }

  close() {
    this.stub.close();
  }

  /** A unary call `method(request)` with a deadline of `seconds`. */
  call(method, request, seconds = CALL_TIMEOUT_SECONDS) {
    return new Promise((resolve, reject) => {
      this.stub[method](request, { deadline: deadlineIn(seconds) }, (error, reply) => {
        if (error) reject(new RpcError(method, error));
        else resolve(reply);
      });
    });
  }

  startWorkflow(workflowId, name, input) {
    return this.call('StartWorkflow', { workflow_id: workflowId, name, input: encode(input) });
  }

  /** Every recorded step of a started workflow, paging on with ListSteps if truncated. */
  async history(started) {
    const steps = [...started.history];
    let more = started.history_truncated;
    while (more) {
      const page = await this.call('ListSteps', {
        workflow_id: started.workflow.workflow_id,
        after_step_id: steps.length ? steps[steps.length - 1].step_id : 0,
        page_size: 1000,
      });
      steps.push(...page.steps);
      more = page.has_more;
    }
    return steps;
  }

  /** AwaitWorkflow: the workflow once finished, or `{timed_out: true}` after `seconds`. */
  awaitWorkflow(workflowId, seconds) {
    return this.call(
      'AwaitWorkflow',
      { workflow_id: workflowId, timeout: duration(seconds) },
      seconds + WAIT_MARGIN_SECONDS,
    );
  }

  /**
   * The messages of a GetEvent stream, as an async iterator. Each message has `outcome`
   * 'event' (with `event.value`, `event.version`), 'timed_out' or 'workflow_finished'; the
   * last two end the stream. Leaving the loop early cancels the call.
   */
  async *getEvent(workflowId, key, { seconds, follow = false, afterVersion = 0 }) {
    const request = {
      workflow_id: workflowId,
      key,
      timeout: duration(seconds),
      follow,
      after_version: afterVersion,
    };
    const stream = this.stub.GetEvent(request, {
      deadline: deadlineIn(seconds + WAIT_MARGIN_SECONDS),
    });
    let done = false;
    try {
      for await (const message of stream) yield message;
      done = true;
    } catch (error) {
      done = true;
      throw error.code === undefined ? error : new RpcError('GetEvent', error);
    } finally {
      if (!done) {
        // Stopped early: cancelling reports CANCELLED as an 'error' nobody waits for.
        stream.on('error', () => {});
        stream.cancel();
      }
    }
  }
}

function deadlineIn(seconds) {
  return new Date(Date.now() + seconds * 1000);
}

/** A google.protobuf.Duration of `seconds` (a non-negative number). */
function duration(seconds) {
  const whole = Math.floor(seconds);
  return { seconds: whole, nanos: Math.round((seconds - whole) * 1e9) };
}

/** A JSON payload, as every SDK writes it: UTF-8 JSON text with encoding "json". */
function encode(value) {
  const text = JSON.stringify(value);
  if (text === undefined) throw new ExampleError(`${String(value)} is not a JSON value`);
  return { encoding: 'json', data: Buffer.from(text, 'utf8') };
}

/**
 * A payload in an encoding this client does not decode: a codec chain such as
 * "json+zlib+fernet" (docs/payload-codecs.md) or another language's own encoding. Its
 * encoding and raw bytes are handed over as they are, not an error.
 */
class RawPayload {
  constructor(encoding, data) {
    this.encoding = encoding;
    this.data = Buffer.from(data);
  }

  toJSON() {
    return { encoding: this.encoding, data_base64: this.data.toString('base64') };
  }
}

/** The value of a JSON payload ("" means "json" too), for code that needs the value. */
function decode(payload) {
  if (payload.encoding !== '' && payload.encoding !== 'json') {
    throw new ExampleError(
      `payload encoding ${JSON.stringify(payload.encoding)} is not json (a codec this client` +
        ' does not have: see docs/payload-codecs.md)',
    );
  }
  return JSON.parse(payload.data.toString('utf8'));
}

/** As decode, but a RawPayload for any other encoding: for showing values. */
function decodeOrRaw(payload) {
  if (payload.encoding !== '' && payload.encoding !== 'json') {
    return new RawPayload(payload.encoding, payload.data);
  }
  return decode(payload);
}

/** The one line printed for an error, and the exit code that goes with it. */
function describe(error, address) {
  if (error instanceof RpcError) {
    if (error.code === grpc.status.UNAVAILABLE) {
      return [`cannot reach the coordinator at ${address}: ${error.message}`, EXIT_FAILED];
    }
    return [`the coordinator refused: ${error.message}`, EXIT_FAILED];
  }
  if (error instanceof ExampleError) return [error.message, error.exitCode];
  return [`${error.name || 'Error'}: ${error.message}`, EXIT_FAILED];
}

/**
 * Run an example's `main(coordinator, args)` and exit: 0 when it resolves, or the error's
 * exit code after printing it as one line on stderr.
 */
function runMain(main, args) {
  const coordinator = new Coordinator(coordinatorAddress(args.coordinator));
  main(coordinator, args).then(
    () => {
      coordinator.close();
      process.exit(0);
    },
    (error) => {
      const [message, code] = describe(error, coordinator.address);
      process.stderr.write(`${message.replace(/\s+/g, ' ').trim()}\n`);
      process.exit(code);
    },
  );
}

/**
 * Parse the command line with node:util's parseArgs: `--help` prints `usage` and exits 0;
 * a bad flag prints one line and exits 2. Returns the flags' values.
 */
function parseCli(usage, options) {
  try {
    const { values } = parseArgs({
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    });
    if (values.help) {
      process.stdout.write(usage);
      process.exit(0);
    }
    return values;
  } catch (error) {
    process.stderr.write(`${error.message.split('\n')[0]} (see --help)\n`);
    process.exit(EXIT_FAILED);
  }
}

/** Parse a flag as a number >= 0, or fail with a usage message. */
function seconds(flag, value) {
  const number = Number(value);
  if (value === undefined || value === '' || !Number.isFinite(number) || number < 0) {
    throw new ExampleError(`${flag} must be a number of seconds >= 0, not ${value}`);
  }
  return number;
}

const sleep = (secs) => new Promise((resolve) => setTimeout(resolve, secs * 1000));

module.exports = {
  CALL_TIMEOUT_SECONDS,
  DEFAULT_COORDINATOR,
  EXIT_FAILED,
  EXIT_TIMEOUT,
  Coordinator,
  ExampleError,
  RawPayload,
  RpcError,
  decode,
  decodeOrRaw,
  duration,
  encode,
  parseCli,
  runMain,
  seconds,
  sleep,
};
