//! The user aggregate: identity inside one organization and the non-owner roles held (owners are
//! kept on the organization's stream, where the last-owner rule lives).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use events::access::{RoleAssigned, RoleRemoved, UserCreated};
use events::{EventEnvelope, EventPayload};
use uuid::Uuid;

use crate::organizations::aggregate::EmailAddress;

pub fn stream_id(id: Uuid) -> events::StreamId {
    events::StreamId::user(id.into())
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct User {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub name: Option<String>,
    /// (role, team) pairs; no team = the whole organization.
    pub roles: BTreeSet<(String, Option<Uuid>)>,
    pub version: i64,
    pub created_at: Option<DateTime<Utc>>,
}

impl User {
    pub fn exists(&self) -> bool {
        self.version > 0
    }
}

#[derive(Debug, Clone)]
pub enum Command {
    Create {
        email: EmailAddress,
        name: Option<String>,
    },
    AssignRole {
        role: String,
        team_id: Option<Uuid>,
    },
    RemoveRole {
        role: String,
        team_id: Option<Uuid>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the user already exists")]
    AlreadyExists,
    #[error("no such user")]
    NotFound,
    #[error("the user does not hold that role")]
    RoleNotHeld,
}

pub fn decide(state: &User, command: Command) -> Result<Vec<EventPayload>, DomainError> {
    match command {
        Command::Create { email, name } => {
            if state.exists() {
                return Err(DomainError::AlreadyExists);
            }
            Ok(vec![EventPayload::UserCreated(UserCreated {
                email: email.as_str().to_string(),
                name,
            })])
        }
        Command::AssignRole { role, team_id } => {
            if !state.exists() {
                return Err(DomainError::NotFound);
            }
            if state.roles.contains(&(role.clone(), team_id)) {
                return Ok(vec![]);
            }
            Ok(vec![EventPayload::RoleAssigned(RoleAssigned {
                role,
                team_id,
            })])
        }
        Command::RemoveRole { role, team_id } => {
            if !state.exists() {
                return Err(DomainError::NotFound);
            }
            if !state.roles.contains(&(role.clone(), team_id)) {
                return Err(DomainError::RoleNotHeld);
            }
            Ok(vec![EventPayload::RoleRemoved(RoleRemoved {
                role,
                team_id,
            })])
        }
    }
}

pub fn apply(mut state: User, event: &EventEnvelope) -> User {
    state.version = event.stream_version;
    match &event.payload {
        EventPayload::UserCreated(e) => {
            state.id = event
                .stream_id
                .uuid_of(events::StreamKind::User)
                .unwrap_or_default();
            state.org_id = event.org_id.unwrap_or_default();
            state.email = e.email.clone();
            state.name = e.name.clone();
            state.created_at = Some(*event.occurred_at);
        }
        EventPayload::RoleAssigned(e) => {
            state.roles.insert((e.role.clone(), e.team_id));
        }
        EventPayload::RoleRemoved(e) => {
            state.roles.remove(&(e.role.clone(), e.team_id));
        }
        _ => {}
    }
    state
}

impl crate::command::Aggregate for User {
    fn apply(self, event: &EventEnvelope) -> Self {
        apply(self, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::Actor;

    fn user() -> User {
        let id = Uuid::now_v7();
        let created = EventEnvelope::new(
            EventPayload::UserCreated(UserCreated {
                email: "a@b.example".into(),
                name: None,
            }),
            Some(Uuid::now_v7()),
            stream_id(id),
            1,
            Actor::system(),
            "t".into(),
        );
        apply(User::default(), &created)
    }

    #[test]
    fn assigning_a_held_role_again_changes_nothing() {
        let mut state = user();
        state.roles.insert(("developer".into(), None));
        let again = decide(
            &state,
            Command::AssignRole {
                role: "developer".into(),
                team_id: None,
            },
        );
        assert_eq!(again, Ok(vec![]));
        let in_team = decide(
            &state,
            Command::AssignRole {
                role: "developer".into(),
                team_id: Some(Uuid::now_v7()),
            },
        );
        assert_eq!(
            in_team.map(|e| e.len()),
            Ok(1),
            "a team role is a different assignment"
        );
    }

    #[test]
    fn removing_a_role_not_held_is_refused() {
        let result = decide(
            &user(),
            Command::RemoveRole {
                role: "viewer".into(),
                team_id: None,
            },
        );
        assert_eq!(result, Err(DomainError::RoleNotHeld));
    }
}
