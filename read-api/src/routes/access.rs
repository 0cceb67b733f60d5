//! `GET /permissions`, `GET /roles`: the catalog, the same for every organization.

use api::access::{PermissionInfo, RoleInfo};
use api::List;
use axum::Json;
use platform::access::{Permission, Role};
use platform::{ApiError, Principal};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ReadState;

pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new()
        .routes(routes!(permissions))
        .routes(routes!(roles))
}

/// Every permission an API key can hold.
#[utoipa::path(get, path = "/permissions", tag = "access",
    responses((status = 200, body = List<PermissionInfo>)))]
async fn permissions(principal: Principal) -> Result<Json<List<PermissionInfo>>, ApiError> {
    principal.require(Permission::RolesRead)?;
    Ok(Json(List::all(
        Permission::ALL.iter().map(|p| (*p).into()).collect(),
    )))
}

/// The built-in roles and what each grants.
#[utoipa::path(get, path = "/roles", tag = "access",
    responses((status = 200, body = List<RoleInfo>)))]
async fn roles(principal: Principal) -> Result<Json<List<RoleInfo>>, ApiError> {
    principal.require(Permission::RolesRead)?;
    Ok(Json(List::all(
        Role::ALL.iter().map(|r| (*r).into()).collect(),
    )))
}
