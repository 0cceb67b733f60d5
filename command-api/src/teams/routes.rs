//! `POST /teams`, `PUT /teams/{id}`, `POST /teams/{id}/members`, `DELETE /teams/{id}/members/{user_id}`.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, post, put};
use axum::Router;
use events::EventPayload;
use platform::http::{accepted_or, Json, PathId};
use platform::ApiError;
use serde::Deserialize;
use uuid::Uuid;

use super::aggregate::{self, stream_id, Command, DomainError, Team};
use crate::command::{display_name, load, time, Batch, Ctx};
use crate::organizations::aggregate::EmailAddress;
use crate::organizations::routes::live_org;
use crate::users::{self, aggregate as user_aggregate, email_claim, EMAIL_SCOPE};
use crate::CommandState;

pub fn router() -> Router<CommandState> {
    Router::new()
        .route("/teams", post(create))
        .route("/teams/{id}", put(update))
        .route("/teams/{id}/members", post(add_member))
        .route("/teams/{id}/members/{user_id}", delete(remove_member))
}

#[derive(Debug, Deserialize)]
struct CreateTeam {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    org_id: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
struct UpdateTeam {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// A member is named by `user_id`, or by `email` (a new user of the organization when unknown).
#[derive(Debug, Deserialize)]
struct AddMember {
    #[serde(default)]
    user_id: Option<Uuid>,
    #[serde(default)]
    email: Option<String>,
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

async fn create(ctx: Ctx, Json(body): Json<CreateTeam>) -> Result<Response, ApiError> {
    let org_id = ctx.principal.org_scope(body.org_id)?;
    require_teams(&ctx)?;
    ctx.principal.require("teams:write")?;
    let command = Command::Create {
        name: display_name(&body.name)?,
        description: description(body.description)?,
    };
    live_org(&ctx, org_id).await?;
    let id = Uuid::now_v7();
    let payloads = aggregate::decide(&Team::default(), command).map_err(team_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(id), Some(org_id), 0, payloads);
    finish(batch, Team::default(), StatusCode::CREATED).await
}

async fn update(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<UpdateTeam>,
) -> Result<Response, ApiError> {
    let name = body.name.as_deref().map(display_name).transpose()?;
    let description = description(body.description)?;
    let team = load_team(&ctx, id).await?;
    require_teams(&ctx)?;
    ctx.principal.require("teams:write")?;
    ctx.check_version(team.version)?;
    let payloads =
        aggregate::decide(&team, Command::Update { name, description }).map_err(team_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(id), Some(team.org_id), team.version, payloads);
    finish(batch, team, StatusCode::OK).await
}

async fn add_member(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<AddMember>,
) -> Result<Response, ApiError> {
    let team = load_team(&ctx, id).await?;
    require_teams(&ctx)?;
    ctx.principal.require("members:write")?;
    let mut batch = ctx.batch();
    let user_id = match (body.user_id, body.email) {
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
                    .strip_prefix("user:")
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| {
                        ApiError::internal(anyhow::anyhow!(
                            "email claim held by unexpected stream {stream}"
                        ))
                    })?,
                None => {
                    let user_id = Uuid::now_v7();
                    let user_stream = user_aggregate::stream_id(user_id);
                    let created = EventPayload::UserCreated(events::access::UserCreated {
                        email: email.as_str().into(),
                        name: None,
                    });
                    batch.push(&user_stream, Some(team.org_id), 0, vec![created]);
                    batch.take(EMAIL_SCOPE, claim, &user_stream);
                    user_id
                }
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
    let payloads = aggregate::decide(&team, Command::AddMember { user_id }).map_err(team_error)?;
    batch.push(&stream_id(id), Some(team.org_id), team.version, payloads);
    finish(batch, team, StatusCode::OK).await
}

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
    ctx.principal.require("members:write")?;
    ctx.check_version(team.version)?;
    let payloads =
        aggregate::decide(&team, Command::RemoveMember { user_id }).map_err(team_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(id), Some(team.org_id), team.version, payloads);
    finish(batch, team, StatusCode::OK).await
}

async fn finish(batch: Batch<'_>, team: Team, status: StatusCode) -> Result<Response, ApiError> {
    let team = batch
        .events()
        .iter()
        .filter(|e| e.stream_id.starts_with("team:"))
        .fold(team, aggregate::apply);
    let projected = batch.commit().await?;
    Ok(accepted_or(
        status,
        projected,
        &format!("/api/v1/teams/{}", team.id),
        Some(representation(&team)),
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

/// The same shape `GET /teams/{id}` answers with.
pub fn representation(team: &Team) -> serde_json::Value {
    serde_json::json!({
        "id": team.id,
        "object": "team",
        "org_id": team.org_id,
        "name": team.name,
        "description": team.description,
        "members": team.members,
        "version": team.version,
        "created_at": time(team.created_at),
        "updated_at": time(team.updated_at),
    })
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
