//! `POST /api-keys`, `PUT /api-keys/{id}`, `PUT /api-keys/{id}/permissions`, `DELETE /api-keys/{id}`.

use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{post, put};
use axum::Router;
use chrono::{DateTime, Utc};
use events::access::ApiKeyCreated;
use platform::access::is_permission;
use platform::auth::{secret_sha256, KEY_PREFIX};
use platform::http::{accepted_or, Json, PathId};
use platform::{ApiError, Principal};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::aggregate::{self, stream_id, ApiKey, Command, DomainError};
use crate::command::{display_name, load, time, Batch, Ctx};
use crate::organizations::routes::live_org;
use crate::CommandState;
use crate::{teams, users};

pub fn router() -> Router<CommandState> {
    Router::new()
        .route("/api-keys", post(create))
        .route("/api-keys/{id}", put(update).delete(revoke))
        .route("/api-keys/{id}/permissions", put(set_permissions))
}

#[derive(Debug, Deserialize)]
struct CreateKey {
    name: String,
    permissions: Vec<String>,
    #[serde(default)]
    team_id: Option<Uuid>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    org_id: Option<Uuid>,
    /// The platform admin may name the user the key acts for; a key's keys act for its owner.
    #[serde(default)]
    user_id: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
struct UpdateKey {
    #[serde(default)]
    name: Option<String>,
    /// Absent: unchanged; `null`: never expires; a time: expires then.
    #[serde(default)]
    expires_at: Option<Value>,
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct SetPermissions {
    permissions: Vec<String>,
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

/// Known permission strings that the caller itself holds: nobody grants more than they have.
fn grantable(principal: &Principal, mut permissions: Vec<String>) -> Result<Vec<String>, ApiError> {
    if let Some(unknown) = permissions.iter().find(|p| !is_permission(p)) {
        return Err(ApiError::invalid_param(
            "permissions",
            format!("Unknown permission {unknown:?}; GET /api/v1/permissions lists them."),
        ));
    }
    if let Some(missing) = permissions.iter().find(|p| !principal.has(p)) {
        return Err(ApiError::forbidden(
            "permission_not_held",
            format!("You cannot grant {missing}: this API key does not hold it."),
        )
        .with_param("permissions"));
    }
    permissions.sort();
    permissions.dedup();
    Ok(permissions)
}

fn random_hex(chars: usize) -> String {
    let mut out = String::with_capacity(chars + 32);
    while out.len() < chars {
        out.push_str(&Uuid::new_v4().simple().to_string());
    }
    out.truncate(chars);
    out
}

async fn create(ctx: Ctx, Json(body): Json<CreateKey>) -> Result<Response, ApiError> {
    let org_id = ctx.principal.org_scope(body.org_id)?;
    ctx.principal.require("api_keys:write")?;
    let name = display_name(&body.name)?;
    let permissions = grantable(&ctx.principal, body.permissions)?;
    let expires_at = body.expires_at.as_deref().map(expiry).transpose()?;
    live_org(&ctx, org_id).await?;
    if let Some(team_id) = body.team_id {
        teams::routes::team_in_org(&ctx, team_id, org_id).await?;
    }
    let owner_user_id = match (&ctx.principal, body.user_id) {
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
    let (id, public_id, secret) = (Uuid::now_v7(), random_hex(16), random_hex(64));
    let prefix = format!("{KEY_PREFIX}{public_id}");
    let created = ApiKeyCreated {
        name,
        prefix: prefix.clone(),
        public_id,
        secret_sha256: secret_sha256(&secret),
        owner_user_id,
        team_id: body.team_id,
        permissions,
        expires_at: expires_at.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    };
    let payloads =
        aggregate::decide(&ApiKey::default(), Command::Create(created)).map_err(key_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(id), Some(org_id), 0, payloads);
    let key = format!("{prefix}-{secret}");
    finish(batch, ApiKey::default(), StatusCode::CREATED, Some(key)).await
}

async fn update(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<UpdateKey>,
) -> Result<Response, ApiError> {
    let name = body.name.as_deref().map(display_name).transpose()?;
    let expires_at = match body.expires_at {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(raw)) => Some(Some(expiry(&raw)?)),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "expires_at",
                "expires_at must be an RFC 3339 time or null.",
            ))
        }
    };
    let key = load_key(&ctx, id).await?;
    ctx.principal.require("api_keys:write")?;
    ctx.check_version(key.version)?;
    let payloads = aggregate::decide(
        &key,
        Command::Update {
            name,
            expires_at,
            enabled: body.enabled,
        },
    )
    .map_err(key_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(id), Some(key.org_id), key.version, payloads);
    finish(batch, key, StatusCode::OK, None).await
}

async fn set_permissions(
    ctx: Ctx,
    PathId(id): PathId,
    Json(body): Json<SetPermissions>,
) -> Result<Response, ApiError> {
    let key = load_key(&ctx, id).await?;
    ctx.principal.require("api_keys:write")?;
    let permissions = grantable(&ctx.principal, body.permissions)?;
    ctx.check_version(key.version)?;
    let payloads =
        aggregate::decide(&key, Command::SetPermissions { permissions }).map_err(key_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(id), Some(key.org_id), key.version, payloads);
    finish(batch, key, StatusCode::OK, None).await
}

async fn revoke(ctx: Ctx, PathId(id): PathId) -> Result<Response, ApiError> {
    let key = load_key(&ctx, id).await?;
    ctx.principal.require("api_keys:write")?;
    ctx.check_version(key.version)?;
    let payloads = aggregate::decide(&key, Command::Revoke).map_err(key_error)?;
    let mut batch = ctx.batch();
    batch.push(&stream_id(id), Some(key.org_id), key.version, payloads);
    finish(batch, key, StatusCode::OK, None).await
}

async fn finish(
    batch: Batch<'_>,
    key: ApiKey,
    status: StatusCode,
    secret: Option<String>,
) -> Result<Response, ApiError> {
    let key = batch.events().iter().fold(key, aggregate::apply);
    let projected = batch.commit().await?;
    let mut body = representation(&key);
    if let Some(secret) = secret {
        body["key"] = Value::String(secret);
    }
    Ok(accepted_or(
        status,
        projected,
        &format!("/api/v1/api-keys/{}", key.id),
        Some(body),
    ))
}

async fn load_key(ctx: &Ctx, id: Uuid) -> Result<ApiKey, ApiError> {
    let key = load::<ApiKey>(&ctx.state, &stream_id(id)).await?.state;
    if !key.exists() || !ctx.principal.sees(key.org_id) {
        return Err(ApiError::not_found(format!("No API key with id {id}.")));
    }
    Ok(key)
}

/// The same shape `GET /api-keys/{id}` answers with; never the secret.
pub fn representation(key: &ApiKey) -> Value {
    serde_json::json!({
        "id": key.id,
        "object": "api_key",
        "org_id": key.org_id,
        "name": key.name,
        "prefix": key.prefix,
        "owner_user_id": key.owner_user_id,
        "team_id": key.team_id,
        "permissions": key.permissions,
        "status": key.status(Utc::now()),
        "enabled": key.enabled,
        "expires_at": time(key.expires_at),
        "revoked_at": time(key.revoked_at),
        "last_used_at": null,
        "version": key.version,
        "created_at": time(key.created_at),
        "updated_at": time(key.updated_at),
    })
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
