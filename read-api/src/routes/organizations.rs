//! `GET /organizations`, `GET /organizations/{id}`.

use axum::extract::{Query, State};
use axum::http::header::ETAG;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use platform::http::PathId;
use platform::pagination::{List, PageQuery};
use platform::{ApiError, Principal};
use serde::Serialize;
use uuid::Uuid;

use crate::ReadState;

pub fn router() -> Router<ReadState> {
    Router::new()
        .route("/organizations", get(list))
        .route("/organizations/{id}", get(show))
}

#[derive(Debug, Serialize)]
struct Organization {
    id: Uuid,
    object: &'static str,
    name: String,
    slug: String,
    owner_email: Option<String>,
    version: i64,
    created_at: String,
    updated_at: String,
}

const COLUMNS: &str = "id, name, slug, owner_email, version, created_at, updated_at";

fn from_row(row: &tokio_postgres::Row) -> Organization {
    let time = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Millis, true);
    Organization {
        id: row.get("id"),
        object: "organization",
        name: row.get("name"),
        slug: row.get("slug"),
        owner_email: row.get("owner_email"),
        version: row.get("version"),
        created_at: time(row.get("created_at")),
        updated_at: time(row.get("updated_at")),
    }
}

async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<PageQuery>,
) -> Result<Json<List<Organization>>, ApiError> {
    principal.require("organizations:read")?;
    // A key sees its own organization only; the platform admin sees all.
    let only: Option<Uuid> = principal.key().map(|k| k.org_id);
    let page = query.page()?;
    let after = match &page.after {
        Some(raw) => Some(raw.parse::<Uuid>().map_err(|_| {
            ApiError::invalid_param("cursor", "cursor is not one this API returned.")
        })?),
        None => None,
    };
    let client = state.pool.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM read.organizations
         WHERE deleted_at IS NULL AND ($1::uuid IS NULL OR id > $1) AND ($3::uuid IS NULL OR id = $3)
         ORDER BY id LIMIT $2"
    );
    let rows = client
        .query(&sql, &[&after, &(page.limit + 1), &only])
        .await?;
    let orgs = rows.iter().map(from_row).collect();
    Ok(Json(List::from_rows(orgs, &page, |o: &Organization| {
        o.id.to_string()
    })))
}

async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    if !principal.sees(id) {
        return Err(ApiError::not_found(format!(
            "No organization with id {id}."
        )));
    }
    principal.require("organizations:read")?;
    let client = state.pool.get().await?;
    let sql =
        format!("SELECT {COLUMNS} FROM read.organizations WHERE id = $1 AND deleted_at IS NULL");
    let row = client
        .query_opt(&sql, &[&id])
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No organization with id {id}.")))?;
    let org = from_row(&row);
    let etag = format!("\"{}\"", org.version);
    Ok(([(ETAG, etag)], Json(org)).into_response())
}
