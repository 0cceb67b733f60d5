//! Custom metrics (issue 11): meters over an organization's own events and the points it pushes
//! (`metric.recorded`), folded into buckets of a minute, an hour and a day per group in
//! `read.custom_metric_values`. The metrics projection calls [`apply_live`] for every batch; the
//! back-fill of a new meter (`crate::backfill`) writes through the same [`write`], from the same
//! pure [`meter_contribution`], so both halves count an event the same way.
//!
//! The seam: a meter counts live exactly the events its organization's partition holds after its
//! `metric.defined` event (the projection applies events in partition order and learns of the
//! meter at that event), and the back-fill exactly those before it.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use events::monitoring::{path_get, Aggregation, CustomMetricKind, MeterSpec, MetricDefined};
use events::{EventEnvelope, EventPayload};
use platform::sketch::Sketch;
use serde_json::Value;
use uuid::Uuid;

use super::metrics::{bucket_of, STEPS};

/// A custom metric as the fold needs it.
#[derive(Debug, Clone)]
pub struct Definition {
    pub metric_id: Uuid,
    pub org_id: Uuid,
    pub kind: CustomMetricKind,
    pub aggregation: Aggregation,
    pub meter: Option<MeterSpec>,
}

impl Definition {
    pub fn of(org_id: Uuid, defined: &MetricDefined) -> Self {
        Self {
            metric_id: defined.metric_id,
            org_id,
            kind: defined.kind,
            aggregation: defined.aggregation,
            meter: defined.meter.clone(),
        }
    }
}

/// What one event adds to one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    pub org_id: Uuid,
    pub metric_id: Uuid,
    pub at: DateTime<Utc>,
    /// Canonical JSON of the group: each group-by path (or label) and its value as text.
    pub groups: String,
    /// The number aggregated; none for a count.
    pub value: Option<f64>,
    /// The value `unique_count` counts.
    pub distinct: Option<String>,
    /// Whether the metric keeps a sketch (a percentile).
    pub sketch: bool,
}

/// A JSON value as a group's or a distinct value's text: a string as itself, anything else as
/// its JSON; none for null or missing.
fn as_text(value: Option<&Value>) -> Option<String> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    }
}

fn groups_json(groups: &BTreeMap<String, Option<String>>) -> String {
    serde_json::to_string(groups).unwrap_or_else(|_| "{}".into())
}

/// The event's `data` as JSON, as the topic carries it.
pub fn event_data(event: &EventEnvelope) -> Value {
    match serde_json::to_value(&event.payload) {
        Ok(Value::Object(mut map)) => map.remove("data").unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// What `event` adds to `meter`, if it counts: its organization's event of the meter's type
/// that matches every filter, with a number at the value path when the aggregation needs one.
pub fn meter_contribution(
    meter: &Definition,
    event: &EventEnvelope,
    data: &Value,
) -> Option<Contribution> {
    let spec = meter.meter.as_ref()?;
    if event.org_id != Some(meter.org_id) || event.event_type() != spec.event_type {
        return None;
    }
    if !spec
        .filter
        .iter()
        .all(|(path, wanted)| path_get(data, path) == Some(wanted))
    {
        return None;
    }
    let found = spec.value.as_deref().and_then(|p| path_get(data, p));
    let (value, distinct) = match meter.aggregation {
        Aggregation::Count => (None, None),
        Aggregation::UniqueCount => (None, Some(as_text(found)?)),
        _ => (Some(found?.as_f64().filter(|v| v.is_finite())?), None),
    };
    let groups: BTreeMap<String, Option<String>> = spec
        .group_by
        .iter()
        .map(|p| (p.clone(), as_text(path_get(data, p))))
        .collect();
    Some(Contribution {
        org_id: meter.org_id,
        metric_id: meter.metric_id,
        at: *event.occurred_at,
        groups: groups_json(&groups),
        value,
        distinct,
        sketch: meter.aggregation.quantile().is_some(),
    })
}

/// What a pushed point adds to its gauge or counter.
pub fn point_contribution(metric: &Definition, event: &EventEnvelope) -> Option<Contribution> {
    let EventPayload::MetricRecorded(point) = &event.payload else {
        return None;
    };
    if metric.kind == CustomMetricKind::Meter
        || event.org_id != Some(metric.org_id)
        || point.metric_id != metric.metric_id
        || !point.value.is_finite()
    {
        return None;
    }
    let groups: BTreeMap<String, Option<String>> = point
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    Some(Contribution {
        org_id: metric.org_id,
        metric_id: metric.metric_id,
        at: *point.at,
        groups: groups_json(&groups),
        value: Some(point.value),
        distinct: Some(point.value.to_string()),
        sketch: metric.aggregation.quantile().is_some(),
    })
}

/// Serializes concurrent writers of one metric (the live fold and a back-fill), in one order.
pub const LOCK: &str = "SELECT pg_advisory_xact_lock(h) FROM (
    SELECT DISTINCT hashtextextended(m::text, 11) AS h FROM unnest($1::uuid[]) AS m ORDER BY 1) AS k";

/// Counters and extremes, summed per row in SQL: `sum` as numeric from each value's shortest
/// decimal text, so the total does not depend on how events were batched.
const UPSERT: &str = "INSERT INTO read.custom_metric_values AS v (org_id, metric_id, step, bucket, groups, count, sum, min, max)
    SELECT org_id, metric_id, step, bucket, groups::jsonb, count(*), coalesce(sum(x::numeric), 0), min(x::float8), max(x::float8)
    FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::timestamptz[], $5::text[], $6::text[])
         AS c(org_id, metric_id, step, bucket, groups, x)
    GROUP BY org_id, metric_id, step, bucket, groups
    ON CONFLICT (metric_id, step, bucket, groups) DO UPDATE SET
        count = v.count + EXCLUDED.count,
        sum = v.sum + EXCLUDED.sum,
        min = LEAST(v.min, EXCLUDED.min),
        max = GREATEST(v.max, EXCLUDED.max)";

