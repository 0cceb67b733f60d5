//! `POST /teams`, `PUT /teams/{id}`, `POST /teams/{id}/members`, `DELETE /teams/{id}/members/{user_id}`.

use api::teams::{AddMember, CreateTeam, TeamObject, UpdateTeam};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use platform::access::Permission;
use platform::http::{accepted_or, Json, PathId};
use platform::ApiError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::aggregate::{stream_id, Command, DomainError, Team};
use crate::command::{display_name, load, time, Aggregate, Batch, Ctx};
use crate::organizations::aggregate::EmailAddress;
use crate::organizations::routes::live_org;
use crate::users::{self, email_claim, EMAIL_SCOPE};
use crate::CommandState;

pub fn router() -> OpenApiRouter<CommandState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(update))
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
}

/// The path of one team membership.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct MemberPath {
    /// The team.
    id: Uuid,
    /// The member.
    user_id: Uuid,
}

fn description(raw: Option<String>) -> Result<Option<String>, ApiError> {
    match raw {
        Some(d) if d.chars().count() > 2000 => Err(ApiError::invalid_param(
            "description",
            "description must be at most 2000 characters.",
        )),
        other => Ok(other),
    }
}

/// Creates a team (Pro and Enterprise).
#[utoipa::path(post, path = "/teams", tag = "teams", request_body = CreateTeam,
    responses(
        (status = 201, body = api::teams::Team),
    ))]
async fn create(ctx: Ctx, Json(body): Json<CreateTeam>) -> Result<Response, ApiError> {
    let org_id = ctx.principal.org_scope(body.org_id.map(Into::into))?;
    require_teams(&ctx)?;
    ctx.principal.require(Permission::TeamsWrite)?;
    let command = Command::Create {
        name: display_name(&body.name)?,
        description: description(body.description)?,
    };
    live_org(&ctx, org_id).await?;
    let id = Uuid::now_v7();
    let payloads = Team::default().decide(command).map_err(team_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(id), Some(org_id), 0, payloads);
    finish(batch, Team::default(), StatusCode::CREATED).await
}

/// Changes the fields given.
#[utoipa::path(put, path = "/teams/{id}", tag = "teams", request_body = UpdateTeam,
    params(crate::IdParam, crate::IfMatch),
    responses(
        (status = 200, body = api::teams::Team),
    ))]
async fn update(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<UpdateTeam>,
) -> Result<Response, ApiError> {
    let name = body.name.as_deref().map(display_name).transpose()?;
    let description = description(body.description)?;
    let team = load_team(&ctx, id).await?;
    require_teams(&ctx)?;
    ctx.principal.require_in_team(Permission::TeamsWrite, id)?;
    ctx.check_version(team.version)?;
    let payloads = team
        .decide(Command::Update { name, description })
        .map_err(team_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(id), Some(team.org_id), team.version, payloads);
    finish(batch, team, StatusCode::OK).await
}

/// Adds a member by `user_id`, or by `email` (a new user of the organization when unknown).
#[utoipa::path(post, path = "/teams/{id}/members", tag = "teams", request_body = AddMember,
    params(crate::IdParam, crate::IfMatch),
    responses(
        (status = 200, body = api::teams::Team),
    ))]
async fn add_member(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<AddMember>,
) -> Result<Response, ApiError> {
    let team = load_team(&ctx, id).await?;
    require_teams(&ctx)?;
    ctx.principal
        .require_in_team(Permission::MembersWrite, id)?;
    let mut batch = ctx.batch();
    let user_id = match (body.user_id.map(Uuid::from), body.email) {
        (Some(user_id), None) => {
            let user = users::routes::load_user(&ctx, user_id).await?;
            if user.org_id != team.org_id {
                return Err(ApiError::not_found(format!("No user with id {user_id}.")));
            }
            user_id
        }
        (None, Some(raw)) => {
            let email =
                EmailAddress::parse(&raw).map_err(|m| ApiError::invalid_param("email", m))?;
            let claim = email_claim(team.org_id, &email);
            match ctx.state.journal.claim_holder(EMAIL_SCOPE, &claim).await? {
                Some(stream) => stream
                    .parse::<events::StreamId>()
                    .ok()
                    .and_then(|s| s.uuid_of(events::StreamKind::User))
                    .ok_or_else(|| {
                        ApiError::internal(anyhow::anyhow!(
                            "email claim held by unexpected stream {stream}"
                        ))
                    })?,
                None => users::create_in(&mut batch, team.org_id, &email, None)?,
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_member",
                "Name the member with exactly one of user_id or email.",
            )
            .with_param("user_id"))
        }
    };
    ctx.check_version(team.version)?;
    let payloads = team
        .decide(Command::AddMember { user_id })
        .map_err(team_error)?;
    batch.push(&stream_id(id), Some(team.org_id), team.version, payloads);
    finish(batch, team, StatusCode::OK).await
}

