//! `POST /users`, `POST /users/{id}/roles`, `DELETE /users/{id}/roles/{role}`.

use api::users::{AssignRole, CreateUser, RoleAssignment, UserObject};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use platform::access::{Permission, Role};
use platform::http::{accepted_or, Json, PathId};
use platform::ApiError;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::aggregate::{stream_id, Command, DomainError, User};
use crate::command::{load, time, Aggregate, Ctx};
use crate::organizations::aggregate::{self as org_aggregate, EmailAddress, Organization};
use crate::organizations::routes::{domain_error as org_error, live_org};
use crate::teams;
use crate::CommandState;

pub fn router() -> OpenApiRouter<CommandState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(assign_role))
        .routes(routes!(remove_role))
}

/// Which assignment to remove: the organization-wide one, or the one in `team_id`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RoleScope {
    /// The team the role is held in; absent for the organization-wide role.
    #[serde(default)]
    team_id: Option<String>,
}

/// The path of one role assignment.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct RolePath {
    /// The user.
    id: Uuid,
    /// The role's name.
    role: String,
}

/// Adds a user to the organization; emails are unique in it.
#[utoipa::path(post, path = "/users", tag = "users", request_body = CreateUser,
    responses(
        (status = 201, body = api::users::User),
    ))]
async fn create(ctx: Ctx, Json(body): Json<CreateUser>) -> Result<Response, ApiError> {
    let org_id = ctx.principal.org_scope(body.org_id.map(Into::into))?;
    ctx.principal.require(Permission::UsersWrite)?;
    let email =
        EmailAddress::parse(&body.email).map_err(|m| ApiError::invalid_param("email", m))?;
    let name = body
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 200) {
        return Err(ApiError::invalid_param(
            "name",
            "name must be at most 200 characters.",
        ));
    }
    let org = live_org(&ctx, org_id).await?;
    let mut batch = ctx.batch();
    let user_id = super::create_in(&mut batch, org_id, &email, name)?;
    let user = batch
        .events()
        .iter()
        .fold(User::default(), Aggregate::apply);
    let projected = batch.commit().await?;
    Ok(accepted_or(
        StatusCode::CREATED,
        projected,
        &location(user_id),
        Some(resource(&user, &org)),
    ))
}

/// Gives the user a role, organization-wide or in one team.
#[utoipa::path(post, path = "/users/{id}/roles", tag = "users", request_body = AssignRole,
    params(crate::IdParam, crate::IfMatch),
    responses(
        (status = 200, body = api::users::User),
    ))]
async fn assign_role(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<AssignRole>,
) -> Result<Response, ApiError> {
    let user = load_user(&ctx, id).await?;
    let team_id = body.team_id.map(Uuid::from);
    ctx.check_version(user.version)?;
    let org = live_org(&ctx, user.org_id).await?;
    may_change_role(&ctx, &org, body.role, team_id)?;
    let mut batch = ctx.batch();
    if body.role == Role::Owner {
        if body.team_id.is_some() {
            return Err(ApiError::invalid_param(
                "team_id",
                "The owner role is held in the whole organization, not in a team.",
            ));
        }
        let payloads = org
            .decide(org_aggregate::Command::AddOwner { user_id: id })
            .map_err(org_error)?;
        batch.push(
            &org_aggregate::stream_id(org.id),
            Some(org.id),
            org.version,
            payloads,
        );
    } else {
        if let Some(team_id) = team_id {
            teams::routes::team_in_org(&ctx, team_id, user.org_id).await?;
        }
        let payloads = user
            .decide(Command::AssignRole {
                role: body.role.as_str().to_string(),
                team_id,
            })
            .map_err(user_error)?;
        batch.push(&stream_id(id), Some(user.org_id), user.version, payloads);
    }
    finish(batch, user, org, StatusCode::OK).await
}

/// Takes a role away; the last owner cannot be removed.
#[utoipa::path(delete, path = "/users/{id}/roles/{role}", tag = "users", params(RolePath, RoleScope, crate::IfMatch),
    responses(
        (status = 200, body = api::users::User),
    ))]
async fn remove_role(
    ctx: Ctx,
    Path((raw_id, role)): Path<(String, String)>,
    Query(scope): Query<RoleScope>,
) -> Result<Response, ApiError> {
    let id: Uuid = raw_id
        .parse()
        .map_err(|_| ApiError::not_found(format!("No user with id {raw_id:?}.")))?;
    let team_id = match scope.team_id.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(
            raw.parse::<Uuid>()
                .map_err(|_| ApiError::invalid_param("team_id", "team_id must be a UUID."))?,
        ),
    };
    let user = load_user(&ctx, id).await?;
    let role = check_role(&role)?;
    ctx.check_version(user.version)?;
    let org = live_org(&ctx, user.org_id).await?;
    may_change_role(&ctx, &org, role, team_id)?;
    let mut batch = ctx.batch();
    if role == Role::Owner {
        if !org.owners.contains(&id) {
            return Err(user_error(DomainError::RoleNotHeld));
        }
        let payloads = org
            .decide(org_aggregate::Command::RemoveOwner { user_id: id })
            .map_err(org_error)?;
        batch.push(
            &org_aggregate::stream_id(org.id),
            Some(org.id),
            org.version,
            payloads,
        );
    } else {
        let payloads = user
            .decide(Command::RemoveRole {
                role: role.as_str().to_string(),
                team_id,
            })
            .map_err(user_error)?;
        batch.push(&stream_id(id), Some(user.org_id), user.version, payloads);
    }
    finish(batch, user, org, StatusCode::OK).await
}

