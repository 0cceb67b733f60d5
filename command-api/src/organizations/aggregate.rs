//! Pure decisions over an organization's history. No I/O: `decide` turns a command into events
//! given the current state, `apply` folds an event into the state.

use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

use events::access::{OwnerAdded, OwnerRemoved};
use events::organization::{OrganizationCreated, OrganizationDeleted, OrganizationUpdated};
use events::{EventEnvelope, EventPayload};
use serde::Serialize;
use uuid::Uuid;

/// A display name: 1 to 200 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgName(String);

impl OrgName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("name must not be empty.".into());
        }
        if name.chars().count() > 200 {
            return Err("name must be at most 200 characters.".into());
        }
        if name.chars().any(char::is_control) {
            return Err("name must not contain control characters.".into());
        }
        Ok(Self(name.to_string()))
    }
}

/// A URL-safe handle: 2 to 63 of `a-z`, `0-9` and `-`, not starting or ending with `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSlug(String);

impl OrgSlug {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let valid_chars = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !(2..=63).contains(&raw.len())
            || !valid_chars
            || raw.starts_with('-')
            || raw.ends_with('-')
        {
            return Err(format!(
                "slug {raw:?} is invalid: use 2 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen."
            ));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, checked for shape only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim();
        let shaped = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            }
            None => false,
        };
        if !shaped
            || email.len() > 254
            || email.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("{raw:?} is not an email address."));
        }
        Ok(Self(email.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub owner_email: Option<String>,
    pub version: i64,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub deleted: bool,
    #[serde(skip)]
    pub owners: BTreeSet<Uuid>,
}

impl crate::command::Aggregate for Organization {
    fn apply(self, event: &EventEnvelope) -> Self {
        apply(self, event)
    }
}

impl Organization {
    pub fn exists(&self) -> bool {
        self.version > 0 && !self.deleted
    }
}

#[derive(Debug, Clone)]
pub enum Command {
    Create {
        name: OrgName,
        slug: OrgSlug,
        owner_email: Option<EmailAddress>,
    },
    Update {
        expected_version: Option<i64>,
        name: Option<OrgName>,
        slug: Option<OrgSlug>,
        owner_email: Option<EmailAddress>,
    },
    Delete {
        expected_version: Option<i64>,
    },
    AddOwner {
        user_id: Uuid,
    },
    RemoveOwner {
        user_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the organization already exists")]
    AlreadyExists,
    #[error("no such organization")]
    NotFound,
    #[error("the organization is at version {actual}, not {expected}")]
    VersionConflict { expected: i64, actual: i64 },
    #[error("an organization keeps at least one owner")]
    LastOwner,
}

pub fn stream_id(id: Uuid) -> events::StreamId {
    events::StreamId::organization(id.into())
}

pub fn decide(state: &Organization, command: Command) -> Result<Vec<EventPayload>, DomainError> {
    match command {
        Command::Create {
            name,
            slug,
            owner_email,
        } => {
            if state.version > 0 {
                return Err(DomainError::AlreadyExists);
            }
            Ok(vec![EventPayload::OrganizationCreated(
                OrganizationCreated {
                    name: name.0,
                    slug: slug.0,
                    owner_email: owner_email.map(|e| e.0),
                },
            )])
        }
        Command::Update {
            expected_version,
            name,
            slug,
            owner_email,
        } => {
            check_live(state, expected_version)?;
            let changed = OrganizationUpdated {
                name: name.map(|n| n.0).filter(|n| *n != state.name),
                slug: slug.map(|s| s.0).filter(|s| *s != state.slug),
                owner_email: owner_email
                    .map(|e| e.0)
                    .filter(|e| Some(e) != state.owner_email.as_ref()),
            };
            if changed == OrganizationUpdated::default() {
                return Ok(vec![]);
            }
            Ok(vec![EventPayload::OrganizationUpdated(changed)])
        }
        Command::Delete { expected_version } => {
            check_live(state, expected_version)?;
            Ok(vec![EventPayload::OrganizationDeleted(
                OrganizationDeleted::default(),
            )])
        }
        Command::AddOwner { user_id } => {
            check_live(state, None)?;
            if state.owners.contains(&user_id) {
                return Ok(vec![]);
            }
            Ok(vec![EventPayload::OwnerAdded(OwnerAdded { user_id })])
        }
        Command::RemoveOwner { user_id } => {
            check_live(state, None)?;
            if !state.owners.contains(&user_id) {
                return Ok(vec![]);
            }
            if state.owners.len() == 1 {
                return Err(DomainError::LastOwner);
            }
            Ok(vec![EventPayload::OwnerRemoved(OwnerRemoved { user_id })])
        }
    }
}

fn check_live(state: &Organization, expected_version: Option<i64>) -> Result<(), DomainError> {
    if !state.exists() {
        return Err(DomainError::NotFound);
    }
    match expected_version {
        Some(expected) if expected != state.version => Err(DomainError::VersionConflict {
            expected,
            actual: state.version,
        }),
        _ => Ok(()),
    }
}

pub fn apply(mut state: Organization, event: &EventEnvelope) -> Organization {
    state.version = event.stream_version;
    state.updated_at = Some(*event.occurred_at);
    match &event.payload {
        EventPayload::OrganizationCreated(created) => {
            state.id = event.org_id.unwrap_or_default();
            state.name = created.name.clone();
            state.slug = created.slug.clone();
            state.owner_email = created.owner_email.clone();
            state.created_at = Some(*event.occurred_at);
        }
        EventPayload::OrganizationUpdated(updated) => {
            if let Some(name) = &updated.name {
                state.name = name.clone();
            }
            if let Some(slug) = &updated.slug {
                state.slug = slug.clone();
            }
            if let Some(email) = &updated.owner_email {
                state.owner_email = Some(email.clone());
            }
        }
        EventPayload::OrganizationDeleted(_) => state.deleted = true,
        EventPayload::OwnerAdded(e) => {
            state.owners.insert(e.user_id);
        }
        EventPayload::OwnerRemoved(e) => {
            state.owners.remove(&e.user_id);
        }
        _ => {}
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::Actor;

    fn given(payloads: Vec<EventPayload>) -> Organization {
        let id = Uuid::now_v7();
        payloads
            .into_iter()
            .enumerate()
            .fold(Organization::default(), |state, (i, payload)| {
                let event = EventEnvelope::new(
                    payload,
                    Some(id),
                    stream_id(id),
                    i as i64 + 1,
                    Actor::system(),
                    "t".into(),
                );
                apply(state, &event)
            })
    }

    fn created() -> EventPayload {
        EventPayload::OrganizationCreated(OrganizationCreated {
            name: "Acme".into(),
            slug: "acme".into(),
            owner_email: None,
        })
    }

    fn create_command() -> Command {
        Command::Create {
            name: OrgName::parse("Acme").expect("valid"),
            slug: OrgSlug::parse("acme").expect("valid"),
            owner_email: None,
        }
    }

    #[test]
    fn creating_twice_is_refused() {
        assert_eq!(
            decide(&given(vec![created()]), create_command()),
            Err(DomainError::AlreadyExists)
        );
        assert_eq!(
            decide(&given(vec![]), create_command())
                .expect("decides")
                .len(),
            1
        );
    }

    #[test]
    fn update_records_only_what_changed() {
        let state = given(vec![created()]);
        let events = decide(
            &state,
            Command::Update {
                expected_version: Some(1),
                name: Some(OrgName::parse("Acme").expect("valid")),
                slug: Some(OrgSlug::parse("acme-2").expect("valid")),
                owner_email: None,
            },
        )
        .expect("decides");
        assert_eq!(
            events,
            vec![EventPayload::OrganizationUpdated(OrganizationUpdated {
                slug: Some("acme-2".into()),
                ..Default::default()
            })]
        );
    }

    #[test]
    fn a_stale_version_is_a_conflict() {
        let state = given(vec![
            created(),
            EventPayload::OrganizationUpdated(OrganizationUpdated::default()),
        ]);
        let result = decide(
            &state,
            Command::Delete {
                expected_version: Some(1),
            },
        );
        assert_eq!(
            result,
            Err(DomainError::VersionConflict {
                expected: 1,
                actual: 2
            })
        );
    }

    #[test]
    fn a_deleted_organization_is_gone() {
        let state = given(vec![
            created(),
            EventPayload::OrganizationDeleted(OrganizationDeleted::default()),
        ]);
        assert!(!state.exists());
        assert_eq!(
            decide(
                &state,
                Command::Delete {
                    expected_version: None
                }
            ),
            Err(DomainError::NotFound)
        );
    }

    #[test]
    fn the_last_owner_cannot_be_removed() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let one = given(vec![
            created(),
            EventPayload::OwnerAdded(OwnerAdded { user_id: a }),
        ]);
        assert_eq!(
            decide(&one, Command::RemoveOwner { user_id: a }),
            Err(DomainError::LastOwner)
        );
        let two = given(vec![
            created(),
            EventPayload::OwnerAdded(OwnerAdded { user_id: a }),
            EventPayload::OwnerAdded(OwnerAdded { user_id: b }),
        ]);
        assert_eq!(
            decide(&two, Command::RemoveOwner { user_id: a }),
            Ok(vec![EventPayload::OwnerRemoved(OwnerRemoved {
                user_id: a
            })])
        );
    }

    #[test]
    fn slugs_and_names_parse_strictly() {
        for bad in [
            "a",
            "has space",
            "UPPER",
            "-lead",
            "trail-",
            "ünï",
            &"x".repeat(64),
        ] {
            assert!(OrgSlug::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(OrgSlug::parse("acme-42").is_ok());
        assert!(OrgName::parse("   ").is_err());
        assert!(EmailAddress::parse("not-an-email").is_err());
        assert!(EmailAddress::parse("a@b").is_err());
        assert!(EmailAddress::parse("Ops@Example.com").is_ok());
    }
}
