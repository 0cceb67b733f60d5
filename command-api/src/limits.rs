//! The rate-limit overrides' shared parts: checking a `PUT …/limits` body, and the answer. The
//! routes are `PUT /organizations/{id}/limits` (platform admin) and `PUT /api-keys/{id}/limits`
//! (`api_keys:manage`), beside their resources.

use api::limits::{
    SetRateLimits, MAX_CONCURRENT_STREAMS, MAX_REQUESTS_PER_MINUTE, MAX_TOKENS_PER_MINUTE,
};
use events::limits::LimitsSet;
use platform::plans::PlanId;
use platform::ratelimit::Overrides;
use platform::ApiError;
use uuid::Uuid;

use crate::billing::aggregate::{self as subscription, Subscription};
use crate::command::{load, Ctx};

/// The body as an event, or 400 naming the field out of range.
pub fn parse(body: SetRateLimits) -> Result<LimitsSet, ApiError> {
    fn check<T: PartialOrd + Copy + Default + std::fmt::Display>(
        field: &str,
        value: Option<T>,
        max: T,
    ) -> Result<Option<T>, ApiError> {
        match value {
            Some(v) if v <= T::default() || v > max => Err(ApiError::invalid_param(
                field,
                format!("{field} must be between 1 and {max}, or null for the default."),
            )),
            other => Ok(other),
        }
    }
    Ok(LimitsSet {
        requests_per_minute: check(
            "requests_per_minute",
            body.requests_per_minute,
            MAX_REQUESTS_PER_MINUTE,
        )?,
        tokens_per_minute: check(
            "tokens_per_minute",
            body.tokens_per_minute,
            MAX_TOKENS_PER_MINUTE,
        )?,
        concurrent_streams: check(
            "concurrent_streams",
            body.concurrent_streams,
            MAX_CONCURRENT_STREAMS,
        )?,
    })
}

pub fn overrides(set: &LimitsSet) -> Overrides {
    Overrides {
        requests_per_minute: set.requests_per_minute,
        tokens_per_minute: set.tokens_per_minute,
        concurrent_streams: set.concurrent_streams,
    }
}

/// The plan in force for the organization now.
pub async fn plan_of(ctx: &Ctx, org_id: Uuid) -> Result<PlanId, ApiError> {
    let loaded = load::<Subscription>(&ctx.state, &subscription::stream_id(org_id)).await?;
    let now = ctx.state.clock.now();
    Ok(match loaded.state.exists() {
        true => loaded
            .state
            .effective_plan(now)
            .parse()
            .unwrap_or(platform::plans::DEFAULT_PLAN),
        false => platform::plans::DEFAULT_PLAN,
    })
}
