//! The audit trail: the log of every event of an organization, its chain's verification, its
//! exports and its state at an instant.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use platform::ApiError;

use crate::{object_name, OrgId, Timestamp};

object_name!(AuditLogObject = "audit_log");
object_name!(AuditVerificationObject = "audit.verification");
object_name!(AuditPublicKeyObject = "audit.public_key");
object_name!(AuditExportObject = "audit.export");
object_name!(AuditStateObject = "audit.state");

/// Who caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    ApiKey,
    User,
    PlatformAdmin,
    System,
}

impl ActorKind {
    pub const ALL: [ActorKind; 4] = [
        ActorKind::ApiKey,
        ActorKind::User,
        ActorKind::PlatformAdmin,
        ActorKind::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::ApiKey => "api_key",
            ActorKind::User => "user",
            ActorKind::PlatformAdmin => "platform_admin",
            ActorKind::System => "system",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditActor {
    #[serde(rename = "type")]
    pub kind: ActorKind,
    /// `api_key:<id>`, `platform-admin:<name>`, `aihub` …
    pub id: String,
    pub ip: Option<String>,
}

/// An event's link in its organization's audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditChainLink {
    pub seq: i64,
    /// The previous event's hash, hex (64 zeros for the first event).
    pub prev: String,
    /// SHA-256 of `prev` and of the canonical envelope without `chain`, hex.
    pub hash: String,
}

/// One event of the organization, as the audit log holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditLog {
    /// The event's id.
    pub id: uuid::Uuid,
    pub object: AuditLogObject,
    /// `api_key.created`, `user.role_assigned` … (see `schemas/events/`).
    pub event_type: String,
    pub org_id: Option<OrgId>,
    /// The resource the event changed: `api_key:<id>`, `team:<id>` …
    pub stream_id: String,
    pub stream_version: i64,
    pub actor: AuditActor,
    /// The `x-request-id` of the request that caused it.
    pub correlation_id: String,
    pub causation_id: Option<uuid::Uuid>,
    pub occurred_at: Timestamp,
    /// The event's type-specific data.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Absent on events older than the chain.
    pub chain: Option<AuditChainLink>,
}

/// One field an update changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditChange {
    pub field: String,
    #[schema(value_type = Object)]
    pub before: Value,
    #[schema(value_type = Object)]
    pub after: Value,
}

/// One event with its whole envelope and, for an update, what it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditLogDetail {
    #[serde(flatten)]
    pub log: AuditLog,
    /// The event exactly as it travelled on the topic.
    #[schema(value_type = Object)]
    pub envelope: Value,
    /// For updates (`*.updated`, `api_key.permissions_changed`, subscription plan changes):
    /// each field's value before and after, from the resource's earlier events; null otherwise.
    pub changes: Option<Vec<AuditChange>>,
}

/// `GET /audit/logs` filters, all optional and combined with AND.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditLogQuery {
    /// Items per page, 1 to 1000 (default 50).
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// The organization (platform admin only).
    pub org_id: Option<String>,
    /// `api_key`, `user`, `platform_admin` or `system`.
    pub actor_type: Option<String>,
    /// The actor's id as events carry it (`api_key:<id>`).
    pub actor_id: Option<String>,
    /// One event type, such as `api_key.revoked`.
    pub event_type: Option<String>,
    /// A resource's stream id, such as `api_key:<id>`.
    pub resource: Option<String>,
    /// The `x-request-id` of a request.
    pub correlation_id: Option<String>,
    /// From this instant (inclusive): a date (`2026-11-01`) or an RFC 3339 time.
    pub from: Option<String>,
    /// Until this instant (exclusive).
    pub to: Option<String>,
}

/// The filters the log and its exports share, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditFilters {
    /// `api_key`, `user`, `platform_admin` or `system`.
    pub actor_type: Option<String>,
    /// The actor's id as events carry it (`api_key:<id>`).
    pub actor_id: Option<String>,
    /// One event type, such as `api_key.revoked`.
    pub event_type: Option<String>,
    /// A resource's stream id, such as `api_key:<id>`.
    pub resource: Option<String>,
    /// The `x-request-id` of a request.
    pub correlation_id: Option<String>,
    /// From this instant (inclusive): a date (`2026-11-01`) or an RFC 3339 time.
    pub from: Option<String>,
    /// Until this instant (exclusive).
    pub to: Option<String>,
}

