//! The API key aggregate.

use chrono::{DateTime, Utc};
use events::access::{ApiKeyCreated, ApiKeyPermissionsChanged, ApiKeyRevoked, ApiKeyUpdated};
use events::{EventEnvelope, EventPayload};
use uuid::Uuid;

use crate::command::Aggregate;

pub fn stream_id(id: Uuid) -> events::StreamId {
    events::StreamId::api_key(id.into())
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiKey {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub prefix: String,
    pub owner_user_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub permissions: Vec<String>,
    pub enabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    /// An admin's rate limits for this key.
    pub limits: events::limits::LimitsSet,
}

impl ApiKey {
    pub fn exists(&self) -> bool {
        self.version > 0
    }
}

#[derive(Debug, Clone)]
pub enum Command {
    Create(ApiKeyCreated),
    Update {
        name: Option<String>,
        expires_at: Option<Option<DateTime<Utc>>>,
        enabled: Option<bool>,
    },
    SetPermissions {
        permissions: Vec<String>,
    },
    Revoke,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the key already exists")]
    AlreadyExists,
    #[error("no such key")]
    NotFound,
    #[error("the key is revoked")]
    Revoked,
}

impl Aggregate for ApiKey {
    type Command = Command;
    type Error = DomainError;

    fn decide(&self, command: Command) -> Result<Vec<EventPayload>, DomainError> {
        if let Command::Create(created) = command {
            if self.exists() {
                return Err(DomainError::AlreadyExists);
            }
            return Ok(vec![EventPayload::ApiKeyCreated(created)]);
        }
        if !self.exists() {
            return Err(DomainError::NotFound);
        }
        if self.revoked_at.is_some() {
            return Err(DomainError::Revoked);
        }
        match command {
            Command::Create(_) => Err(DomainError::AlreadyExists),
            Command::Update {
                name,
                expires_at,
                enabled,
            } => {
                let changed = ApiKeyUpdated {
                    name: name.filter(|n| *n != self.name),
                    expires_at: expires_at.filter(|at| *at != self.expires_at).map(|at| {
                        at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                            .unwrap_or_default()
                    }),
                    enabled: enabled.filter(|e| *e != self.enabled),
                };
                if changed == ApiKeyUpdated::default() {
                    return Ok(vec![]);
                }
                Ok(vec![EventPayload::ApiKeyUpdated(changed)])
            }
            Command::SetPermissions { mut permissions } => {
                permissions.sort();
                permissions.dedup();
                if permissions == self.permissions {
                    return Ok(vec![]);
                }
                Ok(vec![EventPayload::ApiKeyPermissionsChanged(
                    ApiKeyPermissionsChanged { permissions },
                )])
            }
            Command::Revoke => Ok(vec![EventPayload::ApiKeyRevoked(ApiKeyRevoked {})]),
        }
    }

    fn apply(mut self, event: &EventEnvelope) -> Self {
        self.version = event.stream_version;
        self.updated_at = Some(*event.occurred_at);
        match &event.payload {
            EventPayload::ApiKeyCreated(e) => {
                self.id = event
                    .stream_id
                    .uuid_of(events::StreamKind::ApiKey)
                    .unwrap_or_default();
                self.org_id = event.org_id.unwrap_or_default();
                self.name = e.name.clone();
                self.prefix = e.prefix.clone();
                self.owner_user_id = e.owner_user_id;
                self.team_id = e.team_id;
                self.permissions = e.permissions.clone();
                self.enabled = true;
                self.expires_at = e.expires_at.as_deref().and_then(parse_time);
                self.created_at = Some(*event.occurred_at);
            }
            EventPayload::ApiKeyUpdated(e) => {
                if let Some(name) = &e.name {
                    self.name = name.clone();
                }
                if let Some(at) = &e.expires_at {
                    self.expires_at = parse_time(at);
                }
                if let Some(enabled) = e.enabled {
                    self.enabled = enabled;
                }
            }
            EventPayload::ApiKeyPermissionsChanged(e) => self.permissions = e.permissions.clone(),
            EventPayload::ApiKeyRevoked(_) => self.revoked_at = Some(*event.occurred_at),
            EventPayload::ApiKeyLimitsSet(limits) => self.limits = limits.clone(),
            _ => {}
        }
        self
    }
}

fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::given;

    fn created(expires_at: Option<&str>) -> EventPayload {
        EventPayload::ApiKeyCreated(ApiKeyCreated {
            name: "ci".into(),
            public_id: "abc123".into(),
            prefix: "aihub-sk-abc123".into(),
            secret_sha256: "00".repeat(32),
            owner_user_id: None,
            team_id: None,
            permissions: vec!["chat:write".into()],
            expires_at: expires_at.map(Into::into),
        })
    }

    #[test]
    fn a_revoked_key_cannot_be_changed() {
        given::<ApiKey>(vec![
            created(None),
            EventPayload::ApiKeyRevoked(ApiKeyRevoked {}),
        ])
        .when(Command::Revoke)
        .then_error(DomainError::Revoked)
        .then_state(|key| assert!(key.revoked_at.is_some()));
    }

    #[test]
    fn clearing_the_expiry_is_recorded_as_an_empty_value() {
        given::<ApiKey>(vec![created(Some("2030-01-01T00:00:00.000Z"))])
            .when(Command::Update {
                name: None,
                expires_at: Some(None),
                enabled: None,
            })
            .then(vec![EventPayload::ApiKeyUpdated(ApiKeyUpdated {
                expires_at: Some(String::new()),
                ..Default::default()
            })])
            .then_state(|key| assert_eq!(key.expires_at, None));
    }
}