/// Removes a member from the team.
#[utoipa::path(delete, path = "/teams/{id}/members/{user_id}", tag = "teams", params(MemberPath, crate::IfMatch),
    responses(
        (status = 200, body = api::teams::Team),
    ))]
async fn remove_member(
    ctx: Ctx,
    Path((raw_team, raw_user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id: Uuid = raw_team
        .parse()
        .map_err(|_| ApiError::not_found(format!("No team with id {raw_team:?}.")))?;
    let user_id: Uuid = raw_user
        .parse()
        .map_err(|_| ApiError::not_found(format!("No user with id {raw_user:?}.")))?;
    let team = load_team(&ctx, id).await?;
    require_teams(&ctx)?;
    ctx.principal
        .require_in_team(Permission::MembersWrite, id)?;
    ctx.check_version(team.version)?;
    let payloads = team
        .decide(Command::RemoveMember { user_id })
        .map_err(team_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(id), Some(team.org_id), team.version, payloads);
    finish(batch, team, StatusCode::OK).await
}

async fn finish(batch: Batch<'_>, team: Team, status: StatusCode) -> Result<Response, ApiError> {
    let team = batch
        .events()
        .iter()
        .filter(|e| e.stream_id.kind() == Some(events::StreamKind::Team))
        .fold(team, Aggregate::apply);
    let projected = batch.commit().await?;
    Ok(accepted_or(
        status,
        projected,
        &format!("/api/v1/teams/{}", team.id),
        Some(resource(&team)),
    ))
}

/// A team the caller may see; anything else is 404.
pub async fn load_team(ctx: &Ctx, id: Uuid) -> Result<Team, ApiError> {
    let team = load::<Team>(&ctx.state, &stream_id(id)).await?.state;
    if !team.exists() || !ctx.principal.sees(team.org_id) {
        return Err(ApiError::not_found(format!("No team with id {id}.")));
    }
    Ok(team)
}

/// 404 unless the team exists in `org_id`.
pub async fn team_in_org(ctx: &Ctx, id: Uuid, org_id: Uuid) -> Result<Team, ApiError> {
    let team = load_team(ctx, id).await?;
    if team.org_id != org_id {
        return Err(ApiError::not_found(format!("No team with id {id}.")));
    }
    Ok(team)
}

/// The team as `GET /teams/{id}` answers.
pub fn resource(team: &Team) -> api::teams::Team {
    api::teams::Team {
        id: team.id.into(),
        object: TeamObject::Value,
        org_id: team.org_id.into(),
        name: team.name.clone(),
        description: team.description.clone(),
        members: team.members.iter().map(|m| (*m).into()).collect(),
        version: team.version,
        created_at: time(team.created_at),
        updated_at: time(team.updated_at),
    }
}

fn team_error(error: DomainError) -> ApiError {
    match error {
        DomainError::AlreadyExists => {
            ApiError::conflict("already_exists", "The team already exists.")
        }
        DomainError::NotFound => ApiError::not_found("No such team."),
        DomainError::NotAMember => {
            ApiError::not_found("The user is not a member of this team.").with_code("not_a_member")
        }
    }
}

/// Teams are the Pro and Enterprise plans' team collaboration.
fn require_teams(ctx: &Ctx) -> Result<(), ApiError> {
    platform::plans::require_feature(&ctx.principal, "team_collaboration", "Teams")
}
