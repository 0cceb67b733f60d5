//! `GET /billing/plans`, `GET /subscriptions`, `GET /subscriptions/{id}`.

use api::billing::{PendingDowngrade, Plan, Subscription, SubscriptionObject};
use api::{List, OrgQuery};
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use platform::access::Permission;
use platform::http::PathId;
use platform::plans::{PlanId, DEFAULT_PLAN, PLANS};
use platform::{ApiError, Principal};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::scope;
use crate::ReadState;

pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new()
        .routes(routes!(plans))
        .routes(routes!(list))
        .routes(routes!(show))
}

/// The plans of PRODUCT.md.
#[utoipa::path(get, path = "/billing/plans", tag = "billing",
    responses((status = 200, body = List<Plan>)))]
async fn plans(_: Principal) -> Json<List<Plan>> {
    Json(List::all(PLANS.iter().map(Plan::from).collect()))
}

const SELECT: &str = "SELECT id, org_id, plan, pending_plan, pending_effective_at, started_at, version FROM read.subscriptions";

/// A stored plan name; only the write side stores them, so an unknown one is logged.
fn plan_id(raw: &str) -> PlanId {
    raw.parse().unwrap_or_else(|e| {
        tracing::error!(error = %e, "a subscription names an unknown plan");
        DEFAULT_PLAN
    })
}

/// The subscription as of `now`: a downgrade whose date has come is the plan.
fn from_row(row: &tokio_postgres::Row, now: DateTime<Utc>) -> Subscription {
    let pending_at: Option<DateTime<Utc>> = row.get("pending_effective_at");
    let pending_plan: Option<&str> = row.get("pending_plan");
    let in_force = pending_at.is_some_and(|at| at <= now);
    let plan = match (in_force, pending_plan) {
        (true, Some(pending)) => plan_id(pending),
        _ => plan_id(row.get("plan")),
    };
    let pending_downgrade = match (pending_plan, pending_at) {
        (Some(plan), Some(at)) if !in_force => Some(PendingDowngrade {
            plan: plan_id(plan),
            effective_at: at.into(),
        }),
        _ => None,
    };
    Subscription {
        id: row.get::<_, Uuid>("id").into(),
        object: SubscriptionObject::Value,
        org_id: row.get::<_, Uuid>("org_id").into(),
        plan,
        pending_downgrade,
        started_at: scope::time(row.get("started_at")),
        version: row.get("version"),
    }
}

/// The caller's organization's subscription, as a list of one.
#[utoipa::path(get, path = "/subscriptions", tag = "billing", params(OrgQuery),
    responses((status = 200, body = List<Subscription>)))]
async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<OrgQuery>,
) -> Result<Json<List<Subscription>>, ApiError> {
    let org_id = scope::org(&principal, query.org_id.as_deref())?;
    principal.require(Permission::BillingRead)?;
    let client = state.pool.get().await?;
    let rows = client
        .query(&format!("{SELECT} WHERE org_id = $1"), &[&org_id])
        .await?;
    let now = state.clock.now();
    Ok(Json(List::all(
        rows.iter().map(|r| from_row(r, now)).collect(),
    )))
}

/// One subscription; its id is its organization's.
#[utoipa::path(get, path = "/subscriptions/{id}", tag = "billing", params(scope::IdParam),
    responses((status = 200, body = Subscription)))]
async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<Subscription>, ApiError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(&format!("{SELECT} WHERE id = $1"), &[&id])
        .await?;
    match row {
        Some(row) if principal.sees(row.get("org_id")) => {
            principal.require(Permission::BillingRead)?;
            Ok(Json(from_row(&row, state.clock.now())))
        }
        _ => Err(ApiError::not_found(format!(
            "No subscription with id {id}."
        ))),
    }
}
