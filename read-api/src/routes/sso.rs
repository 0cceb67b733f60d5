//! `GET /organizations/{id}/sso`.

use api::sso::{RoleMapping, SsoConfig, SsoConfigObject};
use axum::extract::State;
use axum::Json;
use platform::access::Permission;
use platform::http::PathId;
use platform::{ApiError, Principal};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::scope;
use crate::ReadState;

pub fn router() -> OpenApiRouter<ReadState> {
    OpenApiRouter::new().routes(routes!(show))
}

/// The organization's single sign-on configuration; 404 when it has none.
#[utoipa::path(get, path = "/organizations/{id}/sso", tag = "organizations", params(scope::IdParam),
    responses((status = 200, body = SsoConfig)))]
async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<SsoConfig>, ApiError> {
    let org_id = principal.org_scope(Some(id))?;
    principal.require(Permission::SsoRead)?;
    let client = state.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT c.org_id, c.issuer, c.client_id, c.allowed_domains, c.groups_claim, c.role_mappings,
                    c.default_role, c.version, c.updated_at
             FROM read.sso_configs c JOIN read.organizations o ON o.id = c.org_id AND o.deleted_at IS NULL
             WHERE c.org_id = $1 AND NOT c.removed",
            &[&org_id],
        )
        .await?
        .ok_or_else(|| {
            ApiError::not_found("This organization has no single sign-on configuration.")
        })?;
    let mappings: Vec<events::sso::SsoRoleMapping> =
        serde_json::from_value(row.get("role_mappings")).unwrap_or_default();
    Ok(Json(SsoConfig {
        object: SsoConfigObject::Value,
        org_id: row.get::<_, Uuid>("org_id").into(),
        issuer: row.get("issuer"),
        client_id: row.get("client_id"),
        allowed_domains: row.get("allowed_domains"),
        groups_claim: row.get("groups_claim"),
        role_mappings: mappings
            .into_iter()
            .filter_map(|m| {
                m.role.parse().ok().map(|role| RoleMapping {
                    group: m.group,
                    role,
                })
            })
            .collect(),
        default_role: row
            .get::<_, Option<&str>>("default_role")
            .and_then(|r| r.parse().ok()),
        version: row.get("version"),
        updated_at: scope::time(row.get("updated_at")),
    }))
}
