//! Rate limits: requests and tokens per minute, and streams open at once.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{object_name, OrgId, PlanId};

object_name!(RateLimitsObject = "rate_limits");

/// The largest values an override may take.
pub const MAX_REQUESTS_PER_MINUTE: u64 = 1_000_000_000;
pub const MAX_TOKENS_PER_MINUTE: u64 = 1_000_000_000_000;
pub const MAX_CONCURRENT_STREAMS: u32 = 1_000_000;

/// `PUT /organizations/{id}/limits` (platform admin) and `PUT /api-keys/{id}/limits` (an admin:
/// `api_keys:manage`): the overrides, replacing the last ones. A field left out, or `null`, goes
/// back to the default: the plan's for an organization, the organization's for a key. A key's
/// limits only ever narrow its organization's, which still hold.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRateLimits {
    /// API requests per minute, every route counted.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub requests_per_minute: Option<u64>,
    /// Chat tokens per minute, counted at admission as the prompt and the completion budget
    /// (`max_tokens`, or 1024); what a call did not use is given back.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub tokens_per_minute: Option<u64>,
    /// Streams open at once, in each gateway process.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub concurrent_streams: Option<u32>,
}

/// What is set for the subject itself; `null` where the default holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RateLimitOverrides {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub concurrent_streams: Option<u32>,
}

/// Whose limits these are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitSubject {
    Organization,
    ApiKey,
}

/// The rate limits in force. Past them a call gets 429 `rate_limit_exceeded` (requests or
/// tokens, with `retry-after` and the `x-ratelimit-*` headers OpenAI clients read) or
/// `too_many_streams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RateLimits {
    pub object: RateLimitsObject,
    pub subject: RateLimitSubject,
    /// The organization's or the key's id.
    pub id: uuid::Uuid,
    pub org_id: OrgId,
    /// The plan whose defaults apply where nothing is overridden.
    pub plan: PlanId,
    pub requests_per_minute: u64,
    pub tokens_per_minute: u64,
    pub concurrent_streams: u32,
    pub overrides: RateLimitOverrides,
}

impl RateLimits {
    /// The answer for a subject: the limits in force (`limits`) and what it overrides itself
    /// (`own`). The read side and the write side's `PUT` answer both build it here.
    pub fn new(
        subject: RateLimitSubject,
        id: uuid::Uuid,
        org_id: uuid::Uuid,
        plan: PlanId,
        limits: platform::ratelimit::Limits,
        own: platform::ratelimit::Overrides,
    ) -> RateLimits {
        RateLimits {
            object: RateLimitsObject::Value,
            subject,
            id,
            org_id: org_id.into(),
            plan,
            requests_per_minute: limits.requests_per_minute,
            tokens_per_minute: limits.tokens_per_minute,
            concurrent_streams: limits.concurrent_streams,
            overrides: RateLimitOverrides {
                requests_per_minute: own.requests_per_minute,
                tokens_per_minute: own.tokens_per_minute,
                concurrent_streams: own.concurrent_streams,
            },
        }
    }
}
