-- Fair dispatch across the partitions of a queue, and limits per partition.
--
-- Workflows enqueued without a partition key form one partition, keyed '' here (a
-- partition key is never empty), so every query of a partition uses the same expression
-- coalesce(partition_key, '').

-- A claim walks the partitions holding ENQUEUED work, one index descent each to the
-- partition's first workflow in priority-then-age order (its head), then reads on from
-- the heads as deep as the claim's size needs.
CREATE INDEX workflows_partition_ready_idx
    ON durable.workflows (namespace, queue_name, coalesce(partition_key, ''),
                          priority, created_at, workflow_id)
    WHERE queue_name IS NOT NULL AND status = 'ENQUEUED';

-- A partition's running workflows, counted against a per-partition concurrency limit.
CREATE INDEX workflows_partition_running_idx
    ON durable.workflows (namespace, queue_name, coalesce(partition_key, ''))
    WHERE queue_name IS NOT NULL AND status = 'PENDING';

-- A partition's recent claims, counted against a per-partition rate limit.
CREATE INDEX workflows_partition_dequeued_idx
    ON durable.workflows (namespace, queue_name, coalesce(partition_key, ''), dequeued_at)
    WHERE queue_name IS NOT NULL AND dequeued_at IS NOT NULL;
