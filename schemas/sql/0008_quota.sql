-- Write-side token quota ledger (not a read model): tokens used and reserved per organization
-- and calendar month. A reservation is taken before a chat call and settled after it; a row lock
-- serializes reservations of one organization across every gateway process.
CREATE TABLE quota_usage (
    org_id   uuid   NOT NULL,
    period   text   NOT NULL,
    used     bigint NOT NULL DEFAULT 0,
    reserved bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (org_id, period)
);

-- Reservations not settled by their expiry (a crashed process) are released by a sweep.
CREATE TABLE quota_reservations (
    id         uuid        PRIMARY KEY,
    org_id     uuid        NOT NULL,
    period     text        NOT NULL,
    tokens     bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX quota_reservations_expiry ON quota_reservations (expires_at);
