//! `GET /teams`, `GET /teams/{id}`.

use api::teams::{Team, TeamObject};
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
struct TeamsQuery {
    #[serde(flatten)]
    page: PageQuery,
    org_id: Option<String>,
}

const SELECT: &str = "SELECT t.id, t.org_id, t.name, t.description, t.version, t.created_at, t.updated_at,
        ARRAY(SELECT m.user_id FROM read.team_members m WHERE m.team_id = t.id ORDER BY m.user_id) AS members
     FROM read.teams t";

fn from_row(row: &tokio_postgres::Row) -> Team {
    Team {
        id: row.get::<_, Uuid>("id").into(),
        object: TeamObject::Value,
        org_id: row.get::<_, Uuid>("org_id").into(),
        name: row.get("name"),
        description: row.get("description"),
        members: row
            .get::<_, Vec<Uuid>>("members")
            .into_iter()
            .map(Into::into)
            .collect(),
        version: row.get("version"),
        created_at: scope::time(row.get("created_at")),
        updated_at: scope::time(row.get("updated_at")),
    }
}

const TABLE: scope::OrgTable<Team> = scope::OrgTable {
    select: SELECT,
    alias: "t",
    permission: Permission::TeamsRead,
    noun: "team",
    to_json: from_row,
    key: |t| t.id.uuid(),
};

/// The teams of the caller's organization, in id order (Pro and Enterprise).
#[utoipa::path(get, path = "/teams", tag = "teams", params(PageParams, OrgQuery),
    responses((status = 200, body = List<Team>)))]
async fn list(
    State(state): State<ReadState>,
    principal: Principal,
    Query(query): Query<TeamsQuery>,
) -> Result<Json<List<Team>>, ApiError> {
    require_teams(&principal)?;
    Ok(Json(
        TABLE
            .list(&state, &principal, query.org_id.as_deref(), &query.page)
            .await?,
    ))
}

/// One team and its members.
#[utoipa::path(get, path = "/teams/{id}", tag = "teams", params(scope::IdParam),
    responses((status = 200, body = Team)))]
async fn show(
    State(state): State<ReadState>,
    principal: Principal,
    PathId(id): PathId,
) -> Result<Json<Team>, ApiError> {
    require_teams(&principal)?;
    Ok(Json(from_row(&TABLE.row(&state, &principal, id).await?)))
}

/// Teams are the Pro and Enterprise plans' team collaboration.
fn require_teams(principal: &Principal) -> Result<(), ApiError> {
    platform::plans::require_feature(principal, "team_collaboration", "Teams")
}
