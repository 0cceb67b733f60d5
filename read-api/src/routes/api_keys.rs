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

async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<KeysQuery>,
) -> Result<Json<List<Value>>, ApiError> {
    let org_id = scope::org(&principal, query.org_id.as_deref())?;
    principal.require("api_keys:read")?;
    let page = query.page.page()?;
    let after = scope::after(&page)?;
    let client = state.pool.get().await?;
    let sql = format!(
        "{SELECT} WHERE k.org_id = $1 AND ($2::uuid IS NULL OR k.id > $2) ORDER BY k.id LIMIT $3"
    );
    let rows = client
        .query(&sql, &[&org_id, &after, &(page.limit + 1)])
        .await?;
    let keys = rows.iter().map(from_row).collect();
    Ok(Json(List::from_rows(keys, &page, |k: &Value| {
        k["id"].as_str().unwrap_or_default().to_string()
    })))
}

async fn load(
    state: &ReadState,
    principal: &Principal,
    id: Uuid,
) -> Result<tokio_postgres::Row, ApiError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(&format!("{SELECT} WHERE k.id = $1"), &[&id])
        .await?;
    match row {
        Some(row) if principal.sees(row.get("org_id")) => {
            principal.require("api_keys:read")?;
            Ok(row)
        }
        _ => Err(ApiError::not_found(format!("No API key with id {id}."))),
    }
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
