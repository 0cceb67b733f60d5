//! Subscriptions: which plan an organization is on, and every change to it. Amounts are integers
//! in cents (USD).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `subscription.started`: every organization starts on a plan (Free) when it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionStarted {
    pub plan: String,
    /// RFC 3339, UTC.
    pub started_at: String,
}

/// `subscription.upgraded`: effective at once; the price difference for the rest of the calendar
/// month is charged as a proration line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubscriptionUpgraded {
    pub from_plan: String,
    pub to_plan: String,
    pub effective_at: String,
    /// Days left in the month, the upgrade day included, over the days of the month.
    pub days_left: u32,
    pub days_in_month: u32,
    pub proration_cents: i64,
}

/// `subscription.downgrade_scheduled`: takes effect at the start of the next calendar month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DowngradeScheduled {
    pub from_plan: String,
    pub to_plan: String,
    pub effective_at: String,
}

/// `subscription.downgrade_cancelled`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DowngradeCancelled {
    pub to_plan: String,
}
