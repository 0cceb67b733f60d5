-- A month of one organization's minutes (43,200 rollup rows) answered from the rollup's primary
-- key alone (issue 11).
--
-- 1. Each rollup row also holds its bucket's latency and time-to-first-token p50, p95 and p99,
--    as its sketch gives them, written by the projection beside the sketch it merged. An
--    ungrouped percentile series then reads three numbers per bucket instead of decoding 43,200
--    sketches. NULL for time to first token when no call of the bucket reported one; NULL for
--    latency only in rows written before this migration, which the read API then answers from
--    the sketch (`aihub replay --projection metrics` fills them).
ALTER TABLE read.chat_metrics_rollup
    ADD COLUMN latency_p50 float8,
    ADD COLUMN latency_p95 float8,
    ADD COLUMN latency_p99 float8,
    ADD COLUMN ttft_p50    float8,
    ADD COLUMN ttft_p95    float8,
    ADD COLUMN ttft_p99    float8;

-- 2. The key carries the counters and the percentiles (INCLUDE), so an ungrouped series is an
--    index-only scan: the key's pages, in bucket order, rather than every heap page of the range,
--    where each row also holds its two sketches (measured on a month of minutes: 15-23 ms for the
--    heap scan, 8-13 ms index-only).
--
--    The included columns change on every upsert, so an update of a rollup row is no longer HOT;
--    there is one such row per organization and bucket, against several detailed rows per call
--    batch. Index-only scans skip the heap for all-visible pages only: the table is vacuumed at a
--    lower threshold, so the rows of past buckets, which no longer change, are soon marked so.
ALTER TABLE read.chat_metrics_rollup
    DROP CONSTRAINT chat_metrics_rollup_pkey,
    ADD CONSTRAINT chat_metrics_rollup_pkey PRIMARY KEY (org_id, step, bucket)
        INCLUDE (requests, errors, prompt_tokens, completion_tokens, total_tokens, cost_micros,
                 quota_refusals, failovers, latency_p50, latency_p95, latency_p99, ttft_p50,
                 ttft_p95, ttft_p99);

ALTER TABLE read.chat_metrics_rollup SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.02
);
