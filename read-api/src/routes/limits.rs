//! `GET /organizations/{id}/limits`, `GET /api-keys/{id}/limits`: the rate limits in force, from
//! the plan and the overrides (the same rows authentication reads).

use api::limits::{RateLimitSubject, RateLimits};
use axum::extract::State;
use axum::Json;
use platform::access::Permission;
use platform::http::PathId;
use platform::plans::PlanId;
use platform::ratelimit::{KeyLimits, Limits, Overrides};
use platform::{ApiError, Principal};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::scope;
use crate::ReadState;

pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new()
        .routes(routes!(organization))
        .routes(routes!(api_key))
}

/// The organization's plan in force and its overrides, or `None` when it is not there.
async fn org_row(state: &ReadState, org_id: Uuid) -> Result<Option<(PlanId, Overrides)>, ApiError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT s.plan, s.pending_plan, s.pending_effective_at,
                    l.requests_per_minute AS own_rpm, l.tokens_per_minute AS own_tpm,
                    l.concurrent_streams AS own_streams
             FROM read.organizations o
             LEFT JOIN read.subscriptions s ON s.org_id = o.id
             LEFT JOIN read.rate_limits l ON l.subject_id = o.id
             WHERE o.id = $1 AND o.deleted_at IS NULL",
            &[&org_id],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let plan = platform::auth::plan_at(
        org_id,
        row.get("plan"),
        row.get("pending_plan"),
        row.get("pending_effective_at"),
        state.clock.now(),
    );
    Ok(Some((plan, Overrides::from_row(&row, "own"))))
}

/// The organization's rate limits: its plan's, or the platform admin's overrides.
#[utoipa::path(get, path = "/organizations/{id}/limits", tag = "organizations", params(scope::IdParam),
    responses((status = 200, body = RateLimits)))]
async fn organization(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<RateLimits>, ApiError> {
    let not_found = || ApiError::not_found(format!("No organization with id {id}."));
    if !principal.sees(id) {
        return Err(not_found());
    }
    principal.require(Permission::OrganizationsRead)?;
    let (plan, own) = org_row(&state, id).await?.ok_or_else(not_found)?;
    let limits = own.over(Limits::of_plan(plan.plan()));
    Ok(Json(RateLimits::new(
        RateLimitSubject::Organization,
        id,
        id,
        plan,
        limits,
        own,
    )))
}

/// The key's rate limits: its organization's, narrowed by the key's own where an admin set any.
#[utoipa::path(get, path = "/api-keys/{id}/limits", tag = "api_keys", params(scope::IdParam),
    responses((status = 200, body = RateLimits)))]
async fn api_key(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<RateLimits>, ApiError> {
    let not_found = || ApiError::not_found(format!("No API key with id {id}."));
    let row = {
        let client = state.pool.get().await?;
        client
            .query_opt(
                "SELECT k.org_id, l.requests_per_minute AS own_rpm, l.tokens_per_minute AS own_tpm,
                        l.concurrent_streams AS own_streams
                 FROM read.api_keys k LEFT JOIN read.rate_limits l ON l.subject_id = k.id
                 WHERE k.id = $1",
                &[&id],
            )
            .await?
            .ok_or_else(not_found)?
    };
    let org_id: Uuid = row.get("org_id");
    if !principal.sees(org_id) {
        return Err(not_found());
    }
    principal.require(Permission::ApiKeysRead)?;
    let own = Overrides::from_row(&row, "own");
    let (plan, org) = org_row(&state, org_id).await?.ok_or_else(not_found)?;
    let limits = KeyLimits::new(org.over(Limits::of_plan(plan.plan())), own).effective();
    Ok(Json(RateLimits::new(
        RateLimitSubject::ApiKey,
        id,
        org_id,
        plan,
        limits,
        own,
    )))
}
