-- Retention of finished workflows (coordinator/operations/retention.py).

-- A namespace's own retention policy (SetRetention). A namespace without a row here keeps
-- its finished workflows forever, unless the coordinator's --retention gives a default.
CREATE TABLE durable.retention_policies (
    namespace      text        NOT NULL,
    finished_after interval    NOT NULL CHECK (finished_after >= interval '1 minute'),
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (namespace)
);

-- What the clean-up loop scans: a namespace's finished workflows, least recently changed
-- first (updated_at is set by every status change). A range scan up to the cut-off; the
-- hot path never reads it. Also walked once per namespace to list the namespaces holding
-- finished workflows when a configured default applies.
CREATE INDEX workflows_finished_idx
    ON durable.workflows (namespace, updated_at)
    WHERE status IN ('SUCCESS', 'ERROR', 'CANCELLED', 'DEAD_LETTER');
