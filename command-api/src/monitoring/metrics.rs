//! `POST /monitoring/metrics`, `DELETE /monitoring/metrics/{id}`,
//! `POST /monitoring/metrics/{id}/data`.

use std::collections::{BTreeMap, HashSet};

use api::monitoring::{
    Backfill, DefineMetric, MeterDefinition, Metric, MetricKind, MetricObject, RecordPoints,
    RecordedPoints, RecordedPointsObject,
};
use api::OrgQuery;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use events::monitoring::{Aggregation, CustomMetricKind, MeterSpec, MetricDefined, MetricRecorded};
use events::{EventPayload, StreamId};
use platform::http::{accepted_or, Json, PathId};
use platform::ApiError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::aggregate::{CustomMetric, DomainError, MetricCommand};
use super::{require_write, METRICS};
use crate::command::{load, short_text, Aggregate, Ctx};
use crate::commit::{commit, Stream};
use crate::CommandState;

pub fn router() -> OpenApiRouter<CommandState> {
    OpenApiRouter::new()
        .routes(routes!(define))
        .routes(routes!(delete))
        .routes(routes!(record))
}

/// Most custom metrics an organization may have.
const MAX_METRICS: i64 = 200;
/// Most points one push may carry.
const MAX_POINTS: usize = 1_000;

/// A path into an event's `data`, as `projectors` reads it (`call.model`, `$.total_tokens`).
fn path(param: &str, raw: &str) -> Result<String, ApiError> {
    events::monitoring::parse_path(raw).ok_or_else(|| {
        ApiError::invalid_param(
            param,
            format!("{raw:?} is not a path into the event's data: dot-separated names of letters, digits and _ (call.model, total_tokens), at most 8 deep."),
        )
    })
}

fn not_found(id: impl std::fmt::Display) -> ApiError {
    ApiError::not_found(format!("No metric with id {:?}.", id.to_string()))
}

fn domain_error(id: Uuid, e: DomainError) -> ApiError {
    match e {
        DomainError::NotFound => not_found(id),
    }
}

