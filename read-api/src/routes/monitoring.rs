//! `GET /monitoring/metrics` and `GET /monitoring/metrics/{id}/data`: the organization's metrics
//! and their time series, from the metrics projection's buckets.

use api::monitoring::{
    Backfill, Dimension, MeterDefinition, Metric, MetricDataQuery, MetricKind, MetricObject,
    MetricSeries, MetricSeriesObject, Point, Series, Step,
};
use api::{List, OrgQuery, PageParams};
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use platform::access::Permission;
use platform::http::Query;
use platform::pagination::PageQuery;
use platform::{ApiError, Principal};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{scope, usage};
use crate::custom_metrics::{self, CustomMetric};
use crate::monitoring::{self, BuiltinMetric, Match, QueryError};
use crate::ReadState;
use uuid::Uuid;

pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_metric))
        .routes(routes!(data))
        .merge(super::health_checks::router())
}

/// Points one answer may hold (groups × buckets): a 31-day series of minutes is 44,640.
const MAX_POINTS: usize = 200_000;

/// Built-in metrics and their series are the Developer plan's basic monitoring (Pro and
/// Enterprise include it).
fn require_monitoring(principal: &Principal) -> Result<(), ApiError> {
    principal.require(Permission::MonitoringRead)?;
    platform::plans::require_feature(principal, "basic_monitoring", "Monitoring endpoints")
}

/// Custom metrics are Pro's and Enterprise's advanced monitoring.
pub fn require_custom(principal: &Principal) -> Result<(), ApiError> {
    principal.require(Permission::MonitoringRead)?;
    platform::plans::require_feature(principal, "advanced_monitoring", "Custom metrics")
}

fn to_metric(m: &BuiltinMetric) -> Metric {
    Metric {
        id: m.id.to_string(),
        object: MetricObject::Value,
        kind: MetricKind::Builtin,
        description: m.description.to_string(),
        unit: m.unit.to_string(),
        dimensions: Dimension::ALL
            .iter()
            .map(|d| d.name().to_string())
            .collect(),
        name: None,
        aggregation: None,
        meter: None,
        backfill: None,
        created_at: None,
    }
}

/// A custom metric as the API shows it.
pub fn custom_metric(m: &CustomMetric, dimensions: Vec<String>) -> Metric {
    let kind = match m.kind.as_str() {
        "meter" => MetricKind::Meter,
        "gauge" => MetricKind::Gauge,
        _ => MetricKind::Counter,
    };
    Metric {
        id: m.id.to_string(),
        object: MetricObject::Value,
        kind,
        description: m.description.clone().unwrap_or_default(),
        unit: m.unit.clone().unwrap_or_default(),
        dimensions,
        name: Some(m.name.clone()),
        aggregation: Some(m.aggregation.name().to_string()),
        meter: m.meter.as_ref().map(|spec| MeterDefinition {
            event_type: spec.event_type.clone(),
            filter: spec.filter.clone(),
            value: spec.value.clone(),
            group_by: spec.group_by.clone(),
        }),
        backfill: m.meter.as_ref().map(|_| Backfill {
            status: m.backfill_status.clone(),
            events_done: m.backfill_events_done,
        }),
        created_at: Some(m.defined_at.into()),
    }
}

#[derive(Debug, Deserialize)]
struct MetricsQuery {
    #[serde(flatten)]
    page: PageQuery,
    org_id: Option<String>,
}

/// The metrics the organization can chart, in id order.
#[utoipa::path(get, path = "/monitoring/metrics", tag = "monitoring", params(PageParams, OrgQuery),
    responses((status = 200, body = List<Metric>)))]
async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<MetricsQuery>,
) -> Result<Json<List<Metric>>, ApiError> {
    let org_id = scope::org(&principal, query.org_id.as_deref())?;
    require_monitoring(&principal)?;
    let page = query.page.page()?;
    let after = match page.after.as_deref() {
        None => None,
        Some(id) if monitoring::builtin_metric(id).is_some() || id.parse::<Uuid>().is_ok() => {
            Some(id)
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                "cursor",
                "cursor is not one this API returned.",
            ))
        }
    };
    let client = state.pool.get().await?;
    let mut all: Vec<Metric> = monitoring::BUILTIN.iter().map(to_metric).collect();
    for m in custom_metrics::list(&client, org_id).await? {
        let dimensions = custom_metrics::dimensions(&client, &m).await?;
        all.push(custom_metric(&m, dimensions));
    }
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let rows: Vec<Metric> = all
        .into_iter()
        .filter(|m| after.is_none_or(|a| m.id.as_str() > a))
        .take(page.limit as usize + 1)
        .collect();
    Ok(Json(List::from_rows(rows, &page, |m| m.id.clone())))
}

