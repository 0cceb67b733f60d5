-- Alerting (issue 11). Read models of the `alerting` projection: the organizations' alert rules,
-- their alerts and each alert's history (its own events and its notifications' outcomes).
CREATE TABLE read.alert_rules (
    id             uuid        PRIMARY KEY,
    org_id         uuid        NOT NULL,
    name           text        NOT NULL,
    metric         text        NOT NULL,
    filter         jsonb       NOT NULL,
    condition      text        NOT NULL,
    threshold      float8      NOT NULL,
    window_seconds integer     NOT NULL,
    for_seconds    integer     NOT NULL,
    severity       text        NOT NULL,
    channels       jsonb       NOT NULL,
    secret_hint    text        NOT NULL,
    version        bigint      NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    -- A deleted rule keeps its row (and version), so a replayed older event never revives it.
    deleted        boolean     NOT NULL DEFAULT false
);
CREATE INDEX alert_rules_by_org ON read.alert_rules (org_id, id) WHERE NOT deleted;

CREATE TABLE read.alerts (
    id              uuid        PRIMARY KEY,
    org_id          uuid        NOT NULL,
    rule_id         uuid        NOT NULL,
    rule_name       text        NOT NULL,
    metric          text        NOT NULL,
    filter          jsonb       NOT NULL,
    condition       text        NOT NULL,
    threshold       float8      NOT NULL,
    window_seconds  integer     NOT NULL,
    for_seconds     integer     NOT NULL,
    severity        text        NOT NULL,
    -- firing | acknowledged | resolved
    status          text        NOT NULL,
    value           float8,
    breached_since  timestamptz NOT NULL,
    triggered_at    timestamptz NOT NULL,
    acknowledged_at timestamptz,
    acknowledged_by jsonb,
    note            text,
    resolved_at     timestamptz,
    resolved_value  float8,
    resolved_reason text,
    version         bigint      NOT NULL
);
CREATE INDEX alerts_by_org ON read.alerts (org_id, id);
CREATE INDEX alerts_by_org_status ON read.alerts (org_id, status, id);

CREATE TABLE read.alert_history (
    event_id       uuid        PRIMARY KEY,
    alert_id       uuid        NOT NULL,
    org_id         uuid        NOT NULL,
    event_type     text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    actor          jsonb       NOT NULL,
    correlation_id text        NOT NULL,
    data           jsonb       NOT NULL
);
CREATE INDEX alert_history_by_alert ON read.alert_history (alert_id, occurred_at, event_id);

-- The notifications outbox: one row per alert event and channel, inserted by the alerting
-- projection from `alert.triggered` / `alert.resolved` (so none is lost: it is written in the
-- transaction that records the projection's offsets), worked off by the notifier. Not a read
-- model: a rebuild of the projection keeps it (its inserts are ON CONFLICT DO NOTHING), so a
-- replay never sends a notification twice.
CREATE TABLE alert_notifications (
    id              uuid        PRIMARY KEY,
    org_id          uuid        NOT NULL,
    alert_id        uuid        NOT NULL,
    alert_event_id  uuid        NOT NULL,
    event_type      text        NOT NULL,
    channel_index   integer     NOT NULL,
    channel         jsonb       NOT NULL,
    data            jsonb       NOT NULL,
    occurred_at     timestamptz NOT NULL,
    -- The alert event's correlation id: every attempt's event carries it too.
    correlation_id  text        NOT NULL,
    -- pending | delivered | failed
    status          text        NOT NULL DEFAULT 'pending',
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text,
    UNIQUE (alert_event_id, channel_index)
);
CREATE INDEX alert_notifications_due ON alert_notifications (next_attempt_at) WHERE status = 'pending';

-- Each rule's webhook signing secret, written by the command that creates the rule, beside the
-- journal: secrets never enter an event.
CREATE TABLE alert_rule_secrets (
    rule_id    uuid        PRIMARY KEY,
    org_id     uuid        NOT NULL,
    secret     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The evaluator's timers per rule (the leader's working state; losing it only delays).
CREATE TABLE alert_evaluator_state (
    rule_id        uuid        PRIMARY KEY,
    breached_since timestamptz,
    clear_since    timestamptz,
    last_value     float8,
    evaluated_at   timestamptz NOT NULL
);