/// Checks a definition and turns it into its event.
pub fn parse(body: DefineMetric, metric_id: Uuid) -> Result<MetricDefined, ApiError> {
    let name = short_text("name", &body.name)?;
    let description = match body.description.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(d) if d.chars().count() > 1_000 || d.chars().any(|c| c.is_control() && c != '\n') => {
            return Err(ApiError::invalid_param(
                "description",
                "description is at most 1000 characters.",
            ))
        }
        Some(d) => Some(d.to_string()),
    };
    let unit = body
        .unit
        .as_deref()
        .map(|u| short_text("unit", u))
        .transpose()?;
    let kind = CustomMetricKind::parse(&body.kind).ok_or_else(|| {
        ApiError::invalid_param(
            "kind",
            format!("kind {:?} is not one of meter, gauge, counter.", body.kind),
        )
    })?;
    let aggregation = match body.aggregation.as_deref() {
        Some(raw) => Some(Aggregation::parse(raw).ok_or_else(|| {
            ApiError::invalid_param(
                "aggregation",
                format!("aggregation {raw:?} is not one of count, sum, avg, min, max, unique_count, p50, p95, p99."),
            )
        })?),
        None => None,
    };
    let meter = match kind {
        CustomMetricKind::Meter => {
            let event_type = body.event_type.ok_or_else(|| {
                ApiError::invalid_param("event_type", "A meter needs the event_type it counts.")
            })?;
            if !EventPayload::TYPES.contains(&event_type.as_str()) {
                return Err(ApiError::invalid_param(
                    "event_type",
                    format!(
                        "{event_type:?} is not an event type of the platform (see schemas/events)."
                    ),
                ));
            }
            let aggregation = aggregation.ok_or_else(|| {
                ApiError::invalid_param("aggregation", "A meter needs an aggregation.")
            })?;
            let value = body
                .value
                .as_deref()
                .map(|v| path("value", v))
                .transpose()?;
            if aggregation.needs_value() && value.is_none() {
                return Err(ApiError::invalid_param(
                    "value",
                    format!("The {} aggregation needs a value path.", aggregation.name()),
                ));
            }
            let filter_in = body.filter.unwrap_or_default();
            if filter_in.len() > 10 {
                return Err(ApiError::invalid_param(
                    "filter",
                    "filter has at most 10 paths.",
                ));
            }
            let mut filter = BTreeMap::new();
            for (p, v) in filter_in {
                filter.insert(path("filter", &p)?, v);
            }
            let group_by_in = body.group_by.unwrap_or_default();
            if group_by_in.len() > 5 {
                return Err(ApiError::invalid_param(
                    "group_by",
                    "group_by has at most 5 paths.",
                ));
            }
            let mut group_by: Vec<String> = Vec::new();
            for g in &group_by_in {
                let g = path("group_by", g)?;
                if group_by.contains(&g) {
                    return Err(ApiError::invalid_param(
                        "group_by",
                        format!("group_by names {g} twice."),
                    ));
                }
                group_by.push(g);
            }
            return Ok(MetricDefined {
                metric_id,
                name,
                description,
                kind,
                aggregation,
                unit,
                meter: Some(MeterSpec {
                    event_type,
                    filter,
                    value: if aggregation.needs_value() {
                        value
                    } else {
                        None
                    },
                    group_by,
                }),
            });
        }
        _ => {
            for (param, given) in [
                ("event_type", body.event_type.is_some()),
                ("filter", body.filter.is_some()),
                ("value", body.value.is_some()),
                ("group_by", body.group_by.is_some()),
            ] {
                if given {
                    return Err(ApiError::invalid_param(
                        param,
                        format!("{param} is for meters; a pushed metric's points carry their own labels."),
                    ));
                }
            }
            None
        }
    };
    let aggregation = aggregation.unwrap_or(match kind {
        CustomMetricKind::Counter => Aggregation::Sum,
        _ => Aggregation::Avg,
    });
    Ok(MetricDefined {
        metric_id,
        name,
        description,
        kind,
        aggregation,
        unit,
        meter,
    })
}

/// The metric as `GET /monitoring/metrics/{id}` shows it right after its definition.
fn resource(defined: &MetricDefined, at: events::Timestamp) -> Metric {
    Metric {
        id: defined.metric_id.to_string(),
        object: MetricObject::Value,
        kind: match defined.kind {
            CustomMetricKind::Meter => MetricKind::Meter,
            CustomMetricKind::Gauge => MetricKind::Gauge,
            CustomMetricKind::Counter => MetricKind::Counter,
        },
        description: defined.description.clone().unwrap_or_default(),
        unit: defined.unit.clone().unwrap_or_default(),
        dimensions: defined
            .meter
            .as_ref()
            .map(|m| m.group_by.clone())
            .unwrap_or_default(),
        name: Some(defined.name.clone()),
        aggregation: Some(defined.aggregation.name().to_string()),
        meter: defined.meter.as_ref().map(|m| MeterDefinition {
            event_type: m.event_type.clone(),
            filter: m.filter.clone(),
            value: m.value.clone(),
            group_by: m.group_by.clone(),
        }),
        backfill: defined.meter.as_ref().map(|_| Backfill {
            status: "pending".into(),
            events_done: 0,
        }),
        created_at: Some(at),
    }
}

fn location(id: Uuid) -> String {
    format!("/api/v1/monitoring/metrics/{id}")
}

/// Defines a custom metric (Pro and Enterprise): a meter over the organization's own events,
/// back-filled from the first one (`backfill` shows its progress), or a gauge or counter whose
/// points the organization pushes.
#[utoipa::path(post, path = "/monitoring/metrics", tag = "monitoring", request_body = DefineMetric,
    params(OrgQuery),
    responses((status = 201, body = Metric)))]
