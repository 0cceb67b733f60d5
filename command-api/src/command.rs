//! What every command handler shares: the request context, loading an aggregate from its
//! stream, and a batch of decided events (possibly on several streams) committed at once.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use events::{Actor, EventEnvelope, EventPayload, StreamId};
use platform::http::{ClientIp, RequestId};
use platform::{ApiError, Principal};
use uuid::Uuid;

use crate::commit::commit;
use crate::journal::Claim;
use crate::{CommandState, Journal};

/// The projection whose read models serve the resources written here.
pub const TENANCY: &str = "tenancy";

#[cfg(test)]
pub mod testing;

/// A pure aggregate: its state is the fold of its stream's events, and it decides which events a
/// command records, or refuses it.
pub trait Aggregate: Default {
    type Command;
    type Error;

    /// The events `command` records on this state; none when it changes nothing.
    fn decide(&self, command: Self::Command) -> Result<Vec<EventPayload>, Self::Error>;

    /// The state once `event` happened.
    fn apply(self, event: &EventEnvelope) -> Self;
}

pub struct Loaded<A> {
    pub state: A,
    pub version: i64,
}

pub async fn load<A: Aggregate>(
    state: &CommandState,
    stream_id: &StreamId,
) -> Result<Loaded<A>, ApiError> {
    load_from(&state.journal, stream_id).await
}

pub async fn load_from<A: Aggregate>(
    journal: &Journal,
    stream_id: &StreamId,
) -> Result<Loaded<A>, ApiError> {
    let mut loaded = Loaded {
        state: A::default(),
        version: 0,
    };
    loaded.catch_up(journal, stream_id).await?;
    Ok(loaded)
}

impl<A: Aggregate> Loaded<A> {
    /// Applies the stream's events written since it was loaded; true when there were any.
    pub async fn catch_up(
        &mut self,
        journal: &Journal,
        stream_id: &StreamId,
    ) -> Result<bool, ApiError> {
        let newer = journal.load_after(stream_id, self.version).await?;
        let Some(last) = newer.last().map(|e| e.stream_version) else {
            return Ok(false);
        };
        self.state = newer
            .iter()
            .fold(std::mem::take(&mut self.state), |a, e| a.apply(e));
        self.version = last;
        Ok(true)
    }
}

/// The request a command runs for.
pub struct Ctx {
    pub state: CommandState,
    pub principal: Principal,
    pub actor: Actor,
    pub request_id: String,
    pub headers: HeaderMap,
}

impl FromRequestParts<CommandState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &CommandState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let RequestId(request_id) = RequestId::from_request_parts(parts, state).await?;
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        let mut actor = principal.actor(ip);
        // A named platform-admin token: the events say which admin acted.
        if let Some(platform::auth::AdminName(name)) = parts.extensions.get() {
            actor.id = format!("platform-admin:{name}");
        }
        Ok(Self {
            state: state.clone(),
            actor,
            principal,
            request_id,
            headers: parts.headers.clone(),
        })
    }
}

impl Ctx {
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            ctx: self,
            at: events::Timestamp::now(),
            events: Vec::new(),
            claims: Vec::new(),
        }
    }

    /// `If-Match: "3"` (or `3`) makes a write conditional on the version the client read.
    pub fn if_match(&self) -> Result<Option<i64>, ApiError> {
        let Some(value) = self.headers.get(axum::http::header::IF_MATCH) else {
            return Ok(None);
        };
        let raw = value.to_str().unwrap_or_default().trim();
        if raw == "*" {
            return Ok(None);
        }
        raw.trim_start_matches("W/")
            .trim_matches('"')
            .parse::<i64>()
            .map(Some)
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_if_match",
                    "If-Match must be the ETag a GET returned, like \"3\".",
                )
                .with_param("If-Match")
            })
    }

    /// 409 when the client's `If-Match` names another version than the current one.
    pub fn check_version(&self, current: i64) -> Result<(), ApiError> {
        match self.if_match()? {
            Some(expected) if expected != current => Err(ApiError::conflict(
                "version_conflict",
                format!("The resource is at version {current}, not {expected}; read it again and retry."),
            )),
            _ => Ok(()),
        }
    }
}

/// Events decided by one command, on one or more streams, appended in one transaction.
pub struct Batch<'a> {
    ctx: &'a Ctx,
    /// When the command's events occurred: one instant for all of them, so that no point in time
    /// sees half a command (an organization's owner without the organization).
    at: events::Timestamp,
    events: Vec<EventEnvelope>,
    claims: Vec<(Claim, String)>,
}

impl Batch<'_> {
    /// Adds events to a stream that was at `version`; returns the stream's new version.
    pub fn push(
        &mut self,
        stream_id: &StreamId,
        org_id: Option<Uuid>,
        version: i64,
        payloads: Vec<EventPayload>,
    ) -> i64 {
        let mut next = version;
        for payload in payloads {
            next += 1;
            let mut event = EventEnvelope::new(
                payload,
                org_id,
                stream_id.clone(),
                next,
                self.ctx.actor.clone(),
                self.ctx.request_id.clone(),
            );
            event.occurred_at = self.at;
            self.events.push(event);
        }
        next
    }

    pub fn take(&mut self, scope: &'static str, value: String, stream_id: &StreamId) {
        self.claims
            .push((Claim::Take { scope, value }, stream_id.to_string()));
    }

    pub fn release(&mut self, scope: &'static str, value: String, stream_id: &StreamId) {
        self.claims
            .push((Claim::Release { scope, value }, stream_id.to_string()));
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn events(&self) -> &[EventEnvelope] {
        &self.events
    }

    /// Appends and waits for the tenancy projection; true when readable in time.
    pub async fn commit(self) -> Result<bool, ApiError> {
        self.commit_to(TENANCY).await
    }

    /// Appends and waits for `projection`, the one serving the resource; true when readable in
    /// time.
    pub async fn commit_to(self, projection: &str) -> Result<bool, ApiError> {
        if self.events.is_empty() {
            return Ok(true);
        }
        commit(
            &self.ctx.state,
            &self.ctx.headers,
            &self.events,
            &self.claims,
            projection,
        )
        .await
    }
}

/// The `name` of a team or an API key: 1 to 200 characters once trimmed, no control characters.
pub fn display_name(raw: &str) -> Result<String, ApiError> {
    short_text("name", raw)
}

/// A short free text field (`param`): 1 to 200 characters once trimmed, no control characters.
pub fn short_text(param: &str, raw: &str) -> Result<String, ApiError> {
    let text = raw.trim();
    if text.is_empty() || text.chars().count() > 200 || text.chars().any(char::is_control) {
        return Err(ApiError::invalid_param(
            param,
            format!("{param} must be 1 to 200 characters."),
        ));
    }
    Ok(text.to_string())
}

pub fn time(at: Option<chrono::DateTime<chrono::Utc>>) -> Option<events::Timestamp> {
    at.map(events::Timestamp)
}
