-- Keys the write side itself refuses: a row is written in the same transaction that appends the
-- key's api_key.revoked or api_key.updated {enabled: false} event (and removed with one that
-- re-enables it), with a NOTIFY on aihub_auth, so a refusal takes effect at commit and never
-- waits for the broker and the projector. read.api_keys follows when the event is projected.
CREATE TABLE api_key_blocks (
    key_id uuid        PRIMARY KEY,
    org_id uuid        NOT NULL,
    reason text        NOT NULL CHECK (reason IN ('revoked', 'disabled')),
    since  timestamptz NOT NULL DEFAULT now()
);
