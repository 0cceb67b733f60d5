//! Custom metrics over `read.custom_metrics` and `read.custom_metric_values` (the metrics
//! projection's share for meters and pushed points): the definitions, and a metric's values per
//! bucket or over a window. Each row holds a count, an exact sum, the extremes and (for
//! percentiles) a sketch, so the aggregation is applied here. An alert evaluator asks
//! [`evaluate`], as it asks `monitoring::evaluate` for a built-in metric.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use events::monitoring::{Aggregation, MeterSpec};
use platform::sketch::Sketch;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::monitoring::{Group, QueryError, Values};

/// A custom metric of an organization as the read model holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomMetric {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// `meter`, `gauge` or `counter`.
    pub kind: String,
    pub aggregation: Aggregation,
    pub unit: Option<String>,
    pub meter: Option<MeterSpec>,
    pub backfill_status: String,
    pub backfill_events_done: i64,
    pub defined_at: DateTime<Utc>,
}

impl CustomMetric {
    fn from_row(row: &tokio_postgres::Row) -> Option<Self> {
        Some(Self {
            id: row.get(0),
            org_id: row.get(1),
            name: row.get(2),
            description: row.get(3),
            kind: row.get(4),
            aggregation: Aggregation::parse(row.get::<_, &str>(5))?,
            unit: row.get(6),
            meter: row
                .get::<_, Option<serde_json::Value>>(7)
                .and_then(|m| serde_json::from_value(m).ok()),
            backfill_status: row.get(8),
            backfill_events_done: row.get(9),
            defined_at: row.get(10),
        })
    }
}

const COLUMNS: &str = "metric_id, org_id, name, description, kind, aggregation, unit, meter,
    backfill_status, backfill_events_done, defined_at";

/// The most custom metrics an organization may have.
pub const MAX_PER_ORG: i64 = 200;

/// The organization's custom metrics, in id order.
pub async fn list(
    client: &tokio_postgres::Client,
    org_id: Uuid,
) -> Result<Vec<CustomMetric>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM read.custom_metrics WHERE org_id = $1 ORDER BY metric_id LIMIT 1000"),
            &[&org_id],
        )
        .await?;
    Ok(rows.iter().filter_map(CustomMetric::from_row).collect())
}

/// The organization's custom metric `id`; none when it has no such metric (another
/// organization's is none too).
pub async fn find(
    client: &tokio_postgres::Client,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<CustomMetric>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM read.custom_metrics WHERE org_id = $1 AND metric_id = $2"
            ),
            &[&org_id, &id],
        )
        .await?;
    Ok(row.as_ref().and_then(CustomMetric::from_row))
}

