-- Delayed starts, debounce and queue partitions.

ALTER TABLE durable.workflows
    -- An ENQUEUED workflow is not claimed before this time (a delayed or debounced start).
    ADD COLUMN due_at        timestamptz,
    ADD COLUMN partition_key text,
    ADD COLUMN debounce_key  text;

-- What a poller reads to know when the next delayed workflow falls due.
CREATE INDEX workflows_due_idx
    ON durable.workflows (namespace, due_at)
    WHERE status = 'ENQUEUED' AND due_at IS NOT NULL;

-- One waiting workflow per (name, debounce key): later starts of a burst update it.
CREATE UNIQUE INDEX workflows_debounce_idx
    ON durable.workflows (namespace, name, debounce_key)
    WHERE debounce_key IS NOT NULL AND status = 'ENQUEUED';

ALTER TABLE durable.queues
    ADD COLUMN limits_per_partition boolean NOT NULL DEFAULT false;
