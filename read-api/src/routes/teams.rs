//! `GET /teams`, `GET /teams/{id}`.

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
        .route("/teams", get(list))
        .route("/teams/{id}", get(show))
}

#[derive(Debug, Deserialize)]
struct TeamsQuery {
    #[serde(flatten)]
    page: PageQuery,
    org_id: Option<String>,
}

const SELECT: &str = "SELECT t.id, t.org_id, t.name, t.description, t.version, t.created_at, t.updated_at,
        ARRAY(SELECT m.user_id FROM read.team_members m WHERE m.team_id = t.id ORDER BY m.user_id) AS members
     FROM read.teams t";

fn from_row(row: &tokio_postgres::Row) -> Value {
    json!({
        "id": row.get::<_, Uuid>("id"),
        "object": "team",
        "org_id": row.get::<_, Uuid>("org_id"),
        "name": row.get::<_, String>("name"),
        "description": row.get::<_, Option<String>>("description"),
        "members": row.get::<_, Vec<Uuid>>("members"),
        "version": row.get::<_, i64>("version"),
        "created_at": scope::time(row.get("created_at")),
        "updated_at": scope::time(row.get("updated_at")),
    })
}

const TABLE: scope::OrgTable = scope::OrgTable {
    select: SELECT,
    alias: "t",
    permission: "teams:read",
    noun: "team",
    to_json: from_row,
};

async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<TeamsQuery>,
) -> Result<Json<List<Value>>, ApiError> {
    require_teams(&principal)?;
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
    require_teams(&principal)?;
    Ok(Json(from_row(&TABLE.row(&state, &principal, id).await?)))
}

/// Teams are the Pro and Enterprise plans' team collaboration.
fn require_teams(principal: &Principal) -> Result<(), ApiError> {
    platform::plans::require_feature(principal, "team_collaboration", "Teams")
}
