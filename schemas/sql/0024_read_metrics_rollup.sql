-- The metrics projection's rollup of read.chat_metrics: one row per organization, step and
-- bucket with every dimension (model, provider, API key, team, user) folded, written in the same
-- transaction as the detailed rows. An ungrouped, unfiltered series (the dashboard's default and
-- an alert rule without a filter) is then one range of this primary key, a row per bucket,
-- rather than a GROUP BY over every grouping's row of each bucket. Same value columns; the
-- sketches are the merge of the bucket's detailed sketches (DDSketches merge exactly).
--
-- The rows are derived from the events like the detailed ones, so a database whose metrics were
-- projected before this migration gets its rollup by `aihub replay --projection metrics`.
CREATE TABLE read.chat_metrics_rollup (
    org_id            uuid        NOT NULL,
    step              integer     NOT NULL CHECK (step IN (60, 3600, 86400)),
    bucket            timestamptz NOT NULL,
    requests          bigint      NOT NULL,
    errors            bigint      NOT NULL,
    prompt_tokens     bigint      NOT NULL,
    completion_tokens bigint      NOT NULL,
    total_tokens      bigint      NOT NULL,
    cost_micros       bigint      NOT NULL,
    quota_refusals    bigint      NOT NULL,
    failovers         bigint      NOT NULL,
    latency_ms        bytea       NOT NULL,
    -- NULL until a call of the bucket reported a time to first token.
    ttft_ms           bytea,
    PRIMARY KEY (org_id, step, bucket)
);
