'use strict';
// Running a workflow through the raw RPCs, as docs/wire-contract.md describes it:
//
//   1. StartWorkflow: creates the workflow, or returns the existing one with its *recorded*
//      input and, while it is PENDING, its recorded steps (`history`).
//   2. Operations are numbered from 1 in the order the code performs them; steps (RunStep)
//      and events (SetEvent) share one sequence.
//   3. A position found in the history is replayed: its recorded outcome is used and the
//      step is not run again (nor the event set again). Its kind and name must match.
//   4. A new step runs, then RunStep records it; the *returned* outcome is the truth (another
//      execution may have recorded first).
//   5. FinishWorkflow records the result. First writer wins.

const { ExampleError, EXIT_TIMEOUT, RpcError, decode, encode } = require('./client');

const KIND_LABEL = { STEP_KIND_STEP: 'step', STEP_KIND_SET_EVENT: 'set_event' };

/** A step's recorded error, thrown where the step was called (on replays too). */
class StepError extends Error {
  constructor(failure) {
    super(`${failure.type}: ${failure.message}`);
    this.name = 'StepError';
    this.failure = failure;
  }
}

/** The Failure recorded for a JS error: its class name, message and stack. */
function failureOf(error) {
  if (error instanceof StepError) return error.failure;
  const type = (error && error.constructor && error.constructor.name) || 'Error';
  return {
    type,
    message: String(error && error.message !== undefined ? error.message : error),
    details: (error && error.stack) || '',
  };
}

/** A started workflow, run (or replayed) by this process. */
class WorkflowRun {
  /**
   * StartWorkflow, then load the full history when the workflow is PENDING. `onStep`, if
   * given, is told (stepId, kind, name, 'ran' | 'replayed') for every position reached.
   */
  static async start(coordinator, workflowId, name, input, { onStep } = {}) {
    const started = await coordinator.startWorkflow(workflowId, name, input);
    const history = await coordinator.history(started);
    return new WorkflowRun(coordinator, started, history, onStep);
  }

  constructor(coordinator, started, history, onStep) {
    this.coordinator = coordinator;
    this.workflow = started.workflow;
    this.created = started.created;
    this.history = new Map(history.map((step) => [step.step_id, step]));
    this.lastStepId = 0;
    this.onStep = onStep || (() => {});
  }

  get workflowId() {
    return this.workflow.workflow_id;
  }

  get pending() {
    return this.workflow.status === 'WORKFLOW_STATUS_PENDING';
  }

  /** The input recorded by the workflow's first start (not necessarily ours). */
  get input() {
    return this.workflow.input ? decode(this.workflow.input) : null;
  }

  /** Claim the next position; returns [stepId, recorded step or undefined]. */
  next(kind, name) {
    this.lastStepId += 1;
    const stepId = this.lastStepId;
    const recorded = this.history.get(stepId);
    this.history.delete(stepId);
    if (recorded && (recorded.kind !== kind || recorded.name !== name)) {
      throw new ExampleError(
        `workflow ${this.workflowId} step ${stepId} was recorded as ` +
          `${KIND_LABEL[recorded.kind] || recorded.kind} ${JSON.stringify(recorded.name)}, ` +
          `but the code asked for ${KIND_LABEL[kind]} ${JSON.stringify(name)}: ` +
          'the workflow is not deterministic',
      );
    }
    this.onStep(stepId, KIND_LABEL[kind], name, recorded ? 'replayed' : 'ran');
    return [stepId, recorded];
  }

  /** Run `fn` as step `name` (or replay its recorded outcome); returns its output. */
  async step(name, fn) {
    let [stepId, recorded] = this.next('STEP_KIND_STEP', name);
    if (!recorded) {
      const request = { workflow_id: this.workflowId, step_id: stepId, name };
      try {
        request.output = encode(await fn());
      } catch (error) {
        if (error instanceof RpcError || error instanceof ExampleError) throw error;
        request.error = failureOf(error);
      }
      const reply = await this.coordinator.call('RunStep', request);
      recorded = reply.step;
    }
    if (recorded.outcome === 'error') throw new StepError(recorded.error);
    return decode(recorded.output);
  }

  /** Publish `key` = `value`, checkpointed at the next position (skipped on replay). */
  async setEvent(key, value) {
    const [stepId, recorded] = this.next('STEP_KIND_SET_EVENT', key);
    if (recorded) return;
    await this.coordinator.call('SetEvent', {
      workflow_id: this.workflowId,
      step_id: stepId,
      key,
      value: encode(value),
    });
  }

  /**
   * Run `body(run, input)` with the recorded input and record what it returns (or throws)
   * with FinishWorkflow. Does nothing for a finished workflow. A coordinator error or a
   * replay mismatch is not the workflow's outcome: it is thrown and the workflow is left
   * PENDING, to be resumed by starting it again.
   */
  async execute(body) {
    if (!this.pending) return;
    const request = { workflow_id: this.workflowId };
    try {
      request.output = encode(await body(this, this.input));
    } catch (error) {
      if (error instanceof RpcError || error instanceof ExampleError) throw error;
      request.error = failureOf(error);
    }
    await this.coordinator.call('FinishWorkflow', request);
  }
}

/**
 * The result of a workflow, waiting up to `seconds` with AwaitWorkflow (so it works for a
 * workflow run by any process). Throws if it failed or is still running after the wait.
 */
async function awaitResult(coordinator, workflowId, seconds) {
  const reply = await coordinator.awaitWorkflow(workflowId, seconds);
  if (reply.timed_out) {
    throw new ExampleError(
      `workflow ${workflowId} did not finish within ${seconds}s`,
      EXIT_TIMEOUT,
    );
  }
  const { workflow } = reply;
  switch (workflow.status) {
    case 'WORKFLOW_STATUS_SUCCESS':
      return decode(workflow.output);
    case 'WORKFLOW_STATUS_ERROR':
      throw new ExampleError(
        `workflow ${workflowId} failed: ${workflow.error.type}: ${workflow.error.message}`,
      );
    default: // CANCELLED or DEAD_LETTER: stopped without a result (ResumeWorkflow continues it)
      throw new ExampleError(`workflow ${workflowId} ended ${workflow.status} without a result`);
  }
}

/**
 * GetEvent without follow: the event's latest value, waiting up to `seconds` for one.
 * Returns `{found: false, reason}` when the wait timed out or the workflow finished
 * without setting it.
 */
async function readEvent(coordinator, workflowId, key, seconds) {
  for await (const message of coordinator.getEvent(workflowId, key, { seconds })) {
    switch (message.outcome) {
      case 'event':
        return { found: true, value: decode(message.event.value) };
      case 'timed_out':
        return { found: false, reason: `no ${key} within ${seconds}s` };
      case 'workflow_finished':
        return { found: false, reason: `workflow ${workflowId} finished without setting ${key}` };
      default:
        throw new ExampleError(`unexpected GetEvent message ${JSON.stringify(message)}`);
    }
  }
  throw new ExampleError('GetEvent ended without a message');
}

module.exports = { StepError, WorkflowRun, awaitResult, readEvent };