const DISTINCT: &str =
    "INSERT INTO read.custom_metric_distinct (metric_id, step, bucket, groups, value)
    SELECT DISTINCT metric_id, step, bucket, groups::jsonb, value
    FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::text[], $5::text[])
         AS c(metric_id, step, bucket, groups, value)
    ON CONFLICT DO NOTHING";

const STORED_SKETCHES: &str = "SELECT k.n, v.sketch
    FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::text[]) WITH ORDINALITY AS k(metric_id, step, bucket, groups, n)
    JOIN read.custom_metric_values v ON v.metric_id = k.metric_id AND v.step = k.step
         AND v.bucket = k.bucket AND v.groups = k.groups::jsonb
    FOR UPDATE OF v";

const WRITE_SKETCHES: &str = "UPDATE read.custom_metric_values v SET sketch = k.sketch
    FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::text[], $5::bytea[]) AS k(metric_id, step, bucket, groups, sketch)
    WHERE v.metric_id = k.metric_id AND v.step = k.step AND v.bucket = k.bucket AND v.groups = k.groups::jsonb";

type SketchKey = (Uuid, i32, DateTime<Utc>, String);
/// `DISTINCT`'s parameters: metric, step, bucket, group and value per row.
type DistinctColumns = (
    Vec<Uuid>,
    Vec<i32>,
    Vec<DateTime<Utc>>,
    Vec<String>,
    Vec<String>,
);

/// Adds `contributions` to the buckets, in the caller's transaction.
pub async fn write(
    tx: &platform::db::Transaction<'_>,
    contributions: &[Contribution],
) -> anyhow::Result<()> {
    if contributions.is_empty() {
        return Ok(());
    }
    let metric_ids: Vec<Uuid> = contributions.iter().map(|c| c.metric_id).collect();
    tx.execute(LOCK, &[&metric_ids]).await?;
    let n = contributions.len() * STEPS.len();
    let (mut org, mut metric, mut step, mut bucket, mut groups, mut value) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::<Option<String>>::with_capacity(n),
    );
    let mut distinct: DistinctColumns = Default::default();
    let mut sketches: BTreeMap<SketchKey, Sketch> = BTreeMap::new();
    for c in contributions {
        for s in STEPS {
            let at = bucket_of(c.at, s);
            org.push(c.org_id);
            metric.push(c.metric_id);
            step.push(s);
            bucket.push(at);
            groups.push(c.groups.clone());
            value.push(c.value.map(|v| v.to_string()));
            if let Some(d) = &c.distinct {
                distinct.0.push(c.metric_id);
                distinct.1.push(s);
                distinct.2.push(at);
                distinct.3.push(c.groups.clone());
                distinct.4.push(d.clone());
            }
            if let (true, Some(v)) = (c.sketch, c.value) {
                sketches
                    .entry((c.metric_id, s, at, c.groups.clone()))
                    .or_default()
                    .add(v);
            }
        }
    }
    tx.execute(UPSERT, &[&org, &metric, &step, &bucket, &groups, &value])
        .await?;
    if !distinct.0.is_empty() {
        tx.execute(
            DISTINCT,
            &[
                &distinct.0,
                &distinct.1,
                &distinct.2,
                &distinct.3,
                &distinct.4,
            ],
        )
        .await?;
    }
    if !sketches.is_empty() {
        let (keys, mut merged): (Vec<SketchKey>, Vec<Sketch>) = sketches.into_iter().unzip();
        let k_metric: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let k_step: Vec<i32> = keys.iter().map(|k| k.1).collect();
        let k_bucket: Vec<DateTime<Utc>> = keys.iter().map(|k| k.2).collect();
        let k_groups: Vec<String> = keys.iter().map(|k| k.3.clone()).collect();
        for row in tx
            .query(STORED_SKETCHES, &[&k_metric, &k_step, &k_bucket, &k_groups])
            .await?
        {
            let i: i64 = row.get(0);
            let Some(bytes) = row.get::<_, Option<Vec<u8>>>(1) else {
                continue;
            };
            if let Some(mine) = usize::try_from(i - 1).ok().and_then(|i| merged.get_mut(i)) {
                let mut stored = Sketch::decode(&bytes)?;
                stored.merge(mine);
                *mine = stored;
            }
        }
        let bytes: Vec<Vec<u8>> = merged.iter().map(Sketch::encode).collect();
        tx.execute(
            WRITE_SKETCHES,
            &[&k_metric, &k_step, &k_bucket, &k_groups, &bytes],
        )
        .await?;
    }
    Ok(())
}

