use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{object_name, OrgId, Timestamp};

object_name!(UsageObject = "usage");

/// Calls, tokens and cost in `[from, to)`, optionally grouped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub object: UsageObject,
    pub org_id: OrgId,
    pub from: Timestamp,
    pub to: Timestamp,
    pub group_by: Option<String>,
    pub data: Vec<UsageLine>,
    pub totals: UsageFigures,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageFigures {
    pub requests: i64,
    pub failed_requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// Cost in millionths of a US dollar.
    pub cost_micros: i64,
}

/// The figures of one group: a day, model, key, team or user id (`all` when not grouped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageLine {
    pub key: String,
    #[serde(flatten)]
    pub figures: UsageFigures,
}

/// `GET /billing/usage` and `GET /billing/usage/export`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Platform admin only.
    pub org_id: Option<String>,
    /// A date (`2026-11-01`) or RFC 3339 time; default the start of this month.
    pub from: Option<String>,
    /// Exclusive; default the start of next month.
    pub to: Option<String>,
    /// `day`, `model`, `api_key`, `team` or `user`.
    pub group_by: Option<String>,
    /// Export only: `csv` (default) or `jsonl`.
    pub format: Option<String>,
}
