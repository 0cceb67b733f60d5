//! The API key aggregate.

use chrono::{DateTime, Utc};
use events::access::{ApiKeyCreated, ApiKeyPermissionsChanged, ApiKeyRevoked, ApiKeyUpdated};
use events::{EventEnvelope, EventPayload};
use uuid::Uuid;

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

pub fn decide(state: &ApiKey, command: Command) -> Result<Vec<EventPayload>, DomainError> {
    if let Command::Create(created) = command {
        if state.exists() {
            return Err(DomainError::AlreadyExists);
        }
        return Ok(vec![EventPayload::ApiKeyCreated(created)]);
    }
    if !state.exists() {
        return Err(DomainError::NotFound);
    }
    if state.revoked_at.is_some() {
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
                name: name.filter(|n| *n != state.name),
                expires_at: expires_at.filter(|at| *at != state.expires_at).map(|at| {
                    at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                        .unwrap_or_default()
                }),
                enabled: enabled.filter(|e| *e != state.enabled),
            };
            if changed == ApiKeyUpdated::default() {
                return Ok(vec![]);
            }
            Ok(vec![EventPayload::ApiKeyUpdated(changed)])
        }
        Command::SetPermissions { mut permissions } => {
            permissions.sort();
            permissions.dedup();
            if permissions == state.permissions {
                return Ok(vec![]);
            }
            Ok(vec![EventPayload::ApiKeyPermissionsChanged(
                ApiKeyPermissionsChanged { permissions },
            )])
        }
        Command::Revoke => Ok(vec![EventPayload::ApiKeyRevoked(ApiKeyRevoked {})]),
    }
}

fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn apply(mut state: ApiKey, event: &EventEnvelope) -> ApiKey {
    state.version = event.stream_version;
    state.updated_at = Some(*event.occurred_at);
    match &event.payload {
        EventPayload::ApiKeyCreated(e) => {
            state.id = event
                .stream_id
                .uuid_of(events::StreamKind::ApiKey)
                .unwrap_or_default();
            state.org_id = event.org_id.unwrap_or_default();
            state.name = e.name.clone();
            state.prefix = e.prefix.clone();
            state.owner_user_id = e.owner_user_id;
            state.team_id = e.team_id;
            state.permissions = e.permissions.clone();
            state.enabled = true;
            state.expires_at = e.expires_at.as_deref().and_then(parse_time);
            state.created_at = Some(*event.occurred_at);
        }
        EventPayload::ApiKeyUpdated(e) => {
            if let Some(name) = &e.name {
                state.name = name.clone();
            }
            if let Some(at) = &e.expires_at {
                state.expires_at = parse_time(at);
            }
            if let Some(enabled) = e.enabled {
                state.enabled = enabled;
            }
        }
        EventPayload::ApiKeyPermissionsChanged(e) => state.permissions = e.permissions.clone(),
        EventPayload::ApiKeyRevoked(_) => state.revoked_at = Some(*event.occurred_at),
        _ => {}
    }
    state
}

impl crate::command::Aggregate for ApiKey {
    fn apply(self, event: &EventEnvelope) -> Self {
        apply(self, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_key_cannot_be_changed() {
        let key = ApiKey {
            version: 2,
            enabled: true,
            revoked_at: Some(Utc::now()),
            ..ApiKey::default()
        };
        assert_eq!(decide(&key, Command::Revoke), Err(DomainError::Revoked));
        assert!(key.revoked_at.is_some());
    }

    #[test]
    fn clearing_the_expiry_is_recorded_as_an_empty_value() {
        let key = ApiKey {
            version: 1,
            enabled: true,
            expires_at: Some(Utc::now()),
            ..ApiKey::default()
        };
        let events = decide(
            &key,
            Command::Update {
                name: None,
                expires_at: Some(None),
                enabled: None,
            },
        )
        .expect("decides");
        assert_eq!(
            events,
            vec![EventPayload::ApiKeyUpdated(ApiKeyUpdated {
                expires_at: Some(String::new()),
                ..Default::default()
            })]
        );
    }
}
