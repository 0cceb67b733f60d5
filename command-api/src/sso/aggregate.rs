//! The single sign-on configuration of one organization: configured (the whole configuration
//! in each event) or removed.

use events::sso::{SsoConfigured, SsoRemoved};
use events::{EventEnvelope, EventPayload};
use uuid::Uuid;

use crate::command::Aggregate;

pub fn stream_id(org_id: Uuid) -> events::StreamId {
    events::StreamId::sso(org_id.into())
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SsoSetting {
    pub config: Option<SsoConfigured>,
    pub version: i64,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone)]
pub enum Command {
    Configure(SsoConfigured),
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("single sign-on is not configured")]
    NotConfigured,
}

impl Aggregate for SsoSetting {
    type Command = Command;
    type Error = DomainError;

    fn decide(&self, command: Command) -> Result<Vec<EventPayload>, DomainError> {
        match command {
            Command::Configure(config) if self.config.as_ref() == Some(&config) => Ok(vec![]),
            Command::Configure(config) => Ok(vec![EventPayload::SsoConfigured(config)]),
            Command::Remove if self.config.is_none() => Err(DomainError::NotConfigured),
            Command::Remove => Ok(vec![EventPayload::SsoRemoved(SsoRemoved {})]),
        }
    }

    fn apply(mut self, event: &EventEnvelope) -> Self {
        self.version = event.stream_version;
        self.updated_at = Some(*event.occurred_at);
        match &event.payload {
            EventPayload::SsoConfigured(config) => self.config = Some(config.clone()),
            EventPayload::SsoRemoved(_) => self.config = None,
            _ => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::given;

    fn config(client_id: &str) -> SsoConfigured {
        SsoConfigured {
            issuer: "https://login.example.com".into(),
            client_id: client_id.into(),
            allowed_domains: vec!["example.com".into()],
            groups_claim: "groups".into(),
            role_mappings: vec![],
            default_role: Some("viewer".into()),
        }
    }

    #[test]
    fn configuring_records_the_whole_configuration_once() {
        given::<SsoSetting>(vec![])
            .when(Command::Configure(config("a")))
            .then(vec![EventPayload::SsoConfigured(config("a"))]);
        given::<SsoSetting>(vec![EventPayload::SsoConfigured(config("a"))])
            .when(Command::Configure(config("a")))
            .then(vec![]);
        given::<SsoSetting>(vec![EventPayload::SsoConfigured(config("a"))])
            .when(Command::Configure(config("b")))
            .then(vec![EventPayload::SsoConfigured(config("b"))]);
    }

    #[test]
    fn only_a_configuration_can_be_removed() {
        given::<SsoSetting>(vec![])
            .when(Command::Remove)
            .then_error(DomainError::NotConfigured);
        given::<SsoSetting>(vec![EventPayload::SsoConfigured(config("a"))])
            .when(Command::Remove)
            .then(vec![EventPayload::SsoRemoved(SsoRemoved {})])
            .then_state(|s| assert!(s.config.is_none()));
    }
}
