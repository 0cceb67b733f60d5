//! The shared tail of every command: number the decided events, append them, and wait until the
//! projection that serves the resource has applied them.

use axum::http::HeaderMap;
use events::{Actor, EventEnvelope, EventPayload};
use platform::http::prefers_async;
use platform::{metrics, ApiError};
use uuid::Uuid;

use crate::journal::{Claim, JournalError};
use crate::CommandState;

/// The journal's errors as HTTP answers: the only place they become one.
impl From<JournalError> for ApiError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::VersionConflict => ApiError::conflict(
                "version_conflict",
                "The resource was changed by another request; read it again and retry.",
            ),
            JournalError::ClaimTaken { scope, .. } if scope == crate::users::EMAIL_SCOPE => {
                // The claim holds the email's blind index, which means nothing to the caller.
                ApiError::conflict("already_exists", "This email is already taken.")
                    .with_param("email")
            }
            JournalError::ClaimTaken { scope, value } => {
                // Values scoped to an organization are stored as `<org id>/<value>`.
                let field = scope.rsplit('.').next().unwrap_or(scope);
                let shown = value.rsplit('/').next().unwrap_or(&value);
                ApiError::conflict(
                    "already_exists",
                    format!("{field} {shown:?} is already taken."),
                )
                .with_param(field)
            }
            JournalError::Unavailable(e) => e.into(),
            JournalError::Database(e) => e.into(),
            e @ JournalError::Unreadable { .. } => ApiError::internal(e.into()),
        }
    }
}

/// Where decided events go and who caused them.
pub struct Stream<'a> {
    pub id: events::StreamId,
    pub org_id: Option<Uuid>,
    /// The version the decision was made at; new events follow it.
    pub version: i64,
    pub actor: &'a Actor,
    pub correlation_id: &'a str,
}

impl Stream<'_> {
    pub fn envelopes(&self, payloads: Vec<EventPayload>) -> Vec<EventEnvelope> {
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| {
                EventEnvelope::new(
                    payload,
                    self.org_id,
                    self.id.clone(),
                    self.version + 1 + i as i64,
                    self.actor.clone(),
                    self.correlation_id.to_string(),
                )
            })
            .collect()
    }
}

/// Appends `events` with `claims` and waits for `projection` to apply them (unless the client
/// asked for `Prefer: respond-async`). Returns whether they were projected in time.
pub async fn commit(
    state: &CommandState,
    headers: &HeaderMap,
    events: &[EventEnvelope],
    claims: &[(Claim, String)],
    projection: &str,
) -> Result<bool, ApiError> {
    if events.is_empty() {
        return Ok(true);
    }
    let wait = !prefers_async(headers);
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let pending = wait.then(|| state.consistency.register(projection, &ids));
    if let Err(e) = state.journal.append(events, claims).await {
        metrics::COMMANDS.with_label_values(&["refused"]).inc();
        return Err(e.into());
    }
    for event in events {
        tracing::info!(
            event_id = %event.event_id,
            event_type = event.payload.event_type(),
            stream_id = %event.stream_id,
            stream_version = event.stream_version,
            "event recorded"
        );
    }
    let projected = match pending {
        Some(pending) => {
            state
                .consistency
                .wait(pending, state.consistency_timeout)
                .await
        }
        None => false,
    };
    metrics::COMMANDS
        .with_label_values(&[if projected { "projected" } else { "accepted" }])
        .inc();
    Ok(projected)
}
