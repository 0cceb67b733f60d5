-- Read model of the metrics projection: the built-in chat metrics of each organization, folded
-- from chat.completion.* events into buckets of one minute, one hour and one day (`step`, in
-- seconds), at the finest grouping (model, provider, API key, team, user); a query groups
-- coarser by summing rows and merging their sketches. Latency and time to first token are
-- DDSketches (platform::sketch), which merge exactly, so a day's percentile is the percentile of
-- its calls, not an average of minutes'.
CREATE TABLE read.chat_metrics (
    org_id            uuid        NOT NULL,
    step              integer     NOT NULL CHECK (step IN (60, 3600, 86400)),
    bucket            timestamptz NOT NULL,
    model             text        NOT NULL,
    -- The provider that answered, or for a failed call the last one tried; NULL when none was.
    provider          text,
    api_key_id        uuid,
    team_id           uuid,
    user_id           uuid,
    requests          bigint      NOT NULL,
    errors            bigint      NOT NULL,
    prompt_tokens     bigint      NOT NULL,
    completion_tokens bigint      NOT NULL,
    total_tokens      bigint      NOT NULL,
    cost_micros       bigint      NOT NULL,
    quota_refusals    bigint      NOT NULL,
    failovers         bigint      NOT NULL,
    latency_ms        bytea       NOT NULL,
    -- NULL until a call of the row reported a time to first token.
    ttft_ms           bytea
);
-- NULLS NOT DISTINCT (PostgreSQL 15): a call without a key, team, user or provider still has
-- exactly one row per bucket to add to.
CREATE UNIQUE INDEX chat_metrics_key ON read.chat_metrics
    (org_id, step, bucket, model, provider, api_key_id, team_id, user_id) NULLS NOT DISTINCT;
