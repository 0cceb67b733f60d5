//! Rate limits per organization and per API key: requests per minute on every API call, and
//! chat tokens per minute, that hold across any number of processes.
//!
//! A limit counts in fixed one-minute windows (UTC minutes). The window's count lives in
//! PostgreSQL (`rate_windows`, one row per scope and minute, written by `rate_take`), and each
//! process takes it in blocks of a twentieth of the limit: a call is admitted from the block in
//! memory, and only an empty block goes to the database, which never grants past the limit. So
//! the processes together admit at most the limit, and as long as each keeps getting calls they
//! use every block they took and admit exactly the limit; a process that stops getting calls
//! strands at most its block (5 %) until the minute ends. Once the database says a window is
//! full, the process refuses the rest of the minute without asking again, so a flood costs no
//! queries. Tokens are counted at admission as the call's upper bound (prompt and completion
//! budget, as the quota holds them); what the call did not use is given back to the process's
//! block when it ends within the same minute.
//!
//! The limits of a key are its organization's (the plan's, or the platform admin's override),
//! and, where an admin set any for the key, the key's own as well: both must admit a call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

use crate::db::PgPool as Pool;
use crate::ApiError;

/// The limits in force for one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_minute: u64,
    pub tokens_per_minute: u64,
    /// Streams open at once, per gateway process.
    pub concurrent_streams: u32,
}

impl Limits {
    pub fn of_plan(plan: &crate::plans::Plan) -> Self {
        Self {
            requests_per_minute: plan.requests_per_minute,
            tokens_per_minute: plan.tokens_per_minute,
            concurrent_streams: plan.concurrent_streams,
        }
    }

    /// The tighter of two, field by field.
    pub fn min(self, other: Limits) -> Limits {
        Limits {
            requests_per_minute: self.requests_per_minute.min(other.requests_per_minute),
            tokens_per_minute: self.tokens_per_minute.min(other.tokens_per_minute),
            concurrent_streams: self.concurrent_streams.min(other.concurrent_streams),
        }
    }
}

/// Overrides as stored: a field left `None` keeps the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Overrides {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub concurrent_streams: Option<u32>,
}

impl Overrides {
    /// One subject's overrides from a row that names them `<prefix>_rpm`, `<prefix>_tpm` and
    /// `<prefix>_streams` (`read.rate_limits` joined under an alias); a missing row reads as none.
    pub fn from_row(row: &tokio_postgres::Row, prefix: &str) -> Overrides {
        let positive = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        Overrides {
            requests_per_minute: positive(row.get(format!("{prefix}_rpm").as_str())),
            tokens_per_minute: positive(row.get(format!("{prefix}_tpm").as_str())),
            concurrent_streams: row
                .get::<_, Option<i32>>(format!("{prefix}_streams").as_str())
                .and_then(|v| u32::try_from(v).ok()),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn over(self, base: Limits) -> Limits {
        Limits {
            requests_per_minute: self.requests_per_minute.unwrap_or(base.requests_per_minute),
            tokens_per_minute: self.tokens_per_minute.unwrap_or(base.tokens_per_minute),
            concurrent_streams: self.concurrent_streams.unwrap_or(base.concurrent_streams),
        }
    }
}

/// The limits an API key's calls are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimits {
    /// The organization's: its plan's, or the platform admin's override.
    pub org: Limits,
    /// The key's own, when an admin set any (the organization's still hold too).
    pub key: Option<Limits>,
}

impl KeyLimits {
    /// The plan's defaults, nothing overridden.
    pub fn of_plan(plan: crate::plans::PlanId) -> Self {
        Self::new(Limits::of_plan(plan.plan()), Overrides::default())
    }

    pub fn new(org: Limits, key: Overrides) -> Self {
        Self {
            org,
            key: (!key.is_empty()).then(|| key.over(org)),
        }
    }

    /// What binds the key: both sets, field by field.
    pub fn effective(&self) -> Limits {
        match self.key {
            Some(key) => key.min(self.org),
            None => self.org,
        }
    }

    fn scopes(&self, org_id: Uuid, key_id: Uuid) -> Vec<(String, Limits)> {
        let mut scopes = Vec::with_capacity(2);
        if let Some(key) = self.key {
            // A key limit at or above the organization's never binds first: no row for it.
            if key.requests_per_minute < self.org.requests_per_minute
                || key.tokens_per_minute < self.org.tokens_per_minute
            {
                scopes.push((format!("key:{key_id}"), key));
            }
        }
        scopes.push((format!("org:{org_id}"), self.org));
        scopes
    }
}

/// What a process may still admit from one dimension of one window.
#[derive(Debug, Default, Clone, Copy)]
struct Budget {
    /// Taken from the database and not yet used by this process.
    left: u64,
    /// The window's count in the database at this process's last take.
    total: u64,
    /// The database had nothing left to grant: refuse until the minute ends.
    exhausted: bool,
}

#[derive(Debug)]
struct Window {
    minute: i64,
    requests: Budget,
    tokens: Budget,
}

/// The two dimensions of an admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Requests,
    Tokens,
}

