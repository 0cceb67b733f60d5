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

/// One amount on an invoice, in cents: the plan's fee for the period or a proration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceLine {
    /// `plan_fee` or `proration`.
    pub kind: String,
    pub description: String,
    pub amount_cents: i64,
}

/// The calls to one model in the period. Informational: the plan's fee covers its tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceUsage {
    pub model: String,
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// At the catalog's prices, in millionths of a dollar.
    pub cost_micros: i64,
}

/// `invoice.issued`: one per organization and closed period. `total_cents` is the sum of the
/// lines; an invoice with nothing to pay is paid when issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvoiceIssued {
    pub invoice_id: uuid::Uuid,
    /// The calendar month billed, `YYYY-MM` (UTC).
    pub period: String,
    /// The plan in force at the start of the period.
    pub plan: String,
    pub currency: String,
    pub lines: Vec<InvoiceLine>,
    pub usage: Vec<InvoiceUsage>,
    pub total_cents: i64,
    pub issued_at: String,
}

/// `invoice.paid`: the hook for payment providers; the amount equals the invoice's total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvoicePaid {
    pub invoice_id: uuid::Uuid,
    pub amount_cents: i64,
    /// The payer's reference (a transfer id, a provider's charge id).
    pub reference: String,
    pub paid_at: String,
}

/// `billing.period_closed`: every organization of the period has its invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BillingPeriodClosed {
    pub period: String,
    pub invoices: u64,
    pub total_cents: i64,
    pub closed_at: String,
}