/// The filters, checked: each one a value the log can match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedFilters {
    pub actor_type: Option<String>,
    pub actor_id: Option<String>,
    pub event_type: Option<String>,
    pub resource: Option<String>,
    pub correlation_id: Option<String>,
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}

/// A text filter: at most 200 characters, none of them NUL (Postgres text cannot hold one).
fn text(raw: Option<&str>, param: &str) -> Result<Option<String>, ApiError> {
    match raw {
        None | Some("") => Ok(None),
        Some(raw) if raw.len() > 200 || raw.contains('\0') => Err(ApiError::invalid_param(
            param,
            format!("{param} must be at most 200 characters, without NUL."),
        )),
        Some(raw) => Ok(Some(raw.to_string())),
    }
}

/// `2026-11-01` (midnight UTC) or an RFC 3339 time.
pub fn instant(raw: &str, param: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            ApiError::invalid_param(
                param,
                format!("{param} must be a date (2026-11-01) or an RFC 3339 time."),
            )
        })
}

impl AuditFilters {
    /// Each filter checked; the first that is not a value the log can hold is 400 naming it.
    pub fn check(&self) -> Result<CheckedFilters, ApiError> {
        let actor_type = match self.actor_type.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(
                ActorKind::parse(raw)
                    .ok_or_else(|| {
                        ApiError::invalid_param(
                            "actor_type",
                            "actor_type must be api_key, user, platform_admin or system.",
                        )
                    })?
                    .as_str()
                    .to_string(),
            ),
        };
        let event_type = match self.event_type.as_deref() {
            None | Some("") => None,
            Some(raw) if events::EventPayload::TYPES.contains(&raw) => Some(raw.to_string()),
            Some(_) => {
                return Err(ApiError::invalid_param(
                    "event_type",
                    "event_type is not an event type of the platform (see schemas/events).",
                ))
            }
        };
        let resource = match text(self.resource.as_deref(), "resource")? {
            None => None,
            Some(raw) => Some(
                raw.parse::<events::StreamId>()
                    .map_err(|_| {
                        ApiError::invalid_param(
                            "resource",
                            "resource must be a stream id, kind:id (api_key:0193…).",
                        )
                    })?
                    .to_string(),
            ),
        };
        let from = match self.from.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(instant(raw, "from")?),
        };
        let to = match self.to.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(instant(raw, "to")?),
        };
        if let (Some(from), Some(to)) = (from, to) {
            if from >= to {
                return Err(ApiError::invalid_param("to", "to must be after from."));
            }
        }
        Ok(CheckedFilters {
            actor_type,
            actor_id: text(self.actor_id.as_deref(), "actor_id")?,
            event_type,
            resource,
            correlation_id: text(self.correlation_id.as_deref(), "correlation_id")?,
            from,
            to,
        })
    }
}

impl AuditLogQuery {
    pub fn filters(&self) -> AuditFilters {
        AuditFilters {
            actor_type: self.actor_type.clone(),
            actor_id: self.actor_id.clone(),
            event_type: self.event_type.clone(),
            resource: self.resource.clone(),
            correlation_id: self.correlation_id.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
        }
    }
}

/// Where a chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditBreak {
    /// `topic`, `journal` or `read_model`.
    pub source: String,
    /// The first event that does not verify (null when it has no readable id).
    pub event_id: Option<uuid::Uuid>,
    pub seq: Option<i64>,
    pub reason: String,
}

/// One chain's verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditChainReport {
    /// The organization id, or `platform`.
    pub chain: String,
    /// Events linked on the topic.
    pub events: i64,
    pub head_seq: i64,
    /// The head's hash, hex.
    pub head_hash: Option<String>,
    /// Signed checkpoints verified.
    pub checkpoints: u64,
    /// The seq the last verified checkpoint signed.
    pub last_checkpoint_seq: Option<i64>,
    /// Null when the chain verifies in every source.
    pub broken: Option<AuditBreak>,
}

/// `GET /audit/verify` and `aihub audit verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditVerification {
    pub object: AuditVerificationObject,
    /// True when every chain verifies in the topic, the journal and the audit read model.
    pub ok: bool,
    pub chains: Vec<AuditChainReport>,
}

