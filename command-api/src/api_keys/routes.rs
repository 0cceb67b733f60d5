//! `POST /api-keys`, `PUT /api-keys/{id}`, `PUT /api-keys/{id}/permissions`, `DELETE /api-keys/{id}`.

use api::api_keys::{
    ApiKeyObject, ApiKeyStatus, CreateApiKey, NewApiKey, SetApiKeyPermissions, UpdateApiKey,
};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use events::access::ApiKeyCreated;
use platform::access::Permission;
use platform::auth::{secret_sha256, KEY_PREFIX};
use platform::http::{accepted_or, Json, PathId};
use platform::{ApiError, Principal};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::aggregate::{stream_id, ApiKey, Command, DomainError};
use crate::command::{display_name, load, time, Aggregate, Batch, Ctx};
use crate::organizations::routes::live_org;
use crate::CommandState;
use crate::{teams, users};

pub fn router() -> OpenApiRouter<CommandState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(update, revoke))
        .routes(routes!(set_permissions))
        .routes(routes!(set_limits))
}

/// Sets the key's own rate limits (`api_keys:manage`: an admin's, so a developer cannot lift a
/// limit put on its key). They narrow the organization's, which still hold; fields left out go
/// back to the organization's.
#[utoipa::path(put, path = "/api-keys/{id}/limits", tag = "api_keys", request_body = api::limits::SetRateLimits,
    params(crate::IdParam, crate::IfMatch),
    responses(
        (status = 200, body = api::limits::RateLimits),
    ))]
async fn set_limits(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<api::limits::SetRateLimits>,
) -> Result<Response, ApiError> {
    let limits = crate::limits::parse(body)?;
    let key = load_key(&ctx, id).await?;
    require_manage(&ctx, &key, "id")?;
    if key.revoked_at.is_some() {
        return Err(key_error(DomainError::Revoked));
    }
    ctx.check_version(key.version)?;
    let org = crate::organizations::routes::live_org(&ctx, key.org_id).await?;
    let plan = crate::limits::plan_of(&ctx, key.org_id).await?;
    let mut batch = ctx.batch();
    if key.limits != limits {
        batch.push(
            &stream_id(id),
            Some(key.org_id),
            key.version,
            vec![events::EventPayload::ApiKeyLimitsSet(limits.clone())],
        );
    }
    let projected = batch.commit().await?;
    let org_limits = crate::limits::overrides(&org.limits)
        .over(platform::ratelimit::Limits::of_plan(plan.plan()));
    let body = api::limits::RateLimits::new(
        api::limits::RateLimitSubject::ApiKey,
        id,
        key.org_id,
        plan,
        platform::ratelimit::KeyLimits::new(org_limits, crate::limits::overrides(&limits))
            .effective(),
        crate::limits::overrides(&limits),
    );
    Ok(accepted_or(
        StatusCode::OK,
        projected,
        &format!("/api/v1/api-keys/{id}/limits"),
        Some(body),
    ))
}

fn expiry(raw: &str) -> Result<DateTime<Utc>, ApiError> {
    let at = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| {
            ApiError::invalid_param(
                "expires_at",
                format!("expires_at {raw:?} is not an RFC 3339 time."),
            )
        })?
        .with_timezone(&Utc);
    if at <= Utc::now() {
        return Err(ApiError::invalid_param(
            "expires_at",
            "expires_at must be in the future.",
        ));
    }
    Ok(at)
}

/// Permissions the caller itself holds (where the key will act: in `team`, or organization-wide),
/// as stored: nobody grants more than they have.
fn grantable(
    principal: &Principal,
    team: Option<Uuid>,
    mut permissions: Vec<Permission>,
) -> Result<Vec<String>, ApiError> {
    let held = principal.permissions_in(team);
    if let Some(missing) = permissions.iter().find(|p| !held.contains(p)) {
        return Err(ApiError::forbidden(
            "permission_not_held",
            format!("You cannot grant {missing}: this API key does not hold it."),
        )
        .with_param("permissions"));
    }
    permissions.sort();
    permissions.dedup();
    Ok(permissions.iter().map(|p| p.as_str().to_string()).collect())
}

/// `bytes` from the operating system's random source, hex-encoded (`2 × bytes` characters): the
/// key's public id (8 bytes) and its secret (32 bytes, 256 bits).
fn random_hex(bytes: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("the system random source failed: {e}")))?;
    Ok(hex::encode(buf))
}

/// Creates a key. Its secret is in this answer only; store it now.
#[utoipa::path(post, path = "/api-keys", tag = "api_keys", request_body = CreateApiKey,
    responses(
        (status = 201, body = NewApiKey),
    ))]
