//! `POST /users`, `POST /users/{id}/roles`, `DELETE /users/{id}/roles/{role}`.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, post};
use axum::Router;
use platform::access::{is_role, OWNER};
use platform::http::{accepted_or, Json, PathId};
use platform::ApiError;
use serde::Deserialize;
use uuid::Uuid;

use super::aggregate::{self, stream_id, Command, DomainError, User};
use super::{email_claim, EMAIL_SCOPE};
use crate::command::{load, time, Ctx};
use crate::organizations::aggregate::{self as org_aggregate, EmailAddress, Organization};
use crate::organizations::routes::{domain_error as org_error, live_org};
use crate::teams;
use crate::CommandState;

pub fn router() -> Router<CommandState> {
    Router::new()
        .route("/users", post(create))
        .route("/users/{id}/roles", post(assign_role))
        .route("/users/{id}/roles/{role}", delete(remove_role))
}

#[derive(Debug, Deserialize)]
struct CreateUser {
    email: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    org_id: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
struct AssignRole {
    role: String,
    #[serde(default)]
    team_id: Option<Uuid>,
}

#[derive(Debug, Default, Deserialize)]
struct RoleScope {
    #[serde(default)]
    team_id: Option<String>,
}

async fn create(ctx: Ctx, Json(body): Json<CreateUser>) -> Result<Response, ApiError> {
    let org_id = ctx.principal.org_scope(body.org_id)?;
    ctx.principal.require("users:write")?;
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
    let (mut batch, user_id) = (ctx.batch(), Uuid::now_v7());
    let stream = stream_id(user_id);
    let payloads = aggregate::decide(
        &User::default(),
        Command::Create {
            email: email.clone(),
            name,
        },
    )
    .map_err(user_error)?;
    batch.push(&stream, Some(org_id), 0, payloads);
    batch.take(EMAIL_SCOPE, email_claim(org_id, &email), &stream);
    let user = batch
        .events()
        .iter()
        .fold(User::default(), aggregate::apply);
    let projected = batch.commit().await?;
    Ok(accepted_or(
        StatusCode::CREATED,
        projected,
        &location(user_id),
        Some(representation(&user, &org)),
    ))
}

async fn assign_role(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<AssignRole>,
) -> Result<Response, ApiError> {
    let user = load_user(&ctx, id).await?;
    ctx.principal.require("roles:assign")?;
    check_role(&body.role)?;
    ctx.check_version(user.version)?;
    let org = live_org(&ctx, user.org_id).await?;
    let mut batch = ctx.batch();
    if body.role == OWNER {
        if body.team_id.is_some() {
            return Err(ApiError::invalid_param(
                "team_id",
                "The owner role is held in the whole organization, not in a team.",
            ));
        }
        let payloads =
            org_aggregate::decide(&org, org_aggregate::Command::AddOwner { user_id: id })
                .map_err(org_error)?;
        batch.push(
            &org_aggregate::stream_id(org.id),
            Some(org.id),
            org.version,
            payloads,
        );
    } else {
        if let Some(team_id) = body.team_id {
            teams::routes::team_in_org(&ctx, team_id, user.org_id).await?;
        }
        let payloads = aggregate::decide(
            &user,
            Command::AssignRole {
                role: body.role,
                team_id: body.team_id,
            },
        )
        .map_err(user_error)?;
        batch.push(&stream_id(id), Some(user.org_id), user.version, payloads);
    }
    finish(batch, user, org, StatusCode::OK).await
}

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
    ctx.principal.require("roles:assign")?;
    check_role(&role)?;
    ctx.check_version(user.version)?;
    let org = live_org(&ctx, user.org_id).await?;
    let mut batch = ctx.batch();
    if role == OWNER {
        if !org.owners.contains(&id) {
            return Err(user_error(DomainError::RoleNotHeld));
        }
        let payloads =
            org_aggregate::decide(&org, org_aggregate::Command::RemoveOwner { user_id: id })
                .map_err(org_error)?;
        batch.push(
            &org_aggregate::stream_id(org.id),
            Some(org.id),
            org.version,
            payloads,
        );
    } else {
        let payloads =
            aggregate::decide(&user, Command::RemoveRole { role, team_id }).map_err(user_error)?;
        batch.push(&stream_id(id), Some(user.org_id), user.version, payloads);
    }
    finish(batch, user, org, StatusCode::OK).await
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
        .fold(user, aggregate::apply);
    let org_after = batch
        .events()
        .iter()
        .filter(|e| e.stream_id == org_stream)
        .fold(org, org_aggregate::apply);
    let projected = batch.commit().await?;
    Ok(accepted_or(
        status,
        projected,
        &location(user_after.id),
        Some(representation(&user_after, &org_after)),
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

fn check_role(role: &str) -> Result<(), ApiError> {
    if is_role(role) {
        return Ok(());
    }
    let known: Vec<&str> = platform::access::ROLES.iter().map(|(r, _, _)| *r).collect();
    Err(ApiError::invalid_param(
        "role",
        format!("Unknown role {role:?}; the roles are {}.", known.join(", ")),
    ))
}

fn location(id: Uuid) -> String {
    format!("/api/v1/users/{id}")
}

/// The same shape `GET /users/{id}` answers with.
pub fn representation(user: &User, org: &Organization) -> serde_json::Value {
    let mut roles: Vec<serde_json::Value> = user
        .roles
        .iter()
        .map(|(role, team)| serde_json::json!({"role": role, "team_id": team}))
        .collect();
    if org.owners.contains(&user.id) {
        roles.insert(0, serde_json::json!({"role": OWNER, "team_id": null}));
    }
    serde_json::json!({
        "id": user.id,
        "object": "user",
        "org_id": user.org_id,
        "email": user.email,
        "name": user.name,
        "roles": roles,
        "version": user.version,
        "created_at": time(user.created_at),
    })
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
