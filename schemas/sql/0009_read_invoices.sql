-- Read model of invoices (tenancy projection): one row per invoice.issued, paid by invoice.paid.
-- Lines and the usage summary are kept as the event wrote them.
CREATE TABLE read.invoices (
    id                uuid        PRIMARY KEY,
    org_id            uuid        NOT NULL,
    period            text        NOT NULL,
    plan              text        NOT NULL,
    currency          text        NOT NULL,
    status            text        NOT NULL,
    total_cents       bigint      NOT NULL,
    lines             jsonb       NOT NULL,
    usage             jsonb       NOT NULL,
    issued_at         timestamptz NOT NULL,
    paid_at           timestamptz,
    paid_cents        bigint,
    payment_reference text,
    version           bigint      NOT NULL,
    UNIQUE (org_id, period)
);