/// Where a dimension stands after an admission, for the `x-ratelimit-*` headers: the scope
/// with the least room left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub limit: u64,
    pub remaining: u64,
    /// Milliseconds until the window ends.
    pub reset_ms: u64,
}

/// What an admission took, to give back what a call did not use.
#[derive(Debug, Clone)]
pub struct Ticket {
    minute: i64,
    scopes: Vec<String>,
    tokens: u64,
}

impl Ticket {
    /// The tokens it was admitted for.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }
}

pub struct RateLimiter {
    pool: Pool,
    windows: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Window>>>>,
    /// The last minute whose stale windows were forgotten (here and in the database).
    swept: AtomicI64,
}

/// Milliseconds since the epoch and the minute they fall in.
fn now() -> (i64, i64) {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    (ms, ms.div_euclid(60_000))
}

/// How much a process takes from the database at once: a twentieth of the limit.
fn block(limit: u64) -> u64 {
    (limit / 20).max(1)
}

impl RateLimiter {
    pub fn new(pool: Pool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            windows: Mutex::new(HashMap::new()),
            swept: AtomicI64::new(0),
        })
    }

    fn window(&self, scope: &str, minute: i64) -> Arc<tokio::sync::Mutex<Window>> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows
            .entry(scope.to_string())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Window {
                    minute,
                    requests: Budget::default(),
                    tokens: Budget::default(),
                }))
            })
            .clone()
    }

    /// Once a minute: forgets the windows of past minutes, in memory and in the database.
    fn sweep(self: &Arc<Self>, minute: i64) {
        let last = self.swept.load(Ordering::Relaxed);
        if last >= minute
            || self
                .swept
                .compare_exchange(last, minute, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        {
            let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
            windows.retain(|_, window| match window.try_lock() {
                Ok(window) => window.minute >= minute,
                Err(_) => true,
            });
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let swept = async {
                let client = pool.get().await?;
                client
                    .execute(
                        "DELETE FROM rate_windows WHERE window_start < $1",
                        &[&(minute - 1)],
                    )
                    .await?;
                anyhow::Ok(())
            };
            if let Err(e) = swept.await {
                tracing::debug!(error = %e, "forgetting past rate-limit windows failed");
            }
        });
    }

    /// Admits one call of `requests` requests and `tokens` tokens for a key, or refuses it with
    /// 429 `rate_limit_exceeded`. Every scope must admit it; nothing is counted when one
    /// refuses. A database error admits the call (the limit protects the platform; an outage of
    /// the limiter must not become an outage of the API) and is logged.
    /// Where it stood goes into `slot`, for the response's headers, either way.
    #[allow(clippy::too_many_arguments)]
    pub async fn admit(
        self: &Arc<Self>,
        limits: &KeyLimits,
        org_id: Uuid,
        key_id: Uuid,
        requests: u64,
        tokens: u64,
        slot: Option<&RateSlot>,
    ) -> Result<Ticket, ApiError> {
        let (now_ms, minute) = now();
        self.sweep(minute);
        let reset_ms = ((minute + 1) * 60_000 - now_ms).max(0) as u64;
        let scopes = limits.scopes(org_id, key_id);
        let mut guards = Vec::with_capacity(scopes.len());
        for (scope, _) in &scopes {
            guards.push(self.window(scope, minute));
        }
        let mut locked = Vec::with_capacity(guards.len());
        for guard in &guards {
            locked.push(guard.lock().await);
        }
        let mut admitted = Admitted::default();
        for ((scope, limits), window) in scopes.iter().zip(locked.iter_mut()) {
            let window: &mut Window = window;
            if window.minute != minute {
                window.minute = minute;
                window.requests = Budget::default();
                window.tokens = Budget::default();
            }
            let want_requests = requests.saturating_sub(window.requests.left);
            let want_tokens = tokens.saturating_sub(window.tokens.left);
            let ask = |want: u64, budget: &Budget, limit: u64| {
                if want == 0 || budget.exhausted {
                    0
                } else {
                    want.max(block(limit)).min(limit)
                }
            };
            let ask_requests = ask(want_requests, &window.requests, limits.requests_per_minute);
            let ask_tokens = ask(want_tokens, &window.tokens, limits.tokens_per_minute);
            if ask_requests > 0 || ask_tokens > 0 {
                match self
                    .take(scope, minute, ask_requests, ask_tokens, limits)
                    .await
                {
                    Ok(taken) => {
                        for (budget, asked, granted, total, limit) in [
                            (
                                &mut window.requests,
                                ask_requests,
                                taken.0,
                                taken.2,
                                limits.requests_per_minute,
                            ),
                            (
                                &mut window.tokens,
                                ask_tokens,
                                taken.1,
                                taken.3,
                                limits.tokens_per_minute,
                            ),
                        ] {
                            if asked > 0 {
                                budget.left += granted;
                                budget.total = total;
                                budget.exhausted = total >= limit;
                            }
                        }
                    }
                    Err(e) => {
                        crate::metrics::RATE_LIMIT_ERRORS
                            .with_label_values(&["postgres"])
                            .inc();
                        tracing::warn!(error = %e, scope = %scope, "the rate limiter could not reach PostgreSQL; admitting the call");
                        window.requests.left += want_requests;
                        window.tokens.left += want_tokens;
                    }
                }
            }
            for (dimension, budget, need, limit) in [
                (
                    Dimension::Requests,
                    &window.requests,
                    requests,
                    limits.requests_per_minute,
                ),
                (
                    Dimension::Tokens,
                    &window.tokens,
                    tokens,
                    limits.tokens_per_minute,
                ),
            ] {
                let remaining = limit.saturating_sub(budget.total) + budget.left;
                let standing = Standing {
                    limit,
                    remaining: remaining.saturating_sub(need),
                    reset_ms,
                };
                if budget.left < need {
                    crate::metrics::RATE_LIMITED
                        .with_label_values(&[match dimension {
                            Dimension::Requests => "requests",
                            Dimension::Tokens => "tokens",
                        }])
                        .inc();
                    if let Some(slot) = slot {
                        let mut refused = Admitted::default();
                        refused.note(dimension, standing);
                        slot.merge(refused);
                    }
                    return Err(refusal(dimension, limit, need, reset_ms));
                }
                admitted.note(dimension, standing);
            }
        }
        for window in locked.iter_mut() {
            window.requests.left -= requests;
            window.tokens.left -= tokens;
        }
        if let Some(slot) = slot {
            slot.merge(admitted);
        }
        Ok(Ticket {
            minute,
            scopes: scopes.into_iter().map(|(scope, _)| scope).collect(),
            tokens,
        })
    }

    /// Gives back tokens a call held at admission and did not use, if its minute is not over.
    pub async fn give_back(&self, ticket: &Ticket, unused: u64) {
        let unused = unused.min(ticket.tokens);
        if unused == 0 {
            return;
        }
        for scope in &ticket.scopes {
            let window = {
                let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
                windows.get(scope).cloned()
            };
            if let Some(window) = window {
                let mut window = window.lock().await;
                if window.minute == ticket.minute {
                    window.tokens.left += unused;
                }
            }
        }
    }

    /// One round trip: grants up to the asks, never past the limits, and says the window's
    /// counts after it. `(requests granted, tokens granted, requests total, tokens total)`.
    async fn take(
        &self,
        scope: &str,
        minute: i64,
        requests: u64,
        tokens: u64,
        limits: &Limits,
    ) -> anyhow::Result<(u64, u64, u64, u64)> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT req_granted, tok_granted, req_total, tok_total
                 FROM rate_take($1, $2, $3, $4, $5, $6)",
            )
            .await?;
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let row = client
            .query_one(
                &statement,
                &[
                    &scope as &(dyn tokio_postgres::types::ToSql + Sync),
                    &minute,
                    &as_i64(requests),
                    &as_i64(limits.requests_per_minute),
                    &as_i64(tokens),
                    &as_i64(limits.tokens_per_minute),
                ],
            )
            .await?;
        let get = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        Ok((get(0), get(1), get(2), get(3)))
    }
}

