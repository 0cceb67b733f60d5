//! Pure decisions over an organization's history. No I/O: `decide` turns a command into events
//! given the current state, `apply` folds an event into the state.

use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

use events::access::{OwnerAdded, OwnerRemoved};
use events::organization::{OrganizationCreated, OrganizationDeleted, OrganizationUpdated};
use events::{EventEnvelope, EventPayload};
use serde::Serialize;
use uuid::Uuid;

use crate::command::Aggregate;

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
    /// The platform admin's overrides of the plan's rate limits.
    #[serde(skip)]
    pub limits: events::limits::LimitsSet,
}

impl Organization {
    pub fn exists(&self) -> bool {
        self.version > 0 && !self.deleted
    }

    /// NotFound unless the organization is live, VersionConflict unless it is at the expected one.
    fn check_live(&self, expected_version: Option<i64>) -> Result<(), DomainError> {
        if !self.exists() {
            return Err(DomainError::NotFound);
        }
        match expected_version {
            Some(expected) if expected != self.version => Err(DomainError::VersionConflict {
                expected,
                actual: self.version,
            }),
            _ => Ok(()),
        }
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

impl Aggregate for Organization {
    type Command = Command;
    type Error = DomainError;

    fn decide(&self, command: Command) -> Result<Vec<EventPayload>, DomainError> {
        match command {
            Command::Create {
                name,
                slug,
                owner_email,
            } => {
                if self.version > 0 {
                    return Err(DomainError::AlreadyExists);
                }
                Ok(vec![EventPayload::OrganizationCreated(
                    OrganizationCreated {
                        name: name.0,
                        slug: slug.0,
                        owner_email: owner_email.map(|e| e.0.into()),
                    },
                )])
            }
            Command::Update {
                expected_version,
                name,
                slug,
                owner_email,
            } => {
                self.check_live(expected_version)?;
                let changed = OrganizationUpdated {
                    name: name.map(|n| n.0).filter(|n| *n != self.name),
                    slug: slug.map(|s| s.0).filter(|s| *s != self.slug),
                    owner_email: owner_email
                        .map(|e| e.0)
                        .filter(|e| Some(e) != self.owner_email.as_ref())
                        .map(Into::into),
                };
                if changed == OrganizationUpdated::default() {
                    return Ok(vec![]);
                }
                Ok(vec![EventPayload::OrganizationUpdated(changed)])
            }
            Command::Delete { expected_version } => {
                self.check_live(expected_version)?;
                Ok(vec![EventPayload::OrganizationDeleted(
                    OrganizationDeleted::default(),
                )])
            }
            Command::AddOwner { user_id } => {
                self.check_live(None)?;
                if self.owners.contains(&user_id) {
                    return Ok(vec![]);
                }
                Ok(vec![EventPayload::OwnerAdded(OwnerAdded { user_id })])
            }
            Command::RemoveOwner { user_id } => {
                self.check_live(None)?;
                if !self.owners.contains(&user_id) {
                    return Ok(vec![]);
                }
                if self.owners.len() == 1 {
                    return Err(DomainError::LastOwner);
                }
                Ok(vec![EventPayload::OwnerRemoved(OwnerRemoved { user_id })])
            }
        }
    }

    fn apply(mut self, event: &EventEnvelope) -> Self {
        self.version = event.stream_version;
        self.updated_at = Some(*event.occurred_at);
        match &event.payload {
            EventPayload::OrganizationLimitsSet(limits) => self.limits = limits.clone(),
            EventPayload::OrganizationCreated(created) => {
                self.id = event.org_id.unwrap_or_default();
                self.name = created.name.clone();
                self.slug = created.slug.clone();
                self.owner_email = created.owner_email.as_ref().map(|e| e.shown().to_string());
                self.created_at = Some(*event.occurred_at);
            }
            EventPayload::OrganizationUpdated(updated) => {
                if let Some(name) = &updated.name {
                    self.name = name.clone();
                }
                if let Some(slug) = &updated.slug {
                    self.slug = slug.clone();
                }
                if let Some(email) = &updated.owner_email {
                    self.owner_email = Some(email.shown().to_string());
                }
            }
            EventPayload::OrganizationDeleted(_) => self.deleted = true,
            EventPayload::OwnerAdded(e) => {
                self.owners.insert(e.user_id);
            }
            EventPayload::OwnerRemoved(e) => {
                self.owners.remove(&e.user_id);
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

    fn owner_added(user_id: Uuid) -> EventPayload {
        EventPayload::OwnerAdded(OwnerAdded { user_id })
    }

    #[test]
    fn creating_twice_is_refused() {
        given::<Organization>(vec![])
            .when(create_command())
            .then(vec![created()])
            .then_state(|org| assert!(org.exists()));
        given::<Organization>(vec![created()])
            .when(create_command())
            .then_error(DomainError::AlreadyExists);
    }

    #[test]
    fn update_records_only_what_changed() {
        given::<Organization>(vec![created()])
            .when(Command::Update {
                expected_version: Some(1),
                name: Some(OrgName::parse("Acme").expect("valid")),
                slug: Some(OrgSlug::parse("acme-2").expect("valid")),
                owner_email: None,
            })
            .then(vec![EventPayload::OrganizationUpdated(
                OrganizationUpdated {
                    slug: Some("acme-2".into()),
                    ..Default::default()
                },
            )])
            .then_state(|org| {
                assert_eq!((org.name.as_str(), org.slug.as_str()), ("Acme", "acme-2"))
            });
    }

    #[test]
    fn a_stale_version_is_a_conflict() {
        given::<Organization>(vec![
            created(),
            EventPayload::OrganizationUpdated(OrganizationUpdated::default()),
        ])
        .when(Command::Delete {
            expected_version: Some(1),
        })
        .then_error(DomainError::VersionConflict {
            expected: 1,
            actual: 2,
        });
    }

    #[test]
    fn a_deleted_organization_is_gone() {
        given::<Organization>(vec![
            created(),
            EventPayload::OrganizationDeleted(OrganizationDeleted::default()),
        ])
        .when(Command::Delete {
            expected_version: None,
        })
        .then_error(DomainError::NotFound)
        .then_state(|org| assert!(!org.exists()));
    }

    #[test]
    fn the_last_owner_cannot_be_removed() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        given::<Organization>(vec![created(), owner_added(a)])
            .when(Command::RemoveOwner { user_id: a })
            .then_error(DomainError::LastOwner);
        given::<Organization>(vec![created(), owner_added(a), owner_added(b)])
            .when(Command::RemoveOwner { user_id: a })
            .then(vec![EventPayload::OwnerRemoved(OwnerRemoved {
                user_id: a,
            })])
            .then_state(|org| assert_eq!(org.owners, BTreeSet::from([b])));
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