async fn define(
    ctx: Ctx,
    Query(query): Query<OrgQuery>,
    Json(body): Json<DefineMetric>,
) -> Result<Response, ApiError> {
    let requested = match query.org_id.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            raw.parse::<Uuid>()
                .map_err(|_| ApiError::not_found(format!("No organization with id {raw:?}.")))?,
        ),
    };
    let org_id = ctx.principal.org_scope(requested)?;
    require_write(&ctx.principal, "Custom metrics")?;
    let metric_id = Uuid::now_v7();
    let defined = parse(body, metric_id)?;
    let client = ctx.state.journal.pool().get().await?;
    let count: i64 = client
        .query_one(
            "SELECT count(*) FROM read.custom_metrics WHERE org_id = $1",
            &[&org_id],
        )
        .await?
        .get(0);
    if count >= MAX_METRICS {
        return Err(ApiError::bad_request(
            "too_many_metrics",
            format!("An organization has at most {MAX_METRICS} custom metrics; delete one first."),
        ));
    }
    let stream = StreamId::metric(metric_id);
    let current = load::<CustomMetric>(&ctx.state, &stream).await?;
    let payloads = current
        .state
        .decide(MetricCommand::Define(defined.clone()))
        .map_err(|e| domain_error(metric_id, e))?;
    let events = Stream {
        id: stream,
        org_id: Some(org_id),
        version: current.version,
        actor: &ctx.actor,
        correlation_id: &ctx.request_id,
    }
    .envelopes(payloads);
    let at = events
        .first()
        .map(|e| e.occurred_at)
        .unwrap_or_else(events::Timestamp::now);
    let projected = commit(&ctx.state, &ctx.headers, &events, &[], METRICS).await?;
    Ok(accepted_or(
        StatusCode::CREATED,
        projected,
        &location(metric_id),
        Some(resource(&defined, at)),
    ))
}

/// Deletes a custom metric and its values; a meter stops counting.
#[utoipa::path(delete, path = "/monitoring/metrics/{id}", tag = "monitoring", params(crate::IdParam),
    responses((status = 204, description = "Deleted")))]
async fn delete(ctx: Ctx, PathId(id): PathId) -> Result<Response, ApiError> {
    let stream = StreamId::metric(id);
    let current = load::<CustomMetric>(&ctx.state, &stream).await?;
    let org_id = current.state.org_id.ok_or_else(|| not_found(id))?;
    if !ctx.principal.sees(org_id) {
        return Err(not_found(id));
    }
    require_write(&ctx.principal, "Custom metrics")?;
    let payloads = current
        .state
        .decide(MetricCommand::Delete)
        .map_err(|e| domain_error(id, e))?;
    let events = Stream {
        id: stream,
        org_id: Some(org_id),
        version: current.version,
        actor: &ctx.actor,
        correlation_id: &ctx.request_id,
    }
    .envelopes(payloads);
    let projected = commit(&ctx.state, &ctx.headers, &events, &[], METRICS).await?;
    Ok(accepted_or(
        StatusCode::NO_CONTENT,
        projected,
        &location(id),
        None::<()>,
    ))
}

/// A point id: 1 to 128 letters, digits, `.`, `_`, `:` or `-`.
fn point_id(raw: &str) -> Result<String, ApiError> {
    let ok = !raw.is_empty()
        && raw.len() <= 128
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if !ok {
        return Err(ApiError::invalid_param(
            "points",
            format!("point id {raw:?} must be 1 to 128 letters, digits, '.', '_', ':' or '-'."),
        ));
    }
    Ok(raw.to_string())
}

/// Records points of a pushed gauge or counter, each a `metric.recorded` event. A point whose
/// id was recorded before (in this request or an earlier one) is counted once.
#[utoipa::path(post, path = "/monitoring/metrics/{id}/data", tag = "monitoring", request_body = RecordPoints,
    params(crate::IdParam),
    responses((status = 200, body = RecordedPoints)))]