/// Who may give or take `role` (in `team`, or organization-wide): a holder of `roles:assign`
/// there, who holds every permission of the role there too (nobody hands on more than they
/// have); and for the owner role, only an owner of the organization (or the platform admin).
/// A role held in a team grants `roles:assign` in that team only.
fn may_change_role(
    ctx: &Ctx,
    org: &Organization,
    role: Role,
    team: Option<Uuid>,
) -> Result<(), ApiError> {
    let principal = &ctx.principal;
    match team {
        Some(team) => principal.require_in_team(Permission::RolesAssign, team)?,
        None => principal.require(Permission::RolesAssign)?,
    }
    let Some(key) = principal.key() else {
        return Ok(());
    };
    if role == Role::Owner && !key.owner_user_id.is_some_and(|u| org.owners.contains(&u)) {
        return Err(ApiError::forbidden(
            "owner_required",
            "Only an owner of the organization gives or takes the owner role.",
        )
        .with_param("role"));
    }
    let held = principal.permissions_in(team);
    let beyond: Vec<&str> = role
        .permissions()
        .into_iter()
        .filter(|p| !held.contains(p))
        .map(Permission::as_str)
        .collect();
    if !beyond.is_empty() {
        return Err(ApiError::forbidden(
            "role_exceeds_caller",
            format!(
                "The role {role} holds permissions this API key does not: {}. Nobody gives or takes a role with more than they hold.",
                beyond.join(", ")
            ),
        )
        .with_param("role"));
    }
    Ok(())
}

async fn finish(
    batch: crate::command::Batch<'_>,
    user: User,
    org: Organization,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let user_stream = stream_id(user.id);
    let org_stream = org_aggregate::stream_id(org.id);
    let user_after = batch
        .events()
        .iter()
        .filter(|e| e.stream_id == user_stream)
        .fold(user, Aggregate::apply);
    let org_after = batch
        .events()
        .iter()
        .filter(|e| e.stream_id == org_stream)
        .fold(org, Aggregate::apply);
    let projected = batch.commit().await?;
    Ok(accepted_or(
        status,
        projected,
        &location(user_after.id),
        Some(resource(&user_after, &org_after)),
    ))
}

/// A user the caller may see; anything else is 404.
pub async fn load_user(ctx: &Ctx, id: Uuid) -> Result<User, ApiError> {
    let user = load::<User>(&ctx.state, &stream_id(id)).await?.state;
    if !user.exists() || !ctx.principal.sees(user.org_id) {
        return Err(ApiError::not_found(format!("No user with id {id}.")));
    }
    Ok(user)
}

fn check_role(role: &str) -> Result<Role, ApiError> {
    role.parse().map_err(|_| {
        let known: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        ApiError::invalid_param(
            "role",
            format!("Unknown role {role:?}; the roles are {}.", known.join(", ")),
        )
    })
}

fn location(id: Uuid) -> String {
    format!("/api/v1/users/{id}")
}

/// The user as `GET /users/{id}` answers: the owner role first, then by role and team.
pub fn resource(user: &User, org: &Organization) -> api::users::User {
    let owner = org.owners.contains(&user.id).then_some(RoleAssignment {
        role: Role::Owner,
        team_id: None,
    });
    let held = user.roles.iter().filter_map(|(role, team)| {
        Some(RoleAssignment {
            role: role.parse().ok()?,
            team_id: team.map(Into::into),
        })
    });
    api::users::User {
        id: user.id.into(),
        object: UserObject::Value,
        org_id: user.org_id.into(),
        email: user.email.clone(),
        name: user.name.clone(),
        roles: owner.into_iter().chain(held).collect(),
        version: user.version,
        created_at: time(user.created_at),
    }
}

pub fn user_error(error: DomainError) -> ApiError {
    match error {
        DomainError::AlreadyExists => {
            ApiError::conflict("already_exists", "The user already exists.")
        }
        DomainError::NotFound => ApiError::not_found("No such user."),
        DomainError::RoleNotHeld => {
            ApiError::not_found("The user does not hold that role.").with_code("role_not_held")
        }
    }
}
