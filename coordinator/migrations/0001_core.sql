-- The durable core: workflows, their step records and their events.
--
-- A workflow is identified by (workflow_id, namespace): namespaces isolate tenants that
-- share a database (each bearer token belongs to one). Every per-workflow table leads its
-- primary key with workflow_id, so the tables can be distributed by that column (e.g.
-- Citus) with all of one workflow's rows on one node.

CREATE TABLE durable.workflows (
    workflow_id     text        NOT NULL,
    namespace       text        NOT NULL,
    name            text        NOT NULL,
    status          text        NOT NULL
                    CHECK (status IN ('PENDING', 'SUCCESS', 'ERROR')),
    input_encoding  text,
    input_data      bytea,
    output_encoding text,
    output_data     bytea,
    error_type      text,
    error_message   text,
    error_details   text,
    -- Filled by the worker-lease issue; kept here so that shape does not move.
    executor_id     text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workflow_id, namespace)
);

CREATE INDEX workflows_namespace_status_created_idx
    ON durable.workflows (namespace, status, created_at);

-- One row per checkpointed operation of a workflow. (workflow_id, namespace, step_id)
-- is the first-writer-wins key: a step's outcome is recorded exactly once.
CREATE TABLE durable.steps (
    workflow_id     text        NOT NULL,
    namespace       text        NOT NULL,
    step_id         integer     NOT NULL CHECK (step_id > 0),
    name            text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('STEP', 'SET_EVENT')),
    output_encoding text,
    output_data     bytea,
    error_type      text,
    error_message   text,
    error_details   text,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workflow_id, namespace, step_id),
    FOREIGN KEY (workflow_id, namespace)
        REFERENCES durable.workflows (workflow_id, namespace) ON DELETE CASCADE,
    CHECK ((output_encoding IS NULL) <> (error_type IS NULL))
);

-- Latest value per workflow and key (last write wins).
CREATE TABLE durable.events (
    workflow_id text        NOT NULL,
    namespace   text        NOT NULL,
    key         text        NOT NULL,
    version     bigint      NOT NULL,
    encoding    text        NOT NULL,
    data        bytea       NOT NULL,
    set_at      timestamptz NOT NULL,
    PRIMARY KEY (workflow_id, namespace, key),
    FOREIGN KEY (workflow_id, namespace)
        REFERENCES durable.workflows (workflow_id, namespace) ON DELETE CASCADE
);

-- Every value ever set, so a follower never misses one (0 -> 50 -> 100).
CREATE TABLE durable.event_history (
    workflow_id text        NOT NULL,
    namespace   text        NOT NULL,
    key         text        NOT NULL,
    version     bigint      NOT NULL,
    step_id     integer     NOT NULL,
    encoding    text        NOT NULL,
    data        bytea       NOT NULL,
    set_at      timestamptz NOT NULL,
    PRIMARY KEY (workflow_id, namespace, key, version),
    FOREIGN KEY (workflow_id, namespace)
        REFERENCES durable.workflows (workflow_id, namespace) ON DELETE CASCADE
);
