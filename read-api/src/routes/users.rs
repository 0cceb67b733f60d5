//! `GET /users`, `GET /users/{id}`.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
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
        .route("/users", get(list))
        .route("/users/{id}", get(show))
}

#[derive(Debug, Deserialize)]
struct UsersQuery {
    #[serde(flatten)]
    page: PageQuery,
    org_id: Option<String>,
}

const SELECT: &str = "SELECT u.id, u.org_id, u.email, u.name, u.version, u.created_at,
        COALESCE((SELECT jsonb_agg(jsonb_build_object('role', r.role,
                      'team_id', CASE WHEN r.team_id = '00000000-0000-0000-0000-000000000000' THEN NULL ELSE r.team_id END)
                  ORDER BY r.role <> 'owner', r.role, r.team_id)
                  FROM read.role_assignments r WHERE r.user_id = u.id), '[]'::jsonb) AS roles
     FROM read.users u";

fn from_row(row: &tokio_postgres::Row) -> Value {
    json!({
        "id": row.get::<_, Uuid>("id"),
        "object": "user",
        "org_id": row.get::<_, Uuid>("org_id"),
        "email": row.get::<_, String>("email"),
        "name": row.get::<_, Option<String>>("name"),
        "roles": row.get::<_, Value>("roles"),
        "version": row.get::<_, i64>("version"),
        "created_at": scope::time(row.get("created_at")),
    })
}

async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<UsersQuery>,
) -> Result<Json<List<Value>>, ApiError> {
    let org_id = scope::org(&principal, query.org_id.as_deref())?;
    principal.require("users:read")?;
    let page = query.page.page()?;
    let after = scope::after(&page)?;
    let client = state.pool.get().await?;
    let sql = format!(
        "{SELECT} WHERE u.org_id = $1 AND ($2::uuid IS NULL OR u.id > $2) ORDER BY u.id LIMIT $3"
    );
    let rows = client
        .query(&sql, &[&org_id, &after, &(page.limit + 1)])
        .await?;
    let users = rows.iter().map(from_row).collect();
    Ok(Json(List::from_rows(users, &page, |u: &Value| {
        u["id"].as_str().unwrap_or_default().to_string()
    })))
}

async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(&format!("{SELECT} WHERE u.id = $1"), &[&id])
        .await?;
    match row {
        Some(row) if principal.sees(row.get("org_id")) => {
            principal.require("users:read")?;
            Ok(Json(from_row(&row)))
        }
        _ => Err(ApiError::not_found(format!("No user with id {id}."))),
    }
}
