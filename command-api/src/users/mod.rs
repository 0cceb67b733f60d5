//! Users of an organization and the roles they hold.

pub mod aggregate;
pub mod routes;

use uuid::Uuid;

use crate::organizations::aggregate::EmailAddress;

/// A user's email is unique inside its organization.
pub const EMAIL_SCOPE: &str = "user.email";

pub fn email_claim(org_id: Uuid, email: &EmailAddress) -> String {
    format!("{org_id}/{}", email.as_str())
}