async fn record(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<RecordPoints>,
) -> Result<Response, ApiError> {
    let stream = StreamId::metric(id);
    let current = load::<CustomMetric>(&ctx.state, &stream).await?;
    let org_id = current.state.org_id.ok_or_else(|| not_found(id))?;
    if !ctx.principal.sees(org_id) {
        return Err(not_found(id));
    }
    require_write(&ctx.principal, "Custom metrics")?;
    let defined = current.state.of(org_id).map_err(|e| domain_error(id, e))?;
    if !CustomMetric::is_pushed(defined) {
        return Err(ApiError::bad_request(
            "metric_not_pushed",
            "This metric is a meter: it counts the organization's events, and takes no points.",
        ));
    }
    if body.points.is_empty() || body.points.len() > MAX_POINTS {
        return Err(ApiError::invalid_param(
            "points",
            format!("Send 1 to {MAX_POINTS} points."),
        ));
    }
    let total = body.points.len() as u64;
    let mut seen = HashSet::new();
    let mut points = Vec::with_capacity(body.points.len());
    for p in body.points {
        let pid = point_id(&p.id)?;
        let at = chrono::DateTime::parse_from_rfc3339(&p.t)
            .map_err(|_| {
                ApiError::invalid_param("points", format!("t {:?} is not an RFC 3339 time.", p.t))
            })?
            .with_timezone(&chrono::Utc);
        let at = chrono::DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at);
        if !p.value.is_finite() {
            return Err(ApiError::invalid_param(
                "points",
                "value must be a finite number.",
            ));
        }
        if p.labels.len() > 10 {
            return Err(ApiError::invalid_param(
                "points",
                "A point has at most 10 labels.",
            ));
        }
        for (k, v) in &p.labels {
            let key_ok = !k.is_empty()
                && k.len() <= 64
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !key_ok || v.chars().count() > 200 || v.chars().any(char::is_control) {
                return Err(ApiError::invalid_param(
                    "points",
                    format!("label {k:?} must be 1 to 64 letters, digits or _, its value at most 200 characters."),
                ));
            }
        }
        if seen.insert(pid.clone()) {
            points.push(MetricRecorded {
                metric_id: id,
                point_id: pid,
                at: events::Timestamp(at),
                value: p.value,
                labels: p.labels,
            });
        }
    }
    // Two pushes of the same point at once: the journal's stream key refuses the second, and
    // the retry finds it recorded.
    let mut recorded = 0;
    let mut projected = true;
    for _ in 0..3 {
        let streams: Vec<String> = points
            .iter()
            .map(|p| StreamId::metric_point(id, &p.point_id).to_string())
            .collect();
        let client = ctx.state.journal.pool().get().await?;
        let existing: HashSet<String> = client
            .query(
                "SELECT stream_id FROM journal WHERE stream_id = ANY($1)",
                &[&streams],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        drop(client);
        let fresh: Vec<MetricRecorded> = points
            .iter()
            .filter(|p| !existing.contains(StreamId::metric_point(id, &p.point_id).as_str()))
            .cloned()
            .collect();
        let events: Vec<events::EventEnvelope> = fresh
            .into_iter()
            .flat_map(|p| {
                Stream {
                    id: StreamId::metric_point(id, &p.point_id),
                    org_id: Some(org_id),
                    version: 0,
                    actor: &ctx.actor,
                    correlation_id: &ctx.request_id,
                }
                .envelopes(vec![EventPayload::MetricRecorded(p)])
            })
            .collect();
        match commit(&ctx.state, &ctx.headers, &events, &[], METRICS).await {
            Ok(p) => {
                recorded = events.len() as u64;
                projected = p;
                break;
            }
            Err(e) if e.code == "version_conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(accepted_or(
        StatusCode::OK,
        projected,
        &location(id),
        Some(RecordedPoints {
            object: RecordedPointsObject::Value,
            metric: id.to_string(),
            recorded,
            duplicates: total - recorded,
        }),
    ))
}
