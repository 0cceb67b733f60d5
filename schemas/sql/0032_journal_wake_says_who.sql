-- The relay's wake-up says who appended (issue 17). A transaction that sets
-- `aihub.journal_wake` (transaction-local, `set_config(..., true)`) sends it as the payload of
-- its NOTIFY: the gateway's chat batches say `chat`, and the relay may hold those back a little
-- to publish several batches at once (nobody waits for a chat call's projection). Everything
-- else wakes it with the empty payload, as before, and is published at once.
CREATE OR REPLACE FUNCTION journal_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aihub_journal', coalesce(current_setting('aihub.journal_wake', true), ''));
    RETURN NULL;
END $$;
