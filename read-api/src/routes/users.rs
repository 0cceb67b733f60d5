//! `GET /users`, `GET /users/{id}`.

use api::users::{RoleAssignment, User, UserObject};
use api::{List, OrgQuery, PageParams};
use axum::extract::{Query, State};
use axum::Json;
use platform::access::Permission;
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

fn from_row(row: &tokio_postgres::Row) -> User {
    // Roles no longer known are left out rather than failing the whole user.
    let roles: Vec<serde_json::Value> =
        serde_json::from_value(row.get("roles")).unwrap_or_default();
    User {
        id: row.get::<_, Uuid>("id").into(),
        object: UserObject::Value,
        org_id: row.get::<_, Uuid>("org_id").into(),
        email: row.get("email"),
        name: row.get("name"),
        roles: roles
            .into_iter()
            .filter_map(|r| serde_json::from_value::<RoleAssignment>(r).ok())
            .collect(),
        version: row.get("version"),
        created_at: scope::time(row.get("created_at")),
    }
}

const TABLE: scope::OrgTable<User> = scope::OrgTable {
    select: SELECT,
    alias: "u",
    permission: Permission::UsersRead,
    noun: "user",
    to_json: from_row,
    key: |u| u.id.uuid(),
};

/// The users of the caller's organization, in id order.
#[utoipa::path(get, path = "/users", tag = "users", params(PageParams, OrgQuery),
    responses((status = 200, body = List<User>)))]
async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<UsersQuery>,
) -> Result<Json<List<User>>, ApiError> {
    Ok(Json(
        TABLE
            .list(&state, &principal, query.org_id.as_deref(), &query.page)
            .await?,
    ))
}

/// One user and the roles they hold.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(scope::IdParam),
    responses((status = 200, body = User)))]
async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<User>, ApiError> {
    Ok(Json(from_row(&TABLE.row(&state, &principal, id).await?)))
}
