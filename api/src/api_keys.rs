use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{object_name, ApiKeyId, OrgId, Permission, TeamId, Timestamp, UserId};

object_name!(ApiKeyObject = "api_key");
object_name!(ApiKeyPermissionsObject = "api_key.permissions");

/// Where a key stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyStatus {
    Active,
    Disabled,
    Expired,
    Revoked,
}

impl ApiKeyStatus {
    pub fn of(
        revoked: bool,
        enabled: bool,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        if revoked {
            ApiKeyStatus::Revoked
        } else if !enabled {
            ApiKeyStatus::Disabled
        } else if expires_at.is_some_and(|at| at <= now) {
            ApiKeyStatus::Expired
        } else {
            ApiKeyStatus::Active
        }
    }
}

/// An API key. The secret is shown once, when the key is created, and never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub object: ApiKeyObject,
    pub org_id: OrgId,
    pub name: String,
    /// The key's public part, `aihub-sk-<public id>`.
    pub prefix: String,
    /// The user the key acts for; its permissions never exceed that user's roles.
    pub owner_user_id: Option<UserId>,
    pub team_id: Option<TeamId>,
    pub permissions: Vec<Permission>,
    pub status: ApiKeyStatus,
    pub enabled: bool,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub version: i64,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

/// A key just created, with its secret: store it now, it is never shown again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NewApiKey {
    #[serde(flatten)]
    pub api_key: ApiKey,
    /// The bearer token: `aihub-sk-<public id>-<secret>`.
    pub key: String,
}

/// A key's own permissions and the effective ones (limited by its owner's roles).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyPermissions {
    pub object: ApiKeyPermissionsObject,
    pub api_key_id: ApiKeyId,
    pub permissions: Vec<Permission>,
    pub effective_permissions: Vec<Permission>,
    pub owner_user_id: Option<UserId>,
    /// Every permission there is.
    pub available: Vec<Permission>,
}

/// `POST /api-keys`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateApiKey {
    pub name: String,
    /// Each must be held by the caller: nobody grants more than they have.
    pub permissions: Vec<Permission>,
    #[serde(default)]
    pub team_id: Option<TeamId>,
    /// RFC 3339, in the future; absent: never expires.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Platform admin only.
    #[serde(default)]
    pub org_id: Option<OrgId>,
    /// The user the key acts for (platform admin only); a key's keys act for its owner.
    #[serde(default)]
    pub user_id: Option<UserId>,
}

/// `PUT /api-keys/{id}`: only the fields given change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UpdateApiKey {
    #[serde(default)]
    pub name: Option<String>,
    /// Absent: unchanged; `null`: never expires; an RFC 3339 time: expires then.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Option<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `PUT /api-keys/{id}/permissions`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct SetApiKeyPermissions {
    pub permissions: Vec<Permission>,
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
