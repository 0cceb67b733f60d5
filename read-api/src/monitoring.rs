//! The built-in metrics over `read.chat_metrics` (the metrics projection's buckets): which
//! there are, and their values for an organization over a range, per bucket or over the whole
//! window. An alert evaluator asks [`evaluate`]; the HTTP route asks [`series`].
//!
//! A query with neither a grouping nor a filter reads `read.chat_metrics_rollup` instead, the
//! projection's one row per bucket with every dimension folded: a range of its primary key, with
//! no `GROUP BY` for a series. The key includes the counters and each bucket's percentiles, so
//! such a series is an index-only scan (migration 0029).

use std::collections::BTreeMap;

use api::monitoring::{Dimension, Step};
use chrono::{DateTime, Utc};
use platform::sketch::Sketch;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// How a metric is computed from a bucket's rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    /// The sum of a counter column.
    Sum(&'static str),
    /// `errors / requests`.
    ErrorRate,
    /// A quantile of the merged sketches of a column; the rollup's column holding it per bucket.
    Quantile(&'static str, f64, &'static str),
}

/// A metric the platform computes from every chat call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BuiltinMetric {
    pub id: &'static str,
    pub description: &'static str,
    pub unit: &'static str,
    pub measure: Measure,
}

const fn builtin(
    id: &'static str,
    unit: &'static str,
    measure: Measure,
    description: &'static str,
) -> BuiltinMetric {
    BuiltinMetric {
        id,
        description,
        unit,
        measure,
    }
}

/// Every built-in metric, in id order.
pub const BUILTIN: &[BuiltinMetric] = &[
    builtin(
        "chat.completion_tokens",
        "tokens",
        Measure::Sum("completion_tokens"),
        "Completion tokens billed.",
    ),
    builtin(
        "chat.cost_micros",
        "usd_micros",
        Measure::Sum("cost_micros"),
        "Cost of the calls in millionths of a US dollar.",
    ),
    builtin(
        "chat.error_rate",
        "ratio",
        Measure::ErrorRate,
        "Failed calls divided by calls (0 to 1).",
    ),
    builtin(
        "chat.errors",
        "requests",
        Measure::Sum("errors"),
        "Chat calls that failed (any chat.completion.failed, quota refusals included).",
    ),
    builtin(
        "chat.failovers",
        "requests",
        Measure::Sum("failovers"),
        "Times a call moved on to another deployment.",
    ),
    builtin(
        "chat.latency_ms.p50",
        "ms",
        Measure::Quantile("latency_ms", 0.5, "latency_p50"),
        "Median latency of a call, from request to its end (within 1 %).",
    ),
    builtin(
        "chat.latency_ms.p95",
        "ms",
        Measure::Quantile("latency_ms", 0.95, "latency_p95"),
        "95th percentile of call latency (within 1 %).",
    ),
    builtin(
        "chat.latency_ms.p99",
        "ms",
        Measure::Quantile("latency_ms", 0.99, "latency_p99"),
        "99th percentile of call latency (within 1 %).",
    ),
    builtin(
        "chat.prompt_tokens",
        "tokens",
        Measure::Sum("prompt_tokens"),
        "Prompt tokens billed.",
    ),
    builtin(
        "chat.quota_refusals",
        "requests",
        Measure::Sum("quota_refusals"),
        "Calls refused because the monthly token quota was used up.",
    ),
    builtin(
        "chat.requests",
        "requests",
        Measure::Sum("requests"),
        "Chat calls, answered or failed.",
    ),
    builtin(
        "chat.total_tokens",
        "tokens",
        Measure::Sum("total_tokens"),
        "Prompt and completion tokens billed.",
    ),
    builtin(
        "chat.ttft_ms.p50",
        "ms",
        Measure::Quantile("ttft_ms", 0.5, "ttft_p50"),
        "Median time to the first token of answered calls (within 1 %).",
    ),
    builtin(
        "chat.ttft_ms.p95",
        "ms",
        Measure::Quantile("ttft_ms", 0.95, "ttft_p95"),
        "95th percentile of time to first token (within 1 %).",
    ),
    builtin(
        "chat.ttft_ms.p99",
        "ms",
        Measure::Quantile("ttft_ms", 0.99, "ttft_p99"),
        "99th percentile of time to first token (within 1 %).",
    ),
];

pub fn builtin_metric(id: &str) -> Option<&'static BuiltinMetric> {
    BUILTIN.iter().find(|m| m.id == id)
}

fn column(d: Dimension) -> &'static str {
    match d {
        Dimension::Model => "model",
        Dimension::Provider => "provider",
        Dimension::ApiKey => "api_key_id",
        Dimension::Team => "team_id",
        Dimension::User => "user_id",
    }
}

/// A condition on one dimension: the calls whose value is exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub dimension: Dimension,
    pub value: String,
}

