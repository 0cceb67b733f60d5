//! The team aggregate: name, description and members.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use events::access::{TeamCreated, TeamMemberAdded, TeamMemberRemoved, TeamUpdated};
use events::{EventEnvelope, EventPayload};
use uuid::Uuid;

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

pub fn decide(state: &Team, command: Command) -> Result<Vec<EventPayload>, DomainError> {
    if !matches!(command, Command::Create { .. }) && !state.exists() {
        return Err(DomainError::NotFound);
    }
    match command {
        Command::Create { name, description } => {
            if state.exists() {
                return Err(DomainError::AlreadyExists);
            }
            Ok(vec![EventPayload::TeamCreated(TeamCreated {
                name,
                description,
            })])
        }
        Command::Update { name, description } => {
            let changed = TeamUpdated {
                name: name.filter(|n| *n != state.name),
                description: description.filter(|d| Some(d) != state.description.as_ref()),
            };
            if changed == TeamUpdated::default() {
                return Ok(vec![]);
            }
            Ok(vec![EventPayload::TeamUpdated(changed)])
        }
        Command::AddMember { user_id } => {
            if state.members.contains(&user_id) {
                return Ok(vec![]);
            }
            Ok(vec![EventPayload::TeamMemberAdded(TeamMemberAdded {
                user_id,
            })])
        }
        Command::RemoveMember { user_id } => {
            if !state.members.contains(&user_id) {
                return Err(DomainError::NotAMember);
            }
            Ok(vec![EventPayload::TeamMemberRemoved(TeamMemberRemoved {
                user_id,
            })])
        }
    }
}

pub fn apply(mut state: Team, event: &EventEnvelope) -> Team {
    state.version = event.stream_version;
    state.updated_at = Some(*event.occurred_at);
    match &event.payload {
        EventPayload::TeamCreated(e) => {
            state.id = event
                .stream_id
                .uuid_of(events::StreamKind::Team)
                .unwrap_or_default();
            state.org_id = event.org_id.unwrap_or_default();
            state.name = e.name.clone();
            state.description = e.description.clone();
            state.created_at = Some(*event.occurred_at);
        }
        EventPayload::TeamUpdated(e) => {
            if let Some(name) = &e.name {
                state.name = name.clone();
            }
            if let Some(description) = &e.description {
                state.description = Some(description.clone());
            }
        }
        EventPayload::TeamMemberAdded(e) => {
            state.members.insert(e.user_id);
        }
        EventPayload::TeamMemberRemoved(e) => {
            state.members.remove(&e.user_id);
        }
        _ => {}
    }
    state
}

impl crate::command::Aggregate for Team {
    fn apply(self, event: &EventEnvelope) -> Self {
        apply(self, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_added_once_and_removed_only_when_present() {
        let mut team = Team {
            version: 1,
            ..Team::default()
        };
        let user = Uuid::now_v7();
        assert_eq!(
            decide(&team, Command::AddMember { user_id: user }).map(|e| e.len()),
            Ok(1)
        );
        team.members.insert(user);
        assert_eq!(
            decide(&team, Command::AddMember { user_id: user }),
            Ok(vec![])
        );
        assert_eq!(
            decide(
                &team,
                Command::RemoveMember {
                    user_id: Uuid::now_v7()
                }
            ),
            Err(DomainError::NotAMember)
        );
        assert_eq!(
            decide(&Team::default(), Command::AddMember { user_id: user }),
            Err(DomainError::NotFound)
        );
    }
}
