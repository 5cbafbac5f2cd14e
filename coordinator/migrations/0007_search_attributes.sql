-- Search attributes: string key/values to find workflows by (ListWorkflows, WatchWorkflows
-- and the bulk actions filter on them by containment, served by the GIN index).
ALTER TABLE durable.workflows
    ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}'::jsonb;

CREATE INDEX workflows_attributes_idx
    ON durable.workflows USING gin (attributes jsonb_path_ops);

ALTER TABLE durable.steps
    DROP CONSTRAINT steps_kind_check,
    ADD CONSTRAINT steps_kind_check CHECK (kind IN
        ('STEP', 'SET_EVENT', 'SLEEP', 'SEND', 'RECV', 'GET_EVENT', 'START_WORKFLOW', 'PATCH',
         'SET_ATTRIBUTES'));