async fn create(ctx: Ctx, Json(body): Json<CreateApiKey>) -> Result<Response, ApiError> {
    let org_id = ctx.principal.org_scope(body.org_id.map(Into::into))?;
    let team_id = body.team_id.map(Uuid::from);
    match team_id {
        Some(team) => ctx
            .principal
            .require_in_team(Permission::ApiKeysWrite, team)?,
        None => ctx.principal.require(Permission::ApiKeysWrite)?,
    }
    let name = display_name(&body.name)?;
    let permissions = grantable(&ctx.principal, team_id, body.permissions)?;
    let expires_at = body.expires_at.as_deref().map(expiry).transpose()?;
    live_org(&ctx, org_id).await?;
    if let Some(team_id) = team_id {
        teams::routes::team_in_org(&ctx, team_id, org_id).await?;
    }
    let owner_user_id = match (&ctx.principal, body.user_id.map(Uuid::from)) {
        (Principal::ApiKey(key), None) => key.owner_user_id,
        (Principal::ApiKey(key), Some(user)) if Some(user) == key.owner_user_id => Some(user),
        (Principal::ApiKey(_), Some(_)) => {
            return Err(ApiError::forbidden(
                "platform_admin_required",
                "Only the platform admin may create keys for other users.",
            )
            .with_param("user_id"))
        }
        (Principal::PlatformAdmin, Some(user)) => {
            let owner = users::routes::load_user(&ctx, user).await?;
            if owner.org_id != org_id {
                return Err(ApiError::not_found(format!("No user with id {user}.")));
            }
            Some(user)
        }
        (Principal::PlatformAdmin, None) => None,
    };
    let (id, public_id, secret) = (Uuid::now_v7(), random_hex(8)?, random_hex(32)?);
    let prefix = format!("{KEY_PREFIX}{public_id}");
    let created = ApiKeyCreated {
        name,
        prefix: prefix.clone(),
        public_id,
        secret_sha256: secret_sha256(&secret),
        owner_user_id,
        team_id,
        permissions,
        expires_at: expires_at.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    };
    let payloads = ApiKey::default()
        .decide(Command::Create(created))
        .map_err(key_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(id), Some(org_id), 0, payloads);
    let key = format!("{prefix}-{secret}");
    finish(batch, ApiKey::default(), StatusCode::CREATED, Some(key)).await
}

/// Renames, disables or re-enables a key, or changes its expiry (`null`: never).
#[utoipa::path(put, path = "/api-keys/{id}", tag = "api_keys", request_body = UpdateApiKey,
    params(crate::IdParam, crate::IfMatch),
    responses(
        (status = 200, body = api::api_keys::ApiKey),
    ))]
async fn update(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<UpdateApiKey>,
) -> Result<Response, ApiError> {
    let name = body.name.as_deref().map(display_name).transpose()?;
    let expires_at = match body.expires_at {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => Some(Some(expiry(&raw)?)),
    };
    let key = load_key(&ctx, id).await?;
    may_change(&ctx, &key)?;
    let re_enables = body.enabled == Some(true) && !key.enabled;
    let extends = match expires_at {
        Some(None) => key.expires_at.is_some(),
        Some(Some(at)) => key.expires_at.is_some_and(|now| at > now),
        None => false,
    };
    if re_enables || extends {
        require_manage(
            &ctx,
            &key,
            if re_enables { "enabled" } else { "expires_at" },
        )?;
    }
    ctx.check_version(key.version)?;
    let payloads = key
        .decide(Command::Update {
            name,
            expires_at,
            enabled: body.enabled,
        })
        .map_err(key_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(id), Some(key.org_id), key.version, payloads);
    finish(batch, key, StatusCode::OK, None).await
}

/// Replaces the key's permissions; each must be held by the caller.
#[utoipa::path(put, path = "/api-keys/{id}/permissions", tag = "api_keys", request_body = SetApiKeyPermissions,
    params(crate::IdParam, crate::IfMatch),
    responses(
        (status = 200, body = api::api_keys::ApiKey),
    ))]
async fn set_permissions(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<SetApiKeyPermissions>,
) -> Result<Response, ApiError> {
    let key = load_key(&ctx, id).await?;
    may_change(&ctx, &key)?;
    let permissions = grantable(&ctx.principal, key.team_id, body.permissions)?;
    ctx.check_version(key.version)?;
    let payloads = key
        .decide(Command::SetPermissions { permissions })
        .map_err(key_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(id), Some(key.org_id), key.version, payloads);
    finish(batch, key, StatusCode::OK, None).await
}

/// Revokes the key for good.
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api_keys", params(crate::IdParam, crate::IfMatch),
    responses(
        (status = 200, body = api::api_keys::ApiKey),
    ))]
