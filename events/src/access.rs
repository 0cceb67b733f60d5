//! Users, roles, teams, API keys and authentication failures: who may do what inside an
//! organization. Secrets never appear here: an API key event holds its public id, prefix and the
//! hash of its secret.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::personal::Personal;

/// `user.created`: a person of an organization, known by email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserCreated {
    #[schemars(extend("x-personal" = true))]
    pub email: Personal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-personal" = true))]
    pub name: Option<Personal>,
}

/// `user.role_assigned`: a role in the organization, or in one team when `team_id` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoleAssigned {
    pub role: String,
    #[serde(default)]
    pub team_id: Option<Uuid>,
}

/// `user.role_removed`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoleRemoved {
    pub role: String,
    #[serde(default)]
    pub team_id: Option<Uuid>,
}

/// `organization.owner_added`: owners live on the organization's stream, because "an
/// organization always keeps one owner" is the organization's rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OwnerAdded {
    pub user_id: Uuid,
}

/// `organization.owner_removed`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OwnerRemoved {
    pub user_id: Uuid,
}

/// `team.created`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TeamCreated {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `team.updated`: only the fields that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct TeamUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `team.member_added`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TeamMemberAdded {
    pub user_id: Uuid,
}

/// `team.member_removed`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TeamMemberRemoved {
    pub user_id: Uuid,
}

/// `api_key.created`. The key itself (`aihub-sk-<public_id>-<secret>`) is shown to its creator
/// once and never stored: only `secret_sha256`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyCreated {
    pub name: String,
    pub public_id: String,
    /// The displayable start of the key, `aihub-sk-<public_id>`.
    pub prefix: String,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    #[serde(default)]
    pub owner_user_id: Option<Uuid>,
    #[serde(default)]
    pub team_id: Option<Uuid>,
    pub permissions: Vec<String>,
    /// RFC 3339; none means the key does not expire.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// `api_key.updated`: only the fields that changed. `expires_at: ""` clears the expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct ApiKeyUpdated {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `api_key.permissions_changed`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyPermissionsChanged {
    pub permissions: Vec<String>,
}

/// `api_key.revoked`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct ApiKeyRevoked {}

/// `auth.failed`: refused authentications, aggregated per reason and key over a short window so
/// that a flood of bad requests cannot flood the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuthFailed {
    /// missing, malformed, unknown, expired, disabled or revoked
    pub reason: String,
    /// The public id the caller presented, when the token had one.
    #[serde(default)]
    pub public_id: Option<String>,
    pub count: u64,
    pub first_at: String,
    pub last_at: String,
    #[serde(default)]
    pub sample_ip: Option<String>,
}
