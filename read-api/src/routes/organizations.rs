//! `GET /organizations`, `GET /organizations/{id}`.

use api::organizations::{Organization, OrganizationObject};
use api::{List, PageParams};
use axum::extract::{Query, State};
use axum::http::header::ETAG;
use axum::response::{IntoResponse, Response};
use axum::Json;
use platform::access::Permission;
use platform::http::PathId;
use platform::pagination::PageQuery;
use platform::{ApiError, Principal};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::scope;
use crate::ReadState;

pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
}

const COLUMNS: &str = "id, name, slug, owner_email, version, created_at, updated_at";

fn from_row(row: &tokio_postgres::Row) -> Organization {
    Organization {
        id: row.get::<_, Uuid>("id").into(),
        object: OrganizationObject::Value,
        name: row.get("name"),
        slug: row.get("slug"),
        owner_email: row.get("owner_email"),
        version: row.get("version"),
        created_at: scope::time(row.get("created_at")),
        updated_at: scope::time(row.get("updated_at")),
    }
}

/// The organizations the caller sees: a key its own, the platform admin all of them.
#[utoipa::path(get, path = "/organizations", tag = "organizations", params(PageParams),
    responses((status = 200, body = List<Organization>)))]
async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<PageQuery>,
) -> Result<Json<List<Organization>>, ApiError> {
    principal.require(Permission::OrganizationsRead)?;
    // A key sees its own organization only; the platform admin sees all.
    let only: Option<Uuid> = principal.key().map(|k| k.org_id);
    let page = query.page()?;
    let after = scope::after(&page)?;
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

/// One organization, with its version as the `ETag`.
#[utoipa::path(get, path = "/organizations/{id}", tag = "organizations", params(scope::IdParam),
    responses((status = 200, body = Organization, headers(("etag" = String, description = "The version, quoted")))))]
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
    principal.require(Permission::OrganizationsRead)?;
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
