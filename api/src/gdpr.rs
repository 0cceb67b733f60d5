//! GDPR data-subject requests: what the platform holds about a person, and its erasure.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{object_name, OrgId, Timestamp, UserId};

object_name!(PersonalDataObject = "gdpr.personal_data");
object_name!(ErasureObject = "gdpr.erasure");

/// `POST /audit/gdpr/access` and `POST /audit/gdpr/erasure`: the person, by email, in the
/// caller's organization.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct DataSubjectRequest {
    pub email: String,
    /// The platform admin names the organization; a key may only name its own.
    #[serde(default)]
    pub org_id: Option<OrgId>,
}

/// Everything the organization holds about one person.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PersonalData {
    pub object: PersonalDataObject,
    pub org_id: OrgId,
    /// The email asked about, as the platform stores emails (lower case).
    pub email: String,
    /// The organization's users who are this person (emails are unique in an organization).
    pub users: Vec<PersonUser>,
    pub team_memberships: Vec<PersonMembership>,
    /// Keys the person owns, and keys they created for others.
    pub api_keys: Vec<PersonApiKey>,
    /// Audit events the person acted in (as the user, or through one of their keys) or that
    /// concern their user.
    pub audit_events: Vec<PersonAuditEvent>,
    /// Chat usage attributable to them, per model.
    pub usage: Vec<PersonUsage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PersonUser {
    pub id: UserId,
    pub email: String,
    pub name: Option<String>,
    pub roles: Vec<PersonRole>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PersonRole {
    pub role: String,
    /// Null: the whole organization.
    pub team_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PersonMembership {
    pub team_id: Uuid,
    pub team_name: String,
    pub user_id: UserId,
    pub added_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PersonApiKey {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub owner_user_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PersonAuditEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub occurred_at: Timestamp,
    pub stream_id: String,
    pub actor_type: String,
    pub actor_id: String,
    pub correlation_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PersonUsage {
    pub model: String,
    pub calls: i64,
    pub total_tokens: i64,
    pub cost_micros: i64,
}

/// The outcome of an erasure: the `person.erased` event, which stays in the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Erasure {
    pub object: ErasureObject,
    pub org_id: OrgId,
    /// The `person.erased` event's id.
    pub event_id: Uuid,
    /// The users who were this person; they remain, with `[erased]` for email and name.
    pub user_ids: Vec<UserId>,
    /// The keys destroyed.
    pub key_ids: Vec<Uuid>,
    pub erased_at: Timestamp,
}
