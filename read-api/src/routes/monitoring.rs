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
) -> Result<SeriesBody, ApiError> {
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
                .map_err(|e| ApiError::internal(e.into()))?
                .into_iter()
                .map(|(group, values)| (group, values.into_iter().collect()))
                .collect();
            (metric.id.to_string(), values)
        }
    };
    let points: usize = values.iter().map(|(_, v)| v.len()).sum();
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
    Ok(SeriesBody(MetricSeries {
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

/// A series answer, written as `Json` would write it but into one buffer sized for it up front,
/// its points without serde's per-field machinery: a month of minutes is 43,200 points and
/// about 2 MB, and through `Json` their serialization was a quarter of the answer's time (grown
/// buffer copies, string escaping of keys and instants that never need it, float formatting of
/// whole counts). Byte for byte what `serde_json` writes (a unit test compares).
pub struct SeriesBody(pub MetricSeries);

impl SeriesBody {
    pub fn into_bytes(mut self) -> Result<Vec<u8>, serde_json::Error> {
        let series = std::mem::take(&mut self.0.series);
        let points: usize = series.iter().map(|s| s.points.len()).sum();
        let mut out = Vec::with_capacity(512 + points * 48);
        // Everything before the series through serde_json; `series` is the last field.
        serde_json::to_writer(&mut out, &self.0)?;
        if !out.ends_with(b"[]}") {
            self.0.series = series;
            return serde_json::to_vec(&self.0);
        }
        out.truncate(out.len() - 3);
        out.push(b'[');
        for (i, s) in series.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"group\":");
            serde_json::to_writer(&mut out, &s.group)?;
            out.extend_from_slice(b",\"points\":[");
            for (j, point) in s.points.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"t\":\"");
                point.t.write_rfc3339(&mut out);
                out.extend_from_slice(b"\",\"value\":");
                write_f64(&mut out, point.value)?;
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
        Ok(out)
    }
}

/// A number as `serde_json` writes an `f64`: a whole one below 10^15 as its digits and `.0`
/// (the counters), any other through `serde_json` itself (`null` for what is not finite).
fn write_f64(out: &mut Vec<u8>, value: f64) -> Result<(), serde_json::Error> {
    if value.fract() == 0.0 && value.abs() < 1e15 && !(value == 0.0 && value.is_sign_negative()) {
        out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
        out.extend_from_slice(b".0");
        Ok(())
    } else {
        serde_json::to_writer(out, &value)
    }
}

impl axum::response::IntoResponse for SeriesBody {
    fn into_response(self) -> axum::response::Response {
        match self.into_bytes() {
            Ok(body) => (
                [(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(e) => ApiError::internal(e.into()).into_response(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(series: Vec<Series>, group_by: Vec<String>) -> MetricSeries {
        MetricSeries {
            object: MetricSeriesObject::Value,
            metric: "chat.requests \"quoted\" \u{e9}".into(),
            org_id: Uuid::now_v7().into(),
            from: DateTime::from_timestamp(1_790_000_000, 0)
                .unwrap_or_default()
                .into(),
            to: DateTime::from_timestamp(1_790_086_400, 0)
                .unwrap_or_default()
                .into(),
            step: Step::Minute,
            group_by,
            series,
        }
    }

    #[test]
    fn a_series_body_is_what_serde_json_writes() {
        // Whole numbers at every magnitude around the fast path's edge, fractions, signs, zeros,
        // what is not finite, and instants from every era the writer handles.
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            -2.25,
            1.0 / 3.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            9_007_199_254_740_993.0,
        ];
        for k in 0..=18 {
            let p = 10f64.powi(k);
            values.extend([p, p - 1.0, -p, p + 0.5, p * 1.5]);
        }
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            values.push(f64::from_bits(seed));
            values.push((seed % 10_000_000_000) as f64);
            values.push((seed % 1_000_000) as f64 / 1_000.0);
        }
        let instants = [
            -62_167_219_200_i64,
            0,
            951_782_400,
            1_790_000_000,
            253_402_300_799,
            253_402_300_800,
        ];
        let points: Vec<Point> = values
            .iter()
            .enumerate()
            .map(|(i, value)| Point {
                t: DateTime::from_timestamp(instants[i % instants.len()], 0)
                    .unwrap_or_default()
                    .into(),
                value: *value,
            })
            .collect();
        let cases = [
            answer(vec![], vec![]),
            answer(
                vec![Series {
                    group: Default::default(),
                    points: vec![],
                }],
                vec![],
            ),
            answer(
                vec![Series {
                    group: Default::default(),
                    points: points.clone(),
                }],
                vec![],
            ),
            answer(
                vec![
                    Series {
                        group: [("model".to_string(), Some("gpt-4o \"mini\"\n".to_string()))]
                            .into(),
                        points: points[..10].to_vec(),
                    },
                    Series {
                        group: [("model".to_string(), None)].into(),
                        points,
                    },
                ],
                vec!["model".into()],
            ),
        ];
        for case in cases {
            let expected = serde_json::to_vec(&case).expect("serde_json writes it");
            let written = SeriesBody(case).into_bytes().expect("written");
            assert_eq!(
                String::from_utf8_lossy(&written),
                String::from_utf8_lossy(&expected)
            );
        }
    }
}
