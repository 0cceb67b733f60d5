-- Custom metrics of an organization (issue 11), owned by the metrics projection: meters over the
-- organization's own events and gauges or counters it pushes (metric.recorded). Their values are
-- buckets of a minute, an hour and a day per group, like read.chat_metrics; each row keeps what
-- every aggregation needs (count, an exact numeric sum, min, max, and for percentiles a
-- DDSketch), so the aggregation is applied when the series is read.
CREATE TABLE read.custom_metrics (
    metric_id            uuid        PRIMARY KEY,
    org_id               uuid        NOT NULL,
    name                 text        NOT NULL,
    description          text,
    kind                 text        NOT NULL CHECK (kind IN ('meter', 'gauge', 'counter')),
    aggregation          text        NOT NULL,
    unit                 text,
    -- A meter's event type, filter, value path and group-by paths (events::monitoring::MeterSpec).
    meter                jsonb,
    defined_at           timestamptz NOT NULL,
    -- The metric.defined event: the back-fill counts the organization's events before it, the
    -- live projection those after it.
    defined_event        uuid        NOT NULL,
    -- 'none' (pushed metrics), 'pending', 'running' or 'done'.
    backfill_status      text        NOT NULL,
    -- Events the back-fill counted so far.
    backfill_events_done bigint      NOT NULL DEFAULT 0
);
CREATE INDEX custom_metrics_org ON read.custom_metrics (org_id, metric_id);
CREATE INDEX custom_metrics_backfill ON read.custom_metrics (backfill_status)
    WHERE backfill_status IN ('pending', 'running');

CREATE TABLE read.custom_metric_values (
    org_id    uuid        NOT NULL,
    metric_id uuid        NOT NULL,
    step      integer     NOT NULL CHECK (step IN (60, 3600, 86400)),
    bucket    timestamptz NOT NULL,
    -- Each group-by path (or label) and its value as text, null when the event had none.
    groups    jsonb       NOT NULL,
    count     bigint      NOT NULL,
    -- numeric: sums of the same values are the same whatever batches they came in.
    sum       numeric     NOT NULL,
    min       float8,
    max       float8,
    sketch    bytea,
    PRIMARY KEY (metric_id, step, bucket, groups)
);

-- Distinct values per bucket and group, for unique_count (exact).
CREATE TABLE read.custom_metric_distinct (
    metric_id uuid        NOT NULL,
    step      integer     NOT NULL,
    bucket    timestamptz NOT NULL,
    groups    jsonb       NOT NULL,
    value     text        NOT NULL,
    PRIMARY KEY (metric_id, step, bucket, groups, value)
);

-- The events a meter's back-fill counted: a duplicate publication of one of them (the relay may
-- publish twice) is counted once, and a back-fill that restarts does not count twice.
CREATE TABLE read.meter_backfill_applied (
    metric_id uuid NOT NULL,
    event_id  uuid NOT NULL,
    PRIMARY KEY (metric_id, event_id)
);