fn refusal(dimension: Dimension, limit: u64, need: u64, reset_ms: u64) -> ApiError {
    let seconds = reset_ms.div_ceil(1000).max(1);
    let (what, short) = match dimension {
        Dimension::Requests => ("requests", "RPM"),
        Dimension::Tokens => ("tokens", "TPM"),
    };
    let message = if need > limit {
        format!(
            "Request too large: it may use {need} {what} and the limit is {limit} {what} per minute ({short}). Ask for fewer tokens (max_tokens) or a shorter prompt."
        )
    } else {
        format!(
            "Rate limit reached on {what} per minute ({short}): limit {limit}, requested {need}. Please try again in {seconds}s."
        )
    };
    let mut error = ApiError::too_many_requests("rate_limit_exceeded", message, seconds as u32);
    error.kind = match dimension {
        Dimension::Requests => "requests",
        Dimension::Tokens => "tokens",
    };
    error
}

/// The standings of an admission, written as the `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Admitted {
    pub requests: Option<Standing>,
    pub tokens: Option<Standing>,
}

impl Admitted {
    /// Keeps, per dimension, the scope with the least room.
    fn note(&mut self, dimension: Dimension, standing: Standing) {
        let slot = match dimension {
            Dimension::Requests => &mut self.requests,
            Dimension::Tokens => &mut self.tokens,
        };
        match slot {
            Some(held) if held.remaining <= standing.remaining => {}
            _ => *slot = Some(standing),
        }
    }

