//! `GET /monitoring/health/checks`, `GET /monitoring/health/checks/{id}`: an organization's
//! synthetic checks and each one's latest outcome (Pro and Enterprise).

use api::monitoring::{HealthCheck, HealthCheckObject};
use api::{List, OrgQuery, PageParams};
use axum::extract::{Query, State};
use axum::Json;
use events::monitoring::CheckTarget;
use platform::access::Permission;
use platform::http::PathId;
use platform::pagination::PageQuery;
use platform::{ApiError, Principal};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::scope;
use crate::ReadState;

pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
}

#[derive(Debug, Deserialize)]
struct ChecksQuery {
    #[serde(flatten)]
    page: PageQuery,
    org_id: Option<String>,
}

pub const SELECT: &str =
    "SELECT c.id, c.org_id, c.name, c.target, c.interval_seconds, c.created_at,
        c.last_run_at, c.last_ok, c.last_latency_ms, c.last_error, c.runs, c.failures
     FROM read.health_checks c";

pub fn from_row(row: &tokio_postgres::Row) -> HealthCheck {
    let target: Option<CheckTarget> = serde_json::from_value(row.get("target")).ok();
    let (model, url) = match target {
        Some(CheckTarget::Model { model }) => (Some(model), None),
        Some(CheckTarget::Http { url }) => (None, Some(url)),
        None => (None, None),
    };
    let status = match row.get::<_, Option<bool>>("last_ok") {
        None => "pending",
        Some(true) => "ok",
        Some(false) => "failing",
    };
    HealthCheck {
        id: row.get::<_, Uuid>("id").to_string(),
        object: HealthCheckObject::Value,
        org_id: row.get::<_, Uuid>("org_id").into(),
        name: row.get("name"),
        model,
        url,
        interval_seconds: u32::try_from(row.get::<_, i32>("interval_seconds")).unwrap_or(0),
        created_at: row
            .get::<_, chrono::DateTime<chrono::Utc>>("created_at")
            .into(),
        status: status.to_string(),
        last_run_at: scope::time(row.get("last_run_at")),
        last_latency_ms: row.get("last_latency_ms"),
        last_error: row.get("last_error"),
        runs: row.get("runs"),
        failures: row.get("failures"),
    }
}

const TABLE: scope::OrgTable<HealthCheck> = scope::OrgTable {
    select: SELECT,
    alias: "c",
    permission: Permission::MonitoringRead,
    noun: "health check",
    to_json: from_row,
    key: |c| c.id.parse().unwrap_or_default(),
};

/// Synthetic checks are Pro's and Enterprise's advanced monitoring.
fn require_checks(principal: &Principal) -> Result<(), ApiError> {
    platform::plans::require_feature(principal, "advanced_monitoring", "Synthetic health checks")
}

/// The organization's synthetic checks, in id order, with their latest outcomes.
#[utoipa::path(get, path = "/monitoring/health/checks", tag = "monitoring", params(PageParams, OrgQuery),
    responses((status = 200, body = List<HealthCheck>)))]
async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<ChecksQuery>,
) -> Result<Json<List<HealthCheck>>, ApiError> {
    require_checks(&principal)?;
    Ok(Json(
        TABLE
            .list(&state, &principal, query.org_id.as_deref(), &query.page)
            .await?,
    ))
}

/// One synthetic check and its latest outcome.
#[utoipa::path(get, path = "/monitoring/health/checks/{id}", tag = "monitoring", params(scope::IdParam),
    responses((status = 200, body = HealthCheck)))]
async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<HealthCheck>, ApiError> {
    require_checks(&principal)?;
    Ok(Json(from_row(&TABLE.row(&state, &principal, id).await?)))
}