const DEFINITIONS: &str =
    "SELECT metric_id, org_id, kind, aggregation, meter FROM read.custom_metrics
    WHERE org_id = ANY($1)";

const DEFINE: &str =
    "INSERT INTO read.custom_metrics (metric_id, org_id, name, description, kind, aggregation,
        unit, meter, defined_at, defined_event, backfill_status)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (metric_id) DO NOTHING";

/// Dropping a metric drops its values; the row lock makes a back-fill under way stop.
const UNDEFINE: &[&str] = &[
    "DELETE FROM read.custom_metrics WHERE metric_id = $1 AND org_id = $2",
    "DELETE FROM read.custom_metric_values WHERE metric_id = $1 AND org_id = $2",
    "DELETE FROM read.custom_metric_distinct d WHERE metric_id = $1
        AND NOT EXISTS (SELECT 1 FROM read.custom_metrics m WHERE m.metric_id = $1 AND m.org_id <> $2)",
    "DELETE FROM read.meter_backfill_applied WHERE metric_id = $1
        AND NOT EXISTS (SELECT 1 FROM read.custom_metrics m WHERE m.metric_id = $1 AND m.org_id <> $2)",
];

/// The metrics projection's share for custom metrics: definitions and deletions as they pass,
/// in partition order, and every event's contributions to the metrics defined before it.
pub async fn apply_live(
    tx: &platform::db::Transaction<'_>,
    events: &[&EventEnvelope],
) -> anyhow::Result<()> {
    let orgs: Vec<Uuid> = events
        .iter()
        .filter_map(|e| e.org_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if orgs.is_empty() {
        return Ok(());
    }
    let mut by_org: HashMap<Uuid, Vec<Definition>> = HashMap::new();
    let definitions = tx.prepare_cached(DEFINITIONS).await?;
    for row in tx.query(&definitions, &[&orgs]).await? {
        let (Some(kind), Some(aggregation)) = (
            CustomMetricKind::parse(row.get::<_, &str>(2)),
            Aggregation::parse(row.get::<_, &str>(3)),
        ) else {
            continue;
        };
        let meter = row
            .get::<_, Option<Value>>(4)
            .and_then(|m| serde_json::from_value(m).ok());
        let org_id: Uuid = row.get(1);
        by_org.entry(org_id).or_default().push(Definition {
            metric_id: row.get(0),
            org_id,
            kind,
            aggregation,
            meter,
        });
    }
    let mut pending: Vec<Contribution> = Vec::new();
    for event in events {
        let Some(org_id) = event.org_id else {
            continue;
        };
        match &event.payload {
            EventPayload::MetricDefined(defined) => {
                let meter = defined
                    .meter
                    .as_ref()
                    .and_then(|m| serde_json::to_value(m).ok());
                let backfill = match defined.kind {
                    CustomMetricKind::Meter => "pending",
                    _ => "none",
                };
                tx.execute(
                    DEFINE,
                    &[
                        &defined.metric_id,
                        &org_id,
                        &defined.name,
                        &defined.description,
                        &defined.kind.name(),
                        &defined.aggregation.name(),
                        &defined.unit,
                        &meter,
                        &*event.occurred_at,
                        &event.event_id,
                        &backfill,
                    ],
                )
                .await?;
                let list = by_org.entry(org_id).or_default();
                if !list.iter().any(|d| d.metric_id == defined.metric_id) {
                    list.push(Definition::of(org_id, defined));
                }
            }
            EventPayload::MetricDeleted(deleted) => {
                // What counted before the deletion is written first, then dropped with the rest.
                write(tx, &std::mem::take(&mut pending)).await?;
                for sql in UNDEFINE {
                    tx.execute(*sql, &[&deleted.metric_id, &org_id]).await?;
                }
                if let Some(list) = by_org.get_mut(&org_id) {
                    list.retain(|d| d.metric_id != deleted.metric_id);
                }
            }
            EventPayload::MetricRecorded(point) => {
                if let Some(metric) = by_org
                    .get(&org_id)
                    .and_then(|l| l.iter().find(|d| d.metric_id == point.metric_id))
                {
                    pending.extend(point_contribution(metric, event));
                }
            }
            _ => {
                let Some(list) = by_org.get(&org_id) else {
                    continue;
                };
                let meters: Vec<&Definition> = list
                    .iter()
                    .filter(|d| {
                        d.meter
                            .as_ref()
                            .is_some_and(|m| m.event_type == event.event_type())
                    })
                    .collect();
                if meters.is_empty() {
                    continue;
                }
                let data = event_data(event);
                for meter in meters {
                    pending.extend(meter_contribution(meter, event, &data));
                }
            }
        }
    }
    write(tx, &pending).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meter(aggregation: Aggregation, value: Option<&str>) -> Definition {
        Definition {
            metric_id: Uuid::from_u128(5),
            org_id: Uuid::from_u128(1),
            kind: CustomMetricKind::Meter,
            aggregation,
            meter: Some(MeterSpec {
                event_type: "chat.completion.succeeded".into(),
                filter: [("provider".to_string(), json!("openrouter"))].into(),
                value: value.map(String::from),
                group_by: vec!["model".into()],
            }),
        }
    }

    #[test]
    fn paths_walk_objects_and_arrays() {
        let data = json!({"a": {"b": [10, {"c": "x"}]}});
        assert_eq!(path_get(&data, "a.b.0"), Some(&json!(10)));
        assert_eq!(path_get(&data, "$.a.b.1.c"), Some(&json!("x")));
        assert_eq!(path_get(&data, "a.z"), None);
        use events::monitoring::parse_path;
        assert_eq!(
            parse_path("$.call.latency_ms").as_deref(),
            Some("call.latency_ms")
        );
        for bad in ["", "a..b", "a b", "a.b-c", "$", "a.b.c.d.e.f.g.h.i"] {
            assert_eq!(parse_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_meter_counts_only_its_own_organizations_matching_events() {
        let mut event = EventEnvelope::new(
            EventPayload::MetricDeleted(events::monitoring::MetricDeleted {
                metric_id: Uuid::nil(),
            }),
            Some(Uuid::from_u128(1)),
            events::StreamId::metric(Uuid::nil()),
            1,
            events::Actor::system(),
            "c".into(),
        );
        let data = json!({"provider": "openrouter", "model": "m", "total_tokens": 15});
        // Another event type: not counted.
        assert_eq!(
            meter_contribution(&meter(Aggregation::Count, None), &event, &data),
            None
        );
        event.payload = EventPayload::ChatCompletionSucceeded(
            serde_json::from_value(json!({
                "request_id": "r", "model": "m", "streamed": false, "attempts": [], "latency_ms": 3,
                "provider": "openrouter", "upstream_model": "u", "prompt_tokens": 10,
                "completion_tokens": 5, "total_tokens": 15, "cost_micros": 1
            }))
            .unwrap(),
        );
        let sum = meter(Aggregation::Sum, Some("total_tokens"));
        let c = meter_contribution(&sum, &event, &data).unwrap();
        assert_eq!(c.value, Some(15.0));
        assert_eq!(c.groups, r#"{"model":"m"}"#);
        // The filter must match.
        let other = json!({"provider": "gemini", "model": "m", "total_tokens": 15});
        assert_eq!(meter_contribution(&sum, &event, &other), None);
        // Another organization's event never counts.
        event.org_id = Some(Uuid::from_u128(2));
        assert_eq!(meter_contribution(&sum, &event, &data), None);
        // No number at the value path: not counted.
        event.org_id = Some(Uuid::from_u128(1));
        let bad = meter(Aggregation::Sum, Some("model"));
        assert_eq!(meter_contribution(&bad, &event, &data), None);
    }
}