/// One metric: a built-in one, or a custom one with its definition and back-fill.
#[utoipa::path(get, path = "/monitoring/metrics/{id}", tag = "monitoring",
    params(MetricIdParam, OrgQuery),
    responses((status = 200, body = Metric)))]
async fn get_metric(
    State(state): State<ReadState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(query): Query<MetricsQuery>,
) -> Result<Json<Metric>, ApiError> {
    let org_id = scope::org(&principal, query.org_id.as_deref())?;
    require_monitoring(&principal)?;
    if let Some(m) = monitoring::builtin_metric(&id) {
        return Ok(Json(to_metric(m)));
    }
    let client = state.pool.get().await?;
    let metric = find_custom(&client, &principal, org_id, &id).await?;
    let dimensions = custom_metrics::dimensions(&client, &metric).await?;
    Ok(Json(custom_metric(&metric, dimensions)))
}

/// The organization's custom metric `id`: 404 for anything else, another organization's too.
async fn find_custom(
    client: &tokio_postgres::Client,
    principal: &Principal,
    org_id: Uuid,
    id: &str,
) -> Result<CustomMetric, ApiError> {
    let not_found = || ApiError::not_found(format!("No metric with id {id:?}."));
    let uuid = id.parse::<Uuid>().map_err(|_| not_found())?;
    let metric = custom_metrics::find(client, org_id, uuid)
        .await?
        .ok_or_else(not_found)?;
    require_custom(principal)?;
    Ok(metric)
}

/// The `{id}` of a metric: a built-in metric's name (`chat.requests`) or a custom metric's id.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct MetricIdParam {
    /// The metric's id, as `GET /monitoring/metrics` lists it.
    id: String,
}

fn parse_list<T>(
    raw: Option<&str>,
    parse: impl Fn(&str) -> Result<T, ApiError>,
) -> Result<Vec<T>, ApiError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(vec![]),
        Some(raw) => raw.split(',').map(|part| parse(part.trim())).collect(),
    }
}

fn dimension(raw: &str, param: &str) -> Result<Dimension, ApiError> {
    Dimension::parse(raw).ok_or_else(|| {
        ApiError::invalid_param(
            param,
            format!("{raw:?} is not a dimension: model, provider, api_key, team or user."),
        )
    })
}

/// The longest range a step may cover, so one answer stays bounded.
fn longest(step: Step) -> Duration {
    match step {
        Step::Minute => Duration::days(31),
        Step::Hour => Duration::days(366),
        Step::Day => Duration::days(3_660),
    }
}

fn floor(at: DateTime<Utc>, step: Step) -> DateTime<Utc> {
    let secs = at.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(i64::from(step.seconds())), 0).unwrap_or(at)
}

/// A metric's values in `[from, to)`, per bucket of `step`, one series per group.
#[utoipa::path(get, path = "/monitoring/metrics/{id}/data", tag = "monitoring",
    params(MetricIdParam, MetricDataQuery),
    responses((status = 200, body = MetricSeries)))]
