//! `GET /billing/plans`, `GET /subscriptions`, `GET /subscriptions/{id}`.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use platform::http::PathId;
use platform::plans::PLANS;
use platform::{ApiError, Principal};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::scope;
use crate::ReadState;

pub fn router() -> Router<ReadState> {
    Router::new()
        .route("/billing/plans", get(plans))
        .route("/subscriptions", get(list))
        .route("/subscriptions/{id}", get(show))
}

async fn plans(_: Principal) -> Json<Value> {
    let data: Vec<Value> = PLANS
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "object": "plan",
                "name": p.name,
                "price_cents": p.price_cents,
                "currency": "usd",
                "tokens_per_month": p.tokens_per_month,
                "model_tier": p.model_tier,
                "features": p.features,
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data, "next_cursor": null}))
}

#[derive(Debug, Deserialize)]
struct SubscriptionsQuery {
    org_id: Option<String>,
}

const SELECT: &str = "SELECT id, org_id, plan, pending_plan, pending_effective_at, started_at, version FROM read.subscriptions";

/// The subscription as of `now`: a downgrade whose date has come is the plan.
fn from_row(row: &tokio_postgres::Row, now: DateTime<Utc>) -> Value {
    let pending_at: Option<DateTime<Utc>> = row.get("pending_effective_at");
    let pending_plan: Option<String> = row.get("pending_plan");
    let in_force = pending_at.is_some_and(|at| at <= now);
    let plan: String = if in_force {
        pending_plan.clone().unwrap_or_default()
    } else {
        row.get("plan")
    };
    let pending = match (pending_plan, pending_at) {
        (Some(plan), Some(at)) if !in_force => {
            json!({"plan": plan, "effective_at": scope::time(at)})
        }
        _ => Value::Null,
    };
    json!({
        "id": row.get::<_, Uuid>("id"),
        "object": "subscription",
        "org_id": row.get::<_, Uuid>("org_id"),
        "plan": plan,
        "pending_downgrade": pending,
        "started_at": scope::time(row.get("started_at")),
        "version": row.get::<_, i64>("version"),
    })
}

async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<SubscriptionsQuery>,
) -> Result<Json<Value>, ApiError> {
    let org_id = scope::org(&principal, query.org_id.as_deref())?;
    principal.require("billing:read")?;
    let client = state.pool.get().await?;
    let rows = client
        .query(&format!("{SELECT} WHERE org_id = $1"), &[&org_id])
        .await?;
    let now = state.clock.now();
    let data: Vec<Value> = rows.iter().map(|r| from_row(r, now)).collect();
    Ok(Json(
        json!({"object": "list", "data": data, "next_cursor": null}),
    ))
}

async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(&format!("{SELECT} WHERE id = $1"), &[&id])
        .await?;
    match row {
        Some(row) if principal.sees(row.get("org_id")) => {
            principal.require("billing:read")?;
            Ok(Json(from_row(&row, state.clock.now())))
        }
        _ => Err(ApiError::not_found(format!(
            "No subscription with id {id}."
        ))),
    }
}
