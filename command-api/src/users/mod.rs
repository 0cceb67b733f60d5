//! Users of an organization and the roles they hold.

pub mod aggregate;
pub mod routes;

use platform::ApiError;
use uuid::Uuid;

use crate::command::{Aggregate, Batch};
use crate::organizations::aggregate::EmailAddress;

/// A user's email is unique inside its organization.
pub const EMAIL_SCOPE: &str = "user.email";

/// The claim on an email: its keyed blind index, so the claims table holds no address.
pub fn email_claim(org_id: Uuid, email: &EmailAddress) -> String {
    format!(
        "{org_id}/{}",
        platform::personal::email_index(email.as_str())
    )
}

/// Adds a new user of `org_id` to `batch`: its `user.created`, decided by the user aggregate, and
/// the claim on its email. Every way of creating a user goes through here. Returns the user's id.
pub fn create_in(
    batch: &mut Batch<'_>,
    org_id: Uuid,
    email: &EmailAddress,
    name: Option<String>,
) -> Result<Uuid, ApiError> {
    create_with_id(batch, Uuid::now_v7(), org_id, email, name)
}

/// [`create_in`] with the id chosen by the caller (single sign-on names the new user as the
/// actor of its own creation).
pub fn create_with_id(
    batch: &mut Batch<'_>,
    id: Uuid,
    org_id: Uuid,
    email: &EmailAddress,
    name: Option<String>,
) -> Result<Uuid, ApiError> {
    let stream = aggregate::stream_id(id);
    let payloads = aggregate::User::default()
        .decide(aggregate::Command::Create {
            email: email.clone(),
            name,
        })
        .map_err(routes::user_error)?;
    batch.push(&stream, Some(org_id), 0, payloads);
    batch.take(EMAIL_SCOPE, email_claim(org_id, email), &stream);
    Ok(id)
}
