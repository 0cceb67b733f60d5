//! `POST /monitoring/health/checks`, `DELETE /monitoring/health/checks/{id}`: synthetic checks.
//! Tenants call a model of the catalog (billed like any call); only the platform admin may
//! define an HTTP check, since a tenant's URL fetched from inside the platform would let it reach
//! what only the platform should (SSRF).

use api::monitoring::{DefineHealthCheck, HealthCheck, HealthCheckObject};
use axum::http::StatusCode;
use axum::response::Response;
use events::monitoring::{CheckTarget, HealthCheckDefined};
use events::{EventPayload, StreamId};
use platform::http::{accepted_or, Json, PathId};
use platform::{ApiError, Principal};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::aggregate::{DomainError, HealthCheck as CheckState};
use super::{require_write, METRICS};
use crate::command::{load, short_text, Aggregate, Ctx};
use crate::commit::{commit, Stream};
use crate::CommandState;

pub fn router() -> OpenApiRouter<CommandState> {
    OpenApiRouter::new()
        .routes(routes!(define))
        .routes(routes!(delete))
}

/// Seconds between two runs of a check: at least half a minute, at most a day.
pub const MIN_INTERVAL: u32 = 30;
pub const MAX_INTERVAL: u32 = 86_400;
const MAX_CHECKS: i64 = 50;

fn location(id: Uuid) -> String {
    format!("/api/v1/monitoring/health/checks/{id}")
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("No health check with id {id}."))
}

/// The check's target: a model, or for the platform admin alone an `http(s)` URL.
pub fn target(principal: &Principal, body: &DefineHealthCheck) -> Result<CheckTarget, ApiError> {
    match (&body.model, &body.url) {
        (Some(model), None) => Ok(CheckTarget::Model {
            model: short_text("model", model)?,
        }),
        (None, Some(url)) => {
            if !matches!(principal, Principal::PlatformAdmin) {
                return Err(ApiError::forbidden(
                    "http_checks_admin_only",
                    "Only the platform admin may define HTTP checks; check a model instead.",
                )
                .with_param("url"));
            }
            let parsed = url
                .parse::<axum::http::Uri>()
                .ok()
                .filter(|u| {
                    matches!(u.scheme_str(), Some("http" | "https"))
                        && u.host().is_some_and(|h| !h.is_empty())
                })
                .filter(|_| url.len() <= 2_000);
            match parsed {
                Some(_) => Ok(CheckTarget::Http { url: url.clone() }),
                None => Err(ApiError::invalid_param(
                    "url",
                    "url must be an http or https URL of at most 2000 characters.",
                )),
            }
        }
        _ => Err(ApiError::invalid_param(
            "model",
            "Give either a model to call or (platform admin only) a url.",
        )),
    }
}

/// Defines a synthetic check of the organization (Pro and Enterprise): a model called with a
/// tiny prompt every `interval_seconds`, each call billed like any other, each outcome a
/// `health_check.completed` event shown by `GET /monitoring/health`.
#[utoipa::path(post, path = "/monitoring/health/checks", tag = "monitoring", request_body = DefineHealthCheck,
    responses((status = 201, body = HealthCheck)))]
async fn define(ctx: Ctx, Json(body): Json<DefineHealthCheck>) -> Result<Response, ApiError> {
    let requested = match body.org_id.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            raw.parse::<Uuid>()
                .map_err(|_| ApiError::not_found(format!("No organization with id {raw:?}.")))?,
        ),
    };
    let org_id = ctx.principal.org_scope(requested)?;
    require_write(&ctx.principal, "Synthetic health checks")?;
    let name = short_text("name", &body.name)?;
    let target = target(&ctx.principal, &body)?;
    let interval_seconds = body.interval_seconds.unwrap_or(60);
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval_seconds) {
        return Err(ApiError::invalid_param(
            "interval_seconds",
            format!("interval_seconds must be {MIN_INTERVAL} to {MAX_INTERVAL}."),
        ));
    }
    let client = ctx.state.journal.pool().get().await?;
    let count: i64 = client
        .query_one(
            "SELECT count(*) FROM read.health_checks WHERE org_id = $1",
            &[&org_id],
        )
        .await?
        .get(0);
    drop(client);
    if count >= MAX_CHECKS {
        return Err(ApiError::bad_request(
            "too_many_checks",
            format!("An organization has at most {MAX_CHECKS} health checks; delete one first."),
        ));
    }
    let check_id = Uuid::now_v7();
    let defined = HealthCheckDefined {
        check_id,
        name,
        target,
        interval_seconds,
    };
    let events = Stream {
        id: StreamId::health_check(check_id),
        org_id: Some(org_id),
        version: 0,
        actor: &ctx.actor,
        correlation_id: &ctx.request_id,
    }
    .envelopes(vec![EventPayload::HealthCheckDefined(defined.clone())]);
    let at = events
        .first()
        .map(|e| e.occurred_at)
        .unwrap_or_else(events::Timestamp::now);
    let projected = commit(&ctx.state, &ctx.headers, &events, &[], METRICS).await?;
    let (model, url) = match defined.target {
        CheckTarget::Model { model } => (Some(model), None),
        CheckTarget::Http { url } => (None, Some(url)),
    };
    Ok(accepted_or(
        StatusCode::CREATED,
        projected,
        &location(check_id),
        Some(HealthCheck {
            id: check_id.to_string(),
            object: HealthCheckObject::Value,
            org_id: org_id.into(),
            name: defined.name,
            model,
            url,
            interval_seconds,
            created_at: at,
            status: "pending".into(),
            last_run_at: None,
            last_latency_ms: None,
            last_error: None,
            runs: 0,
            failures: 0,
        }),
    ))
}

/// Deletes a check: it runs no more.
#[utoipa::path(delete, path = "/monitoring/health/checks/{id}", tag = "monitoring", params(crate::IdParam),
    responses((status = 204, description = "Deleted")))]
async fn delete(ctx: Ctx, PathId(id): PathId) -> Result<Response, ApiError> {
    let stream = StreamId::health_check(id);
    let current = load::<CheckState>(&ctx.state, &stream).await?;
    let org_id = current.state.org_id.ok_or_else(|| not_found(id))?;
    if !ctx.principal.sees(org_id) {
        return Err(not_found(id));
    }
    require_write(&ctx.principal, "Synthetic health checks")?;
    let payloads = current.state.decide(org_id).map_err(|e| match e {
        DomainError::NotFound => not_found(id),
    })?;
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