/// One group's values: bucket start → value.
pub type Values = BTreeMap<DateTime<Utc>, f64>;

/// What a query asks for.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub org_id: Uuid,
    pub metric: &'a BuiltinMetric,
    pub step: Step,
    /// Aligned to `step`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: &'a [Dimension],
    pub filter: &'a [Match],
}

/// The key of a group: each `group_by` dimension's value, in `group_by`'s order.
pub type Group = Vec<Option<String>>;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("filter {0:?} is not a UUID")]
    NotAnId(String),
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Sketch(#[from] platform::sketch::SketchError),
}

/// The metric's value in every bucket of `[from, to)` for each group; with `whole` one value per
/// group over the whole range, keyed by `from`.
async fn values(
    client: &tokio_postgres::Client,
    query: &Query<'_>,
    whole: bool,
) -> Result<BTreeMap<Group, Values>, QueryError> {
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![
        Box::new(query.org_id),
        Box::new(query.step.seconds()),
        Box::new(query.from),
        Box::new(query.to),
    ];
    let mut conditions = String::new();
    for m in query.filter {
        let col = column(m.dimension);
        match m.dimension {
            Dimension::Model | Dimension::Provider => params.push(Box::new(m.value.clone())),
            _ => params.push(Box::new(
                m.value
                    .parse::<Uuid>()
                    .map_err(|_| QueryError::NotAnId(m.value.clone()))?,
            )),
        }
        conditions.push_str(&format!(" AND {col} = ${}", params.len()));
    }
    let groups: Vec<String> = query
        .group_by
        .iter()
        .map(|d| format!("{}::text", column(*d)))
        .collect();
    // Every dimension folded, per bucket: the projection's rollup row answers as is.
    let rollup = query.group_by.is_empty() && query.filter.is_empty();
    let table = if rollup {
        "read.chat_metrics_rollup"
    } else {
        "read.chat_metrics"
    };
    let bucket = if whole { "$3::timestamptz" } else { "bucket" };
    let mut select = vec![bucket.to_string()];
    select.extend(groups.iter().cloned());
    let value_columns = match query.metric.measure {
        Measure::Sum(col) => format!("sum({col})::float8"),
        Measure::ErrorRate => "sum(errors)::float8 / sum(requests)::float8".into(),
        Measure::Quantile(col, ..) => col.to_string(),
    };
    let grouped = !matches!(query.metric.measure, Measure::Quantile(..));
    let sql = if grouped {
        let group_cols: Vec<String> = (1..=select.len()).map(|i| i.to_string()).collect();
        format!(
            "SELECT {}, {value_columns} FROM {table}
             WHERE org_id = $1 AND step = $2 AND bucket >= $3 AND bucket < $4{conditions}
             GROUP BY {}",
            select.join(", "),
            group_cols.join(", ")
        )
    } else {
        format!(
            "SELECT {}, {value_columns} FROM {table}
             WHERE org_id = $1 AND step = $2 AND bucket >= $3 AND bucket < $4{conditions}
               AND {value_columns} IS NOT NULL",
            select.join(", ")
        )
    };
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client.query(&sql, &refs).await?;
    let n = query.group_by.len();
    let mut out: BTreeMap<Group, Values> = BTreeMap::new();
    match query.metric.measure {
        Measure::Quantile(_, q, _) => {
            let mut sketches: BTreeMap<Group, BTreeMap<DateTime<Utc>, Sketch>> = BTreeMap::new();
            for row in &rows {
                let at: DateTime<Utc> = row.get(0);
                let group: Group = (1..=n).map(|i| row.get(i)).collect();
                let bytes: &[u8] = row.get(n + 1);
                let sketch = Sketch::decode(bytes)?;
                sketches
                    .entry(group)
                    .or_default()
                    .entry(at)
                    .and_modify(|s| s.merge(&sketch))
                    .or_insert(sketch);
            }
            for (group, buckets) in sketches {
                let values = buckets
                    .into_iter()
                    .filter_map(|(at, s)| s.quantile(q).map(|v| (at, v)))
                    .collect();
                out.insert(group, values);
            }
        }
        _ => {
            for row in &rows {
                let at: DateTime<Utc> = row.get(0);
                let group: Group = (1..=n).map(|i| row.get(i)).collect();
                let value: Option<f64> = row.get(n + 1);
                if let Some(value) = value {
                    out.entry(group).or_default().insert(at, value);
                }
            }
        }
    }
    Ok(out)
}

/// One group's points in time order.
pub type Points = Vec<(DateTime<Utc>, f64)>;

/// The metric per bucket of `query.step`, one series per group, in group order.
pub async fn series(
    client: &tokio_postgres::Client,
    query: &Query<'_>,
) -> Result<Vec<(Group, Points)>, QueryError> {
    if query.group_by.is_empty() && query.filter.is_empty() {
        let points = rollup_series(client, query, &RollupValue::of(query.metric.measure)).await?;
        return Ok(if points.is_empty() {
            vec![]
        } else {
            vec![(vec![], points)]
        });
    }
    Ok(values(client, query, false)
        .await?
        .into_iter()
        .map(|(group, values)| (group, values.into_iter().collect()))
        .collect())
}

