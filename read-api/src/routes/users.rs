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

const TABLE: scope::OrgTable = scope::OrgTable {
    select: SELECT,
    alias: "u",
    permission: "users:read",
    noun: "user",
    to_json: from_row,
};

async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<UsersQuery>,
) -> Result<Json<List<Value>>, ApiError> {
    Ok(Json(
        TABLE
            .list(&state, &principal, query.org_id.as_deref(), &query.page)
            .await?,
    ))
}

async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(from_row(&TABLE.row(&state, &principal, id).await?)))
}
