-- Workflow communication and time: messages (Send/Recv), durable sleep, checkpointed
-- waits, child workflows and queues.

-- New step kinds, and what waits record: SLEEP's wake-up time, a RECV's or GET_EVENT's
-- deadline, and whether that wait ended without a value.
ALTER TABLE durable.steps
    DROP CONSTRAINT steps_kind_check,
    ADD CONSTRAINT steps_kind_check CHECK (kind IN
        ('STEP', 'SET_EVENT', 'SLEEP', 'SEND', 'RECV', 'GET_EVENT', 'START_WORKFLOW')),
    ADD COLUMN deadline_at timestamptz,
    ADD COLUMN timed_out boolean NOT NULL DEFAULT false;

-- The deadline of a wait (Recv, GetEvent from a workflow) that has begun and not ended:
-- fixed by the first call, so a resumed workflow waits only for what is left. The step row
-- replaces it when the wait ends.
CREATE TABLE durable.step_deadlines (
    workflow_id text        NOT NULL,
    namespace   text        NOT NULL,
    step_id     integer     NOT NULL CHECK (step_id > 0),
    deadline_at timestamptz NOT NULL,
    PRIMARY KEY (workflow_id, namespace, step_id),
    FOREIGN KEY (workflow_id, namespace)
        REFERENCES durable.workflows (workflow_id, namespace) ON DELETE CASCADE
);

-- Messages sent to a workflow, which need not exist yet (so no foreign key). A message is
-- consumed by exactly one Recv step, recorded in consumed_step_id.
CREATE TABLE durable.messages (
    destination_id   text        NOT NULL,
    namespace        text        NOT NULL,
    message_id       bigint      GENERATED ALWAYS AS IDENTITY,
    topic            text        NOT NULL,
    encoding         text        NOT NULL,
    data             bytea       NOT NULL,
    idempotency_key  text,
    sent_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    consumed_step_id integer,
    PRIMARY KEY (destination_id, namespace, message_id)
);

CREATE UNIQUE INDEX messages_idempotency_idx
    ON durable.messages (destination_id, namespace, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- What Recv scans: a destination's unconsumed messages of a topic, oldest first.
CREATE INDEX messages_unconsumed_idx
    ON durable.messages (destination_id, namespace, topic, message_id)
    WHERE consumed_step_id IS NULL;

-- Queues and child workflows.
ALTER TABLE durable.workflows
    ADD COLUMN queue_name         text,
    ADD COLUMN priority           integer NOT NULL DEFAULT 0,
    ADD COLUMN deduplication_id   text,
    -- When a worker claimed it off its queue (rate limits count these).
    ADD COLUMN dequeued_at        timestamptz,
    ADD COLUMN parent_workflow_id text;

-- One live (ENQUEUED or PENDING) workflow per queue and deduplication ID.
CREATE UNIQUE INDEX workflows_queue_dedup_idx
    ON durable.workflows (namespace, queue_name, deduplication_id)
    WHERE deduplication_id IS NOT NULL AND status IN ('ENQUEUED', 'PENDING');

-- What PollWork scans per queue: the next ENQUEUED workflows by priority, then age.
CREATE INDEX workflows_queue_ready_idx
    ON durable.workflows (namespace, queue_name, priority, created_at)
    WHERE queue_name IS NOT NULL AND status = 'ENQUEUED';

-- What the concurrency limits count: a queue's running workflows, by executor.
CREATE INDEX workflows_queue_running_idx
    ON durable.workflows (namespace, queue_name, executor_id)
    WHERE queue_name IS NOT NULL AND status = 'PENDING';

-- What the rate limits count: a queue's recent claims.
CREATE INDEX workflows_queue_dequeued_idx
    ON durable.workflows (namespace, queue_name, dequeued_at)
    WHERE queue_name IS NOT NULL AND dequeued_at IS NOT NULL;

CREATE INDEX workflows_parent_idx
    ON durable.workflows (namespace, parent_workflow_id)
    WHERE parent_workflow_id IS NOT NULL;

-- A queue's limits; NULL means none. A queue without a row here has no limits.
CREATE TABLE durable.queues (
    namespace          text        NOT NULL,
    name               text        NOT NULL,
    concurrency        integer     CHECK (concurrency > 0),
    worker_concurrency integer     CHECK (worker_concurrency > 0),
    rate_limit         integer     CHECK (rate_limit > 0),
    rate_period        interval    CHECK (rate_period > interval '0'),
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (namespace, name),
    CHECK ((rate_limit IS NULL) = (rate_period IS NULL))
);

-- The queues each worker session serves.
ALTER TABLE durable.workers
    ADD COLUMN queues text[] NOT NULL DEFAULT '{}';
