-- Synthetic health checks of an organization (issue 11), owned by the metrics projection: the
-- definition and the latest outcome (health_check.completed) of each.
CREATE TABLE read.health_checks (
    id               uuid        PRIMARY KEY,
    org_id           uuid        NOT NULL,
    name             text        NOT NULL,
    -- events::monitoring::CheckTarget: {"type": "model", "model": ...} or {"type": "http", "url": ...}.
    target           jsonb       NOT NULL,
    interval_seconds integer     NOT NULL,
    created_at       timestamptz NOT NULL,
    last_run_at      timestamptz,
    last_ok          boolean,
    last_latency_ms  bigint,
    last_status      integer,
    last_error       text,
    runs             bigint      NOT NULL DEFAULT 0,
    failures         bigint      NOT NULL DEFAULT 0
);
CREATE INDEX health_checks_org ON read.health_checks (org_id, id);
