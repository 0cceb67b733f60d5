//! Which organization a query reads: a key's own; the platform admin names one with `?org_id=`.

use platform::{ApiError, Principal};
use uuid::Uuid;

pub fn org(principal: &Principal, raw: Option<&str>) -> Result<Uuid, ApiError> {
    let requested = match raw {
        None | Some("") => None,
        Some(raw) => Some(
            raw.parse::<Uuid>()
                .map_err(|_| ApiError::not_found(format!("No organization with id {raw:?}.")))?,
        ),
    };
    principal.org_scope(requested)
}

pub fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn maybe_time(at: Option<chrono::DateTime<chrono::Utc>>) -> Option<String> {
    at.map(time)
}

/// The id after which a page starts.
pub fn after(page: &platform::pagination::Page) -> Result<Option<Uuid>, ApiError> {
    page.after
        .as_deref()
        .map(|raw| {
            raw.parse::<Uuid>().map_err(|_| {
                ApiError::invalid_param("cursor", "cursor is not one this API returned.")
            })
        })
        .transpose()
}