/// What a custom metric's series can be grouped and filtered by: a meter's group-by paths, or
/// the labels a pushed metric's points carried.
pub async fn dimensions(
    client: &tokio_postgres::Client,
    metric: &CustomMetric,
) -> Result<Vec<String>, tokio_postgres::Error> {
    if let Some(meter) = &metric.meter {
        return Ok(meter.group_by.clone());
    }
    let rows = client
        .query(
            "SELECT DISTINCT jsonb_object_keys(groups) FROM read.custom_metric_values
             WHERE metric_id = $1 AND step = 86400 ORDER BY 1 LIMIT 100",
            &[&metric.id],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A custom metric's query.
#[derive(Debug, Clone)]
pub struct CustomQuery<'a> {
    pub metric: &'a CustomMetric,
    /// 60, 3,600 or 86,400.
    pub step: i32,
    /// Aligned to `step`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: &'a [String],
    /// (dimension, value): the group's value must equal it.
    pub filter: &'a [(String, String)],
}

/// The metric per bucket, one series per group; with `whole`, one value per group over the
/// whole range, keyed by `from`.
pub async fn values(
    client: &tokio_postgres::Client,
    query: &CustomQuery<'_>,
    whole: bool,
) -> Result<BTreeMap<Group, Values>, QueryError> {
    let metric = query.metric;
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![
        Box::new(metric.org_id),
        Box::new(metric.id),
        Box::new(query.step),
        Box::new(query.from),
        Box::new(query.to),
    ];
    let mut conditions = String::new();
    for (dimension, value) in query.filter {
        params.push(Box::new(dimension.clone()));
        params.push(Box::new(value.clone()));
        conditions.push_str(&format!(
            " AND groups->>${} = ${}",
            params.len() - 1,
            params.len()
        ));
    }
    let mut select = vec![if whole { "$4::timestamptz" } else { "bucket" }.to_string()];
    for dimension in query.group_by {
        params.push(Box::new(dimension.clone()));
        select.push(format!("groups->>${}", params.len()));
    }
    let aggregation = metric.aggregation;
    let (table, value) = match aggregation {
        Aggregation::Count => ("read.custom_metric_values", "sum(count)::float8"),
        Aggregation::Sum => ("read.custom_metric_values", "sum(sum)::float8"),
        Aggregation::Avg => (
            "read.custom_metric_values",
            "(sum(sum) / NULLIF(sum(count), 0))::float8",
        ),
        Aggregation::Min => ("read.custom_metric_values", "min(min)"),
        Aggregation::Max => ("read.custom_metric_values", "max(max)"),
        Aggregation::UniqueCount => (
            "read.custom_metric_distinct",
            "count(DISTINCT value)::float8",
        ),
        Aggregation::P50 | Aggregation::P95 | Aggregation::P99 => {
            ("read.custom_metric_values", "sketch")
        }
    };
    // The distinct table has no org column: the metric id, checked against the organization
    // by the definition the caller found, scopes it.
    let org_condition = if table == "read.custom_metric_distinct" {
        "$1::uuid IS NOT NULL"
    } else {
        "org_id = $1"
    };
    let where_ = format!(
        "FROM {table} WHERE {org_condition} AND metric_id = $2 AND step = $3 AND bucket >= $4 AND bucket < $5{conditions}"
    );
    let sql = match aggregation.quantile() {
        Some(_) => format!(
            "SELECT {}, sketch {where_} AND sketch IS NOT NULL",
            select.join(", ")
        ),
        None => {
            let positions: Vec<String> = (1..=select.len()).map(|i| i.to_string()).collect();
            format!(
                "SELECT {}, {value} {where_} GROUP BY {}",
                select.join(", "),
                positions.join(", ")
            )
        }
    };
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client.query(&sql, &refs).await?;
    let n = query.group_by.len();
    let mut out: BTreeMap<Group, Values> = BTreeMap::new();
    match aggregation.quantile() {
        Some(q) => {
            let mut sketches: BTreeMap<Group, BTreeMap<DateTime<Utc>, Sketch>> = BTreeMap::new();
            for row in &rows {
                let at: DateTime<Utc> = row.get(0);
                let group: Group = (1..=n).map(|i| row.get(i)).collect();
                let sketch = Sketch::decode(row.get::<_, &[u8]>(n + 1))?;
                sketches
                    .entry(group)
                    .or_default()
                    .entry(at)
                    .and_modify(|s| s.merge(&sketch))
                    .or_insert(sketch);
            }
            for (group, buckets) in sketches {
                out.insert(
                    group,
                    buckets
                        .into_iter()
                        .filter_map(|(at, s)| s.quantile(q).map(|v| (at, v)))
                        .collect(),
                );
            }
        }
        None => {
            for row in &rows {
                let at: DateTime<Utc> = row.get(0);
                let group: Group = (1..=n).map(|i| row.get(i)).collect();
                if let Some(value) = row.get::<_, Option<f64>>(n + 1) {
                    out.entry(group).or_default().insert(at, value);
                }
            }
        }
    }
    Ok(out)
}

/// A custom metric's one value over `[from, to)` for the points matching `filter`, `None` when
/// nothing counts: what an alert rule on a custom metric compares with its threshold. Reads the
/// one-minute buckets, so `from` and `to` are rounded down to the minute.
pub async fn evaluate(
    client: &tokio_postgres::Client,
    org_id: Uuid,
    metric_id: Uuid,
    filter: &[(String, String)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<f64>, QueryError> {
    let Some(metric) = find(client, org_id, metric_id).await? else {
        return Ok(None);
    };
    let floor = |at: DateTime<Utc>| {
        DateTime::from_timestamp(at.timestamp() - at.timestamp().rem_euclid(60), 0).unwrap_or(at)
    };
    let query = CustomQuery {
        metric: &metric,
        step: 60,
        from: floor(from),
        to: floor(to),
        group_by: &[],
        filter,
    };
    Ok(values(client, &query, true)
        .await?
        .into_values()
        .next()
        .and_then(|v| v.into_values().next()))
}
