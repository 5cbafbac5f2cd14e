-- Worker leases and recovery, workflow timeouts, cancel/resume/fork, and step attempts.

ALTER TABLE durable.workflows
    DROP CONSTRAINT workflows_status_check,
    ADD CONSTRAINT workflows_status_check CHECK (status IN
        ('PENDING', 'SUCCESS', 'ERROR', 'CANCELLED', 'DEAD_LETTER', 'ENQUEUED')),
    -- How many times the workflow was taken over after its worker's lease lapsed.
    ADD COLUMN recovery_attempts integer NOT NULL DEFAULT 0,
    -- Cancelled by the coordinator's sweep once this passes while unfinished.
    ADD COLUMN deadline_at timestamptz,
    ADD COLUMN forked_from text;

-- What PollWork scans: runnable workflows by name (ENQUEUED ones, and PENDING ones whose
-- executor may have died).
CREATE INDEX workflows_claimable_idx ON durable.workflows (namespace, name, created_at)
    WHERE status IN ('PENDING', 'ENQUEUED');

-- What the timeout sweep scans.
CREATE INDEX workflows_deadline_idx ON durable.workflows (deadline_at)
    WHERE deadline_at IS NOT NULL AND status IN ('PENDING', 'ENQUEUED');

-- One row per worker session (process). A workflow whose executor has no live lease here
-- is recoverable.
CREATE TABLE durable.workers (
    executor_id      text        NOT NULL,
    namespace        text        NOT NULL,
    worker_name      text,
    workflow_names   text[]      NOT NULL,
    lease_expires_at timestamptz NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (executor_id, namespace)
);

CREATE INDEX workers_name_idx ON durable.workers (namespace, worker_name);

ALTER TABLE durable.steps
    ADD COLUMN started_at timestamptz,
    ADD COLUMN attempts integer NOT NULL DEFAULT 1 CHECK (attempts > 0);

-- Failed attempts of retried steps; the successful (or final) one is the step row itself.
CREATE TABLE durable.step_attempts (
    workflow_id   text        NOT NULL,
    namespace     text        NOT NULL,
    step_id       integer     NOT NULL,
    attempt       integer     NOT NULL CHECK (attempt > 0),
    name          text        NOT NULL,
    error_type    text        NOT NULL,
    error_message text        NOT NULL,
    error_details text        NOT NULL,
    started_at    timestamptz,
    ended_at      timestamptz NOT NULL,
    PRIMARY KEY (workflow_id, namespace, step_id, attempt),
    FOREIGN KEY (workflow_id, namespace)
        REFERENCES durable.workflows (workflow_id, namespace) ON DELETE CASCADE
);
