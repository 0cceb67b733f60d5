//! Rate limits that replace a plan's defaults.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `organization.limits_set` (by the platform admin) and `api_key.limits_set` (by an admin of
/// the key's organization): the whole set of overrides, replacing the last one. A field left
/// out keeps the default: the plan's for an organization, the organization's for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct LimitsSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    /// Streams open at once, per gateway process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_streams: Option<u32>,
}
