-- The journal: every event the platform ever decided, in order. It is also the outbox: the relay
-- publishes rows whose published_at is NULL to Kafka, in global_position order.
CREATE TABLE journal (
    global_position bigserial PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version > 0),
    event_type      text        NOT NULL,
    org_id          uuid,
    envelope        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    CONSTRAINT journal_stream_version_key UNIQUE (stream_id, stream_version)
);

CREATE INDEX journal_unpublished ON journal (global_position) WHERE published_at IS NULL;

-- Wakes the relay as soon as a command commits; the relay also sweeps, so a lost
-- notification only delays publication.
CREATE FUNCTION journal_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aihub_journal', '');
    RETURN NULL;
END $$;

CREATE TRIGGER journal_appended AFTER INSERT ON journal
    FOR EACH STATEMENT EXECUTE FUNCTION journal_notify();

-- Values that must be unique across streams (an organization slug), claimed in the same
-- transaction as the events that take them.
CREATE TABLE journal_unique_claims (
    scope     text NOT NULL,
    value     text NOT NULL,
    stream_id text NOT NULL,
    PRIMARY KEY (scope, value)
);
