//! The user aggregate: identity inside one organization and the non-owner roles held (owners are
//! kept on the organization's stream, where the last-owner rule lives).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use events::access::{RoleAssigned, RoleRemoved, UserCreated};
use events::{EventEnvelope, EventPayload};
use uuid::Uuid;

use crate::command::Aggregate;

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

impl Aggregate for User {
    type Command = Command;
    type Error = DomainError;

    fn decide(&self, command: Command) -> Result<Vec<EventPayload>, DomainError> {
        match command {
            Command::Create { email, name } => {
                if self.exists() {
                    return Err(DomainError::AlreadyExists);
                }
                Ok(vec![EventPayload::UserCreated(UserCreated {
                    email: email.as_str().into(),
                    name: name.map(Into::into),
                })])
            }
            Command::AssignRole { role, team_id } => {
                if !self.exists() {
                    return Err(DomainError::NotFound);
                }
                if self.roles.contains(&(role.clone(), team_id)) {
                    return Ok(vec![]);
                }
                Ok(vec![EventPayload::RoleAssigned(RoleAssigned {
                    role,
                    team_id,
                })])
            }
            Command::RemoveRole { role, team_id } => {
                if !self.exists() {
                    return Err(DomainError::NotFound);
                }
                if !self.roles.contains(&(role.clone(), team_id)) {
                    return Err(DomainError::RoleNotHeld);
                }
                Ok(vec![EventPayload::RoleRemoved(RoleRemoved {
                    role,
                    team_id,
                })])
            }
        }
    }

    fn apply(mut self, event: &EventEnvelope) -> Self {
        self.version = event.stream_version;
        match &event.payload {
            EventPayload::UserCreated(e) => {
                self.id = event
                    .stream_id
                    .uuid_of(events::StreamKind::User)
                    .unwrap_or_default();
                self.org_id = event.org_id.unwrap_or_default();
                self.email = e.email.shown().to_string();
                self.name = e.name.as_ref().map(|n| n.shown().to_string());
                self.created_at = Some(*event.occurred_at);
            }
            EventPayload::RoleAssigned(e) => {
                self.roles.insert((e.role.clone(), e.team_id));
            }
            EventPayload::RoleRemoved(e) => {
                self.roles.remove(&(e.role.clone(), e.team_id));
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
        EventPayload::UserCreated(UserCreated {
            email: "a@b.example".into(),
            name: None,
        })
    }

    fn assigned(role: &str, team_id: Option<Uuid>) -> EventPayload {
        EventPayload::RoleAssigned(RoleAssigned {
            role: role.into(),
            team_id,
        })
    }

    #[test]
    fn assigning_a_held_role_again_changes_nothing() {
        let developer = || vec![created(), assigned("developer", None)];
        given::<User>(developer())
            .when(Command::AssignRole {
                role: "developer".into(),
                team_id: None,
            })
            .then(vec![]);
        let team = Some(Uuid::now_v7());
        // A team role is a different assignment.
        given::<User>(developer())
            .when(Command::AssignRole {
                role: "developer".into(),
                team_id: team,
            })
            .then(vec![assigned("developer", team)])
            .then_state(|user| assert_eq!(user.roles.len(), 2));
    }

    #[test]
    fn removing_a_role_not_held_is_refused() {
        given::<User>(vec![created()])
            .when(Command::RemoveRole {
                role: "viewer".into(),
                team_id: None,
            })
            .then_error(DomainError::RoleNotHeld);
    }
}
