-- Rate limits (platform/src/ratelimit.rs): the count of each scope's one-minute window, shared by
-- every process, and the overrides of the plan's defaults per organization and per API key.

-- Counts of the current and last minute only (older rows are deleted once a minute). UNLOGGED:
-- a crash of PostgreSQL forgets at most a minute's counts, which is an accepted loss for a rate
-- limit, and no WAL is written for the hottest counter of the platform.
CREATE UNLOGGED TABLE rate_windows (
    scope        text   NOT NULL,
    window_start bigint NOT NULL,
    requests     bigint NOT NULL DEFAULT 0,
    tokens       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, window_start)
);

-- Grants up to the asks in one round trip, never past the limits, under the row's lock, and
-- says what was granted and the window's counts after it.
CREATE FUNCTION rate_take(
    p_scope text, p_window bigint,
    p_requests bigint, p_requests_limit bigint,
    p_tokens bigint, p_tokens_limit bigint,
    OUT req_granted bigint, OUT tok_granted bigint,
    OUT req_total bigint, OUT tok_total bigint)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rate_windows (scope, window_start) VALUES (p_scope, p_window)
        ON CONFLICT (scope, window_start) DO NOTHING;
    SELECT requests, tokens INTO req_total, tok_total FROM rate_windows
        WHERE scope = p_scope AND window_start = p_window FOR UPDATE;
    req_granted := GREATEST(0, LEAST(p_requests, p_requests_limit - req_total));
    tok_granted := GREATEST(0, LEAST(p_tokens, p_tokens_limit - tok_total));
    IF req_granted > 0 OR tok_granted > 0 THEN
        UPDATE rate_windows SET requests = requests + req_granted, tokens = tokens + tok_granted
            WHERE scope = p_scope AND window_start = p_window;
    END IF;
    req_total := req_total + req_granted;
    tok_total := tok_total + tok_granted;
END
$$;

-- The overrides (tenancy projection): an organization's, set by the platform admin, and a key's,
-- set by an admin of its organization. A NULL field keeps the default.
CREATE TABLE read.rate_limits (
    subject_id          uuid        PRIMARY KEY,
    subject             text        NOT NULL CHECK (subject IN ('organization', 'api_key')),
    org_id              uuid        NOT NULL,
    requests_per_minute bigint,
    tokens_per_minute   bigint,
    concurrent_streams  integer,
    version             bigint      NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX rate_limits_by_org ON read.rate_limits (org_id);
