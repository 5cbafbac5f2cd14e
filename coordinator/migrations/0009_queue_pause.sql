-- Pausing a queue (PauseQueue / ResumeQueue): a paused queue hands out none of its
-- workflows until it is resumed; its running workflows go on. A row of its own, so the
-- state survives restarts; pausing a queue never configured gives it a row (no limits).
-- ConfigureQueue keeps the flag.
ALTER TABLE durable.queues
    ADD COLUMN paused boolean NOT NULL DEFAULT false;
