//! `GET /api-keys`, `GET /api-keys/{id}`, `GET /api-keys/{id}/permissions`. Never the secret.

use api::api_keys::{
    ApiKey, ApiKeyObject, ApiKeyPermissions, ApiKeyPermissionsObject, ApiKeyStatus,
};
use api::{List, OrgQuery, PageParams};
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use platform::access::{parse_permissions, permissions_of, Permission};
use platform::http::PathId;
use platform::pagination::PageQuery;
use platform::{ApiError, Principal};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::scope;
use crate::ReadState;

pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(permissions))
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

fn from_row(row: &tokio_postgres::Row) -> ApiKey {
    let revoked_at: Option<DateTime<Utc>> = row.get("revoked_at");
    let expires_at: Option<DateTime<Utc>> = row.get("expires_at");
    let enabled: bool = row.get("enabled");
    ApiKey {
        id: row.get::<_, Uuid>("id").into(),
        object: ApiKeyObject::Value,
        org_id: row.get::<_, Uuid>("org_id").into(),
        name: row.get("name"),
        prefix: row.get("prefix"),
        owner_user_id: row.get::<_, Option<Uuid>>("owner_user_id").map(Into::into),
        team_id: row.get::<_, Option<Uuid>>("team_id").map(Into::into),
        permissions: parse_permissions(row.get::<_, Vec<&str>>("permissions"))
            .into_iter()
            .collect(),
        status: ApiKeyStatus::of(revoked_at.is_some(), enabled, expires_at, Utc::now()),
        enabled,
        expires_at: scope::time(expires_at),
        revoked_at: scope::time(revoked_at),
        last_used_at: scope::time(row.get("last_used_at")),
        version: row.get("version"),
        created_at: scope::time(row.get("created_at")),
        updated_at: scope::time(row.get("updated_at")),
    }
}

const TABLE: scope::OrgTable<ApiKey> = scope::OrgTable {
    select: SELECT,
    alias: "k",
    permission: Permission::ApiKeysRead,
    noun: "API key",
    to_json: from_row,
    key: |k| k.id.uuid(),
};

/// The API keys of the caller's organization, in id order.
#[utoipa::path(get, path = "/api-keys", tag = "api_keys", params(PageParams, OrgQuery),
    responses((status = 200, body = List<ApiKey>)))]
async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<KeysQuery>,
) -> Result<Json<List<ApiKey>>, ApiError> {
    Ok(Json(
        TABLE
            .list(&state, &principal, query.org_id.as_deref(), &query.page)
            .await?,
    ))
}

/// One API key, without its secret.
#[utoipa::path(get, path = "/api-keys/{id}", tag = "api_keys", params(scope::IdParam),
    responses((status = 200, body = ApiKey)))]
async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<ApiKey>, ApiError> {
    Ok(Json(from_row(&TABLE.row(&state, &principal, id).await?)))
}

/// The key's own permissions, and the effective ones: limited by its owner's roles.
#[utoipa::path(get, path = "/api-keys/{id}/permissions", tag = "api_keys", params(scope::IdParam),
    responses((status = 200, body = ApiKeyPermissions)))]
async fn permissions(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<ApiKeyPermissions>, ApiError> {
    let row = TABLE.row(&state, &principal, id).await?;
    let own = parse_permissions(row.get::<_, Vec<&str>>("permissions"));
    let owner: Option<Uuid> = row.get("owner_user_id");
    let team: Option<Uuid> = row.get("team_id");
    let effective = match owner {
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
            let allowed = permissions_of(roles.iter().map(|r| r.get::<_, &str>(0)));
            own.intersection(&allowed).copied().collect()
        }
    };
    Ok(Json(ApiKeyPermissions {
        object: ApiKeyPermissionsObject::Value,
        api_key_id: id.into(),
        permissions: own.into_iter().collect(),
        effective_permissions: effective.into_iter().collect(),
        owner_user_id: owner.map(Into::into),
        available: Permission::ALL.to_vec(),
    }))
}