/// The key that signs audit checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditPublicKey {
    pub object: AuditPublicKeyObject,
    /// Always `ed25519`.
    pub algorithm: String,
    /// The 32-byte public key, hex.
    pub public_key: String,
    /// The first 8 bytes of its SHA-256, hex: checkpoints name it.
    pub key_id: String,
}

/// The format of an audit export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One envelope per line, exactly as the topic carried it (chain included).
    #[default]
    Jsonl,
    /// One event per row: its chain link, the columns an auditor sorts by, and the canonical
    /// envelope (the hashed bytes plus `chain`).
    Csv,
}

impl ExportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Csv => "csv",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportStatus {
    /// Recorded; not yet readable (answered when the audit projection lags).
    Pending,
    /// Its download streams now.
    Ready,
}

/// `POST /audit/logs/export`: the filters of `GET /audit/logs` and a format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditExportRequest {
    /// The organization (platform admin only).
    pub org_id: Option<OrgId>,
    /// `jsonl` (default) or `csv`.
    pub format: Option<ExportFormat>,
    #[serde(flatten)]
    pub filters: AuditFilters,
}

/// An export of the audit log: the events that matched its filters before it was asked for, in
/// chain order, with every signed checkpoint of the chain among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditExport {
    pub id: uuid::Uuid,
    pub object: AuditExportObject,
    pub org_id: OrgId,
    pub status: ExportStatus,
    pub format: ExportFormat,
    pub filters: AuditFilters,
    pub created_at: Timestamp,
    /// Streams the file.
    pub download_url: String,
}

/// `GET /audit/state`: the instant asked about.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditStateQuery {
    /// The instant, RFC 3339 (`2026-11-27T16:30:00Z`); not in the future.
    pub as_of: Option<String>,
    /// The organization (platform admin only; a key acts in its own).
    pub org_id: Option<String>,
}

/// How an API key stood at the instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditKeyStatus {
    Active,
    Disabled,
    Expired,
    Revoked,
}

/// A role held by a user: in the whole organization (`team_id` null) or in one team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditStateRole {
    pub role: String,
    pub team_id: Option<uuid::Uuid>,
    pub assigned_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditStateUser {
    pub id: uuid::Uuid,
    pub email: String,
    pub name: Option<String>,
    pub created_at: Timestamp,
    pub roles: Vec<AuditStateRole>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditStateMember {
    pub user_id: uuid::Uuid,
    pub added_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditStateTeam {
    pub id: uuid::Uuid,
    pub name: String,
    pub description: Option<String>,
    pub created_at: Timestamp,
    pub members: Vec<AuditStateMember>,
}

/// An API key at the instant (never its secret or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditStateKey {
    pub id: uuid::Uuid,
    pub public_id: String,
    pub prefix: String,
    pub name: String,
    pub owner_user_id: Option<uuid::Uuid>,
    pub team_id: Option<uuid::Uuid>,
    pub permissions: Vec<String>,
    /// Revoked before disabled before expired (at the instant) before active.
    pub status: AuditKeyStatus,
    pub enabled: bool,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditStateOrganization {
    pub id: OrgId,
    pub name: String,
    pub slug: String,
    pub owner_email: Option<String>,
    pub created_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditStateSubscription {
    /// The plan in force at the instant (a scheduled downgrade counts once its date has come).
    pub plan: String,
    pub pending_plan: Option<String>,
    pub pending_effective_at: Option<Timestamp>,
    pub started_at: Timestamp,
}

/// `GET /audit/state` and `aihub replay --org --as-of`: who could do what at an instant, rebuilt
/// from the organization's events on the topic up to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditState {
    pub object: AuditStateObject,
    pub org_id: OrgId,
    pub as_of: Timestamp,
    /// The organization's events on the topic at or before `as_of` that were replayed.
    pub events_replayed: u64,
    /// Null when the organization did not exist yet.
    pub organization: Option<AuditStateOrganization>,
    /// Users with the roles they held, by id.
    pub users: Vec<AuditStateUser>,
    pub teams: Vec<AuditStateTeam>,
    pub api_keys: Vec<AuditStateKey>,
    pub subscription: Option<AuditStateSubscription>,
}
