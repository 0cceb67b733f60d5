//! The team aggregate: name, description and members.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use events::access::{TeamCreated, TeamMemberAdded, TeamMemberRemoved, TeamUpdated};
use events::{EventEnvelope, EventPayload};
use uuid::Uuid;

use crate::command::Aggregate;

pub fn stream_id(id: Uuid) -> events::StreamId {
    events::StreamId::team(id.into())
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Team {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub members: BTreeSet<Uuid>,
    pub version: i64,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Team {
    pub fn exists(&self) -> bool {
        self.version > 0
    }
}

#[derive(Debug, Clone)]
pub enum Command {
    Create {
        name: String,
        description: Option<String>,
    },
    Update {
        name: Option<String>,
        description: Option<String>,
    },
    AddMember {
        user_id: Uuid,
    },
    RemoveMember {
        user_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the team already exists")]
    AlreadyExists,
    #[error("no such team")]
    NotFound,
    #[error("the user is not a member of the team")]
    NotAMember,
}

impl Aggregate for Team {
    type Command = Command;
    type Error = DomainError;

    fn decide(&self, command: Command) -> Result<Vec<EventPayload>, DomainError> {
        if !matches!(command, Command::Create { .. }) && !self.exists() {
            return Err(DomainError::NotFound);
        }
        match command {
            Command::Create { name, description } => {
                if self.exists() {
                    return Err(DomainError::AlreadyExists);
                }
                Ok(vec![EventPayload::TeamCreated(TeamCreated {
                    name,
                    description,
                })])
            }
            Command::Update { name, description } => {
                let changed = TeamUpdated {
                    name: name.filter(|n| *n != self.name),
                    description: description.filter(|d| Some(d) != self.description.as_ref()),
                };
                if changed == TeamUpdated::default() {
                    return Ok(vec![]);
                }
                Ok(vec![EventPayload::TeamUpdated(changed)])
            }
            Command::AddMember { user_id } => {
                if self.members.contains(&user_id) {
                    return Ok(vec![]);
                }
                Ok(vec![EventPayload::TeamMemberAdded(TeamMemberAdded {
                    user_id,
                })])
            }
            Command::RemoveMember { user_id } => {
                if !self.members.contains(&user_id) {
                    return Err(DomainError::NotAMember);
                }
                Ok(vec![EventPayload::TeamMemberRemoved(TeamMemberRemoved {
                    user_id,
                })])
            }
        }
    }

    fn apply(mut self, event: &EventEnvelope) -> Self {
        self.version = event.stream_version;
        self.updated_at = Some(*event.occurred_at);
        match &event.payload {
            EventPayload::TeamCreated(e) => {
                self.id = event
                    .stream_id
                    .uuid_of(events::StreamKind::Team)
                    .unwrap_or_default();
                self.org_id = event.org_id.unwrap_or_default();
                self.name = e.name.clone();
                self.description = e.description.clone();
                self.created_at = Some(*event.occurred_at);
            }
            EventPayload::TeamUpdated(e) => {
                if let Some(name) = &e.name {
                    self.name = name.clone();
                }
                if let Some(description) = &e.description {
                    self.description = Some(description.clone());
                }
            }
            EventPayload::TeamMemberAdded(e) => {
                self.members.insert(e.user_id);
            }
            EventPayload::TeamMemberRemoved(e) => {
                self.members.remove(&e.user_id);
            }
            _ => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testing::given;

    fn created() -> EventPayload {
        EventPayload::TeamCreated(TeamCreated {
            name: "Research".into(),
            description: None,
        })
    }

    fn added(user_id: Uuid) -> EventPayload {
        EventPayload::TeamMemberAdded(TeamMemberAdded { user_id })
    }

    #[test]
    fn members_are_added_once_and_removed_only_when_present() {
        let user = Uuid::now_v7();
        given::<Team>(vec![created()])
            .when(Command::AddMember { user_id: user })
            .then(vec![added(user)])
            .then_state(|team| assert!(team.members.contains(&user)));
        given::<Team>(vec![created(), added(user)])
            .when(Command::AddMember { user_id: user })
            .then(vec![]);
        given::<Team>(vec![created(), added(user)])
            .when(Command::RemoveMember {
                user_id: Uuid::now_v7(),
            })
            .then_error(DomainError::NotAMember);
        given::<Team>(vec![])
            .when(Command::AddMember { user_id: user })
            .then_error(DomainError::NotFound);
    }
}
