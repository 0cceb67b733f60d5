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

async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<TeamsQuery>,
) -> Result<Json<List<Value>>, ApiError> {
    let org_id = scope::org(&principal, query.org_id.as_deref())?;
    principal.require("teams:read")?;
    let page = query.page.page()?;
    let after = scope::after(&page)?;
    let client = state.pool.get().await?;
    let sql = format!(
        "{SELECT} WHERE t.org_id = $1 AND ($2::uuid IS NULL OR t.id > $2) ORDER BY t.id LIMIT $3"
    );
    let rows = client
        .query(&sql, &[&org_id, &after, &(page.limit + 1)])
        .await?;
    let teams = rows.iter().map(from_row).collect();
    Ok(Json(List::from_rows(teams, &page, |t: &Value| {
        t["id"].as_str().unwrap_or_default().to_string()
    })))
}

async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<Value>, ApiError> {
    let client = state.pool.get().await?;
    let row = client
        .query_opt(&format!("{SELECT} WHERE t.id = $1"), &[&id])
        .await?;
    match row {
        Some(row) if principal.sees(row.get("org_id")) => {
            principal.require("teams:read")?;
            Ok(Json(from_row(&row)))
        }
        _ => Err(ApiError::not_found(format!("No team with id {id}."))),
    }
}