    /// Adds another admission's dimensions (the chat call's tokens to the request's count).
    pub fn merge(&mut self, other: Admitted) {
        if let Some(requests) = other.requests {
            self.note(Dimension::Requests, requests);
        }
        if let Some(tokens) = other.tokens {
            self.note(Dimension::Tokens, tokens);
        }
    }

    pub fn write(&self, headers: &mut axum::http::HeaderMap) {
        for (name, standing) in [("requests", self.requests), ("tokens", self.tokens)] {
            let Some(standing) = standing else { continue };
            let values = [
                ("limit", standing.limit.to_string()),
                ("remaining", standing.remaining.to_string()),
                ("reset", duration_text(standing.reset_ms)),
            ];
            for (field, value) in values {
                let header = format!("x-ratelimit-{field}-{name}");
                if let (Ok(header), Ok(value)) =
                    (HeaderName::try_from(header), HeaderValue::try_from(value))
                {
                    headers.insert(header, value);
                }
            }
        }
    }
}

/// `12s`, `1m5s`, `250ms`: the form OpenAI's `x-ratelimit-reset-*` headers use.
pub fn duration_text(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let seconds = ms.div_ceil(1000);
    if seconds < 60 {
        format!("{seconds}s")
    } else {
        format!("{}m{}s", seconds / 60, seconds % 60)
    }
}

/// Where a request's admissions are noted for its response: the authentication fills in the
/// requests, the gateway the tokens, and [`rate_headers`] writes them.
#[derive(Debug, Clone, Default)]
pub struct RateSlot(Arc<Mutex<Admitted>>);

impl RateSlot {
    pub fn merge(&self, admitted: Admitted) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .merge(admitted);
    }
}

/// Writes the `x-ratelimit-*` headers of what the request was admitted (or refused) by.
pub async fn rate_headers(mut request: Request, next: Next) -> Response {
    let slot = RateSlot::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    let admitted = *slot.0.lock().unwrap_or_else(|p| p.into_inner());
    admitted.write(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: Limits = Limits {
        requests_per_minute: 60,
        tokens_per_minute: 10_000,
        concurrent_streams: 2,
    };

    #[test]
    fn a_key_limit_binds_only_where_it_is_tighter() {
        let none = KeyLimits::new(ORG, Overrides::default());
        assert_eq!(none.key, None);
        assert_eq!(none.scopes(Uuid::nil(), Uuid::nil()).len(), 1);
        let looser = KeyLimits::new(
            ORG,
            Overrides {
                requests_per_minute: Some(1000),
                ..Default::default()
            },
        );
        assert_eq!(looser.effective(), ORG);
        assert_eq!(looser.scopes(Uuid::nil(), Uuid::nil()).len(), 1);
        let tighter = KeyLimits::new(
            ORG,
            Overrides {
                tokens_per_minute: Some(500),
                ..Default::default()
            },
        );
        assert_eq!(tighter.effective().tokens_per_minute, 500);
        assert_eq!(tighter.effective().requests_per_minute, 60);
        let scopes = tighter.scopes(Uuid::nil(), Uuid::max());
        assert_eq!(scopes.len(), 2);
        assert!(scopes[0].0.starts_with("key:"));
    }

    #[test]
    fn blocks_are_a_twentieth_and_never_empty() {
        assert_eq!(block(60), 3);
        assert_eq!(block(10), 1);
        assert_eq!(block(0), 1);
        assert_eq!(block(10_000), 500);
    }

    #[test]
    fn the_least_room_is_what_the_headers_say() {
        let mut admitted = Admitted::default();
        let standing = |limit, remaining| Standing {
            limit,
            remaining,
            reset_ms: 1500,
        };
        admitted.note(Dimension::Requests, standing(100, 40));
        admitted.note(Dimension::Requests, standing(60, 50));
        assert_eq!(admitted.requests, Some(standing(100, 40)));
        let mut headers = axum::http::HeaderMap::new();
        admitted.write(&mut headers);
        assert_eq!(headers["x-ratelimit-limit-requests"], "100");
        assert_eq!(headers["x-ratelimit-remaining-requests"], "40");
        assert_eq!(headers["x-ratelimit-reset-requests"], "2s");
        assert!(headers.get("x-ratelimit-limit-tokens").is_none());
    }

    #[test]
    fn durations_read_like_openai_s() {
        assert_eq!(duration_text(250), "250ms");
        assert_eq!(duration_text(12_000), "12s");
        assert_eq!(duration_text(65_000), "1m5s");
    }
}
