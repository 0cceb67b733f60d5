-- Read models of subscriptions (tenancy projection): the plan, a pending downgrade, and the
-- charges the changes caused (proration lines, for invoices).
CREATE TABLE read.subscriptions (
    id                   uuid        PRIMARY KEY,
    org_id               uuid        NOT NULL UNIQUE,
    plan                 text        NOT NULL,
    pending_plan         text,
    pending_effective_at timestamptz,
    started_at           timestamptz NOT NULL,
    version              bigint      NOT NULL,
    updated_at           timestamptz NOT NULL
);

CREATE TABLE read.subscription_charges (
    event_id     uuid        PRIMARY KEY,
    org_id       uuid        NOT NULL,
    kind         text        NOT NULL,
    description  text        NOT NULL,
    amount_cents bigint      NOT NULL,
    period       text        NOT NULL,
    occurred_at  timestamptz NOT NULL
);
CREATE INDEX subscription_charges_by_org ON read.subscription_charges (org_id, period);
