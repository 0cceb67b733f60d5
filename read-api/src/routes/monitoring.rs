//! `GET /monitoring/metrics` and `GET /monitoring/metrics/{id}/data`: the organization's metrics
//! and their time series, from the metrics projection's buckets.

use api::monitoring::{
    Dimension, Metric, MetricDataQuery, MetricKind, MetricObject, MetricSeries, MetricSeriesObject,
    Point, Series, Step,
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
use crate::monitoring::{self, BuiltinMetric, Match, QueryError};
use crate::ReadState;

pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(data))
}

/// Points one answer may hold (groups × buckets): a 31-day series of minutes is 44,640.
const MAX_POINTS: usize = 200_000;

/// Built-in metrics and their series are the Developer plan's basic monitoring (Pro and
/// Enterprise include it).
fn require_monitoring(principal: &Principal) -> Result<(), ApiError> {
    principal.require(Permission::MonitoringRead)?;
    platform::plans::require_feature(principal, "basic_monitoring", "Monitoring endpoints")
}

fn to_metric(m: &BuiltinMetric) -> Metric {
    Metric {
        id: m.id.to_string(),
        object: MetricObject::Value,
        kind: MetricKind::Builtin,
        description: m.description.to_string(),
        unit: m.unit.to_string(),
        dimensions: Dimension::ALL.to_vec(),
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
    principal: Principal,
    Query(query): Query<MetricsQuery>,
) -> Result<Json<List<Metric>>, ApiError> {
    scope::org(&principal, query.org_id.as_deref())?;
    require_monitoring(&principal)?;
    let page = query.page.page()?;
    let after = match page.after.as_deref() {
        None => None,
        Some(id) if monitoring::builtin_metric(id).is_some() => Some(id),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "cursor",
                "cursor is not one this API returned.",
            ))
        }
    };
    let rows: Vec<Metric> = monitoring::BUILTIN
        .iter()
        .filter(|m| after.is_none_or(|a| m.id > a))
        .take(page.limit as usize + 1)
        .map(to_metric)
        .collect();
    Ok(Json(List::from_rows(rows, &page, |m| m.id.clone())))
}

/// The `{id}` of a metric: a built-in metric's name (`chat.requests`).
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
    let metric = monitoring::builtin_metric(&id)
        .ok_or_else(|| ApiError::not_found(format!("No metric with id {id:?}.")))?;
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
    let group_by = parse_list(query.group_by.as_deref(), |d| dimension(d, "group_by"))?;
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = group_by.iter().find(|d| !seen.insert(**d)) {
        return Err(ApiError::invalid_param(
            "group_by",
            format!("group_by names {} twice.", twice.name()),
        ));
    }
    let filter = parse_list(query.filter.as_deref(), |pair| {
        let (d, value) = pair.split_once(':').ok_or_else(|| {
            ApiError::invalid_param(
                "filter",
                format!("filter {pair:?} is not dimension:value (model:gpt-4o)."),
            )
        })?;
        Ok(Match {
            dimension: dimension(d.trim(), "filter")?,
            value: value.trim().to_string(),
        })
    })?;
    let q = monitoring::Query {
        org_id,
        metric,
        step,
        from,
        to,
        group_by: &group_by,
        filter: &filter,
    };
    let client = state.pool.get().await?;
    let values = monitoring::series(&client, &q).await.map_err(|e| match e {
        QueryError::NotAnId(raw) => ApiError::invalid_param(
            "filter",
            format!("{raw:?} is not an id; api_key, team and user take UUIDs."),
        ),
        other => ApiError::internal(other.into()),
    })?;
    let points: usize = values.values().map(|v| v.len()).sum();
    if points > MAX_POINTS {
        return Err(ApiError::invalid_param(
            "step",
            format!("The series would hold {points} points (at most {MAX_POINTS}); ask for a larger step, a shorter range or fewer groups."),
        ));
    }
    let series = if values.is_empty() && group_by.is_empty() {
        vec![Series {
            group: Default::default(),
            points: vec![],
        }]
    } else {
        values
            .into_iter()
            .map(|(group, values)| Series {
                group: group_by.iter().copied().zip(group).collect(),
                points: values
                    .into_iter()
                    .map(|(t, value)| Point { t: t.into(), value })
                    .collect(),
            })
            .collect()
    };
    Ok(Json(MetricSeries {
        object: MetricSeriesObject::Value,
        metric: metric.id.to_string(),
        org_id: org_id.into(),
        from: from.into(),
        to: to.into(),
        step,
        group_by,
        series,
    }))
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::Minute => "1m",
        Step::Hour => "1h",
        Step::Day => "1d",
    }
}
