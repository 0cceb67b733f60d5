//! `GET /permissions`, `GET /roles`: the catalog, the same for every organization.

use axum::routing::get;
use axum::{Json, Router};
use platform::access::{role_permissions, PERMISSIONS, ROLES};
use platform::{ApiError, Principal};
use serde_json::{json, Value};

use crate::ReadState;

pub fn router() -> Router<ReadState> {
    Router::new()
        .route("/permissions", get(permissions))
        .route("/roles", get(roles))
}

async fn permissions(principal: Principal) -> Result<Json<Value>, ApiError> {
    principal.require("roles:read")?;
    let data: Vec<Value> = PERMISSIONS
        .iter()
        .map(|(name, description)| json!({"object": "permission", "name": name, "description": description}))
        .collect();
    Ok(Json(
        json!({"object": "list", "data": data, "next_cursor": null}),
    ))
}

async fn roles(principal: Principal) -> Result<Json<Value>, ApiError> {
    principal.require("roles:read")?;
    let data: Vec<Value> = ROLES
        .iter()
        .map(|(name, description, _)| {
            json!({"object": "role", "name": name, "description": description, "permissions": role_permissions(name)})
        })
        .collect();
    Ok(Json(
        json!({"object": "list", "data": data, "next_cursor": null}),
    ))
}