/// What a rollup row answers for a metric from its key's columns alone.
struct RollupValue {
    /// The bucket's value.
    value: String,
    /// For a percentile: the sketch column to answer from when the row predates its percentile
    /// columns (`latency_p50` NULL, which the projection always writes), and the quantile.
    sketch: Option<(&'static str, f64)>,
}

impl RollupValue {
    fn of(measure: Measure) -> Self {
        match measure {
            Measure::Sum(col) => RollupValue {
                value: format!("{col}::float8"),
                sketch: None,
            },
            Measure::ErrorRate => RollupValue {
                value: "errors::float8 / requests::float8".into(),
                sketch: None,
            },
            Measure::Quantile(col, q, rollup) => RollupValue {
                value: rollup.to_string(),
                sketch: Some((col, q)),
            },
        }
    }
}

/// A `timestamptz` as microseconds since the Unix epoch, read from Postgres's binary form (a
/// count of microseconds since 2000-01-01) without the calendar arithmetic of chrono's
/// `FromSql`, which was a tenth of a month-long series' answer.
struct Micros(i64);

/// 2000-01-01T00:00:00Z, Postgres's epoch, in microseconds since the Unix epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

impl<'a> tokio_postgres::types::FromSql<'a> for Micros {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into()?;
        Ok(Micros(
            i64::from_be_bytes(bytes).saturating_add(PG_EPOCH_MICROS),
        ))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::TIMESTAMPTZ
    }
}

/// An ungrouped, unfiltered series: the rollup's one row per bucket, its value read from the
/// key's columns (an index-only scan), kept as the rows stream in (decoding overlaps the scan)
/// and put in time order here. Not `ORDER BY`: for a month of one organization's minutes
/// Postgres read the table sequentially and then sorted it (a third of its time for the
/// answer); the rows arrive nearly in order, which a sort here finishes in one pass.
async fn rollup_series(
    client: &tokio_postgres::Client,
    query: &Query<'_>,
    value: &RollupValue,
) -> Result<Points, QueryError> {
    use futures::TryStreamExt;
    let old_row = if value.sketch.is_some() {
        "latency_p50 IS NULL"
    } else {
        "false"
    };
    let sql = format!(
        "SELECT bucket, {}, {old_row} FROM read.chat_metrics_rollup
         WHERE org_id = $1 AND step = $2 AND bucket >= $3 AND bucket < $4",
        value.value
    );
    let step = query.step.seconds();
    let params: [&(dyn ToSql + Sync); 4] = [&query.org_id, &step, &query.from, &query.to];
    let rows = client.query_raw(&sql, params).await?;
    futures::pin_mut!(rows);
    let mut points = Vec::new();
    let mut unanswered: Vec<DateTime<Utc>> = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let Micros(at) = row.get(0);
        let Some(at) = DateTime::from_timestamp_micros(at) else {
            continue;
        };
        if row.get::<_, bool>(2) {
            unanswered.push(at);
        } else if let Some(value) = row.get::<_, Option<f64>>(1) {
            points.push((at, value));
        }
    }
    if let (Some((column, q)), false) = (value.sketch, unanswered.is_empty()) {
        let rows = client
            .query(
                &format!(
                    "SELECT bucket, {column} FROM read.chat_metrics_rollup
                     WHERE org_id = $1 AND step = $2 AND bucket = ANY($3) AND {column} IS NOT NULL"
                ),
                &[&query.org_id, &step, &unanswered],
            )
            .await?;
        for row in rows {
            if let Some(v) = Sketch::decode(row.get::<_, &[u8]>(1))?.quantile(q) {
                points.push((row.get(0), v));
            }
        }
    }
    points.sort_by_key(|(at, _)| *at);
    Ok(points)
}

/// The metric's one value for an organization over `[from, to)` (calls matching `filter`),
/// `None` when no call counts: what an alert rule compares with its threshold. Reads the
/// one-minute buckets, so `from` and `to` are rounded down to the minute.
pub async fn evaluate(
    client: &tokio_postgres::Client,
    org_id: Uuid,
    metric: &BuiltinMetric,
    filter: &[Match],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<f64>, QueryError> {
    let floor = |at: DateTime<Utc>| {
        DateTime::from_timestamp(at.timestamp() - at.timestamp().rem_euclid(60), 0).unwrap_or(at)
    };
    let query = Query {
        org_id,
        metric,
        step: Step::Minute,
        from: floor(from),
        to: floor(to),
        group_by: &[],
        filter,
    };
    let values = values(client, &query, true).await?;
    Ok(values
        .into_values()
        .next()
        .and_then(|v| v.into_values().next()))
}
