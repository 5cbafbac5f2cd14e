-- WatchWorkflows (coordinator/watch.py, docs/watch-workflows.md): an ordered, durable log of
-- every status change of every workflow, so that a watcher that reconnects with its last
-- cursor misses nothing.
--
-- Written by a trigger, not by the store code: status changes happen in a dozen statements
-- (start, claim, finish, batched finish, cancel, resume, fork, dead-letter, timeouts, bulk
-- actions...), and a row-level trigger with a WHEN clause catches every one of them, also
-- the ones added later, at the cost of one small INSERT per real status change (measured:
-- docs/watch-workflows.md). An UPDATE that leaves the status as it was costs only the WHEN
-- test, evaluated without calling the function.
--
-- Order: `seq` is allocated when the row is written, not when it commits, so a change
-- with a smaller seq may become visible after a larger one. Each row therefore records
-- its transaction's ID (`xid`), and a reader only reads rows whose transaction is older
-- than its snapshot's xmin (every such transaction has ended), in (xid, seq) order: a row
-- can never appear behind a reader's position. The cursor is that (xid, seq) position.
--
-- Retention rule: a change row goes with its workflow (ON DELETE CASCADE), so whoever
-- deletes workflows (retention, DeleteWorkflow) needs no code for this table; a cursor
-- whose row is gone is expired (FAILED_PRECONDITION, CURSOR_EXPIRED).
--
-- The NOTIFY carries only the namespace: Postgres folds identical notifications of one
-- transaction into one, so a batched finish of many workflows sends one per namespace.
-- Listeners (coordinator/notify.py) wake the watchers of that namespace, which read the
-- log after their cursor.

CREATE TABLE durable.workflow_changes (
    seq         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace   text        NOT NULL,
    workflow_id text        NOT NULL,
    status      text        NOT NULL,
    xid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    changed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    FOREIGN KEY (workflow_id, namespace)
        REFERENCES durable.workflows (workflow_id, namespace) ON DELETE CASCADE
);

-- The readers' scan: one namespace in commit-safe order.
CREATE INDEX workflow_changes_order_idx ON durable.workflow_changes (namespace, xid, seq);
-- The cascade from durable.workflows.
CREATE INDEX workflow_changes_workflow_idx ON durable.workflow_changes (workflow_id, namespace);

CREATE FUNCTION durable.record_workflow_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO durable.workflow_changes (namespace, workflow_id, status)
    VALUES (NEW.namespace, NEW.workflow_id, NEW.status);
    PERFORM pg_notify('durable_workflow_changes', NEW.namespace);
    RETURN NULL;
END
$$;

CREATE TRIGGER workflow_created
    AFTER INSERT ON durable.workflows
    FOR EACH ROW EXECUTE FUNCTION durable.record_workflow_change();

CREATE TRIGGER workflow_status_changed
    AFTER UPDATE OF status ON durable.workflows
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION durable.record_workflow_change();