async fn revoke(ctx: Ctx, PathId(id): PathId) -> Result<Response, ApiError> {
    let key = load_key(&ctx, id).await?;
    may_change(&ctx, &key)?;
    ctx.check_version(key.version)?;
    let payloads = key.decide(Command::Revoke).map_err(key_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(id), Some(key.org_id), key.version, payloads);
    finish(batch, key, StatusCode::OK, None).await
}

/// Whether the caller holds `permission` where `key` acts (its team, or the organization).
fn holds_for(ctx: &Ctx, key: &ApiKey, permission: Permission) -> bool {
    match key.team_id {
        Some(team) => ctx.principal.has_in_team(permission, team),
        None => ctx.principal.has(permission),
    }
}

/// A key's owner changes it with `api_keys:write`; another user's key, or a key of no user,
/// takes `api_keys:manage` (an admin's), so a developer cannot touch the keys of others.
fn may_change(ctx: &Ctx, key: &ApiKey) -> Result<(), ApiError> {
    let own = ctx.principal.key().is_some_and(|caller| {
        caller.owner_user_id.is_some() && caller.owner_user_id == key.owner_user_id
    });
    if own && holds_for(ctx, key, Permission::ApiKeysWrite) {
        return Ok(());
    }
    if own {
        return Err(missing(Permission::ApiKeysWrite));
    }
    require_manage(ctx, key, "id")
}

/// `api_keys:manage`, or 403 naming the field that needed it.
fn require_manage(ctx: &Ctx, key: &ApiKey, param: &str) -> Result<(), ApiError> {
    if holds_for(ctx, key, Permission::ApiKeysManage) {
        return Ok(());
    }
    Err(ApiError::forbidden(
        "missing_permission",
        match param {
            "enabled" => "Re-enabling a key needs the permission api_keys:manage (an admin's).",
            "expires_at" => "Lifting or extending a key's expiry needs the permission api_keys:manage (an admin's).",
            _ => "Only the key's owner, or a holder of api_keys:manage (an admin), may change this key.",
        },
    )
    .with_param(if param == "id" { "api_keys:manage" } else { param }))
}

fn missing(permission: Permission) -> ApiError {
    ApiError::forbidden(
        "missing_permission",
        format!("This API key lacks the permission {permission}."),
    )
    .with_param(permission.as_str())
}

async fn finish(
    batch: Batch<'_>,
    key: ApiKey,
    status: StatusCode,
    secret: Option<String>,
) -> Result<Response, ApiError> {
    let key = batch.events().iter().fold(key, Aggregate::apply);
    let projected = batch.commit().await?;
    let location = format!("/api/v1/api-keys/{}", key.id);
    let api_key = resource(&key);
    Ok(match secret {
        Some(key) => accepted_or(
            status,
            projected,
            &location,
            Some(NewApiKey { api_key, key }),
        ),
        None => accepted_or(status, projected, &location, Some(api_key)),
    })
}

async fn load_key(ctx: &Ctx, id: Uuid) -> Result<ApiKey, ApiError> {
    let key = load::<ApiKey>(&ctx.state, &stream_id(id)).await?.state;
    if !key.exists() || !ctx.principal.sees(key.org_id) {
        return Err(ApiError::not_found(format!("No API key with id {id}.")));
    }
    Ok(key)
}

/// The same shape `GET /api-keys/{id}` answers with; never the secret.
/// The key as `GET /api-keys/{id}` answers; never its secret.
pub fn resource(key: &ApiKey) -> api::api_keys::ApiKey {
    api::api_keys::ApiKey {
        id: key.id.into(),
        object: ApiKeyObject::Value,
        org_id: key.org_id.into(),
        name: key.name.clone(),
        prefix: key.prefix.clone(),
        owner_user_id: key.owner_user_id.map(Into::into),
        team_id: key.team_id.map(Into::into),
        permissions: platform::access::parse_permissions(
            key.permissions.iter().map(String::as_str),
        )
        .into_iter()
        .collect(),
        status: ApiKeyStatus::of(
            key.revoked_at.is_some(),
            key.enabled,
            key.expires_at,
            Utc::now(),
        ),
        enabled: key.enabled,
        expires_at: time(key.expires_at),
        revoked_at: time(key.revoked_at),
        last_used_at: None,
        version: key.version,
        created_at: time(key.created_at),
        updated_at: time(key.updated_at),
    }
}

fn key_error(error: DomainError) -> ApiError {
    match error {
        DomainError::AlreadyExists => {
            ApiError::conflict("already_exists", "The API key already exists.")
        }
        DomainError::NotFound => ApiError::not_found("No such API key."),
        DomainError::Revoked => {
            ApiError::conflict("key_revoked", "The API key is revoked; create a new one.")
        }
    }
}