async fn data(
    State(state): State<ReadState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(query): Query<MetricDataQuery>,
) -> Result<Json<MetricSeries>, ApiError> {
    let org_id = scope::org(&principal, query.org_id.as_deref())?;
    require_monitoring(&principal)?;
    let client = state.pool.get().await?;
    let metric = match monitoring::builtin_metric(&id) {
        Some(m) => Which::Builtin(m),
        None => Which::Custom(Box::new(
            find_custom(&client, &principal, org_id, &id).await?,
        )),
    };
    let step = match query.step.as_deref() {
        None | Some("") => Step::Minute,
        Some(raw) => Step::parse(raw).ok_or_else(|| {
            ApiError::invalid_param("step", format!("step {raw:?} is not one of 1m, 1h, 1d."))
        })?,
    };
    let to = query
        .to
        .as_deref()
        .map(|t| usage::instant(t, "to"))
        .transpose()?
        .unwrap_or_else(|| state.clock.now());
    let from = query
        .from
        .as_deref()
        .map(|f| usage::instant(f, "from"))
        .transpose()?
        .unwrap_or(to - Duration::days(1));
    if from >= to {
        return Err(ApiError::invalid_param("to", "to must be after from."));
    }
    if to - from > longest(step) {
        return Err(ApiError::invalid_param(
            "from",
            format!(
                "A series of step {} covers at most {} days; ask for a larger step or a shorter range.",
                step_name(step),
                longest(step).num_days()
            ),
        ));
    }
    let from = floor(from, step);
    let pairs = parse_list(query.filter.as_deref(), |pair| {
        let (d, value) = pair.split_once(':').ok_or_else(|| {
            ApiError::invalid_param(
                "filter",
                format!("filter {pair:?} is not dimension:value (model:gpt-4o)."),
            )
        })?;
        Ok((d.trim().to_string(), value.trim().to_string()))
    })?;
    let names = parse_list(query.group_by.as_deref(), |d| Ok(d.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = names.iter().find(|d| !seen.insert(d.as_str())) {
        return Err(ApiError::invalid_param(
            "group_by",
            format!("group_by names {twice} twice."),
        ));
    }
    let (metric_id, values) = match &metric {
        Which::Builtin(metric) => {
            let group_by = names
                .iter()
                .map(|d| dimension(d, "group_by"))
                .collect::<Result<Vec<_>, _>>()?;
            let filter = pairs
                .iter()
                .map(|(d, value)| {
                    Ok(Match {
                        dimension: dimension(d, "filter")?,
                        value: value.clone(),
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            let q = monitoring::Query {
                org_id,
                metric,
                step,
                from,
                to,
                group_by: &group_by,
                filter: &filter,
            };
            let values = monitoring::series(&client, &q).await.map_err(|e| match e {
                QueryError::NotAnId(raw) => ApiError::invalid_param(
                    "filter",
                    format!("{raw:?} is not an id; api_key, team and user take UUIDs."),
                ),
                other => ApiError::internal(other.into()),
            })?;
            (metric.id.to_string(), values)
        }
        Which::Custom(metric) => {
            let known = custom_metrics::dimensions(&client, metric).await?;
            let check = |d: &str, param: &str| {
                if known.iter().any(|k| k == d) {
                    Ok(())
                } else {
                    Err(ApiError::invalid_param(
                        param,
                        format!(
                            "{d:?} is not a dimension of this metric; it has: {}.",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ))
                }
            };
            for d in &names {
                check(d, "group_by")?;
            }
            for (d, _) in &pairs {
                check(d, "filter")?;
            }
            let q = custom_metrics::CustomQuery {
                metric,
                step: step.seconds(),
                from,
                to,
                group_by: &names,
                filter: &pairs,
            };
            let values = custom_metrics::values(&client, &q, false)
                .await
                .map_err(|e| ApiError::internal(e.into()))?;
            (metric.id.to_string(), values)
        }
    };
    let points: usize = values.values().map(|v| v.len()).sum();
    if points > MAX_POINTS {
        return Err(ApiError::invalid_param(
            "step",
            format!("The series would hold {points} points (at most {MAX_POINTS}); ask for a larger step, a shorter range or fewer groups."),
        ));
    }
    let series = if values.is_empty() && names.is_empty() {
        vec![Series {
            group: Default::default(),
            points: vec![],
        }]
    } else {
        values
            .into_iter()
            .map(|(group, values)| Series {
                group: names.iter().cloned().zip(group).collect(),
                points: values
                    .into_iter()
                    .map(|(t, value)| Point { t: t.into(), value })
                    .collect(),
            })
            .collect()
    };
    Ok(Json(MetricSeries {
        object: MetricSeriesObject::Value,
        metric: metric_id,
        org_id: org_id.into(),
        from: from.into(),
        to: to.into(),
        step,
        group_by: names,
        series,
    }))
}

/// A built-in metric or a custom one.
enum Which {
    Builtin(&'static BuiltinMetric),
    Custom(Box<CustomMetric>),
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::Minute => "1m",
        Step::Hour => "1h",
        Step::Day => "1d",
    }
}
