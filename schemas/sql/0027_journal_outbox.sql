-- The relay's outbox is a table of its own, not a column of the journal (issue 17). Marking a
-- row published used to update it: a new version of a ~1.3 KB row, and since `published_at` was
-- in the partial index's predicate, never a HOT update, so five index entries per event and a
-- dead row for vacuum. The bench's 98,000 chat events spent 8.5 s in those updates. Now an
-- append enqueues its rows' positions here (a statement trigger over the transition table, so
-- every writer does, in the same transaction) and the relay deletes what it published: the
-- journal is never updated again. A row is unpublished exactly while its position is here.
CREATE TABLE journal_outbox (
    global_position bigint PRIMARY KEY
);
-- A queue: every row is deleted soon after it is inserted. Vacuumed after a few thousand dead
-- rows rather than a fraction of a size that never grows, and never scanned in parallel (the
-- statistics say thousands of rows where there are a few hundred, and starting workers cost the
-- relay more than its read).
ALTER TABLE journal_outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
                                autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000,
                                parallel_workers = 0);

INSERT INTO journal_outbox (global_position)
    SELECT global_position FROM journal WHERE published_at IS NULL;

CREATE FUNCTION journal_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO journal_outbox (global_position) SELECT global_position FROM appended;
    RETURN NULL;
END $$;

CREATE TRIGGER journal_enqueued AFTER INSERT ON journal
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION journal_enqueue();

DROP INDEX journal_unpublished;
ALTER TABLE journal DROP COLUMN published_at;
