-- Read model of the audit projection: one row per event, nothing written by hand.
CREATE TABLE read.audit_log (
    event_id       uuid        PRIMARY KEY,
    event_type     text        NOT NULL,
    org_id         uuid,
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL,
    actor_type     text        NOT NULL,
    actor_id       text        NOT NULL,
    actor_ip       text,
    correlation_id text        NOT NULL,
    causation_id   uuid,
    occurred_at    timestamptz NOT NULL,
    data           jsonb       NOT NULL
);

CREATE INDEX audit_log_by_org ON read.audit_log (org_id, occurred_at, event_id);
