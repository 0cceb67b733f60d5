//! `GET /api-keys`, `GET /api-keys/{id}`, `GET /api-keys/{id}/permissions`. Never the secret.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use platform::access::{role_permissions, PERMISSIONS};
use platform::http::PathId;
use platform::pagination::{List, PageQuery};
use platform::{ApiError, Principal};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::scope;
use crate::ReadState;

pub fn router() -> Router<ReadState> {
    Router::new()
        .route("/api-keys", get(list))
        .route("/api-keys/{id}", get(show))
        .route("/api-keys/{id}/permissions", get(permissions))
}

#[derive(Debug, Deserialize)]
struct KeysQuery {
    #[serde(flatten)]
    page: PageQuery,
    org_id: Option<String>,
}

const SELECT: &str =
    "SELECT k.id, k.org_id, k.name, k.prefix, k.owner_user_id, k.team_id, k.permissions, k.enabled,
        k.expires_at, k.revoked_at, k.last_used_at, k.version, k.created_at, k.updated_at
     FROM read.api_keys k";

fn status(row: &tokio_postgres::Row) -> &'static str {
    if row.get::<_, Option<DateTime<Utc>>>("revoked_at").is_some() {
        "revoked"
    } else if !row.get::<_, bool>("enabled") {
        "disabled"
    } else if row
        .get::<_, Option<DateTime<Utc>>>("expires_at")
        .is_some_and(|at| at <= Utc::now())
    {
        "expired"
    } else {
        "active"
    }
}

fn from_row(row: &tokio_postgres::Row) -> Value {
    json!({
        "id": row.get::<_, Uuid>("id"),
        "object": "api_key",
        "org_id": row.get::<_, Uuid>("org_id"),
        "name": row.get::<_, String>("name"),
        "prefix": row.get::<_, String>("prefix"),
        "owner_user_id": row.get::<_, Option<Uuid>>("owner_user_id"),
        "team_id": row.get::<_, Option<Uuid>>("team_id"),
        "permissions": row.get::<_, Vec<String>>("permissions"),
        "status": status(row),
        "enabled": row.get::<_, bool>("enabled"),
        "expires_at": scope::maybe_time(row.get("expires_at")),
        "revoked_at": scope::maybe_time(row.get("revoked_at")),
        "last_used_at": scope::maybe_time(row.get("last_used_at")),
        "version": row.get::<_, i64>("version"),
        "created_at": scope::time(row.get("created_at")),
        "updated_at": scope::time(row.get("updated_at")),
    })
}

const TABLE: scope::OrgTable = scope::OrgTable {
    select: SELECT,
    alias: "k",
    permission: "api_keys:read",
    noun: "API key",
    to_json: from_row,
};

async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<KeysQuery>,
) -> Result<Json<List<Value>>, ApiError> {
    Ok(Json(
        TABLE
            .list(&state, &principal, query.org_id.as_deref(), &query.page)
            .await?,
    ))
}

async fn load(
    state: &ReadState,
    principal: &Principal,
    id: Uuid,
) -> Result<tokio_postgres::Row, ApiError> {
    TABLE.row(state, principal, id).await
}

async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(from_row(&load(&state, &principal, id).await?)))
}

/// The key's own permissions, and the effective ones: limited by its owner's roles.
async fn permissions(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let row = load(&state, &principal, id).await?;
    let own: Vec<String> = row.get("permissions");
    let owner: Option<Uuid> = row.get("owner_user_id");
    let team: Option<Uuid> = row.get("team_id");
    let effective: Vec<String> = match owner {
        None => own.clone(),
        Some(user) => {
            let client = state.pool.get().await?;
            let roles = client
                .query(
                    "SELECT role FROM read.role_assignments
                     WHERE user_id = $1 AND (team_id = '00000000-0000-0000-0000-000000000000' OR team_id = $2)",
                    &[&user, &team],
                )
                .await?;
            let allowed: std::collections::BTreeSet<&str> = roles
                .iter()
                .flat_map(|r| role_permissions(r.get::<_, &str>(0)))
                .collect();
            own.iter()
                .filter(|p| allowed.contains(p.as_str()))
                .cloned()
                .collect()
        }
    };
    let known: Vec<&str> = PERMISSIONS.iter().map(|(p, _)| *p).collect();
    Ok(Json(json!({
        "object": "api_key.permissions",
        "api_key_id": id,
        "permissions": own,
        "effective_permissions": effective,
        "owner_user_id": owner,
        "available": known,
    })))
}
