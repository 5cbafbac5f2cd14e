-- Cron schedules, application versions and patch markers.

-- A schedule starts a workflow per tick of its cron expression (coordinator/schedules).
-- Every coordinator evaluates the due ones, each locking a schedule's row while it starts
-- that schedule's ticks; the tick's workflow ID (name@tick) makes a start exactly once.
CREATE TABLE durable.schedules (
    name             text        NOT NULL,
    namespace        text        NOT NULL,
    cron             text        NOT NULL,
    time_zone        text        NOT NULL,
    workflow_name    text        NOT NULL,
    input_encoding   text,
    input_data       bytea,
    queue_name       text,
    start_at         timestamptz,
    end_at           timestamptz,
    catch_up         text        NOT NULL CHECK (catch_up IN ('SKIP', 'LATEST', 'ALL')),
    paused           boolean     NOT NULL DEFAULT false,
    -- Every tick up to this time is done (started, or passed over by the catch-up policy).
    ticked_until     timestamptz NOT NULL,
    -- The first tick after ticked_until; NULL when the schedule has ended.
    next_tick_at     timestamptz,
    last_tick_at     timestamptz,
    last_workflow_id text,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (name, namespace)
);

-- What the tick loop scans: the schedules due next, across namespaces.
CREATE INDEX schedules_due_idx
    ON durable.schedules (next_tick_at)
    WHERE NOT paused AND next_tick_at IS NOT NULL;

ALTER TABLE durable.workflows
    -- The version of the code that runs it; NULL until a versioned worker takes it.
    ADD COLUMN app_version   text,
    ADD COLUMN schedule_name text,
    -- The tick a scheduled workflow runs for.
    ADD COLUMN scheduled_at  timestamptz;

-- What ListWorkflows' schedule_name filter reads: a schedule's workflows, newest first.
CREATE INDEX workflows_schedule_idx
    ON durable.workflows (namespace, schedule_name, created_at)
    WHERE schedule_name IS NOT NULL;

CREATE INDEX workflows_app_version_idx
    ON durable.workflows (namespace, app_version, created_at)
    WHERE app_version IS NOT NULL;

ALTER TABLE durable.workers
    ADD COLUMN app_version text;

ALTER TABLE durable.steps
    DROP CONSTRAINT steps_kind_check,
    ADD CONSTRAINT steps_kind_check CHECK (kind IN
        ('STEP', 'SET_EVENT', 'SLEEP', 'SEND', 'RECV', 'GET_EVENT', 'START_WORKFLOW', 'PATCH'));
